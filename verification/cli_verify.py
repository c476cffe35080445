"""``dpxattn verify``: run the verification harness and write its report (issue 4; DESIGN §4, §6).

    dpxattn verify [--level quick|standard|full] [--out DIR] [--seed N | --fresh-entropy]
                   [--only CHECK ...] [--scale F] [--list] [--quiet]

Runs the checks of the level with a progress bar on stderr, prints the summary table on stdout,
writes ``DIR/report.md``, ``DIR/report.json`` and ``DIR/plots/*.png``, and exits 0 only if every
record of every check passed (1 otherwise; 2 for a usage error).

* ``quick``: the CI level, about 2 minutes on 2 cores (smaller samples, each statistical test
  still at its stated alpha and still shown to have power);
* ``standard``: the sample sizes of DESIGN §6, within 30 minutes;
* ``full``: ``standard`` with sample sizes multiplied by ``--scale`` (default 4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dpxattn.verification.records import LEVELS

__all__ = ["add_arguments", "run", "DEFAULT_OUT", "DEFAULT_FULL_SCALE"]

DEFAULT_OUT = "verify-out"
#: sample-size multiplier of level `full` when --scale is not given
DEFAULT_FULL_SCALE = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--level", choices=LEVELS, default="quick",
                        help="quick (CI, ~2 min on 2 cores), standard (DESIGN §6 sample sizes, "
                             "<= 30 min) or full (standard x --scale); default quick")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"where report.md, report.json and plots/ go (default {DEFAULT_OUT})")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", metavar="N", type=int, default=None,
                       help="root seed; each check's seed is derived from it (default: fixed, reproducible)")
    seeds.add_argument("--fresh-entropy", action="store_true",
                       help="draw the root seed from OS entropy; it is printed and recorded for replay")
    parser.add_argument("--only", metavar="CHECK", action="append", default=[],
                        help="run only this check (repeatable); see --list")
    parser.add_argument("--scale", metavar="F", type=float, default=None,
                        help=f"level full only: multiply sample sizes by F (default {DEFAULT_FULL_SCALE:g})")
    parser.add_argument("--list", action="store_true", help="list the checks of the level and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from dpxattn.verification.harness import run_harness, select_checks, summary_table
    from dpxattn.verification.report import write_report

    if args.scale is not None and args.level != "full":
        print("dpxattn verify: --scale applies to --level full only", file=sys.stderr)
        return 2
    if args.scale is not None and not args.scale > 0:
        print(f"dpxattn verify: --scale must be > 0 (got {args.scale})", file=sys.stderr)
        return 2
    scale = (args.scale if args.scale is not None else DEFAULT_FULL_SCALE) if args.level == "full" else 1.0
    try:
        selected = select_checks(args.level, args.only)
    except ValueError as exc:
        print(f"dpxattn verify: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for spec in selected:
            print(f"{spec.name:<28} {spec.summary}")
        return 0
    if not selected:
        print(f"dpxattn verify: no checks registered for level {args.level}", file=sys.stderr)
        return 1
    out = Path(args.out)
    result = run_harness(args.level, out_dir=out, root_seed=args.seed, fresh_entropy=args.fresh_entropy,
                         only=args.only, scale=scale, progress=not args.quiet)
    if result.fresh_entropy:
        print(f"fresh entropy: root seed {result.root_seed} (replay: {result.replay_command()})",
              file=sys.stderr)
    md, js = write_report(result, out)
    print(summary_table(result))
    print(f"report: {md}  {js}  plots: {out / 'plots'}")
    return result.exit_status
