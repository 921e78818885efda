"""birr.report on hand-built fake results dicts: known answers, no training."""
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from birr import report as R


def fake(method="bir+si", seed=0, acc=(0.30, 0.32, 0.35), *, f=None, variant="code", iters=40, dataset="cifar10-jpg",
         budget="short", device="cpu", n_tasks=3, cpt=2, rr_stats=None, loss_traces=None, stamp=None):
    """A results dict with the fields birr.report reads; acc = (first20, first50, overall)."""
    rr = method == "rr+ra"
    C = n_tasks * cpt
    names = [f"class{(c + seed) % C}" for c in range(C)]
    acc_matrix = [[0.9 if i <= t else None for i in range(n_tasks)] for t in range(n_tasks)]
    acc_matrix[-1] = [0.2 + 0.1 * i for i in range(n_tasks)]
    return dict(
        stamp=stamp or f"{method}-{seed}-{f}-{variant}-{iters}", method=method, dataset=dataset, budget=budget,
        synthetic=dataset == "synthetic", seed=seed,
        config=dict(rr=rr, ra=rr, rep_f=f, rr_variant=variant, iters=iters, batch_replay=10, lambda_rr=1e-6,
                    lambda_ra=1e-6, device=device),
        class_names=names, n_tasks=n_tasks, classes_per_task=cpt,
        acc_matrix=acc_matrix, acc_matrix_seen=acc_matrix, per_task_acc=acc_matrix[-1],
        metrics=dict(first20=acc[0], first50=acc[1], overall=acc[2], forgetting=0.5, bwt=-0.5,
                     average_task_acc=acc[2]),
        rr_stats=rr_stats or [], loss_traces=loss_traces or [], wall_time_s=12.34,
        provenance=dict(device=device, device_name="cpu", git_sha="0123456789abcdef", git_dirty=False),
    )


BASE = {0: (0.30, 0.31, 0.35), 1: (0.28, 0.33, 0.36), 2: (0.33, 0.30, 0.34)}


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


def test_table1_pairs_by_seed_not_by_position():
    base = [fake(seed=s, acc=a) for s, a in BASE.items()]
    # seed 1 RR is much better, others equal; listed in another order, and seed 2 missing
    rr = [fake("rr+ra", seed=1, acc=(0.38, 0.33, 0.36), f=10.0), fake("rr+ra", seed=0, acc=BASE[0], f=10.0)]
    frame = R.table1_frame(rr + base)
    row = frame.loc["f = 10"]
    assert row["n_paired"] == 2
    assert row["first20_abs"] == pytest.approx(5.0)            # (10 + 0) / 2 points
    assert row["first50_abs"] == pytest.approx(0.0) and row["overall_abs"] == pytest.approx(0.0)


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


def test_dataset_label():
    r = fake()
    assert R.dataset_label(r) == "CIFAR-10 (JPEG copy, proxy for CIFAR-100), short budget, cpu"
    s = fake(dataset="synthetic", budget="smoke")
    assert R.dataset_label([s, s]).startswith("synthetic (smoke test — not a result), smoke budget")
    assert R.dataset_label(dataset="cifar100", budget="full", device="cuda") == \
        "CIFAR-100 (the paper's benchmark), full budget, cuda"
    with pytest.raises(ValueError, match="mix"):
        R.dataset_label([r, s])


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


def test_cifar100_names_match_spec_section2():
    frame = R.cifar100_order_frame(0)
    t1 = [cell.split(" ", 1) for cell in frame.loc["task 1"]]
    assert [int(i) for i, _ in t1] == [52, 40, 2, 22, 44, 49, 26, 14, 19, 94]
    assert [n for _, n in t1] == ["oak_tree", "lamp", "baby", "clock", "lizard", "mountain", "crab", "butterfly",
                                  "cattle", "wardrobe"]
    assert [c.split(" ", 1)[1] for c in frame.loc["task 2"]] == ["plain", "palm_tree", "television", "bus", "road",
                                                                 "lobster", "bee", "man", "hamster", "rose"]
    assert len(set(R.CIFAR100_FINE_NAMES)) == 100 and list(R.CIFAR100_FINE_NAMES) == sorted(R.CIFAR100_FINE_NAMES)


def test_nearest_mean_and_encoder_table():
    x = torch.tensor([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert R.nearest_mean_accuracy(x, y, torch.tensor([[0.1, 0.1], [4.0, 4.0], [3.0, 3.0]]), torch.tensor([0, 1, 0])) == \
        pytest.approx(2 / 3)
    layers = R.encoder_layer_frame()
    assert list(layers["output"]) == ["16 x 32 x 32", "32 x 16 x 16", "64 x 8 x 8", "128 x 4 x 4", "256 x 2 x 2"]
    assert layers["parameters"].sum() == 392_608 + 480          # appendix §3
    assert layers.loc["L5", "operation"] == "Conv2d"             # no BN, no ReLU on the last layer


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


def test_figures_are_figures():
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    import matplotlib.pyplot as plt
    st = [dict(task=2, n_replayed=10, n_competitive=4, n_kept=3, n_applied=1, pairs=[[0, 1, 3]])]
    runs = [fake(seed=s, acc=a) for s, a in BASE.items()] + [fake("rr+ra", seed=s, acc=a, f=20.0, rr_stats=st)
                                                              for s, a in BASE.items()]
    figs = [R.plot_acc_matrix(runs[0]), R.plot_per_task({"a": runs[:3], "b": runs[3:]}),
            R.plot_fig2(torch.tensor([0.05, 0.1, 0.25, 0.6]), 3.0), R.plot_pair_counts(runs[3]),
            R.plot_competition_vs_f(runs, replay_curve=R.competitor_share_vs_f(torch.tensor([[0.6, 0.4]]), [1, 2])),
            R.plot_fig3(runs)]
    for fig in figs:
        assert isinstance(fig, Figure)
        plt.close(fig)
    many = torch.softmax(torch.randn(100, generator=torch.Generator().manual_seed(0)), 0)
    fig = R.plot_fig2(many, 20.0, [f"c{i}" for i in range(100)])
    assert len(fig.axes[0].patches) == 12                        # only the 12 most probable are drawn
    plt.close(fig)
    df = R.fig3_frame(runs)
    assert set(df["method"]) == {"BL", "RR"} and df["overall"].max() == pytest.approx(36.0)
    # per-task heatmaps: two panels a row, one per logged task, the unused panel hidden
    three = [dict(st[0], task=t) for t in (2, 3, 4)]
    fig = R.plot_pair_counts_by_task(fake("rr+ra", seed=0, acc=BASE[0], f=20.0, rr_stats=three))
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("while learning task")]
    assert [ax.get_title() for ax in shown] == [f"while learning task {t}" for t in (2, 3, 4)]
    assert fig.get_size_inches()[0] == pytest.approx(12.0)
    plt.close(fig)
    # the Fig. 3 difference row: RR - BL with full-budget points beside this budget's
    fig = R.plot_fig3(runs, full=[dict(r, config=dict(r["config"], iters=5000)) for r in runs])
    assert len(fig.axes) == 6 and fig.axes[3].get_ylabel() == "RR − BL (points)"
    plt.close(fig)


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


def test_seed_text_names_ranges_and_lists():
    assert R._seed_text([2, 0, 1, 3, 4]) == "0-4"
    assert R._seed_text([0, 1]) == "0, 1"
    assert R._seed_text([0, 2, 5]) == "0, 2, 5"
    assert R._seed_text([]) == "–"


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
