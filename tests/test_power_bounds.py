"""The escape bounds of verification/power_bounds.py: exact values, and Monte-Carlo checks that
each bound is >= the escape frequency simulated in a weak setting where escapes are common.

Each Monte-Carlo check is a statistical test: it fails only if the observed escape count
exceeds the binomial (1 - 1e-6)-quantile at the bound, alpha = 1e-6 (fixed seeds in CI).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dpxattn.verification import power_bounds as pb

MC_ALPHA = 1e-6


def _at_most(escapes: int, reps: int, bound: float) -> bool:
    """Escapes consistent with a rate <= bound (one-sided binomial test at MC_ALPHA)."""
    return escapes <= stats.binom.isf(MC_ALPHA, reps, min(bound, 1.0))


# --------------------------------------------------------------------------------------------
# exact values
# --------------------------------------------------------------------------------------------

def test_dkw_escape_values():
    assert pb.dkw_escape(100, 0.1, 0.3) == pytest.approx(2 * math.exp(-2 * 100 * 0.04), rel=1e-12)
    assert pb.dkw_escape(100, 0.3, 0.3) == 1.0 and pb.dkw_escape(100, 0.3, 0.1) == 1.0
    assert pb.dkw_escape(1, 0.0, 0.1) == 1.0  # capped at 1


def test_binomial_window_values():
    n, q = 30, 0.2
    pmf = [math.comb(n, k) * q**k * (1 - q) ** (n - k) for k in range(n + 1)]
    assert pb.binomial_window(n, q, 3, 8) == pytest.approx(sum(pmf[3:9]), rel=1e-12)
    assert pb.binomial_window(n, q, 2.5, 8.7) == pytest.approx(sum(pmf[3:9]), rel=1e-12)
    assert pb.binomial_window(n, q, 9, 8) == 0.0
    upper = pb.binomial_window_upper(n, q, 3, 8)
    assert upper == pytest.approx(min(sum(pmf[:9]), sum(pmf[3:])), rel=1e-12)
    assert upper >= pb.binomial_window(n, q, 3, 8)
    # a window deep in the right tail: the difference of two CDFs near 1 is lost in float64,
    # the upper bound keeps it (P(X >= 25) for Binomial(30, 0.2) ~ 1.4e-13)
    tail = sum(pmf[25:])
    assert pb.binomial_window_upper(n, q, 25, 30) == pytest.approx(tail, rel=1e-9)
    assert pb.binomial_window_upper(n, 0.0, 1, 5) == 0.0 and pb.binomial_window_upper(n, 0.0, 0, 5) == 1.0
    assert pb.binomial_window_upper(n, q, -5, -1) == 0.0 and pb.binomial_window_upper(n, q, 31, 40) == 0.0


def test_never_hit_and_bernstein_and_union_values():
    assert pb.never_hit(1000, 1e-3) == pytest.approx((1 - 1e-3) ** 1000, rel=1e-12)
    assert pb.never_hit(10, 0.0) == 1.0 and pb.never_hit(10, 1.0) == 0.0
    n, gap, var, bound = 500, 0.2, 1.0, 3.0
    want = 2 * math.exp(-n * gap * gap / (2 * var + 2 * bound * gap / 3))
    assert pb.bernstein_escape(n, gap, var, bound) == pytest.approx(want, rel=1e-12)
    assert pb.bernstein_escape(n, 0.0, var, bound) == 1.0
    assert pb.union([1e-9, 2e-9]) == pytest.approx(3e-9) and pb.union([0.7, 0.6]) == 1.0
    with pytest.raises(ValueError):
        pb.union([1.5])
    with pytest.raises(ValueError):
        pb.never_hit(0, 0.5)


def test_chi_square_escape_two_cells_against_the_exact_escape():
    """Two cells: X^2 = (O_1 - n p_1)^2 / (n p_1 p_2), a function of a binomial count; the exact
    escape probability is a finite sum, and the bound must be >= it."""
    n, p1, q1 = 200, 0.5, 0.6
    crit = float(stats.chi2.isf(0.05, 1))
    k = np.arange(n + 1)
    x2 = (k - n * p1) ** 2 / (n * p1 * (1 - p1))
    exact = float(stats.binom.pmf(k[x2 <= crit], n, q1).sum())
    bound, info = pb.chi_square_escape(n, crit, [p1, 1 - p1], [q1, 1 - q1])
    assert exact <= bound <= 1.0
    assert 0.1 < exact and bound < 0.6  # meaningful: a weak setting, not a trivial bound
    assert info["bound_from"] in ("best cell", "projection")
    # identical laws: the bound is at least the null's acceptance probability 1 - alpha
    same, _ = pb.chi_square_escape(n, crit, [p1, 1 - p1], [p1, 1 - p1])
    assert same >= 0.95


def test_chi_square_escape_infinite_cells():
    """Mass where the statistic is infinite: escape needs no draw there, (1 - m)^n."""
    bound, info = pb.chi_square_escape(100, 1e9, [0.5, 0.5], [0.45, 0.45], infinite_mass=0.1)
    assert bound == pytest.approx(0.9**100, rel=1e-12)
    assert info["bound_from"] == "no draw in infinite cells"


def test_chi_square_escape_rejects_bad_input():
    with pytest.raises(ValueError):
        pb.chi_square_escape(10, 1.0, [0.5, 0.5], [1.0])
    with pytest.raises(ValueError):
        pb.chi_square_escape(10, 1.0, [0.0, 1.0], [0.5, 0.5])


# --------------------------------------------------------------------------------------------
# Monte Carlo: bound >= simulated escape frequency where escapes are common
# --------------------------------------------------------------------------------------------

@pytest.mark.statistical
def test_dkw_escape_bounds_a_simulated_ks_miss(rng):
    """Uniform(0, 1.3) draws tested against Uniform(0, 1) at n = 100: the KS test at
    alpha = 0.05 misses (about 3 times in 1000); the DKW bound at the exact distance 1 - 1/1.3
    (about 0.31) covers it."""
    n, reps, f = 100, 10000, 1.3
    crit = float(stats.kstwo.isf(0.05, n))
    dist = 1 - 1 / f  # sup |x/f - x| on [0, 1] (and G(1) = 1/f < 1 = F(1))
    bound = pb.dkw_escape(n, crit, dist)
    assert 0.05 < bound < 1.0
    x = np.sort(f * rng.random((reps, n)), axis=1)
    F = np.clip(x, 0, 1)
    i = np.arange(1, n + 1)
    d = np.maximum((i / n - F).max(axis=1), (F - (i - 1) / n).max(axis=1))
    escapes = int(np.count_nonzero(d <= crit))
    assert escapes > 0  # a weak setting: the test does miss
    assert _at_most(escapes, reps, bound), (escapes, reps, bound)


@pytest.mark.statistical
def test_binomial_window_is_the_simulated_acceptance(rng):
    n, q, lo, hi, reps = 80, 0.3, 20, 28, 20000
    p = pb.binomial_window(n, q, lo, hi)
    hits = int(np.count_nonzero((lambda k: (k >= lo) & (k <= hi))(rng.binomial(n, q, reps))))
    # two-sided: the exact probability, so the frequency is near it from both sides
    assert stats.binomtest(hits, reps, p).pvalue > MC_ALPHA
    assert pb.binomial_window_upper(n, q, lo, hi) >= p


@pytest.mark.statistical
def test_bernstein_escape_bounds_a_simulated_mean_miss(rng):
    """A moments-style test: accept 'mean = nu' when |mean_n - nu| <= rho; the mutant has mean mu."""
    n, reps, nu, rho = 40, 20000, 0.5, 0.05
    a = 0.7  # mutant: Uniform(0, 2a), mean a, variance a^2/3, |X - a| <= a
    mean = (2 * a * rng.random((reps, n))).mean(axis=1)
    escapes = int(np.count_nonzero(np.abs(mean - nu) <= rho))
    bound = pb.bernstein_escape(n, abs(a - nu) - rho, a * a / 3, a)
    assert escapes > 0 and bound < 1.0
    assert _at_most(escapes, reps, bound), (escapes, reps, bound)


@pytest.mark.statistical
def test_chi_square_escape_bounds_a_simulated_pearson_miss(rng):
    """Six cells, n = 60, a mutant that shifts mass from the outer to the inner cells: Pearson's
    test at alpha = 0.01 misses often; the bound covers the simulated miss frequency."""
    n, reps = 60, 20000
    p = np.array([0.1, 0.15, 0.25, 0.25, 0.15, 0.1])
    q = np.array([0.05, 0.15, 0.3, 0.3, 0.15, 0.05])
    crit = float(stats.chi2.isf(0.01, p.size - 1))
    bound, _ = pb.chi_square_escape(n, crit, p, q)
    counts = rng.multinomial(n, q, size=reps)
    x2 = ((counts - n * p) ** 2 / (n * p)).sum(axis=1)
    escapes = int(np.count_nonzero(x2 <= crit))
    assert escapes > 0 and bound < 1.0
    assert _at_most(escapes, reps, bound), (escapes, reps, bound)


@pytest.mark.statistical
def test_chi_square_projection_bound_where_it_is_the_tighter_one(rng):
    """Many cells, each moved a little: no single cell leaves its window, the projection on the
    likelihood ratio does; the bound (from the projection) still covers the simulation."""
    n, reps, cells = 400, 4000, 40
    p = np.full(cells, 1.0 / cells)
    q = p * (1 + 0.6 * np.sign(np.arange(cells) - cells / 2 + 0.5))
    q /= q.sum()
    crit = float(stats.chi2.isf(1e-6, cells - 1))
    bound, info = pb.chi_square_escape(n, crit, p, q)
    assert info["bound_from"] == "projection" and info["best_cell"]["bound"] > 0.5
    assert bound < 0.5
    counts = rng.multinomial(n, q, size=reps)
    x2 = ((counts - n * p) ** 2 / (n * p)).sum(axis=1)
    escapes = int(np.count_nonzero(x2 <= crit))
    assert _at_most(escapes, reps, bound), (escapes, reps, bound)


def test_binomial_window_keeps_tiny_upper_tail_windows():
    """A window far above the mean has a tiny but positive probability (no cancellation to 0)."""
    from math import comb

    n, q = 200, 0.1
    exact = sum(comb(n, k) * q**k * (1 - q) ** (n - k) for k in range(90, 101))
    got = pb.binomial_window(n, q, 90, 100)
    assert 0 < got and abs(got - exact) <= 1e-9 * exact
    low = sum(comb(n, k) * q**k * (1 - q) ** (n - k) for k in range(0, 3))
    assert abs(pb.binomial_window(n, q, 0, 2) - low) <= 1e-9 * low
