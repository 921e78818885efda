"""Command line: `python -m birr train ...` and `python -m birr table1 ...`.

    python -m birr train --method bir+si --budget smoke
    python -m birr train --method rr+ra --budget short --seeds 0 1 2 --set rep_f=10 --set rr_variant=paper
    python -m birr table1 --budget short --seeds 0 1 2
    python -m birr book --budget short --seeds 0 1 2      # every run the book reads

Each run is looked up by its config stamp in --results-dir and trained only if missing (or --force).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from birr.config import BUDGETS, METHODS, Config, book_configs, preset, table1_configs


def parse_set(items: list[str]) -> dict:
    """`key=value` pairs typed by the Config field they name (`rep_f=none` gives None)."""
    hints = typing.get_type_hints(Config)
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        if key not in hints:
            raise SystemExit(f"--set {key!r}: Unknown config key (allowed: {', '.join(f.name for f in dataclasses.fields(Config))})")
        hint = str(hints[key])
        if raw.lower() == "none":
            out[key] = None
        elif "bool" in hint:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise SystemExit(f"--set {key}={raw!r}: expected true or false")
            out[key] = raw.lower() in ("true", "1")
        elif "float" in hint:
            out[key] = float(raw)
        elif "int" in hint:
            out[key] = int(raw)
        else:
            out[key] = raw
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m birr", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("train", "table1", "book"):
        p = sub.add_parser(name)
        if name == "train":
            p.add_argument("--method", default="bir+si", choices=METHODS)
        p.add_argument("--budget", default="smoke", choices=BUDGETS)
        p.add_argument("--dataset", default=None, help="default: the budget's dataset")
        p.add_argument("--seeds", type=int, nargs="+", default=[0])
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a Config field")
        p.add_argument("--results-dir", default="results")
        p.add_argument("--force", action="store_true", help="re-train even if results exist")
        p.add_argument("--quiet", action="store_true")
        p.add_argument("--no-checkpoint", action="store_true",
                       help="no per-task state in results/ckpt/ (no resume; for a machine whose disk is lost anyway)")
        p.add_argument("--print-config", action="store_true", help="print the resolved configs and exit")
    args = ap.parse_args(argv)
    overrides = parse_set(args.set)
    try:
        if args.cmd == "train":
            cfgs = [preset(args.method, budget=args.budget, dataset=args.dataset, seed=s, **overrides) for s in args.seeds]
        elif args.cmd == "table1":
            cfgs = table1_configs(budget=args.budget, dataset=args.dataset, seeds=tuple(args.seeds), **overrides)
        else:
            cfgs = book_configs(budget=args.budget, dataset=args.dataset, seeds=tuple(args.seeds), **overrides)
    except (TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        for c in cfgs:
            print(json.dumps(dict(stamp=c.stamp, **c.to_dict())))
        return 0
    from birr.train import run_many
    results = run_many(cfgs, results_dir=args.results_dir, force=args.force, progress=not args.quiet,
                       checkpoint=not args.no_checkpoint)
    for r in results:
        m = r["metrics"]
        print(f"{r['stamp']} {r['method']:<8} {r['dataset']}/{r['budget']} seed={r['seed']} "
              f"first20={m['first20']:.4f} first50={m['first50']:.4f} overall={m['overall']:.4f} "
              f"({r['wall_time_s']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
