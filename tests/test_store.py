"""birr.store: the one writer every file goes through (a temporary file, fsync'ed, renamed into place, a
sidecar sha256), signals held while a checkpoint is written, and the checks of the files birr reads back:
a damaged encoder or decoder artefact is one error naming it, a damaged features cache is computed again,
never used. Results files and saved models: tests/test_results.py; checkpoints: tests/test_train.py; the
command line's one-line errors (a full disk, a read-only folder): tests/test_cli.py."""
import hashlib
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from birr import archives
from birr import data as bdata
from birr import encoder as benc
from birr import features as bfeat
from birr import lens as viz
from birr import store
from birr import train as T


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


# --- files read back: rebuilt or refused when damaged, never used -------------------------------------------

@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "no sidecar", "nan"])
def test_a_damaged_features_cache_is_rebuilt_not_used(birr_cache, damage, capsys, tiny, one_line, flip, truncate):
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


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "pickle"])
def test_a_damaged_artefact_is_one_error_naming_it(tmp_path, kind, damage, one_line, flip, truncate):
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
