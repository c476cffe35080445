"""Harness check of the hardened sampler (note 23): passes on the fast discrete truncated Laplace,
rejects the wrong-scale mutants, and its exact pieces agree with the reference.

verification/checks_secure_noise.py; dpxattn.fast.secure_noise vs
dpxattn.reference.discrete_laplace; DESIGN §6 (alpha = 1e-6, power); proofs_notes/23. Every
power record states a beta derived from the mutant's exact law, and the check's false-alarm
total (alphas + betas) stays within its 5e-5 share at quick and standard.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dpxattn.reference import discrete_laplace as dl
from dpxattn.verification import checks_secure_noise as cs
from dpxattn.verification.records import CheckContext
from dpxattn.verification.registry import CHECKS

#: a check's share of the report's false-alarm budget (alphas + betas), at every level
CHECK_BUDGET = 5e-5
#: the most a power record's beta may be
BETA_MAX = 1e-6

#: a delta region with counts at 1.2e5 draws: every test, the region included, has power here
VISIBLE = cs.config_from_parameters(1.0, 1.0, 0.02)


@pytest.fixture(scope="module")
def visible_law():
    return cs.exact_lattice_law(VISIBLE, 128)


@pytest.mark.statistical
def test_quick_level_passes_every_record(seed):
    records = cs.check_secure_noise(CheckContext(level="quick", seed=seed))
    failed = [(r.name, r.statistic, r.threshold) for r in records if not r.passed]
    assert not failed, failed
    kinds = {r.kind for r in records}
    assert {"statistical", "exact", "power"} <= kinds
    for r in records:
        assert (r.alpha == cs.ALPHA) == (r.kind == "statistical")
    configs = cs.quick_configs()
    assert {c.t for c in configs} >= {1, 3, 1_000_000} and max(c.t for c in configs) > 7e11
    for c in configs:
        mine = [r.name.split(" [")[0] for r in records if r.name.endswith(f"[{c.label}]")]
        assert {"reference: exact law", "conformance", "chi-square", "moments", "support",
                "delta region"} <= set(mine), (c.label, mine)
        expected_power = sum(m.law(c.t, c.K) is not None for m in cs.SECURE_MUTANTS)
        assert sum(n.startswith("power: ") for n in mine) == expected_power
    # t = 1 has no smaller integer scale: only the x1.3 mutant (t' = 2) exists there
    assert sum(r.kind == "power" for r in records) == 3 * len(configs) - 2
    for r in records:
        if r.kind == "power":
            _check_power_details(r.details["required"], r.details)
            assert r.beta == r.details["beta"] and r.beta <= BETA_MAX, (r.name, r.beta)
    assert sum(r.false_failure_rate() for r in records) <= CHECK_BUDGET


def _check_power_details(required, info):
    assert {"chi-square", "moments"} <= set(required) and "support" not in required
    assert set(info["beta_terms"]) == set(required)
    terms = [t["bound"] for t in info["beta_terms"].values()]
    assert info["beta"] == pytest.approx(min(1.0, sum(terms)), rel=1e-12)
    for name, t in info["not_required"].items():  # an optional test is dropped only if it is weak
        assert t["bound"] > cs.REQUIRED_MISS, name
    for name in set(required) - {"chi-square", "moments"}:
        assert info["beta_terms"][name]["bound"] <= cs.REQUIRED_MISS


def test_standard_level_alphas_leave_room_for_the_betas():
    """43 statistical records at alpha = 1e-6 at standard (chi-square, moments and one or two
    region tests per law): the alphas alone stay below the check's 5e-5 share."""
    sizes = cs.sizes_for("standard")
    count = sum(2 + len(cs.exact_lattice_law(c, sizes.bins).regions) for c in cs.standard_configs())
    assert count * cs.ALPHA <= 0.9 * CHECK_BUDGET, count


@pytest.mark.slow
def test_standard_level_false_alarm_total_is_within_the_check_budget():
    sizes = cs.sizes_for("standard")
    total = 0.0
    for c in cs.standard_configs():
        exact = cs.exact_lattice_law(c, sizes.bins)
        total += (2 + len(exact.regions)) * cs.ALPHA
        for m in cs.SECURE_MUTANTS:
            law = m.law(c.t, c.K)
            if law is None:
                continue
            required, info = cs.required_power_tests(exact, law, sizes)
            _check_power_details(required, info)
            assert info["beta"] <= BETA_MAX, (c.label, m.label)
            total += info["beta"]
    assert total <= CHECK_BUDGET


@pytest.mark.statistical
def test_beta_is_honest_at_small_sample_sizes(seed):
    """t = 3, K = 12 at a few hundred draws: the derived bounds are large (600 draws: x1.3 beta =
    1; 1200 draws: x1.3 beta = 1) and the simulated miss frequency of each required test stays
    within its bound (one-sided binomial test at 1e-6 per count); the record would fail."""
    from dpxattn.fast.secure_noise import sample_noise_units

    config = cs.config_from_law(3, 3, K=12)
    exact = cs.exact_lattice_law(config, 8)
    reps = 300
    x07, x13 = cs.SECURE_SCALE_MUTANTS
    for n, mutant in ((600, x07), (1200, x13)):
        law = mutant.law(config.t, config.K)
        sizes = cs.SecureNoiseSizes(n_gof=n, region_cap=n, bins=8, conformance=10)
        required, info = cs.required_power_tests(exact, law, sizes)
        _check_power_details(required, info)
        assert info["beta"] == 1.0 and info["beta_terms"]["chi-square"]["bound"] < 1.0
        x, _ = sample_noise_units(n * reps, law, generator=np.random.default_rng(seed))
        misses = {"chi-square": 0, "moments": 0}
        for row in x.reshape(reps, n):
            s = cs.DrawSummary(gof=row, n_region=n, max_abs=int(np.abs(row).max()), region_counts={})
            misses["chi-square"] += not cs.chi_square_test(s, exact).rejected
            misses["moments"] += not cs.moments_test(s, exact).rejected
        assert max(misses.values()) > 0  # escapes happen: a beta of 1 is honest
        for t, k in misses.items():
            bound = info["beta_terms"][t]["bound"]
            assert k <= stats.binom.isf(1e-6, reps, bound), (mutant.label, t, k, bound)
    # with more draws the same bounds become small
    big = cs.SecureNoiseSizes(n_gof=4800, region_cap=4800, bins=8, conformance=10)
    assert cs.required_power_tests(exact, x13.law(config.t, config.K), big)[1]["beta"] < 1e-6


def test_registered_right_after_the_float_noise_check():
    names = [spec.name for spec in CHECKS]
    assert names[names.index("noise-distribution") + 1] == "secure-noise-distribution"


@pytest.mark.statistical
@pytest.mark.parametrize("mutant", cs.SECURE_MUTANTS, ids=lambda m: m.label)
def test_each_mutant_is_rejected_where_the_correct_sampler_passes(visible_law, seed, mutant):
    sizes = cs.sizes_for("quick")
    good, _ = cs.evaluate_law(VISIBLE.law, visible_law, sizes, seed)
    assert not any(o.rejected for o in good.values()), {k: o.statistic for k, o in good.items()}
    wrong = mutant.law(VISIBLE.t, VISIBLE.K)
    bad, _ = cs.evaluate_law(wrong, visible_law, sizes, seed + 1)
    required, info = cs.required_power_tests(visible_law, wrong, sizes)
    assert set(required) == {"chi-square", "moments", "delta region", "far tail"}, info
    _check_power_details(required, info)
    assert info["beta"] <= BETA_MAX
    for test in required:
        assert bad[test].rejected, (mutant.label, test, bad[test].statistic, bad[test].threshold)
    assert not bad["support"].rejected  # same K: a narrower or wider law never leaves [-K, K]


def test_mutant_scales():
    x07, x13 = cs.SECURE_SCALE_MUTANTS
    half = cs.SECURE_UNDER_NOISED_MUTANT
    assert x07.law(1, 14) is None and half.law(1, 14) is None
    assert x13.law(1, 14) == cs.LatticeLaw(2, 14)  # round(1.3) = 1 = t: moved one unit up
    assert [m.law(3, 12).scale_units for m in (x07, x13, half)] == [2, 4, 2]
    t = 758663023166
    assert [m.law(t, 5).scale_units for m in (x07, x13, half)] == [round(0.7 * t), round(1.3 * t), t // 2]


def test_bins_cover_the_support_with_exact_masses(visible_law):
    upper, prob = visible_law.bin_upper, visible_law.bin_prob
    assert upper[-1] == VISIBLE.K and np.all(np.diff(upper) > 0) and upper[0] >= -VISIBLE.K
    assert prob.sum() == pytest.approx(1.0, abs=1e-12) and prob.min() > 0
    assert 100 <= len(prob) <= 128 and prob.max() < 2.5 / 128  # equiprobable-ish
    cdf = float(dl.cdf(int(upper[3]), VISIBLE.t, VISIBLE.K))
    assert prob[:4].sum() == pytest.approx(cdf, rel=1e-12)
    tiny = cs.exact_lattice_law(cs.config_from_law(1, 1, K=14), 128)
    merged_upper, merged = tiny.merged_bins(1000)
    assert merged.min() * 1000 >= cs.MIN_EXPECTED and merged.sum() == pytest.approx(1.0)
    assert merged_upper[-1] == 14 and len(merged) < len(tiny.bin_prob)


def test_region_p_value_agrees_with_clopper_pearson(visible_law, rng):
    """The region test passes iff the exact mass lies in both Clopper-Pearson intervals at
    confidence 1 - alpha/2; checked on synthetic counts around and far from the expectation."""
    n = 200_000
    _, mass = visible_law.regions["delta region"]
    for low in [int(n * mass), int(n * mass) + 4 * int(math.sqrt(n * mass)), int(1.3 * n * mass), 0,
                int(n * mass) + int(rng.integers(-50, 50))]:
        s = cs.DrawSummary(gof=np.zeros(1, dtype=np.int64), n_region=n, max_abs=0,
                           region_counts={"delta region": (low, int(n * mass))})
        o = cs.region_test(s, visible_law, "delta region")
        inside = all(ci[0] <= mass <= ci[1] for ci in (o.details["clopper_pearson_low"],
                                                       o.details["clopper_pearson_high"]))
        assert inside == (not o.rejected), (low, o.statistic, o.details)


def test_region_power_is_the_exact_binomial_rejection_probability(visible_law):
    n = 120_000
    _, mass = visible_law.regions["delta region"]
    assert cs.region_power(n, mass, mass) <= cs.ALPHA / 2  # the null: at most its level
    assert cs.region_power(n, mass, 0.7 * mass) > 1 - 1e-6
    assert 0.0 < cs.region_power(n, mass, 0.98 * mass) < 0.5


def test_region_miss_is_the_exact_acceptance_probability(visible_law):
    n = 120_000
    _, mass = visible_law.regions["delta region"]
    for m_mass in (mass, 0.98 * mass, 0.9 * mass, 0.7 * mass, 0.0):
        miss = cs.region_miss(n, mass, m_mass)
        # one side accepts with probability 1 - its rejection probability; the bound covers it
        assert miss >= 1 - cs.region_power(n, mass, m_mass) - 1e-12
    assert cs.region_miss(n, mass, mass) >= 1 - cs.ALPHA
    assert cs.region_miss(n, mass, 0.7 * mass) < 1e-20
    assert cs.region_miss(n, mass, 0.0) == 0.0


def test_chi_square_escape_uses_the_mutants_exact_bin_masses(visible_law):
    wrong = cs.SECURE_SCALE_MUTANTS[1].law(VISIBLE.t, VISIBLE.K)
    b, info = cs.chi_square_escape_bound(visible_law, wrong, 120_000)
    assert b <= 1e-100 and info["critical"] > 0
    cell = info["best_cell"]
    upper, prob = visible_law.merged_bins(120_000)
    j = cell["cell"]
    lo = dl.cdf(int(upper[j - 1]), wrong.scale_units, VISIBLE.K) if j > 0 else 0
    want = float(dl.cdf(int(upper[j]), wrong.scale_units, VISIBLE.K) - lo)
    assert cell["mutant_prob"] == pytest.approx(want, rel=1e-12) and cell["null_prob"] == prob[j]


def test_conformance_record_catches_a_differing_sampler(monkeypatch):
    config = cs.config_from_law(3, 3, K=12)
    assert not cs.conformance_test(config, 300, 11).rejected
    real = dl.sample_from_tape

    def off_by_one(tape, t, K, **kw):
        out = real(tape, t, K, **kw)
        return [z + (i == 17) for i, z in enumerate(out)]

    monkeypatch.setattr(cs.dl, "sample_from_tape", off_by_one)
    o = cs.conformance_test(config, 300, 11)
    assert o.rejected and o.statistic == 1.0


def test_support_and_chi_square_flag_draws_outside_the_support(visible_law):
    K = VISIBLE.K
    x = np.zeros(1000, dtype=np.int64)
    x[5] = K + 1
    s = cs.DrawSummary(gof=x, n_region=1000, max_abs=K + 1, region_counts={})
    assert cs.support_test(s, visible_law).rejected
    assert math.isinf(cs.chi_square_test(s, visible_law).statistic)
