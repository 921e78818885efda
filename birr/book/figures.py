"""The book's figures: each function returns a matplotlib Figure (or draws into `ax`) that a chapter
glues; none of them saves or shows it."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from birr.book.competition import busiest_classes, competition_frame, pair_counts
from birr.book.paper import METRIC_NAMES, METRICS, PAPER_TABLE1
from birr.book.runs import paired_points, run_label
from birr.book.tables import fig3_frame, fig3_gap_frame


def _plt():
    import matplotlib.pyplot as plt
    return plt


def _acc_array(matrix) -> np.ndarray:
    return np.array([[np.nan if v is None else 100 * v for v in row] for row in matrix], dtype=float)


def plot_table1_forest(frame: pd.DataFrame, metrics=METRICS, *, paper: bool = True, title: str | None = None):
    """Forest plot of `table1_frame`: per metric, each row's mean paired difference against the
    baseline (points) with its 95 % CI, a line at 0 and, for the code variant, the paper's claimed
    CIFAR-100 gain at the same f (open diamonds). A row whose CI excludes 0 is drawn filled."""
    plt = _plt()
    rows = frame.iloc[1:]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 1.2, 0.5 * len(rows) + 2.0), sharey=True)
    axes = np.atleast_1d(axes)
    y = np.arange(len(rows))[::-1]
    claimed = {row["f"]: row for row in PAPER_TABLE1}
    for ax, m in zip(axes, metrics):
        mean, lo, hi = rows[f"{m}_abs"].to_numpy(), rows[f"{m}_ci_low"].to_numpy(), rows[f"{m}_ci_high"].to_numpy()
        has_ci = ~np.isnan(lo)
        err = np.vstack([mean - lo, hi - mean])
        ax.errorbar(mean[has_ci], y[has_ci], xerr=err[:, has_ci], fmt="none", ecolor="tab:blue", capsize=3)
        sig = has_ci & ((lo > 0) | (hi < 0))
        ax.scatter(mean[~sig], y[~sig], facecolor="white", edgecolor="tab:blue", zorder=3, label="birr (CI includes 0)")
        ax.scatter(mean[sig], y[sig], color="tab:blue", zorder=3, label="birr (CI excludes 0)")
        if paper:
            py = [(yy, claimed[f][m][0]) for yy, f, v in zip(y, rows["f"], rows["variant"]) if v == "code" and f in claimed]
            if py:
                ax.scatter([v for _, v in py], [yy for yy, _ in py], marker="D", facecolor="none", edgecolor="tab:red",
                           zorder=3, label="paper's claim (CIFAR-100)")
        ax.axvline(0, color="0.4", lw=1)
        ax.set_title(METRIC_NAMES[m])
        ax.set_xlabel("RR + RA − baseline (points)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, rows.index)
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_acc_matrix(r: dict, *, seen_only: bool = True, ax=None, title: str | None = None):
    """Heatmap of the accuracy matrix of one run: row t = after training task t, column i = test
    accuracy (%) on task i; blank where task i is not seen yet. By default acc_matrix_seen (argmax over
    the classes seen so far, the matrix forgetting and BWT come from); `seen_only=False` draws the
    final evaluation's argmax over all classes, untrained head rows included."""
    plt = _plt()
    a = _acc_array(r["acc_matrix_seen" if seen_only else "acc_matrix"])
    fig = None
    if ax is None:
        n = a.shape[0]
        fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.6 * n))
    im = ax.imshow(np.ma.masked_invalid(a), vmin=0, vmax=100, cmap="viridis")
    T = a.shape[0]
    for t in range(T):
        for i in range(a.shape[1]):
            if not np.isnan(a[t, i]):
                ax.text(i, t, f"{a[t, i]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if a[t, i] < 60 else "black")
    ax.set_xticks(range(a.shape[1]), [str(i + 1) for i in range(a.shape[1])])
    ax.set_yticks(range(T), [str(t + 1) for t in range(T)])
    ax.set_xlabel("test task")
    ax.set_ylabel("after training task")
    ax.set_title(title or f"{run_label(r)}, seed {r['seed']}", fontsize=10)
    (fig or ax.figure).colorbar(im, ax=ax, label="accuracy (%)", shrink=0.8)
    return fig or ax.figure


def plot_per_task(groups: dict[str, list[dict]], *, seen_only: bool = True):
    """Accuracy on each task after each training task, one panel per group of runs (mean over seeds,
    one line per test task, from the task it is learned on); `seen_only` as in plot_acc_matrix."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.2), squeeze=False, sharey=True)
    key = "acc_matrix_seen" if seen_only else "acc_matrix"
    for ax, (label, runs) in zip(axes[0], groups.items()):
        with warnings.catch_warnings():          # unseen tasks are nan in every run: mean of nothing
            warnings.simplefilter("ignore", RuntimeWarning)
            a = np.nanmean(np.stack([_acc_array(r[key]) for r in runs]), axis=0)  # (T, T)
        T = a.shape[0]
        cmap = plt.get_cmap("viridis", max(T, 2))
        for i in range(T):
            ax.plot(range(i + 1, T + 1), a[i:, i], marker="o", ms=3, color=cmap(i), label=f"task {i + 1}")
        ax.set_title(f"{label} ({len(runs)} seed{'s' * (len(runs) != 1)})", fontsize=10)
        ax.set_xlabel("after training task")
        ax.set_xticks(range(1, T + 1))
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="test task", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_fig2(p, f: float, class_names=None, *, ax=None, title: str | None = None, max_bars: int = 12):
    """The paper's Fig. 2 redrawn for one probability vector p (C,): bars coloured by role (label, competitor,
    ignored) with the threshold p_max / f as a dashed line (rule: `birr.rr.competing_classes`).
    With more than `max_bars` classes only the `max_bars` most probable are drawn, most probable first;
    the rule is always applied to the whole vector."""
    import torch
    from birr.rr import competing_classes
    plt = _plt()
    p = torch.as_tensor(p, dtype=torch.float64)
    label, threshold, comp = competing_classes(p, f)
    p, comp = p.numpy(), comp.numpy()
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(p))]
    shown = np.arange(len(p)) if len(p) <= max_bars else np.argsort(-p, kind="stable")[:max_bars]
    colours = ["tab:red" if i == int(label) else ("tab:orange" if comp[i] else "lightgray") for i in shown]
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(3.0, 0.45 * len(shown) + 1.5), 2.8))
    x = np.arange(len(shown))
    ax.bar(x, p[shown], color=colours, edgecolor="black", linewidth=0.4)
    ax.axhline(float(threshold), ls="--", color="black", lw=1)
    # the threshold's value right of the axes, level with its line, where no bar can hide under it
    ax.text(1.01, float(threshold), f"p_max/f\n= {float(threshold):.3g}", transform=ax.get_yaxis_transform(),
            va="center", ha="left", fontsize=8)
    many = len(shown) > 6
    ax.set_xticks(x, [names[i] for i in shown], rotation=60 if many else 0, ha="right" if many else "center",
                  fontsize=7 if many else 9)
    if len(shown) < len(p):
        ax.set_xlabel(f"the {len(shown)} most probable of {len(p)} classes ({int(comp.sum())} competitors in all)",
                      fontsize=7)
    ax.set_ylabel("softmax probability")
    top = max(1.0, float(p.max()))
    ax.set_ylim(0, 1.45 * top)                  # headroom: the legend sits above the tallest possible bar
    ax.set_yticks(np.linspace(0, 1, 6))
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color="tab:red", label="label (argmax)"), Patch(color="tab:orange", label="competitor"),
                       Patch(color="lightgray", label="ignored")], fontsize=7, loc="upper right")
    ax.set_title(title or f"f = {f:g}", fontsize=10)
    if fig is not None:
        fig.tight_layout()                      # keeps the threshold's label, right of the axes, in the figure
    return fig or ax.figure


def plot_pair_counts(r: dict, *, ax=None, title: str | None = None, max_classes: int = 20, tasks=None,
                     colorbar: bool = True):
    """Heatmap of `pair_counts(r, tasks)`: how often each (label, competitor) pair entered RR (summed
    over all logged tasks, or over `tasks`); with more than `max_classes` classes, only the classes
    involved in the most pairs (`busiest_classes`). Counts are written in the cells up to 12 classes;
    empty cells stay blank, so the pairs that compete stand out."""
    import seaborn as sns
    plt = _plt()
    full = pair_counts(r, tasks)
    frame = busiest_classes(full, max_classes)
    n = len(frame)
    fig = None
    if ax is None:
        side = max(3.6, 1.8 + 0.4 * n)
        fig, ax = plt.subplots(figsize=(side + 1.4, side + 0.4))
    small = 9 if n > 12 else 11
    sns.heatmap(frame.astype(float), ax=ax, cmap="magma_r", mask=frame.to_numpy() == 0, square=True,
                annot=n <= 12, fmt=".0f", annot_kws=dict(fontsize=small - 1), linewidths=0.5, linecolor="0.92",
                cbar=colorbar, cbar_kws=dict(label="count", shrink=0.8))
    ax.set_facecolor("white")
    ax.tick_params(labelsize=small)
    ax.set_xlabel("competitor (repelled from)", fontsize=small + 1)
    ax.set_ylabel("label of the replayed sample", fontsize=small + 1)
    part = f", {n} busiest of {len(full)} classes" if n < len(full) else ""
    which = f"task {', '.join(map(str, tasks))}" if tasks else f"tasks 2-{r['n_tasks']}"
    ax.set_title(title or f"{run_label(r)}, seed {r['seed']}\nRR pairs summed over {which}{part}", fontsize=small + 1)
    return fig or ax.figure


def plot_pair_counts_by_task(r: dict, *, ncols: int = 2, max_classes: int = 12):
    """`plot_pair_counts` for each logged task (from the second on) of run `r`, `ncols` panels a row so
    each stays legible at page width; an empty panel when nothing was logged."""
    plt = _plt()
    logged = [st["task"] for st in r["rr_stats"]] or [2]
    nrows = -(-len(logged) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 5.4 * nrows), squeeze=False)
    for ax, t in zip(axes.flat, logged):
        plot_pair_counts(r, ax=ax, tasks=[t], title=f"while learning task {t}", max_classes=max_classes)
    for ax in list(axes.flat)[len(logged):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_competition_vs_f(results=None, *, replay_curve: pd.DataFrame | None = None):
    """Share of replayed samples with a competitor against f: from the runs' rr_stats (points per run,
    line = mean per variant) and, optionally, a curve from `competitor_share_vs_f` on one model's replay."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    if results is not None:
        cf = competition_frame(results)
        if not cf.empty:
            per_run = cf.groupby(["variant", "f", "seed"])["share_competitive"].mean().reset_index()
            for variant, g in per_run.groupby("variant"):
                ax.scatter(g["f"], 100 * g["share_competitive"], s=14, alpha=0.6, label=f"runs ({variant} variant)")
                m = g.groupby("f")["share_competitive"].mean()
                ax.plot(m.index, 100 * m.to_numpy(), lw=1.2)
    if replay_curve is not None:
        ax.plot(replay_curve["f"], replay_curve["share_competitive"], "k--", lw=1, label="final model's replay (paper rule)")
    ax.set_xscale("log")
    ticks = [1, 2, 5, 10, 20, 50, 100]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("repulsion factor f")
    ax.set_ylabel("replayed samples with a competitor (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_fig3(results, *, full=None, title: str | None = None):
    """The paper's Fig. 3 redrawn: final test accuracy against iterations per task, (a) overall, (b) first
    50 %, (c) first 20 %; one point per seed, lines through the means; RR+RA ("RR") and baseline ("BL").
    The bottom row is what the top row hides when the lines overlap: RR − BL paired by seed, with its
    95 % CI. `full`: runs of the full budget (another width and batch), drawn as open markers with
    dotted lines on the same axes and labelled as such; only points paired by seed are drawn."""
    plt = _plt()
    budgets = [("", results)] + ([("full budget ", paired_points(full))] if full else [])
    budgets = [(name, rs) for name, rs in budgets if rs]
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.8), sharex=True, gridspec_kw=dict(height_ratios=[3, 2]))
    styles = {"BL": dict(color="tab:blue", marker="o", ls="-", lw=2.2), "RR": dict(color="tab:red", marker="s", ls="--", lw=1.4)}
    ticks = sorted({r["config"]["iters"] for _, rs in budgets for r in rs})
    for col, (m, letter) in enumerate(zip(("overall", "first50", "first20"), "abc")):
        ax, dax = axes[0, col], axes[1, col]
        for name, rs in budgets:
            df, hollow = fig3_frame(rs), bool(name)
            for method, g in df.groupby("method"):
                st = dict(styles[method])
                offsets = (g["seed"].rank(method="dense") - 1 - (g["seed"].nunique() - 1) / 2) * 0.012
                ax.scatter(g["iters"] * (1 + offsets + (0.02 if method == "RR" else -0.02)), g[m], s=12, alpha=0.5,
                           color=st["color"], marker=st["marker"], facecolor="none" if hollow else st["color"])
                mean = g.groupby("iters")[m].mean()
                ax.plot(mean.index, mean.to_numpy(), color=st["color"], marker=st["marker"], lw=st["lw"],
                        ls=":" if hollow else st["ls"], mfc="white" if hollow else st["color"],
                        label=f"{name}{method}: {g['label'].iloc[0]}")
            gaps = fig3_gap_frame(rs, (m,))
            x, d = gaps.index.to_numpy(dtype=float), gaps[f"{m}_diff"].to_numpy()
            lo, hi = gaps[f"{m}_ci_low"].to_numpy(), gaps[f"{m}_ci_high"].to_numpy()
            ok = ~np.isnan(lo)
            dax.errorbar(x[ok], d[ok], yerr=np.vstack([d - lo, hi - d])[:, ok], fmt="none", ecolor="0.3", capsize=3)
            dax.plot(x, d, marker="D", ls=":" if hollow else "-", color="0.2", mfc="white" if hollow else "0.2",
                     label=f"{name or 'this budget: '}RR − BL, 95 % CI")
        dax.axhline(0, color="tab:blue", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_title(f"({letter}) {METRIC_NAMES[m]}", fontsize=11)
        dax.set_xlabel("iterations per task")
        for a in (ax, dax):
            a.grid(alpha=0.3)
    axes[0, 0].set_ylabel("final test accuracy (%)")
    axes[1, 0].set_ylabel("RR − BL (points)")
    handles = [h for ax in axes[:, 0] for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in axes[:, 0] for lab in ax.get_legend_handles_labels()[1]]
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(labels) + 1) // 2), 1, 1))
    return fig


def image_grid(bench, *, per_class: int = 4, tasks=None):
    """First training images of every class, one row per task (uint8 images, as stored)."""
    plt = _plt()
    tasks = list(tasks or range(1, bench.n_tasks + 1))
    cpt = bench.classes_per_task
    per_class = max(1, min(per_class, 24 // cpt))
    fig, axes = plt.subplots(len(tasks), cpt * per_class, squeeze=False,
                             figsize=(0.9 * cpt * per_class, 1.1 * len(tasks)))
    for row, t in zip(axes, tasks):
        for j, c in enumerate(bench.task_classes(t)):
            idx = (bench.train.labels == c).nonzero().flatten()[:per_class].tolist()
            for m, i in enumerate(idx):
                row[j * per_class + m].imshow(bench.train.images[i].permute(1, 2, 0).numpy())  # (32,32,3)
            row[j * per_class].set_title(bench.class_names[c], fontsize=7, loc="left")
        row[0].set_ylabel(f"task {t}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
    fig.tight_layout()
    return fig
