"""Tests of birr/diagram.py: the BI-R drawing of the method chapter is a Figure, names every block and
every loss term (in the loss colour), keeps its boxes apart, and draws into an axes it is given."""
import re

import matplotlib
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from birr.diagram import BOXES, LOSS_COLOUR, LOSS_TERMS, draw_bir_architecture  # noqa: E402


@pytest.fixture
def fig():
    fig = draw_bir_architecture()
    yield fig
    plt.close(fig)


def texts(ax):
    return [t.get_text() for t in ax.texts]


def test_returns_a_figure_with_one_axes(fig):
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1 and not fig.axes[0].axison


def test_every_block_is_a_labelled_box(fig):
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == len(BOXES)
    drawn = "\n".join(texts(ax))
    for label in ("image x", "frozen conv", "features h", "fcE", "toZ", "classifier head", "GMM prior",
                  "fromZ", "fcD1", "fcD2", "class gates", "previous model"):
        assert label in drawn, label


def test_every_loss_term_is_named_in_the_loss_colour(fig):
    red = [t.get_text() for t in fig.axes[0].texts if to_rgba(t.get_color()) == to_rgba(LOSS_COLOUR)]
    assert set(LOSS_TERMS) >= {"reconstruction", "KL", "classification", "distillation", "SI", "RR", "RA"}
    for term in LOSS_TERMS:
        assert any(re.search(rf"\b{re.escape(term)}\b", t) for t in red), f"no loss label names {term}"


def test_boxes_do_not_overlap():
    rects = {n: (x - w / 2, x + w / 2, y - h / 2, y + h / 2) for n, (x, y, w, h, _) in BOXES.items()}
    names = list(rects)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ax0, ax1, ay0, ay1 = rects[a]
            bx0, bx1, by0, by1 = rects[b]
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"{a} overlaps {b}"


def test_draws_into_a_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    try:
        out = draw_bir_architecture(ax=right)
        assert out is fig
        assert texts(left) == [] and len(texts(right)) >= len(BOXES)
        assert len([p for p in right.patches if isinstance(p, FancyBboxPatch)]) == len(BOXES)
    finally:
        plt.close(fig)
