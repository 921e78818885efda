"""Config, presets and stamps (style.md 1-2)."""
import pytest

from birr.config import Config, preset, table1_configs


def test_default_is_the_reference_baseline_command():
    c = Config()
    assert (c.n_tasks, c.iters, c.batch, c.lr, c.si_c, c.si_eps, c.dg_prop, c.z_dim, c.fc_units, c.temp) == \
        (10, 5000, 256, 1e-4, 1e8, 0.1, 0.6, 100, 2000, 2.0)
    assert c.kl_divisor == 3072 and c.si_params == "fcE+head" and c.replay == "generative"


def test_unknown_key_and_bad_types_fail_in_one_line():
    with pytest.raises(ValueError, match="Unknown config key: 'lamda'"):
        preset("rr+ra", lamda=1)
    with pytest.raises(TypeError, match="config.seed=.*'0'"):
        Config(seed="0")
    with pytest.raises(TypeError, match="config.iters=True"):
        Config(iters=True)
    with pytest.raises(ValueError, match="config.rep_f=0.5 must be >= 1"):
        Config(rep_f=0.5)
    with pytest.raises(ValueError, match="config.dataset='mnist'"):
        Config(dataset="mnist")
    with pytest.raises(ValueError, match="method='ewc'"):
        preset("ewc")


def test_stamp_ignores_bookkeeping_and_changes_with_numbers():
    a = preset("bir+si", budget="smoke")
    assert a.stamp == a.replace(device="cpu").stamp
    assert a.stamp != a.replace(seed=1).stamp
    assert a.stamp != preset("rr+ra", budget="smoke").stamp
    assert len(a.stamp) == 12


def test_presets_expand_methods_and_budgets():
    rr = preset("rr+ra", budget="full")
    assert rr.rr and rr.ra and rr.rep_f == 20 and rr.lambda_rr == 1e-6 and rr.rr_variant == "code"
    assert preset("finetune").replay == "none" and preset("finetune").si_c == 0
    s = preset("bir+si", budget="short")
    assert s.dataset == "cifar10-jpg" and s.n_tasks == 5
    assert preset("bir+si", budget="smoke").dataset == "synthetic"
    with pytest.raises(ValueError, match="need replay='generative'"):
        preset("finetune", rr=True)


def test_table1_is_one_call():
    cfgs = table1_configs(budget="full", seeds=(0, 1))
    assert len(cfgs) == 12
    assert {c.batch for c in cfgs} == {512} and {c.batch_replay for c in cfgs} == {512}
    assert sorted({c.rep_f for c in cfgs if c.rr}) == [5, 10, 20, 50, 100]
    assert len({c.stamp for c in cfgs}) == 12
