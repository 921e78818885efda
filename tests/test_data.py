"""
Tests of birr.data (appendix §2): the class order, the synthetic images, normalisation, and the one-line
errors of load / Benchmark / Split. Reading the archives is tested in tests/test_archives.py.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from birr import data
from cifar_facts import SPEC_TASKS

pytestmark = pytest.mark.usefixtures("birr_cache")  # every test gets its own empty BIRR_CACHE

# -----------------------------------------------------------------------------
# class order (appendix §2)

def test_class_order_seed0_matches_spec_all_ten_tasks():
    order = data.class_order(100, 0)
    assert [order[10 * t:10 * (t + 1)] for t in range(10)] == SPEC_TASKS
    assert sorted(order) == list(range(100))


def test_class_order_inverts_the_reference_permutation():
    for n, seed in ((100, 0), (10, 0), (7, 123)):
        permutation = np.random.RandomState(seed).permutation(n)  # the reference relabels new = permutation[original]
        order = data.class_order(n, seed)
        assert [permutation[original] for original in order] == list(range(n))

# -----------------------------------------------------------------------------
# synthetic

def test_synthetic_is_deterministic_in_the_seed():
    a, b, c = data.load("synthetic", seed=3), data.load("synthetic", seed=3), data.load("synthetic", seed=4)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    # like a real dataset: the run seed permutes the classes, the images stay (data_seed draws them)
    assert torch.equal(a.train.images, c.train.images) and not torch.equal(a.train.labels, c.train.labels)
    d = data.load("synthetic", seed=3, data_seed=1)
    assert not torch.equal(a.train.images, d.train.images)
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape == (400, 3, 32, 32) and len(a.test) == 80


def test_synthetic_first_k_do_not_depend_on_how_many():
    small, big = data.load("synthetic", n_train_per_class=5), data.load("synthetic", n_train_per_class=10)
    for new in range(4):
        assert torch.equal(small.train.images[small.train.labels == new], big.train.images[big.train.labels == new][:5])


def test_synthetic_is_learnable():
    """Nearest-class-mean on flattened normalised pixels beats chance (1/4) by far."""
    bm = data.load("synthetic")
    x, x_test = bm.normalise(bm.train.images).flatten(1), bm.normalise(bm.test.images).flatten(1)  # (N, 3072)
    means = torch.stack([x[bm.train.labels == c].mean(0) for c in range(bm.n_classes)])  # (n_classes, 3072)
    accuracy = (torch.cdist(x_test, means).argmin(1) == bm.test.labels).float().mean().item()
    assert accuracy > 2 / bm.n_classes, accuracy


def test_synthetic_any_classes_and_tasks():
    bm = data.load("synthetic", n_classes=6, n_tasks=3, seed=1, n_train_per_class=5, n_test_per_class=2)
    assert (bm.n_classes, bm.n_tasks, bm.classes_per_task, len(bm.train), len(bm.test)) == (6, 3, 2, 30, 12)
    assert bm.class_order == data.class_order(6, 1)
    assert bm.class_names == [f"synthetic-{o}" for o in bm.class_order]
    assert sorted(set(bm.task_split(3, "test").labels.tolist())) == [4, 5]
    summary = json.loads(json.dumps(bm.describe()))
    assert summary["synthetic"] is True and summary["name"] == "synthetic"
    assert summary["sizes"] == {"train": 30, "test": 12} and summary["class_names"] == bm.class_names
    one = data.load("synthetic", n_classes=3, n_tasks=1)
    assert one.task_classes(1) == range(3)


def test_normalise():
    bm = data.load("synthetic")
    out = bm.normalise(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 32, 32)
    expected = -torch.tensor(bm.mean) / torch.tensor(bm.std)
    assert torch.allclose(out[0, :, 0, 0], expected.float())
    with pytest.raises(ValueError, match="uint8"):
        bm.normalise(torch.zeros(2, 3, 32, 32))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BIRR_CACHE", str(tmp_path))
    assert data.cache_dir() == tmp_path and data.CACHE_DIR == tmp_path
    monkeypatch.delenv("BIRR_CACHE")
    assert data.cache_dir() == Path.home() / ".cache" / "birr"

# -----------------------------------------------------------------------------
# bad input: one line, naming the bad value

@pytest.mark.parametrize("kwargs, needle", [
    (dict(name="cifar1000"), "'cifar1000'"),
    (dict(name="synthetic", n_classes=5, n_tasks=2), "n_tasks=2"),
    (dict(name="cifar10", n_tasks=3), "n_tasks=3"),
    (dict(name="synthetic", n_tasks=0), "n_tasks=0"),
    (dict(name="synthetic", seed=True), "seed=True"),
    (dict(name="synthetic", seed=-1), "seed=-1"),
    (dict(name="synthetic", seed="0"), "seed='0'"),
    (dict(name="synthetic", seed=1.5), "seed=1.5"),
    (dict(name="cifar100", n_classes=50), "n_classes=50"),
    (dict(name="synthetic", n_classes=0), "n_classes=0"),
    (dict(name="synthetic", n_train_per_class=0), "n_train_per_class=0"),
])
def test_load_rejects_bad_input(kwargs, needle):
    name = kwargs.pop("name")
    with pytest.raises(ValueError) as e:
        data.load(name, **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)
    if name == "cifar1000":
        assert all(d in str(e.value) for d in data.DATASETS)


@pytest.mark.parametrize("call, needle", [
    (lambda bm: bm.task_classes(0), "t=0"),
    (lambda bm: bm.task_classes(3), "t=3"),
    (lambda bm: bm.task_classes(True), "t=True"),
    (lambda bm: bm.task_split(1, "val"), "'val'"),
    (lambda bm: bm.task_split("1"), "t='1'"),
    (lambda bm: data.class_order(10, -5), "seed=-5"),
])
def test_benchmark_rejects_bad_input(call, needle):
    bm = data.load("synthetic", n_train_per_class=2, n_test_per_class=1)
    with pytest.raises(ValueError) as e:
        call(bm)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_split_checks_its_tensors():
    with pytest.raises(ValueError, match="uint8"):
        data.Split(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        data.Split(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))

# --- known answers for normalisation (appendix §2) -------------------------------------------------

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)


def test_normalise_is_totensor_then_normalize_with_cifar100_statistics(birr_cache):
    """appendix §2: ToTensor (x / 255) then Normalize(mean, std). Pixel 255 of channel 0 is
    (1 − 0.5071) / 0.2673 = 1.84399, pixel 51 of channel 2 is (0.2 − 0.4409) / 0.2761 = −0.87251, pixel 0
    of channel 1 is −0.4865 / 0.2564 = −1.89743. Catches dividing by 256 instead of 255."""
    import dataclasses
    bm = data.load("synthetic", n_train_per_class=2, n_test_per_class=1)
    bm = dataclasses.replace(bm, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    img[0, 0], img[0, 2] = 255, 51
    out = bm.normalise(img)
    assert out[0, 0, 5, 7].item() == pytest.approx(1.84399, abs=1e-5)
    assert out[0, 1, 0, 0].item() == pytest.approx(-1.89743, abs=1e-5)
    assert out[0, 2, 31, 31].item() == pytest.approx(-0.87251, abs=1e-5)


def test_synthetic_statistics_standardise_each_channel(birr_cache):
    """Synthetic data has no published statistics; birr measures them per channel on the training images,
    as CIFAR's were measured (appendix §2 gives one mean and std per channel). Then the normalised training
    images have mean 0 and standard deviation 1 in each channel. Catches mixing channels in the
    measurement (a reshape without the transpose) and the variance taken for the std."""
    bm = data.load("synthetic")
    x = bm.normalise(bm.train.images).double()
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3, dtype=torch.float64), atol=1e-3)
