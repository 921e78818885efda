"""A run's results (birr.results): its record task by task and the divergence line, without training."""
import torch

import birr
from birr import results as Res
from birr.learner import TERMS


def test_record_task_appends_each_measure_of_a_task():
    """Task 2 of 3 for run 1 of a 2-run stack: accuracies on tasks not yet seen are None in the matrices,
    loss traces are named by TERMS at the logged iterations, the wall time is the run's share."""
    cfg = birr.preset("bir+si", budget="smoke", n_tasks=3, iters=10)
    per_task = torch.tensor([[0.125, 0.25, 0.375], [0.375, 0.5, 0.625]])   # exact in float32
    per_class = torch.rand(2, 6)
    logs = torch.arange(2 * 2 * len(TERMS), dtype=torch.float32).view(2, 2, len(TERMS))   # (n_logs, K, terms)
    r = Res.new_record()
    Res.record_task(r, 1, cfg, 2, (per_task, per_class, per_task * 2), logs, 5, None, [], None, 1.5)
    assert r["acc_matrix"] == [[0.375, 0.5, None]] and r["acc_matrix_seen"] == [[0.75, 1.0, None]]
    assert r["per_class_acc_after_task"] == [per_class[1].tolist()] and r["task_wall_s"] == [1.5]
    trace = r["loss_traces"][0]
    assert trace["task"] == 2 and trace["iters"] == [5, 10]
    assert trace["kl"] == logs[:, 1, TERMS.index("kl")].tolist() and "grad_norms" not in r and r["rr_stats"] == []


def test_divergence_names_the_first_non_finite_term_or_the_weights():
    cfg = birr.preset("bir+si", budget="smoke", iters=30)
    logs = torch.ones(3, len(TERMS))
    assert Res.divergence(cfg, 2, logs, 10, True) is None
    logs[1, TERMS.index("kl")] = float("nan")
    logs[2, TERMS.index("total")] = float("inf")
    line = Res.divergence(cfg, 2, logs, 10, True)
    assert line.startswith(f"run {cfg.stamp} (seed 0, lr=") and "diverged in task 2: loss term kl is nan at " \
        "iteration 20" in line
    assert "weights are not finite after iteration 30" in Res.divergence(cfg, 1, torch.ones(3, len(TERMS)), 10, False)
