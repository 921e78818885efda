"""K runs as one model (birr.stacked): each run's matmuls and Adam step have the bits of the run alone, so
a run trained in a stack ends with the bits it has trained alone (tiny synthetic runs, at the end)."""
import pytest
import torch

import birr
from birr import stacked as S
from birr import train as T


@pytest.fixture
def two_threads():
    """Two threads, as the benchmarks run: with one (the suite's default) the kernels split no work
    and one batched call over a stack often gives the alone bits too, hiding a wrong per-run path."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("B,n,m,bias,transposed", [     # the layer shapes of benchmarks/stack_isolation.py
    (256, 1024, 2000, True, False), (256, 2000, 2000, True, False), (256, 2000, 100, True, False),
    (256, 100, 2000, True, False), (256, 2000, 1024, True, False), (32, 1024, 64, True, False),
    (32, 64, 1024, True, False),
    (256, 100, 100, False, True)])       # the GMM likelihood's products: a transposed (K,C,Z) mode tensor
def test_cpu_stack_matmul_is_each_run_alone_bitwise_with_gradients(B, n, m, bias, transposed, bf16, two_threads):
    """stacked.bmm on a K-run CPU stack (`_RunByRun`: per-run calls written into one result, its own
    backward) gives every run the bits of autograd's baddbmm / bmm on that run alone (K = 1):
    output and the gradients of input, weight and bias, fp32 and under bf16 autocast, at the full
    model's layer shapes. This is what makes stacked training exact (the training tests below) without
    the `cat` of every gradient that autograd's `split` backward would add (with two threads:
    `two_threads`)."""
    K, g = 3, torch.Generator().manual_seed(B * n + m)
    a0 = torch.randn(K, B, n, generator=g)
    b0 = torch.randn(K, m, n, generator=g).transpose(1, 2) if transposed else torch.randn(K, n, m, generator=g)
    c0 = torch.randn(K, 1, m, generator=g) if bias else None
    up = torch.randn(K, B, m, generator=g)                        # the gradient that reaches the output

    def product(a, b, c, u):
        leaves = [t.clone().requires_grad_() for t in (a, b) + ((c,) if c is not None else ())]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = S.bmm(leaves[0], leaves[1], leaves[2] if c is not None else None)
        (out.float() * u).sum().backward()
        return [out] + [t.grad for t in leaves]

    stacked = product(a0, b0, c0, up)
    assert stacked[0].dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert all(t.dtype == torch.float32 for t in stacked[1:])   # gradients in the leaves' dtype
    for k in range(K):
        alone = product(a0[k:k + 1], b0[k:k + 1], None if c0 is None else c0[k:k + 1], up[k:k + 1])
        for name, s, a in zip(["out", "grad a", "grad b", "grad bias"], stacked, alone):
            assert torch.equal(s[k:k + 1], a), (name, k, float((s[k:k + 1].float() - a.float()).abs().max()))


def test_adam_step_gives_each_run_of_a_stack_its_bits_alone():
    """stacked.adam_step on a 3-run parameter (odd sizes, so every run's slice has a vector tail) leaves
    each run's parameter and moments exactly as the step of that run alone does, over several steps."""
    g = torch.Generator().manual_seed(0)
    p0, grads = torch.randn(3, 37, 5, generator=g), [torch.randn(3, 37, 5, generator=g) for _ in range(4)]

    def trained(k):
        p = torch.nn.Parameter(p0.clone() if k is None else p0[k:k + 1].clone())
        opt = torch.optim.Adam([p], lr=1e-2, fused=True)
        for gr in grads:
            p.grad = gr.clone() if k is None else gr[k:k + 1].clone()
            S.adam_step(opt, [p], p.shape[0])
        st = opt.state[p]
        return p.detach(), st["exp_avg"], st["exp_avg_sq"], st["step"]

    whole = trained(None)
    assert whole[3].item() == 4
    for k in range(3):
        alone = trained(k)
        assert all(torch.equal(w[k:k + 1], a) for w, a in zip(whole[:3], alone[:3])), k


def test_run_part_and_join_states_are_inverse():
    """A state taken apart by run and joined back in another order is the same tensors, permuted; a
    0-d tensor (Adam's step count) is shared and must agree."""
    state = dict(w=torch.arange(6.0).view(3, 2), opt=dict(step=torch.tensor(5.0), m=[torch.ones(3, 1)]))
    parts = [S.run_part(state, k, 3) for k in (2, 0, 1)]
    joined = S.join_states(parts)
    assert torch.equal(joined["w"], state["w"][[2, 0, 1]]) and torch.equal(joined["opt"]["step"], state["opt"]["step"])
    assert isinstance(joined["opt"]["m"], list) and joined["opt"]["m"][0].shape == (3, 1)
    with pytest.raises(ValueError, match="differs between the runs"):
        S.join_states([parts[0], dict(parts[1], opt=dict(step=torch.tensor(6.0), m=[torch.ones(1, 1)]))])
    with pytest.raises(RuntimeError, match="no run axis of size 3"):
        S.run_part(dict(w=torch.ones(2, 2)), 0, 3)


# --- stacked training: a run in a stack ends as it does alone -----------------------------------------------

def stack_cfgs(tiny, bf16):
    """Three runs of one stack: two seeds of BI-R + SI and RR + RA at seed 0 (same init as the first)."""
    return [tiny(seed=0, iters=40, bf16=bf16), tiny(seed=1, iters=40, bf16=bf16),
            tiny("rr+ra", seed=0, iters=40, rep_f=3.0, lambda_rr=1e-2, lambda_ra=1e-2, bf16=bf16)]


def stack_mismatches(alone: dict, stacked: dict, a: dict, b: dict) -> list[str]:
    """What tells a run trained alone (results `alone`, final weights `a`) from its stacked twin
    (`stacked`, `b`): accuracies, RR/RA counts and weights bit for bit, loss traces to 1e-5 relative
    (they are reductions whose order may follow the stack's shape)."""
    bad = [k for k in ("acc_matrix", "per_class_acc_after_task", "metrics", "rr_stats") if alone[k] != stacked[k]]
    for ta, ts in zip(alone["loss_traces"], stacked["loss_traces"]):
        bad += [f"loss {k}, task {ta['task']}" for k in ta if ta[k] != pytest.approx(ts[k], rel=1e-5, abs=1e-9)]
    if a.keys() != b.keys():
        return bad + ["weight names"]
    return bad + [f"weight {n}" for n in a if not torch.equal(a[n], b[n])]


def train_alone_and_stacked(cfgs, results, tmp_path):
    """Each config trained alone, and all of them in one stack: [(alone, stacked, a, b)]."""
    stacked = birr.run_many(cfgs, results_dir=results, progress=False)
    assert {r["stacked_with"] for r in stacked} == {len(cfgs)}
    out = []
    for cfg, s in zip(cfgs, stacked):
        alone_dir = tmp_path / f"alone{cfg.stamp}"
        alone = birr.run(cfg, results_dir=alone_dir, progress=False)
        assert alone["stacked_with"] == 1
        a, b = torch.load(T.model_path(alone_dir, cfg)), torch.load(T.model_path(results, cfg))
        out.append((alone, s, a, b))
    return out


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_stacked_runs_are_bitwise_runs_trained_alone(results, tmp_path, bf16, tiny):
    """A run's numbers do not depend on the runs it is stacked with. On the CPU they are the
    same bits: every accuracy, RR/RA count and final weight. Two causes made them differ, both fixed:
    torch's fused Adam kernel rounds a tensor's vector tail differently from its body (so Adam steps
    run by run, `stacked.adam_step`; it surfaced as an ulp from step 2, a point of accuracy after a
    short-budget run); and on an Intel Xeon with AMX the matmul kernels round by the stack's shape
    (bf16 through oneDNN's AMX kernels, seen in CI as a logged KL 4.7e-5 apart, and fp32 through MKL;
    benchmarks/stack_isolation.py), so on a CPU every run gets its own matmul call (`stacked.bmm`; this
    test failed on such a Xeon in bf16 before). 40 iterations per task: an ulp has surfaced in the
    weights by then. The logged loss values are reductions over the stacked tensors, whose summation
    order may depend on the stack's shape (~1e-7 relative in a short run stacked 18-fold), so they are
    compared to rounding; they feed no gradient."""
    runs = train_alone_and_stacked(stack_cfgs(tiny, bf16), results, tmp_path)
    for alone, s, a, b in runs:
        assert stack_mismatches(alone, s, a, b) == [], birr.results.cpu_isa()
    # the comparison can fail: a run trained as another config (BI-R + SI against RR + RA, same seed)
    (bir, _, a_bir, _), (rr, _, a_rr, _) = runs[0], runs[2]
    other = stack_mismatches(bir, rr, a_bir, a_rr)
    assert any(m.startswith("loss rr") for m in other) and any(m.startswith("weight") for m in other)


def test_every_matmul_of_a_cpu_stack_has_the_shapes_of_a_run_alone(results, tiny):
    """Why stacking is exact on every CPU (stacked.bmm): each run's matmuls, forward and both backward
    ones, are calls of the shapes the run makes alone, (1, ...), whatever the CPU's library does with a
    batched call's shape. Counted in a dispatch mode over a 3-run training (every batched matmul aten
    op); on the old code (one call per layer for the whole stack) the leading dimension was 3."""
    seen = []

    class BatchedMatmuls(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            op = str(func)                      # aten.bmm / aten.baddbmm, .default or .out (stacked._RunByRun)
            if op.startswith(("aten.bmm.", "aten.baddbmm.")):                  # (self,) batch1, batch2
                seen.append(tuple(args[1 if op.startswith("aten.baddbmm.") else 0].shape))
            return func(*args, **(kwargs or {}))

    cfgs = [tiny(seed=0, iters=3), tiny(seed=1, iters=3),
            tiny("rr+ra", seed=0, iters=3, rep_f=3.0, lambda_rr=1e-2, lambda_ra=1e-2)]
    with BatchedMatmuls():
        birr.run_many(cfgs, results_dir=results, progress=False, checkpoint=False)
    assert len(seen) > 100 and {shape[0] for shape in seen} == {1}, sorted({s for s in seen if s[0] != 1})[:5]


def test_adam_step_run_by_run_is_torch_adams_fused_step(results, monkeypatch, tiny):
    """stacked.adam_step calls torch's fused Adam kernel on per-run slices; for one run it must leave
    exactly what torch.optim.Adam(fused=True).step() leaves (guards the private kernel's signature)."""
    cfg = tiny(seed=3, iters=15)
    mine = birr.run(cfg, results_dir=results / "mine", progress=False)
    monkeypatch.setattr(S, "adam_step", lambda opt, params, K: opt.step())
    torchs = birr.run(cfg, results_dir=results / "torch", progress=False)
    assert mine["loss_traces"] == torchs["loss_traces"] and mine["acc_matrix"] == torchs["acc_matrix"]
    a, b = torch.load(T.model_path(results / "mine", cfg)), torch.load(T.model_path(results / "torch", cfg))
    assert all(torch.equal(a[n], b[n]) for n in a)
