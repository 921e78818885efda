"""
The frozen convolutional encoder of appendix §3 ("C3-5x16-bn"): its architecture, its pre-training on
CIFAR-10, the committed artefacts that hold it, and the precomputed features the continual runs use.

Read top to bottom: the conv stack -> crop+flip augmentation -> pre-training -> artefacts
(save / load / get by recipe stamp) -> the reference's shipped checkpoint (import) -> the feature cache.

Why precompute: in continual learning the conv stack is frozen and kept in eval mode on every step
(appendix §3, "Frozen in continual learning"), and the baseline has no augmentation (appendix §2). So the
1024 features of every image are a fixed function of the image, and can be computed once per
(encoder, benchmark) and cached. That moves ~5.2 M of the ~18 M multiply-accumulates per sample
(appendix §4.4) out of the training loop.

Budgets (BUDGETS below), measured on this repo's 2-core CPU (torch 2.14.1, default 2 threads):
- smoke: synthetic, 1 epoch: 400 images = one step of 256, ~3 s; test accuracy 25% (chance: 4 classes).
- short: cifar10-jpg, 5 epochs of all 50,000 images (195 steps of 256 per epoch). One step takes
  0.33 s on an idle machine (0.21 s conv stack, 0.15 s MLP head, forward + backward), so ~65 s per
  epoch and ~6 min in all. The committed artefact (encoder-b9e09c289f.pt) was trained while other
  jobs shared the two cores: 127-380 s per epoch, 1,359 s in all. Train loss 1.69 -> 1.16 over the
  five epochs; test accuracy 62.6% (appendix §3 gives no accuracy for the 100-epoch encoder).
- full: 100 epochs (appendix §3 recipe): ~1.8 h on the idle 2-core CPU (100 x 65 s), so meant for a GPU.
Features of all 60,000 cifar10-jpg images: ~30 s idle (0.48 s per 1,000), 95 s measured under load;
served from the cache file (246 MB) in 1.5 s.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from birr import store
from birr.config import IMPORTED_ENCODER, Config
from birr.data import CIFAR10_STATS, Benchmark, cache_dir, load

FORMAT = 1                                               # artefact layout version; bump when the saved dict changes
ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts"  # committed, next to birr/

# Pre-training budgets (appendix §3: 100 epochs). `short` was chosen from the timing in the module docstring.
BUDGETS = {
    "smoke": dict(dataset="synthetic", epochs=1),       # tests and smoke runs: seconds, learns nothing useful
    "short": dict(dataset="cifar10-jpg", epochs=5),     # see the module docstring for its time and accuracy
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
    Spec §3: five 3x3 convs with padding 1 and bias. L1 keeps the 32x32 size; the last four are the
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
    read_artefact and features() check before using the file again."""
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


def for_config(cfg: Config, device: str = "cpu", progress: bool = True) -> tuple[ConvEncoder, dict]:
    """The frozen encoder a run's Config names: an imported one (`cfg.encoder`, e.g. the reference's
    shipped checkpoint, import_reference below) or else the one pre-trained by recipe
    (`cfg.encoder_data`, `cfg.encoder_epochs`; get_encoder)."""
    if cfg.encoder is not None:
        return load_imported(cfg.encoder, device)
    return get_encoder(cfg.encoder_data, cfg.encoder_epochs, objective=cfg.encoder_recipe, device=device,
                       progress=progress)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 *, epochs: int = 30, batch: int = 256, lr: float = 1e-3, seed: int = 0) -> float:
    """Test accuracy of a linear softmax classifier trained on frozen features: the standard measure of
    how much class information a representation holds, whatever objective made it. Features are
    standardised with the training split's mean and SD; Adam, cross-entropy, `epochs` shuffled passes,
    everything random from one seed."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    tx, vx = (train_x - mean) / std, (test_x - mean) / std
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    gen = torch.Generator().manual_seed(seed)
    probe = nn.Linear(tx.shape[1], n_classes)
    init_(probe, gen)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(tx), generator=gen)
        for k in range(0, len(tx), batch):
            idx = order[k:k + batch]
            loss = F.cross_entropy(probe(tx[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float((probe(vx).argmax(1) == test_y).float().mean())

# -----------------------------------------------------------------------------
# the reference's shipped checkpoint (appendix §3, "The shipped checkpoint")
#
# The reference loads store/models/C3-5x16-bn unless told otherwise; that file is not in this repo
# (nor can it be downloaded here), and its 39,000 BN batches show it was not made by the documented
# recipe (appendix §3), so pretrain() cannot reproduce it. A user who has it imports it once:
#     python -m birr import-encoder path/to/store/models/C3-5x16-bn   ->  artefacts/encoder-ref-<sha>.pt
# and runs with `--set encoder=ref-<sha>` (Config.encoder), for features from the very weights the
# paper's numbers came from.

def _birr_key(ref_key: str) -> str | None:
    """The reference's `convLayer{i}.conv.*` / `convLayer{i}.bn.*` (appendix §3) -> this stack's
    `layers.{n}.*`: layer i's conv is module 3(i-1), its BN module 3(i-1)+1 (ReLU has no state); L5 is
    the bare conv, module 12. None for a key the reference stack cannot have."""
    m = re.fullmatch(r"convLayer([1-5])\.(conv|bn)\.(\w+)", ref_key)
    if m is None or (m[1] == "5" and m[2] == "bn"):
        return None
    return f"layers.{3 * (int(m[1]) - 1) + (m[2] == 'bn')}.{m[3]}"


def _reference_key(key: str) -> str:
    """The inverse of _birr_key: `layers.{n}.{leaf}` -> the reference's name for it."""
    _, n, leaf = key.split(".")
    return f"convLayer{int(n) // 3 + 1}.{'bn' if int(n) % 3 == 1 else 'conv'}.{leaf}"


def import_reference(path: str | Path, out_dir: str | Path | None = None) -> Path:
    """
    Convert the reference's conv-stack checkpoint (appendix §3: `torch.save({'state': state_dict})` with
    keys `convLayer{1..5}.conv.{weight,bias}` and `convLayer{1..4}.bn.{weight,bias,running_mean,
    running_var,num_batches_tracked}`; a bare state dict is accepted too) into a birr artefact,
    `encoder-ref-<sha1 of the file, 10 hex>.pt` in out_dir (default: artefacts/). Every key and shape
    is checked, so a checkpoint of another architecture is refused in one line instead of loading half.
    Returns the artefact's path; its name after "encoder-" is what Config.encoder takes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the reference ships it as store/models/C3-5x16-bn)")
    raw = path.read_bytes()
    sha1 = hashlib.sha1(raw).hexdigest()
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds here (pickle, zip, unsafe global); one line names it
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise ValueError(f"{path}: not a torch checkpoint of tensors ({type(e).__name__}: {first})") from None
    state = obj.get("state", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or {{'state': state dict}}), got {type(obj).__name__}")
    encoder = ConvEncoder()
    expected = encoder.state_dict()
    mapped, unknown = {}, []
    for key, value in state.items():
        ours = _birr_key(key)
        if ours is None or ours not in expected:
            unknown.append(key)
        elif value.shape != expected[ours].shape:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, the C3-5x16-bn stack needs {tuple(expected[ours].shape)}")
        else:
            mapped[ours] = value
    if unknown:
        raise ValueError(f"{path}: keys the C3-5x16-bn stack does not have: {', '.join(sorted(unknown)[:4])}"
                         f"{' ...' if len(unknown) > 4 else ''} (appendix §3)")
    missing = [k for k in expected if k not in mapped]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(_reference_key(k) for k in missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''} (appendix §3 lists the keys)")
    encoder.load_state_dict(mapped)
    name = f"ref-{sha1[:10]}"
    out = Path(out_dir if out_dir is not None else ARTEFACTS) / f"encoder-{name}.pt"
    mean, std = CIFAR10_STATS
    _save_atomic(dict(
        format=FORMAT, stamp=name, dataset="cifar10", mean=list(mean), std=list(std),  # appendix §3: CIFAR-10 statistics
        # dataset / epochs as in a pretrain() recipe (birr.lens names the encoder by them); the
        # epochs that made the shipped file are unknown (appendix §3: not the documented 100 at batch 256)
        recipe=dict(source="reference checkpoint", file=path.name, file_sha1=sha1, dataset="cifar10", epochs=None),
        test_acc=None, train_seconds=None, history=[], torch=str(torch.__version__), device="cpu",
        state_dict={k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
    ), out)
    return out


def load_imported(name: str, device: str = "cpu", out_dir: str | Path | None = None) -> tuple[ConvEncoder, dict]:
    """The encoder import_reference() wrote under `name` ("ref-<10 hex>"), frozen, with its metadata."""
    if not IMPORTED_ENCODER.fullmatch(str(name)):
        raise ValueError(f"encoder={name!r} is not an imported encoder's name; expected 'ref-' and 10 hex digits")
    path = Path(out_dir if out_dir is not None else ARTEFACTS) / f"encoder-{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"encoder {name!r}: no {path}; import the checkpoint first: python -m birr import-encoder PATH")
    return load_encoder(path, device)


def encoder_hash(encoder: nn.Module) -> str:
    """Short hash of the state dict (names, dtypes, shapes and bytes): names what features came from."""
    h = hashlib.sha1()
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:10]

# -----------------------------------------------------------------------------
# the feature cache (appendix §3, "consequence")

def _images_hash(bench: Benchmark) -> str:
    """Hash of the train and test image bytes and the normalisation statistics. The images, not the
    seed: the class order only permutes labels (appendix §2), so every seed of a CIFAR benchmark shares one
    cache file, while a subsampled benchmark, or synthetic data drawn from another seed, gets its own."""
    h = hashlib.blake2b(digest_size=8)
    h.update(json.dumps([list(bench.mean), list(bench.std)]).encode())
    for split in (bench.train, bench.test):
        h.update(str(tuple(split.images.shape)).encode())
        h.update(split.images.contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def _forward_all(encoder: ConvEncoder, bench: Benchmark, images: torch.Tensor, device, batch: int,
                 desc: str, progress: bool) -> torch.Tensor:
    out = torch.empty(len(images), ConvEncoder.out_dim, dtype=torch.float32)
    for k in tqdm(range(0, len(images), batch), desc=desc, disable=not progress, leave=False):
        x = bench.normalise(images[k:k + batch].to(device))
        out[k:k + batch] = encoder(x).float().cpu()  # (b, 1024)
    return out


def features(encoder: ConvEncoder, bench: Benchmark, device: str = "cpu", batch: int = 1000,
             progress: bool = False, info: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The 1024 conv features of every train and test image of `bench`: float32 (N_train, 1024) and
    (N_test, 1024), in the order of bench.train / bench.test. Images are normalised with the
    *continual* dataset's own statistics (bench.normalise), as the reference does even though the
    encoder was pre-trained under CIFAR-10's (appendix §3: the mismatch is copied for fidelity). Eval mode,
    no gradients. Cached in cache_dir() as one file per (encoder, dataset, images); later calls read it.
    progress: a bar over the batches when they are computed (30-95 s for 60,000 images on 2 cores).

    The cache file has a sidecar `<file>.sha256` (birr.store). A file that does not match it, has none
    (written before hashes existed, or its sidecar lost), cannot be read, or holds tensors of the wrong
    shape or non-finite values is not used: the features are computed again and the file rewritten,
    with a notice on stderr. info: a dict to fill with the encoder's weight hash (encoder_hash) and the
    cache file's name and sha256, which a run's results record.
    """
    ehash = encoder_hash(encoder)
    path = cache_dir() / f"features-{bench.name}-{ehash}-{_images_hash(bench)}.pt"
    cached = _read_features(path, bench) if path.is_file() else None
    if cached is not None:
        if info is not None:
            info.update(encoder_hash=ehash, file=path.name, sha256=store.recorded_sha256(path))
        return cached
    was_training = encoder.training
    encoder.eval()
    try:
        train = _forward_all(encoder, bench, bench.train.images, device, batch, f"features {bench.name} train", progress)
        test = _forward_all(encoder, bench, bench.test.images, device, batch, f"features {bench.name} test", progress)
    finally:
        encoder.train(was_training)
    sha = store.torch_save(path, dict(train=train, test=test))
    if info is not None:
        info.update(encoder_hash=ehash, file=path.name, sha256=sha)
    return train, test


def _read_features(path: Path, bench: Benchmark) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached features at `path`, or None (with a notice on stderr) if they must be computed again
    (features() says when). The old file is deleted then, so that a failure to rewrite it is not
    followed by a read of the bad one."""
    import sys
    try:
        if store.recorded_sha256(path) is None:
            raise store.CorruptFile(path, "", "it has no sha256 beside it")
        cached = store.torch_load(path, what="features cache", map_location="cpu", weights_only=True)
        train, test = cached["train"], cached["test"]
        for name, t, n in (("train", train, len(bench.train)), ("test", test, len(bench.test))):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n, ConvEncoder.out_dim) or t.dtype != torch.float32:
                raise store.CorruptFile(path, "", f"its {name} features are not float32 ({n}, {ConvEncoder.out_dim})")
            if not torch.isfinite(t).all():
                raise store.CorruptFile(path, "", f"its {name} features are not all finite")
        return train, test
    except (store.CorruptFile, KeyError, TypeError) as e:
        reason = e.reason if isinstance(e, store.CorruptFile) else f"{type(e).__name__}: {e}"
        print(f"[birr] features cache {path} is not used ({reason}); computing the features again",
              file=sys.stderr, flush=True)
        store.remove(path)
        return None
