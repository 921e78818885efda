"""birr.train (appendix §6-§7): the task loop (epochs, batches, logging, evaluation after each task),
run / run_many (stacks, stored runs, force), per-run checkpoints and divergence, on tiny synthetic runs
(conftest.py's `tiny` and `results`). Resuming whole stacks of runs: tests/test_resume.py."""
import json
import types

import numpy as np
import pytest
import torch

import birr
from birr import fast
from birr import train as T
from birr.book import verdict as V
from birr.learner import Learner


# --- the task loop: epochs, batches, logging, evaluation (appendix §2, §6, §7) ------------------------------

def _spy_steps(monkeypatch):
    """Record (task, x, y) of every training step."""
    seen = []
    real = Learner.step

    def spy(self, t, x, y, gens, log, rr_log, grad_log=None):
        seen.append((t, x.detach().clone(), y.clone()))
        return real(self, t, x, y, gens, log, rr_log, grad_log)
    monkeypatch.setattr(Learner, "step", spy)
    return seen


@pytest.mark.parametrize("batch, per_epoch", [(40, 5), (32, 6)])
def test_epochs_are_shuffled_full_batches_with_drop_last(results, monkeypatch, batch, per_epoch, tiny):
    """appendix §2: batches of a task are shuffled with drop_last=True, and a fresh shuffled iterator starts when
    the previous one is exhausted (and at the start of every task). A synthetic task has 200 training
    images: at batch 40 an epoch is exactly 5 full batches that cover all 200 images once each (the last
    full batch is used, not dropped); at batch 32 it is 6 batches, 192 distinct images, and the 8 left over
    are dropped, the 7th batch opening a new permutation. Each epoch is in a new random order, not file
    order. Catches `pos + B > n_t` -> `>=` (the last full batch dropped when B divides n_t), the batch slice
    shifted by one (`order[:, pos + 1:pos + 1 + B]`, a short last batch), and batches taken unshuffled."""
    seen = _spy_steps(monkeypatch)
    cfg = tiny(batch=batch, iters=2 * per_epoch)
    birr.run(cfg, results_dir=results, progress=False)
    data = T.TaskData(cfg, [cfg.seed], torch.device("cpu"))
    for t in (1, 2):
        steps = [(x, y) for u, x, y in seen if u == t]
        assert len(steps) == 2 * per_epoch
        task_rows = set(torch.nonzero((data.train_y[0] >= 2 * (t - 1)) & (data.train_y[0] < 2 * t)).flatten().tolist())
        assert len(task_rows) == 200
        epochs = []
        for e in range(2):
            order = []
            for x, y in steps[e * per_epoch:(e + 1) * per_epoch]:
                assert x.shape[1] == batch and y.shape[1] == batch             # full batches only
                eq = (x[0][:, None, :] == data.train_x[None]).all(-1)         # (B, N): which image is each row
                assert eq.sum(1).tolist() == [1] * batch
                rows = eq.float().argmax(1)
                assert torch.equal(data.train_y[0, rows], y[0])               # the labels go with the images
                order += rows.tolist()
            assert len(set(order)) == len(order) == per_epoch * batch        # no image twice in an epoch
            assert set(order) <= task_rows                                   # task t's images only
            assert order != sorted(order)                                    # shuffled, not file order
            epochs.append(order)
        assert epochs[0] != epochs[1]                                        # reshuffled for epoch 2
        if per_epoch * batch == 200:
            assert set(epochs[0]) == task_rows                               # drop_last drops nothing here


def test_a_task_of_exactly_one_batch_trains(results, tiny):
    """appendix §2 (drop_last): a task with exactly `batch` training images has one full batch per epoch, so it
    trains; only fewer images than a batch is an error. The synthetic task has 200 images: batch=200 runs,
    batch=201 is refused with the message. Catches `if n_t < B` -> `if n_t <= B`."""
    r = birr.run(tiny(batch=200, batch_replay=16, iters=2, log_every=1), results_dir=results, progress=False)
    assert len(r["acc_matrix"]) == 2
    with pytest.raises(ValueError, match="task 1 has 200 training images, fewer than batch=201"):
        birr.run(tiny(batch=201, batch_replay=16, iters=2), results_dir=results, progress=False)


def test_a_task_shorter_than_log_every_logs_its_last_iteration_and_logging_never_changes_training(results, tiny):
    """Config(iters=7, log_every=50) used to record no loss trace at all, silently."""
    sparse = birr.run(tiny(iters=7, log_every=50), results_dir=results, progress=False)
    dense = birr.run(tiny(iters=7, log_every=1), results_dir=results, progress=False)
    assert [tr["iters"] for tr in sparse["loss_traces"]] == [[7], [7]]
    assert [tr["iters"] for tr in dense["loss_traces"]] == [list(range(1, 8))] * 2
    for s, d in zip(sparse["loss_traces"], dense["loss_traces"]):
        assert s["total"] == d["total"][-1:] and s["rr"] == d["rr"][-1:]
    assert sparse["acc_matrix"] == dense["acc_matrix"]      # the loss terms are read, never fed back


def test_eval_every_records_curves_on_the_full_test_set(results, tiny):
    r = birr.run(tiny(eval_every=5), results_dir=results, progress=False)
    iters = [(c["task"], c["iter"]) for c in r["curves"]]
    assert iters == [(1, 5), (1, 10), (1, 15), (1, 20), (2, 5), (2, 10), (2, 15), (2, 20)]
    assert r["curves"][-1]["per_task"] == r["acc_matrix"][-1]          # the last point is the final eval
    assert all(len(c["per_task"]) == 2 for c in r["curves"])           # every task, seen or not


def test_accuracies_after_each_task_recomputed_from_the_models_logits(results, tiny, end_task_snapshots):
    """appendix §7: acc_matrix[t][i] is the accuracy on task i after task t with the argmax over ALL classes,
    acc_matrix_seen[t][i] the same with the argmax over the classes seen so far (2 t here), both None for
    tasks not seen yet; per_class_acc is the final model's per-class accuracy, per_task_acc the last row.
    Recomputed here from the logits of a copy of the model taken after each task. Catches n_seen off by one
    (`t * cpt - 1`), `i < t` -> `i <= t` in acc_matrix_seen, and per_class_acc taken after task 1."""
    snaps = end_task_snapshots
    r = birr.run(tiny(iters=20), results_dir=results, progress=False)
    assert len(snaps) == 2
    for t, snap in enumerate(snaps, 1):
        d = snap.data
        with torch.no_grad():
            logits = snap.model.classify(d.test_x[None])[0]                  # (N_test, C)
        y = d.test_y[0]
        pred_all, pred_seen = logits.argmax(-1), logits[:, :2 * t].argmax(-1)
        for i in range(2):
            mask = (y >= 2 * i) & (y < 2 * i + 2)
            assert int(mask.sum()) == 40
            if i < t:
                assert r["acc_matrix"][t - 1][i] == pytest.approx((pred_all[mask] == y[mask]).float().mean().item(), abs=1e-6)
                assert r["acc_matrix_seen"][t - 1][i] == pytest.approx((pred_seen[mask] == y[mask]).float().mean().item(), abs=1e-6)
            else:
                assert r["acc_matrix"][t - 1][i] is None and r["acc_matrix_seen"][t - 1][i] is None
        if t == 2:
            per_class = [(pred_all[y == c] == c).float().mean().item() for c in range(4)]
            assert r["per_class_acc"] == pytest.approx(per_class, abs=1e-6)
            assert r["per_task_acc"] == r["acc_matrix"][-1]
            assert r["metrics"]["overall"] == pytest.approx(sum(per_class) / 4, abs=1e-6)
    # the test can tell n_seen = 2 from n_seen = 1: after task 1 some class-1 image is right among classes 0-1
    with torch.no_grad():
        lg = snaps[0].model.classify(snaps[0].data.test_x[None])[0]
    ones = snaps[0].data.test_y[0] == 1
    assert (lg[ones, :2].argmax(-1) == 1).any()


def test_determinism_same_seed_same_numbers(results, tiny):
    a = birr.run(tiny(), results_dir=results, progress=False)
    b = birr.run(tiny(), results_dir=results, progress=False, force=True)
    assert a["acc_matrix"] == b["acc_matrix"] and a["loss_traces"] == b["loss_traces"]
    c = birr.run(tiny(seed=1), results_dir=results, progress=False)
    assert c["loss_traces"] != a["loss_traces"]


def test_rr_code_variant_with_one_class_per_task_is_a_clear_error(results, tiny):
    """The fork's RR/RA pairs a replayed sample's top-2 old classes (appendix §8): with 1 class per task, task 2
    has one old class. Said before training, in one line; the paper variant (competitors among all seen
    classes) has no such limit."""
    with pytest.raises(ValueError, match=r"needs >= 2 classes per task, got 1 \(n_tasks=4 on 4 classes\)"):
        birr.run(tiny("rr+ra", n_tasks=4, iters=10), results_dir=results, progress=False)
    assert not (results / "runs").exists() or not list((results / "runs").glob("*.json"))
    r = birr.run(tiny("rr+ra", n_tasks=4, iters=10, rr_variant="paper", rep_f=3.0), results_dir=results, progress=False)
    assert len(r["acc_matrix"]) == 4


# --- run and run_many: stored runs, force, stacks -----------------------------------------------------------

def test_finished_stamp_is_loaded_not_retrained(results, monkeypatch, tiny):
    cfg = tiny()
    first = birr.run(cfg, results_dir=results, progress=False)
    calls = []
    monkeypatch.setattr(T, "_train_stack", lambda *a, **k: calls.append(1) or [])
    again = birr.run(cfg, results_dir=results, progress=False)
    assert calls == [] and again == first


def test_force_retrains_a_finished_stamp(results, tiny):
    """run_many(force=True) re-trains even if results exist (the CLI's --force help says the same). Catches
    ignoring `force` (the stored result loaded and returned)."""
    cfg = tiny(iters=3)
    birr.run(cfg, results_dir=results, progress=False)
    path = results / "runs" / f"{cfg.stamp}.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps(dict(stored, marker="old")))
    again = birr.run(cfg, results_dir=results, progress=False, force=True)
    assert "marker" not in again and "marker" not in json.loads(path.read_text())


def test_run_many_trains_each_missing_stamp_once_in_stacks_of_max_stack_and_keeps_the_order(results, monkeypatch,
                                                                                            tiny):
    """run_many's docstring: every config gets its result, in the order of `cfgs`; finished stamps are
    loaded, missing ones trained, at most `max_stack` per stack; a config listed twice is one run. Here seed
    2 is finished beforehand; [s0, s1, s2, s3, s0] with max_stack=2 trains s0+s1 as one stack and s3 alone,
    and returns five results whose seeds are 0, 1, 2, 3, 0 with stacked_with 2, 2, 1, 1, 2. Catches
    dropping the duplicate check (s0 trained twice, s3 stacked with it), returning results in training order,
    and a stack slice one short (`group[i:i + max_stack - 1]`, a config never trained)."""
    cfgs = [tiny(iters=3, seed=s) for s in range(4)]
    birr.run(cfgs[2], results_dir=results, progress=False)
    trained = []
    real = T._train_stack

    def spy(group, *a, **k):
        trained.append([c.seed for c in group])
        return real(group, *a, **k)
    monkeypatch.setattr(T, "_train_stack", spy)
    out = birr.run_many(cfgs + [cfgs[0]], results_dir=results, progress=False, max_stack=2)
    assert trained == [[0, 1], [3]]
    assert [r["seed"] for r in out] == [0, 1, 2, 3, 0]
    assert [r["stacked_with"] for r in out] == [2, 2, 1, 1, 2]


def test_runs_that_differ_in_compile_or_device_are_not_stacked(results, monkeypatch, tiny):
    """A stack runs as its first config says; compile and device are outside the stamp, so they were
    outside the stack key too, and a compile=True run stacked behind a compile=False one was trained
    eagerly while its stored config said compile=True (found by a mutation audit)."""
    groups, compiled = [], []
    real_train, real_compile = T._train_stack, fast.compile_static
    monkeypatch.setattr(T, "_train_stack", lambda group, *a, **k: groups.append([c.compile for c in group])
                        or real_train(group, *a, **k))
    monkeypatch.setattr(fast, "compile_static", lambda fn, **kw: compiled.append(1) or real_compile(fn, **kw))
    out = birr.run_many([tiny(iters=3, seed=0), tiny(iters=3, seed=1, compile=True)], results_dir=results,
                        progress=False)
    assert groups == [[False], [True]] and compiled                      # two stacks; the second compiled
    assert [r["stacked_with"] for r in out] == [1, 1] and [r["config"]["compile"] for r in out] == [False, True]
    assert T._stack_key(tiny(device="cpu")) != T._stack_key(tiny(device="auto"))
    assert T._stack_key(tiny(seed=0, rep_f=5.0)) == T._stack_key(tiny(seed=3, rep_f=20.0))   # PER_RUN may differ


def test_stacked_runs_split_the_stacks_wall_time(results, monkeypatch, tiny):
    """Runs trained together share the stack's time: each of K runs is charged 1/K of every task and of the
    setup, so the runs' wall times add up to the stack's. With a clock that advances 10 s per reading, the
    setup and each of the 2 tasks take 10 s: each of the 2 runs gets task_wall_s [5, 5] and wall_time_s
    5 + 5 + 10 / 2 = 15, together 30. Catches charging every run the whole task time or the whole setup."""
    ticks = iter(range(0, 10_000, 10))
    monkeypatch.setattr(T, "time", types.SimpleNamespace(time=lambda: float(next(ticks)), strftime=T.time.strftime))
    out = birr.run_many([tiny(iters=3, seed=0), tiny(iters=3, seed=1)], results_dir=results, progress=False)
    assert [r["stacked_with"] for r in out] == [2, 2]
    assert [r["task_wall_s"] for r in out] == [[5.0, 5.0], [5.0, 5.0]]
    assert [r["wall_time_s"] for r in out] == [15.0, 15.0]


def test_stacked_runs_keep_their_own_class_order_and_final_model(results, tiny, end_task_snapshots):
    """appendix §2: a run's class order is the inverse of np.random.RandomState(seed).permutation(C), so the
    seed-1 run of a stack records seed 1's order, not seed 0's. Its saved model (load_model) is its own slice
    of the stack: the loaded K=1 model's weights are the k-th run's, and its per-class accuracy, recomputed
    here from its logits on the run's own test labels, is the stored per_class_acc. Catches every run of a
    stack recording run 0's class order, saving run 0's weights for every run, and load_model building the
    model with in_dim from the wrong axis of fcD2.weight."""
    snaps = end_task_snapshots
    cfgs = [tiny(iters=5, seed=0), tiny(iters=5, seed=1)]
    out = birr.run_many(cfgs, results_dir=results, progress=False)
    for k, (cfg, r) in enumerate(zip(cfgs, out)):
        assert r["class_order"] == np.argsort(np.random.RandomState(cfg.seed).permutation(4)).tolist()
        m = birr.load_model(cfg, results_dir=results)
        assert m is not None and m.K == 1 and not m.training
        for n, v in m.state_dict().items():
            assert torch.equal(v, snaps[-1].model.state_dict()[n][k:k + 1]), n
        d = snaps[-1].data
        with torch.no_grad():
            pred = m.classify(d.test_x[None])[0].argmax(-1)
        y = d.test_y[k]
        assert r["per_class_acc"] == pytest.approx([(pred[y == c] == c).float().mean().item() for c in range(4)], abs=1e-6)
    assert out[0]["class_order"] != out[1]["class_order"]


def test_api_mistakes_name_what_was_passed(tiny):
    with pytest.raises(TypeError, match=r"cfg='bir\+si' is a str, not a Config; make one with birr.preset"):
        birr.run("bir+si")
    with pytest.raises(TypeError, match="run_many takes a list of Configs"):
        birr.run_many(tiny())
    with pytest.raises(TypeError, match=r"cfgs\[1\] is a dict"):
        birr.run_many([tiny(), {}])
    with pytest.raises(ValueError, match="max_stack=0 is not allowed"):
        birr.run_many([tiny()], max_stack=0)


# --- checkpoints --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [{}, dict(bf16=True, compile=True)], ids=["eager", "bf16+compile"])
def test_killed_run_resumes_and_matches_uninterrupted(results, tmp_path, flags, tiny, kill_after):
    """A run killed in task 2 resumes from task 1's checkpoint and ends bit for bit as an uninterrupted one;
    with bf16 + compile too, where the bf16 weight copies must be rebuilt from the loaded parameters."""
    cfg = tiny("rr+ra", rep_f=5.0, **flags)
    clean = birr.run(cfg, results_dir=tmp_path / "clean", progress=False)
    kill_after([cfg], results, task=1)
    assert list((results / "ckpt").glob("*.pt")) and not (results / "runs").exists()
    resumed = birr.run(cfg, results_dir=results, progress=False)
    assert resumed["acc_matrix"] == clean["acc_matrix"]
    assert resumed["loss_traces"] == clean["loss_traces"]
    assert resumed["rr_stats"] == clean["rr_stats"]
    assert not list((results / "ckpt").glob("*.pt"))        # removed once the results are written


def test_without_checkpoints_no_state_is_written_and_results_are_the_same(results, tmp_path, monkeypatch, tiny):
    cfg = tiny("rr+ra", rep_f=5.0)
    saved = []
    real_save = T.atomic_torch_save
    monkeypatch.setattr(T, "atomic_torch_save", lambda path, obj: saved.append(path.parent.name) or real_save(path, obj))
    plain = birr.run_many([cfg], results_dir=results, progress=False, checkpoint=False)[0]
    assert saved == ["models"] and not (results / "ckpt").exists()   # only the final model
    saved.clear()
    with_ckpt = birr.run(cfg, results_dir=tmp_path / "with", progress=False)
    assert saved.count("ckpt") == 2                                    # one state per task
    assert plain["acc_matrix"] == with_ckpt["acc_matrix"] and plain["loss_traces"] == with_ckpt["loss_traces"]


def test_without_checkpoint_a_stale_checkpoint_is_not_resumed(results, monkeypatch, tiny, kill_after):
    """run_many's docstring: with checkpoint=False a killed stack starts again from task 1. A run killed in
    task 2 leaves task 1's state in results/ckpt; the same run with checkpoint=False trains (and evaluates)
    both tasks. Catches `if checkpoint and ckpt_path.exists()` -> `if ckpt_path.exists()`."""
    cfg = tiny(iters=4)
    kill_after([cfg], results, task=1)
    assert list((results / "ckpt").glob("*.pt"))
    real_evaluate, calls = T.evaluate, []
    monkeypatch.setattr(T, "evaluate", lambda *a, **k: calls.append(1) or real_evaluate(*a, **k))
    r = birr.run_many([cfg], results_dir=results, progress=False, checkpoint=False)[0]
    assert len(calls) == 2 and len(r["acc_matrix"]) == 2                # both tasks trained


def test_an_unreadable_checkpoint_is_one_error_naming_it(results, tiny):
    cfg = tiny()
    ckpt = results / "ckpt" / f"run-{cfg.stamp}.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"garbage\n")
    with pytest.raises(ValueError, match=rf"checkpoint .*run-{cfg.stamp}\.pt cannot be resumed from .*delete it"):
        birr.run(cfg, results_dir=results, progress=False)
    ckpt.unlink()
    assert birr.run(cfg, results_dir=results, progress=False)["stamp"] == cfg.stamp


def _clean_and_spy(monkeypatch, cfg, tmp_path):
    clean = birr.run(cfg, results_dir=tmp_path / "clean", progress=False)
    loads = []
    real = Learner.load_state
    monkeypatch.setattr(Learner, "load_state", lambda self, s: loads.append(1) or real(self, s))
    return clean, loads


def test_force_discards_a_leftover_checkpoint_and_trains_from_task_1(results, tmp_path, monkeypatch, capsys, tiny,
                                                                     one_line, kill_in_task_2, birr_cache):
    cfg = tiny("rr+ra", rep_f=5.0)
    ckpt = kill_in_task_2(cfg, results)
    clean, loads = _clean_and_spy(monkeypatch, cfg, tmp_path)
    capsys.readouterr()
    r = birr.run(cfg, results_dir=results, progress=False, force=True)
    assert one_line(capsys.readouterr().err) == f"[birr] force: discarding checkpoint {ckpt}; training from task 1"
    assert loads == [] and r["acc_matrix"] == clean["acc_matrix"] and r["loss_traces"] == clean["loss_traces"]
    assert not list((results / "ckpt").iterdir())               # the checkpoint and its hash are gone
    # without force the same leftover is resumed (the spy sees it)
    kill_in_task_2(cfg, tmp_path / "again")
    assert birr.run(cfg, results_dir=tmp_path / "again", progress=False)["acc_matrix"] == clean["acc_matrix"]
    assert loads == [1]


@pytest.mark.parametrize("stale", ["code", "format 1"])
def test_a_checkpoint_of_other_code_is_not_resumed(results, tmp_path, monkeypatch, capsys, stale, tiny, one_line,
                                                   kill_in_task_2, birr_cache):
    cfg = tiny()
    ckpt = kill_in_task_2(cfg, results)
    ck = torch.load(ckpt, weights_only=True)
    assert ck["code_version"] == T.CODE_VERSION == T.code_version() and ck["stamps"] == [cfg.stamp]
    if stale == "code":
        monkeypatch.setattr(T, "CODE_VERSION", "0123456789abcdef")     # birr's training code changed since
        why = f"it was written by other code (version {ck['code_version']}, this is 0123456789abcdef)"
    else:                                                              # what the code before versions wrote
        T.atomic_torch_save(ckpt, dict(task=ck["task"], stack=ck["stack"], per_run=ck["per_run"]))
        why = "it was written before checkpoints recorded the code that wrote them"
    clean, loads = _clean_and_spy(monkeypatch, cfg, tmp_path)
    capsys.readouterr()
    r = birr.run(cfg, results_dir=results, progress=False)
    assert one_line(capsys.readouterr().err) == f"[birr] checkpoint {ckpt} is not resumed: {why}; deleted, training from task 1"
    assert loads == [] and r["acc_matrix"] == clean["acc_matrix"]
    assert not list((results / "ckpt").iterdir())


# --- divergence ---------------------------------------------------------------------------------------------

def test_a_diverging_run_in_a_stack_leaves_the_others_as_trained_alone(results, tmp_path, tiny, one_line, stored,
                                                                       birr_cache):
    """si_c = 3e38 makes the SI gradient's 2c overflow float32 in task 2: that run's weights go NaN. The
    other run of the stack goes on, is stored, and is what it is trained alone (no NaN leaks)."""
    good, bad = tiny(seed=0), tiny(seed=1, si_c=3e38)
    assert T._stack_key(good) == T._stack_key(bad)
    with pytest.raises(T.DivergedError) as info:
        birr.run_many([good, bad], results_dir=results, progress=False)
    line = one_line(str(info.value))
    assert line.startswith(f"run {bad.stamp} (seed 1, lr=0.001) diverged in task 2: loss terms ")
    assert line.endswith("nothing is stored for it (the stack's other runs go on)")
    assert [r["stamp"] for r in info.value.results] == [good.stamp]
    assert stored(results) == sorted([f"{good.stamp}.json", f"{good.stamp}.pt", f"{good.stamp}.pt.sha256"])
    alone = birr.run(good, results_dir=tmp_path / "alone", progress=False)
    assert alone["acc_matrix"] == info.value.results[0]["acc_matrix"]
    assert birr.load_result(results, bad) is None


def test_the_finite_check_reads_nothing_in_the_step_and_sees_weights_go_bad(monkeypatch, tiny, one_line,
                                                                            host_reads):
    """The check runs on the host copy of the loss log read once per task, with the weights' flags; the
    step reads nothing back. Weights that go bad after the last logged iteration are caught too."""
    cfg = tiny(iters=10, log_every=1)
    stack = Learner([cfg], torch.device("cpu"))
    steps, real_step = [], stack.step

    def counted(*a, **k):
        with host_reads() as reads:
            real_step(*a, **k)
        steps.append(reads.seen)
    monkeypatch.setattr(stack, "step", counted)
    per_run = [dict(acc_matrix=[], acc_matrix_seen=[], per_class_acc_after_task=[], curves=[], loss_traces=[],
                    rr_stats=[], task_wall_s=[])]
    T._train_tasks(stack, [cfg], per_run, 1, None, False)
    assert len(steps) == 2 * cfg.iters and all(s == [] for s in steps)
    assert "diverged" not in per_run[0]
    stack = Learner([cfg], torch.device("cpu"))
    real_end = stack.end_task

    def end_task_then_a_nan():        # after every logged loss of task 1: only the weights can tell
        real_end()
        with torch.no_grad():
            stack.model.head.weight[0, 0, 0] = float("nan")
    monkeypatch.setattr(stack, "end_task", end_task_then_a_nan)
    per_run = [{k: [] for k in per_run[0]}]
    with pytest.raises(T.DivergedError) as info:
        T._train_tasks(stack, [cfg], per_run, 1, None, False)
    assert one_line(str(info.value)) == (f"run {cfg.stamp} (seed 0, lr={cfg.lr:g}) diverged in task 1: its weights are not "
                                         f"finite after iteration 10 (the logged losses were); training stopped, "
                                         f"nothing is stored for it")


# --- gradient norms per term ---------------------------------------------------------------------

def _grad_runs(tmp_path, lambdas, **kw):
    cfgs = [birr.preset("rr+ra", budget="smoke", seed=0, grad_every=20, lambda_rr=lam, lambda_ra=lam, **kw)
            for lam in lambdas]
    return birr.run_many(cfgs, results_dir=tmp_path, progress=False)


def test_gradient_norms_known_cases(tmp_path):
    zero, small, double = _grad_runs(tmp_path, (0.0, 1e-3, 2e-3))
    i = {t: T.GRAD_TERMS.index(t) for t in T.GRAD_TERMS}
    for r in (zero, small, double):
        assert [g["iters"] for g in r["grad_norms"]] == [[1, 20, 40]] * 2
        t1, t2 = r["grad_norms"]
        # task 1 has no replay (no distillation, RR, RA) and SI's omega is still zero
        for term in ("distillation", "rr", "ra", "si"):
            assert t1["decoder"][term] == [0.0] * 3 and t1["fcE"][term] == [0.0] * 3
        # the classification, distillation and KL terms never reach the decoder
        for term in ("classification", "distillation", "kl"):
            assert t2["decoder"][term] == [0.0] * 3
        assert all(v > 0 for v in t2["fcE"]["classification"] + t2["decoder"]["reconstruction"])
        # SI pulls back towards the anchor: zero at the first step of a task, positive after
        assert t2["fcE"]["si"][0] == 0.0 and t2["fcE"]["si"][1] > 0 and t2["decoder"]["si"] == [0.0] * 3
    # lambda = 0: RR and RA give exactly no gradient anywhere
    for group in ("decoder", "fcE"):
        assert zero["grad_norms"][1][group]["rr"] == [0.0] * 3 and zero["grad_norms"][1][group]["ra"] == [0.0] * 3
    # at the first step of task 2 all three runs are the same model (RR acts from task 2 on), so the
    # weighted RR gradient is linear in lambda and the other terms are equal
    a, b = small["grad_norms"][1], double["grad_norms"][1]
    assert b["decoder"]["rr"][0] == pytest.approx(2 * a["decoder"]["rr"][0], rel=1e-5)
    assert b["decoder"]["ra"][0] == pytest.approx(2 * a["decoder"]["ra"][0], rel=1e-5)
    assert a["decoder"]["rr"][0] > 0
    assert b["fcE"]["classification"][0] == zero["grad_norms"][1]["fcE"]["classification"][0]
    frame = V.grad_share_frame(small)
    sums = frame.groupby(["task", "iter", "group"])["share"].sum()
    assert np.allclose(sums[sums > 0], 1.0)


def test_gradient_logging_changes_no_number(tmp_path):
    logged = birr.run(birr.preset("rr+ra", budget="smoke", seed=1, grad_every=10, lambda_rr=1e-3, lambda_ra=1e-3),
                      results_dir=tmp_path / "a", progress=False)
    plain = birr.run(birr.preset("rr+ra", budget="smoke", seed=1, lambda_rr=1e-3, lambda_ra=1e-3),
                     results_dir=tmp_path / "b", progress=False)
    assert logged["stamp"] != plain["stamp"]
    assert logged["acc_matrix"] == plain["acc_matrix"]
    assert logged["loss_traces"] == plain["loss_traces"]
    assert "grad_norms" not in plain
    wa = torch.load(tmp_path / "a" / "models" / f"{logged['stamp']}.pt")
    wb = torch.load(tmp_path / "b" / "models" / f"{plain['stamp']}.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
