"""RR / RA (appendix §8, the paper's §3.2-3.3)."""
import pytest
import torch

from birr import rr as RR
from birr.learner import Learner
from birr.rr import competing_classes, rr_ra_code, rr_ra_paper


def _toy():
    # K=1, B=3 replayed samples, D=2 features, 3 old classes
    x = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [4.0, 4.0]]])
    # teacher logits: samples 0,1 -> top-1 class 0, top-2 class 1; sample 2 -> top-1 class 1, top-2 class 0
    logits = torch.tensor([[[2.0, 1.5, -5.0], [3.0, 0.0, -5.0], [0.0, 1.0, -5.0]]])
    return x, logits


def test_code_variant_hand_computed():
    x, logits = _toy()
    xr = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [4.0, 2.0]]])
    f, use_f = torch.tensor([5.0]), torch.tensor([True])
    rr, ra, st = rr_ra_code(x, xr, logits, f, use_f)
    # p at T=1: sample 0: p1/p2 = e^0.5 = 1.65 < 5 -> competitive; sample 1: e^3 = 20.1 > 5 -> not;
    # sample 2: e^1 = 2.7 < 5 -> competitive.
    assert st["n_competitive"].tolist() == [2]
    # class means of replayed inputs by top-1: class 0 = mean(x0, x1) = (1, 0); class 1 = x2 = (4, 4)
    # RR over kept {0, 2}: sample 0 vs mean of class 1: 1/2*((4-1)^2+(4-1)^2)/2 = 4.5 -> 1/4.5
    #                       sample 2 vs mean of class 0: 1/2*((1-4)^2+(0-2)^2)/2 = 3.25 -> 1/3.25
    assert rr.item() == pytest.approx((1 / 4.5 + 1 / 3.25) / 2)
    # RA over all 3 samples vs own class mean: s0 vs (1,0): 1/2*(0+1)/2 = .25; s1 vs (1,0): 0; s2 vs (4,4): 1/2*(0+4)/2 = 1
    assert ra.item() == pytest.approx((0.25 + 0.0 + 1.0) / 3)


def test_code_variant_f_gate_and_no_factor():
    x, logits = _toy()
    xr = x + 0.5
    # f = 1: strict inequality never holds -> nothing competitive -> RR and RA both skipped (appendix §8.3)
    rr, ra, st = rr_ra_code(x, xr, logits, torch.tensor([1.0]), torch.tensor([True]))
    assert rr.item() == 0 and ra.item() == 0 and st["applied"].tolist() == [False]
    # no factor: every sample competitive (appendix §8.3 item 5)
    _, _, st = rr_ra_code(x, xr, logits, torch.tensor([1.0]), torch.tensor([False]))
    assert st["n_competitive"].tolist() == [3]


def test_code_variant_no_kept_sample_gives_zero_not_crash():
    # every sample has top-1 class 0, so no competitor class has a representative in the batch:
    # the reference adds lambda * None here (appendix §8.5); birr adds 0
    x = torch.randn(1, 4, 3)
    logits = torch.tensor([[[3.0, 2.9, 0.0]] * 4])
    rr, ra, st = rr_ra_code(x, x + 1, logits, torch.tensor([20.0]), torch.tensor([True]))
    assert st["n_competitive"].item() == 4 and st["n_kept"].item() == 0
    assert rr.item() == 0.0 and torch.isfinite(ra).all() and ra.item() > 0


def test_gradients_flow_only_through_the_reconstruction():
    x, logits = _toy()
    x = x.clone().requires_grad_(True)
    logits = logits.clone().requires_grad_(True)
    xr = (x.detach() + 0.3).requires_grad_(True)
    rr, ra, _ = rr_ra_code(x, xr, logits, torch.tensor([5.0]), torch.tensor([True]))
    (rr + ra).sum().backward()
    assert x.grad is None and logits.grad is None
    assert xr.grad is not None and xr.grad.abs().sum() > 0


def test_minimising_rr_repels_and_ra_attracts():
    x, logits = _toy()
    f, use_f = torch.tensor([5.0]), torch.tensor([True])
    comp_mean, own_mean = torch.tensor([4.0, 4.0]), torch.tensor([1.0, 0.0])   # for sample 0
    xr0 = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [4.0, 2.0]]])
    for term, target, sign in (("rr", comp_mean, +1), ("ra", own_mean, -1)):
        xr = xr0.clone().requires_grad_(True)
        rr, ra, _ = rr_ra_code(x, xr, logits, f, use_f)
        (rr if term == "rr" else ra).sum().backward()
        with torch.no_grad():
            new = xr - 0.1 * xr.grad
        before = (xr0[0, 0] - target).norm()
        after = (new[0, 0] - target).norm()
        assert sign * (after - before) > 0, term


def test_paper_variant_every_competitor_and_real_means():
    # own classifier, 3 active classes; sample 0: p = (.5, .3, .2) with f = 3 -> threshold .167: classes 1, 2
    p = torch.tensor([[[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]])
    logits = p.log()
    means = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]])     # real class means
    xr = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    rr, ra, st = rr_ra_paper(xr, logits, means, torch.tensor([3.0]), torch.tensor([True]))
    # pairs: (s0, c1): 1/2*(4+0)/2 = 1 ; (s0, c2): 1 ; sample 1 has none (0.05 < 0.3)
    assert st["n_kept"].item() == 2 and st["n_competitive"].item() == 1
    assert rr.item() == pytest.approx(1.0)
    # RA: s0 vs class 0 mean: 0; s1 vs class 0 mean: 1/2*(1+1)/2 = 0.5 -> mean .25
    assert ra.item() == pytest.approx(0.25)


def test_paper_variant_without_f_repels_the_runner_up_only():
    # same means as above; without f each sample's one competitor is its runner-up (no ties here)
    logits = torch.tensor([[[0.5, 0.3, 0.2], [0.9, 0.07, 0.03]]]).log()
    means = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]])
    xr = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    rr, ra, st = rr_ra_paper(xr, logits, means, torch.tensor([1.0]), torch.tensor([False]))
    # pairs (s0, c1): 1/2*(4+0)/2 = 1 -> 1/1 ; (s1, c1): 1/2*(1+1)/2 = 0.5 -> 1/0.5 = 2 ; mean 1.5
    assert st["n_kept"].item() == 2
    assert rr.item() == pytest.approx(1.5)
    assert ra.item() == pytest.approx(0.25)       # both labelled class 0: 0 and 0.5


def test_variants_agree_where_definitions_coincide():
    # one competitor per sample (runner-up only passes f), teacher = own classifier, and the replayed
    # inputs' class means equal the real class means: the two definitions give the same numbers
    x = torch.tensor([[[0.0, 0.0], [2.0, 2.0], [4.0, 0.0], [6.0, 2.0]]])   # class 0: s0,s1; class 1: s2,s3
    logits = torch.tensor([[[2.0, 1.0, -9.0], [2.0, 1.0, -9.0], [1.0, 2.0, -9.0], [1.0, 2.0, -9.0]]])
    real_means = torch.tensor([[[1.0, 1.0], [5.0, 1.0], [0.0, 0.0]]])
    xr = x + torch.tensor([0.5, -0.25])
    f, use_f = torch.tensor([5.0]), torch.tensor([True])
    rr_c, ra_c, _ = rr_ra_code(x, xr, logits, f, use_f)
    rr_p, ra_p, _ = rr_ra_paper(xr, logits, real_means, f, use_f)
    assert rr_c.item() == pytest.approx(rr_p.item(), rel=1e-5)
    assert ra_c.item() == pytest.approx(ra_p.item(), rel=1e-5)


# --- competing classes, paper Fig. 2 ------------------------------------------------------------

def test_fig2_example_threshold_and_selection():
    # Fig. 2: class 3 is the label with p = 0.6; f = 3 gives threshold 0.2; class 2 (0.25) competes,
    # classes at 0.1 and 0.05 do not
    p = torch.tensor([0.05, 0.0, 0.25, 0.6, 0.1])
    label, thr, comp = competing_classes(p, 3)
    assert label.item() == 3
    assert thr.item() == pytest.approx(0.2)
    assert comp.tolist() == [False, False, True, False, False]


def test_f_equal_one_selects_nothing_and_f_below_one_rejected():
    p = torch.tensor([[0.4, 0.4, 0.2], [0.5, 0.3, 0.2]])
    _, _, comp = competing_classes(p, 1.0)
    assert not comp.any()
    with pytest.raises(ValueError, match="f=.*0.5.*>= 1"):
        competing_classes(p, 0.5)


def test_ties_and_all_equal_rows():
    p = torch.tensor([[0.4, 0.4, 0.2]])
    label, _, comp = competing_classes(p, 1.5)
    assert label.tolist() == [0]                       # first index wins the tie
    assert comp.tolist() == [[False, True, False]]     # the tied class is a competitor (0.4 > 0.267)
    eq = torch.full((1, 4), 0.25)
    label, _, comp = competing_classes(eq, 2.0)
    assert label.tolist() == [0] and comp.tolist() == [[False, True, True, True]]


def test_competing_classes_vectorised_over_batch_and_runs():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(3, 7, 6, generator=g), -1)
    label, thr, comp = competing_classes(p, 4.0)
    for k in range(3):
        for b in range(7):
            pm = p[k, b].max()
            exp = [(p[k, b, c] > pm / 4).item() and c != p[k, b].argmax().item() for c in range(6)]
            assert comp[k, b].tolist() == exp


# --- the pieces: rules, class means, Eq. 4 and Eq. 5 -------------------------------------------

def test_code_competitor_is_the_teachers_runner_up_gated_by_f():
    """appendix §8.2-§8.3: c1, c2 = the teacher's top-1 and top-2; competitive iff p[c1] < f p[c2] (T = 1),
    every sample without f."""
    from birr.rr import code_competitor
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.7, 0.2]]]))       # p itself, K=1, B=2
    c1, c2, comp = code_competitor(logits, torch.tensor([2.0]), torch.tensor([True]))
    assert c1.tolist() == [[0, 1]] and c2.tolist() == [[1, 2]]
    assert comp.tolist() == [[True, False]]                                      # 0.5 < 0.6; 0.7 > 0.4
    assert code_competitor(logits, torch.tensor([2.0]), torch.tensor([False]))[2].all()


def test_batch_class_means_are_the_replayed_means_by_label():
    """appendix §8.4: x-hat_c = the mean of the replayed inputs labelled c; 0 for a class with none."""
    from birr.rr import batch_class_means
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    means, counts = batch_class_means(x, torch.tensor([[0, 0, 2]]), 3)
    assert means.tolist() == [[[2.0, 3.0], [0.0, 0.0], [5.0, 6.0]]] and counts.tolist() == [[2.0, 0.0, 1.0]]


def test_eq4_repulsion_is_the_mean_inverse_error_over_the_pairs():
    """Eq. 4 as the code computes it: mean over S of 1 / error; errors outside S (here 0) form no inf."""
    from birr.rr import reconstruction_repulsion
    err = torch.tensor([[2.0, 0.5, 0.0]])
    assert reconstruction_repulsion(err, torch.tensor([[True, True, False]])).tolist() == [1.25]   # (1/2 + 2) / 2
    assert reconstruction_repulsion(err, torch.zeros(1, 3, dtype=torch.bool)).tolist() == [0.0]
    pairs = torch.tensor([[[True, False], [False, True]]])                            # (K,B,C) pairs too
    assert reconstruction_repulsion(torch.tensor([[[4.0, 9.0], [9.0, 0.25]]]), pairs).tolist() == [2.125]


def test_eq5_attraction_is_the_mean_error_to_the_own_class_mean():
    """Eq. 5 as the code computes it: 1/B sum_i ½ mean_f (x-hat_label - x')^2."""
    from birr.rr import reconstruction_attraction
    x_recon = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    own = torch.tensor([[[0.0, 1.0], [2.0, 0.0]]])
    assert reconstruction_attraction(x_recon, own).tolist() == [0.625]                # (0.25 + 1.0) / 2


def test_pairwise_error_is_each_samples_error_against_each_mean():
    from birr.rr import pairwise_reconstruction_error, reconstruction_error
    g = torch.Generator().manual_seed(0)
    x, means = torch.randn(2, 5, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    want = torch.stack([reconstruction_error(means[:, c:c + 1].expand(-1, 5, -1), x) for c in range(3)], -1)
    torch.testing.assert_close(pairwise_reconstruction_error(x, means), want)


# --- known answers from a mutation audit (appendix §8.3, §9.1) ----------------------------------------------

def test_code_variant_f_test_is_strict_at_a_tie():
    """appendix §8.3 items 2 and 6: a sample competes iff p[c1] < f * p[c2], strictly, so at f = 1 a sample whose
    top two teacher logits tie exactly (p[c1] == p[c2]) does not compete, and a batch of such samples gets
    neither RR nor RA. Catches `<` -> `<=` in rr_ra_code's f test."""
    x = torch.tensor([[[0.0, 0.0], [2.0, 2.0]]])
    logits = torch.tensor([[[1.0, 1.0, -5.0], [-5.0, 2.0, 2.0]]])     # exact ties: p1 == p2 bit for bit
    rr, ra, st = rr_ra_code(x, x + 1.0, logits, torch.tensor([1.0]), torch.tensor([True]))
    assert st["n_competitive"].tolist() == [0] and st["applied"].tolist() == [False]
    assert rr.item() == 0.0 and ra.item() == 0.0


def test_paper_variant_ra_does_not_depend_on_f():
    """appendix §9.1 item 8 (the paper's §3.3): the paper's RA covers every replayed sample whatever the competitor
    threshold, so with f = 1 (no competitor anywhere, RR = 0) RA is still
    mean_i ½ · mean_f (x̂_label_i − x'_i)². Both samples are labelled class 0 (mean (0, 0)):
    s0 (1, 1): ½ · (1 + 1) / 2 = 0.5; s1 (3, 0): ½ · (9 + 0) / 2 = 2.25; mean 1.375.
    Catches gating the paper variant's RA by "some competitor in the batch", as the code variant does."""
    logits = torch.tensor([[[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]]).log()
    means = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]])
    xr = torch.tensor([[[1.0, 1.0], [3.0, 0.0]]])
    rr, ra, st = rr_ra_paper(xr, logits, means, torch.tensor([1.0]), torch.tensor([True]))
    assert st["n_kept"].item() == 0 and rr.item() == 0.0
    assert ra.item() == pytest.approx(1.375)


# --- the pair log -------------------------------------------------------------------------------------------

def test_pair_counts_are_the_same_as_counting_sample_by_sample(tiny):
    """The scatter-add pair log (no boolean indexing) counts what a per-sample loop would."""
    cfgs = [tiny("rr+ra", seed=0, rep_f=1e6), tiny("rr+ra", seed=1, rep_f=1e6, rr_variant="paper")]
    for cfg in cfgs:
        stack = Learner([cfg], torch.device("cpu"))
        K, C, B = 1, stack.data.n_classes, 8
        g = torch.Generator().manual_seed(0)
        label = torch.randint(0, C, (K, B), generator=g)
        rr_log = stack.new_rr_log(2)
        none = torch.zeros(K, dtype=torch.bool)                # no iteration applied RR or RA
        if cfg.rr_variant == "code":
            comp, mask = torch.randint(0, C, (K, B), generator=g), torch.rand(K, B, generator=g) < 0.5
            RR.log_pairs(rr_log, dict(n_competitive=0, n_kept=0, applied=none, rr_applied=none, ra_applied=none,
                                      label=label, competitor=comp, pair_mask=mask), "code", B)
            want = torch.zeros(K, C, C, dtype=torch.long)
            for b in range(B):
                want[0, label[0, b], comp[0, b]] += int(mask[0, b])
        else:
            comp = torch.rand(K, B, C - 1, generator=g) < 0.3                # C_act = C - 1 classes seen
            RR.log_pairs(rr_log, dict(n_competitive=0, n_kept=0, applied=none, rr_applied=none, ra_applied=none,
                                      label=label, competitors=comp), "paper", B)
            want = torch.zeros(K, C, C, dtype=torch.long)
            for b in range(B):
                for c in range(C - 1):
                    want[0, label[0, b], c] += int(comp[0, b, c])
        assert torch.equal(rr_log["pairs"], want) and want.sum() > 0


def test_a_batch_without_a_competitor_applies_neither_term():
    # every replayed sample is confidently class 0 (p1/p2 = e^5 > f = 20): the f gate never opens
    x = torch.randn(1, 4, 3)
    logits = torch.tensor([[[5.0, 0.0, 0.0]] * 4])
    rr, ra, st = rr_ra_code(x, x + 1, logits, torch.tensor([20.0]), torch.tensor([True]))
    assert st["rr_applied"].tolist() == [False] and st["ra_applied"].tolist() == [False]
    assert rr.item() == 0 and ra.item() == 0
    # paper variant: its own classifier, 3 classes, all far below p_max / f: no competitor, RA still acts
    own = torch.tensor([[[9.0, 0.0, 0.0]] * 4])
    rr, ra, st = rr_ra_paper(x + 1, own, torch.randn(1, 3, 3), torch.tensor([20.0]), torch.tensor([True]))
    assert st["rr_applied"].tolist() == [False] and st["ra_applied"].tolist() == [True]
    assert rr.item() == 0 and ra.item() > 0
