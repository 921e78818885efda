"""The BI-R model (+SI, +RR/RA) as one drawing: boxes for the blocks of birr/model.py, arrows for the data,
and the loss terms of birr/losses.py written where they attach. The method chapter shows it.

Boxes read left to right along the encoder (image -> frozen conv encoder -> features h -> fcE -> hE ->
toZ -> z) and right to left along the decoder, the feedback path (z -> fromZ -> fcD1 -> fcD2 -> x').
The classifier head sits on hE, not on z; the previous model, below, feeds replayed features in at h.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

# the loss terms the drawing names (what tests/test_diagram.py checks); each attaches to one block
LOSS_TERMS = ("reconstruction", "KL", "classification", "distillation", "SI", "RR", "RA")

# block name -> (centre x, centre y, width, height, text); axes run 0..100 x 0..64
BOXES = {
    "image": (6, 46, 10, 8, "image x\n3×32×32"),
    "conv": (21, 46, 13, 8, "frozen conv\nencoder\n(5 layers)"),
    "features": (37, 46, 13, 8, "features h\n1024"),
    "fcE": (53, 46, 13, 8, "fcE\n1024→H→H\nReLU"),
    "toZ": (70, 46, 12, 8, "toZ\nμ, log σ²"),
    "z": (86, 46, 12, 8, "z = μ + σ·ε"),
    "head": (70, 59, 14, 6, "classifier head\nsoftmax"),
    "prior": (88, 59, 14, 6, "GMM prior\n$\\mathcal{N}(\\mu_c, \\sigma^2_c)$"),
    "fromZ": (86, 24, 12, 8, "fromZ\n⊙ gate, ReLU"),
    "fcD1": (70, 24, 12, 8, "fcD1\n⊙ gate, ReLU"),
    "fcD2": (53, 24, 13, 8, "fcD2 (linear)\nx' 1024"),
    "gates": (78, 9, 22, 8, "class gates g·M\n(fixed masks; g = one-hot y,\nor teacher's soft p)"),
    "previous": (21, 20, 22, 13, "previous model\n(frozen copy, the teacher):\nsample class c,\n$z \\sim \\mathcal{N}(\\mu_c, \\sigma^2_c)$, decode"),
}
LOSS_COLOUR = "tab:red"


def _box(ax, name, face="white"):
    x, y, w, h, text = BOXES[name]
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.4,rounding_size=1.2",
                                facecolor=face, edgecolor="black", linewidth=0.9, zorder=2))
    ax.text(x, y, text, ha="center", va="center", fontsize=7.5, zorder=3, gid=f"box:{name}")


def _edge(name, side):
    """The midpoint of one side ('l', 'r', 't', 'b') of a box."""
    x, y, w, h, _ = BOXES[name]
    return {"l": (x - w / 2 - 0.5, y), "r": (x + w / 2 + 0.5, y),
            "t": (x, y + h / 2 + 0.5), "b": (x, y - h / 2 - 0.5)}[side]


def _arrow(ax, a, b, *, dashed=False, colour="black", rad=0.0):
    ax.annotate("", xy=b, xytext=a, zorder=1,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.0, linestyle="--" if dashed else "-",
                                connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0))


def _loss(ax, x, y, text, **kw):
    ax.text(x, y, text, color=LOSS_COLOUR, fontsize=7.5, fontweight="bold", zorder=4, **kw)


def draw_bir_architecture(ax=None):
    """Draw BI-R (+SI, +RR/RA) into `ax` (a new 10 x 5.4 inch figure if None); returns the Figure.

    Black arrows: the forward pass of current and replayed samples; dashed: what the previous model and
    the gates feed in. Red text: the loss terms, at the block whose output they read."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 5.4))
    ax.set_xlim(-2, 102)
    ax.set_ylim(0, 66)
    ax.set_axis_off()

    for name in BOXES:
        face = {"conv": "#dddddd", "previous": "#e8f0fb", "prior": "#fdf3e1", "gates": "#eef7ea"}.get(name, "white")
        _box(ax, name, face)

    # encoder path, left to right
    for a, b in (("image", "conv"), ("conv", "features"), ("features", "fcE"), ("fcE", "toZ"), ("toZ", "z")):
        _arrow(ax, _edge(a, "r"), _edge(b, "l"))
    ax.text(62, 44.5, "hE", fontsize=7, ha="center", va="top")
    _arrow(ax, (61, 49), _edge("head", "l"))                          # head on hE ("beforeZ")
    _arrow(ax, _edge("prior", "b"), _edge("z", "t"), dashed=True)
    # decoder (feedback) path, right to left
    _arrow(ax, _edge("z", "b"), _edge("fromZ", "t"))
    for a, b in (("fromZ", "fcD1"), ("fcD1", "fcD2")):
        _arrow(ax, _edge(a, "l"), _edge(b, "r"))
    _arrow(ax, _edge("gates", "t"), _edge("fromZ", "b"), dashed=True, colour="tab:green", rad=0.2)
    _arrow(ax, _edge("gates", "t"), _edge("fcD1", "b"), dashed=True, colour="tab:green", rad=-0.2)
    # x' is compared with h: the dotted line of the reconstruction terms
    ax.plot([_edge("fcD2", "l")[0], 40, 40], [24, 24, _edge("features", "b")[1]], ":", color=LOSS_COLOUR, lw=1.2)
    # replay: the previous model's generated features enter at h, its logits become the teacher's targets
    _arrow(ax, _edge("previous", "t"), (33, _edge("features", "b")[1]), dashed=True, colour="tab:blue", rad=-0.25)
    ax.text(1, 35, "replayed features x_\n(internal replay)", color="tab:blue", fontsize=7, ha="left")
    ax.text(21, 8.5, "teacher logits → distillation targets,\nsoft gates, RR/RA's label c1 and competitor c2",
            color="tab:blue", fontsize=7, ha="center", va="top")

    # the loss terms, where they attach
    _loss(ax, 61.5, 59, "classification (CE, current)\ndistillation (T = 2, replay)", ha="right", va="center")
    _loss(ax, 85.5, 53, "KL (to the label's mode;\nreplay: teacher mixture)", ha="right", va="center")
    _loss(ax, 53, 17.5, "reconstruction ½·MSE(h, x')", ha="center", va="center")
    _loss(ax, 53, 15.5, "RR / RA: x' vs class means x̂\n(replay only, ×λ)", ha="center", va="top")
    _loss(ax, 53, 38, "SI penalty (fcE + head)", ha="center", va="center")
    ax.set_title("Brain-inspired replay (BI-R + SI) with RR / RA: what each loss term reads", fontsize=10)
    return fig or ax.figure
