"""Exact reference: the precision/conversion helpers and the truncated Laplace law (PAPER §2.1).

All checks here are exact (to the stated working precision), not statistical: no alpha applies.
Each identity is also shown to fail on a deliberately wrong variant where that is meaningful.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import scipy.integrate
from hypothesis import given, settings
from hypothesis import strategies as st

from dpxattn.accounting import tree_levels
from dpxattn.errors import BoundError, ParameterError, ShapeError, UniformsError
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import (DEFAULT_PREC, check_entries, context, interval_context,
                                   to_matrix, to_mpf, to_vector)

PREC = DEFAULT_PREC
CTX = context(PREC)
TOL = CTX.ldexp(1, -(PREC - 24))  # relative: 136 bits after losing 24 to the closed forms

sens = st.floats(0.05, 20.0)
epss = st.floats(0.01, 6.0)
deltas = st.floats(1e-10, 0.5)


def close(x, y, tol=TOL):
    return abs(x - y) <= tol * max(abs(x), abs(y), CTX.ldexp(1, -300))


# ---------------------------------------------------------------------------------------------
# _mp: contexts, conversions, validation
# ---------------------------------------------------------------------------------------------

def test_contexts_are_private_cached_and_leave_global_precision_alone():
    before = mpmath.mp.prec
    c1, c2 = context(200), context(200)
    assert c1 is c2 and c1.prec == 200 and c1 is not mpmath.mp
    assert context(None).prec == DEFAULT_PREC >= 128
    assert interval_context(100).prec == 100
    tl.variance(1, 1, Fraction(1, 10**5), prec=300)
    assert mpmath.mp.prec == before
    with pytest.raises(ParameterError, match="prec"):
        context(3)


def test_to_mpf_is_exact_for_dyadic_inputs_and_rounds_fractions_once():
    ctx = context(PREC)
    x = 0.1
    assert to_mpf(x, ctx) == ctx.mpf(x)  # float: exact binary value
    assert to_mpf(np.float32(0.1), ctx) == ctx.mpf(float(np.float32(0.1)))
    assert to_mpf(np.int64(7), ctx) == 7 and to_mpf(2**200 + 1, ctx) == ctx.mpf(2**200 + 1)
    third = to_mpf(Fraction(1, 3), ctx)
    assert abs(third - ctx.mpf(1) / 3) == 0
    hi = context(400).mpf(1) / 3
    assert to_mpf(hi, ctx) == hi  # an mpf keeps its value, not re-rounded
    assert to_mpf("1e-5", ctx) == ctx.mpf(1) / 10**5
    assert to_mpf(np.array(2.5), ctx) == ctx.mpf(2.5)
    for bad in (True, None, "abc", [1.0]):
        with pytest.raises(BoundError):
            to_mpf(bad, ctx, "x")


def test_to_matrix_and_to_vector_shapes():
    ctx = context(PREC)
    rows = to_matrix(np.arange(6.0).reshape(2, 3), ctx, "K")
    assert len(rows) == 2 and all(len(r) == 3 for r in rows) and rows[1][2] == 5
    assert to_matrix([[Fraction(1, 2), "0.25"]], ctx, "V")[0] == [ctx.mpf(0.5), ctx.mpf(0.25)]
    for bad in (np.zeros(3), np.zeros((2, 2, 2)), [1, 2], [[1, 2], [3]], [], [[]], [[[1]]], "ab"):
        with pytest.raises(ShapeError, match="K"):
            to_matrix(bad, ctx, "K")
    assert to_vector(np.array([1.0, 2.0]), ctx, "q") == [1, 2]
    for bad in (np.zeros((1, 2)), [], [[1]], 3.0):
        with pytest.raises(ShapeError, match="q"):
            to_vector(bad, ctx, "q")


def test_check_entries_names_the_bound_raises_on_nan_even_with_clip_and_clips():
    ctx = context(PREC)
    K = to_matrix([[0.0, 0.5], [1.0, 0.25]], ctx, "K")
    assert check_entries(K, "K", 0, 1, "[0, R]") is K
    bad = to_matrix([[0.0, 1.5]], ctx, "K")
    with pytest.raises(BoundError, match=r"K entries must lie in \[0, R\] = \[0, 1\]"):
        check_entries(bad, "K", 0, 1, "[0, R]")
    with pytest.raises(BoundError, match=r"V entries must lie in \[-R_w, R_w\] = \[-2, 2\]"):
        check_entries(to_vector([-3], ctx, "V"), "V", -2, 2, "[-R_w, R_w]")
    assert check_entries(bad, "K", 0, 1, "[0, R]", clip=True) == [[0, 1]]
    assert check_entries(to_vector([-3, 0.5], ctx, "v"), "v", -2, 2, "[-R_w, R_w]",
                         clip=True) == [-2, 0.5]
    for v in (float("nan"), float("inf"), -float("inf")):
        m = to_matrix([[0.5, v]], ctx, "K")
        for clip in (False, True):
            with pytest.raises(BoundError, match="K entries must be finite"):
                check_entries(m, "K", 0, 1, "[0, R]", clip=clip)


# ---------------------------------------------------------------------------------------------
# The law: golden values, closed forms against quadrature
# ---------------------------------------------------------------------------------------------

# PAPER Appendix B (mpmath). Reproduced here two ways: the closed forms at 160 bits, and the
# variance by tanh-sinh quadrature of z^2 f(z) at 160 bits (independent of the closed form).
GOLDEN = [
    # (Delta, eps, delta), A, Var (digits as recorded in PAPER App. B / §2.1)
    (("1", "1", "1e-5"), "11.3611", "1.998233152"),
    (("2.5", "0.3", "1e-3"), None, "124.1726659"),
    (("3", "2", "0.4"), "3.29356", "1.90454043"),
    (("1", "0.05", "1e-6"), "203.035", "798.0751405"),
    (("1", "1", "0.5"), "1", "0.2540698794"),
]


@pytest.mark.parametrize("params,A_gold,var_gold", GOLDEN)
def test_golden_values(params, A_gold, var_gold):
    ctx = context(PREC)
    params = tuple(Fraction(p) for p in params)  # exact decimals (strings are refused as parameters)
    A = tl.support_bound(*params)
    var = tl.variance(*params)
    if A_gold is not None:
        digits = len(A_gold.replace(".", "").lstrip("0"))
        assert mpmath.nstr(A, digits) == A_gold or abs(A - ctx.mpf(A_gold)) < ctx.mpf(10) ** -(
            digits - 1 - int(mpmath.floor(mpmath.log10(A))))
    assert abs(var - ctx.mpf(var_gold)) < ctx.mpf(10) ** (-(len(var_gold.split(".")[1])) + 0.3)
    f = lambda z: z * z * tl.pdf(z, *params)  # noqa: E731
    q = ctx.quad(f, [-A, 0, A])
    assert close(q, var, mpmath.mpf(10) ** -40)


def test_paper_support_bound_case_delta_half_is_exactly_Delta():
    # delta = 1/2 is exactly the condition A = Delta (and delta > 1/2 is refused).
    assert close(tl.support_bound(3, 2, Fraction(1, 2)), mpmath.mpf(3))
    with pytest.raises(ParameterError, match=r"delta must satisfy 0 < delta <= 1/2"):
        tl.support_bound(3, 2, Fraction(51, 100))


@pytest.mark.parametrize("bad", [dict(sensitivity=0), dict(eps=-1), dict(eps=float("inf")),
                                 dict(delta=0), dict(delta=0.6), dict(sensitivity="x")])
def test_parameters_are_validated(bad):
    kw = dict(sensitivity=1, eps=1, delta=1e-5)
    kw.update(bad)
    with pytest.raises(ParameterError, match=list(bad)[0]):
        tl.variance(**kw)


@settings(max_examples=15)
@given(sens, epss, deltas)
def test_closed_forms_agree_with_quadrature_of_the_density(D, e, dl):
    prec = 100
    ctx = context(prec)
    tol = ctx.ldexp(1, -75)
    A = tl.support_bound(D, e, dl, prec=prec)
    b = tl.scale(D, e, dl, prec=prec)
    B = tl.normalizer(D, e, dl, prec=prec)
    for z in (-A, -A / 3, 0, A / 7, A):  # pdf is B e^{-|z|/b} on the closed support
        assert close(tl.pdf(z, D, e, dl, prec=prec), B * ctx.exp(-abs(z) / b), tol)
    assert tl.pdf(A * (1 + tol), D, e, dl, prec=prec) == 0
    assert tl.pdf(-A * (1 + tol), D, e, dl, prec=prec) == 0
    f = lambda z: B * ctx.exp(-abs(z) / b)  # noqa: E731
    quad = lambda lo, hi: ctx.quad(f, [lo, hi], method="gauss-legendre")  # noqa: E731
    assert close(quad(-A, 0) + quad(0, A), ctx.one, tol)  # the density integrates to 1
    for t in (A * ctx.mpf("0.37"), -A * ctx.mpf("0.8")):
        assert close(quad(-A, 0) + quad(0, t) if t > 0 else quad(-A, t),
                     tl.cdf(t, D, e, dl, prec=prec), tol)
    t = A * ctx.mpf("0.37")
    assert close(tl.tail(t, D, e, dl, prec=prec), 2 * quad(t, A), tol)
    assert close(tl.variance(D, e, dl, prec=prec),
                 2 * ctx.quad(lambda z: z * z * f(z), [0, A], method="gauss-legendre"), tol)
    assert tl.cdf(-A, D, e, dl, prec=prec) < tol and tl.cdf(A, D, e, dl, prec=prec) > 1 - tol
    assert tl.cdf(-2 * A, D, e, dl, prec=prec) == 0 and tl.cdf(2 * A, D, e, dl, prec=prec) == 1
    assert tl.tail(-1, D, e, dl, prec=prec) == 1 and tl.tail(A, D, e, dl, prec=prec) < tol
    assert tl.tail(2 * A, D, e, dl, prec=prec) == 0
    # normalizer and scale relations; Var < 2 Delta^2 / eps^2 (plain Laplace)
    assert close(B, 1 / (2 * b * -ctx.expm1(-A / b)), tol)
    assert tl.variance(D, e, dl, prec=prec) < 2 * b * b
    assert close(tl.truncation(D, e, dl, prec=prec) * b, A, tol)


# ---------------------------------------------------------------------------------------------
# Inversion and sampling from given uniforms
# ---------------------------------------------------------------------------------------------

@settings(max_examples=60)
@given(st.floats(1e-300, 1.0, exclude_max=True), sens, epss, deltas)
def test_cdf_of_ppf_is_u(u, D, e, dl):
    z = tl.ppf(u, D, e, dl)
    assert abs(z) < tl.support_bound(D, e, dl) or u < 2**-100
    # absolute accuracy: a value near -A carries the rounding of A itself
    assert abs(tl.cdf(z, D, e, dl) - to_mpf(u, CTX)) <= CTX.ldexp(1, -(PREC - 40))
    if Fraction(1 - u) == 1 - Fraction(u):  # 1 - u exact: the draw is exactly antisymmetric
        assert tl.ppf(1 - u, D, e, dl) == -z


def test_ppf_is_monotone_and_uniform_edges_are_refused():
    us = [2.0**-54, 1e-9, 0.25, 0.5 - 2**-53, 0.5, 0.75, 1 - 2**-53]
    zs = [tl.ppf(u, 1, 1, 1e-5) for u in us]
    assert zs == sorted(zs) and zs[4] == 0
    for bad in (0, 1, 0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(UniformsError, match="u must lie strictly inside the open interval"):
            tl.ppf(bad, 1, 1, 1e-5)


def test_sample_maps_each_uniform_in_order_and_names_bad_indices():
    us = np.array([0.1, 0.9, 0.5, 0.3])
    assert tl.sample(us, 2, 0.5, 1e-3) == [tl.ppf(u, 2, 0.5, 1e-3) for u in us]
    assert tl.sample([], 2, 0.5, 1e-3) == []
    with pytest.raises(UniformsError, match=r"uniforms\[2\]"):
        tl.sample([0.1, 0.2, 1.0], 2, 0.5, 1e-3)
    with pytest.raises(UniformsError, match="1-D"):
        tl.sample(np.full((2, 2), 0.5), 2, 0.5, 1e-3)


# ---------------------------------------------------------------------------------------------
# Privacy: hockey-stick divergence, exactly
# ---------------------------------------------------------------------------------------------

@settings(max_examples=40)
@given(sens, epss, deltas)
def test_hockey_stick_equals_delta_at_the_full_shift(D, e, dl):
    ctx = context(PREC)
    assert close(tl.hockey_stick(D, e, D, e, dl), to_mpf(dl, ctx))
    assert close(tl.hockey_stick(-D, e, D, e, dl), to_mpf(dl, ctx))  # symmetric in the shift


@settings(max_examples=30)
@given(sens, epss, deltas, st.integers(1, 2**20))
def test_hockey_stick_equals_delta_for_the_per_level_split(D, e, dl, n):
    # DPTree level noise TLap(Delta, eps/L, delta/L): each level is (eps/L, delta/L) exactly,
    # and the L levels compose (basic) to (eps, delta).
    L = tree_levels(n)
    eL, dL = Fraction(e) / L, Fraction(dl) / L
    ctx = context(PREC)
    hs = tl.hockey_stick(D, to_mpf(eL, ctx), D, eL, dL)
    assert close(hs, to_mpf(dL, ctx))
    assert close(L * hs, to_mpf(dl, ctx))


@settings(max_examples=30)
@given(sens, epss, deltas, st.floats(0.0, 1.0))
def test_hockey_stick_below_full_shift_is_the_uncovered_mass(D, e, dl, frac):
    ctx = context(PREC)
    s = D * frac
    hs = tl.hockey_stick(s, e, D, e, dl)
    m = tl.uncovered_mass(s, D, e, dl)
    assert close(hs, m) or abs(hs - m) < TOL * to_mpf(dl, ctx)
    assert m <= to_mpf(dl, ctx) * (to_mpf(s, ctx) / to_mpf(D, ctx)) * (1 + TOL)  # convexity


@pytest.mark.parametrize("params", [(1, 1, 1e-5), (2.5, 0.3, 1e-3), (3, 2, 0.4), (1, 1, 0.5)])
def test_delta_and_eps_are_both_tight(params):
    D, e, dl = params
    ctx = context(PREC)
    dl_ = to_mpf(dl, ctx)
    assert tl.hockey_stick(D * 1.01, e, *params) > dl_  # a larger shift breaks (eps, delta)
    assert tl.hockey_stick(D, e * 0.99, *params) > dl_  # so does a smaller eps'
    # a larger eps' cannot lower delta: the uncovered mass is all of it
    assert close(tl.hockey_stick(D, e * 1.01, *params), dl_)
    assert close(tl.hockey_stick(D, e * 50, *params), dl_)
    # power: the under-noised variant (scale x 0.5 at the same claimed eps) violates delta
    assert tl.hockey_stick(D, e, D / 2, e, dl) > dl_ * (1 + TOL) * 1.5
    # disjoint supports: divergence 1
    assert close(tl.hockey_stick(3 * tl.support_bound(*params), 0, *params), CTX.one)


@settings(max_examples=20)
@given(sens, epss, st.floats(1e-6, 0.5), st.floats(0.0, 3.0), st.floats(0.0, 4.0))
def test_hockey_stick_matches_independent_float_quadrature(D, e, dl, frac, eps_prime):
    # scipy adaptive quadrature of max(0, f(z) - e^eps' f(z - s)) in float64: independent of the
    # piecewise closed form.
    s = D * frac
    A = float(tl.support_bound(D, e, dl))
    B = float(tl.normalizer(D, e, dl))
    b = D / e

    def f(z):
        return B * np.exp(-abs(z) / b) if abs(z) <= A else 0.0

    def h(z):
        return max(0.0, f(z) - np.exp(eps_prime) * f(z - s))

    pts = sorted({-A, 0.0, A, s - A, s, s + A, (s - b * eps_prime) / 2})
    pts = [p for p in pts if -A <= p <= A]
    val = sum(scipy.integrate.quad(h, lo, hi, limit=200, epsabs=1e-14, epsrel=1e-11)[0]
              for lo, hi in zip(pts, pts[1:]))
    exact = float(tl.hockey_stick(s, eps_prime, D, e, dl))
    assert abs(val - exact) <= 1e-9 * max(exact, 1e-6)


# ---------------------------------------------------------------------------------------------
# Vector extension (PAPER §2.1)
# ---------------------------------------------------------------------------------------------

@settings(max_examples=40)
@given(sens, epss, deltas, st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
def test_vector_extension_delta_is_at_most_delta(D, e, dl, weights):
    ctx = context(PREC)
    total = sum(Fraction(w) for w in weights)
    shifts = [Fraction(D) * Fraction(w) / total for w in weights] if total else [0] * len(weights)
    v = tl.vector_extension_delta(shifts, D, e, dl)
    assert v <= to_mpf(dl, ctx) * (1 + TOL)
    assert close(v, sum((tl.uncovered_mass(s, D, e, dl) for s in shifts), ctx.zero)) or v == 0
    assert close(tl.vector_extension_delta([D], D, e, dl), to_mpf(dl, ctx))
    with pytest.raises(ParameterError, match="l1 norm <= sensitivity"):
        tl.vector_extension_delta([D, D * 0.01], D, e, dl)


@pytest.mark.parametrize("params", [(1, 1, 1e-5), (2.0, 0.5, 1e-3), (1, 3, 0.2)])
@pytest.mark.parametrize("split", [("3/10", "7/10"), ("1/2", "1/2"), ("1/10", "9/10"),
                                   ("0", "1"), ("1", "0")])
def test_two_coordinate_hockey_stick_split_below_delta_full_equals_delta(params, split):
    D, e, dl = params
    prec = 120
    ctx = context(prec)
    shifts = [Fraction(D) * Fraction(split[0]), Fraction(D) * Fraction(split[1])]
    hs, err = tl.hockey_stick_2d(shifts, e, D, e, dl, prec=prec, error=True)
    bound = tl.vector_extension_delta(shifts, D, e, dl, prec=prec)
    dl_ = to_mpf(dl, ctx)
    tol = ctx.ldexp(1, -80)
    assert err < tol * dl_
    if "0" in split:
        assert close(hs, dl_, tol)  # one coordinate takes the whole shift: exactly delta
    else:
        assert hs < bound * (1 + tol) and bound < dl_  # split shifts: strictly below delta
    # exact cross-check independent of the quadrature: with eps' >= eps (|s1| + |s2|)/Delta the
    # overlap contributes nothing, so the divergence is P[some coordinate uncovered].
    big = e * (abs(shifts[0]) + abs(shifts[1])) / D
    m1, m2 = (tl.uncovered_mass(s, D, e, dl, prec=prec) for s in shifts)
    assert close(tl.hockey_stick_2d(shifts, big, D, e, dl, prec=prec), 1 - (1 - m1) * (1 - m2), tol)
    # one coordinate unshifted: the 2-D divergence is the 1-D one, for any eps'
    for ep in (0, e / 3, e):
        assert close(tl.hockey_stick_2d([shifts[1], 0], ep, D, e, dl, prec=prec),
                     tl.hockey_stick(shifts[1], ep, D, e, dl, prec=prec), tol)


def test_two_coordinate_hockey_stick_detects_an_over_budget_shift():
    # power: an l1 shift of 1.4 Delta split over two coordinates exceeds delta.
    D, e, dl = 1, 1, 1e-5
    assert tl.hockey_stick_2d([0.7, 0.7], e, D, e, dl, prec=100) > dl
