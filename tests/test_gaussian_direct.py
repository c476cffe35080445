"""law="gaussian" for the ``direct`` mechanism: reference and fast, float noise path.

The analytic Gaussian mechanism (``proofs_notes/24-analytic-gaussian.md``) on the l2 sensitivity of
the whole S (``reference.sensitivity.direct_statistic_l2``), one uniform per entry in TLap's
order (z = sigma Phi^-1(u)); the plan's single Gaussian component; the Gaussian high-probability
envelope (``proofs_notes/16-certified-envelope.md``, "Gaussian law"); the refusals (secure mode,
unknown laws, the sure envelope; the tree: tests/test_gaussian_tree.py).

Statistical tests state their false-alarm rate alpha (1e-6, fixed seeds) and show their power
on deliberately wrong variants kept as fixtures (sigma x0.7 / x1.3; an envelope halved).
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
from scipy import stats

from dpxattn.accounting import NUMERICS_FLOAT_GAUSSIAN, plan_direct
from dpxattn.errors import NoSureEnvelopeError, ParameterError
from dpxattn.fast import DPCrossAttention
from dpxattn.fast import cross_attention as fast_ca
from dpxattn.fast.noise import gaussian, gaussian_ppf, normal_quantile
from dpxattn.fast.sensitivities import direct_gaussian_constants
from dpxattn.reference import DPCrossAttention as RefDPCrossAttention
from dpxattn.reference import gaussian as ref_gaussian
from dpxattn.reference import sensitivity, taylor_attention
from dpxattn.reference._mp import DEFAULT_PREC, context
from dpxattn.reference.direct import gaussian_constants, noise_index
from dpxattn.reference.envelope import (GaussianNoiseGroup, NoiseGroup, gaussian_noise_bound,
                                        hp_noise_bound, sure_noise_bound)

ALPHA = 1e-6
CTX = context(DEFAULT_PREC)
KW = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0)
#: DESIGN §6: float64 answers vs the exact reference from the same uniforms
RTOL, ATOL = 1e-10, 1e-12


def _data(rng, n, d, d_v, m=4):
    return rng.random((n, d)), rng.uniform(-1, 1, (n, d_v)), rng.random((m, d))


def _taylor64(Q, K, V, degree):
    """Noiseless Taylor attention in float64 (torch)."""
    t = (Q @ K.T) / K.shape[1]
    T = sum(t**j / math.factorial(j) for j in range(degree + 1))
    return (T @ V) / T.sum(dim=1, keepdim=True)


def _f(rows):
    return np.array([[float(x) for x in row] for row in rows])


def _build_both(K, V, degree, u, **kw):
    kw = {**KW, **kw}
    ref = RefDPCrossAttention.build(K, V, degree=degree, law="gaussian", uniforms=u, **kw)
    fast = DPCrossAttention.build(torch.tensor(K), torch.tensor(V), degree=degree,
                                  law="gaussian", uniforms=u, **kw)
    return ref, fast


# ---------------------------------------------------------------------------------------------
# "tlap" stays the default, bit for bit
# ---------------------------------------------------------------------------------------------

def test_tlap_is_the_default_and_explicit_tlap_is_identical(rng):
    K, V, Q = _data(rng, 12, 2, 2)
    count = DPCrossAttention.noise_count(n=12, d=2, d_v=2, degree=2)
    u = rng.random(count)
    Kt, Vt, Qt = torch.tensor(K), torch.tensor(V), torch.tensor(Q)
    a = DPCrossAttention.build(Kt, Vt, degree=2, uniforms=u, **KW)
    b = DPCrossAttention.build(Kt, Vt, degree=2, uniforms=u, law="tlap", **KW)
    assert a.law == b.law == "tlap"
    assert torch.equal(a.release.S, b.release.S)
    assert torch.equal(a.query(Qt), b.query(Qt))
    assert torch.equal(a.error_bound(Qt), b.error_bound(Qt))
    assert torch.equal(a.hp_error_bound(Qt, 0.1), b.hp_error_bound(Qt, 0.1))
    assert str(a.privacy) == str(b.privacy) and "law=" not in repr(a)
    r1 = RefDPCrossAttention.build(K, V, degree=2, uniforms=u, **KW)
    r2 = RefDPCrossAttention.build(K, V, degree=2, uniforms=u, law="tlap", **KW)
    assert r1.release.noisy == r2.release.noisy and r1.law == "tlap"
    assert r1.error_bound(Q) == r2.error_bound(Q) and "law=" not in repr(r1)
    # the plan's budget is the one plan_direct has always given; its composition wording too
    assert a.privacy.components == plan_direct(eps=1.0, delta=1e-6, n=12, d=2, d_v=2,
                                               degree=2).components
    assert "basic composition over 1 components" in str(a.privacy)
    assert a.privacy.numerics == fast_ca.NUMERICS_FLOAT


def test_tlap_plan_records_numeric_l1_sensitivity_and_scale(rng):
    K, V, _ = _data(rng, 6, 2, 2)
    fast = DPCrossAttention.build(torch.tensor(K), torch.tensor(V), degree=2,
                                  generator=torch.Generator().manual_seed(1), **KW)
    ref = RefDPCrossAttention.build(K, V, degree=2, generator=np.random.default_rng(1), **KW)
    delta1 = float(sensitivity.direct_statistic(2, 2, 1, 1, 2))
    for att in (fast, ref):
        c = att.privacy.to_dict()["components"][0]
        # every key that was there before, unchanged in meaning
        for key in ("key", "name", "count", "eps_each", "delta_each", "eps_each_exact",
                    "delta_each_exact", "sensitivity", "one_component_is"):
            assert key in c
        assert (c["law"], c["sensitivity_norm"], c["sigma"]) == ("tlap", "l1", None)
        assert c["sensitivity_value"] == pytest.approx(delta1, rel=1e-15)
        assert c["laplace_scale"] == pytest.approx(delta1 / c["eps_each"], rel=1e-15)
        assert att.privacy.to_dict()["composition"] == "basic"
    assert fast.privacy.components[0].sensitivity_value >= delta1  # rounded up, never down


# ---------------------------------------------------------------------------------------------
# The float sampler: sigma Phi^-1(u), tail-accurate
# ---------------------------------------------------------------------------------------------

EXTREME_U = [2.0**-1074, 5e-324, 1e-300, 1e-200, 1e-50, 2.0**-53, 1e-10, 0.02425, 0.3,
             0.5 - 2.0**-53, 0.5 + 2.0**-53, 0.9, 1 - 1e-10, 1 - 2.0**-52, 1 - 2.0**-53]


def test_normal_quantile_matches_the_exact_quantile_in_both_tails(rng):
    u = np.concatenate([EXTREME_U, rng.random(60), 10.0 ** rng.uniform(-320, -1, 60),
                        1 - rng.random(40) * 10.0 ** rng.uniform(-15, -1, 40)])
    u = u[(u > 0) & (u < 1)]
    z = normal_quantile(torch.tensor(u)).numpy()
    for ui, zi in zip(u, z):
        exact = ref_gaussian.ppf(float(ui), 1, prec=80)
        assert abs(mpmath.mpf(float(zi)) - exact) <= 8 * 2.0**-53 * abs(exact), ui
    half = normal_quantile(torch.tensor([0.5], dtype=torch.float64))
    assert half.item() == 0.0 and not math.copysign(1.0, half.item()) < 0
    # odd: q(1 - u) = -q(u) exactly where 1 - u is exact
    v = torch.tensor([2.0**-53, 1e-3, 0.25, 0.375], dtype=torch.float64)
    assert torch.equal(normal_quantile(1 - v), -normal_quantile(v))


def test_gaussian_sampler_shapes_sources_and_validation():
    g = torch.Generator().manual_seed(3)
    x = gaussian((3, 4), 2.5, generator=g)
    assert x.shape == (3, 4) and x.dtype == torch.float64
    u = np.array([0.5, 0.1, 0.9])
    assert torch.equal(gaussian(3, 2.0, uniforms=u), gaussian_ppf(torch.tensor(u), 2.0))
    assert gaussian(5, 1.0).shape == (5,)  # OS CSPRNG uniforms
    assert gaussian(2, 1.0, uniforms=[0.2, 0.7], dtype=torch.float32).dtype == torch.float32
    for bad in (0, -1.0, float("inf"), "1"):
        with pytest.raises(ParameterError, match="sigma"):
            gaussian(3, bad)


# --- goodness of fit of the released noise, with power (DESIGN §6) ----------------------------

#: one build releases r (d_v + 1) = C(14, 4) x 120 = 120,120 Gaussian draws (n = 3 keys)
GOF = dict(n=3, d=10, d_v=119, degree=4)


@pytest.fixture(params=[0.7, 1.3], ids=["sigma_x0.7", "sigma_x1.3"])
def wrong_sigma(request, monkeypatch):
    """A deliberately wrong fast path: it releases sigma x factor while the plan (and the test)
    expect the reference's sigma. Yields (factor, the true sigma)."""
    factor = request.param
    original = fast_ca.direct_gaussian_constants

    def wrong(**kw):
        l2, sigma = original(**kw)
        return l2, sigma * factor

    monkeypatch.setattr(fast_ca, "direct_gaussian_constants", wrong)
    return factor


def _released_noise(seed):
    """(noise of every entry of S, the sigma the reference calibrates): a seeded build minus the
    noiseless build (uniforms 1/2 give exactly zero noise)."""
    rng = np.random.default_rng(seed)
    K = torch.tensor(rng.random((GOF["n"], GOF["d"])))
    V = torch.tensor(rng.uniform(-1, 1, (GOF["n"], GOF["d_v"])))
    count = DPCrossAttention.noise_count(**GOF, law="gaussian")
    kw = dict(degree=GOF["degree"], law="gaussian", **KW)
    noisy = DPCrossAttention.build(K, V, generator=torch.Generator().manual_seed(seed),
                                   noise="float", **kw)
    exact = DPCrossAttention.build(K, V, uniforms=np.full(count, 0.5), **kw)
    _, sigma = gaussian_constants(GOF["d"], GOF["degree"], 1, 1, GOF["d_v"], 1, Fraction(1e-6))
    return (noisy.release.S - exact.release.S).reshape(-1).numpy(), float(sigma)


@pytest.mark.statistical
def test_released_noise_is_normal_with_the_calibrated_sigma(seed):
    """KS test of the released noise against N(0, sigma^2), sigma = the reference's
    sigma_for(direct_statistic_l2, eps, delta); alpha = 1e-6 (fixed seed)."""
    z, sigma = _released_noise(seed)
    assert z.size >= 1.2e5
    assert stats.kstest(z, stats.norm(scale=sigma).cdf).pvalue > ALPHA
    # and a moment check of the same draws (variance within its 1e-6 chi-square band)
    k = z.size
    lo, hi = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], k)
    assert lo <= float(np.sum((z / sigma) ** 2)) <= hi


@pytest.mark.statistical
def test_ks_rejects_a_wrong_sigma(seed, wrong_sigma):
    """Power: the same test at the same size rejects sigma x0.7 and x1.3."""
    z, sigma = _released_noise(seed)
    assert stats.kstest(z, stats.norm(scale=sigma).cdf).pvalue < ALPHA


# ---------------------------------------------------------------------------------------------
# Conformance: reference vs fast from shared uniforms (1e-10 relative)
# ---------------------------------------------------------------------------------------------

#: (n, d, d_v, degree, uniform pattern): n = 1, powers of two and +-1, d = 1 and odd,
#: degree 0..4, extreme uniforms
CONFORMANCE = [
    (1, 1, 1, 0, "random"), (2, 2, 1, 1, "random"), (7, 3, 2, 2, "random"),
    (8, 1, 2, 4, "random"), (9, 2, 1, 3, "random"), (16, 3, 1, 2, "low"),
    (17, 2, 2, 2, "high"), (4, 2, 2, 3, "extreme"), (5, 3, 1, 2, "tiny"),
]


def _uniforms(pattern, count, rng):
    if pattern == "random":
        return rng.random(count)
    if pattern == "low":
        return np.full(count, 2.0**-53)
    if pattern == "high":
        return np.full(count, 1 - 2.0**-53)
    if pattern == "tiny":
        return np.where(rng.random(count) < 0.5, 1e-300, 1 - 2.0**-53)
    return rng.choice(np.array(EXTREME_U), count)


def _conformance(n, d, d_v, degree, pattern, rng) -> dict:
    """Reference vs fast from the same uniforms: each quantity's worst excess over its DESIGN §6
    tolerance (<= 1 conforms): S entry by entry, the answers, and the hp envelope (fast never
    below the exact one, and within 1e-10 of it)."""
    K, V, Q = _data(rng, n, d, d_v, m=5)
    Q[-1] = 1.0  # the far corner of the query box
    count = RefDPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism="direct",
                                            law="gaussian")
    assert count == DPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=degree,
                                                 law="gaussian")
    u = _uniforms(pattern, count, rng)
    ref, fast = _build_both(K, V, degree, u)
    rS, fS = _f(ref.release.noisy), fast.release.S.numpy()
    ra, fa = _f(ref.query(Q)), fast.query(torch.tensor(Q)).numpy()
    out = {"S": np.max(np.abs(fS - rS) / (RTOL * np.abs(rS) + ATOL * np.abs(rS).max())),
           "answer": np.max(np.abs(fa - ra) / (RTOL * np.abs(ra) + ATOL)), "hp": 0.0}
    for p in (0.05, 1e-9):
        rh, fh = _f(ref.hp_error_bound(Q, p)), fast.hp_error_bound(torch.tensor(Q), p).numpy()
        below = np.inf if np.any(fh < rh) else 0.0
        out["hp"] = max(out["hp"], below, np.max((fh - rh) / (RTOL * rh)))
    out["sigma"] = (fast.privacy.components[0].sigma, ref.release.sigma)
    return out


@pytest.mark.parametrize("n,d,d_v,degree,pattern", CONFORMANCE)
def test_reference_and_fast_conform_from_shared_uniforms(n, d, d_v, degree, pattern, rng):
    out = _conformance(n, d, d_v, degree, pattern, rng)
    assert out["S"] <= 1 and out["answer"] <= 1 and out["hp"] <= 1, out
    # sigma: the reference's, rounded up once
    fast_sigma, ref_sigma = out["sigma"]
    assert fast_sigma >= ref_sigma and fast_sigma == pytest.approx(float(ref_sigma), rel=1e-15)


def test_conformance_power_sigma_off_by_1e_8(monkeypatch, rng):
    """A fast sigma 1e-8 too large (relative) is caught by the 1e-10 tolerance."""
    original = fast_ca.direct_gaussian_constants
    monkeypatch.setattr(fast_ca, "direct_gaussian_constants",
                        lambda **kw: (original(**kw)[0], original(**kw)[1] * (1 + 1e-8)))
    out = _conformance(7, 3, 2, 2, "random", rng)
    assert out["S"] > 1 and out["answer"] > 1


def test_conformance_power_uniform_order_swapped(reversed_uniform_order, rng):
    """Consuming the uniforms in another order (reversed per chunk) is caught."""
    out = _conformance(7, 3, 2, 2, "random", rng)
    assert out["S"] > 1 and out["answer"] > 1


def test_uniform_order_and_one_draw_per_entry_in_the_reference(rng):
    n, d, d_v, degree = 4, 2, 2, 2
    K, V, _ = _data(rng, n, d, d_v)
    count = RefDPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism="direct",
                                            law="gaussian")
    u = rng.random(count)
    att = RefDPCrossAttention.build(K, V, degree=degree, law="gaussian", uniforms=u, **KW)
    noiseless = RefDPCrossAttention.build(K, V, degree=degree, law="gaussian",
                                          uniforms=np.full(count, 0.5), **KW)
    sigma = att.release.sigma
    for t, row in enumerate(att.release.noisy):
        for k, x in enumerate(row):
            draw = ref_gaussian.ppf(u[noise_index(t, k, d_v)], sigma)
            assert abs(x - noiseless.release.noisy[t][k] - draw) <= CTX.mpf(2) ** -140 * (1 + abs(x))


@pytest.mark.parametrize("n,d,d_v,degree", [(1, 1, 1, 0), (6, 3, 2, 3)])
def test_uniforms_one_half_give_the_noiseless_taylor_attention(n, d, d_v, degree, rng):
    K, V, Q = _data(rng, n, d, d_v)
    count = DPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=degree, law="gaussian")
    ref, fast = _build_both(K, V, degree, np.full(count, 0.5))
    exact = taylor_attention(Q, K, V, degree=degree)
    diff = max(abs(a - b) for ra, rb in zip(ref.query(Q), exact) for a, b in zip(ra, rb))
    assert diff <= CTX.mpf(2) ** -140
    np.testing.assert_allclose(fast.query(torch.tensor(Q)).numpy(), _f(exact), rtol=1e-13,
                               atol=1e-15)


# ---------------------------------------------------------------------------------------------
# The privacy plan: one Gaussian component, numbers recorded, outside oracle
# ---------------------------------------------------------------------------------------------

def test_plan_is_one_gaussian_component_with_its_numbers(rng):
    n, d, d_v, degree = 10, 3, 2, 2
    K, V, _ = _data(rng, n, d, d_v)
    ref = RefDPCrossAttention.build(K, V, degree=degree, law="gaussian",
                                    generator=np.random.default_rng(2), **KW)
    fast = DPCrossAttention.build(torch.tensor(K), torch.tensor(V), degree=degree, law="gaussian",
                                  generator=torch.Generator().manual_seed(2), **KW)
    l2 = sensitivity.direct_statistic_l2(d, degree, 1, 1, d_v)
    sigma = ref_gaussian.sigma_for(l2, 1, Fraction(1e-6))
    for att in (ref, fast):
        plan = att.privacy
        info = plan.to_dict()
        assert info["composition"] == "none" and info["total_checks"] is True
        [c] = info["components"]
        assert (c["key"], c["count"], c["law"], c["sensitivity_norm"]) == ("S", 1, "gaussian", "l2")
        assert c["eps_each"] == 1.0 and c["delta_each"] == 1e-6 and c["laplace_scale"] is None
        assert c["sensitivity_value"] == pytest.approx(float(l2), rel=1e-14)
        assert c["sigma"] == pytest.approx(float(sigma), rel=1e-14)
        assert c["sensitivity_value"] >= float(l2) * (1 - 1e-16) and c["sigma"] >= float(sigma) * (1 - 1e-16)
        text = str(plan)
        assert "no composition" in text and "basic composition" not in text
        assert "one Gaussian release" in text and "sigma" in text
        assert plan.total() == (Fraction(1.0), Fraction(1e-6))
    assert fast.privacy.numerics == NUMERICS_FLOAT_GAUSSIAN and "NOT hardened" in fast.privacy.numerics
    assert "idealised real arithmetic" in ref.privacy.numerics
    assert "law='gaussian'" in repr(fast) and "law='gaussian'" in repr(ref)


def test_dp_accounting_confirms_the_plans_delta():
    """Outside oracle: dp_accounting's pessimistic PLD of the Gaussian mechanism with the plan's
    own numbers (sigma, l2 sensitivity) gives delta(eps) <= the claimed delta; a sigma 5 % too
    small (the same claim) is flagged."""
    pld = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution")
    rng = np.random.default_rng(0)
    for (d, degree, d_v, eps, delta) in [(8, 3, 8, 1.0, 1e-6), (2, 2, 1, 0.5, 1e-5),
                                        (4, 2, 3, 4.0, 1e-9)]:
        K, V = rng.random((5, d)), rng.uniform(-1, 1, (5, d_v))
        att = DPCrossAttention.build(torch.tensor(K), torch.tensor(V), degree=degree,
                                     law="gaussian", eps=eps, delta=delta, R=1.0, R_w=1.0,
                                     generator=torch.Generator().manual_seed(0))
        [c] = att.privacy.to_dict()["components"]

        def pld_delta(sigma):
            dist = pld.from_gaussian_mechanism(sigma, sensitivity=c["sensitivity_value"],
                                               pessimistic_estimate=True,
                                               value_discretization_interval=1e-4)
            return dist.get_delta_for_epsilon(c["eps_each"])

        theirs = pld_delta(c["sigma"])
        assert theirs <= c["delta_each"] * (1 + 1e-9), (theirs, c["delta_each"])
        assert theirs >= c["delta_each"] * 0.99  # tight: sigma is the smallest that meets it
        assert pld_delta(0.95 * c["sigma"]) > 1.5 * c["delta_each"]


# ---------------------------------------------------------------------------------------------
# Envelopes: no sure one; the hp one is exact in law and holds at its failure rate
# ---------------------------------------------------------------------------------------------

def test_error_bound_refuses_and_points_to_hp_error_bound(rng):
    K, V, Q = _data(rng, 5, 2, 1)
    ref = RefDPCrossAttention.build(K, V, degree=2, law="gaussian",
                                    generator=np.random.default_rng(0), **KW)
    fast = DPCrossAttention.build(torch.tensor(K), torch.tensor(V), degree=2, law="gaussian",
                                  generator=torch.Generator().manual_seed(0), **KW)
    for att, q in ((ref, Q), (fast, torch.tensor(Q))):
        for method in (att.error_bound, att.attention_error_bound):
            with pytest.raises(NoSureEnvelopeError, match="hp_error_bound") as info:
                method(q)
            assert isinstance(info.value, ValueError) and "unbounded" in str(info.value)
        assert att.kernel_error_bound() > 0  # the kernel's constant is law-free
    with pytest.raises(NoSureEnvelopeError):
        sure_noise_bound([GaussianNoiseGroup((CTX.one,), CTX.one)], CTX)
    with pytest.raises(ValueError, match="mix"):
        hp_noise_bound([GaussianNoiseGroup((CTX.one,), CTX.one),
                        NoiseGroup((CTX.one,), CTX.one, CTX.one, CTX.one)], 0.1, CTX)


def test_reference_hp_envelope_is_the_stated_formula(rng):
    """hp_error_bound(q, p) of a Gaussian direct build is, to working precision, the ratio step
    at t_N = t_D = sigma ||P(q)||_2 Phi^-1(1 - p/4) (p/2 each to numerator and denominator),
    plus the rounding allowance (``proofs_notes/16-certified-envelope.md``, "Gaussian law"); the
    quantile recomputed here independently (mpmath erfinv)."""
    from dpxattn.reference.envelope import hp_ratio_error_bound, rounding_allowance

    K, V, Q = _data(rng, 6, 2, 2, m=3)
    att = RefDPCrossAttention.build(K, V, degree=2, law="gaussian", eps=3, delta=1e-6, R=1,
                                    R_w=1, generator=np.random.default_rng(4))
    p = 0.01
    for q, row in zip(att._queries(Q), att.hp_error_bound(Q, p)):
        z = CTX.sqrt(2) * CTX.erfinv(1 - CTX.mpf(p) / 2)  # Phi^-1(1 - p/4)
        t = att.release.sigma * CTX.sqrt(CTX.fsum(x * x for x in q)) * z
        D = att.release.denominator(q)
        for a, h in zip(att.release.answer(q), row):
            b = hp_ratio_error_bound(t, t, CTX.one, D, a)
            expected = b + rounding_allowance(b, 1, prec=DEFAULT_PREC)
            assert expected <= h <= expected * (1 + CTX.mpf(10) ** -40)


@pytest.mark.parametrize("p", [0.3, 1e-3, Fraction(1, 10**12)])
def test_gaussian_threshold_is_the_exact_two_sided_quantile(p):
    coef = (CTX.mpf(1), CTX.mpf(0.5), CTX.mpf(2))
    groups = [GaussianNoiseGroup(coef, CTX.mpf(3)), GaussianNoiseGroup((CTX.mpf(1),), CTX.mpf(2))]
    t = gaussian_noise_bound(groups, p, CTX)
    sd = CTX.sqrt(9 * (1 + 0.25 + 4) + 4)
    tail = CTX.erfc(t / (sd * CTX.sqrt(2)))  # P[|N(0, sd^2)| > t]
    pm = CTX.mpf(p.numerator) / p.denominator if isinstance(p, Fraction) else CTX.mpf(p)
    assert tail <= pm and tail >= pm * (1 - CTX.mpf(10) ** -30)


def test_fast_hp_noise_bound_covers_the_exact_threshold(rng):
    """fast: sigma z ||U||_2 (1 + gamma) >= the reference's exact threshold of the same
    coefficients, and is within 1e-12 of it."""
    K, V, Q = _data(rng, 9, 3, 2, m=6)
    count = DPCrossAttention.noise_count(n=9, d=3, d_v=2, degree=3, law="gaussian")
    ref, fast = _build_both(K, V, 3, rng.random(count))
    terms = fast.release.envelope_terms(torch.tensor(Q))
    t_fast = fast.release.noise_bounds(terms, 0.01).numpy()
    for i, q in enumerate(ref._queries(Q)):
        t_ref = gaussian_noise_bound([GaussianNoiseGroup(tuple(q), ref.release.sigma)], 0.01, CTX)
        assert t_ref <= t_fast[i] <= float(t_ref) * (1 + 1e-12)


#: (fast builds, failure p, shrink of the over-optimistic variant); measured at this
#: configuration (3000 builds): failure rate 0.073 for the envelope, 0.37 for it halved
HP_FAST = (1000, 0.2, 2)


@pytest.mark.statistical
def test_fast_hp_envelope_failure_rate(seed):
    """Violations of hp_error_bound at a fixed query over independent fast builds are
    Binomial(B, <= p): reject above the (1 - alpha) binomial quantile, alpha = 1e-6 (262 of
    1000 at p = 0.2). Power: the envelope halved (over-optimistic) exceeds it."""
    builds, p, shrink = HP_FAST
    eps = 100.0
    rng = np.random.default_rng(seed)
    n, d, d_v, degree = 50, 2, 1, 2
    K = torch.tensor(rng.random((n, d)))
    V = torch.tensor(rng.uniform(-1, 1, (n, d_v)))
    Q = torch.tensor([[0.7, 0.3]], dtype=torch.float64)
    target = _taylor64(Q, K, V, degree)
    bad = worse = 0
    for b in range(builds):
        att = DPCrossAttention.build(K, V, degree=degree, law="gaussian", eps=eps, delta=1e-6,
                                     R=1.0, R_w=1.0, generator=np.random.default_rng([seed, b]))
        err = (att.query(Q) - target).abs().item()
        h = att.hp_error_bound(Q, p).item()
        bad += err > h
        worse += err > h / shrink
    threshold = stats.binom.ppf(1 - ALPHA, builds, p)
    assert bad <= threshold
    assert worse > threshold


@pytest.mark.statistical
def test_reference_hp_envelope_failure_rate(seed):
    """The same binomial test for the exact reference (300 builds, p = 0.2, alpha = 1e-6: at
    most 95 violations), with the envelope divided by 3 as the caught variant (measured at this
    configuration: failure rate 0.067 for the envelope, 0.55 for a third of it)."""
    builds, p = 300, 0.2
    rng = np.random.default_rng(seed)
    n, d, d_v, degree = 12, 2, 1, 2
    K, V = rng.random((n, d)), rng.uniform(-1, 1, (n, d_v))
    q = np.array([[0.7, 0.7]])
    [[t]] = taylor_attention(q, K, V, degree=degree)
    bad = worse = 0
    for _ in range(builds):
        att = RefDPCrossAttention.build(K, V, degree=degree, law="gaussian", eps=100,
                                        delta=Fraction(1, 10**6), R=1, R_w=1, generator=rng)
        [[o]] = att.query(q)
        [[h]] = att.hp_error_bound(q, p)
        bad += abs(o - t) > h
        worse += abs(o - t) > h / 3
    threshold = stats.binom.ppf(1 - ALPHA, builds, p)
    assert bad <= threshold
    assert worse > threshold


# ---------------------------------------------------------------------------------------------
# Utility: far less error than TLap at the canonical configuration
# ---------------------------------------------------------------------------------------------

def test_gaussian_error_is_far_below_tlap_at_the_canonical_configuration():
    """Canonical direct configuration (d = 8, degree 3, R = R_w = 1, d_v = 8, eps = 1,
    delta = 1e-6, keys U[0,1], values U[-1,1]), n = 1e4, 100 queries, 8 fixed seeds per law:
    measured mean |answer - Taylor attention| 0.0026 (gaussian) vs 0.018 (tlap), ratio ~0.14
    (the project's target: <= 1/5). Asserted conservatively: < 1/3. Fixed seeds: deterministic."""
    d, degree, d_v, n = 8, 3, 8, 10_000
    rng = np.random.default_rng(20260728)
    K = torch.tensor(rng.random((n, d)))
    V = torch.tensor(rng.uniform(-1, 1, (n, d_v)))
    Q = torch.tensor(rng.random((100, d)))
    target = _taylor64(Q, K, V, degree)
    err = {}
    for law in ("tlap", "gaussian"):
        err[law] = np.mean([
            (DPCrossAttention.build(K, V, degree=degree, law=law, noise="float",
                                    generator=torch.Generator().manual_seed(s), **KW).query(Q)
             - target).abs().mean().item() for s in range(8)])
    assert err["gaussian"] < err["tlap"] / 3, err
    # the noise scales behind it: sigma vs the TLap standard deviation
    l2, sigma = direct_gaussian_constants(d=d, degree=degree, R=1.0, R_w=1.0, d_v=d_v,
                                          eps=Fraction(1), delta=Fraction(1e-6))
    assert 9.2 < l2 < 9.3 and 38.5 < sigma < 39.5


# ---------------------------------------------------------------------------------------------
# Bad input: clear ParameterErrors naming what is wrong
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("law", ["laplace", "Gaussian", "tlap ", "", 1, None, b"tlap",
                                 ("gaussian",)])
def test_unknown_or_non_string_law_is_refused(law, rng):
    K, V, _ = _data(rng, 3, 1, 1)
    calls = [
        lambda: RefDPCrossAttention.build(K, V, degree=1, law=law, **KW),
        lambda: DPCrossAttention.build(torch.tensor(K), torch.tensor(V), degree=1, law=law,
                                       noise="float", **KW),
        lambda: RefDPCrossAttention.noise_count(n=3, d=1, d_v=1, degree=1, mechanism="direct",
                                                law=law),
        lambda: DPCrossAttention.noise_count(n=3, d=1, d_v=1, degree=1, law=law),
        lambda: plan_direct(eps=1, delta=1e-6, n=3, d=1, d_v=1, degree=1, law=law),
    ]
    for call in calls:
        with pytest.raises(ParameterError, match=r"law .*'tlap', 'gaussian'"):
            call()


def test_gaussian_secure_mode_is_the_hardened_default(rng):
    from dpxattn.fast.release import SecureGaussianLaw

    K, V = (torch.tensor(x) for x in _data(rng, 4, 2, 1)[:2])
    kw = dict(degree=1, law="gaussian", **KW)
    # the default without a generator is secure: the lattice release with discrete Gaussian noise
    att = DPCrossAttention.build(K, V, **kw)
    assert att.noise == "secure" and isinstance(att.release.law, SecureGaussianLaw)
    att = DPCrossAttention.build(K, V, noise="secure", generator=torch.Generator().manual_seed(0),
                                 **kw)
    assert att.noise == "secure" and isinstance(att.release.law, SecureGaussianLaw)
    # float mode: with the OS CSPRNG, a seeded generator or uniforms
    for extra in ({"noise": "float"}, {"generator": torch.Generator().manual_seed(0)},
                  {"uniforms": np.full(DPCrossAttention.noise_count(n=4, d=2, d_v=1, degree=1),
                                       0.25)}):
        att = DPCrossAttention.build(K, V, **kw, **extra)
        assert att.noise == "float" and att.law == "gaussian"
    # tlap keeps its secure default
    assert DPCrossAttention.build(K, V, degree=1, **KW).noise == "secure"


def test_gaussian_direct_keeps_the_direct_options_checks(rng):
    K, V, _ = _data(rng, 4, 1, 1)
    with pytest.raises(ParameterError, match="copies"):
        RefDPCrossAttention.build(K, V, degree=1, law="gaussian", copies=2, **KW)
    with pytest.raises(ParameterError, match="copies"):
        DPCrossAttention.build(torch.tensor(K), torch.tensor(V), degree=1, law="gaussian",
                               copies=2, noise="float", **KW)
    with pytest.raises(ParameterError, match="failure_prob"):
        DPCrossAttention.build(torch.tensor(K), torch.tensor(V), degree=1, law="gaussian",
                               noise="float", **KW).hp_error_bound(torch.tensor([[0.5]]), 1.5)
