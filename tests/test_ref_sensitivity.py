"""Exact reference: l1 sensitivities under replace-one-row, against exact brute force.

Exact (to working precision) checks; no alpha applies. Each analytic sensitivity must never be
exceeded on corner and random neighbouring pairs; S, c0 and c1 are attained at corners, and an
under-estimated sensitivity (the add/remove value) is caught by the same brute force.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpxattn.errors import ParameterError
from dpxattn.reference import kernel
from dpxattn.reference import sensitivity as sens
from dpxattn.reference._mp import context, to_mpf

CTX = context(160)
TOL = CTX.ldexp(1, -140)


def leq(x, y):
    return x <= y * (1 + TOL) + TOL


def eq(x, y):
    return abs(x - y) <= TOL * max(abs(x), abs(y), CTX.one)


def test_analytic_values():
    M = kernel.feature_bounds(2, 2, 1.5)
    assert eq(sens.direct_statistic_convention(2, 2, 1.5, 0.5, 3),
              (2 * 3 * CTX.mpf(0.5) + 1) * CTX.fsum(M))
    # the exact sup: 2 d_v R_w + max(2 d_v R_w, d_v R_w + 1) sum_{alpha != 0} M_alpha
    assert eq(sens.direct_statistic(2, 2, 1.5, 0.5, 3), 3 + max(3, CTX.mpf(2.5)) * CTX.fsum(M[1:]))
    assert eq(sens.direct_statistic(2, 2, 1.5, 0.25, 1), CTX.mpf(0.5) + CTX.mpf(1.25) * CTX.fsum(M[1:]))
    assert sens.c0(0.75) == CTX.mpf(1.5)
    assert eq(sens.c1(3, 4, 1.0, 2.0), 4 * kernel.taylor(1, 4))
    assert eq(sens.c1_denominator(3, 4, 1.0), kernel.taylor(1, 4) - 1)
    assert sens.c0_denominator() == 0
    assert eq(sens.tree_level(CTX.mpf(3), 2, 0.5), CTX.mpf(9))
    assert sens.tree_level(3, 0, 0.5) == 1
    assert sens.fixed_index_level(Fraction(1, 4)) == CTX.mpf(0.25)
    for bad in (lambda: sens.c0(0), lambda: sens.tree_level(1, -1, 1),
                lambda: sens.direct_statistic(2, 2, 1, 1, 0), lambda: sens.fixed_index_level(-1)):
        with pytest.raises(ParameterError):
            bad()


CASES = [  # (n, d, d_v, R, R_w, degree)
    (1, 1, 1, 1.0, 1.0, 2),
    (3, 2, 1, 1.0, 0.5, 2),   # d_v R_w < 1
    (2, 2, 2, 1.5, 2.0, 3),   # d_v R_w >= 1
    (2, 3, 1, 0.5, 0.25, 1),
    (2, 1, 2, 2.0, 1.0, 0),
]


@pytest.mark.parametrize("n,d,d_v,R,R_w,s", CASES)
def test_S_sensitivity_holds_and_the_tight_value_is_attained(rng, n, d, d_v, R, R_w, s):
    pairs = sens.neighbouring_corner_pairs(n, d, d_v, R, R_w, rng=rng, n_random=3)
    fn = lambda K, V: sens.released_S(K, V, degree=s)  # noqa: E731
    worst, _ = sens.max_change_brute_force(fn, pairs)
    tight = sens.direct_statistic(d, s, R, R_w, d_v)  # the sensitivity every release uses
    conv = sens.direct_statistic_convention(d, s, R, R_w, d_v)
    assert eq(worst, tight)  # attained at a corner pair
    assert leq(tight, conv) and conv - tight >= 1 - TOL  # the convention is valid, not tight


@pytest.mark.parametrize("n,d,d_v,R,R_w,s", CASES)
def test_c0_c1_sensitivities_per_column(rng, n, d, d_v, R, R_w, s):
    pairs = sens.neighbouring_corner_pairs(n, d, d_v, R, R_w, rng=rng, n_random=3)
    for col in range(d_v + 1):
        w0, _ = sens.max_change_brute_force(
            lambda K, V: sens.released_c0(K, V, column=col), pairs)
        w1, _ = sens.max_change_brute_force(
            lambda K, V: sens.released_c1(K, V, column=col, degree=s), pairs)
        if col < d_v:  # a value column: tight
            assert eq(w0, sens.c0(R_w)) and eq(w1, sens.c1(d, s, R, R_w))
        else:  # the denominator column: c0 = n never moves; c1 moves by T_s(t_max) - 1
            assert w0 == 0 == sens.c0_denominator()
            assert eq(w1, sens.c1_denominator(d, s, R))
            assert leq(w1, sens.c1(d, s, R, 1))  # the plan's (R_w = 1) value is valid


def test_brute_force_catches_an_under_estimated_sensitivity():
    # power: the add/remove-one-row sensitivities (R_w for c0, R_w T_s for c1,
    # (d_v R_w + 1) sum M for S) are exceeded under replace-one-row
    n, d, d_v, R, R_w, s = 2, 2, 1, 1.0, 2.0, 2
    pairs = sens.neighbouring_corner_pairs(n, d, d_v, R, R_w)
    w0, _ = sens.max_change_brute_force(lambda K, V: sens.released_c0(K, V, column=0), pairs)
    w1, _ = sens.max_change_brute_force(
        lambda K, V: sens.released_c1(K, V, column=0, degree=s), pairs)
    wS, _ = sens.max_change_brute_force(lambda K, V: sens.released_S(K, V, degree=s), pairs)
    assert w0 > sens.c0(R_w) / 2 and w1 > sens.c1(d, s, R, R_w) / 2
    assert wS > (d_v * R_w + 1) * CTX.fsum(kernel.feature_bounds(d, s, R))


row_strategy = st.tuples(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2),
                         st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=2))


@settings(max_examples=25)
@given(st.lists(row_strategy, min_size=1, max_size=3), row_strategy, st.integers(0, 2),
       st.floats(0.25, 2.0), st.floats(0.25, 2.0), st.integers(0, 3))
def test_sensitivity_inequalities_on_random_neighbours(rows, new_row, j, R, R_w, s):
    # rows are in the unit box; scale them into [0, R]^2 x [-R_w, R_w]^2
    d, d_v = 2, 2
    j = j % len(rows)
    K = [[to_mpf(x, CTX) * to_mpf(R, CTX) for x in k] for k, _ in rows]
    V = [[to_mpf(x, CTX) * to_mpf(R_w, CTX) for x in v] for _, v in rows]
    K2, V2 = [list(r) for r in K], [list(r) for r in V]
    K2[j] = [to_mpf(x, CTX) * to_mpf(R, CTX) for x in new_row[0]]
    V2[j] = [to_mpf(x, CTX) * to_mpf(R_w, CTX) for x in new_row[1]]
    pair = [sens.NeighbourPair(K, V, K2, V2, j, "hypothesis")]
    wS, _ = sens.max_change_brute_force(lambda A, B: sens.released_S(A, B, degree=s), pair)
    assert leq(wS, sens.direct_statistic(d, s, R, R_w, d_v))
    assert leq(sens.direct_statistic(d, s, R, R_w, d_v),
               sens.direct_statistic_convention(d, s, R, R_w, d_v))
    for col in range(d_v + 1):
        w0, _ = sens.max_change_brute_force(lambda A, B: sens.released_c0(A, B, column=col), pair)
        w1, _ = sens.max_change_brute_force(
            lambda A, B: sens.released_c1(A, B, column=col, degree=s), pair)
        assert leq(w0, sens.c0(R_w if col < d_v else 1))
        assert leq(w1, sens.c1(d, s, R, R_w) if col < d_v else sens.c1_denominator(d, s, R))


def _grid_leaves(xs, ws, G, M, m):
    leaves = [CTX.zero] * G
    for x, w in zip(xs, ws):
        g = min(int(CTX.floor(x * G / M)), G - 1)
        leaves[g] += w * x**m
    return leaves


def _levels(leaves):
    """Every level of the sum tree over the leaves (padded to a power of two)."""
    N = 1
    while N < len(leaves):
        N *= 2
    level = list(leaves) + [CTX.zero] * (N - len(leaves))
    out = [level]
    while len(level) > 1:
        level = [level[2 * i] + level[2 * i + 1] for i in range(len(level) // 2)]
        out.append(level)
    return out


@pytest.mark.parametrize("G", [1, 3, 4, 5])
@pytest.mark.parametrize("m", [0, 1, 2])
def test_tree_level_sensitivity_on_a_public_grid(G, m):
    # every level of the tree over grid leaves changes by <= 2 R_w M^m when one record is replaced
    M, R_w = CTX.mpf(1.5), CTX.mpf(0.75)
    pts = [CTX.zero, M / 3, M / 2, M]
    ws = [-R_w, R_w]
    base_x, base_w = [M / 5, M * 0.9], [R_w / 2, -R_w]
    worst = CTX.zero
    for (xa, wa), (xb, wb) in itertools.product(itertools.product(pts, ws), repeat=2):
        la = _levels(_grid_leaves(base_x + [xa], base_w + [wa], G, M, m))
        lb = _levels(_grid_leaves(base_x + [xb], base_w + [wb], G, M, m))
        for a, b in zip(la, lb):
            worst = max(worst, CTX.fsum(abs(x - y) for x, y in zip(a, b)))
    bound = sens.tree_level(M, m, R_w)
    assert leq(worst, bound) and eq(worst, bound)  # attained (w = R_w -> -R_w at x = M)


def test_fixed_index_level_sensitivity():
    Delta = CTX.mpf(2)
    a = [CTX.mpf(v) for v in (1, -2, 3, 0.5, 4)]
    for i in range(len(a)):
        for change in (Delta, -Delta, Delta / 3):
            b = list(a)
            b[i] += change
            for la, lb in zip(_levels(a), _levels(b)):
                assert leq(CTX.fsum(abs(x - y) for x, y in zip(la, lb)),
                           sens.fixed_index_level(Delta))


L2_CASES = CASES + [(2, 2, 1, 1.0, 0.5, 3), (1, 3, 1, 2.0, 0.25, 4), (2, 2, 3, 1.0, 1.0, 2)]


@pytest.mark.parametrize("n,d,d_v,R,R_w,s", L2_CASES)
def test_S_l2_sensitivity_holds_and_is_attained_when_dv_Rw2_at_least_1(rng, n, d, d_v, R, R_w, s):
    """Frobenius change of S over corner and random neighbouring pairs: never above
    direct_statistic_l2; equal to it when d_v R_w^2 >= 1 (the exact sup is attained at
    x = x' = R 1, v = -v' = R_w 1); below the crude 2 sqrt(T) sqrt(d_v R_w^2 + 1)."""
    pairs = sens.neighbouring_corner_pairs(n, d, d_v, R, R_w, rng=rng, n_random=3)
    fn = lambda K, V: sens.released_S(K, V, degree=s)  # noqa: E731
    worst, _ = sens.max_change_brute_force(fn, pairs, norm="l2")
    bound = sens.direct_statistic_l2(d, s, R, R_w, d_v)
    T = kernel.feature_norm_sq_bound(d, s, R)
    m = d_v * CTX.mpf(R_w) ** 2
    assert leq(worst, bound)
    if m >= 1:
        assert eq(worst, bound)
    else:
        assert worst >= bound / CTX.sqrt(2)  # the bound is within sqrt 2 of the corner sup
    assert leq(bound, 2 * CTX.sqrt(T) * CTX.sqrt(m + 1))


def test_l2_brute_force_catches_an_under_estimated_l2_sensitivity():
    """power: the add/remove-one-row value sqrt(T) sqrt(m + 1) is exceeded under replace-one-row."""
    n, d, d_v, R, R_w, s = 2, 2, 2, 1.0, 1.0, 2
    pairs = sens.neighbouring_corner_pairs(n, d, d_v, R, R_w)
    worst, _ = sens.max_change_brute_force(lambda K, V: sens.released_S(K, V, degree=s), pairs,
                                           norm="l2")
    T = kernel.feature_norm_sq_bound(d, s, R)
    assert worst > CTX.sqrt(T) * CTX.sqrt(d_v * R_w**2 + 1)
    with pytest.raises(ParameterError, match="norm must be"):
        sens.max_change_brute_force(lambda K, V: [], pairs, norm="linf")
