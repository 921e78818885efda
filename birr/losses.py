r"""Every loss term of BI-R (appendix §5), SI (appendix §6) and RR / RA (appendix §8, paper §3.2-3.3).

Each function takes tensors with a leading run dimension K and returns one value per run, shape (K,),
so K stacked runs never mix. Notation: B batch, D = 1024 features, Z latent size, C classes.

The paper writes its losses with binary cross-entropy summed over features (its Eq. 2, 4, 5); the code
it was run with uses half the squared error averaged over features, because the reconstructed objects
are unbounded conv features (appendix §9.1 items 1, 9). birr follows the code in both RR variants.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from birr.stacked import bmm


def one_hot(index: torch.Tensor, n: int, dtype=torch.float32) -> torch.Tensor:
    """(...) class indices -> (..., n) one-hot of `dtype`. F.one_hot's values, without its range check:
    on a CPU that check reads min and max back as Python numbers, and the training step must read
    nothing back (a host read stalls a GPU step; tests/test_train.py counts host reads). Indices come from labels and
    argmax/topk here, always in range."""
    return torch.zeros(*index.shape, n, dtype=dtype, device=index.device).scatter_(-1, index[..., None], 1)


# --- BI-R, appendix §5 ----------------------------------------------------------------------------

def reconstruction_loss(x, x_recon):
    r"""$r_i = \tfrac12 \cdot \tfrac1D \sum_f (x_{i,f} - x'_{i,f})^2$, averaged over the batch (appendix §5).

    The negative unit-variance Gaussian log-likelihood without its constant, *averaged* over features
    (not summed, and not BCE as the paper's Eq. 2 writes). x, x_recon: (K,B,D) -> (K,)."""
    return 0.5 * (x - x_recon).pow(2).mean(dim=(1, 2))


def log_normal(z, mu, logvar):
    r"""$\log \mathcal N(z; \mu, \sigma^2) + \tfrac{Z}{2}\log 2\pi = -\tfrac12 \sum_d [\log\sigma^2_d + (z_d-\mu_d)^2/\sigma^2_d]$.

    Both densities of the KL omit the same constant, which cancels (appendix §5). Sums the last dim."""
    return -0.5 * (logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def kl_current(z, mu, logvar, prior_mu, prior_logvar, divisor: float = 3072.0):
    r"""Single-sample Monte-Carlo KL to the true label's GMM mode (appendix §5, current data):
    $v_i = \log q(z_i|x_i) - \log \mathcal N(z_i; \mu_{y_i}, \sigma^2_{y_i})$, batch mean, divided by
    3072 as the reference does (appendix §9.3). All inputs (K,B,Z) -> (K,)."""
    v = log_normal(z, mu, logvar) - log_normal(z, prior_mu, prior_logvar)
    return v.mean(1) / divisor


def gmm_log_likelihoods(z, means, logvars):
    r"""$\ell_{i,c} = \log \mathcal N(z_i; \mu_c, \sigma_c^2)$ (constant dropped) for every mode at once.

    z (K,B,Z), means / logvars (K,C,Z) -> (K,B,C). Expanded into two batched matmuls
    ($\sum_d z^2/\sigma^2 - 2 z\mu/\sigma^2 + \mu^2/\sigma^2$) instead of a (K,B,C,Z) tensor: the
    reference loops over the batch in Python here (appendix §10 item 5)."""
    ivar = torch.exp(-logvars)                                   # (K,C,Z)
    quad = bmm(z.pow(2), ivar.transpose(1, 2))                   # (K,B,C)
    cross = bmm(z, (means * ivar).transpose(1, 2))               # (K,B,C)
    const = (logvars + means.pow(2) * ivar).sum(-1)              # (K,C)
    return -0.5 * (quad - 2 * cross + const[:, None, :])


def kl_replay(z, mu, logvar, means, logvars, weights, divisor: float = 3072.0):
    r"""Monte-Carlo KL against the teacher-weighted mixture of GMM modes (appendix §5, replay):
    $\log p(z_i) = \log \sum_c w_{i,c}\, \mathcal N(z_i; \mu_c, \sigma_c^2)$, computed as the reference
    does: subtract the max over modes, clamp the sum at 1e-40, add the max back.

    weights (K,B,C') are softmax(teacher logits / T) zero-padded to the C' active classes; means and
    logvars (K,C',Z) are the active modes. Returns (K,)."""
    ll = gmm_log_likelihoods(z, means, logvars)                  # (K,B,C')
    m = ll.max(dim=-1, keepdim=True).values                      # (K,B,1)
    log_p = torch.log((weights * torch.exp(ll - m)).sum(-1).clamp_min(1e-40)) + m.squeeze(-1)
    v = log_normal(z, mu, logvar) - log_p                        # (K,B)
    return v.mean(1) / divisor


def classification_loss(logits, y):
    """Cross-entropy over the classes seen so far (appendix §5): logits (K,B,C_active), global labels
    y (K,B) -> (K,)."""
    K, B, C = logits.shape
    return F.cross_entropy(logits.reshape(K * B, C), y.reshape(K * B), reduction="none").view(K, B).mean(1)


def distillation_loss(student_logits, teacher_logits, T: float = 2.0):
    r"""Knowledge distillation with temperature T (appendix §5, `loss_fn_kd`):
    $T^2 \cdot \tfrac1B \sum_i \sum_c -\mathrm{target}_{i,c} \log\mathrm{softmax}(s_i/T)_c$,
    targets softmax(teacher/T) over the old classes, zero-padded to the student's active classes.
    student (K,B,C_active), teacher (K,B,C_old) -> (K,)."""
    target = F.softmax(teacher_logits / T, dim=-1)
    target = F.pad(target, (0, student_logits.shape[-1] - teacher_logits.shape[-1]))
    return T ** 2 * -(target * F.log_softmax(student_logits / T, dim=-1)).sum(-1).mean(1)


def si_penalty(params, omegas, anchors):
    r"""Synaptic intelligence (appendix §6): $L_{SI} = \sum_n \sum \omega_n (p_n - p^*_n)^2$ per run.
    Lists of (K, ...) tensors -> (K,)."""
    total = 0.0
    for p, w, a in zip(params, omegas, anchors):
        total = total + (w * (p - a).pow(2)).flatten(1).sum(1)
    return total


# --- competing classes, paper §3.2 / Fig. 2 ----------------------------------------------------

def competing_classes(p, f, validate: bool = True):
    r"""The paper's competitor rule (its §3.2, Fig. 2): label = argmax p; threshold = p_max / f;
    competitors = the other classes with probability strictly above the threshold.

    p: (..., C) probabilities; f: a number >= 1 or a tensor broadcastable to p[..., 0] (values >= 1).
    Returns (label (...), threshold (...), competitors (..., C) bool). f = 1 selects nothing; the
    Fig. 2 example (f = 3, p_max = 0.6) gives threshold 0.2. Ties for the max: the first index is the
    label and the tied class (p = p_max > p_max / f) is a competitor whenever f > 1.
    validate=False skips the f >= 1 check (it reads f back to the host; the training step's f was
    checked by Config).
    """
    f = torch.as_tensor(f, dtype=p.dtype, device=p.device)
    if validate and (f < 1).any():   # a host read: the training step validates f once, in Config
        raise ValueError(f"repulsion factor f={f.tolist()} is not allowed; f must be >= 1 (paper §3.2)")
    p_max, label = p.max(dim=-1)
    threshold = p_max / f
    competitors = p > threshold[..., None]
    competitors = competitors & ~one_hot(label, p.shape[-1], torch.bool)
    return label, threshold, competitors


def _half_mse(a, b):
    """½·mean over features of (a-b)^2, per sample: (K,B,D) -> (K,B). The reconstruction error of
    appendix §5, reused by RR and RA (appendix §8.5)."""
    return 0.5 * (a - b).pow(2).mean(-1)


def _gather_rows(table, index):
    """table (K,C,D), index (K,B) -> table[k, index[k, b]] of shape (K,B,D)."""
    return torch.gather(table, 1, index[..., None].expand(-1, -1, table.shape[-1]))


# --- RR / RA as the paper's code computes them, appendix §8.2-§8.5 --------------------------------

def rr_ra_code(x_replay, x_recon, teacher_logits, f, use_f):
    r"""RR and RA, `--recon-repulsion --recon-attraction --recon-rep-aver [--use-rep-f]` (appendix §8).

    Label c1 and the single competitor c2 are the teacher's (previous model's) top-1 and top-2 on the
    replayed vectors (appendix §8.2). With f on, a sample is competitive iff p[c1] < f p[c2] at T = 1
    (appendix §8.3); without f every sample is. Class means are per-iteration means of the *replayed* inputs
    grouped by c1 (appendix §8.4):  $\hat x_c = \mathrm{mean}\{x_j : c1_j = c\}$. Then (appendix §8.5)

    $RR = \frac{1}{|S|}\sum_{i \in S} \big[\tfrac12 \tfrac1D \sum_f (\hat x_{c2_i,f} - x'_{i,f})^2\big]^{-1}$,
    S = competitive samples whose c2 is some sample's c1;

    $RA = \frac1B \sum_i \tfrac12 \tfrac1D \sum_f (\hat x_{c1_i,f} - x'_{i,f})^2$ over all samples.

    Both are 0 for a run whose batch has no competitive sample (the reference skips them). Where the
    reference would crash (competitive samples but S empty, appendix §8.5: `λ * None`), RR is 0 here.
    Gradients flow only through x_recon.

    x_replay (K,B,D) no grad; x_recon (K,B,D); teacher_logits (K,B,C_old); f (K,) float; use_f (K,) bool.
    Returns rr (K,), ra (K,), stats dict of (K,...) tensors: n_competitive, n_kept, applied, and
    label/competitor pairs (c1, c2, kept) for the pair-count log.
    """
    x_replay = x_replay.detach()
    C_old = teacher_logits.shape[-1]
    top2 = teacher_logits.topk(2, dim=-1).indices                          # (K,B,2)
    c1, c2 = top2[..., 0], top2[..., 1]                                    # (K,B)
    p = F.softmax(teacher_logits, dim=-1)                                  # T = 1 (appendix §8.3)
    p1, p2 = p.gather(-1, c1[..., None]).squeeze(-1), p.gather(-1, c2[..., None]).squeeze(-1)
    competitive = (p1 < f[:, None] * p2) | ~use_f[:, None]                 # (K,B)
    onehot = one_hot(c1, C_old, x_replay.dtype)                            # (K,B,C_old)
    counts = onehot.sum(1)                                                 # (K,C_old)
    x_hat = bmm(onehot.transpose(1, 2), x_replay) / counts.clamp_min(1)[..., None]  # (K,C_old,D)
    kept = competitive & (counts.gather(1, c2) > 0)                        # (K,B)
    err_c2 = _half_mse(_gather_rows(x_hat, c2), x_recon)                   # (K,B)
    inv = 1.0 / torch.where(kept, err_c2, torch.ones_like(err_c2))         # no inf outside S
    rr = (inv * kept).sum(1) / kept.sum(1).clamp_min(1)
    applied = competitive.any(1)                                           # the f gate (appendix §8.3 item 4)
    ra = _half_mse(_gather_rows(x_hat, c1), x_recon).mean(1) * applied
    stats = dict(n_competitive=competitive.sum(1), n_kept=kept.sum(1), applied=applied,
                 rr_applied=kept.any(1), ra_applied=applied, label=c1, competitor=c2, pair_mask=kept)
    return rr, ra, stats


# --- RR / RA as the paper is written, its §3.2-3.3 ---------------------------------------------------

def rr_ra_paper(x_recon, own_logits, class_means, f, use_f, validate: bool = True):
    r"""RR and RA as the paper's §3.2-3.3 describe them, with the two resolutions birr has to choose
    (errata page, appendix §9.1):

    * competitors come from the model's *own* classifier (softmax over the classes seen so far, T = 1),
      label = argmax, every class above p_max / f is a competitor (Fig. 2); without f, the runner-up;
    * $\hat x_c$ is the mean encoder feature vector of class c's *real* training images (class_means,
      filled as classes arrive);
    * BCE is impossible on unbounded features, so the "reconstruction loss" is the same ½·MSE averaged
      over features that BI-R uses (appendix §9.1 item 1), and Eq. 4's sign is read as *minimise the inverse
      of a positive error* (item 9):

    $RR = \mathrm{mean}_{(i,c)\ \mathrm{competing}} \big[\tfrac12\tfrac1D\|\hat x_c - x'_i\|^2\big]^{-1}$,
    $RA = \mathrm{mean}_i\ \tfrac12\tfrac1D\|\hat x_{label_i} - x'_i\|^2$ (all replayed samples, independent
    of f, as the paper's §3.3 implies).

    x_recon (K,B,D); own_logits (K,B,C_active) (detached here); class_means (K,C_active,D); f (K,);
    use_f (K,) bool. Returns rr (K,), ra (K,), stats.
    """
    p = F.softmax(own_logits.detach(), dim=-1)
    label, _, comp_f = competing_classes(p, torch.where(use_f, f, torch.ones_like(f))[:, None], validate)
    runner_up = one_hot(p.topk(2, dim=-1).indices[..., 1], p.shape[-1], torch.bool)
    comp = torch.where(use_f[:, None, None], comp_f, runner_up)            # (K,B,C)
    D = x_recon.shape[-1]
    # all (sample, class) errors at once: ||a-b||^2 = ||a||^2 - 2 a.b + ||b||^2, (K,B,C)
    sq = (x_recon.pow(2).sum(-1)[..., None] - 2 * bmm(x_recon, class_means.transpose(1, 2))
          + class_means.pow(2).sum(-1)[:, None, :])
    err = 0.5 * sq.clamp_min(1e-12) / D
    inv = 1.0 / torch.where(comp, err, torch.ones_like(err))
    rr = (inv * comp).flatten(1).sum(1) / comp.flatten(1).sum(1).clamp_min(1)
    ra = _half_mse(_gather_rows(class_means, label), x_recon).mean(1)
    any_comp = comp.flatten(1).any(1)
    stats = dict(n_competitive=comp.any(-1).sum(1), n_kept=comp.flatten(1).sum(1), applied=any_comp,
                 rr_applied=any_comp, ra_applied=torch.ones_like(any_comp), label=label, competitors=comp)
    return rr, ra, stats
