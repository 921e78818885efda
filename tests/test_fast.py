"""Config.compile and bf16's fast paths (birr.fast): the fused Adam + SI update by hand, and compile_static's
static graphs. The fast paths against the eager step, in training: tests/test_train.py."""
import pytest
import torch

from birr import fast


def test_fused_update_first_step_by_hand():
    """adam_si_update, uncompiled, on one SI parameter: Adam's first step moves p by lr * g / (|g| + eps)
    (m_hat = g, v_hat = g^2), the SI gradient 2 c omega (p - p*) is added to g first, and W gains
    -g (p_new - p). Here g = 2 + 0.5 * (1 - 0) = 2.5 (scale 0.5, p = 1, p* = 0), lr = 0.1."""
    p, g, m, v = torch.tensor([1.0]), torch.tensor([2.0]), torch.zeros(1), torch.zeros(1)
    scale, anchor, W = torch.tensor([0.5]), torch.tensor([0.0]), torch.zeros(1)
    q, gq, mq, vq = torch.tensor([3.0]), torch.tensor([-4.0]), torch.zeros(1), torch.zeros(1)   # a non-SI parameter
    steps = [torch.tensor(0.0), torch.tensor(0.0)]
    q_low = torch.tensor([3.0], dtype=torch.bfloat16)     # q has a bf16 copy: its gradient is the copy's
    fast.adam_si_update(([p], [g], [m], [v], [None], [scale], [anchor], [W]), ([q], [gq.bfloat16()], [mq], [vq], [q_low]),
                     steps, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, si_grad=True)
    assert p.item() == pytest.approx(1.0 - 0.1, abs=1e-6)
    assert W.item() == pytest.approx(2.5 * 0.1, rel=1e-5)   # (fp32: 1 - 0.9 and the bias corrections round)
    assert m.item() == pytest.approx(0.25) and v.item() == pytest.approx(0.001 * 2.5 ** 2)
    assert q.item() == pytest.approx(3.0 + 0.1, abs=1e-6) and [s.item() for s in steps] == [1.0, 1.0]
    assert q_low.dtype == torch.bfloat16 and q_low.item() == q.bfloat16().item() == 3.09375   # 3.1 rounded to bf16
    assert g.item() == 2.0                                  # the gradient tensor itself is left as it was


def test_compile_static_keeps_one_static_graph_per_shape_past_dynamos_limit():
    """compile_static (every compiled pass of a learner): each task's slice shape gets its own static
    graph, for all ten tasks of CIFAR-100 and more, where plain torch.compile stops at dynamo's limit of 8
    graphs and (here, told to fail instead of falling back to eager) raises."""
    import torch._dynamo.config as dc

    def head_loss(t: int, x):
        return x[..., : 3 * t].logsumexp(-1).mean()

    x = torch.randn(4, 40)
    static = fast.compile_static(head_loss)
    with dc.patch(fail_on_recompile_limit_hit=True):
        got = [static(t, x) for t in range(1, 13)]
    assert all(torch.allclose(g, head_loss(t, x)) for t, g in zip(range(1, 13), got))

    def same_loss(t: int, x):       # a code object of its own: dynamo caches graphs per code object
        return x[..., : 3 * t].logsumexp(-1).mean()

    plain = torch.compile(same_loss, dynamic=False)
    with dc.patch(fail_on_recompile_limit_hit=True), pytest.raises(Exception, match="(?i)limit"):
        for t in range(1, 13):
            plain(t, x)


def test_recompile_limit_name_follows_the_torch_release():
    """compile_static raises dynamo's graph limit under the name this torch has: torch 2.4-2.6
    have only cache_size_limit, 2.7 and later recompile_limit (with the old name as an alias), so the
    package's torch>=2.4 range compiles on all of them."""
    from types import SimpleNamespace
    assert fast.recompile_limit_name(SimpleNamespace(cache_size_limit=8)) == "cache_size_limit"
    assert fast.recompile_limit_name(SimpleNamespace(recompile_limit=8, cache_size_limit=8)) == "recompile_limit"
    here = fast.recompile_limit_name(torch._dynamo.config)
    assert here == ("recompile_limit" if torch.__version__ >= "2.7" else "cache_size_limit"), torch.__version__
    with pytest.raises(RuntimeError, match="neither recompile_limit nor cache_size_limit"):
        fast.recompile_limit_name(SimpleNamespace())
