"""Exact reference: the Taylor feature map and its kernel error eps_s (PAPER §2.3, App. B).

Exact (to working precision) or certified checks; nothing statistical, so no alpha applies.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpxattn.accounting import feature_dimension
from dpxattn.errors import ParameterError, ShapeError
from dpxattn.reference import kernel
from dpxattn.reference._mp import context, rounded, to_mpf

PREC = 160
CTX = context(PREC)


def close(x, y, scale_of=None, bits=PREC - 20):
    ref = max(abs(x), abs(y), CTX.one) if scale_of is None else scale_of
    return abs(x - y) <= CTX.ldexp(ref, -bits)


def test_multi_indices_order_is_the_convention():
    assert kernel.multi_indices(2, 2) == ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2))
    assert kernel.index_multisets(3, 2)[:5] == ((), (0,), (1,), (2,), (0, 0))
    for d, s in itertools.product(range(1, 5), range(0, 5)):
        alphas = kernel.multi_indices(d, s)
        assert len(alphas) == feature_dimension(d, s) == math.comb(d + s, s)
        assert len(set(alphas)) == len(alphas)
        degrees = [sum(a) for a in alphas]
        assert degrees == sorted(degrees)  # degree-major
        for combo, alpha in zip(kernel.index_multisets(d, s), alphas):
            assert tuple(combo.count(i) for i in range(d)) == alpha
    with pytest.raises(ParameterError, match="degree"):
        kernel.multi_indices(2, -1)
    with pytest.raises(ParameterError, match="d must"):
        kernel.multi_indices(0, 2)


coords = st.floats(-3.0, 3.0, allow_nan=False)
scales = st.fractions(Fraction(1, 50), Fraction(3)).filter(lambda q: q > 0)


@settings(max_examples=40)
@given(st.integers(1, 4), st.integers(0, 5), st.data(), st.one_of(st.none(), scales))
def test_feature_inner_product_is_the_taylor_kernel(d, s, data, scale):
    x = data.draw(st.lists(coords, min_size=d, max_size=d))
    y = data.draw(st.lists(coords, min_size=d, max_size=d))
    px = kernel.features(x, s, scale=scale)
    py = kernel.features(y, s, scale=scale)
    assert len(px) == feature_dimension(d, s)
    c = Fraction(1, d) if scale is None else scale
    t = to_mpf(c * sum(Fraction(a) * Fraction(b) for a, b in zip(x, y)), CTX)  # exact argument
    inner = CTX.fsum(a * b for a, b in zip(px, py))
    size = CTX.fsum(abs(a * b) for a, b in zip(px, py)) + 1
    assert close(inner, kernel.taylor(t, s), scale_of=size)


@settings(max_examples=30)
@given(st.integers(1, 4), st.integers(0, 5), st.floats(0.1, 3.0), st.data(),
       st.one_of(st.none(), scales))
def test_features_lie_in_zero_to_M_alpha_and_norm_bound(d, s, R, data, scale):
    x = data.draw(st.lists(st.floats(0.0, R), min_size=d, max_size=d))
    M = kernel.feature_bounds(d, s, R, scale=scale)
    P = kernel.features(x, s, scale=scale)
    assert all(0 <= p <= m for p, m in zip(P, M))
    norm_sq = CTX.fsum(p * p for p in P)
    bound = kernel.feature_norm_sq_bound(d, s, R, scale=scale)
    assert norm_sq <= bound * (1 + CTX.ldexp(1, -140))
    # attained at x = R 1_d
    assert close(CTX.fsum(m * m for m in M), bound)
    # signed entries: |P(x)_alpha| <= M_alpha too
    xs = [-v for v in x]
    assert all(abs(p) <= m for p, m in zip(kernel.features(xs, s, scale=scale), M))


def test_t_max_and_default_scale():
    assert kernel.t_max(4, 2) == 4  # R^2 with the paper's 1/d
    assert kernel.t_max(4, 2, Fraction(1, 2)) == 8  # scale d R^2
    assert kernel.default_scale(8) == Fraction(1, 8)
    assert kernel.features([1, 2], 2, scale=Fraction(1, 2)) == kernel.features([1, 2], 2)
    with pytest.raises(ParameterError, match="scale"):
        kernel.features([1.0], 2, scale=0)
    with pytest.raises(ShapeError, match="x"):
        kernel.features([[1.0]], 2)


GRID = [(R, s, signed) for R in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0) for s in (0, 1, 2, 3, 5, 9, 14)
        for signed in (False, True)]


@pytest.mark.parametrize("R,s,signed", GRID)
def test_certified_eps_s_is_never_below_the_true_value_and_tight(R, s, signed):
    d = 3
    hi = kernel.eps_s_exact(R, s, d, signed=signed, prec=400)  # the "true" value
    cert = kernel.certified_eps_s(R, s, d, signed=signed)
    assert cert >= hi
    assert cert - hi <= CTX.ldexp(hi, -120)  # and tight
    ex = kernel.eps_s_exact(R, s, d, signed=signed)
    assert abs(ex - hi) <= CTX.ldexp(hi, -150)
    assert cert <= kernel.lagrange_eps_s_bound(R, s, d, signed=signed) * (1 + CTX.ldexp(1, -150))


def test_round_to_nearest_can_be_optimistic_and_the_certified_value_is_not():
    # power of the "never below" check: rounding the exact value to nearest at 53 bits falls
    # below the truth for some cases; the certified value at 53 bits never does.
    below = 0
    for R, s, signed in GRID:
        hi = kernel.eps_s_exact(R, s, 3, signed=signed, prec=400)
        below += rounded(hi, context(53)) < hi
        assert kernel.certified_eps_s(R, s, 3, signed=signed, prec=53) >= hi
    assert below > 0


@settings(max_examples=30)
@given(st.floats(0.1, 2.5), st.integers(0, 8), st.floats(0.0, 1.0), st.booleans())
def test_eps_s_is_the_sup_of_the_kernel_relative_error(R, s, frac, signed):
    # monotonicity: the relative error at any t in [0, t_max] (or [-t_max, t_max]) is <= eps_s,
    # with equality at the end(s)
    d = 2
    tm = kernel.t_max(d, R)
    eps = kernel.eps_s_exact(R, s, d, signed=signed)
    for t in (tm * to_mpf(frac, CTX), -tm * to_mpf(frac, CTX) if signed else CTX.zero):
        rel = abs(1 - CTX.exp(-t) * kernel.taylor(t, s))
        assert rel <= eps * (1 + CTX.ldexp(1, -120)) + CTX.ldexp(1, -150)
    ends = [abs(1 - CTX.exp(-tm) * kernel.taylor(tm, s))]
    if signed:
        ends.append(abs(1 - CTX.exp(tm) * kernel.taylor(-tm, s)))
    # (the direct formula cancels: absolute agreement, to the working precision)
    assert abs(max(ends) - eps) <= CTX.ldexp(1, -140) * CTX.exp(tm)


@settings(max_examples=25)
@given(st.integers(1, 4), st.floats(0.1, 2.0), st.integers(0, 7), st.data())
def test_kernel_sandwich_on_nonnegative_inputs(d, R, s, data):
    # (1 - eps_s) e^t <= <P(x), P(y)> <= e^t for x, y in [0, R]^d
    x = data.draw(st.lists(st.floats(0.0, R), min_size=d, max_size=d))
    y = data.draw(st.lists(st.floats(0.0, R), min_size=d, max_size=d))
    t = to_mpf(Fraction(1, d) * sum(Fraction(a) * Fraction(b) for a, b in zip(x, y)), CTX)
    k = CTX.fsum(a * b for a, b in zip(kernel.features(x, s), kernel.features(y, s)))
    e = CTX.exp(t)
    slack = CTX.ldexp(e, -130)
    assert k <= e + slack
    assert k >= (1 - kernel.certified_eps_s(R, s, d)) * e - slack


# PAPER Appendix B: minimal Taylor degree for relative error eps_s, t = <q,k>/d in [0, R^2]
# (non-negative) / [-R^2, R^2] (signed).
APPENDIX_B = {
    0.5: ((1, 1), (2, 2), (3, 3), (5, 5)),
    1.0: ((2, 3), (4, 5), (5, 6), (9, 9)),
    1.5: ((4, 8), (6, 9), (8, 11), (12, 15)),
    2.0: ((7, 14), (9, 15), (11, 17), (17, 21)),
}


@pytest.mark.parametrize("R", sorted(APPENDIX_B))
def test_select_degree_matches_appendix_B(R):
    for target, (s_nonneg, s_signed) in zip(map(Fraction, ("1e-1", "1e-2", "1e-3", "1e-6")),
                                           APPENDIX_B[R]):
        for signed, s in ((False, s_nonneg), (True, s_signed)):
            assert kernel.select_degree(target, R, 4, signed=signed) == s
            assert kernel.certified_eps_s(R, s, 4, signed=signed) <= to_mpf(target, CTX)
            if s > 0:  # minimal
                assert kernel.certified_eps_s(R, s - 1, 4, signed=signed) > to_mpf(target, CTX)
    # the paper's Lagrange bound asks for a degree at least as large
    s_lagrange = next(s for s in range(60)
                      if kernel.lagrange_eps_s_bound(R, s, 4) <= to_mpf("1e-3", CTX))
    assert s_lagrange >= APPENDIX_B[R][2][0]


def test_select_degree_limits():
    with pytest.raises(ParameterError, match="eps_s_target"):
        kernel.select_degree(0, 1.0, 2)
    with pytest.raises(ParameterError, match="not reached by any degree <= 3"):
        kernel.select_degree(1e-9, 2.0, 2, max_degree=3)
    assert kernel.select_degree(1.0, 1.0, 2) == 0  # eps_0 = 1 - e^{-1} < 1
    # scale matters: t_max = scale d R^2
    assert kernel.select_degree(1e-3, 1.0, 4, scale=Fraction(1, 2)) == kernel.select_degree(
        1e-3, math.sqrt(2), 4)


@pytest.mark.parametrize("d,s,R,scale", [(3, 4, 1.7, None), (2, 3, 0.3, 0.7), (4, 2, Fraction(1, 3), None),
                                         (5, 5, 2.0, 0.25)])
def test_feature_bounds_are_the_corner_features_bit_for_bit(d, s, R, scale):
    """feature_bounds computes each value once per exponent profile: the same numbers as
    features(R 1_d), bit for bit (proofs_notes/10)."""
    a = kernel.feature_bounds(d, s, R, scale=scale)
    b = kernel.features([R] * d, s, scale=scale)
    assert len(a) == len(b) and all(x == y for x, y in zip(a, b))


def test_exponent_profiles_follow_the_feature_order():
    alphas = kernel.multi_indices(4, 3)
    profiles = kernel.exponent_profiles(4, 3)
    assert len(profiles) == len(alphas)
    for alpha, key in zip(alphas, profiles):
        assert sum(key) == sum(alpha) and sorted(a for a in alpha if a) == list(key)
    assert len(set(kernel.exponent_profiles(16, 8))) == sum(
        1 for k in range(9) for _ in _partitions(k, 16))


def _partitions(k, parts, largest=None):
    """The partitions of k into at most ``parts`` parts (each <= largest)."""
    largest = k if largest is None else largest
    if k == 0:
        yield ()
        return
    if parts == 0:
        return
    for first in range(min(k, largest), 0, -1):
        for rest in _partitions(k - first, parts - 1, first):
            yield (first,) + rest
