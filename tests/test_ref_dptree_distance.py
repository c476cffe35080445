"""Exact reference: DPTreeDistance on a public grid (PAPER §3.2 sound variant), p = 1 and p = 2.

All checks are exact (at the working precision) or exhaustive; none is statistical (no alpha).
Each bound is also shown to be violated by a deliberately wrong variant (cell always on the
same side, add/remove sensitivity under replace-one adjacency).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpxattn.accounting import padded_size, plan_dptree_distance, tree_levels
from dpxattn.errors import BoundError, ParameterError, ShapeError
from dpxattn.reference import sensitivity
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import DEFAULT_PREC, context, to_mpf
from dpxattn.reference.dptree import (canonical_decomposition, covering_nodes, exact_node_sums,
                                      hoeffding_bound)
from dpxattn.reference.dptree_distance import (FORMS, DPTreeDistance, answer_coefficients,
                                               cell_bounds, discretisation_error_bound,
                                               exact_fraction, grid_cell, l1_prefix_end,
                                               moment_leaves, moment_sensitivity, noise_count,
                                               noiseless_answer, split_ranges,
                                               weighted_distance)

PREC = DEFAULT_PREC
CTX = context(PREC)
HI = context(PREC + 64)
U_LOW, U_HIGH = 2.0**-54, 1.0 - 2.0**-53
EPS, DELTA = Fraction(1), Fraction(1, 10**5)


def rel_tol(*scales):
    return CTX.ldexp(1, 16 - PREC) * (1 + sum(abs(s) for s in scales))


def unit_points(draw, n, upper):
    return [draw(st.fractions(0, upper, max_denominator=64)) for _ in range(n)]


@st.composite
def datasets(draw, max_n=10):
    n = draw(st.integers(1, max_n))
    upper = draw(st.sampled_from([Fraction(1), Fraction(3, 2), Fraction(1, 4)]))
    R_w = draw(st.sampled_from([Fraction(1), Fraction(2)]))
    xs = unit_points(draw, n, upper)
    ws = [draw(st.fractions(-R_w, R_w, max_denominator=16)) for _ in range(n)]
    G = draw(st.integers(1, 12))
    return xs, ws, upper, R_w, G


def tables_of(xs, ws, *, upper, G, p):
    """Exact node sums of the p + 1 moment trees (private; for the zero-noise checks)."""
    return [exact_node_sums(moment_leaves(xs, ws, upper=upper, grid_size=G, k=k, prec=PREC),
                            prec=PREC) for k in range(p + 1)]


def apply(coef, tables):
    return CTX.fsum(c * tables[k][i] for (k, i), c in coef.items())


def query_points(upper, G):
    """Every cell boundary, every cell midpoint, both ends, and a point inside each half-cell."""
    ys = set()
    for g in range(G):
        a, b = cell_bounds(g, upper, G)
        ys.update([a, b, (a + b) / 2, a + (b - a) / 5, b - (b - a) / 7])
    return sorted(y for y in ys if 0 <= y <= upper)


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------

@given(st.fractions(0, 5, max_denominator=10**6), st.integers(1, 300), st.sampled_from([1, 5, Fraction(5, 3)]))
def test_grid_cell_is_the_exact_rule(x, G, upper):
    if x > upper:
        with pytest.raises(BoundError, match=r"x must lie in \[0, upper\]"):
            grid_cell(x, upper, G)
        return
    g = grid_cell(x, upper, G)
    assert g == min(math.floor(x * G / Fraction(upper)), G - 1)
    a, b = cell_bounds(g, upper, G)
    assert a <= x <= b and (x < b or g == G - 1)


def test_grid_cell_boundaries_and_exactness():
    assert [grid_cell(Fraction(g, 10), 1, 10) for g in range(11)] == [*range(10), 9]
    assert grid_cell(0, 1, 1) == grid_cell(1, 1, 1) == 0
    # 0.3 as a float is below 3/10: exact rule puts it in cell 2 of 10 on [0, 1]...
    assert Fraction(0.3) < Fraction(3, 10) and grid_cell(0.3, 1, 10) == 2
    # ...whereas the float64 expression floor(0.3 * 10 / 1) rounds up to 3
    assert math.floor(0.3 * 10 / 1) == 3
    # mpf and Fraction inputs are taken at their exact value
    assert grid_cell(to_mpf(Fraction(3, 10), context(300)), 1, 10) == (2 if exact_fraction(
        to_mpf(Fraction(3, 10), context(300))) < Fraction(3, 10) else 3)
    with pytest.raises(BoundError, match="x must lie in"):
        grid_cell(-1e-300, 1, 4)
    with pytest.raises(ParameterError, match="grid_size must be an integer >= 1"):
        grid_cell(0.5, 1, 0)


@pytest.mark.parametrize("G", [1, 2, 5, 8])
def test_l1_prefix_end_puts_ys_cell_on_the_nearest_side(G):
    upper = Fraction(3, 2)
    for y in query_points(upper, G):
        j = grid_cell(y, upper, G)
        a, b = cell_bounds(j, upper, G)
        e = l1_prefix_end(y, upper, G)
        assert e == (j if y - a >= b - y else j - 1)
        prefix, suffix = split_ranges(e, G)
        covered = (list(range(prefix[0], prefix[1] + 1)) if prefix else []) + (
            list(range(suffix[0], suffix[1] + 1)) if suffix else [])
        assert covered == list(range(G))


# ---------------------------------------------------------------------------------------------
# Noise-free answers vs brute force
# ---------------------------------------------------------------------------------------------

@given(datasets())
def test_p2_noiseless_answer_equals_brute_force_in_both_forms(data):
    xs, ws, upper, R_w, G = data
    tables = tables_of(xs, ws, upper=upper, G=G, p=2)
    for y in query_points(upper, G):
        exact = weighted_distance(xs, ws, y, p=2, prec=PREC)
        for form in FORMS[2]:
            coef = answer_coefficients(y, upper=upper, grid_size=G, p=2, form=form, prec=PREC)
            assert abs(apply(coef, tables) - exact) <= rel_tol(*[w * upper**2 for w in ws])
    y = query_points(upper, G)[1]
    assert abs(noiseless_answer(xs, ws, y, upper=upper, grid_size=G, p=2, prec=PREC)
               - weighted_distance(xs, ws, y, p=2, prec=PREC)) <= rel_tol(*[w * upper**2 for w in ws])


@given(datasets())
def test_p1_noiseless_answer_within_the_discretisation_bound(data):
    xs, ws, upper, R_w, G = data
    # cells and sides are decided on the values at the working precision: take those values
    xs = [exact_fraction(to_mpf(x, CTX)) for x in xs]
    tables = tables_of(xs, ws, upper=upper, G=G, p=1)
    cells = [grid_cell(x, upper, G) for x in xs]
    tol = rel_tol(*[w * upper for w in ws])
    for y in query_points(upper, G):
        exact = weighted_distance(xs, ws, y, p=1, prec=PREC)
        bound = discretisation_error_bound(xs, ws, y, upper=upper, grid_size=G, prec=PREC)
        assert bound <= to_mpf(upper, CTX) / G * len(xs) * to_mpf(R_w, CTX) * (1 + CTX.ldexp(1, 4 - PREC))
        # the exact discretisation error: a y's-cell point on the wrong side is off by 2 w (.)
        y = exact_fraction(to_mpf(y, CTX))
        j, e = grid_cell(y, upper, G), l1_prefix_end(y, upper, G)
        wrong = sum((2 * w * (y - x) if e == j else 2 * w * (x - y)
                     for x, w, g in zip(xs, ws, cells)
                     if g == j and ((e == j and x > y) or (e == j - 1 and x < y))), Fraction(0))
        for form in FORMS[1]:
            coef = answer_coefficients(y, upper=upper, grid_size=G, p=1, form=form, prec=PREC)
            got = apply(coef, tables)
            assert abs(got - exact) <= bound + tol
            assert abs(got - exact - to_mpf(wrong, CTX)) <= tol
    y = query_points(upper, G)[-2]
    assert abs(noiseless_answer(xs, ws, y, upper=upper, grid_size=G, p=1, prec=PREC)
               - weighted_distance(xs, ws, y, p=1, prec=PREC)) <= tol + discretisation_error_bound(
                   xs, ws, y, upper=upper, grid_size=G, prec=PREC)


def test_p1_cell_always_on_the_same_side_breaks_the_bound():
    """Wrong variant: y's cell always in the prefix. One point at the far end of y's cell."""
    xs, ws, upper, G = [Fraction(1)], [Fraction(1)], Fraction(1), 1
    y = Fraction(0)  # lower half of cell 0: the nearest side puts the cell in the suffix
    exact = weighted_distance(xs, ws, y, p=1, prec=PREC)
    bound = discretisation_error_bound(xs, ws, y, upper=upper, grid_size=G, prec=PREC)
    right = noiseless_answer(xs, ws, y, upper=upper, grid_size=G, p=1, prec=PREC)
    assert abs(right - exact) <= bound and 1 <= bound <= 1 + CTX.ldexp(1, 4 - PREC)
    tables = tables_of(xs, ws, upper=upper, G=G, p=1)
    prefix, _ = split_ranges(grid_cell(y, upper, G), G)  # always left
    nodes = canonical_decomposition(prefix[0], prefix[1], padded_size(G))
    always_left = sum(to_mpf(y, CTX) * tables[0][i] - tables[1][i] for i in nodes)
    assert abs(always_left - exact) == 2 > bound


# ---------------------------------------------------------------------------------------------
# The noisy structure: uniform order, error = signed sum of node noises, sure bounds
# ---------------------------------------------------------------------------------------------

def node_noises(u, *, upper, R_w, G, p, k):
    eps_l, delta_l = plan_dptree_distance(EPS, DELTA, G, p=p).share("tree_level")
    return tl.sample(np.asarray(u)[k::p + 1], moment_sensitivity(k, upper=upper, R_w=R_w, prec=PREC),
                     eps_l, delta_l, prec=PREC)


@pytest.mark.parametrize("p", [1, 2])
@given(data=datasets(max_n=8), seed=st.integers(0, 2**32 - 1))
def test_noisy_answer_minus_noiseless_is_the_signed_node_noise_sum(p, data, seed):
    xs, ws, upper, R_w, G = data
    u = np.random.default_rng(seed).random(noise_count(G, p)) * (1 - 2e-12) + 1e-12
    s = DPTreeDistance.build(xs, ws, upper=upper, R_w=R_w, p=p, eps=EPS, delta=DELTA,
                             grid_size=G, uniforms=u, prec=PREC)
    noises = [node_noises(u, upper=upper, R_w=R_w, G=G, p=p, k=k) for k in range(p + 1)]
    for k in range(p + 1):  # node-major uniform order: u[i (p + 1) + k] is node i of tree k
        exact = exact_node_sums(moment_leaves(xs, ws, upper=upper, grid_size=G, k=k, prec=PREC),
                                prec=PREC)
        assert all(abs(s.trees[k].noisy[i] - exact[i] - noises[k][i]) <= rel_tol(exact[i])
                   for i in range(len(exact)))
    tables = tables_of(xs, ws, upper=upper, G=G, p=p)
    for y in query_points(upper, G)[::3]:
        exact = weighted_distance(xs, ws, y, p=p, prec=PREC)
        for form in FORMS[p]:
            coef = s.error_coefficients(y, form=form)
            noiseless = apply(coef, tables)
            answer = s.query(y, form=form)
            signed = CTX.fsum(c * noises[k][i] for (k, i), c in coef.items())
            assert abs(answer - noiseless - signed) <= rel_tol(answer, noiseless, signed)
            slack = (discretisation_error_bound(xs, ws, y, upper=upper, grid_size=G, prec=PREC)
                     if p == 1 else 0)
            assert abs(answer - exact) <= s.sure_error_bound(y, form=form) + slack + rel_tol(answer)


def test_coefficients_per_form():
    upper, G, y = Fraction(1), 8, Fraction(3, 8) + Fraction(1, 100)  # cell 3, lower half
    N = padded_size(G)
    c = answer_coefficients(y, upper=upper, grid_size=G, p=2, form="totals", prec=PREC)
    assert set(c) == {(0, 0), (1, 0), (2, 0)}
    yv = to_mpf(y, CTX)
    assert c[(2, 0)] == 1 and c[(1, 0)] == -2 * yv and c[(0, 0)] == yv ** 2
    split = answer_coefficients(y, upper=upper, grid_size=G, p=2, prec=PREC)
    nodes = canonical_decomposition(0, 3, N) + canonical_decomposition(4, 7, N)
    assert set(split) == {(k, i) for k in range(3) for i in nodes}  # prefix [0, 3], suffix [4, 7]
    l1 = answer_coefficients(y, upper=upper, grid_size=G, p=1, prec=PREC)
    pre, suf = canonical_decomposition(0, 2, N), canonical_decomposition(3, 7, N)  # cell 3 right
    assert {i: l1[(0, i)] for i in pre} == {i: yv for i in pre}
    assert {i: l1[(1, i)] for i in suf} == {i: 1 for i in suf}
    paper = answer_coefficients(y, upper=upper, grid_size=G, p=1, form="prefix_total", prec=PREC)
    assert paper[(0, 0)] == -yv and paper[(1, 0)] == 1
    assert all(paper[(1, i)] == -2 for i in pre)
    # sides are decided on y at the working precision: 5/6 (the midpoint of cell 2 of 3) rounds
    # below the midpoint, so its cell goes to the suffix; the exact midpoint goes to the prefix
    mid = Fraction(5, 6)
    assert exact_fraction(to_mpf(mid, CTX)) < mid and l1_prefix_end(mid, 1, 3) == 2
    assert l1_prefix_end(to_mpf(mid, CTX), 1, 3) == 1
    at_mid = answer_coefficients(mid, upper=1, grid_size=3, p=1, prec=PREC)
    assert at_mid[(1, leaf := padded_size(3) - 1 + 2)] == 1 and at_mid[(0, leaf)] == -to_mpf(mid, CTX)
    dyadic = answer_coefficients(Fraction(5, 8), upper=1, grid_size=4, p=1, prec=PREC)
    assert dyadic[(1, padded_size(4) - 1 + 2)] == -1  # 5/8: the exact midpoint of cell 2: prefix
    with pytest.raises(ParameterError, match=r"form must be one of \('split', 'totals'\)"):
        answer_coefficients(y, upper=upper, grid_size=G, p=2, form="prefix_total")
    with pytest.raises(BoundError, match="y must lie in"):
        answer_coefficients(Fraction(3, 2), upper=upper, grid_size=G, p=2)


@pytest.mark.parametrize("u0", [U_LOW, U_HIGH])
@pytest.mark.parametrize("p", [1, 2])
def test_extreme_uniforms_stay_within_the_sure_bounds(u0, p):
    rng = np.random.default_rng(17)
    n, G, upper, R_w = 9, 6, Fraction(2), Fraction(3, 2)
    xs = [Fraction(int(v), 97) * upper for v in rng.integers(0, 98, n)]
    ws = [Fraction(int(v), 10) for v in rng.integers(-15, 16, n)]
    s = DPTreeDistance.build(xs, ws, upper=upper, R_w=R_w, p=p, eps=EPS, delta=DELTA, grid_size=G,
                             uniforms=np.full(noise_count(G, p), u0), prec=PREC)
    worst = 0
    for y in query_points(upper, G):
        exact = weighted_distance(xs, ws, y, p=p, prec=PREC)
        slack = discretisation_error_bound(xs, ws, y, upper=upper, grid_size=G, prec=PREC) if p == 1 else 0
        for form in FORMS[p]:
            err = abs(s.query(y, form=form) - exact)
            bound = s.sure_error_bound(y, form=form)
            assert err <= bound + slack
            worst = max(worst, err / (bound + slack))
    assert worst > 0.3  # extreme draws push the error to a sizeable part of the bound


def test_totals_form_has_fewer_noise_terms_than_the_split_form():
    upper, G = Fraction(1), 16
    s = DPTreeDistance.build([Fraction(1, 2)], [1], upper=upper, R_w=1, p=2, eps=EPS, delta=DELTA,
                             grid_size=G, uniforms=np.full(noise_count(G, 2), 0.25), prec=PREC)
    for y in query_points(upper, G):
        totals, split = s.sure_error_bound(y, form="totals"), s.sure_error_bound(y, form="split")
        if grid_cell(y, upper, G) == G - 1:  # prefix = [0, G - 1] = the root (G = N), no suffix
            assert totals == split
        elif y > 0:
            assert totals < split


# ---------------------------------------------------------------------------------------------
# Sensitivity of the moment trees under replace-one-(x, w)
# ---------------------------------------------------------------------------------------------

def level_changes(a, b, N):
    """Per level: (l1 change, number of changed nodes) between two level-order node tables."""
    out = []
    for lvl in range(N.bit_length()):
        idx = range((1 << lvl) - 1, (2 << lvl) - 1)
        diffs = [b[i] - a[i] for i in idx]
        out.append((sum(abs(d) for d in diffs), sum(1 for d in diffs if d != 0)))
    return out


@st.composite
def neighbouring_pairs(draw):
    xs, ws, upper, R_w, G = draw(datasets(max_n=8))
    i = draw(st.integers(0, len(xs) - 1))
    corner = draw(st.booleans())
    if corner:  # corners of the box: the extremes of x and w
        x_new = draw(st.sampled_from([Fraction(0), upper]))
        w_new = draw(st.sampled_from([-R_w, R_w]))
    else:
        x_new = draw(st.fractions(0, upper, max_denominator=64))
        w_new = draw(st.fractions(-R_w, R_w, max_denominator=16))
    xs2, ws2 = list(xs), list(ws)
    xs2[i], ws2[i] = x_new, w_new
    return xs, ws, xs2, ws2, upper, R_w, G


@given(neighbouring_pairs())
def test_moment_trees_change_each_level_by_at_most_2_Rw_upper_k(pair):
    xs, ws, xs2, ws2, upper, R_w, G = pair
    N = padded_size(G)
    for k in range(3):
        a = exact_node_sums(moment_leaves(xs, ws, upper=upper, grid_size=G, k=k, prec=PREC), prec=PREC)
        b = exact_node_sums(moment_leaves(xs2, ws2, upper=upper, grid_size=G, k=k, prec=PREC), prec=PREC)
        sens = moment_sensitivity(k, upper=upper, R_w=R_w, prec=PREC)
        assert sens == 2 * to_mpf(R_w, HI) * to_mpf(upper, HI) ** k
        assert abs(sens - sensitivity.tree_level(upper, k, R_w, prec=PREC)) <= rel_tol(sens)
        for l1, changed in level_changes(a, b, N):
            assert changed <= 2 and l1 <= sens


def test_replace_one_corner_pair_attains_the_sensitivity_and_beats_add_remove():
    """x = upper, w = R_w replaced by x' = upper, w' = -R_w: every level changes by exactly
    2 R_w upper^k, twice the add/remove figure R_w upper^k (a wrong variant the check rejects)."""
    upper, R_w, G = Fraction(3, 2), Fraction(2), 5
    xs, ws = [upper, Fraction(1, 3)], [R_w, Fraction(1, 2)]
    xs2, ws2 = [upper, Fraction(1, 3)], [-R_w, Fraction(1, 2)]
    eps_l, delta_l = plan_dptree_distance(EPS, DELTA, G, p=2).share("tree_level")
    for k in range(3):
        a = exact_node_sums(moment_leaves(xs, ws, upper=upper, grid_size=G, k=k, prec=PREC), prec=PREC)
        b = exact_node_sums(moment_leaves(xs2, ws2, upper=upper, grid_size=G, k=k, prec=PREC), prec=PREC)
        sens = moment_sensitivity(k, upper=upper, R_w=R_w, prec=PREC)
        for lvl, (l1, changed) in enumerate(level_changes(a, b, padded_size(G))):
            assert l1 == sens > sens / 2 and changed == 1
            shifts = [b[i] - a[i] for i in range((1 << lvl) - 1, (2 << lvl) - 1)]
            used = tl.vector_extension_delta(shifts, sens, eps_l, delta_l, prec=PREC)
            assert abs(used - to_mpf(delta_l, HI)) <= used * HI.ldexp(1, 8 - PREC)  # tight
    # the changed leaf's root-to-leaf path is the changed node set
    assert covering_nodes(grid_cell(upper, upper, G), padded_size(G))[-1] == padded_size(G) - 1 + G - 1


@given(neighbouring_pairs())
def test_two_leaves_change_when_the_cell_moves(pair):
    xs, ws, xs2, ws2, upper, R_w, G = pair
    a = moment_leaves(xs, ws, upper=upper, grid_size=G, k=0, prec=PREC)
    b = moment_leaves(xs2, ws2, upper=upper, grid_size=G, k=0, prec=PREC)
    assert sum(1 for x, y in zip(a, b) if x != y) <= 2


# ---------------------------------------------------------------------------------------------
# Structure, plan, validation
# ---------------------------------------------------------------------------------------------

def test_structure_holds_no_private_data_and_reports_its_plan():
    G = 7
    s = DPTreeDistance.build([0.1, 0.9, 0.5], [1, -1, 0.5], upper=1, R_w=1, p=2, eps=2,
                             delta=Fraction(1, 1000), grid_size=G, generator=np.random.default_rng(1))
    assert set(s.__slots__) == {"p", "upper", "R_w", "grid_size", "n", "prec", "trees", "plan"}
    assert not hasattr(s, "__dict__") and len(s.trees) == 3
    L = tree_levels(G)
    assert s.plan.share("tree_level") == (Fraction(2, 3 * L), Fraction(1, 1000 * 3 * L))
    assert all((t.eps_level, t.delta_level) == s.plan.share("tree_level") for t in s.trees)
    assert [t.sensitivity for t in s.trees] == [2, 2, 2]  # upper = 1
    assert s.noise_count(G, 2) == noise_count(G, 2) == 3 * (2 * 8 - 1)
    assert s.query(0.3) == s.query(0.3)  # repeated queries are bit-identical


def test_build_validation():
    kw = dict(upper=1, R_w=1, p=2, eps=1, delta=0.1, generator=np.random.default_rng(0))
    with pytest.raises(BoundError, match=r"x entries must lie in \[0, R_x\] = \[0, 1(\.0)?\]"):
        DPTreeDistance.build([0.5, 1.5], [0, 0], **kw)
    with pytest.raises(BoundError, match=r"w entries must lie in \[-R_w, R_w\]"):
        DPTreeDistance.build([0.5, 0.5], [0, -2], **kw)
    with pytest.raises(ShapeError, match="w must have the same length as x"):
        DPTreeDistance.build([0.5, 0.5], [0], **kw)
    with pytest.raises(ParameterError, match="p must be 1"):
        DPTreeDistance.build([0.5], [0], **{**kw, "p": 3})
    with pytest.raises(BoundError, match="x entries must be finite"):
        DPTreeDistance.build([float("nan")], [0], **kw)


def test_hoeffding_envelope_of_a_distance_query():
    """Hoeffding over the query's independent node noises: sqrt(2 ln(2/f) sum (|c| A)^2), the
    DESIGN §9 (c) high-probability envelope beside the sure bound sum |c| A."""
    G = 64
    s = DPTreeDistance.build([Fraction(1, 2)], [1], upper=1, R_w=1, p=2, eps=EPS, delta=DELTA,
                             grid_size=G, uniforms=np.full(noise_count(G, 2), 0.4), prec=PREC)
    y = Fraction(21, 64) + Fraction(1, 1000)
    ranges = s.noise_ranges(y)
    f = Fraction(1, 10**6)
    hoef = s.hoeffding_error_bound(y, failure=f)
    assert hoef == hoeffding_bound(ranges, f)
    assert abs(hoef**2 - 2 * HI.log(2 * 10**6) * HI.fsum(r * r for r in ranges)) <= rel_tol(hoef**2)
    assert abs(s.sure_error_bound(y) - CTX.fsum(ranges)) <= rel_tol(hoef)
    # the envelope is a sqrt of a sum of squares: with m equal ranges r it is r sqrt(2 m ln(2/f)),
    # below the sure m r once m > 2 ln(2/f); here the ranges are unequal, and it still scales so
    assert hoef <= CTX.sqrt(2 * len(ranges) * CTX.log(2 * 10**6)) * max(ranges) * (1 + rel_tol(1))


@pytest.mark.parametrize("G", [3, 8, 13])
def test_p1_sure_bounds_in_closed_form(G):
    """split: (|C_pre| + |C_suf|)(y A_0 + A_1); paper prefix/total: (2 |C_pre| + 1)(y A_0 + A_1)
    (PAPER §3.2's deterministic bound) unless the prefix is the root itself."""
    upper = Fraction(2)
    s = DPTreeDistance.build([Fraction(1, 3)], [1], upper=upper, R_w=1, p=1, eps=EPS, delta=DELTA,
                             grid_size=G, uniforms=np.full(noise_count(G, 1), 0.5), prec=PREC)
    A0, A1 = s.support_bounds()
    N = padded_size(G)
    for y in query_points(upper, G):
        yv = to_mpf(y, CTX)  # sides are decided on y at the working precision
        prefix, suffix = split_ranges(l1_prefix_end(yv, upper, G), G)
        pre = len(canonical_decomposition(*prefix, N)) if prefix else 0
        suf = len(canonical_decomposition(*suffix, N)) if suffix else 0
        unit = yv * A0 + A1
        assert abs(s.sure_error_bound(y) - (pre + suf) * unit) <= rel_tol(unit * N)
        if prefix != (0, N - 1):
            paper = s.sure_error_bound(y, form="prefix_total")
            assert abs(paper - (2 * pre + 1) * unit) <= rel_tol(unit * N)
