"""Does RR + RA help? The statistics and frames behind the book's "Does it work?" chapter.

Read top to bottom: what a sweep cell is (one RR+RA setting, paired by seed with the shared baseline)
-> how often RR and RA were applied -> how large each loss term's gradient was -> the tests a reviewer
asks for (Holm's correction over a table, an equivalence test against the paper's gains, the power
of the paper's own design) -> the verdict sentence; the other sentences are in verdict_prose, the figures in verdict_figures.

Numbers are percentage points of accuracy unless said otherwise; a "difference" is RR+RA minus the
baseline of the same seed.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from birr.book import METRIC_NAMES, METRICS, by_seed, is_rr, metric_value, paired_stats

# The paper's claimed gains at f = 20 (its Table 1, CIFAR-100, 5 runs): points over the baseline.
PAPER_GAINS_F20 = {"first20": 4.80, "first50": 4.86, "overall": 1.48}
# ... and the largest gain it reports in each column, at any f (Table 1: f = 10 for the first 20 %).
PAPER_GAINS_MAX = {"first20": 5.80, "first50": 4.86, "overall": 1.48}

# -----------------------------------------------------------------------------
# 1. a sweep: every RR+RA setting against the one baseline


def setting(r: dict) -> tuple[str, float, float]:
    """(variant, lambda, f) of an RR+RA run: the coordinates of its sweep cell."""
    c = r["config"]
    return c.get("rr_variant", "code"), float(c["lambda_rr"]), float(c["rep_f"]) if c.get("rep_f") else float("nan")


def applied_shares(r: dict) -> pd.DataFrame:
    """Per task from task 2 on (the first has no replay): the share of iterations in which the RR term
    and the RA term were non-zero, in percent. RR needs a replayed sample whose competitor passes the f
    gate (and, in the code variant, whose competitor is another sample's label); RA in the code
    variant needs the f gate to open, in the paper variant it acts in every iteration."""
    rows = []
    for s in r.get("rr_stats", []):
        iters = s.get("iters", r["config"]["iters"])
        # runs logged before the RR and RA counts were split: the f gate, RA's count in the code variant
        # and an upper bound of RR's (RR needs the gate and a competitor that is some sample's label)
        rr, ra = s.get("n_rr_applied", s["n_applied"]), s.get("n_ra_applied", s["n_applied"])
        rows.append(dict(task=s["task"], rr=100.0 * rr / iters, ra=100.0 * ra / iters))
    return pd.DataFrame(rows, columns=["task", "rr", "ra"])


def sweep_frame(results, metrics=METRICS) -> pd.DataFrame:
    """One row per RR+RA setting (variant, lambda, f) among `results`, against the baseline runs of the
    same seeds (method 'bir+si' without RR/RA). Columns per metric m: m_diff (mean paired difference,
    points), m_ci_low / m_ci_high (95 % t interval), m_p (paired t-test), m_sd (SD of the differences);
    plus n (paired seeds), rr_applied / ra_applied (percent of replay iterations, mean over seeds and
    tasks 2..T) and rr_applied_task2 (task 2 alone, where the fewest old classes compete)."""
    base = by_seed([r for r in results if r["method"] == "bir+si" and not is_rr(r)], "the baseline")
    if not base:
        raise ValueError("sweep_frame: no baseline runs (method 'bir+si') among the results")
    cells: dict[tuple, list] = {}
    for r in results:
        if is_rr(r):
            cells.setdefault(setting(r), []).append(r)
    rows = []
    for (variant, lam, f), runs in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        runs_by_seed = by_seed(runs, f"{variant} lambda={lam:g} f={f:g}")
        row = dict(variant=variant, lam=lam, f=f)
        for m in metrics:
            treated = {s: 100 * metric_value(r, m) for s, r in runs_by_seed.items()}
            st = paired_stats(treated, {s: 100 * metric_value(r, m) for s, r in base.items()})
            d = [treated[s] - 100 * metric_value(base[s], m) for s in treated if s in base]
            row.update({f"{m}_diff": st["mean_diff"], f"{m}_ci_low": st["ci_low"], f"{m}_ci_high": st["ci_high"],
                        f"{m}_p": st["p"], f"{m}_sd": float(np.std(d, ddof=1)) if len(d) > 1 else float("nan")})
            row["n"] = st["n"]
        shares = pd.concat([applied_shares(r).assign(seed=s) for s, r in runs_by_seed.items()])
        row["rr_applied"], row["ra_applied"] = shares["rr"].mean(), shares["ra"].mean()
        row["rr_applied_task2"] = shares.loc[shares["task"] == 2, "rr"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def acting_lambda(frame: pd.DataFrame, variant: str = "code", metrics=METRICS, min_points: float = 1.0) -> float | None:
    """The smallest lambda of `variant` at which accuracy moves: in some metric the mean paired
    difference is at least `min_points` points either way and its 95 % CI excludes 0. The size
    threshold keeps a shift far below any claimed effect (the paper's gains are 1.5-5.8 points) from
    being called a move just because the seeds agree on it. None if no lambda of the sweep moves it."""
    rows = frame[frame["variant"] == variant].sort_values("lam")
    for _, row in rows.iterrows():
        if any((row[f"{m}_ci_low"] > 0 or row[f"{m}_ci_high"] < 0) and abs(row[f"{m}_diff"]) >= min_points
               for m in metrics):
            return float(row["lam"])
    return None

# -----------------------------------------------------------------------------
# 2. gradient shares (Config.grad_every)


def grad_share_frame(r: dict) -> pd.DataFrame:
    """A run's logged gradient norms as a long frame: task, iter, step (iterations since the run began),
    group (decoder / fcE), term, norm, and share = the term's norm over the sum of every term's norm in
    that group at that iteration (0 where all are 0)."""
    if "grad_norms" not in r:
        raise ValueError(f"run {r['stamp']} logged no gradient norms; train it with grad_every > 0")
    iters = r["config"]["iters"]
    rows = []
    for g in r["grad_norms"]:
        for group in ("decoder", "fcE"):
            for term, norms in g[group].items():
                for it, v in zip(g["iters"], norms):
                    rows.append(dict(task=g["task"], iter=it, step=(g["task"] - 1) * iters + it,
                                     group=group, term=term, norm=v))
    frame = pd.DataFrame(rows)
    total = frame.groupby(["task", "iter", "group"])["norm"].transform("sum")
    frame["share"] = np.where(total > 0, frame["norm"] / total.where(total > 0, 1.0), 0.0)
    return frame


def mean_grad_shares(results, group: str = "decoder", first_task: int = 2) -> pd.Series:
    """Each term's share of the gradient norm in `group` (percent), averaged over the logged iterations
    of tasks first_task.. and over the runs: one number per term, the bar a reader compares."""
    frames = [grad_share_frame(r) for r in results]
    frame = pd.concat(frames)
    frame = frame[(frame["group"] == group) & (frame["task"] >= first_task)]
    return 100 * frame.groupby("term", sort=False)["share"].mean()

# -----------------------------------------------------------------------------
# 2b. separation of replayed classes (the positive control)


def separation(features_by_class: dict, rr_result: dict) -> dict:
    """The separation ratio rho of the exaggeration chapter (birr.lens.exaggeration: distance between two
    class means over their mean spread) averaged over the pairs an RR+RA run logged as competing, each
    weighted by how often it competed over all tasks. Returns distance, spread, ratio, n_pairs."""
    from birr import lens as viz
    scopes = viz.pair_scopes(rr_result)
    pairs = list(scopes["all tasks"][["a", "b"]].itertuples(index=False, name=None))
    return viz.weighted_ratio(viz.exaggeration(features_by_class, pairs), scopes["all tasks"])


def model_separation(model, rr_result: dict, n_per_class: int = 500, seed: int = 0) -> dict:
    """`separation` of a trained model's replay: n_per_class generated feature vectors for every class
    that was ever replayed (tasks 1..T-1), the same latent noise for every model asked with one seed."""
    from birr import lens as viz
    n_old = (rr_result["n_tasks"] - 1) * rr_result["classes_per_task"]
    return separation(viz.by_class(*viz.replay_features(model, range(n_old), n_per_class, seed=seed)), rr_result)


# -----------------------------------------------------------------------------
# 3. the tests a reviewer asks for


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaNs are left out of the family and kept as
    NaN): sort ascending, multiply the i-th smallest (from 0) by (m - i), carry the running maximum, cap
    at 1. It controls the chance of any false positive in the family at the nominal level, like
    Bonferroni, but rejects more."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    idx = np.flatnonzero(ok)[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, j in enumerate(idx):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def tost(diffs, low: float, high: float) -> dict:
    """Two one-sided t-tests of paired differences against the interval (low, high): p_low tests
    H0 mean <= low, p_high tests H0 mean >= high; p = max of the two (equivalence within the interval
    when p < alpha). With low = -inf only the upper test is made: "a gain as large as `high` is
    excluded" when p_high < 0.05, which is the same as the one-sided 95 % upper bound (the 90 % CI's
    upper end) lying below `high`."""
    from scipy import stats
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n < 2:
        raise ValueError(f"tost needs at least 2 differences, got {n}")
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        p_low = 0.0 if mean > low else 1.0
        p_high = 0.0 if mean < high else 1.0
    else:
        p_low = float(stats.t.sf((mean - low) / se, n - 1)) if math.isfinite(low) else 0.0
        p_high = float(stats.t.cdf((mean - high) / se, n - 1)) if math.isfinite(high) else 0.0
    upper = mean + float(stats.t.ppf(0.95, n - 1)) * se
    return dict(n=n, mean=mean, se=se, p_low=p_low, p_high=p_high, p=max(p_low, p_high), upper95=upper)


def detectable_difference(sd: float, n: int, *, paired: bool = False, alpha: float = 0.05,
                          power: float = 0.8) -> float:
    """The smallest true difference a two-sided t-test at `alpha` detects with probability `power`:
    unpaired with n runs per arm and run-to-run SD `sd` (the paper's design: 5 runs of each method), or
    paired with n pairs whose differences have SD `sd`. Solved on the noncentral t distribution."""
    from scipy import optimize, stats
    if n < 2 or not sd > 0:
        raise ValueError(f"detectable_difference needs n >= 2 and sd > 0, got n={n}, sd={sd}")
    df = n - 1 if paired else 2 * n - 2
    scale = sd * math.sqrt(1 / n if paired else 2 / n)     # the SE of the estimated difference
    crit = float(stats.t.ppf(1 - alpha / 2, df))

    def gap(delta):
        nc = delta / scale
        far = stats.nct.cdf(-crit, df, nc)     # the wrong tail: negligible here, and NaN in scipy's far tail
        return float(stats.nct.sf(crit, df, nc) + (far if math.isfinite(far) else 0.0)) - power
    hi = scale
    while gap(hi) < 0:                         # bracket the root: power grows with the difference
        hi *= 2
    return float(optimize.brentq(gap, 1e-9 * scale, hi))

# -----------------------------------------------------------------------------
# 4. the Findings sentences


def headline_tests(frame: pd.DataFrame, diffs_by_setting: dict, gains=PAPER_GAINS_F20, metrics=METRICS) -> pd.DataFrame:
    """The verdict table: for each row of `frame` (a sweep_frame) and metric, the paired difference and
    its CI, the raw and Holm-adjusted p-value (Holm over every cell of the table), and the equivalence
    test against the paper's gain in that column (p of "the gain is at least the paper's"; the gain is
    excluded at 95 % when it is < 0.05). diffs_by_setting: {(variant, lam, f): {metric: [diffs]}}."""
    rows = []
    for _, r in frame.iterrows():
        key = (r["variant"], r["lam"], r["f"])
        for m in metrics:
            d = diffs_by_setting[key][m]
            eq = tost(d, -math.inf, gains[m]) if len(d) >= 2 else dict(p_high=float("nan"), upper95=float("nan"))
            rows.append(dict(variant=r["variant"], lam=r["lam"], f=r["f"], metric=m, n=len(d), diff=r[f"{m}_diff"],
                             ci_low=r[f"{m}_ci_low"], ci_high=r[f"{m}_ci_high"], p=r[f"{m}_p"],
                             paper_gain=gains[m], p_paper_gain=eq["p_high"], upper95=eq["upper95"]))
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p"].to_numpy())
    return out


def paired_differences(results, metrics=METRICS) -> dict:
    """{(variant, lambda, f): {metric: [difference per seed, points]}} for every RR+RA setting in results."""
    base = by_seed([r for r in results if r["method"] == "bir+si" and not is_rr(r)], "the baseline")
    out: dict = {}
    for r in results:
        if is_rr(r) and r["seed"] in base:
            cell = out.setdefault(setting(r), {m: [] for m in metrics})
            for m in metrics:
                cell[m].append(100 * (metric_value(r, m) - metric_value(base[r["seed"]], m)))
    return out


def complete_pairs(results, min_seeds: int = 2) -> list[dict]:
    """The runs of a partly trained sweep that can be compared: each RR+RA setting with at least
    `min_seeds` seeds whose baseline is there too (its runs of those seeds only), and the baselines they
    pair with; [] when no setting has that many. What a page shows of a sweep still being trained."""
    base = {r["seed"]: r for r in results if not is_rr(r)}
    cells: dict = {}
    for r in results:
        if is_rr(r) and r["seed"] in base:
            cells.setdefault(setting(r), []).append(r)
    kept = [r for runs in cells.values() if len({r["seed"] for r in runs}) >= min_seeds for r in runs]
    seeds = sorted({r["seed"] for r in kept})
    return [base[s] for s in seeds] + kept


def verdict_sentence(tests: pd.DataFrame, variant: str = "code", lam: float = 1e-6, f: float = 20.0) -> str:
    """What the paper's own setting gave, in one sentence with its uncertainty: the three differences
    with their CIs, whether any survives Holm, and whether the paper's gains are excluded."""
    rows = tests[(tests["variant"] == variant) & np.isclose(tests["lam"], lam) & np.isclose(tests["f"], f)]
    if rows.empty:
        raise KeyError(f"verdict_sentence: no row for variant={variant!r}, lambda={lam:g}, f={f:g}")
    parts = [f"{METRIC_NAMES[r.metric]} by {ci_text(r['diff'], r.ci_low, r.ci_high)}" for _, r in rows.iterrows()]
    n = int(rows["n"].iloc[0])
    holm_ok = (rows["p_holm"] < 0.05).any()
    excluded = [METRIC_NAMES[r.metric] for _, r in rows.iterrows() if r.p_paper_gain < 0.05]
    text = (f"At the paper's setting (λ = {format_lambda(lam)}, f = {f:g}, {variant} variant, {n} seed{'s' * (n != 1)}), "
            f"RR + RA changes the " + ", ".join(parts) + " points (mean paired difference [95 % CI]). ")
    text += ("At least one of these differences survives Holm's correction over the table. " if holm_ok
             else "None of them survives Holm's correction over the table. ")
    if len(excluded) == len(rows):
        text += "Gains as large as the paper's are excluded at 95 % in all three columns."
    elif excluded:
        text += f"Gains as large as the paper's are excluded at 95 % for the {', '.join(excluded)} column(s) only."
    else:
        text += "Gains as large as the paper's cannot be excluded at 95 %."
    return text


def format_lambda(lam: float) -> str:
    """1e-06 -> '1e-6', 1.0 -> '1' (axis labels and table cells)."""
    if lam == 0:
        return "0"
    e = math.log10(lam)
    return f"1e{int(round(e))}" if abs(e - round(e)) < 1e-9 and round(e) != 0 else f"{lam:g}"


NBSP = "\u00a0"   # a space at which no line breaks


def ci_text(mean: float, lo: float, hi: float, digits: int = 2, table: bool = False) -> str:
    """'+0.12 [-0.31, +0.55]'; without an interval (one seed) just the mean; '–' without a mean.
    table=True joins the interval's ends with a no-break space, so a narrow table column breaks the
    cell between the mean and its interval, never inside the interval."""
    if mean is None or not math.isfinite(mean):
        return "–"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{mean:+.{digits}f}"
    return f"{mean:+.{digits}f} [{lo:+.{digits}f},{NBSP if table else ' '}{hi:+.{digits}f}]"

