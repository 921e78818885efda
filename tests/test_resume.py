"""Resume from per-run state: a stack's runs keep their state after each task in files of their own
(results/ckpt/run-<stamp>.pt), so a killed stack resumes whatever order or subset of its runs is trained
next, and ends as an uninterrupted one would, bit for bit; no checkpoint outlives its run's result.
Tiny synthetic runs (the smoke budget, 4 tasks of one class, RR + RA in the paper's variant, whose class
means are per-run state too), seconds each."""
import shutil

import pytest
import torch

import birr
from birr import store
from birr import stacked
from birr import train as T
from birr.learner import Learner

SEEDS = (0, 1, 2)
ITERS = 20


def run_cfg(seed: int, **kw) -> birr.Config:
    """The run at `seed` that this module's stacks are made of: RR + RA (paper variant), 4 tasks of one class."""
    base = dict(budget="smoke", device="cpu", iters=ITERS, log_every=5, n_tasks=4, rr_variant="paper", rep_f=5.0)
    return birr.preset("rr+ra", seed=seed, **{**base, **kw})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A features cache for this module: the encoder is trained once, for every test here."""
    return tmp_path_factory.mktemp("resume-cache")


@pytest.fixture(autouse=True)
def _cache(cache, monkeypatch):
    monkeypatch.setenv("BIRR_CACHE", str(cache))


@pytest.fixture(scope="module")
def clean(cache, tmp_path_factory):
    """The three runs trained uninterrupted as one stack: (results by seed, final weights by seed)."""
    results = tmp_path_factory.mktemp("resume-clean")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIRR_CACHE", str(cache))
        out = birr.run_many([run_cfg(s) for s in SEEDS], results_dir=results, progress=False)
    return ({r["seed"]: r for r in out},
            {s: torch.load(T.model_path(results, run_cfg(s)), weights_only=True) for s in SEEDS})


@pytest.fixture
def steps(monkeypatch):
    """(task, runs in the stack) of every training step taken."""
    seen, real = [], Learner.step
    monkeypatch.setattr(Learner, "step", lambda self, t, *a, **k: seen.append((t, self.K)) or real(self, t, *a, **k))
    return seen


def saved(results) -> dict[int, int]:
    """Seed -> the task its checkpoint stands at, for every file in results/ckpt."""
    out = {}
    for path in sorted((results / "ckpt").glob("*.pt")):
        ck = torch.load(path, weights_only=True)
        seed = next(s for s in SEEDS if run_cfg(s).stamp == ck["stamps"][0])
        assert path == T._checkpoint_path(results, run_cfg(seed)) and store.verify(path)
        assert ck["format"] == T.CKPT_FORMAT and ck["code_version"] == T.CODE_VERSION
        out[seed] = ck["task"]
    return out


def assert_as_clean(clean, results, got: list[dict]) -> None:
    """Each result is its uninterrupted twin: accuracies, RR/RA counts, curves and final weights bit for
    bit, logged losses to rounding (reductions over the stack, tests/test_stacked.py's stack_mismatches)."""
    by_seed, weights = clean
    for r in got:
        want = by_seed[r["seed"]]
        for key in ("acc_matrix", "acc_matrix_seen", "per_class_acc", "per_class_acc_after_task", "metrics",
                    "rr_stats", "curves"):
            assert r[key] == want[key], (r["seed"], key)
        assert [t["task"] for t in r["loss_traces"]] == [1, 2, 3, 4]
        for a, b in zip(r["loss_traces"], want["loss_traces"]):
            for k in a:
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-9), (r["seed"], k, a["task"])
        mine = torch.load(T.model_path(results, run_cfg(r["seed"])), weights_only=True)
        assert mine.keys() == weights[r["seed"]].keys()
        assert all(torch.equal(mine[n], weights[r["seed"]][n]) for n in mine), r["seed"]


def test_the_runs_differ_so_the_comparison_can_fail(clean):
    by_seed, weights = clean
    assert by_seed[0]["acc_matrix"] != by_seed[1]["acc_matrix"] or by_seed[0]["rr_stats"] != by_seed[1]["rr_stats"]
    assert not torch.equal(weights[0]["fcE1.weight"], weights[1]["fcE1.weight"])
    assert any(r["rr_stats"] and any(s["pairs"] for s in r["rr_stats"]) for r in by_seed.values())


def test_a_stack_resumes_in_another_order_without_retraining_and_leaves_no_checkpoint(clean, tmp_path, kill_after,
                                                                                      steps, capsys):
    results = tmp_path / "results"
    e = kill_after([run_cfg(s) for s in SEEDS], results, task=2)
    assert e.birr_checkpoint == (results / "ckpt", 2)                 # several runs: their folder
    assert saved(results) == {0: 2, 1: 2, 2: 2}
    steps.clear()
    capsys.readouterr()
    out = birr.run_many([run_cfg(s) for s in (2, 0, 1)], results_dir=results, progress=True)
    assert f"[birr] resuming 3 run(s) after task 2 from {results / 'ckpt'}" in capsys.readouterr().out
    assert steps == [(3, 3)] * ITERS + [(4, 3)] * ITERS               # tasks 1-2 are not trained again
    assert [r["seed"] for r in out] == [2, 0, 1] and {r["stacked_with"] for r in out} == {3}
    assert_as_clean(clean, results, out)
    assert list((results / "ckpt").iterdir()) == []                  # nothing left for the stored runs


def test_a_subset_resumes_its_runs_force_retrains_one_and_each_result_takes_its_checkpoint(clean, tmp_path,
                                                                                        kill_after, steps, capsys):
    results = tmp_path / "results"
    kill_after([run_cfg(s) for s in SEEDS], results, task=2)
    steps.clear()
    (one,) = birr.run_many([run_cfg(1)], results_dir=results, progress=False)
    assert steps == [(3, 1)] * ITERS + [(4, 1)] * ITERS
    assert_as_clean(clean, results, [one])
    assert saved(results) == {0: 2, 2: 2}                             # seed 1's state went with its result
    # force: seed 0's state is discarded, one line says so, and it trains from task 1 to the same end
    steps.clear()
    capsys.readouterr()
    (zero,) = birr.run_many([run_cfg(0)], results_dir=results, progress=False, force=True)
    assert capsys.readouterr().err == (f"[birr] force: discarding checkpoint {T._checkpoint_path(results, run_cfg(0))}; "
                                       f"training from task 1\n")
    assert [t for t, _ in steps] == [t for t in (1, 2, 3, 4) for _ in range(ITERS)]
    assert_as_clean(clean, results, [zero])
    assert saved(results) == {2: 2}
    # a finished run asked for again is loaded; seed 2 resumes beside it
    steps.clear()
    out = birr.run_many([run_cfg(s) for s in SEEDS], results_dir=results, progress=False)
    assert steps == [(3, 1)] * ITERS + [(4, 1)] * ITERS
    assert_as_clean(clean, results, out)
    assert list((results / "ckpt").iterdir()) == []


def test_runs_at_different_tasks_train_as_one_stack_per_task(clean, tmp_path, kill_after, steps):
    """A stack killed between its runs' writes leaves them at different tasks; here seed 2's state after
    task 1 comes from a stack of its own (a run's state moves between stacks of any size)."""
    results, alone = tmp_path / "results", tmp_path / "alone"
    kill_after([run_cfg(s) for s in SEEDS], results, task=2)
    kill_after([run_cfg(2)], alone, task=1)
    for src in (T._checkpoint_path(alone, run_cfg(2)), store.sidecar(T._checkpoint_path(alone, run_cfg(2)))):
        shutil.copy(src, results / "ckpt" / src.name)
    assert saved(results) == {0: 2, 1: 2, 2: 1}
    steps.clear()
    out = birr.run_many([run_cfg(s) for s in SEEDS], results_dir=results, progress=False)
    assert steps == ([(3, 2)] * ITERS + [(4, 2)] * ITERS                # seeds 0 and 1 from task 2 ...
                     + [(2, 1)] * ITERS + [(3, 1)] * ITERS + [(4, 1)] * ITERS)   # ... seed 2 from task 1
    assert [r["stacked_with"] for r in out] == [2, 2, 1]
    assert_as_clean(clean, results, out)
    assert list((results / "ckpt").iterdir()) == []


def test_checkpoints_of_other_code_are_one_line_and_their_runs_start_again(clean, tmp_path, monkeypatch, steps,
                                                                          capsys, kill_after):
    results = tmp_path / "results"
    kill_after([run_cfg(s) for s in SEEDS], results, task=1)
    old = T.CODE_VERSION
    monkeypatch.setattr(T, "CODE_VERSION", "0123456789abcdef")         # birr's training code changed since
    steps.clear()
    capsys.readouterr()
    out = birr.run_many([run_cfg(s) for s in SEEDS], results_dir=results, progress=False)
    names = ", ".join(T._checkpoint_path(results, run_cfg(s)).name for s in SEEDS)
    assert capsys.readouterr().err == (f"[birr] checkpoints {names} in {results / 'ckpt'} are not resumed: it was "
                                       f"written by other code (version {old}, this is 0123456789abcdef); "
                                       f"deleted, training from task 1\n")
    assert {t for t, _ in steps} == {1, 2, 3, 4} and len(steps) == 4 * ITERS
    assert_as_clean(clean, results, out)


def test_an_old_whole_stack_checkpoint_is_removed_with_one_line(clean, tmp_path, capsys):
    results, cfg = tmp_path / "results", run_cfg(0, n_tasks=2, iters=5)
    old = results / "ckpt" / "stack-0123456789ab-k3.pt"
    store.torch_save(old, dict(format=2, code_version="0123456789abcdef", stamps=["a", "b", "c"], task=1))
    assert store.sidecar(old).exists()
    capsys.readouterr()
    birr.run_many([cfg], results_dir=results, progress=False)
    assert capsys.readouterr().err == (f"[birr] removed 1 whole-stack checkpoint(s) of an older format from "
                                       f"{results / 'ckpt'} (stack-0123456789ab-k3.pt): this code cannot resume "
                                       f"them\n")
    assert list((results / "ckpt").iterdir()) == []
    # a stored run's state left behind (killed between its result and the state's removal) goes quietly
    store.torch_save(T._checkpoint_path(results, cfg), dict(format=T.CKPT_FORMAT, stamps=[cfg.stamp], task=1))
    birr.run_many([cfg], results_dir=results, progress=False)
    assert list((results / "ckpt").iterdir()) == [] and capsys.readouterr().err == ""


def test_a_run_state_joins_into_any_slot_bit_for_bit(clean):
    """Learner.run_state and stacked.join_states are inverse: a stack's state taken apart by run and put together
    in another order is the same tensors, permuted; Adam's shared step counts stay scalars."""
    cfgs = [run_cfg(s, iters=3) for s in SEEDS]
    stack = Learner(cfgs, torch.device("cpu"))
    per_run = [dict(acc_matrix=[], acc_matrix_seen=[], per_class_acc_after_task=[], curves=[], loss_traces=[],
                    rr_stats=[], task_wall_s=[]) for _ in cfgs]
    T._train_tasks(stack, cfgs, per_run, 1, None, False)
    whole = stack.state()
    joined = stacked.join_states([stack.run_state(k) for k in (2, 0, 1)])
    for part in ("anchor", "omega", "model"):
        for n, v in whole[part].items():
            assert torch.equal(joined[part][n], v[[2, 0, 1]]), (part, n)
    assert torch.equal(joined["paper_means"], whole["paper_means"][[2, 0, 1]])
    for i, st in whole["opt"]["state"].items():
        assert torch.equal(joined["opt"]["state"][i]["step"], st["step"]) and st["step"].dim() == 0
        assert torch.equal(joined["opt"]["state"][i]["exp_avg_sq"], st["exp_avg_sq"][[2, 0, 1]])
    other = Learner([run_cfg(0, iters=4)], torch.device("cpu"))     # another step count: not one stack
    T._train_tasks(other, [run_cfg(0, iters=4)], [{k: [] for k in per_run[0]}], 1, None, False)
    with pytest.raises(ValueError, match="differs between the runs"):
        stacked.join_states([stack.run_state(0), other.run_state(0)])
