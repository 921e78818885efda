"""Known-answer tests from a mutation audit: each one fails on a one-line change to birr that the rest of
the suite let through (the change is named in the test's docstring) and passes on the real code.
Answers are worked out by hand or follow from the reference code (book appendix), never from birr compared with itself."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from birr import data
from birr import book as R
from birr.encoder import ConvEncoder, init_
from birr.features import features
from birr.model import BIR
from birr.rr import rr_ra_code, rr_ra_paper


# --- RR / RA (appendix §8.3, §9.1) --------------------------------------------------------------------

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


# --- model (appendix §4.3) ---------------------------------------------------------------------------

def test_gmm_prior_logvars_are_standard_normal_like_the_means():
    """appendix §4.3: z_class_means and z_class_logvars are both initialised i.i.d. N(0, 1). Over 100 x 100
    draws the sample mean is within 0.05 of 0 and the std within 0.05 of 1 (their standard errors are
    0.01 and 0.007), and the two tables are independent draws. Catches logvars initialised to 0."""
    m = BIR([0], n_classes=100, fc_units=8, z_dim=100, in_dim=16)
    lv, mu = m.z_class_logvars.detach().flatten(), m.z_class_means.detach().flatten()
    assert abs(lv.mean().item()) < 0.05 and abs(lv.std().item() - 1) < 0.05
    assert abs(torch.corrcoef(torch.stack([lv, mu]))[0, 1].item()) < 0.05


# --- book (the chapters' tables and sentences) ----------------------------------------------------

def test_best_f_zero_change_is_not_a_loss():
    """best_f's docstring: "none gains" only when every change is negative. One f at exactly +0.00 and one
    below: the +0.00 row is named as the best, not as "every f loses". Catches `< 0` -> `<= 0`."""
    frame = pd.DataFrame({"variant": ["", "code", "code"], "f": [float("nan"), 5.0, 10.0],
                          "overall_abs": [float("nan"), 0.0, -1.0]}, index=["baseline", "f = 5", "f = 10"])
    assert R.best_f(frame, "overall") == "f = 5 (+0.00 points)"


def _result(seed, f=None, acc=0.3):
    rr = f is not None
    return dict(method="rr+ra" if rr else "bir+si", seed=seed, stamp=f"{f}-{seed}",
                config=dict(rr=rr, ra=rr, rep_f=f, rr_variant="code"),
                metrics=dict(first20=acc, first50=acc, overall=acc))


def test_table1_rows_are_ordered_by_increasing_f():
    """table1_frame's docstring (and the paper's Table 1's layout, f = 5, 10, 20, ...): baseline first, then the
    RR+RA rows by increasing f, whatever order the results come in. Catches sorting f descending."""
    runs = [_result(0)] + [_result(0, f) for f in (20.0, 5.0, 10.0)]
    assert list(R.table1_frame(runs).index) == ["baseline (BI-R + SI)", "f = 5", "f = 10", "f = 20"]


def test_nearest_mean_accuracy_uses_every_class():
    """Three well separated classes, one test point next to each class mean: nearest-class-mean is right
    on all three (accuracy 1), and a point of the last class counts. Catches dropping the last class mean."""
    x = torch.tensor([[0.0, 0.0], [0.0, 0.2], [10.0, 0.0], [10.0, 0.2], [0.0, 10.0], [0.2, 10.0]])
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    test_x = torch.tensor([[0.5, 0.5], [9.0, 0.5], [0.5, 9.0]])
    assert R.nearest_mean_accuracy(x, y, test_x, torch.tensor([0, 1, 2])) == 1.0


# --- data (appendix §2) -------------------------------------------------------------------------------

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)


def test_normalise_is_totensor_then_normalize_with_cifar100_statistics(birr_cache):
    """appendix §2: ToTensor (x / 255) then Normalize(mean, std). Pixel 255 of channel 0 is
    (1 − 0.5071) / 0.2673 = 1.84399, pixel 51 of channel 2 is (0.2 − 0.4409) / 0.2761 = −0.87251, pixel 0
    of channel 1 is −0.4865 / 0.2564 = −1.89743. Catches dividing by 256 instead of 255."""
    import dataclasses
    bm = data.load("synthetic", n_train_per_class=2, n_test_per_class=1)
    bm = dataclasses.replace(bm, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    img[0, 0], img[0, 2] = 255, 51
    out = bm.normalise(img)
    assert out[0, 0, 5, 7].item() == pytest.approx(1.84399, abs=1e-5)
    assert out[0, 1, 0, 0].item() == pytest.approx(-1.89743, abs=1e-5)
    assert out[0, 2, 31, 31].item() == pytest.approx(-0.87251, abs=1e-5)


def test_synthetic_statistics_standardise_each_channel(birr_cache):
    """Synthetic data has no published statistics; birr measures them per channel on the training images,
    as CIFAR's were measured (appendix §2 gives one mean and std per channel). Then the normalised training
    images have mean 0 and standard deviation 1 in each channel. Catches mixing channels in the
    measurement (a reshape without the transpose) and the variance taken for the std."""
    bm = data.load("synthetic")
    x = bm.normalise(bm.train.images).double()
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3, dtype=torch.float64), atol=1e-3)


# --- encoder (appendix §3) ----------------------------------------------------------------------------

def test_conv_init_bound_uses_the_full_fan_in():
    """init_ draws every conv weight and bias from U(−1/√fan_in, 1/√fan_in), fan_in = in_channels · 3 · 3
    (the reference's reset_parameters, appendix §4.1; torch's default): L1 has fan_in 27, bound 0.19245, and
    its 432 weights come within 10 % of it (P(all below 0.9 bound) = 0.9^432); L5 has fan_in 1152, bound
    0.029463. Catches fan_in = in_channels."""
    enc = ConvEncoder()
    init_(enc, torch.Generator().manual_seed(0))
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv, fan_in in ((convs[0], 27), (convs[4], 1152)):
        bound = 1 / math.sqrt(fan_in)
        w = conv.weight.detach().abs()
        assert w.max().item() <= bound and w.max().item() > 0.9 * bound
        assert conv.bias.detach().abs().max().item() <= bound
    assert 1 / math.sqrt(27) == pytest.approx(0.19245, abs=1e-5)


def test_features_use_bn_running_statistics_even_from_a_training_encoder(birr_cache):
    """appendix §3: the frozen conv stack runs in eval mode, BN on its stored running statistics, so each
    image's features do not depend on the rest of its batch. An encoder still in training mode, with
    running statistics far from any batch's, gives the eval-mode features and is left in training mode.
    Catches features() without encoder.eval()."""
    enc = ConvEncoder()
    init_(enc, torch.Generator().manual_seed(1))
    for name, buf in enc.named_buffers():
        if name.endswith("running_mean"):
            buf.fill_(0.5)
        elif name.endswith("running_var"):
            buf.fill_(4.0)
    assert enc.training
    bench = data.load("synthetic", n_tasks=2, n_train_per_class=3, n_test_per_class=2)
    train, test = features(enc, bench, batch=5)
    assert enc.training                                       # restored
    with torch.no_grad():
        one_by_one = torch.cat([enc.eval()(bench.normalise(bench.test.images[i:i + 1])) for i in range(len(bench.test))])
    enc.train()
    assert torch.allclose(test, one_by_one, atol=1e-5)         # batch-independent: running statistics
    with torch.no_grad():
        batch_stats = enc(bench.normalise(bench.test.images))
    assert not torch.allclose(test, batch_stats, atol=1e-3)    # the test can tell the two modes apart
