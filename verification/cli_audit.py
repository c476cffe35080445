"""``dpxattn audit``: one empirical privacy audit, printed (DESIGN §4; note 21).

    dpxattn audit --mechanism direct|tree|<mutant> [--eps E] [--delta D] [--samples N]
                  [--seed N] [--answers]

Runs one case of check 4 (:mod:`dpxattn.verification.checks_privacy`) with the given privacy
parameters: the worst-case neighbouring pair is found by the sensitivity search, the chosen
variant is sampled ``N`` times on each side through the real release code, and the auditor
(:func:`dpxattn.verification.audit.audit`, confidence 1 - 1e-6) prints its eps lower bound next
to the eps that the audited numbers claim. ``--answers`` audits query answers instead of
released numbers (variants that have such a case). Mutant names:
``dpxattn.verification.mutants.MUTANT_NAMES``.

Exit status: 0 when the outcome is the expected one (a real mechanism not exposed, a mutant
exposed), 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

__all__ = ["add_arguments", "run", "auditable", "DEFAULT_SAMPLES"]

DEFAULT_SAMPLES = 100_000


def auditable() -> tuple[str, ...]:
    """Variants with an audit case in check 4 (``sorted-positions-tree`` is exposed by the exact
    sensitivity search of check 3 instead: its leak is spread too thin for a black-box audit)."""
    from dpxattn.verification.checks_privacy import audit_cases

    return tuple(dict.fromkeys(c.variant for c in audit_cases()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mechanism", required=True, choices=auditable(),
                        help="a real mechanism (direct, tree) or a deliberately wrong mutant "
                             "(sorted-positions-tree is exposed by `dpxattn verify --only "
                             "sensitivity` instead)")
    parser.add_argument("--eps", type=float, default=None,
                        help="the structure's total eps (default: the check-4 configuration's)")
    parser.add_argument("--delta", type=float, default=None,
                        help="the structure's total delta (default: the check-4 configuration's)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"draws per side (default {DEFAULT_SAMPLES:,})")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the audit's generator (default: drawn from OS entropy and printed)")
    parser.add_argument("--answers", action="store_true",
                        help="audit query answers instead of released numbers")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from dpxattn.errors import DPXAttnError
    from dpxattn.verification.checks_privacy import AUDIT_ALPHA, default_case, run_case
    from dpxattn.verification.mutants import get_variant

    if args.samples < 100:
        print(f"dpxattn audit: --samples must be >= 100 (got {args.samples})", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
    try:
        case = default_case(args.mechanism, eps=args.eps, delta=args.delta, answers=args.answers)
        variant = get_variant(args.mechanism)
        t0 = time.perf_counter()
        cr = run_case(case, args.samples, np.random.default_rng(seed))
    except DPXAttnError as exc:
        print(f"dpxattn audit: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    print(f"dpxattn audit: {variant.name}{' (MUTANT: ' + variant.description + ')' if variant.mutant else ''}")
    if variant.mutant:
        print(f"  demonstrates: {variant.demonstrates}")
    print(f"  structure: {case.config.describe()}")
    print(f"  audited: {case.selection}; neighbouring pair: {cr.pair}")
    claim = "the structure's total" if case.claim is None else \
        " + ".join(f"{c} x share({k})" for k, c in case.claim)
    print(f"  claimed: eps = {cr.claimed_eps:.6g}, delta = {cr.claimed_delta:.6g} ({claim})")
    print(f"  samples: {cr.samples:,} per side, seed {seed} (seeded generator: audits only), "
          f"{seconds:.1f}s")
    for line in str(cr.result).splitlines():
        print("  " + line)
    exposed = cr.exposed
    if exposed:
        verdict = (f"EXPOSED: the eps lower bound {cr.result.eps_lower_bound:.4f} exceeds the claimed "
                   f"eps {cr.claimed_eps:.4g} (confidence {1 - AUDIT_ALPHA:g})")
    else:
        verdict = (f"not exposed: the eps lower bound {cr.result.eps_lower_bound:.4f} is <= the claimed "
                   f"eps {cr.claimed_eps:.4g} (no violation found; a lower bound never proves privacy)")
    print(f"  verdict: {verdict}")
    expected = exposed if variant.mutant else not exposed
    print(f"  expected for a {'mutant' if variant.mutant else 'real mechanism'}: "
          f"{'yes' if expected else 'NO'}")
    return 0 if expected else 1
