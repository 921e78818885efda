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
# # Introduction
#
# This book re-implements *brain-inspired replay* (BI-R) and a paper that adds two losses to it,
# *reconstruction repulsion* (RR) and *reconstruction attraction* (RA), and runs every experiment
# in the open. As in the annotated transformer, the two voices are kept apart: **quotes from the
# paper are blockquoted; birr's own commentary is plain prose.**
#
# ## The problem: forgetting classes
#
# In *class-incremental* learning a classifier meets its classes a few at a time, in tasks, and
# must in the end tell apart every class it has seen, with no hint of which task an image came from.
#
# > Typically, data is randomly shuffled prior to training, reducing the dependence of consecutive
# > examples. However, this is not always possible; in the real world, samples tend to be temporally
# > correlated, for instance a robot learning new objects classes may first see many images of a dog,
# > then many of a cat. With ANNs, the result of such correlation is a strong interference between
# > learned parameters important to the prediction of current and previously seen classes – causing
# > the model to forget previously learned classes almost entirely.
#
# Storing old images and mixing them into later tasks works, but the store grows with every task.
# Generative replay stores a model instead:
#
# > Taking inspiration from the brain, a more tractable solution involves the incorporation of a
# > generative model—such as VAE or GAN—into the continual learner, allowing for previously seen
# > classes to be "replayed" alongside the current classes, in much the same way memories are
# > replayed in the mind.
#
# ## Brain-inspired replay
#
# > The model used in this work is built upon the brain-inspired replay (BI-R) model proposed by van
# > de Ven et al [1]. This combines a softmax classifier with a VAE to generate samples based on
# > previously seen classes and replay them alongside the current inputs, as depicted in Fig. 1
# > [the paper's figure, not reproduced here].
#
# In BI-R the classifier and the VAE share one network: the encoder's hidden layers feed both the
# softmax and the latent code, and the decoder is the "feedback" path back down. On CIFAR-100 the
# replay is *internal*: images first pass through a convolutional encoder that was pre-trained on
# CIFAR-10 and then frozen, and what is generated and replayed are its feature vectors, not pixels.
# BI-R is usually combined with synaptic intelligence (SI), a penalty that protects weights that
# mattered for earlier tasks; the "baseline" of this book is BI-R + SI with the reference settings
# (at the `full` budget; the CPU-sized `short` budget scales width, iterations, batch sizes, learning
# rate and the encoder's pre-training epochs, each change stated where it is used and listed in the
# errata chapter, which argues the learning rate's; the reasons for the others are comments in
# `birr/config.py`). It does well on small benchmarks, much less so on CIFAR-100:
#
# > The current state-of-the-art generative model, on which this paper builds [1], is able to obtain
# > close to storage based performance on a 10-class MNIST dataset, however, when applied to the more
# > challenging 100-class CIFAR100 dataset, classification precision compared to the stored approach
# > is greatly reduced—with earlier seen classes being affected the most.
#
# ## The paper's idea: exaggerate what tells similar memories apart
#
# > This suggests that the brain adaptively targets and accentuates small differences in important
# > discriminating features of similar memories to reduce interference. Ultimately, this calls to
# > attention to a new approach to deal with interference in ANNs: instead of fighting against
# > interference, the model could be shaped by interference through an adaptive feature exaggeration
# > based approach.
#
# Two questions follow: which classes compete with a replayed sample, and how to push them apart.
# For the first, the model's own softmax decides, with a *repulsion factor* $f \ge 1$:
#
# > The highest softmax probability (corresponding to the sample label) is divided by the repulsion
# > factor, providing a threshold probability for identifying competing classes for that sample. Any
# > class with a probability above that of the threshold is deemed competitive.
#
# In symbols: with softmax output $p$ and label $c^\ast = \arg\max_c p_c$, a class $c \ne c^\ast$
# competes when
#
# $$
# p_c > \frac{p_{c^\ast}}{f}.
# $$
#
# The paper's Fig. 2 has $p_{c^\ast} = 0.6$ and $f = 3$, so the threshold is $0.6 / 3 = 0.2$:
# a large $f$ lets many classes compete, $f = 1$ none at all. For the second question, a third
# generative loss joins the VAE's reconstruction and regularisation terms:
#
# > To encourage the exaggeration of feature-wise differences between competing classes, a new
# > "reconstruction repulsion" (RR) loss was developed. [...] It aims to maximise the binary
# > cross-entropy (BCE) between a generated sample, $x'_i$, and an original input belonging to a
# > competing class $x_{i_C}$ to that of the sample [...]. An important aspect to this, however, is
# > that such repulsion between the features of competing samples can only be done in moderation.
#
# The competitor is represented by its class mean $\hat{x}$, and RA does the opposite, pulling a
# replayed sample towards the mean of its own class. Both act on replay only:
#
# > Due to the fact that the exaggeration observed in the brain only occurs between memories
# > themselves and not to the objects responsible for these memories, the RR and RA losses were only
# > applied to batches of replayed samples, rather than new class batches.
#
# The paper reports its gains as the final test accuracy ("precision" in the paper) averaged over
# all classes, over the first 50 % of classes seen and over the first 20 %: in the paper's setting
# forgetting hurts the earliest classes most, so that is where a cure should show (the baseline chapter
# checks whether it does on this build's data). birr reports the same three numbers
# (`overall`, `first50`, `first20`). The paper's text and the authors' code differ in several places
# (the loss is an inverse squared error on features in the code, the class means come from the replay
# batch, only the runner-up class is ever repelled); birr implements both readings and the later
# chapters say which one each number comes from. Citations such as {ref}`§8 <ref-8>` link to sections of
# {doc}`/book/reference_code`, the book's account, section by section, of what the two reference
# codebases compute and of every place where code and paper disagree ({doc}`/book/references` cites them).
#
# ## The data of this build
#
# The paper's benchmark is CIFAR-100 split into 10 tasks of 10 classes, in a class order drawn from
# the seed. It has to be downloaded, so the book defaults to an offline stand-in that ships with the
# repository, CIFAR-10 as JPEG files split into 5 tasks of 2 classes; numbers computed on it are a
# proxy, not the paper's. This copy of the book was built with `dataset =`
# "{glue:text}`dataset_name:s`": {glue:text}`data_source:s`. That gives
# {glue:text}`n_tasks:d` tasks of {glue:text}`classes_per_task:d` classes,
# {glue:text}`n_classes:d` classes in all, with {glue:text}`n_train:,d` training and
# {glue:text}`n_test:,d` test images. The cell below loads it and shows a few training images of
# every class, one row per task, in the order the learner meets them.

# %% tags=["parameters"]
dataset = "cifar10-jpg"
budget = "short"
seeds = [0, 1, 2, 3, 4]
device = "auto"

# %% tags=["remove-input"]
# %matplotlib inline
import pandas as pd
from myst_nb import glue

import birr.data
from birr import book as R

page = R.Page(dataset, budget, seeds, device)   # the parameters, checked
dataset, budget, seeds, device = page.params
page.glue()                                     # data_used etc., for the status page (scripts/exec_stats.py)
bench = birr.data.load(dataset, seed=seeds[0])  # class order of the first seed (appendix §2)
info = bench.describe()

# %% tags=["remove-input"]
glue("dataset_name", bench.name, display=False)
glue("data_source", info["source"], display=False)
glue("n_tasks", bench.n_tasks, display=False)
glue("classes_per_task", bench.classes_per_task, display=False)
glue("n_classes", bench.n_classes, display=False)
glue("n_train", len(bench.train), display=False)
glue("n_test", len(bench.test), display=False)

pd.DataFrame([
    dict(task=t,
         classes=", ".join(bench.class_names[c] for c in bench.task_classes(t)),
         train_images=len(bench.task_split(t, "train")),
         test_images=len(bench.task_split(t, "test")))
    for t in range(1, bench.n_tasks + 1)
]).set_index("task")

# %% tags=["remove-input"]
page.figure("task_grid", R.image_grid(bench, per_class=max(1, 8 // bench.classes_per_task)))  # ~8 images a row

# %% [markdown]
# ```{glue:figure} task_grid
# :name: fig-task-grid
#
# The first training images of every class, one row per task ({glue:text}`n_tasks:d` tasks,
# {glue:text}`n_classes:d` classes; `dataset` = "{glue:text}`dataset_name:s`"). The learner sees
# the rows top to bottom and never sees a row again, except through replay.
# ```
#
# ## How to read and re-run this book
#
# Each chapter is a Python file in `notebooks/` (jupytext "percent" format, no outputs in git). `make
# book` turns each one into a notebook, executes it with papermill and renders the executed notebooks
# into this site. The cell just after the cell tagged `parameters` in each chapter was added by
# papermill and shows the parameters this copy was built with; the {doc}`/book/status` page lists
# them for every chapter, with run times and the machine. Training results are stored under
# `results/` by their config stamp, so a rebuild loads them rather than training again.
#
# To re-run one chapter by itself, with other parameters (here: the few-second smoke budget on
# the synthetic data), from the repository root:
#
# ```bash
# .venv/bin/jupytext --to ipynb -o _build/ipynb/01_intro.ipynb notebooks/01_intro.py
# .venv/bin/papermill _build/ipynb/01_intro.ipynb book/executed/01_intro.ipynb \
#     --cwd notebooks -k python3 \
#     -p budget smoke -p dataset synthetic -p device cpu
# ```
#
# `--cwd notebooks` runs the chapter from its own folder, as `make book` does, so relative paths
# in it mean the same in both. Results go to `results/` at the top of the repository (or to
# `$BIRR_RESULTS` if set). To rebuild the whole book, `make book` (parameters from
# `book/params.yaml`), or `make reproduce BUDGET=full DATASET=cifar100` for the paper's setting
# (CIFAR-100 must be downloadable).
#
# To work in a chapter interactively, open `notebooks/NN_name.py` in Jupyter with jupytext installed
# (it is, in the project's environment): in JupyterLab, *Open With → Jupytext Notebook*. The launch
# buttons (the rocket icon at the top of a chapter) open the chapter on Binder or Colab once the
# repository is public with its executed notebooks published; until then, they point at nothing.
#
# ```{important}
# **A run of your own in seconds.** `python -m birr train --budget smoke` trains BI-R + SI on 2 tasks of
# synthetic data on a CPU (about 8 s) and prints one line per task and its accuracies; `--method rr+ra`
# adds the two new losses. The next chapter starts with the data every other chapter uses.
# ```
