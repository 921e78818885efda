"""Config.compile and Config.bf16's fast paths: the same arithmetic as the learner's eager step, in
fewer passes over memory. Nothing here is needed to read the method; measurements are in
benchmarks/README.md.

* `compile_static`: every compiled pass, with static shapes and room for many graphs;
* `FusedAdamSI`: Adam's step and SI's per-step bookkeeping as one pass per parameter (adam_si_update),
  the update a compiled learner holds in place of learner.AdamSI;
* `bf16_copies`: with bf16 and compile, bf16 copies of the linear layers' weights that the fused update
  writes, so no step casts weights or gradients; `cast_linear_to_bf16`: the frozen previous model's
  layers cast once per task;
* `compile_learner`: the wiring of all of it into a learner.
"""
from __future__ import annotations

import torch

from birr import stacked
from birr.stacked import StackedLinear


def compile_static(fn, graphs: int = 256, **kw):
    """torch.compile(fn, dynamic=False, **kw), with room for `graphs` graphs of fn. Every compiled pass
    of a learner goes through here (Config.compile).

    Why static shapes: a graph's kernels, hence its roundings, then depend only on the shapes of the
    call, not on what the process compiled before. With dynamo's default, a second shape of the same
    function (task 2's 2B rows after task 1's B; the next task's slice over the classes seen so far;
    the next stack's sizes) switches it to one dynamic graph, which a run resumed in a fresh process
    never builds: resume would no longer be bit for bit (tests/test_fast.py, tests/test_resume.py).

    Why the room: dynamo keeps 8 graphs per function, then silently runs it eagerly (slower, and not
    the resumed run's bits). A 10-task run's loss terms need 10 graphs (compiled on a CPU: one per task,
    as their slices follow the classes seen so far), the training pass 2, and a process that trains
    several stacks in turn adds that again per stack of new shapes (benchmarks/README.md)."""
    compiled = torch.compile(fn, dynamic=False, **kw)
    cfg = torch._dynamo.config
    name = recompile_limit_name(cfg)
    limit = max(getattr(cfg, name), graphs)

    def static(*args, **kwargs):
        with cfg.patch(**{name: limit}):
            return compiled(*args, **kwargs)
    return static


def recompile_limit_name(dynamo_config) -> str:
    """The name of dynamo's per-function graph limit in this torch: `recompile_limit` from torch 2.7
    (pytorch#143709 renamed it, keeping the old name as an alias), `cache_size_limit` before. The package
    allows torch 2.4 (pyproject.toml), where reading the new name raised AttributeError as soon as a
    learner with Config(compile=True) was built."""
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            return name
    raise RuntimeError("torch._dynamo.config has neither recompile_limit nor cache_size_limit; "
                       "Config(compile=True) needs torch>=2.4 (pyproject.toml)")


# --- the fused parameter update ----------------------------------------------------------------------

def adam_si_update(si: tuple, rest: tuple, steps: list, *, lr: float, beta1: float, beta2: float, eps: float,
                   si_grad: bool, kernel=None) -> None:
    """Adam's step fused with SI's per-step bookkeeping, one pass per parameter.

    si = (params, grads, exp_avgs, exp_avg_sqs, lows, scales, anchors, Ws) of the SI parameters,
    rest = (params, grads, exp_avgs, exp_avg_sqs, lows) of the others, steps = Adam's step counters.
    lows[i] is None, or parameter i's bf16 copy (bf16_copies): then grads[i] is the bf16 gradient of that
    copy, widened here (exactly), and the copy is rewritten from the new fp32 value. Per parameter, the
    eager update (learner.AdamSI) does:

        g += 2 c omega (p - p*)                      SI gradient in closed form (appendix §6), if si_grad
        m = beta1 m + (1 - beta1) g                  Adam (torch.optim.Adam, appendix §1: betas 0.9, 0.999)
        v = beta2 v + (1 - beta2) g^2
        p_new = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        W += -g (p_new - p)                          SI path integral (appendix §6 step 3.4)

    as ~5 passes over the parameters; under torch.compile the per-element work (adam_si_pass) becomes
    one kernel per parameter that reads p, g, m, v (and the SI scale, anchor and W) once and writes p,
    m, v (and W, and the bf16 copy) once. The state is torch.optim.Adam's own (same tensors, same
    names), so checkpoints move freely between compiled and eager runs. The numbers equal the eager
    update's up to rounding (tests/test_fast.py).

    The step counters and Adam's bias corrections (scalars) are computed here, the per-element work in
    `kernel` (adam_si_pass, compiled under Config.compile): inside a compiled kernel, inductor would
    recompute beta^t in every vector iteration (two scalar pow per 16 elements), which made the update
    much slower than its memory traffic (benchmarks/README.md).
    """
    torch._foreach_add_(steps, 1.0)
    step = steps[0]
    step_size = lr / (1 - torch.pow(beta1, step))
    bias2_sqrt = torch.sqrt(1 - torch.pow(beta2, step))
    (kernel or adam_si_pass)(si, rest, step_size, bias2_sqrt, beta1=beta1, beta2=beta2, eps=eps, si_grad=si_grad)


def adam_si_pass(si: tuple, rest: tuple, step_size: torch.Tensor, bias2_sqrt: torch.Tensor, *, beta1: float,
                 beta2: float, eps: float, si_grad: bool) -> None:
    """adam_si_update's per-element work, given step_size = lr / (1 - beta1^t) and sqrt(1 - beta2^t)."""
    def adam(p, g, m, v):
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        return p - step_size * m / (v.sqrt() / bias2_sqrt + eps)

    for p, g, m, v, low, scale, anchor, W in zip(*si):
        g = g.float()                 # a bf16 copy's gradient: widened exactly, as autocast's cast does
        if si_grad:
            g = g + scale * (p - anchor)
        new = adam(p, g, m, v)
        W.addcmul_(g, p - new)        # -g (p_new - p_old), as the eager update writes it
        p.copy_(new)
        if low is not None:
            low.copy_(new)            # round to nearest even: the cast autocast would make next step
    for p, g, m, v, low in zip(*rest):
        new = adam(p, g.float(), m, v)
        p.copy_(new)
        if low is not None:
            low.copy_(new)


class FusedAdamSI:
    """The update of appendix §6 step 3.3-3.4 (learner.AdamSI's), through adam_si_update: opt is the
    torch.optim.Adam whose state it keeps, params the model's parameters by name, si the learner's
    SynapticIntelligence, low the bf16 copies ({} without), kernel the compiled adam_si_pass (None: eager)."""

    def __init__(self, opt: torch.optim.Adam, params: dict, si, low: dict, kernel=None):
        self.opt, self.params, self.si, self.low, self.kernel = opt, params, si, low, kernel
        self.rest_names = [n for n in params if n not in set(si.names)]

    def _lists(self, names):
        ps, lows = [self.params[n] for n in names], [self.low.get(n) for n in names]
        states = [stacked.adam_state(self.opt, p) for p in ps]
        grads = [p.grad if low is None else low.grad for p, low in zip(ps, lows)]
        return ps, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], lows

    def step(self, si_grad: bool) -> None:
        group, names = self.opt.param_groups[0], self.si.names
        beta1, beta2 = group["betas"]
        si = (*self._lists(names), [self.si.scale[n] for n in names] if si_grad else [None] * len(names),
              [self.si.anchor[n] for n in names], [self.si.W[n] for n in names])
        rest = self._lists(self.rest_names)
        steps = [self.opt.state[p]["step"] for p in self.params.values()]
        with torch.no_grad():
            adam_si_update(si, rest, steps, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                           si_grad=si_grad, kernel=self.kernel)


# --- bf16 -----------------------------------------------------------------------------------------

def bf16_copies(model: torch.nn.Module) -> tuple[dict, callable]:
    """A bf16 copy of every linear layer's weight and bias, by parameter name, and the training pass that
    reads the copies instead of the fp32 parameters (Config.bf16 with Config.compile).

    Why: under autocast every step casts the fp32 weights to bf16 for its matmuls, and casts their bf16
    gradients back to fp32 for Adam: two extra passes over the parameters (12 bytes per parameter,
    benchmarks/roofline.py --bf16). Here the fused update writes the copy from the new fp32 value it has
    just computed, in the same pass, and reads the bf16 gradient directly. The numbers are autocast's,
    bit for bit: the copy is the round-to-nearest-even cast autocast would make, and the gradient
    autocast hands Adam is this bf16 gradient widened (tests/test_fast.py). The fp32 parameters stay
    the master copy: Adam, SI, checkpoints, the previous model and evaluation read only them. Needs the
    fused update, so it comes with compile."""
    names = {f"{mod_name}.{p_name}" for mod_name, mod in model.named_modules()
             if isinstance(mod, StackedLinear) for p_name, _ in mod.named_parameters(recurse=False)}
    low = {n: p.detach().to(torch.bfloat16).requires_grad_() for n, p in model.named_parameters() if n in names}

    def train_pass(x, g, eps, y):
        return torch.func.functional_call(model, low, (x, g, eps, y), strict=False)
    return low, train_pass


def refresh_bf16_copies(low: dict, params: dict) -> None:
    """Rewrite the bf16 copies from the fp32 parameters (after a checkpoint is loaded), in place: a
    compiled training pass stays bound to the same tensors."""
    with torch.no_grad():
        for n, copy in low.items():
            copy.copy_(params[n])


def cast_linear_to_bf16(model: torch.nn.Module) -> None:
    """The frozen previous model's linear layers in bf16, cast once per task: the very rounding autocast
    would otherwise repeat in every step (the same bits; copying fp32 weights into them later rounds the
    same way)."""
    for mod in model.modules():
        if isinstance(mod, StackedLinear):
            mod.to(torch.bfloat16)


def compile_learner(learner) -> None:
    """Config.compile: the learner's training pass (through bf16 copies with bf16), its update (Adam + SI
    as one kernel per parameter) and, on a CPU, its loss terms compiled. On a CPU the loss terms' ~60
    small eager ops and ~40 backward ops each cost their dispatch on the step's critical path; on a GPU
    they queue behind the matmuls, and a compile per task (their slices change with the task) would only
    cost time. The previous model's passes are compiled as it is made (learner.Learner.end_task)."""
    if learner.cfg.bf16:
        learner.low, learner.forward = bf16_copies(learner.model)
    learner.forward = compile_static(learner.forward)
    learner.update = FusedAdamSI(learner.opt, learner.params, learner.si, learner.low,
                                 kernel=compile_static(adam_si_pass, fullgraph=True))
    if learner.device.type == "cpu":
        learner.losses = compile_static(learner.losses)
