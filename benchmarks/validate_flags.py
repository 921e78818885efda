"""Do the speed flags keep the accuracy? bf16 autocast and torch.compile on a short real run.

    python benchmarks/validate_flags.py                       # short budget, cifar10-jpg, seeds 0 1 2
    python benchmarks/validate_flags.py --device cuda         # the same on a GPU

For each flag, BI-R + SI is trained with the flag on, at the same seeds as the fp32 eager runs, and
the final accuracies (first 20 % / first 50 % / all classes, appendix §7) are compared seed by seed. The
verdict is "within seed noise" when the mean paired difference is no larger than the seed-to-seed
standard deviation of the fp32 runs, per column.

- bf16 is part of the config stamp (it changes the numbers), so its runs are ordinary results
  (results/runs/), reused if present.
- compile is not (it changes how, not what, is computed), so its runs would share the fp32 runs'
  stamps: they are trained into their own folder (--compile-dir) and only the summary is kept.
- bf16+compile, both at once (the setting proposed for Table 1 on a GPU), is kept like compile.

Writes benchmarks/results/flags.json (atomically; one entry per invocation, with provenance), which
the book's status page shows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import birr  # noqa: E402
from birr import train as T  # noqa: E402

COLUMNS = ("first20", "first50", "overall")


def summarise(base: list[dict], flagged: list[dict]) -> dict:
    """Per column: fp32 and flagged means, seed SD of fp32, paired differences and the verdict."""
    out = {}
    for col in COLUMNS:
        a = [r["metrics"][col] for r in base]
        b = [r["metrics"][col] for r in flagged]
        diffs = [y - x for x, y in zip(a, b)]
        sd = statistics.stdev(a) if len(a) > 1 else float("nan")
        mean_diff = statistics.fmean(diffs)
        out[col] = dict(fp32=a, flagged=b, fp32_mean=statistics.fmean(a), flagged_mean=statistics.fmean(b),
                        fp32_seed_sd=sd, mean_diff=mean_diff, within_seed_noise=abs(mean_diff) <= sd)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="short")
    ap.add_argument("--dataset", default=None, help="default: the budget's dataset")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--flags", nargs="+", default=["bf16", "compile"], choices=["bf16", "compile", "bf16+compile"],
                    help="bf16+compile: both at once, the setting proposed for Table 1 on a GPU")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--results-dir", default=None, help="default: birr's results folder")
    ap.add_argument("--compile-dir", default=None, help="where the compiled runs go (default: a temp folder)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "flags.json"))
    args = ap.parse_args(argv)
    if len(args.seeds) < 2:
        ap.error("--seeds: give at least two, the verdict needs a seed-to-seed spread")
    base_cfgs = [birr.preset("bir+si", budget=args.budget, dataset=args.dataset, seed=s, device=args.device)
                 for s in args.seeds]
    base = birr.run_many(base_cfgs, results_dir=args.results_dir)
    entry = dict(budget=args.budget, dataset=base[0]["dataset"], seeds=args.seeds, method="bir+si",
                 provenance=T.provenance(T.resolve_device(args.device)), flags={})
    for flag in args.flags:
        cfgs = [c.replace(**{f: True for f in flag.split("+")}) for c in base_cfgs]
        if "compile" not in flag:
            runs = birr.run_many(cfgs, results_dir=args.results_dir)
        else:   # same stamps as the runs without compile: trained apart, never stored as results
            folder = args.compile_dir or tempfile.mkdtemp(prefix="birr-compile-")
            runs = birr.run_many(cfgs, results_dir=Path(folder) / flag)
        s = summarise(base, runs)
        s["wall_time_s"] = [r["wall_time_s"] for r in runs]
        s["fp32_wall_time_s"] = [r["wall_time_s"] for r in base]
        entry["flags"][flag] = s
        for col in COLUMNS:
            c = s[col]
            print(f"{flag:<8} {col:<8} fp32 {c['fp32_mean']:.4f} (seed SD {c['fp32_seed_sd']:.4f}) "
                  f"{flag} {c['flagged_mean']:.4f}  paired diff {c['mean_diff']:+.4f}  "
                  f"{'within' if c['within_seed_noise'] else 'OUTSIDE'} seed noise")
    out = Path(args.out)
    history = json.loads(out.read_text()) if out.exists() else []
    history.append(entry)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(history, indent=1))
    os.replace(tmp, out)
    print(f"appended to {out}")
    return entry


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    main()
