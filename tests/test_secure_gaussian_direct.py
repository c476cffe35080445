"""The secure ``law="gaussian"`` build of the fast ``direct`` mechanism (note 25, "The lattice
release"): the whole S released as one lattice release with exact discrete Gaussian noise from
64-bit words (OS CSPRNG or a seeded generator), its plan, and its hp envelope (the float
Gaussian envelope plus 1.5 g ||u||_1: note 25 Lemma 5's sure coupling and the rounding).

Statistical assertions: alpha = 1e-6 each (exact binomial tails); power shown against the
envelope at 0.7 x its size (the exact binomial probability that the mutant escapes is computed
in the test and asserted <= 1e-6).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dpxattn.accounting import NUMERICS_FLOAT_GAUSSIAN
from dpxattn.errors import NoSureEnvelopeError, ParameterError
from dpxattn.fast import DPCrossAttention
from dpxattn.fast.cross_attention import SECURE_GAUSSIAN_NUMERICS
from dpxattn.fast.direct import statistic
from dpxattn.fast.release import GaussianLaw, SecureGaussianLaw
from dpxattn.fast.secure_noise import SECURE_NUMERICS
from dpxattn.fast.accumulator import exact_constants

ALPHA = 1e-6
KW = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0, law="gaussian")


def _data(rng, n, d, d_v, m=4):
    K = torch.tensor(rng.random((n, d)))
    V = torch.tensor(rng.uniform(-1, 1, (n, d_v)))
    Q = torch.tensor(rng.random((m, d)))
    return K, V, Q


def _taylor64(Q, K, V, degree):
    """Noiseless Taylor attention in float64 (default scale 1/d)."""
    t = (Q @ K.T) / K.shape[1]
    T = sum(t**j / math.factorial(j) for j in range(degree + 1))
    return (T @ V) / T.sum(dim=1, keepdim=True)


def _lattice(att):
    law = att.release.law
    g = law.parameters.granularity
    units = att.release.S / g
    return law, g, units


def test_secure_gaussian_build_with_os_words(rng):
    K, V, Q = _data(rng, 300, 2, 3)
    att = DPCrossAttention.build(K, V, degree=2, **KW)  # no generator: secure
    assert att.noise == "secure" and att.law == "gaussian"
    law, g, units = _lattice(att)
    assert isinstance(law, SecureGaussianLaw) and att.release.secure and att.release.gaussian
    # every released number is a lattice point, exactly representable
    assert torch.equal(units, torch.round(units)) and float(units.abs().max()) < 2.0**53
    plan = att.privacy.to_dict()
    assert plan["numerics"] == SECURE_GAUSSIAN_NUMERICS
    assert "os.urandom" in plan["randomness"]
    (comp,) = plan["components"]
    # the exactly accumulated S~'s l2 sensitivity (build's secure mode is one add and release)
    sens = exact_constants(n=300, d=2, degree=2, R=1.0, R_w=1.0, d_v=3, norm="l2")[2]
    assert comp["law"] == "gaussian" and comp["sensitivity_norm"] == "l2"
    assert comp["sensitivity_value"] == law.sensitivity >= sens
    assert comp["sigma"] == law.sigma == law.parameters.sigma
    assert comp["laplace_scale"] is None
    assert law.parameters.delta_achieved <= 1e-6 and law.parameters.changed == att.release.S.numel()
    note = " ".join(plan.get("notes", ()))
    assert "discrete Gaussian lattice law" in note and f"2^{law.parameters.exponent}" in note
    # no sure envelope, an hp one
    with pytest.raises(NoSureEnvelopeError):
        att.error_bound(Q)
    assert torch.isfinite(att.hp_error_bound(Q, 1e-3)).all()


@pytest.mark.parametrize("make", [lambda s: np.random.default_rng(s),
                                  lambda s: torch.Generator().manual_seed(s)],
                         ids=["numpy", "torch"])
def test_secure_gaussian_build_is_reproducible_with_a_seeded_generator(rng, make):
    K, V, _ = _data(rng, 200, 2, 2)
    a = DPCrossAttention.build(K, V, degree=2, noise="secure", generator=make(7), **KW)
    b = DPCrossAttention.build(K, V, degree=2, noise="secure", generator=make(7), **KW)
    c = DPCrossAttention.build(K, V, degree=2, noise="secure", generator=make(8), **KW)
    assert a.noise == "secure" and isinstance(a.release.law, SecureGaussianLaw)
    assert torch.equal(a.release.S, b.release.S)  # bit for bit
    assert not torch.equal(a.release.S, c.release.S)
    assert "seeded" in a.privacy.to_dict()["randomness"]
    _, _, units = _lattice(a)
    assert torch.equal(units, torch.round(units))


def test_secure_gaussian_refuses_uniforms_like_tlap(rng):
    K, V, _ = _data(rng, 4, 2, 1)
    u = np.full(DPCrossAttention.noise_count(n=4, d=2, d_v=1, degree=1), 0.25)
    for law in ("gaussian", "tlap"):
        with pytest.raises(ParameterError, match="uniforms"):
            DPCrossAttention.build(K, V, degree=1, noise="secure", uniforms=u,
                                   **{**KW, "law": law})
    # float mode is unchanged: uniforms give the float Gaussian law
    att = DPCrossAttention.build(K, V, degree=1, uniforms=u, **KW)
    assert att.noise == "float" and isinstance(att.release.law, GaussianLaw)
    assert att.privacy.to_dict()["numerics"] == NUMERICS_FLOAT_GAUSSIAN
    assert DPCrossAttention.build(K, V, degree=1, **{**KW, "law": "tlap"}).privacy.to_dict()[
        "numerics"] == SECURE_NUMERICS


def test_secure_gaussian_answers_are_close_to_taylor_at_large_n(rng):
    """n = 2e5: the answer's error is below its hp envelope at p = 1e-6 (each of the m d_v
    entries exceeds with probability <= 1e-6: alpha <= 8e-6 here) and that envelope is small."""
    K, V, Q = _data(rng, 200_000, 2, 2)
    att = DPCrossAttention.build(K, V, degree=2, **KW)
    err = (att.query(Q) - _taylor64(Q, K, V, 2)).abs()
    hp = att.hp_error_bound(Q, 1e-6)
    assert (err <= hp).all()
    assert float(hp.max()) < 5e-3


def _binomial_critical(trials: int, p: float, alpha: float) -> int:
    """Smallest c with P(Bin(trials, p) >= c) <= alpha."""
    c = int(stats.binom.isf(alpha, trials, p))
    while stats.binom.sf(c - 1, trials, p) > alpha:
        c += 1
    while c > 0 and stats.binom.sf(c - 2, trials, p) <= alpha:
        c -= 1
    return c


def test_hp_envelope_holds_over_independent_builds_with_power(rng):
    """Independent secure builds (seeded words, one seed per build) at a fixed query: the
    noise of each released column of U S (d_v + 1 columns, disjoint noise entries, so independent
    given the seed) exceeds ``noise_bounds`` at p with probability <= p (the bound is the normal
    quantile at sigma plus 1.5 g ||u||_1, nearly exact). Exceedances over B (d_v + 1) trials must
    stay below the binomial critical value at alpha = 1e-6; the same noises against 0.7 x the bound
    must exceed it (the mutant's exact exceedance rate 2 Q(0.7 z_p) gives its escape probability,
    asserted <= 1e-6). The answers' own hp_error_bound (numerator and denominator at p/2 each,
    then the ratio step) is checked on the same builds, at the same alpha. About 4 s."""
    n, d, d_v, degree, B, p = 60, 2, 8, 2, 150, 0.1
    K, V, Q = _data(rng, n, d, d_v, m=1)
    S0 = statistic(K, V, degree=degree, scale=None, r=6)
    truth = _taylor64(Q, K, V, degree)
    trials = B * (d_v + 1)
    crit = _binomial_critical(trials, p, ALPHA)
    crit_ans = _binomial_critical(B * d_v, p, ALPHA)
    z = stats.norm.isf(p / 2)
    q_mut = 2 * stats.norm.sf(0.7 * z)
    beta = stats.binom.cdf(crit - 1, trials, q_mut)  # mutant escapes: fewer than crit exceedances
    assert beta <= 1e-6
    over = over_mut = over_ans = 0
    for b in range(B):
        att = DPCrossAttention.build(K, V, degree=degree, noise="secure",
                                     generator=np.random.default_rng([12345, b]), **KW)
        rel = att.release
        terms = rel.envelope_terms(Q)
        t = rel.noise_bounds(terms, p)[0]
        noise = (terms.U @ (rel.S - S0))[0]
        over += int((noise.abs() > t).sum())
        over_mut += int((noise.abs() > 0.7 * t).sum())
        over_ans += int(((att.query(Q) - truth).abs() > att.hp_error_bound(Q, p)).sum())
    assert over < crit, (over, crit)
    assert over_ans < crit_ans, (over_ans, crit_ans)
    assert over_mut >= crit, (over_mut, crit, q_mut)


def test_hp_envelope_adds_one_and_a_half_lattice_units_per_unit_of_l1(rng):
    """noise_bounds = the float Gaussian bound at the lattice's sigma + 1.5 g ||u||_1 (x a
    rounding factor within 1e-13)."""
    from dpxattn.fast.envelope import gaussian_noise_bound

    K, V, Q = _data(rng, 50, 2, 1)
    att = DPCrossAttention.build(K, V, degree=2, noise="secure",
                                 generator=np.random.default_rng(0), **KW)
    rel = att.release
    terms = rel.envelope_terms(Q)
    base = gaussian_noise_bound(rel.law.sigma, terms.l2sq, 6, 1e-3)
    got = rel.noise_bounds(terms, 1e-3)
    add = 1.5 * rel.law.parameters.granularity * terms.l1
    assert (add > 0).all() and (got > base).all()
    assert (got >= base + add).all()
    assert (got <= (base + add * (1 + 1e-13)) * (1 + 2.0**-52)).all()
