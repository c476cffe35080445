"""dpxattn.fast.noise: truncated Laplace by exact-CDF inversion in float64 (PAPER §2.1)."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

import dpxattn.fast.noise as noise_mod
from dpxattn.errors import ParameterError, UniformsError
from dpxattn.fast.noise import tlap_constants, tlap_ppf, truncated_laplace
from dpxattn.fast.uniforms import torch_generator_uniforms
from dpxattn.randomness import LABEL_SECURE
from dpxattn.reference import truncated_laplace as ref_tl

LAWS = [(1, 1, 1e-5), (1, 0.05, 1e-6), (3, 2, 0.4), (1, 1, 0.5), (2.5, 0.3, 1e-3),
        (1, 1e-3, 1e-15), (1, 10, 1e-12), (Fraction(7, 3), Fraction(1, 10), Fraction(1, 10**9))]

EXTREME_U = [2.0**-54, 1e-300, 1e-20, 1e-16, 1e-12, 0.25, 0.5 - 2.0**-54, 0.5, 0.5 + 2.0**-53,
             0.75, 1 - 1e-12, 1 - 2.0**-53]


def _exact_ppf(u: float, sens, eps, delta):
    return ref_tl.ppf(u, sens, eps, delta, prec=200)


@pytest.mark.parametrize("sens,eps,delta", LAWS)
def test_constants_bracket_the_exact_support_bound(sens, eps, delta):
    k = tlap_constants(sens, eps, delta)
    # parameters were rounded in the safe direction
    assert Fraction(k.sensitivity) >= Fraction(sens)
    assert Fraction(k.eps) <= Fraction(eps) and Fraction(k.delta) <= Fraction(delta)
    A = ref_tl.support_bound(k.sensitivity, k.eps, k.delta, prec=300)
    assert k.support_down <= A <= k.support_up
    assert k.support_up - k.support_down <= 4 * math.ulp(k.support_up)
    assert k.A == k.support_up
    assert k.b == k.sensitivity / k.eps
    a = ref_tl.truncation(k.sensitivity, k.eps, k.delta, prec=200)
    assert abs(k.a - float(a)) <= 2 * math.ulp(k.a)
    assert abs(k.e_minus_a - float(mpmath.exp(-a))) <= 4 * math.ulp(k.e_minus_a)
    assert k.variance_bound > float(ref_tl.variance(sens, eps, delta, prec=100))


@pytest.mark.parametrize("sens,eps,delta", LAWS)
def test_ppf_matches_exact_inversion_to_a_few_ulps(sens, eps, delta, rng):
    us = EXTREME_U + rng.random(40).tolist()
    k = tlap_constants(sens, eps, delta)
    z = tlap_ppf(torch.tensor(us, dtype=torch.float64), sens, eps, delta)
    for u, got in zip(us, z.tolist()):
        exact = _exact_ppf(u, k.sensitivity, k.eps, k.delta)
        # 8 ulps of the support bound's scale near 0, 8 ulps relative elsewhere
        tol = 8 * 2.0**-52 * max(abs(float(exact)), k.b * 2.0**-20)
        assert abs(got - float(exact)) <= tol, (u, got, exact)


def test_textbook_formula_is_worse_at_the_extremes():
    """Power of the accuracy test: the conventions' textbook float64 formula
    -b log1p(-|2u-1| (1 - e^-a)) is off by ~e^a ulps near u = 1 - 2^-53 at tiny delta."""
    sens, eps, delta = 1, 1e-3, 1e-15
    k = tlap_constants(sens, eps, delta)
    u = 1 - 2.0**-53
    textbook = -k.b * math.log1p(-abs(2 * u - 1) * (-math.expm1(-k.a)))
    exact = float(_exact_ppf(u, k.sensitivity, k.eps, k.delta))
    ours = tlap_ppf(torch.tensor([u], dtype=torch.float64), sens, eps, delta).item()
    assert abs(textbook - exact) > 1e6 * abs(ours - exact) + 1e-9


@pytest.mark.parametrize("sens,eps,delta", LAWS[:5])
def test_ppf_symmetry_centre_and_support(sens, eps, delta):
    k = tlap_constants(sens, eps, delta)
    # exact 53-bit grid k 2^-53, closed under u -> 1 - u
    grid = np.arange(1, 2**53, 2**43 + 12345, dtype=np.int64).astype(np.float64) * 2.0**-53
    u = torch.tensor(np.concatenate([grid, EXTREME_U]), dtype=torch.float64)
    z = tlap_ppf(u, sens, eps, delta)
    assert tlap_ppf(torch.tensor([0.5], dtype=torch.float64), sens, eps, delta).item() == 0.0
    zs = tlap_ppf(torch.tensor(grid, dtype=torch.float64), sens, eps, delta)
    zm = tlap_ppf(torch.tensor(1.0 - grid, dtype=torch.float64), sens, eps, delta)
    assert torch.equal(zs, -zm)
    assert float(z.abs().max()) <= k.support_down <= k.support_up
    assert bool((torch.diff(tlap_ppf(torch.sort(u).values, sens, eps, delta)) >= 0).all())


def test_sources_and_labels(seed):
    g1 = torch.Generator().manual_seed(seed)
    g2 = torch.Generator().manual_seed(seed)
    a = truncated_laplace((3, 4), 1.0, 1.0, 1e-6, generator=g1)
    b = truncated_laplace((3, 4), 1.0, 1.0, 1e-6, generator=g2)
    assert a.shape == (3, 4) and a.dtype == torch.float64 and torch.equal(a, b)
    # a torch generator is the stream of its 53-bit uniforms, in order
    u = torch_generator_uniforms(torch.Generator().manual_seed(seed), 12)
    assert bool(((u > 0) & (u < 1)).all())
    assert torch.equal(a.reshape(-1), tlap_ppf(u, 1.0, 1.0, 1e-6))
    n1 = truncated_laplace(5, 1.0, 1.0, 1e-6, generator=np.random.default_rng(seed))
    n2 = truncated_laplace(5, 1.0, 1.0, 1e-6, generator=np.random.default_rng(seed))
    assert torch.equal(n1, n2)
    s1 = truncated_laplace(1000, 1.0, 1.0, 1e-6)
    s2 = truncated_laplace(1000, 1.0, 1.0, 1e-6)
    assert not torch.equal(s1, s2)  # fresh OS entropy (a collision has probability ~ 0)
    assert LABEL_SECURE.startswith("secure")


def test_given_uniforms_are_consumed_row_major(rng):
    u = rng.random(24)
    z = truncated_laplace((2, 3, 4), 2.0, 0.5, 1e-4, uniforms=u)
    assert torch.equal(z.reshape(-1), tlap_ppf(torch.tensor(u), 2.0, 0.5, 1e-4))
    z32 = truncated_laplace((2, 3, 4), 2.0, 0.5, 1e-4, uniforms=u, dtype=torch.float32)
    assert z32.dtype == torch.float32 and torch.equal(z32, z.to(torch.float32))
    with pytest.raises(UniformsError, match="length"):
        truncated_laplace((2, 3), 1, 1, 1e-4, uniforms=u)
    with pytest.raises(UniformsError, match=r"\(0, 1\)"):
        truncated_laplace(2, 1, 1, 1e-4, uniforms=[0.5, 1.0])
    with pytest.raises(UniformsError, match=r"\(0, 1\)"):
        truncated_laplace(2, 1, 1, 1e-4, uniforms=[0.0, 0.5])
    with pytest.raises(ParameterError, match="generator"):
        truncated_laplace(2, 1, 1, 1e-4, uniforms=[0.2, 0.5], generator=np.random.default_rng(0))


@pytest.mark.parametrize("kwargs,match", [
    (dict(sensitivity=0), "sensitivity must be finite and > 0"),
    (dict(eps=-1), "eps must be finite and > 0"),
    (dict(delta=0.6), "delta must satisfy 0 < delta <= 1/2"),
    (dict(delta=0), "delta must satisfy"),
    (dict(eps=float("inf")), "eps must"),
])
def test_bad_parameters_name_the_bound(kwargs, match):
    args = dict(sensitivity=1.0, eps=1.0, delta=1e-6) | kwargs
    with pytest.raises(ParameterError, match=match):
        truncated_laplace(3, args["sensitivity"], args["eps"], args["delta"])


def test_large_draws_are_chunked(monkeypatch, seed):
    """A draw of many chunks asks the stream for at most NOISE_CHUNK uniforms at a time and
    equals the same uniforms converted at once."""
    monkeypatch.setattr(noise_mod, "NOISE_CHUNK", 1000)
    from dpxattn.fast import uniforms as umod

    asked = []
    original = umod.UniformStream.take

    def spy(self, k):
        asked.append(k)
        return original(self, k)

    monkeypatch.setattr(umod.UniformStream, "take", spy)
    u = np.random.default_rng(seed).random(10_500)
    z = truncated_laplace(10_500, 1.0, 1.0, 1e-6, uniforms=u)
    assert max(asked) <= 1000 and sum(asked) == 10_500 and len(asked) == 11
    assert torch.equal(z, tlap_ppf(torch.tensor(u), 1.0, 1.0, 1e-6))


def _cdf(z: np.ndarray, k) -> np.ndarray:
    """Exact TLap CDF in float64 (PAPER §2.1)."""
    mass = -np.expm1(-np.abs(z) / k.b) / (2 * k.one_minus_e_minus_a)
    return np.clip(0.5 + np.sign(z) * mass, 0.0, 1.0)


@pytest.mark.statistical
def test_kolmogorov_smirnov_with_power(seed):
    """KS of 1.2e5 seeded draws against the exact CDF; alpha = 1e-6 (DKW: P[D > t] <= 2e^{-2nt^2}).

    Power: the same statistic rejects the sampler with its scale multiplied by 0.7 and 1.3.
    """
    n, alpha = 120_000, 1e-6
    sens, eps, delta = 1.0, 0.5, 1e-5
    k = tlap_constants(sens, eps, delta)
    z = truncated_laplace(n, sens, eps, delta, generator=torch.Generator().manual_seed(seed))
    crit = math.sqrt(math.log(2 / alpha) / (2 * n))
    grid = np.sort(z.numpy())
    ecdf_hi = np.arange(1, n + 1) / n
    ecdf_lo = np.arange(0, n) / n

    def ks(sample):
        F = _cdf(sample, k)
        return max(np.max(ecdf_hi - F), np.max(F - ecdf_lo))

    assert ks(grid) <= crit
    assert ks(np.sort(grid * 0.7)) > crit
    assert ks(np.sort(grid * 1.3)) > crit



@pytest.mark.parametrize("eps", [710.0, 1e6])
def test_huge_eps_is_a_parameter_error_not_an_overflow(eps):
    """e^eps overflows float64 above ~709.78: the float path refuses with a typed error."""
    from dpxattn.errors import ParameterError
    from dpxattn.fast.noise import tlap_constants

    with pytest.raises(ParameterError, match=r"eps"):
        tlap_constants(1.0, eps, 1e-6)
