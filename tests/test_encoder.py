"""Tests of birr/encoder.py (appendix §3): architecture, augmentation, pre-training artefacts.
Everything runs on the synthetic dataset on CPU in a few seconds."""
import hashlib
import math

import pytest
import torch

from birr.data import load
from birr.encoder import (BUDGETS, ConvEncoder, crop_flip, get_encoder, init_, load_encoder, pretrain,
                          random_crop_flip, recipe_stamp)
from birr.features import encoder_hash, features

pytestmark = pytest.mark.usefixtures("birr_cache")  # feature files never touch ~/.cache

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

def test_pretrain_writes_artefact_atomically(encoder_artefact):
    path = encoder_artefact
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == [path.name, path.name + ".sha256"]  # no temp file left behind, and its hash beside it
    assert (path.parent / files[1]).read_text() == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n"
    recipe = dict(dataset="synthetic", epochs=1, seed=0, batch=32, lr=1e-4, n_train_per_class=24, augment=True)
    assert path.name == f"encoder-{recipe_stamp(recipe)}.pt"
    enc, meta = load_encoder(path)
    assert meta["recipe"] == recipe and meta["dataset"] == "synthetic" and meta["format"] == 1
    assert 0.0 <= meta["test_acc"] <= 1.0 and meta["train_seconds"] > 0
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert meta["history"][0]["epoch"] == 1
    assert path.stat().st_size < 2_000_000
    assert (path.stat().st_mode & 0o777) == 0o644


def test_reload_identical_and_get_encoder_does_not_retrain(encoder_artefact, monkeypatch):
    a, _ = load_encoder(encoder_artefact)
    import birr.encoder as E
    monkeypatch.setattr(E, "pretrain", lambda *a, **k: pytest.fail("get_encoder retrained an existing artefact"))
    b, meta = get_encoder("synthetic", 1, seed=0, batch=32, n_train_per_class=24, out_dir=encoder_artefact.parent)
    assert meta["path"] == str(encoder_artefact)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert encoder_hash(a) == encoder_hash(b)


def test_same_seed_same_weights(encoder_artefact, tiny_encoder_recipe, tmp_path):
    again = pretrain(**tiny_encoder_recipe, out_dir=tmp_path)
    a, _ = load_encoder(encoder_artefact)
    b, _ = load_encoder(again)
    assert encoder_hash(a) == encoder_hash(b)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_different_seed_different_weights():
    g0, g1 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    a, b = ConvEncoder(), ConvEncoder()
    init_(a, g0), init_(b, g1)
    assert encoder_hash(a) != encoder_hash(b)


def test_encoder_is_frozen(encoder_artefact):
    enc, _ = get_encoder("synthetic", 1, seed=0, batch=32, n_train_per_class=24, out_dir=encoder_artefact.parent)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    bench = load("synthetic", n_tasks=2, seed=0, n_train_per_class=20, n_test_per_class=5)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    enc.train()  # a parent module's .train() must not switch BN back to batch statistics
    assert not enc.training
    enc(bench.normalise(bench.train.images))
    features(enc, bench)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())

def test_budgets():
    assert BUDGETS["smoke"] == dict(dataset="synthetic", epochs=1)
    assert BUDGETS["full"]["epochs"] == 100 and BUDGETS["full"]["dataset"] in ("cifar10", "cifar10-jpg")
    assert BUDGETS["short"]["dataset"] == "cifar10-jpg"

# --- an encoder that never saw a label ----------------------------------------------------------

def test_rotate_turns_each_image_by_its_own_quarter_turns():
    from birr.encoder import rotate
    img = torch.tensor([[1, 2], [3, 4]], dtype=torch.uint8)[None, None]          # (1,1,2,2)
    x = img.repeat(3, 1, 1, 1)
    out = rotate(x, torch.tensor([0, 1, 2]))
    assert out[0, 0].tolist() == [[1, 2], [3, 4]]
    assert out[1, 0].tolist() == [[2, 4], [1, 3]]      # a quarter turn counter-clockwise
    assert out[2, 0].tolist() == [[4, 3], [2, 1]]


def test_rotation_recipe_never_reads_labels(birr_cache, tmp_path, monkeypatch):
    from birr import encoder as benc
    from birr import data as bdata
    real_load = bdata.load

    def shuffled_labels(*a, **kw):      # labels replaced by noise: a label-free recipe cannot notice
        b = real_load(*a, **kw)
        g = torch.Generator().manual_seed(7)
        b.train.labels.copy_(torch.randint(0, b.n_classes, b.train.labels.shape, generator=g))
        return b
    p1 = benc.pretrain("synthetic", epochs=1, objective="rotation", out_dir=tmp_path / "a", progress=False)
    monkeypatch.setattr(benc, "load", shuffled_labels)
    p2 = benc.pretrain("synthetic", epochs=1, objective="rotation", out_dir=tmp_path / "b", progress=False)
    a, b = torch.load(p1, weights_only=True), torch.load(p2, weights_only=True)
    assert a["recipe"]["objective"] == "rotation" and p1.name == p2.name
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    # the supervised recipe does read them, and keeps its artefact name (no "objective" key)
    p3 = benc.pretrain("synthetic", epochs=1, out_dir=tmp_path / "c", progress=False)
    assert "objective" not in torch.load(p3, weights_only=True)["recipe"] and p3.name != p1.name
    with pytest.raises(ValueError, match="objective='labels' is not allowed"):
        benc.pretrain("synthetic", epochs=1, objective="labels", out_dir=tmp_path, progress=False)


def test_conv_init_bound_uses_the_full_fan_in():
    """init_ draws every conv weight and bias from U(−1/√fan_in, 1/√fan_in), fan_in = in_channels · 3 · 3
    (the reference's reset_parameters, appendix §4.1; torch's default): L1 has fan_in 27, bound 0.19245, and
    its 432 weights come within 10 % of it (P(all below 0.9 bound) = 0.9^432); L5 has fan_in 1152, bound
    0.029463. Catches fan_in = in_channels."""
    enc = ConvEncoder()
    init_(enc, torch.Generator().manual_seed(0))
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv, fan_in in ((convs[0], 27), (convs[4], 1152)):
        bound = 1 / math.sqrt(fan_in)
        w = conv.weight.detach().abs()
        assert w.max().item() <= bound and w.max().item() > 0.9 * bound
        assert conv.bias.detach().abs().max().item() <= bound
    assert 1 / math.sqrt(27) == pytest.approx(0.19245, abs=1e-5)
