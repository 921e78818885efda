"""K runs as one model: the machinery that lets thirty runs train in one process, out of the reader's way.

Every parameter of birr has a leading *run* axis K (`BIR([seed, ...])`): one run's slice is initialised
from its own seed, sees only its own data and loss, and is updated by elementwise rules (Adam, SI), so
a stack of K runs is K independent runs. Two things could still mix them, and this module keeps both
apart on a CPU, where a run trained in a stack ends with the bits it has alone (tests/test_stacked.py):

* a matmul library picks its kernel, and with it the order of its sums, by the shapes it is handed,
  so one batched call over the stack may round a run's numbers by the stack around it: `bmm` hands
  each run its own call of the shape it has alone (benchmarks/stack_isolation.py measures it);
* torch's fused Adam kernel rounds a tensor's last, partial vector differently from its body, so a
  run's elements at the seam depend on the run after it: `adam_step` steps each run's slice as a
  tensor of its own.

On a GPU both make one call for the whole stack. `run_part` / `join_states` take a stack's state apart by
run and put runs together into any slots of another stack (per-run checkpoints, birr.train).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def batched(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """One batched call for the whole stack: (K,B,n) @ (K,n,m) (+ bias (K,1,m)) -> (K,B,m)."""
    return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)


def run_by_run(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The same product as one call per run, each of the shapes the run has alone, (1,B,n) @ (1,n,m).
    Eager, the calls write into one (K,...) result (`_RunByRun`); compiled, `split` / `cat`, which
    inductor fuses away."""
    if not torch.compiler.is_compiling():
        return _RunByRun.apply(a, b, bias)
    biases = [None] * a.shape[0] if bias is None else bias.split(1)
    return torch.cat([batched(x, w, c) for x, w, c in zip(a.split(1), b.split(1), biases)])


def bmm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Every run's own product: (K,B,n) @ (K,n,m) (+ bias (K,1,m)) -> (K,B,m); every matmul of a stack.

    On a GPU, and for a single run, one batched call (`batched`). For K > 1 on a CPU, one call per run
    (`run_by_run`): handed the calls it makes alone, forward and both backward matmuls, a run gets the
    bits it has alone on any CPU (tests/test_stacked.py); a single run's call is unchanged."""
    if a.device.type != "cpu" or a.shape[0] == 1:
        return batched(a, b, bias)
    return run_by_run(a, b, bias)


class _RunByRun(torch.autograd.Function):
    """`run_by_run`'s calls, eager on a CPU, each written into its slice of one (K,...) tensor.

    Autograd over `split` + per-run calls + `cat` computes the same bits, but the backward of each
    `split` is a `cat` of the per-run gradients, one more copy of every weight and input gradient per
    step (benchmarks/README.md). Here every call of the graph a run has alone is made with `out=` a
    slice instead, the same kernels (bmm / baddbmm are structured ops: the `out=` and functional forms
    share one implementation) on the same operands:
      forward   c_k + a_k @ b_k                     (autocast's casts made here, as it makes them)
      backward  g_k @ b_k^T,  a_k^T @ g_k,  g_k summed to c_k's shape
    which are autograd's formulas for baddbmm (derivatives.yaml) and the engine's `sum_to` for a
    broadcast bias; gradients come back in the compute dtype and the engine casts them to the inputs'
    dtypes, as autocast's cast nodes do. Tested bit for bit against autograd on the run alone
    (tests/test_stacked.py, every layer shape, fp32 and bf16) and through training (tests/test_stacked.py)."""

    @staticmethod
    def forward(ctx, a, b, bias):
        if torch.is_autocast_enabled("cpu"):          # bmm / baddbmm are lower-precision autocast ops
            dt = torch.get_autocast_dtype("cpu")
            a, b, bias = (t if t is None or not t.is_floating_point() or t.dtype == torch.float64 else t.to(dt)
                          for t in (a, b, bias))
        out = a.new_empty(a.shape[0], a.shape[1], b.shape[2])
        for k in range(a.shape[0]):
            if bias is None:
                torch.bmm(a[k:k + 1], b[k:k + 1], out=out[k:k + 1])
            else:
                torch.baddbmm(bias[k:k + 1], a[k:k + 1], b[k:k + 1], out=out[k:k + 1])
        ctx.save_for_backward(a, b)
        ctx.bias_shape = None if bias is None else bias.shape
        return out

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b, need_bias = ctx.needs_input_grad
        ga = g.new_empty(a.shape) if need_a else None
        gb = g.new_empty(b.shape) if need_b else None
        gc = g.new_empty(ctx.bias_shape) if need_bias else None
        for k in range(g.shape[0]):
            gk = g[k:k + 1]
            if need_a:
                torch.bmm(gk, b[k:k + 1].transpose(1, 2), out=ga[k:k + 1])
            if need_b:
                torch.bmm(a[k:k + 1].transpose(1, 2), gk, out=gb[k:k + 1])
            if need_bias:
                gc[k:k + 1] = gk.sum_to_size(gc[k:k + 1].shape)
        return ga, gb, gc


def _uniform(shape, bound, gens):
    """U(-bound, bound) per run, each slice drawn from its own run's generator."""
    return torch.stack([(torch.rand(shape, generator=g) * 2 - 1) * bound for g in gens])


class StackedLinear(nn.Module):
    """K independent `Linear(fan_in, fan_out)` layers applied as one (`bmm`).

    Init as the reference (appendix §4.1, `reset_parameters`): weights and biases U(-1/sqrt(fan_in), +).
    The weight is stored (K, fan_in, fan_out) so the forward is x @ W without a transpose.
    """

    def __init__(self, fan_in: int, fan_out: int, gens: list[torch.Generator], bias: bool = True):
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(_uniform((fan_out, fan_in), bound, gens).transpose(1, 2).contiguous())
        self.bias = nn.Parameter(_uniform((1, fan_out), bound, gens)) if bias else None

    def forward(self, x):  # x: (K, B, fan_in) -> (K, B, fan_out)
        return bmm(x, self.weight, self.bias)


# --- Adam, run by run ---------------------------------------------------------------------------

def adam_state(opt: torch.optim.Adam, p: torch.Tensor) -> dict:
    """torch.optim.Adam's state of p, created as its fused implementation creates it on the first step."""
    st = opt.state[p]
    if not st:
        st.update(step=torch.zeros((), dtype=torch.float32, device=p.device),
                  exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                  exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
    return st


def adam_step(opt: torch.optim.Adam, params: list[torch.Tensor], K: int) -> None:
    """torch.optim.Adam's fused step (same state, same rule) on `params`, each run's slice of every
    parameter handed to the kernel as a tensor of its own on a CPU, so that a run's update has the bits
    it has when the run trains alone: on a whole (K, ...) parameter the fused CPU kernel rounded a run's
    last elements (those after its last full vector) by the run that followed in memory, one ulp in
    Adam's v from step 2 on (tests/test_stacked.py). CUDA's fused kernel has no vector tail (every
    element goes through the same code), so there the whole tensors go in, as torch.optim passes
    them; that path's per-run bits are checked on a GPU only (scripts/gpu_session.py)."""
    group = opt.param_groups[0]
    beta1, beta2 = group["betas"]
    states = [adam_state(opt, p) for p in params]
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1)
    K = K if params[0].device.type == "cpu" else 1

    def runs(ts):
        return [t[k] for t in ts for k in range(K)] if K > 1 else list(ts)

    torch._fused_adam_(runs(params), runs([p.grad for p in params]), runs([s["exp_avg"] for s in states]),
                       runs([s["exp_avg_sq"] for s in states]), [], [s for s in steps for _ in range(K)],
                       lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                       eps=group["eps"], amsgrad=False, maximize=False, grad_scale=None, found_inf=None)


# --- a stack's state, run by run -----------------------------------------------------------------

def map_tensors(obj, fn):
    """obj (nested dicts, lists, tuples) with fn applied to every tensor in it."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def run_part(state: dict, k: int, K: int) -> dict:
    """Run k's part of a K-run stack's state, a copy: the state of a stack of that run alone, which
    join_states puts into any slot of any stack. Every tensor of the state has the runs on its first
    axis except Adam's step counts (0-d, one per parameter), which the runs of a stack share as they
    share their task."""
    def part(v):
        if v.dim() == 0:
            return v.clone()
        if v.shape[0] != K:
            raise RuntimeError(f"a state tensor of shape {tuple(v.shape)} has no run axis of size {K}")
        return v[k:k + 1].clone()    # a copy, not a view: torch.save would write the whole stack's storage
    return map_tensors(state, part)


def join_states(parts: list, where: str = "state"):
    """The state of a stack whose slot k holds the run of parts[k] (each a run_part): tensors with a
    run axis are concatenated on it, everything else (Adam's step counts and settings) must be the
    same in every part. Copies only, so a run's numbers are its own bit for bit."""
    first = parts[0]
    if isinstance(first, torch.Tensor) and first.dim() > 0:
        return torch.cat(parts)
    if isinstance(first, dict):
        if any(not isinstance(p, dict) or p.keys() != first.keys() for p in parts):
            raise ValueError(f"{where} has other keys in some runs")
        return {k: join_states([p[k] for p in parts], f"{where}.{k}") for k in first}
    if isinstance(first, (list, tuple)):
        if any(not isinstance(p, type(first)) or len(p) != len(first) for p in parts):
            raise ValueError(f"{where} has another length in some runs")
        return type(first)(join_states([p[i] for p in parts], f"{where}[{i}]") for i in range(len(first)))
    same = (lambda a, b: isinstance(b, torch.Tensor) and torch.equal(a, b)) if isinstance(first, torch.Tensor) \
        else (lambda a, b: a == b)
    if not all(same(first, p) for p in parts[1:]):
        raise ValueError(f"{where} differs between the runs")
    return first
