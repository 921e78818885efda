"""
Tests of birr.archives, through birr.data.load as users call it. The official CIFAR archives cannot be
downloaded here, so tiny archives in the official pickle format are written on the fly and read through
the real parser. The vendored cifar10-jpg archive is decoded once per test module (module fixture, ~15 s)
and then served from its cache.
"""
import hashlib
import io
import pickle
import re
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from birr import data
from cifar_facts import (CIFAR10_NAMES, CIFAR100_NAMES, JPG_ARCHIVE, JPG_SHA256, SPEC_T1_NAMES, SPEC_T2_NAMES,
                         SPEC_TASKS, digest, leftovers)

pytestmark = pytest.mark.usefixtures("birr_cache")  # every test gets its own empty BIRR_CACHE

# -----------------------------------------------------------------------------
# tiny archives in the official pickle format, read through the real parser

def write_targz(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def batch(x, y, labels_key):
    return pickle.dumps({b"batch_label": b"tiny", labels_key: y.tolist(), b"data": x,
                         b"filenames": [b"img_%d.png" % i for i in range(len(y))]}, protocol=2)


@pytest.fixture
def tiny_cifar100(tmp_path):
    """2 train and 2 test images per class, interleaved like the real files, with the real fine-label names."""
    rng = np.random.RandomState(1)
    src = {}
    for split in ("train", "test"):
        y = np.tile(np.arange(100), 2)
        src[split] = rng.randint(0, 256, size=(len(y), 3072)).astype(np.uint8), y
    meta = pickle.dumps({b"fine_label_names": [n.encode() for n in CIFAR100_NAMES],
                         b"coarse_label_names": [b"superclass_%d" % i for i in range(20)]}, protocol=2)
    root = tmp_path / "cifar100"
    root.mkdir()
    write_targz(root / "cifar-100-python.tar.gz", {
        "cifar-100-python/train": batch(*src["train"], b"fine_labels"),
        "cifar-100-python/test": batch(*src["test"], b"fine_labels"),
        "cifar-100-python/meta": meta})
    return SimpleNamespace(root=root, archive=root / "cifar-100-python.tar.gz", **src)


@pytest.fixture
def tiny_cifar10(tmp_path):
    """One image per class in each of the five training batches, two per class in the test batch."""
    rng = np.random.RandomState(2)
    files, train_x, train_y = {}, [], []
    for i in range(1, 6):
        y = rng.permutation(10)
        x = rng.randint(0, 256, size=(10, 3072)).astype(np.uint8)
        files[f"cifar-10-batches-py/data_batch_{i}"] = batch(x, y, b"labels")
        train_x.append(x), train_y.append(y)
    test_y = np.tile(np.arange(10), 2)
    test_x = rng.randint(0, 256, size=(20, 3072)).astype(np.uint8)
    files["cifar-10-batches-py/test_batch"] = batch(test_x, test_y, b"labels")
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in CIFAR10_NAMES]}, protocol=2)
    root = tmp_path / "cifar10"
    root.mkdir()
    write_targz(root / "cifar-10-python.tar.gz", files)
    return SimpleNamespace(root=root, archive=root / "cifar-10-python.tar.gz",
                           train=(np.concatenate(train_x), np.concatenate(train_y)), test=(test_x, test_y))


def test_cifar100_tiny_archive_round_trip(tiny_cifar100):
    bm = data.load("cifar100", root=tiny_cifar100.root, download=False, verify=False)
    assert (bm.name, bm.n_tasks, bm.classes_per_task, bm.n_classes) == ("cifar100", 10, 10, 100)
    permutation = np.random.RandomState(0).permutation(100)
    for split, (x, y) in ((bm.train, tiny_cifar100.train), (bm.test, tiny_cifar100.test)):
        assert split.images.dtype == torch.uint8 and split.images.shape == (200, 3, 32, 32)
        assert split.labels.dtype == torch.int64
        assert np.array_equal(split.images.numpy(), x.reshape(-1, 3, 32, 32))  # file order kept, pixels exact
        assert np.array_equal(split.labels.numpy(), permutation[y])  # new = permutation[original]
    # each row is R, G, B planes of 1024 row-major pixels
    img, row = bm.train.images[5], tiny_cifar100.train[0][5]
    assert (img[0, 0, 1], img[1, 0, 0], img[2, 31, 31], img[0, 1, 0]) == (row[1], row[1024], row[3071], row[32])
    for t in range(1, 11):
        task = bm.task_split(t, "test")
        assert sorted(set(task.labels.tolist())) == list(bm.task_classes(t)) == list(range(10 * (t - 1), 10 * t))
        assert len(task) == 20
        assert bm.class_order[10 * (t - 1):10 * t] == SPEC_TASKS[t - 1]
    assert bm.class_names[:10] == SPEC_T1_NAMES and bm.class_names[10:20] == SPEC_T2_NAMES
    assert (bm.mean, bm.std) == ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761))  # appendix §2
    # unpacked atomically: the folder is in place and nothing temporary is left
    assert sorted(p.name for p in tiny_cifar100.root.iterdir()) == ["cifar-100-python", "cifar-100-python.tar.gz"]
    assert leftovers(tiny_cifar100.root) == []


def test_unpacked_folder_is_used_without_the_archive(tiny_cifar100):
    first = data.load("cifar100", root=tiny_cifar100.root, download=False, verify=False)
    tiny_cifar100.archive.unlink()
    again = data.load("cifar100", root=tiny_cifar100.root, download=False, n_train_per_class=1, n_test_per_class=2)
    assert len(again.train) == 100 and torch.equal(again.train.images, first.train.images[:100])
    assert torch.equal(again.test.images, first.test.images)


def test_cifar10_tiny_archive_round_trip(tiny_cifar10):
    bm = data.load("cifar10", root=tiny_cifar10.root, download=False, verify=False)
    assert (bm.n_tasks, bm.classes_per_task, len(bm.train), len(bm.test)) == (5, 2, 50, 20)
    permutation = np.random.RandomState(0).permutation(10)
    for split, (x, y) in ((bm.train, tiny_cifar10.train), (bm.test, tiny_cifar10.test)):
        assert np.array_equal(split.images.numpy(), x.reshape(-1, 3, 32, 32))
        assert np.array_equal(split.labels.numpy(), permutation[y])
    assert bm.class_order == [8, 4, 0, 7, 2, 9, 5, 6, 1, 3]
    assert bm.class_names == [CIFAR10_NAMES[o] for o in bm.class_order]
    assert bm.class_names[:2] == ["ship", "deer"]
    assert bm.mean == (0.4914, 0.4822, 0.4465) and bm.std == (0.2470, 0.2435, 0.2616)  # appendix §3
    assert sorted(set(bm.task_split(3).labels.tolist())) == [4, 5]


@pytest.mark.parametrize("name, md5", [("cifar100", "eb9058c3a382ffc7106e4002c42a8d85"), ("cifar10", "c58f30108f718f92721af3b95e74349a")])
def test_checksum_mismatch_names_expected_and_actual(name, md5, tiny_cifar100, tiny_cifar10):
    tiny = tiny_cifar100 if name == "cifar100" else tiny_cifar10
    with pytest.raises(ValueError, match=f"expected md5 {md5}, got {digest(tiny.archive, 'md5')}") as e:
        data.load(name, root=tiny.root, download=False)  # verify=True is the default
    assert "\n" not in str(e.value) and str(tiny.archive) in str(e.value)
    assert [p.name for p in tiny.root.iterdir()] == [tiny.archive.name]  # nothing unpacked


def test_missing_archive_says_where_and_how(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz") as e:
        data.load("cifar100", root=root, download=False)
    assert str(root) in str(e.value) and "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in str(e.value)
    assert "\n" not in str(e.value) and not root.exists()


def test_unreachable_download_leaves_nothing_and_its_advice_works(tiny_cifar100, tmp_path, monkeypatch):
    """No network (as on every machine here): one line naming the URL and where to put the archive by
    hand; no partial file. Following the advice works without any download flag (the CLI has none)."""
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "fresh"
    with pytest.raises(ConnectionError, match="could not download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz") as e:
        data.load("cifar100", root=root)                       # download=True is the default
    dest = root / "cifar-100-python.tar.gz"
    assert "\n" not in str(e.value) and f"put it at {dest}" in str(e.value)
    assert list(root.iterdir()) == []                          # the .part file was removed
    dest.write_bytes(tiny_cifar100.archive.read_bytes())       # "fetch it by hand and put it at ..."
    bm = data.load("cifar100", root=root, verify=False)        # still download=True: no network needed
    assert len(bm.train) == 200 and (root / "cifar-100-python").is_dir()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "incomplete"])
def test_broken_archive_leaves_nothing_behind(damage, tiny_cifar100):
    archive = tiny_cifar100.archive
    if damage == "truncate":  # a download cut short: gzip ends mid-stream while unpacking
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    elif damage == "garbage":
        archive.write_bytes(b"this is not a gzip file" * 100)
    else:  # a valid tar.gz without the training file: the folder must not be renamed into place
        write_targz(archive, {"cifar-100-python/meta": b"", "cifar-100-python/test": b""})
    with pytest.raises(ValueError, match="corrupt archive") as e:
        data.load("cifar100", root=tiny_cifar100.root, download=False, verify=False)
    assert "\n" not in str(e.value) and str(archive) in str(e.value)
    assert [p.name for p in tiny_cifar100.root.iterdir()] == [archive.name]


def test_too_many_per_class(tiny_cifar100):
    with pytest.raises(ValueError, match="n_train_per_class=3"):
        data.load("cifar100", root=tiny_cifar100.root, download=False, verify=False, n_train_per_class=3)

# -----------------------------------------------------------------------------
# cifar10-jpg, the vendored stand-in: decoded once here, then read from its cache

@pytest.fixture(scope="module")
def jpg(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jpg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIRR_CACHE", str(cache))
        t0 = time.perf_counter()
        first = data.load("cifar10-jpg")
        t1 = time.perf_counter()
        files = sorted(p.name for p in cache.iterdir())
        mtime = (cache / files[0]).stat().st_mtime_ns
        second = data.load("cifar10-jpg")
        t2 = time.perf_counter()
    return SimpleNamespace(cache=cache, first=first, second=second, t_first=t1 - t0, t_second=t2 - t1,
                           files=files, mtime=mtime)


def test_cifar10_jpg_sizes_tasks_and_names(jpg):
    bm = jpg.first
    assert (len(bm.train), len(bm.test), bm.n_tasks, bm.classes_per_task) == (50_000, 10_000, 5, 2)
    assert bm.train.images.shape == (50_000, 3, 32, 32) and bm.train.images.dtype == torch.uint8
    assert bm.train.labels.bincount().tolist() == [5000] * 10 and bm.test.labels.bincount().tolist() == [1000] * 10
    for t in range(1, 6):
        assert (len(bm.task_split(t)), len(bm.task_split(t, "test"))) == (10_000, 2_000)
    assert bm.class_order == data.class_order(10, 0)
    assert bm.class_names == [CIFAR10_NAMES[o] for o in bm.class_order]
    assert bm.describe()["synthetic"] is False and "not bit-exact" in bm.describe()["source"]


def test_cifar10_jpg_pixels_and_file_order(jpg):
    """train/airplane/0000.jpg, decoded independently, is the first image of new label permutation[0]."""
    from PIL import Image
    with tarfile.open(JPG_ARCHIVE, "r|gz") as tar:  # streamed: the wanted file is the archive's first
        member = next(m for m in tar if m.name == "train/airplane/0000.jpg")
        reference = np.asarray(Image.open(tar.extractfile(member)).convert("RGB"))  # (H, W, C)
    new_airplane = data.class_order(10, 0).index(0)
    first = jpg.first.train.images[jpg.first.train.labels == new_airplane][0]  # (C, H, W)
    assert np.array_equal(first.permute(1, 2, 0).numpy(), reference)


def test_cifar10_jpg_second_load_reads_the_cache(jpg):
    assert jpg.files == [f"cifar10-jpg-{JPG_SHA256[:12]}.npz"]  # one cache file, no temporary left
    assert sorted(p.name for p in jpg.cache.iterdir()) == jpg.files
    assert (jpg.cache / jpg.files[0]).stat().st_mtime_ns == jpg.mtime  # not rewritten
    assert jpg.t_second < jpg.t_first / 3, (jpg.t_first, jpg.t_second)
    assert torch.equal(jpg.second.train.images, jpg.first.train.images)
    assert torch.equal(jpg.second.test.labels, jpg.first.test.labels)


def test_cifar10_jpg_one_task_and_subsampling(jpg, monkeypatch):
    monkeypatch.setenv("BIRR_CACHE", str(jpg.cache))
    bm = data.load("cifar10-jpg", n_tasks=1, n_train_per_class=7, n_test_per_class=3)
    assert (bm.n_tasks, bm.classes_per_task, len(bm.train), len(bm.test)) == (1, 10, 70, 30)
    assert bm.task_classes(1) == range(10) and len(bm.task_split(1)) == 70
    for new in range(10):  # the first 7 of each class, in file order
        full = jpg.first.train.images[jpg.first.train.labels == new][:7]
        assert torch.equal(bm.train.images[bm.train.labels == new], full)


def test_cifar10_jpg_corrupted_copy_fails_the_checksum(tmp_path, birr_cache):
    blob = bytearray(JPG_ARCHIVE.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "cifar10-jpg.tar.gz").write_bytes(blob)
    got = hashlib.sha256(blob).hexdigest()
    with pytest.raises(ValueError, match=f"expected sha256 {JPG_SHA256}, got {got}") as e:
        data.load("cifar10-jpg", root=tmp_path)
    assert "\n" not in str(e.value) and not birr_cache.exists()


def test_cifar10_jpg_truncated_copy_writes_no_cache(tmp_path, birr_cache):
    """A failure while decoding (here: the archive ends early) leaves no cache file, whole or partial."""
    birr_cache.mkdir()
    (tmp_path / "cifar10-jpg.tar.gz").write_bytes(JPG_ARCHIVE.read_bytes()[:1_000_000])
    with pytest.raises(ValueError, match="corrupt archive"):
        data.load("cifar10-jpg", root=tmp_path, verify=False)
    assert list(birr_cache.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["birr-cache", "cifar10-jpg.tar.gz"]


def test_cifar10_jpg_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar10-jpg.tar.gz"):
        data.load("cifar10-jpg", root=tmp_path / "empty")


def write_tiny_jpg_archive(path, bad=None):
    """The cifar10-jpg layout with one train and one test JPEG per class; `bad` names a member to fill with junk."""
    from PIL import Image
    files, rng = {}, np.random.RandomState(3)
    for which in ("train", "test"):
        for name in CIFAR10_NAMES:
            buffer = io.BytesIO()
            Image.fromarray(rng.randint(0, 256, size=(32, 32, 3)).astype(np.uint8)).save(buffer, format="JPEG")
            files[f"{which}/{name}/0000.jpg"] = buffer.getvalue()
    if bad:
        files[bad] = b"not a jpeg"
    write_targz(path, files)


def test_cifar10_jpg_tiny_archive_is_cached_by_its_own_sha(tmp_path, birr_cache):
    write_tiny_jpg_archive(tmp_path / "cifar10-jpg.tar.gz")
    bm = data.load("cifar10-jpg", root=tmp_path, verify=False)
    assert (len(bm.train), len(bm.test)) == (10, 10)
    sha = digest(tmp_path / "cifar10-jpg.tar.gz", "sha256")
    assert [p.name for p in birr_cache.iterdir()] == [f"cifar10-jpg-{sha[:12]}.npz"]


def test_cifar10_jpg_undecodable_file_writes_no_cache(tmp_path, birr_cache):
    write_tiny_jpg_archive(tmp_path / "cifar10-jpg.tar.gz", bad="test/horse/0001.jpg")
    with pytest.raises(ValueError, match="test/horse/0001.jpg is not a 32x32 JPEG") as e:
        data.load("cifar10-jpg", root=tmp_path, verify=False)
    assert "\n" not in str(e.value) and not birr_cache.exists()


def test_partly_unpacked_cifar_folder_is_one_line(tiny_cifar100):
    data.load("cifar100", root=tiny_cifar100.root, download=False, verify=False)
    (tiny_cifar100.root / "cifar-100-python" / "meta").unlink()   # e.g. deleted by hand
    with pytest.raises(ValueError, match="corrupt CIFAR folder .*cifar-100-python: FileNotFoundError") as info:
        data.load("cifar100", root=tiny_cifar100.root, download=False, verify=False)
    assert "\n" not in str(info.value)


def _tiny_jpg_archive(path, seed=0):
    """A cifar10-jpg-shaped archive: one 32x32 JPEG per class and split (20 files), for cache tests."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for name in CIFAR10_NAMES:
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
                info = tarfile.TarInfo(f"{split}/{name}/0000.jpg")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))


def test_cifar10_jpg_unreadable_cache_is_rebuilt(tmp_path, birr_cache, capsys):
    """The decoded .npz is derived from the archive: if it cannot be read (a disk error, an edit), the
    archive is decoded again instead of failing with a bare BadZipFile."""
    _tiny_jpg_archive(tmp_path / "cifar10-jpg.tar.gz")
    first = data.load("cifar10-jpg", root=tmp_path, verify=False, n_tasks=1)
    assert "decoding cifar10-jpg.tar.gz once" in capsys.readouterr().err
    (cache,) = birr_cache.glob("cifar10-jpg-*.npz")
    cache.write_bytes(b"not a zip file")
    again = data.load("cifar10-jpg", root=tmp_path, verify=False, n_tasks=1)
    assert re.search(r"npz is unreadable \(\w+\); decoding the archive again", capsys.readouterr().err)
    assert torch.equal(again.train.images, first.train.images) and len(first.train) == 10
    assert [p.name for p in birr_cache.iterdir()] == [cache.name]   # rebuilt in place, no temporary left
