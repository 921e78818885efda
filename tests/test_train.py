"""Training loop, results, resume and stacking (appendix §6-§7; issues 4, 5, 7), on tiny synthetic runs."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F

import birr
from birr import fast
from birr import metrics as M
from birr import rr as RR
from birr import stacked
from birr import store
from birr import train as T
from birr.data import class_order
from birr.learner import AdamSI, Learner


def tiny(method="bir+si", **kw):
    base = dict(budget="smoke", device="cpu", iters=20, log_every=5)
    base.update(kw)
    return birr.preset(method, **base)


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


def test_results_file_has_everything(results):
    cfg = tiny()
    r = birr.run(cfg, results_dir=results, progress=False)
    on_disk = json.loads((results / "runs" / f"{cfg.stamp}.json").read_text())
    assert on_disk["stamp"] == r["stamp"] == cfg.stamp
    for key in ("config", "seed", "class_order", "class_names", "acc_matrix", "per_class_acc", "metrics",
                "loss_traces", "task_wall_s", "provenance", "dataset", "budget", "encoder"):
        assert key in on_disk, key
    assert on_disk["synthetic"] is True and on_disk["dataset"] == "synthetic"
    assert on_disk["class_order"] == class_order(4, 0)
    assert len(r["acc_matrix"]) == 2 and r["acc_matrix"][0][1] is None
    assert set(r["metrics"]) >= {"first20", "first50", "overall", "forgetting", "bwt"}
    assert r["metrics"]["overall"] == pytest.approx(sum(r["per_class_acc"]) / 4)
    # BWT from the seen-classes matrix (appendix §7's record after each task), whose last row is the final one
    assert on_disk["format"] == birr.results.RESULTS_FORMAT == 2 and r["acc_matrix"][-1] == r["acc_matrix_seen"][-1]
    assert r["metrics"]["bwt"] == pytest.approx(r["acc_matrix_seen"][1][0] - r["acc_matrix_seen"][0][0])
    assert len(r["loss_traces"][0]["total"]) == 4 and r["loss_traces"][1]["recon_r"][0] > 0
    assert r["loss_traces"][0]["recon_r"][0] == 0          # no replay in task 1
    prov = r["provenance"]
    assert {"git_sha", "torch", "device", "device_name", "python"} <= set(prov)
    assert not list(results.rglob(".*tmp*"))               # atomic writes leave no temp files


def test_a_format_1_result_loads_with_its_metrics_recomputed_from_the_seen_classes_matrix(results):
    """Format 1 took forgetting and BWT from the all-class matrix, where before the last task untrained
    head rows of unseen classes win some argmaxes: task 1 here was 0.6 right after learning it over all
    classes, 0.9 over the seen ones, and ends at 0.5. Loading recomputes (BWT -0.1 -> -0.4), and leaves
    the file as it was."""
    cfg = tiny()
    birr.run(cfg, results_dir=results, progress=False)
    path = T.results_path(results, cfg)
    old = json.loads(path.read_text())
    del old["sha256"]                       # format-1 files predate the embedded hash: read unchecked
    old.update(format=1, acc_matrix=[[0.6, None], [0.5, 0.8]], acc_matrix_seen=[[0.9, None], [0.5, 0.8]],
               per_class_acc=[0.4, 0.6, 0.8, 0.8])
    old["metrics"] = M.summarise(old["acc_matrix"], old["per_class_acc"])
    assert old["metrics"]["bwt"] == pytest.approx(-0.1)
    path.write_text(json.dumps(old))
    r = birr.load_result(results, cfg)
    assert r["format"] == 2
    assert r["metrics"]["bwt"] == pytest.approx(-0.4) and r["metrics"]["forgetting"] == pytest.approx(0.4)
    assert r["metrics"]["overall"] == pytest.approx(0.65)
    assert json.loads(path.read_text()) == old                       # read, not rewritten
    assert birr.run(cfg, results_dir=results, progress=False)["metrics"] == r["metrics"]   # run() loads it so too


def test_a_task_shorter_than_log_every_logs_its_last_iteration_and_logging_never_changes_training(results):
    """Config(iters=7, log_every=50) used to record no loss trace at all, silently."""
    sparse = birr.run(tiny(iters=7, log_every=50), results_dir=results, progress=False)
    dense = birr.run(tiny(iters=7, log_every=1), results_dir=results, progress=False)
    assert [tr["iters"] for tr in sparse["loss_traces"]] == [[7], [7]]
    assert [tr["iters"] for tr in dense["loss_traces"]] == [list(range(1, 8))] * 2
    for s, d in zip(sparse["loss_traces"], dense["loss_traces"]):
        assert s["total"] == d["total"][-1:] and s["rr"] == d["rr"][-1:]
    assert sparse["acc_matrix"] == dense["acc_matrix"]      # the loss terms are read, never fed back


def test_determinism_same_seed_same_numbers(results):
    a = birr.run(tiny(), results_dir=results, progress=False)
    b = birr.run(tiny(), results_dir=results, progress=False, force=True)
    assert a["acc_matrix"] == b["acc_matrix"] and a["loss_traces"] == b["loss_traces"]
    c = birr.run(tiny(seed=1), results_dir=results, progress=False)
    assert c["loss_traces"] != a["loss_traces"]


def test_finished_stamp_is_loaded_not_retrained(results, monkeypatch):
    cfg = tiny()
    first = birr.run(cfg, results_dir=results, progress=False)
    calls = []
    monkeypatch.setattr(T, "_train_stack", lambda *a, **k: calls.append(1) or [])
    again = birr.run(cfg, results_dir=results, progress=False)
    assert calls == [] and again == first


@pytest.mark.parametrize("flags", [{}, dict(bf16=True, compile=True)], ids=["eager", "bf16+compile"])
def test_killed_run_resumes_and_matches_uninterrupted(results, tmp_path, monkeypatch, flags):
    """A run killed in task 2 resumes from task 1's checkpoint and ends bit for bit as an uninterrupted one;
    with bf16 + compile too, where the bf16 weight copies must be rebuilt from the loaded parameters."""
    cfg = tiny("rr+ra", rep_f=5.0, **flags)
    clean = birr.run(cfg, results_dir=tmp_path / "clean", progress=False)
    real_evaluate, n = T.evaluate, []

    def dies_in_task_2(*a, **k):
        n.append(1)
        if len(n) == 2:
            raise KeyboardInterrupt("killed")
        return real_evaluate(*a, **k)

    monkeypatch.setattr(T, "evaluate", dies_in_task_2)
    with pytest.raises(KeyboardInterrupt):
        birr.run(cfg, results_dir=results, progress=False)
    assert list((results / "ckpt").glob("*.pt")) and not (results / "runs").exists()
    monkeypatch.setattr(T, "evaluate", real_evaluate)
    resumed = birr.run(cfg, results_dir=results, progress=False)
    assert resumed["acc_matrix"] == clean["acc_matrix"]
    assert resumed["loss_traces"] == clean["loss_traces"]
    assert resumed["rr_stats"] == clean["rr_stats"]
    assert not list((results / "ckpt").glob("*.pt"))        # removed once the results are written


def test_sigkilled_cli_run_resumes_from_its_last_task(tmp_path):
    """The brief's standard, with a real SIGKILL (no Python cleanup at all, unlike the KeyboardInterrupt
    above): `python -m birr train` killed during task 2 leaves task 1's checkpoint and no results file;
    the same command again resumes after task 1 and writes results equal to an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time
    argv = [sys.executable, "-m", "birr", "train", "--method", "rr+ra", "--set", "rep_f=5", "--set", "iters=400",
            "--set", "device=cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(argv + ["--results-dir", str(killed), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((killed / "ckpt").glob("*.pt")):          # task 1 done: its state is on disk
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "runs").exists(), "the run finished before it was killed: make task 2 longer"
    again = subprocess.run(argv + ["--results-dir", str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming 1 run(s) after task 1" in again.stdout, again.stdout + again.stderr
    subprocess.run(argv + ["--results-dir", str(clean), "--quiet", "--no-checkpoint"], env=env, check=True,
                   capture_output=True, timeout=300)
    (a,), (b,) = (list((d / "runs").glob("*.json")) for d in (killed, clean))
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for key in ("acc_matrix", "per_class_acc", "loss_traces", "rr_stats", "metrics"):
        assert ra[key] == rb[key], key
    assert not list((killed / "ckpt").glob("*")) and not list(killed.rglob(".*tmp*"))


def test_runs_that_differ_in_compile_or_device_are_not_stacked(results, monkeypatch):
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


def test_without_checkpoints_no_state_is_written_and_results_are_the_same(results, tmp_path, monkeypatch):
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


def test_provenance_takes_the_stated_sha_over_the_trees_git(monkeypatch):
    own = T.provenance(torch.device("cpu"))
    assert own["git_sha_stated"] is False
    monkeypatch.setenv("BIRR_GIT_SHA", "abc123")     # a copied tree whose .git is some other commit
    prov = T.provenance(torch.device("cpu"))
    assert prov["git_sha"] == "abc123" and prov["git_dirty"] is False and prov["git_sha_stated"] is True


def stack_cfgs(bf16):
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
def test_stacked_runs_are_bitwise_runs_trained_alone(results, tmp_path, bf16):
    """Issue 7: a run's numbers do not depend on the runs it is stacked with. On the CPU they are the
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
    runs = train_alone_and_stacked(stack_cfgs(bf16), results, tmp_path)
    for alone, s, a, b in runs:
        assert stack_mismatches(alone, s, a, b) == [], birr.results.cpu_isa()
    # the comparison can fail: a run trained as another config (BI-R + SI against RR + RA, same seed)
    (bir, _, a_bir, _), (rr, _, a_rr, _) = runs[0], runs[2]
    other = stack_mismatches(bir, rr, a_bir, a_rr)
    assert any(m.startswith("loss rr") for m in other) and any(m.startswith("weight") for m in other)


def test_every_matmul_of_a_cpu_stack_has_the_shapes_of_a_run_alone(results):
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


def test_adam_step_run_by_run_is_torch_adams_fused_step(results, monkeypatch):
    """stacked.adam_step calls torch's fused Adam kernel on per-run slices; for one run it must leave
    exactly what torch.optim.Adam(fused=True).step() leaves (guards the private kernel's signature)."""
    cfg = tiny(seed=3, iters=15)
    mine = birr.run(cfg, results_dir=results / "mine", progress=False)
    monkeypatch.setattr(stacked, "adam_step", lambda opt, params, K: opt.step())
    torchs = birr.run(cfg, results_dir=results / "torch", progress=False)
    assert mine["loss_traces"] == torchs["loss_traces"] and mine["acc_matrix"] == torchs["acc_matrix"]
    a, b = torch.load(T.model_path(results / "mine", cfg)), torch.load(T.model_path(results / "torch", cfg))
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_rr_ra_only_on_replay_batches_and_logged(results, monkeypatch):
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


def test_paper_class_means_are_each_class_own_training_mean(results):
    """x-hat of the paper variant (the paper's §3.3): the mean encoder feature of each class's real training
    images, class by class in the run's own label order."""
    cfg = tiny("rr+ra", rr_variant="paper", seed=1)
    data = T.TaskData(cfg, [0, 1], torch.device("cpu"))
    for t in (1, 2):
        means = data.class_means(t)                                           # (K, cpt, D)
        for k in range(2):
            for j in range(data.cpt):
                c = (t - 1) * data.cpt + j
                rows = data.train_x[data.train_y[k] == c]
                assert len(rows) > 0
                torch.testing.assert_close(means[k, j], rows.sum(0) / len(rows))
        assert not torch.allclose(means[0, 0], means[0, 1])                   # classes differ


def test_paper_variant_runs_and_logs(results):
    cfg = tiny("rr+ra", rr_variant="paper", rep_f=3.0)
    r = birr.run(cfg, results_dir=results, progress=False)
    st = r["rr_stats"][0]
    assert st["n_kept"] >= st["n_competitive"] > 0
    assert all(a < 4 and b < 4 and a != b for a, b, _ in st["pairs"])  # own classifier: all seen classes
    assert max(r["loss_traces"][1]["rr"]) > 0


def test_si_importance_only_for_fcE_and_head():
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


def _stack_after_task_1(cfgs, steps=3):
    stack = Learner(cfgs, torch.device("cpu"))
    d = stack.data
    idx = d.task_indices(1)[:, :cfgs[0].batch]
    gens = stack.generators(1)
    stack.begin_task(1)
    for _ in range(steps):
        stack.step(1, d.train_x[idx], d.train_y.gather(1, idx), gens, None, None)
    stack.end_task()
    return stack


def test_previous_model_is_a_frozen_copy_updated_in_place():
    stack = _stack_after_task_1([tiny()])
    prev = stack.prev
    assert all(torch.equal(a, b) for a, b in zip(prev.state_dict().values(), stack.model.state_dict().values()))
    with torch.no_grad():
        stack.model.fcE1.weight.add_(1.0)
    assert not torch.equal(prev.fcE1.weight, stack.model.fcE1.weight)   # a copy, not an alias
    stack.end_task()
    assert stack.prev is prev and torch.equal(prev.fcE1.weight, stack.model.fcE1.weight)


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_compiled_run_matches_eager(results, tmp_path, variant):
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


def test_compiled_bf16_run_with_weight_copies_matches_eager_bf16(results, tmp_path):
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


def test_replay_retains_task_1_better_than_finetuning(results):
    kw = dict(iters=150, fc_units=128, batch=32, batch_replay=32)
    ft = birr.run(tiny("finetune", **kw), results_dir=results, progress=False)
    bir = birr.run(tiny("bir+si", **kw), results_dir=results, progress=False)
    # class-incremental fine-tuning forgets task 1 entirely; generative replay keeps some of it
    assert ft["acc_matrix"][-1][0] < 0.1
    assert bir["acc_matrix"][-1][0] > ft["acc_matrix"][-1][0] + 0.1


def test_cli_print_config_and_bad_set(capsys):
    from birr.__main__ import main
    assert main(["train", "--budget", "smoke", "--seeds", "0", "1", "--set", "rep_f=none", "--print-config"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["seed"] == 1
    assert main(["train", "--set", "rep_f=0.5", "--print-config"]) == 2
    assert "config.rep_f=0.5 must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--set", "nope=1"], "--set 'nope': Unknown config key"),
    (["train", "--set", "rep_f=abc"], "--set rep_f='abc': expected a number"),
    (["train", "--set", "iters=1.5"], "--set iters='1.5': expected an integer"),
    (["train", "--set", "seed=5"], "`train` sets seed itself; use --seeds"),
    (["table1", "--set", "rep_f=5"], "`table1` sets rep_f itself; use (the command sweeps f)"),
    (["book", "--set", "iters=100"], "`book` sets iters itself"),
    (["train", "--set", "device=cuda:x"], "config.device='cuda:x' is not allowed"),
    (["train", "--set", "lr=nan"], "config.lr=nan must be a finite number"),
    (["train", "--set", "lambda_rr=-1e-6"], "must be >= 0"),
    (["train", "--seeds", "99999999999"], "config.seed=99999999999 must be in 0..4294967295"),
    (["train", "--set", "n_train_per_class=0"], "config.n_train_per_class=0 must be >= 1"),
    (["train", "--set", "encoder=ref-0000000000"], "encoder 'ref-0000000000': no "),
    (["import-encoder", "no/such/C3-5x16-bn"], "no/such/C3-5x16-bn: no such file"),
])
def test_cli_mistakes_end_in_one_error_line(argv, message, tmp_path, capsys):
    """A user's mistake, found while building the configs or at the start of training, is one
    `error:` line on stderr and exit status 2, never a traceback; nothing is written."""
    from birr.__main__ import main
    assert main(argv + (["--results-dir", str(tmp_path / "res"), "--quiet"] if argv[0] != "import-encoder" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "res" / "runs").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--budget", "tiny"], "argument --budget: invalid choice: 'tiny' (choose from"),
    (["train", "--method", "rr"], "argument --method: invalid choice: 'rr'"),
    (["train", "--seeds", "x"], "argument --seeds: invalid int value: 'x'"),
    (["trian"], "invalid choice: 'trian'"),
    (["train", "--nope"], "unrecognized arguments: --nope"),
])
def test_cli_bad_options_end_in_one_error_line(argv, message, capsys):
    """argparse's own mistakes (an invalid choice, a bad type, an unknown option) are one `error:` line
    and exit status 2 too, without the usage block argparse prints by default."""
    from birr.__main__ import main
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err and "--help" in err, err


def test_cli_set_none_only_where_a_field_may_be_none(capsys):
    from birr.__main__ import parse_set
    assert parse_set(["replay=none", "rep_f=none", "encoder=None"]) == dict(replay="none", rep_f=None, encoder=None)
    from birr.__main__ import main
    assert main(["train", "--method", "bir+si", "--set", "replay=none", "--set", "si_c=1e8", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["replay"] == "none"   # SI alone, no replay


def test_cli_uses_the_api_results_store_and_says_stored(tmp_path, monkeypatch, capsys):
    from birr.__main__ import main
    monkeypatch.setenv("BIRR_RESULTS", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--set", "iters=5", "--set", "device=cpu", "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr().out.strip()
    assert "(trained in" in first and not (tmp_path / "results").exists()
    assert len(list((tmp_path / "store" / "runs").glob("*.json"))) == 1
    assert main(argv) == 0
    assert "(stored, trained in" in capsys.readouterr().out
    (tmp_path / "file").write_text("")
    assert main(argv + ["--results-dir", str(tmp_path / "file"), "--force"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_eval_every_records_curves_on_the_full_test_set(results):
    r = birr.run(tiny(eval_every=5), results_dir=results, progress=False)
    iters = [(c["task"], c["iter"]) for c in r["curves"]]
    assert iters == [(1, 5), (1, 10), (1, 15), (1, 20), (2, 5), (2, 10), (2, 15), (2, 20)]
    assert r["curves"][-1]["per_task"] == r["acc_matrix"][-1]          # the last point is the final eval
    assert all(len(c["per_task"]) == 2 for c in r["curves"])           # every task, seen or not


class HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the ops that make a GPU wait: a value read back to the host (.item(), bool(), int()),
    and ops whose output size depends on the data (nonzero, boolean-mask indexing, masked_select).
    On the CPU they cost nothing, so the test names them instead of timing them."""

    NAMES = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
             "aten.is_nonzero.default", "aten.unique_consecutive.default", "aten._unique2.default"}

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in self.NAMES or (name == "aten.index.Tensor"
                                  and any(i is not None and i.dtype == torch.bool for i in args[1])):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method,extra", [("bir+si", {}), ("finetune", {}), ("rr+ra", {}),
                                          ("rr+ra", dict(rr_variant="paper")), ("rr+ra", dict(rep_f=None))])
def test_training_step_reads_nothing_back_from_the_device(method, extra):
    """Issue 7 item 1: no host syncs in the step, also on the iterations that log (loss terms, RR/RA
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
    log, rr_log = torch.zeros(2, len(T.TERMS)), stack.new_rr_log(2)
    assert (rr_log is not None) == (method == "rr+ra")
    with HostReads() as reads:
        stack.step(2, x, y, gens, log, rr_log)
    assert reads.seen == []
    assert log[:, 0].abs().sum() > 0                                     # it did log
    if rr_log is not None:   # one pair per kept (sample, competitor), in both variants
        assert int(rr_log["pairs"].sum()) == int(rr_log["n_kept"].sum())
    with HostReads() as reads:
        stack.step(2, x, y, gens, log, rr_log)
        float(log[0, 0])
    assert reads.seen == ["aten._local_scalar_dense.default"]


def test_pair_counts_are_the_same_as_counting_sample_by_sample():
    """The scatter-add pair log (no boolean indexing) counts what a per-sample loop would."""
    cfgs = [tiny("rr+ra", seed=0, rep_f=1e6), tiny("rr+ra", seed=1, rep_f=1e6, rr_variant="paper")]
    for cfg in cfgs:
        stack = Learner([cfg], torch.device("cpu"))
        K, C, B = 1, stack.data.n_classes, 8
        g = torch.Generator().manual_seed(0)
        label = torch.randint(0, C, (K, B), generator=g)
        rr_log = stack.new_rr_log(2)
        none = torch.zeros(K, dtype=torch.bool)                # no iteration applied RR or RA
        if cfg.rr_variant == "code":
            comp, mask = torch.randint(0, C, (K, B), generator=g), torch.rand(K, B, generator=g) < 0.5
            RR.log_pairs(rr_log, dict(n_competitive=0, n_kept=0, applied=none, rr_applied=none, ra_applied=none,
                                      label=label, competitor=comp, pair_mask=mask), "code", B)
            want = torch.zeros(K, C, C, dtype=torch.long)
            for b in range(B):
                want[0, label[0, b], comp[0, b]] += int(mask[0, b])
        else:
            comp = torch.rand(K, B, C - 1, generator=g) < 0.3                # C_act = C - 1 classes seen
            RR.log_pairs(rr_log, dict(n_competitive=0, n_kept=0, applied=none, rr_applied=none, ra_applied=none,
                                      label=label, competitors=comp), "paper", B)
            want = torch.zeros(K, C, C, dtype=torch.long)
            for b in range(B):
                for c in range(C - 1):
                    want[0, label[0, b], c] += int(comp[0, b, c])
        assert torch.equal(rr_log["pairs"], want) and want.sum() > 0


def test_fused_update_equals_eager_path():
    """Config.compile's parameter update (adam_si_update, here run uncompiled) does what the eager path does
    (fused torch.optim.Adam + closed-form SI gradient + path integral) up to rounding, over several steps
    of task 2, and keeps its state in torch.optim.Adam's own tensors (checkpoints stay interchangeable)."""
    eager = _stack_after_task_1([tiny(seed=0), tiny(seed=1, si_c=3e5)])
    fused = _stack_after_task_1([tiny(seed=0), tiny(seed=1, si_c=3e5)])
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


def test_bf16_previous_model_casts_once_with_autocasts_rounding():
    """With bf16 on, the frozen previous model's linear layers are cast to bf16 once per task instead
    of by autocast in every step: the replay and teacher logits are bit for bit what autocast makes of the
    fp32 weights, after the first task (a fresh copy) and after the second (copied in place)."""
    stack = _stack_after_task_1([tiny(bf16=True, seed=0), tiny(bf16=True, seed=1)])
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


def test_rr_code_variant_with_one_class_per_task_is_a_clear_error(results):
    """The fork's RR/RA pairs a replayed sample's top-2 old classes (appendix §8): with 1 class per task, task 2
    has one old class. Said before training, in one line; the paper variant (competitors among all seen
    classes) has no such limit."""
    with pytest.raises(ValueError, match=r"needs >= 2 classes per task, got 1 \(n_tasks=4 on 4 classes\)"):
        birr.run(tiny("rr+ra", n_tasks=4, iters=10), results_dir=results, progress=False)
    assert not (results / "runs").exists() or not list((results / "runs").glob("*.json"))
    r = birr.run(tiny("rr+ra", n_tasks=4, iters=10, rr_variant="paper", rep_f=3.0), results_dir=results, progress=False)
    assert len(r["acc_matrix"]) == 4


def test_bf16_weight_copies_give_autocasts_numbers_bit_for_bit():
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


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_every_compiled_pass_of_a_stack_is_static(monkeypatch, bf16):
    """Under Config.compile the training pass (through the bf16 weight copies with bf16), the update
    kernel, the loss terms (on a CPU) and the previous model's sampler and classifier are all compiled
    through compile_static: static shapes, room past dynamo's 8 graphs per function."""
    made = []
    monkeypatch.setattr(fast, "compile_static", lambda fn, **kw: made.append(getattr(fn, "__name__", type(fn).__name__)) or fn)
    _stack_after_task_1([tiny(compile=True, bf16=bf16)])
    assert made == ["train_pass" if bf16 else "BIR", "adam_si_pass", "loss_terms", "sample", "classify"]


def test_compiled_stack_compiles_nothing_after_task_2_but_the_cpu_loss_terms(monkeypatch, results):
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


def test_run_with_an_imported_reference_encoder(results, tmp_path, monkeypatch, capsys):
    """appendix §3: `python -m birr import-encoder` turns the reference's checkpoint into an artefact, and a
    run with `encoder=ref-...` takes its features from those weights (recorded in the results file)."""
    from birr import encoder as benc
    from birr.__main__ import main
    monkeypatch.setattr(benc, "ARTEFACTS", tmp_path / "artefacts")
    monkeypatch.setenv("BIRR_CACHE", str(tmp_path / "cache"))
    enc = benc.ConvEncoder()
    benc.init_(enc, torch.Generator().manual_seed(5))
    names = {f"layers.{3 * i + j}": f"convLayer{i + 1}.{'bn' if j else 'conv'}" for i in range(4) for j in (0, 1)}
    names["layers.12"] = "convLayer5.conv"
    ref = {names[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in enc.state_dict().items()}
    torch.save({"state": ref}, tmp_path / "C3-5x16-bn")
    assert main(["import-encoder", str(tmp_path / "C3-5x16-bn")]) == 0
    name = capsys.readouterr().out.split()[0]
    assert name.startswith("ref-") and (tmp_path / "artefacts" / f"encoder-{name}.pt").is_file()
    cfg = tiny(iters=5, encoder=name)
    r = birr.run(cfg, results_dir=results, progress=False)
    assert r["encoder"]["recipe"]["source"] == "reference checkpoint" and r["encoder"]["stamp"] == name
    assert r["stamp"] == cfg.stamp != tiny(iters=5).stamp
    with pytest.raises(FileNotFoundError, match="import-encoder"):
        birr.run(tiny(iters=5, encoder="ref-0000000000"), results_dir=results, progress=False)
    assert main(["import-encoder", str(tmp_path / "absent")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_cuda_asked_for_on_a_cpu_machine_is_one_line(capsys, tmp_path):
    from birr.__main__ import main
    with pytest.raises(ValueError, match="device='cuda' but this torch sees no CUDA GPU; use 'auto' or 'cpu'"):
        T.resolve_device("cuda")
    assert main(["train", "--set", "device=cuda", "--results-dir", str(tmp_path), "--quiet"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err


def test_atomic_writes_leave_nothing_when_they_fail(tmp_path, monkeypatch):
    with pytest.raises(Exception):
        T.atomic_torch_save(tmp_path / "m.pt", {"f": lambda: 0})        # pickle fails half-way into the file
    assert list(tmp_path.iterdir()) == []

    def no_rename(src, dst):
        raise OSError("disk gone")
    monkeypatch.setattr(store.os, "replace", no_rename)                    # the write succeeds, the rename fails
    with pytest.raises(OSError, match="disk gone"):
        T.atomic_write_json(tmp_path / "r.json", {"x": 1})
    assert list(tmp_path.iterdir()) == []


def test_evaluate_all_classes_and_seen_classes_by_hand():
    """Spec §7: the final accuracy takes the argmax over ALL classes; the during-training one
    (n_seen) only over the classes seen so far. Logits here: the label's one-hot plus 5 on class 3."""
    from types import SimpleNamespace
    labels = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3]])                         # (K=1, N)
    data = SimpleNamespace(test_x=F.one_hot(labels[0], 4).float(), test_y=labels, n_classes=4, n_tasks=2, cpt=2)
    model = SimpleNamespace(K=1, classify=lambda x: x + torch.tensor([0.0, 0.0, 0.0, 5.0]))
    per_task, per_class, per_task_seen = T.evaluate(model, data, n_seen=2)
    # all classes: class 3 wins everywhere, right only for label 3
    assert per_class.tolist() == [[0.0, 0.0, 0.0, 1.0]] and per_task.tolist() == [[0.0, 0.5]]
    # first two classes only: labels 0 and 1 are right; labels 2 and 3 cannot be
    assert per_task_seen.tolist() == [[1.0, 0.0]]
    assert T.evaluate(model, data)[2] is None


def test_a_stored_run_comes_back_under_the_method_it_was_asked_for(results):
    """`method` is a label (not stamped): RR + RA with both terms off and no f is the baseline's run,
    stored once under the label that trained it first, and each caller gets it under its own."""
    off = tiny("rr+ra", rr=False, ra=False, rep_f=None)
    base = tiny("bir+si")
    assert off.stamp == base.stamp
    first = birr.run(off, results_dir=results, progress=False)
    again = birr.run(base, results_dir=results, progress=False)
    assert (first["method"], first["config"]["method"]) == ("rr+ra", "rr+ra")
    assert (again["method"], again["config"]["method"]) == ("bir+si", "bir+si")
    assert again["acc_matrix"] == first["acc_matrix"]
    both = birr.run_many([base, off], results_dir=results, progress=False)
    assert [r["method"] for r in both] == ["bir+si", "rr+ra"]


def test_an_unwritable_results_dir_fails_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "_train_stack", lambda *a, **k: pytest.fail("trained before checking the folder"))
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match=r"results_dir='.*file/res' cannot be written .*--results-dir"):
        birr.run(tiny(), results_dir=tmp_path / "file" / "res", progress=False)
    with pytest.raises(ValueError, match="results_dir='' is not allowed"):
        birr.run(tiny(), results_dir="", progress=False)


@pytest.mark.parametrize("text", ["{}", '{"stamp": "ab', "[1, 2]"])
def test_an_unreadable_results_file_is_one_error_naming_it_and_force_retrains(results, text):
    cfg = tiny()
    path = T.results_path(results, cfg)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        birr.run(cfg, results_dir=results, progress=False)
    msg = str(err.value)
    assert str(path) in msg and "force=True" in msg and "\n" not in msg, msg
    assert birr.run(cfg, results_dir=results, progress=False, force=True)["stamp"] == cfg.stamp


def test_an_unreadable_checkpoint_is_one_error_naming_it(results):
    cfg = tiny()
    ckpt = results / "ckpt" / f"run-{cfg.stamp}.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"garbage\n")
    with pytest.raises(ValueError, match=rf"checkpoint .*run-{cfg.stamp}\.pt cannot be resumed from .*delete it"):
        birr.run(cfg, results_dir=results, progress=False)
    ckpt.unlink()
    assert birr.run(cfg, results_dir=results, progress=False)["stamp"] == cfg.stamp


def test_api_mistakes_name_what_was_passed():
    with pytest.raises(TypeError, match=r"cfg='bir\+si' is a str, not a Config; make one with birr.preset"):
        birr.run("bir+si")
    with pytest.raises(TypeError, match="run_many takes a list of Configs"):
        birr.run_many(tiny())
    with pytest.raises(TypeError, match=r"cfgs\[1\] is a dict"):
        birr.run_many([tiny(), {}])
    with pytest.raises(ValueError, match="max_stack=0 is not allowed"):
        birr.run_many([tiny()], max_stack=0)


def test_cli_repeated_seeds_and_a_closed_pipe(capsys):
    """`train --seeds 0 0` is refused as table1 refuses it; `--print-config | head -1` is not an error."""
    import subprocess
    import sys
    from birr.__main__ import main
    assert main(["train", "--seeds", "0", "0", "--print-config"]) == 2
    assert "repeats a value" in capsys.readouterr().err
    p = subprocess.Popen([sys.executable, "-m", "birr", "table1", "--budget", "smoke", "--print-config",
                          "--seeds", *map(str, range(100))], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(p.stdout.readline())["seed"] == 0
    p.stdout.close()                                   # 600 lines: far more than a pipe's buffer
    assert p.wait(timeout=60) == 0 and p.stderr.read() == b""


def test_cli_summary_line_names_f_variant_and_iterations(tmp_path, capsys):
    """table1 and book print many rr+ra lines; each says which run it is."""
    from birr.__main__ import main
    argv = ["train", "--method", "rr+ra", "--set", "rep_f=10", "--set", "rr_variant=paper", "--set", "iters=5",
            "--results-dir", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert " rr+ra f=10 paper synthetic/smoke iters=5 seed=0 first20=" in line, line
    assert main(["train", "--set", "iters=5", "--results-dir", str(tmp_path), "--quiet"]) == 0
    assert " bir+si synthetic/smoke iters=5 seed=0 " in capsys.readouterr().out
