"""The BI-R model of appendix §4."""
import pytest
import torch

from birr.model import BIR


def test_cifar100_parameter_count_spec_4_4():
    m = BIR([0], n_classes=100, fc_units=2000, z_dim=100)
    assert m.n_params_per_run() == 12_925_224
    blocks = {"fcE": ("fcE1", "fcE2"), "toZ": ("toZ_mu", "toZ_logvar"), "classifier": ("head",),
              "fromZ": ("fromZ",), "fcD": ("fcD1", "fcD2"), "GMM prior": ("z_class",)}
    expected = {"fcE": 6_052_000, "toZ": 400_100, "classifier": 200_100, "fromZ": 202_000,
                "fcD": 6_051_024, "GMM prior": 20_000}
    for block, prefixes in blocks.items():
        n = sum(p.numel() for name, p in m.named_parameters() if name.startswith(prefixes))
        assert n == expected[block], block


def test_logvar_has_no_bias_and_head_sits_on_hE():
    m = BIR([0], n_classes=10, fc_units=32, z_dim=8)
    assert m.toZ_logvar.bias is None and m.toZ_mu.bias is not None
    assert m.head.weight.shape == (1, 32, 10)          # (K, H, C): input is the H-d hE, not z


def test_gates_fixed_masks_saved_and_prop():
    m = BIR([3], n_classes=100, fc_units=2000, z_dim=100, dg_prop=0.6)
    frac_zero = 1 - m.gate_fromZ.mean().item()
    assert abs(frac_zero - 0.6) < 0.01
    sd = m.state_dict()
    assert "gate_fromZ" in sd and "gate_fcD1" in sd     # unlike the reference, a checkpoint keeps them
    m2 = BIR([99], n_classes=100, fc_units=2000, z_dim=100)
    m2.load_state_dict(sd)
    assert torch.equal(m2.gate_fcD1, m.gate_fcD1)


def test_gated_decoder_units_off_for_class_and_linear_output():
    m = BIR([0], n_classes=5, fc_units=16, z_dim=4)
    z = torch.randn(1, 3, 4)
    g = torch.nn.functional.one_hot(torch.tensor([[2, 2, 2]]), 5).float()
    h = torch.relu(torch.bmm(g, m.gate_fromZ) * m.fromZ(z))
    off = m.gate_fromZ[0, 2] == 0
    assert (h[0][:, off] == 0).all()
    out = m.decode(z, g)
    assert out.shape == (1, 3, 1024) and (out < 0).any()   # linear: no ReLU on the output


def test_seeded_init_and_stacking():
    a, b = BIR([5], n_classes=4, fc_units=8, z_dim=2), BIR([5], n_classes=4, fc_units=8, z_dim=2)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    s = BIR([7, 5], n_classes=4, fc_units=8, z_dim=2)        # run 1 of the stack == the run alone
    for (n, p), (_, q) in zip(s.state_dict().items(), a.state_dict().items()):
        assert torch.equal(p[1], q[0]), n
    assert not torch.equal(s.fcE1.weight[0], s.fcE1.weight[1])


def test_init_is_uniform_bounded_by_fan_in():
    m = BIR([0], n_classes=10, fc_units=400, z_dim=8)
    bound = 1 / 1024 ** 0.5
    w = m.fcE1.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert abs(m.z_class_means.std().item() - 1) < 0.15      # GMM prior ~ N(0, 1) (appendix §4.3)


def test_sample_uses_class_mode_and_one_hot_gate():
    m = BIR([0], n_classes=4, fc_units=8, z_dim=3)
    cls = torch.tensor([[1, 3]])
    eps = torch.zeros(1, 2, 3)
    x = m.sample(cls, eps)
    z = m.z_class_means[0, [1, 3]][None]
    expected = m.decode(z, torch.nn.functional.one_hot(cls, 4).float())
    assert torch.allclose(x, expected)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_label_gates_are_the_one_hot_products_bit_for_bit(bf16):
    """Known classes gate by gathering M's row, soft class vectors by g @ M (appendix §4.2): a batch
    of labelled then soft-gated samples decodes to exactly what the reference's all-product way gives
    (one-hot class vectors times M), in fp32 and under bf16."""
    m = BIR([3], n_classes=6, fc_units=32, z_dim=4)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 6, (1, 5), generator=g)
    soft = torch.softmax(torch.randn(1, 3, 6, generator=g), -1)
    z = torch.randn(1, 8, 4, generator=g)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), ctx:
        rows = m.decode(z, soft, y)
        by_hand = m.decode(z, torch.cat([torch.nn.functional.one_hot(y, 6).float(), soft], 1))
    assert rows.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert torch.equal(rows, by_hand)
    gate = BIR.class_gate(m.gate_fromZ, None, y, torch.float32)
    assert torch.equal(gate[0], m.gate_fromZ[0, y[0]])                 # M's rows of the labels


def test_reparameterize_known_answer():
    """z = mu + eps * exp(logvar / 2) (appendix §5): logvar = log 4 is a standard deviation of 2."""
    import math
    z = BIR.reparameterize(torch.tensor([1.0, -1.0]), torch.full((2,), math.log(4.0)), torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(z, torch.tensor([3.0, 0.0]))


def test_gmm_prior_logvars_are_standard_normal_like_the_means():
    """appendix §4.3: z_class_means and z_class_logvars are both initialised i.i.d. N(0, 1). Over 100 x 100
    draws the sample mean is within 0.05 of 0 and the std within 0.05 of 1 (their standard errors are
    0.01 and 0.007), and the two tables are independent draws. Catches logvars initialised to 0."""
    m = BIR([0], n_classes=100, fc_units=8, z_dim=100, in_dim=16)
    lv, mu = m.z_class_logvars.detach().flatten(), m.z_class_means.detach().flatten()
    assert abs(lv.mean().item()) < 0.05 and abs(lv.std().item() - 1) < 0.05
    assert abs(torch.corrcoef(torch.stack([lv, mu]))[0, 1].item()) < 0.05
