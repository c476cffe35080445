"""Exact reference: RefDPCrossAttention (DESIGN §4 contract), both mechanisms, and the envelopes.

Exact checks (working precision) unless marked ``statistical``; the one statistical test states
its false-alarm rate alpha and shows its power on a deliberately wrong (shrunken) envelope.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from mpmath.ctx_mp_python import _mpf as MPF
from scipy import stats

from dpxattn.accounting import plan_direct, plan_tree
from dpxattn.errors import BoundError, ParameterError, ShapeError, UniformsError
from dpxattn.randomness import LABEL_GIVEN, LABEL_SECURE, LABEL_SEEDED, generator_uniforms
from dpxattn.reference import DPCrossAttention as RefDPCrossAttention
from dpxattn.reference import kernel, sensitivity, taylor_attention
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import DEFAULT_PREC, context, to_matrix, to_mpf
from dpxattn.reference.dptree import exact_node_sums
from dpxattn.reference.dptree_distance import moment_leaves
from dpxattn.reference.envelope import (NoiseGroup, bernstein_noise_bound, binomial_upper_tail,
                                        chernoff_noise_bound, tlap_log_mgf,
                                        hoeffding_noise_bound, hp_noise_bound,
                                        median_copy_failure_prob, median_failures_needed,
                                        sure_noise_bound)

PREC = DEFAULT_PREC
CTX = context(PREC)
EPS, DELTA = Fraction(1), Fraction(1, 10**5)
U_LOW, U_HIGH = 1e-12, 1 - 1e-12

#: (n, d, d_v, degree, mechanism, copies): every n in {1, 2, 3, 5, 8}, d in {1, 2, 3},
#: d_v in {1, 2}, degree 0..3 and copies 1..3 appears, for both mechanisms
CASES = [
    (1, 1, 1, 0, "direct", 1), (2, 2, 1, 1, "direct", 1), (3, 3, 2, 2, "direct", 1),
    (5, 1, 2, 3, "direct", 1), (8, 2, 1, 2, "direct", 1),
    (1, 1, 1, 0, "tree", 1), (2, 1, 2, 1, "tree", 2), (3, 2, 1, 2, "tree", 3),
    (5, 2, 2, 1, "tree", 1), (8, 3, 1, 1, "tree", 2), (5, 1, 1, 3, "tree", 3),
    (3, 3, 1, 3, "tree", 1),
]


def case_id(case):
    n, d, d_v, s, mech, l = case
    return f"{mech}-n{n}-d{d}-dv{d_v}-s{s}-l{l}"


def make_data(rng, n, d, d_v, R=1, R_w=1):
    return rng.uniform(0, R, (n, d)), rng.uniform(-R_w, R_w, (n, d_v))


def queries(rng, d, R=1, m=3):
    """Random queries plus the two corners of the query box."""
    return np.vstack([rng.uniform(0, R, (m, d)), np.zeros((1, d)), np.full((1, d), float(R))])


def count_of(n, d, d_v, degree, mechanism, copies, grid_size=None):
    return RefDPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=degree,
                                           mechanism=mechanism, copies=copies,
                                           grid_size=grid_size)


def build(K, V, u, degree, mechanism, copies=1, **kw):
    kw.setdefault("eps", EPS)
    kw.setdefault("delta", DELTA)
    kw.setdefault("R", 1)
    kw.setdefault("R_w", 1)
    return RefDPCrossAttention.build(K, V, degree=degree, mechanism=mechanism, copies=copies,
                                     uniforms=u, **kw)


def max_abs_diff(A, B):
    return max(abs(a - b) for ra, rb in zip(A, B) for a, b in zip(ra, rb))


# ---------------------------------------------------------------------------------------------
# Noise forced to ~0: both mechanisms reproduce the noiseless Taylor attention
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_noise_free_build_reproduces_taylor_attention(rng, case):
    n, d, d_v, degree, mech, copies = case
    K, V = make_data(rng, n, d, d_v)
    att = build(K, V, np.full(count_of(n, d, d_v, degree, mech, copies), 0.5), degree, mech,
                copies)
    Q = queries(rng, d)
    T = taylor_attention(Q, K, V, degree=degree, prec=PREC)
    bound = max(max(row) for row in att.error_bound(Q))
    # ppf(1/2) is 0 up to a few ulps of A, so the answer is exact up to ~2^-150 of the envelope
    assert max_abs_diff(att.query(Q), T) <= CTX.ldexp(1 + bound, 24 - PREC)


def test_noise_free_with_scale_bounds_and_grid_options(rng):
    n, d, d_v, degree = 5, 2, 2, 2
    K, V = make_data(rng, n, d, d_v, R=2, R_w=3)
    Q = queries(rng, d, R=2)
    T = taylor_attention(Q, K, V, degree=degree, scale=Fraction(7, 10), prec=PREC)
    for mech, copies, G in [("direct", 1, None), ("tree", 2, 3), ("tree", 1, 11)]:
        att = build(K, V, np.full(count_of(n, d, d_v, degree, mech, copies, G), 0.5), degree,
                    mech, copies, R=2, R_w=3, scale=Fraction(7, 10), grid_size=G)
        assert att.grid_size == (None if mech == "direct" else G)
        bound = max(max(row) for row in att.error_bound(Q))
        assert max_abs_diff(att.query(Q), T) <= CTX.ldexp(1 + bound, 24 - PREC)


# ---------------------------------------------------------------------------------------------
# The sure envelope holds for random and extreme uniforms
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["random", "low", "high"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_sure_envelope_holds(rng, case, pattern):
    n, d, d_v, degree, mech, copies = case
    K, V = make_data(rng, n, d, d_v)
    count = count_of(n, d, d_v, degree, mech, copies)
    u = {"random": lambda: rng.uniform(U_LOW, U_HIGH, count),
         "low": lambda: np.full(count, U_LOW), "high": lambda: np.full(count, U_HIGH)}[pattern]()
    att = build(K, V, u, degree, mech, copies)
    Q = queries(rng, d)
    T = taylor_attention(Q, K, V, degree=degree, prec=PREC)
    out, env, hp = att.query(Q), att.error_bound(Q), att.hp_error_bound(Q, 0.05)
    for ro, rt, re, rh in zip(out, T, env, hp):
        for o, t, e, h in zip(ro, rt, re, rh):
            assert abs(o - t) <= e
            assert 0 < h <= e


@pytest.mark.parametrize("R_w", [1, Fraction(5, 2)])
def test_direct_envelope_is_attained_at_the_worst_case(rng, R_w):
    """V = -R_w and every draw near +A: the error equals the envelope up to ppf(1 - 1e-12)/A."""
    n, d, d_v, degree = 3, 2, 2, 2
    K = rng.uniform(0, 1, (n, d))
    V = np.full((n, d_v), -float(R_w))
    att = build(K, V, np.full(count_of(n, d, d_v, degree, "direct", 1), U_HIGH), degree,
                "direct", R_w=R_w)
    Q = queries(rng, d)
    T = taylor_attention(Q, K, V, degree=degree, prec=PREC)
    for ro, rt, re in zip(att.query(Q), T, att.error_bound(Q)):
        for o, t, e in zip(ro, rt, re):
            assert 0.999 * e <= abs(o - t) <= e
    # power: an envelope 1% too small is violated here
    assert any(abs(o - t) > 0.99 * e for ro, rt, re in zip(att.query(Q), T, att.error_bound(Q))
               for o, t, e in zip(ro, rt, re))


# ---------------------------------------------------------------------------------------------
# The high-probability envelope, statistically
# ---------------------------------------------------------------------------------------------

ALPHA = 1e-6


@pytest.mark.statistical
@pytest.mark.parametrize("mech,copies,eps,builds,p,shrink", [
    ("direct", 1, 100, 300, 0.1, 5),
    ("direct", 1, 1, 300, 0.1, 10),
    pytest.param("tree", 2, 100, 100, 0.2, 20, marks=pytest.mark.slow),
])
def test_hp_envelope_failure_rate(seed, mech, copies, eps, builds, p, shrink):
    """Violations of hp_error_bound at a fixed query are Binomial(builds, <= p).

    alpha = 1e-6: we reject when the count exceeds the binomial (1 - alpha) quantile at p
    (fixed seed in CI). Power: the same count for the envelope divided by ``shrink`` (a
    deliberately wrong, optimistic variant) must exceed that quantile.
    """
    rng = np.random.default_rng(seed)
    n, d, d_v, degree = 3, 1, 1, 1
    K, V = make_data(rng, n, d, d_v)
    q = np.array([[0.7]])
    [[t]] = taylor_attention(q, K, V, degree=degree, prec=PREC)
    violations = shrunk_violations = 0
    for _ in range(builds):
        att = RefDPCrossAttention.build(K, V, eps=eps, delta=DELTA, R=1, R_w=1, degree=degree,
                                        mechanism=mech, copies=copies, generator=rng)
        [[o]] = att.query(q)
        [[h]] = att.hp_error_bound(q, p)
        violations += abs(o - t) > h
        shrunk_violations += abs(o - t) > h / shrink
    threshold = stats.binom.ppf(1 - ALPHA, builds, p)
    assert violations <= threshold
    assert shrunk_violations > threshold


# ---------------------------------------------------------------------------------------------
# Envelope building blocks
# ---------------------------------------------------------------------------------------------

def test_binomial_tail_and_median_copy_probability():
    for l, k, q in [(3, 2, 0.1), (4, 2, 0.3), (5, 3, 0.01), (1, 1, 0.2)]:
        assert abs(float(binomial_upper_tail(l, k, q, CTX)) - stats.binom.sf(k - 1, l, q)) < 1e-12
    for l in range(1, 7):
        for p in (0.05, 1e-6):
            q = median_copy_failure_prob(l, p, CTX)
            k = median_failures_needed(l)
            assert binomial_upper_tail(l, k, q, CTX) <= p
            assert binomial_upper_tail(l, k, q * (1 + CTX.mpf(10) ** -15), CTX) > p or l == 1
            if l == 1:
                assert q == CTX.mpf(p)


@pytest.mark.parametrize("l", range(1, 7))
def test_median_leaves_the_band_only_with_ceil_half_failures(l):
    """Exhaustive over which copies fail (and on which side): the median (mean of the two middle
    values for even l) stays within the band with < ceil(l/2) failures, and can leave it with
    ceil(l/2) (so the count is tight)."""
    from dpxattn.reference.dptree_softmax import median
    k_needed = median_failures_needed(l)
    assert k_needed == math.ceil(l / 2)
    worst_inside = CTX.zero
    for outside in range(l + 1):
        for above in range(outside + 1):
            vals = ([CTX.mpf(3)] * above + [CTX.mpf(-3)] * (outside - above)
                    + [CTX.mpf(1)] * (l - outside))
            m = abs(median(vals))
            if outside < k_needed:
                worst_inside = max(worst_inside, m)
            elif outside == k_needed and above == outside:
                assert m > 1  # leaves the band [-1, 1]
    assert worst_inside <= 1


def test_hp_bounds_are_valid_on_a_single_draw_exactly():
    """One TLap draw: the exact tail at the Hoeffding, Bernstein and Chernoff thresholds is <= p,
    and the Chernoff one is within a factor 2 of the exact quantile (power: half of it fails)."""
    for Delta, eps, delta in [(1, 1, Fraction(1, 10**5)), (3, Fraction(1, 10), Fraction(1, 100))]:
        A = tl.support_bound(Delta, eps, delta, prec=PREC)
        g = [NoiseGroup((CTX.one,), A, tl.variance(Delta, eps, delta, prec=PREC),
                        tl.scale(Delta, eps, delta, prec=PREC))]
        for p in (0.5, 0.05, 1e-4):
            for t in (hoeffding_noise_bound(g, p, CTX), bernstein_noise_bound(g, p, CTX),
                      chernoff_noise_bound(g, p, CTX)):
                assert tl.tail(t, Delta, eps, delta, prec=PREC) <= p
            assert hp_noise_bound(g, p, CTX) <= sure_noise_bound(g, CTX) == A
            if p <= 0.05:
                t = chernoff_noise_bound(g, p, CTX)
                assert tl.tail(t / 2, Delta, eps, delta, prec=PREC) > p


@pytest.mark.parametrize("mu_times_b", [0, Fraction(1, 3), 1, Fraction(5, 2), -2])
def test_tlap_log_mgf_closed_form_matches_quadrature(mu_times_b):
    Delta, eps, delta = 2, Fraction(1, 2), Fraction(1, 1000)
    b = tl.scale(Delta, eps, delta, prec=PREC)
    A = tl.support_bound(Delta, eps, delta, prec=PREC)
    mu = b**-1 * to_mpf(mu_times_b, CTX)
    ctx = context(80)
    quad = ctx.quad(lambda z: ctx.exp(mu * z) * tl.pdf(z, Delta, eps, delta, prec=80), [-A, 0, A])
    got = tlap_log_mgf(mu, b, A, CTX)
    assert abs(got - ctx.log(quad)) < 1e-15
    # a larger half-width never lowers it (the certified A is safe)
    assert tlap_log_mgf(mu, b, A * (1 + CTX.mpf(10) ** -6), CTX) >= got - CTX.ldexp(1, 20 - PREC)


def test_hp_bound_is_much_smaller_than_sure_for_many_draws():
    g = [NoiseGroup(tuple(CTX.one for _ in range(400)), CTX.mpf(10), CTX.mpf(2), CTX.mpf(1))]
    assert sure_noise_bound(g, CTX) == 4000
    assert hp_noise_bound(g, 0.01, CTX) < 4000 / 10


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, float("nan"), "x", True])
def test_failure_prob_is_validated(rng, bad):
    K, V = make_data(rng, 2, 1, 1)
    att = build(K, V, np.full(count_of(2, 1, 1, 1, "direct", 1), 0.5), 1, "direct")
    with pytest.raises(ParameterError, match="failure_prob"):
        att.hp_error_bound([[0.5]], bad)


# ---------------------------------------------------------------------------------------------
# Privacy plan, randomness sources, clip mode
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mech,copies,G", [("direct", 1, None), ("tree", 2, None), ("tree", 1, 3)])
def test_privacy_plan_totals_and_prints(rng, mech, copies, G):
    n, d, d_v, degree = 5, 2, 2, 2
    K, V = make_data(rng, n, d, d_v)
    eps, delta = Fraction(3, 7), Fraction(1, 10**6)
    att = build(K, V, None, degree, mech, copies, eps=eps, delta=delta, grid_size=G,
                generator=np.random.default_rng(1))
    plan = att.privacy
    assert plan.total() == (eps, delta) and (plan.eps, plan.delta) == (eps, delta)
    expected = (plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree)
                if mech == "direct" else
                plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                          grid_size=G))
    assert plan.components == expected.components
    assert plan.randomness == LABEL_SEEDED and plan.clip is False
    text = str(plan)
    assert "end-to-end (eps, delta) = (0.428571, 1e-06)" in text and "[sum of shares == total]" in text
    assert "NOT for production" in text and "clip mode: off" in text
    assert plan.to_dict()["total_checks"] is True
    assert "RefDPCrossAttention" in repr(att)


def test_randomness_labels_and_secure_default(rng):
    K, V = make_data(rng, 2, 1, 1)
    count = count_of(2, 1, 1, 1, "direct", 1)
    given = build(K, V, np.full(count, 0.5), 1, "direct")
    assert given.privacy.randomness == LABEL_GIVEN
    secure_a = build(K, V, None, 1, "direct")
    secure_b = build(K, V, None, 1, "direct")
    assert secure_a.privacy.randomness == LABEL_SECURE
    assert secure_a.release.noisy != secure_b.release.noisy  # fresh OS entropy each time


@pytest.mark.parametrize("mech,copies", [("direct", 1), ("tree", 2)])
def test_generator_consumes_exactly_noise_count_uniforms(mech, copies):
    rng = np.random.default_rng(5)
    K, V = make_data(rng, 3, 2, 1)
    count = count_of(3, 2, 1, 2, mech, copies)
    g1, g2 = np.random.default_rng(77), np.random.default_rng(77)
    a = build(K, V, None, 2, mech, copies, generator=g1)
    b = build(K, V, generator_uniforms(g2, count), 2, mech, copies)
    assert released_numbers(a) == released_numbers(b)
    assert g1.integers(0, 2**63) == g2.integers(0, 2**63)  # both streams advanced by count
    # power: one uniform more or less is refused
    for wrong in (count - 1, count + 1):
        with pytest.raises(UniformsError, match=f"noise_count = {count}"):
            build(K, V, np.full(wrong, 0.5), 2, mech, copies)


@pytest.mark.parametrize("mech,copies", [("direct", 1), ("tree", 3)])
def test_clip_mode_clips_and_is_recorded(rng, mech, copies):
    n, d, d_v, degree = 4, 2, 2, 1
    K, V = make_data(rng, n, d, d_v)
    K[0, 0], K[1, 1], V[2, 0], V[3, 1] = 1.5, -0.25, 2.0, -3.0
    count = count_of(n, d, d_v, degree, mech, copies)
    u = rng.uniform(0.1, 0.9, count)
    with pytest.raises(BoundError, match=r"K entries must lie in \[0, R\] = \[0, 1\]"):
        build(K, V, u, degree, mech, copies)
    clipped = build(K, V, u, degree, mech, copies, clip=True)
    reference = build(np.clip(K, 0, 1), np.clip(V, -1, 1), u, degree, mech, copies)
    assert released_numbers(clipped) == released_numbers(reference)
    assert clipped.privacy.clip is True and reference.privacy.clip is False
    assert "clip mode: on" in str(clipped.privacy)
    Q = np.array([[1.7, -0.5], [0.2, 0.3]])
    assert clipped.query(Q) == clipped.query(np.clip(Q, 0, 1))
    with pytest.raises(BoundError, match=r"Q entries must lie in \[0, R\]"):
        reference.query(Q)


# ---------------------------------------------------------------------------------------------
# Validation: typed errors that name the bound
# ---------------------------------------------------------------------------------------------

def _ok(rng):
    K, V = make_data(rng, 3, 2, 1)
    return K, V, count_of(3, 2, 1, 1, "direct", 1)


@pytest.mark.parametrize("mutate,err,pattern", [
    (lambda K, V: (np.where(K > 0.5, 1.01, K), V), BoundError, r"K entries must lie in \[0, R\] = \[0, 1\]"),
    (lambda K, V: (K, V - 1.5), BoundError, r"V entries must lie in \[-R_w, R_w\] = \[-1, 1\]"),
    (lambda K, V: (np.where(K > 0.5, np.nan, K), V), BoundError, r"K entries must be finite"),
    (lambda K, V: (K, np.where(V > 0, np.inf, V + 0.1)), BoundError, r"V entries must be finite"),
    (lambda K, V: (K[:, 0], V), ShapeError, r"K must be a 2-D array"),
    (lambda K, V: (K, V[:2]), ShapeError, r"V must have as many rows as K \(n = 3\)"),
    (lambda K, V: (K[:0], V[:0]), ShapeError, r"K must have at least one row"),
])
def test_bad_data_raise_typed_errors(rng, mutate, err, pattern):
    K, V, count = _ok(rng)
    K[0, 0], V[0, 0] = 0.9, 0.9  # make the masks above hit
    K2, V2 = mutate(K, V)
    with pytest.raises(err, match=pattern):
        build(K2, V2, np.full(count, 0.5), 1, "direct")


def test_nan_raises_even_with_clip(rng):
    K, V, count = _ok(rng)
    K[1, 1] = np.nan
    with pytest.raises(BoundError, match="K entries must be finite"):
        build(K, V, np.full(count, 0.5), 1, "direct", clip=True)


@pytest.mark.parametrize("kw,pattern", [
    (dict(eps=0), r"eps must be finite and > 0"),
    (dict(delta=0.6), r"delta must satisfy 0 < delta <= 1/2"),
    (dict(degree=-1), r"degree must be an integer >= 0"),
    (dict(R=0), r"R must be finite and > 0"),
    (dict(R_w=-1), r"R_w must be finite and > 0"),
    (dict(scale=0), r"scale must be finite and > 0"),
    (dict(mechanism="paper"), r"mechanism must be one of"),
    (dict(copies=2), r"copies must be 1 for mechanism 'direct'"),
    (dict(grid_size=4), r"grid_size must be None for mechanism 'direct'"),
    (dict(mechanism="tree", copies=0), r"copies must be an integer >= 1"),
    (dict(mechanism="tree", grid_size=0), r"grid_size must be an integer >= 1"),
    (dict(clip=1), r"clip must be True or False"),
    (dict(generator=42, uniforms=None), r"generator must be a numpy.random.Generator"),
    (dict(generator=np.random.default_rng(0)), r"uniforms/generator are exclusive"),
    (dict(prec=8), r"prec must be an integer >= 16"),
])
def test_bad_parameters_raise_parameter_error(rng, kw, pattern):
    K, V, count = _ok(rng)
    args = dict(eps=EPS, delta=DELTA, R=1, R_w=1, degree=1, mechanism="direct",
                uniforms=np.full(count, 0.5))
    args.update(kw)
    with pytest.raises(ParameterError, match=pattern):
        RefDPCrossAttention.build(K, V, **args)


def test_bad_uniforms_and_queries(rng):
    K, V, count = _ok(rng)
    for u in (np.full(count, 0.0), np.full(count, 1.0), np.full(count, np.nan)):
        with pytest.raises(UniformsError, match=r"strictly inside \(0, 1\)"):
            build(K, V, u, 1, "direct")
    with pytest.raises(UniformsError, match="1-D"):
        build(K, V, np.full((count, 1), 0.5), 1, "direct")
    att = build(K, V, np.full(count, 0.5), 1, "direct")
    with pytest.raises(ShapeError, match="Q must have d = 2 columns"):
        att.query([[0.1, 0.2, 0.3]])
    with pytest.raises(BoundError, match=r"Q entries must lie in \[0, R\] = \[0, 1\]"):
        att.error_bound([[0.1, -0.2]])
    with pytest.raises(BoundError, match="Q entries must be finite"):
        att.hp_error_bound([[0.1, np.inf]], 0.1)
    with pytest.raises(ParameterError, match="copies must be 1 for mechanism 'direct'"):
        RefDPCrossAttention.noise_count(n=3, d=2, d_v=1, degree=1, mechanism="direct", copies=2)
    with pytest.raises(ParameterError, match="n must be an integer >= 1"):
        RefDPCrossAttention.noise_count(n=0, d=2, d_v=1, degree=1, mechanism="tree")


# ---------------------------------------------------------------------------------------------
# Determinism and "nothing private is kept"
# ---------------------------------------------------------------------------------------------

def walk(obj, seen=None):
    """Every leaf reachable from obj through attributes (slots and __dict__), containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if obj is None or isinstance(obj, (bool, int, float, str, Fraction, MPF, np.ndarray,
                                       np.generic)):
        yield obj
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for x in obj:
            yield from walk(x, seen)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(k, seen)
            yield from walk(v, seen)
        return
    if callable(obj) and not hasattr(obj, "__slots__") and not hasattr(obj, "__dict__"):
        return
    names = set(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        names.update(getattr(cls, "__slots__", ()))
    for name in sorted(names):
        if hasattr(obj, name):
            yield from walk(getattr(obj, name), seen)


def released_numbers(att) -> list:
    return [x for x in walk(att) if isinstance(x, MPF)]


def private_values(K, V, degree, mech, att) -> set:
    """The exact private quantities a leak would expose (non-integer values only)."""
    Km, Vm = to_matrix(K, CTX, "K"), to_matrix(V, CTX, "V")
    feats = [kernel.features(k, degree, prec=PREC) for k in Km]
    vals = {x for row in Km + Vm + feats for x in row}
    vals |= set(sensitivity.released_S(Km, Vm, degree=degree, prec=PREC))
    d_v = len(Vm[0])
    for k in range(d_v + 1):
        vals |= set(sensitivity.released_c0(Km, Vm, column=k, prec=PREC))
        vals |= set(sensitivity.released_c1(Km, Vm, column=k, degree=degree, prec=PREC))
    if mech == "tree":
        M = kernel.feature_bounds(len(Km[0]), degree, 1, prec=PREC)
        for k in range(d_v + 1):
            w = [row[k] for row in Vm] if k < d_v else [1] * len(Km)
            for t in range(len(M)):
                for m in range(3):
                    leaves = moment_leaves([f[t] for f in feats], w, upper=M[t],
                                           grid_size=att.grid_size, k=m, prec=PREC)
                    vals |= set(exact_node_sums(leaves, prec=PREC))
    return {v for v in vals if v != int(v)}


@pytest.mark.parametrize("mech,copies", [("direct", 1), ("tree", 2)])
def test_nothing_private_is_kept(rng, mech, copies):
    n, d, d_v, degree = 4, 2, 2, 2
    K, V = make_data(rng, n, d, d_v)
    att = build(K, V, None, degree, mech, copies, generator=rng)
    leaves = list(walk(att))
    assert not any(isinstance(x, np.ndarray) for x in leaves)  # no arrays (K, V, uniforms)
    private = private_values(K, V, degree, mech, att)
    assert len(private) > 20
    assert not private & set(released_numbers(att))

    # power: the same walk finds a key, or an exact sum, planted on the object
    class Leaky:
        __slots__ = ("inner", "kept")

        def __init__(self, inner, kept):
            self.inner, self.kept = inner, kept

    leaky = Leaky(att, to_matrix(K, CTX, "K")[1][0])
    assert private & set(released_numbers(leaky))
    leaky = Leaky(att, sensitivity.released_c1(to_matrix(K, CTX, "K"), to_matrix(V, CTX, "V"),
                                               column=0, degree=degree, prec=PREC))
    assert private & set(released_numbers(leaky))


@pytest.mark.parametrize("mech,copies", [("direct", 1), ("tree", 2)])
def test_same_uniforms_give_identical_structures_and_answers(rng, mech, copies):
    n, d, d_v, degree = 5, 2, 1, 2
    K, V = make_data(rng, n, d, d_v)
    count = count_of(n, d, d_v, degree, mech, copies)
    u = rng.uniform(U_LOW, U_HIGH, count)
    a, b = build(K, V, u, degree, mech, copies), build(K, V, u.copy(), degree, mech, copies)
    assert released_numbers(a) == released_numbers(b)
    Q = queries(rng, d)
    assert a.query(Q) == b.query(Q) == a.query(Q)
    assert a.error_bound(Q) == b.error_bound(Q)
    u2 = u.copy()
    u2[count // 2] = 0.5 if u2[count // 2] != 0.5 else 0.25
    assert released_numbers(build(K, V, u2, degree, mech, copies)) != released_numbers(a)


def test_exact_inputs_are_accepted(rng):
    K = [[Fraction(1, 3), Fraction(2, 3)], [CTX.mpf("0.125"), 1]]
    V = [[Fraction(-1, 7)], [0.5]]
    count = count_of(2, 2, 1, 2, "tree", 1)
    att = build(K, V, np.full(count, 0.5), 2, "tree")
    T = taylor_attention([[Fraction(1, 2), Fraction(1, 5)]], K, V, degree=2, prec=PREC)
    got = att.query([[Fraction(1, 2), Fraction(1, 5)]])
    assert max_abs_diff(got, T) <= CTX.ldexp(1 + att.error_bound([[0.5, 0.2]])[0][0], 24 - PREC)


# ---------------------------------------------------------------------------------------------
# Against exact softmax attention; the accounting comparison
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mech,copies,R", [("direct", 1, 1), ("tree", 2, Fraction(3, 2))])
def test_attention_error_bound_holds_against_exact_attention(rng, mech, copies, R):
    from dpxattn.reference import attention
    from dpxattn.reference.theorem_bounds import kernel_error_bounds
    n, d, d_v, degree = 5, 2, 2, 2
    K, V = make_data(rng, n, d, d_v, R=float(R))
    att = build(K, V, rng.uniform(U_LOW, U_HIGH, count_of(n, d, d_v, degree, mech, copies)),
                degree, mech, copies, R=R)
    Q = queries(rng, d, R=float(R))
    exact = attention(Q, K, V, prec=PREC)
    for ro, rx, rb in zip(att.query(Q), exact, att.attention_error_bound(Q)):
        assert all(abs(o - x) <= b for o, x, b in zip(ro, rx, rb))
    # the public kernel term dominates the private lemma bound for this data
    private = kernel_error_bounds(Q, K, V, degree=degree, R=R, prec=PREC)
    assert max(max(row) for row in private) <= att.kernel_error_bound()
    # and is not vacuous: at degree 2, R = 1 it is below R_w
    if R == 1:
        assert att.kernel_error_bound() < 1


def test_accounting_comparison_is_exact():
    from dpxattn.reference.cross_attention import accounting_comparison
    eps, delta = Fraction(1), Fraction(1, 10**6)
    for n, d, d_v, degree, copies in [(1024, 4, 8, 2, 1), (7, 2, 1, 3, 3)]:
        a = accounting_comparison(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree,
                                  copies=copies)
        J, L, r = a["components"], a["levels"], a["r"]
        assert J == copies * (d_v + 1) * (3 * r + 2)
        assert a["ours_level_eps"] * J * L == eps and a["ours_level_delta"] * J * L == delta
        assert a["paper_level_eps"] * 3 * r * L == eps
        assert a["paper_level_eps"] / a["ours_level_eps"] == a["noise_ratio"]
        assert a["noise_ratio"] > copies * (d_v + 1) and a["paper_release_is_dp"] is False
