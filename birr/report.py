r"""The analysis behind the book's chapters: tables, paired statistics and figures from results dicts.

Chapters hold prose and calls; the logic lives here, where pytest can check it on hand-built fake
results (tests/test_report.py). Read top to bottom:

1. what a page says it was computed on (`dataset_label`), and the paper's own numbers (`PAPER_TABLE1`);
2. grouping results and paired statistics (`paired_stats`, `table1_frame`, `metric_summary`);
3. what the RR / RA runs logged (`competition_frame`, `pair_counts`, `rr_magnitude_frame`);
4. figures (each helper returns a matplotlib Figure; chapters glue it);
5. small helpers for the data, encoder and status pages.

A results dict is what `birr.run` returns (birr/train.py). Its `metrics` are fractions (accuracies
in [0, 1]; forgetting and bwt are differences of them, bwt mostly negative); every table here reports
percent. Numbers computed on the CIFAR-10 proxy or on synthetic data are never CIFAR-100 numbers:
every table that sits next to the paper's says which data it came from.
"""
from __future__ import annotations

import math
import warnings
from collections import defaultdict

import numpy as np
import pandas as pd

from birr.metrics import mean_sem  # the book's mean ± SEM (R.mean_sem in the notebooks)

# -----------------------------------------------------------------------------
# 1. what a page was computed on, and the paper's numbers

DATASET_NAMES = {
    "cifar100": "CIFAR-100 (the paper's benchmark)",
    "cifar10": "CIFAR-10 (official copy, proxy for CIFAR-100)",
    "cifar10-jpg": "CIFAR-10 (JPEG copy, proxy for CIFAR-100)",
    "synthetic": "synthetic (smoke test — not a result)",
}
DATASET_SHORT = {"cifar100": "CIFAR-100", "cifar10": "CIFAR-10 proxy", "cifar10-jpg": "CIFAR-10 proxy",
                 "synthetic": "synthetic smoke data"}


def _device_of(r: dict) -> str:
    prov = r.get("provenance", {})
    dev = str(prov.get("device") or r.get("config", {}).get("device", "?"))
    if dev.startswith("cuda") and prov.get("device_name"):
        return f"{dev} ({prov['device_name']})"
    return dev


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def dataset_label(results=None, *, dataset: str | None = None, budget: str | None = None,
                  device: str | None = None) -> str:
    """One phrase naming the data, budget and device behind a page, e.g.
    "CIFAR-10 (JPEG copy, proxy for CIFAR-100), short budget, cpu".

    `results` is one results dict or a list of them (they must share dataset and budget); without
    results, give dataset, budget and device (the chapter's parameters; "auto" is resolved here)."""
    if results is not None:
        rs = [results] if isinstance(results, dict) else list(results)
        if not rs:
            raise ValueError("dataset_label: empty list of results")
        datasets, budgets = {r["dataset"] for r in rs}, {r["budget"] for r in rs}
        if len(datasets) != 1 or len(budgets) != 1:
            raise ValueError(f"dataset_label: results mix datasets {sorted(datasets)} or budgets {sorted(budgets)}")
        dataset, budget = datasets.pop(), budgets.pop()
        device = ", ".join(sorted({_device_of(r) for r in rs}))
    elif dataset is None or budget is None:
        raise ValueError("dataset_label: give results, or dataset and budget")
    else:
        device = _resolve_device(device or "auto")
    if dataset not in DATASET_NAMES:
        raise ValueError(f"dataset_label: unknown dataset {dataset!r}; expected one of {tuple(DATASET_NAMES)}")
    return f"{DATASET_NAMES[dataset]}, {budget} budget, {device}"


def data_caveat(dataset: str) -> str:
    """The one sentence a page's numbers need about what they can show, by the data that made them."""
    two_classes = ("the \"first 20 %\" is one task of two classes, so it is noisy, and a change there says "
                   "little about CIFAR-100.")
    caveats = {
        "synthetic": "On this synthetic smoke data the numbers only show that the pipeline runs.",
        "cifar10-jpg": "On the CIFAR-10 proxy " + two_classes,
        "cifar10": "On CIFAR-10 " + two_classes,
        "cifar100": "These are the paper's benchmark and task split; the paper's own numbers are printed beside them.",
    }
    if dataset not in caveats:
        raise ValueError(f"data_caveat: unknown dataset {dataset!r}; expected one of {tuple(caveats)}")
    return caveats[dataset]


# The book's tables write a missing value (a p with one seed, a ratio of nothing) as a dash, never NaN.
pd.set_option("styler.format.na_rep", "–")

METRICS = ("first20", "first50", "overall")
METRIC_NAMES = {"first20": "first 20 %", "first50": "first 50 %", "overall": "overall",
                "forgetting": "forgetting", "bwt": "BWT", "task1": "task 1 (final)",
                "average_task_acc": "mean over tasks"}

# The paper's Table 1 (paper text, CIFAR-100, 5 runs, 5000 iterations): "absolute change/relative change"
# over the baseline, in percentage points / percent, for each repulsion factor f.
PAPER_TABLE1 = [
    dict(f=5, first20=(3.80, 12.5), first50=(4.06, 12.78), overall=(1.35, 3.87)),
    dict(f=10, first20=(5.80, 19.08), first50=(3.82, 12.03), overall=(1.19, 3.41)),
    dict(f=20, first20=(4.80, 15.79), first50=(4.86, 15.30), overall=(1.48, 4.25)),
    dict(f=50, first20=(4.90, 16.12), first50=(3.56, 11.21), overall=(1.26, 3.61)),
    dict(f=100, first20=(4.95, 16.28), first50=(4.18, 13.16), overall=(1.24, 3.56)),
]
# The paper's §4 Results text, f = 20 at 5000 iterations: the numbers that disagree with Table 1 (appendix §9.2 item 1)
PAPER_TEXT_F20 = dict(first50=(3.20, 15.30), first20=(4.30, 15.79))
# BI-R + SI on class-IL CIFAR-100 as van de Ven et al. report it: about 34.8 % overall.
# From memory, unverified (appendix §9.2 item 2).
PUBLISHED_BIR_SI_CIFAR100 = 34.8


def implied_baseline(abs_change: float, rel_change: float) -> float:
    """The baseline a change implies: abs / rel * 100 (abs in points, rel in percent)."""
    return abs_change / rel_change * 100.0


def paper_table1_frame() -> pd.DataFrame:
    """The paper's Table 1 as printed (CIFAR-100), with the baseline each cell implies (appendix §9.2 item 2).
    Index f; columns <metric>_abs (points), <metric>_rel (%), <metric>_implied_baseline (%)."""
    rows = []
    for row in PAPER_TABLE1:
        out = dict(f=row["f"])
        for m in METRICS:
            a, rel = row[m]
            out[f"{m}_abs"], out[f"{m}_rel"], out[f"{m}_implied_baseline"] = a, rel, implied_baseline(a, rel)
        rows.append(out)
    return pd.DataFrame(rows).set_index("f")


def format_paper_table1(frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's layout, "abs / rel", plus the implied baseline of each column."""
    frame = paper_table1_frame() if frame is None else frame
    out = pd.DataFrame(index=frame.index.rename("f"))
    for m in METRICS:
        out[f"{METRIC_NAMES[m]}: abs / rel"] = [f"+{a:.2f} / +{r:.2f} %" for a, r in zip(frame[f"{m}_abs"], frame[f"{m}_rel"])]
        out[f"{METRIC_NAMES[m]}: implied baseline (%)"] = frame[f"{m}_implied_baseline"].map(lambda v: f"{v:.2f}")
    return out

# -----------------------------------------------------------------------------
# 2. grouping results, paired statistics


def metric_value(r: dict, name: str) -> float:
    """A number of one run, as a fraction: a key of r["metrics"], or "task1" (final accuracy on task 1)."""
    if name == "task1":
        return float(r["per_task_acc"][0])
    return float(r["metrics"][name])


def run_label(r: dict) -> str:
    """Short name of a run's method: "BI-R + SI", "fine-tuning", "RR+RA f=20 (code)", ..."""
    c = r["config"]
    if r["method"] == "rr+ra" or c.get("rr") or c.get("ra"):
        f = c.get("rep_f")
        return f"RR+RA {'f=' + _fmt_f(f) if f is not None else 'no f'} ({c.get('rr_variant', 'code')})"
    return {"bir+si": "BI-R + SI", "bir": "BI-R", "finetune": "fine-tuning"}.get(r["method"], r["method"])


def _fmt_f(f) -> str:
    return f"{f:g}" if isinstance(f, (int, float)) else str(f)


def is_rr(r: dict) -> bool:
    return bool(r["config"].get("rr") or r["config"].get("ra"))


def by_seed(results, what: str = "") -> dict[int, dict]:
    """{seed: result}; two results with one seed in a group would make pairing ambiguous."""
    out = {}
    for r in results:
        if r["seed"] in out and out[r["seed"]]["stamp"] != r["stamp"]:
            raise ValueError(f"two different runs with seed {r['seed']} in {what or 'one group'}: "
                             f"{out[r['seed']]['stamp']} and {r['stamp']}; pass one configuration per group")
        out[r["seed"]] = r
    return out


def paired_stats(treated: dict[int, float], base: dict[int, float]) -> dict:
    """Paired comparison of two {seed: value} maps on the seeds they share.

    diff_s = treated_s - base_s. Returns n, mean_diff, rel (mean_diff / mean base * 100), p (paired
    t-test, scipy.stats.ttest_rel; nan when n < 2 or the differences have no spread and are all 0),
    ci_low / ci_high: the 95 % CI of the mean difference from the same t distribution,
    mean ± t(0.975, n-1) · sd / sqrt(n) (nan when n < 2), so the CI excludes 0 exactly when p < 0.05.
    Why not a bootstrap: with the book's 3 seeds a percentile bootstrap of the mean can only return
    the smallest and largest difference, an interval that "excludes 0" at p = 0.3."""
    seeds = sorted(set(treated) & set(base))
    n = len(seeds)
    nan = float("nan")
    if n == 0:
        return dict(n=0, mean_diff=nan, rel=nan, p=nan, ci_low=nan, ci_high=nan)
    t = np.array([treated[s] for s in seeds], dtype=float)
    b = np.array([base[s] for s in seeds], dtype=float)
    d = t - b
    mean_diff = float(d.mean())
    rel = mean_diff / float(b.mean()) * 100.0 if b.mean() != 0 else nan
    p = ci_low = ci_high = nan
    if n >= 2:
        from scipy import stats
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # zero spread: scipy warns and may return nan
            p = float(stats.ttest_rel(t, b).pvalue)
        half = float(stats.t.ppf(0.975, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
        ci_low, ci_high = mean_diff - half, mean_diff + half
    return dict(n=n, mean_diff=mean_diff, rel=rel, p=p, ci_low=ci_low, ci_high=ci_high)


def table1_frame(results, metrics=METRICS) -> pd.DataFrame:
    """Our Table 1: one row for the baseline (BI-R + SI) and one per (RR variant, f), numbers in percent.

    Columns, for each metric m: m_mean and m_sem over the row's seeds; m_abs (points) and m_rel (%), the
    change of the mean against the baseline on the seeds both have (paired by seed); m_p (paired
    t-test) and m_ci_low / m_ci_high (95 % t interval of the mean paired difference, points). Plus
    variant, f, n (runs in the row) and n_paired. Rows are ordered baseline, then variant, then f."""
    base_runs = [r for r in results if r["method"] == "bir+si" and not is_rr(r)]
    if not base_runs:
        raise ValueError("table1_frame: no baseline (method 'bir+si') among the results")
    groups: dict[tuple, list] = defaultdict(list)
    for r in results:
        if is_rr(r):
            groups[(r["config"].get("rr_variant", "code"), r["config"].get("rep_f"))].append(r)
    several = len({v for v, _ in groups}) > 1
    base = by_seed(base_runs, "the baseline")
    rows = []

    def row(label, variant, f, runs):
        out = dict(row=label, variant=variant, f=f, n=len(runs))
        runs_by_seed = by_seed(runs, label)
        for m in metrics:
            out[f"{m}_mean"], out[f"{m}_sem"] = mean_sem(100 * metric_value(r, m) for r in runs)
            st = paired_stats({s: 100 * metric_value(r, m) for s, r in runs_by_seed.items()},
                              {s: 100 * metric_value(r, m) for s, r in base.items()})
            out[f"{m}_abs"], out[f"{m}_rel"], out[f"{m}_p"] = st["mean_diff"], st["rel"], st["p"]
            out[f"{m}_ci_low"], out[f"{m}_ci_high"] = st["ci_low"], st["ci_high"]
            out["n_paired"] = st["n"]
        return out

    rows.append(row("baseline (BI-R + SI)", "", float("nan"), list(base.values())))
    for (variant, f) in sorted(groups, key=lambda k: (k[0] != "code", k[0], k[1] is None, k[1] or 0)):
        label = f"f = {_fmt_f(f)}" if f is not None else "no f"
        if several or variant != "code":
            label += f" ({variant} variant)"
        rows.append(row(label, variant, f if f is not None else float("nan"), groups[(variant, f)]))
    frame = pd.DataFrame(rows).set_index("row")
    # the baseline compared with itself is 0 by construction: show it as empty
    for m in metrics:
        for s in ("abs", "rel", "p", "ci_low", "ci_high"):
            frame.loc[frame.index[0], f"{m}_{s}"] = float("nan")
    return frame


def table1_row(frame: pd.DataFrame, f: float | None = None, variant: str = "code") -> pd.Series:
    """The row of `table1_frame` for (variant, f); f=None with variant="" gives the baseline."""
    if variant == "":
        return frame.iloc[0]
    hit = frame[(frame["variant"] == variant) & ((frame["f"] == f) if f is not None else frame["f"].isna())]
    if len(hit) != 1:
        raise KeyError(f"table1_row: no single row for variant={variant!r}, f={f!r}; rows: {list(frame.index)}")
    return hit.iloc[0]


def best_f(frame: pd.DataFrame, metric: str, variant: str = "code") -> str:
    """ "f = 10 (+0.52 points)" for the variant's row with the largest mean change of `metric`, or a
    phrase saying that no single f stands out (all changes equal, e.g. all zero), or that none gains
    (every change negative: the largest is then the smallest loss, and is named as such)."""
    rows = frame[(frame["variant"] == variant) & frame[f"{metric}_abs"].notna()]
    if rows.empty:
        return "no f (no RR+RA rows)"
    gains = rows[f"{metric}_abs"]
    top = gains[np.isclose(gains, gains.max(), rtol=0, atol=1e-9)]
    if len(top) > 1:
        return f"no single f ({len(top)} values tie at {gains.max():+.2f} points)"
    name = f"f = {_fmt_f(rows.loc[top.index[0], 'f'])}"
    if gains.max() < 0:
        return f"none, every f loses (least: {name}, {gains.max():+.2f} points)"
    return f"{name} ({gains.max():+.2f} points)"


def beyond_noise(frame: pd.DataFrame, metrics=METRICS) -> tuple[list[dict], int]:
    """The cells of `table1_frame` (RR+RA rows x metrics) whose 95 % CI of the paired difference excludes
    0 (equivalently p < 0.05), in table order, and how many cells were tested (those with a CI)."""
    cells, n_tested = [], 0
    for label, row in frame.iloc[1:].iterrows():
        for m in metrics:
            lo, hi = row[f"{m}_ci_low"], row[f"{m}_ci_high"]
            if math.isnan(lo) or math.isnan(hi):
                continue
            n_tested += 1
            if lo > 0 or hi < 0:
                cells.append(dict(row=label, metric=m, abs=row[f"{m}_abs"], ci_low=lo, ci_high=hi, p=row[f"{m}_p"]))
    return cells, n_tested


def beyond_noise_text(frame: pd.DataFrame, metrics=METRICS) -> str:
    """One or two sentences naming every cell of `beyond_noise`, with how many such cells the number
    of uncorrected tests would give by chance alone (5 % of them)."""
    cells, n = beyond_noise(frame, metrics)
    if n == 0:
        return "With one seed no difference can be tested."
    if not cells:
        return f"None of the table's {n} differences has a 95 % CI that excludes 0."
    named = "; ".join(f"{c['row']}, {METRIC_NAMES[c['metric']]}: {c['abs']:+.2f} points "
                      f"(CI [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], p = {format_p(c['p'])})" for c in cells)
    verb = "has" if len(cells) == 1 else "have"
    return (f"{len(cells)} of the table's {n} differences {verb} a 95 % CI that excludes 0: {named}. The tests "
            f"are not corrected for their number: at the 5 % level about {0.05 * n:.1f} of {n} would pass by "
            f"chance alone, so such cells are leads to re-test with more seeds, not findings.")


def two_se(diffs) -> tuple[float, float, str]:
    """Mean and SEM of paired differences, and where the mean stands: "noise" (fewer than two values,
    or no spread: nothing can be said), "within" (|mean| < 2 SEM), "above" or "below" (beyond two SEMs,
    positive or negative). The book's rule for calling a lead (chapter 10), not a significance test:
    with 3 seeds, 2 SEM is well short of a 95 % t interval (4.3 SEM)."""
    mean, sem = mean_sem(diffs)
    if not math.isfinite(sem) or sem == 0:
        return mean, sem, "noise"
    return mean, sem, "within" if abs(mean) < 2 * sem else ("above" if mean > 0 else "below")


def paired_diffs(frame: pd.DataFrame, what: str, *, a: str = "baseline", b: str = "RR+RA") -> pd.DataFrame:
    """Per seed that has both methods a and b: column `what` of each and the paired difference b - a
    (columns a, b, "difference"; index seed). `frame` has one row per (seed, method); `two_se` of the
    difference is chapter 10's rule for a lead."""
    wide = frame.pivot_table(index="seed", columns="method", values=what).reindex(columns=[a, b]).dropna()
    return wide.assign(difference=wide[b] - wide[a])


def paired_summary(frame: pd.DataFrame, what: str, *, a: str = "baseline", b: str = "RR+RA",
                   extra=("real data",), by: str = "scope", digits: int = 3) -> pd.DataFrame:
    """Chapter 10's tables: for each `by` group (in order of first appearance), "mean ± SEM" over seeds
    of column `what` for methods a, b and `extra`, of the paired difference b - a (seeds that have
    both), and the number of such seeds. `frame` has one row per (by, seed, method)."""
    wide = frame.pivot_table(index=[by, "seed"], columns="method", values=what)
    wide["difference"] = wide[b] - wide[a]
    out = {}
    for key, g in wide.groupby(level=by, sort=False):
        out[key] = {col: format_mean_sem(*mean_sem(g[col].dropna() if col in g else []), digits=digits)
                    for col in (a, b, "difference", *extra)}
        out[key]["seeds"] = int(g["difference"].notna().sum())
    order = [k for k in frame[by].unique() if k in out]
    return pd.DataFrame(out).T.loc[order]


def format_mean_sem(mean, sem, digits: int = 1) -> str:
    """ "m ± s" (just "m" when the SEM is nan, i.e. one seed; "–" when there is no value)."""
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {sem:.{digits}f}" if not math.isnan(sem) else f"{mean:.{digits}f}"


def format_p(p) -> str:
    """A p-value for prose and tables: "0.013", "< 0.001", or "–" when there is none (fewer than 2 seeds)."""
    return "–" if p is None or math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def format_table1(frame: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Display version of `table1_frame`, two columns per metric so it fits a page: "mean ± SEM"
    accuracy, and the change against the baseline in the paper's "abs / rel" format with, below it,
    its 95 % CI (t interval, points) and the paired p-value (cells hold `<br>` line breaks; a Styler
    renders them as HTML). "–" where a number does not exist (the baseline's change, one seed)."""
    out = pd.DataFrame(index=frame.index)
    for m in metrics:
        name = METRIC_NAMES[m]
        out[(name, "acc. % (± SEM)")] = [format_mean_sem(a, s) for a, s in zip(frame[f"{m}_mean"], frame[f"{m}_sem"])]
        cells = []
        for a, r, lo, hi, p in zip(frame[f"{m}_abs"], frame[f"{m}_rel"], frame[f"{m}_ci_low"],
                                   frame[f"{m}_ci_high"], frame[f"{m}_p"]):
            if math.isnan(a):
                cells.append("–")
                continue
            ci = "CI –" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
            cells.append(f"{a:+.2f} / {r:+.2f} %<br>{ci}<br>p {format_p(p)}")
        out[(name, "change: abs / rel, 95 % CI, p")] = cells
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    out.insert(0, ("", "runs"), frame["n"].astype(int).to_numpy())
    out.index.name = None
    return out


def plot_table1_forest(frame: pd.DataFrame, metrics=METRICS, *, paper: bool = True, title: str | None = None):
    """Forest plot of `table1_frame`: per metric, each row's mean paired difference against the
    baseline (points) with its 95 % CI, a line at 0 and, for the code variant, the paper's claimed
    CIFAR-100 gain at the same f (open diamonds). A row whose CI excludes 0 is drawn filled."""
    plt = _plt()
    rows = frame.iloc[1:]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.55 * len(rows) + 1.6), sharey=True)
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
    axes[-1].legend(loc="lower right", fontsize=8, frameon=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def metric_summary(groups: dict[str, list[dict]], metrics=("overall", "first50", "first20", "task1",
                                                          "forgetting", "bwt")) -> pd.DataFrame:
    """Mean and SEM over seeds, in percent (points for forgetting and BWT), for groups of runs such as
    {"BI-R + SI": [...], "fine-tuning": [...]}. Columns <metric>_mean, <metric>_sem, plus n."""
    rows = []
    for label, runs in groups.items():
        out = dict(group=label, n=len(runs))
        for m in metrics:
            out[f"{m}_mean"], out[f"{m}_sem"] = mean_sem(100 * metric_value(r, m) for r in runs)
        rows.append(out)
    return pd.DataFrame(rows).set_index("group")


def learned_accuracy(runs) -> list[float]:
    """Accuracy (%) on each task right after learning it (the diagonal of acc_matrix_seen, the argmax
    over the classes seen so far, as BWT uses it: metrics.summarise), mean over runs: how well each task
    was learned, before any forgetting."""
    diag = np.array([[r["acc_matrix_seen"][t][t] for t in range(len(r["acc_matrix_seen"]))] for r in runs],
                    dtype=float)
    return (100 * diag.mean(0)).tolist()


def format_summary(summary: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    metrics = [c[:-5] for c in summary.columns if c.endswith("_mean")]
    out = pd.DataFrame(index=summary.index)
    out["runs"] = summary["n"].astype(int)
    for m in metrics:
        out[METRIC_NAMES.get(m, m)] = [format_mean_sem(a, s, digits) for a, s in zip(summary[f"{m}_mean"], summary[f"{m}_sem"])]
    out.index.name = None
    return out

# -----------------------------------------------------------------------------
# 3. what the RR / RA runs logged


def competition_frame(results) -> pd.DataFrame:
    """One row per RR run and task (t >= 2) from `rr_stats`: how many replayed samples had a competitor.

    share_competitive = n_competitive / n_replayed; pairs_per_competitive = RR terms per competitive
    sample, n_kept / n_competitive (code variant: at most 1, the runner-up, kept when some sample of the
    batch represents it; paper variant: every class above the threshold, so >= 1); applied_share =
    the share of iterations in which RR / RA were applied (the code variant skips a batch with no
    competitive sample, appendix §8.3 item 4)."""
    rows = []
    for r in results:
        if not is_rr(r):
            continue
        c = r["config"]
        for st in r.get("rr_stats", []):
            iters = st["n_replayed"] / c["batch_replay"]
            rows.append(dict(stamp=r["stamp"], variant=c.get("rr_variant", "code"), f=c.get("rep_f"), seed=r["seed"],
                             task=st["task"], n_replayed=st["n_replayed"], n_competitive=st["n_competitive"],
                             n_kept=st["n_kept"], n_applied=st["n_applied"],
                             share_competitive=st["n_competitive"] / st["n_replayed"] if st["n_replayed"] else float("nan"),
                             pairs_per_competitive=st["n_kept"] / st["n_competitive"] if st["n_competitive"] else float("nan"),
                             applied_share=st["n_applied"] / iters if iters else float("nan")))
    return pd.DataFrame(rows, columns=["stamp", "variant", "f", "seed", "task", "n_replayed", "n_competitive", "n_kept",
                                       "n_applied", "share_competitive", "pairs_per_competitive", "applied_share"])


def competition_by_f(results) -> pd.DataFrame:
    """`competition_frame` averaged over tasks and seeds, per (variant, f), shares in percent."""
    cf = competition_frame(results)
    if cf.empty:
        return pd.DataFrame(columns=["variant", "f", "competitive %", "RR pairs per competitive sample", "batches applied %"])
    g = cf.groupby(["variant", "f"])
    out = pd.DataFrame({
        "competitive %": 100 * g["share_competitive"].mean(),
        "RR pairs per competitive sample": g["pairs_per_competitive"].mean(),
        "batches applied %": 100 * g["applied_share"].mean(),
        "runs": g["stamp"].nunique(),
    })
    return out.reset_index()


def applied_by_task(results) -> pd.DataFrame:
    """The share of iterations (%) in which RR / RA were applied, per run (rows: variant, f, seed) and
    task (columns, t >= 2): what `competition_by_f`'s mean over tasks hides. In the code variant a
    batch with no competitive sample skips both terms (appendix §8.3 item 4), so the share can differ
    widely between tasks and between runs of one task."""
    cf = competition_frame(results)
    if cf.empty:
        return pd.DataFrame()
    out = cf.pivot_table(index=["variant", "f", "seed"], columns="task", values="applied_share", aggfunc="mean")
    out.columns.name = "task"
    return 100 * out


def busiest_classes(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k x k corner of a square pair-count frame with the most pairs (row + column sums)."""
    if len(frame) <= k:
        return frame
    load = frame.sum(axis=0).to_numpy() + frame.sum(axis=1).to_numpy()
    keep = np.sort(np.argsort(-load, kind="stable")[:k])
    return frame.iloc[keep, keep]


def pair_counts(r: dict, tasks=None) -> pd.DataFrame:
    """Counts of (label, competitor) pairs that entered RR, summed over the logged tasks (or `tasks`),
    as a C_seen x C_seen frame: rows = label (the sample's class), columns = competitor, class names.
    C_seen: the code variant's labels and competitors are the teacher's, over the classes of tasks
    1 .. T-1 (appendix §8.3); the paper variant's are the current model's, over every class seen so far,
    the last task's included (appendix §9.1 item 7)."""
    names = r["class_names"]
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    for st in r.get("rr_stats", []):
        if tasks is None or st["task"] in tasks:
            for a, b, n in st["pairs"]:
                counts[a, b] += n
    paper = r.get("config", {}).get("rr_variant") == "paper"
    seen = max(1, (r["n_tasks"] - (0 if paper else 1)) * r["classes_per_task"])
    frame = pd.DataFrame(counts[:seen, :seen], index=names[:seen], columns=names[:seen])
    frame.index.name, frame.columns.name = "label", "competitor"
    return frame


def top_pairs(results, k: int = 10) -> pd.DataFrame:
    """The k most frequent (label, competitor) pairs by class *name*, summed over runs (class orders
    differ between seeds, so pairs are matched by name, not by label index). Unordered pairs are
    not merged: "cat -> dog" and "dog -> cat" are separate rows."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    total = 0
    for r in results:
        names = r["class_names"]
        for st in r.get("rr_stats", []):
            for a, b, n in st["pairs"]:
                counts[(names[a], names[b])] += n
                total += n
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    frame = pd.DataFrame([dict(label=a, competitor=b, count=n, share=100 * n / total if total else float("nan"))
                          for (a, b), n in rows], columns=["label", "competitor", "count", "share"])
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    return frame


def rr_magnitude_frame(results) -> pd.DataFrame:
    """The raw RR and RA values the runs logged (loss_traces, tasks >= 2), next to the replay
    reconstruction loss they are added to, per (variant, f), mean over logged iterations and seeds.

    rr, ra: the unweighted terms; weighted_rr = lambda_RR * rr (what enters the replay loss, before the
    (1 - 1/t) factor); share_of_recon = weighted_rr / recon_r; grad_scale = lambda_RR * rr^2, a rough
    size of RR's gradient relative to the reconstruction loss's (d(lambda/e)/de = -lambda/e^2, and
    rr ~ 1/e; appendix §9.4)."""
    rows = []
    for r in results:
        if not is_rr(r):
            continue
        c = r["config"]
        tr = [t for t in r["loss_traces"] if t["task"] >= 2]
        if not tr:
            continue
        cat = lambda key: np.concatenate([np.asarray(t[key], dtype=float) for t in tr])
        rr, ra, rec = cat("rr"), cat("ra"), cat("recon_r")
        rows.append(dict(variant=c.get("rr_variant", "code"), f=c.get("rep_f"), seed=r["seed"],
                         lambda_rr=c["lambda_rr"], lambda_ra=c["lambda_ra"], rr=rr.mean(), ra=ra.mean(),
                         recon_r=rec.mean(), weighted_rr=c["lambda_rr"] * rr.mean(), weighted_ra=c["lambda_ra"] * ra.mean(),
                         share_of_recon=(c["lambda_rr"] * rr / np.where(rec > 0, rec, np.nan)).mean(),
                         grad_scale=(c["lambda_rr"] * rr ** 2).mean()))
    cols = ["variant", "f", "seed", "lambda_rr", "lambda_ra", "rr", "ra", "recon_r", "weighted_rr", "weighted_ra",
            "share_of_recon", "grad_scale"]
    frame = pd.DataFrame(rows, columns=cols)
    if frame.empty:
        return frame.drop(columns="seed")
    return frame.groupby(["variant", "f"]).mean(numeric_only=True).drop(columns="seed").reset_index()


def replay_probabilities(model, classes, n_per_class: int = 8, *, seed: int = 0, n_active: int | None = None,
                         temperature: float = 1.0):
    """Replay from a trained K=1 BIR, and the model's own softmax on it: what the competitor rule sees.

    Draws `n_per_class` latent samples for each class in `classes` (z from the class's GMM mode, eps
    from a CPU generator seeded with `seed`), decodes them (`model.sample`), classifies them
    (`model.classify`) and returns (generated class (N,), probabilities (N, n_active)) as tensors,
    softmax at `temperature` over the first `n_active` classes (default: all)."""
    import torch
    import torch.nn.functional as F
    classes = torch.as_tensor(list(classes), dtype=torch.long).repeat_interleave(n_per_class)   # (N,)
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    eps = torch.randn(1, len(classes), model.Z, generator=gen).to(dev)                           # (1,N,Z)
    with torch.no_grad():
        x_ = model.sample(classes[None].to(dev), eps)                                             # (1,N,D)
        logits = model.classify(x_)[0, :, :n_active or model.C].float().cpu()                    # (N,C')
    return classes, F.softmax(logits / temperature, dim=-1)


def example_samples(p, f: float) -> list[int]:
    """Up to three row indices of p (N, C) that show the rule at f: the sample with the most
    competitors, one with exactly one competitor, and one with none (each only if it exists)."""
    import torch
    from birr.losses import competing_classes
    n_comp = competing_classes(torch.as_tensor(p), float(f))[2].sum(-1)          # (N,)
    picks = [int(n_comp.argmax())] if n_comp.max() > 0 else []
    for want in (1, 0):
        idx = (n_comp == want).nonzero().flatten().tolist()
        if idx and idx[0] not in picks:
            picks.append(idx[0])
    return picks


def competitor_share_vs_f(p, factors) -> pd.DataFrame:
    """For probabilities p (N, C): share of samples with at least one competitor, and the mean number
    of competitors per sample (over all N, those with none included) and per competitive sample (over
    those with at least one; nan when there are none), at each f (paper rule,
    `birr.losses.competing_classes`). The two means differ by the share: 1.0 per sample at a 33 %
    share is 3 per competitive sample."""
    import torch
    from birr.losses import competing_classes
    p = torch.as_tensor(p)
    rows = []
    for f in factors:
        _, _, comp = competing_classes(p, float(f))
        n, has = comp.sum(-1).float(), comp.any(-1)
        rows.append(dict(f=float(f), share_competitive=100 * has.float().mean().item(),
                         competitors_per_sample=n.mean().item(),
                         competitors_per_competitive_sample=n[has].mean().item() if has.any() else float("nan")))
    return pd.DataFrame(rows)

# -----------------------------------------------------------------------------
# 4. figures


def _plt():
    import matplotlib.pyplot as plt
    return plt


def _acc_array(matrix) -> np.ndarray:
    return np.array([[np.nan if v is None else 100 * v for v in row] for row in matrix], dtype=float)


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
    ignored) with the threshold p_max / f as a dashed line (rule: `birr.losses.competing_classes`).
    With more than `max_bars` classes only the `max_bars` most probable are drawn, most probable first;
    the rule is always applied to the whole vector."""
    import torch
    from birr.losses import competing_classes
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


def fig3_frame(results) -> pd.DataFrame:
    """Tidy rows for Fig. 3: method ("BL" / "RR"), iters per task, seed, and the three metrics in percent."""
    rows = [dict(method="RR" if is_rr(r) else "BL", label=run_label(r), iters=r["config"]["iters"], seed=r["seed"],
                 **{m: 100 * metric_value(r, m) for m in METRICS}) for r in results]
    return pd.DataFrame(rows, columns=["method", "label", "iters", "seed", *METRICS])


def fig3_gap_frame(results, metrics=METRICS) -> pd.DataFrame:
    """RR+RA minus baseline at each iterations-per-task setting, paired by seed (points): columns
    <metric>_diff, <metric>_p, <metric>_ci_low, <metric>_ci_high, n_paired; index iters."""
    rows = []
    for iters in sorted({r["config"]["iters"] for r in results}):
        at = [r for r in results if r["config"]["iters"] == iters]
        rr = by_seed([r for r in at if is_rr(r)], f"RR+RA at {iters} iterations")
        bl = by_seed([r for r in at if not is_rr(r)], f"the baseline at {iters} iterations")
        out = dict(iters=iters)
        for m in metrics:
            st = paired_stats({s: 100 * metric_value(r, m) for s, r in rr.items()},
                              {s: 100 * metric_value(r, m) for s, r in bl.items()})
            out.update({f"{m}_diff": st["mean_diff"], f"{m}_p": st["p"], f"{m}_ci_low": st["ci_low"],
                        f"{m}_ci_high": st["ci_high"], "n_paired": st["n"]})
        rows.append(out)
    return pd.DataFrame(rows).set_index("iters")


def finished(cfgs, results_dir=None) -> list[dict]:
    """The stored results among `cfgs`, loaded by stamp and never trained: what a page shows of a
    budget it does not train itself (the full-budget runs a lent GPU has made so far)."""
    from birr.train import default_results_dir, load_result
    d = results_dir if results_dir is not None else default_results_dir()
    return [r for c in cfgs if (r := load_result(d, c)) is not None]


def paired_points(results) -> list[dict]:
    """The results at the iteration counts where RR+RA and the baseline have the same seeds (at least
    one), so fig3_gap_frame can pair every point; the others are left out."""
    keep = []
    for iters in sorted({r["config"]["iters"] for r in results}):
        at = [r for r in results if r["config"]["iters"] == iters]
        rr, bl = {r["seed"] for r in at if is_rr(r)}, {r["seed"] for r in at if not is_rr(r)}
        if rr and rr == bl:
            keep += at
    return keep


def plot_fig3(results, *, full=None, title: str | None = None):
    """The paper's Fig. 3 redrawn: final test accuracy against iterations per task, (a) overall, (b) first
    50 %, (c) first 20 %; one point per seed, lines through the means; RR+RA ("RR") and baseline ("BL").
    The bottom row is what the top row hides when the lines overlap: RR − BL paired by seed, with its
    95 % CI. `full`: runs of the full budget (another width and batch), drawn as open markers with
    dotted lines on the same axes and labelled as such; only points paired by seed are drawn."""
    plt = _plt()
    budgets = [("", results)] + ([("full budget ", paired_points(full))] if full else [])
    budgets = [(name, rs) for name, rs in budgets if rs]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4), sharex=True, gridspec_kw=dict(height_ratios=[3, 2]))
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
    axes[0, -1].legend(fontsize=7, loc="best")
    axes[1, -1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_loss_traces(r: dict, terms=("recon_r", "rr", "ra")):
    """Logged loss terms of one run over all iterations (tasks one after another)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), 2.8), squeeze=False)
    offset = 0
    for tr in r["loss_traces"]:
        x = [offset + i for i in tr["iters"]]
        for ax, term in zip(axes[0], terms):
            ax.plot(x, tr[term], lw=1, color="tab:blue")
        offset += tr["iters"][-1] if tr["iters"] else 0
    for ax, term in zip(axes[0], terms):
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("iteration (all tasks)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
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

# -----------------------------------------------------------------------------
# 5. data, encoder and status helpers

# The CIFAR-100 fine labels in their standard (alphabetical) order, so that the class order of appendix §2
# can be named without downloading the archive (appendix §2 names tasks 1 and 2 the same way).
CIFAR100_FINE_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


def cifar100_order_frame(seed: int = 0, n_tasks: int = 10) -> pd.DataFrame:
    """The CIFAR-100 class order of appendix §2 for `seed`: one row per task, "original id name" per
    position, from birr.data.class_order (no download needed)."""
    from birr.data import class_order
    order = class_order(100, seed)
    cpt = 100 // n_tasks
    rows = {f"task {t + 1}": [f"{o} {CIFAR100_FINE_NAMES[o]}" for o in order[t * cpt:(t + 1) * cpt]]
            for t in range(n_tasks)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[f"+{j}" for j in range(cpt)])


def class_order_frame(benches: dict[int, object]) -> pd.DataFrame:
    """Which classes each task holds, per seed: {seed: Benchmark} -> rows = task, columns = seed."""
    any_b = next(iter(benches.values()))
    rows = {}
    for t in range(1, any_b.n_tasks + 1):
        rows[f"task {t}"] = {f"seed {s}": ", ".join(b.class_names[c] for c in b.task_classes(t)) for s, b in benches.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def nearest_mean_accuracy(train_x, train_y, test_x, test_y) -> float:
    """Test accuracy of the nearest-class-mean classifier on fixed features: how well the frozen
    encoder already separates the classes, with no training at all."""
    import torch
    train_x, test_x = torch.as_tensor(train_x).float(), torch.as_tensor(test_x).float()
    train_y, test_y = torch.as_tensor(train_y).long(), torch.as_tensor(test_y).long()
    C = int(max(train_y.max(), test_y.max())) + 1
    means = torch.zeros(C, train_x.shape[1]).index_add_(0, train_y, train_x)
    means /= torch.bincount(train_y, minlength=C).clamp_min(1)[:, None].float()    # (C,D)
    pred = torch.cdist(test_x, means).argmin(1)
    return float((pred == test_y).float().mean())


def encoder_layer_frame() -> pd.DataFrame:
    """The conv stack of appendix §3, read off birr.encoder.ConvEncoder: output shape and parameters per layer."""
    import torch
    from birr.encoder import ConvEncoder
    enc = ConvEncoder().eval()
    x = torch.zeros(1, 3, 32, 32)
    rows, layer = [], 0
    mods = list(enc.layers)
    i = 0
    while i < len(mods):
        conv = mods[i]
        group = [conv]
        i += 1
        while i < len(mods) and not isinstance(mods[i], torch.nn.Conv2d):
            group.append(mods[i])
            i += 1
        with torch.no_grad():
            for m in group:
                x = m(x)
        layer += 1
        rows.append(dict(layer=f"L{layer}", operation=" -> ".join(type(m).__name__ for m in group),
                         kernel=f"{conv.kernel_size[0]}x{conv.kernel_size[1]}", stride=conv.stride[0],
                         output=" x ".join(map(str, x.shape[1:])),
                         parameters=sum(p.numel() for m in group for p in m.parameters())))
    return pd.DataFrame(rows).set_index("layer")


def status_rows(results) -> pd.DataFrame:
    """One row per distinct run (by stamp): what ran, on which data and device, at which commit, how long.

    `git_sha` ends in "+" when the tree that trained the run had uncommitted changes. Runs of the same
    shapes train together as one stacked model (`birr.run_many`), so a run has no wall time of its
    own: `stacked` is how many runs trained together and `stack_seconds` the whole stack's wall time
    (training and setup), the same on each of its rows. A result stores its share,
    `wall_time_s` = stack time / K; a run stored before `stacked_with` existed trained alone."""
    rows, seen = [], set()
    for r in results:
        if r["stamp"] in seen:
            continue
        seen.add(r["stamp"])
        prov = r.get("provenance", {})
        k = int(r.get("stacked_with", 1))
        rows.append(dict(stamp=r["stamp"], method=run_label(r), dataset=r["dataset"], budget=r["budget"], seed=r["seed"],
                         iters=r["config"].get("iters"), device=_device_of(r),
                         git_sha=str(prov.get("git_sha", "?"))[:12] + ("+" if prov.get("git_dirty") else ""),
                         stacked=k, stack_seconds=round(k * float(r.get("wall_time_s", float("nan"))), 1)))
    return pd.DataFrame(rows, columns=["stamp", "method", "dataset", "budget", "seed", "iters", "device", "git_sha",
                                       "stacked", "stack_seconds"])


RUNS_NOTE = ("Runs of the same shapes train together as one stacked model: 'stacked' is how many, "
             "'stack_seconds' the whole stack's wall time; a '+' after the git sha marks uncommitted changes.")


def runs_table(results):
    """`status_rows` indexed by stamp, captioned with what its columns mean (each chapter's "Runs on
    this page")."""
    return status_rows(results).set_index("stamp").style.set_caption(RUNS_NOTE).format(precision=1)


def _seed_text(seeds) -> str:
    s = sorted(seeds)
    if not s:
        return "–"
    return f"{s[0]}-{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 2 else ", ".join(map(str, s))


def _machine_of(r: dict) -> str:
    """"cpu (Intel Xeon)" or "cuda (NVIDIA H200)": the device and, where recorded, its model."""
    prov = r.get("provenance", {})
    dev = str(prov.get("device") or r.get("config", {}).get("device", "?")).split(":")[0]
    return f"{dev} ({prov['device_name']})" if prov.get("device_name") else dev


def coverage_targets(seeds=(0, 1, 2, 3, 4)) -> list[tuple[str, list]]:
    """What the paper reports, as the configs that would reproduce it at each fidelity the book knows:
    Table 1 and Fig. 3 at the short CPU budget on the CIFAR-10 proxy, at the full budget on the proxy
    (a GPU's job) and on CIFAR-100 (the paper's own setting), and the paper's setting at its width."""
    from birr import config as C
    out = []
    for dataset, budget in (("cifar10-jpg", "short"), ("cifar10-jpg", "full"), ("cifar100", "full")):
        out.append(("Table 1", C.table1_page_configs(budget=budget, dataset=dataset, seeds=seeds)))
        out.append(("Fig. 3", C.fig3_configs(budget=budget, dataset=dataset, seeds=seeds)))
    out.append(("Table 1, f = 20 only, at the paper's width",
                C.sweep_configs(lambdas=(1e-6,), fc_units=2000, bf16=True, seeds=seeds)))
    return out


def coverage_frame(results_dir=None, seeds=(0, 1, 2, 3, 4)) -> pd.DataFrame:
    """One row per paper result and fidelity: the dataset, iterations per task, batch, width and
    seeds of the configs that reproduce it, and how many of them are stored (with the devices that
    trained them). The three columns of Table 1 (first 20 %, first 50 %, overall) come from the same
    runs, so they share a row."""
    rows = []
    for what, cfgs in coverage_targets(seeds):
        done = finished(cfgs, results_dir)
        iters = sorted({c.iters for c in cfgs})
        rows.append({
            "paper result": what,
            "dataset": DATASET_SHORT.get(cfgs[0].dataset, cfgs[0].dataset),
            "iterations per task": ", ".join(map(str, iters)),
            "batch": cfgs[0].batch,
            "width (fc)": cfgs[0].fc_units,
            "seeds stored": _seed_text({r["seed"] for r in done}),
            "runs stored": f"{len(done)} of {len(cfgs)}",
            "budget": cfgs[0].budget,
            "device": ", ".join(sorted({_machine_of(r) for r in done})) or "–",
        })
    return pd.DataFrame(rows)
