"""
The lab chapter (notebooks/13_lab.py) and the `class` budget it runs at.

tests/test_notebooks.py runs every chapter at the smoke budget on synthetic data; a lab is only worth
teaching if its lesson shows at the budget a class runs it at. So the chapter is executed here as a
teacher would run it, `budget="class"` on the CIFAR-10 JPEG copy, one seed, on the CPU, with runs
stored in a temporary folder, and the numbers it glues into the page are checked. That takes a few
minutes on 2 cores (8 runs of 5 tasks).
"""
import ast
import importlib.util
import json
import time
from pathlib import Path

import jupytext
import papermill
import pytest

from birr import encoder as benc
from birr.config import BUDGET_SETTINGS, preset

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "notebooks" / "13_lab.py"


def glued(nb: dict) -> dict:
    """Every value the notebook glued, by name: the status page's reader (scripts/exec_stats.py)."""
    spec = importlib.util.spec_from_file_location("exec_stats", REPO / "scripts" / "exec_stats.py")
    exec_stats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exec_stats)
    return exec_stats.glued_values(nb)


def test_class_budget_needs_no_pretraining_and_leaves_the_other_budgets_alone(monkeypatch):
    """The class budget reads a committed encoder (a fresh clone pre-trains nothing), and adding it
    changed no other preset: `budget` is not stamped, so every stored run keeps its name."""
    c = preset("bir+si", budget="class")
    assert (c.dataset, c.n_tasks, c.encoder_data, c.encoder_epochs) == ("cifar10-jpg", 5, "cifar10-jpg", 5)

    def no_pretraining(*args, **kwargs):
        raise AssertionError("the class budget's encoder is not in artefacts/: a fresh clone would pre-train it")

    monkeypatch.setattr(benc, "pretrain", no_pretraining)
    _, meta = benc.for_config(c, progress=False)
    assert Path(meta["path"]).parent == benc.ARTEFACTS
    s = preset("bir+si", budget="short")
    assert (s.iters, s.batch, s.batch_replay, s.fc_units, s.lr) == (300, 64, 64, 200, 1e-3)
    assert c.replace(budget="short").stamp == c.stamp
    assert preset("bir+si", budget="short", **{k: v for k, v in BUDGET_SETTINGS["class"].items()}).stamp == c.stamp


def test_lab_parameters_default_to_the_class_budget():
    cells = [c for c in jupytext.read(LAB).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    values = {t.id: ast.literal_eval(node.value) for node in ast.parse(cells[0].source).body
              if isinstance(node, ast.Assign) for t in node.targets}
    assert values["budget"] == "class" and values["dataset"] == "cifar10-jpg"


@pytest.mark.slow
def test_lab_at_its_class_budget(tmp_path, monkeypatch):
    """Fine-tuning forgets task 1, BI-R + SI keeps a clear share of it, and every exercise produces
    its numbers, as the page says, at the budget a class runs it at."""
    monkeypatch.setenv("BIRR_RESULTS", str(tmp_path / "results"))   # the kernel inherits it: never results/
    source, executed = tmp_path / "13_lab.ipynb", tmp_path / "13_lab.executed.ipynb"
    jupytext.write(jupytext.read(LAB), source)
    start = time.perf_counter()
    papermill.execute_notebook(str(source), str(executed), kernel_name="python3", cwd=str(REPO / "notebooks"),
                               parameters={"budget": "class", "dataset": "cifar10-jpg", "seeds": [0], "device": "cpu"},
                               progress_bar=False)
    seconds = time.perf_counter() - start
    print(f"the lab at the class budget ran in {seconds:.0f} s")
    g = glued(json.loads(executed.read_text()))

    assert g["data_used"] == "cifar10-jpg" and (g["n_tasks"], g["cpt"]) == (5, 2)
    # the lesson of part 1: fine-tuning ends near 0 % on task 1, BI-R + SI far above it
    assert g["ft_task1"] < 5, g["ft_task1"]
    assert g["base_task1"] > 30 and g["base_task1"] - g["ft_task1"] > 30, (g["base_task1"], g["ft_task1"])
    assert g["ft_learned"] > 80          # fine-tuning learns every task; it only fails to keep them
    # every exercise ran and glued its numbers and its sentence
    for key in ("ex1_task1", "ex2_task1", "ex3_task1", "ex4_task1_paper", "ex4_task1", "ex5_task1",
                "ex5_share", "ex5_share20", "ex1_learned", "ex3_learned"):
        assert isinstance(g[key], float) and 0 <= g[key] <= 100, (key, g[key])
    for key in ("ex1_what", "ex2_what", "ex3_what", "ex4_what", "ex5_what"):
        assert isinstance(g[key], str) and "%" in g[key] and "nan" not in g[key].lower(), (key, g[key])
    assert g["ex2_task1"] < 5                      # SI without replay forgets task 1 as fine-tuning does
    assert g["ex5_share"] < g["ex5_share20"]       # f = 1.5 finds fewer competitors than f = 20
    assert len(g["config_stamps"]) == 8 == len(set(g["config_stamps"]))
    assert {p.stem for p in (tmp_path / "results" / "runs").glob("*.json")} == set(g["config_stamps"])
