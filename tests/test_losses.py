"""Each loss of appendix §5 / §6 / §8 against a value computed by hand (or by an independent loop)."""
import math

import pytest
import torch
import torch.nn.functional as F

from birr import losses as L


def test_reconstruction_is_half_mse_averaged_over_features():
    # appendix §5: r_i = 1/2 * mean_f (x - x')^2, then mean over the batch
    x = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])          # K=1, B=2, D=2
    xr = torch.tensor([[[0.0, 0.0], [3.0, -1.0]]])
    # sample 1: 0.5 * (1 + 4)/2 = 1.25; sample 2: 0.5 * (9 + 1)/2 = 2.5; mean 1.875
    assert L.reconstruction_loss(x, xr).tolist() == [1.875]


def test_log_normal_drops_the_constant():
    z = torch.tensor([[1.0, -1.0]]); mu = torch.zeros(1, 2); logvar = torch.tensor([[0.0, math.log(4.0)]])
    # -1/2 * [(0 + 1) + (log 4 + 1/4)]
    expected = -0.5 * (1 + math.log(4) + 0.25)
    assert L.log_normal(z, mu, logvar).item() == pytest.approx(expected)


def test_kl_current_divided_by_3072():
    z = torch.tensor([[[0.5]]]); mu = torch.tensor([[[0.0]]]); lv = torch.tensor([[[0.0]]])
    pm = torch.tensor([[[1.0]]]); plv = torch.tensor([[[math.log(2.0)]]])
    logq = -0.5 * (0 + 0.25)
    logp = -0.5 * (math.log(2) + 0.25 / 2)
    assert L.kl_current(z, mu, lv, pm, plv).item() == pytest.approx((logq - logp) / 3072)
    assert L.kl_current(z, mu, lv, pm, plv, divisor=1.0).item() == pytest.approx(logq - logp)


def test_gmm_log_likelihoods_match_a_loop():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 5, 3, generator=g); means = torch.randn(2, 4, 3, generator=g); lv = torch.randn(2, 4, 3, generator=g)
    got = L.gmm_log_likelihoods(z, means, lv)
    for k in range(2):
        for b in range(5):
            for c in range(4):
                ref = L.log_normal(z[k, b], means[k, c], lv[k, c])
                assert got[k, b, c].item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)


def test_kl_replay_is_the_mixture_and_clamps():
    z = torch.tensor([[[0.0]]]); mu = torch.zeros(1, 1, 1); lv = torch.zeros(1, 1, 1)
    means = torch.tensor([[[0.0], [2.0]]]); lvs = torch.zeros(1, 2, 1)
    w = torch.tensor([[[0.25, 0.75]]])
    logp = math.log(0.25 * math.exp(0.0) + 0.75 * math.exp(-2.0))
    logq = 0.0
    assert L.kl_replay(z, mu, lv, means, lvs, w, divisor=1.0).item() == pytest.approx(logq - logp, rel=1e-6)
    # all weight on a mode that is far below the max: the reference clamps the sum at 1e-40 (appendix §5)
    means_far = torch.tensor([[[0.0], [200.0]]])
    w0 = torch.tensor([[[0.0, 1.0]]])
    v = L.kl_replay(z, mu, lv, means_far, lvs, w0, divisor=1.0).item()
    assert v == pytest.approx(-(math.log(1e-40) + 0.0), rel=1e-3)
    # z away from both modes: the max over modes (-0.5, not 0) must be added back after the log
    z3 = torch.tensor([[[3.0]]])
    logp3 = math.log(0.25 * math.exp(-4.5) + 0.75 * math.exp(-0.5))      # modes at 0 and 2: -9/2, -1/2
    assert L.kl_replay(z3, mu, lv, means, lvs, w, divisor=1.0).item() == pytest.approx(-4.5 - logp3, rel=1e-6)


def test_classification_only_active_classes():
    logits = torch.tensor([[[2.0, 0.0, 100.0]]])   # the third class is not active yet
    y = torch.tensor([[0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert L.classification_loss(logits[..., :2], y).item() == pytest.approx(expected)


def test_distillation_T2_times_T_squared_and_zero_padding():
    student = torch.tensor([[[1.0, 0.0, 3.0]]])    # 3 active classes
    teacher = torch.tensor([[[2.0, 0.0]]])          # 2 old classes
    T = 2.0
    tgt = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1), 0.0]
    s = [0.5, 0.0, 1.5]
    lse = math.log(sum(math.exp(v) for v in s))
    expected = T ** 2 * -sum(t * (v - lse) for t, v in zip(tgt, s))
    assert L.distillation_loss(student, teacher, T).item() == pytest.approx(expected, rel=1e-6)


# --- Eq. 1: the total --------------------------------------------------------------------------------

def _toy_step(t=3, C=6, n_old=4, B=2, D=3, Z=2):
    """One run's current batch, replayed batch and model outputs, all small and random."""
    g = torch.Generator().manual_seed(t)
    r = lambda *s: torch.randn(1, *s, generator=g)
    out = (r(B, C), r(B, Z), r(B, Z), r(B, Z), r(B, D))            # logits, mu, logvar, z, x_recon
    out_r = (r(B, C), r(B, Z), r(B, Z), r(B, Z), r(B, D))
    teacher = r(B, n_old)
    replay = (r(B, D), teacher, F.softmax(teacher / 2.0, -1), out_r)
    return dict(x=r(B, D), y=torch.tensor([[n_old, n_old + 1]]), out=out, prior_means=r(C, Z),
                prior_logvars=r(C, Z)), replay


def test_bir_loss_is_eq1_with_the_codes_task_weighting():
    """Eq. 1 as the code weights it (appendix §5): 1/t on the current terms, 1 - 1/t on the replayed
    ones with lambda RR + lambda RA inside; each named term is its own function's value; without replay
    the total is the current terms' sum, whatever t."""
    cur, replay = _toy_step(t=3)
    kw = dict(n_active=6, temp=2.0, kl_divisor=3072.0)
    rr_ra = lambda x_r, x_recon_r, logits_r, teacher: (torch.tensor([4.0]), torch.tensor([0.5]), {"seen": logits_r.shape})
    T = L.bir_loss(3, **cur, **kw, replay=replay, rr_ra=rr_ra, lambda_rr=torch.tensor([0.1]),
                   lambda_ra=torch.tensor([2.0]))
    x_r, teacher, gates, (logits_r, *_ , x_recon_r) = replay
    assert torch.equal(T["recon_r"], L.reconstruction_loss(x_r, x_recon_r))
    assert torch.equal(T["distill_r"], L.distillation_loss(logits_r, teacher, 2.0))
    assert torch.equal(T["ce"], L.classification_loss(cur["out"][0], cur["y"]))
    assert T["stats"] == {"seen": (1, 2, 6)}                      # RR sees the student's active logits
    current = T["recon"] + T["kl"] + T["ce"]
    replayed = T["recon_r"] + T["kl_r"] + T["distill_r"] + 0.1 * 4.0 + 2.0 * 0.5
    torch.testing.assert_close(T["total"], current / 3 + 2 / 3 * replayed)
    alone = L.bir_loss(3, **cur, **kw)
    assert torch.equal(alone["total"], alone["recon"] + alone["kl"] + alone["ce"])
    assert alone["recon_r"].item() == alone["rr"].item() == 0 and alone["stats"] is None


def test_bir_loss_a_zero_lambda_keeps_an_infinite_term_out():
    cur, replay = _toy_step(t=2)
    rr_ra = lambda *a: (torch.tensor([float("inf")]), torch.tensor([1.0]), None)
    T = L.bir_loss(2, **cur, n_active=6, temp=2.0, kl_divisor=3072.0, replay=replay, rr_ra=rr_ra,
                   lambda_rr=torch.tensor([0.0]), lambda_ra=torch.tensor([0.0]))
    assert torch.isfinite(T["total"]).all() and T["rr"].item() == float("inf")
