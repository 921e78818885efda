# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fig. 3: final accuracy against training length
#
# This page was computed on {glue:text}`data_label:s`, with {glue:text}`n_seeds:d` seed(s) per
# point. It redraws the paper's Fig. 3: the baseline (BL) and RR+RA (RR, $f = 20$, code variant)
# trained for {glue:text}`iters_text:s` iterations per task, and the final accuracy over all classes,
# the first 50 % and the first 20 % of classes.
#
# ```{include} /book/_admonition/gpu.md
# ```

# ```{admonition} Findings
# :class: important
#
# {glue:text}`11_verdict.ipynb::find_paper:s` {glue:text}`11_verdict.ipynb::find_lambda:s`
# ({doc}`11_verdict` tests every explanation.)
# ```
#
# > Fig. 3. A comparison of the final classification test set precision and convergence rates of the
# > RR+RA adaptation (RR) and baseline (BL). Presented are the overall precision (average across all
# > classes; a), precision across the first 50% of classes encountered (b) and over the first 20% of
# > classes encountered (c). This was performed over current and replay batch sizes of 512, with λRR
# > and λRA weightings of 10−6 (the optimal values).
#
# > The average precision across all classes (Fig. 3a) showed a slight, although not significant,
# > improvement across the tested iterations. Comparing the average precision of the first 50% of
# > classes (Fig. 3b), however, the inclusion of the RR+RA loss provided a significant increase over the
# > baseline for all tested iterations.
#
# This book works from the paper's text, without its figures, so Fig. 3's iteration counts are not
# known here; birr sweeps {glue:text}`iters_text:s` iterations per task at this budget (the full budget
# uses 1000, 2500 and 5000). The paper does not say which test "significant" refers to; below, each
# gap comes with a paired t-test over seeds.

# %% tags=["parameters"]
dataset = "cifar10-jpg"
budget = "short"
seeds = [0, 1, 2, 3, 4]
device = "auto"

# %% tags=["remove-input"]
# %matplotlib inline
import pandas as pd
from myst_nb import glue

import birr
from birr import book as R

page = R.Page(dataset, budget, seeds, device)   # the parameters, checked
dataset, budget, seeds, device = page.params
cfgs = birr.fig3_configs(f=20.0, **page.kw)
results = page.run_many(cfgs)                   # trains what is missing, loads the rest by stamp
label = page.glue(results, stamps=False)        # data_label, data_used, n_seeds; the stamps below
iters = sorted({c.iters for c in cfgs})
glue("iters_text", ", ".join(map(str, iters[:-1])) + f" and {iters[-1]}", display=False)
glue("batch", cfgs[0].batch, display=False)

# the full budget's runs stored so far (a GPU trains them), drawn beside this budget's
full_cfgs = birr.fig3_configs(budget="full", dataset=dataset, seeds=seeds, f=20.0)
full = [] if budget == "full" else R.paired_points(R.finished(full_cfgs))
page.figure("fig3", R.plot_fig3(results, full=full, title=f"birr: {label}"), save="fig3.png", dpi=150)

# %% [markdown]
# ```{glue:figure} fig3
# :name: fig-fig3
#
# The paper's Fig. 3 redrawn by birr on {glue:text}`data_label:s`: final test accuracy against iterations per
# task, (a) overall, (b) first 50 % and (c) first 20 % of classes; small markers are single seeds, lines
# join the means. RR = RR+RA with f = 20 (code variant), BL = BI-R + SI; batch {glue:text}`batch:d`.
# Bottom row: RR − BL paired by seed with its 95 % CI; the two lines above overlap wherever it straddles
# 0. Open markers and dotted lines, where present: the full budget's runs stored so far (the paper's
# width, batch 512), a different model from the solid ones.
# Also saved as `book/figures/fig3.png`.
# ```
#
# ## The gaps, paired by seed
#
# RR+RA minus the baseline at each training length, in points, with the 95 % CI of the mean paired
# difference and the paired t-test's p-value, both from the t distribution of the per-seed differences
# (so the CI excludes 0 exactly when p < 0.05). Both need at least two seeds; p is also "–" where the
# differences do not vary between seeds (e.g. all 0), and the CI is then a single point:

# %% tags=["remove-input"]
gaps = R.fig3_gap_frame(results)
longest = gaps.iloc[-1]
for m in R.METRICS:
    glue(f"gap_{m}", float(longest[f"{m}_diff"]), display=False)
    glue(f"gap_{m}_p", R.format_p(longest[f"{m}_p"]), display=False)
    glue(f"n_positive_{m}", int((gaps[f"{m}_diff"] > 0).sum()), display=False)
glue("n_iters", len(gaps), display=False)
glue("iters_max", int(gaps.index[-1]), display=False)
shown = pd.DataFrame(index=gaps.index)
for m in R.METRICS:
    shown[f"{R.METRIC_NAMES[m]}: RR − BL"] = [f"{d:+.2f}" for d in gaps[f"{m}_diff"]]
    shown[f"{R.METRIC_NAMES[m]}: 95 % CI"] = ["–" if pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
                                              for lo, hi in zip(gaps[f"{m}_ci_low"], gaps[f"{m}_ci_high"])]
    shown[f"{R.METRIC_NAMES[m]}: p"] = [R.format_p(p) for p in gaps[f"{m}_p"]]
shown.index.name = "iterations per task"
shown.style.set_caption(f"birr: {label}")

# %% [markdown]
# At {glue:text}`iters_max:d` iterations per task, RR+RA differs from the baseline by
# {glue:text}`gap_overall:+.2f` points overall (p = {glue:text}`gap_overall_p:s`),
# {glue:text}`gap_first50:+.2f` on the first 50 % (p = {glue:text}`gap_first50_p:s`) and
# {glue:text}`gap_first20:+.2f` on the first 20 % (p = {glue:text}`gap_first20_p:s`). RR+RA is ahead on
# the first 50 % at {glue:text}`n_positive_first50:d` of the {glue:text}`n_iters:d` training lengths,
# and on the first 20 % at {glue:text}`n_positive_first20:d`. The paper's claim is a CIFAR-100 claim
# with 5 runs; these are numbers on {glue:text}`data_label:s`.
#
# Mean accuracy per point (percent):

# %% tags=["hide-input"]
df = R.fig3_frame(results)
df.groupby(["iters", "method"])[list(R.METRICS)].mean().unstack("method").round(1)

# %% [markdown]
# ## At the full budget, on a GPU
#
# The points above are at the {glue:text}`budget_name:s` budget. The full budget (the paper's model
# width, batch 512, 1000 to 5000 iterations per task) needs a GPU; `scripts/gpu_session.py` trains it
# there whenever a GPU is available, and every run it brings back is stored by its stamp like any other.
# {glue:text}`full_text:s`

# %% tags=["remove-input"]
glue("budget_name", budget, display=False)
if budget == "full":
    full_text = "This page already shows the full budget."
elif not full:
    full_text = (f"None of the {len(full_cfgs)} full-budget runs of this figure has been trained on "
                 f"{R.DATASET_NAMES[dataset]} yet.")
else:
    full_gaps = R.fig3_gap_frame(full)
    at = full_gaps.iloc[0]
    full_text = (
        f"So far {len(full)} of its {len(full_cfgs)} runs have been trained ({R.dataset_label(full)}), "
        f"at {', '.join(map(str, full_gaps.index))} iterations per task with {int(at['n_paired'])} paired seed(s). "
        f"At {int(full_gaps.index[0])} iterations RR+RA minus the baseline is "
        + "; ".join(f"{at[f'{m}_diff']:+.2f} points on the {R.METRIC_NAMES[m]} (p = {R.format_p(at[f'{m}_p'])})"
                    for m in ("overall", "first50", "first20"))
        + ". Mean accuracy per point (percent):")
glue("full_text", full_text, display=False)
glue("n_full_runs", len(full), display=False)
page.glue_stamps(results + full)                # the status page's run count
if full:
    display(R.fig3_frame(full).groupby(["iters", "method"])[list(R.METRICS)].mean().unstack("method").round(2))

# %% [markdown]
# ## Runs on this page

# %% tags=["hide-output", "remove-input"]
R.runs_table(results + full)
