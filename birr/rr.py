r"""Reconstruction repulsion (RR, the paper's Eq. 4) and attraction (RA, its Eq. 5), appendix §8.

Applied to replayed samples only. Three pieces, each written twice, once as the code the paper was run
with computes it (appendix §8.2-§8.5, `rr_ra_code`) and once as the paper's text reads (its §3.2-3.3,
`rr_ra_paper`; the resolutions it needs are on the errata page, appendix §9.1):

1. whom a sample is repelled from: `code_competitor` (the teacher's runner-up, gated by f) or
   `competing_classes` (every class above p_max / f, the paper's Fig. 2; `runner_up` without f);
2. the class means $\hat x_c$ it is repelled from and attracted to: `batch_class_means` (of the replayed
   batch, by the teacher's label) or the mean feature of a class's real training images;
3. the losses on the per-pair reconstruction errors: `reconstruction_repulsion` (Eq. 4) and
   `reconstruction_attraction` (Eq. 5).

The paper writes Eq. 4 and 5 with binary cross-entropy summed over features; the code uses half the
squared error averaged over features (`reconstruction_error`, the same error as BI-R's reconstruction
loss, appendix §5), because the reconstructed objects are unbounded conv features (appendix §9.1 items 1,
9). birr follows the code in both variants. Every function keeps a leading run axis K.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from birr.stacked import bmm


def one_hot(index: torch.Tensor, n: int, dtype=torch.float32) -> torch.Tensor:
    """(...) class indices -> (..., n) one-hot of `dtype`. F.one_hot's values, without its range check:
    on a CPU that check reads min and max back as Python numbers, and the training step must read
    nothing back (a host read stalls a GPU step; tests/test_learner.py counts host reads). Indices come from labels and
    argmax/topk here, always in range."""
    return torch.zeros(*index.shape, n, dtype=dtype, device=index.device).scatter_(-1, index[..., None], 1)


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table (K,C,D), index (K,B) -> table[k, index[k, b]] of shape (K,B,D)."""
    return torch.gather(table, 1, index[..., None].expand(-1, -1, table.shape[-1]))


# --- 1. competing classes -----------------------------------------------------------------------

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


def runner_up(scores):
    """Each sample's most and second most likely class, (..., C) scores -> label (...), runner-up (...)."""
    top2 = scores.topk(2, dim=-1).indices
    return top2[..., 0], top2[..., 1]


def code_competitor(teacher_logits, f, use_f):
    r"""The code's competitor rule (appendix §8.2-§8.3): label c1 and the single competitor c2 are the
    teacher's (previous model's) top-1 and top-2 on the replayed vectors; with f on, a sample is
    competitive iff $p_{c1} < f\, p_{c2}$ at T = 1, without f every sample is.
    teacher_logits (K,B,C_old), f (K,), use_f (K,) bool -> c1, c2, competitive, each (K,B)."""
    c1, c2 = runner_up(teacher_logits)
    p = F.softmax(teacher_logits, dim=-1)                                  # T = 1 (appendix §8.3)
    p1, p2 = p.gather(-1, c1[..., None]).squeeze(-1), p.gather(-1, c2[..., None]).squeeze(-1)
    return c1, c2, (p1 < f[:, None] * p2) | ~use_f[:, None]


# --- 2. class means -------------------------------------------------------------------------------

def batch_class_means(x, label, n_classes: int):
    r"""The code's $\hat x_c$ (appendix §8.4): per-iteration means of the replayed inputs grouped by their
    label, $\hat x_c = \mathrm{mean}\{x_j : c1_j = c\}$. x (K,B,D), label (K,B) -> means (K,C,D) (0 for a
    class no sample has) and counts (K,C)."""
    onehot = one_hot(label, n_classes, x.dtype)                            # (K,B,C)
    counts = onehot.sum(1)                                                 # (K,C)
    return bmm(onehot.transpose(1, 2), x) / counts.clamp_min(1)[..., None], counts


# --- 3. the losses ----------------------------------------------------------------------------------

def reconstruction_error(target, x_recon):
    r"""$\tfrac12 \cdot \tfrac1D \sum_f (t_{i,f} - x'_{i,f})^2$ per sample: (K,B,D) -> (K,B). The
    reconstruction error of appendix §5 before its batch mean, which RR and RA reuse (appendix §8.5)."""
    return 0.5 * (target - x_recon).pow(2).mean(-1)


def pairwise_reconstruction_error(x_recon, means):
    r"""`reconstruction_error` of every sample against every class mean at once, (K,B,D) x (K,C,D) ->
    (K,B,C), as $\|a\|^2 - 2 a \cdot b + \|b\|^2$ (one matmul instead of a (K,B,C,D) tensor), clamped
    at 1e-12 so that its inverse stays finite."""
    sq = (x_recon.pow(2).sum(-1)[..., None] - 2 * bmm(x_recon, means.transpose(1, 2))
          + means.pow(2).sum(-1)[:, None, :])
    return 0.5 * sq.clamp_min(1e-12) / x_recon.shape[-1]


def reconstruction_repulsion(err, pairs):
    r"""Eq. 4, reconstruction repulsion: the mean, over the competing (sample, class) pairs, of the
    inverse reconstruction error between the sample's reconstruction and the class's mean,

    $RR = \frac{1}{|S|} \sum_{(i,c) \in S} \big[\tfrac12 \tfrac1D \sum_f (\hat x_{c,f} - x'_{i,f})^2\big]^{-1}$,

    (appendix §8.5). Minimising it pushes each reconstruction away from its competitors' means. err:
    the pairs' errors (K,B) (one competitor per sample) or (K,B,C); pairs: the same shape, bool, the
    set S. 0 for a run with no pair; no inf is formed outside S. Returns (K,)."""
    inv = 1.0 / torch.where(pairs, err, torch.ones_like(err))
    return (inv * pairs).flatten(1).sum(1) / pairs.flatten(1).sum(1).clamp_min(1)


def reconstruction_attraction(x_recon, own_means):
    r"""Eq. 5, reconstruction attraction: the mean reconstruction error between each sample's
    reconstruction and the mean of its own class,

    $RA = \frac1B \sum_i \tfrac12 \tfrac1D \sum_f (\hat x_{label_i,f} - x'_{i,f})^2$

    (appendix §8.5), which pulls reconstructions of a class towards each other. x_recon (K,B,D),
    own_means (K,B,D) the rows $\hat x_{label_i}$ -> (K,)."""
    return reconstruction_error(own_means, x_recon).mean(1)


# --- the two variants ---------------------------------------------------------------------------

def rr_ra_code(x_replay, x_recon, teacher_logits, f, use_f):
    r"""RR and RA, `--recon-repulsion --recon-attraction --recon-rep-aver [--use-rep-f]` (appendix §8).

    Competitors by `code_competitor`, class means of the replayed batch (`batch_class_means`). RR over S =
    the competitive samples whose c2 is some sample's c1; RA over all samples, applied only when the
    batch has a competitive sample (the f gate, appendix §8.3 item 4). Both are 0 for a run whose batch
    has no competitive sample (the reference skips them). Where the reference would crash (competitive
    samples but S empty, appendix §8.5: `λ * None`), RR is 0 here. Gradients flow only through x_recon.

    x_replay (K,B,D) no grad; x_recon (K,B,D); teacher_logits (K,B,C_old); f (K,) float; use_f (K,) bool.
    Returns rr (K,), ra (K,), stats dict of (K,...) tensors: n_competitive, n_kept, applied, and
    label/competitor pairs (c1, c2, kept) for the pair-count log.
    """
    c1, c2, competitive = code_competitor(teacher_logits, f, use_f)                   # (K,B) each
    x_hat, counts = batch_class_means(x_replay.detach(), c1, teacher_logits.shape[-1])  # (K,C_old,D)
    kept = competitive & (counts.gather(1, c2) > 0)                                     # S
    rr = reconstruction_repulsion(reconstruction_error(gather_rows(x_hat, c2), x_recon), kept)
    applied = competitive.any(1)
    ra = reconstruction_attraction(x_recon, gather_rows(x_hat, c1)) * applied
    stats = dict(n_competitive=competitive.sum(1), n_kept=kept.sum(1), applied=applied,
                 rr_applied=kept.any(1), ra_applied=applied, label=c1, competitor=c2, pair_mask=kept)
    return rr, ra, stats


def rr_ra_paper(x_recon, own_logits, class_means, f, use_f, validate: bool = True):
    r"""RR and RA as the paper's §3.2-3.3 describe them, with the resolutions birr has to choose
    (errata page, appendix §9.1):

    * competitors come from the model's *own* classifier (softmax over the classes seen so far, T = 1),
      label = argmax, every class above p_max / f is a competitor (`competing_classes`); without f,
      the runner-up;
    * $\hat x_c$ is the mean encoder feature vector of class c's *real* training images (class_means,
      filled as classes arrive);
    * BCE is impossible on unbounded features, so the error is the same ½·MSE averaged over features
      that BI-R uses (item 1), and Eq. 4's sign is read as *minimise the inverse of a positive error*
      (item 9);
    * RA over all replayed samples, independent of f, as the paper's §3.3 implies.

    x_recon (K,B,D); own_logits (K,B,C_active) (detached here); class_means (K,C_active,D); f (K,);
    use_f (K,) bool. Returns rr (K,), ra (K,), stats.
    """
    p = F.softmax(own_logits.detach(), dim=-1)
    label, _, comp_f = competing_classes(p, torch.where(use_f, f, torch.ones_like(f))[:, None], validate)
    comp = torch.where(use_f[:, None, None], comp_f, one_hot(runner_up(p)[1], p.shape[-1], torch.bool))  # (K,B,C)
    rr = reconstruction_repulsion(pairwise_reconstruction_error(x_recon, class_means), comp)
    ra = reconstruction_attraction(x_recon, gather_rows(class_means, label))
    any_comp = comp.flatten(1).any(1)
    stats = dict(n_competitive=comp.any(-1).sum(1), n_kept=comp.flatten(1).sum(1), applied=any_comp,
                 rr_applied=any_comp, ra_applied=torch.ones_like(any_comp), label=label, competitors=comp)
    return rr, ra, stats


# --- what RR and RA did, counted for the results (appendix §8) ----------------------------------

def new_pair_log(K: int, C: int, device) -> dict:
    """A task's RR / RA counters, all on the device: the pair counts (K, C, C) of (label, competitor)
    and the per-run counts of competitive, kept and gated samples."""
    count = lambda *shape: torch.zeros(*shape, dtype=torch.long, device=device)
    return dict(n_replayed=0, n_competitive=count(K), n_kept=count(K), n_applied=count(K),
                n_rr_applied=count(K), n_ra_applied=count(K), pairs=count(K, C, C))


def log_pairs(log: dict, stats: dict, variant: str, n_replayed: int) -> None:
    """Add one step's statistics (rr_ra_code's or rr_ra_paper's, by `variant`) to `log`. Dense
    scatter-adds weighted by the masks, never a boolean index or nonzero(): their output size depends on
    the data, so on a GPU each would stall the step."""
    log["n_replayed"] += n_replayed
    log["n_competitive"] += stats["n_competitive"]
    log["n_kept"] += stats["n_kept"]
    log["n_applied"] += stats["applied"].long()
    log["n_rr_applied"] += stats["rr_applied"].long()       # iterations whose RR term is not zero
    log["n_ra_applied"] += stats["ra_applied"].long()       # ... whose RA term is not zero
    K, C = log["pairs"].shape[:2]
    label = stats["label"]
    if variant == "code":                                    # one competitor per sample, (K,B) each
        flat, weight = label * C + stats["competitor"], stats["pair_mask"].long()
    else:                                                    # competitors (K,B,C_act)
        comp = stats["competitors"]
        flat = (label[..., None] * C + torch.arange(comp.shape[-1], device=label.device)).flatten(1)
        weight = comp.flatten(1).long()
    log["pairs"].view(K, C * C).scatter_add_(1, flat, weight)
