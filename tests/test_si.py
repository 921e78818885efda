"""Synaptic intelligence (birr.si, appendix §6): the importance update, the penalty, its closed-form
gradient, the path integral, on toy tensors and in a training stack (which parameters it protects, W
restarting at zero with every task)."""
import pytest
import torch

import birr
from birr.learner import Learner
from birr.si import SynapticIntelligence, si_importance, si_penalty


def test_si_importance_is_the_path_integral_over_the_squared_distance_moved():
    """appendix §6 step 4: omega += W / (delta^2 + eps)."""
    W, delta = torch.tensor([0.3, 0.0, -0.2]), torch.tensor([0.5, 2.0, 0.0])
    torch.testing.assert_close(si_importance(W, delta, 0.1), torch.tensor([0.3 / 0.35, 0.0, -2.0]))


def test_si_penalty_per_run():
    p = torch.tensor([[1.0, 2.0], [0.0, 0.0]]); a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    w = torch.tensor([[2.0, 0.5], [1.0, 0.0]])
    # run 0: 2*1 + 0.5*4 = 4; run 1: 1*1 + 0 = 1
    assert si_penalty([p], [w], [a]).tolist() == [4.0, 1.0]


def test_one_task_of_si_by_hand():
    """Two runs of one protected weight and one unprotected bias through a task: W restarts at zero,
    gains g (p_old - p_new) around each update, becomes omega at the task's end (the bias's stays 0),
    the anchor moves to p, and the next task's penalty and its gradient 2 c omega (p - p*) follow."""
    params = dict(w=torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True),
                  b=torch.tensor([[5.0], [5.0]], requires_grad=True))
    si = SynapticIntelligence(params, ["w"], c=torch.tensor([1.0, 10.0]), eps=0.1)
    si.begin_task()
    assert list(si.W) == ["w"] and si.W["w"].abs().sum() == 0
    for grad, new in [(torch.tensor([[1.0, -1.0], [2.0, 0.0]]), torch.tensor([[0.5, 2.5], [-0.5, 0.0]]))] * 2:
        params["w"].grad = grad
        si.remember(params)
        with torch.no_grad():
            params["w"].copy_(new)                          # what an optimiser step would do
        si.accumulate(params)
    # first step moves by (-0.5, +0.5; -0.5, 0): W = -g * delta = (0.5, 0.5; 1.0, 0); the second moves nothing
    assert si.W["w"].tolist() == [[0.5, 0.5], [1.0, 0.0]]
    with torch.no_grad():
        params["b"].add_(1.0)
    si.end_task(params)
    # delta = (-0.5, 0.5; -0.5, 0): omega = W / (delta^2 + 0.1)
    torch.testing.assert_close(si.omega["w"], torch.tensor([[0.5 / 0.35, 0.5 / 0.35], [1.0 / 0.35, 0.0]]))
    assert si.omega["b"].abs().sum() == 0 and si.anchor["b"].tolist() == [[6.0], [6.0]]
    assert torch.equal(si.anchor["w"], params["w"].detach())
    with torch.no_grad():
        params["w"].add_(1.0)                               # one away from the anchor everywhere
    torch.testing.assert_close(si.penalty(params), torch.tensor([1 / 0.35, 1 / 0.35]))
    params["w"].grad = torch.zeros(2, 2)
    si.add_grad(params)
    torch.testing.assert_close(params["w"].grad, 2 * torch.tensor([[1.0], [10.0]]) * si.omega["w"])
    state = si.state()
    other = SynapticIntelligence(params, ["w"], c=torch.tensor([1.0, 10.0]), eps=0.1)
    other.load_state(state, "cpu")
    assert torch.equal(other.omega["w"], si.omega["w"]) and torch.equal(other.scale["w"], si.scale["w"])


def test_closed_form_si_gradient_equals_autograd(tiny, stack_after_task_1):
    """appendix §6: d(c sum omega (p - p*)^2)/dp = 2 c omega (p - p*), per run (c differs inside a stack)."""
    stack = stack_after_task_1([tiny(seed=0), tiny("bir", seed=1), tiny(seed=2, si_c=3e5)])
    with torch.no_grad():                                  # move away from the anchor so the penalty is not 0
        for p in stack.params.values():
            p.add_(0.01 * torch.randn_like(p))
    for p in stack.params.values():
        p.grad = None
    every = list(stack.params)                             # the reference sums over every parameter
    (stack.si.c * si_penalty([stack.params[n] for n in every], [stack.si.omega[n] for n in every],
                             [stack.si.anchor[n] for n in every])).sum().backward()
    expected = {n: p.grad.clone() for n, p in stack.params.items()}
    for p in stack.params.values():
        p.grad = torch.zeros_like(p)
    stack.si.add_grad(stack.params)
    for n, p in stack.params.items():
        assert torch.allclose(p.grad, expected[n], rtol=1e-5, atol=1e-12), n
    assert expected["fcE1.weight"][1].abs().sum() == 0     # si_c = 0 ("bir"): no pull
    assert expected["fcE1.weight"][0].abs().sum() > 0 and expected["fromZ.weight"].abs().sum() == 0
    # the penalty's value over the SI parameters is the value over all of them (omega is 0 elsewhere)
    assert torch.allclose(stack.si.penalty(stack.params), si_penalty([stack.params[n] for n in every],
                                                                     [stack.si.omega[n] for n in every],
                                                                     [stack.si.anchor[n] for n in every]))


# --- SI in a learner ----------------------------------------------------------------------------------------

def test_si_importance_only_for_fcE_and_head(tiny):
    cfg = tiny()
    stack = Learner([cfg], torch.device("cpu"))
    d = stack.data
    idx = d.task_indices(1)[:, :cfg.batch]
    gens = stack.generators(1)
    stack.begin_task(1)
    for _ in range(3):
        stack.step(1, d.train_x[idx], d.train_y.gather(1, idx), gens, None, None)
    stack.end_task()
    for name, w in stack.si.omega.items():
        if name.startswith(("fcE1.", "fcE2.", "head.")):
            assert w.abs().sum() > 0, name
        else:
            assert w.abs().sum() == 0, name                 # appendix §6: SI constrains fcE and head only
    assert stack.prev is not None and not any(p.requires_grad for p in stack.prev.parameters())


def test_si_path_integral_restarts_at_zero_every_task(results, monkeypatch, tiny):
    """appendix §6 step 1: at the start of every task W[n] = 0 for every SI parameter, so the first step of task
    2 sees an all-zero W (and task 1's W went into omega at its end). Catches the reset done only once
    (W carried over from task 1 into task 2)."""
    first = {}
    real = Learner.step

    def spy(self, t, *a):
        if t not in first:
            first[t] = {n: w.abs().sum().item() for n, w in self.si.W.items()}
        return real(self, t, *a)
    monkeypatch.setattr(Learner, "step", spy)
    birr.run(tiny(iters=5), results_dir=results, progress=False)
    assert set(first) == {1, 2} and set(first[2]) >= {"fcE1.weight", "head.weight"}
    assert all(v == 0 for v in first[1].values()) and all(v == 0 for v in first[2].values())
