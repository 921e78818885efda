"""Command line: `python -m birr train | table1 | book | import-encoder`.

    train           the runs of one method, one per seed (default: a seconds-long smoke run)
    table1          the paper's Table 1: BI-R + SI and RR + RA at f = 5, 10, 20, 50, 100, per seed
                    (default: the full budget, 30 CIFAR-100 runs, for a GPU; --print-config lists them)
    book            every run the book's chapters read (default: short budget, 3 seeds)
    import-encoder  the reference's shipped encoder checkpoint, for --set encoder=ref-...

    python -m birr train --method bir+si --budget smoke
    python -m birr train --method rr+ra --budget short --seeds 0 1 2 --set rep_f=10 --set rr_variant=paper
    python -m birr table1 --budget short --seeds 0 1 2
    python -m birr book --budget short --seeds 0 1 2      # the runs the book's chapters share
    python -m birr import-encoder store/models/C3-5x16-bn # the reference's encoder -> --set encoder=ref-...

Each run is looked up by its config stamp in --results-dir ($BIRR_RESULTS, else results/ next to birr/,
the same store the Python API uses) and trained only if missing (or --force). Bad input, missing or
corrupt files (a hash that does not match, a truncated or empty file, a corrupt pickle), a full disk or
an unwritable folder, an unreachable download, and a run whose losses stop being finite end in one line,
`error: ...` (naming the file, or the run), and exit status 2. Ctrl-C (SIGINT) and SIGTERM end in one
line saying what is checkpointed and how to resume, and exit status 130 and 143.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import typing

from birr.config import BUDGETS, METHODS, Config, preset
from birr.data import DATASETS
from birr.experiments import _sweep, book_configs, table1_configs


def parse_set(items: list[str]) -> dict:
    """`key=value` pairs typed by the Config field they name (`rep_f=none` gives None, for the fields
    that may be None). Raises a one-line ValueError naming the bad item."""
    hints = typing.get_type_hints(Config)
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        if key not in hints:
            raise ValueError(f"--set {key!r}: Unknown config key (allowed: {', '.join(f.name for f in dataclasses.fields(Config))})")
        hint = str(hints[key])
        if raw.lower() == "none" and "None" in hint:   # replay=none is the string "none", not None
            out[key] = None
        elif "bool" in hint:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {key}={raw!r}: expected true or false")
            out[key] = raw.lower() in ("true", "1")
        elif "float" in hint or "int" in hint:
            kind = float if "float" in hint else int
            try:
                out[key] = kind(raw)
            except ValueError:
                raise ValueError(f"--set {key}={raw!r}: expected {'a number' if kind is float else 'an integer'}") from None
        else:
            out[key] = raw
    return out


# what each command sets itself, and the option that sets it instead of --set
SETS = {"train": {"method": "--method", "seed": "--seeds", "dataset": "--dataset", "budget": "--budget"},
        "table1": {"method": "(the command runs bir+si and rr+ra)", "seed": "--seeds", "dataset": "--dataset",
                   "budget": "--budget", "rep_f": "(the command sweeps f)", "rr_variant": "(the command runs 'code')"}}
SETS["book"] = dict(SETS["table1"], iters="(the Fig. 3 runs sweep it)", rr_variant="(the book runs both)")
# defaults per command: those of the Python function it calls (train: a seconds-long smoke run)
DEFAULTS = {"train": ("smoke", [0]), "table1": ("full", [0, 1, 2, 3, 4]), "book": ("short", [0, 1, 2])}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is (as Ctrl-C raises KeyboardInterrupt), so that training stops
    the same way: the checkpoint of the last finished task stays, and one line says so."""


def _terminate(signum, frame):
    raise Terminated()


def interrupted_line(e: KeyboardInterrupt, checkpoint: bool) -> str:
    """What a Ctrl-C or SIGTERM leaves, in one line: the stack's checkpoint and how to resume from it."""
    how = "SIGTERM" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
    where = getattr(e, "birr_checkpoint", "outside training")
    again = "run the same command again to"
    if where == "outside training":
        return f"{how}: no run was training; finished runs are stored; {again} go on"
    if where is not None:
        path, task = where
        return f"{how}: the run is checkpointed after task {task} in {path}; {again} resume from task {task + 1}"
    if not checkpoint:
        return f"{how}: nothing is checkpointed (--no-checkpoint); {again} train it from task 1"
    return f"{how}: no task had finished, so nothing is checkpointed; {again} train it from task 1"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option ends in one line like every other mistake (argparse prints its
    usage block first); --help still prints the usage."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def main(argv=None) -> int:
    ap = _Parser(prog="python -m birr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{train,table1,book,import-encoder}")
    helps = {"train": "train (or load) one method's runs, one per seed",
             "table1": "the paper's Table 1 runs: the baseline and RR + RA at each f, per seed",
             "book": "every run the book's chapters read, stacked by shape"}
    defaults = {"train": "by default a seconds-long smoke run on synthetic data, seed 0",
                "table1": "by default the full budget: 30 CIFAR-100 runs (6 configurations x 5 seeds), for a GPU",
                "book": "by default the short budget, seeds 0 1 2: 36 runs on the CIFAR-10 JPEG proxy"}
    for name in ("train", "table1", "book"):
        p = sub.add_parser(name, help=helps[name], description=f"{helps[name]}; {defaults[name]}. "
                           "--print-config lists the runs without training them.")
        budget, seeds = DEFAULTS[name]
        if name == "train":
            p.add_argument("--method", default="bir+si", choices=METHODS, help="default: bir+si (the paper's baseline)")
        p.add_argument("--budget", default=budget, choices=BUDGETS, help=f"default: {budget}")
        p.add_argument("--dataset", default=None, choices=DATASETS, help="default: the budget's dataset")
        p.add_argument("--seeds", type=int, nargs="+", default=seeds, help=f"default: {' '.join(map(str, seeds))}")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a Config field")
        p.add_argument("--results-dir", default=None, help="default: $BIRR_RESULTS, else results/ next to birr/")
        p.add_argument("--force", action="store_true", help="re-train even if results exist")
        p.add_argument("--quiet", action="store_true", help="no progress bars or per-task lines")
        p.add_argument("--no-checkpoint", action="store_true",
                       help="no per-task state in results/ckpt/ (no resume; for a machine whose disk is lost anyway)")
        p.add_argument("--print-config", action="store_true", help="print the resolved configs and exit")
    p = sub.add_parser("import-encoder", help="convert the reference's conv-stack checkpoint (appendix §3) into an artefact")
    p.add_argument("path", help="the reference's store/models/C3-5x16-bn (or any checkpoint of that stack)")
    args = ap.parse_args(argv)
    old_term = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        return _run(args)
    except KeyboardInterrupt as e:
        print(interrupted_line(e, not getattr(args, "no_checkpoint", False)), file=sys.stderr, flush=True)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _run(args) -> int:
    try:
        if args.cmd == "import-encoder":
            from birr.reference_encoder import import_reference
            out = import_reference(args.path)
            name = out.name.removeprefix("encoder-").removesuffix(".pt")
            print(f"{name} written to {out}; train with it: --set encoder={name}")
            return 0
        overrides = parse_set(args.set)
        for key in overrides:
            if key in SETS[args.cmd]:
                raise ValueError(f"--set {key}=...: `{args.cmd}` sets {key} itself; use {SETS[args.cmd][key]}")
        if args.cmd == "train":
            _sweep("--seeds", args.seeds, int, "--seeds 0 1 2")       # a repeated seed is one run, as in table1
            cfgs = [preset(args.method, budget=args.budget, dataset=args.dataset, seed=s, **overrides) for s in args.seeds]
        elif args.cmd == "table1":
            cfgs = table1_configs(budget=args.budget, dataset=args.dataset, seeds=tuple(args.seeds), **overrides)
        else:
            cfgs = book_configs(budget=args.budget, dataset=args.dataset, seeds=tuple(args.seeds), **overrides)
        if args.print_config:
            try:
                for c in cfgs:
                    print(json.dumps(dict(stamp=c.stamp, **c.to_dict())), flush=True)
            except BrokenPipeError:      # `--print-config | head` closed the pipe: not a mistake
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # nothing to flush at exit
            return 0
        from birr.train import run_many, results_path, default_results_dir
        results_dir = args.results_dir if args.results_dir is not None else default_results_dir()
        stored = set() if args.force else {c.stamp for c in cfgs if results_path(results_dir, c).is_file()}
        results = run_many(cfgs, results_dir=results_dir, force=args.force, progress=not args.quiet,
                           checkpoint=not args.no_checkpoint)
    except (TypeError, ValueError, OSError) as e:   # bad input, missing or corrupt files, no network: one line
        # (a DivergedError names each diverged run on a line of its own)
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    for r in results:
        m, c = r["metrics"], r["config"]
        how = "stored, trained in" if r["stamp"] in stored else "trained in"
        # which run this is: table1 and book print many rr+ra lines that differ only in these
        rr = f" f={c['rep_f']:g}" if c.get("rep_f") is not None else " no-f"
        what = r["method"] + (f"{rr} {c['rr_variant']}" if c.get("rr") or c.get("ra") else "")
        print(f"{r['stamp']} {what} {r['dataset']}/{r['budget']} iters={c['iters']} seed={r['seed']} "
              f"first20={m['first20']:.4f} first50={m['first50']:.4f} overall={m['overall']:.4f} "
              f"({how} {r['wall_time_s']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
