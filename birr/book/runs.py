"""Reading results dicts (what `birr.run` returns, birr/train.py): a run's numbers and name, pairing runs
by seed, what a page was computed on, and the stored runs a page shows without training them.

A results dict's `metrics` are fractions (accuracies in [0, 1]; forgetting and bwt are differences of
them, bwt mostly negative); the book's tables report percent."""
from __future__ import annotations

from birr.book.paper import DATASET_NAMES


def device_of(r: dict) -> str:
    """The device a run trained on, with the GPU's model where recorded: "cpu", "cuda:0 (NVIDIA H200)"."""
    prov = r.get("provenance", {})
    dev = str(prov.get("device") or r.get("config", {}).get("device", "?"))
    if dev.startswith("cuda") and prov.get("device_name"):
        return f"{dev} ({prov['device_name']})"
    return dev


def resolve_device(device: str) -> str:
    """A chapter's `device` parameter as runs use it: "auto" is "cuda" where torch sees a GPU, else "cpu"."""
    if device != "auto":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def dataset_label(results=None, *, dataset: str | None = None, budget: str | None = None,
                  device: str | None = None) -> str:
    """One phrase naming the data, budget and device behind a page, e.g.
    "CIFAR-10 (JPEG copy, proxy for CIFAR-100), short budget, cpu".

    `results` is one results dict or a list of them (they must share dataset and budget); without
    results, give dataset, budget and device (the chapter's parameters; "auto" is resolved here)."""
    if results is not None:
        rs = [results] if isinstance(results, dict) else list(results)
        if not rs:
            raise ValueError("dataset_label: empty list of results")
        datasets, budgets = {r["dataset"] for r in rs}, {r["budget"] for r in rs}
        if len(datasets) != 1 or len(budgets) != 1:
            raise ValueError(f"dataset_label: results mix datasets {sorted(datasets)} or budgets {sorted(budgets)}")
        dataset, budget = datasets.pop(), budgets.pop()
        device = ", ".join(sorted({device_of(r) for r in rs}))
    elif dataset is None or budget is None:
        raise ValueError("dataset_label: give results, or dataset and budget")
    else:
        device = resolve_device(device or "auto")
    if dataset not in DATASET_NAMES:
        raise ValueError(f"dataset_label: unknown dataset {dataset!r}; expected one of {tuple(DATASET_NAMES)}")
    return f"{DATASET_NAMES[dataset]}, {budget} budget, {device}"


def metric_value(r: dict, name: str) -> float:
    """A number of one run, as a fraction: a key of r["metrics"], or "task1" (final accuracy on task 1)."""
    if name == "task1":
        return float(r["per_task_acc"][0])
    return float(r["metrics"][name])


def run_label(r: dict) -> str:
    """Short name of a run's method: "BI-R + SI", "fine-tuning", "RR+RA f=20 (code)", ..."""
    c = r["config"]
    if r["method"] == "rr+ra" or c.get("rr") or c.get("ra"):
        f = c.get("rep_f")
        return f"RR+RA {'f=' + fmt_f(f) if f is not None else 'no f'} ({c.get('rr_variant', 'code')})"
    return {"bir+si": "BI-R + SI", "bir": "BI-R", "finetune": "fine-tuning"}.get(r["method"], r["method"])


def fmt_f(f) -> str:
    """A repulsion factor as tables write it: 20.0 -> "20"."""
    return f"{f:g}" if isinstance(f, (int, float)) else str(f)


def is_rr(r: dict) -> bool:
    """Whether the run has RR or RA switched on."""
    return bool(r["config"].get("rr") or r["config"].get("ra"))


def by_seed(results, what: str = "") -> dict[int, dict]:
    """{seed: result}; two results with one seed in a group would make pairing ambiguous."""
    out = {}
    for r in results:
        if r["seed"] in out and out[r["seed"]]["stamp"] != r["stamp"]:
            raise ValueError(f"two different runs with seed {r['seed']} in {what or 'one group'}: "
                             f"{out[r['seed']]['stamp']} and {r['stamp']}; pass one configuration per group")
        out[r["seed"]] = r
    return out


def distinct(*groups) -> list[dict]:
    """Every run of the groups (lists of results) once, by stamp, first seen first: the runs a page
    reads, where sweeps share one baseline."""
    return list({r["stamp"]: r for g in groups for r in g}.values())


def finished(cfgs, results_dir=None) -> list[dict]:
    """The stored results among `cfgs`, loaded by stamp and never trained: what a page shows of a
    budget it does not train itself (the full-budget runs a lent GPU has made so far)."""
    import birr
    d = results_dir if results_dir is not None else birr.default_results_dir()
    return [r for c in cfgs if (r := birr.load_result(d, c)) is not None]


def paired_points(results) -> list[dict]:
    """The results at the iteration counts where RR+RA and the baseline have the same seeds (at least
    one), so fig3_gap_frame can pair every point; the others are left out."""
    keep = []
    for iters in sorted({r["config"]["iters"] for r in results}):
        at = [r for r in results if r["config"]["iters"] == iters]
        rr, bl = {r["seed"] for r in at if is_rr(r)}, {r["seed"] for r in at if not is_rr(r)}
        if rr and rr == bl:
            keep += at
    return keep
