#!/usr/bin/env bash
# Build the book: every notebooks/NN_*.py (jupytext percent) -> ipynb -> papermill -> exec_stats -> jupyter-book.
#
#   scripts/build_book.sh [--src DIR] [--out DIR] [papermill options ...]
#   scripts/build_book.sh -f book/params.yaml                       # what `make book` runs
#   scripts/build_book.sh -f book/params.yaml -p budget full        # what `make reproduce BUDGET=full` runs
#
# --src  the book's source root, holding _config.yml, _toc.yml and book/ (default: this repository).
#        Executed notebooks are written to SRC/book/executed/, which is where _toc.yml points.
# --out  where jupyter-book writes _build/ (default: SRC). The converted .ipynb go to OUT/_build/ipynb/.
# Everything else is passed to papermill, after `-k python3 --cwd notebooks`, so `-f`, `-p`, `-y`
# work as papermill documents them (later ones win).
# Notebooks run with the repository's notebooks/ as cwd whatever --src is, so relative paths in them
# resolve in the repository. Uses $PYTHON (default python3) and the jupyter-book next to it.
# Any papermill failure stops the build (set -e); the failed notebook is still written, traceback included.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
bin=$(dirname "$(command -v "$PYTHON")")
src=$repo
out=
while [[ $# -gt 0 ]]; do
  case $1 in
    --src) src=$(cd "$2" && pwd); shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) break ;;
  esac
done
out=${out:-$src}

shopt -s nullglob
chapters=("$repo"/notebooks/[0-9][0-9]_*.py)
[[ ${#chapters[@]} -gt 0 ]] || { echo "build_book: no notebooks/NN_*.py found" >&2; exit 1; }

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

"$PYTHON" "$repo/scripts/exec_stats.py" --root "$src" "${executed[@]}"

# --all: an incremental build can keep stale glued numbers (pitfall 3). The book never executes
# anything itself (_config.yml: execute_notebooks: "off"), so this step only renders.
"$bin/jupyter-book" build "$src" --all -W -n --keep-going --path-output "$out"
echo "Book: $(cd "$out" && pwd)/_build/html/index.html"
