"""How fast could one training step be? A roofline count of birr's step.

    python benchmarks/roofline.py                        # K = 30 runs, batch 512, RR + RA (Table 1's stack)
    python benchmarks/roofline.py --method bir+si --stack 30 --batch 512

Runs a stack of 2 runs (full CIFAR-100 model, task 2: replay and SI on, training's logging) on the
CPU under a dispatch mode that sees every tensor operation of one step, and counts

* matmul FLOPs (mm / bmm / baddbmm / addmm, torch.utils.flop_counter's formulas), and
* bytes moved by everything else: the sizes of each op's tensor inputs and outputs (views move
  nothing and are skipped; a gather reads only the rows it returns; a real kernel may read less, e.g.
  a broadcast, or more, e.g. a reduction's second pass, so this is a model, not a measurement).

Everything in a stack scales with K (each run has its own weights, batch and replay), so the counts of
2 runs are scaled to `--stack`. The lower bound on a GPU is FLOPs / matmul peak + bytes / memory
bandwidth (no overlap assumed between the two, which a real step partly has): with the H200's
figures (TF32 ~495 TFLOP/s and bf16 ~990 dense by the datasheet; ~4.3 TB/s copy bandwidth measured
on this workplace's H200, KINDS.md), it says what the measured step (benchmarks/results/speed.json)
could still gain and where: matmuls, the optimiser and SI bookkeeping, or the rest of the elementwise
work. Nothing is written; it prints a table.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import speed  # noqa: E402
from birr import fast, stacked  # noqa: E402

MATMULS = {"aten.mm.default", "aten.bmm.default", "aten.baddbmm.default", "aten.addmm.default"}
VIEWS = {"view", "_unsafe_view", "t", "transpose", "expand", "slice", "select", "as_strided", "permute",
         "unsqueeze", "squeeze", "detach", "alias", "lift_fresh", "_reshape_alias", "unbind", "split"}
GATHERS = {"aten.index.Tensor", "aten.gather.default", "aten.index_select.default"}
H200 = dict(tf32=495e12, bf16=990e12, bandwidth=4.3e12)


class Count(TorchDispatchMode):
    """Matmul FLOPs and non-matmul bytes of every op run inside it, by op name."""

    def __init__(self):
        super().__init__()
        self.flops = defaultdict(float)
        self.bytes = defaultdict(float)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func)
        if func._overloadpacket in flop_registry and name in MATMULS:
            self.flops[name] += flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
            return out
        if name.split(".")[1] in VIEWS:
            return out
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(a, torch.Tensor)]
        if name in GATHERS:   # reads only the rows it returns, not its whole source
            tensors = [t for t in tensors if t is not args[0]]
            tensors += [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        if not any(isinstance(t, torch.Tensor) for t in torch.utils._pytree.tree_leaves(out)):
            # an in-place op returning nothing (fused Adam, foreach ops): what its schema says it mutates
            # is written as well as read (fused Adam's schema marks the gradients too: 4 bytes of 28 over)
            for arg, val in zip(func._schema.arguments, args):
                if arg.alias_info is not None and arg.alias_info.is_write:
                    tensors += [t for t in torch.utils._pytree.tree_leaves(val) if isinstance(t, torch.Tensor)]
        moved = sum(t.numel() * t.element_size() for t in tensors)
        self.bytes[name] += moved
        return out


def count_step(method: str, batch: int, K: int = 2, bf16: bool = False,
               copies: bool = False) -> tuple[Count, Count, "speed.Learner"]:
    """Counts of one task-2 step of a K-run stack (full model, CPU; fp32, or bf16 autocast, whose casts
    and half-size activations are then counted too), the counts of its parameter update alone (Adam + SI
    bookkeeping: eager, or with `copies` the uncompiled fast.FusedAdamSI), and the stack. `copies` (bf16
    only): the linear layers' bf16 weight copies of bf16 + compile (fast.bf16_copies), so no
    weight or gradient cast is counted. Every layer's matmul is one batched call for the stack, as on a
    GPU (birr.stacked.batched in place of the CPU's call per run, birr.stacked.run_by_run)."""
    run_by_run, stacked.run_by_run = stacked.run_by_run, stacked.batched
    try:
        return _count_step(method, batch, K, bf16, copies)
    finally:
        stacked.run_by_run = run_by_run


def _count_step(method, batch, K, bf16, copies):
    one = speed.setting(method, batch, K, bf16, torch.device("cpu"))
    stack, update = one.stack, Count()
    if copies:
        stack.low, stack.forward = fast.bf16_copies(stack.model)
        stack.update = fast.FusedAdamSI(stack.opt, stack.params, stack.si, stack.low)
    one(0)
    plain_update = stack.update.step

    def counted_update(**kw):
        with update:
            plain_update(**kw)

    stack.update.step = counted_update
    with Count() as c:
        one(1)
    stack.update.step = plain_update
    return c, update, stack


def fused_update_bytes(stack) -> float:
    """Bytes the compiled update (fast.adam_si_update, Config.compile) moves: each parameter's p, g, m, v
    read once and p, m, v written once (7 x 4 bytes), plus the SI scale, anchor and W read and W written
    (4 x 4 bytes) for the SI parameters. A parameter with a bf16 copy (stack.low) has a 2-byte gradient
    and its copy written (2 bytes): the same 28."""
    si = set(stack.si.names)
    return sum(p.numel() * 4 * (7 + (4 if n in si else 0)) for n, p in stack.params.items())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="rr+ra", choices=["bir+si", "rr+ra"])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--stack", type=int, default=30)
    ap.add_argument("--bf16", action="store_true", help="count the step under bf16 autocast")
    ap.add_argument("--measured-ms", type=float, default=None, help="a measured step time to compare with")
    args = ap.parse_args(argv)
    c, update, stack = count_step(args.method, args.batch, bf16=args.bf16)
    if args.bf16:     # what compile runs: the bf16 weight copies, no casts (the update is replaced below)
        c_copies, update_copies, _ = count_step(args.method, args.batch, bf16=True, copies=True)
    scale = args.stack / stack.K
    flops, moved = sum(c.flops.values()) * scale, sum(c.bytes.values()) * scale
    eager_upd, fused_upd = sum(update.bytes.values()) * scale, fused_update_bytes(stack) * scale
    print(f"{args.method}, batch {args.batch}, {args.stack} runs stacked, {'bf16 autocast' if args.bf16 else 'fp32'}, "
          "one task-2 step (counted on 2 runs, scaled):")
    print(f"  matmul work       {flops / 1e12:8.2f} TFLOP   ({flops / args.stack / 1e9:.1f} GFLOP per run)")
    print(f"  other bytes moved {moved / 1e9:8.2f} GB")
    for prec in (("bf16",) if args.bf16 else ("tf32", "bf16")):
        t_mm, t_mem = flops / H200[prec] * 1e3, moved / H200["bandwidth"] * 1e3
        print(f"  H200 lower bound, {prec}: {t_mm:6.2f} ms matmul + {t_mem:6.2f} ms memory = {t_mm + t_mem:6.2f} ms"
              + (f"  (measured {args.measured_ms:.1f} ms: {args.measured_ms / (t_mm + t_mem):.1f}x the bound)"
                 if args.measured_ms else ""))
    if args.bf16:
        compiled = (sum(c_copies.bytes.values()) - sum(update_copies.bytes.values())) * scale + fused_upd
    else:
        compiled = moved - eager_upd + fused_upd
    print(f"  of which Adam + SI bookkeeping {eager_upd / 1e9:.2f} GB; fused into one kernel per parameter "
          f"(--set compile=true) {fused_upd / 1e9:.2f} GB,\n  i.e. {compiled / 1e9:.2f} GB in all"
          + (" (with the bf16 weight copies: no weight or gradient casts)" if args.bf16 else "")
          + " and a bound of "
          + ", ".join(f"{prec} {(flops / H200[prec] + compiled / H200['bandwidth']) * 1e3:.2f} ms"
                      for prec in (("bf16",) if args.bf16 else ("tf32", "bf16")))
          + " (the compiled model's own fusions not counted)")
    print("  heaviest non-matmul ops (GB per step):")
    for name, b in sorted(c.bytes.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {name:<40} {b * scale / 1e9:7.2f}")


if __name__ == "__main__":
    main()
