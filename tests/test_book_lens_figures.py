"""Tests of birr/book/lens_figures.py: the pictures drawn through the image-decoder lens, on a random
decoder and two tiny untrained models (what is drawn where, not what it looks like)."""
import matplotlib
import torch

matplotlib.use("Agg")

import birr.lens as lens  # noqa: E402
from birr.book.lens_figures import image_rows, pair_figure, tsne_pair  # noqa: E402
from birr.model import BIR  # noqa: E402


def test_image_rows_montage():
    rows = [("a", torch.zeros(3, 3, 32, 32)), ("b", torch.full((2, 3, 32, 32), 255, dtype=torch.uint8))]
    fig = image_rows(rows, col_titles=["x", "y", "z"], gap=2)
    (ax,) = fig.axes
    canvas = ax.images[0].get_array()
    assert canvas.shape == (2 * 34 - 2, 3 * 34 - 2, 3)
    assert canvas[:32, :32].max() == 0 and canvas[34:, :32].min() == 1   # row a black, row b white
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


def test_pair_figure_rows_columns_and_paired_psnr():
    torch.manual_seed(0)
    decoder = lens.ImageDecoder().eval()
    base, other = BIR([0], n_classes=4, fc_units=16, z_dim=8).eval(), BIR([1], n_classes=4, fc_units=16, z_dim=8).eval()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    real = {c: torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8) for c in (1, 2)}
    feats = {c: torch.randn(3, 1024) for c in (1, 2)}
    names = ["w", "x", "y", "z"]
    fig, stats = pair_figure(decoder, mean, std, (1, 2), names, base, other, real, feats, n=3)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{names[c]}\n{kind}" for c in (1, 2) for kind in ("real", "baseline", "RR+RA", "diff x5")]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sample 1", "sample 2", "sample 3", "class mean"]
    assert set(stats) == {1, 2} and all(v > 0 for v in stats.values())
    # the same model on both sides draws the same replay: the class means decode identically
    _, same = pair_figure(decoder, mean, std, (1, 2), names, base, base, real, feats, n=3)
    assert all(v == float("inf") for v in same.values())


def test_tsne_pair_two_panels_real_and_replay_per_class():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0] * 15 + [1] * 15)
    feats = {k: (torch.randn(30, 6, generator=g) + 4 * y[:, None], y) for k in ("real", "baseline", "RR+RA")}
    fig = tsne_pair(feats, ["cat", "dog"], (0, 1), seed=0, max_iter=250)
    panels = [ax for ax in fig.axes if ax.collections]
    assert len(panels) == 2
    assert [ax.get_title() for ax in panels] == ["baseline: cat vs dog", "RR+RA: cat vs dog"]
    for ax in panels:   # per class: its real points, then its replayed points, 15 each
        assert [len(c.get_offsets()) for c in ax.collections] == [15, 15, 15, 15]
