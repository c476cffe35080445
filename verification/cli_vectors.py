"""``dpxattn vectors``: export conformance vectors, or check a target against them.

    dpxattn vectors export --out DIR [--seed N]
    dpxattn vectors check --target MODULE:ATTR [--dir DIR] [--seed N] [--verbose]

``export`` writes ``DIR/<mechanism>_<law>.json`` (JSON arrays of vectors from the exact
reference) and ``DIR/vectors.schema.json`` (:mod:`dpxattn.verification.vectors`). ``check``
builds the target (``module:attr`` or ``path/to/file.py:attr``, the protocol of
:mod:`dpxattn.verification.target`) from every vector's inputs and uniforms and compares its
released numbers and answers with the expected ones within the vector's tolerance; without
``--dir`` it checks a set freshly exported into a temporary directory. Exit status: 0 if every
vector that applies passed and at least one applied, 1 otherwise, 2 for a usage error (a bad
target, unreadable or malformed files). Proof note: ``proofs_notes/29-target-protocol.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="{export,check}")
    ex = sub.add_parser("export", help="write conformance vectors from the exact reference")
    ex.add_argument("--out", metavar="DIR", required=True, help="directory for the JSON files")
    ex.add_argument("--seed", metavar="N", type=int, default=0,
                    help="root seed of the cases' data and uniforms (default 0)")
    ck = sub.add_parser("check", help="check a target against conformance vectors")
    ck.add_argument("--target", metavar="MODULE:ATTR", required=True,
                    help="'module:attr' or 'path/to/file.py:attr' implementing the target protocol")
    ck.add_argument("--dir", metavar="DIR", default=None,
                    help="vectors directory (default: a fresh export in a temporary directory)")
    ck.add_argument("--seed", metavar="N", type=int, default=0,
                    help="root seed of the fresh export when --dir is not given (default 0)")
    ck.add_argument("--verbose", action="store_true", help="one line per vector")


def _export(args) -> int:
    from dpxattn.verification.vectors import export_vectors

    paths = export_vectors(args.out, root=args.seed)
    for p in paths:
        print(p)
    return 0


def _check(args) -> int:
    from dpxattn.verification.target import TargetError, load_target
    from dpxattn.verification.vectors import VectorFileError, check_vectors, export_vectors

    try:
        target = load_target(args.target)
    except TargetError as exc:
        print(f"dpxattn vectors: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dpxattn-vectors-") as tmp:
        directory = Path(args.dir) if args.dir is not None else Path(tmp)
        if args.dir is None:
            export_vectors(directory, root=args.seed)
        try:
            results = check_vectors(target.obj, directory)
        except (VectorFileError, OSError) as exc:
            print(f"dpxattn vectors: {exc}", file=sys.stderr)
            return 2
    applied = [r for r in results if not r.skipped]
    failed = [r for r in applied if not r.passed]
    skipped: dict[str, int] = {}
    for r in results:
        if r.skipped:
            skipped[r.skipped] = skipped.get(r.skipped, 0) + 1
    print(f"target: {target.spec}")
    for r in results if args.verbose else failed:
        verdict = "skip" if r.skipped else ("PASS" if r.passed else "FAIL")
        print(f"  {verdict}  {r.id:<44} ratio {r.ratio:.3g}  {r.skipped or r.details or ''}")
    for why, count in skipped.items():
        print(f"did not apply: {count} vectors: {why}")
    worst = max((r.ratio for r in applied), default=0.0)
    print(f"{len(applied) - len(failed)} of {len(applied)} applicable vectors passed "
          f"({len(results)} in all; worst |got - expected| / tolerance = {worst:.3g})")
    return 0 if applied and not failed else 1


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) == "export":
        return _export(args)
    if getattr(args, "action", None) == "check":
        return _check(args)
    print("dpxattn vectors: choose 'export' or 'check' (see dpxattn vectors --help)", file=sys.stderr)
    return 2
