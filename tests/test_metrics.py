"""birr/metrics.py (appendix §7): the numbers Table 1 reports, on small cases worked out by hand."""
import math

import pytest

from birr import metrics as M

# acc[t][i]: accuracy on task i after training task t (None: not seen yet). Task 0 peaks after task 1
# (0.95), so its forgetting (best - final) differs from its backward transfer (final - just learned).
ACC = [[0.90, None, None],
       [0.95, 0.80, None],
       [0.50, 0.70, 0.95]]
# per-class final accuracy in the permuted class order (new labels 0..9)
PER_CLASS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.5]


def test_summarise_by_hand():
    s = M.summarise(ACC, PER_CLASS)
    assert s["first20"] == pytest.approx((1.0 + 0.8) / 2)                     # classes 0, 1
    assert s["first50"] == pytest.approx((1.0 + 0.8 + 0.6 + 0.4 + 0.2) / 5)   # classes 0..4
    assert s["overall"] == pytest.approx(3.5 / 10)
    assert s["average_task_acc"] == pytest.approx((0.50 + 0.70 + 0.95) / 3)
    assert s["forgetting"] == pytest.approx(((0.95 - 0.50) + (0.80 - 0.70)) / 2)   # 0.275
    assert s["bwt"] == pytest.approx(((0.50 - 0.90) + (0.70 - 0.80)) / 2)          # -0.25


def test_first_fraction_rounds_to_whole_classes_and_keeps_one():
    assert M.first_fraction([1.0, 0.0, 0.0], 0.2) == 1.0           # round(0.6) = 1 class
    assert M.first_fraction([1.0, 0.5, 0.0, 0.0], 0.5) == 0.75     # 2 classes
    assert M.first_fraction([0.3], 0.2) == pytest.approx(0.3)      # never fewer than one


def test_one_task_has_no_forgetting_and_mean_sem():
    assert M.forgetting([[0.7]]) == 0.0 and M.bwt([[0.7]]) == 0.0
    m, sem = M.mean_sem([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3)
    assert sem == pytest.approx(math.sqrt((16 / 9 + 1 / 9 + 25 / 9) / 2 / 3))
    assert math.isnan(M.mean_sem([5.0])[1])


def test_mean_sem_of_nothing_is_blank_and_the_book_uses_this_copy():
    import numpy as np
    import pandas as pd
    from birr import book as R
    assert all(math.isnan(v) for v in M.mean_sem([]))              # an empty table row: blanks, no error
    assert R.mean_sem is M.mean_sem                                  # one implementation (was two)
    m, sem = M.mean_sem(pd.Series([1.0, 2.0, 4.0, np.nan]).dropna())  # chapter 10 passes Series
    assert (m, sem) == M.mean_sem([1.0, 2.0, 4.0]) and isinstance(m, float)
    assert R.format_mean_sem(*M.mean_sem([70.0, 72.0])) == "71.0 ± 1.0"
