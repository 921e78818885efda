"""Competing classes: what the RR / RA runs logged (`rr_stats`: competitive samples, kept pairs, applied
batches; `loss_traces`: the terms' size), and the competitor rule applied to a trained model's own
replay (the competing-classes and errata chapters)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from birr.book.runs import is_rr


def competition_frame(results) -> pd.DataFrame:
    """One row per RR run and task (t >= 2) from `rr_stats`: how many replayed samples had a competitor.

    share_competitive = n_competitive / n_replayed; pairs_per_competitive = RR terms per competitive
    sample, n_kept / n_competitive (code variant: at most 1, the runner-up, kept when some sample of the
    batch represents it; paper variant: every class above the threshold, so >= 1); applied_share =
    the share of iterations in which RR / RA were applied (the code variant skips a batch with no
    competitive sample, appendix §8.3 item 4)."""
    rows = []
    for r in results:
        if not is_rr(r):
            continue
        c = r["config"]
        for st in r.get("rr_stats", []):
            iters = st["n_replayed"] / c["batch_replay"]
            rows.append(dict(stamp=r["stamp"], variant=c.get("rr_variant", "code"), f=c.get("rep_f"), seed=r["seed"],
                             task=st["task"], n_replayed=st["n_replayed"], n_competitive=st["n_competitive"],
                             n_kept=st["n_kept"], n_applied=st["n_applied"],
                             share_competitive=st["n_competitive"] / st["n_replayed"] if st["n_replayed"] else float("nan"),
                             pairs_per_competitive=st["n_kept"] / st["n_competitive"] if st["n_competitive"] else float("nan"),
                             applied_share=st["n_applied"] / iters if iters else float("nan")))
    return pd.DataFrame(rows, columns=["stamp", "variant", "f", "seed", "task", "n_replayed", "n_competitive", "n_kept",
                                       "n_applied", "share_competitive", "pairs_per_competitive", "applied_share"])


def competition_by_f(results) -> pd.DataFrame:
    """`competition_frame` averaged over tasks and seeds, per (variant, f), shares in percent."""
    cf = competition_frame(results)
    if cf.empty:
        return pd.DataFrame(columns=["variant", "f", "competitive %", "RR pairs per competitive sample", "batches applied %"])
    g = cf.groupby(["variant", "f"])
    out = pd.DataFrame({
        "competitive %": 100 * g["share_competitive"].mean(),
        "RR pairs per competitive sample": g["pairs_per_competitive"].mean(),
        "batches applied %": 100 * g["applied_share"].mean(),
        "runs": g["stamp"].nunique(),
    })
    return out.reset_index()


def applied_by_task(results) -> pd.DataFrame:
    """The share of iterations (%) in which RR / RA were applied, per run (rows: variant, f, seed) and
    task (columns, t >= 2): what `competition_by_f`'s mean over tasks hides. In the code variant a
    batch with no competitive sample skips both terms (appendix §8.3 item 4), so the share can differ
    widely between tasks and between runs of one task."""
    cf = competition_frame(results)
    if cf.empty:
        return pd.DataFrame()
    out = cf.pivot_table(index=["variant", "f", "seed"], columns="task", values="applied_share", aggfunc="mean")
    out.columns.name = "task"
    return 100 * out


def busiest_classes(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k x k corner of a square pair-count frame with the most pairs (row + column sums)."""
    if len(frame) <= k:
        return frame
    load = frame.sum(axis=0).to_numpy() + frame.sum(axis=1).to_numpy()
    keep = np.sort(np.argsort(-load, kind="stable")[:k])
    return frame.iloc[keep, keep]


def pair_counts(r: dict, tasks=None) -> pd.DataFrame:
    """Counts of (label, competitor) pairs that entered RR, summed over the logged tasks (or `tasks`),
    as a C_seen x C_seen frame: rows = label (the sample's class), columns = competitor, class names.
    C_seen: the code variant's labels and competitors are the teacher's, over the classes of tasks
    1 .. T-1 (appendix §8.3); the paper variant's are the current model's, over every class seen so far,
    the last task's included (appendix §9.1 item 7)."""
    names = r["class_names"]
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    for st in r.get("rr_stats", []):
        if tasks is None or st["task"] in tasks:
            for a, b, n in st["pairs"]:
                counts[a, b] += n
    paper = r.get("config", {}).get("rr_variant") == "paper"
    seen = max(1, (r["n_tasks"] - (0 if paper else 1)) * r["classes_per_task"])
    frame = pd.DataFrame(counts[:seen, :seen], index=names[:seen], columns=names[:seen])
    frame.index.name, frame.columns.name = "label", "competitor"
    return frame


def top_pairs(results, k: int = 10) -> pd.DataFrame:
    """The k most frequent (label, competitor) pairs by class *name*, summed over runs (class orders
    differ between seeds, so pairs are matched by name, not by label index). Unordered pairs are
    not merged: "cat -> dog" and "dog -> cat" are separate rows."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    total = 0
    for r in results:
        names = r["class_names"]
        for st in r.get("rr_stats", []):
            for a, b, n in st["pairs"]:
                counts[(names[a], names[b])] += n
                total += n
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    frame = pd.DataFrame([dict(label=a, competitor=b, count=n, share=100 * n / total if total else float("nan"))
                          for (a, b), n in rows], columns=["label", "competitor", "count", "share"])
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    return frame


def rr_magnitude_frame(results) -> pd.DataFrame:
    """The raw RR and RA values the runs logged (loss_traces, tasks >= 2), next to the replay
    reconstruction loss they are added to, per (variant, f), mean over logged iterations and seeds.

    rr, ra: the unweighted terms; weighted_rr = lambda_RR * rr (what enters the replay loss, before the
    (1 - 1/t) factor); share_of_recon = weighted_rr / recon_r; grad_scale = lambda_RR * rr^2, a rough
    size of RR's gradient relative to the reconstruction loss's (d(lambda/e)/de = -lambda/e^2, and
    rr ~ 1/e; appendix §9.4)."""
    rows = []
    for r in results:
        if not is_rr(r):
            continue
        c = r["config"]
        tr = [t for t in r["loss_traces"] if t["task"] >= 2]
        if not tr:
            continue
        cat = lambda key: np.concatenate([np.asarray(t[key], dtype=float) for t in tr])
        rr, ra, rec = cat("rr"), cat("ra"), cat("recon_r")
        rows.append(dict(variant=c.get("rr_variant", "code"), f=c.get("rep_f"), seed=r["seed"],
                         lambda_rr=c["lambda_rr"], lambda_ra=c["lambda_ra"], rr=rr.mean(), ra=ra.mean(),
                         recon_r=rec.mean(), weighted_rr=c["lambda_rr"] * rr.mean(), weighted_ra=c["lambda_ra"] * ra.mean(),
                         share_of_recon=(c["lambda_rr"] * rr / np.where(rec > 0, rec, np.nan)).mean(),
                         grad_scale=(c["lambda_rr"] * rr ** 2).mean()))
    cols = ["variant", "f", "seed", "lambda_rr", "lambda_ra", "rr", "ra", "recon_r", "weighted_rr", "weighted_ra",
            "share_of_recon", "grad_scale"]
    frame = pd.DataFrame(rows, columns=cols)
    if frame.empty:
        return frame.drop(columns="seed")
    return frame.groupby(["variant", "f"]).mean(numeric_only=True).drop(columns="seed").reset_index()


def replay_probabilities(model, classes, n_per_class: int = 8, *, seed: int = 0, n_active: int | None = None,
                         temperature: float = 1.0):
    """Replay from a trained K=1 BIR, and the model's own softmax on it: what the competitor rule sees.

    Draws `n_per_class` latent samples for each class in `classes` (z from the class's GMM mode, eps
    from a CPU generator seeded with `seed`), decodes them (`model.sample`), classifies them
    (`model.classify`) and returns (generated class (N,), probabilities (N, n_active)) as tensors,
    softmax at `temperature` over the first `n_active` classes (default: all)."""
    import torch
    import torch.nn.functional as F
    classes = torch.as_tensor(list(classes), dtype=torch.long).repeat_interleave(n_per_class)   # (N,)
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    eps = torch.randn(1, len(classes), model.Z, generator=gen).to(dev)                           # (1,N,Z)
    with torch.no_grad():
        x_ = model.sample(classes[None].to(dev), eps)                                             # (1,N,D)
        logits = model.classify(x_)[0, :, :n_active or model.C].float().cpu()                    # (N,C')
    return classes, F.softmax(logits / temperature, dim=-1)


def example_samples(p, f: float) -> list[int]:
    """Up to three row indices of p (N, C) that show the rule at f: the sample with the most
    competitors, one with exactly one competitor, and one with none (each only if it exists)."""
    import torch
    from birr.rr import competing_classes
    n_comp = competing_classes(torch.as_tensor(p), float(f))[2].sum(-1)          # (N,)
    picks = [int(n_comp.argmax())] if n_comp.max() > 0 else []
    for want in (1, 0):
        idx = (n_comp == want).nonzero().flatten().tolist()
        if idx and idx[0] not in picks:
            picks.append(idx[0])
    return picks


def competitor_share_vs_f(p, factors) -> pd.DataFrame:
    """For probabilities p (N, C): share of samples with at least one competitor, and the mean number
    of competitors per sample (over all N, those with none included) and per competitive sample (over
    those with at least one; nan when there are none), at each f (paper rule,
    `birr.rr.competing_classes`). The two means differ by the share: 1.0 per sample at a 33 %
    share is 3 per competitive sample."""
    import torch
    from birr.rr import competing_classes
    p = torch.as_tensor(p)
    rows = []
    for f in factors:
        _, _, comp = competing_classes(p, float(f))
        n, has = comp.sum(-1).float(), comp.any(-1)
        rows.append(dict(f=float(f), share_competitive=100 * has.float().mean().item(),
                         competitors_per_sample=n.mean().item(),
                         competitors_per_competitive_sample=n[has].mean().item() if has.any() else float("nan")))
    return pd.DataFrame(rows)
