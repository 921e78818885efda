"""A chapter's four parameters (birr.params.check), the same check in scripts/build_book.sh before it
deletes anything, relative BIRR_RESULTS / BIRR_CACHE, and `make chapter` (one chapter, the book untouched)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import birr
from birr import params

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "build_book.sh"
CHAPTERS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.py"))
OK = ("synthetic", "smoke", [0], "cpu")


@pytest.mark.parametrize("seeds, expected", [
    ([0, 1, 2], [0, 1, 2]),
    ((2, 0), [2, 0]),                        # order kept: the first seed is the one a chapter shows
    (3, [3]),
    (np.int64(4), [4]),
    ([np.int32(1), 5], [1, 5]),
    ("[0, 1]", [0, 1]),                      # what `-p seeds "[0, 1]"` gives: a string
    ("[7]", [7]),
    ("(4,5)", [4, 5]),
    ("0 1", [0, 1]),
    ("0,1", [0, 1]),
    (" 1, 2 ", [1, 2]),
    ("3", [3]),
])
def test_seeds_accepted(seeds, expected):
    out = params.check("synthetic", "smoke", seeds, "cpu")
    assert out == ("synthetic", "smoke", expected, "cpu")
    assert all(type(s) is int for s in out[2])


@pytest.mark.parametrize("seeds", [
    "abc", "0 x", "", "[]", [], (), None, -1, [0, -1], "[0,-1]", "-1", True, [True], 1.0, [0, 1.0],
    "1.5", "[[0]]", "[0", "0x1", "1:30", [0, "1"], {"a": 1},
])
def test_seeds_refused(seeds):
    with pytest.raises(ValueError) as e:
        params.check("synthetic", "smoke", seeds, "cpu")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"seeds={seeds!r} is not allowed; expected ints >= 0"), msg


@pytest.mark.parametrize("seeds, repeated", [([0, 0], "0"), ("1 2 1 2", "1, 2"), ((3, 3), "3")])
def test_repeated_seeds_refused(seeds, repeated):
    with pytest.raises(ValueError) as e:
        params.check("synthetic", "smoke", seeds, "cpu")
    assert str(e.value) == f"seeds={seeds!r} is not allowed; it repeats {repeated} (each seed is one run)"


@pytest.mark.parametrize("dataset", ["cifar100", "cifar10", "cifar10-jpg", "synthetic"])
def test_every_dataset_accepted(dataset):
    assert params.check(dataset, "short", [0], "auto") == (dataset, "short", [0], "auto")


@pytest.mark.parametrize("budget", ["smoke", "class", "short", "full"])
def test_every_budget_accepted(budget):
    assert params.check("cifar10-jpg", budget, [0], "cpu")[1] == budget


@pytest.mark.parametrize("args, message", [
    (("cifar", "smoke", [0], "cpu"), "dataset='cifar' is not allowed; choose one of cifar100, cifar10, cifar10-jpg, synthetic"),
    ((None, "smoke", [0], "cpu"), "dataset=None is not allowed; choose one of"),
    (("synthetic", "huge", [0], "cpu"), "budget='huge' is not allowed; choose one of smoke, class, short, full"),
    (("synthetic", "Smoke", [0], "cpu"), "budget='Smoke' is not allowed"),
    (("synthetic", 1, [0], "cpu"), "budget=1 is not allowed"),
    (("synthetic", "smoke", [0], "gpu"), "device='gpu' is not allowed; choose auto, cpu, cuda or cuda:N"),
    (("synthetic", "smoke", [0], "cuda:x"), "device='cuda:x' is not allowed"),
    (("synthetic", "smoke", [0], 0), "device=0 is not allowed"),
])
def test_other_values_refused(args, message):
    with pytest.raises(ValueError) as e:
        params.check(*args)
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_cuda_refused_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=rf"^device='{device}' but this torch sees no CUDA GPU; use 'auto' or 'cpu'$"):
            params.check("synthetic", "smoke", [0], device)
    assert params.check("synthetic", "smoke", [0], "auto")[3] == "auto"   # auto falls back to the CPU


def test_cuda_index_checked_on_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert params.check("synthetic", "smoke", [0], "cuda")[3] == "cuda"
    assert params.check("synthetic", "smoke", [0], "cuda:0")[3] == "cuda:0"
    with pytest.raises(ValueError, match=r"^device='cuda:1' but this machine has 1 CUDA GPU\(s\)$"):
        params.check("synthetic", "smoke", [0], "cuda:1")


def test_every_chapter_checks_its_parameters_first():
    """The one line each chapter's first code cell after the parameters cell runs, and birr.params is
    reachable as an attribute of birr (the chapters only `import birr` or `import birr.data`)."""
    import jupytext
    line = "dataset, budget, seeds, device = birr.params.check(dataset, budget, seeds, device)"
    # or through the book's page helper, whose constructor is that call (tests/test_book_page.py)
    page = ["page = R.Page(dataset, budget, seeds, device)", "dataset, budget, seeds, device = page.params"]
    assert birr.params is params
    for name in CHAPTERS:
        cells = jupytext.read(REPO / "notebooks" / f"{name}.py").cells
        i = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        first = next(c for c in cells[i + 1:] if c.cell_type == "code")
        code = [ln.split("#")[0].strip() for ln in first.source.splitlines()]
        assert line in code or all(p in code for p in page), f"{name}: the first code cell does not check the parameters"


def test_relative_folders_are_taken_from_the_cwd(monkeypatch, tmp_path):
    from birr.data import cache_dir
    from birr.train import default_results_dir
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BIRR_RESULTS", "r")
    monkeypatch.setenv("BIRR_CACHE", "c")
    assert default_results_dir() == tmp_path / "r" and cache_dir() == tmp_path / "c"

# -----------------------------------------------------------------------------
# scripts/build_book.sh checks the values papermill would pass, before it deletes anything


def build_book(*args, cwd=REPO, env=None):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def test_build_book_refuses_a_bad_budget_before_deleting(tmp_path):
    src = tmp_path / "src"
    (src / "book" / "executed").mkdir(parents=True)
    kept = src / "book" / "executed" / "01_intro.ipynb"
    kept.write_text("{}")
    real = REPO / "book" / "executed"
    before = {p.name: p.stat().st_mtime_ns for p in real.iterdir()} if real.exists() else None
    out = build_book("--src", src, "--out", tmp_path / "out", "-f", REPO / "book/params.yaml", "-p", "budget", "huge")
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == ["error: budget='huge' is not allowed; choose one of smoke, class, short, full"]
    assert kept.read_text() == "{}" and not (tmp_path / "out").exists()
    after = {p.name: p.stat().st_mtime_ns for p in real.iterdir()} if real.exists() else None
    assert after == before


@pytest.mark.parametrize("args, error", [
    (["-p", "seeds", "abc"], "error: seeds='abc' is not allowed; expected ints >= 0"),
    (["-p", "seeds", "[0, 0]"], "error: seeds='[0, 0]' is not allowed; it repeats 0"),
    (["-y", "dataset: cifar"], "error: dataset='cifar' is not allowed"),
    (["-f", "no-such.yaml"], "error: -f no-such.yaml: no such parameters file"),
    (["-y", "{a: ["], "error: -y '{a: [' is not YAML"),
    (["-p", "budget"], "error: -p needs a name and a value"),
    (["--chapter", "99_nope"], "error: there is no chapter 99_nope; choose one of " + " ".join(CHAPTERS)),
])
def test_build_book_check_refuses(args, error):
    out = build_book("--check", *args)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1 and out.stderr.startswith(error), out.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_build_book_refuses_cuda_without_a_gpu():
    out = build_book("--check", "-f", "book/params.yaml", "-p", "device", "cuda")
    assert out.returncode == 2
    assert out.stderr == "error: device='cuda' but this torch sees no CUDA GPU; use 'auto' or 'cpu'\n"


def test_build_book_check_resolves_as_papermill(tmp_path):
    """-f files, then -y, then -p, then -r, as papermill applies them (later ones of a kind win); what
    is not given is the chapter's own default; a relative BIRR_RESULTS is taken from the cwd."""
    extra = tmp_path / "extra.yaml"
    extra.write_text("budget: full\ndevice: cpu\n")
    out = build_book("--check", "-p", "budget", "short", "-f", REPO / "book/params.yaml", "-f", extra,
                     "-p", "budget", "smoke", "-y", "seeds: [4, 5]", "-p", "seeds", "3", "-r", "dataset", "synthetic",
                     cwd=tmp_path, env={"BIRR_RESULTS": "rel/runs"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["parameters: dataset='synthetic' budget='smoke' seeds=[3] device='cpu'",
                                       f"runs stored in: {tmp_path}/rel/runs"]
    out = build_book("--check", "--chapter", "notebooks/01_intro.py", "-y", "seeds: [4, 5]", "--no-progress-bar",
                     cwd=tmp_path, env={"BIRR_RESULTS": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["parameters: dataset='cifar10-jpg' budget='short' seeds=[4, 5] device='auto'",
                                       f"runs stored in: {REPO}/_build/rerun/results"]

# -----------------------------------------------------------------------------
# the Makefile


def make(*args, cwd=REPO, env=None):
    # Run as a top-level make even under `make test`: a sub-make inherits MAKELEVEL and MAKEFLAGS and
    # then prints "Entering directory" lines into the stdout these tests read.
    base = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True,
                          env={**base, **(env or {})})


def test_make_exports_absolute_folders():
    out = make("--eval", 'show-env: ; @echo "$$BIRR_RESULTS|$$BIRR_CACHE"', "show-env",
               "BIRR_RESULTS=scratch/runs", env={"BIRR_CACHE": "scratch/cache"})
    assert out.stdout == f"{REPO}/scratch/runs|{REPO}/scratch/cache\n", out.stderr


def test_make_passes_seeds_as_a_yaml_list():
    for seeds in ("0 1", "0,1", "[0, 1]"):
        out = make("-n", "reproduce", "BUDGET=smoke", f"SEEDS={seeds}").stdout
        assert 'scripts/build_book.sh -f book/params.yaml -p budget smoke -y "seeds: [0, 1]"' in " ".join(out.split()), out
        out = make("-n", "chapter", "NAME=06_table1", f"SEEDS={seeds}").stdout
        assert 'scripts/build_book.sh --chapter 06_table1 -f book/params.yaml -y "seeds: [0, 1]"' in " ".join(out.split()), out
    assert "-y" not in make("-n", "chapter", "NAME=06_table1").stdout


@pytest.mark.parametrize("args, message", [
    (["NAME=6_table"], "error: there is no chapter NAME=6_table; choose one of " + " ".join(CHAPTERS) + "\n"),
    ([], "usage: make chapter NAME=<one of: " + " ".join(CHAPTERS) + ">"),
    (["NAME=06_table1", "SEEDS=a"], "error: SEEDS=a is not allowed"),
    (["NAME=06_table1", "BUDGET=huge"], "error: BUDGET=huge is not allowed"),
])
def test_make_chapter_refuses_before_anything_runs(args, message):
    out = make("chapter-params", *args)
    assert out.returncode == 2 and out.stderr.startswith(message), out.stderr


def test_make_help_lists_chapter_and_seeds():
    out = make("help").stdout
    assert "make chapter NAME=" in out and "SEEDS=" in out


@pytest.mark.slow
def test_make_chapter_runs_one_chapter_and_leaves_git_clean(tmp_path):
    """`make chapter` end to end in a copy of the working tree: the smallest chapter at the smoke
    budget into _build/rerun/, and `git status` the same before and after."""
    copy = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (copy / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, copy / f)
    git = ["git", "-c", "core.autocrlf=false"]
    subprocess.run([*git, "init", "-q"], cwd=copy, check=True)
    subprocess.run([*git, "add", "-A"], cwd=copy, check=True)

    def status():
        return subprocess.run([*git, "status", "--porcelain", "--untracked-files=all"], cwd=copy,
                              capture_output=True, text=True, check=True).stdout

    before = status()
    venv = Path(sys.executable).parents[1]
    env = {k: v for k, v in os.environ.items() if k != "BIRR_RESULTS"}   # the default: _build/rerun/results
    out = subprocess.run(["make", "-o", f"{venv}/.installed", f"VENV={venv}", "chapter", "NAME=01_intro",
                          "BUDGET=smoke", "DATASET=synthetic", "SEEDS=0", "DEVICE=cpu"],
                         cwd=copy, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    executed = copy / "_build" / "rerun" / "01_intro.ipynb"
    assert f"Executed chapter: {executed}\n" in out.stdout
    assert f"jupyter lab {executed}" in out.stdout and f"jupyter nbconvert --to html {executed}" in out.stdout
    assert f"runs stored in {copy}/_build/rerun/results" in out.stdout
    meta = json.loads(executed.read_text())["metadata"]["papermill"]
    assert meta["parameters"] == {"budget": "smoke", "dataset": "synthetic", "device": "cpu", "seeds": [0]}
    assert not meta.get("exception")
    assert not (copy / "book" / "executed").exists()
    assert status() == before
