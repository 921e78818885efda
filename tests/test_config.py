"""Config, presets and stamps."""
import pytest

import birr
import birr.config
from birr.config import Config, preset
from birr.experiments import table1_configs


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
    # the full budget's 100-epoch encoder (appendix §3) on every dataset, each pre-trained on its own pair
    for data, enc in [("cifar100", "cifar10"), ("cifar10-jpg", "cifar10-jpg")]:
        f = preset("bir+si", budget="full", dataset=data)
        assert (f.encoder_epochs, f.encoder_data) == (100, enc)
    assert preset("bir+si", budget="short", dataset="cifar10-jpg").encoder_epochs == 5
    with pytest.raises(ValueError, match="need replay='generative'"):
        preset("finetune", rr=True)


def test_table1_is_one_call():
    cfgs = table1_configs(budget="full", seeds=(0, 1))
    assert len(cfgs) == 12
    assert {c.batch for c in cfgs} == {512} and {c.batch_replay for c in cfgs} == {512}
    assert sorted({c.rep_f for c in cfgs if c.rr}) == [5, 10, 20, 50, 100]
    assert len({c.stamp for c in cfgs}) == 12


def test_imported_encoder_is_stamped_only_when_set():
    """Config.encoder came after results were stored: unset, it leaves every earlier stamp as it was
    (the committed results/runs/<stamp>.json files are found by those stamps); set, it names other runs."""
    import json
    from pathlib import Path
    runs = sorted((Path(__file__).resolve().parents[1] / "results" / "runs").glob("*.json"))
    assert len(runs) >= 40
    imported = 0
    for path in runs:
        cfg = Config(**json.loads(path.read_text())["config"])
        assert cfg.stamp == path.stem, path.name
        if cfg.encoder is not None:       # a run on the reference's encoder is another run than on birr's
            imported += 1
            assert cfg.replace(encoder=None).stamp != cfg.stamp, path.name
    assert imported < len(runs)          # most stored runs predate the field: their stamps are unchanged
    a = preset("bir+si", budget="smoke")
    b = a.replace(encoder="ref-0123456789")
    assert b.stamp != a.stamp and b.stamp != a.replace(encoder="ref-abcdefabcd").stamp
    with pytest.raises(ValueError, match=r"config.encoder='C3-5x16-bn' must be None or an imported encoder's name"):
        a.replace(encoder="C3-5x16-bn")


def test_numbers_that_pass_no_comparison_are_refused():
    """nan passes `x < 1` and `x <= 0` alike, so every float field is checked for finiteness first."""
    for key in ("rep_f", "lr", "temp", "lambda_rr", "si_c"):
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"config.{key}=(nan|inf) must be a finite number"):
                preset("rr+ra", **{key: bad})
    with pytest.raises(ValueError, match="lambda_ra=-1e-06 must be >= 0"):
        preset("rr+ra", lambda_ra=-1e-6)
    with pytest.raises(ValueError, match=r"config.seed=4294967296 must be in 0..4294967295"):
        Config(seed=2 ** 32)
    assert Config(seed=2 ** 32 - 1).seed == 2 ** 32 - 1
    with pytest.raises(ValueError, match="config.device='cuda:x' is not allowed"):
        Config(device="cuda:x")
    assert Config(device="cuda:1").device == "cuda:1"


def test_fig3_configs_names_a_bad_budget():
    from birr.experiments import fig3_configs
    with pytest.raises(ValueError, match=r"budget='x' is not allowed; choose one of \('smoke', 'class', 'short', 'full'\)"):
        fig3_configs(budget="x")


@pytest.mark.parametrize("call, error, needle", [
    (lambda: table1_configs(seeds=3), TypeError, r"seeds=3 is not allowed; expected a list such as \(0, 1, 2\)"),
    (lambda: table1_configs(seeds=()), TypeError, r"seeds=\(\) is not allowed; expected a non-empty list of integers"),
    (lambda: table1_configs(seeds=(0, 0.5)), TypeError, r"seeds=\(0, 0.5\) is not allowed"),
    (lambda: table1_configs(seeds=(1, 1)), ValueError, r"seeds=\(1, 1\) repeats a value"),
    (lambda: table1_configs(factors=20), TypeError, r"factors=20 is not allowed; expected a list such as \(5, 10, 20\)"),
    (lambda: table1_configs(factors=("20",)), TypeError, r"factors=\('20',\) is not allowed; expected a non-empty list of numbers"),
    (lambda: birr.experiments.fig3_configs(iters_grid=100), TypeError, r"iters_grid=100 is not allowed"),
    (lambda: birr.experiments.book_configs(seeds=range(0)), TypeError, r"seeds=range\(0, 0\) is not allowed"),
])
def test_sweeps_name_a_bad_list_in_one_line(call, error, needle):
    """table1_configs(seeds=3) ended in Python's "'int' object is not iterable"."""
    with pytest.raises(error, match=needle) as e:
        call()
    assert "\n" not in str(e.value)


def test_sweeps_take_numpy_and_range_and_give_plain_numbers():
    import numpy as np
    cfgs = table1_configs(budget="smoke", seeds=np.arange(2), factors=range(5, 7))
    assert [(c.method, c.seed, c.rep_f) for c in cfgs] == [
        ("bir+si", 0, None), ("bir+si", 1, None), ("rr+ra", 0, 5.0), ("rr+ra", 1, 5.0), ("rr+ra", 0, 6.0), ("rr+ra", 1, 6.0)]
    assert all(type(c.seed) is int for c in cfgs)


@pytest.mark.parametrize("call, key, hint", [
    (lambda: birr.table1_configs(budget="smoke", seed=3), "seed", "use seeds="),
    (lambda: birr.table1_configs(budget="smoke", rep_f=3.0), "rep_f", "use factors="),
    (lambda: birr.table1_configs(budget="smoke", method="bir"), "method", "its own methods"),
    (lambda: birr.fig3_configs(budget="smoke", iters=5), "iters", "use iters_grid="),
    (lambda: birr.book_configs(budget="smoke", rr_variant="paper"), "rr_variant", "runs both"),
    (lambda: birr.table1_page_configs(budget="smoke", variant="paper"), "variant", "runs both"),
])
def test_sweeps_refuse_an_override_of_what_they_sweep_in_one_line(call, key, hint):
    """Formerly "preset() got multiple values for keyword argument 'seed'" (a TypeError from inside)."""
    with pytest.raises(ValueError) as err:
        call()
    msg = str(err.value)
    assert f"{key}=...) is not allowed: it sets {key} itself" in msg and hint in msg and "\n" not in msg


def test_a_config_cannot_change_after_validation():
    """c.iters = -5 used to be accepted, unvalidated, and silently gave the run another stamp."""
    import dataclasses
    c = preset("bir+si", budget="smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.iters = -5
    assert c.replace(iters=7).iters == 7 and c.iters == 40
    with pytest.raises(ValueError, match="config.iters=-5 must be > 0"):
        c.replace(iters=-5)


# --- validation at its edges, presets -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["n_tasks", "iters", "batch", "batch_replay", "fc_units", "z_dim",
                                  "encoder_epochs", "log_every"])
def test_sizes_must_be_positive(name):
    """validate(): sizes, iterations and log_every must be > 0 (log_every=0 would divide by zero in the loop;
    iters=0 trains nothing). Catches `<= 0` -> `< 0` and log_every dropped from the list."""
    with pytest.raises(ValueError, match=f"config.{name}=0 must be > 0"):
        Config(**{name: 0})
    assert getattr(Config(**{name: 1}), name) == 1


def test_value_ranges_at_their_edges():
    """dg_prop is P(gate entry = 0) and must be in [0, 1) (validate's message; dg_prop = 1 closes every gate,
    appendix §4.2); f >= 1 (paper §3.2), so f = 1 is allowed; RA, like RR, acts on replayed samples only
    (appendix §8.2), so ra=True without replay is refused; a bool is no float (lr=True). Catches `< 1.0` ->
    `<= 1.0` for dg_prop, `< 1` -> `<= 1` for rep_f, the replay check looking at rr only, and bools passing
    as floats."""
    with pytest.raises(ValueError, match=r"config.dg_prop=1.0 must be in \[0, 1\)"):
        Config(dg_prop=1.0)
    assert Config(dg_prop=0.0).dg_prop == 0.0
    assert Config(rep_f=1.0).rep_f == 1.0
    with pytest.raises(ValueError, match="need replay='generative'"):
        preset("finetune", ra=True)
    with pytest.raises(TypeError, match="config.lr=True has type bool"):
        Config(lr=True)


def test_a_dataset_override_brings_its_own_task_split():
    """preset()'s docstring: method, then budget sizes, then THE DATASET's task split, then overrides. The
    smoke budget's dataset is synthetic (2 tasks); asking for cifar10 gives cifar10's 5 tasks and encoder
    data, and the short budget with synthetic gives 2 tasks on synthetic. Catches taking the split of the
    budget's dataset instead of the one asked for."""
    c = preset("bir+si", budget="smoke", dataset="cifar10")
    assert (c.dataset, c.n_tasks, c.encoder_data, c.iters) == ("cifar10", 5, "cifar10", 40)
    s = preset("bir+si", budget="short", dataset="synthetic")
    assert (s.dataset, s.n_tasks, s.encoder_data, s.iters) == ("synthetic", 2, "synthetic", 300)


def test_new_fields_are_stamped_only_when_set():
    base = birr.preset("rr+ra", budget="smoke")
    assert birr.preset("rr+ra", budget="smoke", grad_every=0).stamp == base.stamp
    assert birr.preset("rr+ra", budget="smoke", grad_every=5).stamp != base.stamp
    assert birr.preset("rr+ra", budget="smoke", encoder_recipe="rotation").stamp != base.stamp
    with pytest.raises(ValueError, match="encoder_recipe='labels' is not allowed"):
        birr.preset("rr+ra", budget="smoke", encoder_recipe="labels")
    with pytest.raises(ValueError, match="grad_every needs compile=False"):
        birr.preset("rr+ra", budget="smoke", grad_every=5, compile=True)
