"""birr.book's paper numbers, results readers and statistics (birr/book/paper.py, runs.py, stats.py) on
hand-built fake results dicts: known answers, no training."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from birr import book as R
from book_fakes import fake


def test_paper_table1_implied_baselines():
    frame = R.paper_table1_frame()
    assert list(frame.index) == [5, 10, 20, 50, 100]
    # appendix §9.2 item 2: abs / rel * 100 is the same baseline in every row
    assert frame["first20_implied_baseline"].round(1).unique().tolist() == [30.4]
    assert frame["first50_implied_baseline"].round(1).unique().tolist() == [31.8]
    assert frame["overall_implied_baseline"].between(34.82, 34.91).all()
    assert frame.loc[20, "first20_implied_baseline"] == pytest.approx(4.80 / 15.79 * 100)
    assert frame.loc[10, "first20_abs"] == 5.80 and frame.loc[20, "first50_rel"] == 15.30
    # the Results text for f = 20 implies other baselines (appendix §9.2 item 1)
    assert R.implied_baseline(*R.PAPER_TEXT_F20["first50"]) == pytest.approx(20.9, abs=0.05)
    assert R.implied_baseline(*R.PAPER_TEXT_F20["first20"]) == pytest.approx(27.2, abs=0.05)
    shown = R.format_paper_table1()
    assert shown.loc[20, "first 20 %: abs / rel"] == "+4.80 / +15.79 %"


def test_cifar100_names_match_spec_section2():
    frame = R.cifar100_order_frame(0)
    t1 = [cell.split(" ", 1) for cell in frame.loc["task 1"]]
    assert [int(i) for i, _ in t1] == [52, 40, 2, 22, 44, 49, 26, 14, 19, 94]
    assert [n for _, n in t1] == ["oak_tree", "lamp", "baby", "clock", "lizard", "mountain", "crab", "butterfly",
                                  "cattle", "wardrobe"]
    assert [c.split(" ", 1)[1] for c in frame.loc["task 2"]] == ["plain", "palm_tree", "television", "bus", "road",
                                                                 "lobster", "bee", "man", "hamster", "rose"]
    assert len(set(R.CIFAR100_FINE_NAMES)) == 100 and list(R.CIFAR100_FINE_NAMES) == sorted(R.CIFAR100_FINE_NAMES)


def test_dataset_label():
    r = fake()
    assert R.dataset_label(r) == "CIFAR-10 (JPEG copy, proxy for CIFAR-100), short budget, cpu"
    s = fake(dataset="synthetic", budget="smoke")
    assert R.dataset_label([s, s]).startswith("synthetic (smoke test — not a result), smoke budget")
    assert R.dataset_label(dataset="cifar100", budget="full", device="cuda") == \
        "CIFAR-100 (the paper's benchmark), full budget, cuda"
    with pytest.raises(ValueError, match="mix"):
        R.dataset_label([r, s])


def test_paired_points_keep_only_iteration_counts_with_the_same_seeds_in_both_methods():
    runs = [fake(seed=s, iters=1000) for s in (0, 1, 2)] + [fake("rr+ra", seed=s, f=20.0, iters=1000) for s in (0, 1, 2)]
    runs += [fake(seed=s, iters=2500) for s in (0, 1)] + [fake("rr+ra", seed=0, f=20.0, iters=2500)]   # seed 1 unpaired
    runs += [fake(seed=0, iters=5000)]                                                                    # no RR+RA
    kept = R.paired_points(runs)
    assert {r["config"]["iters"] for r in kept} == {1000} and len(kept) == 6
    assert R.paired_points([]) == []


def test_finished_loads_stored_runs_and_trains_nothing(tmp_path, monkeypatch):
    import birr
    from birr import train as T
    cfgs = [birr.preset("bir+si", budget="smoke", seed=s, iters=10) for s in (0, 1)]
    done = birr.run(cfgs[0], results_dir=tmp_path, progress=False)
    monkeypatch.setattr(T, "_train_stack", lambda *a, **k: pytest.fail("finished() must not train"))
    got = R.finished(cfgs, results_dir=tmp_path)
    assert [r["stamp"] for r in got] == [done["stamp"]]


def test_paired_stats_matches_scipy_and_its_ci_agrees_with_its_p():
    from scipy import stats
    t = {0: 1.0, 1: 3.0, 2: 2.5, 3: 4.0}
    b = {0: 0.5, 1: 1.0, 2: 2.0, 3: 2.0}
    st = R.paired_stats(t, b)
    assert st["mean_diff"] == pytest.approx(np.mean([0.5, 2.0, 0.5, 2.0]))
    res = stats.ttest_rel([1, 3, 2.5, 4], [0.5, 1, 2, 2])
    assert st["p"] == pytest.approx(res.pvalue)
    ci = res.confidence_interval(0.95)
    assert (st["ci_low"], st["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    # by hand: d = 0.5, 2, 0.5, 2; mean 1.25, sd sqrt(0.75), t(0.975, 3) = 3.182446
    assert st["ci_high"] - 1.25 == pytest.approx(3.182446 * math.sqrt(0.75) / 2, rel=1e-6)


def test_three_seed_ci_is_not_the_range_of_the_differences():
    """The case the book met (page 06, f = 50): differences +0.12, +0.08, +0.36. A percentile bootstrap
    gives their range [+0.08, +0.36], excluding 0 at p = 0.17; the t interval includes 0, as p says."""
    st = R.paired_stats({0: 10.12, 1: 20.08, 2: 30.36}, {0: 10.0, 1: 20.0, 2: 30.0})
    assert st["p"] == pytest.approx(0.166, abs=2e-3)
    assert st["ci_low"] < 0 < st["ci_high"]
    assert st["ci_low"] == pytest.approx(0.18667 - 4.302653 * np.std([0.12, 0.08, 0.36], ddof=1) / math.sqrt(3), abs=1e-4)
    one = R.paired_stats({0: 2.0}, {0: 1.0})
    assert one["n"] == 1 and one["mean_diff"] == 1.0 and math.isnan(one["p"]) and math.isnan(one["ci_low"])


def test_two_se_says_where_a_paired_mean_stands():
    """Mean, SEM (n - 1) and whether the mean lies beyond two SEMs (chapter 10's rule for a lead)."""
    m, se, where = R.two_se([1.0, 1.2, 0.8])
    assert m == pytest.approx(1.0) and se == pytest.approx(math.sqrt(0.08 / 2 / 3)) and where == "above"
    assert R.two_se([-1.0, -1.2, -0.8])[2] == "below"
    assert R.two_se([0.0, 2.0, 4.0])[2] == "within"         # mean 2 < 2 x 1.1547
    assert R.two_se([0.5])[2] == R.two_se([0.3, 0.3])[2] == "noise"   # one seed; no spread
    m, se, where = R.two_se([])
    assert math.isnan(m) and math.isnan(se) and where == "noise"


def test_paired_summary_pairs_by_seed_and_keeps_the_scope_order():
    rows = []
    for scope, base, rr, real in (("task 2", (1.0, 2.0), (1.5, 2.1), (3.0, 3.0)),
                                  ("all tasks", (1.0, 1.0), (2.0, None), (4.0, 5.0))):
        for seed in (0, 1):
            for method, v in (("baseline", base[seed]), ("RR+RA", rr[seed]), ("real data", real[seed])):
                if v is not None:
                    rows.append(dict(scope=scope, seed=seed, method=method, ratio=v))
    t = R.paired_summary(pd.DataFrame(rows), "ratio")
    assert list(t.index) == ["task 2", "all tasks"]         # first appearance, not alphabetical
    assert t.loc["task 2"].to_dict() == {"baseline": "1.500 ± 0.500", "RR+RA": "1.800 ± 0.300",
                                         "difference": "0.300 ± 0.200", "real data": "3.000 ± 0.000", "seeds": 2}
    # seed 1 has no RR+RA value here: the difference has one seed, so no SEM
    assert t.loc["all tasks", "difference"] == "1.000" and t.loc["all tasks", "seeds"] == 1
    assert t.loc["all tasks", "baseline"] == "1.000 ± 0.000" and t.loc["all tasks", "RR+RA"] == "2.000"
    # the same pairing, as numbers: seeds with both methods only, whatever else the frame holds
    frame = pd.DataFrame(rows)
    d = R.paired_diffs(frame[frame.scope == "task 2"], "ratio")
    assert d.index.tolist() == [0, 1] and d["difference"].tolist() == pytest.approx([0.5, 0.1])
    d = R.paired_diffs(frame[frame.scope == "all tasks"], "ratio")
    assert d.index.tolist() == [0] and d["difference"].tolist() == [1.0]
    assert R.two_se(R.paired_diffs(frame[frame.method == "real data"], "ratio")["difference"])[2] == "noise"


def test_nearest_mean_accuracy_uses_every_class():
    """Three well separated classes, one test point next to each class mean: nearest-class-mean is right
    on all three (accuracy 1), and a point of the last class counts. Catches dropping the last class mean."""
    x = torch.tensor([[0.0, 0.0], [0.0, 0.2], [10.0, 0.0], [10.0, 0.2], [0.0, 10.0], [0.2, 10.0]])
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    test_x = torch.tensor([[0.5, 0.5], [9.0, 0.5], [0.5, 9.0]])
    assert R.nearest_mean_accuracy(x, y, test_x, torch.tensor([0, 1, 2])) == 1.0
