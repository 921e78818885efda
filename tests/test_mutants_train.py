"""Tests from a mutation audit of the training loop, configs and CLI (birr/train.py outside the per-sample
loss math, birr/config.py, birr/__main__.py, birr/metrics.py).

Each test fails on a one-line change to birr that the rest of the suite let through (the change is named
in the test's docstring) and passes on the real code. Answers are worked out by hand, follow from the
spec (cited as appendix §N) or from the code's own docstrings, and are never birr compared with itself on the
same code path: where a trained model is involved, its accuracies are recomputed here from its logits.
"""
import copy
import json
import types

import numpy as np
import pytest
import torch

import birr
from birr import metrics as M
from birr import train as T
from birr.learner import Learner
from birr.config import Config, preset
from birr.experiments import book_configs, fig3_configs, table1_configs, table1_page_configs
from test_train import results, tiny  # noqa: F401 - the tiny synthetic runs and their results fixture


def _spy_steps(monkeypatch):
    """Record (task, x, y) of every training step."""
    seen = []
    real = Learner.step

    def spy(self, t, x, y, gens, log, rr_log, grad_log=None):
        seen.append((t, x.detach().clone(), y.clone()))
        return real(self, t, x, y, gens, log, rr_log, grad_log)
    monkeypatch.setattr(Learner, "step", spy)
    return seen


def _snapshots(monkeypatch):
    """A copy of the stack (its model, data, SI state) right after each end_task."""
    snaps = []
    real = Learner.end_task

    def spy(self):
        real(self)
        snaps.append(types.SimpleNamespace(model=copy.deepcopy(self.model), data=self.data,
                                           paper_means=self.paper_means.clone()))
    monkeypatch.setattr(Learner, "end_task", spy)
    return snaps


# --- the task loop: epochs, batches (appendix §2, §6) ------------------------------------------------------

@pytest.mark.parametrize("batch, per_epoch", [(40, 5), (32, 6)])
def test_epochs_are_shuffled_full_batches_with_drop_last(results, monkeypatch, batch, per_epoch):
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


def test_a_task_of_exactly_one_batch_trains(results):
    """appendix §2 (drop_last): a task with exactly `batch` training images has one full batch per epoch, so it
    trains; only fewer images than a batch is an error. The synthetic task has 200 images: batch=200 runs,
    batch=201 is refused with the message. Catches `if n_t < B` -> `if n_t <= B`."""
    r = birr.run(tiny(batch=200, batch_replay=16, iters=2, log_every=1), results_dir=results, progress=False)
    assert len(r["acc_matrix"]) == 2
    with pytest.raises(ValueError, match="task 1 has 200 training images, fewer than batch=201"):
        birr.run(tiny(batch=201, batch_replay=16, iters=2), results_dir=results, progress=False)


def test_si_path_integral_restarts_at_zero_every_task(results, monkeypatch):
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


def test_paper_means_hold_every_seen_class_mean(results, monkeypatch):
    """rr_variant='paper' (the paper's §3.3): x-hat of each class is the mean encoder feature of its real training
    images, and task 2's RR/RA read the means of task 1's classes. After the run, the stored means of all
    four classes equal the class means computed here from the features and labels. Catches filling
    paper_means only for t > 1 (task 1's classes left at zero)."""
    snaps = _snapshots(monkeypatch)
    cfg = tiny("rr+ra", rr_variant="paper", rep_f=3.0, iters=4)
    birr.run(cfg, results_dir=results, progress=False)
    last = snaps[-1]
    d = last.data
    for c in range(4):
        rows = d.train_x[d.train_y[0] == c]
        assert len(rows) == 100
        torch.testing.assert_close(last.paper_means[0, c], rows.sum(0) / 100)
    assert snaps[0].paper_means[0, :2].abs().sum() > 0                   # task 1's means are there after task 1


# --- what goes into the results (appendix §7) --------------------------------------------------------------

def test_accuracies_after_each_task_recomputed_from_the_models_logits(results, monkeypatch):
    """appendix §7: acc_matrix[t][i] is the accuracy on task i after task t with the argmax over ALL classes,
    acc_matrix_seen[t][i] the same with the argmax over the classes seen so far (2 t here), both None for
    tasks not seen yet; per_class_acc is the final model's per-class accuracy, per_task_acc the last row.
    Recomputed here from the logits of a copy of the model taken after each task. Catches n_seen off by one
    (`t * cpt - 1`), `i < t` -> `i <= t` in acc_matrix_seen, and per_class_acc taken after task 1."""
    snaps = _snapshots(monkeypatch)
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


def test_rr_stats_counts_per_task(results):
    """appendix §8 logging, per run and task of replay: n_replayed = iterations x batch_replay (24 here, not the
    current batch of 16); n_applied counts the steps in which RR/RA were applied, so 0 <= n_applied <= iters;
    n_kept <= n_competitive <= n_replayed. A run with RA but no RR logs them too (either switch computes the
    competition). Catches n_replayed counted with `batch`, n_applied filled from n_competitive, and
    rr_stats written only when `rr` is on."""
    cfg = tiny("rr+ra", rr=False, batch=16, batch_replay=24, rep_f=5.0, lambda_ra=1e-3)
    r = birr.run(cfg, results_dir=results, progress=False)
    assert len(r["rr_stats"]) == 1
    st = r["rr_stats"][0]
    assert st["task"] == 2 and st["n_replayed"] == 20 * 24
    assert 0 < st["n_applied"] <= 20
    assert st["n_kept"] <= st["n_competitive"] <= st["n_replayed"]


def test_stacked_runs_split_the_stacks_wall_time(results, monkeypatch):
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


def test_stacked_runs_keep_their_own_class_order_and_final_model(results, monkeypatch):
    """appendix §2: a run's class order is the inverse of np.random.RandomState(seed).permutation(C), so the
    seed-1 run of a stack records seed 1's order, not seed 0's. Its saved model (load_model) is its own slice
    of the stack: the loaded K=1 model's weights are the k-th run's, and its per-class accuracy, recomputed
    here from its logits on the run's own test labels, is the stored per_class_acc. Catches every run of a
    stack recording run 0's class order, saving run 0's weights for every run, and load_model building the
    model with in_dim from the wrong axis of fcD2.weight."""
    snaps = _snapshots(monkeypatch)
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


# --- checkpoints and run_many --------------------------------------------------------------------------

def test_without_checkpoint_a_stale_checkpoint_is_not_resumed(results, monkeypatch):
    """run_many's docstring: with checkpoint=False a killed stack starts again from task 1. A run killed in
    task 2 leaves task 1's state in results/ckpt; the same run with checkpoint=False trains (and evaluates)
    both tasks. Catches `if checkpoint and ckpt_path.exists()` -> `if ckpt_path.exists()`."""
    cfg = tiny(iters=4)
    real_evaluate, calls = T.evaluate, []

    def counting(*a, **k):
        calls.append(1)
        if fail[0] and len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_evaluate(*a, **k)
    fail = [True]
    monkeypatch.setattr(T, "evaluate", counting)
    with pytest.raises(KeyboardInterrupt):
        birr.run(cfg, results_dir=results, progress=False)
    assert list((results / "ckpt").glob("*.pt"))
    fail[0], calls[:] = False, []
    r = birr.run_many([cfg], results_dir=results, progress=False, checkpoint=False)[0]
    assert len(calls) == 2 and len(r["acc_matrix"]) == 2                # both tasks trained


def test_run_many_trains_each_missing_stamp_once_in_stacks_of_max_stack_and_keeps_the_order(results, monkeypatch):
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


def test_force_retrains_a_finished_stamp(results, monkeypatch):
    """run_many(force=True) re-trains even if results exist (the CLI's --force help says the same). Catches
    ignoring `force` (the stored result loaded and returned)."""
    cfg = tiny(iters=3)
    birr.run(cfg, results_dir=results, progress=False)
    path = results / "runs" / f"{cfg.stamp}.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps(dict(stored, marker="old")))
    again = birr.run(cfg, results_dir=results, progress=False, force=True)
    assert "marker" not in again and "marker" not in json.loads(path.read_text())


def test_resolve_device_refuses_a_gpu_index_past_the_last(monkeypatch):
    """resolve_device's docstring: a GPU that is asked for but absent is a one-line ValueError. With one CUDA
    GPU (indices 0 only, faked here), cuda:1 is absent. Catches `>=` -> `>` in the index check."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        with pytest.raises(ValueError, match=r"device='cuda:1' but this machine has 1 CUDA GPU\(s\)"):
            T.resolve_device("cuda:1")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


# --- config validation, presets, sweeps --------------------------------------------------------------

@pytest.mark.parametrize("name", ["n_tasks", "iters", "batch", "batch_replay", "fc_units", "z_dim",
                                  "encoder_epochs", "log_every"])
def test_sizes_must_be_positive(name):
    """validate(): sizes, iterations and log_every must be > 0 (log_every=0 would divide by zero in the loop;
    iters=0 trains nothing). Catches `<= 0` -> `< 0` and log_every dropped from the list."""
    with pytest.raises(ValueError, match=f"config.{name}=0 must be > 0"):
        Config(**{name: 0})
    assert getattr(Config(**{name: 1}), name) == 1


def test_value_ranges_at_their_edges():
    """dg_prop is P(gate entry = 0) and must be in [0, 1) (validate's message; dg_prop = 1 closes every gate,
    appendix §4.2); f >= 1 (paper §3.2), so f = 1 is allowed; RA, like RR, acts on replayed samples only
    (appendix §8.2), so ra=True without replay is refused; a bool is no float (lr=True). Catches `< 1.0` ->
    `<= 1.0` for dg_prop, `< 1` -> `<= 1` for rep_f, the replay check looking at rr only, and bools passing
    as floats."""
    with pytest.raises(ValueError, match=r"config.dg_prop=1.0 must be in \[0, 1\)"):
        Config(dg_prop=1.0)
    assert Config(dg_prop=0.0).dg_prop == 0.0
    assert Config(rep_f=1.0).rep_f == 1.0
    with pytest.raises(ValueError, match="need replay='generative'"):
        preset("finetune", ra=True)
    with pytest.raises(TypeError, match="config.lr=True has type bool"):
        Config(lr=True)


def test_a_dataset_override_brings_its_own_task_split():
    """preset()'s docstring: method, then budget sizes, then THE DATASET's task split, then overrides. The
    smoke budget's dataset is synthetic (2 tasks); asking for cifar10 gives cifar10's 5 tasks and encoder
    data, and the short budget with synthetic gives 2 tasks on synthetic. Catches taking the split of the
    budget's dataset instead of the one asked for."""
    c = preset("bir+si", budget="smoke", dataset="cifar10")
    assert (c.dataset, c.n_tasks, c.encoder_data, c.iters) == ("cifar10", 5, "cifar10", 40)
    s = preset("bir+si", budget="short", dataset="synthetic")
    assert (s.dataset, s.n_tasks, s.encoder_data, s.iters) == ("synthetic", 2, "synthetic", 300)


def test_sweeps_pass_their_arguments_through():
    """table1_configs: overrides reach every run and `variant` sets rr_variant of the RR+RA runs;
    fig3_configs: `f` sets rep_f of its RR+RA runs. Catches overrides dropped in table1_configs, variant
    ignored, and fig3's f fixed at 20."""
    t1 = table1_configs(budget="smoke", seeds=(0,), factors=(5,), variant="paper", iters=7)
    assert [(c.method, c.iters, c.rr_variant) for c in t1] == [("bir+si", 7, "code"), ("rr+ra", 7, "paper")]
    f3 = fig3_configs(budget="smoke", seeds=(0,), f=5.0)
    assert [(c.method, c.iters, c.rep_f) for c in f3] == [
        ("bir+si", 10, None), ("rr+ra", 10, 5.0), ("bir+si", 20, None), ("rr+ra", 20, 5.0),
        ("bir+si", 40, None), ("rr+ra", 40, 5.0)]


def test_table1_page_and_book_list_each_run_once():
    """table1_page_configs: the baseline and the code variant at f = 5, 10, 20, 50, 100, then the paper variant
    at f = 20 (its baseline is the same runs): 2 + 10 + 2 = 14 runs for 2 seeds, all different. book_configs
    (smoke, 1 seed): those 7, fine-tuning, and the Fig. 3 sweep at 10, 20, 40 iterations (baseline and f = 20),
    whose 40-iteration pair is the Table 1 baseline and f = 20 code run again: 7 + 1 + 4 = 12 runs, each
    once. Catches the paper list's baseline kept (a duplicate) and book_configs without its de-duplication."""
    page = table1_page_configs(budget="smoke", seeds=(0, 1))
    assert len(page) == len({c.stamp for c in page}) == 14
    assert [(c.rr_variant, c.rep_f, c.seed) for c in page[-2:]] == [("paper", 20.0, 0), ("paper", 20.0, 1)]
    assert sum(c.method == "bir+si" for c in page) == 2
    book = book_configs(budget="smoke", seeds=(0,))
    assert len(book) == len({c.stamp for c in book}) == 12


# --- CLI ---------------------------------------------------------------------------------------------

def test_cli_set_parses_bools_like_its_message_says():
    """parse_set's bools accept true/false/1/0 (case-insensitive), the four its error message allows."""
    from birr.__main__ import parse_set
    assert parse_set(["bf16=1", "compile=0", "rr=TRUE", "ra=False"]) == dict(bf16=True, compile=False, rr=True, ra=False)


def test_cli_defaults_are_those_of_the_python_functions(capsys):
    """__main__.DEFAULTS: each command's defaults are those of the function it calls: table1_configs(budget=
    "full", seeds=(0, 1, 2, 3, 4)), 6 runs per seed (baseline + 5 f) = 30; book_configs(budget="short",
    seeds=(0, 1, 2)). Catches table1 defaulting to 3 seeds."""
    from birr.__main__ import main
    assert main(["table1", "--print-config"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 30 and {r["seed"] for r in rows} == {0, 1, 2, 3, 4} and {r["budget"] for r in rows} == {"full"}
    assert main(["book", "--print-config"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert {r["seed"] for r in rows} == {0, 1, 2} and {r["budget"] for r in rows} == {"short"}


def test_cli_train_names_its_own_method_option(tmp_path, capsys):
    """SETS: `train` sets the method itself, so --set method=... is refused naming --method."""
    from birr.__main__ import main
    assert main(["train", "--set", "method=bir", "--results-dir", str(tmp_path), "--quiet"]) == 2
    assert "`train` sets method itself; use --method" in capsys.readouterr().err


def test_cli_force_says_trained_and_no_checkpoint_writes_no_state(tmp_path, capsys):
    """--no-checkpoint: "no per-task state in results/ckpt/", so that folder is never made; --force re-trains,
    so its line says "(trained in", not "(stored, trained in". Catches the CLI passing checkpoint=True always
    and marking forced re-runs as stored."""
    from birr.__main__ import main
    res = tmp_path / "res"
    argv = ["train", "--set", "iters=3", "--set", "device=cpu", "--results-dir", str(res), "--quiet"]
    assert main(argv + ["--no-checkpoint"]) == 0
    assert "(trained in" in capsys.readouterr().out and not (res / "ckpt").exists()
    assert main(argv + ["--force", "--no-checkpoint"]) == 0
    out = capsys.readouterr().out
    assert "(trained in" in out and "stored" not in out


# --- metrics (appendix §7) --------------------------------------------------------------------------------

def test_forgetting_is_negative_when_a_task_improves():
    """forgetting(): for each task but the last, its best accuracy BEFORE the final model minus its final
    accuracy (Chaudhry et al. 2018: max over l < T; the code's range(i, T - 1)). Task 0 goes 0.5 -> 0.7:
    forgetting 0.5 - 0.7 = -0.2, backward transfer +0.2. Catches the final row included in the max (which
    clips forgetting at 0)."""
    acc = [[0.5, None], [0.7, 0.9]]
    assert M.forgetting(acc) == pytest.approx(-0.2)
    assert M.bwt(acc) == pytest.approx(0.2)


def test_first_fraction_rounds_to_the_nearest_count():
    """first_fraction's docstring: the first round(fraction * C) classes (Python's round; CIFAR-100's 20 and
    50 are exact). Half of 3 classes is round(1.5) = 2 classes: (1.0 + 0.0) / 2 = 0.5. Catches truncating
    (int(1.5) = 1 class, 1.0)."""
    assert M.first_fraction([1.0, 0.0, 0.0], 0.5) == 0.5
