"""Sentences the chapters print, computed from their tables: what the data can show, which f does best,
and which differences stand beyond noise."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from birr.book.paper import METRIC_NAMES, METRICS
from birr.book.runs import fmt_f
from birr.book.stats import format_p


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
    name = f"f = {fmt_f(rows.loc[top.index[0], 'f'])}"
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
