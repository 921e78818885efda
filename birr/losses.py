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

from birr.stacked import bmm


# --- BI-R, appendix §5 ----------------------------------------------------------------------------

def reconstruction_loss(x, x_recon):
    r"""The reconstruction loss $\ell_{rec}$ of the paper's Eq. 1-2, as the code computes it (appendix §5):
    $r_i = \tfrac12 \cdot \tfrac1D \sum_f (x_{i,f} - x'_{i,f})^2$, averaged over the batch.

    The negative unit-variance Gaussian log-likelihood without its constant, *averaged* over features
    (not summed, and not BCE as the paper's Eq. 2 writes). x, x_recon: (K,B,D) -> (K,)."""
    return 0.5 * (x - x_recon).pow(2).mean(dim=(1, 2))


def log_normal(z, mu, logvar):
    r"""$\log \mathcal N(z; \mu, \sigma^2) + \tfrac{Z}{2}\log 2\pi = -\tfrac12 \sum_d [\log\sigma^2_d + (z_d-\mu_d)^2/\sigma^2_d]$.

    Both densities of the KL omit the same constant, which cancels (appendix §5). Sums the last dim."""
    return -0.5 * (logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def kl_current(z, mu, logvar, prior_mu, prior_logvar, divisor: float = 3072.0):
    r"""The regularisation term $\ell_{reg}$ of the paper's Eq. 1 and 3 on current data (appendix §5): a
    single-sample Monte-Carlo KL to the true label's GMM mode,
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
    r"""The regularisation term (Eq. 3) on replayed data (appendix §5): the Monte-Carlo KL against the
    teacher-weighted mixture of GMM modes,
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


def weighted(lam, term):
    """lam * term per run, 0 where lam is 0: a run without RR or RA in a stack that computes them must
    not turn an infinite term into nan."""
    return torch.where(lam > 0, lam * term, torch.zeros_like(term))


def bir_loss(t: int, x, y, out, prior_means, prior_logvars, *, n_active: int, temp: float, kl_divisor: float,
             replay=None, rr_ra=None, lambda_rr=None, lambda_ra=None) -> dict:
    r"""The loss of one training step, Eq. 1 as the code computes it (appendix §5): the paper's VAE loss
    (Eq. 1: reconstruction, Eq. 2, and regularisation, Eq. 3, with $\lambda_r = \lambda_d = 1$) plus the
    classifier's terms, on the current batch and on the replayed one, which carries RR (Eq. 4) and RA
    (Eq. 5); the two weighted by the number of tasks seen:

    $L = \rho\,(\ell_{rec} + \ell_{KL} + \ell_{CE}) + (1 - \rho)\,(\ell^r_{rec} + \ell^r_{KL} + \ell_{KD}
    + \lambda_{RR}\,\ell_{RR} + \lambda_{RA}\,\ell_{RA})$, $\rho = 1/t$ with replay, 1 without.

    SI's $c\,L_{SI}$ is the learner's to add (birr.si). Every term is a batch mean per run.

    x (K,B,D), y (K,B): the current batch; out = (logits, mu, logvar, z, x_recon): the model's pass over
    it; prior_means / prior_logvars (K,C,Z): the GMM prior's modes; n_active: the classes seen so far.
    replay: None, or (x_r, teacher_logits, gates, out_r): the replayed features, the previous model's
    logits over the old classes, its soft gates softmax(teacher / T), and the model's pass over them.
    rr_ra: None, or (x_r, x_recon_r, logits_r, teacher_logits) -> (rr, ra, stats), a variant of
    birr.rr; lambda_rr, lambda_ra (K,): its weights. Returns a dict of (K,) tensors, the terms by name
    (recon, kl, ce; recon_r, kl_r, distill_r, rr, ra: 0 where absent) and their total, plus "stats":
    RR / RA's statistics (None without)."""
    logits, mu, logvar, z, x_recon = out
    k = torch.arange(x.shape[0], device=x.device)[:, None]
    terms = dict(recon=reconstruction_loss(x, x_recon.float()),
                 kl=kl_current(z.float(), mu.float(), logvar.float(), prior_means[k, y], prior_logvars[k, y],
                               kl_divisor),
                 ce=classification_loss(logits.float()[..., :n_active], y))
    zeros = torch.zeros(x.shape[0], device=x.device)
    terms.update(recon_r=zeros, kl_r=zeros, distill_r=zeros, rr=zeros, ra=zeros, stats=None)
    lambda_rr, lambda_ra = (zeros if lam is None else lam for lam in (lambda_rr, lambda_ra))
    if replay is not None:
        x_r, teacher, gates, (logits_r, mu_r, logvar_r, z_r, x_recon_r) = replay
        x_recon_r, logits_r = x_recon_r.float(), logits_r.float()[..., :n_active]
        terms.update(recon_r=reconstruction_loss(x_r, x_recon_r),
                     kl_r=kl_replay(z_r.float(), mu_r.float(), logvar_r.float(), prior_means[:, :n_active],
                                    prior_logvars[:, :n_active], F.pad(gates, (0, n_active - gates.shape[-1])),
                                    kl_divisor),
                     distill_r=distillation_loss(logits_r, teacher, temp))
        if rr_ra is not None:
            terms["rr"], terms["ra"], terms["stats"] = rr_ra(x_r, x_recon_r, logits_r, teacher)
    rho = 1.0 / t if replay is not None else 1.0              # appendix §5: rnt = 1/t
    terms["total"] = (rho * (terms["recon"] + terms["kl"] + terms["ce"])
                      + (1 - rho) * (terms["recon_r"] + terms["kl_r"] + terms["distill_r"]
                                     + weighted(lambda_rr, terms["rr"]) + weighted(lambda_ra, terms["ra"])))
    return terms
