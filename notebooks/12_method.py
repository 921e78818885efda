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
# # The method in one page
#
# Everything the book trains, on one page: the BI-R network as a diagram, then every loss term as an
# equation, each followed by the `birr` function that computes it, called on a tensor small enough to
# check by hand, with its printed result. Where the paper's formula and the code it was run with
# differ, the equation shown is the one birr computes, with the difference stated and the section of
# {doc}`/book/reference_code` that documents it linked. A glossary of the terms the other chapters use
# closes the page. Nothing here is trained; the page runs in seconds.
#
# As elsewhere, **quotes from the paper are blockquoted; birr's own commentary is plain prose.**
# Every `birr.losses` function takes tensors with a leading *run* dimension $K$ (so that many runs
# can train side by side without mixing) and returns one value per run; here $K = 1$, so every
# result is a one-element tensor.

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

import birr
import birr.losses as L
import birr.rr as RR
import birr.si as SI
from birr.diagram import draw_bir_architecture

dataset, budget, seeds, device = birr.params.check(dataset, budget, seeds, device)
torch.set_printoptions(precision=4)

# %% [markdown]
# ## The architecture
#
# > The model used in this work is built upon the brain-inspired replay (BI-R) model proposed by van
# > de Ven et al [1]. This combines a softmax classifier with a VAE to generate samples based on
# > previously seen classes and replay them alongside the current inputs.
#
# This book works from the paper's text, without its figures, so the drawing below is not the paper's
# Fig. 1 but birr's model (`birr.model.BIR`, {ref}`§4 <ref-4>`), drawn by
# `birr.diagram.draw_bir_architecture`. An image
# passes through a convolutional encoder that was pre-trained and then frozen; its 1,024 output
# features $h$ are what the rest of the network sees, classifies, reconstructs and replays. The
# trainable encoder fcE maps $h$ to $h_E$; the classifier head and the split layer toZ both read
# $h_E$. The decoder (the "feedback" path) maps $z$ back to 1,024 features $x'$ through two layers
# gated by fixed, class-specific binary masks ({ref}`§4.2 <ref-4-2>`). The prior over $z$ has one
# Gaussian mode per class ({ref}`§4.3 <ref-4-3>`). From the second task on, a frozen copy of the model
# at the end of the previous task generates replayed *features* (not images) and, as teacher, labels
# them with its logits.
#
# Two places differ from the paper's description of Fig. 1 ({ref}`§9.1 <ref-9-1>`, item 4): the
# paper feeds $z$ to the softmax, the code puts the classifier on $h_E$, before the split layer; and
# the paper's "two more FC layers and the decoder" are three fully connected layers with no
# convolutional decoder, so reconstructions are conv features, never pixels.

# %% tags=["remove-input"]
fig = draw_bir_architecture()
glue("bir_architecture", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} bir_architecture
# :name: fig-bir-architecture
#
# BI-R + SI with RR / RA as birr builds it. Black arrows: the forward pass of current and replayed
# samples; blue: what the previous model (the teacher) feeds in; green: the fixed class gates of the
# decoder; red: each loss term, next to the output it reads. H is the hidden width (2,000 at the `full`
# budget).
# ```
#
# ## The VAE: reconstruction
#
# The paper's reconstruction loss is a feature-wise binary cross-entropy (its Eq. 2):
#
# $$
# \begin{aligned}
# \ell_{rec}(x_i, x'_i; \phi, \theta) = {} & \mathbb{E}_{\epsilon \sim \mathcal{N}(0, I)}
# \Big[ \sum_{f=1}^{M_f} x_{i,f} \log x'_{i,f} \\
# & \qquad + (1 - x_{i,f}) \log (1 - x'_{i,f}) \Big].
# \end{aligned}
# $$
#
# It asks the reconstruction $x'_i$ of every sample to match its input $x_i$, feature by feature. The
# code cannot use BCE: its inputs are unbounded conv features and the decoder's output is linear. It
# uses half the squared error, *averaged* over the $D = 1024$ features and over the batch
# ({ref}`§5 <ref-5>`; {ref}`§9.1 <ref-9-1>`, items 1-2):
#
# $$
# \ell_{rec} = \frac{1}{B} \sum_{i=1}^{B} \frac{1}{2} \cdot \frac{1}{D} \sum_{d=1}^{D} (x_{i,d} - x'_{i,d})^2 .
# $$
#
# Two samples of four features, $(K, B, D) = (1, 2, 4)$; the second is reconstructed exactly except
# in one feature:

# %%
x = torch.tensor([[[0.5, -1.0, 2.0, 0.0],
                   [1.0, 1.0, -0.5, 0.3]]])
x_recon = torch.tensor([[[0.4, -0.8, 1.5, 0.1],
                         [1.0, 0.0, -0.5, 0.3]]])
L.reconstruction_loss(x, x_recon)

# %% [markdown]
# ## The VAE: KL to a class-conditional GMM prior
#
# The paper's regularisation term is a KL divergence to a standard normal prior (its Eq. 3, where it
# writes the prior as $p(x)$ for $p(z)$):
#
# $$
# \ell_{reg}(x_i; \phi, \lambda) = D_{KL}\big[ q_\phi(z_i \mid x_i) \,\|\, p(z_i) \big].
# $$
#
# It keeps the encoder's posterior close to the prior, so that sampling the prior gives inputs the
# decoder knows. BI-R's prior is not a standard normal but a mixture with one Gaussian mode
# $\mathcal{N}(\mu_c, \sigma^2_c)$ per class, learned with the rest ({ref}`§4.3 <ref-4-3>`), and the
# code estimates the KL from the single sample $z_i = \mu_i + \epsilon_i \sigma_i$ instead of
# analytically ({ref}`§5 <ref-5>`; {ref}`§9.1 <ref-9-1>`, item 3). For a current sample with label
# $y_i$ the prior is its class's mode:
#
# $$
# \ell_{KL} = \frac{1}{3072} \cdot \frac{1}{B} \sum_{i=1}^{B}
# \Big[ \log q(z_i \mid x_i) - \log \mathcal{N}(z_i; \mu_{y_i}, \sigma^2_{y_i}) \Big],
# $$
#
# divided by $3 \cdot 32 \cdot 32 = 3072$, the pixel count of an image, although the reconstructed
# vector has 1,024 entries: the reference divides by it, and so does birr ({ref}`§9.3 <ref-9-3>`).
# Two samples in a 2-d latent space, unit variances, the second posterior farther from its class's
# mode than the first; `divisor=1.0` shows the estimate before the division. A single-sample estimate
# can be negative for one sample; only its mean is a KL.

# %%
z = torch.tensor([[[0.2, -0.1], [1.5, 0.3]]])       # (K, B, Z)
mu = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])      # the posteriors
logvar = torch.zeros(1, 2, 2)
mode_mu = torch.tensor([[[0.5, 0.0], [1.0, 1.0]]]) # the labels' modes
mode_logvar = torch.zeros(1, 2, 2)
kl = L.kl_current(z, mu, logvar, mode_mu, mode_logvar)
raw = L.kl_current(z, mu, logvar, mode_mu, mode_logvar, divisor=1.0)
print("KL, as in the code:", kl)
print("before / 3072:     ", raw)

# %% [markdown]
# A replayed sample has no label. Its prior is the mixture of all active modes, each weighted by the
# teacher's softmax at temperature $T = 2$ over the old classes, zero-padded for the current task's
# classes:
#
# $$
# \log p(z_i) = \log \sum_{c} w_{i,c}\, \mathcal{N}(z_i; \mu_c, \sigma^2_c),
# $$
#
# $$
# w_i = \mathrm{softmax}(\text{teacher logits}_i / T).
# $$
#
# Three active classes, the third one new (weight 0):

# %%
modes_mu = torch.tensor([[[0.5, 0.0],         # (K, C_active, Z)
                          [1.0, 1.0],
                          [-2.0, 1.0]]])
modes_logvar = torch.zeros(1, 3, 2)
w = torch.tensor([[[0.7, 0.3, 0.0],             # (K, B, C_active)
                   [0.1, 0.9, 0.0]]])
L.kl_replay(z, mu, logvar, modes_mu, modes_logvar, w, divisor=1.0)

# %% [markdown]
# ## Classification and distillation
#
# The paper's Eq. 1 covers the VAE only; BI-R's classifier adds two more terms
# ({ref}`§5 <ref-5>`). Current samples get the cross-entropy of the logits over all classes seen so
# far against their labels. Replayed samples get *distillation*: the current model's logits $s_i$
# are pulled towards the teacher's softened ones, both at temperature $T = 2$, the teacher's targets
# computed over the old classes and zero-padded to the active ones:
#
# $$
# \ell_{KD} = T^2 \cdot \frac{1}{B} \sum_{i=1}^{B} \sum_{c} -\,\mathrm{softmax}(t_i / T)_c \,
# \log \mathrm{softmax}(s_i / T)_c .
# $$
#
# The factor $T^2$ keeps the gradient's scale independent of $T$. Two samples, three active classes of
# which two are old:

# %%
student = torch.tensor([[[2.0, 0.5, 1.0],     # (K, B, C_active)
                         [0.0, 1.5, 2.5]]])
teacher = torch.tensor([[[3.0, 0.0],          # (K, B, C_old)
                         [0.5, 1.0]]])
y = torch.tensor([[0, 2]])                    # (K, B)
print("classification:   ", L.classification_loss(student, y))
print("distillation, T=2:", L.distillation_loss(student, teacher, T=2.0))
print("distillation, T=1:", L.distillation_loss(student, teacher, T=1.0))

# %% [markdown]
# ## Synaptic intelligence (SI)
#
# SI (Zenke et al., 2017) protects the parameters that mattered for earlier tasks. While task $t$
# trains, each parameter $\theta_k$ accumulates its contribution to the decrease of the loss, the path
# integral $W_k \mathrel{+}= -g_k \, \Delta\theta_k$ (gradient times update, every step). At the end
# of the task it becomes an importance, damped by $\varepsilon = 0.1$ and summed over tasks, and the
# parameters are stored as the anchor $\theta^\ast$:
#
# $$
# \omega_k \mathrel{+}= \frac{W_k}{(\theta_k - \theta^\ast_k)^2 + \varepsilon}, \qquad
# L_{SI} = \sum_k \omega_k \, (\theta_k - \theta^\ast_k)^2 ,
# $$
#
# where $\theta^\ast_k$ on the left is the previous anchor. The total loss adds $c \cdot L_{SI}$ with
# $c = 10^8$. As in the reference, $W$ (hence $\omega$) is accumulated for fcE and the classifier head
# only, so SI constrains no other part of the network ({ref}`§6 <ref-6>`). `birr.si.si_importance` is
# the update of $\omega$; `birr.si.SynapticIntelligence` holds $W$, $\omega$ and the anchor through
# training. One weight matrix and one bias: the first weight moved by 0.2 with $W = 0.4$; the bias
# entries did not move, so a path integral gives them an importance of $W / \varepsilon$:

# %%
W = [torch.tensor([[[0.4, 0.1], [0.02, 0.0]]]),   # path integrals: a weight (K, 2, 2)
     torch.tensor([[0.05, 0.0]])]                   # and a bias (K, 2)
delta = [torch.tensor([[[0.2, 0.0], [0.2, 0.0]]]),       # distance moved in the task
         torch.tensor([[0.0, 0.0]])]
omega = [SI.si_importance(w, d, eps=0.1) for w, d in zip(W, delta)]
print("omega:", *omega, sep="\n")

# %% [markdown]
# The penalty is `birr.si.si_penalty`, here with those importances after the next task has moved the
# parameters away from their anchors: the unimportant ones move for free.

# %%
theta = [torch.tensor([[[1.0, -0.5], [0.2, 0.0]]]),     # weight (K, 2, 2)
         torch.tensor([[0.3, 0.1]])]                      # bias (K, 2)
anchor = [torch.tensor([[[0.8, -0.5], [0.0, 0.0]]]),
          torch.tensor([[0.3, 0.4]])]
print("L_SI:", SI.si_penalty(theta, omega, anchor))
print(f"c = {birr.preset('bir+si').si_c:g}")

# %% [markdown]
# ## The total loss (Eq. 1)
#
# > The VAE is then optimised over successive batches by minimising the per-batch loss function:
#
# $$
# \mathcal{L}(x, x', z; \phi, \theta, \lambda) = \sum_{i=1}^{N_s}
# \big[ \lambda_r \, \ell_{rec}(x_i, x'_i; \phi, \theta) + \lambda_d \, \ell_{reg}(x_i; \phi, \lambda) \big]
# $$
#
# The code's total, per step of task $t$, adds the classifier's terms and weighs the current batch
# against the replayed one by the number of tasks seen ({ref}`§5 <ref-5>`):
#
# $$
# \begin{aligned}
# \mathcal{L} = {} & \frac{1}{t} \underbrace{\big(\ell_{rec} + \ell_{KL} + \ell_{CE}\big)}_{\text{current batch}} \\
# & + \Big(1 - \frac{1}{t}\Big) \underbrace{\big(\ell^{r}_{rec} + \ell^{r}_{KL} + \ell_{KD}
#   + \lambda_{RR}\, \ell_{RR} + \lambda_{RA}\, \ell_{RA}\big)}_{\text{replay batch}} \\
# & + c \, L_{SI} .
# \end{aligned}
# $$
#
# $\lambda_r = \lambda_d = 1$; every term is a batch mean, not the paper's sum over samples
# ({ref}`§9.1 <ref-9-1>`, item 2). Task 1 has no replay ($1/t = 1$); at task 2 the two batches weigh
# equally; at task 10 replay carries nine tenths. RR and RA sit *inside* the replay loss, so their
# effective weight is $(1 - 1/t)\,\lambda$ ({ref}`§8.5 <ref-8-5>`), with $\lambda_{RR} = \lambda_{RA} =
# 10^{-6}$ by default. `birr.losses.bir_loss` computes every term of a step and this total (SI's term is
# added by the learner, to the gradient in closed form after the backward pass, `birr.si`). Here it is
# called on the toy tensors above: the reconstruction and KL examples' batch, the classification
# example's logits and labels (three active classes, two old), and, as a replayed batch, the same
# tensors with the distillation example's teacher, its soft gates at $T = 2$, and RR / RA of the code
# variant with $f = 3$ (the sections below):

# %%
f3, with_f = torch.tensor([3.0]), torch.tensor([True])
# the model's pass: logits, mu, logvar, z, x'
out = (student, mu, logvar, z, x_recon)
# the replayed batch: x_r, teacher logits, soft gates, the model's pass on it
replay = (x, teacher, torch.softmax(teacher / 2.0, -1), out)


def code_rr_ra(x_r, x_recon_r, logits_r, teacher_logits):
    return RR.rr_ra_code(x_r, x_recon_r, teacher_logits, f3, with_f)


lam = torch.tensor([1e-6])
rows = {}
for t in (2, 10):
    terms = L.bir_loss(t, x, y, out, modes_mu, modes_logvar, n_active=3, temp=2.0,
                       kl_divisor=3072.0, replay=replay, rr_ra=code_rr_ra,
                       lambda_rr=lam, lambda_ra=lam)
    rows[f"t = {t}"] = {name: float(v) for name, v in terms.items() if name != "stats"}
    current = terms["recon"] + terms["kl"] + terms["ce"]
    replayed = (terms["recon_r"] + terms["kl_r"] + terms["distill_r"]
                + lam * terms["rr"] + lam * terms["ra"])
    assert torch.allclose(terms["total"], current / t + (1 - 1 / t) * replayed)
pd.DataFrame(rows).round(6)

# %% [markdown]
# ## Competing classes and the repulsion factor f
#
# > The highest softmax probability (corresponding to the sample label) is divided by the repulsion
# > factor, providing a threshold probability for identifying competing classes for that sample. Any
# > class with a probability above that of the threshold is deemed competitive.
#
# With the model's own softmax $p_i$ over the classes seen so far and the label
# $c^\ast_i = \arg\max_c p_{i,c}$:
#
# $$
# \mathcal{C}_i = \{\, c \ne c^\ast_i : p_{i,c} > p_{i,c^\ast_i} / f \,\}, \qquad f \ge 1 .
# $$
#
# `birr.rr.competing_classes` is this rule. The paper's Fig. 2 example, $p_{\max} = 0.6$ and
# $f = 3$, gives the threshold 0.2 ({doc}`05_competing` draws it):

# %%
p_fig2 = torch.tensor([0.04, 0.10, 0.26, 0.60])          # classes 0..3
label, threshold, competitors = RR.competing_classes(p_fig2, 3.0)
print("label", int(label), " threshold", round(float(threshold), 3),
      " competitors", competitors.nonzero().flatten().tolist())

# %% [markdown]
# The code applies a different rule ({ref}`§8.3 <ref-8-3>`; {ref}`§9.1 <ref-9-1>`, items 6-8). It asks
# the *teacher* (the previous model, which generated the replay), at temperature 1, not the model
# being trained; it takes the teacher's top class $c_1$ as the label and only the runner-up $c_2$ as
# competitor; and a sample competes iff
#
# $$
# p_{i, c_1} < f \cdot p_{i, c_2} .
# $$
#
# Since $c_2$ is the most probable non-label class, "some class above the threshold" and "$c_2$ above
# the threshold" are the same test: given the same probabilities, both rules select the same
# *samples*, but the code keeps one competitor per sample, never several. In the code this rule lives
# in `birr.rr.code_competitor`, which `birr.rr.rr_ra_code` calls and whose statistics report it. Four replayed samples over three old
# classes, $f = 3$, the same probabilities handed to both rules:

# %%
p = torch.tensor([[[0.90, 0.06, 0.04],   # (K, B, C_old): softmax, T = 1
                   [0.30, 0.60, 0.10],
                   [0.05, 0.40, 0.55],
                   [0.50, 0.20, 0.30]]])
f, use_f = torch.tensor([3.0]), torch.tensor([True])    # (K,) each
# replayed inputs and their reconstructions, (K, B, D) with D = 2
x_replay = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.8, 0.2]]])
x_recon = torch.tensor([[[0.9, 0.1], [0.2, 0.7], [-0.8, 0.1], [0.6, 0.3]]])

label, threshold, paper_comp = RR.competing_classes(p[0], f)
rr_code, ra_code, st = RR.rr_ra_code(x_replay, x_recon, p.log(), f, use_f)
pd.DataFrame({
    "paper: label": label.tolist(),
    "paper: threshold p_max / f": threshold.tolist(),
    "paper: competitors": [r.nonzero().flatten().tolist() for r in paper_comp],
    "code: c1": st["label"][0].tolist(),
    "code: c2": st["competitor"][0].tolist(),
    "code: repelled from c2": st["pair_mask"][0].tolist(),
}).rename_axis("sample").round(3)

# %% [markdown]
# Sample 0 is confident and competes under neither rule; samples 1 and 2 have one competitor under
# both; sample 3 has two under the paper's rule and one in the code. (The code also drops a sample
# whose $c_2$ is no sample's $c_1$ in the batch, since it has no class mean to be repelled from; here
# every $c_2$ has one.)
#
# ## Reconstruction repulsion, RR (Eq. 4)
#
# > It aims to maximise the binary cross-entropy (BCE) between a generated sample, $x'_i$, and an
# > original input belonging to a competing class $x_{i_C}$ to that of the sample [...]. Furthermore,
# > once the competing classes to a given sample have been determined, a mean feature vector,
# > $\hat{x}$, for each competing class is calculated via the mean of all original samples in that
# > class.
#
# $$
# \begin{aligned}
# \ell_{RR}(x'_i, \hat{x}_{i_C}; \phi, \theta) = {} & \mathbb{E}^{-1}_{\epsilon \sim \mathcal{N}(0, I)}
# \Big[ \sum_{f=1}^{M_f} \hat{x}_{i_C,f} \log x'_{i,f} \\
# & \qquad + (1 - \hat{x}_{i_C,f}) \log (1 - x'_{i,f}) \Big]
# \end{aligned}
# $$
#
# (the $f$ of the sum indexes features; it is not the repulsion factor). Minimising the inverse of an
# error pushes the reconstruction of a replayed sample away from the mean of a competing class. BCE is
# impossible on these features, and the bracket as written is negative, so its sign is ambiguous; both
# of birr's variants minimise the inverse of the positive ½·MSE of the reconstruction loss
# ({ref}`§9.1 <ref-9-1>`, items 1 and 9). They differ in where $\hat{x}$ and the competitors come from.
#
# **Code variant** (what the authors' code computes, {ref}`§8.4 <ref-8-4>`, {ref}`§8.5 <ref-8-5>`):
# $\hat{x}_c$ is the mean of the *replayed* inputs of the current batch whose teacher label is $c$,
# recomputed every step, and each kept sample $i \in S$ is repelled from its runner-up's mean only:
#
# $$
# \ell_{RR} = \frac{1}{|S|} \sum_{i \in S}
# \Big[ \frac{1}{2} \cdot \frac{1}{D} \sum_{d=1}^{D} \big(\hat{x}_{c_2(i), d} - x'_{i,d}\big)^2 \Big]^{-1},
# $$
#
# $$
# \hat{x}_c = \operatorname{mean} \{ x_j : c_1(j) = c \} .
# $$
#
# **Paper variant** (the text's reading, `birr.rr.rr_ra_paper`): $\hat{x}_c$ is the mean encoder
# feature vector of class $c$'s *real* training images, the competitors are every class of the paper's
# rule applied to the model's *own* softmax, and the mean runs over all (sample, competitor) pairs
# $P = \{(i, c) : c \in \mathcal{C}_i\}$:
#
# $$
# \ell_{RR} = \frac{1}{|P|} \sum_{(i, c) \in P}
# \Big[ \frac{1}{2} \cdot \frac{1}{D} \sum_{d=1}^{D} \big(\hat{x}_{c, d} - x'_{i,d}\big)^2 \Big]^{-1}.
# $$
#
# The batch above, in both variants; each ends in `birr.rr.reconstruction_repulsion`, the average
# inverse error above over its pairs. In the code variant, class 0's mean is that of samples 0 and 3;
# the paper variant is handed real-data class means, and the model's own logits (here the same
# probabilities as the teacher's, to keep the toy small):

# %%
# (K, C_active, D): the classes' mean features over real images
class_means = torch.tensor([[[1.0, 0.1], [0.1, 1.0], [-1.0, -0.1]]])
rr_paper, ra_paper, st_paper = RR.rr_ra_paper(x_recon, p.log(), class_means,
                                              f, use_f)
print("RR, code variant: ", rr_code, " pairs:", int(st["n_kept"]))
print("RR, paper variant:", rr_paper, " pairs:", int(st_paper["n_kept"]))

# %% [markdown]
# ## Reconstruction attraction, RA (Eq. 5)
#
# > In addition, a similar reconstruction attraction (RA) loss was also used to exaggerate the
# > features of replayed samples belonging to the same class towards each other, in an effort to
# > attract their internal representations.
#
# $$
# \begin{aligned}
# \ell_{RA}(x'_i, \hat{x}; \phi, \theta) = {} & \mathbb{E}_{\epsilon \sim \mathcal{N}(0, I)}
# \Big[ \sum_{f=1}^{M_f} \hat{x}_f \log x'_{i,f} \\
# & \qquad + (1 - \hat{x}_f) \log (1 - x'_{i,f}) \Big]
# \end{aligned}
# $$
#
# RA pulls each replayed reconstruction towards the mean of its own class. In both variants it is the
# same ½·MSE as the reconstruction loss (`birr.rr.reconstruction_attraction`), to the label's class mean, over *all* $B$ replayed samples:
#
# $$
# \ell_{RA} = \frac{1}{B} \sum_{i=1}^{B} \frac{1}{2} \cdot \frac{1}{D} \sum_{d=1}^{D}
# \big(\hat{x}_{c_1(i), d} - x'_{i,d}\big)^2 ,
# $$
#
# with $\hat{x}$ and the label taken as in each variant's RR. The variants part at the $f$ gate: the
# code applies neither RR nor RA to a batch in which no sample is competitive, while the paper implies
# RA is independent of $f$ ({ref}`§8.3 <ref-8-3>`; {ref}`§9.1 <ref-9-1>`, item 8). With $f = 1$
# nothing can compete, which shows the difference:

# %%
print("RA, f = 3, code variant: ", ra_code)
print("RA, f = 3, paper variant:", ra_paper)
f1 = torch.tensor([1.0])
rr1, ra1, _ = RR.rr_ra_code(x_replay, x_recon, p.log(), f1, use_f)
print("f = 1, code variant:  RR", rr1, " RA", ra1)
rr1, ra1, _ = RR.rr_ra_paper(x_recon, p.log(), class_means, f1, use_f)
print("f = 1, paper variant: RR", rr1, " RA", ra1)

# %% [markdown]
# Both terms act on replayed samples only, never on the current batch:
#
# > Due to the fact that the exaggeration observed in the brain only occurs between memories
# > themselves and not to the objects responsible for these memories, the RR and RA losses were only
# > applied to batches of replayed samples, rather than new class batches.
#
# and both reach the weights only through the reconstruction $x'$: the replayed inputs and the class
# means are constants, so RR and RA train the encoder, the split layer and the decoder, not the
# classifier head directly ({ref}`§8.2 <ref-8-2>`).
#
# ## Glossary
#
# The terms the chapters use, in alphabetical order. The budgets' sizes, as `birr.preset` resolves
# them, are in the table below the list.
#
# ```{glossary}
# :sorted:
#
# BI-R
#   Brain-inspired replay (van de Ven et al., 2020): generative replay in which the classifier and the
#   VAE share one network, the decoder being the feedback path, with internal replay, class gates and a
#   GMM prior. {ref}`§4 <ref-4>`.
#
# baseline
# BI-R + SI
#   BI-R with SI at the reference settings (`birr.preset("bir+si")`), the paper's point of comparison;
#   {doc}`04_baseline`.
#
# fine-tuning
#   The same network trained on each task in turn with no replay and no SI: the floor that replay has
#   to beat.
#
# SI
# synaptic intelligence
#   A penalty $c \sum_k \omega_k (\theta_k - \theta^\ast_k)^2$ on moving parameters that mattered for
#   earlier tasks, $c = 10^8$, importance $\omega$ from the path integral of gradient times update; in
#   the reference only fcE and the classifier head accumulate $\omega$. {ref}`§6 <ref-6>`.
#
# RR
# reconstruction repulsion
#   The paper's Eq. 4: a loss that pushes the reconstruction of a replayed sample away from the class
#   mean $\hat{x}$ of a competing class (the inverse of a reconstruction error).
#
# RA
# reconstruction attraction
#   The paper's Eq. 5: a loss that pulls the reconstruction of a replayed sample towards the class mean
#   of its own label.
#
# RR + RA
#   BI-R + SI with both terms added (`birr.preset("rr+ra")`: $f = 20$, $\lambda_{RR} = \lambda_{RA} =
#   10^{-6}$, code variant).
#
# repulsion factor
# f
#   The number $f \ge 1$ that sets the competitor threshold $p_{\max}/f$: $f = 1$ selects nothing, a
#   large $f$ nearly everything. Table 1 tries 5, 10, 20, 50 and 100. {ref}`§8.3 <ref-8-3>`.
#
# competing class
# competitor
#   For one replayed sample, a class other than its label whose probability exceeds $p_{\max}/f$
#   (paper); in the code, the teacher's runner-up $c_2$ when $p_{c_1} < f\, p_{c_2}$. {doc}`05_competing`.
#
# label c1
# runner-up c2
#   The teacher's top-1 and top-2 classes for a replayed sample: its label and its only possible
#   competitor in the code variant. The class the generator sampled from is discarded.
#
# f gate
# applied share
#   In the code variant a replay batch with no competitive sample gets neither RR nor RA; the share of
#   iterations in which the terms were applied is logged per task. {ref}`§8.3 <ref-8-3>`.
#
# class mean
# x̂
#   The target of RR and RA: the mean replayed input of the class in the current batch (code variant)
#   or the mean encoder features of the class's real training images (paper variant). {ref}`§8.4 <ref-8-4>`.
#
# code variant
# paper variant
#   birr's two implementations of RR / RA (`Config.rr_variant`): what the authors' code computes
#   (`birr.rr.rr_ra_code`) and what the paper's text describes (`birr.rr.rr_ra_paper`).
#   {doc}`08_errata` lists every difference.
#
# λ_RR
# λ_RA
# lambda
#   The weights of RR and RA inside the replay loss, $10^{-6}$ each by default; their effective weight
#   in the total is $(1 - 1/t)\,\lambda$. {doc}`11_verdict` sweeps them.
#
# replay
# generative replay
#   Training on samples generated by a frozen copy of the model from the previous task alongside the
#   current task's data, instead of stored examples.
#
# internal replay
# hidden replay
#   Replay of the frozen encoder's 1,024 conv features rather than of images; the decoder never
#   produces pixels. {ref}`§4 <ref-4>`.
#
# teacher
# previous model
#   The copy of the model frozen at the end of the previous task: it generates the replay and its
#   logits give the distillation targets, the soft gates, the replay KL's mixture weights and, in the
#   code variant, the labels and competitors.
#
# frozen encoder
#   The five-layer convolutional encoder, pre-trained on CIFAR-10 and never updated during continual
#   learning, so its features can be computed once. {doc}`03_encoder`.
#
# features
#   The frozen encoder's 1,024 outputs per image ($h$): what the trainable network classifies,
#   reconstructs and replays.
#
# gates
# class gates
# context gates
#   Fixed random binary masks, one row per class, that switch off 60 % of the units of the decoder's
#   first two layers; a sample's gate is its class vector times the mask (one-hot for current samples
#   and generation, the teacher's soft probabilities for replayed reconstructions). {ref}`§4.2 <ref-4-2>`.
#
# GMM prior
#   The prior over the latent code $z$: one learned Gaussian mode per class; replay is generated by
#   sampling a class's mode and decoding. {ref}`§4.3 <ref-4-3>`.
#
# KL
# regularisation term
#   The single-sample Monte-Carlo estimate of the KL divergence between the posterior and the GMM prior
#   (the label's mode, or the teacher-weighted mixture for replay), divided by 3072. {ref}`§5 <ref-5>`.
#
# distillation
#   The replay batch's classification term: cross-entropy of the model's softened logits against the
#   teacher's, at temperature $T = 2$, times $T^2$. {ref}`§5 <ref-5>`.
#
# temperature
# T
#   The divisor of the logits before the softmax in distillation, soft gates and the replay KL
#   ($T = 2$); the code's competitor test uses $T = 1$.
#
# task
# class-incremental
#   A continual run meets the classes a few at a time, one task after another (10 tasks of 10 classes
#   on CIFAR-100), and is finally tested on all of them with no hint of the task.
#
# precision
# accuracy
#   The paper's "precision" is top-1 test accuracy, the argmax over all classes of the final model.
#   {ref}`§7 <ref-7>`.
#
# first 20 %
# first 50 %
# overall
#   Final test accuracy averaged over the first 20 % of classes in the learner's (seeded) order, the
#   first 50 %, and all of them: the three columns of the paper's Table 1 (`first20`, `first50`,
#   `overall`). {ref}`§7 <ref-7>`.
#
# forgetting
# BWT
#   Per task, the best accuracy before the end minus the final one (forgetting), and the final accuracy
#   minus the accuracy right after learning it (backward transfer), averaged. {doc}`04_baseline`.
#
# paired difference
#   RR + RA minus the baseline for the same seed (same class order, initialisation and replay noise),
#   averaged over seeds, with a 95 % confidence interval from the t distribution. {doc}`06_table1`.
#
# seed
#   The number a run starts from, one run per seed: it fixes the class order, the initialisation, the
#   gate masks and the replay noise, so runs of two methods with the same seed are paired.
#
# budget
# smoke
# short
# full
#   How large a run is (`birr.preset(..., budget=...)`): `smoke` for tests on synthetic data in
#   seconds, `short` for the whole book on a CPU, `full` the paper's sizes. Budgets scale the run,
#   never the method; see the table below.
#
# dataset
# proxy
#   `cifar100` (the paper's benchmark), `cifar10-jpg` (an offline CIFAR-10 stand-in of 5 tasks of 2
#   classes, a proxy) or `synthetic` (generated images for tests). {doc}`02_data`.
#
# stamp
#   12 hex digits hashed from every config field that changes a run's numbers: the name of its results
#   file, so a run with the same stamp is loaded, not trained again. {doc}`/book/status` lists them.
#
# stacked runs
#   Several runs (seeds, $f$, $\lambda$) trained together as one batched model, each with the weights it
#   would reach alone (bit for bit on a CPU).
#
# lens
#   A separate decoder from encoder features back to images, trained after the fact on real images,
#   used only to look at replay. {doc}`09_decoder`.
#
# separation ratio
# ρ
#   The distance between two classes' replay means over their average spread: how far apart the
#   memories of competing classes are. {doc}`10_exaggeration`.
#
# positive control
#   The same measurements at a $\lambda$ large enough for RR + RA to act, to show what an effect would
#   look like. {doc}`11_verdict`.
#
# linear probe
#   A softmax classifier trained on frozen features; its test accuracy measures how much class
#   information an encoder's features hold. {doc}`11_verdict`.
# ```

# %%
sizes = ["dataset", "n_tasks", "iters", "batch", "batch_replay", "fc_units",
         "z_dim", "lr", "encoder_epochs"]
cfgs = {b: birr.preset("bir+si", budget=b) for b in birr.config.BUDGETS}
pd.DataFrame({b: {k: getattr(c, k) for k in sizes} for b, c in cfgs.items()}).T
