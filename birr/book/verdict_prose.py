"""The sentences the "Does it work?" chapter and its Findings boxes print, each built from the numbers
of birr.book.verdict (never typed), and the table of setups side by side."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from birr.book import METRIC_NAMES, METRICS, is_rr
from birr.book.verdict_stats import PAPER_GAINS_F20, ci_text, format_lambda, setting, sweep_frame


def setups_frame(setups: dict, lambdas, metrics=("first20", "overall"), variant: str = "code",
                 f: float = 20.0) -> pd.DataFrame:
    """One row per setup ({name: results of one sweep_configs call}), one column per (lambda, metric):
    the paired difference with its 95 % CI as text, and the number of seeds. The table that says
    whether a finding survives a change of encoder, width or task split."""
    rows = []
    for name, results in setups.items():
        frame = sweep_frame(results, metrics)
        row = {"setup": name}
        for lam in lambdas:
            hit = frame[(frame["variant"] == variant) & np.isclose(frame["lam"], lam) & np.isclose(frame["f"], f)]
            for m in metrics:
                r = hit.iloc[0] if len(hit) else None
                row[f"λ = {format_lambda(lam)}, {METRIC_NAMES[m]}"] = (
                    ci_text(r[f"{m}_diff"], r[f"{m}_ci_low"], r[f"{m}_ci_high"], table=True) if r is not None else "–")
            if len(hit):
                row["seeds"] = int(hit.iloc[0]["n"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("setup")


def moved(frame: pd.DataFrame, lam: float, variant: str = "code", f: float = 20.0, metrics=METRICS) -> list[str]:
    """The metrics whose 95 % CI excludes 0 at (variant, lam, f) in a sweep_frame, e.g. ['first 20 % (+2.42)']."""
    hit = frame[(frame["variant"] == variant) & np.isclose(frame["lam"], lam) & np.isclose(frame["f"], f)]
    out = []
    for _, r in hit.iterrows():
        for m in metrics:
            if r[f"{m}_ci_low"] > 0 or r[f"{m}_ci_high"] < 0:
                out.append(f"{METRIC_NAMES[m]} ({r[f'{m}_diff']:+.2f})")
    return out


def lambda_sentence(frame: pd.DataFrame, lam_star: float | None, variant: str = "code", metrics=METRICS) -> str:
    """Where accuracy first moves along the lambda sweep, by how much, and what the largest lambda costs."""
    rows = frame[frame["variant"] == variant].sort_values("lam")
    if rows.empty:
        return f"No {variant}-variant runs in the sweep."
    top = rows.iloc[-1]
    cost = " / ".join(f"{top[f'{m}_diff']:+.1f}" for m in metrics)
    end = (f"At λ = {format_lambda(top['lam'])} RR + RA changes the first 20 % / first 50 % / overall accuracy by "
           f"{cost} points.")
    if lam_star is None:
        return f"No λ of the sweep moves accuracy by a point or more with a CI that excludes 0 ({variant} variant). " + end
    r = rows[np.isclose(rows["lam"], lam_star)].iloc[0]
    parts = [f"{METRIC_NAMES[m]} {ci_text(r[f'{m}_diff'], r[f'{m}_ci_low'], r[f'{m}_ci_high'])}" for m in metrics
             if (r[f"{m}_ci_low"] > 0 or r[f"{m}_ci_high"] < 0)]
    return (f"Accuracy first moves at λ = {format_lambda(lam_star)} ({variant} variant, {int(r['n'])} seeds): "
            + "; ".join(parts) + " points (95 % CI), "
            + f"{lam_star / 1e-6:,.0f} times the paper's λ. " + end)


def confirm_sentence(stats: dict, metric: str, lam: float, seeds) -> str:
    """The outcome of re-testing a lead on seeds it was not selected on (stats: paired_stats output)."""
    seeds = list(seeds)
    span = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    text = (f"Re-tested on {stats['n']} fresh seeds ({span}), λ = {format_lambda(lam)} changes the "
            f"{METRIC_NAMES[metric]} accuracy by {ci_text(stats['mean_diff'], stats['ci_low'], stats['ci_high'])} points")
    if not math.isfinite(stats["p"]):
        return text + "; one seed cannot test it."
    if stats["ci_low"] > 0:
        return text + f" (p = {stats['p']:.3f}): the gain holds on seeds it was not selected on."
    if stats["ci_high"] < 0:
        return text + f" (p = {stats['p']:.3f}): on fresh seeds it is a loss."
    return text + f" (p = {stats['p']:.2f}): the lead does not hold on seeds it was not selected on."


def grad_sentence(small: pd.Series, star: pd.Series | None, lam_small: float, lam_star: float | None) -> str:
    """RR's and RA's measured share of the decoder's gradient at the paper's lambda and where accuracy moves
    (small, star: mean_grad_shares outputs, percent)."""
    def share(s):
        return format_share(s.get("rr", 0.0) + s.get("ra", 0.0))
    text = (f"Measured, not estimated: at λ = {format_lambda(lam_small)} RR and RA together carry {share(small)} of the "
            f"gradient norm on the decoder (reconstruction: {small.get('reconstruction', 0.0):.3g} %)")
    if star is not None and lam_star is not None:
        text += f", at λ = {format_lambda(lam_star)} {share(star)}"
    return text + "."


def control_sentence(diff_paper, diff_act, base_mean: float, lam_paper: float, lam_act: float) -> str:
    """The positive control in one sentence: the paired change in the separation ratio rho of competing
    replay at the paper's lambda and at the acting one (diff_*: per-seed differences RR+RA - baseline)."""
    def part(d, lam):
        m, sem = float(np.mean(d)), float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
        pm = f" ± {sem:.3f} SEM" if math.isfinite(sem) else ""
        return f"λ = {format_lambda(lam)}: {m:+.3f}{pm} ({100 * m / base_mean:+.1f} % of the baseline's ρ)"
    return ("The separation ratio ρ of competing replay, the measure of exaggeration, moves by "
            f"{part(diff_paper, lam_paper)}, and by {part(diff_act, lam_act)}.")


def applied_sentence(per_task: pd.DataFrame) -> str:
    """How often RR acted, from a frame of applied_shares rows (task, rr, ra) over seeds: the range over
    seeds in task 2, where one old task is replayed, and the least share in any later task."""
    t2 = per_task[per_task["task"] == 2]["rr"]
    later = per_task[per_task["task"] > 2]["rr"]
    text = f"RR is applied in {t2.min():.1f}-{t2.max():.1f} % of task 2's iterations, depending on the seed"
    if len(later) and later.min() >= 99.95:      # "at least 100 %" would read as a rounding slip
        text += ", and in every iteration of every later task"
    elif len(later):
        text += f", and in at least {later.min():.0f} % of every later task's"
    return text + "."


def setups_sentence(moved_paper: dict, moved_act: dict, lam_paper: float, lam_act: float) -> str:
    """The table of setups in one sentence: in how many of them each lambda moves a column beyond its
    95 % CI, and which columns (moved_*: {setup: moved(...) at that lambda}, the same setups in both)."""
    n = len(moved_paper)

    def where(hits: dict) -> str:
        hit = {k: v for k, v in hits.items() if v}
        return f"{len(hit)} of {n}" + (" (" + "; ".join(f"{k}: {', '.join(v)}" for k, v in hit.items()) + ")"
                                       if hit else "")
    return (f"Across {n} setups ({'; '.join(moved_paper)}), the paper's λ = {format_lambda(lam_paper)} moves a column "
            f"beyond its 95 % CI in {where(moved_paper)}, and λ = {format_lambda(lam_act)} in {where(moved_act)}.")


def fidelity_sentence(label: str, n_seeds: int, wide_runs: list, n_runs: int) -> str:
    """What the findings rest on: the data and budget (label), the seeds per setting (naming the
    full-width setup where it has fewer), and how many distinct stored runs the chapter read."""
    n_wide, c = len({r["seed"] for r in wide_runs}), wide_runs[0]["config"]
    fewer = f" ({n_wide} at fc {c['fc_units']} for {c['iters']} iterations per task)" if n_wide < n_seeds else ""
    return (f"Measured on {label}, with {n_seeds} seeds per setting{fewer}, each paired by seed with its baseline; "
            f"{n_runs} stored runs behind these findings.")


def f_note(frame: pd.DataFrame, lam: float, variant: str = "code", metrics=METRICS) -> str:
    """Which f, at one lambda of an f sweep (a sweep_frame), moves a column beyond its 95 % CI, with the
    number of cells tested at that lambda so that a lone pass can be weighed against chance."""
    rows = frame[(frame["variant"] == variant) & np.isclose(frame["lam"], lam)].sort_values("f")
    hits = [f"f = {f:g}: {', '.join(moved(frame, lam, variant, f, metrics))}" for f in rows["f"]
            if moved(frame, lam, variant, f, metrics)]
    n = len(rows) * len(metrics)
    if not hits:
        return f"At λ = {format_lambda(lam)} no f moves any column beyond its 95 % CI ({n} cells)."
    return (f"At λ = {format_lambda(lam)} {len(hits)} of {len(rows)} values of f move a column beyond its 95 % CI ("
            + "; ".join(hits) + f"), out of {n} cells, where about {0.05 * n:.1f} would by chance alone.")


def format_share(v: float) -> str:
    """A share in percent for prose: '2.36 %', '0.0131 %', '8.6e-05 %' (tiny shares keep their size)."""
    return f"{v:.3g} %" if v >= 1e-3 or v == 0 else f"{v:.1e} %"


def power_sentence(mde_unpaired: dict, mde_paired: dict, gains=PAPER_GAINS_F20, metrics=METRICS) -> str:
    """What the paper's design could detect, in words: the smallest true differences (points, 80 % power)
    of 5 unpaired runs per method and of this book's paired design, against the paper's claimed gains."""
    if not all(math.isfinite(mde_unpaired.get(m, math.nan)) for m in metrics):
        return "With fewer than two seeds no power can be computed."
    fmt = lambda d: " / ".join(f"{d[m]:.1f}" for m in metrics)
    below = [METRIC_NAMES[m] for m in metrics if gains[m] < mde_unpaired[m]]
    text = (f"With the seed-to-seed SD measured here, 5 unpaired runs per method detect (80 % power, two-sided "
            f"5 %) a true difference of {fmt(mde_unpaired)} points (first 20 % / first 50 % / overall); the "
            f"paired design of this book detects {fmt(mde_paired)}. ")
    if len(below) == len(metrics):
        return text + ("The paper's gains (+" + " / +".join(f"{gains[m]:g}" for m in metrics) + ") are smaller than "
                       "all three: on a spread like this proxy's, its 5-run design could not reliably detect them.")
    if below:
        return text + (f"The paper's gains are smaller than that in the {', '.join(below)} column(s): on a spread "
                       "like this proxy's, its 5-run design could not reliably detect those.")
    return text + "The paper's gains are larger than all three, so its design could detect them on a spread like this."


def control_reading(diff_paper, diff_act) -> str:
    """Whether the separation measure responds where the terms act (two-SEM rule over seeds), and what that
    says about a null result at the paper's lambda."""
    def where(d):
        d = np.asarray(d, dtype=float)
        if len(d) < 2 or d.std(ddof=1) == 0:
            return "noise"
        return "moves" if abs(d.mean()) > 2 * d.std(ddof=1) / math.sqrt(len(d)) else "within"
    act, paper = where(diff_act), where(diff_paper)
    if act == "noise":
        return "With one seed the two cannot be told from noise."
    if act == "moves" and paper != "moves":
        sign = ("ρ rises: the competing classes' replay moves apart, the exaggeration the paper describes"
                if np.mean(diff_act) > 0 else
                "but ρ falls: the competing classes' replay comes closer relative to its spread, the opposite of "
                "the exaggeration the paper describes")
        return ("So the measure does respond when the terms act, by more than two standard errors, and a null "
                f"result at the paper's λ reflects the terms' size, not a blind measure; {sign}.")
    if act == "moves":
        return "The measure moves at both values of λ, by more than two standard errors."
    return ("Even where the terms move accuracy, ρ stays within two standard errors of the baseline's: what changes "
            "the accuracy there is not a measurable separation of competing replay.")


def separation_reading(rho_replay: float, rho_real: float) -> str:
    """The baseline's replay against the real data of the same pairs, in words."""
    if not (math.isfinite(rho_replay) and math.isfinite(rho_real)) or rho_real <= 0:
        return "The real data gives no comparison here."
    k = rho_replay / rho_real
    if k > 1:
        return (f"The generator's classes are already {k:.1f} times further apart, relative to their spread, than "
                "the real data of the same classes: there is little confusion left for repulsion to remove.")
    return (f"The generator's classes are {1 / k:.1f} times closer, relative to their spread, than the real data of "
            "the same classes: room that repulsion could use.")


def long_runs_sentence(runs, iters: int = 1000, n_seeds: int = 5) -> str:
    """What the page holds of the longer full-width runs (stored ones only, complete_pairs): how many
    seeds per lambda, or that none is stored yet."""
    if not runs:
        return (f"no complete pair at {iters} iterations per task is stored yet; at this width a run takes "
                "hours on a 2-core CPU, so the page waits for stored runs rather than training them.")
    by_lam: dict = {}
    for r in runs:
        if is_rr(r):
            by_lam.setdefault(setting(r)[1], set()).add(r["seed"])
    c = runs[0]["config"]
    held = "; ".join(f"λ = {format_lambda(lam)}: {len(s)} of {n_seeds} seeds" for lam, s in sorted(by_lam.items()))
    return (f"at {c['iters']} iterations per task ({'bf16 autocast' if c.get('bf16') else 'fp32'}), the stored "
            f"runs hold {held}, shown in their own row of the table below.")
