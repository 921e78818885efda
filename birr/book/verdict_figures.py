"""The "Does it work?" chapter's figures: the lambda / f sweep against the paper's claimed gains, and
the share of each loss term in the gradient norm over training."""
from __future__ import annotations

import numpy as np
import pandas as pd

from birr.book import METRIC_NAMES, METRICS
from birr.book.verdict_stats import PAPER_GAINS_F20, grad_share_frame, format_lambda

def _plt():
    import matplotlib.pyplot as plt
    return plt


VARIANT_STYLE = {"code": dict(color="#1f77b4", marker="o"), "paper": dict(color="#d62728", marker="s")}


def plot_sweep(frame: pd.DataFrame, x: str = "lam", *, metrics=METRICS, gains=PAPER_GAINS_F20, hue: str = "variant",
               title: str | None = None):
    """One panel per metric: the mean paired difference (points) with its 95 % CI against `x` ("lam",
    log axis, or "f"), one line per value of `hue` (variant, or "lam" for an f sweep), the zero line,
    and the paper's claimed gain at f = 20 as a dashed line."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), sharex=True, squeeze=False)
    groups = list(dict.fromkeys(frame[hue]))
    colours = plt.get_cmap("tab10")
    for ax, m in zip(axes[0], metrics):
        for i, g in enumerate(groups):
            rows = frame[frame[hue] == g].sort_values(x)
            style = VARIANT_STYLE.get(g, dict(color=colours(i), marker="o^sD"[i % 4]))
            # side by side, not on top of each other: a small offset per group along x
            shift = (1.12 ** (i - (len(groups) - 1) / 2)) if x in ("lam", "f") else 1.0
            xs = rows[x].to_numpy() * shift
            y, lo, hi = rows[f"{m}_diff"], rows[f"{m}_ci_low"], rows[f"{m}_ci_high"]
            yerr = np.vstack([(y - lo).fillna(0).to_numpy(), (hi - y).fillna(0).to_numpy()])
            label = f"{g} variant" if hue == "variant" else f"λ = {format_lambda(g)}" if hue == "lam" else str(g)
            ax.errorbar(xs, y, yerr=yerr, capsize=3, lw=1.5, ms=5, label=label, **style)
        ax.axhline(0, color="black", lw=0.8)
        ax.axhline(gains[m], color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_title(METRIC_NAMES[m])
        ax.set_xlabel("λ_RR = λ_RA" if x == "lam" else "repulsion factor f")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("RR + RA − baseline (points)")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    axes[0, -1].annotate("paper's gain at f = 20", xy=(1, gains[metrics[-1]]), xycoords=("axes fraction", "data"),
                         ha="right", va="bottom", fontsize=8, color="grey")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


GRAD_COLOURS = {"reconstruction": "#1f77b4", "kl": "#9467bd", "classification": "#2ca02c",
                "distillation": "#17becf", "si": "#7f7f7f", "rr": "#d62728", "ra": "#ff7f0e"}


def plot_grad_shares(runs_by_label: dict, groups=("decoder", "fcE")):
    """Share of each loss term in the gradient norm (percent), against training iterations, one
    column per labelled set of runs (e.g. "λ = 1e-6", "λ = 1e-2") and one row per parameter group;
    the mean over the runs of a set, log scale so that a term at 1e-4 % is as visible as one at 50 %."""
    plt = _plt()
    labels = list(runs_by_label)
    fig, axes = plt.subplots(len(groups), len(labels), figsize=(5.2 * len(labels), 3.3 * len(groups)),
                             sharex=True, sharey=True, squeeze=False)
    for j, label in enumerate(labels):
        frame = pd.concat([grad_share_frame(r) for r in runs_by_label[label]])
        mean = frame.groupby(["group", "term", "step"])["share"].mean().reset_index()
        for i, group in enumerate(groups):
            ax = axes[i, j]
            for term, colour in GRAD_COLOURS.items():
                line = mean[(mean.group == group) & (mean.term == term)]
                if (line["share"] > 0).any():
                    ax.plot(line["step"], 100 * line["share"].clip(lower=1e-9), color=colour, lw=1.4, label=term)
            ax.set_yscale("log")
            ax.set_ylim(1e-7, 200)
            ax.set_title(f"{label}: {group}", fontsize=10)
            ax.grid(alpha=0.3)
            iters = runs_by_label[label][0]["config"]["iters"]
            for t in range(1, runs_by_label[label][0]["n_tasks"]):
                ax.axvline(t * iters, color="black", lw=0.5, alpha=0.4)
        axes[-1, j].set_xlabel("iteration (all tasks; lines: task boundaries)")
    for i, group in enumerate(groups):
        axes[i, 0].set_ylabel(f"share of |∇| on {group} (%)")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines() if not h.get_label().startswith("_")}
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=len(handles), fontsize=9,
               bbox_to_anchor=(0.5, 1.02), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig

