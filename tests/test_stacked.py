"""K runs as one model (birr.stacked): each run's matmuls and Adam step have the bits of the run alone."""
import pytest
import torch

from birr import stacked as S


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
    model's layer shapes. This is what makes stacked training exact (tests/test_train.py) without
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
