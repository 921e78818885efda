"""Steady-state training speed of birr at the full CIFAR-100 model size (issues 4 and 7).

    python benchmarks/speed.py                       # CPU: batch 256 and 512, fp32 and bf16, K = 1
    python benchmarks/speed.py --device cuda --stack 1 6 30

What is timed: iterations of task 2 (replay on, SI on, the state every later task is in), on random
features of the CIFAR-100 shape (50,000 x 1024, 100 classes, 10 tasks), with the model of spec §4
(12.9 M parameters per run). Data loading is a gather from the device-resident feature bank, as in a real
run. Each setting runs `--warmup` iterations, then `--iters` timed ones; the median over blocks is
reported. The reference figures (reference-speed.md, measured on this project's 2-core CPU machines,
same thread count) are printed beside ours: 0.30-0.33 s/iteration at batch 256 and 0.51 s at 512 for
BI-R + SI; 0.37 / 0.63 s with RR + RA (f = 20).

The projection: Table 1 is 30 runs (6 configurations x 5 seeds) x 10 tasks x 5000 iterations at batch
512, i.e. 1.5 M run-iterations; wall = 1.5e6 * (s/iteration of a K-stack) / K.

Results are appended to benchmarks/results/speed.json (atomically) with device, torch version, date.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import birr  # noqa: E402
from birr import train as T  # noqa: E402

REFERENCE_S_PER_ITER = {("bir+si", 256): 0.315, ("bir+si", 512): 0.51, ("rr+ra", 256): 0.37, ("rr+ra", 512): 0.63}
TABLE1_RUN_ITERS = 30 * 10 * 5000


def fake_data(K: int, device, n_per_class=500, n_classes=100, n_tasks=10, D=1024, seed=0) -> T.TaskData:
    """A TaskData with random features of the CIFAR-100 shape (no encoder, no files)."""
    g = torch.Generator().manual_seed(seed)
    d = T.TaskData.__new__(T.TaskData)
    N = n_per_class * n_classes
    d.train_x = torch.randn(N, D, generator=g).to(device)
    d.test_x = torch.randn(n_classes * 10, D, generator=g).to(device)
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    d.train_y = torch.stack([labels[torch.randperm(N, generator=g)] for _ in range(K)]).to(device)
    d.test_y = torch.arange(n_classes).repeat_interleave(10).expand(K, -1).contiguous().to(device)
    d.n_classes, d.n_tasks, d.cpt = n_classes, n_tasks, n_classes // n_tasks
    d.encoder_meta = {}
    return d


def time_setting(method: str, batch: int, K: int, bf16: bool, device, warmup: int, iters: int) -> dict:
    extra = dict(rep_f=20.0) if method == "rr+ra" else {}
    cfgs = [birr.preset(method, budget="full", dataset="cifar100", seed=s, batch=batch, batch_replay=batch,
                        bf16=bf16, device=str(device), **extra) for s in range(K)]
    stack = T.Stack(cfgs, device, data=fake_data(K, device))
    d = stack.data
    gens = stack.generators(1)
    stack.W = {n: torch.zeros_like(stack.params[n]) for n in stack.si_names}
    idx = d.task_indices(1)[:, :batch]
    stack.step(1, d.train_x[idx], d.train_y.gather(1, idx), gens, None, None)
    stack.end_task()                                        # now in task 2: replay + SI active
    stack.W = {n: torch.zeros_like(stack.params[n]) for n in stack.si_names}
    idx_t = d.task_indices(2)
    gens = stack.generators(2)

    def one(i):
        j = (i * batch) % (idx_t.shape[1] - batch)
        idx = idx_t[:, j:j + batch]
        stack.step(2, d.train_x[idx], d.train_y.gather(1, idx), gens, None, None)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        one(i)
    sync()
    block, times = max(1, iters // 5), []
    for b in range(iters // block):
        t0 = time.perf_counter()
        for i in range(block):
            one(i)
        sync()
        times.append((time.perf_counter() - t0) / block)
    s_per_iter = statistics.median(times)
    return dict(method=method, batch=batch, K=K, bf16=bf16, s_per_iter=s_per_iter,
                run_iters_per_s=K / s_per_iter, table1_projection_min=TABLE1_RUN_ITERS * s_per_iter / K / 60,
                reference_s_per_iter=REFERENCE_S_PER_ITER.get((method, batch)) if K == 1 else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--stack", type=int, nargs="+", default=[1])
    ap.add_argument("--methods", nargs="+", default=["bir+si", "rr+ra"])
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "speed.json"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    prov = T.provenance(device)
    print(f"device: {prov['device_name']} ({device}), torch {prov['torch']}, threads {prov['threads']}")
    print(f"{'method':<7} {'batch':>5} {'K':>3} {'prec':<5} {'s/iter':>8} {'run-it/s':>9} {'ref s/it':>8} "
          f"{'speed-up':>8} {'Table 1 (min)':>13}")
    rows = []
    for method in args.methods:
        for batch in args.batches:
            for K in args.stack:
                for prec in args.precision:
                    r = time_setting(method, batch, K, prec == "bf16", device, args.warmup, args.iters)
                    ref = r["reference_s_per_iter"]
                    r["speedup_vs_reference"] = ref / r["s_per_iter"] if ref else None
                    rows.append(r)
                    print(f"{method:<7} {batch:>5} {K:>3} {prec:<5} {r['s_per_iter']:>8.4f} {r['run_iters_per_s']:>9.2f} "
                          f"{ref if ref else float('nan'):>8.3f} {r['speedup_vs_reference'] or float('nan'):>8.2f} "
                          f"{r['table1_projection_min']:>13.1f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    history = json.loads(out.read_text()) if out.exists() else []
    history.append(dict(provenance=prov, rows=rows, warmup=args.warmup, iters=args.iters))
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(history, indent=1))
    os.replace(tmp, out)
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
