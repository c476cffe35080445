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
    assert sum(r.kind == "power" for r in records) == 4


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
