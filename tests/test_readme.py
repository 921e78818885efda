"""The README's checkable claims: the modules it names and the files its commands name."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_names_every_module_of_the_package():
    """The Package paragraph lists every module by name (a new module is documented where a reader
    looks for it); sizes are not quoted, so nothing here fails when a file grows by a line."""
    line = re.search(r"Package \(modules\):(.*?)\n\n", README, re.S).group(1)
    named = set(re.findall(r"\b((?:book/)?\w+)\b", line))
    modules = {p.stem for p in (ROOT / "birr").glob("*.py")} | {f"book/{p.stem}" for p in (ROOT / "birr" / "book").glob("*.py")}
    modules -= {"__init__", "__main__", "book/__init__"}
    assert modules <= named, f"modules the README does not name: {sorted(modules - named)}"


def test_every_script_the_readme_runs_exists():
    named = set(re.findall(r"\b((?:benchmarks|scripts|notebooks|book|tests)/[\w./-]+\.(?:py|sh|yaml|md))", README))
    assert {"benchmarks/speed.py", "scripts/gpu_session.py", "book/params.yaml"} <= named
    named = {p for p in named if "NN_" not in p}          # notebooks/NN_name.py is a template
    assert [p for p in sorted(named) if not (ROOT / p).is_file()] == []


def _speed_table_rows():
    """The README Speed table's body rows as lists of cells (machine, setting, step, reference, speed-up)."""
    section = README.split("## Speed", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in r] for r in rows[2:]]      # after the header and the |---| line


def _quoted(cell):
    """The numbers a cell quotes, as strings (a parenthetical such as '(4 runs)' is not a figure)."""
    cell = re.sub(r"\(.*?\)", "", cell).replace("Table 1 in", "")
    return re.findall(r"\d+(?:\.\d+)?", cell)


def _same_at_quoted_precision(stored: float, quoted: str) -> bool:
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    return abs(round(stored, decimals) - float(quoted)) < 1e-9


def test_every_figure_in_the_readme_speed_table_is_a_stored_measurement():
    """Each step time, reference-pattern time, speed-up and Table 1 projection the table quotes is
    (at its quoted precision) a row of benchmarks/results/speed.json for that machine kind and setting,
    and a range's '(N runs)' counts the stored medians inside it (a figure that was typed in, or
    measured without being recorded, fails here)."""
    import json
    entries = json.loads((ROOT / "benchmarks" / "results" / "speed.json").read_text())
    rows = _speed_table_rows()
    assert len(rows) >= 5 and all(len(r) == 5 for r in rows), rows

    def kind(prov, machine):
        isa = prov.get("cpu_isa") or ""
        if "H200" in machine:
            return prov["device"] == "cuda"
        if prov["device"] != "cpu":
            return False
        if "AMX" in machine:
            return "amx_bf16" in isa
        if "AVX512-BF16" in machine:
            return "avx512_bf16" in isa and "amx_bf16" not in isa
        assert "AVX2" in machine, machine
        return not isa                                   # the AVX2 entries predate cpu_isa

    for machine, setting, step, ref, speedup in rows:
        bf16s = {True, False} if "fp32" in setting and "bf16" in setting else {"bf16" in setting}
        compiled = "compile" in setting
        mine = [(r, e["provenance"]) for e in entries for r in e["rows"] if kind(e["provenance"], machine)]
        birr = [r for r, _ in mine if r["method"] == "bir+si" and r["bf16"] in bf16s
                and bool(r.get("compile")) == compiled]
        refs = [r for r, _ in mine if r["method"] == "reference-pattern"]
        scale = 1000 if step.endswith("ms") else 1
        checks = [(step, [r["s_per_iter"] * scale for r in birr]),
                  (ref, [r["s_per_iter"] * scale for r in refs]),
                  (speedup, [r[k] for r in birr for k in ("speedup_vs_reference_pattern", "table1_projection_min")
                             if r.get(k) is not None] if "min" in speedup else
                   [r["speedup_vs_reference_pattern"] for r in birr if r.get("speedup_vs_reference_pattern")])]
        for cell, stored in checks:
            for q in _quoted(cell):
                assert any(_same_at_quoted_precision(v, q) for v in stored), (machine, cell, q)
        runs = re.search(r"(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)x \((\d+) runs\)", speedup)
        if runs:
            lo, hi, n = float(runs[1]), float(runs[2]), int(runs[3])
            inside = [v for v in (r["speedup_vs_reference_pattern"] for r in birr if r.get("isolated_rounds"))
                      if v and lo <= round(v, 2) <= hi]
            assert len(inside) == n, (machine, speedup, inside)
