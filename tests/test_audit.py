"""The empirical privacy auditor (verification/audit.py): valid, not vacuous, and it has power.

Calibration uses the Laplace mechanism M(x) = x + Lap(1/eps0) on the neighbours x = 0, x' = 1,
whose privacy profile is known exactly: it is (eps, delta)-DP iff
eps >= eps_true(delta) = eps0 + 2 ln(1 - delta) (Balle et al., privacy profiles).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dpxattn.errors import ParameterError, ShapeError
from dpxattn.verification import audit as audit_mod
from dpxattn.verification.audit import (audit, clopper_pearson_lower, clopper_pearson_upper,
                                        eps_from_bounds, per_bound_alpha)

#: false-alarm rate of every binomial assertion on violation counts in this file
ALPHA_TEST = 1e-6


def laplace_eps_true(eps0: float, delta: float) -> float:
    """Exact eps(delta) of the Laplace mechanism with l1 shift / scale = eps0."""
    return max(0.0, eps0 + 2.0 * math.log1p(-delta))


def laplace_pair(rng, eps0: float, n: int):
    return rng.laplace(0.0, 1.0 / eps0, n), 1.0 + rng.laplace(0.0, 1.0 / eps0, n)


def max_allowed_violations(runs: int, rate: float, alpha: float = ALPHA_TEST) -> int:
    """Largest violation count v with P[Binomial(runs, rate) >= v] >= alpha."""
    v = 0
    while stats.binom.sf(v, runs, rate) >= alpha:  # sf(v) = P[X >= v + 1]
        v += 1
    return v


def naive_plugin_eps(a, b, delta):
    """A deliberately WRONG auditor (power fixture): the plug-in max over all threshold events
    of ln((p_hat - delta)/q_hat), events chosen and estimated on the same data, no intervals."""
    a, b = np.sort(a), np.sort(b)
    ts = audit_mod._thresholds(a, b, 256)
    best = -np.inf
    for x, y in ((a, b), (b, a)):
        cx, cy = audit_mod._counts_above(x, ts) / len(x), audit_mod._counts_above(y, ts) / len(y)
        for p, q in ((cx, cy), (1 - cx, 1 - cy)):
            ok = (p > delta) & (q > 0)
            if np.any(ok):
                best = max(best, float(np.max(np.log(p[ok] - delta) - np.log(q[ok]))))
    return max(best, 0.0)


# ---------------------------------------------------------------------------------------------
# statistics helpers
# ---------------------------------------------------------------------------------------------

def test_clopper_pearson_edges_and_coverage(rng):
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_upper(10, 10, 0.05) == 1.0
    # x = 0: upper bound solves (1 - q)^n = alpha
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-10)
    assert clopper_pearson_lower(100, 100, 0.05) == pytest.approx(0.05 ** (1 / 100), rel=1e-10)
    # coverage (exact, by summing the binomial law): P[p_lo > p] <= alpha for several p
    n, alpha = 60, 0.05
    xs = np.arange(n + 1)
    lo, hi = clopper_pearson_lower(xs, n, alpha), clopper_pearson_upper(xs, n, alpha)
    for p in (0.01, 0.2, 0.5, 0.77, 0.99):
        pmf = stats.binom.pmf(xs, n, p)
        assert pmf[lo > p].sum() <= alpha + 1e-12
        assert pmf[hi < p].sum() <= alpha + 1e-12


def test_eps_from_bounds_and_union_level():
    assert eps_from_bounds(0.5, 0.25, 0.0) == pytest.approx(math.log(2))
    assert eps_from_bounds(0.5, 0.25, 0.1) == pytest.approx(math.log(0.4 / 0.25))
    assert eps_from_bounds(0.05, 0.25, 0.1) == -np.inf
    assert per_bound_alpha(0.95, 5) == pytest.approx(0.005)


# ---------------------------------------------------------------------------------------------
# validity and non-vacuity on Laplace (true eps known exactly)
# ---------------------------------------------------------------------------------------------

@pytest.mark.statistical
@pytest.mark.parametrize("eps0,delta", [(0.5, 0.0), (1.0, 0.0), (2.0, 1e-6), (1.0, 0.1)])
def test_bound_is_neither_violated_nor_vacuous_on_laplace(rng, eps0, delta):
    """Over 120 independent audits (2e4 draws per side, confidence 0.95):
    (a) validity: the number of runs with eps_lower_bound > eps_true(delta) is not larger than
        a Binomial(120, 0.05) allows at alpha = 1e-6 (the audit promises a rate <= 0.05);
    (b) non-vacuity: every run reaches 0.6 eps_true and the median 0.8 eps_true (observed
        spread at this size is about 0.02 eps; the margins are > 8 sd, alpha < 1e-6)."""
    runs, n, conf = 120, 20_000, 0.95
    eps_true = laplace_eps_true(eps0, delta)
    bounds = np.array([audit(*laplace_pair(rng, eps0, n), delta=delta, confidence=conf, rng=rng).eps_lower_bound
                       for _ in range(runs)])
    violations = int(np.sum(bounds > eps_true))
    assert violations <= max_allowed_violations(runs, 1 - conf)
    assert bounds.min() >= 0.6 * eps_true
    assert np.median(bounds) >= 0.8 * eps_true


@pytest.mark.statistical
def test_calibration_test_has_power_against_a_naive_auditor(rng):
    """The same violation-count assertion rejects the plug-in auditor (no split, no intervals):
    on Laplace it exceeds the true eps in most runs (power shown at the same alpha = 1e-6)."""
    runs, n, eps0 = 120, 20_000, 1.0
    naive = np.array([naive_plugin_eps(*laplace_pair(rng, eps0, n), 0.0) for _ in range(runs)])
    assert int(np.sum(naive > eps0)) > max_allowed_violations(runs, 0.05)


@pytest.mark.statistical
def test_vector_outputs_use_the_classifier(rng):
    """Two releases of the same bit, each Lap(2/eps0) (together eps0-DP): a linear score sees
    both coordinates, so the bound with classifiers beats the coordinate thresholds alone, and
    both stay valid (<= eps0; each audit at confidence 1 - 1e-6, so a violation has
    probability <= 1e-6 per call)."""
    eps0, n = 1.0, 100_000

    def draw():
        a = rng.laplace(0.0, 2.0 / eps0, (n, 2))
        b = 1.0 + rng.laplace(0.0, 2.0 / eps0, (n, 2))
        return a, b

    with_clf = audit(*draw(), delta=1e-6, confidence=1 - 1e-6, rng=rng)
    without = audit(*draw(), delta=1e-6, confidence=1 - 1e-6, rng=rng, classifiers=False)
    assert with_clf.eps_lower_bound <= eps0 and without.eps_lower_bound <= eps0
    assert with_clf.eps_lower_bound > without.eps_lower_bound + 0.05
    assert with_clf.event is not None and with_clf.event.score in ("Fisher projection", "logistic score")
    assert set(with_clf.scores) == {"coordinate 0", "coordinate 1", "Fisher projection", "logistic score"}


def test_a_leak_is_found_with_few_samples(rng):
    """A release that reveals the bit exactly (a point mass on each side): p = 1, q = 0 and the
    bound is ln((p_lo - delta)/q_hi) with q_hi ~ -ln(alpha)/N -- large with 2000 samples."""
    n = 2000
    a = np.zeros(n)
    b = np.ones(n)
    res = audit(a, b, delta=1e-5, confidence=0.999, rng=rng)
    assert res.p_hat == 1.0 and res.q_hat == 0.0
    assert res.eps_lower_bound > 4.0
    assert res.eps_lower_bound == pytest.approx(math.log((res.p_lo - 1e-5) / res.q_hi))


def test_identical_distributions_give_no_evidence(rng):
    """Same law on both sides: the true eps is 0 at delta = 0; the bound must be ~0."""
    res = audit(rng.normal(size=50_000), rng.normal(size=50_000), delta=0.0, confidence=0.95, rng=rng)
    assert res.eps_lower_bound < 0.05


def test_reproducible_with_a_seeded_generator():
    x = np.random.default_rng(5).laplace(size=(4000, 3))
    y = 0.3 + np.random.default_rng(6).laplace(size=(4000, 3))
    r1 = audit(x, y, delta=1e-3, rng=np.random.default_rng(1))
    r2 = audit(x, y, delta=1e-3, rng=np.random.default_rng(1))
    assert r1 == r2
    assert r1.n_select_a + r1.n_estimate_a == 4000
    d = r1.to_dict()
    assert d["eps_lower_bound"] == r1.eps_lower_bound and "Clopper-Pearson" in d["method"]
    assert "empirical eps lower bound" in str(r1)


def test_default_rng_is_fresh_and_works():
    """rng=None draws the split from OS entropy; on a point-mass leak the result does not
    depend on the split (p_hat = 1, q_hat = 0 whatever it is)."""
    res = audit(np.zeros(3000), np.ones(3000), delta=0.0)
    assert res.p_hat == 1.0 and res.q_hat == 0.0 and res.eps_lower_bound > 5.0


@pytest.mark.parametrize("kwargs,err,match", [
    ({"delta": -0.1}, ParameterError, "delta must satisfy 0 <= delta < 1"),
    ({"delta": 1.0}, ParameterError, "delta"),
    ({"delta": 0.0, "confidence": 1.0}, ParameterError, "confidence must lie strictly inside"),
    ({"delta": 0.0, "finalists": 0}, ParameterError, "finalists must be an integer >= 1"),
    ({"delta": 0.0, "select_fraction": 1.0}, ParameterError, "select_fraction"),
    ({"delta": 0.0, "thresholds": 2}, ParameterError, "thresholds"),
])
def test_bad_parameters_name_the_bound(kwargs, err, match):
    with pytest.raises(err, match=match):
        audit(np.zeros(100), np.ones(100), **kwargs)


def test_bad_samples_name_the_bound():
    with pytest.raises(ShapeError, match="at least 8 rows"):
        audit(np.zeros(3), np.ones(100), delta=0.0)
    with pytest.raises(ShapeError, match="same number of columns"):
        audit(np.zeros((100, 2)), np.ones((100, 3)), delta=0.0)
    with pytest.raises(ShapeError, match="finite"):
        audit(np.full(100, np.nan), np.ones(100), delta=0.0)
    with pytest.raises(ShapeError, match="1-D"):
        audit(np.zeros((10, 2, 2)), np.ones((10, 2, 2)), delta=0.0)
