"""The book's tables, as DataFrames built from results dicts: Table 1 with its paired changes, metric
summaries, the Fig. 3 frames, the data and encoder pages' tables, each page's "Runs on this page" and
the status page's coverage of the paper's results. Numbers in percent (points for changes)."""
from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np
import pandas as pd

from birr.book.paper import DATASET_SHORT, METRIC_NAMES, METRICS
from birr.book.runs import by_seed, device_of, finished, fmt_f, is_rr, metric_value, run_label
from birr.book.stats import format_mean_sem, format_p, mean_sem, paired_stats


def table1_frame(results, metrics=METRICS) -> pd.DataFrame:
    """Our Table 1: one row for the baseline (BI-R + SI) and one per (RR variant, f), numbers in percent.

    Columns, for each metric m: m_mean and m_sem over the row's seeds; m_abs (points) and m_rel (%), the
    change of the mean against the baseline on the seeds both have (paired by seed); m_p (paired
    t-test) and m_ci_low / m_ci_high (95 % t interval of the mean paired difference, points). Plus
    variant, f, n (runs in the row) and n_paired. Rows are ordered baseline, then variant, then f."""
    base_runs = [r for r in results if r["method"] == "bir+si" and not is_rr(r)]
    if not base_runs:
        raise ValueError("table1_frame: no baseline (method 'bir+si') among the results")
    groups: dict[tuple, list] = defaultdict(list)
    for r in results:
        if is_rr(r):
            groups[(r["config"].get("rr_variant", "code"), r["config"].get("rep_f"))].append(r)
    several = len({v for v, _ in groups}) > 1
    base = by_seed(base_runs, "the baseline")
    rows = []

    def row(label, variant, f, runs):
        out = dict(row=label, variant=variant, f=f, n=len(runs))
        runs_by_seed = by_seed(runs, label)
        for m in metrics:
            out[f"{m}_mean"], out[f"{m}_sem"] = mean_sem(100 * metric_value(r, m) for r in runs)
            st = paired_stats({s: 100 * metric_value(r, m) for s, r in runs_by_seed.items()},
                              {s: 100 * metric_value(r, m) for s, r in base.items()})
            out[f"{m}_abs"], out[f"{m}_rel"], out[f"{m}_p"] = st["mean_diff"], st["rel"], st["p"]
            out[f"{m}_ci_low"], out[f"{m}_ci_high"] = st["ci_low"], st["ci_high"]
            out["n_paired"] = st["n"]
        return out

    rows.append(row("baseline (BI-R + SI)", "", float("nan"), list(base.values())))
    for (variant, f) in sorted(groups, key=lambda k: (k[0] != "code", k[0], k[1] is None, k[1] or 0)):
        label = f"f = {fmt_f(f)}" if f is not None else "no f"
        if several or variant != "code":
            label += f" ({variant} variant)"
        rows.append(row(label, variant, f if f is not None else float("nan"), groups[(variant, f)]))
    frame = pd.DataFrame(rows).set_index("row")
    # the baseline compared with itself is 0 by construction: show it as empty
    for m in metrics:
        for s in ("abs", "rel", "p", "ci_low", "ci_high"):
            frame.loc[frame.index[0], f"{m}_{s}"] = float("nan")
    return frame


def table1_row(frame: pd.DataFrame, f: float | None = None, variant: str = "code") -> pd.Series:
    """The row of `table1_frame` for (variant, f); f=None with variant="" gives the baseline."""
    if variant == "":
        return frame.iloc[0]
    hit = frame[(frame["variant"] == variant) & ((frame["f"] == f) if f is not None else frame["f"].isna())]
    if len(hit) != 1:
        raise KeyError(f"table1_row: no single row for variant={variant!r}, f={f!r}; rows: {list(frame.index)}")
    return hit.iloc[0]


def format_table1(frame: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Display version of `table1_frame`, two columns per metric so it fits a page: "mean ± SEM"
    accuracy, and the change against the baseline in the paper's "abs / rel" format with, below it,
    its 95 % CI (t interval, points) and the paired p-value (cells hold `<br>` line breaks; a Styler
    renders them as HTML). "–" where a number does not exist (the baseline's change, one seed)."""
    out = pd.DataFrame(index=frame.index)
    for m in metrics:
        name = METRIC_NAMES[m]
        out[(name, "acc. % (± SEM)")] = [format_mean_sem(a, s) for a, s in zip(frame[f"{m}_mean"], frame[f"{m}_sem"])]
        cells = []
        for a, r, lo, hi, p in zip(frame[f"{m}_abs"], frame[f"{m}_rel"], frame[f"{m}_ci_low"],
                                   frame[f"{m}_ci_high"], frame[f"{m}_p"]):
            if math.isnan(a):
                cells.append("–")
                continue
            ci = "CI –" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
            cells.append(f"{a:+.2f} / {r:+.2f} %<br>{ci}<br>p {format_p(p)}")
        out[(name, "change: abs / rel, 95 % CI, p")] = cells
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    out.insert(0, ("", "runs"), frame["n"].astype(int).to_numpy())
    out.index.name = None
    return out


def metric_summary(groups: dict[str, list[dict]], metrics=("overall", "first50", "first20", "task1",
                                                          "forgetting", "bwt")) -> pd.DataFrame:
    """Mean and SEM over seeds, in percent (points for forgetting and BWT), for groups of runs such as
    {"BI-R + SI": [...], "fine-tuning": [...]}. Columns <metric>_mean, <metric>_sem, plus n."""
    rows = []
    for label, runs in groups.items():
        out = dict(group=label, n=len(runs))
        for m in metrics:
            out[f"{m}_mean"], out[f"{m}_sem"] = mean_sem(100 * metric_value(r, m) for r in runs)
        rows.append(out)
    return pd.DataFrame(rows).set_index("group")


def learned_accuracy(runs) -> list[float]:
    """Accuracy (%) on each task right after learning it (the diagonal of acc_matrix_seen, the argmax
    over the classes seen so far, as BWT uses it: metrics.summarise), mean over runs: how well each task
    was learned, before any forgetting."""
    diag = np.array([[r["acc_matrix_seen"][t][t] for t in range(len(r["acc_matrix_seen"]))] for r in runs],
                    dtype=float)
    return (100 * diag.mean(0)).tolist()


def format_summary(summary: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Display version of `metric_summary`: runs, then "mean ± SEM" per metric, columns by METRIC_NAMES."""
    metrics = [c[:-5] for c in summary.columns if c.endswith("_mean")]
    out = pd.DataFrame(index=summary.index)
    out["runs"] = summary["n"].astype(int)
    for m in metrics:
        out[METRIC_NAMES.get(m, m)] = [format_mean_sem(a, s, digits) for a, s in zip(summary[f"{m}_mean"], summary[f"{m}_sem"])]
    out.index.name = None
    return out


def fig3_frame(results) -> pd.DataFrame:
    """Tidy rows for Fig. 3: method ("BL" / "RR"), iters per task, seed, and the three metrics in percent."""
    rows = [dict(method="RR" if is_rr(r) else "BL", label=run_label(r), iters=r["config"]["iters"], seed=r["seed"],
                 **{m: 100 * metric_value(r, m) for m in METRICS}) for r in results]
    return pd.DataFrame(rows, columns=["method", "label", "iters", "seed", *METRICS])


def fig3_gap_frame(results, metrics=METRICS) -> pd.DataFrame:
    """RR+RA minus baseline at each iterations-per-task setting, paired by seed (points): columns
    <metric>_diff, <metric>_p, <metric>_ci_low, <metric>_ci_high, n_paired; index iters."""
    rows = []
    for iters in sorted({r["config"]["iters"] for r in results}):
        at = [r for r in results if r["config"]["iters"] == iters]
        rr = by_seed([r for r in at if is_rr(r)], f"RR+RA at {iters} iterations")
        bl = by_seed([r for r in at if not is_rr(r)], f"the baseline at {iters} iterations")
        out = dict(iters=iters)
        for m in metrics:
            st = paired_stats({s: 100 * metric_value(r, m) for s, r in rr.items()},
                              {s: 100 * metric_value(r, m) for s, r in bl.items()})
            out.update({f"{m}_diff": st["mean_diff"], f"{m}_p": st["p"], f"{m}_ci_low": st["ci_low"],
                        f"{m}_ci_high": st["ci_high"], "n_paired": st["n"]})
        rows.append(out)
    return pd.DataFrame(rows).set_index("iters")


def class_order_frame(benches: dict[int, object]) -> pd.DataFrame:
    """Which classes each task holds, per seed: {seed: Benchmark} -> rows = task, columns = seed."""
    any_b = next(iter(benches.values()))
    rows = {}
    for t in range(1, any_b.n_tasks + 1):
        rows[f"task {t}"] = {f"seed {s}": ", ".join(b.class_names[c] for c in b.task_classes(t)) for s, b in benches.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def encoder_layer_frame() -> pd.DataFrame:
    """The conv stack of appendix §3, read off birr.encoder.ConvEncoder: output shape and parameters per layer."""
    import torch
    from birr.encoder import ConvEncoder
    enc = ConvEncoder().eval()
    x = torch.zeros(1, 3, 32, 32)
    rows, layer = [], 0
    mods = list(enc.layers)
    i = 0
    while i < len(mods):
        conv = mods[i]
        group = [conv]
        i += 1
        while i < len(mods) and not isinstance(mods[i], torch.nn.Conv2d):
            group.append(mods[i])
            i += 1
        with torch.no_grad():
            for m in group:
                x = m(x)
        layer += 1
        rows.append(dict(layer=f"L{layer}", operation=" -> ".join(type(m).__name__ for m in group),
                         kernel=f"{conv.kernel_size[0]}x{conv.kernel_size[1]}", stride=conv.stride[0],
                         output=" x ".join(map(str, x.shape[1:])),
                         parameters=sum(p.numel() for m in group for p in m.parameters())))
    return pd.DataFrame(rows).set_index("layer")


def status_rows(results) -> pd.DataFrame:
    """One row per distinct run (by stamp): what ran, on which data and device, at which commit, how long.

    `git_sha` ends in "+" when the tree that trained the run had uncommitted changes. Runs of the same
    shapes train together as one stacked model (`birr.run_many`), so a run has no wall time of its
    own: `stacked` is how many runs trained together and `stack_seconds` the whole stack's wall time
    (training and setup), the same on each of its rows. A result stores its share,
    `wall_time_s` = stack time / K; a run stored before `stacked_with` existed trained alone."""
    rows, seen = [], set()
    for r in results:
        if r["stamp"] in seen:
            continue
        seen.add(r["stamp"])
        prov = r.get("provenance", {})
        k = int(r.get("stacked_with", 1))
        rows.append(dict(stamp=r["stamp"], method=run_label(r), dataset=r["dataset"], budget=r["budget"], seed=r["seed"],
                         iters=r["config"].get("iters"), device=device_of(r),
                         git_sha=str(prov.get("git_sha", "?"))[:12] + ("+" if prov.get("git_dirty") else ""),
                         stacked=k, stack_seconds=round(k * float(r.get("wall_time_s", float("nan"))), 1)))
    return pd.DataFrame(rows, columns=["stamp", "method", "dataset", "budget", "seed", "iters", "device", "git_sha",
                                       "stacked", "stack_seconds"])


RUNS_NOTE = ("Runs of the same shapes train together as one stacked model: 'stacked' is how many, "
             "'stack_seconds' the whole stack's wall time; a '+' after the git sha marks uncommitted changes.")


def wrapping(frame: pd.DataFrame):
    """The frame as a table whose cells may break across lines. The book keeps every cell of a table
    on one line (book/_static/birr.css), so that "6.02e-05" or "1e-6" never splits; a table of
    intervals too wide for the page is shown through this instead, and its cells then break between
    a mean and its interval (verdict.ci_text(table=True) keeps the interval whole)."""
    return frame.style.set_table_attributes('class="cells-wrap"')


def runs_table(results):
    """`status_rows` indexed by stamp, captioned with what its columns mean (each chapter's "Runs on
    this page")."""
    return status_rows(results).set_index("stamp").style.set_caption(RUNS_NOTE).format(precision=1)


def _seed_text(seeds) -> str:
    """Seeds as the coverage table writes them: "0-4" for a run of three or more, else "0, 2, 5"."""
    s = sorted(seeds)
    if not s:
        return "–"
    return f"{s[0]}-{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 2 else ", ".join(map(str, s))


def _machine_of(r: dict) -> str:
    """"cpu (Intel Xeon)" or "cuda (NVIDIA H200)": the device and, where recorded, its model."""
    prov = r.get("provenance", {})
    dev = str(prov.get("device") or r.get("config", {}).get("device", "?")).split(":")[0]
    if not prov.get("device_name"):
        return dev
    # "Intel(R) Xeon(R) Processor @ 2.80GHz" -> "Intel Xeon": the model family is what tells machines apart here
    name = re.sub(r"\((R|TM)\)|\bProcessor\b.*|\bCPU\b.*|@.*", "", prov["device_name"])
    return f"{dev} ({' '.join(name.split())})"


def coverage_targets(seeds=(0, 1, 2, 3, 4)) -> list[tuple[str, list]]:
    """What the paper reports, as the configs that would reproduce it at each fidelity the book knows:
    Table 1 and Fig. 3 at the short CPU budget on the CIFAR-10 proxy, at the full budget on the proxy
    (a GPU's job) and on CIFAR-100 (the paper's own setting), and the paper's setting at its width, at
    the short budget's iterations and at 1000 per task."""
    from birr import experiments as C
    out = []
    for dataset, budget in (("cifar10-jpg", "short"), ("cifar10-jpg", "full"), ("cifar100", "full")):
        out.append(("Table 1", C.table1_page_configs(budget=budget, dataset=dataset, seeds=seeds)))
        out.append(("Fig. 3", C.fig3_configs(budget=budget, dataset=dataset, seeds=seeds)))
    for longer in ({"bf16": True}, {"bf16": False, "iters": 1000}):    # the verdict chapter's two wide setups
        out.append(("Table 1, f = 20 only, at the paper's width",
                    C.sweep_configs(lambdas=(1e-6,), fc_units=2000, seeds=seeds, **longer)))
    return out


def coverage_frame(results_dir=None, seeds=(0, 1, 2, 3, 4)) -> pd.DataFrame:
    """One row per paper result and fidelity: the dataset, iterations per task, batch, width and
    seeds of the configs that reproduce it, and how many of them are stored (with the devices that
    trained them). The three columns of Table 1 (first 20 %, first 50 %, overall) come from the same
    runs, so they share a row."""
    rows = []
    for what, cfgs in coverage_targets(seeds):
        done = finished(cfgs, results_dir)
        iters = sorted({c.iters for c in cfgs})
        rows.append({
            "paper result": what,
            "dataset": DATASET_SHORT.get(cfgs[0].dataset, cfgs[0].dataset),
            "iterations per task": ", ".join(map(str, iters)),
            "batch": cfgs[0].batch,
            "width (fc)": cfgs[0].fc_units,
            "seeds stored": _seed_text({r["seed"] for r in done}),
            "runs stored": f"{len(done)} of {len(cfgs)}",
            "budget": cfgs[0].budget,
            "device": ", ".join(sorted({_machine_of(r) for r in done})) or "–",
        })
    return pd.DataFrame(rows)
