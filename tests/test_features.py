"""Tests of birr/features.py: the cached conv features of every image and the linear probe."""
import pytest
import torch

from birr import data
from birr.data import cache_dir, load
from birr.encoder import ConvEncoder, init_, load_encoder
from birr.features import features, linear_probe

pytestmark = pytest.mark.usefixtures("birr_cache")  # feature files never touch ~/.cache


def test_features_cache(encoder_artefact):
    enc, _ = load_encoder(encoder_artefact)
    bench = load("synthetic", n_tasks=2, seed=0, n_train_per_class=30, n_test_per_class=10)
    calls = []
    enc.register_forward_hook(lambda *_: calls.append(1))
    train, test = features(enc, bench, batch=50)
    assert train.shape == (120, 1024) and test.shape == (40, 1024) and train.dtype == torch.float32
    assert calls, "first call should run the encoder"
    with torch.no_grad():
        assert torch.allclose(train, enc(bench.normalise(bench.train.images)), atol=1e-5)
        assert torch.allclose(test, enc(bench.normalise(bench.test.images)), atol=1e-5)
    calls.clear()
    train2, test2 = features(enc, bench)
    assert not calls, "second call should be served from the cache"
    assert torch.equal(train, train2) and torch.equal(test, test2)
    files = sorted(f.name for f in cache_dir().iterdir())
    assert len(files) == 2 and files[1] == files[0] + ".sha256"    # the cache and its hash, no temporary file


def test_features_key_ignores_label_order_but_not_images(encoder_artefact):
    enc, _ = load_encoder(encoder_artefact)
    a = load("synthetic", n_tasks=2, seed=0, n_train_per_class=10, n_test_per_class=5)
    features(enc, a)
    # same images, labels permuted differently (what another seed does to CIFAR): same file
    b = type(a)(**{**a.__dict__, "seed": 7, "class_order": a.class_order[::-1]})
    features(enc, b)
    assert len(list(cache_dir().glob("*.pt"))) == 1
    # a subsampled benchmark is another file
    features(enc, load("synthetic", n_tasks=2, seed=0, n_train_per_class=8, n_test_per_class=5))
    assert len(list(cache_dir().glob("*.pt"))) == 2


def test_linear_probe_known_cases():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (600,), generator=g)
    x = torch.randn(600, 8, generator=g) * 0.1
    x[torch.arange(600), y] += 3.0               # the class is written in one coordinate: separable
    assert linear_probe(x[:400], y[:400], x[400:], y[400:], epochs=100, lr=1e-2) == 1.0
    noise = torch.randn(600, 8, generator=g)     # features that hold nothing of the labels: near chance
    assert linear_probe(noise[:400], y[:400], noise[400:], y[400:], epochs=100, lr=1e-2) < 0.5


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
