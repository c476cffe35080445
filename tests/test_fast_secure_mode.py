"""Secure mode of dpxattn.fast.DPCrossAttention (the hardened release is the default; note 23).

Checks: the default build is hardened (every released number is a lattice point of its law and
within K g + g/2 of the computed sum), the privacy plan says so, float mode is unchanged (same
bits as the explicit float construction, noise=None == noise="float" with a generator),
envelopes hold in secure mode on random and adversarial queries, the hp envelope's exceedance
rate (alpha = 1e-6, with power), seeded secure builds are reproducible, uniforms + secure raise,
and the float64 summation bound of ``reference.sensitivity`` against exact Fraction sums.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from dpxattn.accounting import NUMERICS_FLOAT
from dpxattn.errors import ParameterError
from dpxattn.fast import DPCrossAttention
from dpxattn.fast.direct import statistic
from dpxattn.fast.noise import tlap_ppf
from dpxattn.fast.secure_noise import SECURE_NUMERICS
from dpxattn.randomness import LABEL_SEEDED
from dpxattn.reference import sensitivity as ref_sens

KW = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0)
ALPHA = 1e-6


def _data(rng, n, d, d_v, m=6):
    K = torch.tensor(rng.random((n, d)))
    V = torch.tensor(rng.uniform(-1.0, 1.0, (n, d_v)))
    Q = torch.tensor(rng.random((m, d)))
    return K, V, Q


def _taylor(Q, K, V, degree):
    t = (Q @ K.T) / K.shape[1]
    T = sum(t**j / math.factorial(j) for j in range(degree + 1))
    return (T @ V) / T.sum(dim=1, keepdim=True)


def _lattice_units(values: torch.Tensor, law) -> torch.Tensor:
    """values / g per entry (exact: g is a power of two), for a law broadcast over ``values``."""
    g = law.rounding * 2  # g/2 * 2, exact
    return values / g.expand_as(values)


def _is_integral(x: torch.Tensor) -> bool:
    return bool((x == torch.round(x)).all())


# --- the default is hardened ---------------------------------------------------------------

def test_default_build_is_secure_and_releases_lattice_points(rng):
    K, V, Q = _data(rng, 300, 2, 2)
    direct = DPCrossAttention.build(K, V, degree=2, **KW)
    assert direct.noise == "secure" and direct.release.secure
    S = direct.release.S
    assert _is_integral(_lattice_units(S, direct.release.law))
    # within K g + g/2 of the computed (noiseless) float64 sums, entrywise
    exact = statistic(K, V, degree=2, scale=None, r=direct.r)
    assert bool(((S - exact).abs() <= direct.release.law.support_up).all())
    assert not torch.equal(S, exact)

    tree = DPCrossAttention.build(K, V, degree=2, mechanism="tree", copies=2, **KW)
    rel = tree.release
    assert tree.noise == "secure" and rel.secure
    nodes = rel.payload.permute(0, 2, 3, 1, 4)  # (node, copy, column, coordinate, moment)
    assert _is_integral(nodes / (rel.node_law.rounding * 2).expand(2, *rel.node_law.shape))
    assert _is_integral(rel.scalars / (rel.scalar_law.rounding * 2).expand(2, *rel.scalar_law.shape))
    # the node laws: one lattice law per distinct (sensitivity, value bound); changed = N
    assert {p.changed for p in rel.node_law.constants} == {rel.N}
    assert {p.changed for p in rel.scalar_law.constants} == {1}


def test_float_mode_is_not_on_the_lattice(rng):
    """Power of the lattice check above: float noise does not give lattice points."""
    K, V, _ = _data(rng, 300, 2, 2)
    att = DPCrossAttention.build(K, V, degree=2, generator=torch.Generator().manual_seed(1), **KW)
    assert att.noise == "float"
    secure = DPCrossAttention.build(K, V, degree=2, **KW)
    g = 2.0 ** secure.release.law.constants[0].exponent  # the secure law's granularity
    assert float(secure.release.law.rounding.max()) * 2 == g and g <= 2.0 ** -30
    assert not _is_integral(att.release.S / g)


def test_privacy_plan_records_the_numerics(rng):
    K, V, _ = _data(rng, 50, 2, 1)
    for mech in ("direct", "tree"):
        sec = DPCrossAttention.build(K, V, degree=1, mechanism=mech, **KW)
        flt = DPCrossAttention.build(K, V, degree=1, mechanism=mech,
                                     generator=np.random.default_rng(0), **KW)
        assert sec.privacy.numerics == SECURE_NUMERICS
        assert sec.privacy.randomness == "secure: OS CSPRNG (os.urandom), 64-bit words"
        assert any(n.startswith("hardened release:") for n in sec.privacy.notes)
        assert "hardened" in str(sec.privacy) and sec.privacy.to_dict()["total_checks"]
        assert flt.privacy.numerics == NUMERICS_FLOAT and "idealised" in flt.privacy.numerics
        assert sec.privacy.total() == flt.privacy.total() == (Fraction(1), Fraction(1e-6))
        seeded = DPCrossAttention.build(K, V, degree=1, mechanism=mech, noise="secure",
                                        generator=np.random.default_rng(0), **KW)
        assert seeded.privacy.numerics == SECURE_NUMERICS
        assert seeded.privacy.randomness == LABEL_SEEDED


def test_noise_mode_resolution_and_errors(rng):
    K, V, _ = _data(rng, 20, 2, 1)
    count = DPCrossAttention.noise_count(n=20, d=2, d_v=1, degree=1)
    u = rng.random(count)
    assert DPCrossAttention.build(K, V, degree=1, uniforms=u, **KW).noise == "float"
    assert DPCrossAttention.build(K, V, degree=1, noise="float", **KW).noise == "float"
    with pytest.raises(ParameterError, match="uniforms must be None with noise='secure'"):
        DPCrossAttention.build(K, V, degree=1, uniforms=u, noise="secure", **KW)
    for bad in ("hardened", 1, True):
        with pytest.raises(ParameterError, match="noise must be None, 'secure' or 'float'"):
            DPCrossAttention.build(K, V, degree=1, noise=bad, **KW)


# --- float mode unchanged ------------------------------------------------------------------

def test_float_mode_is_bit_identical_to_the_float_construction(rng):
    K, V, Q = _data(rng, 200, 3, 2)
    count = DPCrossAttention.noise_count(n=200, d=3, d_v=2, degree=2)
    u = rng.random(count)
    att = DPCrossAttention.build(K, V, degree=2, uniforms=u, **KW)
    sens = att.release.law.constants[0].sensitivity
    eps, delta = att.privacy.share("S")
    expected = statistic(K, V, degree=2, scale=None, r=att.r) + tlap_ppf(
        torch.from_numpy(u).view(att.r, 3), sens, eps, delta)
    assert torch.equal(att.release.S, expected)
    for mech, extra in (("direct", {}), ("tree", {"copies": 2})):
        a = DPCrossAttention.build(K, V, degree=2, mechanism=mech,
                                   generator=torch.Generator().manual_seed(9), **extra, **KW)
        b = DPCrossAttention.build(K, V, degree=2, mechanism=mech, noise="float",
                                   generator=torch.Generator().manual_seed(9), **extra, **KW)
        for name, t in a.released_tensors().items():
            assert torch.equal(t, b.released_tensors()[name])
        assert torch.equal(a.hp_error_bound(Q, 0.1), b.hp_error_bound(Q, 0.1))


# --- reproducibility -----------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["direct", "tree"])
def test_secure_with_seeded_generator_is_reproducible(mechanism, rng):
    K, V, Q = _data(rng, 80, 2, 2)

    def build(gen):
        return DPCrossAttention.build(K, V, degree=2, mechanism=mechanism, noise="secure",
                                      generator=gen, **KW)
    a, b = build(np.random.default_rng(4)), build(np.random.default_rng(4))
    c, d = build(torch.Generator().manual_seed(4)), build(torch.Generator().manual_seed(4))
    e = build(np.random.default_rng(5))
    for name, t in a.released_tensors().items():
        assert torch.equal(t, b.released_tensors()[name])
        assert torch.equal(c.released_tensors()[name], d.released_tensors()[name])
        assert not torch.equal(t, e.released_tensors()[name])
    assert torch.equal(a.query(Q), b.query(Q))


# --- envelopes in secure mode --------------------------------------------------------------

def _adversarial_queries(d: int, grid: int | None) -> torch.Tensor:
    """Corners of [0, 1]^d, the centre, and points just around grid-cell edges of coordinate 0."""
    corners = torch.tensor(np.array(np.meshgrid(*[[0.0, 1.0]] * d)).reshape(d, -1).T)
    extra = [torch.full((1, d), 0.5)]
    if grid:
        for j in (1, grid // 2, grid - 1):
            for delta in (-1e-12, 0.0, 1e-12):
                q = torch.zeros((1, d), dtype=torch.float64)
                q[0, 0] = min(max(j / grid + delta, 0.0), 1.0)
                extra.append(q)
    return torch.cat([corners] + extra).to(torch.float64)


@pytest.mark.parametrize("mechanism,n,copies", [("direct", 400, 1), ("tree", 64, 3)])
def test_envelopes_hold_in_secure_mode(mechanism, n, copies, rng):
    for trial in range(2):
        K, V, Q = _data(rng, n, 2, 2, m=20)
        if trial:  # adversarial data: keys at corners, values at +-R_w
            K = torch.tensor(rng.integers(0, 2, (n, 2)).astype(np.float64))
            V = torch.tensor(rng.choice([-1.0, 1.0], (n, 2)))
        extra = {"copies": copies} if mechanism == "tree" else {}
        att = DPCrossAttention.build(K, V, degree=3, mechanism=mechanism, **extra, **KW)
        for queries in (Q, _adversarial_queries(2, n if mechanism == "tree" else None)):
            err = (att.query(queries) - _taylor(queries, K, V, 3)).abs()
            sure = att.error_bound(queries)
            hp = att.hp_error_bound(queries, 0.05)
            assert bool((err <= sure).all()) and bool((hp <= sure).all())
            assert bool((err <= hp).all())  # p = 0.05 per entry; the margin is large in practice


def test_hp_envelope_exceedance_rate_with_power(rng):
    """Over B independent secure builds, the hp envelope at p is exceeded at a fixed query with
    probability <= p: one-sided binomial test at alpha = 1e-6. Power: the same bound divided by
    200 (a deliberately wrong, over-optimistic envelope; Hoeffding/Bernstein with the lattice
    support are conservative, measured err/bound ~0.02 at the 80% quantile) is rejected."""
    K, V, _ = _data(rng, 40, 1, 1)
    q = torch.tensor([[0.5]], dtype=torch.float64)
    truth = _taylor(q, K, V, 1)
    p, B = 0.2, 200
    hits = hits_wrong = 0
    for b in range(B):
        att = DPCrossAttention.build(K, V, degree=1, noise="secure",
                                     generator=np.random.default_rng(1000 + b), eps=20.0,
                                     delta=1e-6, R=1.0, R_w=1.0)
        err = float((att.query(q) - truth).abs())
        bound = float(att.hp_error_bound(q, p))
        hits += err > bound
        hits_wrong += err > bound / 200
    assert stats.binomtest(hits, B, p, alternative="greater").pvalue > ALPHA
    assert stats.binomtest(hits_wrong, B, p, alternative="greater").pvalue < ALPHA


# --- float64 sums: the public error bound vs exact Fraction sums ----------------------------

def _exact_error(values: np.ndarray, computed: float) -> Fraction:
    return abs(Fraction(computed) - sum((Fraction(float(v)) for v in values), Fraction(0)))


def test_float64_sum_error_bound_on_adversarial_sums(rng):
    n = 4000
    u = 2.0**-53
    cases = {
        # 1 followed by n - 1 half-ulps: every addition rounds (ties to even), the error is
        # (n - 1) u, within a factor 1 + O(nu) of gamma_{n-1} sum |x|: the bound is nearly tight
        "absorbed": np.concatenate([[1.0], np.full(n - 1, u)]),
        "cancelling": np.concatenate([[1.0, -1.0] * (n // 4), rng.uniform(-1, 1, n // 2) * 1e-9]),
        "random": rng.uniform(-1.0, 1.0, n),
        "mixed magnitudes": rng.uniform(-1, 1, n) * 10.0 ** rng.integers(-12, 1, n),
    }
    for name, x in cases.items():
        bound = max(abs(float(v)) for v in x)
        err_bound = ref_sens.float64_sum_error_bound(n, 0, bound)
        for computed in (float(np.cumsum(x)[-1]), float(np.sum(x)),
                         float(torch.tensor(x).sum()), float(sum(x.tolist()))):
            assert _exact_error(x, computed) <= Fraction(str(err_bound)) * (1 + Fraction(1, 2**60)), name
    # power / tightness of gamma_k sum |x|: the absorbed sum's error is (n - 1) u, above
    # gamma_{n/2} sum |x| (a rounding count k = n/2 would be violated)
    x = cases["absorbed"]
    err = _exact_error(x, float(np.cumsum(x)[-1]))
    l1 = sum((Fraction(float(v)) for v in x), Fraction(0))
    assert err == (n - 1) * Fraction(1, 2**53)
    assert ref_sens.float64_gamma(n // 2) * l1 < err <= ref_sens.float64_gamma(n - 1) * l1


def test_direct_statistic_float_error_holds_on_adversarial_inputs(rng):
    """|computed S - exact S| summed over all coordinates <= direct_statistic_float_error, with
    the exact S in Fractions from the float64 inputs (features from exact rationals: degree 1,
    scale 1/4 -> coefficients sqrt(scale^|a|/a!) = 1/2 are exact)."""
    n, d, d_v = 600, 2, 2
    for trial in range(3):
        if trial == 0:
            K = rng.random((n, d))
            V = rng.uniform(-1, 1, (n, d_v))
        else:  # large cancellations: alternating signs, values near +-R_w and tiny ones
            K = np.where(rng.random((n, d)) < 0.5, 1.0, 1.0 - 2.0**-52)
            V = np.tile([[1.0, -1.0], [-1.0, 1.0]], (n // 2, 1)) * (1 - rng.random((n, d_v)) * 2.0**-40)
            V[::7] *= 2.0**-30
        S = statistic(torch.tensor(K), torch.tensor(V), degree=1, scale=0.25, r=d + 1)
        F = [[Fraction(1)] + [Fraction(float(k)) / 2 for k in row] for row in K]
        W = [[Fraction(float(v)) for v in row] + [Fraction(1)] for row in V]
        total = Fraction(0)
        for a in range(d + 1):
            for j in range(d_v + 1):
                exact = sum((F[i][a] * W[i][j] for i in range(n)), Fraction(0))
                total += abs(Fraction(float(S[a, j])) - exact)
        bound = ref_sens.direct_statistic_float_error(n, d, 1, 1.0, 1.0, d_v, scale=0.25)
        assert 0 < total <= Fraction(str(bound)) * (1 + Fraction(1, 2**60))


def test_secure_sensitivity_is_analytic_plus_twice_the_errors():
    a = ref_sens.secure_sensitivity(3, [Fraction(1, 8), Fraction(1, 16)])
    assert float(a) == 3 + 2 * (1 / 8 + 1 / 16)
    assert ref_sens.float64_gamma(0) == 0
    assert ref_sens.float64_gamma(3) == Fraction(3, 2**53 - 3)
    with pytest.raises(ParameterError, match="k 2\\^-53 < 1/2"):
        ref_sens.float64_gamma(2**52)
    with pytest.raises(ParameterError, match="error_bounds must be >= 0"):
        ref_sens.secure_sensitivity(1, [-1])
    # the secure sensitivities the fast path uses exceed the analytic ones by exactly 2 x error
    from dpxattn.fast.sensitivities import direct_secure_constants, direct_sensitivity
    sens, vb = direct_secure_constants(n=1000, d=2, degree=2, R=1.0, R_w=1.0, d_v=2)
    base = direct_sensitivity(d=2, degree=2, R=1.0, R_w=1.0, d_v=2)
    err = float(ref_sens.direct_statistic_float_error(1000, 2, 2, 1.0, 1.0, 2))
    assert base < sens and math.isclose(sens - base, 2 * err, rel_tol=1e-6)
    assert vb >= 1000 * 1.0
