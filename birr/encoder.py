"""
The frozen convolutional encoder of appendix §3 ("C3-5x16-bn"): its architecture, its pre-training on
CIFAR-10 (supervised, as the reference does, or label-free), and the committed artefacts that hold it.

Read top to bottom: the conv stack -> crop+flip augmentation -> pre-training -> artefacts
(save / load / get by recipe stamp, or an imported checkpoint by name) -> the encoder a Config names.
What the frozen encoder gives the runs, its features cached once per image set, is birr.features;
converting the reference's own shipped checkpoint is birr.reference_encoder.

Budgets (BUDGETS below): `smoke` trains on synthetic images in seconds and learns nothing useful;
`short` is 5 epochs on the repository's CIFAR-10 JPEG copy (test accuracy 62.6 % for the committed
artefact; appendix §3 gives none for the 100-epoch encoder); `full` is the appendix's 100 epochs, meant
for a GPU. What each took on the 2-core CPU is in benchmarks/README.md.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from birr import store
from birr.config import IMPORTED_ENCODER, Config
from birr.data import Benchmark, load

FORMAT = 1                                               # artefact layout version; bump when the saved dict changes
ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts"  # committed, next to birr/

# Pre-training budgets (appendix §3: 100 epochs); what each costs is in the module docstring.
BUDGETS = {
    "smoke": dict(dataset="synthetic", epochs=1),       # tests and smoke runs: seconds, learns nothing useful
    "short": dict(dataset="cifar10-jpg", epochs=5),     # 5 epochs of the JPEG copy: minutes on a CPU
    "full": dict(dataset="cifar10", epochs=100),        # appendix §3; use dataset="cifar10-jpg" when offline
}

# -----------------------------------------------------------------------------
# the conv stack (appendix §3 table)

def _uniform_(t: torch.Tensor, fan_in: int, gen: torch.Generator) -> None:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what torch's default Conv2d/Linear init comes to, and the
    reference's `reset_parameters` (appendix §4.1), drawn from our own generator so a seed fixes it."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        t.copy_(torch.rand(t.shape, generator=gen) * 2 * bound - bound)


def init_(module: nn.Module, gen: torch.Generator) -> None:
    """Initialise every conv and linear layer of `module` in order, from `gen`. BN keeps weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()  # in_channels * k * k, or in_features
            _uniform_(m.weight, fan_in, gen)
            if m.bias is not None:
                _uniform_(m.bias, fan_in, gen)


class ConvEncoder(nn.Module):
    """
    Appendix §3: five 3x3 convs with padding 1 and bias. L1 keeps the 32x32 size; the last four are the
    "reducing" layers (stride 2, channels doubling after the first). L1-L4 are conv -> BN -> ReLU.
    L5 is the bare conv (`no_fnl=True` in the reference: no BN, no ReLU), so the 1024 features are
    real-valued and unbounded: these are what internal replay reconstructs.
    Parameters: 392,608 in the convs + 480 BN affine (+ 480 BN running statistics and 4 batch
    counters, not trained).
    """

    channels = (3, 16, 32, 64, 128, 256)
    out_dim = 1024  # 256 x 2 x 2

    def __init__(self):
        super().__init__()
        c = self.channels
        layers = []
        for i in range(4):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(c[i], c[i + 1], 3, stride, 1, bias=True), nn.BatchNorm2d(c[i + 1]), nn.ReLU()]
        layers += [nn.Conv2d(c[4], c[5], 3, 2, 1, bias=True)]  # L5: no BN, no ReLU (appendix §3)
        self.layers = nn.Sequential(*layers)
        self.frozen = False

    def forward(self, x):  # x: (B, 3, 32, 32) normalised images
        h = self.layers(x)  # (B, 256, 2, 2)
        return h.flatten(1)  # (B, 1024), channel-major

    def freeze(self) -> "ConvEncoder":
        """Frozen as in continual learning (appendix §3): no gradients, and eval mode for good, so BN always
        uses its stored running statistics. The reference re-calls convE.eval() on every step; here a
        parent's .train() simply cannot switch this module back."""
        self.frozen = True
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

# -----------------------------------------------------------------------------
# augmentation: RandomCrop(32, padding=4, symmetric) + RandomHorizontalFlip, on the whole batch

def _symmetric_index(n: int, pad: int, device=None) -> torch.Tensor:
    """Source pixel of each coordinate of a symmetric-padded axis of length n + 2*pad.
    'symmetric' repeats the edge pixel (numpy / torchvision): a b c d -> b a | a b c d | d c."""
    i = torch.arange(-pad, n + pad, device=device)
    return torch.where(i < 0, -i - 1, torch.where(i >= n, 2 * n - 1 - i, i))


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """
    Crop each image of x (B, C, H, W) at offset (dy, dx) of its symmetric-padded version, then mirror
    it left-right where flip is True; dy, dx in 0..2*pad, all (B,). One gather for the whole batch:
    output pixel (i, j) of image b is padded pixel (dy_b + i, dx_b + j'), with j' = W-1-j when flipped.
    Works on uint8 (padding copies pixels, so it commutes with normalisation).
    """
    B, C, H, W = x.shape
    rows_src, cols_src = _symmetric_index(H, pad, x.device), _symmetric_index(W, pad, x.device)
    i = torch.arange(H, device=x.device)
    j = torch.arange(W, device=x.device)
    j = torch.where(flip[:, None], W - 1 - j, j)  # (B, W)
    rows = rows_src[dy[:, None] + i]  # (B, H) source rows in x
    cols = cols_src[dx[:, None] + j]  # (B, W) source cols in x
    b = torch.arange(B, device=x.device)[:, None, None]
    out = x[b, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C): advanced indices come first
    return out.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The pre-training augmentation of appendix §3 (`--augment`): random crop with symmetric padding 4,
    then a horizontal flip with probability 1/2, drawn per image from `gen` (a CPU generator)."""
    B = x.shape[0]
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    flip = (torch.rand(B, generator=gen) < 0.5).to(x.device)
    return crop_flip(x, dy, dx, flip, pad)

# -----------------------------------------------------------------------------
# pre-training (appendix §3 recipe: main_pretrain.py --experiment=CIFAR10 --epochs=100 --augment)

def recipe_stamp(recipe: dict) -> str:
    """Short name of a recipe: the first 10 hex digits of sha1 over its sorted JSON."""
    return hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


OBJECTIVES = ("supervised", "rotation")   # Config.encoder_recipe


def _recipe(dataset, epochs, seed, batch, lr, n_train_per_class, augment, objective="supervised") -> dict:
    out = dict(dataset=dataset, epochs=int(epochs), seed=int(seed), batch=int(batch), lr=float(lr),
               n_train_per_class=n_train_per_class, augment=bool(augment))
    if objective != "supervised":      # only when set: the supervised artefacts keep their names
        out["objective"] = objective
    return out


def rotate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Image b of x (B, C, H, W) turned by k_b quarter turns counter-clockwise (k in 0..3): the pretext
    task of Gidaris et al. (2018), "Unsupervised representation learning by predicting image rotations".
    To tell which way is up the encoder must find objects and their parts, and no label is used."""
    out = x.clone()
    for q in range(1, 4):
        m = k == q
        if m.any():
            out[m] = torch.rot90(x[m], q, dims=(2, 3))
    return out


def _targets(objective: str, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(quarter turns or None, targets) of a batch: its labels, or a rotation drawn per image."""
    if objective == "rotation":
        k = torch.randint(0, 4, (len(y),), generator=gen).to(y.device)
        return k, k
    return None, y


@torch.no_grad()
def _accuracy(model: nn.Module, bench: Benchmark, device, batch: int = 1000, objective: str = "supervised") -> float:
    """Top-1 accuracy on the test split, eval mode (BN on running statistics), appendix §7; for the rotation
    objective, of the rotation (each test image at a fixed pseudo-random turn)."""
    model.eval()
    correct = 0
    gen = torch.Generator().manual_seed(12345)
    for k in range(0, len(bench.test), batch):
        x = bench.test.images[k:k + batch].to(device)
        turns, y = _targets(objective, bench.test.labels[k:k + batch].to(device), gen)
        x = rotate(x, turns) if turns is not None else x
        correct += (model(bench.normalise(x)).argmax(1) == y).sum().item()
    return correct / max(len(bench.test), 1)


def _save_atomic(obj, path: Path) -> None:
    """torch.save through birr.store's one atomic, durable writer (temp file in the same folder, fsync,
    rename, fsync of the folder: a reader never sees half a file), with a sidecar `<file>.sha256` that
    read_artefact and birr.features check before using the file again."""
    store.torch_save(path, obj)


def pretrain(dataset: str = "cifar10-jpg", epochs: int = 100, seed: int = 0, device: str = "cpu",
             batch: int = 256, lr: float = 1e-4, n_train_per_class: int | None = None,
             augment: bool = True, objective: str = "supervised", out_dir: str | Path = ARTEFACTS,
             progress: bool = True) -> Path:
    """
    Train ConvEncoder + MLP head (1024 -> 2000 -> 2000 -> n_classes, ReLU, no BN) with cross-entropy
    and Adam(lr, betas 0.9/0.999), batch 256 with drop_last, on crop+flip augmented images normalised
    with the pre-training dataset's own statistics (appendix §3). Every layer is trained; only the conv
    stack is kept. Everything random (init, shuffling, augmentation) comes from one generator seeded
    with `seed`, so a recipe fixes the weights on a given device. Returns the artefact's path.

    objective="rotation" trains the same network, with a 4-way head, to tell by how many quarter turns
    each augmented image was rotated (`rotate`): the labels are never read, so the encoder knows
    nothing of the classes the continual learner will meet (the paper's CIFAR-100 learner meets
    classes its CIFAR-10 encoder never saw; on the CIFAR-10 proxy the supervised encoder was trained
    on the very labels the learner then learns).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r} is not allowed; choose one of {OBJECTIVES}")
    recipe = _recipe(dataset, epochs, seed, batch, lr, n_train_per_class, augment, objective)
    bench = load(dataset, n_tasks=1, seed=seed, n_train_per_class=n_train_per_class)
    if len(bench.train) < batch:
        raise ValueError(f"batch={batch} is larger than the {len(bench.train)} training images of {dataset}; with drop_last no step would run")
    gen = torch.Generator().manual_seed(seed)
    encoder = ConvEncoder()
    head = nn.Sequential(nn.Linear(1024, 2000), nn.ReLU(), nn.Linear(2000, 2000), nn.ReLU(),
                         nn.Linear(2000, 4 if objective == "rotation" else bench.n_classes))  # models/classifier.py: fc 1024x2000x2000, then 2000 -> classes
    model = nn.Sequential(encoder, head)
    init_(model, gen)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))

    images, labels = bench.train.images.to(device), bench.train.labels.to(device)  # uint8 stays small on the device
    steps = len(images) // batch  # drop_last
    history = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=gen).to(device)
        bar = tqdm(range(steps), desc=f"encoder {dataset} epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        # running sums stay on the device: no host sync inside the epoch (a GPU would wait on each)
        total = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for s in bar:
            idx = order[s * batch:(s + 1) * batch]
            x = random_crop_flip(images[idx], gen) if augment else images[idx]
            turns, y = _targets(objective, labels[idx], gen)
            x = rotate(x, turns) if turns is not None else x
            logits = model(bench.normalise(x))  # (B, n_classes)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
            correct += (logits.argmax(1) == y).sum()
        total, correct = total.item(), int(correct)
        history.append(dict(epoch=epoch + 1, loss=total / steps, train_acc=correct / (steps * batch),
                            seconds=time.perf_counter() - t0))
        if progress:
            tqdm.write(f"encoder {dataset} epoch {epoch + 1}/{epochs}: loss {total / steps:.4f}, "
                       f"train acc {correct / (steps * batch):.4f}, {time.perf_counter() - t0:.0f} s")
    train_seconds = time.perf_counter() - t0
    test_acc = _accuracy(model, bench, device, objective=objective)

    stamp = recipe_stamp(recipe)
    path = Path(out_dir) / f"encoder-{stamp}.pt"
    _save_atomic(dict(
        format=FORMAT, stamp=stamp, recipe=recipe, dataset=bench.name,
        mean=list(bench.mean), std=list(bench.std),  # the statistics the encoder was trained under
        test_acc=test_acc, train_seconds=train_seconds, history=history,
        torch=str(torch.__version__), device=str(device),
        state_dict={k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},  # conv stack only, BN stats included
    ), path)
    return path


# -----------------------------------------------------------------------------
# artefacts: load one, or get the one a recipe names (training it if missing)

def read_artefact(path: str | Path, module: nn.Module, what: str = "artefact", fmt: int = FORMAT) -> dict:
    """Load an artefact's weights into `module` and return its metadata (with "path"); refuse another
    format version. Shared by the encoder and birr.lens's decoder. The file is checked against its sidecar
    `<file>.sha256` first (birr.store; the artefacts committed before hashes existed got theirs
    afterwards, and one without a sidecar is read unchecked); a mismatch, a truncated file or a corrupt pickle is one
    ValueError naming the file."""
    remedy = "retrain it (force=True), or restore it (git checkout -- artefacts/ for a committed one)"
    meta = store.torch_load(path, what=what, remedy=remedy, map_location="cpu", weights_only=True)
    if not isinstance(meta, dict) or "state_dict" not in meta:
        raise ValueError(f"{path}: not a birr {what} (no state_dict); {remedy}")
    if meta.get("format") != fmt:
        raise ValueError(f"{path}: {what} format {meta.get('format')!r}, this code reads format {fmt}; retrain it")
    try:
        module.load_state_dict(meta.pop("state_dict"))
    except RuntimeError as e:
        raise ValueError(f"{path}: its weights do not fit the {what}'s layers "
                         f"({(str(e).strip().splitlines() or [''])[0][:160]}); {remedy}") from None
    meta["path"] = str(path)
    return meta


def load_encoder(path: str | Path, device: str = "cpu") -> tuple[ConvEncoder, dict]:
    """Read an artefact written by pretrain(): a frozen encoder (eval mode) and its metadata."""
    encoder = ConvEncoder()
    meta = read_artefact(path, encoder)
    return encoder.to(device).freeze(), meta


def get_encoder(dataset: str, epochs: int, seed: int = 0, batch: int = 256, lr: float = 1e-4,
                n_train_per_class: int | None = None, augment: bool = True, objective: str = "supervised",
                device: str = "cpu", force: bool = False, out_dir: str | Path = ARTEFACTS,
                progress: bool = True) -> tuple[ConvEncoder, dict]:
    """Train-or-load by recipe stamp: reuse artefacts/encoder-<stamp>.pt when it exists (unless force),
    else pre-train and save it. The encoder comes back frozen and in eval mode."""
    recipe = _recipe(dataset, epochs, seed, batch, lr, n_train_per_class, augment, objective)
    path = Path(out_dir) / f"encoder-{recipe_stamp(recipe)}.pt"
    if force or not path.is_file():
        path = pretrain(**recipe, device=device, out_dir=out_dir, progress=progress)
    return load_encoder(path, device)


def load_imported(name: str, device: str = "cpu", out_dir: str | Path | None = None) -> tuple[ConvEncoder, dict]:
    """The encoder birr.reference_encoder.import_reference wrote under `name` ("ref-<10 hex>"), frozen, with its metadata."""
    if not IMPORTED_ENCODER.fullmatch(str(name)):
        raise ValueError(f"encoder={name!r} is not an imported encoder's name; expected 'ref-' and 10 hex digits")
    path = Path(out_dir if out_dir is not None else ARTEFACTS) / f"encoder-{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"encoder {name!r}: no {path}; import the checkpoint first: python -m birr import-encoder PATH")
    return load_encoder(path, device)


def for_config(cfg: Config, device: str = "cpu", progress: bool = True) -> tuple[ConvEncoder, dict]:
    """The frozen encoder a run's Config names: an imported one (`cfg.encoder`, e.g. the reference's
    shipped checkpoint, birr.reference_encoder) or else the one pre-trained by recipe
    (`cfg.encoder_data`, `cfg.encoder_epochs`; get_encoder)."""
    if cfg.encoder is not None:
        return load_imported(cfg.encoder, device)
    return get_encoder(cfg.encoder_data, cfg.encoder_epochs, objective=cfg.encoder_recipe, device=device,
                       progress=progress)
