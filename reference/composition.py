"""Composition of (eps, delta)-DP mechanisms: basic and advanced (Dwork-Roth 2014), certified.

Paper: composition preliminaries (v2 §2 / App. B); v1/v2 Init signatures with
(delta', c) suggest advanced composition across dimensions, v3's plain (eps, delta) basic
composition. Spec PAPER.md §2.2, §3.3, §3.7, App. A.5. Proof note: ``proofs_notes/05-composition.md``.

This module composes; it never splits a structure's budget. The budget splits of the two
mechanisms live only in :mod:`dpxattn.accounting` (``plan_direct`` / ``plan_tree``); the tests
check that basic composition over a plan's components gives back exactly its total.

Certified means never optimistic: :func:`advanced` returns an upper bound on its eps (interval
arithmetic, rounded up), :func:`advanced_step_eps` a per-step eps whose certified composed eps
is <= the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from dpxattn.errors import ParameterError
from dpxattn.params import check_eps, check_positive_int
from dpxattn.reference._mp import (context, interval_context, interval_upper, resolve_prec,
                                   to_fraction, to_mpf)

__all__ = ["Composed", "basic", "advanced", "advanced_step_eps", "dr14_step_eps"]


@dataclass(frozen=True)
class Composed:
    """A composed guarantee: the composition is (eps, delta)-DP.

    Paper: composition (v2 §2 / App. B); PAPER.md §2.2.
    Proof note: ``proofs_notes/05-composition.md``.
    """

    eps: object
    delta: Fraction


def _eps_component(value, where: str) -> Fraction:
    try:
        q = to_fraction(value, where)
    except ValueError:
        raise ParameterError(where, "must be a finite real number >= 0", value) from None
    if q < 0:
        raise ParameterError(where, "must be a finite real number >= 0", value)
    return q


def _delta_component(value, where: str, *, low_open=False, high=Fraction(1), high_open=False):
    bound = f"must satisfy {'0 <' if low_open else '0 <='} {where} {'<' if high_open else '<='} {high}"
    try:
        q = to_fraction(value, where)
    except ValueError:
        raise ParameterError(where, bound, value) from None
    if q < 0 or (low_open and q == 0) or q > high or (high_open and q == high):
        raise ParameterError(where, bound, value)
    return q


def basic(components) -> tuple[Fraction, Fraction]:
    """Basic composition: k mechanisms (eps_i, delta_i) on the same data, adaptively, give
    (sum eps_i, sum delta_i). Exact: every input is converted to its exact rational value.

    ``components``: an iterable of (eps_i, delta_i) pairs with eps_i >= 0 and
    0 <= delta_i <= 1. Returns ``(eps, delta)`` as Fractions.
    Paper: basic composition (v2 §2 / App. B); spec PAPER.md §2.2; DR14 Thm 3.16.
    Proof note: ``proofs_notes/05-composition.md``.
    """
    eps, delta = Fraction(0), Fraction(0)
    count = 0
    for i, comp in enumerate(components):
        try:
            e, dl = comp
        except (TypeError, ValueError):
            raise ParameterError(f"components[{i}]", "must be an (eps, delta) pair", comp) from None
        eps += _eps_component(e, f"components[{i}].eps")
        delta += _delta_component(dl, f"components[{i}].delta")
        count += 1
    if count == 0:
        raise ParameterError("components", "must contain at least one (eps, delta) pair")
    return eps, delta


def _check_delta_prime(delta_prime) -> Fraction:
    return _delta_component(delta_prime, "delta_prime", low_open=True, high_open=True)


def _advanced_eps_interval(k: int, eps, delta_prime: Fraction, iv):
    """Interval enclosure of sqrt(2 k ln(1/delta')) eps + k eps (e^eps - 1)."""
    e = eps if hasattr(eps, "_mpi_") else iv.mpf(eps)
    dp = iv.mpf(delta_prime.numerator) / delta_prime.denominator
    return iv.sqrt(2 * k * iv.log(1 / dp)) * e + k * e * (iv.exp(e) - 1)


def advanced(k: int, eps, delta, delta_prime, *, prec=None) -> Composed:
    """Advanced composition (DR14 Thm 3.20): k-fold adaptive composition of (eps, delta)-DP
    mechanisms is (eps', k delta + delta')-DP for every 0 < delta' < 1, with

        eps' = sqrt(2 k ln(1/delta')) eps + k eps (e^eps - 1).

    Returns :class:`Composed` with ``eps`` an mpf upper bound on eps' (interval arithmetic,
    rounded up at ``prec`` bits: never optimistic) and ``delta = k delta + delta'`` exactly.
    Paper: advanced composition, v1/v2 (delta', c) parameters (v2 §2 / App. B);
    spec PAPER.md §2.2. Proof note: ``proofs_notes/05-composition.md``.
    """
    k = check_positive_int("k", k)
    check_eps(eps)
    dl = _delta_component(delta, "delta")
    dp = _check_delta_prime(delta_prime)
    prec = resolve_prec(prec)
    ctx = context(prec)
    iv = interval_context(prec + 32)
    ef = to_fraction(eps, "eps")
    e = iv.mpf(ef.numerator) / ef.denominator
    value = _advanced_eps_interval(k, e, dp, iv)
    return Composed(eps=interval_upper(value, ctx), delta=k * dl + dp)


def advanced_step_eps(k: int, eps_total, delta_prime, *, prec=None):
    """The largest per-step eps (to ``prec`` bits) whose advanced-composition eps' is <= eps_total.

    F(eps) = sqrt(2 k ln(1/delta')) eps + k eps (e^eps - 1) is continuous and strictly increasing
    from F(0) = 0, so the root of F = eps_total is unique; bisection keeps the invariant
    "certified F(lo) <= eps_total" (interval upper bound), so the returned eps is always safe:
    ``advanced(k, result, ...).eps <= eps_total``. Within 2^-(prec - 8) relative of the root.
    Paper: the per-coordinate eps_t of DPTreeHighDim under advanced composition ("solve for
    eps_t numerically rather than trusting c", PAPER §3.3, §5 item 16; v2 App. G).
    Proof note: ``proofs_notes/05-composition.md``.
    """
    k = check_positive_int("k", k)
    check_eps(eps_total)
    dp = _check_delta_prime(delta_prime)
    prec = resolve_prec(prec)
    ctx = context(prec)
    iv = interval_context(prec + 32)
    target = to_mpf(eps_total, ctx, "eps_total")

    def safe(x) -> bool:
        return interval_upper(_advanced_eps_interval(k, iv.mpf(x), dp, iv), ctx) <= target

    slope = ctx.sqrt(2 * k * ctx.log(1 / to_mpf(dp, ctx)))
    lo, hi = ctx.zero, target / slope * 2 + 1  # F(eps) >= slope * eps, so the root is below
    while safe(hi):  # defensive: make sure hi is above the root
        hi *= 2
    rel = ctx.ldexp(1, -(prec - 8))
    while hi - lo > rel * hi:
        mid = (lo + hi) / 2
        if safe(mid):
            lo = mid
        else:
            hi = mid
    return lo


def dr14_step_eps(k: int, eps_total, delta_prime, *, prec=None):
    """DR14 Cor 3.21: per-step eps = eps_total / (2 sqrt(2 k ln(1/delta'))), checked.

    The corollary assumes 0 < eps_total < 1; it ALSO needs delta' small enough (for delta'
    near 1, ln(1/delta') -> 0 and the formula's eps grows without bound): the result is checked
    with the certified :func:`advanced` and a :class:`ParameterError` is raised where the
    corollary's conclusion (composed eps' <= eps_total) fails. See
    ``proofs_notes/05-composition.md`` (a sufficient condition is eps_total <= 2 ln(1/delta')
    together with eps_total < 1). Paper: advanced composition (PAPER §2.2, App. A.5).
    """
    k = check_positive_int("k", k)
    check_eps(eps_total)
    dp = _check_delta_prime(delta_prime)
    if not to_fraction(eps_total, "eps_total") < 1:
        raise ParameterError("eps_total", "must satisfy 0 < eps_total < 1 (DR14 Cor 3.21)",
                             eps_total)
    prec = resolve_prec(prec)
    ctx = context(prec)
    eps = to_mpf(eps_total, ctx, "eps_total") / (2 * ctx.sqrt(2 * k * ctx.log(1 / to_mpf(dp, ctx))))
    # round the per-step eps down one ulp so the check below is about the returned value
    eps = ctx.mpf(eps) * (1 - ctx.ldexp(1, -prec + 1))
    if advanced(k, eps, 0, dp, prec=prec).eps > to_mpf(eps_total, ctx, "eps_total"):
        raise ParameterError("delta_prime", "is too large for DR14 Cor 3.21 (the composed eps' "
                             "would exceed eps_total)", delta_prime,
                             hint=f"eps_total <= 2 ln(1/delta') = {2 * math.log(1 / float(dp)):.4g} suffices")
    return eps
