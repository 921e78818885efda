"""birr.book's figures (birr/book/figures.py): every plot returns a Figure, on hand-built fake results."""
import matplotlib
import pytest
import torch

from birr import book as R
from book_fakes import BASE, fake


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
