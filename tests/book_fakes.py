"""Hand-built results dicts for the tests of birr.book: the fields the book reads, known answers."""


def fake(method="bir+si", seed=0, acc=(0.30, 0.32, 0.35), *, f=None, variant="code", iters=40, dataset="cifar10-jpg",
         budget="short", device="cpu", n_tasks=3, cpt=2, rr_stats=None, loss_traces=None, stamp=None):
    """A results dict with the fields birr.book reads; acc = (first20, first50, overall)."""
    rr = method == "rr+ra"
    C = n_tasks * cpt
    names = [f"class{(c + seed) % C}" for c in range(C)]
    acc_matrix = [[0.9 if i <= t else None for i in range(n_tasks)] for t in range(n_tasks)]
    acc_matrix[-1] = [0.2 + 0.1 * i for i in range(n_tasks)]
    return dict(
        stamp=stamp or f"{method}-{seed}-{f}-{variant}-{iters}", method=method, dataset=dataset, budget=budget,
        synthetic=dataset == "synthetic", seed=seed,
        config=dict(rr=rr, ra=rr, rep_f=f, rr_variant=variant, iters=iters, batch_replay=10, lambda_rr=1e-6,
                    lambda_ra=1e-6, device=device),
        class_names=names, n_tasks=n_tasks, classes_per_task=cpt,
        acc_matrix=acc_matrix, acc_matrix_seen=acc_matrix, per_task_acc=acc_matrix[-1],
        metrics=dict(first20=acc[0], first50=acc[1], overall=acc[2], forgetting=0.5, bwt=-0.5,
                     average_task_acc=acc[2]),
        rr_stats=rr_stats or [], loss_traces=loss_traces or [], wall_time_s=12.34,
        provenance=dict(device=device, device_name="cpu", git_sha="0123456789abcdef", git_dirty=False),
    )


BASE = {0: (0.30, 0.31, 0.35), 1: (0.28, 0.33, 0.36), 2: (0.33, 0.30, 0.34)}
