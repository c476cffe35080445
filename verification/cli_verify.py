"""``dpxattn verify``: run the verification harness and write its report (DESIGN §4, §6; note 20).

    dpxattn verify [--level quick|standard|full] [--out DIR] [--seed N | --fresh-entropy]
                   [--only CHECK ...] [--scale F] [--sweep K] [--list] [--quiet]
    dpxattn verify --target MODULE:ATTR [--level ...] [--only CHECK ...] [--sweep K] ...

Runs the checks of the level with a progress bar on stderr, prints the summary table on stdout,
writes ``DIR/report.md``, ``DIR/report.json`` and ``DIR/plots/*.png``, and exits 0 only if every
record of every check passed (1 otherwise; 2 for a usage error).

* ``quick``: the CI level, about 4 minutes on 2 cores (smaller samples, each statistical test
  still at its stated alpha and still shown to have power);
* ``standard``: the sample sizes of DESIGN §6, within 30 minutes;
* ``full``: ``standard`` with sample sizes multiplied by ``--scale`` (default 4).

``--target`` names the implementation under test (default: dpxattn's own fast path); every
check that reaches it through the target protocol or checks the reference's proven constants
runs against it, and the report lists the checks that test dpxattn's internals as not applicable,
with their reason (note 29).

``--sweep K`` runs the level K times, under the root seeds N, N+1, ..., N+K-1 (``--seed N``;
default the fixed root) or under K fresh OS roots (``--fresh-entropy``), prints a row per run
and writes ``DIR/sweep.md`` and ``DIR/sweep.json`` (``dpxattn.verification.sweep``); it exits 0
only if every run passed. That is how the false-alarm figures in the README were measured.
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
                        help="quick (CI, ~4 min on 2 cores), standard (DESIGN §6 sample sizes, "
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
    parser.add_argument("--sweep", metavar="K", type=int, default=None,
                        help="run the level K times (root seeds N..N+K-1 from --seed, or K fresh "
                             "roots with --fresh-entropy) and write DIR/sweep.md, DIR/sweep.json")
    parser.add_argument("--list", action="store_true", help="list the checks of the level and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--target", metavar="MODULE:ATTR", default=None,
                        help="run the harness against anyone's implementation of the target "
                             "protocol: 'module:attr' or 'path/to/file.py:attr' (default: "
                             "dpxattn's own fast path, dpxattn.verification.target:FastTarget); "
                             "the checks that test dpxattn's internals are listed as not applicable")


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
    target = None
    if args.target is not None:
        from dpxattn.verification.target import TargetError, load_target

        try:
            target = load_target(args.target)
        except TargetError as exc:
            print(f"dpxattn verify: {exc}", file=sys.stderr)
            return 2
    try:
        selected = select_checks(args.level, args.only)
    except ValueError as exc:
        print(f"dpxattn verify: {exc}", file=sys.stderr)
        return 2
    if args.list:
        from dpxattn.verification.target import is_own_target

        own = is_own_target(target)
        for spec in selected:
            where = spec.reaches if spec.applies_to(own) else "does not apply (internals)"
            print(f"{spec.name:<28} [{where}] {spec.summary}")
        return 0
    if not selected:
        print(f"dpxattn verify: no checks registered for level {args.level}", file=sys.stderr)
        return 1
    out = Path(args.out)
    if args.sweep is not None:
        return _sweep(args, out, scale, target)
    result = run_harness(args.level, out_dir=out, root_seed=args.seed, fresh_entropy=args.fresh_entropy,
                         only=args.only, scale=scale, progress=not args.quiet, target=target)
    if result.fresh_entropy:
        print(f"fresh entropy: root seed {result.root_seed} (replay: {result.replay_command()})",
              file=sys.stderr)
    md, js = write_report(result, out)
    if target is not None:
        print(f"target: {target.spec} (mechanisms: {', '.join(target.obj.mechanisms)})")
    for line in result.not_applicable:
        print(f"did not apply: {line}")
    print(summary_table(result))
    print(f"report: {md}  {js}  plots: {out / 'plots'}")
    return result.exit_status


def _sweep(args: argparse.Namespace, out: Path, scale: float, target=None) -> int:
    from dpxattn.verification.sweep import render_sweep, run_sweep, write_sweep

    if args.sweep < 1:
        print(f"dpxattn verify: --sweep needs K >= 1 (got {args.sweep})", file=sys.stderr)
        return 2
    result = run_sweep(args.level, runs=args.sweep, first_seed=args.seed,
                       fresh_entropy=args.fresh_entropy, out_dir=out, only=args.only, scale=scale,
                       stream=None if args.quiet else sys.stderr, target=target)
    md, js = write_sweep(result, out)
    print(render_sweep(result))
    print(f"sweep: {md}  {js}")
    return 0 if result.passed else 1
