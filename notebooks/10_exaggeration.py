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
# # Exaggerated memories? RR + RA seen and measured
#
# This page was computed on {glue:text}`data_label:s`, with {glue:text}`n_seeds:d` seed(s) per
# method. The paper's claim about the two losses is in its Discussion:
#
# > These strong early class results act to confirm the hypothesis that a targeted feature-based
# > exaggeration of samples allows the model to more easily learn the characteristic differences and
# > similarities between samples of competing and non-competing classes, resulting in a reduction of CF
# > amongst earlier-learnt classes.
#
# Its motivation is what the paper concludes from studies of human memory:
#
# > This suggests that the brain adaptively targets and accentuates small differences in important
# > discriminating features of similar memories to reduce interference.
#
# The paper leaves the check for later ("future work could focus on analysing the effect of the loss on
# the internal representations of competing classes"): it reports accuracies, not the memories themselves. Here birr
# looks at them in two ways. First through the lens of {doc}`/book/executed/09_decoder`: replay of
# classes that competed during training, decoded into images, from the baseline (BI-R + SI) and from
# RR + RA ($f$ = 20, $\lambda_{RR} = \lambda_{RA} = 10^{-6}$, the code variant), side by side. Then in
# feature space, where the claim can be measured: are the replayed samples of competing classes further
# apart, relative to their spread, after training with RR + RA?
#
# ```{include} /book/_admonition/gpu.md
# ```

# ```{admonition} Findings
# :class: important
#
# {glue:text}`11_verdict.ipynb::find_paper:s` {glue:text}`11_verdict.ipynb::find_rho:s`
# ({doc}`11_verdict` tests every explanation.)
# ```

# %% tags=["parameters"]
dataset = "cifar10-jpg"
budget = "short"
seeds = [0, 1, 2, 3, 4]
device = "auto"

# %% tags=["remove-input"]
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import torch
from myst_nb import glue

import birr.data
import birr.encoder
import birr.features
from birr import book as R
from birr import lens

page = R.Page(dataset, budget, seeds, device)   # the parameters, checked
dataset, budget, seeds, device = page.params
page.smoke_banner("a few seconds of training on random class-structured images")
dev = page.dev

base_cfgs, rr_cfgs = page.presets("bir+si"), page.presets("rr+ra")
# trains what is missing, loads the rest by stamp; final models not kept here are trained again
results, models = page.run_with_models(base_cfgs + rr_cfgs)
res = {r["stamp"]: r for r in results}
page.glue(results)                              # data_label, data_used, n_seeds, config_stamps, ...
glue("rep_f", rr_cfgs[0].rep_f, display=False)

decoder, dmeta = lens.decoder_for(base_cfgs[0], device=dev, progress=False)
glue("dec_psnr", dmeta["test_psnr"], display=False)

# %% [markdown]
# ## Which pairs to look at
#
# Every RR + RA run logs the (label, competitor) pairs that entered the repulsion loss, per task
# ({doc}`/book/executed/05_competing`). For the pictures we take the two most frequent pairs of the
# first seed's run, counting "a repelled from b" and "b repelled from a" together; the baseline run of
# the same seed has the same class order, so it can be asked for the same classes.

# %% tags=["remove-input"]
s0 = seeds[0]
r0 = res[rr_cfgs[0].stamp]
names = r0["class_names"]
# the two most frequent logged pairs; if fewer were logged, pairs of same-task classes fill in ("never logged")
pairs = lens.top_logged_pairs(r0, 2, fallback_classes=r0["n_tasks"] * r0["classes_per_task"])
lp = lens.logged_pairs(r0)
total = int(lp["count"].sum())
counts = lp.groupby(["a", "b"])["count"].sum()
pair_table = pd.DataFrame([dict(pair=f"{names[a]} – {names[b]}", count=int(counts.get((a, b), 0)),
                                share_pct=100 * counts.get((a, b), 0) / total if total else float("nan"),
                                tasks=", ".join(str(t) for t in sorted(lp[(lp.a == a) & (lp.b == b)]["task"])) or "never logged")
                           for a, b in pairs]).set_index("pair")
for i, (a, b) in enumerate(pairs, 1):
    glue(f"pair{i}", f"{names[a]} – {names[b]}", display=False)
glue("n_pairs_logged", total, display=False)
pair_table.round(1)

# %% [markdown]
# ## Exaggerated reconstructions, through the lens
#
# For each class of a pair, four rows: real test images; the decoded replay of the baseline; the
# decoded replay of RR + RA; and the difference RR + RA − baseline, amplified five times around
# mid-grey (brighter: RR + RA's picture is brighter in that channel). The two models get the same latent
# noise, so column $j$ is the same draw in both. The last column is a class mean seen through the lens:
# of the real training features in the first row, and of 512 replayed vectors in the others, the
# lens's picture of the class prototype $\hat{x}$ that RA pulls towards and RR pushes away from.
#
# Read the difference maps with care. Baseline and RR + RA start from the same weights and see the same
# data in the same order, but any change to the loss sends training down another path, so the two
# models differ for reasons that have nothing to do with exaggeration too. The measurements below,
# over seeds, are what can separate the two; the pictures only show what the difference looks like.
# The lens itself is blurry ({glue:text}`dec_psnr:.1f` dB on test images).

# %% tags=["remove-input"]
bench0 = birr.data.load(dataset, seed=s0)
assert bench0.class_names == names
encoder, _ = birr.encoder.for_config(base_cfgs[0], device=dev, progress=False)
train_x, test_x = birr.features.features(encoder, bench0, device=dev)         # (N, 1024), (N_test, 1024), cached
real = {c: bench0.test.images[bench0.test.labels == c] for c in range(bench0.n_classes)}
real_feats = {c: train_x[bench0.train.labels == c] for c in range(bench0.n_classes)}
base_model, rr_model = models[base_cfgs[0].stamp], models[rr_cfgs[0].stamp]
mean_psnr = {}
for i, pair in enumerate(pairs, 1):
    fig, st = R.pair_figure(decoder, dmeta["mean"], dmeta["std"], pair, names, base_model, rr_model, real, real_feats,
                              n=6, seed=0)
    mean_psnr.update(st)
    page.figure(f"pair_fig{i}", fig, save=f"10_pair{i}.png")
glue("mean_psnr_min", min(mean_psnr.values()), display=False)
glue("mean_psnr_max", max(mean_psnr.values()), display=False)

# %% [markdown]
# ```{glue:figure} pair_fig1
# :name: fig-exag-pair1
#
# {glue:text}`pair1:s`, first seed ({glue:text}`data_label:s`): real images, decoded replay of the
# baseline and of RR + RA (f = {glue:text}`rep_f:g`), and their difference × 5.
# ```
#
# ```{glue:figure} pair_fig2
# :name: fig-exag-pair2
#
# {glue:text}`pair2:s`, first seed, laid out as above.
# ```
#
# The PSNR between the two models' decoded class prototypes is {glue:text}`mean_psnr_min:.1f` to
# {glue:text}`mean_psnr_max:.1f` dB (higher: more alike; identical pictures would be infinite).
#
# ## Measured exaggeration
#
# The paper's Discussion lists this measurement as future work. For two classes $a$ and $b$ with replayed
# feature vectors $x$ (1,024-d, what BI-R actually replays), class means $\mu_a, \mu_b$:
#
# $$
# d_{ab} = \lVert \mu_a - \mu_b \rVert_2, \qquad
# s_c = \sqrt{\operatorname{mean}_{i \in c} \lVert x_i - \mu_c \rVert_2^2}, \qquad
# \rho_{ab} = \frac{d_{ab}}{(s_a + s_b)/2}.
# $$
#
# $\rho$ is the separation of the two classes' memories in units of their own spread: it grows if the
# class means move apart, or if each class's replay gathers more tightly around its mean (what RA asks
# for). `birr.lens.exaggeration` computes it; the final model of every run generates
# {glue:text}`n_measure:d` vectors per class (classes grouped by the mode they were generated from), with
# the same latent noise for both methods. Each pair is weighted by how often it entered RR during
# training in the RR + RA run of the same seed: per task (pairs logged while learning task $t$, measured
# on the final models), and over all tasks. The last row is a control: every pair of replayed classes,
# unweighted, whether or not it ever competed. The last column is the same measure on the real training
# features of the same classes: how far apart the classes are in the data the generator imitates.

# %% tags=["remove-input"]
n_measure = 500
rows = []
for s, cb, cr in zip(seeds, base_cfgs, rr_cfgs):
    rr_res = res[cr.stamp]
    n_old_s = (rr_res["n_tasks"] - 1) * rr_res["classes_per_task"]          # classes that were ever replayed
    scopes = lens.pair_scopes(rr_res)                                         # per task, all tasks, control
    all_pairs = list(scopes[lens.CONTROL][["a", "b"]].itertuples(index=False, name=None))
    bench_s = birr.data.load(dataset, seed=s)                                # this seed's class order
    real_x, _ = birr.features.features(encoder, bench_s, device=dev)          # cached
    keep = bench_s.train.labels < n_old_s
    feats = {"real data": lens.by_class(real_x[keep], bench_s.train.labels[keep])}
    for method, cfg in (("baseline", cb), ("RR+RA", cr)):
        feats[method] = lens.by_class(*lens.replay_features(models[cfg.stamp], range(n_old_s), n_measure, seed=0))
    for method, by_c in feats.items():
        ex = lens.exaggeration(by_c, all_pairs)
        for scope, weights in scopes.items():
            rows.append(dict(seed=s, method=method, scope=scope, **lens.weighted_ratio(ex, weights)))
measure = pd.DataFrame(rows)
glue("n_measure", n_measure, display=False)


ratio_table = R.paired_summary(measure, "ratio")   # mean ± SEM over seeds; difference paired by seed
ratio_table

# %% [markdown]
# Separation ratio $\rho$ (mean ± SEM over seeds; difference = RR + RA − baseline, paired by seed; the
# real-data column varies between seeds through which pairs competed and, since each seed has its own
# class order, through which classes are old at each task, so the control row varies too). The
# distances and spreads behind it, over all tasks:

# %% tags=["hide-input"]
overall = measure[measure.scope == "all tasks"]
parts = pd.concat({"distance d": R.paired_summary(overall, "distance").loc["all tasks"],
                   "spread s": R.paired_summary(overall, "spread").loc["all tasks"],
                   "ratio ρ": R.paired_summary(overall, "ratio").loc["all tasks"]}, axis=1).T
parts


# %% tags=["remove-input"]
def mean_sem_of(frame, method, what, scope="all tasks"):
    v = frame[(frame.method == method) & (frame.scope == scope)][what].dropna()
    return R.mean_sem(v)


wide = R.paired_diffs(overall, "ratio")   # per seed: baseline, RR+RA and their difference
diff = wide["difference"]
d_mean, d_sem, where = R.two_se(diff)
for method, key in (("baseline", "base"), ("RR+RA", "rr"), ("real data", "real")):
    for what in ("ratio", "distance", "spread"):
        m, _ = mean_sem_of(measure, method, what)
        glue(f"{what}_{key}", m, display=False)
# "m ± SEM"; one seed has no SEM, and the page writes none rather than "nan"
glue("ratio_diff", f"{d_mean:+.3f}" + (f" ± {d_sem:.3f}" if pd.notna(d_sem) else ""), display=False)
glue("ratio_diff_pct", float(100 * d_mean / wide["baseline"].mean()) if len(wide) else float("nan"), display=False)
verdict = {"noise": f"cannot be told from noise with {len(diff)} seed(s)",
           "within": "is within two standard errors of zero: no clear exaggeration",
           "above": "is positive by more than two standard errors: RR + RA's competing memories are further apart",
           "below": "is negative by more than two standard errors: RR + RA's competing memories are closer"}[where]
glue("verdict", verdict, display=False)
beyond = []
for scope in measure["scope"].unique():
    if scope == "all tasks":
        continue
    m, se, where = R.two_se(R.paired_diffs(measure[measure.scope == scope], "ratio")["difference"])
    if where in ("above", "below"):
        beyond.append(f"{scope} ({m:+.3f} ± {se:.3f}: RR + RA's memories {'further apart' if m > 0 else 'closer'})")
glue("scope_note", ("One scope at a time, the difference in ρ exceeds two standard errors in " + "; ".join(beyond)
                    + ". With this many rows and few seeds such a row can arise by chance: a lead to test with more "
                    "seeds, not a finding.") if beyond else
     "No single row of the ρ table, taken alone, differs by more than two standard errors.", display=False)
# the two components of ρ over all tasks (the distance and spread table), by the same two-SE rule
moves = {"distance": {"above": "RR + RA's class means further apart", "below": "RR + RA's class means closer"},
         "spread": {"above": "RR + RA's replay of a class more spread out, which by itself lowers ρ",
                    "below": "RR + RA's replay of a class tighter, as RA asks, which by itself raises ρ"}}
moved, still = [], []
for what in ("distance", "spread"):
    m, se, where = R.two_se(R.paired_diffs(overall, what)["difference"])
    if where in ("above", "below"):
        moved.append(f"the {what} ({m:+.3f} ± {se:.3f}: {moves[what][where]})")
    elif where == "within":
        still.append(f"the {what} ({m:+.3f} ± {se:.3f})")
if moved:
    component_note = ("Of ρ's two components, " + " and ".join(moved) + " " + ("moves" if len(moved) == 1 else "move")
                      + " by more than two standard errors" + (f"; {' and '.join(still)} does not." if still else "."))
elif still:
    component_note = f"Neither of ρ's components, {' nor '.join(still)}, moves by more than two standard errors."
else:
    component_note = f"ρ's two components cannot be told from noise with {len(seeds)} seed(s) either."
glue("component_note", component_note, display=False)
(rb, _), (rr_, _) = mean_sem_of(measure, "baseline", "ratio"), mean_sem_of(measure, "real data", "ratio")
(rr_rr, _) = mean_sem_of(measure, "RR+RA", "ratio")
(db, _), (dr, _) = mean_sem_of(measure, "baseline", "distance"), mean_sem_of(measure, "real data", "distance")
(sb, _), (sr, _) = mean_sem_of(measure, "baseline", "spread"), mean_sem_of(measure, "real data", "spread")
times = lambda a, b: max(a, b) / min(a, b)
from_means = (db / sb) / (dr / sr)        # the same comparison made from the mean distances and spreads
real_note = (f"the baseline's replayed class means lie {times(db, dr):.1f} times {'further apart' if db > dr else 'closer'} "
             f"than the real ones (distance {db:.2f}), and the spread of each replayed class is {times(sb, sr):.1f} times "
             f"{'smaller' if sb < sr else 'larger'} than the real class's (spread {sb:.2f}), so in units of their own "
             f"spread the generator's classes are already {times(rb, rr_):.1f} times "
             f"{'further apart' if rb > rr_ else 'closer'} than the real ones"
             + (", with or without RR + RA" if (rr_rr > rr_) == (rb > rr_) else "")
             + f" (the two factors together give {from_means if rb > rr_ else 1 / from_means:.1f}; ρ is averaged pair by "
             "pair and seed by seed, hence the difference)")
glue("real_note", real_note, display=False)
glue("ratio_real_control", mean_sem_of(measure, "real data", "ratio", scope=lens.CONTROL)[0], display=False)

# %% [markdown]
# Over all tasks, weighted by how often each pair competed, the separation ratio is
# {glue:text}`ratio_base:.3f` for the baseline and {glue:text}`ratio_rr:.3f` for RR + RA
# (distance {glue:text}`distance_base:.2f` → {glue:text}`distance_rr:.2f`, spread
# {glue:text}`spread_base:.2f` → {glue:text}`spread_rr:.2f`). The paired difference,
# {glue:text}`ratio_diff:s` ({glue:text}`ratio_diff_pct:+.1f` %
# of the baseline), {glue:text}`verdict:s`. {glue:text}`component_note:s` {glue:text}`scope_note:s`
# Compare it with the control row: an exaggeration that the
# paper's mechanism explains should show up on the pairs that competed more than on all pairs alike.
# And compare both with the real data, where the same pairs have a ratio of {glue:text}`ratio_real:.3f`
# (distance {glue:text}`distance_real:.2f`, spread {glue:text}`spread_real:.2f`):
# {glue:text}`real_note:s`. On the real data, the pairs that competed have a ratio of
# {glue:text}`ratio_real:.3f` against {glue:text}`ratio_real_control:.3f` for all pairs of replayed
# classes (lower: closer, relative to their spread), a check on whether the teacher's runner-up picks
# classes that are similar in the data.
# These numbers are from {glue:text}`data_label:s`, not from the paper's CIFAR-100 setting.
#
# ## A map of competing replay (t-SNE)
#
# The same two pairs in two dimensions: a t-SNE (scikit-learn, PCA initialisation, `random_state` 0, as
# the reference's `visualize_latent_space`, {ref}`§11 <ref-11>`) of {glue:text}`n_tsne:d` replayed vectors per class
# from each model and of as many real test features (faint crosses), all embedded together so that both
# panels share one map. t-SNE keeps neighbourhoods, not distances: read it for overlap and clustering,
# and the table above for how far apart.

# %% tags=["remove-input"]
n_tsne, tsne_iters = (40, 250) if budget == "smoke" else (150, 1000)   # the smoke page only has to run
glue("n_tsne", n_tsne, display=False)
fig, axes = plt.subplots(len(pairs), 2, figsize=(8, 3.6 * len(pairs)), squeeze=False)
for row, pair in zip(axes, pairs):
    feats = {}
    real_idx = torch.cat([(bench0.test.labels == c).nonzero().flatten()[:n_tsne] for c in pair])
    feats["real"] = (test_x[real_idx], bench0.test.labels[real_idx])
    for method, model in (("baseline", base_model), ("RR+RA", rr_model)):
        feats[method] = lens.replay_features(model, pair, n_tsne, seed=2)
    R.tsne_pair(feats, names, pair, seed=0, max_iter=tsne_iters, ax_pair=row)
fig.tight_layout()
page.figure("tsne", fig, save="10_tsne.png")

# %% [markdown]
# ```{glue:figure} tsne
# :name: fig-exag-tsne
#
# t-SNE of replayed features (dots) and real test features (faint crosses) for
# {glue:text}`pair1:s` and {glue:text}`pair2:s`, baseline (left) and RR + RA (right), first seed
# ({glue:text}`data_label:s`).
# ```
#
# ## Runs on this page

# %% tags=["hide-output", "remove-input"]
R.runs_table(results)
