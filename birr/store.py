"""Writing birr's files, and reading them back only as written: one atomic, durable writer for every
file birr makes (results, checkpoints, models, encoder and decoder artefacts, caches), and a content
hash checked whenever one of them is read again.

Writing (`write_atomic`): the bytes go to a temporary file in the target's folder, are flushed and
fsync'ed, the temporary is renamed over the target, and the folder is fsync'ed: after a crash or a
power cut a reader sees the old file or the new one, whole, never half of one. A failure (a full disk,
a read-only folder) is one OSError naming the target, and leaves no temporary file behind.

Hashes, two ways, each where it fits:
- torch files (features caches, checkpoints, saved models, encoder and decoder artefacts) get a
  sidecar `<file>.sha256`: the sha256 of the file's bytes, in `sha256sum`'s format (so
  `sha256sum -c file.pt.sha256` checks one by hand). A sidecar, not a field inside the file, because
  (1) torch's format is fixed and other code (tests, notebooks, scripts) reads these files with plain
  `torch.load` as state dicts, which an extra key would break; (2) the hash must be checked *before*
  the bytes are unpickled (a checkpoint holds optimiser state and is unpickled in full), which only a
  hash kept outside the file allows; (3) hashing the bytes as written needs no canonical form.
- results JSON (`results/runs/<stamp>.json`) embeds its hash, a top-level "sha256" over the canonical
  JSON of everything else (`json_digest`). Results travel between machines and commits (a lent GPU's
  results are copied back file by file, scripts/gpu_session.py): an embedded hash travels with its
  file, where a sidecar left behind would go stale and refuse a good file.

Files written before hashes existed carry none: the committed results/runs/*.json, and any model or
artefact saved outside git by older code. They are checked only where a hash is present (`verify`
returns False for them; results are still checked to hold the run their name says). The committed
artefacts/*.pt and results/models/*.pt got their sidecars once, hashed from the committed bytes. A
cache is different: one without a hash is rebuilt (birr.features), as is one whose hash does not match.

The order of a write keeps a file and its sidecar consistent even if the process dies between two
steps: the old sidecar is removed first, then the file renamed, then the new sidecar renamed. A file
can lack its sidecar for a moment (it is then read unchecked, and it is whole: it was fsync'ed), but
never sits beside another file's hash. `signals_deferred` lets a group of writes (a stack's checkpoints)
finish before Ctrl-C or SIGTERM lands.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

SUFFIX = ".sha256"
_HEX = re.compile(r"[0-9a-f]{64}")


class CorruptFile(ValueError):
    """A file birr wrote that is no longer what it wrote (hash mismatch), or cannot be parsed."""

    def __init__(self, path, message: str, reason: str | None = None):
        super().__init__(message)
        self.path = Path(path)
        self.reason = reason or message     # what is wrong, without the file's name


def sidecar(path) -> Path:
    """`<file>.sha256` beside `path`."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (a checkpoint can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _one_line(e: BaseException, limit: int = 160) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return text[:limit] + ("..." if len(text) > limit else "")


def write_error(path, e: BaseException) -> OSError:
    """One line naming the file a failed write was for (`[Errno 28] No space left on device` says
    neither which file nor which of birr's writes)."""
    reason = e.strerror if isinstance(e, OSError) and e.strerror else _one_line(e)
    err = OSError(f"cannot write {path}: {reason}")
    err.errno = getattr(e, "errno", None)
    return err


def fsync_dir(folder) -> None:
    """fsync a folder, so a rename into it survives a power cut (not every OS lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path, write, *, digest: bool = True) -> str | None:
    """Write a file by calling `write(f)` on a binary file object, atomically and durably (module
    docstring), and with digest=True its sidecar `<file>.sha256`. Returns the sha256 (digest=True) or
    None. Any OSError, or a RuntimeError from torch's zip writer (how torch reports a failed write), is
    re-raised as one OSError naming `path`; nothing is left behind but the old file, if there was one."""
    path = Path(path)
    tmp = side_tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)           # mkstemp makes it owner-only; artefacts are committed and shared
        hexdigest = None
        if digest:
            hexdigest = sha256_file(tmp)
            fd, side_tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{SUFFIX}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(f"{hexdigest}  {path.name}\n")     # sha256sum's format
                f.flush()
                os.fsync(f.fileno())
            os.chmod(side_tmp, 0o644)
            sidecar(path).unlink(missing_ok=True)          # never the new file beside the old hash
        os.replace(tmp, path)
        if digest:
            os.replace(side_tmp, sidecar(path))
        fsync_dir(path.parent)
        return hexdigest
    except (OSError, RuntimeError) as e:
        raise write_error(path, e) from e
    finally:   # after a failure (or KeyboardInterrupt): no temporary file left; after success they are gone
        for t in (tmp, side_tmp):
            if t is not None:
                Path(t).unlink(missing_ok=True)


def recorded_sha256(path) -> str | None:
    """The hash in `path`'s sidecar, or None if it has none. A sidecar that is not a hash is a CorruptFile."""
    side = sidecar(path)
    try:
        text = side.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptFile(path, f"{side} cannot be read ({_one_line(e)})") from None
    first = text.split()[0] if text.split() else ""
    if not _HEX.fullmatch(first):
        raise CorruptFile(path, f"{side} holds no sha256")
    return first


def verify(path, what: str = "file", remedy: str = "") -> bool:
    """Check `path` against its sidecar: True if it matches, False if it has no sidecar (a file written
    before hashes existed: read unchecked), a one-line CorruptFile naming it if it does not match."""
    path = Path(path)
    want = recorded_sha256(path)
    if want is None:
        return False
    got = sha256_file(path)
    if got != want:
        reason = (f"it does not match its sha256 ({sidecar(path).name}: {want[:12]}..., file: {got[:12]}...): "
                  f"it changed after birr wrote it")
        raise CorruptFile(path, f"{what} {path}: {reason}" + (f"; {remedy}" if remedy else ""), reason)
    return True


def remove(path) -> None:
    """Delete a file and its sidecar."""
    Path(path).unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)


def torch_save(path, obj) -> str:
    """torch.save through write_atomic, with a sidecar. Returns the sha256."""
    import torch
    return write_atomic(path, lambda f: torch.save(obj, f))


def torch_load(path, *, what: str = "file", remedy: str = "", **kw):
    """torch.load of a file birr wrote, its sidecar checked first (so corrupt bytes are never unpickled).
    A mismatch, a truncated or empty file, a corrupt pickle: one CorruptFile naming the file; a file that
    cannot be opened: one OSError naming it."""
    import torch
    verify(path, what, remedy)
    try:
        with warnings.catch_warnings():      # torch warns before failing on a damaged pickle: the error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, **kw)
    except OSError as e:
        raise OSError(f"{what} {path} cannot be read: {e.strerror or _one_line(e)}") from e
    except Exception as e:     # torch and pickle raise many kinds here (zip, pickle, EOF, unsafe global)
        reason = f"{type(e).__name__}: {_one_line(e)}"
        raise CorruptFile(path, f"{what} {path} cannot be read ({reason})" + (f"; {remedy}" if remedy else ""),
                          reason) from None


# --- JSON with an embedded hash ----------------------------------------------------------------

def json_digest(obj: dict) -> str:
    """sha256 of a JSON object's canonical text (sorted keys, no spaces), "sha256" left out: the same
    whatever indentation wrote it, different if any value changed."""
    body = {k: v for k, v in obj.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()).hexdigest()


def write_json(path, obj: dict, *, embed_digest: bool = False) -> None:
    """An object as indented JSON, through write_atomic (no sidecar). embed_digest: with a top-level
    "sha256" (json_digest) that check_json_digest verifies. The hash is taken over the object as it will
    be read back (JSON turns tuples into lists and keys into strings)."""
    text = json.dumps(obj, indent=1, allow_nan=True)
    if embed_digest:
        back = json.loads(text)
        back.pop("sha256", None)
        text = json.dumps(dict(back, sha256=json_digest(back)), indent=1, allow_nan=True)
    write_atomic(path, lambda f: f.write(text.encode()), digest=False)


def check_json_digest(obj: dict, path, remedy: str = "") -> dict:
    """The object without its "sha256", after checking it; one without (written before hashes existed)
    is returned unchecked. A mismatch is a one-line CorruptFile naming the file."""
    if "sha256" not in obj:
        return obj
    want = obj["sha256"]
    got = json_digest(obj)
    if want != got:
        raise CorruptFile(path, f"{path} does not match the sha256 recorded in it ({str(want)[:12]}..., content: "
                                f"{got[:12]}...): it changed after birr wrote it" + (f"; {remedy}" if remedy else ""))
    return {k: v for k, v in obj.items() if k != "sha256"}


@contextmanager
def signals_deferred():
    """Ctrl-C and SIGTERM wait until the block is done: a checkpoint is written and recorded as written
    before the interrupt lands, so the line that reports it says what is on disk. The signal is then
    handled as it would have been (its handler called, or, for the default action, raised again)."""
    sigs = (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in sigs}
    got = []
    for s in sigs:
        if old[s] is not None and old[s] != signal.SIG_IGN:   # None: a handler set outside Python, left alone
            signal.signal(s, lambda n, frame: got.append(n))
    try:
        yield
    finally:
        for s in sigs:
            if old[s] is not None and old[s] != signal.SIG_IGN:
                signal.signal(s, old[s])
        if got:
            handler = old[got[0]]
            if callable(handler):
                handler(got[0], None)
            else:
                os.kill(os.getpid(), got[0])
