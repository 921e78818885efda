r"""The loss terms of BI-R, appendix §5, and the total loss they make.

Each function takes tensors with a leading run dimension K and returns one value per run, shape (K,),
so K stacked runs never mix. Notation: B batch, D = 1024 features, Z latent size, C classes.

The paper writes its reconstruction loss as binary cross-entropy summed over features (its Eq. 2); the
code it was run with uses half the squared error averaged over features, because the reconstructed
objects are unbounded conv features (appendix §9.1 item 1). birr follows the code. RR and RA (Eq. 4, 5)
are in birr.rr, SI's penalty in birr.si.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from birr.rr import competing_classes  # noqa: F401 (the book's figures of the rule import it from here)
from birr.stacked import bmm


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
