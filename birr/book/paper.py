"""The paper's own numbers and names, typed in once: its Table 1, the baselines that Table 1 implies,
the f = 20 numbers of its Results text, the metric and dataset names every page uses, and the
CIFAR-100 class names its task split is drawn from (appendix §2, §9.2)."""
from __future__ import annotations

import pandas as pd

# what a page says it was computed on (birr.book.runs.dataset_label), in full and short
DATASET_NAMES = {
    "cifar100": "CIFAR-100 (the paper's benchmark)",
    "cifar10": "CIFAR-10 (official copy, proxy for CIFAR-100)",
    "cifar10-jpg": "CIFAR-10 (JPEG copy, proxy for CIFAR-100)",
    "synthetic": "synthetic (smoke test — not a result)",
}
DATASET_SHORT = {"cifar100": "CIFAR-100", "cifar10": "CIFAR-10 proxy", "cifar10-jpg": "CIFAR-10 proxy",
                 "synthetic": "synthetic smoke data"}

# the three numbers of the paper's Table 1, and how the book names every metric
METRICS = ("first20", "first50", "overall")
METRIC_NAMES = {"first20": "first 20 %", "first50": "first 50 %", "overall": "overall",
                "forgetting": "forgetting", "bwt": "BWT", "task1": "task 1 (final)",
                "average_task_acc": "mean over tasks"}

# The paper's Table 1 (paper text, CIFAR-100, 5 runs, 5000 iterations): "absolute change/relative change"
# over the baseline, in percentage points / percent, for each repulsion factor f.
PAPER_TABLE1 = [
    dict(f=5, first20=(3.80, 12.5), first50=(4.06, 12.78), overall=(1.35, 3.87)),
    dict(f=10, first20=(5.80, 19.08), first50=(3.82, 12.03), overall=(1.19, 3.41)),
    dict(f=20, first20=(4.80, 15.79), first50=(4.86, 15.30), overall=(1.48, 4.25)),
    dict(f=50, first20=(4.90, 16.12), first50=(3.56, 11.21), overall=(1.26, 3.61)),
    dict(f=100, first20=(4.95, 16.28), first50=(4.18, 13.16), overall=(1.24, 3.56)),
]
# The paper's §4 Results text, f = 20 at 5000 iterations: the numbers that disagree with Table 1 (appendix §9.2 item 1)
PAPER_TEXT_F20 = dict(first50=(3.20, 15.30), first20=(4.30, 15.79))
# BI-R + SI on class-IL CIFAR-100 as van de Ven et al. report it: about 34.8 % overall.
# From memory, unverified (appendix §9.2 item 2).
PUBLISHED_BIR_SI_CIFAR100 = 34.8


def implied_baseline(abs_change: float, rel_change: float) -> float:
    """The baseline a change implies: abs / rel * 100 (abs in points, rel in percent)."""
    return abs_change / rel_change * 100.0


def paper_table1_frame() -> pd.DataFrame:
    """The paper's Table 1 as printed (CIFAR-100), with the baseline each cell implies (appendix §9.2 item 2).
    Index f; columns <metric>_abs (points), <metric>_rel (%), <metric>_implied_baseline (%)."""
    rows = []
    for row in PAPER_TABLE1:
        out = dict(f=row["f"])
        for m in METRICS:
            a, rel = row[m]
            out[f"{m}_abs"], out[f"{m}_rel"], out[f"{m}_implied_baseline"] = a, rel, implied_baseline(a, rel)
        rows.append(out)
    return pd.DataFrame(rows).set_index("f")


def format_paper_table1(frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's layout, "abs / rel", plus the implied baseline of each column."""
    frame = paper_table1_frame() if frame is None else frame
    out = pd.DataFrame(index=frame.index.rename("f"))
    for m in METRICS:
        out[f"{METRIC_NAMES[m]}: abs / rel"] = [f"+{a:.2f} / +{r:.2f} %" for a, r in zip(frame[f"{m}_abs"], frame[f"{m}_rel"])]
        out[f"{METRIC_NAMES[m]}: implied baseline (%)"] = frame[f"{m}_implied_baseline"].map(lambda v: f"{v:.2f}")
    return out


# The CIFAR-100 fine labels in their standard (alphabetical) order, so that the class order of appendix §2
# can be named without downloading the archive (appendix §2 names tasks 1 and 2 the same way).
CIFAR100_FINE_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


def cifar100_order_frame(seed: int = 0, n_tasks: int = 10) -> pd.DataFrame:
    """The CIFAR-100 class order of appendix §2 for `seed`: one row per task, "original id name" per
    position, from birr.data.class_order (no download needed)."""
    from birr.data import class_order
    order = class_order(100, seed)
    cpt = 100 // n_tasks
    rows = {f"task {t + 1}": [f"{o} {CIFAR100_FINE_NAMES[o]}" for o in order[t * cpt:(t + 1) * cpt]]
            for t in range(n_tasks)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[f"+{j}" for j in range(cpt)])
