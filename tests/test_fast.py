"""Config.compile and bf16's fast paths (birr.fast): the fused Adam + SI update by hand, compile_static's
static graphs, and the fast paths against the eager ones in a learner and in whole tiny runs (the same
numbers, bit for bit or up to rounding; what is compiled, and when)."""
import copy

import pytest
import torch

import birr
from birr import fast
from birr.learner import AdamSI, Learner


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


# --- the fast paths in a learner and in whole runs ----------------------------------------------------------

def test_fused_update_equals_eager_path(tiny, stack_after_task_1):
    """Config.compile's parameter update (adam_si_update, here run uncompiled) does what the eager path does
    (fused torch.optim.Adam + closed-form SI gradient + path integral) up to rounding, over several steps
    of task 2, and keeps its state in torch.optim.Adam's own tensors (checkpoints stay interchangeable)."""
    eager = stack_after_task_1([tiny(seed=0), tiny(seed=1, si_c=3e5)])
    fused = stack_after_task_1([tiny(seed=0), tiny(seed=1, si_c=3e5)])
    fused.update = fast.FusedAdamSI(fused.opt, fused.params, fused.si, fused.low)   # compile=True: adam_si_pass compiled
    assert fused.si.names and set(fused.si.names) | set(fused.update.rest_names) == set(fused.params)
    for s in (eager, fused):
        s.begin_task(2)
    d, cfg = eager.data, eager.cfg
    ge, gf = eager.generators(2), fused.generators(2)
    for i in range(4):
        idx = d.task_indices(2)[:, i * cfg.batch:(i + 1) * cfg.batch]
        eager.step(2, d.train_x[idx], d.train_y.gather(1, idx), ge, None, None)
        fused.step(2, d.train_x[idx], d.train_y.gather(1, idx), gf, None, None)
    for n in eager.params:
        pe, pf = eager.params[n].detach(), fused.params[n].detach()
        assert torch.allclose(pf, pe, rtol=1e-5, atol=1e-6), n
        se, sf = eager.opt.state[eager.params[n]], fused.opt.state[fused.params[n]]
        assert sorted(sf) == sorted(se) and sf["step"].item() == se["step"].item() == 3 + 4
        for key in ("exp_avg", "exp_avg_sq"):               # at each tensor's own scale: rounding in p
            a, b = se[key], sf[key]                          # feeds back through (p - p*) and the loss
            assert (b - a).abs().max() <= 1e-4 * a.abs().max(), (n, key)
    for n in eager.si.names:   # W is a sum of g * (tiny parameter change): compare at its own scale
        we, wf = eager.si.W[n], fused.si.W[n]
        assert we.abs().sum() > 0 and (wf - we).abs().max() <= 1e-3 * we.abs().max(), n
    eager.opt.load_state_dict(fused.opt.state_dict())      # the fused run's state loads into torch's Adam


def test_bf16_weight_copies_give_autocasts_numbers_bit_for_bit(tiny):
    """bf16 + compile keeps bf16 copies of the linear layers that the fused update writes (fast.bf16_copies): no step casts weights or gradients. Run here uncompiled, side by side with
    plain autocast (same fused update), over task 1 and task 2 (replay, SI): every parameter, Adam moment
    and SI path integral is equal bit for bit, each copy is exactly its parameter cast to bf16, and a
    loaded checkpoint rewrites the copies."""
    cfgs = [tiny(bf16=True, seed=0), tiny(bf16=True, seed=1, si_c=3e5)]
    plain, copies = Learner(cfgs, torch.device("cpu")), Learner(cfgs, torch.device("cpu"))
    copies.low, copies.forward = fast.bf16_copies(copies.model)
    for s in (plain, copies):                               # compile=True runs it with adam_si_pass compiled
        s.update = fast.FusedAdamSI(s.opt, s.params, s.si, s.low)
    assert set(copies.low) >= {"fcE1.weight", "fcE1.bias", "head.weight", "fcD2.bias"}
    assert "z_class_means" not in copies.low and copies.low["fcE2.weight"].dtype == torch.bfloat16
    d, cfg = plain.data, plain.cfg
    for t in (1, 2):
        gp, gc = plain.generators(t), copies.generators(t)
        for s in (plain, copies):
            s.begin_task(t)
        for i in range(3):
            idx = d.task_indices(t)[:, i * cfg.batch:(i + 1) * cfg.batch]
            plain.step(t, d.train_x[idx], d.train_y.gather(1, idx), gp, None, None)
            copies.step(t, d.train_x[idx], d.train_y.gather(1, idx), gc, None, None)
        for n in plain.params:
            assert torch.equal(plain.params[n], copies.params[n]), (t, n)
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(plain.opt.state[plain.params[n]][key], copies.opt.state[copies.params[n]][key])
        for n, low in copies.low.items():
            assert torch.equal(low, copies.params[n].detach().to(torch.bfloat16)), n
            assert copies.params[n].grad is None              # the gradient lives on the copy
        for n in plain.si.names:
            assert torch.equal(plain.si.W[n], copies.si.W[n]), n
        assert plain.si.W["fcE1.weight"].abs().sum() > 0
        if t == 1:
            for s in (plain, copies):
                s.end_task()
    state = copies.state()
    with torch.no_grad():
        copies.low["fcE1.weight"].zero_()
    copies.load_state(state)
    assert torch.equal(copies.low["fcE1.weight"], copies.params["fcE1.weight"].detach().to(torch.bfloat16))
    with pytest.raises(RuntimeError, match="fused update"):
        AdamSI(copies.opt, copies.params, copies.si, copies.K).step(si_grad=True)


def test_bf16_previous_model_casts_once_with_autocasts_rounding(tiny, stack_after_task_1):
    """With bf16 on, the frozen previous model's linear layers are cast to bf16 once per task instead
    of by autocast in every step: the replay and teacher logits are bit for bit what autocast makes of the
    fp32 weights, after the first task (a fresh copy) and after the second (copied in place)."""
    stack = stack_after_task_1([tiny(bf16=True, seed=0), tiny(bf16=True, seed=1)])
    for task in (1, 2):
        assert stack.prev.fcE2.weight.dtype == torch.bfloat16 and stack.prev.gate_fcD1.dtype == torch.float32
        fp32 = copy.deepcopy(stack.model).eval()             # what the previous model would be without the cast
        g = torch.Generator().manual_seed(task)
        classes, eps = torch.randint(0, 2, (2, 16), generator=g), torch.randn(2, 16, stack.model.Z, generator=g)
        with torch.no_grad(), stack.autocast:
            x_, ref = stack.sample(classes, eps), fp32.sample(classes, eps)
            assert torch.equal(x_, ref)
            assert torch.equal(stack.classify_prev(x_.float()), fp32.classify(ref.float()))
        with torch.no_grad():
            for p in stack.params.values():                     # train "task 2" a little, then close it
                p.add_(0.01 * torch.randn_like(p))
        stack.begin_task(task + 1)
        stack.end_task()


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_every_compiled_pass_of_a_stack_is_static(monkeypatch, bf16, tiny, stack_after_task_1):
    """Under Config.compile the training pass (through the bf16 weight copies with bf16), the update
    kernel, the loss terms (on a CPU) and the previous model's sampler and classifier are all compiled
    through compile_static: static shapes, room past dynamo's 8 graphs per function."""
    made = []
    monkeypatch.setattr(fast, "compile_static", lambda fn, **kw: made.append(getattr(fn, "__name__", type(fn).__name__)) or fn)
    stack_after_task_1([tiny(compile=True, bf16=bf16)])
    assert made == ["train_pass" if bf16 else "BIR", "adam_si_pass", "loss_terms", "sample", "classify"]


def test_compiled_stack_compiles_nothing_after_task_2_but_the_cpu_loss_terms(monkeypatch, results, tiny):
    """Compile time is part of a compiled run's wall time (benchmarks/speed.py records it as
    setup_s and projects Table 1 with it paid once per stack). That holds only if no later task compiles
    again: the training pass compiles once for task 1's batch and once for later tasks' (current + replay)
    batch, the update kernel once without and once with the SI pull, the previous model's sampler and
    classifier once each; only the loss terms, whose slices follow the classes seen so far, take a graph
    per task, and they are compiled on a CPU only. Counted with a dynamo backend that records each graph
    it is handed (and runs it eagerly, so the test compiles nothing): a 4-task compiled run."""
    graphs, task = [], [1]

    def counting(name):
        def backend(gm, example_inputs):
            graphs.append((task[0], name))
            return gm.forward
        return backend

    real = fast.compile_static
    monkeypatch.setattr(fast, "compile_static", lambda fn, **kw: real(
        fn, **dict(kw, backend=counting(getattr(fn, "__name__", type(fn).__name__)))))
    end_task = Learner.end_task

    def counted_end_task(self):
        end_task(self)
        task[0] += 1
    monkeypatch.setattr(Learner, "end_task", counted_end_task)
    torch._dynamo.reset()
    birr.run(tiny(compile=True, n_tasks=4, iters=6), results_dir=results, progress=False)
    per_task = {t: sorted(n for u, n in graphs if u == t) for t in range(1, 5)}
    assert per_task[1] == ["BIR", "adam_si_pass", "loss_terms"]
    assert per_task[2] == ["BIR", "adam_si_pass", "classify", "loss_terms", "sample"]
    assert per_task[3] == per_task[4] == ["loss_terms"]


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_compiled_run_matches_eager(results, tmp_path, variant, tiny):
    """Config.compile changes how the passes run, not what they compute: same stamp, same
    accuracies, loss traces and RR/RA statistics equal up to rounding (on a CPU the loss terms, RR/RA of
    either variant included, run compiled too: compile_per_task)."""
    cfg = tiny("rr+ra", rep_f=3.0, lambda_rr=1e-2, lambda_ra=1e-2, rr_variant=variant)
    comp = cfg.replace(compile=True)
    assert comp.stamp == cfg.stamp
    eager = birr.run(cfg, results_dir=results, progress=False)
    compiled = birr.run(comp, results_dir=tmp_path / "compiled", progress=False)
    assert compiled["config"]["compile"] is True
    assert compiled["acc_matrix"] == eager["acc_matrix"]
    for te, tc in zip(eager["loss_traces"], compiled["loss_traces"]):
        for key in ("total", "recon", "kl", "ce", "recon_r", "distill_r", "rr", "ra"):
            assert tc[key] == pytest.approx(te[key], rel=1e-4, abs=1e-6), key
    for se, sc in zip(eager["rr_stats"], compiled["rr_stats"], strict=True):   # counts: a rounding may flip a
        for key in ("n_competitive", "n_kept", "n_applied"):                      # borderline sample, no more
            assert se[key] > 0 and sc[key] == pytest.approx(se[key], rel=0.02), key


def test_compiled_bf16_run_with_weight_copies_matches_eager_bf16(results, tmp_path, tiny):
    """bf16 + compile trains through the bf16 weight copies (compiled training pass reading them, compiled
    update writing them); plain bf16 autocast runs eager. Same accuracies; loss traces equal up to bf16
    rounding (the compiled kernels round fused elementwise chains once, eager bf16 ops each step)."""
    cfg = tiny(bf16=True)
    eager = birr.run(cfg, results_dir=results, progress=False)
    compiled = birr.run(cfg.replace(compile=True), results_dir=tmp_path / "compiled", progress=False)
    assert compiled["acc_matrix"] == eager["acc_matrix"]
    for te, tc in zip(eager["loss_traces"], compiled["loss_traces"]):
        for key in ("total", "recon", "kl", "ce", "recon_r", "distill_r"):
            assert tc[key] == pytest.approx(te[key], rel=1e-2, abs=1e-4), key   # measured: 0.25 %
