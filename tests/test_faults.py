"""Fault injection: every file birr reads back, damaged (bytes flipped, truncated, emptied, another run's,
on a full disk or in a read-only folder), and training that diverges or is interrupted. Each case ends in
one line naming the file (or the run), and nothing wrong is stored or used; caches are rebuilt instead.
Tiny synthetic runs (the smoke budget), seconds each."""
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import birr
from birr import archives
from birr import data as bdata
from birr import encoder as benc
from birr import features as bfeat
from birr import lens as viz
from birr import store
from birr import train as T
from birr.learner import Learner
from birr.__main__ import interrupted_line, main


def tiny(method="bir+si", **kw):
    base = dict(budget="smoke", device="cpu", iters=20, log_every=5)
    base.update(kw)
    return birr.preset(method, **base)


@pytest.fixture
def results(tmp_path, birr_cache):
    """A fresh results folder, and a fresh features cache (the birr_cache fixture)."""
    return tmp_path / "results"


def flip(path: Path, at: float = 0.5) -> None:
    """Flip every bit of one byte, `at` of the way into the file."""
    blob = bytearray(path.read_bytes())
    blob[int(len(blob) * at)] ^= 0xFF
    path.write_bytes(bytes(blob))


def truncate(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * keep)])


def one_line(text: str) -> str:
    text = text.strip()
    assert text and "\n" not in text, text
    return text


def kill_in_task_2(monkeypatch, cfg, results):
    """Train `cfg` until task 2's evaluation, then stop it as Ctrl-C would: task 1's checkpoint is left."""
    real, n = T.evaluate, []

    def dies(*a, **k):
        n.append(1)
        if len(n) == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(T, "evaluate", dies)
    with pytest.raises(KeyboardInterrupt) as info:
        birr.run(cfg, results_dir=results, progress=False)
    monkeypatch.setattr(T, "evaluate", real)
    (ckpt,) = (results / "ckpt").glob("*.pt")
    assert info.value.birr_checkpoint == (ckpt, 1)          # what the command line's message reports
    return ckpt


def stored(results: Path) -> list[str]:
    """Every file under results/runs and results/models."""
    return sorted(p.name for sub in ("runs", "models") if (results / sub).is_dir() for p in (results / sub).iterdir())


# --- the shared writer ---------------------------------------------------------------------------

def test_every_writer_is_the_shared_one_and_fsyncs_before_the_rename(tmp_path, monkeypatch):
    """train.atomic_write_json, train.atomic_torch_save, encoder._save_atomic and archives._save_npz_atomic are
    one writer: the file is fsync'ed before it is renamed into place, then the folder is fsync'ed."""
    events, real_fsync, real_replace, real_write = [], os.fsync, os.replace, store.write_atomic
    monkeypatch.setattr(store.os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(store.os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b))
    through = []
    monkeypatch.setattr(store, "write_atomic", lambda path, *a, **k: through.append(Path(path).name)
                        or real_write(path, *a, **k))
    T.atomic_write_json(tmp_path / "r.json", {"x": 1})
    events.clear()
    T.atomic_torch_save(tmp_path / "m.pt", {"w": torch.ones(2)})
    m = list(events)
    benc._save_atomic({"w": torch.ones(2)}, tmp_path / "a.pt")
    archives._save_npz_atomic(tmp_path / "c.npz", x=np.ones(2))
    assert through == ["r.json", "m.pt", "a.pt", "c.npz"]
    assert [e[0] for e in m] == ["fsync", "fsync", "replace", "replace", "fsync"], m
    assert m[0][1].startswith(str(tmp_path / ".m.pt.")) and m[2][1] == str(tmp_path / "m.pt")    # temp, then rename
    assert m[3][1] == str(tmp_path / "m.pt.sha256") and m[4][1] == str(tmp_path)                   # hash, folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "a.pt.sha256", "c.npz", "m.pt", "m.pt.sha256", "r.json"]
    want = hashlib.sha256((tmp_path / "m.pt").read_bytes()).hexdigest()
    assert (tmp_path / "m.pt.sha256").read_text() == f"{want}  m.pt\n"        # sha256sum's format


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(results, monkeypatch, capsys):
    cfg = tiny(seed=1)
    birr.run(cfg, results_dir=results, progress=False)     # the features cache exists: the run's first write is its state

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(store.os, "fsync", full)
    argv = ["train", "--set", "iters=20", "--set", "log_every=5", "--set", "device=cpu", "--results-dir", str(results),
            "--quiet"]
    assert main(argv) == 2
    err = one_line(capsys.readouterr().err)
    assert re.fullmatch(r"error: cannot write \S+/ckpt/run-\w+\.pt: No space left on device", err), err
    assert stored(results) == [f"{cfg.stamp}.json", f"{cfg.stamp}.pt", f"{cfg.stamp}.pt.sha256"]   # only seed 1's
    assert not list(results.rglob(".*.tmp")) and not list((results / "ckpt").iterdir())


def test_a_read_only_folder_is_one_line_naming_it(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        try:
            (folder / "probe").write_text("")
        except PermissionError:
            pass
        else:
            pytest.skip("this user (root) can write into a read-only folder")
        with pytest.raises(OSError, match=f"^cannot write {re.escape(str(folder))}/m.pt: Permission denied$"):
            T.atomic_torch_save(folder / "m.pt", {"w": torch.ones(1)})
        assert main(["train", "--set", "iters=5", "--results-dir", str(folder / "res"), "--quiet"]) == 2
        err = one_line(capsys.readouterr().err)
        assert err.startswith(f"error: results_dir='{folder}/res' cannot be written (Permission denied)"), err
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


# --- the features cache: rebuilt, never used when damaged --------------------------------------------

@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "no sidecar", "nan"])
def test_a_damaged_features_cache_is_rebuilt_not_used(birr_cache, damage, capsys):
    enc, _ = benc.for_config(tiny(), progress=False)                 # the smoke encoder, committed
    bench = bdata.load("synthetic", n_tasks=2, seed=0, n_train_per_class=10, n_test_per_class=5)
    info = {}
    train, test = bfeat.features(enc, bench, info=info)
    path = birr_cache / info["file"]
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == store.recorded_sha256(path)
    assert info["encoder_hash"] == bfeat.encoder_hash(enc)
    if damage == "flip":
        flip(path, 0.9)       # inside the tensors' bytes: torch.load alone would read it without complaint
        assert torch.load(path, weights_only=True)["test"].shape == test.shape
    elif damage == "truncate":
        truncate(path)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "no sidecar":
        store.sidecar(path).unlink()
    else:                     # well-formed, hashed, but not finite: what a bad encoder would have cached
        store.torch_save(path, dict(train=train.clone().fill_(float("nan")), test=test))
    capsys.readouterr()
    again = {}
    train2, test2 = bfeat.features(enc, bench, info=again)
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"[birr] features cache {path} is not used (") and err.endswith("computing the features again")
    assert torch.equal(train2, train) and torch.equal(test2, test)
    assert again == info and store.verify(path)                      # rewritten, with its hash
    bfeat.features(enc, bench)
    assert capsys.readouterr().err == ""                              # and now served from it


def test_results_record_the_encoder_weights_and_the_features_they_used(results, birr_cache):
    r = birr.run(tiny(), results_dir=results, progress=False)
    enc, meta = benc.for_config(tiny(), progress=False)
    assert r["encoder"]["weights_hash"] == bfeat.encoder_hash(enc) and r["encoder"]["stamp"] == meta["stamp"]
    cache = birr_cache / r["features"]["file"]
    assert r["features"]["sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()
    assert r["features"]["file"].startswith(f"features-synthetic-{bfeat.encoder_hash(enc)}-")


# --- artefacts -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["encoder", "decoder"])
@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "pickle"])
def test_a_damaged_artefact_is_one_error_naming_it(tmp_path, kind, damage):
    src = sorted(benc.ARTEFACTS.glob(f"{kind}-*.pt"))[0]
    path = tmp_path / src.name
    shutil.copy(src, path)
    load = benc.load_encoder if kind == "encoder" else viz.load_decoder
    if damage == "flip":
        store.write_atomic(store.sidecar(path), lambda f: f.write(
            f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n".encode()), digest=False)
        load(path)                                            # it loads as it is
        flip(path, 0.9)
        message = r"does not match its sha256 .*: it changed after birr wrote it; retrain it"
    elif damage == "truncate":
        truncate(path)
        message = r"cannot be read \(RuntimeError: .*\); retrain it"
    elif damage == "empty":
        path.write_bytes(b"")
        message = r"cannot be read \(\w+Error: .*\); retrain it"
    else:
        path.write_bytes(b"\x80\x04\x95garbage, not a pickle")
        message = r"cannot be read \(\w+Error: .*\); retrain it"
    with pytest.raises(ValueError, match=message) as info:
        load(path)
    assert str(path) in one_line(str(info.value))


# --- results -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["number", "empty", "truncate"])
def test_a_damaged_results_file_is_refused_in_one_line_and_force_replaces_it(results, damage, capsys):
    cfg = tiny()
    first = birr.run(cfg, results_dir=results, progress=False)
    path = T.results_path(results, cfg)
    text = path.read_text()
    assert json.loads(text)["sha256"] == store.json_digest(json.loads(text))
    if damage == "number":   # still valid JSON, one accuracy changed: only the hash can tell
        i = text.index('"per_class_acc": [') + len('"per_class_acc": [')
        i += re.search(r"\d", text[i:]).start()
        path.write_text(text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:])
        message = "does not match the sha256 recorded in it"
    elif damage == "empty":
        path.write_text("")
        message = "is not a readable birr result"
    else:
        truncate(path)
        message = "is not a readable birr result"
    with pytest.raises(ValueError, match=message) as info:
        birr.load_result(results, cfg)
    assert str(path) in one_line(str(info.value)) and "force=True" in str(info.value)
    argv = ["train", "--set", "iters=20", "--set", "log_every=5", "--set", "device=cpu", "--results-dir", str(results),
            "--quiet"]
    assert main(argv) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {path}") and message in err, err
    assert main(argv + ["--force"]) == 0
    assert birr.load_result(results, cfg)["acc_matrix"] == first["acc_matrix"]


def test_a_result_saved_under_another_runs_stamp_is_refused(results, capsys):
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


# --- saved models ----------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["flip", "truncate without sidecar", "pickle without sidecar"])
def test_a_damaged_saved_model_is_one_error_naming_it(results, damage):
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


# --- checkpoints -------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "pickle"])
def test_a_damaged_checkpoint_is_one_error_line_and_stores_nothing(results, monkeypatch, damage, capsys):
    cfg = tiny()
    ckpt = kill_in_task_2(monkeypatch, cfg, results)
    if damage == "flip":
        flip(ckpt)
    elif damage == "truncate":
        truncate(ckpt)
    elif damage == "empty":
        ckpt.write_bytes(b"")
    else:
        store.sidecar(ckpt).unlink()
        ckpt.write_bytes(b"\x80\x04\x95garbage")
    argv = ["train", "--set", "iters=20", "--set", "log_every=5", "--set", "device=cpu", "--results-dir", str(results),
            "--quiet"]
    if damage == "pickle":    # in a process of its own: nothing but the one line reaches stderr (no warning)
        p = subprocess.run([sys.executable, "-m", "birr", *argv], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert p.returncode == 2 and p.stdout == ""
        err = one_line(p.stderr)
    else:
        assert main(argv) == 2
        err = one_line(capsys.readouterr().err)
    assert err.startswith(f"error: checkpoint {ckpt} cannot be resumed from (") and "force=True (--force)" in err, err
    if damage == "flip":
        assert "does not match its sha256" in err
    assert stored(results) == [] and ckpt.exists()             # not deleted unasked
    assert main(argv + ["--force"]) == 0                        # --force starts again
    assert "force: discarding checkpoint" in capsys.readouterr().err
    assert len(stored(results)) == 3 and not list((results / "ckpt").iterdir())


def _clean_and_spy(monkeypatch, cfg, tmp_path):
    clean = birr.run(cfg, results_dir=tmp_path / "clean", progress=False)
    loads = []
    real = Learner.load_state
    monkeypatch.setattr(Learner, "load_state", lambda self, s: loads.append(1) or real(self, s))
    return clean, loads


def test_force_discards_a_leftover_checkpoint_and_trains_from_task_1(results, tmp_path, monkeypatch, capsys):
    cfg = tiny("rr+ra", rep_f=5.0)
    ckpt = kill_in_task_2(monkeypatch, cfg, results)
    clean, loads = _clean_and_spy(monkeypatch, cfg, tmp_path)
    capsys.readouterr()
    r = birr.run(cfg, results_dir=results, progress=False, force=True)
    assert one_line(capsys.readouterr().err) == f"[birr] force: discarding checkpoint {ckpt}; training from task 1"
    assert loads == [] and r["acc_matrix"] == clean["acc_matrix"] and r["loss_traces"] == clean["loss_traces"]
    assert not list((results / "ckpt").iterdir())               # the checkpoint and its hash are gone
    # without force the same leftover is resumed (the spy sees it)
    kill_in_task_2(monkeypatch, cfg, tmp_path / "again")
    assert birr.run(cfg, results_dir=tmp_path / "again", progress=False)["acc_matrix"] == clean["acc_matrix"]
    assert loads == [1]


@pytest.mark.parametrize("stale", ["code", "format 1"])
def test_a_checkpoint_of_other_code_is_not_resumed(results, tmp_path, monkeypatch, capsys, stale):
    cfg = tiny()
    ckpt = kill_in_task_2(monkeypatch, cfg, results)
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


# --- divergence --------------------------------------------------------------------------------------

def test_a_diverging_run_stops_with_one_line_and_stores_nothing(tmp_path, birr_cache):
    """The smoke run at lr=1000 is NaN from its first logged iteration; it used to exit 0, print
    first20=1.0000 (argmax of NaN logits) and be stored."""
    env = dict(os.environ, OMP_NUM_THREADS="1", BIRR_CACHE=str(birr_cache))
    res = tmp_path / "res"
    p = subprocess.run([sys.executable, "-m", "birr", "train", "--budget", "smoke", "--set", "lr=1000", "--set", "device=cpu",
                        "--results-dir", str(res), "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    cfg = birr.preset("bir+si", budget="smoke", lr=1000.0, device="cpu")
    assert p.returncode == 2, p.stdout + p.stderr
    assert one_line(p.stderr) == (f"error: run {cfg.stamp} (seed 0, lr=1000) diverged in task 1: loss terms recon, kl, ce "
                                  f"are nan at iteration {cfg.log_every} (the first logged one that is not finite); "
                                  f"training stopped, nothing is stored for it")
    assert p.stdout == ""                                                    # no summary line (first20=...)
    assert stored(res) == [] and not list(res.rglob("*.pt"))                 # no result, model or checkpoint


def test_a_diverging_run_in_a_stack_leaves_the_others_as_trained_alone(results, tmp_path):
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


def test_the_finite_check_reads_nothing_in_the_step_and_sees_weights_go_bad(monkeypatch):
    """The check runs on the host copy of the loss log read once per task, with the weights' flags; the
    step reads nothing back. Weights that go bad after the last logged iteration are caught too."""
    from test_train import HostReads
    cfg = tiny(iters=10, log_every=1)
    stack = Learner([cfg], torch.device("cpu"))
    steps, real_step = [], stack.step

    def counted(*a, **k):
        with HostReads() as reads:
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


# --- interruption ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig, code, how", [(signal.SIGINT, 130, r"interrupted \(Ctrl-C\)"), (signal.SIGTERM, 143, "SIGTERM")])
def test_sigint_and_sigterm_say_what_is_checkpointed_and_how_to_resume(tmp_path, birr_cache, sig, code, how):
    argv = [sys.executable, "-m", "birr", "train", "--set", "iters=400", "--set", "device=cpu", "--results-dir",
            str(tmp_path), "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1", BIRR_CACHE=str(birr_cache))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.time() + 300
    while not list((tmp_path / "ckpt").glob("*.pt.sha256")):      # task 1 is checkpointed
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert not (tmp_path / "runs").exists(), "the run finished before the signal: make task 2 longer"
    (ckpt,) = (tmp_path / "ckpt").glob("*.pt")
    assert re.fullmatch(f"{how}: the run is checkpointed after task 1 in {re.escape(str(ckpt))}; run the same command "
                        f"again to resume from task 2", one_line(err)), err
    assert store.verify(ckpt) and not list(tmp_path.rglob(".*.tmp"))
    if sig == signal.SIGINT:                                        # and the same command resumes it
        again = subprocess.run(argv[:-1], env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "resuming 1 run(s) after task 1" in again.stdout, again.stderr


def test_the_interrupted_line_when_nothing_is_checkpointed():
    e = KeyboardInterrupt()
    e.birr_checkpoint = None
    assert interrupted_line(e, checkpoint=False) == ("interrupted (Ctrl-C): nothing is checkpointed (--no-checkpoint); "
                                                     "run the same command again to train it from task 1")
    assert "no task had finished" in interrupted_line(e, checkpoint=True)
    assert "no run was training" in interrupted_line(KeyboardInterrupt(), checkpoint=True)


def test_a_signal_during_a_checkpoint_waits_until_it_is_written():
    """Ctrl-C while the checkpoint is written (and recorded) lands after it: the line that reports the
    checkpoint then says what is on disk."""
    done = []
    # a process started in the background by a shell ignores SIGINT: give it Python's own handler here
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with store.signals_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)                  # a handler would have run by now
                done.append("written")
        assert done == ["written"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler      # restored
    finally:
        signal.signal(signal.SIGINT, outer)
