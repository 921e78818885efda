"""What every chapter does at its top: check its papermill parameters, run (or load) its runs, load
their final models, and glue the keys that every page and the status page read.

    page = R.Page(dataset, budget, seeds, device)   # birr.params.check: a bad value is one `error:` line
    dataset, budget, seeds, device = page.params    # checked: seeds a list of distinct ints, ...
    results = page.run_many(cfgs)                   # trained where missing, else loaded by stamp
    page.glue(results)                              # data_label, data_used, n_seeds, seeds_text, config_stamps

Chapters run in notebooks/ (`papermill --cwd notebooks`, as `make book` and the tests run them), so
figures a page saves go to ../book/figures.
"""
from __future__ import annotations

from pathlib import Path

from birr.book.runs import dataset_label

FIGURES = Path("../book/figures")      # relative to notebooks/, where the chapters run


class Page:
    """One chapter's set-up, from its four parameters (dataset, budget, seeds, device)."""

    def __init__(self, dataset, budget, seeds, device):
        import birr.params
        self.params = birr.params.check(dataset, budget, seeds, device)
        self.dataset, self.budget, self.seeds, self.device = self.params

    @property
    def dev(self) -> str:
        """The device the page computes on, "auto" resolved: "cpu", "cuda", ... (the runs' own rule)."""
        from birr.train import resolve_device
        return str(resolve_device(self.device))

    @property
    def kw(self) -> dict:
        """budget, dataset, seeds and device, for the config builders: birr.table1_page_configs(**page.kw)."""
        return dict(budget=self.budget, dataset=self.dataset, seeds=self.seeds, device=self.device)

    def preset(self, method: str, *, seed: int | None = None, **overrides):
        """birr.preset at the page's budget, dataset and device; of the first seed unless `seed` is given."""
        import birr
        return birr.preset(method, budget=self.budget, dataset=self.dataset, device=self.device,
                           seed=self.seeds[0] if seed is None else seed, **overrides)

    def presets(self, method: str, **overrides) -> list:
        """`preset` for each of the page's seeds, in order."""
        return [self.preset(method, seed=s, **overrides) for s in self.seeds]

    def run_many(self, cfgs, **kw) -> list[dict]:
        """birr.run_many without progress bars: each run trained where missing, else loaded by stamp."""
        import birr
        return birr.run_many(list(cfgs), progress=False, **kw)

    def run_with_models(self, cfgs) -> tuple[list[dict], dict]:
        """The results of `cfgs` (as `run_many`) and each run's final model by stamp, on `dev`.

        results/models/ is not committed, so a run whose weights are not kept here is trained again
        (all such runs in one stack: minutes at most below the `full` budget) and its new result
        replaces the stored one in the list returned."""
        import birr
        cfgs = list(cfgs)
        results = self.run_many(cfgs)
        models = {c.stamp: birr.load_model(c, device=self.dev) for c in cfgs}
        missing = [c for c in cfgs if models[c.stamp] is None]
        if missing:
            redone = {r["stamp"]: r for r in self.run_many(missing, force=True)}
            results = [redone.get(r["stamp"], r) for r in results]
            models.update({c.stamp: birr.load_model(c, device=self.dev) for c in missing})
        return results, models

    def glue(self, results=None, *, stamps: bool = True) -> str:
        """Glue the keys every page shares, and return the data label: data_label (`dataset_label` of
        `results`, or of the page's parameters without results), data_used (the dataset, for the status
        page), n_seeds, seeds_text and, unless stamps=False, config_stamps (`glue_stamps`). Call it once
        per page: a key is glued once."""
        from myst_nb import glue
        label = (dataset_label(results) if results else
                 dataset_label(dataset=self.dataset, budget=self.budget, device=self.device))
        glue("data_label", label, display=False)
        glue("data_used", results[0]["dataset"] if results else self.dataset, display=False)
        glue("n_seeds", len(self.seeds), display=False)
        glue("seeds_text", ", ".join(map(str, self.seeds)), display=False)
        if stamps and results:
            self.glue_stamps(results)
        return label

    @staticmethod
    def glue_stamps(results) -> None:
        """Glue config_stamps: the stamps of `results`, once each, in order (the status page lists a
        chapter's runs by them)."""
        from myst_nb import glue
        glue("config_stamps", list(dict.fromkeys(r["stamp"] for r in results)), display=False)

    @staticmethod
    def figure(name: str, fig, *, save: str | None = None, dpi: int = 120) -> None:
        """Glue `fig` as `name` and close it; with `save`, also write it to book/figures/<save>."""
        import matplotlib.pyplot as plt
        from myst_nb import glue
        if save:
            FIGURES.mkdir(parents=True, exist_ok=True)
            fig.savefig(FIGURES / save, dpi=dpi, bbox_inches="tight")
        glue(name, fig, display=False)
        plt.close(fig)

    def smoke_banner(self, source: str, what: str = "picture and number") -> None:
        """On synthetic data, a box at the top of the page: every `what` on it comes from `source`."""
        if self.dataset != "synthetic":
            return
        from IPython.display import Markdown, display
        display(Markdown(f"> **SMOKE RUN ON SYNTHETIC DATA.** Every {what} on this page comes from {source}. It "
                         "checks that the page runs; it is not a result about CIFAR-10 or CIFAR-100."))
