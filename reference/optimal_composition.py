"""Optimal composition of k identical (eps, delta)-DP mechanisms: exact delta(eps), certified.

Not in the paper (the paper composes basically, PAPER §2.2, §3.7). The tree mechanism releases
K = l (d_v + 1)(3 r L + 2) components (every copy, column, coordinate, moment, level, c0, c1);
basic composition gives each eps/K. The *optimal* composition theorem (Kairouz, Oh & Viswanath
2015, Thm 3.3; the closed form for every eps of Murtagh & Vadhan 2016) says exactly how much
privacy k (eps0, delta0)-DP mechanisms, composed adaptively, lose: no analysis that uses only
the components' (eps0, delta0) guarantees can do better, and it is a privacy-loss-distribution
computation:

* an (eps0, delta0)-DP mechanism is dominated by the pair P = (delta0, (1 - delta0) e^eps0/(1 +
  e^eps0), (1 - delta0)/(1 + e^eps0), 0), Q = its mirror image (KOV15, Thm 2.1);
* the k-fold product of that pair has, outside the delta0 atoms, the privacy loss (k - 2 j) eps0
  with the binomial law of j, so for every E >= 0

      delta(E) = 1 - (1 - delta0)^k + (1 - delta0)^k sum_{j : (k - 2j) eps0 > E}
                 C(k, j) (e^{(k - j) eps0} - e^E e^{j eps0}) / (1 + e^eps0)^k.

:func:`homogeneous_delta` evaluates that sum in interval arithmetic (every term's enclosure
clipped below at 0, so the returned bound is never below the true delta);
:func:`homogeneous_step_eps` finds the largest per-component eps0 whose composed delta at the
target eps is certified <= the target delta. Used by :func:`dpxattn.accounting.plan_tree` with
``composition="pld"``. ``dp-accounting``'s privacy-loss distributions (a test dependency) are
the outside oracle (``tests/test_optimal_composition.py``).
Proof note: ``proofs_notes/05-composition.md`` ("Optimal composition").
"""

from __future__ import annotations

import math
from fractions import Fraction

from dpxattn.errors import ParameterError
from dpxattn.params import check_eps, check_positive_int
from dpxattn.reference.composition import _delta_component
from dpxattn.reference._mp import (context, interval_context, interval_upper, resolve_prec,
                                   to_fraction)

__all__ = ["homogeneous_delta", "homogeneous_step_eps"]


def _iv(iv, q: Fraction):
    return iv.mpf(q.numerator) / q.denominator


def _delta_enclosure_upper(k: int, eps0: Fraction, delta0: Fraction, eps_total: Fraction, iv, ctx):
    """Upper end (an mpf of ``ctx``, rounded up) of the enclosure of delta(eps_total)."""
    e, E = _iv(iv, eps0), _iv(iv, eps_total)
    ep, em = iv.exp(e), iv.exp(-e)
    A = (1 + em) ** (-k)                 # C(k, j) e^{(k-j) e} / (1 + e^e)^k at j = 0
    B = iv.exp(E) * (1 + ep) ** (-k)     # e^E C(k, j) e^{j e} / (1 + e^e)^k at j = 0
    total = iv.mpf(0)
    zero = iv.mpf(0)
    for j in range(k + 1):
        if (k - 2 * j) * eps0 <= eps_total:   # exact: every later term is <= 0 too
            break
        term = A - B
        # the positive part of the true term lies in [max(lo, 0), max(hi, 0)]
        total += iv.mpf([max(term.a, zero.a), max(term.b, zero.b)])
        A = A * (k - j) / (j + 1) * em
        B = B * (k - j) / (j + 1) * ep
    keep = (1 - _iv(iv, delta0)) ** k
    return interval_upper(1 - keep + keep * total, ctx)


def homogeneous_delta(k: int, eps0, delta0, eps_total, *, prec=None):
    """Certified upper bound (mpf) on delta(eps_total) of k-fold composed (eps0, delta0)-DP.

    The exact optimal-composition delta (module docstring; KOV15 Thm 3.3, MV16 Thm 1.5), in
    interval arithmetic at ``prec`` + 32 bits, rounded up: never below the true value.
    ``k`` >= 1, ``eps0`` > 0, 0 <= ``delta0`` < 1, ``eps_total`` >= 0. O(k) interval operations.
    Paper: none (the paper composes basically, PAPER.md §2.2, §3.7; KOV15, MV16).
    Proof note: ``proofs_notes/05-composition.md`` ("Optimal composition").
    """
    k = check_positive_int("k", k)
    check_eps(eps0)
    e0 = to_fraction(eps0, "eps0")
    d0 = _delta_component(delta0, "delta0", high_open=True)
    E = to_fraction(eps_total, "eps_total")
    if E < 0:
        raise ParameterError("eps_total", "must be >= 0", eps_total)
    prec = resolve_prec(prec)
    return _delta_enclosure_upper(k, e0, d0, E, interval_context(prec + 32), context(prec))


def _delta_float(k: int, eps0: float, delta0: float, eps_total: float) -> float:
    """The same delta in float64 log space (a fast guide for the search; never a certificate)."""
    log_norm = k * math.log1p(math.exp(eps0))
    total = 0.0
    log_binom = 0.0
    for j in range(k + 1):
        if (k - 2 * j) * eps0 <= eps_total:
            break
        a = log_binom + (k - j) * eps0 - log_norm
        b = log_binom + eps_total + j * eps0 - log_norm
        total += math.exp(a) * -math.expm1(b - a)
        log_binom += math.log(k - j) - math.log(j + 1)
    keep = (1 - delta0) ** k
    return 1 - keep + keep * total


def homogeneous_step_eps(k: int, eps_total, delta_total, delta0, *, prec=None) -> Fraction:
    """The largest per-component eps0 (a dyadic Fraction, to about 2^-20 relative) such that k-fold
    composition of (eps0, delta0)-DP mechanisms is certified (eps_total, delta_total)-DP.

    Requires k delta0 < delta_total (the delta0 atoms alone cost about k delta0). A float64
    bisection finds the root of delta(eps0) = delta_total (delta increases with eps0); the
    candidate is then lowered by 2^-20 relative steps until :func:`homogeneous_delta` certifies
    it, so the result is always safe. Basic composition's eps_total / k is always safe too, and
    the result is never below it (returned when it is larger than the search's value).
    Paper: none (the paper composes basically, PAPER.md §2.2, §3.7; KOV15, MV16).
    Proof note: ``proofs_notes/05-composition.md`` ("Optimal composition").
    """
    k = check_positive_int("k", k)
    check_eps(eps_total)
    E = to_fraction(eps_total, "eps_total")
    D = _delta_component(delta_total, "delta_total", low_open=True, high_open=True)
    d0 = _delta_component(delta0, "delta0", high_open=True)
    if k * d0 >= D:
        raise ParameterError("delta0", f"must satisfy k delta0 < delta_total (k = {k})", delta0)
    basic = E / k
    target = float(D)
    lo, hi = float(basic), float(E)
    if _delta_float(k, hi, float(d0), float(E)) <= target:
        lo = hi
    else:
        for _ in range(200):
            mid = (lo + hi) / 2
            if _delta_float(k, mid, float(d0), float(E)) <= target:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 2.0 ** -40 * hi:
                break
    candidate = Fraction(lo)                      # a float: an exact dyadic rational
    for _ in range(64):
        if candidate <= basic:
            return basic
        if to_fraction(homogeneous_delta(k, candidate, d0, E, prec=prec), "delta") <= D:
            return candidate
        candidate = Fraction(float(candidate) * (1 - 2.0 ** -20))
    return basic
