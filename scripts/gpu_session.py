"""What to run on a lent GPU (the `device` tool), and how to bring the results home (issue 7).

A session that is lent a GPU gets 30 minutes of device time, 10 minutes per command, a machine that
goes back after 30 s idle, and only the files under $OUT back (at most 8 files, 16 MiB each). This
script packs the work into few commands and its results into few files:

    # on the GPU (command of the device tool, from the repository root; python3 there holds torch):
    python3 scripts/gpu_session.py bench --out $OUT              # speed.json: CPU-free GPU benchmark
    python3 scripts/gpu_session.py full --out $OUT --minutes 9   # full-budget book runs on cifar10-jpg
    #   (repeat `full` at once while the machine is warm: it resumes from results/ckpt/ there)

    # back here, on the files the tool fetched:
    python scripts/gpu_session.py unpack <files_at>

`full` trains `birr.book_configs(budget="full", dataset="cifar10-jpg")` with the 100-epoch encoder
(pre-trained first if its artefact is missing, on the same GPU), stacked as `run_many` stacks them,
and stops cleanly before `--minutes` run out: the stack in progress keeps its last finished task in
results/ckpt/ (not brought back). Every finished run's JSON, and the encoder artefact, go into one
tar.gz under $OUT. The final models (52 MB each at full width) are too big to come back; the
chapters that need them (decoder lens, exaggeration) stay at the short budget until a session can
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


def bench(out: Path, device: str, quick: bool) -> Path:
    """The speed benchmark's GPU settings, appended to a copy of benchmarks/results/speed.json."""
    target = out / "speed.json"
    shutil.copy(REPO / "benchmarks" / "results" / "speed.json", target)
    py, script = sys.executable, str(REPO / "benchmarks" / "speed.py")
    common = ["--device", device, "--out", str(target), "--warmup", "3", "--iters", "4" if quick else "20"]
    batches = ["32"] if quick else ["256", "512"]
    stacks = ["1", "2"] if quick else ["1", "6", "30"]
    runs = [
        # single runs at both batches against the reference pattern on the same device
        common + ["--batches", *batches, "--stack", "1", "--methods", "bir+si", "--precision", "fp32"],
        # the batched runs that Table 1 uses, fp32 (TF32 matmuls) and bf16
        common + ["--batches", batches[-1], "--stack", *stacks, "--methods", "bir+si", "rr+ra",
                  "--precision", "fp32", "bf16", "--no-baseline"],
        # torch.compile on the largest stack
        common + ["--batches", batches[-1], "--stack", stacks[-1], "--methods", "bir+si", "--precision", "fp32",
                  "--compile", "on", "--no-baseline"],
    ]
    for args in runs:
        subprocess.run([py, script, *args], check=True)
    return target


def full(out: Path, minutes: float, budget: str, dataset: str, seeds: list[int], device: str,
         results: Path = REPO / "results") -> Path:
    """Train the book's runs until done or `minutes` are up, then pack every finished run."""
    started = time.time()
    cmd = [sys.executable, "-m", "birr", "book", "--budget", budget, "--dataset", dataset,
           "--seeds", *map(str, seeds), "--results-dir", str(results), "--set", f"device={device}"]
    proc = subprocess.Popen(cmd, cwd=REPO)
    try:
        finished = proc.wait(timeout=minutes * 60) == 0
        if not finished:
            raise SystemExit(f"training failed with exit code {proc.returncode}: {' '.join(cmd)}")
    except subprocess.TimeoutExpired:   # results and checkpoints are written atomically: stop anywhere
        proc.terminate()
        proc.wait()
        finished = False
    return pack(out, results, budget, dataset, finished, time.time() - started)


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
    f = sub.add_parser("full")
    f.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    f.add_argument("--minutes", type=float, default=9.0)
    f.add_argument("--budget", default="full")
    f.add_argument("--dataset", default="cifar10-jpg")
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    f.add_argument("--device", default="cuda")
    f.add_argument("--results-dir", default=str(REPO / "results"))
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
        print(bench(out, args.device, args.quick))
    else:
        print(full(out, args.minutes, args.budget, args.dataset, args.seeds, args.device, Path(args.results_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
