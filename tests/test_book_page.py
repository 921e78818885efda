"""birr.book.Page (birr/book/page.py), a chapter's set-up: checked parameters, the glue keys every page
shares, figures, the smoke banner, and the models a page loads or trains again. Smoke runs, seconds."""
import matplotlib
import pytest

import birr
from birr import book as R
from birr.book import page as P
from book_fakes import fake


@pytest.fixture
def glued(monkeypatch):
    """What the page glues, by key, instead of notebook outputs; a key glued twice fails."""
    import myst_nb
    out = {}

    def glue(name, value, display=True):
        assert name not in out, f"{name} glued twice"
        assert display is False
        out[name] = value

    monkeypatch.setattr(myst_nb, "glue", glue)
    return out


def test_page_checks_its_parameters_like_every_chapter():
    page = R.Page("synthetic", "smoke", "0 1", "cpu")
    assert page.params == ("synthetic", "smoke", [0, 1], "cpu") == birr.params.check("synthetic", "smoke", "0 1", "cpu")
    assert (page.dataset, page.budget, page.seeds, page.device) == page.params
    assert page.dev == "cpu"
    assert page.kw == dict(budget="smoke", dataset="synthetic", seeds=[0, 1], device="cpu")
    with pytest.raises(ValueError, match="budget='huge' is not allowed"):
        R.Page("synthetic", "huge", [0], "cpu")


def test_presets_are_the_pages_budget_dataset_and_seeds():
    page = R.Page("synthetic", "smoke", [3, 4], "cpu")
    assert page.preset("rr+ra", rep_f=5.0) == birr.preset("rr+ra", budget="smoke", dataset="synthetic", seed=3,
                                                          device="cpu", rep_f=5.0)
    assert [c.seed for c in page.presets("bir+si")] == [3, 4]
    assert page.preset("bir+si", seed=4).stamp == page.presets("bir+si")[1].stamp


def test_glue_writes_the_keys_every_page_shares(glued):
    page = R.Page("cifar10-jpg", "short", [0, 1], "cpu")
    runs = [fake(seed=0), fake(seed=1), fake(seed=0)]          # a run listed twice is one stamp
    label = page.glue(runs)
    assert label == glued["data_label"] == R.dataset_label(runs)
    assert glued["data_used"] == "cifar10-jpg" and glued["n_seeds"] == 2 and glued["seeds_text"] == "0, 1"
    assert glued["config_stamps"] == [runs[0]["stamp"], runs[1]["stamp"]]


def test_glue_without_results_names_the_parameters_and_no_runs(glued):
    page = R.Page("synthetic", "smoke", [0], "cpu")
    assert page.glue() == "synthetic (smoke test — not a result), smoke budget, cpu" == glued["data_label"]
    assert glued["data_used"] == "synthetic" and "config_stamps" not in glued


def test_glue_can_leave_the_stamps_to_later(glued):
    page = R.Page("cifar10-jpg", "short", [0], "cpu")
    page.glue([fake(seed=0)], stamps=False)
    assert "config_stamps" not in glued
    page.glue_stamps([fake(seed=0), fake("rr+ra", seed=0, f=20.0)])
    assert len(glued["config_stamps"]) == 2


def test_figure_is_glued_saved_and_closed(glued, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    monkeypatch.setattr(P, "FIGURES", tmp_path / "figures")
    fig = plt.figure()
    R.Page.figure("fig_a", fig, save="a.png")
    assert glued["fig_a"] is fig and (tmp_path / "figures" / "a.png").stat().st_size > 0
    assert not plt.fignum_exists(fig.number)
    R.Page.figure("fig_b", plt.figure())
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["a.png"]


def test_smoke_banner_only_on_synthetic_data(monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    R.Page("cifar10-jpg", "smoke", [0], "cpu").smoke_banner("anything")
    assert shown == []
    R.Page("synthetic", "smoke", [0], "cpu").smoke_banner("a few seconds of training", what="number")
    assert len(shown) == 1
    text = shown[0].data
    assert text.startswith("> **SMOKE RUN ON SYNTHETIC DATA.** Every number on this page comes from a few seconds "
                           "of training. It checks")


def test_run_with_models_loads_the_saved_model_or_retrains_that_run(tmp_path, monkeypatch):
    monkeypatch.setenv("BIRR_RESULTS", str(tmp_path))
    page = R.Page("synthetic", "smoke", [0, 1], "cpu")
    cfgs = page.presets("bir+si", iters=10)
    results, models = page.run_with_models(cfgs)
    assert [r["stamp"] for r in results] == [c.stamp for c in cfgs] and set(models) == {c.stamp for c in cfgs}
    assert all(m is not None and m.C == results[0]["n_tasks"] * results[0]["classes_per_task"] for m in models.values())

    # seed 1's weights are gone (results/models/ is not committed): that run alone is trained again
    (tmp_path / "models" / f"{cfgs[1].stamp}.pt").unlink()
    calls = []
    run_many = birr.run_many
    monkeypatch.setattr(birr, "run_many", lambda cs, **kw: calls.append(([c.stamp for c in cs], kw)) or run_many(cs, **kw))
    again, models = page.run_with_models(cfgs)
    assert calls[1] == ([cfgs[1].stamp], dict(progress=False, force=True))
    assert models[cfgs[1].stamp] is not None and again[0] == results[0]
    assert again[1]["stamp"] == cfgs[1].stamp
