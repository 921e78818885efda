"""The paper's lists of runs (birr.experiments), importable from the package as the chapters call them."""
import pytest

import birr
from birr import experiments as E
from birr.experiments import book_configs, fig3_configs, table1_configs, table1_page_configs


def test_the_package_exports_the_experiment_lists():
    for name in ("table1_configs", "table1_page_configs", "fig3_configs", "sweep_configs", "book_configs",
                 "LAMBDA_DECADES"):
        assert getattr(birr, name) is getattr(E, name), name


def test_table1_page_is_table1_plus_the_paper_variant_at_f20_sharing_its_baselines():
    seeds = (0, 1)
    page = E.table1_page_configs(budget="smoke", seeds=seeds)
    code = E.table1_configs(budget="smoke", seeds=seeds)
    assert page[:len(code)] == code
    paper = page[len(code):]
    assert [(c.method, c.rr_variant, c.rep_f, c.seed) for c in paper] == [("rr+ra", "paper", 20.0, s) for s in seeds]
    assert [c.method for c in code[:len(seeds)]] == ["bir+si"] * len(seeds)        # one baseline per seed
    book = E.book_configs(budget="smoke", seeds=seeds)
    assert len({c.stamp for c in book}) == len(book) and {c.stamp for c in page} <= {c.stamp for c in book}


def test_sweeps_pass_their_arguments_through():
    """table1_configs: overrides reach every run and `variant` sets rr_variant of the RR+RA runs;
    fig3_configs: `f` sets rep_f of its RR+RA runs. Catches overrides dropped in table1_configs, variant
    ignored, and fig3's f fixed at 20."""
    t1 = table1_configs(budget="smoke", seeds=(0,), factors=(5,), variant="paper", iters=7)
    assert [(c.method, c.iters, c.rr_variant) for c in t1] == [("bir+si", 7, "code"), ("rr+ra", 7, "paper")]
    f3 = fig3_configs(budget="smoke", seeds=(0,), f=5.0)
    assert [(c.method, c.iters, c.rep_f) for c in f3] == [
        ("bir+si", 10, None), ("rr+ra", 10, 5.0), ("bir+si", 20, None), ("rr+ra", 20, 5.0),
        ("bir+si", 40, None), ("rr+ra", 40, 5.0)]


def test_table1_page_and_book_list_each_run_once():
    """table1_page_configs: the baseline and the code variant at f = 5, 10, 20, 50, 100, then the paper variant
    at f = 20 (its baseline is the same runs): 2 + 10 + 2 = 14 runs for 2 seeds, all different. book_configs
    (smoke, 1 seed): those 7, fine-tuning, and the Fig. 3 sweep at 10, 20, 40 iterations (baseline and f = 20),
    whose 40-iteration pair is the Table 1 baseline and f = 20 code run again: 7 + 1 + 4 = 12 runs, each
    once. Catches the paper list's baseline kept (a duplicate) and book_configs without its de-duplication."""
    page = table1_page_configs(budget="smoke", seeds=(0, 1))
    assert len(page) == len({c.stamp for c in page}) == 14
    assert [(c.rr_variant, c.rep_f, c.seed) for c in page[-2:]] == [("paper", 20.0, 0), ("paper", 20.0, 1)]
    assert sum(c.method == "bir+si" for c in page) == 2
    book = book_configs(budget="smoke", seeds=(0,))
    assert len(book) == len({c.stamp for c in book}) == 12


def test_sweep_configs_share_one_baseline_and_pair_every_cell():
    cfgs = birr.sweep_configs(budget="smoke", seeds=(0, 1), lambdas=(1e-6, 1e-2), factors=(5, 20),
                              variants=("code", "paper"))
    assert len(cfgs) == 2 + 2 * 2 * 2 * 2
    assert [c.method for c in cfgs[:2]] == ["bir+si", "bir+si"]
    cells = {(c.rr_variant, c.lambda_rr, c.rep_f) for c in cfgs[2:]}
    assert len(cells) == 8 and all(c.lambda_rr == c.lambda_ra for c in cfgs[2:])
    assert {c.seed for c in cfgs[2:]} == {0, 1}
    # the paper's setting is the same run (stamp) as Table 1's f = 20 row: stored runs are reused
    t1 = birr.table1_configs(budget="smoke", seeds=(0,), factors=(20,))
    sw = birr.sweep_configs(budget="smoke", seeds=(0,))
    assert [c.stamp for c in sw] == [c.stamp for c in t1]
    assert birr.LAMBDA_DECADES[0] == 1e-6 and birr.LAMBDA_DECADES[-1] == 1.0


@pytest.mark.parametrize("kw, msg", [(dict(seed=3), "sets seed itself"), (dict(lambda_rr=1.0), "use lambdas"),
                                     (dict(variants="code"), "variants='code' is not allowed"),
                                     (dict(lambdas=3), "expected a list")])
def test_sweep_configs_refuse_in_one_line(kw, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        birr.sweep_configs(budget="smoke", **kw)
