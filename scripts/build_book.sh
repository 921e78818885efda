#!/usr/bin/env bash
# Build the book: every notebooks/NN_*.py (jupytext percent) -> ipynb -> papermill -> exec_stats -> jupyter-book.
#
#   scripts/build_book.sh [--src DIR] [--out DIR] [--chapter NAME] [--check] [papermill options ...]
#   scripts/build_book.sh -f book/params.yaml                       # what `make book` runs
#   scripts/build_book.sh -f book/params.yaml -p budget full        # what `make reproduce BUDGET=full` runs
#   scripts/build_book.sh --chapter 06_table1 -f book/params.yaml -p budget smoke   # what `make chapter` runs
#
# --src      the book's source root, holding _config.yml, _toc.yml and book/ (default: this repository).
#            Executed notebooks are written to SRC/book/executed/, which is where _toc.yml points.
# --out      where jupyter-book writes _build/ (default: SRC). The converted .ipynb go to OUT/_build/ipynb/.
# --chapter  run only notebooks/NAME.py: converted into OUT/_build/rerun/source/, executed into
#            OUT/_build/rerun/NAME.ipynb, with runs stored in OUT/_build/rerun/results unless $BIRR_RESULTS
#            is set. Nothing of the book (book/executed/, the status tables, _build/html) is touched.
# --check    check the parameters (below) and stop.
# Everything else is passed to papermill, after `-k python3 --cwd notebooks`, so `-f`, `-y`, `-p`, `-r`
# work as papermill documents them (-f files, then -y, then -p, then -r; later ones of a kind win).
#
# Before anything is deleted or run, the parameters each chapter would get (its parameters cell,
# overridden as papermill overrides it) go through birr.params.check, the call every chapter begins
# with: a bad value is one `error:` line and exit 2. A relative $BIRR_RESULTS or $BIRR_CACHE is made
# absolute from the directory this script was started in, so the chapters (which run in notebooks/)
# and `python -m birr` run from there use the same folders.
# Notebooks run with the repository's notebooks/ as cwd whatever --src is, so relative paths in them
# resolve in the repository. Uses $PYTHON (default python3) and the jupyter-book next to it.
# Any papermill failure stops the build (set -e); the failed notebook is still written, traceback included.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
bin=$(dirname "$(command -v "$PYTHON")")
src=$repo
out=
chapter=
check_only=
while [[ $# -gt 0 ]]; do
  case $1 in
    --src) src=$(cd "$2" && pwd); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --chapter) chapter=$2; shift 2 ;;
    --check) check_only=1; shift ;;
    *) break ;;
  esac
done
out=${out:-$src}

shopt -s nullglob
chapters=("$repo"/notebooks/[0-9][0-9]_*.py)
[[ ${#chapters[@]} -gt 0 ]] || { echo "build_book: no notebooks/NN_*.py found" >&2; exit 1; }
if [[ -n $chapter ]]; then
  chapter=$(basename "$chapter"); chapter=${chapter%.py}; chapter=${chapter%.ipynb}
  if [[ ! -f $repo/notebooks/$chapter.py ]]; then
    names=("${chapters[@]##*/}"); names=("${names[@]%.py}")
    echo "error: there is no chapter $chapter; choose one of ${names[*]}" >&2
    exit 2
  fi
  chapters=("$repo/notebooks/$chapter.py")
fi

# a relative folder is one folder, named from where this script started, for chapters and CLI alike
for var in BIRR_RESULTS BIRR_CACHE; do
  if [[ -n ${!var:-} && ${!var} != /* ]]; then export "$var=$PWD/${!var}"; fi
done
if [[ -n $chapter ]]; then
  rerun_dir=$out/_build/rerun
  [[ $rerun_dir == /* ]] || rerun_dir=$PWD/$rerun_dir
  export BIRR_RESULTS=${BIRR_RESULTS:-$rerun_dir/results}
fi

# the values papermill would give each chapter, through birr.params.check (one error: line, exit 2)
"$PYTHON" - "${chapters[@]}" -- "$@" <<'PY'
import ast, base64, sys
from pathlib import Path

args = sys.argv[1:]
chapters, args = args[:args.index("--")], args[args.index("--") + 1:]


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


try:
    import yaml
    from birr.params import check
except ImportError as e:
    fail(f"{sys.executable} cannot import birr ({e}); `make book` installs it into .venv/")


def load_yaml(text, where):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        fail(f"{where} is not YAML: {' '.join(str(e).split())}")
    if not isinstance(value, (dict, type(None))):
        fail(f"{where} is not a YAML mapping of parameter names to values")
    return value or {}


def resolve_type(value):  # what papermill's -p makes of its value (papermill.cli._resolve_type)
    if value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[value]
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


# papermill's options that set parameters, applied in papermill's order: -b, -f, -y, -p, -r
kinds = {"-b": "b", "--parameters_base64": "b", "-f": "f", "--parameters_file": "f", "-y": "y",
         "--parameters_yaml": "y", "-p": "p", "--parameters": "p", "-r": "r", "--parameters_raw": "r"}
given = {k: [] for k in "bfypr"}
i = 0
while i < len(args):
    opt, _, attached = args[i].partition("=") if args[i].startswith("--") else (args[i], "", "")
    kind = kinds.get(opt)
    n = 2 if kind in ("p", "r") else 1
    if kind is None:
        i += 1
        continue
    values = ([attached] if attached else []) + args[i + 1:i + 1 + n - bool(attached)]
    if len(values) < n:
        fail(f"{opt} needs {'a name and a value' if n == 2 else 'a value'}")
    given[kind].append(values)
    i += 1 + n - bool(attached)

params = {}
for (b64,) in given["b"]:
    try:
        params.update(load_yaml(base64.b64decode(b64), "the -b parameters"))
    except ValueError:
        fail(f"-b {b64}: not base64")
for (path,) in given["f"]:
    if not Path(path).is_file():
        fail(f"-f {path}: no such parameters file")
    params.update(load_yaml(Path(path).read_text(), path))
for (text,) in given["y"]:
    params.update(load_yaml(text, f"-y {text!r}"))
for name, value in given["p"]:
    params[name] = resolve_type(value)
for name, value in given["r"]:
    params[name] = value


def defaults(py):  # the assignments of the chapter's cell tagged `parameters`
    lines = Path(py).read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# %%") and "parameters" in line), None)
    if start is None:
        fail(f"{Path(py).name} has no cell tagged parameters")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# %%")), len(lines))
    found = {}
    for node in ast.parse("\n".join(lines[start + 1:end])).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    try:
                        found[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
    return found


seen = set()
for py in chapters:
    values = {**defaults(py), **params}
    try:
        checked = check(*(values.get(k) for k in ("dataset", "budget", "seeds", "device")))
    except ValueError as e:
        fail(str(e))
    if repr(checked) not in seen:
        seen.add(repr(checked))
        print("parameters: dataset={!r} budget={!r} seeds={} device={!r}".format(*checked))
PY
if [[ -n $check_only ]]; then
  echo "runs stored in: ${BIRR_RESULTS:-$repo/results}"
  exit 0
fi

if [[ -n $chapter ]]; then
  mkdir -p "$rerun_dir/source"
  executed=$rerun_dir/$chapter.ipynb
  echo "== $chapter: jupytext -> papermill $* (runs stored in $BIRR_RESULTS)"
  "$PYTHON" -m jupytext --quiet --to ipynb --output "$rerun_dir/source/$chapter.ipynb" "${chapters[0]}"
  "$PYTHON" -m papermill "$rerun_dir/source/$chapter.ipynb" "$executed" \
    -k python3 --cwd "$repo/notebooks" --no-progress-bar "$@" \
    || { echo "$chapter failed; the notebook, traceback included: $executed" >&2; exit 1; }
  echo "Executed chapter: $executed"
  echo "Open it with: jupyter lab $executed"
  echo "or as a web page: jupyter nbconvert --to html $executed   (jupyterlab / nbconvert: pip install them if missing)"
  exit 0
fi

ipynb_dir=$out/_build/ipynb
executed_dir=$src/book/executed
mkdir -p "$ipynb_dir" "$executed_dir"
rm -f "$executed_dir"/*.ipynb  # a renamed or deleted chapter must not linger in the status table

executed=()
for py in "${chapters[@]}"; do
  name=$(basename "$py" .py)
  echo "== $name: jupytext -> papermill $*"
  "$PYTHON" -m jupytext --quiet --to ipynb --output "$ipynb_dir/$name.ipynb" "$py"
  start=$SECONDS
  "$PYTHON" -m papermill "$ipynb_dir/$name.ipynb" "$executed_dir/$name.ipynb" \
    -k python3 --cwd "$repo/notebooks" --no-progress-bar "$@"
  echo "   $name ran in $((SECONDS - start)) s"
  executed+=("$executed_dir/$name.ipynb")
done

# the page shows the chapter's parameters cell once, with the values this build passed (papermill's
# own copy of them is dropped from the HTML); the status page lists them too
"$PYTHON" - "$repo/scripts" "${executed[@]}" <<'PY'
import os, sys, nbformat
sys.path.insert(0, sys.argv[1])
from exec_stats import show_parameters_as_run
for path in sys.argv[2:]:
    nb = nbformat.read(path, as_version=4)
    show_parameters_as_run(nb)
    nbformat.write(nb, path + ".tmp")
    os.replace(path + ".tmp", path)
PY

"$PYTHON" "$repo/scripts/exec_stats.py" --root "$src" "${executed[@]}"

# --all: an incremental build can keep stale glued numbers. The book never executes
# anything itself (_config.yml: execute_notebooks: "off"), so this step only renders.
"$bin/jupyter-book" build "$src" --all -W -n --keep-going --path-output "$out"
echo "Book: $(cd "$out" && pwd)/_build/html/index.html"
