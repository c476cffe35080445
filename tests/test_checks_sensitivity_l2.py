"""The l2 sensitivity search (verification/checks_sensitivity_l2.py): passes on the real
build, and fails on an understated sensitivity (power)."""

from __future__ import annotations

import numpy as np
import pytest

from dpxattn.verification import checks_sensitivity_l2 as l2
from dpxattn.verification.records import CheckContext


@pytest.mark.parametrize("config", l2.l2_configs("quick"), ids=lambda c: c.describe())
def test_quick_records_pass(config):
    res = l2.search_l2(config, np.random.default_rng(0), l2.L2_BUDGETS["quick"])
    records = l2._records(config, res, "quick")
    assert all(r.passed for r in records), [r.name for r in records if not r.passed]
    assert float(res["exact"] / res["analytic"]) > l2.POWER_TIGHTNESS   # attained


@pytest.mark.parametrize("config", [c for c in l2.l2_configs("quick") if c.mechanism == "direct"],
                         ids=lambda c: c.describe())
def test_an_understated_sensitivity_is_caught(config, monkeypatch):
    """Power: claim 0.7 x the true l2 sensitivity; the search record fails."""
    true = config.analytic()
    monkeypatch.setattr(type(config), "analytic", lambda self: true * l2.MUTANT_FACTOR)
    res = l2.search_l2(config, np.random.default_rng(1), l2.L2_BUDGETS["quick"])
    search = l2._records(config, res, "quick")[0]
    assert not search.passed and search.statistic > 1 / l2.MUTANT_FACTOR * 0.99


def test_check_runs_through_the_registry():
    from dpxattn.verification.registry import CHECKS

    names = [c.name for c in CHECKS]
    assert "sensitivity-l2" in names
    recs = l2.check_sensitivity_l2(CheckContext(level="quick", seed=3))
    assert len(recs) == 3 * len(l2.l2_configs("quick")) and all(r.passed for r in recs)
