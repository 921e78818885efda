"""Tests of birr/lens.py: known answers for PSNR and the exaggeration measure, the decoder's
shapes, a one-epoch smoke decoder artefact (atomic, reloads identically, reused by stamp), and the rule
that the lens never touches training. Synthetic data on CPU, a few seconds."""
import ast
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

import birr.lens as lens
from birr.data import load
from birr.model import BIR

REPO = Path(__file__).resolve().parents[1]
SMOKE = dict(epochs=1, progress=False)  # synthetic: 400 training images -> 6 steps of 64
pytestmark = pytest.mark.usefixtures("birr_cache")  # every test its own BIRR_CACHE: feature files never touch ~/.cache


@pytest.fixture(scope="module")
def artefact(tmp_path_factory):
    out = tmp_path_factory.mktemp("artefacts")
    mp = pytest.MonkeyPatch()
    mp.setenv("BIRR_CACHE", str(out / "cache"))
    try:  # the committed smoke encoder (artefacts/, synthetic, 1 epoch) is loaded, never written
        path = lens.train_decoder("synthetic", 1, out_dir=out, **SMOKE)
    finally:
        mp.undo()
    return out, path

# --- PSNR -------------------------------------------------------------------------------------


def test_psnr_identical_is_inf():
    x = torch.rand(4, 3, 32, 32)
    assert lens.psnr(x, x.clone()) == math.inf


def test_psnr_known_mse():
    a = torch.zeros(2, 3, 8, 8)
    assert lens.psnr(a, a + 0.1) == pytest.approx(20.0)                 # MSE 0.01 -> 10 log10(1 / 0.01)
    b = a.clone()
    b[0, 0, 0, 0] = 1.0                                                # MSE = 1 / 384
    assert lens.psnr(a, b) == pytest.approx(10 * math.log10(384))
    assert lens.psnr(a, a + 25.5, data_range=255) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shapes differ"):
        lens.psnr(a, a[0])


def test_unnormalise_inverts_normalise():
    bench = load("synthetic", seed=0, n_train_per_class=3, n_test_per_class=1)
    img = bench.train.images[:5]
    back = lens.unnormalise(bench.normalise(img), bench.mean, bench.std)
    assert torch.allclose(back * 255, img.float(), atol=1e-3)
    assert lens.unnormalise(torch.full((1, 3, 2, 2), 1e3), bench.mean, bench.std).max() == 1.0  # clamped


def test_difference_map():
    a = torch.rand(2, 3, 4, 4)
    assert torch.equal(lens.difference_map(a, a), torch.full_like(a, 0.5))
    d = lens.difference_map(a + 0.01, a, amplification=10)
    assert torch.allclose(d, torch.full_like(a, 0.6), atol=1e-5)

# --- the exaggeration measure -------------------------------------------------------------------


def _cluster(mean, rms, n=200, seed=0):
    """n 2-d Gaussian points, re-centred and rescaled so that their mean and RMS distance to it are exact."""
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x - x.mean(0)
    x = x / x.pow(2).sum(1).mean().sqrt()
    return (x * rms + torch.tensor(mean, dtype=torch.float64)).float()


def test_exaggeration_hand_built_clusters():
    feats = {0: _cluster((0.0, 0.0), 1.0, seed=0), 1: _cluster((3.0, 4.0), 2.0, seed=1)}
    ex = lens.exaggeration(feats, [(0, 1)])
    row = ex.iloc[0]
    assert (row["a"], row["b"]) == (0, 1)
    assert row["distance"] == pytest.approx(5.0, abs=1e-5)
    assert row["spread_a"] == pytest.approx(1.0, abs=1e-5)
    assert row["spread_b"] == pytest.approx(2.0, abs=1e-5)
    assert row["spread"] == pytest.approx(1.5, abs=1e-5)
    assert row["ratio"] == pytest.approx(5.0 / 1.5, abs=1e-5)


def test_exaggeration_cross_exact_and_symmetric():
    s = 0.5
    cross = torch.tensor([[s, 0.0], [-s, 0.0], [0.0, s], [0.0, -s]])   # RMS distance to the mean: exactly s
    feats = {2: cross, 7: cross + torch.tensor([6.0, 8.0])}
    ex = lens.exaggeration(feats, [(2, 7), (7, 2)])
    assert ex["distance"].tolist() == pytest.approx([10.0, 10.0])
    assert ex["spread"].tolist() == pytest.approx([s, s])
    assert ex["ratio"].tolist() == pytest.approx([20.0, 20.0])


def test_logged_pairs_and_weighted_ratio():
    result = dict(rr_stats=[dict(task=2, pairs=[[0, 1, 5], [1, 0, 3]]),
                            dict(task=3, pairs=[[2, 0, 4], [3, 1, 1], [0, 1, 2]])])
    lp = lens.logged_pairs(result)
    assert lp.to_dict("records") == [dict(task=2, a=0, b=1, count=8), dict(task=3, a=0, b=1, count=2),
                                     dict(task=3, a=0, b=2, count=4), dict(task=3, a=1, b=3, count=1)]
    assert lens.top_logged_pairs(result, 2) == [(0, 1), (0, 2)]
    assert lens.top_logged_pairs(dict(rr_stats=[]), 2, fallback_classes=4) == [(0, 1), (2, 3)]
    ex = pd.DataFrame(dict(a=[0, 0], b=[1, 2], distance=[1.0, 4.0], spread=[1.0, 1.0], ratio=[1.0, 4.0]))
    w = lens.weighted_ratio(ex, pd.DataFrame(dict(a=[0, 0], b=[1, 2], count=[3, 1])))
    assert w["ratio"] == pytest.approx((3 * 1 + 1 * 4) / 4) and w["n_pairs"] == 2


def test_pair_scopes_per_task_all_tasks_and_control():
    """Chapter 10's weightings: pairs are unordered (a < b), summed per task and over tasks; the control
    is every pair of the (3 - 1) x 2 = 4 classes ever replayed, count 1 each."""
    result = dict(n_tasks=3, classes_per_task=2,
                  rr_stats=[dict(task=2, pairs=[[0, 1, 3], [1, 0, 2]]),
                            dict(task=3, pairs=[[0, 1, 1], [2, 3, 4], [3, 0, 5]])])
    sc = lens.pair_scopes(result)
    assert list(sc) == ["task 2", "task 3", "all tasks", lens.CONTROL]
    rec = {k: sorted(map(tuple, v[["a", "b", "count"]].to_numpy().tolist())) for k, v in sc.items()}
    assert rec["task 2"] == [(0, 1, 5)]
    assert rec["task 3"] == [(0, 1, 1), (0, 3, 5), (2, 3, 4)]
    assert rec["all tasks"] == [(0, 1, 6), (0, 3, 5), (2, 3, 4)]
    assert rec[lens.CONTROL] == [(0, 1, 1), (0, 2, 1), (0, 3, 1), (1, 2, 1), (1, 3, 1), (2, 3, 1)]
    nothing = lens.pair_scopes(dict(n_tasks=1, classes_per_task=2, rr_stats=[]))
    assert list(nothing) == ["all tasks", lens.CONTROL] and all(len(v) == 0 for v in nothing.values())


def test_replay_features_seeded_and_paired():
    m = BIR([0], n_classes=4, fc_units=16, z_dim=8).eval()
    x, y = lens.replay_features(m, [1, 3], n_per_class=5, seed=7)
    assert x.shape == (10, 1024) and y.tolist() == [1] * 5 + [3] * 5
    x2, _ = lens.replay_features(m, [1, 3], n_per_class=5, seed=7)
    assert torch.equal(x, x2)
    assert not torch.equal(x, lens.replay_features(m, [1, 3], n_per_class=5, seed=8)[0])
    groups = lens.by_class(x, y)
    assert set(groups) == {1, 3} and groups[3].shape == (5, 1024)

# --- the decoder --------------------------------------------------------------------------------


def test_decoder_shapes_and_parameters():
    dec = lens.ImageDecoder()
    assert dec(torch.randn(5, 1024)).shape == (5, 3, 32, 32)
    convs = [m for m in dec.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (256, 128, (4, 4), (2, 2)), (128, 64, (4, 4), (2, 2)), (64, 32, (4, 4), (2, 2)), (32, 16, (4, 4), (2, 2)),
        (16, 3, (3, 3), (1, 1))]
    kinds = [type(m).__name__ for m in dec.layers]
    assert kinds == ["ConvTranspose2d", "BatchNorm2d", "ReLU"] * 4 + ["ConvTranspose2d"]  # linear output
    assert sum(p.numel() for p in dec.parameters()) == 697_475                            # appendix §8.6


def test_smoke_decoder_artefact(artefact):
    out, path = artefact
    assert path.name.startswith("decoder-") and path.suffix == ".pt"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []   # no temporary file left
    dec, meta = lens.load_decoder(path)
    assert meta["format"] == lens.FORMAT and meta["dataset"] == "synthetic"
    enc = meta["recipe"]["encoder"]
    assert enc["dataset"] == "synthetic" and enc["epochs"] == 1 and len(enc["stamp"]) == 10 and len(enc["hash"]) == 10
    assert path.name == f"decoder-{meta['stamp']}.pt"
    assert math.isfinite(meta["test_psnr"]) and math.isfinite(meta["mean_image_psnr"]) and meta["train_seconds"] > 0
    assert len(meta["history"]) == 1 and not dec.training
    assert not any(p.requires_grad for p in dec.parameters())
    # reloads identically
    dec2, _ = lens.load_decoder(path)
    h = torch.randn(3, 1024)
    assert torch.equal(dec(h), dec2(h))
    img = lens.decode_images(dec, h, meta["mean"], meta["std"])
    assert img.shape == (3, 3, 32, 32) and 0 <= img.min() and img.max() <= 1
    u8 = lens.decode_images(dec, h, meta["mean"], meta["std"], uint8=True)
    assert u8.dtype == torch.uint8


def test_get_decoder_reuses_the_artefact(artefact, monkeypatch):
    out, path = artefact
    mtime = path.stat().st_mtime_ns

    def no_training(*a, **k):
        raise AssertionError("get_decoder retrained an artefact that exists")

    monkeypatch.setattr(lens, "train_decoder", no_training)
    dec, meta = lens.get_decoder("synthetic", 1, out_dir=out, **SMOKE)
    assert meta["path"] == str(path) and path.stat().st_mtime_ns == mtime
    with pytest.raises(AssertionError, match="retrained"):  # force does retrain
        lens.get_decoder("synthetic", 1, out_dir=out, force=True, **SMOKE)
    # another recipe is another artefact
    with pytest.raises(AssertionError, match="retrained"):
        lens.get_decoder("synthetic", 1, out_dir=out, seed=1, **SMOKE)


def test_training_is_deterministic(artefact, tmp_path):
    _, path = artefact
    again = lens.train_decoder("synthetic", 1, out_dir=tmp_path, **SMOKE)
    assert again.name == path.name
    a, _ = lens.load_decoder(path)
    b, _ = lens.load_decoder(again)
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), n

# --- a viewing lens only ------------------------------------------------------------------------


def _birr_imports(path: Path) -> set[str]:
    """The birr modules a source file imports (import birr.x, from birr import x, from birr.x import y)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("birr")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("birr"):
            found.add(node.module)
            if node.module == "birr":
                found |= {f"birr.{a.name}" for a in node.names}
    return found


def test_training_never_imports_the_lens():
    """Nothing birr/train.py imports, directly or through other birr modules, is birr.lens."""
    assert "lens" not in (REPO / "birr/train.py").read_text()
    todo, seen = ["birr.train"], set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = REPO / (mod.replace(".", "/") + ".py")
        path = path if path.exists() else REPO / mod.replace(".", "/") / "__init__.py"   # "birr" itself
        if path.exists():
            todo += sorted(_birr_imports(path))
    assert "birr.lens" not in seen, f"birr.train reaches birr.lens through {sorted(seen)}"
    assert "birr.model" in seen and "birr.losses" in seen   # the walk does follow imports
