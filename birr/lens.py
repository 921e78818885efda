r"""
Seeing the method: a feature -> image "lens", and measures of exaggeration in feature space.

BI-R replays 1,024-d conv features, not pixels (appendix §11: "no image decoder under hidden replay"), so
nothing in the reference can *show* what RR / RA do to a replayed memory. Appendix §11's suggestion is
followed here: a separate decoder is trained to invert the frozen encoder on real training images, and
replayed feature vectors are pushed through it. It is a viewing lens only: nothing in birr/train.py
imports this module, so it can never influence a run (tests/test_lens.py checks that by reading the
source).

Read top to bottom: pixels (un-normalise, PSNR) -> the decoder (appendix §8.6 / §11 architecture) ->
training it -> artefacts (save / load / get by recipe stamp, as birr.encoder does) -> decoding ->
replay and the exaggeration measure. The figures drawn through the lens are birr.book.lens_figures.

Budgets (DECODER_BUDGETS below): `smoke` trains on synthetic images in seconds and learns nothing (grey
pictures); `short` is one pass over the 50,000 CIFAR-10 JPEG training images with the 5-epoch encoder
(test PSNR 18.96 dB against 12.13 dB for the mean training image, artefacts/decoder-1585fe70ea.pt);
`full` is 30 passes, meant for a GPU. What each took on the 2-core CPU is in benchmarks/README.md.
"""
from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from birr import data as bdata
from birr import encoder as benc
from birr import features as bfeat

FORMAT = 1                       # decoder artefact layout version; bump when the saved dict changes
ARTEFACTS = benc.ARTEFACTS       # committed, next to the encoder artefacts

# Training budgets of the lens. The decoder learns from precomputed features (no augmentation: it must
# invert the features of plain images, which is what replay imitates), so one step is only the
# decoder's forward and backward (~9 M multiply-accumulates per image forward).
DECODER_BUDGETS = {
    "smoke": dict(epochs=1, n_train_per_class=None),   # synthetic: 400 images, 6 steps, seconds; learns nothing
    "short": dict(epochs=1, n_train_per_class=None),   # cifar10-jpg: one pass over 50,000 images, 19.0 dB
    "class": dict(epochs=1, n_train_per_class=None),   # the short budget's encoder and data: the same lens, reused
    "full": dict(epochs=30, n_train_per_class=None),   # 30 passes, meant for a GPU
}

# -----------------------------------------------------------------------------
# pixels: back from the encoder's normalised space, and how close two images are


def unnormalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(x * std + mean) per channel, clamped to [0, 1]: the inverse of Benchmark.normalise, as the
    reference's UnNormalize + clamp (appendix §11). x (B, 3, H, W) -> (B, 3, H, W) in [0, 1]."""
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    r"""Peak signal-to-noise ratio in dB over all elements of a and b (same shape):

    $\mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\mathrm{MSE}}$, MSE = mean of $(a - b)^2$, R = data_range.

    inf for identical images. Images in [0, 1] use data_range 1 (uint8 images: 255)."""
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = (a.double() - b.double()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(data_range ** 2 / mse)

# -----------------------------------------------------------------------------
# the decoder: the fork's convD_contr / the BI-R code's convD architecture (appendix §8.6, §11)


class ImageDecoder(nn.Module):
    """
    1,024 features -> 3 x 32 x 32 normalised image. The feature vector is viewed as the encoder's
    256 x 2 x 2 output (ConvEncoder flattens channel-major), then four stride-2 4x4 transposed convs
    (padding 1, so each doubles the size) 256 -> 128 -> 64 -> 32 -> 16, each with BN and ReLU, and a
    3x3 transposed conv 16 -> 3 (stride 1, padding 1) with linear output, in the normalised pixel space
    the encoder reads. 697,475 parameters, as appendix §8.6 counts for `convD_contr`.
    """

    channels = (256, 128, 64, 32, 16)

    def __init__(self):
        super().__init__()
        c = self.channels
        layers = []
        for i in range(4):
            layers += [nn.ConvTranspose2d(c[i], c[i + 1], 4, 2, 1), nn.BatchNorm2d(c[i + 1]), nn.ReLU()]
        layers += [nn.ConvTranspose2d(c[4], 3, 3, 1, 1)]  # linear output: normalised pixels are unbounded
        self.layers = nn.Sequential(*layers)

    def forward(self, h):  # h: (B, 1024) encoder features
        return self.layers(h.view(-1, 256, 2, 2))  # (B, 256, 2, 2) -> (B, 3, 32, 32)


def _init_decoder_(decoder: ImageDecoder, gen: torch.Generator) -> None:
    """U(-1/sqrt(fan_in), +) for every transposed conv, from `gen` (torch's default bound; for a
    ConvTranspose2d torch's fan_in is weight[0].numel() = out_channels * k * k). BN keeps 1 and 0."""
    for m in decoder.modules():
        if isinstance(m, nn.ConvTranspose2d):
            fan_in = m.weight[0].numel()
            benc._uniform_(m.weight, fan_in, gen)
            benc._uniform_(m.bias, fan_in, gen)

# -----------------------------------------------------------------------------
# training: invert the frozen encoder on real training images


def _recipe(dataset, encoder_meta, encoder_hash, epochs, seed, batch, lr, n_train_per_class) -> dict:
    return dict(dataset=dataset, encoder=dict(dataset=encoder_meta["recipe"]["dataset"],
                                              epochs=encoder_meta["recipe"]["epochs"],
                                              stamp=encoder_meta["stamp"], hash=encoder_hash),
                epochs=int(epochs), seed=int(seed), batch=int(batch), lr=float(lr),
                n_train_per_class=n_train_per_class, loss="mse-normalised-pixels")


def _first_per_class(labels: torch.Tensor, k: int | None) -> torch.Tensor:
    """Indices of the first k images of every class, in file order (all images when k is None)."""
    if k is None:
        return torch.arange(len(labels))
    return torch.cat([(labels == c).nonzero().flatten()[:k] for c in labels.unique()]).sort().values


@torch.no_grad()
def _decoded_pixels(decoder, feats, mean, std, device, batch=1000) -> torch.Tensor:
    decoder.eval()
    out = [unnormalise(decoder(feats[k:k + batch].to(device)).float(), mean, std).cpu()
           for k in range(0, len(feats), batch)]
    return torch.cat(out) if out else torch.empty(0, 3, 32, 32)


def _test_psnr(decoder, bench, test_x, device, n=None) -> float:
    """PSNR on all test images, or on n of them spread evenly (the test split is stored class by class)."""
    idx = slice(None) if n is None else slice(None, None, max(1, len(test_x) // n))
    real = bench.test.images[idx].float() / 255
    return psnr(_decoded_pixels(decoder, test_x[idx], bench.mean, bench.std, device), real)


def train_decoder(encoder_dataset: str, encoder_epochs: int, epochs: int, *, dataset: str | None = None,
                  n_train_per_class: int | None = None, seed: int = 0, batch: int = 64, lr: float = 1e-3,
                  device: str = "cpu", out_dir: str | Path = ARTEFACTS, progress: bool = True) -> Path:
    """
    Train an ImageDecoder to invert the frozen encoder `birr.encoder.get_encoder(encoder_dataset,
    encoder_epochs)` on the training images of `dataset` (default: encoder_dataset), with MSE between
    the decoded and the real image in the normalised pixel space (the loss of the BI-R code's image decoder,
    appendix §11), Adam(lr, 0.9/0.999), batch `batch` with drop_last. The features are those of
    `birr.features.features` (normalised with `dataset`'s own statistics, as the continual runs compute
    them), so the lens inverts exactly the map whose outputs BI-R replays. `n_train_per_class` keeps
    the first k images of each class. Everything random comes from one generator seeded with `seed`.

    Saves artefacts/decoder-<stamp>.pt (atomic): recipe (with the encoder's stamp and weight hash),
    test PSNR in [0, 1] pixel space over all test images, the PSNR of guessing the mean training image
    (a floor to read it against), train seconds, per-epoch history, and the weights. Returns its path.
    """
    dataset = dataset or encoder_dataset
    encoder, emeta = benc.get_encoder(encoder_dataset, encoder_epochs, device=device, progress=progress)
    ehash = bfeat.encoder_hash(encoder)
    recipe = _recipe(dataset, emeta, ehash, epochs, seed, batch, lr, n_train_per_class)
    bench = bdata.load(dataset, seed=0)   # the seed only permutes labels: images and features are shared
    train_x, test_x = bfeat.features(encoder, bench, device=device)      # (N, 1024), (N_test, 1024), cached
    keep = _first_per_class(bench.train.labels, n_train_per_class)
    feats, images = train_x[keep], bench.train.images[keep]             # (N', 1024), (N', 3, 32, 32) uint8
    if len(feats) < batch:
        raise ValueError(f"batch={batch} is larger than the {len(feats)} training images of {dataset}; with drop_last no step would run")

    gen = torch.Generator().manual_seed(seed)
    decoder = ImageDecoder()
    _init_decoder_(decoder, gen)
    decoder.to(device)
    opt = torch.optim.Adam(decoder.parameters(), lr=lr, betas=(0.9, 0.999))
    steps = len(feats) // batch
    history = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        decoder.train()
        order = torch.randperm(len(feats), generator=gen)
        total = 0.0
        bar = tqdm(range(steps), desc=f"decoder {dataset} epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for s in bar:
            idx = order[s * batch:(s + 1) * batch]
            target = bench.normalise(images[idx].to(device))            # (B, 3, 32, 32)
            loss = F.mse_loss(decoder(feats[idx].to(device)), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
        history.append(dict(epoch=epoch + 1, loss=total / steps, seconds=time.perf_counter() - t0,
                            test_psnr_1000=_test_psnr(decoder, bench, test_x, device, n=1000)))  # every k-th test image
        if progress:
            tqdm.write(f"decoder {dataset} epoch {epoch + 1}/{epochs}: loss {total / steps:.4f}, "
                       f"test PSNR (1,000 images) {history[-1]['test_psnr_1000']:.2f} dB, {history[-1]['seconds']:.0f} s")
    train_seconds = time.perf_counter() - t0   # includes the per-epoch PSNR checks (cheap)

    real_test = bench.test.images.float() / 255
    mean_image = (images.float() / 255).mean(0, keepdim=True).expand_as(real_test)
    stamp = benc.recipe_stamp(recipe)
    path = Path(out_dir) / f"decoder-{stamp}.pt"
    benc._save_atomic(dict(
        format=FORMAT, stamp=stamp, recipe=recipe, dataset=bench.name,
        mean=list(bench.mean), std=list(bench.std),   # the statistics to un-normalise its output with
        n_train=len(feats), n_test=len(test_x),
        test_psnr=_test_psnr(decoder, bench, test_x, device),   # dB, [0, 1] pixels, all test images
        mean_image_psnr=psnr(mean_image, real_test),            # dB of the trivial guess, for scale
        train_seconds=train_seconds, history=history, threads=torch.get_num_threads(),
        torch=str(torch.__version__), device=str(device),
        state_dict={k: v.detach().cpu().clone() for k, v in decoder.state_dict().items()},
    ), path)
    return path

# -----------------------------------------------------------------------------
# artefacts: load one, or get the one a recipe names (training it if missing)


def load_decoder(path: str | Path, device: str = "cpu") -> tuple[ImageDecoder, dict]:
    """Read an artefact written by train_decoder(): the decoder (eval mode, no gradients) and its metadata."""
    decoder = ImageDecoder()
    meta = benc.read_artefact(path, decoder, "decoder artefact", FORMAT)
    decoder.requires_grad_(False)
    return decoder.to(device).eval(), meta


def get_decoder(encoder_dataset: str, encoder_epochs: int, epochs: int, *, dataset: str | None = None,
                n_train_per_class: int | None = None, seed: int = 0, batch: int = 64, lr: float = 1e-3,
                device: str = "cpu", force: bool = False, out_dir: str | Path = ARTEFACTS,
                progress: bool = True) -> tuple[ImageDecoder, dict]:
    """Train-or-load by recipe stamp: reuse artefacts/decoder-<stamp>.pt when it exists
    (unless force), else train and save it. The stamp covers the encoder's weights (its hash), so a
    retrained encoder gets a new lens."""
    dataset = dataset or encoder_dataset
    encoder, emeta = benc.get_encoder(encoder_dataset, encoder_epochs, device=device, progress=progress)
    recipe = _recipe(dataset, emeta, bfeat.encoder_hash(encoder), epochs, seed, batch, lr, n_train_per_class)
    path = Path(out_dir) / f"decoder-{benc.recipe_stamp(recipe)}.pt"
    if force or not path.is_file():
        path = train_decoder(encoder_dataset, encoder_epochs, epochs, dataset=dataset, n_train_per_class=n_train_per_class,
                             seed=seed, batch=batch, lr=lr, device=device, out_dir=out_dir, progress=progress)
    return load_decoder(path, device)


def decoder_for(cfg, *, budget: str | None = None, device: str = "cpu", **kw) -> tuple[ImageDecoder, dict]:
    """The lens for a run's features: the encoder of `cfg` (cfg.encoder_data, cfg.encoder_epochs), trained
    on cfg.dataset's images, with the epochs and subset of DECODER_BUDGETS[budget or cfg.budget]."""
    b = DECODER_BUDGETS[budget or cfg.budget]
    return get_decoder(cfg.encoder_data, cfg.encoder_epochs, b["epochs"], dataset=cfg.dataset,
                       n_train_per_class=b["n_train_per_class"], device=device, **kw)

# -----------------------------------------------------------------------------
# decoding: features -> pictures


@torch.no_grad()
def decode_images(decoder: ImageDecoder, feats: torch.Tensor, mean, std, uint8: bool = False) -> torch.Tensor:
    """Features (..., 1024) -> images (N, 3, 32, 32): float in [0, 1], or uint8 if asked. `mean`, `std`
    are the statistics the decoder's training images were normalised with (its artefact's metadata)."""
    dev = next(decoder.parameters()).device
    img = _decoded_pixels(decoder, feats.reshape(-1, feats.shape[-1]).float(), mean, std, dev)
    return (img * 255).round().to(torch.uint8) if uint8 else img


def difference_map(a: torch.Tensor, b: torch.Tensor, amplification: float = 5.0) -> torch.Tensor:
    """0.5 + amplification * (a - b), clamped to [0, 1]: mid-grey where a and b agree, brighter where a
    is brighter, per channel. a, b images in [0, 1] of the same shape (e.g. RR+RA and baseline decoded)."""
    return (0.5 + amplification * (a - b)).clamp(0, 1)

# -----------------------------------------------------------------------------
# replay, and how far apart competing memories are


@torch.no_grad()
def replay_features(model, classes, n_per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Replay from a trained K=1 BIR (birr.load_model): `n_per_class` generated feature vectors for each
    class in `classes`, z from the class's GMM mode with eps drawn from a CPU generator seeded with
    `seed`, decoded through the one-hot gate of the class (BIR.sample, appendix §4.3). Two models asked with
    the same seed get the same eps, so their samples pair up one to one.
    Returns features (N, D) float32 on the CPU and the generating class of each (N,)."""
    classes = torch.as_tensor(list(classes), dtype=torch.long).repeat_interleave(n_per_class)   # (N,)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(1, len(classes), model.Z, generator=gen)                                   # (1, N, Z)
    dev = next(model.parameters()).device
    x_ = model.sample(classes[None].to(dev), eps.to(dev))                                        # (1, N, D)
    return x_[0].float().cpu(), classes


def by_class(feats: torch.Tensor, labels: torch.Tensor) -> dict[int, torch.Tensor]:
    """{class: (n_c, D) rows of feats with that label}."""
    return {int(c): feats[labels == c] for c in labels.unique()}


def exaggeration(features_by_class: dict, pairs) -> pd.DataFrame:
    r"""How far apart two classes' samples are, relative to how spread out each class is.

    For a pair (a, b) with class means $\mu_a, \mu_b$:
    distance $= \lVert \mu_a - \mu_b \rVert_2$; spread of class c $= \sqrt{\mathrm{mean}_i \lVert x_i - \mu_c \rVert^2}$
    (RMS distance to its own mean); spread = (spread_a + spread_b) / 2; ratio = distance / spread.
    A ratio that grows under RR+RA is the paper's "exaggerated differences between competing memories",
    measured (its stated future work).

    features_by_class: {class: (n, D) tensor}; pairs: iterable of (a, b). One row per pair."""
    mu = {c: x.double().mean(0) for c, x in features_by_class.items()}
    spread = {c: (x.double() - mu[c]).pow(2).sum(1).mean().sqrt().item() for c, x in features_by_class.items()}
    rows = []
    for a, b in pairs:
        a, b = int(a), int(b)
        d = (mu[a] - mu[b]).norm().item()
        s = (spread[a] + spread[b]) / 2
        rows.append(dict(a=a, b=b, distance=d, spread_a=spread[a], spread_b=spread[b], spread=s,
                         ratio=d / s if s > 0 else math.inf))
    return pd.DataFrame(rows, columns=["a", "b", "distance", "spread_a", "spread_b", "spread", "ratio"])


def logged_pairs(result: dict) -> pd.DataFrame:
    """The (label, competitor) pairs an RR run logged (`rr_stats`, tasks >= 2), as unordered pairs
    a < b with their counts per task: RR repels a from b and b from a alike in this measure."""
    rows = {}
    for st in result.get("rr_stats", []):
        for lab, comp, n in st["pairs"]:
            a, b = sorted((int(lab), int(comp)))
            rows[(st["task"], a, b)] = rows.get((st["task"], a, b), 0) + int(n)
    return pd.DataFrame([dict(task=t, a=a, b=b, count=n) for (t, a, b), n in sorted(rows.items())],
                        columns=["task", "a", "b", "count"])


def top_logged_pairs(result: dict, k: int, fallback_classes: int | None = None) -> list[tuple[int, int]]:
    """The k most frequent unordered competing pairs of one RR run, summed over tasks. If fewer than k
    were logged and `fallback_classes` is given, pairs of consecutive classes 0-1, 2-3, ... below it
    (same task when 2 classes per task) fill the list, so a figure always has something to show."""
    lp = logged_pairs(result)
    pairs = []
    if len(lp):
        tot = lp.groupby(["a", "b"])["count"].sum().sort_values(ascending=False, kind="stable")
        pairs = [(int(a), int(b)) for a, b in tot.index[:k]]
    c = 0
    while fallback_classes is not None and len(pairs) < k and c + 1 < fallback_classes:
        if (c, c + 1) not in pairs:
            pairs.append((c, c + 1))
        c += 2
    return pairs


def weighted_ratio(ex: pd.DataFrame, weights: pd.DataFrame) -> dict:
    """Count-weighted means of distance, spread and ratio over the pairs in `weights` (columns a, b,
    count), looked up in `ex` (an `exaggeration` frame covering them)."""
    m = weights.merge(ex, on=["a", "b"], how="left")
    w = m["count"].to_numpy(float)
    if w.sum() == 0:
        return dict(distance=math.nan, spread=math.nan, ratio=math.nan, n_pairs=0)
    return dict(distance=float(np.average(m["distance"], weights=w)), spread=float(np.average(m["spread"], weights=w)),
                ratio=float(np.average(m["ratio"], weights=w)), n_pairs=int(len(m)))

CONTROL = "all replayed pairs (control)"


def pair_scopes(result: dict) -> dict[str, pd.DataFrame]:
    """The weightings chapter 10 measures exaggeration under, each a frame of unordered pairs (a, b,
    count) from one code-variant RR run: "task t", the pairs logged while learning task t; "all tasks",
    summed over tasks; and CONTROL, every pair of classes that was ever replayed (tasks 1 .. T-1),
    count 1 each, whether or not it competed."""
    n_old = (result["n_tasks"] - 1) * result["classes_per_task"]
    w = logged_pairs(result)
    scopes = {f"task {t}": w[w.task == t].groupby(["a", "b"], as_index=False)["count"].sum()
              for t in sorted(w.task.unique())}
    scopes["all tasks"] = w.groupby(["a", "b"], as_index=False)["count"].sum()
    scopes[CONTROL] = pd.DataFrame(list(itertools.combinations(range(n_old), 2)), columns=["a", "b"]).assign(count=1)
    return scopes
