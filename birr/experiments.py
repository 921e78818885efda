"""The runs behind the paper's results, as lists of configs (birr.config.preset): Table 1 (the baseline and
RR + RA at each repulsion factor f), Fig. 3 (both at each number of iterations per task), the lambda and
f sweeps of the verdict chapter, and every run the book reads. Runs of one list that share a seed are
paired: the same class order, initialisation and data, so their differences are the method's.
"""
from __future__ import annotations

import numbers

from birr.config import BUDGETS, RR_VARIANTS, Config, preset


def _sweep(name: str, values, kind: type, example: str) -> tuple:
    """`values` as a tuple of distinct numbers of `kind`, or a one-line error naming what was passed
    (seeds=3 would otherwise fail deep inside with "'int' object is not iterable")."""
    try:
        out = tuple(values)
    except TypeError:
        raise TypeError(f"{name}={values!r} is not allowed; expected a list such as {example}") from None
    abstract = numbers.Real if kind is float else numbers.Integral   # numpy's numbers count too
    if not out or any(isinstance(v, bool) or not isinstance(v, abstract) for v in out):
        raise TypeError(f"{name}={values!r} is not allowed; expected a non-empty list of "
                        f"{'numbers' if kind is float else 'integers'}, such as {example}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={values!r} repeats a value; give each once, such as {example}")
    return tuple(kind(v) for v in out)


def _not_swept(fn: str, overrides: dict, owned: dict[str, str]) -> None:
    """A one-line error for an override of a field the sweep sets itself (it would otherwise end in
    "preset() got multiple values for keyword argument 'seed'")."""
    for key in overrides:
        if key in owned:
            raise ValueError(f"{fn}(..., {key}=...) is not allowed: it sets {key} itself; {owned[key]}")


_SWEPT = dict(seed="use seeds=(...)", method="it runs its own methods")


def table1_configs(*, budget: str = "full", dataset: str | None = None, seeds=(0, 1, 2, 3, 4),
                   factors=(5, 10, 20, 50, 100), variant: str = "code", **overrides) -> list[Config]:
    """The runs behind Table 1: the baseline and RR+RA at each f, same seeds (paired), lambda = 1e-6,
    and at the full budget batch 512 (the paper's Table 1 / Fig. 3, appendix §9.1 item 10; the smaller budgets
    keep their own batch)."""
    _not_swept("table1_configs", overrides, dict(_SWEPT, rep_f="use factors=(...)", rr_variant="use variant="))
    seeds = _sweep("seeds", seeds, int, "(0, 1, 2)")
    factors = _sweep("factors", factors, float, "(5, 10, 20)")
    big = dict(batch=512, batch_replay=512) if budget == "full" else {}
    big.update(overrides)
    out = [preset("bir+si", budget=budget, dataset=dataset, seed=s, **big) for s in seeds]
    for f in factors:
        out += [preset("rr+ra", budget=budget, dataset=dataset, seed=s, rep_f=float(f), rr_variant=variant, **big)
                for s in seeds]
    return out


# lambda_RR = lambda_RA over every decade from the paper's 1e-6 upward (written out: 10.0 ** -6 is not 1e-6,
# and a stamp must match the stored runs of the same setting)
LAMBDA_DECADES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def sweep_configs(*, budget: str = "short", dataset: str | None = None, seeds=(0, 1, 2, 3, 4), lambdas=(1e-6,),
                  factors=(20.0,), variants=("code",), **overrides) -> list[Config]:
    """One baseline run per seed, shared by every cell, then RR+RA at each (variant, lambda, f) with
    lambda_RR = lambda_RA = lambda and the same seeds, so each cell is a paired comparison with the
    same baseline. A lambda sweep is `sweep_configs(lambdas=LAMBDA_DECADES, variants=("code", "paper"))`,
    an f sweep `sweep_configs(factors=(1.5, 5, 20, 100), lambdas=(1e-6, 1e-2))`."""
    _not_swept("sweep_configs", overrides, dict(_SWEPT, rep_f="use factors=(...)", rr_variant="use variants=(...)",
                                                lambda_rr="use lambdas=(...)", lambda_ra="use lambdas=(...)"))
    seeds = _sweep("seeds", seeds, int, "(0, 1, 2)")
    lambdas = _sweep("lambdas", lambdas, float, "(1e-6, 1e-3)")
    factors = _sweep("factors", factors, float, "(5, 20)")
    if isinstance(variants, str) or not set(variants) <= set(RR_VARIANTS) or not variants:
        raise ValueError(f"variants={variants!r} is not allowed; choose a non-empty list from {RR_VARIANTS}")
    kw = dict(budget=budget, dataset=dataset, **overrides)
    out = [preset("bir+si", seed=s, **kw) for s in seeds]
    for v in dict.fromkeys(variants):
        for lam in lambdas:
            for f in factors:
                out += [preset("rr+ra", seed=s, rep_f=f, rr_variant=v, lambda_rr=lam, lambda_ra=lam, **kw)
                        for s in seeds]
    return out


# iterations per task for the Fig. 3 sweep (the paper's Fig. 3: final precision against iterations)
FIG3_ITERS = {"smoke": (10, 20, 40), "class": (60, 150, 300), "short": (60, 150, 300),
              "full": (1000, 2500, 5000)}


def fig3_configs(*, budget: str = "full", dataset: str | None = None, seeds=(0, 1, 2, 3, 4), f: float = 20.0,
                 iters_grid=None, **overrides) -> list[Config]:
    """Baseline and RR+RA (f, lambda = 1e-6) at each iterations-per-task setting, same seeds, batch 512
    at the full budget (the paper's Fig. 3 caption)."""
    _not_swept("fig3_configs", overrides, dict(_SWEPT, iters="use iters_grid=(...)", rep_f="use f="))
    big = dict(batch=512, batch_replay=512) if budget == "full" else {}
    big.update(overrides)
    if budget not in FIG3_ITERS:
        raise ValueError(f"budget={budget!r} is not allowed; choose one of {BUDGETS}")
    seeds = _sweep("seeds", seeds, int, "(0, 1, 2)")
    iters_grid = _sweep("iters_grid", FIG3_ITERS[budget] if iters_grid is None else iters_grid, int, "(60, 150, 300)")
    out = []
    for iters in iters_grid:
        for s in seeds:
            out.append(preset("bir+si", budget=budget, dataset=dataset, seed=s, iters=iters, **big))
            out.append(preset("rr+ra", budget=budget, dataset=dataset, seed=s, iters=iters, rep_f=float(f), **big))
    return out


def table1_page_configs(*, budget: str = "full", dataset: str | None = None, seeds=(0, 1, 2, 3, 4),
                        **overrides) -> list[Config]:
    """The runs the Table 1 page shows: baseline and the code variant at every f, then the paper
    variant at f = 20 (its baseline is the same runs)."""
    _not_swept("table1_page_configs", overrides, dict(_SWEPT, rep_f="it sweeps f", rr_variant="it runs both",
                                                      factors="it sweeps the paper's f", variant="it runs both"))
    seeds = _sweep("seeds", seeds, int, "(0, 1, 2)")
    code = table1_configs(budget=budget, dataset=dataset, seeds=seeds, **overrides)
    paper = table1_configs(budget=budget, dataset=dataset, seeds=seeds, factors=(20,), variant="paper", **overrides)
    return code + paper[len(seeds):]


def book_configs(*, budget: str = "short", dataset: str | None = None, seeds=(0, 1, 2), **overrides) -> list[Config]:
    """Every run the book's chapters read, in one list (one list of the paper's commands, so nothing is trained twice),
    but for the errata chapter's one lr = 1e-4 run (`python -m birr book` leaves it to that chapter):
    baseline and fine-tuning (chapter 4), Table 1 with the code variant at every f and the paper variant
    at f = 20 (chapter 6), the Fig. 3 sweep (chapter 7). `python -m birr book` trains them stacked, one
    stack per shape in this order: Table 1's runs first (the book's headline, and the largest stack, so
    a time-limited machine spends its first minutes on what matters most), then fine-tuning, then the
    shorter Fig. 3 runs."""
    _not_swept("book_configs", overrides, dict(_SWEPT, rep_f="it sweeps f", rr_variant="it runs both",
                                               iters="the Fig. 3 runs sweep it"))
    seeds = _sweep("seeds", seeds, int, "(0, 1, 2)")
    kw = dict(budget=budget, dataset=dataset, **overrides)
    cfgs = table1_page_configs(seeds=seeds, **kw)
    cfgs += [preset("finetune", seed=s, **kw) for s in seeds]
    cfgs += fig3_configs(seeds=seeds, **kw)
    unique = {c.stamp: c for c in cfgs}
    return list(unique.values())
