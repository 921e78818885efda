"""The book's statistics: paired comparisons by seed (t-test and t interval), mean ± SEM, the two-SE
rule of the exaggeration chapter, and how a number is written in prose and tables."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from birr.metrics import mean_sem  # the one copy of the book's mean ± SEM (R.mean_sem in the notebooks)


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
