"""birr.book's tables, competition frames and sentences (birr/book/tables.py, competition.py, prose.py)
on hand-built fake results dicts: known answers, no training."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from birr import book as R
from birr.book import tables as T
from birr.book.tables import _seed_text
from book_fakes import BASE, fake


def test_table1_constant_paired_gain_is_exact():
    base = [fake(seed=s, acc=a) for s, a in BASE.items()]
    rr = [fake("rr+ra", seed=s, acc=tuple(v + 0.05 for v in a), f=20.0) for s, a in BASE.items()]
    frame = R.table1_frame(base + rr)
    row = frame.loc["f = 20"]
    for m in R.METRICS:
        assert row[f"{m}_abs"] == pytest.approx(5.0, abs=1e-9)
        assert f"{row[f'{m}_abs']:.2f}" == "5.00"
        assert row[f"{m}_ci_low"] == pytest.approx(5.0, abs=1e-9) and row[f"{m}_ci_high"] == pytest.approx(5.0, abs=1e-9)
        base_mean = np.mean([100 * a[R.METRICS.index(m)] for a in BASE.values()])
        assert row[f"{m}_rel"] == pytest.approx(5.0 / base_mean * 100)
        assert row[f"{m}_mean"] == pytest.approx(base_mean + 5.0)
    assert row["n_paired"] == 3 and row["n"] == 3
    # the baseline row carries levels but no change
    b = frame.iloc[0]
    assert b["first20_mean"] == pytest.approx(np.mean([30, 28, 33]))
    assert b["first20_sem"] == pytest.approx(np.std([30, 28, 33], ddof=1) / math.sqrt(3))
    assert math.isnan(b["first20_abs"])
    shown = R.format_table1(frame)
    cell = shown.loc["f = 20", ("first 20 %", "change: abs / rel, 95 % CI, p")].split("<br>")
    assert cell[0].startswith("+5.00 / +") and cell[1] == "[+5.00, +5.00]" and cell[2].startswith("p ")
    assert shown.loc[shown.index[0], ("first 20 %", "change: abs / rel, 95 % CI, p")] == "–"
    assert "nan" not in shown.to_string().lower()
    # the forest plot: one panel per metric, one point per RR + RA row, the paper's claim beside each code row
    fig = R.plot_table1_forest(frame)
    assert len(fig.axes) == 3 and [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(frame.index[1:])


def test_table1_pairs_by_seed_not_by_position():
    base = [fake(seed=s, acc=a) for s, a in BASE.items()]
    # seed 1 RR is much better, others equal; listed in another order, and seed 2 missing
    rr = [fake("rr+ra", seed=1, acc=(0.38, 0.33, 0.36), f=10.0), fake("rr+ra", seed=0, acc=BASE[0], f=10.0)]
    frame = R.table1_frame(rr + base)
    row = frame.loc["f = 10"]
    assert row["n_paired"] == 2
    assert row["first20_abs"] == pytest.approx(5.0)            # (10 + 0) / 2 points
    assert row["first50_abs"] == pytest.approx(0.0) and row["overall_abs"] == pytest.approx(0.0)


def test_table1_variants_and_errors():
    base = [fake(seed=s, acc=a) for s, a in BASE.items()]
    code = [fake("rr+ra", seed=s, acc=a, f=20.0) for s, a in BASE.items()]
    paper = [fake("rr+ra", seed=s, acc=a, f=20.0, variant="paper") for s, a in BASE.items()]
    frame = R.table1_frame(base + paper + code)
    assert list(frame.index) == ["baseline (BI-R + SI)", "f = 20 (code variant)", "f = 20 (paper variant)"]
    assert R.table1_row(frame, 20.0, "paper").name == "f = 20 (paper variant)"
    assert R.table1_row(frame, variant="").name == "baseline (BI-R + SI)"
    with pytest.raises(KeyError):
        R.table1_row(frame, 5.0)
    with pytest.raises(ValueError, match="no baseline"):
        R.table1_frame(code)
    with pytest.raises(ValueError, match="two different runs with seed 0"):
        R.table1_frame(base + [fake(seed=0, iters=10)])


def test_best_f():
    base = [fake(seed=s, acc=a) for s, a in BASE.items()]
    rr = [fake("rr+ra", seed=s, acc=tuple(v + g for v in a), f=f) for f, g in ((5.0, 0.01), (10.0, 0.03), (20.0, 0.02))
          for s, a in BASE.items()]
    assert R.best_f(R.table1_frame(base + rr), "first20") == "f = 10 (+3.00 points)"
    same = [fake("rr+ra", seed=s, acc=a, f=f) for f in (5.0, 10.0) for s, a in BASE.items()]
    assert R.best_f(R.table1_frame(base + same), "overall") == "no single f (2 values tie at +0.00 points)"
    # every f loses (the book's proxy at the short budget): the largest change is no gain
    worse = [fake("rr+ra", seed=s, acc=tuple(v - g for v in a), f=f) for f, g in ((5.0, 0.02), (20.0, 0.01))
             for s, a in BASE.items()]
    assert R.best_f(R.table1_frame(base + worse), "overall") == "none, every f loses (least: f = 20, -1.00 points)"


def test_beyond_noise_names_every_cell_whose_ci_excludes_zero():
    """f = 20 adds +1 point overall on every seed, with a little spread, so its CI excludes 0 (its other
    metrics: exactly 0, a CI of [0, 0]);
    f = 5's differences straddle 0. 2 rows x 3 metrics = 6 tests, 0.3 expected by chance."""
    base = [fake(seed=s, acc=a) for s, a in BASE.items()]
    up = {0: 0.010, 1: 0.011, 2: 0.009}                     # overall +1.0 points, SD 0.1
    f20 = [fake("rr+ra", seed=s, acc=(a[0], a[1], a[2] + up[s]), f=20.0) for s, a in BASE.items()]
    wobble = {0: 0.01, 1: -0.01, 2: 0.002}
    f5 = [fake("rr+ra", seed=s, acc=(a[0] + wobble[s], a[1], a[2]), f=5.0) for s, a in BASE.items()]
    frame = R.table1_frame(base + f20 + f5)
    cells, n = R.beyond_noise(frame)
    assert n == 6 and [(c["row"], c["metric"]) for c in cells] == [("f = 20", "overall")]
    assert cells[0]["abs"] == pytest.approx(1.0) and cells[0]["ci_low"] > 0
    text = R.beyond_noise_text(frame)
    assert text.startswith("1 of the table's 6 differences has a 95 % CI that excludes 0: f = 20, overall: +1.00 points")
    assert "about 0.3 of 6 would pass by chance alone" in text
    assert R.beyond_noise_text(R.table1_frame(base + f5)) == "None of the table's 3 differences has a 95 % CI that excludes 0."


def test_metric_summary_and_status_rows():
    runs = [fake(seed=s, acc=a) for s, a in BASE.items()]
    summ = R.metric_summary({"BI-R + SI": runs})
    assert summ.loc["BI-R + SI", "overall_mean"] == pytest.approx(35.0)
    assert summ.loc["BI-R + SI", "task1_mean"] == pytest.approx(20.0)
    assert summ.loc["BI-R + SI", "forgetting_mean"] == pytest.approx(50.0)
    assert R.format_summary(summ).loc["BI-R + SI", "overall"] == "35.0 ± 0.6"
    # fake's matrix: 0.9 on the diagonal, except the last row's 0.2 + 0.1 i
    assert R.learned_accuracy(runs) == pytest.approx([90.0, 90.0, 40.0])
    # the seen-classes matrix's diagonal (what BWT uses), not the all-class one
    two = [dict(acc_matrix=[[0.1], [0.2, 0.7]], acc_matrix_seen=[[0.5], [0.2, 0.7]]),
           dict(acc_matrix=[[0.2], [0.1, 0.9]], acc_matrix_seen=[[0.7], [0.1, 0.9]])]
    assert R.learned_accuracy(two) == pytest.approx([60.0, 80.0])
    rows = R.status_rows(runs + runs[:1])
    assert len(rows) == 3 and list(rows["git_sha"].unique()) == ["0123456789ab"]
    assert rows["stacked"].tolist() == [1] * 3 and rows["stack_seconds"].tolist() == [12.3] * 3
    # a stack of 3 stores each run's share (wall / K): the table shows the stack's whole time, and K
    stacked = [dict(r, stacked_with=3, wall_time_s=10.0, provenance=dict(r["provenance"], git_dirty=True)) for r in runs]
    rows = R.status_rows(stacked)
    assert rows["stacked"].tolist() == [3] * 3 and rows["stack_seconds"].tolist() == [30.0] * 3
    assert list(rows["git_sha"].unique()) == ["0123456789ab+"]
    html = R.runs_table(stacked).to_html()
    assert R.RUNS_NOTE.split(":")[0] in html and ">30.0<" in html and "stack_seconds" in html


def test_fig3_gaps():
    runs = []
    for iters, gain in ((10, 0.0), (40, 0.02)):
        for s, a in BASE.items():
            runs.append(fake(seed=s, acc=a, iters=iters))
            runs.append(fake("rr+ra", seed=s, acc=tuple(v + gain for v in a), f=20.0, iters=iters))
    gaps = R.fig3_gap_frame(runs)
    assert list(gaps.index) == [10, 40]
    assert gaps.loc[10, "overall_diff"] == pytest.approx(0.0, abs=1e-9)
    assert gaps.loc[40, "first20_diff"] == pytest.approx(2.0) and gaps.loc[40, "n_paired"] == 3


def test_nearest_mean_and_encoder_table():
    x = torch.tensor([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert R.nearest_mean_accuracy(x, y, torch.tensor([[0.1, 0.1], [4.0, 4.0], [3.0, 3.0]]), torch.tensor([0, 1, 0])) == \
        pytest.approx(2 / 3)
    layers = R.encoder_layer_frame()
    assert list(layers["output"]) == ["16 x 32 x 32", "32 x 16 x 16", "64 x 8 x 8", "128 x 4 x 4", "256 x 2 x 2"]
    assert layers["parameters"].sum() == 392_608 + 480          # appendix §3
    assert layers.loc["L5", "operation"] == "Conv2d"             # no BN, no ReLU on the last layer


def test_seed_text_names_ranges_and_lists():
    assert _seed_text([2, 0, 1, 3, 4]) == "0-4"
    assert _seed_text([0, 1]) == "0, 1"
    assert _seed_text([0, 2, 5]) == "0, 2, 5"
    assert _seed_text([]) == "–"


def test_machine_names_are_short():
    prov = lambda dev, name: {"provenance": {"device": dev, "device_name": name}}
    assert T._machine_of(prov("cpu", "Intel(R) Xeon(R) Processor @ 2.80GHz")) == "cpu (Intel Xeon)"
    assert T._machine_of(prov("cuda:0", "NVIDIA H200")) == "cuda (NVIDIA H200)"
    assert T._machine_of({"provenance": {"device": "cpu"}}) == "cpu"


def test_coverage_counts_what_is_stored(tmp_path):
    empty = R.coverage_frame(tmp_path)
    assert (empty["seeds stored"] == "–").all() and (empty["device"] == "–").all()
    t1 = empty[empty["paper result"] == "Table 1"]
    # baseline + code variant at f = 5, 10, 20, 50, 100 + the paper variant at f = 20: 7 rows x 5 seeds
    assert list(t1["runs stored"]) == ["0 of 35"] * 3
    assert list(t1["dataset"]) == ["CIFAR-10 proxy", "CIFAR-10 proxy", "CIFAR-100"]
    assert list(t1["iterations per task"]) == ["300", "5000", "5000"]
    # the repository's own store holds the short-budget Table 1 and Fig. 3 the book renders, all 5 seeds
    stored = R.coverage_frame(Path(__file__).resolve().parents[1] / "results")
    short = stored[(stored["budget"] == "short") & stored["paper result"].isin(["Table 1", "Fig. 3"])]
    assert list(short["runs stored"]) == ["35 of 35", "30 of 30"] and list(short["seeds stored"]) == ["0-4", "0-4"]
    assert all(d.startswith("cpu") for d in short["device"])
    # the paper's setting at its width: at the short budget's 300 iterations, and at 1000 (fp32)
    wide = empty[empty["paper result"] == "Table 1, f = 20 only, at the paper's width"]
    assert list(wide["iterations per task"]) == ["300", "1000"] and list(wide["runs stored"]) == ["0 of 10"] * 2
    assert list(wide["width (fc)"]) == [2000, 2000]


def test_competition_pairs_and_magnitudes():
    st = [dict(task=2, n_replayed=100, n_competitive=40, n_kept=30, n_applied=9,
               pairs=[[0, 1, 20], [1, 0, 10]]),
          dict(task=3, n_replayed=100, n_competitive=60, n_kept=60, n_applied=10,
               pairs=[[0, 1, 5], [3, 2, 55]])]
    traces = [dict(task=1, iters=[5, 10], rr=[0, 0], ra=[0, 0], recon_r=[0, 0]),
              dict(task=2, iters=[5, 10], rr=[2.0, 4.0], ra=[0.5, 0.5], recon_r=[1e-6, 1e-6])]
    r0 = fake("rr+ra", seed=0, f=5.0, rr_stats=st, loss_traces=traces)
    r1 = fake("rr+ra", seed=1, f=5.0, rr_stats=st, loss_traces=traces)
    applied = R.applied_by_task([r0, r1])          # batch_replay 10: 100 replayed = 10 iterations
    assert list(applied.columns) == [2, 3] and applied.index.tolist() == [("code", 5.0, 0), ("code", 5.0, 1)]
    assert applied[2].tolist() == [90.0, 90.0] and applied[3].tolist() == [100.0, 100.0]
    assert R.applied_by_task([fake(seed=0)]).empty
    cf = R.competition_frame([r0, fake(seed=0)])
    assert len(cf) == 2 and cf["share_competitive"].tolist() == [0.4, 0.6]
    assert cf["pairs_per_competitive"].tolist() == [0.75, 1.0] and cf["applied_share"].tolist() == [0.9, 1.0]
    by_f = R.competition_by_f([r0, r1])
    assert by_f.loc[0, "competitive %"] == pytest.approx(50.0) and by_f.loc[0, "runs"] == 2
    pc = R.pair_counts(r0)
    assert list(R.busiest_classes(pc, 2).index) == ["class2", "class3"]   # 55 + 0 each, vs 25 + 10 for 0, 1
    assert pc.shape == (4, 4)                     # replay covers tasks 1-2: 4 classes
    assert pc.loc["class0", "class1"] == 25 and pc.loc["class3", "class2"] == 55
    # the paper variant's classifier is the current model's: task 3's classes (4, 5) can be labels and
    # competitors, and no logged pair may be lost (a stored short run lost 8 % of its pairs that way)
    st_paper = st + [dict(task=3, n_replayed=100, n_competitive=7, n_kept=7, n_applied=9, pairs=[[5, 0, 7]])]
    pp = R.pair_counts(fake("rr+ra", seed=0, f=5.0, variant="paper", rr_stats=st_paper))
    assert pp.shape == (6, 6) and pp.loc["class5", "class0"] == 7 and pp.to_numpy().sum() == 90 + 7
    # seed 1 names label c "class{c+1}": pairs are matched by name, so 0 -> 1 of seed 1 is class1 -> class2
    top = R.top_pairs([r0, r1], k=3)
    assert list(zip(top["label"], top["competitor"], top["count"])) == [
        ("class3", "class2", 55), ("class4", "class3", 55), ("class0", "class1", 25)]
    assert top.loc[1, "share"] == pytest.approx(100 * 55 / 180) and top.index.name == "rank"
    mag = R.rr_magnitude_frame([r0, r1])
    assert len(mag) == 1 and mag.loc[0, "rr"] == pytest.approx(3.0) and mag.loc[0, "ra"] == pytest.approx(0.5)
    assert mag.loc[0, "weighted_rr"] == pytest.approx(3e-6)
    assert mag.loc[0, "share_of_recon"] == pytest.approx(3.0)          # 1e-6 * (2, 4) / 1e-6
    assert mag.loc[0, "grad_scale"] == pytest.approx(1e-6 * (4 + 16) / 2)


def test_replay_probabilities_and_share_vs_f():
    from birr.model import BIR
    m = BIR([0], n_classes=4, fc_units=8, z_dim=3, in_dim=5).eval()
    cls, p = R.replay_probabilities(m, range(3), n_per_class=2, n_active=3)
    assert cls.tolist() == [0, 0, 1, 1, 2, 2] and p.shape == (6, 3)
    assert torch.allclose(p.sum(-1), torch.ones(6))
    again = R.replay_probabilities(m, range(3), n_per_class=2, n_active=3)[1]
    assert torch.equal(p, again)
    # Fig. 2's example: p_max = 0.6, f = 3 -> threshold 0.2, one competitor (0.25); f = 1 -> none
    share = R.competitor_share_vs_f(torch.tensor([[0.6, 0.25, 0.1, 0.05]]), [1, 3, 20])
    assert share["competitors_per_sample"].tolist() == [0.0, 1.0, 3.0]
    assert share["share_competitive"].tolist() == [0.0, 100.0, 100.0]
    # per sample counts the samples with none; per competitive sample does not
    two = R.competitor_share_vs_f(torch.tensor([[0.6, 0.25, 0.1, 0.05], [0.97, 0.01, 0.01, 0.01]]), [1, 20])
    assert two["competitors_per_sample"].tolist() == [0.0, 1.5]
    assert np.isnan(two["competitors_per_competitive_sample"][0]) and two["competitors_per_competitive_sample"][1] == 3.0
    p = torch.tensor([[0.6, 0.25, 0.1, 0.05], [0.97, 0.01, 0.01, 0.01], [0.4, 0.3, 0.2, 0.1]])
    assert R.example_samples(p, 3.0) == [2, 0, 1]          # most (two), exactly one, none
    assert R.format_p(float("nan")) == "–" and R.format_p(0.0004) == "< 0.001" and R.format_p(0.0134) == "0.013"


def test_best_f_zero_change_is_not_a_loss():
    """best_f's docstring: "none gains" only when every change is negative. One f at exactly +0.00 and one
    below: the +0.00 row is named as the best, not as "every f loses". Catches `< 0` -> `<= 0`."""
    frame = pd.DataFrame({"variant": ["", "code", "code"], "f": [float("nan"), 5.0, 10.0],
                          "overall_abs": [float("nan"), 0.0, -1.0]}, index=["baseline", "f = 5", "f = 10"])
    assert R.best_f(frame, "overall") == "f = 5 (+0.00 points)"


def _result(seed, f=None, acc=0.3):
    rr = f is not None
    return dict(method="rr+ra" if rr else "bir+si", seed=seed, stamp=f"{f}-{seed}",
                config=dict(rr=rr, ra=rr, rep_f=f, rr_variant="code"),
                metrics=dict(first20=acc, first50=acc, overall=acc))


def test_table1_rows_are_ordered_by_increasing_f():
    """table1_frame's docstring (and the paper's Table 1's layout, f = 5, 10, 20, ...): baseline first, then the
    RR+RA rows by increasing f, whatever order the results come in. Catches sorting f descending."""
    runs = [_result(0)] + [_result(0, f) for f in (20.0, 5.0, 10.0)]
    assert list(R.table1_frame(runs).index) == ["baseline (BI-R + SI)", "f = 5", "f = 10", "f = 20"]


def test_wrapping_marks_the_table_whose_cells_may_break():
    frame = pd.DataFrame({"λ = 1e-6, overall": ["+0.05 [-0.13,\u00a0+0.23]"]}, index=pd.Index(["fc 200"], name="setup"))
    html = R.wrapping(frame).to_html()
    assert 'class="cells-wrap"' in html and "+0.05 [-0.13,\u00a0+0.23]" in html and "fc 200" in html
    assert "cells-wrap" in (Path(__file__).resolve().parents[1] / "book" / "_static" / "birr.css").read_text()


def test_distinct_keeps_each_run_once_first_seen_first():
    base, a, b = fake(seed=0), fake("rr+ra", seed=0, f=20.0), fake("rr+ra", seed=0, f=5.0)
    assert [r["stamp"] for r in R.distinct([base, a], [base, b], (r for r in [a]))] == [base["stamp"], a["stamp"], b["stamp"]]
    assert R.distinct() == []
