"""birr/metrics.py (appendix §7): the numbers Table 1 reports and the evaluation they come from, on small
cases worked out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

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


def test_forgetting_is_negative_when_a_task_improves():
    """forgetting(): for each task but the last, its best accuracy BEFORE the final model minus its final
    accuracy (Chaudhry et al. 2018: max over l < T; the code's range(i, T - 1)). Task 0 goes 0.5 -> 0.7:
    forgetting 0.5 - 0.7 = -0.2, backward transfer +0.2. Catches the final row included in the max (which
    clips forgetting at 0)."""
    acc = [[0.5, None], [0.7, 0.9]]
    assert M.forgetting(acc) == pytest.approx(-0.2)
    assert M.bwt(acc) == pytest.approx(0.2)


def test_first_fraction_rounds_to_the_nearest_count():
    """first_fraction's docstring: the first round(fraction * C) classes (Python's round; CIFAR-100's 20 and
    50 are exact). Half of 3 classes is round(1.5) = 2 classes: (1.0 + 0.0) / 2 = 0.5. Catches truncating
    (int(1.5) = 1 class, 1.0)."""
    assert M.first_fraction([1.0, 0.0, 0.0], 0.5) == 0.5


def test_evaluate_all_classes_and_seen_classes_by_hand():
    """Spec §7: the final accuracy takes the argmax over ALL classes; the during-training one
    (n_seen) only over the classes seen so far. Logits here: the label's one-hot plus 5 on class 3."""
    from types import SimpleNamespace
    labels = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3]])                         # (K=1, N)
    data = SimpleNamespace(test_x=F.one_hot(labels[0], 4).float(), test_y=labels, n_classes=4, n_tasks=2, cpt=2)
    model = SimpleNamespace(K=1, classify=lambda x: x + torch.tensor([0.0, 0.0, 0.0, 5.0]))
    per_task, per_class, per_task_seen = M.evaluate(model, data, n_seen=2)
    # all classes: class 3 wins everywhere, right only for label 3
    assert per_class.tolist() == [[0.0, 0.0, 0.0, 1.0]] and per_task.tolist() == [[0.0, 0.5]]
    # first two classes only: labels 0 and 1 are right; labels 2 and 3 cannot be
    assert per_task_seen.tolist() == [[1.0, 0.0]]
    assert M.evaluate(model, data)[2] is None
