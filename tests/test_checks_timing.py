"""Timing check of the hardened release: valid randomisation p-values, and the power
demonstration that the report does not carry (dpxattn.verification.checks_timing).

The report's timing records are statistical with alpha = 1e-5 each (exact KS and a Serfling
rank-sum bound, each at alpha / 2). A timing mutant's chance of escaping has no rigorous bound
(its time law is the machine's), so the power demonstration lives here, with fixed seeds: the
sparse-rounding mutant is flagged at the quick and the standard sizes at the records' alpha.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dpxattn.verification import checks_timing as ct
from dpxattn.verification.records import CheckContext
from dpxattn.verification.registry import CHECKS, load


def _all_labellings(values: np.ndarray, n: int):
    """Every balanced split of ``values`` into (a, b), len(a) = n: the randomisation law."""
    for idx in itertools.combinations(range(len(values)), n):
        mask = np.zeros(len(values), dtype=bool)
        mask[list(idx)] = True
        yield values[mask], values[~mask]


@pytest.mark.parametrize("values", [
    np.arange(10, dtype=np.float64),                                   # no ties
    np.array([1, 1, 2, 3, 3, 3, 5, 8, 8, 9], dtype=np.float64),        # ties
], ids=["distinct", "ties"])
def test_pvalues_are_valid_under_the_randomisation_law(values):
    """Enumerate all C(10, 5) labellings: for every attained p-value x, the share of labellings
    with p <= x is at most x (a valid, possibly conservative, p-value), for both tests."""
    ps = {"ks": [], "rank": []}
    for a, b in _all_labellings(values, 5):
        ps["ks"].append(ct.ks_exact_pvalue(a, b))
        ps["rank"].append(ct.rank_sum_pvalue(a, b)[0])
    for name, p in ps.items():
        p = np.array(p)
        for x in np.unique(p):
            assert np.mean(p <= x) <= x + 1e-12, (name, x)


def test_ks_exact_pvalue_matches_scipy_exact():
    from scipy import stats

    rng = np.random.default_rng(7)
    for n, shift in ((30, 0.0), (150, 0.5), (1000, 0.2), (1000, 0.0)):
        a, b = rng.normal(size=n), rng.normal(size=n) + shift
        ref = stats.ks_2samp(a, b, method="exact").pvalue
        assert ct.ks_exact_pvalue(a, b) == pytest.approx(ref, rel=1e-9, abs=1e-300)
    assert ct.ks_exact_pvalue(np.zeros(5), np.ones(5)) == pytest.approx(2 / 252)


def test_rank_sum_pvalue_extremes():
    a, b = np.arange(50.0), np.arange(50.0) + 100.0
    p, info = ct.rank_sum_pvalue(a, b)
    assert p < 1e-5 and info["rank_sum"] == sum(range(1, 51))
    assert ct.rank_sum_pvalue(np.ones(20), np.ones(20))[0] == 1.0  # all tied: no evidence


@pytest.mark.statistical
def test_check_timing_quick_and_its_budget(seed):
    records = ct.check_timing(CheckContext(level="quick", seed=seed))
    assert len(records) == 3 and all(r.kind == "statistical" for r in records)
    assert all(r.passed for r in records), [(r.name, r.statistic) for r in records]
    assert all(r.alpha == ct.ALPHA == 1e-5 for r in records)
    assert sum(r.false_failure_rate() for r in records) <= 5e-5
    assert any(load(spec) is ct.check_timing for spec in CHECKS)


@pytest.mark.statistical
@pytest.mark.parametrize("level", ["quick", "standard"])
def test_sparse_rounding_mutant_is_flagged_at_the_records_alpha(level, seed):
    """Power (not a report record): the data-dependent rounding path is flagged at the sizes
    and alpha of the records. Fixed seeds; the effect is a factor ~3 in median time."""
    p, info = ct.mutant_timing_pvalue(ct.timing_sizes(level), np.random.default_rng(seed))
    assert p < ct.ALPHA / 2, info
