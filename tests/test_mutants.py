"""Known-answer tests from a mutation audit of birr.data, birr.encoder and birr.features: each one fails on a
one-line change to birr that the rest of the suite let through (the change is named in the test's
docstring) and passes on the real code. Answers are worked out by hand or follow from the reference code
(book appendix), never from birr compared with itself. The audit's other tests are in the files of the
modules they test; these four belong in tests/test_data.py, tests/test_encoder.py and tests/test_features.py."""
import math

import pytest
import torch

from birr import data
from birr.encoder import ConvEncoder, init_
from birr.features import features


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
