"""domain="ball" for ``direct``: validation, clip, bounds against brute force, reference vs fast.

Exact (to working precision) checks and seeded draws; no statistical assertion, so no alpha.
Bounds: proofs_notes/27-ball-domain.md.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from dpxattn.errors import BoundError, ParameterError
from dpxattn.fast import DPCrossAttention as Fast
from dpxattn.fast.validation import check_ball_rows as fast_check_ball
from dpxattn.reference import DPCrossAttention as Ref
from dpxattn.reference import ball, ball_sensitivity as bs, kernel
from dpxattn.reference import sensitivity as sens
from dpxattn.reference._mp import context

CTX = context(160)
TOL = CTX.ldexp(1, -120)


def leq(x, y):
    return x <= y * (1 + TOL) + TOL


def sphere(rng, n, d, radius=1.0):
    x = rng.standard_normal((n, d))
    return radius * (1 - 2.0**-40) * x / np.linalg.norm(x, axis=1, keepdims=True)  # inside


def data(seed=0, n=7, d=3, d_v=2):
    rng = np.random.default_rng(seed)
    K = sphere(rng, n, d) * rng.uniform(0.5, 0.999, (n, 1))
    V = rng.uniform(-1, 1, (n, d_v))
    Q = np.vstack([K[:2] * 0.9, -K[2:3] * 0.5, np.zeros((1, d))])
    return K, V, Q


# -- the bounds of reference/ball.py ---------------------------------------------------------

@pytest.mark.parametrize("s", range(0, 9))
@pytest.mark.parametrize("a", [0.25, 1, 2, 4])
def test_taylor_min_is_a_certified_lower_bound_and_nearly_tight(s, a):
    tau = ball.taylor_min_lower(a, s)
    grid = [CTX.mpf(-a) + 2 * CTX.mpf(a) * i / 4000 for i in range(4001)]
    T = [kernel.taylor(t, s) for t in grid]
    assert tau <= min(T) + TOL * (1 + abs(min(T)))  # min(T) is computed with rounding
    if s % 2 == 0:  # the true minimum is within the grid's resolution of the grid minimum
        slope = max(abs(kernel.taylor(t, s - 1)) for t in grid) if s else 0
        assert tau >= min(T) - slope * CTX.mpf(a) / 2000 - TOL
        assert tau > 0
    else:
        assert abs(tau - kernel.taylor(-a, s)) <= TOL  # increasing: the minimum is at -a


def test_odd_degree_rule():
    # s = 1: T_1(-a) = 1 - a > 0 iff a < 1; s = 3: root ~ -1.596
    assert ball.ball_kernel_floor(1, 0.9) > 0
    with pytest.raises(ParameterError, match="even"):
        ball.ball_kernel_floor(1, 1)
    assert ball.ball_kernel_floor(3, 1.2) > 0  # a = 1.44 < 1.596
    with pytest.raises(ParameterError, match=r"T_3\(-1.69\)"):
        ball.ball_kernel_floor(3, 1.3)
    assert ball.ball_kernel_floor(4, 3) > 0  # even: always


@pytest.mark.parametrize("d,s,R,scale", [(2, 2, 1, None), (3, 3, 1.2, 0.5), (3, 4, 1, 2)])
def test_feature_bounds_hold_and_are_attained(d, s, R, scale):
    rng = np.random.default_rng(3)
    M = ball.ball_feature_bounds(d, s, R, scale=scale)
    B = ball.ball_degree_l1_bounds(d, s, R, scale=scale)
    sc = ball.ball_scale(scale)
    alphas = kernel.multi_indices(d, s)
    for x in list(sphere(rng, 200, d, R)) + [np.zeros(d)]:
        P = kernel.features(list(x), s, scale=sc)
        assert all(abs(p) <= m * (1 + TOL) for p, m in zip(P, M))
        for k in range(s + 1):
            assert leq(CTX.fsum(abs(p) for p, a in zip(P, alphas) if sum(a) == k), B[k])
        nsq = CTX.fsum(p * p for p in P)
        assert leq(nsq, ball.ball_feature_norm_sq_bound(s, R, scale=scale))
    for alpha, m in zip(alphas, M):  # the maximiser x_i = R sqrt(alpha_i / k) attains M_alpha
        k = sum(alpha)
        x = [CTX.mpf(R) * CTX.sqrt(CTX.mpf(a) / k) if k else 0 for a in alpha]
        P = kernel.features(x, s, scale=sc)
        assert abs(abs(P[alphas.index(alpha)]) - m) <= TOL * m
    # degree 1: Cauchy-Schwarz is tight at R 1/sqrt(d)
    x = [CTX.mpf(R) / CTX.sqrt(d)] * d
    P = kernel.features(x, s, scale=sc)
    assert abs(CTX.fsum(P[1:d + 1]) - B[1]) <= TOL * B[1]


def test_kernel_error_on_logits():
    for s in (1, 2, 3, 4, 6):
        e = kernel.certified_eps_s_logits(1, s)
        wide = context(400)  # the cancellation in 1 - e^-t T_s(t) needs the extra bits
        exact = max(abs(1 - wide.exp(-t) * kernel.taylor(t, s, prec=400)) for t in (-1, 1))
        assert exact <= e <= exact * (1 + CTX.ldexp(1, -100))
        inner = max(abs(1 - wide.exp(-t) * kernel.taylor(t, s, prec=400))
                    for t in np.linspace(-1, 1, 41))
        assert inner <= e
    # the box's signed form is the same quantity at a = t_max
    assert (kernel.certified_eps_s_logits(kernel.t_max(2, 1), 3)
            == kernel.certified_eps_s(1, 3, 2, signed=True))


# -- sensitivities against brute force --------------------------------------------------------

CASES = [(2, 2, 1, 1, 1.0, 2), (2, 2, 1, 1, 0.5, 2), (1, 3, 2, 1.5, 0.25, 4), (2, 2, 2, 1, 0.3, 3),
         (1, 1, 1, 1, 0.5, 2)]


@pytest.mark.parametrize("n,d,d_v,R,R_w,s", CASES)
def test_ball_sensitivities_hold_and_l2_is_attained(n, d, d_v, R, R_w, s):
    rng = np.random.default_rng(11)
    pairs = bs.ball_neighbouring_pairs(n, d, d_v, R, R_w, degree=s, rng=rng, n_random=3,
                                       max_keys=12)
    sc = ball.ball_scale(None)

    def fn(K, V):
        return sens.released_S(K, V, degree=s, scale=sc)
    w1, _ = sens.max_change_brute_force(fn, pairs)
    w2, _ = sens.max_change_brute_force(fn, pairs, norm="l2")
    b1 = bs.ball_direct_statistic(d, s, R, R_w, d_v)
    b2 = bs.ball_direct_statistic_l2(d, s, R, R_w, d_v)
    assert leq(w1, b1) and leq(w2, b2)
    worst, _ = sens.max_change_brute_force(fn, [bs.ball_l2_worst_pair(n, d, d_v, s, R, R_w)],
                                           norm="l2")
    assert leq(worst, b2)
    if d >= 2:
        assert abs(worst - b2) <= CTX.ldexp(1, -60) * b2  # the exact sup, attained


def test_brute_force_catches_an_under_estimated_ball_sensitivity():
    """The box's l2 form (kernel values <a, c> >= 1, true for nonnegative keys only) with the
    ball's T = T_s(a) under-estimates the ball's l2 sensitivity: the same brute force exposes
    it (keys at an obtuse angle make <a, c> = tau < 1)."""
    n, d, d_v, R, R_w, s = 2, 2, 1, 1, 0.5, 2
    pairs = bs.ball_neighbouring_pairs(n, d, d_v, R, R_w, degree=s, max_keys=12)
    w2, _ = sens.max_change_brute_force(lambda K, V: sens.released_S(K, V, degree=s, scale=1),
                                        pairs, norm="l2")
    T, m = ball.ball_feature_norm_sq_bound(s, R), CTX.mpf(d_v * R_w**2)
    mutant = CTX.sqrt(2 * T * (1 + m) - 2 * (1 - m))
    assert w2 > mutant * (1 + CTX.mpf(10) ** -6)
    assert leq(w2, bs.ball_direct_statistic_l2(d, s, R, R_w, d_v))


def test_denominator_floor_holds():
    rng = np.random.default_rng(5)
    for s, R in ((2, 1), (4, 1.5), (3, 1.2)):
        K = sphere(rng, 50, 3, R)
        floor = ball.ball_denominator_floor(50, s, R)
        for q in sphere(rng, 20, 3, R):
            D = CTX.fsum(kernel.taylor(float(np.dot(q, k)), s) for k in K)
            assert floor <= D


# -- validation and clip ----------------------------------------------------------------------

def test_validation_is_exact_and_names_the_bound():
    x = np.array([[0.6, 0.8]])  # float 0.6^2 + 0.8^2 is not exactly 1: decided exactly
    inside = sum(Fraction(v) ** 2 for v in x[0]) <= 1  # exactly: > 1 by about 4e-17
    for check in (lambda: fast_check_ball(torch.tensor(x), "Q", 1),
                  lambda: ball.check_ball_rows([[CTX.mpf(v) for v in x[0]]], "Q", 1)):
        if inside:
            check()
        else:
            with pytest.raises(BoundError, match=r"Q rows must have l2 norm <= R = 1"):
                check()
    with pytest.raises(BoundError, match="l2 norm <= R"):
        fast_check_ball(torch.tensor([[1.0, 1e-8]]), "Q", 1)
    fast_check_ball(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), "Q", 1)  # on the sphere: inside
    with pytest.raises(BoundError, match="finite"):
        fast_check_ball(torch.tensor([[float("nan"), 0.0]]), "K", 1, clip=True, private=True)


def test_clip_projects_radially_and_keys_stay_private():
    rng = np.random.default_rng(2)
    X = sphere(rng, 50, 4, 1.0) * rng.uniform(0.5, 3.0, (50, 1))
    out = fast_check_ball(torch.tensor(X), "K", 1, clip=True, private=True).numpy()
    norms = np.linalg.norm(X, axis=1)
    for x, y, nx in zip(X, out, norms):
        if nx <= 1:
            assert np.array_equal(x, y)  # identity inside
        else:
            assert abs(np.linalg.norm(y) - 1) < 1e-13  # onto the sphere, same direction
            assert np.allclose(y * nx, x, rtol=1e-12)
        fast_check_ball(torch.tensor(y[None]), "K", 1)  # passes the exact check
    K, V, _ = data()
    with pytest.raises(BoundError) as info:
        Fast.build(torch.tensor(K * 3), torch.tensor(V), eps=1, delta=1e-6, R=1, R_w=1,
                   degree=2, domain="ball", generator=torch.Generator().manual_seed(0))
    assert "norm is" not in str(info.value)  # private rows: position only
    att = Fast.build(torch.tensor(K * 3), torch.tensor(V), eps=1, delta=1e-6, R=1, R_w=1,
                     degree=2, domain="ball", clip=True, generator=torch.Generator().manual_seed(0))
    assert att.privacy.clip and any("domain: ball" in x for x in att.privacy.notes)
    ref_rows = ball.check_ball_rows([[CTX.mpf(v) for v in r] for r in K * 3], "K", 1, clip=True)
    assert all(CTX.fsum(v * v for v in r) <= 1 for r in ref_rows)


@pytest.mark.parametrize("impl", [Ref, Fast])
def test_bad_domain_and_tree_refused(impl):
    K, V, _ = data()
    args = dict(eps=1, delta=1e-6, R=1, R_w=1, degree=2)
    with pytest.raises(ParameterError, match=r"domain must be one of \('box', 'ball'\)"):
        impl.build(K, V, domain="sphere", **args)
    with pytest.raises(ParameterError, match="grid over"):
        impl.build(np.abs(K), V, domain="ball", mechanism="tree", **args)
    with pytest.raises(ParameterError, match="must be even"):
        impl.build(K, V, domain="ball", **{**args, "degree": 3, "R": 1.3})


# -- reference vs fast, and the box unchanged -------------------------------------------------

def _arr(rows):
    return np.array([[float(x) for x in r] for r in rows])


@pytest.mark.parametrize("law", ["tlap", "gaussian"])
@pytest.mark.parametrize("s,scale", [(2, None), (4, 1.5), (3, 0.5)])
def test_reference_and_fast_conform_on_the_ball(law, s, scale):
    K, V, Q = data(seed=s)
    n, d = K.shape
    u = np.random.default_rng(7).uniform(0, 1, Fast.noise_count(n=n, d=d, d_v=2, degree=s))
    kw = dict(eps=1, delta=1e-6, R=1, R_w=1, degree=s, domain="ball", uniforms=u, law=law,
              scale=scale)
    a = Ref.build(K, V, **kw)
    b = Fast.build(torch.tensor(K), torch.tensor(V), **kw)
    ra, fb = _arr(a.query(Q)), b.query(torch.tensor(Q)).numpy()
    assert np.all(np.abs(ra - fb) <= 1e-10 * np.abs(ra) + 1e-12)
    ha, hb = _arr(a.hp_error_bound(Q, 0.01)), b.hp_error_bound(torch.tensor(Q), 0.01).numpy()
    assert np.all(ha <= hb) and np.all(hb <= ha * (1 + 1e-9))
    if law == "tlap":
        ea, eb = _arr(a.error_bound(Q)), b.error_bound(torch.tensor(Q)).numpy()
        assert np.all(ea <= eb) and np.all(eb <= ea * (1 + 1e-9))
    assert float(a.kernel_error_bound()) <= b.kernel_error_bound()
    ca, cb = (x.privacy.to_dict()["components"][0] for x in (a, b))
    assert ca["sensitivity_value"] == pytest.approx(cb["sensitivity_value"], rel=1e-12)
    fn = bs.ball_direct_statistic_l2 if law == "gaussian" else bs.ball_direct_statistic
    assert ca["sensitivity_value"] == pytest.approx(float(fn(d, s, 1, 1, 2, scale=scale)),
                                                    rel=1e-12)


@pytest.mark.parametrize("law", ["tlap", "gaussian"])
def test_sure_and_hp_envelopes_cover_the_noiseless_answer(law):
    K, V, Q = data(seed=4, n=40)
    T = Ref.build(K, V, eps=1, delta=1e-6, R=1, R_w=1, degree=4, domain="ball",
                  uniforms=[0.5] * Fast.noise_count(n=40, d=3, d_v=2, degree=4), law=law)
    exact = _arr(T.query(Q))  # u = 1/2 is the zero draw of both laws: the noiseless answer
    for seed in range(3):
        att = Fast.build(torch.tensor(K), torch.tensor(V), eps=1, delta=1e-6, R=1, R_w=1,
                         degree=4, domain="ball", law=law, generator=torch.Generator().manual_seed(seed))
        got = att.query(torch.tensor(Q)).numpy()
        env = (att.error_bound(torch.tensor(Q)) if law == "tlap" else
               att.hp_error_bound(torch.tensor(Q), 1e-9)).numpy()
        assert np.all(np.abs(got - exact) <= env)


@pytest.mark.parametrize("law", ["tlap", "gaussian"])
def test_secure_ball_builds_and_is_labelled(law):
    K, V, Q = data()
    att = Fast.build(torch.tensor(K), torch.tensor(V), eps=1, delta=1e-6, R=1, R_w=1, degree=2,
                     domain="ball", law=law)
    assert att.noise == "secure" and att.domain == "ball"
    assert torch.isfinite(att.query(torch.tensor(Q))).all()
    assert torch.isfinite(att.hp_error_bound(torch.tensor(Q), 0.01)).all()


def test_box_default_is_unchanged():
    rng = np.random.default_rng(0)
    K, V = rng.uniform(0, 1, (9, 3)), rng.uniform(-1, 1, (9, 2))
    Q = rng.uniform(0, 1, (4, 3))
    u = rng.uniform(0, 1, Fast.noise_count(n=9, d=3, d_v=2, degree=2))
    a = Fast.build(torch.tensor(K), torch.tensor(V), eps=1, delta=1e-6, R=1, R_w=1, degree=2,
                   uniforms=u)
    b = Fast.build(torch.tensor(K), torch.tensor(V), eps=1, delta=1e-6, R=1, R_w=1, degree=2,
                   uniforms=u, domain="box")
    assert a.domain == "box" and a.release.floor is None
    assert torch.equal(a.query(torch.tensor(Q)), b.query(torch.tensor(Q)))
    assert torch.equal(a.error_bound(torch.tensor(Q)), b.error_bound(torch.tensor(Q)))
    assert str(a.privacy) == str(b.privacy)
    with pytest.raises(BoundError, match=r"\[0, R\]"):
        Fast.build(torch.tensor(-K), torch.tensor(V), eps=1, delta=1e-6, R=1, R_w=1, degree=2)


def test_the_plan_names_the_ball_sensitivity_and_the_box_text_is_unchanged():
    import torch

    from dpxattn.accounting import plan_direct
    from dpxattn.fast import DPCrossAttention

    K = torch.randn(20, 3, dtype=torch.float64)
    K = 0.9 * K / K.norm(dim=1, keepdim=True)
    V = torch.rand(20, 2, dtype=torch.float64) * 2 - 1
    for law, needle in (("tlap", "ball_direct_statistic;"), ("gaussian", "ball_direct_statistic_l2")):
        att = DPCrossAttention.build(K, V, eps=1.0, delta=1e-6, R=1.0, R_w=1.0, degree=2,
                                     domain="ball", law=law, noise="float",
                                     generator=torch.Generator().manual_seed(0))
        (comp,) = att.privacy.to_dict()["components"]
        assert comp["sensitivity"].startswith("ball: ") and needle in comp["sensitivity"]
    box = plan_direct(eps=1, delta=1e-6, n=20, d=3, d_v=2, degree=2).components[0].sensitivity
    assert box == ("2 d_v R_w + max(2 d_v R_w, d_v R_w + 1) * sum_{alpha != 0} M_alpha (l1, "
                   "whole matrix, the exact sup)")
    with pytest.raises(ValueError, match="domain"):
        plan_direct(eps=1, delta=1e-6, n=20, d=3, d_v=2, degree=2, domain="sphere")
