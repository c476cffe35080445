"""The analytic Gaussian mechanism of the reference (reference/gaussian.py; note 24)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from scipy import stats

from dpxattn.errors import ParameterError, UniformsError
from dpxattn.reference import gaussian as g
from dpxattn.reference._mp import context

HI = context(256)  # the tests' own precision (mpmath's global context is 53 bits)

LAWS = [(1, 1, 1e-5), (9.8, 1, 1e-6), (1, 0.1, 1e-6), (2, 10, 1e-9), (1, 1, 0.4),
        (Fraction(1, 3), 0.5, 1e-3), (29.2, 1, 1e-6)]


@pytest.mark.parametrize("shift, eps_prime, sigma", [
    (1, 1, 3.7), ([0.6, 0.8], 0.5, 1.0), (2, -0.3, 1.0), (0.01, 2.0, 0.5), (5, 0.0, 1.0),
    ([1, 2, 2], 1.5, 2.5)])
def test_closed_form_equals_quadrature(shift, eps_prime, sigma):
    closed = g.hockey_stick(shift, eps_prime, sigma)
    quad = g.hockey_stick_quadrature(shift, eps_prime, sigma)
    assert abs(closed - quad) <= HI.mpf(10) ** -35 * max(1, abs(closed))


def test_zero_shift_and_monotone_in_shift():
    assert g.hockey_stick(0, 1.0, 1.0) == 0
    assert abs(g.hockey_stick(0, -1.0, 1.0) - (1 - HI.exp(-1))) < HI.mpf(10) ** -45
    vals = [g.hockey_stick(s, 1.0, 2.0) for s in (0.5, 1, 2, 4)]
    assert all(a < b for a, b in zip(vals, vals[1:]))


@pytest.mark.parametrize("sens, eps, delta", LAWS)
def test_sigma_for_is_certified_and_minimal(sens, eps, delta):
    sigma = g.sigma_for(sens, eps, delta)
    assert g.delta_for_sigma(sigma, sens, eps) <= delta
    # minimal: 1e-40 below sigma is still fine only within the certification margin, 1e-30
    # below is not (the returned sigma is within a relative 2^-152 of the true minimum)
    assert g.delta_for_sigma(HI.mpf(sigma) * (1 - HI.mpf(10) ** -30), sens, eps, prec=256) > delta
    # delta at the worst shift equals the closed form (one Gaussian component, no composition)
    assert g.hockey_stick(sens, eps, sigma) == g.delta_for_sigma(sigma, sens, eps)


def test_sigma_scales_with_sensitivity_and_beats_classical_calibration():
    s1, s3 = g.sigma_for(1, 0.5, 1e-6), g.sigma_for(3, 0.5, 1e-6)
    assert abs(HI.mpf(s3) / s1 - 3) < HI.mpf(10) ** -40
    classical = HI.sqrt(2 * HI.log(HI.mpf(1.25) / 1e-6)) / 0.5  # Dwork-Roth Thm A.1 (eps < 1)
    assert s1 < classical


def test_dp_accounting_confirms_delta():
    pld = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution")
    for sens, eps, delta in [(1, 1, 1e-5), (9.8, 1, 1e-6), (2, 0.3, 1e-4)]:
        sigma = float(g.sigma_for(sens, eps, delta))
        dist = pld.from_gaussian_mechanism(sigma, sensitivity=sens, pessimistic_estimate=True,
                                           value_discretization_interval=1e-4)
        theirs = dist.get_delta_for_epsilon(eps)
        ours = float(g.delta_for_sigma(sigma, sens, eps))
        assert ours <= theirs * (1 + 1e-9) and theirs <= delta * 1.01


def test_ppf_is_the_normal_quantile():
    assert g.ppf(0.5, 2.0) == 0
    for u in (1e-300, 1e-12, 0.1, 0.3, 0.9, 1 - 2 ** -53):
        assert float(g.ppf(u, 1.5)) == pytest.approx(1.5 * stats.norm.ppf(u), rel=1e-13)
    for u in (0.25, 0.375, 2.0 ** -20, 2.0 ** -40):  # 1 - u exact in float64: the quantile is odd
        assert abs(g.ppf(u, 1.5) + g.ppf(1 - u, 1.5)) < HI.mpf(10) ** -40
    assert g.sample([0.25, 0.5], 1.0) == [g.ppf(0.25, 1.0), 0]


@pytest.mark.parametrize("call, match", [
    (lambda: g.sigma_for(1, 1, 1.0), "delta must satisfy 0 < delta < 1"),
    (lambda: g.sigma_for(1, 1, 0), "delta must satisfy 0 < delta < 1"),
    (lambda: g.sigma_for("1", 1, 1e-6), "sensitivity must be a real number"),
    (lambda: g.sigma_for(1, -1, 1e-6), "eps must be finite and > 0"),
    (lambda: g.delta_for_sigma(0, 1, 1), "sigma must be finite and > 0"),
    (lambda: g.hockey_stick([], 1, 1), "shift must be"),
    (lambda: g.hockey_stick(1, "1", 1), "eps_prime must be a real number"),
])
def test_bad_input(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


def test_ppf_refuses_uniforms_outside_the_open_interval():
    with pytest.raises(UniformsError):
        g.ppf(1.0, 1.0)
    with pytest.raises(UniformsError):
        g.ppf(0, 1.0)
