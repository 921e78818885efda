"""birr.book.verdict: applied shares, sweep frames, Holm, TOST, power, separation, the verdict's sentences.
(The sweeps themselves are tested in test_experiments.py, the gradient norms per loss term in test_train.py.)"""
import math

import pandas as pd

import numpy as np
import pytest
import torch

from birr.book import verdict as V


# --- applied shares -------------------------------------------------------------------------------

def test_applied_shares_count_iterations_per_task():
    r = dict(config=dict(iters=40), rr_stats=[dict(task=2, n_applied=20, n_rr_applied=10, n_ra_applied=20, iters=40),
                                               dict(task=3, n_applied=40, iters=40)])
    shares = V.applied_shares(r)
    assert shares["rr"].tolist() == [25.0, 100.0] and shares["ra"].tolist() == [50.0, 100.0]


# --- statistics -----------------------------------------------------------------------------------

def test_holm_known_answer():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert V.holm([0.04, 0.01, 0.03]).tolist() == pytest.approx([0.06, 0.03, 0.06])
    out = V.holm([0.5, float("nan"), 0.9])
    assert math.isnan(out[1]) and out[0] == pytest.approx(1.0) and out[2] == pytest.approx(1.0)


def test_tost_against_a_gain():
    from scipy import stats
    d = [0.1, -0.2, 0.3, 0.0, -0.1]
    res = V.tost(d, -math.inf, 4.8)
    se = np.std(d, ddof=1) / math.sqrt(5)
    assert res["p_high"] == pytest.approx(stats.t.cdf((np.mean(d) - 4.8) / se, 4))
    assert res["p_high"] < 1e-4 and res["upper95"] < 4.8
    # a mean at the margin is not excluded: p = 0.5
    assert V.tost([4.7, 4.9, 4.8, 4.6, 5.0], -math.inf, 4.8)["p_high"] == pytest.approx(0.5)
    two = V.tost(d, -1.0, 1.0)
    assert two["p"] == max(two["p_low"], two["p_high"]) < 0.05


def test_detectable_difference_matches_published_power_tables():
    # two-sample t-test, 5 per arm, alpha 0.05 two-sided, power 0.8: Cohen's d = 2.02 (G*Power)
    assert V.detectable_difference(1.0, 5) == pytest.approx(2.02, abs=0.01)
    # it scales with the SD, and pairing removes the run-to-run spread the pairs share
    assert V.detectable_difference(3.0, 5) == pytest.approx(3 * V.detectable_difference(1.0, 5))
    # paired, 5 pairs: d_z = 1.68 (G*Power)
    assert V.detectable_difference(1.0, 5, paired=True) == pytest.approx(1.68, abs=0.01)


def test_sweep_frame_and_acting_lambda_on_made_up_runs():
    def run(seed, acc, lam=None):
        cfg = dict(rr=lam is not None, ra=lam is not None, rr_variant="code", lambda_rr=lam or 1e-6,
                   rep_f=20.0 if lam is not None else None, iters=10)
        return dict(stamp=f"{seed}-{lam}", seed=seed, method="rr+ra" if lam else "bir+si", config=cfg,
                    metrics=dict(first20=acc, first50=acc, overall=acc),
                    rr_stats=[dict(task=2, n_applied=5, n_rr_applied=5, n_ra_applied=5, iters=10)] if lam else [])
    runs = [run(s, 0.5 + 0.01 * s) for s in range(4)]
    runs += [run(s, 0.5 + 0.01 * s + 0.001 * (-1) ** s, 1e-6) for s in range(4)]     # noise: +-0.1 point
    runs += [run(s, 0.4 + 0.01 * s + 0.001 * s, 1e-2) for s in range(4)]            # ~ -10 points
    frame = V.sweep_frame(runs)
    assert list(frame["lam"]) == [1e-6, 1e-2]
    assert frame.loc[0, "overall_diff"] == pytest.approx(0.0, abs=1e-9)
    assert frame.loc[1, "overall_diff"] == pytest.approx(-10 + 0.15)
    assert frame.loc[0, "rr_applied"] == 50.0
    assert V.acting_lambda(frame) == 1e-2
    assert V.acting_lambda(frame, min_points=20) is None          # a 10-point move is below a 20-point bar
    assert V.acting_lambda(frame, variant="paper") is None
    tests = V.headline_tests(frame, V.paired_differences(runs))
    assert len(tests) == 6 and (tests["p_holm"] >= tests["p"]).all()
    text = V.verdict_sentence(tests)
    assert "(λ = 1e-6, f = 20, code variant, 4 seeds)" in text and "excluded at 95 % in all three columns" in text
    assert "first 20 % by +0.00 [" in text


def test_format_lambda():
    assert [V.format_lambda(x) for x in (1e-6, 1e-2, 1.0, 0.0, 3e-4)] == ["1e-6", "1e-2", "1", "0", "0.0003"]


def test_separation_weights_pairs_by_how_often_they_competed():
    g = torch.Generator().manual_seed(0)
    # three classes, unit spread per coordinate in 2-d (RMS distance to the mean ~ sqrt(2)); means 0, (4,0), (0,8)
    means = {0: torch.tensor([0.0, 0.0]), 1: torch.tensor([4.0, 0.0]), 2: torch.tensor([0.0, 8.0])}
    feats = {c: m + torch.randn(20000, 2, generator=g) for c, m in means.items()}
    rr = dict(n_tasks=3, classes_per_task=1, rr_stats=[dict(task=2, pairs=[[0, 1, 3]]), dict(task=3, pairs=[[2, 0, 1]])])
    out = V.separation(feats, rr)
    # pair (0, 1) competed 3 times (distance 4), pair (0, 2) once (distance 8): weighted distance 5
    assert out["n_pairs"] == 2 and out["distance"] == pytest.approx(5.0, abs=0.05)
    assert out["ratio"] == pytest.approx(5.0 / math.sqrt(2), rel=0.02)


def test_sentences_from_numbers():
    frame = pd.DataFrame([dict(variant="code", lam=1e-6, f=20.0, n=5, **{f"{m}_{k}": v for m in V.METRICS
                               for k, v in dict(diff=0.1, ci_low=-0.3, ci_high=0.5, p=0.6).items()}),
                          dict(variant="code", lam=1e-4, f=20.0, n=5, **{f"{m}_{k}": v for m in V.METRICS
                               for k, v in dict(diff=2.4, ci_low=0.4, ci_high=4.4, p=0.03).items()})])
    text = V.lambda_sentence(frame, 1e-4)
    assert text.startswith("Accuracy first moves at λ = 1e-4 (code variant, 5 seeds): first 20 % +2.40 [+0.40, +4.40]")
    assert "100 times the paper's λ" in text
    assert V.lambda_sentence(frame, None).startswith("No λ of the sweep moves accuracy")
    assert V.moved(frame, 1e-6) == [] and V.moved(frame, 1e-4)[0] == "first 20 % (+2.40)"
    paper = {"fc 200": V.moved(frame, 1e-6), "fc 2000": []}
    act = {"fc 200": V.moved(frame, 1e-4), "fc 2000": []}
    assert V.setups_sentence(paper, act, 1e-6, 1e-4) == (
        "Across 2 setups (fc 200; fc 2000), the paper's λ = 1e-6 moves a column beyond its 95 % CI in 0 of 2, "
        f"and λ = 1e-4 in 1 of 2 (fc 200: {', '.join(act['fc 200'])}).")
    held = V.confirm_sentence(dict(n=10, mean_diff=1.0, ci_low=0.2, ci_high=1.8, p=0.02), "first20", 1e-4, range(5, 15))
    assert "10 fresh seeds (5-14)" in held and "holds" in held
    gone = V.confirm_sentence(dict(n=10, mean_diff=0.3, ci_low=-1.0, ci_high=1.6, p=0.6), "first20", 1e-4, range(5, 15))
    assert "does not hold" in gone
    g = V.grad_sentence(pd.Series(dict(reconstruction=99.0, rr=1e-4, ra=0.0)), pd.Series(dict(rr=40.0, ra=2.0)), 1e-6, 1e-4)
    assert "1.0e-04 %" in g and "at λ = 1e-4 42 %" in g and "(reconstruction: 99 %)" in g
    assert V.ci_text(float("nan"), 0, 0) == "–" and V.ci_text(1.0, float("nan"), float("nan")) == "+1.00"
    assert V.ci_text(0.5, -0.25, 1.0) == "+0.50 [-0.25, +1.00]"
    assert V.ci_text(0.5, -0.25, 1.0, table=True) == "+0.50 [-0.25,\u00a0+1.00]"   # breaks only before "["


def test_control_sentence():
    text = V.control_sentence([0.0, 0.002], [0.3, 0.5], 2.0, 1e-6, 1e-4)
    assert "λ = 1e-6: +0.001 ± 0.001 SEM (+0.1 % of the baseline's ρ)" in text
    assert "λ = 1e-4: +0.400 ± 0.100 SEM (+20.0 % of the baseline's ρ)" in text


def test_applied_sentence():
    rows = pd.DataFrame(dict(task=[2, 2, 3, 4], rr=[0.7, 96.0, 100.0, 99.4], ra=[0.7, 96.0, 100.0, 99.4]))
    assert V.applied_sentence(rows) == ("RR is applied in 0.7-96.0 % of task 2's iterations, depending on the seed, "
                                        "and in at least 99 % of every later task's.")
    assert V.applied_sentence(rows[rows.task == 2]).endswith("depending on the seed.")
    always = rows.assign(rr=[0.7, 96.0, 100.0, 100.0])
    assert V.applied_sentence(always).endswith("depending on the seed, and in every iteration of every later task.")


def test_f_note_counts_cells():
    def row(f, lo):
        return dict(variant="code", lam=1e-6, f=f, n=5, **{f"{m}_{k}": v for m in V.METRICS
                    for k, v in dict(diff=lo + 0.1, ci_low=lo, ci_high=lo + 0.2, p=0.04).items()})
    frame = pd.DataFrame([row(5.0, -0.1), row(20.0, 0.1)])
    text = V.f_note(frame, 1e-6)
    assert text.startswith("At λ = 1e-6 1 of 2 values of f move a column") and "f = 20: first 20 % (+0.20)" in text
    assert "out of 6 cells, where about 0.3 would by chance alone" in text
    assert V.f_note(frame[frame.f == 5.0], 1e-6) == "At λ = 1e-6 no f moves any column beyond its 95 % CI (3 cells)."


def test_power_control_and_separation_readings():
    text = V.power_sentence({"first20": 19.4, "first50": 8.0, "overall": 6.4}, {"first20": 0.5, "first50": 0.9, "overall": 0.3})
    assert "detect (80 % power, two-sided 5 %) a true difference of 19.4 / 8.0 / 6.4 points" in text
    assert "smaller than all three" in text
    assert "column(s)" in V.power_sentence({"first20": 3.0, "first50": 8.0, "overall": 1.0}, {"first20": 1, "first50": 1, "overall": 1})
    assert V.power_sentence({"first20": float("nan")}, {}) == "With fewer than two seeds no power can be computed."
    assert "does respond" in V.control_reading([0.01, -0.01, 0.0], [0.5, 0.6, 0.55])
    assert "ρ rises" in V.control_reading([0.01, -0.01, 0.0], [0.5, 0.6, 0.55])
    assert "the opposite of the exaggeration" in V.control_reading([0.01, -0.01, 0.0], [-0.5, -0.6, -0.55])
    assert "stays within two standard errors" in V.control_reading([0.01, -0.01, 0.0], [0.5, -0.6, 0.05])
    assert V.control_reading([0.0], [0.1]).startswith("With one seed")
    assert "2.0 times further apart" in V.separation_reading(2.0, 1.0)
    assert "2.0 times closer" in V.separation_reading(0.5, 1.0)


def test_complete_pairs_keeps_settings_with_enough_paired_seeds():
    def run(seed, lam=None, iters=1000):
        cfg = dict(rr=lam is not None, ra=lam is not None, rr_variant="code", lambda_rr=lam or 1e-6,
                   rep_f=20.0 if lam is not None else None, iters=iters, bf16=False)
        return dict(stamp=f"{seed}-{lam}", seed=seed, method="rr+ra" if lam else "bir+si", config=cfg,
                    metrics=dict(first20=0.5, first50=0.5, overall=0.5), rr_stats=[])
    # seeds 0-2 of the baseline; lambda 1e-4 at seeds 0, 1 and 3 (3 has no baseline); 1e-6 at seed 0 only
    runs = [run(s) for s in range(3)] + [run(s, 1e-4) for s in (0, 1, 3)] + [run(0, 1e-6)]
    kept = V.complete_pairs(runs)
    assert sorted((r["seed"], r["config"]["rr"]) for r in kept) == [(0, False), (0, True), (1, False), (1, True)]
    assert {r["config"]["lambda_rr"] for r in kept if r["config"]["rr"]} == {1e-4}
    assert V.complete_pairs(runs, min_seeds=3) == []
    assert V.complete_pairs([run(0), run(0, 1e-4)]) == []               # one seed is no comparison
    text = V.long_runs_sentence(kept)
    assert "at 1000 iterations per task (fp32)" in text and "λ = 1e-4: 2 of 5 seeds" in text and "1e-6" not in text
    assert V.long_runs_sentence([]).startswith("no complete pair at 1000 iterations per task is stored yet")


def test_fidelity_sentence_names_the_setup_with_fewer_seeds():
    wide = [{"seed": s, "config": {"fc_units": 2000, "iters": 300}} for s in (0, 1, 2)]
    assert V.fidelity_sentence("CIFAR-10 proxy", 5, wide, 200) == (
        "Measured on CIFAR-10 proxy, with 5 seeds per setting (3 at fc 2000 for 300 iterations per task), "
        "each paired by seed with its baseline; 200 stored runs behind these findings.")
    assert V.fidelity_sentence("x", 3, wide, 7) == ("Measured on x, with 3 seeds per setting, each paired by seed "
                                                    "with its baseline; 7 stored runs behind these findings.")
