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
# # A lens on replay: from features back to images
#
# This page was computed on {glue:text}`data_label:s`. BI-R on CIFAR replays 1,024-d features of a
# frozen convolutional encoder, never pixels, so the reference code has no way to show what a replayed
# memory looks like ({ref}`§11 <ref-11>`: with hidden replay every sample and reconstruction plot is switched off).
# birr trains a separate decoder that maps encoder features back to images, and uses it as a *lens*:
# {doc}`/book/executed/10_exaggeration` looks through it at what reconstruction repulsion and attraction
# do to replay. This page says how the lens was made and how sharp it is.
#
# The lens is for viewing only. It is trained after the fact on real images, it is never part of a
# continual run, and `birr/train.py` does not import it (`tests/test_lens.py` checks this by reading
# the source), so no number elsewhere in the book depends on it.
#
# ```{include} /book/_admonition/gpu.md
# ```

# %% tags=["parameters"]
dataset = "cifar10-jpg"
budget = "short"
seeds = [0, 1, 2, 3, 4]
device = "auto"

# %% tags=["remove-input"]
# %matplotlib inline
from pathlib import Path

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
page.smoke_banner("random class-structured images and a decoder trained for seconds")
page.glue()                                     # data_label, data_used, n_seeds, seeds_text
cfg, dev = page.preset("bir+si"), page.dev

# the lens for this budget: loaded from artefacts/ by its recipe stamp, trained if missing
decoder, meta = lens.decoder_for(cfg, device=dev, progress=False)

# %% [markdown]
# ## The decoder
#
# The architecture is the image decoder the reference builds but never trains for hidden replay
# (the fork's `convD_contr`, {ref}`§8.6 <ref-8-6>`; the BI-R code's `convD` in its "no internal replay" ablation, {ref}`§11 <ref-11>`):
# the 1,024 features are viewed as the encoder's 256 × 2 × 2 output, then four stride-2 4 × 4
# transposed convolutions (256 → 128 → 64 → 32 → 16 channels, each with batch-norm and ReLU) double
# the size up to 32 × 32, and a 3 × 3 transposed convolution with linear output gives the three colour
# channels, in the encoder's normalised pixel space. It has {glue:text}`dec_params:,d` parameters.
#
# It is trained to invert the frozen encoder of this budget: for every training image $x$ of
# {glue:text}`dec_dataset:s`, the input is the encoder's feature vector $h(x)$, exactly as the continual
# runs compute it, and the loss is the squared error between the decoded image and $x$ in normalised
# pixels (the loss of the BI-R code's image decoder, {ref}`§11 <ref-11>`):
#
# $$
# \mathcal{L}_{\text{lens}} = \frac{1}{3 \cdot 32 \cdot 32} \big\lVert \mathrm{dec}(h(x)) - x \big\rVert^2 .
# $$

# %% tags=["remove-input"]
glue("dec_params", sum(p.numel() for p in decoder.parameters()), display=False)
glue("dec_dataset", meta["dataset"], display=False)
glue("dec_psnr", meta["test_psnr"], display=False)
glue("dec_mean_psnr", meta["mean_image_psnr"], display=False)
glue("dec_train_s", meta["train_seconds"], display=False)
glue("dec_epochs", meta["recipe"]["epochs"], display=False)
glue("dec_n_train", meta["n_train"], display=False)
glue("dec_n_test", meta["n_test"], display=False)
glue("dec_stamp", meta["stamp"], display=False)
glue("dec_enc_stamp", meta["recipe"]["encoder"]["stamp"], display=False)
rec = meta["recipe"]
pd.DataFrame({"value": {
    "artefact": Path(meta["path"]).name,
    "trained on": f"{meta['dataset']}, {meta['n_train']:,} training images",
    "encoder": f"encoder-{rec['encoder']['stamp']}.pt (pre-trained on {rec['encoder']['dataset']}, epochs={rec['encoder']['epochs']}; weights hash {rec['encoder']['hash']})",
    "epochs, batch, optimiser": f"{rec['epochs']}, {rec['batch']}, Adam lr {rec['lr']:g}",
    "loss": "squared error on normalised pixels",
    "train time": f"{meta['train_seconds']:.0f} s on {meta['device']} ({meta['threads']} thread(s), torch {meta['torch']})",
    "test PSNR": f"{meta['test_psnr']:.2f} dB over {meta['n_test']:,} test images",
    "PSNR of the mean training image": f"{meta['mean_image_psnr']:.2f} dB (a floor)",
}}).style   # a Styler never cuts a cell short (a plain frame stops at 50 characters)

# %% [markdown]
# ## How sharp the lens is
#
# Reconstruction quality is measured as the peak signal-to-noise ratio on the test images, in
# $[0, 1]$ pixels after undoing the normalisation:
# $\mathrm{PSNR} = 10 \log_{10} \big(1 / \mathrm{MSE}\big)$ dB, MSE over every pixel and channel of all
# {glue:text}`dec_n_test:,d` test images. The lens reaches **{glue:text}`dec_psnr:.2f` dB**, against
# {glue:text}`dec_mean_psnr:.2f` dB for the blank guess of the mean training image
# (trained for {glue:text}`dec_epochs:d` epoch(s) on {glue:text}`dec_n_train:,d` images in
# {glue:text}`dec_train_s:.0f` s; artefact stamp {glue:text}`dec_stamp:s`, encoder
# {glue:text}`dec_enc_stamp:s`). Expect blurry pictures: the encoder squeezes 3,072 pixels into a
# 2 × 2 grid of 256 channels that was trained to classify, not to keep detail, and the lens only sees
# what survives that.

# %% tags=["remove-input"]
bench = birr.data.load(dataset, seed=seeds[0])   # labels in the class order of the first seed (appendix §2)
encoder, _ = birr.encoder.for_config(cfg, device=dev, progress=False)
_, test_x = birr.features.features(encoder, bench, device=dev)            # (N_test, 1024), cached
names = bench.class_names
decoded_test = lens.decode_images(decoder, test_x, meta["mean"], meta["std"])   # (N_test, 3, 32, 32) in [0, 1]
real_test = bench.test.images.float() / 255

first = {c: (bench.test.labels == c).nonzero().flatten() for c in range(bench.n_classes)}
rows = []
for k in range(2):
    idx = [int(first[c][k]) for c in range(bench.n_classes)]
    rows += [("real", real_test[idx]), ("decoded", decoded_test[idx])]
page.figure("lens_test", R.image_rows(rows, col_titles=names), save="09_lens_test.png")

per_class = pd.DataFrame([dict(class_name=names[c], test_images=len(first[c]),
                               psnr_dB=lens.psnr(decoded_test[first[c]], real_test[first[c]]))
                          for c in range(bench.n_classes)]).set_index("class_name")
glue("psnr_best_class", per_class["psnr_dB"].idxmax(), display=False)
glue("psnr_worst_class", per_class["psnr_dB"].idxmin(), display=False)

# %% [markdown]
# ```{glue:figure} lens_test
# :name: fig-lens-test
#
# Test images (never seen by the encoder or the lens) and their reconstruction through the lens,
# two per class ({glue:text}`data_label:s`). Each "decoded" image is dec(h(x)) of the real image above it.
# ```
#
# PSNR per class (highest for {glue:text}`psnr_best_class:s`, lowest for
# {glue:text}`psnr_worst_class:s`). Why a class inverts better is not measured here; one guess is that
# plainer, smoother images lose less in the encoder's 1,024 features than cluttered ones.

# %% tags=["hide-input"]
per_class.round(2)

# %% [markdown]
# ## What the baseline replays
#
# Now the lens on replay. The final BI-R + SI model of the first seed generates feature vectors for
# each class it knows (a latent drawn from the class's mode of the GMM prior, decoded through that
# class's gates; {ref}`§4.3 <ref-4-3>`), and the lens turns them into pictures. In a continual run these vectors
# stand in for the old classes' images; classes of the last task were learned but never replayed. The
# last two columns are the lens applied to the *mean* of 512 replayed vectors of the class and to the
# mean of the real training features of the class: the "prototype" the generator has kept against the
# one the data define.

# %% tags=["remove-input"]
[res], models = page.run_with_models([cfg])     # its final model: loaded, or this one run trained again
page.glue_stamps([res])
model = models[cfg.stamp]
assert res["class_names"] == names, "the run and the page must use the same class order"

n_show = 8
train_x, _ = birr.features.features(encoder, bench, device=dev)
rows = []
for c in range(model.C):
    feats, _ = lens.replay_features(model, [c], n_show, seed=0)                    # (n_show, 1024)
    replay_mean = lens.replay_features(model, [c], 512, seed=1)[0].mean(0, keepdim=True)
    real_mean = train_x[bench.train.labels == c].mean(0, keepdim=True)
    imgs = lens.decode_images(decoder, torch.cat([feats, replay_mean, real_mean]), meta["mean"], meta["std"])
    task = c // res["classes_per_task"] + 1
    rows.append((f"{names[c]}\n(task {task})", imgs))
fig = R.image_rows(rows, col_titles=[f"replay {j + 1}" for j in range(n_show)] + ["replay mean", "real mean"])
page.figure("baseline_replay", fig, save="09_baseline_replay.png")
glue("n_show", n_show, display=False)
glue("last_task", res["n_tasks"], display=False)

# %% [markdown]
# ```{glue:figure} baseline_replay
# :name: fig-baseline-replay
#
# Replay of the final BI-R + SI model (first seed) seen through the lens: {glue:text}`n_show:d`
# generated feature vectors per class, the decoded mean of 512 of them, and the decoded mean of the
# class's real training features ({glue:text}`data_label:s`). Classes of task
# {glue:text}`last_task:d` were never replayed during training.
# ```
#
# Note how alike the replays of one class can look next to the real images of
# {numref}`fig-lens-test`: how much less a class's replay varies than the class itself is measured in
# {doc}`/book/executed/10_exaggeration`. Two cautions when reading these pictures. First, the lens was trained on the features of real
# images; a generated vector that falls off that set is decoded as the lens guesses, which tends to a
# grey, average-looking image. Second, the decoded mean of many vectors is not the mean of their decoded
# images: it is the lens's picture of the class prototype, which is what the paper's class-mean targets
# $\hat{x}$ are built from ({doc}`/book/executed/10_exaggeration`).
