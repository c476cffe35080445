"""Upper bounds on the chance that a power record's planted mutant escapes (its ``beta``).

A power record runs a test on a deliberately wrong variant whose law is known exactly (our own
mutant: the sampler with its scale multiplied by 0.7, an envelope 50x too small, ...) and passes
when the test rejects it. It can fail a correct implementation only if the mutant escapes, so
the harness's false-alarm budget (``dpxattn.verification.harness.false_alarm_budget``) counts
``beta`` = an upper bound on that escape probability at the record's sample size. These are the
bounds the checks use; each is a rigorous inequality, never an estimate:

* :func:`dkw_escape` - Kolmogorov-Smirnov against a law at sup-distance >= ``distance`` from
  the mutant's (Dvoretzky-Kiefer-Wolfowitz with Massart's constant);
* :func:`binomial_window` - exact probability that a binomial count lands inside an acceptance
  window (a bin, a region, an exceedance count);
* :func:`bernstein_escape` - a mean of bounded i.i.d. variables staying within ``gap`` of the
  wrong centre it is tested against (Bernstein's inequality, known variance and range);
* :func:`union` - the escape of a record that needs several tests to reject (sum, capped at 1).

Proof note: ``proofs_notes/20-verification-standards.md`` ("False alarms and power").
"""

from __future__ import annotations

import math
from typing import Iterable

from scipy import stats

__all__ = ["dkw_escape", "binomial_window", "bernstein_escape", "union"]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"sample size must be a positive integer (got {n!r})")
    return int(n)


def dkw_escape(n: int, critical: float, distance: float) -> float:
    """P(KS statistic <= ``critical``) for ``n`` draws of a law G tested against F.

    ``distance`` must be a lower bound on sup_x |G(x) - F(x)| (the sup over any finite set of
    points is one). The KS statistic sup|F_n - F| >= distance - sup|F_n - G|, so the test misses
    only if sup|F_n - G| >= distance - critical, which has probability <= 2 exp(-2 n t^2),
    t = distance - critical (Massart 1990; conservative for discontinuous G). 1 when t <= 0.
    """
    n = _check_n(n)
    t = float(distance) - float(critical)
    if t <= 0:
        return 1.0
    return min(1.0, 2.0 * math.exp(-2.0 * n * t * t))


def binomial_window(n: int, q: float, lo: float, hi: float) -> float:
    """Exact P(lo <= X <= hi) for X ~ Binomial(n, q): the mutant's count stays accepted."""
    n = _check_n(n)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a probability (got {q!r})")
    k_lo, k_hi = math.ceil(lo), math.floor(hi)
    if k_hi < k_lo:
        return 0.0
    p = float(stats.binom.cdf(k_hi, n, q) - stats.binom.cdf(k_lo - 1, n, q))
    return min(1.0, max(p, 0.0))


def bernstein_escape(n: int, gap: float, variance: float, bound: float) -> float:
    """P(|mean_n - mu| >= gap) for ``n`` i.i.d. draws with mean mu, variance <= ``variance`` and
    |X - mu| <= ``bound`` almost surely: <= 2 exp(-n gap^2 / (2 variance + 2 bound gap / 3)).

    A test of "the mean is nu" with acceptance radius rho misses a mutant of mean mu only if
    |mean_n - mu| >= |mu - nu| - rho: call this with gap = |mu - nu| - rho (1 when gap <= 0).
    """
    n = _check_n(n)
    gap, variance, bound = float(gap), float(variance), float(bound)
    if variance < 0 or bound < 0:
        raise ValueError("variance and bound must be >= 0")
    if gap <= 0:
        return 1.0
    return min(1.0, 2.0 * math.exp(-n * gap * gap / (2.0 * variance + 2.0 * bound * gap / 3.0)))


def union(terms: Iterable[float]) -> float:
    """The escape bound of a record whose mutant must be rejected by every one of several tests:
    it escapes if any one test misses, so beta <= the sum of the tests' bounds (capped at 1)."""
    total = 0.0
    for t in terms:
        t = float(t)
        if not 0.0 <= t <= 1.0 or math.isnan(t):
            raise ValueError(f"an escape bound must be a probability (got {t!r})")
        total += t
    return min(1.0, total)
