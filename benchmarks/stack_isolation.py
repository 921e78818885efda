"""Does a run's matmul depend on the runs stacked beside it? A diagnostic for the CPU's kernels.

    python benchmarks/stack_isolation.py                 # smoke and full layer shapes, fp32 and bf16
    python benchmarks/stack_isolation.py --no-record     # print only

Why: `birr.run_many` trains K runs as one stacked model whose layers are batched matmuls
(`stacked.StackedLinear`), on the promise that each run gets the numbers it would get alone. On the
AVX512-BF16 EPYC that held bit for bit, fp32 and bf16, with one batched call per layer for the whole
stack. In CI on an Intel Xeon with AMX, a bf16 run's logged KL differed from its stacked twin by 4.7e-5
relative, so there the bf16 matmuls depended on the stack. Two causes are possible, and they matter
differently:

* rounding: the kernel picks its blocking (and with it the order of the sums) by the batch shape;
  a run's result is as good alone as stacked, only other bits;
* leakage: the kernel reads another run's rows, e.g. in the tail of an inner dimension that is not a
  multiple of its tile (uxlfoundation/oneDNN#5717 reports NaN leaking so in AMX bf16 matmuls when
  K % 32 != 0; birr's H = 2000 and Z = 100 are not multiples of 32); then stacking is wrong, not
  just different.

Answered on such a Xeon (2026-12-04, the AMX entry of results/stack_isolation.json): rounding, no
leakage. One batched call over the stack gave run 0 other bits than alone in 4 of the 12 layer shapes
in bf16 (oneDNN's AMX kernels: capped at AVX512_CORE_BF16, none) and in 5 in fp32 (MKL: under every
cap). Since then birr hands each run of a CPU stack its own call (`birr.stacked.bmm`), so both are
checked: `call = batched`, one `baddbmm` for the stack (what the CPU's kernels do, and what birr's
layer did before), and `call = birr`, the StackedLinear layer as it is (bit for bit on every CPU).

For each layer shape of the model (forward x @ W + b, and the backward's two matmuls), run 0 is
computed alone (K = 1) and in a stack of 3, and then again with the other two runs' inputs replaced
by NaN and by values 1e6 times larger. Columns: `alone == stacked` (bitwise) with the largest
difference relative to the output's scale; `NaN leaks` / `scale leaks`: whether run 0's output
changed when only the other runs' inputs did (any change is leakage; the kernel and shapes are the
same). Expected on a correct CPU: no leak anywhere; `alone == stacked` everywhere with `call = birr`.

Appends one entry (provenance: CPU, vector ISA, oneDNN version and the ISA cap it ran under,
threads) to benchmarks/results/stack_isolation.json, atomically, unless --no-record. oneDNN's
kernels of a lesser ISA can be had on the same CPU with its own switch, e.g.
`ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/stack_isolation.py` (not AMX on a CPU without it).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from birr import train as T  # noqa: E402
from birr.stacked import StackedLinear  # noqa: E402

# (name, fan_in, fan_out) of each linear layer (appendix §4), at the smoke size (H=64, Z=16, C=4) and the
# CIFAR-100 size (H=2000, Z=100, C=100); D = 1024 encoder features
SHAPES = {
    "smoke": dict(batch=32, layers=[("fcE1", 1024, 64), ("fcE2", 64, 64), ("toZ", 64, 16), ("head", 64, 4),
                                    ("fromZ", 16, 64), ("fcD2", 64, 1024)]),
    "full": dict(batch=256, layers=[("fcE1", 1024, 2000), ("fcE2", 2000, 2000), ("toZ", 2000, 100),
                                    ("head", 2000, 100), ("fromZ", 100, 2000), ("fcD2", 2000, 1024)]),
}
STACK = 3


def onednn_version() -> str:
    m = re.search(r"MKL-DNN (v[\d.]+)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def onednn_isa_cap() -> str:
    """The ISA cap oneDNN was started under (ONEDNN_MAX_CPU_ISA, or its older name), "ALL" if none."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL"


CALLS = ("batched", "birr")


def outputs(layer: StackedLinear, x: torch.Tensor, bf16: bool, call: str = "birr") -> list[torch.Tensor]:
    """Run 0's forward output, input gradient and weight gradient (float32 copies). call: "birr" (the
    layer's own forward) or "batched" (one baddbmm over the whole stack)."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
        y = layer(x) if call == "birr" else torch.baddbmm(layer.bias, x, layer.weight)
    # a fixed upstream gradient per run (run 0's is the same in every call)
    g = torch.linspace(-1, 1, y[0].numel()).reshape(y[0].shape).to(y.dtype).expand_as(y).contiguous()
    y.backward(g)
    return [y[0].detach().float(), x.grad[0].float(), layer.weight.grad[0].float()]


def check(fan_in: int, fan_out: int, batch: int, bf16: bool, call: str = "birr") -> dict:
    gens = [torch.Generator().manual_seed(s) for s in range(STACK)]
    stacked = StackedLinear(fan_in, fan_out, gens)
    alone = StackedLinear(fan_in, fan_out, gens[:1])
    with torch.no_grad():
        alone.weight.copy_(stacked.weight[:1])
        alone.bias.copy_(stacked.bias[:1])
    x = torch.randn(STACK, batch, fan_in, generator=torch.Generator().manual_seed(7))
    ref = outputs(alone, x[:1], bf16, call)
    st = outputs(stacked, x, bf16, call)
    nan_x, big_x = x.clone(), x.clone()
    nan_x[1:] = float("nan")
    big_x[1:] *= 1e6
    nan_out, big_out = outputs(stacked, nan_x, bf16, call), outputs(stacked, big_x, bf16, call)
    rel = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30)) for a, b in zip(ref, st))
    return dict(alone_equals_stacked=all(torch.equal(a, b) for a, b in zip(ref, st)), max_rel_diff=rel,
                nan_leaks=any(bool(o.isnan().any()) for o in nan_out),
                scale_leaks=not all(torch.equal(a, b) for a, b in zip(st, big_out)))


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--no-record", action="store_true", help="print the table, write nothing")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "stack_isolation.json")
    args = ap.parse_args(argv)
    rows = []
    print(f"{'call':7} {'size':6} {'layer':6} {'in':>5} {'out':>5} {'dtype':5} {'alone==stacked':>14} "
          f"{'max rel diff':>12} {'NaN leaks':>9} {'scale leaks':>11}")
    for call in CALLS:
        for size in args.sizes:
            for name, fan_in, fan_out in SHAPES[size]["layers"]:
                for bf16 in (False, True):
                    r = dict(call=call, size=size, layer=name, fan_in=fan_in, fan_out=fan_out,
                             dtype="bf16" if bf16 else "fp32", **check(fan_in, fan_out, SHAPES[size]["batch"], bf16, call))
                    rows.append(r)
                    print(f"{call:7} {size:6} {name:6} {fan_in:5} {fan_out:5} {r['dtype']:5} "
                          f"{str(r['alone_equals_stacked']):>14} {r['max_rel_diff']:12.1e} {str(r['nan_leaks']):>9} "
                          f"{str(r['scale_leaks']):>11}")
    prov = dict(T.provenance(torch.device("cpu")), onednn=onednn_version(), onednn_max_cpu_isa=onednn_isa_cap())
    leaks = [f"{r['call']} {r['size']} {r['layer']} {r['dtype']}" for r in rows if r["nan_leaks"] or r["scale_leaks"]]
    differ = {c: sum(not r["alone_equals_stacked"] for r in rows if r["call"] == c) for c in CALLS}
    print(f"{prov['device_name']}, {prov['cpu_isa']}, oneDNN {prov['onednn']} (ISA cap {prov['onednn_max_cpu_isa']}), "
          f"{prov['threads']} threads: "
          + (f"LEAKS in {', '.join(leaks)}" if leaks else "no leakage between stacked runs")
          + f"; alone != stacked in {differ['batched']} of {len(rows) // 2} (one batched call), {differ['birr']} (birr's layer)")
    if not args.no_record:
        history = json.loads(args.out.read_text()) if args.out.exists() else []
        history.append(dict(provenance=prov, stack=STACK, rows=rows))
        T.atomic_write_json(args.out, history)
        print(f"recorded in {args.out}")
    return rows


if __name__ == "__main__":
    main()
