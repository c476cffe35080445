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
* :func:`union` - the escape of a record that needs several tests to reject (sum, capped at 1);
* :func:`binomial_window_upper` - an upper bound on :func:`binomial_window` that stays accurate
  in either tail (no difference of two CDFs near 1);
* :func:`never_hit` - ``n`` draws all miss an event of mass ``q`` (a support or zero-bin test);
* :func:`chi_square_escape` - Pearson's statistic on fixed cells stays below a critical value:
  every cell must then stay in its window ``|O_j - n p_j| <= sqrt(c n p_j)``, bounded by the
  exact binomial probability of the best cell.

Proof note: ``proofs_notes/20-verification-standards.md`` ("False alarms and power").
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
from scipy import stats

__all__ = ["dkw_escape", "binomial_window", "bernstein_escape", "union", "binomial_window_upper",
           "never_hit", "chi_square_escape"]


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
    """Exact P(lo <= X <= hi) for X ~ Binomial(n, q): the mutant's count stays accepted.

    A window above the mean is computed from survival functions, one below it from CDFs, so a
    window deep in either tail keeps its tiny probability (a difference of two CDFs near 1
    would cancel to 0 and understate the escape)."""
    n = _check_n(n)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a probability (got {q!r})")
    k_lo, k_hi = math.ceil(lo), math.floor(hi)
    if k_hi < k_lo:
        return 0.0
    if k_lo > n * q:
        p = float(stats.binom.sf(k_lo - 1, n, q) - stats.binom.sf(k_hi, n, q))
    else:
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


def binomial_window_upper(n: int, q: float, lo: float, hi: float) -> float:
    """An upper bound on P(lo <= X <= hi), X ~ Binomial(n, q): min(P(X <= hi), P(X >= lo)).

    Equal to :func:`binomial_window` up to the smaller tail outside the window, and accurate in
    float64 wherever the window lies in one tail (each term is one CDF or one survival function,
    never a difference of two numbers near 1, which :func:`binomial_window` computes as 0 there).
    """
    n = _check_n(n)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a probability (got {q!r})")
    k_lo, k_hi = math.ceil(lo), math.floor(hi)
    if k_hi < k_lo or k_hi < 0 or k_lo > n:
        return 0.0
    below = float(stats.binom.cdf(k_hi, n, q))
    above = float(stats.binom.sf(k_lo - 1, n, q))
    return min(1.0, max(min(below, above), 0.0))


def never_hit(n: int, q: float) -> float:
    """P(no one of ``n`` i.i.d. draws lands in an event of mass ``q``) = (1 - q)^n, exactly."""
    n = _check_n(n)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a probability (got {q!r})")
    if q == 1.0:
        return 0.0
    return float(math.exp(n * math.log1p(-q)))


def chi_square_escape(n: int, critical: float, null_probs, mutant_probs, *,
                      infinite_mass: float = 0.0, slack: float = 1e-9) -> tuple[float, dict]:
    """Upper bound on P(Pearson X^2 <= ``critical``) for ``n`` multinomial draws of a mutant.

    X^2 = sum_j (O_j - n p_j)^2 / (n p_j) over cells of null probabilities ``null_probs`` (all
    > 0); the draws fall in cell j with the mutant's probability ``mutant_probs[j]`` (the cells
    may miss some of the mutant's mass: ``infinite_mass``, where a draw makes X^2 infinite).
    The smallest of three rigorous bounds on the escape {X^2 <= c}:

    * **best cell**: each term is <= X^2, so every cell has |O_j - n p_j| <= sqrt(c n p_j);
      O_j ~ Binomial(n, q_j): the smallest exact window probability (:func:`binomial_window_upper`);
    * **projection**: by Cauchy-Schwarz, X^2 >= (sum_j w_j (O_j - n p_j))^2 / (n sum_j w_j^2 p_j)
      for any weights; with w_j = q_j / p_j - 1, S = sum_j w_j O_j is a sum of ``n`` i.i.d. draws
      of w (0 off the cells) of mean E_q w and escape needs S/n <= E_p w + sqrt(c E_p w^2 / n),
      i.e. a deviation of at least gap = E_q w - E_p w - sqrt(c E_p w^2 / n) = chi2(q||p) - ...
      below its mean: Bernstein (:func:`bernstein_escape`) with the exact variance Var_q w and
      range max |w_j - E_q w| over the cells the mutant can reach;
    * **no infinite cell**: no draw lands where X^2 is infinite, :func:`never_hit`.

    ``slack`` widens each acceptance radius by this relative amount (float rounding of the
    statistic). Returns the bound and the inputs of each.
    """
    n = _check_n(n)
    p = np.asarray(null_probs, dtype=np.float64)
    q = np.asarray(mutant_probs, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1 or p.size == 0:
        raise ValueError("null_probs and mutant_probs must be 1-D arrays of one length")
    if np.any(p <= 0) or np.any(q < 0) or np.any(q > 1):
        raise ValueError("null cell probabilities must be > 0 and mutant ones in [0, 1]")
    c = float(critical) * (1.0 + slack) ** 2
    # best cell
    half = np.sqrt(c * n * p)
    lo = np.ceil(n * p - half)
    hi = np.floor(n * p + half)
    below = stats.binom.cdf(hi, n, q)
    above = stats.binom.sf(lo - 1, n, q)
    window = np.where(hi < lo, 0.0, np.clip(np.minimum(below, above), 0.0, 1.0))
    j = int(np.argmin(window))
    cell = float(window[j])
    info = {"best_cell": {"bound": cell, "cell": j, "cells": int(p.size), "null_prob": float(p[j]),
                          "mutant_prob": float(q[j]), "window": [float(lo[j]), float(hi[j])],
                          "expected_under_mutant": float(n * q[j])}}
    # projection on w = q/p - 1
    w = q / p - 1.0
    e_q = float(np.sum(q * w))
    e_p = float(np.sum(p * w))
    e_p2 = float(np.sum(p * w * w))
    var_q = max(float(np.sum(q * (w - e_q) ** 2)), 0.0)
    reach = q > 0
    rng = float(np.max(np.abs(w[reach] - e_q))) if reach.any() else 0.0
    if infinite_mass > 0:  # a draw off the cells has w = 0
        var_q += float(infinite_mass) * e_q * e_q
        rng = max(rng, abs(e_q))
    gap = e_q - e_p - math.sqrt(c * e_p2 / n)
    proj = bernstein_escape(n, gap, var_q, rng)
    info["projection"] = {"bound": proj, "chi2_divergence": e_p2, "gap": gap,
                          "variance": var_q, "range": rng}
    bounds = {"best cell": cell, "projection": proj}
    if infinite_mass > 0:
        none = never_hit(n, float(infinite_mass))
        info["no_draw_in_infinite_cells"] = {"bound": none, "mass": float(infinite_mass)}
        bounds["no draw in infinite cells"] = none
    name = min(bounds, key=bounds.get)
    info["bound_from"] = name
    return min(1.0, bounds[name]), info


def _summed_y_range(n_b: int, q: float) -> tuple[int, int]:
    """The range of Y ~ Binomial(n_b, q) summed exactly: its mean +- 40 standard deviations
    (+ 40), clipped to [0, n_b]. What lies outside is bounded by its exact binomial mass (below:
    times the miss chance at y_lo; above: by 1)."""
    mean, sd = n_b * q, math.sqrt(n_b * q * (1.0 - q))
    y_lo = max(0, int(math.floor(mean - 40.0 * sd - 40.0)))
    y_hi = min(n_b, int(math.ceil(mean + 40.0 * sd + 40.0)))
    return y_lo, y_hi


def _x_crit_window(misses, q_hi: np.ndarray, n_a: int, alpha: float, claim: float, delta: float,
                   margin: float) -> tuple[np.ndarray, np.ndarray]:
    """First try at x_crit(y) for every row of ``q_hi``: guessed by the Clopper-Pearson duality
    (p_lo(x) <= theta iff P(Binomial(n_a, theta) >= x) >= alpha, theta = delta + e^claim q_hi),
    then settled with the audit's own functions (``misses``) on the window guess - 3 .. guess + 3.

    Returns ``(x_crit, bracketed)``: ``bracketed`` marks the rows whose window starts inside the
    miss set, ends outside it and crosses once (misses(-1): no count, true); on the other rows
    ``x_crit`` is not settled (:func:`_x_crit_bisection`).
    """
    theta = np.minimum(delta + np.exp(claim + margin) * q_hi, 1.0)
    guess = np.asarray(stats.binom.isf(alpha, n_a, theta), dtype=np.float64)
    guess = np.where(np.isfinite(guess), guess, 0.0).astype(np.int64)
    offsets = np.arange(-3, 4)
    window = np.clip(guess[:, None] + offsets[None, :], -1, n_a + 1)
    inside = np.clip(window, 0, n_a)
    m = misses(inside, np.broadcast_to(q_hi[:, None], inside.shape)) | (window < 0)
    m &= window <= n_a
    bracketed = m[:, 0] & ~m[:, -1] & np.all(np.diff(m.astype(np.int8), axis=1) <= 0, axis=1)
    x_crit = np.where(m, window, -1).max(axis=1)
    return x_crit, bracketed


def _x_crit_bisection(misses, qh: np.ndarray, n_a: int) -> np.ndarray:
    """x_crit for the rows ``qh`` whose window did not bracket the end: bisection on [-1, n_a]
    (the last x that misses; -1 when even x = 0 does not), all rows at once."""
    lo_x = np.full(len(qh), -1, dtype=np.int64)
    hi_x = np.full(lo_x.shape, n_a + 1, dtype=np.int64)
    while np.any(hi_x - lo_x > 1):
        mid = (lo_x + hi_x) // 2
        mm = misses(np.clip(mid, 0, n_a), qh)
        open_ = hi_x - lo_x > 1
        lo_x = np.where(mm & open_, mid, lo_x)
        hi_x = np.where(~mm & open_, mid, hi_x)
    return lo_x


def _miss_sum(ys: np.ndarray, x_crit: np.ndarray, n_a: int, p: float, n_b: int,
              q: float) -> tuple[float, float]:
    """The exact miss probability given x_crit(y) on the summed range ``ys`` = y_lo .. y_hi:
    ``(sum_y P(Y = y) P(X <= x_crit(y)) + tails, tails)``, where tails = P(Y < y_lo) times
    P(X <= x_crit(y_lo)) (x_crit is non-decreasing) plus P(Y > y_hi) (counted as a miss)."""
    y_lo, y_hi = int(ys[0]), int(ys[-1])
    pmf_y = stats.binom.pmf(ys, n_b, q)
    cdf_x = np.where(x_crit < 0, 0.0, stats.binom.cdf(np.maximum(x_crit, 0), n_a, p))
    below = float(stats.binom.cdf(y_lo - 1, n_b, q)) if y_lo > 0 else 0.0
    above = float(stats.binom.sf(y_hi, n_b, q))
    beta = float(np.sum(pmf_y * cdf_x)) + below * float(cdf_x[0]) + above
    return beta, below * float(cdf_x[0]) + above


def clopper_pearson_escape(n_a: int, p: float, n_b: int, q: float, claim: float, delta: float,
                           alpha: float, *, margin: float = 1e-9) -> tuple[float, dict]:
    """Upper bound on the chance that a FIXED event's eps lower bound does not exceed ``claim``.

    The test (the audit's estimate for one event chosen before the draws): X of ``n_a`` draws
    of D and Y of ``n_b`` draws of D' fall in the event; it reports ``ln((p_lo - delta) / q_hi)``
    with one-sided Clopper-Pearson bounds at level ``alpha`` each
    (:func:`dpxattn.verification.audit.clopper_pearson_lower` / ``_upper``, the audit's own
    functions) and exposes the mechanism when that exceeds ``claim``. X ~ Binomial(n_a, p_X)
    with p_X >= ``p`` and Y ~ Binomial(n_b, q_Y) with q_Y <= ``q``, independent. The bound is
    increasing in x and decreasing in y, so the miss probability is largest at (p, q): for each
    y, the largest x that misses, x_crit(y) (found by bisection with the audit's functions,
    ``margin`` absorbing their float rounding), gives

        beta = sum_y P(Y = y) P(X <= x_crit(y)) + P(Y > y_max),

    over y up to y_max = the mean of Y + 40 standard deviations + 40 (what lies above is counted
    as a miss); y below y_lo (the mean - 40 sd - 40) count P(Y < y_lo) P(X <= x_crit(y_lo))
    (x_crit is non-decreasing). Exact binomial sums otherwise. Returns the bound and its inputs.
    """
    from dpxattn.verification.audit import (clopper_pearson_lower, clopper_pearson_upper,
                                            eps_from_bounds)

    n_a, n_b = _check_n(n_a), _check_n(n_b)
    for name, v in (("p", p), ("q", q)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be a probability (got {v!r})")
    y_lo, y_hi = _summed_y_range(n_b, q)
    ys = np.arange(y_lo, y_hi + 1)
    q_hi = np.asarray(clopper_pearson_upper(ys, n_b, alpha), dtype=np.float64)

    def misses(x: np.ndarray, qh: np.ndarray) -> np.ndarray:
        lo = np.asarray(clopper_pearson_lower(x, n_a, alpha), dtype=np.float64)
        return eps_from_bounds(lo, qh, delta) <= claim + margin

    # the miss set {x : misses} is an initial segment (the bound increases with x); its end
    # x_crit(y): the duality guess settled on a window, else a bisection
    x_crit, bracketed = _x_crit_window(misses, q_hi, n_a, alpha, claim, delta, margin)
    todo = ~bracketed
    if np.any(todo):
        x_crit[todo] = _x_crit_bisection(misses, q_hi[todo], n_a)
    x_crit = np.minimum(x_crit, n_a)
    beta, tails = _miss_sum(ys, x_crit, n_a, p, n_b, q)
    beta = min(1.0, max(beta, 0.0))
    if not (p == 1.0 and q == 0.0):  # not a point mass: a miss has positive chance; a bound
        beta = max(beta, 1e-300)     # below 1e-300 (float underflow) is stated as 1e-300
    return beta, {"rule": "sum_y P(Y = y) P(X <= x_crit(y)) + tails", "bound": beta,
                  "bisection_rows": int(todo.sum()), "n_a": n_a, "p": float(p), "n_b": n_b, "q": float(q), "claim": float(claim),
                  "delta": float(delta), "alpha_per_bound": float(alpha),
                  "y_range": [int(y_lo), int(y_hi)], "x_crit_at_y_lo": int(x_crit[0]),
                  "expected_x": n_a * float(p), "tails": tails}
