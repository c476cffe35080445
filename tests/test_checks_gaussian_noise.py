"""The harness check of the Gaussian samplers (verification/checks_gaussian_noise.py).

The check itself runs at quick with a fixed seed (each statistical record alpha = 1e-6; the whole
run's false-alarm chance is its budget, 1.5e-5). The pieces it rests on are checked against exact
values: the CDF brackets against the reference's pmf, the midpoint bound against summation, the
Chernoff windows against the exact chi-square law, and the power against wrong samplers.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from dpxattn.reference import discrete_gaussian as dg
from dpxattn.verification import checks_gaussian_noise as cg
from dpxattn.verification.records import CheckContext
from dpxattn.verification.registry import CHECKS


def test_registered_after_the_tlap_samplers():
    names = [c.name for c in CHECKS]
    assert names.index("gaussian-noise-distribution") == names.index("secure-noise-distribution") + 1


@pytest.mark.statistical
def test_quick_run_passes_and_its_budget_is_within_the_share():
    records = cg.check_gaussian_noise(CheckContext(level="quick", seed=20261203))
    assert all(r.passed for r in records), [r.name for r in records if not r.passed]
    budget = sum(r.false_failure_rate() for r in records)
    assert budget <= 5e-5
    powers = [r for r in records if r.kind == "power"]
    assert len(powers) == 2 * len(cg.configs_for("quick"))
    assert all(r.beta < 1e-20 for r in powers)


@pytest.mark.parametrize("sigma2", [Fraction(1), Fraction(5, 2), dg.grid_sigma2(12)])
def test_summed_cdf_bracket_contains_the_reference_pmf_sums(sigma2):
    law = cg.GaussianLaw("discrete", sigma2, "t")
    ys = np.arange(-12, 13)
    lo, hi = law.cdf_bracket(ys.astype(float))
    exact, acc = [], 0.0
    low_tail = float(sum(dg.pmf(y, sigma2, prec=80) for y in range(-400, -12)))
    for y in ys:
        acc += float(dg.pmf(int(y), sigma2, prec=80))
        exact.append(low_tail + acc)
    assert np.all(lo <= np.array(exact) + 1e-15) and np.all(np.array(exact) <= hi + 1e-15)
    assert np.all(hi - lo < 1e-9)


@pytest.mark.parametrize("t", [1001, 1800])
def test_midpoint_bound_covers_the_summed_cdf(t):
    """Where both are computable, Phi((m + 1/2) / sigma) is within midpoint_cdf_error of the
    summed CDF (the bound is what the large-sigma laws rely on)."""
    law = cg.GaussianLaw("discrete", dg.grid_sigma2(t), "t")
    xs = np.floor(np.linspace(-5, 5, 41) * law.sigma)
    summed, err = law._summed_cdf(xs)
    from scipy import special
    gap = np.max(np.abs(summed - special.ndtr((xs + 0.5) / law.sigma)))
    bound = cg.midpoint_cdf_error(law.sigma)
    assert gap <= bound + err
    assert bound < 0.2 / law.sigma ** 2  # and it is not vacuous
    with pytest.raises(ValueError, match="sigma >= 1"):
        cg.midpoint_cdf_error(0.5)


def test_ks_statistic_matches_scipy_for_a_continuous_law():
    law = cg.GaussianLaw("float", 4.0, "f")
    x = np.random.default_rng(3).normal(0, 2, 5000)
    ours = cg.ks_statistic(x, law)
    ref = stats.kstest(x, stats.norm(scale=2).cdf).statistic
    assert ref - 2e-13 <= ours <= ref + 1e-15


def test_ks_statistic_for_an_integer_law_sees_the_step_below():
    """One draw at 0 of N_Z(0, 1): F_n jumps from 0 to 1 at 0; the distance is
    max(1 - F(0), F(-1)) = 1 - F(0)."""
    law = cg.GaussianLaw("discrete", Fraction(1), "d")
    f0 = float(sum(dg.pmf(y, 1, prec=80) for y in range(-60, 1)))
    assert cg.ks_statistic(np.array([0]), law) == pytest.approx(1 - f0, abs=1e-9)


@pytest.mark.parametrize("n", [1000, 120_000])
def test_chernoff_tail_of_the_discrete_law_is_an_upper_bound(n):
    """At large sigma the discrete law's E exp(lam Y^2) is the continuous one's to 1e-15, so its
    Chernoff bound must dominate the exact chi-square tail of the continuous law (and stay within
    a polynomial factor of it)."""
    law = cg.GaussianLaw("discrete", dg.grid_sigma2(10_000), "d")
    s = float(law.sigma2)
    for v in (s * (1 + 8 / math.sqrt(n)), s * (1 - 8 / math.sqrt(n))):
        chern = cg.square_tail_bound(law, n, v)
        exact = stats.chi2.sf(n * v / s, n) if v > s else stats.chi2.cdf(n * v / s, n)
        assert exact <= chern * (1 + 1e-9)
        assert chern <= 50 * math.sqrt(n) * exact


def test_moment_windows_have_the_stated_tails():
    for law in (cg.GaussianLaw("float", 1.0, "f"), cg.GaussianLaw("discrete", dg.grid_sigma2(500), "d")):
        w = cg.moment_windows(law, 120_000)
        assert cg.square_tail_bound(law, 120_000, w["v_hi"]) <= cg.ALPHA / 4 * (1 + 1e-9)
        assert cg.square_tail_bound(law, 120_000, w["v_lo"]) <= cg.ALPHA / 4 * (1 + 1e-9)
        assert w["v_lo"] < law.second_moment < w["v_hi"]
        assert (w["v_hi"] - w["v_lo"]) / float(law.sigma2) < 0.06


@pytest.mark.statistical
@pytest.mark.parametrize("family,sigma2", [("float", 2.0), ("discrete", dg.grid_sigma2(200))])
def test_each_test_rejects_a_sampler_ten_percent_wide(family, sigma2):
    """Power beyond the fixtures: sigma x1.1 at 1.2e5 draws (alpha 1e-6 per test; the exact
    escape bounds say each misses with chance < 1e-6, so this can fail by chance < 3e-6)."""
    law = cg.GaussianLaw(family, sigma2, "x")
    wide = law.scaled(1.1)
    bounds = cg.escape_bounds(law, wide, 120_000)
    assert bounds["moments"] < 1e-6 and bounds["chi-square"] < 1e-6
    got = cg.run_tests(cg._draw(wide, 120_000, seed=11), law)
    assert got["moments"].rejected and got["chi-square"].rejected


def test_mutant_laws():
    assert cg.GaussianLaw("float", 4.0, "f").scaled(0.5).sigma2 == 1.0
    grid = cg.GaussianLaw("discrete", dg.grid_sigma2(1000), "g").scaled(0.7)
    assert grid.sigma2 == dg.grid_sigma2(700)
    rational = cg.GaussianLaw("discrete", Fraction(5, 2), "r").scaled(1.3)
    assert rational.sigma2 == Fraction(5, 2) * Fraction(169, 100)
    # the largest configuration's wide mutant stays within the sampler's grid (t <= 2^30)
    assert round(1.3 * cg.LARGEST_T) <= 1 << 30
