"""Check 2 (tree noise): passes on the fast and reference trees, fails on its mutants."""

from __future__ import annotations

import pytest

from dpxattn.verification import checks_tree as ct
from dpxattn.verification.records import CheckContext


@pytest.mark.statistical
def test_check_tree_passes(seed):
    records = ct.check_tree(CheckContext(level="quick", seed=seed))
    failed = [(r.name, r.statistic, r.threshold) for r in records if not r.passed]
    assert not failed, failed
    levels = [r for r in records if r.name.startswith("node noise variance")]
    assert len(levels) == ct.TREE_CASE.grid.bit_length()  # one record per level (G = 8: 4 levels)
    assert all(r.alpha <= ct.ALPHA and r.sample_size >= 10_000 for r in levels)
    power = [r for r in records if r.kind == "power"]
    assert len(power) == 4
    assert all(r.beta is not None and r.beta <= 1e-8 and r.details["beta_terms"] for r in power)
    rates = [r.false_failure_rate() for r in records]
    assert all(x is not None and x <= 1e-6 for x in rates)
    assert sum(rates) <= 5e-5  # the check's share of the report's false-alarm budget


def test_power_bounds_of_the_tree_mutants():
    law = ct._unit_law(ct.TREE_CASE)
    for factor in ct.MUTANT_FACTORS:
        beta, terms = ct.variance_mutant_escape([10_000] * 4, law, factor)
        assert 0 < beta <= 1e-12 and len(terms) == 4
    # far too few draws: the bound says so (no false confidence)
    assert ct.variance_mutant_escape([5], law, 0.7)[0] == 1.0
    # a factor inside the tolerance cannot be caught: gap <= 0, bound 1
    assert ct.variance_mutant_escape([10**6], law, 1.01)[0] == 1.0
    beta, terms = ct.off_by_one_escape(ct.TREE_CASE)
    assert 0 < beta <= 1e-8 and terms["node"] in (3, 7)
    beta, terms = ct.resampling_escape()
    assert beta == 2 * (2**20 + 3) * 2.0**-52


def test_resampling_perturbation_survives_rounding():
    """The mutant's perturbation is relative to the answer, so it is never lost to rounding:
    even on huge answers, two calls differ (the premise of resampling_escape)."""
    import torch

    class Huge:
        def query(self, Q):
            return torch.full((Q.shape[0], 4), 1e300, dtype=torch.float64)

    Q = torch.zeros((64, 2), dtype=torch.float64)
    a, b = ct.resampling_query(Huge(), Q), ct.resampling_query(Huge(), Q)
    assert bool(torch.isfinite(a).all()) and int((a != b).sum()) > 0


def test_draws_needed_reaches_alpha():
    law = ct._unit_law(ct.TREE_CASE)
    n = ct.draws_needed(law)
    assert n >= 10_000
    assert ct._implied_alpha(n, law, ct.RTOL_VARIANCE) <= ct.ALPHA
    assert ct._implied_alpha(n // 2, law, ct.RTOL_VARIANCE) > ct.ALPHA  # not oversized


@pytest.mark.statistical
@pytest.mark.parametrize("mutant", ct.PAYLOAD_MUTANTS, ids=lambda m: m.__name__)
def test_scaled_node_noise_is_rejected_at_every_level(seed, mutant):
    records = ct.level_variance_records(ct.TREE_CASE, 4, seed, mutant=mutant)
    assert records and not any(r.passed for r in records)


def test_off_by_one_range_query_is_caught(seed):
    good = ct.range_query_records(ct.TREE_CASE, seed)
    bad = ct.range_query_records(ct.TREE_CASE, seed, ct.off_by_one_range_query, mutant_name="x")
    assert all(r.passed for r in good)
    assert len(bad) == 1 and not bad[0].passed


def test_resampling_query_is_caught(seed):
    good = ct.repeated_query_records(ct.TREE_CASE, seed, queries=8)
    bad = ct.repeated_query_records(ct.TREE_CASE, seed, ct.resampling_query, mutant_name="x",
                                    queries=8)
    assert all(r.passed for r in good)
    assert not any(r.passed for r in bad)
