"""Tests of birr/encoder.py (appendix §3): architecture, augmentation, pre-training artefacts, feature cache.
Everything runs on the synthetic dataset on CPU in a few seconds."""
import hashlib
import os
import re

import pytest
import torch

from birr.data import cache_dir, load
from birr.encoder import (BUDGETS, ConvEncoder, crop_flip, encoder_hash, features, get_encoder, import_reference,
                          init_, load_encoder, load_imported, pretrain, random_crop_flip, recipe_stamp)

SMALL = dict(dataset="synthetic", epochs=1, seed=0, batch=32, n_train_per_class=24, progress=False)  # 96 images -> 3 steps


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BIRR_CACHE", str(tmp_path / "cache"))  # feature files never touch ~/.cache


@pytest.fixture(scope="module")
def artefact(tmp_path_factory):
    out = tmp_path_factory.mktemp("artefacts")
    return pretrain(**SMALL, out_dir=out)

# --- architecture (appendix §3 table) ---------------------------------------------------------------

def test_shapes_and_parameter_counts():
    enc = ConvEncoder()
    assert enc(torch.randn(5, 3, 32, 32)).shape == (5, 1024)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [
        (3, 16, (1, 1)), (16, 32, (2, 2)), (32, 64, (2, 2)), (64, 128, (2, 2)), (128, 256, (2, 2))]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is not None for c in convs)
    assert sum(p.numel() for c in convs for p in c.parameters()) == 392_608  # appendix §3
    assert sum(p.numel() for b in bns for p in b.parameters()) == 480
    assert sum(p.numel() for p in enc.parameters()) == 392_608 + 480


def test_bn_relu_in_layers_1_to_4_not_5():
    layers = list(ConvEncoder().layers)
    kinds = [type(m).__name__ for m in layers]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU"] * 4 + ["Conv2d"]
    enc = ConvEncoder().eval()
    out = enc(torch.randn(8, 3, 32, 32))
    assert (out < 0).any() and (out > 0).any()  # conv-5 pre-activation: unbounded


def test_flatten_is_channel_major():
    enc = ConvEncoder().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = enc.layers(x)  # (2, 256, 2, 2)
        assert torch.equal(enc(x)[:, :4], h[:, 0].reshape(2, 4))

# --- augmentation ----------------------------------------------------------------------------

def test_crop_flip_known_answer():
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)  # rows 0-3 = [0..3], [4..7], ...
    zero = torch.zeros(1, dtype=torch.long)
    no, yes = torch.tensor([False]), torch.tensor([True])
    # centred crop (offset = pad) is the identity
    assert torch.equal(crop_flip(x, zero + 2, zero + 2, no, pad=2), x)
    # flip mirrors the columns
    assert torch.equal(crop_flip(x, zero + 2, zero + 2, yes, pad=2), x.flip(-1))
    # offset 0 with pad 2: symmetric padding repeats the edge, a b c d -> b a | a b c d
    out = crop_flip(x, zero, zero, no, pad=2)[0, 0]
    assert out[0].tolist() == [5, 4, 4, 5]        # padded row -2 = row 1, cols -2,-1,0,1 = 1,0,0,1
    assert out[:, 0].tolist() == [5, 1, 1, 5]
    assert torch.equal(out[2:, 2:], x[0, 0, :2, :2])  # shifted down-right by 2
    # offset 2*pad: shifted up-left, bottom/right edges mirrored: c d | d c
    out = crop_flip(x, zero + 4, zero + 4, no, pad=2)[0, 0]
    assert torch.equal(out[:2, :2], x[0, 0, 2:, 2:])
    assert out[3].tolist() == [10, 11, 11, 10]


def test_random_crop_flip_batch():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    y = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert not torch.equal(x, y)
    assert torch.equal(y, random_crop_flip(x, torch.Generator().manual_seed(0)))  # seeded
    # with no padding the crop is the whole image, so each output is its source or its mirror, and
    # about half are mirrored
    z = random_crop_flip(x, torch.Generator().manual_seed(1), pad=0)
    same = (z == x).flatten(1).all(1)
    mirrored = (z == x.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and 16 < mirrored.sum() < 48

# --- pre-training and artefacts --------------------------------------------------------------

def test_pretrain_writes_artefact_atomically(artefact):
    files = sorted(p.name for p in artefact.parent.iterdir())
    assert files == [artefact.name, artefact.name + ".sha256"]  # no temp file left behind, and its hash beside it
    assert (artefact.parent / files[1]).read_text() == f"{hashlib.sha256(artefact.read_bytes()).hexdigest()}  {artefact.name}\n"
    recipe = dict(dataset="synthetic", epochs=1, seed=0, batch=32, lr=1e-4, n_train_per_class=24, augment=True)
    assert artefact.name == f"encoder-{recipe_stamp(recipe)}.pt"
    enc, meta = load_encoder(artefact)
    assert meta["recipe"] == recipe and meta["dataset"] == "synthetic" and meta["format"] == 1
    assert 0.0 <= meta["test_acc"] <= 1.0 and meta["train_seconds"] > 0
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert meta["history"][0]["epoch"] == 1
    assert artefact.stat().st_size < 2_000_000
    assert (artefact.stat().st_mode & 0o777) == 0o644


def test_reload_identical_and_get_encoder_does_not_retrain(artefact, monkeypatch):
    a, _ = load_encoder(artefact)
    import birr.encoder as E
    monkeypatch.setattr(E, "pretrain", lambda *a, **k: pytest.fail("get_encoder retrained an existing artefact"))
    b, meta = get_encoder("synthetic", 1, seed=0, batch=32, n_train_per_class=24, out_dir=artefact.parent)
    assert meta["path"] == str(artefact)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert encoder_hash(a) == encoder_hash(b)


def test_same_seed_same_weights(artefact, tmp_path):
    again = pretrain(**SMALL, out_dir=tmp_path)
    a, _ = load_encoder(artefact)
    b, _ = load_encoder(again)
    assert encoder_hash(a) == encoder_hash(b)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_different_seed_different_weights():
    g0, g1 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    a, b = ConvEncoder(), ConvEncoder()
    init_(a, g0), init_(b, g1)
    assert encoder_hash(a) != encoder_hash(b)


def test_encoder_is_frozen(artefact):
    enc, _ = get_encoder("synthetic", 1, seed=0, batch=32, n_train_per_class=24, out_dir=artefact.parent)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    bench = load("synthetic", n_tasks=2, seed=0, n_train_per_class=20, n_test_per_class=5)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    enc.train()  # a parent module's .train() must not switch BN back to batch statistics
    assert not enc.training
    enc(bench.normalise(bench.train.images))
    features(enc, bench)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())

# --- feature cache ---------------------------------------------------------------------------

def test_features_cache(artefact):
    enc, _ = load_encoder(artefact)
    bench = load("synthetic", n_tasks=2, seed=0, n_train_per_class=30, n_test_per_class=10)
    calls = []
    enc.register_forward_hook(lambda *_: calls.append(1))
    train, test = features(enc, bench, batch=50)
    assert train.shape == (120, 1024) and test.shape == (40, 1024) and train.dtype == torch.float32
    assert calls, "first call should run the encoder"
    with torch.no_grad():
        assert torch.allclose(train, enc(bench.normalise(bench.train.images)), atol=1e-5)
        assert torch.allclose(test, enc(bench.normalise(bench.test.images)), atol=1e-5)
    calls.clear()
    train2, test2 = features(enc, bench)
    assert not calls, "second call should be served from the cache"
    assert torch.equal(train, train2) and torch.equal(test, test2)
    files = sorted(f.name for f in cache_dir().iterdir())
    assert len(files) == 2 and files[1] == files[0] + ".sha256"    # the cache and its hash, no temporary file


def test_features_key_ignores_label_order_but_not_images(artefact):
    enc, _ = load_encoder(artefact)
    a = load("synthetic", n_tasks=2, seed=0, n_train_per_class=10, n_test_per_class=5)
    features(enc, a)
    # same images, labels permuted differently (what another seed does to CIFAR): same file
    b = type(a)(**{**a.__dict__, "seed": 7, "class_order": a.class_order[::-1]})
    features(enc, b)
    assert len(list(cache_dir().glob("*.pt"))) == 1
    # a subsampled benchmark is another file
    features(enc, load("synthetic", n_tasks=2, seed=0, n_train_per_class=8, n_test_per_class=5))
    assert len(list(cache_dir().glob("*.pt"))) == 2


def test_budgets():
    assert BUDGETS["smoke"] == dict(dataset="synthetic", epochs=1)
    assert BUDGETS["full"]["epochs"] == 100 and BUDGETS["full"]["dataset"] in ("cifar10", "cifar10-jpg")
    assert BUDGETS["short"]["dataset"] == "cifar10-jpg"

# --- the reference's shipped checkpoint (appendix §3) ----------------------------------------------

def _reference_state(seed: int = 3) -> tuple[ConvEncoder, dict]:
    """A random C3-5x16-bn stack and its state dict under the reference's key names (appendix §3), with
    non-trivial BN statistics and the shipped file's 39,000 tracked batches."""
    enc = ConvEncoder()
    gen = torch.Generator().manual_seed(seed)
    init_(enc, gen)
    for name, buf in enc.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
        else:
            buf.fill_(39000)
    ref = {}
    for i in range(4):
        for leaf, t in enc.layers[3 * i].state_dict().items():
            ref[f"convLayer{i + 1}.conv.{leaf}"] = t.clone()
        for leaf, t in enc.layers[3 * i + 1].state_dict().items():
            ref[f"convLayer{i + 1}.bn.{leaf}"] = t.clone()
    for leaf, t in enc.layers[12].state_dict().items():
        ref[f"convLayer5.conv.{leaf}"] = t.clone()
    return enc.eval(), ref


def test_import_reference_checkpoint_gives_the_same_encoder(tmp_path):
    enc, ref = _reference_state()
    assert len(ref) == 5 * 2 + 4 * 5  # the keys appendix §3 lists
    src = tmp_path / "C3-5x16-bn"
    torch.save({"state": ref}, src)  # what the reference's utils.save_checkpoint writes
    out = import_reference(src, tmp_path / "artefacts")
    sha1 = hashlib.sha1(src.read_bytes()).hexdigest()
    assert out.name == f"encoder-ref-{sha1[:10]}.pt"
    loaded, meta = load_imported(f"ref-{sha1[:10]}", out_dir=tmp_path / "artefacts")
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), enc(x))   # same weights, same BN running statistics, eval mode
    assert loaded.frozen and not loaded.training
    assert int(loaded.layers[1].num_batches_tracked) == 39000
    assert meta["recipe"] == dict(source="reference checkpoint", file="C3-5x16-bn", file_sha1=sha1, dataset="cifar10", epochs=None)
    assert meta["mean"] == [0.4914, 0.4822, 0.4465]   # pre-trained under CIFAR-10 statistics (appendix §3)
    # a bare state dict is read too, and gives the same weights
    torch.save(ref, tmp_path / "bare")
    bare, _ = load_encoder(import_reference(tmp_path / "bare", tmp_path / "artefacts"))
    assert encoder_hash(bare) == encoder_hash(loaded)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("convLayer3.bn.running_var"), "missing convLayer3.bn.running_var"),
    (lambda r: r.__setitem__("convLayer5.bn.weight", torch.ones(256)), "does not have: convLayer5.bn.weight"),
    (lambda r: r.__setitem__("convLayer2.conv.weight", torch.zeros(32, 16, 5, 5)),
     "convLayer2.conv.weight has shape (32, 16, 5, 5), the C3-5x16-bn stack needs (32, 16, 3, 3)"),
])
def test_import_reference_refuses_other_stacks(tmp_path, edit, message):
    _, ref = _reference_state()
    edit(ref)
    torch.save({"state": ref}, tmp_path / "ckpt")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        import_reference(tmp_path / "ckpt", tmp_path / "artefacts")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "artefacts").exists() or not list((tmp_path / "artefacts").iterdir())  # nothing written


def test_import_reference_bad_files(tmp_path):
    (tmp_path / "text").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a torch checkpoint of tensors"):
        import_reference(tmp_path / "text", tmp_path)
    torch.save([torch.zeros(1)], tmp_path / "list")
    with pytest.raises(ValueError, match="expected a state dict of tensors"):
        import_reference(tmp_path / "list", tmp_path)
    with pytest.raises(FileNotFoundError, match="C3-5x16-bn"):
        import_reference(tmp_path / "absent", tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m birr import-encoder"):
        load_imported("ref-0123456789", out_dir=tmp_path)
    with pytest.raises(ValueError, match="'ref-' and 10 hex digits"):
        load_imported("C3-5x16-bn", out_dir=tmp_path)
