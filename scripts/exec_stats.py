"""
Write the files that book/status.md and book/benchmarks.md include, next to the executed notebooks:

- exec_stats.md   one row per chapter, read from what papermill recorded in the notebook
                  (metadata.papermill: end_time, duration, parameters, exception) plus two values a
                  chapter may glue: `data_used` (the dataset it actually ran on, e.g. res["dataset"])
                  and `config_stamps` (a list of the result stamps it trained or loaded)
- environment.md  where it ran: git sha, Python, platform, CPU, GPU, and package versions
- speed.md        the stored speed benchmarks (benchmarks/results/speed.json), newest per machine and
                  thread count, each table with the date, commit and device it was measured on
- flags.md        the stored accuracy checks of the speed flags (benchmarks/results/flags.json)
- stacking.md     the stored checks that a run's matmuls do not depend on the runs stacked beside it
                  (benchmarks/results/stack_isolation.json), newest per CPU
- coverage.md     the paper's results by the fidelity they were reproduced at (birr.book.coverage_frame)

The first two describe the build that runs this script; the last three are copied from benchmark
runs made at other times and commits, possibly on other machines.

    python scripts/exec_stats.py --root . book/executed/01_intro.ipynb book/executed/02_....ipynb

`{nb-exec-table}` cannot replace this: it only lists notebooks that myst-nb executed itself, and
the book never executes (papermill does: myst-nb's own execution is off). Links are `{doc}`
with absolute docnames, because relative links in an `{include}`d file resolve against the
including page. All files are written atomically (tmp file + rename), so a failed
run never leaves half a table for the build to render.
"""
import argparse
import ast
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

PACKAGES = ("torch", "torchvision", "numpy", "pandas", "matplotlib", "scikit-learn",
            "papermill", "jupyter-book", "sphinx", "myst-nb", "jupytext")


def glued_values(nb: dict) -> dict:
    """The value of every `glue(name, ...)` in the notebook (displayed or not), by name, read back
    from its text/plain repr: "'synthetic'" -> 'synthetic', "['ab12', 'cd34']" -> a list."""
    found = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            text = next((v for k, v in out.get("data", {}).items() if k.endswith("text/plain")), None)
            if name and text is not None:
                text = "".join(text) if isinstance(text, list) else text
                try:
                    found[name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    found[name] = text
    return found


def stamps_of(glued: dict) -> list[str]:
    """`config_stamps` may be glued as a list of stamps or as one string of them."""
    value = glued.get("config_stamps", [])
    return (value.replace(",", " ").split() if isinstance(value, str) else [str(v) for v in value])


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def exec_stats(notebooks: list[Path], root: Path) -> str:
    chapters = []
    for path in notebooks:
        nb = json.loads(path.read_text())
        meta = nb.get("metadata", {}).get("papermill", {})
        chapters.append(dict(
            doc=path.relative_to(root).with_suffix("").as_posix(),
            meta=meta,
            params=", ".join(f"`{k}={v!r}`" for k, v in meta.get("parameters", {}).items()) or "(the notebook's defaults)",
            glued=glued_values(nb)))
    same_params = len({c["params"] for c in chapters}) == 1
    lines = [f"Every chapter ran with {chapters[0]['params']}.", ""] if same_params else []
    lines += ["| Chapter | Finished (UTC) | Seconds | " + ("" if same_params else "Parameters | ") + "Data used | Runs | Status |",
              "|---|---|--:|" + ("" if same_params else "---|") + "---|--:|---|"]
    for c in chapters:
        meta, duration = c["meta"], c["meta"].get("duration")
        lines.append(
            f"| {{doc}}`/{c['doc']}` | {(meta.get('end_time') or '?')[:16].replace('T', ' ')} "
            f"| {f'{duration:.1f}' if isinstance(duration, (int, float)) else '?'} | "
            + ("" if same_params else f"{c['params']} | ")
            + f"{cell(c['glued'].get('data_used', '–'))} | {len(stamps_of(c['glued'])) or '–'} "
            f"| {'**error**' if meta.get('exception') else 'ok'} |")
    total = sum(c["meta"].get("duration") or 0 for c in chapters)
    lines += ["", f"{len(chapters)} chapter{'s' * (len(chapters) != 1)}, {total:.0f} s of papermill execution in all.", ""]
    with_stamps = [c for c in chapters if stamps_of(c["glued"])]
    if with_stamps:  # the stamps are long: listed under the table, not in it
        lines += [":::{dropdown} Config stamps of the runs each chapter trained or loaded", ""]
        lines += [f"- {{doc}}`/{c['doc']}`: " + ", ".join(f"`{s}`" for s in stamps_of(c["glued"])) for c in with_stamps]
        lines += [":::", ""]
    return "\n".join(lines)


def git_sha(repo: Path) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"`{sha}`" + (" plus uncommitted changes" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment(repo: Path) -> str:
    import torch  # imported here: the chapter table above needs nothing but json

    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        gpu += f" (CUDA {torch.version.cuda})"
    else:
        gpu = ("none on this machine: the chapters ran on its CPU; runs they loaded keep the device "
               "that trained them (each chapter's runs table)")
    rows = [
        ("birr commit", git_sha(repo)),
        ("generated (UTC)", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
        ("Python", platform.python_version()),
        ("platform", platform.platform()),
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical cores, torch uses {torch.get_num_threads()} threads"),
        ("GPU", gpu),
        *((name, version(name)) for name in PACKAGES),
    ]
    freeze = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions() if d.metadata["Name"])
    return "\n".join([
        "| What | Version or value |",
        "|---|---|",
        *(f"| {k} | {cell(v)} |" for k, v in rows),
        "",
        ":::{dropdown} Every installed package",
        "```text",
        *dict.fromkeys(freeze),  # dedupe, keep order
        "```",
        ":::",
        "",
    ])


def _literal(v) -> str:
    """A parameter value as the chapter's own parameters cell writes it: "short", [0, 1], 1e-06."""
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(_literal, v)) + "]"
    return repr(v)


def parameters_as_run(source: str, values: dict) -> str:
    """The chapter's parameters cell with the values this build passed (papermill's metadata
    parameters) in place of its defaults, its comments kept. The page shows this one cell, so a
    reader sees what the chapter ran with, not a default that `make book` or `make reproduce`
    overrode. A value passed for a name the cell does not assign is appended."""
    lines = source.split("\n")
    seen = set()
    # bottom-up, so the line and column offsets of earlier assignments stay valid
    for node in sorted(ast.parse(source).body, key=lambda n: n.lineno, reverse=True):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name not in values:
            continue
        seen.add(name)
        v, first, last = node.value, node.value.lineno - 1, node.value.end_lineno - 1
        lines[first:last + 1] = [lines[first][:v.col_offset] + _literal(values[name]) + lines[last][v.end_col_offset:]]
    extra = [f"{k} = {_literal(v)}" for k, v in values.items() if k not in seen]
    return "\n".join(lines + extra) if extra else "\n".join(lines)


def show_parameters_as_run(nb) -> None:
    """In place on an executed notebook (nbformat): its `parameters` cell shows the values papermill
    passed, and papermill's own copy of them (tagged "injected-parameters") leaves the page."""
    values = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags:
            cell["source"] = parameters_as_run("".join(cell["source"]), values)
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["remove-cell"]


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def speed(repo: Path) -> str:
    """The latest speed benchmark per device and thread count (benchmarks/speed.py writes benchmarks/results/speed.json)."""
    path = repo / "benchmarks" / "results" / "speed.json"
    if not path.exists():
        return "No speed benchmark has been recorded yet (`python benchmarks/speed.py`).\n"
    # per device and thread count: every row measured by the code version (git sha) of its newest entry, newest row of each
    # setting first; one benchmark run on a lent GPU may be several entries (scripts/gpu_session.py makes three)
    # a CPU model name covers machines with and without AVX-512 / bf16 hardware: the ISA is part of the key.
    # Entries older than the ISA field have none; such an entry is superseded, like any older one, by a later
    # entry for the same CPU model and thread count that records its ISA (else the page would show the
    # same machine twice, one table stale)
    entries = json.loads(path.read_text())
    machine = lambda p: (p["device_name"], p.get("cpu_isa") if p["device"] == "cpu" else None, p["threads"])
    latest, position = {}, {}
    for i, entry in enumerate(entries):
        latest[machine(entry["provenance"])] = entry
        position[machine(entry["provenance"])] = i
    for key in [k for k in latest if latest[k]["provenance"]["device"] == "cpu" and k[1] is None]:
        if any(k[1] is not None and (k[0], k[2]) == (key[0], key[2]) and position[k] > position[key] for k in latest):
            del latest[key]
    lines = []
    for (name, isa, threads), newest in latest.items():
        prov = newest["provenance"]
        rows = {}
        for entry in entries:
            ep = entry["provenance"]
            if machine(ep) + (ep["git_sha"],) == (name, isa, threads, prov["git_sha"]):
                for r in entry["rows"]:
                    key = (r["method"], r["batch"], r["K"], r["bf16"], r.get("compile", False))
                    # a later re-timing of a setting without its reference-pattern baseline does not hide
                    # the row that has the speed-up
                    if r.get("speedup_vs_reference_pattern") or not (rows.get(key) or {}).get("speedup_vs_reference_pattern"):
                        rows[key] = r
        entry = dict(newest, rows=list(rows.values()))
        isa_note = "" if prov["device"] != "cpu" else f", {isa or 'vector ISA not recorded'}"
        if any((r.get("isolated_rounds") or 0) > 1 for r in entry["rows"]):
            how = ("timed in rounds, each setting in its own process alternating with the reference pattern: the "
                   "median of the rounds' ratios and their range")
        elif prov["device"] == "cpu":
            how = ("all settings timed in one process, which on a CPU slowed the reference pattern beside birr's "
                   "stacks, so these ratios are upper estimates (benchmarks/README.md)")
        else:
            how = "all settings timed in one process"
        lines += [f"**{name}** ({prov['device']}{isa_note}, torch {prov['torch']}, {prov['threads']} thread(s), "
                  f"{prov['date'][:10]}, git {prov['git_sha'][:10]}): seconds per training iteration in the "
                  "steady state (task 2), full CIFAR-100 model size; *speed-up* is against the reference-pattern "
                  f"baseline measured in the same run ({how}); the last column projects the paper's full Table 1 "
                  "(30 runs, 6 rows x 5 seeds, x 10 tasks x 5000 iterations at batch 512 on CIFAR-100; the "
                  "book's Table 1 page has its own run count) from the steady state, and where it "
                  "was measured, with what building and warming up each stack of that size costs (compile time, "
                  "if compiled) paid once per stack.", "",
                  "| implementation | batch | runs stacked | precision | s / iteration | run-iterations / s | speed-up | Table 1 (min) |",
                  "|---|--:|--:|---|--:|--:|--:|--:|"]
        for r in entry["rows"]:
            sp, rounds = r.get("speedup_vs_reference_pattern"), r.get("isolated_rounds") or 0
            prec = ("bf16" if r["bf16"] else _fp32_label(prov)) + (" + compile" if r.get("compile") else "")
            spread = (f" ({r['speedup_range'][0]:.2f}-{r['speedup_range'][1]:.2f} in {rounds} rounds)"
                      if sp and rounds > 1 else "")
            lines.append(f"| {r['method']} | {r['batch']} | {r['K']} | {prec} | "
                         f"{r['s_per_iter']:.4f} | {r['run_iters_per_s']:.2f} | {f'{sp:.2f}x' if sp else ''}{spread} | "
                         f"{_table1_cell(r)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _fp32_label(prov: dict) -> str:
    """fp32 as a speed row ran it: on CUDA birr lets the matmuls run in TF32 (birr.train.resolve_device),
    which the provenance records."""
    if prov["device"] != "cuda":
        return "fp32"
    return {True: "fp32 (TF32 matmuls)", False: "fp32"}.get(prov.get("tf32"), "fp32 (TF32 not recorded)")


def _table1_cell(r: dict) -> str:
    """The Table 1 projection in minutes: steady state, and with the stacks' setup where measured."""
    fmt = lambda m: f"{m:,.1f}" if m < 100 else f"{m:,.0f}"
    steady = fmt(r["table1_projection_min"])
    return steady if "table1_with_setup_min" not in r else f"{steady} ({fmt(r['table1_with_setup_min'])} with setup)"


def measured_at(prov: dict) -> str:
    """'date, git sha' of a stored benchmark entry ("+": measured with uncommitted changes)."""
    return f"{prov['date'][:10]}, git {str(prov.get('git_sha', '?'))[:10]}{'+' if prov.get('git_dirty') else ''}"


def flags(repo: Path) -> str:
    """The newest accuracy check of each speed flag per device (benchmarks/validate_flags.py), each row
    with the date and commit it was measured at ("+": uncommitted changes)."""
    path = repo / "benchmarks" / "results" / "flags.json"
    if not path.exists():
        return "No flag has been validated yet (`python benchmarks/validate_flags.py`).\n"
    # a CPU model name covers machines with different bf16 hardware (AVX512-BF16, AMX, none), whose bf16
    # kernels round differently: on a CPU the vector ISA is part of the device
    device = lambda p: p["device_name"] + (f", {p['cpu_isa']}" if p["device"] == "cpu" and p.get("cpu_isa") else "")
    latest = {}
    for entry in json.loads(path.read_text()):
        for flag, s in entry["flags"].items():
            latest[(device(entry["provenance"]), flag)] = (entry, s)
    lines = ["| flag | device | data, budget, seeds | column | fp32 (mean) | with flag (mean) | paired difference "
             "| fp32 seed SD | verdict |", "|---|---|---|---|--:|--:|--:|--:|---|"]
    for (device, flag), (entry, s) in latest.items():
        prov = entry["provenance"]
        when = measured_at(prov)
        for col in ("first20", "first50", "overall"):
            c = s[col]
            lines.append(f"| {flag} | {device} ({when}) | {entry['dataset']}, "
                         f"{entry['budget']}, {' '.join(map(str, entry['seeds']))} | {col} | {100 * c['fp32_mean']:.1f} % "
                         f"| {100 * c['flagged_mean']:.1f} % | {100 * c['mean_diff']:+.2f} | {100 * c['fp32_seed_sd']:.2f} "
                         f"| {'within seed noise' if c['within_seed_noise'] else 'OUTSIDE seed noise'} |")
    return "\n".join(lines) + "\n"


def stacking(repo: Path) -> str:
    """The newest stack-isolation check (benchmarks/stack_isolation.py) per CPU, vector ISA and oneDNN
    ISA cap: per way of calling the matmuls and per dtype, how many layer shapes gave run 0 the same
    bits alone and in a stack of 3, the largest relative difference, and whether another run's inputs
    leaked into run 0's numbers. Calls: one batched call for the whole stack (what the CPU's kernels
    do with it; entries older than the `call` field measured only that, birr's layer then) and birr's
    layer as it is (one call per run on a CPU, `birr.stacked.bmm`)."""
    path = repo / "benchmarks" / "results" / "stack_isolation.json"
    if not path.exists():
        return "No stack-isolation check has been recorded yet (`python benchmarks/stack_isolation.py`).\n"
    latest = {}
    for entry in json.loads(path.read_text()):
        p = entry["provenance"]
        latest[(p["device_name"], p.get("cpu_isa", "?"), p.get("onednn_max_cpu_isa", "ALL"))] = entry
    calls = {"batched": "one for the stack", "birr": "birr's layer (one per run)"}
    lines = ["| CPU | oneDNN (ISA cap), threads | matmul calls | dtype | alone == stacked (bit for bit) "
             "| largest relative difference | other runs' inputs leak in |", "|---|---|---|---|--:|--:|---|"]
    for (name, isa, cap), entry in latest.items():
        p = entry["provenance"]
        capped = "" if cap == "ALL" else f" (capped at {cap})"
        when = measured_at(p)
        for call, said in calls.items():
            for dtype in ("fp32", "bf16"):
                rows = [r for r in entry["rows"] if r["dtype"] == dtype and r.get("call", "batched") == call]
                if not rows:
                    continue
                leaks = [f"{r['size']} {r['layer']}" for r in rows if r["nan_leaks"] or r["scale_leaks"]]
                lines.append(f"| {name}, {isa} ({when}) | {p.get('onednn', '?')}{capped}, {p['threads']} | {said} "
                             f"| {dtype} | {sum(r['alone_equals_stacked'] for r in rows)} of {len(rows)} layer shapes "
                             f"| {max(r['max_rel_diff'] for r in rows):.1e} | {', '.join(leaks) if leaks else 'no'} |")
    return "\n".join(lines) + "\n"


def coverage(repo: Path) -> str:
    """The paper's results by the fidelity this book has reproduced them at: for each, the dataset,
    budget, iterations, batch, width and seeds of the runs that would reproduce it, and how many of
    them are stored (birr.book.coverage_frame reads results/runs/, so this describes the store the
    build loaded)."""
    from birr.book import coverage_frame
    frame = coverage_frame()
    cols = list(frame.columns)
    right = {"batch", "width (fc)", "runs stored"}
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("--:" if c in right else "---" for c in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the book's source root (holds _toc.yml); docnames are relative to it")
    ap.add_argument("notebooks", type=Path, nargs="+", help="executed notebooks, all in one folder; the tables are written there")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    notebooks = sorted(p.resolve() for p in args.notebooks)
    folders = {p.parent for p in notebooks}
    if len(folders) != 1:
        sys.exit(f"exec_stats: the executed notebooks must share one folder, got {sorted(map(str, folders))}")
    out = folders.pop()
    write_atomic(out / "exec_stats.md", exec_stats(notebooks, root))
    write_atomic(out / "environment.md", environment(Path(__file__).resolve().parents[1]))
    write_atomic(out / "speed.md", speed(Path(__file__).resolve().parents[1]))
    write_atomic(out / "flags.md", flags(Path(__file__).resolve().parents[1]))
    write_atomic(out / "stacking.md", stacking(Path(__file__).resolve().parents[1]))
    write_atomic(out / "coverage.md", coverage(Path(__file__).resolve().parents[1]))
    print(f"exec_stats: wrote exec_stats.md, environment.md, speed.md, flags.md, stacking.md and coverage.md to {out} "
          f"({len(notebooks)} chapters)")


if __name__ == "__main__":
    main()
