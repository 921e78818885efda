"""Steady-state training speed of birr at the full CIFAR-100 model size (issues 4 and 7).

    python benchmarks/speed.py --precision fp32      # CPU: batch 256 and 512, K = 1 (bf16 is slow on AVX2)
    python benchmarks/speed.py --batches 256 --methods bir+si   # + bf16 against the reference (AVX512-BF16, AMX)
    python benchmarks/speed.py --device cuda --stack 1 6 30
    python benchmarks/speed.py --methods bir+si --precision fp32 bf16 --compile off on   # CPU, AVX512-BF16 / AMX
    python benchmarks/speed.py --batches 256 --methods bir+si --precision bf16 --compile on --rounds 5
    python benchmarks/speed.py --phases --batches 256 --methods bir+si --precision bf16 --compile on

What is timed: iterations of task 2 (replay on, SI on, the state every later task is in; logging as in
training: loss terms every log_every-th iteration, RR/RA pair counts every iteration), on random
features of the CIFAR-100 shape (50,000 x 1024, 100 classes, 10 tasks), with the model of appendix §4
(12.9 M parameters per run). Data loading is a gather from the device-resident feature bank, as in a real
run. Each setting runs `--warmup` iterations, then `--iters` timed ones; the median over blocks is
reported. On a CPU the reference pattern and each of birr's single-run settings are timed in
processes of their own, alternating (ref, birr, ..., ref, birr, ... for `--rounds` rounds); the
speed-up is the median of the rounds' ratios, printed with their range. On a shared machine the
absolute times drift by tens of percent between minutes, a ratio of neighbours much less; and in
one process the settings disturb each other: with four of birr's stacks beside it, the reference
pattern ran 0.46 s instead of 0.40 s alone (2026-11-30, 2-core CPU), flattering every ratio by
~15 %. `--no-isolate` (and any GPU) times them in one process with their blocks interleaved.
The reference figures (the authors' code itself, timed on this project's 2-core CPU machines, same
thread count) are printed beside ours: 0.30-0.33 s/iteration at batch 256 and 0.51 s at 512 for
BI-R + SI; 0.37 / 0.63 s with RR + RA (f = 20).

The projection: Table 1 is 30 runs (6 configurations x 5 seeds) x 10 tasks x 5000 iterations at batch
512, i.e. 1.5 M run-iterations; wall = 1.5e6 * (s/iteration of a K-stack) / K. Rows timed without the
reference comparison also record `setup_s`, what building the stack and warming it up cost beyond the
steady rate (with --compile on, mostly compile time: on a GPU every graph a Table 1 stack compiles is
compiled in that window), and `table1_with_setup_min`, the projection with it paid once per stack.

Results are appended to benchmarks/results/speed.json (atomically) with device, torch version, date.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import birr  # noqa: E402
from birr import train as T  # noqa: E402
from birr.learner import AdamSI, Learner, TaskData  # noqa: E402
from birr.rr import one_hot  # noqa: E402
from birr.si import SynapticIntelligence, si_penalty  # noqa: E402
from birr.stacked import bmm  # noqa: E402

REFERENCE_S_PER_ITER = {("bir+si", 256): 0.315, ("bir+si", 512): 0.51, ("rr+ra", 256): 0.37, ("rr+ra", 512): 0.63}
TABLE1_RUN_ITERS = 30 * 10 * 5000


def synchronizer(device):
    """What waits for the device's queued work before a clock is read (nothing to wait for on a CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def interleaved_medians(ones: list, device, warmup: int, iters: int) -> list[float]:
    """Median seconds per call of each one(i) over blocks of iterations, after `warmup` untimed calls
    of each. The blocks of the settings alternate (A B A B ...), so a shared machine's slow spell hits
    all of them alike and their ratio holds even when the absolute times drift."""
    sync = synchronizer(device)
    for one in ones:
        for i in range(warmup):
            one(i)
    sync()
    block = max(1, iters // 5)
    times = [[] for _ in ones]
    for b in range(iters // block):
        for k, one in enumerate(ones):
            t0 = time.perf_counter()
            for i in range(block):
                one(i)
            sync()
            times[k].append((time.perf_counter() - t0) / block)
    return [statistics.median(t) for t in times]


def fake_data(K: int, device, n_per_class=500, n_classes=100, n_tasks=10, D=1024, seed=0) -> TaskData:
    """A TaskData with random features of the CIFAR-100 shape (no encoder, no files)."""
    g = torch.Generator().manual_seed(seed)
    d = TaskData.__new__(TaskData)
    N = n_per_class * n_classes
    d.train_x = torch.randn(N, D, generator=g).to(device)
    d.test_x = torch.randn(n_classes * 10, D, generator=g).to(device)
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    d.train_y = torch.stack([labels[torch.randperm(N, generator=g)] for _ in range(K)]).to(device)
    d.test_y = torch.arange(n_classes).repeat_interleave(10).expand(K, -1).contiguous().to(device)
    d.n_classes, d.n_tasks, d.cpt = n_classes, n_tasks, n_classes // n_tasks
    d.encoder_meta = {}
    return d


def setting(method: str, batch: int, K: int, bf16: bool, device, compile: bool = False):
    """A stack of K runs in the state of task 2, and one(i) doing its i-th training step."""
    extra = dict(rep_f=20.0) if method == "rr+ra" else {}
    cfgs = [birr.preset(method, budget="full", dataset="cifar100", seed=s, batch=batch, batch_replay=batch,
                        bf16=bf16, compile=compile, device=str(device), **extra) for s in range(K)]
    stack = Learner(cfgs, device, data=fake_data(K, device))
    d = stack.data
    gens = stack.generators(1)
    stack.begin_task(1)
    idx = d.task_indices(1)[:, :batch]
    stack.step(1, d.train_x[idx], d.train_y.gather(1, idx), gens, None, None)
    stack.end_task()                                        # now in task 2: replay + SI active
    stack.begin_task(2)
    idx_t = d.task_indices(2)
    gens = stack.generators(2)
    # as in training: the loss terms logged every log_every-th iteration, RR/RA pair counts every one
    logbuf, rr_log, every = torch.zeros(K, len(T.TERMS), device=device), stack.new_rr_log(2), cfgs[0].log_every

    def one(i):
        j = (i * batch) % (idx_t.shape[1] - batch)
        idx = idx_t[:, j:j + batch]
        stack.step(2, d.train_x[idx], d.train_y.gather(1, idx), gens, logbuf if (i + 1) % every == 0 else None, rr_log)

    one.stack = stack     # for benchmarks/roofline.py, which counts what a step does
    return one


def row(method: str, batch: int, K: int, bf16: bool, compile: bool, s_per_iter: float) -> dict:
    return dict(method=method, batch=batch, K=K, bf16=bf16, compile=compile, s_per_iter=s_per_iter,
                run_iters_per_s=K / s_per_iter, table1_projection_min=TABLE1_RUN_ITERS * s_per_iter / K / 60,
                reference_s_per_iter=REFERENCE_S_PER_ITER.get(("bir+si" if method == "reference-pattern"
                                                               else method, batch)) if K == 1 else None)


def time_setting(method: str, batch: int, K: int, bf16: bool, device, warmup: int, iters: int,
                 compile: bool = False) -> dict:
    """One setting's steady-state row, plus what it costs before the steady state: `setup_s` is the
    wall time of building the stack (model, data, a task-1 step, the previous model) and its warm-up
    steps, less those steps at the steady rate. Compiled, that is mostly compile time, and a real run
    pays it too: once per stack on a GPU (the training pass for task 1's and for later tasks' batch,
    the update kernel with and without SI, the previous model's sampler and classifier: the graphs a
    Table 1 stack compiles, all in this window; the loss terms are compiled on a CPU only, one graph
    more per task there; tests/test_fast.py counts them). `table1_with_setup_min` adds it once per
    stack of K to the projection. Inductor caches compiled kernels (on disk too): a setting whose graphs
    were compiled before, here or by an earlier process, sets up faster (measured on the 2-core CPU,
    batch 256, bf16 + compile: 57 s for BI-R + SI first, 14 s for RR + RA right after it)."""
    sync = synchronizer(device)
    t0 = time.perf_counter()
    one = setting(method, batch, K, bf16, device, compile)
    for i in range(warmup):
        one(i)
    sync()
    first = time.perf_counter() - t0
    [s] = interleaved_medians([one], device, 0, iters)
    r = row(method, batch, K, bf16, compile, s)
    r["setup_s"] = max(0.0, first - (warmup + 1) * s)
    r["table1_with_setup_min"] = r["table1_projection_min"] + math.ceil(30 / K) * r["setup_s"] / 60
    return r


def one_hot_class_gate(M, g, y, dtype):
    """The reference's decoder gate (appendix §4.2) for every sample: its class vector times M, a known
    class's (y) as a one-hot product where birr's BIR.class_gate gathers M's row (the same bits)."""
    if y is not None:
        hot = one_hot(y, M.shape[1], dtype)
        g = hot if g is None else torch.cat([hot, g.to(dtype)], 1)
    return bmm(g.to(dtype), M.to(dtype))


class AutogradSI(SynapticIntelligence):
    """The reference's SI gradient: the penalty built into the autograd graph over every trainable
    parameter (omega is 0 outside fcE and the head, but the reference still computes it)."""

    def add_grad(self, params):
        every = list(params)
        (self.c * si_penalty([params[n] for n in every], [self.omega[n] for n in every],
                             [self.anchor[n] for n in every])).sum().backward()


class ReferencePatternStack(Learner):
    """birr's model with the reference's per-step bookkeeping (appendix §10 item 3-4): Adam one tensor at a
    time as torch 1.x ran it (~8 passes over the 12.9 M parameters), and the SI penalty built into the
    autograd graph over every trainable parameter (AutogradSI), instead of birr's fused Adam and
    closed-form SI gradient; and its decoder gates known classes with one-hot products g @ M (appendix
    §4.2), not birr's row gathers."""

    def __init__(self, cfgs, device, data):
        super().__init__(cfgs, device, data=data)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, betas=(0.9, 0.999), foreach=False)
        self.si = AutogradSI(self.params, self.si.names, self.si.c, self.si.eps)
        self.update = AdamSI(self.opt, self.params, self.si, self.K)
        self.model.class_gate = one_hot_class_gate      # one-hot gate products, as the reference (appendix §4.2)


def reference_pattern(batch: int, device):
    """The reference's per-iteration work pattern (appendix §10), rebuilt from birr's pieces so that the
    arithmetic is identical: per-image ToTensor + Normalize of `batch` uint8 images in a Python loop
    (data loading, num_workers=0), the frozen conv encoder on them every step (the reference does not
    precompute features), the ~2 x batch `.item()` host reads of `calculate_log_p_z` / `actual_y`, then
    the same training step with the reference's Adam and SI bookkeeping (ReferencePatternStack). It is
    a model of the reference, not its code: it shows what precomputing features, removing per-sample
    Python and fusing the optimiser and SI passes saves, on this machine, in this run."""
    from birr.encoder import ConvEncoder
    cfg = birr.preset("bir+si", budget="full", dataset="cifar100", seed=0, batch=batch, batch_replay=batch,
                      device=str(device))
    stack = ReferencePatternStack([cfg], device, data=fake_data(1, device))
    d = stack.data
    enc = ConvEncoder().to(device).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch * 4, 3, 32, 32), dtype=torch.uint8, generator=g)
    mean = torch.tensor([0.5071, 0.4865, 0.4409]).view(3, 1, 1)
    std = torch.tensor([0.2673, 0.2564, 0.2761]).view(3, 1, 1)
    gens = stack.generators(1)
    stack.begin_task(1)
    idx = d.task_indices(1)[:, :batch]
    stack.step(1, d.train_x[idx], d.train_y.gather(1, idx), gens, None, None)
    stack.end_task()
    stack.begin_task(2)
    gens = stack.generators(2)
    idx_t = d.task_indices(2)

    def one(i):
        j = (i * batch) % (images.shape[0] - batch)
        x_img = torch.stack([(images[j + b].float() / 255 - mean) / std for b in range(batch)]).to(device)
        with torch.no_grad():
            h = enc(x_img)[None]                                          # (1,B,1024)
        y = d.train_y.gather(1, idx_t[:, :batch])
        _ = [y[0, b].item() for b in range(batch)]                        # actual_y list
        _ = [y[0, b].item() for b in range(batch)]                        # calculate_log_p_z loop
        stack.step(2, h, y, gens, None, None)

    return one


def _one_setting(kind: str, batch: int, device, prec: str = "fp32", compile: bool = False):
    """The `one` of a reference-pattern comparison: the reference pattern, or birr's BI-R + SI run."""
    if kind == "ref":
        return reference_pattern(batch, device)
    return setting("bir+si", batch, 1, prec == "bf16", device, compile=compile)


def time_in_process(kind: str, batch: int, device, warmup: int, iters: int, prec: str = "fp32",
                    compile: bool = False) -> float:
    """Median s/iteration of one setting timed in a fresh Python process (nothing else resident)."""
    job = json.dumps(dict(kind=kind, batch=batch, device=str(device), warmup=warmup, iters=iters, prec=prec,
                          compile=compile))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", job], check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1].split()[-1])


def time_against_reference_pattern(batch: int, device, warmup: int, iters: int,
                                   variants=(("fp32", False),), rounds: int = 0) -> list[dict]:
    """The reference pattern and birr (BI-R + SI, one run) in each of `variants` ((precision, compile)
    pairs) at one batch size; birr's rows carry the speed-up. The reference
    runs fp32, as the reference code does: a bf16 row says what birr's bf16 flag buys against it (on a
    CPU with bf16 hardware, e.g. AVX512-BF16 or AMX; validated for accuracy by
    benchmarks/validate_flags.py), a compiled row what Config.compile adds (the warm-up covers the
    compilation). rounds = 0: all in this process, blocks interleaved; rounds > 0: each setting in a
    process of its own, `rounds` times in turn, s/iteration the median over rounds, the speed-up the
    median of the rounds' ratios (its min and max kept as speedup_range)."""
    if rounds:
        per_round = [[time_in_process("ref", batch, device, warmup, iters)]
                     + [time_in_process("birr", batch, device, warmup, iters, p, c) for p, c in variants]
                     for _ in range(rounds)]
        ref_s, *ours_s = (statistics.median(col) for col in zip(*per_round))
        ratios = [[r[0] / r[k + 1] for r in per_round] for k in range(len(variants))]
    else:
        ones = [_one_setting("ref", batch, device)] + [_one_setting("birr", batch, device, p, c) for p, c in variants]
        ref_s, *ours_s = interleaved_medians(ones, device, warmup, iters)
        ratios = [[ref_s / s] for s in ours_s]
    ref = row("reference-pattern", batch, 1, False, False, ref_s)
    ref["speedup_vs_reference"] = None
    ref["isolated_rounds"] = rounds
    rows = [ref]
    for (prec, comp), s, ratio in zip(variants, ours_s, ratios):
        ours = row("bir+si", batch, 1, prec == "bf16", comp, s)
        ours["isolated_rounds"] = rounds
        ours["speedup_vs_reference"] = ours["reference_s_per_iter"] / s if ours["reference_s_per_iter"] else None
        ours["speedup_vs_reference_pattern"] = statistics.median(ratio)
        ours["speedup_range"] = [min(ratio), max(ratio)]
        rows.append(ours)
    return rows


def profile(method: str, batch: int, K: int, bf16: bool, device, iters: int, out: Path) -> str:
    """Where one setting's step spends its time: torch.profiler over `iters` steps after 3 warm-up
    steps, the 30 costliest ops by device time (self time on a CPU), written to `out` and returned.
    The table to read before optimising the step further."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    one = setting(method, batch, K, bf16, device)
    for i in range(3):
        one(i)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        for i in range(iters):
            one(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=30)
    head = f"{method} batch {batch} K {K} {'bf16' if bf16 else 'fp32'} on {device}, {iters} steps, sorted by {key}\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + table)
    return head + table


def phases(method: str, batch: int, K: int, bf16: bool, device, iters: int, compile: bool = False) -> dict:
    """Where one setting's step goes, by phase: ms per step in the previous model's replay sampling and
    teacher pass, the training forward, the backward, the parameter update, and the rest (losses, data,
    random draws, Python), after 3 warm-up steps, over `iters` steps. Coarser than --profile, and cheap
    enough to run beside the timing; each phase is synchronised on a GPU so that its time is its own."""
    one = setting(method, batch, K, bf16, device, compile)
    stack = one.stack
    for i in range(3):
        one(i)
    sync = synchronizer(device)
    spent = dict(replay=0.0, teacher=0.0, forward=0.0, backward=0.0, update=0.0)

    def timed(name, fn):
        def run(*a, **k):
            sync()
            t0 = time.perf_counter()
            out = fn(*a, **k)
            sync()
            spent[name] += time.perf_counter() - t0
            return out
        return run

    originals = dict(sample=stack.sample, classify_prev=stack.classify_prev, forward=stack.forward)
    update_step = stack.update.step
    stack.sample, stack.classify_prev = timed("replay", stack.sample), timed("teacher", stack.classify_prev)
    stack.forward = timed("forward", stack.forward)
    stack.update.step = timed("update", update_step)
    backward = torch.Tensor.backward
    torch.Tensor.backward = timed("backward", backward)
    try:
        sync()
        t0 = time.perf_counter()
        for i in range(iters):
            one(i)
        sync()
        total = time.perf_counter() - t0
    finally:
        torch.Tensor.backward = backward
        for name, fn in originals.items():
            setattr(stack, name, fn)
        stack.update.step = update_step
    ms = {name: 1e3 * v / iters for name, v in spent.items()}
    ms["rest"] = 1e3 * total / iters - sum(ms.values())
    ms["step"] = 1e3 * total / iters
    return ms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--stack", type=int, nargs="+", default=[1])
    ap.add_argument("--methods", nargs="+", default=["bir+si", "rr+ra"])
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"],
                    help="time eager and/or torch.compile'd passes (warm-up covers the compile)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--no-baseline", action="store_true", help="skip the reference-pattern baseline")
    ap.add_argument("--rounds", type=int, default=3,
                    help="CPU: rounds of the reference comparison, each setting in its own process")
    ap.add_argument("--no-isolate", action="store_true",
                    help="time the reference comparison in this process, blocks interleaved (always so on a GPU)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)   # one setting, timed in a fresh process
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "speed.json"))
    ap.add_argument("--profile", metavar="FILE", help="profile the first method/batch/stack/precision instead of timing")
    ap.add_argument("--phases", action="store_true",
                    help="ms per step by phase for the first method/batch/stack/precision/compile, instead of timing")
    args = ap.parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        dev = torch.device(job["device"])
        one = _one_setting(job["kind"], job["batch"], dev, job["prec"], job["compile"])
        [s] = interleaved_medians([one], dev, job["warmup"], job["iters"])
        print(f"s_per_iter {s!r}")
        return
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.profile:
        print(profile(args.methods[0], args.batches[0], args.stack[0], args.precision[0] == "bf16", device,
                      args.iters, Path(args.profile)))
        return
    if args.phases:
        ms = phases(args.methods[0], args.batches[0], args.stack[0], args.precision[0] == "bf16", device,
                    args.iters, compile=args.compile[0] == "on")
        print(f"{args.methods[0]}, batch {args.batches[0]}, K {args.stack[0]}, {args.precision[0]}"
              f"{' + compile' if args.compile[0] == 'on' else ''} on {device}, ms per step over {args.iters} steps:")
        print("  " + ", ".join(f"{name} {v:.1f}" for name, v in ms.items()))
        return
    prov = T.provenance(device)
    print(f"device: {prov['device_name']} ({device}), torch {prov['torch']}, threads {prov['threads']}")
    print("speed-up = reference-pattern s/iter / birr s/iter, same batch, measured in this run (bir+si, K=1;\n"
          "on a CPU each in its own process, median of the rounds' ratios);\n"
          "ref s/it = the authors' code itself, timed once on another 2-core machine of this project;\n"
          "setup s = building a stack and its warm-up beyond the steady rate (mostly compile time, if compiled),\n"
          "+ setup = the Table 1 projection with it paid once per stack of K")
    print(f"{'method':<11} {'batch':>5} {'K':>3} {'prec':<9} {'s/iter':>8} {'run-it/s':>9} {'ref s/it':>8} "
          f"{'speed-up':>8} {'Table 1 (min)':>13} {'setup s':>7} {'+ setup':>9}")
    rows = []

    def show(name, r):
        ref, sp = r["reference_s_per_iter"], r.get("speedup_vs_reference_pattern")
        label = ("bf16" if r["bf16"] else "fp32") + ("+cmp" if r["compile"] else "")
        rng = r.get("speedup_range") if r.get("isolated_rounds") else None
        print(f"{name:<11} {r['batch']:>5} {r['K']:>3} {label:<9} {r['s_per_iter']:>8.4f} {r['run_iters_per_s']:>9.2f} "
              f"{ref if ref else float('nan'):>8.3f} {sp or float('nan'):>8.2f} {r['table1_projection_min']:>13.1f}"
              + (f" {r['setup_s']:>7.1f} {r['table1_with_setup_min']:>9.1f}" if "setup_s" in r else "")
              + (f"   ({rng[0]:.2f}-{rng[1]:.2f} over {r['isolated_rounds']} rounds in own processes)" if rng else ""),
              flush=True)

    done = set()
    if not args.no_baseline:
        with_ref = [(p, c == "on") for p in args.precision for c in args.compile
                    if "bir+si" in args.methods and 1 in args.stack]
        for batch in args.batches:
            rounds = 0 if args.no_isolate or device.type != "cpu" else args.rounds
            ref, *ours = time_against_reference_pattern(batch, device, args.warmup, args.iters,
                                                        with_ref or [("fp32", False)], rounds)
            rows += [ref, *ours]
            show("ref-pattern", ref)
            for r in ours:
                show("bir+si", r)
                done.add(("bir+si", batch, 1, "bf16" if r["bf16"] else "fp32", "on" if r["compile"] else "off"))
    for method in args.methods:
        for batch in args.batches:
            for K in args.stack:
                for prec, comp in [(p, c) for p in args.precision for c in args.compile]:
                    if (method, batch, K, prec, comp) in done:
                        continue
                    r = time_setting(method, batch, K, prec == "bf16", device, args.warmup, args.iters,
                                     compile=comp == "on")
                    r["speedup_vs_reference"] = r["reference_s_per_iter"] / r["s_per_iter"] if r["reference_s_per_iter"] else None
                    rows.append(r)
                    show(method, r)
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
