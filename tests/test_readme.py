"""The README's checkable claims: the package sizes it quotes and the files its commands name."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_package_sizes_in_the_readme_are_the_files_line_counts():
    line = re.search(r"Package size \(lines\):(.*?)\n\n", README, re.S).group(1)
    quoted = {name: int(n) for name, n in re.findall(r"(\w+) (\d+)", line)}
    assert set(quoted) >= {"config", "data", "encoder", "model", "losses", "train", "metrics"}
    actual = {name: len((ROOT / "birr" / f"{name}.py").read_text().splitlines()) for name in quoted}
    assert quoted == actual


def test_every_script_the_readme_runs_exists():
    named = set(re.findall(r"\b((?:benchmarks|scripts|notebooks|book|tests)/[\w./-]+\.(?:py|sh|yaml|md))", README))
    assert {"benchmarks/speed.py", "scripts/gpu_session.py", "book/params.yaml"} <= named
    named = {p for p in named if "NN_" not in p}          # notebooks/NN_name.py is a template
    assert [p for p in sorted(named) if not (ROOT / p).is_file()] == []
