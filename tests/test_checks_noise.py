"""Check 1 (noise distributions): passes on the fast sampler, fails on the x0.7 / x1.3 mutants;
every power record states a beta derived from the mutant's exact law, and the check's
false-alarm total (alphas + betas) stays within its 5e-5 share at quick and standard."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dpxattn.verification import checks_noise as cn
from dpxattn.verification.mutants_noise import FAST_SAMPLER, SCALE_MUTANTS, ScaledSampler
from dpxattn.verification.records import CheckContext

#: a check's share of the report's false-alarm budget (alphas + betas), at every level
CHECK_BUDGET = 5e-5
#: the most a power record's beta may be
BETA_MAX = 1e-6

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
    assert info_down["beta_terms"]["delta region"]["bound"] <= cn.REQUIRED_MISS
    assert info_down["not_required"]["support"]["bound"] == 1.0  # 0.7 Z never leaves [-A, A]
    assert info_up["beta_terms"]["support"]["bound"] == pytest.approx(
        (1 - info_up["mutant_exceed_probability"]) ** SIZES.n_region(law.config.delta), rel=1e-9,
        abs=cn.BOUND_FLOOR)
    half = cn.exact_law(cn.NoiseConfig(1.0, 1.0, 0.5), 256)
    req_half, info_half = cn.required_power_tests(half, 0.7, SIZES)
    # delta = 1/2: the region is the half line z < 0, mass 1/2 for every symmetric law
    assert "delta region" not in req_half and info_half["mutant_region_mass"] == pytest.approx(0.5)


def _check_power_info(required, info):
    assert {"KS", "chi-square", "moments"} <= set(required)
    assert set(info["beta_terms"]) == set(required)
    terms = [t["bound"] for t in info["beta_terms"].values()]
    assert info["beta"] == pytest.approx(min(1.0, sum(terms)), rel=1e-12)
    for name, t in info["not_required"].items():  # an optional test is dropped only if it is weak
        assert t["bound"] > cn.REQUIRED_MISS, name
    for name in set(required) - {"KS", "chi-square", "moments"}:
        assert info["beta_terms"][name]["bound"] <= cn.REQUIRED_MISS


def test_beta_is_derived_and_small_at_the_test_sizes(laws):
    for law in laws.values():
        for f in (0.7, 1.3):
            required, info = cn.required_power_tests(law, f, SIZES)
            _check_power_info(required, info)
            assert info["beta"] <= BETA_MAX, (law.config.label, f, info["beta_terms"])
            ks = info["beta_terms"]["KS"]
            # the KS bound's inputs: the mutant is far from F, further than the critical value
            assert ks["distance_lower_bound"] > ks["critical"] + ks["grid_bracket"]


def test_ks_distance_is_that_of_the_scaled_law(laws):
    """F(x/f) from the reference against an independent closed form of the scaled law."""
    c = CONFIGS[0]
    law = laws[c]
    for f in (0.7, 1.3):
        for x in (-12.0, -3.0, -0.4, 0.0, 0.9, 5.0, 11.0, 14.0):
            want = float(_closed_form_cdf(np.array([x / f]), c.sensitivity, c.eps, c.delta)[0])
            assert law.mutant_cdf(f, x) == pytest.approx(want, abs=1e-13)
        _, info = cn.ks_escape(law, f, SIZES.n_gof)
        grid = np.linspace(-1.5 * law.A_float, 1.5 * law.A_float, 20001)
        exact = np.max(np.abs(_closed_form_cdf(grid / f, c.sensitivity, c.eps, c.delta)
                              - _closed_form_cdf(grid, c.sensitivity, c.eps, c.delta)))
        # a lower bound on the sup-distance, and close to it
        assert exact - 2e-3 <= info["distance_lower_bound"] <= exact + 1e-9


def _level_false_alarm_total(level: str, configs) -> float:
    """4 statistical records at alpha = 1e-6 and two power records per configuration, whose
    betas are derived here (without drawing)."""
    sizes = cn.sizes_for(level)
    total = 0.0
    for config in configs:
        law = cn.exact_law(config, sizes.grid)
        total += 4 * cn.ALPHA
        for mutant in SCALE_MUTANTS:
            required, info = cn.required_power_tests(law, mutant.factor, sizes)
            _check_power_info(required, info)
            assert info["beta"] <= BETA_MAX, (config.label, mutant.label)
            total += info["beta"]
    return total


def test_quick_level_false_alarm_total_is_within_the_check_budget():
    assert _level_false_alarm_total("quick", cn.QUICK_CONFIGS) <= CHECK_BUDGET


@pytest.mark.slow
def test_standard_level_false_alarm_total_is_within_the_check_budget():
    assert _level_false_alarm_total("standard", cn.STANDARD_CONFIGS) <= CHECK_BUDGET


@pytest.mark.statistical
def test_beta_is_honest_at_a_small_sample_size(seed):
    """At 200 draws the tests cannot promise to catch the mutants: the record says so (beta = 1,
    the KS bound alone is vacuous) and the simulated records do fail; each test's simulated miss
    frequency stays within its bound (one-sided binomial test at 1e-6 per count)."""
    import torch

    config = cn.NoiseConfig(1.0, 1.0, 0.5)
    law = cn.exact_law(config, 256)
    n, reps = 200, 300
    sizes = cn.NoiseSizes(n_gof=n, region_cap=n, grid=256, bins=8)
    for mutant in SCALE_MUTANTS:
        required, info = cn.required_power_tests(law, mutant.factor, sizes)
        _check_power_info(required, info)
        assert info["beta"] == 1.0
        gen = torch.Generator().manual_seed(seed % 2**63)
        x = mutant(n * reps, config.sensitivity, config.eps, config.delta, gen).reshape(reps, n)
        misses = {"KS": 0, "chi-square": 0, "moments": 0}
        failed = 0
        for row in x:
            s = cn.SampleSummary(gof=np.sort(row), n_region=n, low_count=0, high_count=0,
                                 max_abs=float(np.abs(row).max()))
            out = {"KS": cn.ks_test(s, law), "chi-square": cn.chi_square_test(s, law, sizes.bins),
                   "moments": cn.moments_test(s, law)}
            for t, o in out.items():
                misses[t] += not o.rejected
            failed += any(not out[t].rejected for t in misses)
        assert failed > 0  # the record would fail: its beta of 1 is honest
        for t, k in misses.items():
            bound = info["beta_terms"][t]["bound"]
            assert k <= stats.binom.isf(1e-6, reps, bound), (mutant.label, t, k, bound)
    # and with more draws the same bound becomes small (x0.7: KS at 3200 draws)
    big = cn.NoiseSizes(n_gof=3200, region_cap=3200, grid=256, bins=8)
    assert cn.required_power_tests(law, 0.7, big)[1]["beta"] < 1e-6


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
    for r in records:
        if r.kind == "power":
            assert r.beta is not None and r.beta <= BETA_MAX, (r.name, r.beta)
            assert set(r.details["beta_terms"]) == set(r.details["required"])
    assert sum(r.false_failure_rate() for r in records) <= CHECK_BUDGET
    plots = [p for r in records for p in r.plots]
    assert plots and all((tmp_path / p.split("/")[-1]).stat().st_size > 1000 for p in plots)
