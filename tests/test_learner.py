"""birr.learner (appendix §6): the training step of a stack of runs: generative replay, RR / RA on the
replayed batch only, the paper variant's class means, the frozen previous model, and no value read back
to the host in a step; on tiny synthetic runs."""
import pytest
import torch

import birr
from birr import rr as RR
from birr.learner import TERMS, Learner, TaskData


def test_paper_class_means_are_each_class_own_training_mean(results, tiny):
    """x-hat of the paper variant (the paper's §3.3): the mean encoder feature of each class's real training
    images, class by class in the run's own label order."""
    cfg = tiny("rr+ra", rr_variant="paper", seed=1)
    data = TaskData(cfg, [0, 1], torch.device("cpu"))
    for t in (1, 2):
        means = data.class_means(t)                                           # (K, cpt, D)
        for k in range(2):
            for j in range(data.cpt):
                c = (t - 1) * data.cpt + j
                rows = data.train_x[data.train_y[k] == c]
                assert len(rows) > 0
                torch.testing.assert_close(means[k, j], rows.sum(0) / len(rows))
        assert not torch.allclose(means[0, 0], means[0, 1])                   # classes differ


def test_paper_means_hold_every_seen_class_mean(results, tiny, end_task_snapshots):
    """rr_variant='paper' (the paper's §3.3): x-hat of each class is the mean encoder feature of its real training
    images, and task 2's RR/RA read the means of task 1's classes. After the run, the stored means of all
    four classes equal the class means computed here from the features and labels. Catches filling
    paper_means only for t > 1 (task 1's classes left at zero)."""
    snaps = end_task_snapshots
    cfg = tiny("rr+ra", rr_variant="paper", rep_f=3.0, iters=4)
    birr.run(cfg, results_dir=results, progress=False)
    last = snaps[-1]
    d = last.data
    for c in range(4):
        rows = d.train_x[d.train_y[0] == c]
        assert len(rows) == 100
        torch.testing.assert_close(last.paper_means[0, c], rows.sum(0) / 100)
    assert snaps[0].paper_means[0, :2].abs().sum() > 0                   # task 1's means are there after task 1


def test_rr_ra_only_on_replay_batches_and_logged(results, monkeypatch, tiny):
    seen = []
    real = RR.rr_ra_code

    def spy(x_replay, x_recon, *a):
        seen.append(tuple(x_replay.shape))
        return real(x_replay, x_recon, *a)

    monkeypatch.setattr(RR, "rr_ra_code", spy)
    cfg = tiny("rr+ra", batch=16, batch_replay=24, rep_f=20.0, lambda_rr=1e-3, lambda_ra=1e-3)
    r = birr.run(cfg, results_dir=results, progress=False)
    # called once per iteration of task 2 only, always on the replay batch (24), never on the current (16)
    assert len(seen) == cfg.iters and set(seen) == {(1, 24, 1024)}
    st = r["rr_stats"]
    assert len(st) == 1 and st[0]["task"] == 2 and st[0]["n_competitive"] > 0
    assert sum(p[2] for p in st[0]["pairs"]) == st[0]["n_kept"]
    assert all(a < 2 and b < 2 and a != b for a, b, _ in st[0]["pairs"])   # old classes only
    # RA acts on every sample of a batch with a competitor; RR only on kept pairs, which a smoke
    # teacher may not produce at the 4 logged iterations (the step's numbers: test_step_reference.py)
    assert max(r["loss_traces"][1]["ra"]) > 0
    assert max(r["loss_traces"][1]["rr"]) == 0 or st[0]["n_kept"] > 0
    assert r["loss_traces"][0]["rr"] == [0.0] * 4


def test_paper_variant_runs_and_logs(results, tiny):
    cfg = tiny("rr+ra", rr_variant="paper", rep_f=3.0)
    r = birr.run(cfg, results_dir=results, progress=False)
    st = r["rr_stats"][0]
    assert st["n_kept"] >= st["n_competitive"] > 0
    assert all(a < 4 and b < 4 and a != b for a, b, _ in st["pairs"])  # own classifier: all seen classes
    assert max(r["loss_traces"][1]["rr"]) > 0


def test_previous_model_is_a_frozen_copy_updated_in_place(tiny, stack_after_task_1):
    stack = stack_after_task_1([tiny()])
    prev = stack.prev
    assert all(torch.equal(a, b) for a, b in zip(prev.state_dict().values(), stack.model.state_dict().values()))
    with torch.no_grad():
        stack.model.fcE1.weight.add_(1.0)
    assert not torch.equal(prev.fcE1.weight, stack.model.fcE1.weight)   # a copy, not an alias
    stack.end_task()
    assert stack.prev is prev and torch.equal(prev.fcE1.weight, stack.model.fcE1.weight)


@pytest.mark.parametrize("method,extra", [("bir+si", {}), ("finetune", {}), ("rr+ra", {}),
                                          ("rr+ra", dict(rr_variant="paper")), ("rr+ra", dict(rep_f=None))])
def test_training_step_reads_nothing_back_from_the_device(method, extra, tiny, host_reads):
    """No host syncs in the step, also on the iterations that log (loss terms, RR/RA
    pair counts). The detector itself is checked on a step that does read back."""
    cfgs = [tiny(method, seed=s, **extra) for s in (0, 1)]
    stack = Learner(cfgs, torch.device("cpu"))
    d = stack.data
    stack.begin_task(1)
    idx = d.task_indices(1)[:, :cfgs[0].batch]
    stack.step(1, d.train_x[idx], d.train_y.gather(1, idx), stack.generators(1), None, None)
    stack.end_task()
    stack.begin_task(2)
    idx = d.task_indices(2)[:, :cfgs[0].batch]
    x, y, gens = d.train_x[idx], d.train_y.gather(1, idx), stack.generators(2)
    log, rr_log = torch.zeros(2, len(TERMS)), stack.new_rr_log(2)
    assert (rr_log is not None) == (method == "rr+ra")
    with host_reads() as reads:
        stack.step(2, x, y, gens, log, rr_log)
    assert reads.seen == []
    assert log[:, 0].abs().sum() > 0                                     # it did log
    if rr_log is not None:   # one pair per kept (sample, competitor), in both variants
        assert int(rr_log["pairs"].sum()) == int(rr_log["n_kept"].sum())
    with host_reads() as reads:
        stack.step(2, x, y, gens, log, rr_log)
        float(log[0, 0])
    assert reads.seen == ["aten._local_scalar_dense.default"]


def test_replay_retains_task_1_better_than_finetuning(results, tiny):
    kw = dict(iters=150, fc_units=128, batch=32, batch_replay=32)
    ft = birr.run(tiny("finetune", **kw), results_dir=results, progress=False)
    bir = birr.run(tiny("bir+si", **kw), results_dir=results, progress=False)
    # class-incremental fine-tuning forgets task 1 entirely; generative replay keeps some of it
    assert ft["acc_matrix"][-1][0] < 0.1
    assert bir["acc_matrix"][-1][0] > ft["acc_matrix"][-1][0] + 0.1
