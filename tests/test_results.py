"""A run's results (birr.results): its record task by task, the divergence line, the results file a run
writes and reading it back (load_result, load_model: refused in one line when damaged or another run's),
the results folder, provenance and the device; tiny synthetic runs where a stored run is needed."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

import birr
from birr import encoder as benc
from birr import features as bfeat
from birr import metrics as M
from birr import results as Res
from birr import store
from birr import train as T
from birr.data import class_order
from birr.learner import TERMS


def test_record_task_appends_each_measure_of_a_task():
    """Task 2 of 3 for run 1 of a 2-run stack: accuracies on tasks not yet seen are None in the matrices,
    loss traces are named by TERMS at the logged iterations, the wall time is the run's share."""
    cfg = birr.preset("bir+si", budget="smoke", n_tasks=3, iters=10)
    per_task = torch.tensor([[0.125, 0.25, 0.375], [0.375, 0.5, 0.625]])   # exact in float32
    per_class = torch.rand(2, 6)
    logs = torch.arange(2 * 2 * len(TERMS), dtype=torch.float32).view(2, 2, len(TERMS))   # (n_logs, K, terms)
    r = Res.new_record()
    Res.record_task(r, 1, cfg, 2, (per_task, per_class, per_task * 2), logs, 5, None, [], None, 1.5)
    assert r["acc_matrix"] == [[0.375, 0.5, None]] and r["acc_matrix_seen"] == [[0.75, 1.0, None]]
    assert r["per_class_acc_after_task"] == [per_class[1].tolist()] and r["task_wall_s"] == [1.5]
    trace = r["loss_traces"][0]
    assert trace["task"] == 2 and trace["iters"] == [5, 10]
    assert trace["kl"] == logs[:, 1, TERMS.index("kl")].tolist() and "grad_norms" not in r and r["rr_stats"] == []


def test_divergence_names_the_first_non_finite_term_or_the_weights():
    cfg = birr.preset("bir+si", budget="smoke", iters=30)
    logs = torch.ones(3, len(TERMS))
    assert Res.divergence(cfg, 2, logs, 10, True) is None
    logs[1, TERMS.index("kl")] = float("nan")
    logs[2, TERMS.index("total")] = float("inf")
    line = Res.divergence(cfg, 2, logs, 10, True)
    assert line.startswith(f"run {cfg.stamp} (seed 0, lr=") and "diverged in task 2: loss term kl is nan at " \
        "iteration 20" in line
    assert "weights are not finite after iteration 30" in Res.divergence(cfg, 1, torch.ones(3, len(TERMS)), 10, False)


# --- the results file a run writes --------------------------------------------------------------------------

def test_results_file_has_everything(results, tiny):
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


def test_a_stored_result_has_exactly_the_fields_its_type_declares(results, tiny):
    """results.Result is what a reader can rely on: every field a run stores is declared there, every
    declared field is stored, and the one optional field (grad_norms) is there exactly when asked for."""
    from birr.results import Result
    required, optional = Result.__required_keys__, Result.__optional_keys__
    assert optional == {"grad_norms"}
    plain = birr.run(tiny("rr+ra"), results_dir=results, progress=False)
    logged = birr.run(tiny("rr+ra", grad_every=10), results_dir=results, progress=False)
    assert set(plain) == required
    assert set(logged) == required | optional
    # and as read back from the file
    assert set(birr.load_result(results, tiny("rr+ra"))) == required


def test_results_record_the_encoder_weights_and_the_features_they_used(results, birr_cache, tiny):
    r = birr.run(tiny(), results_dir=results, progress=False)
    enc, meta = benc.for_config(tiny(), progress=False)
    assert r["encoder"]["weights_hash"] == bfeat.encoder_hash(enc) and r["encoder"]["stamp"] == meta["stamp"]
    cache = birr_cache / r["features"]["file"]
    assert r["features"]["sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()
    assert r["features"]["file"].startswith(f"features-synthetic-{bfeat.encoder_hash(enc)}-")


def test_rr_stats_counts_per_task(results, tiny):
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


def test_a_stored_run_comes_back_under_the_method_it_was_asked_for(results, tiny):
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


# --- reading it back: load_result, load_model ---------------------------------------------------------------

def test_a_format_1_result_loads_with_its_metrics_recomputed_from_the_seen_classes_matrix(results, tiny):
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


@pytest.mark.parametrize("text", ["{}", '{"stamp": "ab', "[1, 2]"])
def test_an_unreadable_results_file_is_one_error_naming_it_and_force_retrains(results, text, tiny):
    cfg = tiny()
    path = T.results_path(results, cfg)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        birr.run(cfg, results_dir=results, progress=False)
    msg = str(err.value)
    assert str(path) in msg and "force=True" in msg and "\n" not in msg, msg
    assert birr.run(cfg, results_dir=results, progress=False, force=True)["stamp"] == cfg.stamp


def test_a_result_saved_under_another_runs_stamp_is_refused(results, capsys, tiny, one_line, birr_cache):
    a, b = tiny(seed=0), tiny(seed=1)
    birr.run(a, results_dir=results, progress=False)
    wrong = T.results_path(results, b)
    shutil.copy(T.results_path(results, a), wrong)           # whole, with a valid hash: only the stamp is wrong
    with pytest.raises(ValueError) as info:
        birr.load_result(results, b)
    msg = one_line(str(info.value))
    assert msg.startswith(f"{wrong} holds the result of run {a.stamp}, not {b.stamp}") and "force=True" in msg, msg
    legacy = json.loads(wrong.read_text())                    # a file from before hashes: checked all the same
    del legacy["sha256"]
    legacy["stamp"] = b.stamp                                 # even when its "stamp" was edited to match
    wrong.write_text(json.dumps(legacy))
    with pytest.raises(ValueError, match=f"holds the result of run {a.stamp}, not {b.stamp}"):
        birr.load_result(results, b)
    with pytest.raises(ValueError, match=f"holds the result of run {a.stamp}"):
        birr.run(b, results_dir=results, progress=False)      # never served in its place
    assert birr.run(b, results_dir=results, progress=False, force=True)["seed"] == 1


def test_every_committed_result_has_the_stamp_of_its_name():
    """The stamp check refuses none of the results committed before it existed."""
    runs = sorted((Path(__file__).resolve().parents[1] / "results" / "runs").glob("*.json"))
    assert runs
    for p in runs:
        r = json.loads(p.read_text())
        assert birr.results.stamp_of(r["config"]) == r["stamp"] == p.stem, p


@pytest.mark.parametrize("damage", ["flip", "truncate without sidecar", "pickle without sidecar"])
def test_a_damaged_saved_model_is_one_error_naming_it(results, damage, tiny, one_line, flip, truncate, birr_cache):
    cfg = tiny()
    birr.run(cfg, results_dir=results, progress=False)
    path = T.model_path(results, cfg)
    assert store.verify(path) and birr.load_model(cfg, results_dir=results) is not None
    if damage == "flip":
        flip(path, 0.9)
        message = "saved model .* does not match its sha256"
    else:
        store.sidecar(path).unlink()                            # as the models stored before hashes
        if damage.startswith("truncate"):
            truncate(path)
        else:
            path.write_bytes(b"\x80\x04\x95garbage")
        message = r"saved model .* cannot be read \(\w+Error: "
    with pytest.raises(ValueError, match=message) as info:
        birr.load_model(cfg, results_dir=results)
    assert str(path) in one_line(str(info.value)) and "force=True" in str(info.value)


# --- the results folder, provenance, the device -------------------------------------------------------------

def test_an_unwritable_results_dir_fails_before_any_training(tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(T, "_train_stack", lambda *a, **k: pytest.fail("trained before checking the folder"))
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match=r"results_dir='.*file/res' cannot be written .*--results-dir"):
        birr.run(tiny(), results_dir=tmp_path / "file" / "res", progress=False)
    with pytest.raises(ValueError, match="results_dir='' is not allowed"):
        birr.run(tiny(), results_dir="", progress=False)


def test_provenance_takes_the_stated_sha_over_the_trees_git(monkeypatch):
    own = T.provenance(torch.device("cpu"))
    assert own["git_sha_stated"] is False
    monkeypatch.setenv("BIRR_GIT_SHA", "abc123")     # a copied tree whose .git is some other commit
    prov = T.provenance(torch.device("cpu"))
    assert prov["git_sha"] == "abc123" and prov["git_dirty"] is False and prov["git_sha_stated"] is True


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
