"""What "precision" means and the numbers Table 1 reports (appendix §7).

Precision is top-1 accuracy (appendix §7). The paper's Table 1 columns are the final model's mean accuracy over
the first 20 % and first 50 % of classes *in the permuted order*, and over all classes; every class has
the same number of test images, so per-class and per-task means coincide (appendix §7). `evaluate`
measures it for every run of a stack on every task and class.
"""
from __future__ import annotations

import math

import torch


def first_fraction(per_class_acc: list[float], fraction: float) -> float:
    """Mean accuracy over the first `fraction` of classes (new labels 0 .. round(fraction*C)-1)."""
    n = max(1, round(fraction * len(per_class_acc)))
    return sum(per_class_acc[:n]) / n


def forgetting(acc_matrix: list[list[float | None]]) -> float:
    """Average forgetting: for each task but the last, the best accuracy it had before the final model
    minus its final accuracy, so negative when a task ends better than it ever was (acc_matrix[t][i] =
    accuracy on task i after training task t, None if not yet seen)."""
    T = len(acc_matrix)
    if T < 2:
        return 0.0
    drops = [max(acc_matrix[t][i] for t in range(i, T - 1)) - acc_matrix[T - 1][i] for i in range(T - 1)]
    return sum(drops) / len(drops)


def bwt(acc_matrix: list[list[float | None]]) -> float:
    """Backward transfer: mean over tasks but the last of (final accuracy - accuracy just after learning it)."""
    T = len(acc_matrix)
    if T < 2:
        return 0.0
    return sum(acc_matrix[T - 1][i] - acc_matrix[i][i] for i in range(T - 1)) / (T - 1)


def summarise(acc_matrix_seen, per_class_acc) -> dict:
    """The derived metrics stored with every result.

    Forgetting and BWT come from `acc_matrix_seen`, the matrix with the argmax over the classes seen so
    far: the protocol of the reference's own record after every task (appendix §7, `precision_dict`). The
    all-class argmax of its final evaluation would, before the last task, let the untrained head rows of
    classes not yet seen (cross-entropy runs over the active classes only, appendix §5) win some argmaxes:
    that lowers "accuracy right after learning" (by up to 15 points on task 1 in the short runs) and
    so hides forgetting. After the last task every class is seen and the two matrices' rows coincide,
    so the Table 1 columns (per_class_acc, final model) are the same under either."""
    final = acc_matrix_seen[-1]
    return dict(
        first20=first_fraction(per_class_acc, 0.2),
        first50=first_fraction(per_class_acc, 0.5),
        overall=sum(per_class_acc) / len(per_class_acc),
        average_task_acc=sum(final) / len(final),
        forgetting=forgetting(acc_matrix_seen),
        bwt=bwt(acc_matrix_seen),
    )


def mean_sem(values) -> tuple[float, float]:
    """Mean and standard error of the mean (n-1 in the variance); SEM is nan for one value, and both
    are nan for none (a table row with no runs shows blanks instead of failing). The one copy: the
    book's tables use it through birr.book."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    if n < 2:
        return m, float("nan")
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


@torch.no_grad()
def evaluate(model, data, n_seen: int | None = None, chunk: int = 2500):
    """Accuracy of every run on every task and every class (appendix §7), argmax over ALL classes (the
    final evaluation of main_cl). With `n_seen`, also the per-task accuracy with the argmax restricted
    to the first n_seen classes (the reference's during-training `precision_dict`).
    Returns per_task (K,T), per_class (K,C) and per_task_seen (K,T) or None, on the host."""
    K, C = model.K, data.n_classes
    pred_all, pred_seen = [], []
    for i in range(0, data.test_x.shape[0], chunk):
        x = data.test_x[i:i + chunk]
        logits = model.classify(x.expand(K, *x.shape).contiguous())
        pred_all.append(logits.argmax(-1))
        pred_seen.append(logits[..., :n_seen or C].argmax(-1))

    def per_task_and_class(preds):
        correct = (torch.cat(preds, 1) == data.test_y).float()                # (K,N_test)
        hits = torch.zeros(K, C, device=correct.device).scatter_add_(1, data.test_y, correct)
        counts = torch.zeros(K, C, device=correct.device).scatter_add_(1, data.test_y, torch.ones_like(correct))
        per_task = hits.view(K, data.n_tasks, data.cpt).sum(-1) / counts.view(K, data.n_tasks, data.cpt).sum(-1)
        return per_task.cpu(), (hits / counts.clamp_min(1)).cpu()

    per_task, per_class = per_task_and_class(pred_all)
    per_task_seen = per_task_and_class(pred_seen)[0] if n_seen is not None else None
    return per_task, per_class, per_task_seen
