"""
The archives behind birr's datasets (appendix §2): the official CIFAR python-pickle archives (download,
checksum, unpack without leaving half a folder, parse) and the repository's CIFAR-10 JPEG copy (decoded
once, cached). No machine that built this repository could reach the CIFAR host, so tests write tiny
archives in the official format and read them through the same code.

birr.data.load is the one caller: it chooses the folders (the user's cache, the repository's data/) and
turns what these functions return into a Benchmark.
"""
import gzip
import hashlib
import io
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# -----------------------------------------------------------------------------
# archives: checksum, download, atomic unpack

def _digest(path, algorithm):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _verify(path, algorithm, expected):
    got = _digest(path, algorithm)
    if got != expected:
        raise ValueError(f"checksum mismatch for {path}: expected {algorithm} {expected}, got {got}; "
                         f"delete the file and fetch it again (Python: birr.data.load(..., verify=False) skips the check)")
    return got


def _download(url, dest):
    """Fetch into a temporary file beside dest, then rename: an interrupted download leaves nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, f)
        os.replace(tmp, dest)
    except OSError as e:  # URLError is an OSError
        raise ConnectionError(f"could not download {url} to {dest} ({e}); fetch it by hand and put it at {dest}, "
                              f"where birr looks before it downloads") from e
    finally:
        Path(tmp).unlink(missing_ok=True)


_BROKEN = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)  # what a truncated or corrupt .tar.gz raises


def _unpack(archive, root, folder, expected_files):
    """
    Unpack into a temporary folder beside the target and rename it into place only once every expected
    file is there, so a crash or a corrupt archive never leaves a half-unpacked folder behind.
    """
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}.unpacking-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        missing = [f for f in expected_files if not (tmp / folder / f).is_file()]
        if missing:
            raise ValueError(f"corrupt archive {archive}: it lacks {folder}/{missing[0]}; delete it and fetch it again")
        if not (root / folder).exists():  # another process may have finished first
            os.replace(tmp / folder, root / folder)
    except _BROKEN as e:
        raise ValueError(f"corrupt archive {archive}: {type(e).__name__}: {e}; delete it and fetch it again") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

# -----------------------------------------------------------------------------
# the official CIFAR archives: python pickles of (N, 3072) uint8 rows, R then G then B planes

@dataclass(frozen=True)
class _Official:
    url: str
    md5: str
    folder: str           # top folder inside the archive
    train: tuple          # pickle files of the training set, in order
    test: tuple
    meta: str
    labels_key: bytes
    names_key: bytes

OFFICIAL = {
    "cifar100": _Official("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                          "cifar-100-python", ("train",), ("test",), "meta", b"fine_labels", b"fine_label_names"),
    "cifar10": _Official("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                         "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                         "batches.meta", b"labels", b"label_names"),
}


def _parse_official(folder, spec):
    """Our own reader of the pickle format (not torchvision's dataset class), so tests can exercise it."""
    def read(name):
        with open(folder / name, "rb") as f:
            return pickle.load(f, encoding="bytes")  # the files are Python 2 pickles with bytes keys

    def split(files):
        xs, ys = [], []
        for name in files:
            batch = read(name)
            x = np.asarray(batch[b"data"], dtype=np.uint8)
            y = np.asarray(batch[spec.labels_key], dtype=np.int64)
            if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(y) != len(x):
                raise ValueError(f"corrupt file {folder / name}: data {x.shape}, {len(y)} labels")
            xs.append(x.reshape(-1, 3, 32, 32))  # (N, C, H, W): each row is three row-major 32x32 planes
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    try:
        names = [n.decode() for n in read(spec.meta)[spec.names_key]]
        train, test = split(spec.train), split(spec.test)
    except (KeyError, pickle.UnpicklingError, EOFError, FileNotFoundError) as e:
        raise ValueError(f"corrupt CIFAR folder {folder}: {type(e).__name__}: {e}; delete it and unpack again") from e
    return names, train, test


def load_official(name, root, download, verify):
    """(class names, (train x, y), (test x, y)) of the official archive `name` in folder `root`: its
    unpacked folder if there, else the archive (downloaded first if missing and `download`), checked
    against its md5 when `verify`, then unpacked."""
    spec = OFFICIAL[name]
    root = Path(root)
    archive = root / spec.url.rsplit("/", 1)[1]
    if not (root / spec.folder).is_dir():  # an unpacked folder is trusted: it was checked before unpacking
        if not archive.is_file():
            if not download:
                raise FileNotFoundError(f"missing archive {archive}; download {spec.url} there (or pass download=True)")
            _download(spec.url, archive)
        if verify:
            _verify(archive, "md5", spec.md5)
        _unpack(archive, root, spec.folder, spec.train + spec.test + (spec.meta,))
    return _parse_official(root / spec.folder, spec)

# -----------------------------------------------------------------------------
# cifar10-jpg: the vendored JPEG stand-in, decoded once and cached as one .npz

JPG_SHA256 = "db2e01add8b211304937cae29dd074ff182973a7ffa48854c2df87b06410f407"
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _decode_jpg_archive(archive):
    """Read train/<class>/NNNN.jpg straight from the tar (no unpacking), sorted so the order is deterministic."""
    found = []  # (split, original label, file name, jpeg bytes)
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = member.name.removeprefix("./").split("/")
                if len(parts) != 3 or parts[0] not in ("train", "test") or parts[1] not in CIFAR10_NAMES:
                    raise ValueError(f"corrupt archive {archive}: unexpected member {member.name!r}")
                found.append((parts[0], CIFAR10_NAMES.index(parts[1]), parts[2], tar.extractfile(member).read()))
    except _BROKEN as e:
        raise ValueError(f"corrupt archive {archive}: {type(e).__name__}: {e}") from e
    found.sort(key=lambda f: f[:3])  # class by class (alphabetical = original label), then by file name
    arrays = {}
    for which in ("train", "test"):
        rows = [f for f in found if f[0] == which]
        labels = np.array([f[1] for f in rows], dtype=np.int64)
        if set(labels.tolist()) != set(range(10)):
            raise ValueError(f"corrupt archive {archive}: {which}/ holds classes {sorted(set(labels.tolist()))}, not all 10")
        images = np.empty((len(rows), 3, 32, 32), dtype=np.uint8)  # (N, C, H, W)
        for i, (_, label, file_name, jpeg) in enumerate(rows):
            try:
                pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))  # (H, W, C)
                images[i] = pixels.transpose(2, 0, 1)  # (C, H, W); a wrong size raises ValueError
            except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
                where = f"{which}/{CIFAR10_NAMES[label]}/{file_name}"
                raise ValueError(f"corrupt archive {archive}: {where} is not a 32x32 JPEG ({e})") from e
        arrays[which] = images, labels
    return arrays["train"], arrays["test"]


def _save_npz_atomic(path, **arrays):
    """Write through birr.store's one atomic, durable writer (temp file beside path, fsync, rename), so a
    crash never leaves a half-written cache. No sidecar hash: the file is a zip whose members carry
    CRC-32s that np.load checks as it reads them, and an unreadable cache is decoded again below."""
    from birr.store import write_atomic
    write_atomic(path, lambda f: np.savez(f, **arrays), digest=False)  # uncompressed: read back in well under a second


def load_cifar10_jpg(root, cache_folder, verify):
    """(class names, (train x, y), (test x, y)) of `root`/cifar10-jpg.tar.gz, decoded once into an .npz in
    `cache_folder` named by the archive's sha256, and read from there afterwards."""
    archive = Path(root) / "cifar10-jpg.tar.gz"
    if not archive.is_file():
        raise FileNotFoundError(f"missing archive {archive}; it ships with the birr repository as data/cifar10-jpg.tar.gz")
    sha = _verify(archive, "sha256", JPG_SHA256) if verify else _digest(archive, "sha256")
    cache = Path(cache_folder) / f"cifar10-jpg-{sha[:12]}.npz"  # keyed by the actual bytes: an edited archive is never served stale
    for attempt in (1, 2):
        if not cache.is_file():
            print(f"[birr] decoding {archive.name} once into {cache} (about 20 s)", file=sys.stderr)
            (train_x, train_y), (test_x, test_y) = _decode_jpg_archive(archive)
            _save_npz_atomic(cache, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
        try:
            with np.load(cache) as z:
                return list(CIFAR10_NAMES), (z["train_x"], z["train_y"]), (z["test_x"], z["test_y"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            # the cache is derived from the archive: an unreadable one (a disk error, an edit) is rebuilt once
            if attempt == 2:
                raise ValueError(f"cache {cache} cannot be read even after decoding it again ({type(e).__name__}: {e})") from e
            print(f"[birr] {cache} is unreadable ({type(e).__name__}); decoding the archive again", file=sys.stderr)
            cache.unlink(missing_ok=True)
