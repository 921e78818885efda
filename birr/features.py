"""
What the frozen encoder gives the runs: the 1024 conv features of every image, computed once per
(encoder, image set) and cached, and the linear probe that measures how much class information they hold.

Why precompute: in continual learning the conv stack is frozen and kept in eval mode on every step
(appendix §3, "Frozen in continual learning"), and the baseline has no augmentation (appendix §2). So the
1024 features of every image are a fixed function of the image, computed once and read from the cache
afterwards. That moves ~5.2 M of the ~18 M multiply-accumulates per sample (appendix §4.4) out of the
training loop.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from birr import store
from birr.data import Benchmark, cache_dir
from birr.encoder import ConvEncoder, init_


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
