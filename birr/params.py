"""The four parameters every chapter takes (its cell tagged `parameters`), checked and normalised once.

papermill hands a chapter whatever the command line said: `-p seeds 3` is an int, `-p seeds "[0, 1]"`
a string, `-p budget huge` a typo that would otherwise surface deep inside a run. Each chapter's first
code cell therefore begins with

    dataset, budget, seeds, device = birr.params.check(dataset, budget, seeds, device)

and scripts/build_book.sh calls the same function on the values papermill would pass, before it
deletes or runs anything. A wrong value is one ValueError line naming it and what is allowed.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from birr.config import BUDGETS
from birr.data import DATASETS


def check(dataset, budget, seeds, device) -> tuple[str, str, list[int], str]:
    """(dataset, budget, seeds, device), validated; seeds as a list of distinct ints >= 0.

    dataset: one of birr.data.DATASETS; budget: one of birr.config.BUDGETS; device: auto | cpu | cuda | cuda:N,
    a GPU only where torch sees it. seeds: a list or tuple of ints, a single int (-> [int]), or a string
    of ints separated by spaces or commas, in brackets or not: "[0, 1]" (a YAML / JSON list), "0 1", "3".
    """
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not allowed; choose one of {', '.join(DATASETS)}")
    if not isinstance(budget, str) or budget not in BUDGETS:
        raise ValueError(f"budget={budget!r} is not allowed; choose one of {', '.join(BUDGETS)}")

    # seeds -------------------------------------------------------------------------------------
    given, value = seeds, seeds
    if isinstance(value, str):
        text = value.strip()
        if text[:1] + text[-1:] in ("[]", "()"):         # a YAML / JSON flow list: "[0, 1]"
            text = text[1:-1]
        words = [w for w in re.split(r"[\s,]+", text) if w]   # "0 1", "0,1", "0, 1", "3"
        value = [int(w) if re.fullmatch(r"\d+", w) else w for w in words]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value]
    ok = (isinstance(value, (list, tuple)) and len(value) > 0
          and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in value))
    if not ok:
        raise ValueError(f"seeds={given!r} is not allowed; expected ints >= 0: a list such as [0, 1, 2], "
                         f"one int, or a string such as \"0 1 2\"")
    value = [int(s) for s in value]
    if len(set(value)) != len(value):
        repeated = sorted({s for s in value if value.count(s) > 1})
        raise ValueError(f"seeds={given!r} is not allowed; it repeats {', '.join(map(str, repeated))} "
                         f"(each seed is one run)")

    # device ------------------------------------------------------------------------------------
    m = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", device) if isinstance(device, str) else None
    if m is None:
        raise ValueError(f"device={device!r} is not allowed; choose auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but this torch sees no CUDA GPU; use 'auto' or 'cpu'")
        if int(m.group(1) or 0) >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return dataset, budget, value, device
