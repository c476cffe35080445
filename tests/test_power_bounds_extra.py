"""Bounds appended to verification/power_bounds.py by the checks' false-alarm work (note 20, "False alarms and power"):
clopper_pearson_escape, the exact miss chance of a fixed event's Clopper-Pearson eps bound."""

from __future__ import annotations

import numpy as np
import pytest

from dpxattn.verification.audit import clopper_pearson_lower, clopper_pearson_upper, eps_from_bounds
from dpxattn.verification.power_bounds import clopper_pearson_escape


def _misses(x, y, n_a, n_b, claim, delta, alpha):
    lo = clopper_pearson_lower(x, n_a, alpha)
    hi = clopper_pearson_upper(y, n_b, alpha)
    return eps_from_bounds(lo, hi, delta) <= claim


def test_point_mass_is_deterministic():
    beta, info = clopper_pearson_escape(1000, 1.0, 1000, 0.0, 1.0, 1e-6, 5e-7)
    assert beta == 0.0 and info["x_crit_at_y_lo"] < 1000
    assert clopper_pearson_escape(1000, 1.0, 1000, 0.0, 50.0, 1e-6, 5e-7)[0] == 1.0
    # no power at all: p = q
    assert clopper_pearson_escape(500, 0.3, 500, 0.3, 0.5, 1e-6, 1e-3)[0] > 0.99


@pytest.mark.parametrize("n_a, p, n_b, q, claim", [
    (200, 0.10, 200, 0.02, 0.5),
    (300, 0.05, 250, 0.0, 1.0),
    (150, 0.30, 150, 0.10, 0.2),
])
def test_matches_simulated_miss_frequency(rng, n_a, p, n_b, q, claim):
    """Exact, not just an upper bound: the simulated miss frequency of the rule it describes
    lies within 5 standard errors of beta (a regime where misses are common)."""
    delta, alpha = 1e-6, 1e-3
    beta, _ = clopper_pearson_escape(n_a, p, n_b, q, claim, delta, alpha)
    trials = 20_000
    x = rng.binomial(n_a, p, trials)
    y = rng.binomial(n_b, q, trials)
    freq = float(np.mean(_misses(x, y, n_a, n_b, claim, delta, alpha)))
    se = max(np.sqrt(beta * (1 - beta) / trials), 1e-4)
    assert abs(freq - beta) <= 5 * se, (freq, beta)


def test_monotone_in_p_and_q():
    base = clopper_pearson_escape(400, 0.1, 400, 0.01, 0.5, 1e-6, 1e-4)[0]
    assert clopper_pearson_escape(400, 0.15, 400, 0.01, 0.5, 1e-6, 1e-4)[0] <= base
    assert clopper_pearson_escape(400, 0.1, 400, 0.02, 0.5, 1e-6, 1e-4)[0] >= base
    tiny = clopper_pearson_escape(100_000, 0.2, 100_000, 1e-4, 1.0, 1e-6, 5e-7)[0]
    assert 0.0 < tiny <= 1e-100  # stated, never 0 for a law that can miss
