"""What to run on a lent GPU, and how to bring the results home.

A lent GPU comes with 15 minutes of device time in all, 10 minutes per command, a
machine that takes a minute or more to start and goes back after 30 s idle, and only the files
under $OUT back (at most 8 files, 16 MiB each). So the whole loan is one command, whose parts
each finish on their own time and leave their files under $OUT:

    # on the GPU (one command of the device tool, from the repository root; python3 there holds torch):
    python3 scripts/gpu_session.py all --out $OUT --seconds 540      # all below, in one command
    python3 scripts/gpu_session.py bench --out $OUT                  # speed.json: core GPU benchmark
    python3 scripts/gpu_session.py bench --out $OUT --part compile   # the 30-run stack compiled
    python3 scripts/gpu_session.py full --out $OUT --minutes 6       # full-budget book runs on cifar10-jpg

    # back here, on the files the tool fetched:
    python scripts/gpu_session.py unpack <files_at>

`full` trains `birr.book_configs(budget="full", dataset="cifar10-jpg")` with the 100-epoch encoder
(pre-trained first if its artefact is missing, on the same GPU), stacked as `run_many` stacks them,
Table 1's stack first, skipping every run whose results are already committed, and stops cleanly
before `--minutes` run out; the stack in progress keeps its last finished task in results/ckpt/ there,
so `full` again at once on the still-warm machine resumes it (a cold machine starts it again). Every finished run's JSON, and the encoder artefact, go into one
tar.gz under $OUT. The final models (52 MB each at full width) are too big to come back; the
chapters that need them (decoder lens, exaggeration) stay at the short budget until a lent GPU can
keep them.

`--budget smoke --dataset synthetic` runs the same path on a CPU in seconds (tests/test_gpu_session.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bench(out: Path, device: str, quick: bool, part: str = "core", deadline: float | None = None) -> Path:
    """The speed benchmark's GPU settings, appended to $OUT/speed.json (a copy of
    benchmarks/results/speed.json made by the first part that runs, so parts add up).

    core: one run at batch 256 and 512 against the reference pattern; then the stacks Table 1 uses
    (K = 1 and 30, BI-R + SI and RR + RA, fp32 with TF32 matmuls and bf16) at batch 512.
    compile: torch.compile on the largest stack, bf16 then fp32 (Config.compile: the model's passes and
    Adam + SI bookkeeping fused into one kernel per parameter; its compile time is paid in the warm-up)."""
    target = out / "speed.json"
    if not target.exists():
        shutil.copy(REPO / "benchmarks" / "results" / "speed.json", target)
    py, script = sys.executable, str(REPO / "benchmarks" / "speed.py")
    common = ["--device", device, "--out", str(target), "--warmup", "3", "--iters", "4" if quick else "20"]
    batches = ["32"] if quick else ["256", "512"]
    stacks = ["1", "2"] if quick else ["1", "30"]
    if part == "core":
        runs = [
            # single runs at both batches against the reference pattern on the same device
            common + ["--batches", *batches, "--stack", "1", "--methods", "bir+si", "--precision", "fp32"],
            # the batched runs that Table 1 uses, fp32 (TF32 matmuls) and bf16
            common + ["--batches", batches[-1], "--stack", *stacks, "--methods", "bir+si", "rr+ra",
                      "--precision", "fp32", "bf16", "--no-baseline"],
            # where the largest stack's step spends its time (profile.txt beside speed.json)
            common + ["--batches", batches[-1], "--stack", stacks[-1], "--methods", "rr+ra", "--precision", "fp32",
                      "--profile", str(out / "profile.txt")],
        ]
    elif part == "compile":
        # Table 1's stack with the compiled model and the fused Adam + SI update (Config.compile), bf16
        # first (the candidate for Table 1 in 15 minutes), each in its own process so a cut-off keeps the first
        runs = [common + ["--batches", batches[-1], "--stack", stacks[-1], "--methods", "rr+ra",
                          "--precision", prec, "--compile", "on", "--no-baseline"] for prec in ("bf16", "fp32")]
    else:
        raise ValueError(f"part={part!r} is not allowed; choose core or compile")
    for args in runs:   # past the deadline (time.time()), the benchmark in progress is stopped
        timeout = None if deadline is None else max(deadline - time.time(), 1)
        subprocess.run([py, script, *args], check=True, timeout=timeout)
    return target


def stacking(out: Path, device: str) -> dict:
    """Is a run trained in a stack the same run as trained alone, on this device? Three smoke runs
    (synthetic, 2 tasks x 40 iterations, fp32) stacked, then each alone; per run, whether the final
    weights and accuracies are the same bits, and the largest weight difference. On a CPU they are
    (tests/test_stacked.py); on CUDA, where Adam's fused kernel gets whole stacked tensors
    (`birr.stacked.adam_step`) and every layer one batched matmul for the stack
    (`birr.stacked.bmm`), this is the check; if it fails, drop those two functions' CPU-only
    condition. Seconds; writes $OUT/stacking.json."""
    import tempfile
    import torch
    import birr
    from birr.train import model_path
    cfgs = [birr.preset(m, budget="smoke", seed=s, device=device, **kw) for m, s, kw in
            [("bir+si", 0, {}), ("bir+si", 1, {}), ("rr+ra", 0, dict(rep_f=3.0, lambda_rr=1e-2, lambda_ra=1e-2))]]
    report = dict(device=device, runs=[])
    with tempfile.TemporaryDirectory() as tmp:
        stacked = birr.run_many(cfgs, results_dir=Path(tmp) / "stack", progress=False)
        for cfg, s in zip(cfgs, stacked):
            alone = birr.run(cfg, results_dir=Path(tmp) / cfg.stamp, progress=False)
            a = torch.load(model_path(Path(tmp) / cfg.stamp, cfg), map_location="cpu")
            b = torch.load(model_path(Path(tmp) / "stack", cfg), map_location="cpu")
            report["runs"].append(dict(
                stamp=cfg.stamp, method=cfg.method, stacked_with=s["stacked_with"],
                same_weights=all(torch.equal(a[n], b[n]) for n in a),
                same_accuracies=alone["acc_matrix"] == s["acc_matrix"],
                max_weight_diff=max(float((a[n].float() - b[n].float()).abs().max()) for n in a)))
    report["exact"] = all(r["same_weights"] and r["same_accuracies"] for r in report["runs"])
    (out / "stacking.json").write_text(json.dumps(report, indent=1))
    return report


def full(out: Path, minutes: float, budget: str, dataset: str, seeds: list[int], device: str,
         results: Path = REPO / "results", checkpoint: bool = True) -> Path:
    """Train the book's runs until done or `minutes` are up, then pack every finished run."""
    started = time.time()
    # per-task checkpoints cost seconds per task at the full size (an 18-run stack's state is ~5 GB),
    # but a second call on the still-warm machine resumes the stack instead of starting it again
    # (the first GPU run went without them and lost an 18-run stack 20% into its last task)
    cmd = [sys.executable, "-m", "birr", "book", "--budget", budget, "--dataset", dataset,
           "--seeds", *map(str, seeds), "--results-dir", str(results), "--set", f"device={device}"]
    cmd += [] if checkpoint else ["--no-checkpoint"]
    # progress bars go to train.err beside the results (a log file, not the command's short output tail)
    with open(out / "train.err", "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stderr=err)
        try:
            code = proc.wait(timeout=max(minutes * 60, 0.001))
        except subprocess.TimeoutExpired:   # results are written atomically: stop anywhere
            proc.terminate()
            proc.wait()
            code = None
    if code:   # a crash still packs the runs that finished before it
        print(f"error: training failed with exit code {code} (see train.err): {' '.join(cmd)}", file=sys.stderr)
    return pack(out, results, budget, dataset, code == 0, time.time() - started)


def run_all(out: Path, seconds: float, device: str, budget: str = "full", dataset: str = "cifar10-jpg",
            seeds: list[int] = (0, 1, 2), quick: bool = False, results: Path = REPO / "results",
            compile_min_s: float = 100.0) -> dict:
    """The whole GPU loan as one command that ends within `seconds`: first the compile benchmark
    (Table 1's 30-run stack, bf16 then fp32; at most half the time, and only if at least
    `compile_min_s` remain): its bf16 figure is the one that says whether Table 1 fits in 15 minutes,
    and the compiled code has never run on a GPU, so it goes first. Then the core benchmark (at most a
    third of what is left), then whether stacked runs equal runs alone there (`stacking`, seconds),
    then the book's runs on all the time left but a margin for packing. Each
    part that fails is reported and the next one still runs.
    Returns {part: seconds taken or an error}."""
    deadline, done = time.time() + seconds, {}

    def left():
        return deadline - time.time()

    for name, part in [
        ("compile", lambda: bench(out, device, quick, "compile", deadline=time.time() + left() / 2)
         if left() > compile_min_s else f"skipped: {left():.0f} s left, {compile_min_s:.0f} needed"),
        # the core benchmark gets at most a third of what is left: the book's runs are worth more
        ("bench", lambda: bench(out, device, quick, "core", deadline=time.time() + left() / 3)),
        # seconds: does a stacked run equal the run alone on this device (exact on a CPU, tested)?
        ("stacking", lambda: f"exact: {stacking(out, device)['exact']}" if left() > 120
         else f"skipped: {left():.0f} s left"),
        ("full", lambda: full(out, (left() - 20) / 60, budget, dataset, list(seeds), device, results)),
    ]:
        t0 = time.time()
        try:
            said = part()
            done[name] = said if isinstance(said, str) else round(time.time() - t0, 1)
        except Exception as e:   # noqa: BLE001 - one part's failure must not cost the others their time
            done[name] = f"{type(e).__name__}: {e}"
        print(f"[gpu_session] {name}: {done[name]} ({left():.0f} s left)", flush=True)
    (out / "parts.json").write_text(json.dumps(done, indent=1))
    return done


def pack(out: Path, results: Path, budget: str, dataset: str, finished: bool, seconds: float) -> Path:
    """One tar.gz: results/runs/<stamp>.json of every finished run of this budget and dataset, the
    encoder artefacts, and a manifest saying whether the whole set is done."""
    runs = []
    for p in sorted((Path(results) / "runs").glob("*.json")):
        r = json.loads(p.read_text())
        if r.get("budget") == budget and r.get("dataset") == dataset:
            runs.append(p)
    archive = out / f"results-{budget}-{dataset}.tar.gz"
    tmp = archive.with_name(archive.name + ".tmp")
    manifest = dict(budget=budget, dataset=dataset, finished=finished, n_runs=len(runs), seconds=round(seconds, 1))
    with tarfile.open(tmp, "w:gz") as tar:
        for p in runs:
            tar.add(p, arcname=f"results/runs/{p.name}")
        for p in sorted((REPO / "artefacts").glob("encoder-*.pt")):
            tar.add(p, arcname=f"artefacts/{p.name}")
        m = out / "manifest.json"
        m.write_text(json.dumps(manifest, indent=1))
        tar.add(m, arcname="manifest.json")
    os.replace(tmp, archive)
    print(json.dumps(manifest))
    return archive


def unpack(files_at: Path, repo: Path = REPO) -> list[str]:
    """Copy what came back into the repository: run JSONs (new stamps only, or newer finished ones),
    encoder artefacts, the benchmark history. Returns the paths written."""
    written = []
    for archive in sorted(Path(files_at).rglob("results-*.tar.gz")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if member.isfile() and name.parts[0] in ("results", "artefacts") and ".." not in name.parts:
                    dest = repo / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    data = tar.extractfile(member).read()
                    tmp = dest.with_name(f".{dest.name}.tmp")
                    tmp.write_bytes(data)
                    os.replace(tmp, dest)
                    written.append(str(name))
    for check in Path(files_at).rglob("stacking.json"):   # the device's stacked-vs-alone check
        dest = repo / "benchmarks" / "results" / "gpu" / "stacking.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(".stacking.json.tmp")
        tmp.write_bytes(check.read_bytes())
        os.replace(tmp, dest)
        written.append("benchmarks/results/gpu/stacking.json")
    for speed in Path(files_at).rglob("speed.json"):
        dest = repo / "benchmarks" / "results" / "speed.json"
        ours, theirs = json.loads(dest.read_text()) if dest.exists() else [], json.loads(speed.read_text())
        new = [e for e in theirs if e not in ours]     # the GPU entries appended on the device
        tmp = dest.with_name(".speed.json.tmp")
        tmp.write_text(json.dumps(ours + new, indent=1))
        os.replace(tmp, dest)
        written.append(f"benchmarks/results/speed.json (+{len(new)} entries)")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    b.add_argument("--device", default="cuda")
    b.add_argument("--quick", action="store_true", help="tiny settings (a CPU check of the script)")
    b.add_argument("--part", default="core", choices=["core", "compile"])
    f = sub.add_parser("full")
    f.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    f.add_argument("--minutes", type=float, default=9.0)
    f.add_argument("--budget", default="full")
    f.add_argument("--dataset", default="cifar10-jpg")
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    f.add_argument("--device", default="cuda")
    f.add_argument("--results-dir", default=str(REPO / "results"))
    a = sub.add_parser("all", help="bench, full and compile in one command that ends within --seconds")
    a.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    a.add_argument("--seconds", type=float, default=540.0)
    a.add_argument("--device", default="cuda")
    a.add_argument("--budget", default="full")
    a.add_argument("--dataset", default="cifar10-jpg")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--quick", action="store_true")
    u = sub.add_parser("unpack")
    u.add_argument("files_at")
    args = ap.parse_args(argv)
    if args.cmd == "unpack":
        for w in unpack(Path(args.files_at)):
            print(w)
        return 0
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            print(f"error: --device {args.device} but torch {torch.__version__} sees no GPU", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.cmd == "bench":
        print(bench(out, args.device, args.quick, args.part))
    elif args.cmd == "all":
        run_all(out, args.seconds, args.device, args.budget, args.dataset, args.seeds, args.quick)
    else:
        print(full(out, args.minutes, args.budget, args.dataset, args.seeds, args.device, Path(args.results_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
