"""Check 1 (noise distributions): passes on the fast sampler, fails on the x0.7 / x1.3 mutants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dpxattn.verification import checks_noise as cn
from dpxattn.verification.mutants_noise import FAST_SAMPLER, SCALE_MUTANTS, ScaledSampler
from dpxattn.verification.records import CheckContext

#: smaller than the harness levels (the test budget), same tests, same alpha = 1e-6
SIZES = cn.NoiseSizes(n_gof=60_000, region_cap=2_000_000, grid=1024, bins=100)
CONFIGS = (cn.NoiseConfig(1.0, 1.0, 1e-5), cn.NoiseConfig(3.0, 2.0, 0.4))


@pytest.fixture(scope="module")
def laws():
    return {c: cn.exact_law(c, SIZES.grid) for c in CONFIGS}


@pytest.mark.statistical
def test_correct_sampler_passes_every_test(laws, seed):
    records = cn.run_noise_tests(FAST_SAMPLER, CONFIGS, SIZES, seed, laws=laws)
    assert len(records) == 5 * len(CONFIGS)
    failed = [(r.name, r.statistic, r.threshold) for r in records if not r.passed]
    assert not failed, failed
    for r in records:
        assert r.kind == "exact" or r.alpha == cn.ALPHA


@pytest.mark.statistical
@pytest.mark.parametrize("mutant", SCALE_MUTANTS, ids=lambda m: m.label)
def test_mutants_are_rejected(laws, seed, mutant):
    records = cn.run_noise_tests(mutant, CONFIGS, SIZES, seed, laws=laws)
    by_test = {}
    for r in records:
        by_test.setdefault(r.name.split(" [")[0].rsplit(": ", 1)[1], []).append(r.passed)
    for test in ("KS", "chi-square", "moments"):
        assert not any(by_test[test]), (mutant.label, test)
    if mutant.factor > 1:
        assert not any(by_test["support"])  # the wider law leaves [-A, A]
    # delta region: rejected where its exact power is ~1 (delta = 1e-5 and 0.4 here)
    assert not any(by_test["delta region"])


def test_required_power_rules(laws):
    law = laws[CONFIGS[0]]
    req_up, info_up = cn.required_power_tests(law, 1.3, SIZES)
    req_down, info_down = cn.required_power_tests(law, 0.7, SIZES)
    assert "support" in req_up and "support" not in req_down
    assert info_down["mutant_exceed_probability"] == 0.0
    assert info_down["mutant_region_mass"] == 0.0  # 0.7 Z never reaches -A + Delta here
    assert "delta region" in req_down and info_down["region_exact_power"] > 1 - 1e-6
    half = cn.exact_law(cn.NoiseConfig(1.0, 1.0, 0.5), 256)
    req_half, info_half = cn.required_power_tests(half, 0.7, SIZES)
    # delta = 1/2: the region is the half line z < 0, mass 1/2 for every symmetric law
    assert "delta region" not in req_half and info_half["mutant_region_mass"] == pytest.approx(0.5)


def test_reference_identities_are_exact(laws):
    for law in laws.values():
        assert max(law.reference_errors.values()) <= cn.REFERENCE_RTOL
        assert law.grid_cdf[0] == 0.0 and law.grid_cdf[-1] == 1.0
        assert np.all(np.diff(law.grid_cdf) >= 0)


def _closed_form_cdf(x, D, e, dl):
    """An independent float64 TLap CDF (test-only), to check the KS bracket."""
    b = D / e
    a = math.log1p(math.expm1(e) / (2 * dl))
    t = np.minimum(np.abs(x) / b, a)
    half = -np.expm1(-t) / (2 * -math.expm1(-a))
    return 0.5 + np.sign(x) * half


def test_ks_bracket_contains_the_exact_statistic(laws, rng):
    c = CONFIGS[0]
    law = laws[c]
    x = np.sort(rng.laplace(scale=1.05, size=5000).clip(-law.A_float, law.A_float))
    s = cn.SampleSummary(gof=x, n_region=x.size, low_count=0, high_count=0, max_abs=1.0)
    out = cn.ks_test(s, law)
    exact = stats.kstest(x, lambda v: _closed_form_cdf(v, c.sensitivity, c.eps, c.delta)).statistic
    assert out.details["D_lo"] <= exact + 1e-12 <= out.details["D_hi"] + 2e-12
    assert out.details["D_hi"] - out.details["D_lo"] <= 2.0 / SIZES.grid + 1e-12


def test_bernstein_radius_solves_its_inequality():
    n, var, bound, alpha = 10_000, 2.0, 11.0, 1e-6
    t = cn.bernstein_radius(n, var, bound, alpha)
    assert 2 * math.exp(-n * t * t / (2 * var + 2 * bound * t / 3)) == pytest.approx(alpha, rel=1e-9)
    assert cn.bernstein_radius(n, var, bound, 1e-3) < t


def test_region_acceptance_matches_p_values():
    n, p, a = 200_000, 1e-4, 1e-6
    k_lo, k_hi = cn.region_acceptance(n, p, a)
    pv = cn._binom_two_sided_p
    assert pv(k_lo, n, p) > a and pv(k_lo - 1, n, p) <= a
    assert pv(k_hi, n, p) > a and pv(k_hi + 1, n, p) <= a


def test_scaled_sampler_scales(seed):
    import torch

    g1, g2 = torch.Generator().manual_seed(seed % 2**63), torch.Generator().manual_seed(seed % 2**63)
    x = FAST_SAMPLER(100, 1.0, 1.0, 1e-5, g1)
    y = ScaledSampler(0.7, "x0.7")(100, 1.0, 1.0, 1e-5, g2)
    assert np.array_equal(0.7 * x, y)


@pytest.mark.statistical
def test_check_noise_quick_level_passes_with_plots(tmp_path, seed, monkeypatch):
    # two of the quick configurations (one plotted) keep the test within its time budget
    monkeypatch.setattr(cn, "QUICK_CONFIGS", cn.QUICK_CONFIGS[:2])
    ctx = CheckContext(level="quick", seed=seed, out_dir=tmp_path)
    records = cn.check_noise(ctx)
    assert records and all(r.passed for r in records), [r.name for r in records if not r.passed]
    kinds = {r.kind for r in records}
    assert {"statistical", "exact", "power"} <= kinds
    assert sum(r.kind == "power" for r in records) == 2 * len(cn.QUICK_CONFIGS)
    plots = [p for r in records for p in r.plots]
    assert plots and all((tmp_path / p.split("/")[-1]).stat().st_size > 1000 for p in plots)
