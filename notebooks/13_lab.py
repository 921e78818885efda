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
# # Lab: forgetting and replay in a minute
#
# A hands-on lab for a 90-minute class: the students watch a network forget, watch brain-inspired
# replay stop it, and then take the method apart one switch at a time. Every run is small enough for a
# laptop CPU; this page was computed on {glue:text}`data_label:s`.
#
# ```{admonition} Learning goals
# :class: tip
#
# After this lab you can
#
# - say what *catastrophic forgetting* is, and show it on a plot of one task's accuracy over time;
# - say what each part of BI-R + SI contributes, replay and synaptic intelligence (SI), by switching it
#   off and predicting the result first;
# - read the stability–plasticity trade-off off an accuracy-after-each-task table: keeping old tasks
#   and learning new ones pull against each other;
# - say what the paper's two extra losses (reconstruction repulsion and attraction, RR + RA) change,
#   and how their weight $\lambda$ and the repulsion factor $f$ decide whether they act at all.
# ```
#
# **The setup in two sentences.** A classifier learns {glue:text}`n_classes:d` classes of
# {glue:text}`data_name:s` in {glue:text}`n_tasks:d` tasks of {glue:text}`cpt:d` classes each
# (task 1: {glue:text}`task1_classes:s`), sees each task's images only while that task is trained,
# and must in the end tell all {glue:text}`n_classes:d` classes apart without being told which task
# an image came from. *Fine-tuning* simply trains on each new task; *BI-R + SI* also replays
# "memories" of the old classes that its own decoder generates, and holds the weights that mattered
# for old tasks in place (SI).
#
# > Typically, data is randomly shuffled prior to training, reducing the dependence of consecutive
# > examples. However, this is not always possible; in the real world, samples tend to be temporally
# > correlated, for instance a robot learning new objects classes may first see many images of a dog,
# > then many of a cat. With ANNs, the result of such correlation is a strong interference between
# > learned parameters important to the prediction of current and previously seen classes – causing
# > the model to forget previously learned classes almost entirely.
#
# ```{admonition} For the teacher
# :class: note
#
# Run the lab with `make chapter NAME=13_lab BUDGET=class`, or open `notebooks/13_lab.py` in Jupyter
# (jupytext opens it as a notebook; its defaults are the `class` budget). {glue:text}`budget_note:s`
# The encoder is a committed file, so nothing is pre-trained; on a machine that has never run birr,
# the first run decodes the images and computes their features once (under a minute on two cores)
# and later runs read them from the cache. Every run is stored under `results/` by its config stamp:
# running a cell again loads its run instead of training it, and a student who sets an exercise
# back to its default gets the earlier run at once. The lab uses one seed
# (seed {glue:text}`seed:d`): one run per setting, so differences of a few points may be noise, which
# the book's other chapters settle with five seeds. Each exercise trains one or two runs; in this
# build the whole page took {glue:text}`lab_seconds:.0f` s.
# ```

# %% tags=["parameters"]
dataset = "cifar10-jpg"
budget = "class"
seeds = [0]
device = "auto"

# %% tags=["remove-input"]
# %matplotlib inline
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from myst_nb import glue

import birr

lab_start = time.perf_counter()
dataset, budget, seeds, device = birr.params.check(dataset, budget, seeds, device)
seed = seeds[0]                       # a lab runs one seed: one run per setting
glue("seed", seed, display=False)
glue("data_used", dataset, display=False)
glue("data_name", {"cifar100": "CIFAR-100", "cifar10": "CIFAR-10", "cifar10-jpg": "CIFAR-10",
                   "synthetic": "synthetic CIFAR-sized images"}[dataset], display=False)
DATA_LABELS = {"cifar100": "CIFAR-100", "cifar10": "CIFAR-10", "cifar10-jpg": "CIFAR-10 (the JPEG copy in data/)",
               "synthetic": "synthetic data (a smoke test, not a result)"}

SLIDE = {"font.size": 18, "axes.titlesize": 20, "axes.labelsize": 19, "xtick.labelsize": 17,
         "ytick.labelsize": 17, "legend.fontsize": 16, "lines.linewidth": 3.5, "lines.markersize": 11}
COLOURS = {"fine-tuning": "#d62728", "BI-R + SI": "#1f77b4"}


def after_each_task(r) -> list[float]:
    """Accuracy (%) on task 1 measured after training each task: column 1 of the accuracy matrix."""
    return [100 * row[0] for row in r["acc_matrix_seen"]]


def task1(r) -> float:
    """Accuracy (%) on task 1 after the last task."""
    return 100 * r["per_task_acc"][0]


def overall(r) -> float:
    """Accuracy (%) on every class after the last task."""
    return 100 * r["metrics"]["overall"]


def learned(r) -> float:
    """How well the tasks after the first were learned: accuracy (%) on each right after training it, mean."""
    m = r["acc_matrix_seen"]
    return 100 * float(np.mean([m[t][t] for t in range(1, len(m))]))


def plot_task1(runs: dict, title: str = "Accuracy on task 1 as later tasks are learned"):
    """One line per run: task 1's test accuracy after each task, slide-sized; shown here, not returned."""
    with plt.rc_context(SLIDE):
        fig, ax = plt.subplots(figsize=(11, 6.2))
        others = iter(["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"])
        ends = []
        for label, r in runs.items():
            y = after_each_task(r)
            colour = COLOURS.get(label) or next(others)
            ax.plot(range(1, len(y) + 1), y, marker="o", color=colour, label=label)
            ends.append((y[-1], colour))
        placed = -99.0                      # end labels bottom to top, at least 7 points apart
        for v, colour in sorted(ends, key=lambda e: e[0]):
            placed = max(v, placed + 7)
            ax.annotate(f"{v:.0f} %", (len(y), v), xytext=(len(y) + 0.12, placed), textcoords="data",
                        va="center", color=colour, fontweight="bold")
        ax.set_xticks(range(1, len(y) + 1))
        ax.set_xlim(0.7, len(y) + 0.8)
        ax.set_ylim(-3, 103)
        ax.set_xlabel("after training task")
        ax.set_ylabel("task 1 test accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(len(runs), 3), frameon=False)
        fig.tight_layout()
    plt.show()


def plot_every_task(runs: dict):
    """Per-task accuracy at the end (bars) and right after each task was learned (black ticks); shown here."""
    with plt.rc_context(SLIDE):
        fig, ax = plt.subplots(figsize=(11, 6.2))
        width = 0.8 / len(runs)
        for k, (label, r) in enumerate(runs.items()):
            m = r["acc_matrix_seen"]
            x = np.arange(1, len(m) + 1) + (k - (len(runs) - 1) / 2) * width
            end = [100 * v for v in r["per_task_acc"]]
            ax.bar(x, end, width * 0.95, color=COLOURS.get(label), label=f"{label}: at the end")
            for xi, v in zip(x, end):       # the number inside a tall bar, above a short one
                inside = v >= 12
                ax.text(xi, v / 2 if inside else v + 1.5, f"{v:.0f}", ha="center", va="center" if inside else "bottom",
                        fontsize=15, fontweight="bold", color="white" if inside else COLOURS.get(label))
            ax.scatter(x, [100 * m[t][t] for t in range(len(m))], marker="_", s=900, linewidths=4, color="black",
                       label="right after learning it" if k == 0 else None, zorder=3)
        ax.set_xticks(range(1, len(m) + 1))
        ax.set_ylim(0, 105)
        ax.set_xlabel("test task")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Every task: at the end, and right after learning it")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(runs) + 1, fontsize=14, frameon=False)
        fig.tight_layout()
    plt.show()


def competitors(r) -> float:
    """Share (%) of an RR + RA run's replayed memories that had a competitor, mean over tasks 2..T
    (each task's count is in the run's `rr_stats`)."""
    return 100 * float(np.mean([s["n_competitive"] / s["n_replayed"] for s in r["rr_stats"] if s["n_replayed"]]))


def table(runs: dict, with_competitors: bool = False) -> pd.DataFrame:
    """The numbers the lab compares, one row per run, rounded to whole percent."""
    out = pd.DataFrame({"task 1 at the end (%)": [f"{task1(r):.0f}" for r in runs.values()],
                        "all classes at the end (%)": [f"{overall(r):.0f}" for r in runs.values()],
                        "later tasks, right after learning (%)": [f"{learned(r):.0f}" for r in runs.values()]},
                       index=list(runs))
    if with_competitors:
        out["replayed memories with a competitor (%)"] = [f"{competitors(r):.0f}" if r["config"]["rr"] else "–"
                                                          for r in runs.values()]
    return out


def points(new: float, old: float) -> str:
    """'12 points lower than' / '3 points higher than' / 'about the same as' (1 point or less), as the
    rounded numbers beside it show it."""
    d = round(new) - round(old)
    return "about the same as" if abs(d) <= 1 else f"{abs(d)} points {'higher' if d > 0 else 'lower'} than"


def signed(new: float, old: float) -> str:
    """new - old in whole points, with its sign, as the rounded numbers beside it show it: '+3', '-12', '±0'."""
    d = round(new) - round(old)
    return "±0" if d == 0 else f"{d:+d}"


lab_runs = {}                        # every run of the page, for the closing table and the status page
tic = time.perf_counter()

# %% [markdown]
# ## Part 1: watch a network forget (run this first)
#
# Two runs of the same network on the same tasks: fine-tuning, and the paper's baseline BI-R + SI.
# `birr.preset` turns a method name and a budget into a complete configuration, and `birr.run_many`
# trains them (or loads them, if they already ran). **Predict first:** after the last task, how much
# of task 1 will each method still get right?

# %%
setup = dict(budget=budget, dataset=dataset, seed=seed, device=device)
base_cfg = birr.preset("bir+si", **setup)
ft_cfg = birr.preset("finetune", **setup)
base, ft = birr.run_many([base_cfg, ft_cfg], progress=False)

# %% tags=["remove-input"]
part1_s = time.perf_counter() - tic
glue("part1_seconds", part1_s, display=False)
lab_runs.update({"fine-tuning": ft, "BI-R + SI": base})
glue("n_tasks", base["n_tasks"], display=False)
glue("cpt", base["classes_per_task"], display=False)
glue("n_classes", base["n_tasks"] * base["classes_per_task"], display=False)
glue("task1_classes", " and ".join(base["class_names"][:base["classes_per_task"]]), display=False)
glue("ft_task1", task1(ft), display=False)
glue("base_task1", task1(base), display=False)
glue("ft_overall", overall(ft), display=False)
glue("base_overall", overall(base), display=False)
glue("ft_learned", learned(ft), display=False)
glue("base_learned", learned(base), display=False)
glue("ft_task1_after2", after_each_task(ft)[1], display=False)
paper = birr.preset("bir+si", budget="full")
SIZES = ("iters", "batch", "fc_units")
glue("budget_note", f"This build ran the {budget} budget: a run trains {base_cfg.iters} iterations per task on batches of "
     f"{base_cfg.batch} images with {base_cfg.fc_units} hidden units (the paper: "
     + ", ".join(f"{getattr(paper, k)}" for k in SIZES) + "). In this build part 1 took "
     + (f"{part1_s:.0f} s" if part1_s >= 1 else "under a second")
     + " (a run already stored loads in about a second).", display=False)

# %% tags=["hide-input"]
plot_task1({"fine-tuning": ft, "BI-R + SI": base})

# %% [markdown]
# Fine-tuning learns task 1 as well as BI-R + SI does, then loses it as soon as task 2 arrives
# ({glue:text}`ft_task1_after2:.0f` % after task 2) and ends at {glue:text}`ft_task1:.0f` %: that is
# catastrophic forgetting. BI-R + SI still gets {glue:text}`base_task1:.0f` % of task 1's test images
# right after the last task. Over all {glue:text}`n_classes:d` classes the two end at
# {glue:text}`ft_overall:.0f` % and {glue:text}`base_overall:.0f` % (chance is 1 in
# {glue:text}`n_classes:d`). The bars below show every task: fine-tuning learns each new task well
# (black ticks) and keeps only the last one; BI-R + SI keeps a share of every task, but learns the
# later ones less well ({glue:text}`base_learned:.0f` % right after learning them, against
# {glue:text}`ft_learned:.0f` % for fine-tuning). Remember that gap: the exercises come back to it.

# %% tags=["hide-input"]
plot_every_task({"fine-tuning": ft, "BI-R + SI": base})

# %% [markdown]
# ## Part 2: take the method apart
#
# Each exercise changes one thing. **Write down a prediction first** (which way task 1's final
# accuracy moves, and the later tasks' accuracy right after learning them), then edit the value in
# the cell marked `# edit`, run it and the cell after it, and open the solution. The solutions give
# the numbers of this page's own runs at the default values.
#
# ### Exercise 1: switch SI off
#
# SI adds a penalty that holds each weight near its value after the earlier tasks, in proportion to
# how much that weight mattered for them; its strength is `si_c` (the paper's $c = 10^8$). With
# `si_c = 0` only replay protects the old classes. What happens to task 1, and to the new tasks?

# %%
si_c = 0.0        # edit: the baseline has 1e8; try 0, 1e6, 1e10

# %%
no_si, = birr.run_many([base_cfg.replace(si_c=si_c)], progress=False)
ex1 = {"fine-tuning": ft, "BI-R + SI": base, f"BI-R, c = {si_c:g}": no_si}
plot_task1(ex1); table(ex1)

# %% tags=["remove-input"]
lab_runs[f"BI-R, c = {si_c:g}"] = no_si
glue("ex1_task1", task1(no_si), display=False)
glue("ex1_learned", learned(no_si), display=False)
glue("ex1_what", f"With c = {si_c:g}, task 1 ends at {task1(no_si):.0f} %, {points(task1(no_si), task1(base))} "
     f"with SI ({task1(base):.0f} %); the later tasks reach {learned(no_si):.0f} % right after learning them "
     f"(with SI: {learned(base):.0f} %), and all classes end at {overall(no_si):.0f} % "
     f"(with SI: {overall(base):.0f} %).", display=False)

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
#
# {glue:text}`ex1_what:s`
#
# Why: SI is what anchors the old tasks' weights. Without it, nothing but the replayed memories
# protects task 1, and those come from a small decoder that is itself being retrained on every task,
# so old classes fade faster. In exchange, nothing holds the network back when a new task arrives,
# so new tasks are learned better. Keeping old knowledge (stability) and taking in new knowledge
# (plasticity) pull against each other; BI-R + SI buys its memory partly with plasticity.
# ```
#
# ### Exercise 2: switch replay off, keep SI
#
# Now the opposite: no replay (`replay = "none"`), SI at full strength. This is "SI alone". Will SI
# by itself save task 1?

# %%
replay = "none"   # edit: "generative" (BI-R's replay) or "none"

# %%
no_replay, = birr.run_many([base_cfg.replace(replay=replay)], progress=False)
ex2 = {"fine-tuning": ft, "BI-R + SI": base, f"SI, replay = {replay}": no_replay}
plot_task1(ex2); table(ex2)

# %% tags=["remove-input"]
lab_runs[f"SI, replay = {replay}"] = no_replay
glue("ex2_task1", task1(no_replay), display=False)
glue("ex2_what", f"With replay = \"{replay}\" and SI on, task 1 ends at {task1(no_replay):.0f} % (fine-tuning: "
     f"{task1(ft):.0f} %, BI-R + SI: {task1(base):.0f} %), and all classes at {overall(no_replay):.0f} % "
     f"(fine-tuning: {overall(ft):.0f} %).", display=False)

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
#
# {glue:text}`ex2_what:s`
#
# Why: in class-incremental learning the network must also choose *between* old and new classes. With
# no replay it never sees an old class while it learns a new task, so training raises the new classes'
# outputs for every input, old images included. SI slows the weights down but does not stop that:
# once the new classes' outputs win, the old task is lost however well its features are kept. This
# is why SI alone does little in this setting and BI-R pairs it with replay, which keeps showing the
# classifier old classes next to new ones.
# ```
#
# ### Exercise 3: fewer iterations per task
#
# Train each task for a third of the budget's iterations. Less training, less forgetting?

# %%
# edit: any number, e.g. 30 or 1000 (the budget's own is base_cfg.iters)
iters = base_cfg.iters // 3

# %%
short_run, = birr.run_many([base_cfg.replace(iters=iters)], progress=False)
ex3 = {"BI-R + SI": base, f"BI-R + SI, {iters} iterations": short_run}
plot_task1(ex3); table(ex3)

# %% tags=["remove-input"]
lab_runs[f"BI-R + SI, {iters} iterations"] = short_run
glue("ex3_task1", task1(short_run), display=False)
glue("ex3_learned", learned(short_run), display=False)
was = f"with {base_cfg.iters} iterations"
glue("ex3_what", f"With {iters} iterations per task instead of {base_cfg.iters}, task 1 ends at "
     f"{task1(short_run):.0f} % ({was}: {task1(base):.0f} %), the later tasks reach "
     f"{learned(short_run):.0f} % right after learning them ({was}: {learned(base):.0f} %), and "
     f"all classes end at {overall(short_run):.0f} % ({was}: {overall(base):.0f} %).", display=False)

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
#
# {glue:text}`ex3_what:s`
#
# Why: task 1 is learned in few steps, because nothing holds the network back yet. From task 2 on,
# every step must learn the new classes against SI's pull and next to replay of the old ones, so a
# new task needs more steps than the first. Cut them and the new tasks are barely learned; old tasks
# then look well kept mostly because little new was written over them. Task 1's line alone would
# call this a success: the accuracy on all classes, and the later tasks' accuracy right after
# learning them, show the cost. Always read both.
# ```
#
# ### Exercise 4: the weight λ of RR + RA
#
# The paper adds two losses to BI-R + SI: reconstruction *repulsion* (RR) pushes a replayed memory
# away from a class it could be confused with, reconstruction *attraction* (RA) pulls it towards its
# own class. Both are multiplied by a weight $\lambda$; the paper uses $\lambda = 10^{-6}$. The
# cell runs RR + RA at the paper's $\lambda$ and at yours. Which one differs from BI-R + SI?

# %%
lam = 1e-2        # edit: the paper's is 1e-6; try 1e-4, 1e-2, 1

# %%
paper_lam, your_lam = birr.run_many(
    [birr.preset("rr+ra", **setup, lambda_rr=v, lambda_ra=v) for v in (1e-6, lam)],
    progress=False)
ex4 = {"BI-R + SI": base, "RR + RA, λ = 1e-6": paper_lam,
       f"RR + RA, λ = {lam:g}": your_lam}
plot_task1(ex4); table(ex4)

# %% tags=["remove-input"]
lab_runs.update({"RR + RA, λ = 1e-6": paper_lam, f"RR + RA, λ = {lam:g}": your_lam})
glue("ex4_task1_paper", task1(paper_lam), display=False)
glue("ex4_task1", task1(your_lam), display=False)
glue("ex4_what", f"Task 1 at the end: BI-R + SI {task1(base):.0f} %; RR + RA at the paper's λ = 1e-6 "
     f"{task1(paper_lam):.0f} % ({signed(task1(paper_lam), task1(base))} points); at λ = {lam:g} {task1(your_lam):.0f} % "
     f"({signed(task1(your_lam), task1(base))} points). All classes at the end: {overall(base):.0f} %, "
     f"{overall(paper_lam):.0f} % ({signed(overall(paper_lam), overall(base))}) and {overall(your_lam):.0f} % "
     f"({signed(overall(your_lam), overall(base))}).", display=False)

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
#
# {glue:text}`ex4_what:s`
#
# Why: λ sets how much RR and RA count next to the losses they are added to (reconstruction,
# classification, replay, SI). At $10^{-6}$ they are a tiny fraction of the total, so the network
# trains almost exactly as without them, and whatever difference shows is of the size a change of
# seed makes. Raised to $10^{-2}$, four orders of magnitude more, they do act: they move the replayed memories, and
# with them what the classifier learns from replay, which may help or hurt. One run per setting
# cannot tell a small gain from noise; the book's "Does it work?" chapter pairs five seeds and
# sweeps λ over every decade.
# ```
#
# ### Exercise 5: the repulsion factor f
#
# RR only acts on a replayed memory that has a *competitor*: a class whose predicted probability is
# above $p_{\max} / f$, where $p_{\max}$ is the probability of the memory's own class. The paper uses
# $f = 20$. The cell runs RR + RA at $\lambda = 10^{-2}$ (where they act) with $f = 20$ and with
# yours, and counts the share of replayed memories that had a competitor. Predict: with a smaller
# f, more competitors or fewer?

# %%
f = 1.5           # edit: the paper's is 20; f must be >= 1; try 1.5, 5, 100

# %%
f20, your_f = birr.run_many(
    [birr.preset("rr+ra", **setup, lambda_rr=1e-2, lambda_ra=1e-2, rep_f=float(v))
     for v in (20, f)], progress=False)
ex5 = {"BI-R + SI": base, "RR + RA, f = 20": f20, f"RR + RA, f = {f:g}": your_f}
plot_task1(ex5); table(ex5, with_competitors=True)

# %% tags=["remove-input"]
lab_runs[f"RR + RA, f = {f:g}"] = your_f
glue("ex5_share", competitors(your_f), display=False)
glue("ex5_share20", competitors(f20), display=False)
glue("ex5_task1", task1(your_f), display=False)
glue("ex5_what", f"With f = {f:g}, {competitors(your_f):.0f} % of the replayed memories had a competitor "
     f"(f = 20: {competitors(f20):.0f} %), and task 1 ends at {task1(your_f):.0f} % (f = 20: {task1(f20):.0f} %, "
     f"BI-R + SI: {task1(base):.0f} %).", display=False)

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
#
# {glue:text}`ex5_what:s`
#
# Why: the threshold is $p_{\max}/f$. With $f = 1.5$ a class must come within a factor 1.5 of the
# winner to count, a near tie, so few memories have a competitor and RR rarely acts; with a large f
# almost any class with some probability counts, and RR acts on most memories. $f = 1$ selects
# nothing at all. So f decides *how often* RR acts and $\lambda$ *how hard*: at the paper's
# $\lambda = 10^{-6}$ no choice of f makes the terms large.
# ```
#
# ## Every run of this lab
#
# One row per run, for the closing discussion: which setting kept task 1, which learned the new
# tasks, and which did both.

# %% tags=["remove-input"]
glue("config_stamps", list(dict.fromkeys(r["stamp"] for r in lab_runs.values())), display=False)
trained_on = ", ".join(sorted({r["provenance"]["device"] for r in lab_runs.values()}))
glue("data_label", f"{DATA_LABELS[dataset]}, {budget} budget, {trained_on}", display=False)
glue("lab_seconds", time.perf_counter() - lab_start, display=False)
table(lab_runs)

# %% [markdown]
# ## Runs on this page

# %% tags=["hide-output", "remove-input"]
pd.DataFrame({label: {"stamp": r["stamp"], "iters": r["config"]["iters"], "replay": r["config"]["replay"],
                      "si_c": r["config"]["si_c"], "λ": r["config"]["lambda_rr"] if r["config"]["rr"] else "–",
                      "f": r["config"]["rep_f"] or "–", "seconds": round(r["wall_time_s"], 1),
                      "device": r["provenance"]["device"], "git": r["provenance"]["git_sha"][:12]}
              for label, r in lab_runs.items()}).T
