"""The paper's lists of runs (birr.experiments), importable from the package as the chapters call them."""
import birr
from birr import experiments as E


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
