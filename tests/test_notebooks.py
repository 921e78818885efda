"""
The book, tested the way `make book` builds it, at the smoke budget on synthetic data (CPU, seconds):

- every notebooks/NN_*.py chapter runs under papermill without error (one test per chapter);
- the whole pipeline, scripts/build_book.sh, builds the book with `-W -n` into a temporary folder,
  and the glued numbers reach the pages;
- the cheap checks that keep the pieces in step: pyproject.toml vs environment.yml, chapters vs
  _toc.yml, chapters' parameters cells vs book/params.yaml, Makefile overrides.
"""
import ast
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import papermill
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import tomllib

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CHAPTERS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))  # the glob scripts/build_book.sh uses
# what every chapter must accept; CI has no GPU, so device is pinned to the CPU
SMOKE = {"budget": "smoke", "dataset": "synthetic", "device": "cpu", "seeds": [0]}


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory):
    """One results folder for every smoke run of this test run (birr.train.default_results_dir reads
    $BIRR_RESULTS): the repository's results/ stays clean, and the book build loads the runs that
    the chapter tests trained instead of training them again."""
    return tmp_path_factory.mktemp("results")


def parameters_cell(nb) -> set[str]:
    """Names assigned in the chapter's one cell tagged `parameters`."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected exactly one cell tagged 'parameters', found {len(cells)}"
    return {t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def page_text(path: Path) -> str:
    """An HTML page as plain text, whitespace collapsed."""
    text = html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))
    return re.sub(r"\s+", " ", text)

# -----------------------------------------------------------------------------
# cheap consistency checks


def test_there_are_chapters():
    assert CHAPTERS, "no notebooks/NN_*.py found"


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in conda and "pip" in conda

    def key(line):
        r = Requirement(line)
        return canonicalize_name(r.name), frozenset(map(str, r.specifier)), str(r.marker or ""), frozenset(r.extras)

    wanted = [key(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    listed = [key(r) for r in pip]
    assert len(set(listed)) == len(listed), "environment.yml lists a package twice"
    assert set(listed) == set(wanted), (
        f"only in pyproject.toml: {sorted(set(wanted) - set(listed))}; "
        f"only in environment.yml: {sorted(set(listed) - set(wanted))}")
    for name, spec, _, _ in wanted:
        assert spec, f"{name} has no version range (no unpinned requirements)"


def test_toc_lists_every_chapter():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = []

    def walk(node):
        if isinstance(node, dict):
            files.extend([node["file"]] if "file" in node else [])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    files.append(toc["root"])
    for py in CHAPTERS:
        assert f"book/executed/{py.stem}" in files, f"{py.name} is executed by `make book` but missing from _toc.yml"
    for f in files:
        if f.startswith("book/executed/"):
            assert (NOTEBOOKS / f"{Path(f).name}.py").exists(), f"_toc.yml lists {f} but notebooks/{Path(f).name}.py does not exist"
        else:
            assert (REPO / f"{f}.md").exists(), f"_toc.yml lists {f} but {f}.md does not exist"


@pytest.mark.parametrize("py", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_accepts_book_parameters(py):
    names = parameters_cell(jupytext.read(py))
    book = set(yaml.safe_load((REPO / "book/params.yaml").read_text()))
    assert book <= names, f"book/params.yaml sets {sorted(book - names)}, which {py.name}'s parameters cell does not define"
    assert set(SMOKE) <= names


def test_make_reproduce_passes_overrides():
    out = subprocess.run(["make", "-n", "reproduce", "BUDGET=full", "DATASET=cifar100"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "scripts/build_book.sh -f book/params.yaml -p budget full -p dataset cifar100" in out

@pytest.mark.parametrize("args, message", [
    (["BUDGET=tiny"], "error: BUDGET=tiny is not allowed; choose smoke, class, short or full"),
    (["DATASET=cifar10"], "error: DATASET=cifar10 is not allowed"),
    (["BUDGET=smoke", "DEVICE=gpu"], "error: DEVICE=gpu is not allowed"),
    ([], "usage: make reproduce"),
])
def test_make_reproduce_refuses_a_typo_before_anything_runs(args, message):
    """`make reproduce BUDGET=tiny` used to clear the last build's chapters, run two chapters and fail
    in the third with a papermill traceback. reproduce-params runs before the install and the build."""
    out = subprocess.run(["make", "reproduce-params", *args], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    ok = subprocess.run(["make", "reproduce-params", "BUDGET=full", "DATASET=cifar10-jpg", "DEVICE=cuda:0"],
                        cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr


def test_exec_stats_table(tmp_path):
    """The status table from papermill metadata and glued values, on two hand-made notebooks."""
    spec = importlib.util.spec_from_file_location("exec_stats", REPO / "scripts/exec_stats.py")
    exec_stats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exec_stats)

    def fake(name, params, glued, exception=None):
        outputs = [{"output_type": "display_data", "metadata": {"scrapbook": {"name": k, "mime_prefix": ""}},
                    "data": {"text/plain": repr(v)}} for k, v in glued.items()]
        nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs}],
              "metadata": {"papermill": {"parameters": params, "duration": 12.34, "exception": exception,
                                         "end_time": "2026-11-25T08:00:00.123456"}}}
        path = tmp_path / "book" / "executed" / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(nb))
        return path

    a = fake("01_a", {"budget": "smoke"}, {"data_used": "synthetic"})
    b = fake("02_b", {"budget": "smoke"}, {"data_used": "cifar100", "config_stamps": ["0123456789ab", "ba9876543210"]}, exception=True)
    table = exec_stats.exec_stats([a, b], tmp_path)
    assert "Every chapter ran with `budget='smoke'`." in table
    assert "| {doc}`/book/executed/01_a` | 2026-11-25 08:00 | 12.3 | synthetic | – | ok |" in table
    assert "| {doc}`/book/executed/02_b` | 2026-11-25 08:00 | 12.3 | cifar100 | 2 | **error** |" in table
    assert "`0123456789ab`, `ba9876543210`" in table

    c = fake("03_c", {"budget": "full"}, {})
    table = exec_stats.exec_stats([a, c], tmp_path)
    assert "Every chapter ran" not in table and "| `budget='full'` | – | – | ok |" in table

def test_the_page_shows_the_parameters_a_chapter_ran_with():
    """The visible parameters cell gets the values papermill passed (the lab's defaults are the class
    budget and one seed; the book passes short and five), comments kept; papermill's copy is hidden."""
    spec = importlib.util.spec_from_file_location("exec_stats", REPO / "scripts/exec_stats.py")
    exec_stats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exec_stats)
    default = 'dataset = "cifar10-jpg"\nbudget = "class"   # smoke | class | short | full\nseeds = [\n    0,\n]\ndevice = "auto"'
    ran = exec_stats.parameters_as_run(default, {"budget": "short", "seeds": [0, 1, 2], "lam": 1e-06})
    assert ran == ('dataset = "cifar10-jpg"\nbudget = "short"   # smoke | class | short | full\nseeds = [0, 1, 2]\n'
                   'device = "auto"\nlam = 1e-06')
    assert exec_stats.parameters_as_run(default, {}) == default
    nb = {"metadata": {"papermill": {"parameters": {"budget": "full", "dataset": "cifar100"}}},
          "cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ['budget = "class"\n', 'dataset = "x"']},
                    {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "# Parameters"},
                    {"cell_type": "code", "metadata": {}, "source": "print(budget)"}]}
    exec_stats.show_parameters_as_run(nb)
    assert nb["cells"][0]["source"] == 'budget = "full"\ndataset = "cifar100"'
    assert nb["cells"][1]["metadata"]["tags"] == ["injected-parameters", "remove-cell"]
    assert nb["cells"][2] == {"cell_type": "code", "metadata": {}, "source": "print(budget)"}


# -----------------------------------------------------------------------------
# every chapter runs (papermill, smoke budget, synthetic data, CPU)


@pytest.mark.slow
@pytest.mark.parametrize("py", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs(py, tmp_path, smoke_results, monkeypatch):
    monkeypatch.setenv("BIRR_RESULTS", str(smoke_results))  # the kernel inherits this environment
    source, executed = tmp_path / f"{py.stem}.ipynb", tmp_path / f"{py.stem}.executed.ipynb"
    jupytext.write(jupytext.read(py), source)
    # cwd=notebooks/, as in `make book`, so that ../results and ../data resolve; raises on any error
    nb = papermill.execute_notebook(str(source), str(executed), parameters=SMOKE, kernel_name="python3",
                                    cwd=str(NOTEBOOKS), progress_bar=False)
    assert not nb.metadata.papermill.get("exception")
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            plain = next((v for k, v in data.items() if k.endswith("text/plain")), "")
            if str(plain).startswith("<Figure"):  # a figure that never became an image
                assert any(k.endswith("image/png") for k in data), f"{py.name}: a figure was stored as text only; begin with %matplotlib inline"
    if py.stem == "08_errata":  # the status page counts the runs a chapter glues: the lr run is one of them
        import birr
        spec = importlib.util.spec_from_file_location("exec_stats", REPO / "scripts/exec_stats.py")
        exec_stats = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(exec_stats)
        stamps = exec_stats.stamps_of(exec_stats.glued_values(json.loads(executed.read_text())))
        lr_run = birr.preset("bir+si", budget="smoke", dataset="synthetic", seed=0, device="cpu",
                             lr=birr.preset("bir+si", budget="full").lr)
        assert lr_run.stamp in stamps and len(stamps) == len(set(stamps))

# -----------------------------------------------------------------------------
# the book builds, with the same script as `make book`


@pytest.mark.slow
def test_book_builds(tmp_path, smoke_results):
    # a copy of the book's sources, so the repository's own book/executed/ and _build/ stay untouched
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "book", src / "book", ignore=shutil.ignore_patterns("executed", "figures"))
    params = tmp_path / "smoke.yaml"
    params.write_text(yaml.safe_dump(SMOKE))

    proc = subprocess.run(["bash", str(REPO / "scripts/build_book.sh"), "--src", str(src), "--out", str(out), "-f", str(params)],
                          env={**os.environ, "PYTHON": sys.executable, "BIRR_RESULTS": str(smoke_results)}, capture_output=True, text=True)
    assert proc.returncode == 0, f"build_book.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"

    site = out / "_build" / "html"
    assert (site / "index.html").exists()
    assert (site / "_static" / "mathjax" / "tex-svg-full.js").exists(), "local MathJax was not copied"

    import birr.data
    bench = birr.data.load("synthetic", seed=0)
    intro = page_text(site / "book" / "executed" / "01_intro.html")
    assert f"{bench.n_tasks} tasks of {bench.classes_per_task} classes" in intro
    assert f"{bench.n_classes} classes in all" in intro
    assert "dataset = “synthetic”" in intro
    assert "<Figure" not in intro

    status_html = (site / "book" / "status.html").read_text()
    status = page_text(site / "book" / "status.html")
    for py in CHAPTERS:  # one row per chapter, linked to its page
        assert f'href="executed/{py.stem}.html' in status_html, f"the status table has no row for {py.stem}"
    assert re.search(r"Introduction.*synthetic.*\bok\b", status), "the status table has no ok row for the introduction"
    assert "torch" in status and "GPU" in status
    assert re.search(r"Table 1 \| CIFAR-10 proxy.*\d+ of 35", status.replace("\n", " ")) or \
        re.search(r"Table 1\s+CIFAR-10 proxy.*?\d+ of 35", status, re.S), "the status page has no coverage table"
    bench = page_text(site / "book" / "benchmarks.html")
    assert re.search(r"Stacked runs.*bf16 \d+ of \d+ layer shapes", bench), "the benchmarks page has no stacking table"

    # the Table 1 page has a table, the Fig. 3 page an image, and both say what data they show
    table1_html = (site / "book" / "executed" / "06_table1.html").read_text()
    assert "<table" in table1_html and "<td" in table1_html, "the Table 1 page has no table"
    fig3_html = (site / "book" / "executed" / "07_fig3.html").read_text()
    assert re.search(r'<img[^>]+src="[^"]+\.png"', fig3_html), "the Fig. 3 page has no image"
    # the book numbers its own figures "Book fig. N", apart from the paper's Fig. 1-3 that the prose cites
    assert re.search(r'caption-number">Book fig\. \d+', fig3_html) and "Fig. 3" in fig3_html
    assert "differences ha" in table1_html or "With one seed no difference" in table1_html   # beyond_noise_text
    for html in (table1_html, fig3_html):
        assert "synthetic" in html.lower()
    # the verdict: a chapter of its own, and its Findings glued onto the landing page and the chapters it
    # answers for, as text computed in this build (a glue key that failed would have failed the -W build)
    landing = page_text(site / "book" / "intro.html")
    assert "Findings" in landing and "Measured on synthetic" in landing and "At the paper's setting (λ = 1e-6" in landing
    verdict = page_text(site / "book" / "executed" / "11_verdict.html")
    assert "Does it work?" in verdict and "linear probe" in verdict
    for page in ("06_table1", "07_fig3", "10_exaggeration"):
        assert "At the paper's setting (λ = 1e-6" in page_text(site / "book" / "executed" / f"{page}.html"), page
    # no page shows its plumbing or a raw NaN: glue calls are hidden, missing values are written out
    for page in sorted((site / "book").rglob("*.html")):
        raw = page.read_text()
        assert "glue(" not in raw, f"{page.name} shows a glue( call"
        assert not re.search(r">\s*nan\s*<", raw, re.I), f"{page.name} shows a raw NaN"
