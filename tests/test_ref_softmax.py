"""Exact reference: the law of cosines and DPTreeSoftmax in its sound form (PAPER §2.5, §3.4).

Every check is exact (Fractions) or at the working precision; none is statistical. The uniform
order and the error coefficients are checked draw by draw, so a wrong order, a wrong
sensitivity or a wrong sign fails.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpxattn.accounting import TREE_MOMENTS, feature_dimension, padded_size, plan_tree
from dpxattn.reference import kernel, sensitivity
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import DEFAULT_PREC, context, to_matrix
from dpxattn.reference.dptree_distance import DPTreeDistance, moment_leaves, moment_sensitivity
from dpxattn.reference.dptree_softmax import (TreeRelease, distance_coefficients, law_of_cosines,
                                              median, node_noise_index, scalar_noise_index,
                                              tree_noise_count)
from dpxattn.reference.envelope import sure_noise_bound

PREC = DEFAULT_PREC
CTX = context(PREC)
EPS, DELTA = Fraction(1), Fraction(1, 10**5)

fractions = st.fractions(-4, 4, max_denominator=32)


def tol(scale=1):
    return CTX.ldexp(1, 24 - PREC) * (1 + abs(scale))


@given(st.integers(1, 4), st.integers(1, 6), st.data())
def test_law_of_cosines_identity_is_exact(r, n, data):
    """sum_i w_i <x_i, u> == (c1 + ||u||^2 c0 - sum_i w_i ||x_i - u||^2) / 2, in exact rationals."""
    xs = [[data.draw(fractions) for _ in range(r)] for _ in range(n)]
    w = [data.draw(fractions) for _ in range(n)]
    u = [data.draw(fractions) for _ in range(r)]

    def dot(a, b):
        return sum((x * y for x, y in zip(a, b)), Fraction(0))

    c1 = sum((wi * dot(x, x) for wi, x in zip(w, xs)), Fraction(0))
    c0 = sum(w, Fraction(0))
    dist = sum((wi * dot([a - b for a, b in zip(x, u)], [a - b for a, b in zip(x, u)])
                for wi, x in zip(w, xs)), Fraction(0))
    target = sum((wi * dot(x, u) for wi, x in zip(w, xs)), Fraction(0))
    assert law_of_cosines(c1, dot(u, u), c0, dist) == target
    # the identity needs every term: dropping c0's ||u||^2 factor breaks it unless it is inert
    if dot(u, u) != 1 and c0 != 0:
        assert law_of_cosines(c1, Fraction(1), c0, dist) != target


def test_distance_coefficients_expand_the_square():
    for y, x in [(Fraction(1, 3), Fraction(2, 5)), (Fraction(0), Fraction(1)), (Fraction(7, 4), Fraction(7, 4))]:
        a, b, c = distance_coefficients(y)
        assert a * 1 + b * x + c * x * x == (y - x) ** 2


def test_median_odd_even():
    m = [CTX.mpf(v) for v in (3, -1, 2)]
    assert median(m) == 2
    assert median(m + [CTX.mpf(10)]) == CTX.mpf(5) / 2
    assert median([CTX.mpf(7)]) == 7


def data(rng, n, d, d_v):
    K = rng.uniform(0, 1, (n, d))
    V = rng.uniform(-1, 1, (n, d_v))
    return to_matrix(K, CTX, "K"), to_matrix(V, CTX, "V")


def tree_plan(n, d, d_v, degree, copies, G=None):
    return plan_tree(eps=EPS, delta=DELTA, n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                     grid_size=G)


def build(K, V, degree, copies, u, G=None):
    n, d, d_v = len(K), len(K[0]), len(V[0])
    return TreeRelease.build(K, V, plan=tree_plan(n, d, d_v, degree, copies, G), R=1, R_w=1,
                             degree=degree, copies=copies, grid_size=G, uniforms=u, prec=PREC)


def released(rel) -> dict:
    """Every released number, keyed by its place: (c0|c1, copy, col) and (node, c, k, t, m, i)."""
    out = {}
    for c, cols in enumerate(rel.softmax):
        for k, sm in enumerate(cols):
            out[("c0", c, k)] = sm.c0
            out[("c1", c, k)] = sm.c1
            for t, ds in enumerate(sm.coordinates):
                for m, tree in enumerate(ds.trees):
                    for i, v in enumerate(tree.noisy):
                        out[("node", c, k, t, m, i)] = v
    return out


def draw_for(key, u_value, *, plan, d, degree, d_v):
    """The TLap draw the conventions assign to the released number ``key`` for uniform u (the
    denominator is column d_v: its c1 has its own sensitivity, ``c1_column``)."""
    k = key[2]
    R_w = 1  # value columns are built with R_w = 1 here, and the denominator always has 1
    if key[0] in ("c0", "c1"):
        den = k == d_v
        Delta = (sensitivity.c0(R_w, prec=PREC) if key[0] == "c0"
                 else sensitivity.c1_column(d, degree, 1, R_w, denominator=den, prec=PREC))
        e, dl = plan.share(key[0])
    else:
        _, c, k, t, m, _ = key
        M = kernel.feature_bounds(d, degree, 1, prec=PREC)[t]
        Delta = moment_sensitivity(m, upper=M, R_w=R_w, prec=PREC)
        e, dl = plan.share("tree_level")
    return tl.ppf(u_value, Delta, e, dl, prec=PREC)


def test_noise_count_matches_the_building_blocks():
    for n, d, d_v, degree, copies, G in [(1, 1, 1, 0, 1, None), (5, 2, 2, 2, 3, None),
                                         (8, 3, 1, 1, 2, 3)]:
        r = feature_dimension(d, degree)
        cols = copies * (d_v + 1)
        per_ds = DPTreeDistance.noise_count(n if G is None else G, 2)
        assert tree_noise_count(n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                                grid_size=G) == 2 * cols + cols * r * per_ds


def test_noise_free_structure_holds_the_exact_sums(rng):
    n, d, d_v, degree, copies, G = 5, 2, 2, 2, 2, 4
    K, V = data(rng, n, d, d_v)
    count = tree_noise_count(n=n, d=d, d_v=d_v, degree=degree, copies=copies, grid_size=G)
    rel = build(K, V, degree, copies, np.full(count, 0.5), G)
    feats = [kernel.features(k, degree, prec=PREC) for k in K]
    M = kernel.feature_bounds(d, degree, 1, prec=PREC)
    for c in range(copies):
        for k in range(d_v + 1):
            sm = rel.softmax[c][k]
            [c0] = sensitivity.released_c0(K, V, column=k, prec=PREC)
            [c1] = sensitivity.released_c1(K, V, column=k, degree=degree, prec=PREC)
            assert abs(sm.c0 - c0) <= tol(sm.c0_support_bound)
            assert abs(sm.c1 - c1) <= tol(sm.c1_support_bound)
            w = [row[k] for row in V] if k < d_v else [1] * n
            for t, ds in enumerate(sm.coordinates):
                assert ds.grid_size == G and ds.upper == M[t]
                for m, tree in enumerate(ds.trees):
                    leaves = moment_leaves([f[t] for f in feats], w, upper=M[t], grid_size=G,
                                           k=m, prec=PREC)
                    N = padded_size(G)
                    assert all(abs(a - b) <= tol(tree.support_bound)
                               for a, b in zip(tree.noisy[N - 1:N - 1 + G], leaves))
            for q in to_matrix(rng.uniform(0, 1, (3, d)), CTX, "Q"):
                u = kernel.features(q, degree, prec=PREC)
                target = CTX.fsum(wi * CTX.fdot(f, u) for wi, f in zip(w, feats))
                assert abs(sm.query(u) - target) <= tol(target)


@pytest.mark.parametrize("copies,G", [(1, None), (2, 3)])
def test_uniform_order_draw_by_draw(rng, copies, G):
    """Perturb one uniform: exactly the released number the conventions name moves, by its draw."""
    n, d, d_v, degree = 3, 2, 1, 1
    K, V = data(rng, n, d, d_v)
    r = feature_dimension(d, degree)
    N = padded_size(n if G is None else G)
    plan = tree_plan(n, d, d_v, degree, copies, G)
    count = tree_noise_count(n=n, d=d, d_v=d_v, degree=degree, copies=copies, grid_size=G)
    base = released(build(K, V, degree, copies, np.full(count, 0.5), G))
    expected = {}
    for c in range(copies):
        for k in range(d_v + 1):
            for which, name in enumerate(("c0", "c1")):
                expected[scalar_noise_index(c, k, which, d_v=d_v)] = (name, c, k)
            for t in range(r):
                for m in range(TREE_MOMENTS):
                    for i in range(2 * N - 1):
                        idx = node_noise_index(i, c, k, t, m, d_v=d_v, r=r, copies=copies)
                        expected[idx] = ("node", c, k, t, m, i)
    assert sorted(expected) == list(range(count))  # the layout is a bijection onto the uniforms
    picks = {0, 1, 2 * copies * (d_v + 1) - 1, 2 * copies * (d_v + 1), count - 1}
    picks |= {int(i) for i in rng.integers(0, count, 4)}
    for idx in sorted(picks):
        u = np.full(count, 0.5)
        u[idx] = 0.8125
        moved = released(build(K, V, degree, copies, u, G))
        changed = [key for key in base if moved[key] != base[key]]
        assert changed == [expected[idx]]
        z = draw_for(expected[idx], 0.8125, plan=plan, d=d, degree=degree, d_v=d_v)
        assert abs(moved[expected[idx]] - base[expected[idx]] - z) <= tol(z)


def test_error_is_the_stated_linear_combination_of_draws(rng):
    n, d, d_v, degree, copies = 4, 2, 1, 2, 2
    K, V = data(rng, n, d, d_v)
    r = feature_dimension(d, degree)
    plan = tree_plan(n, d, d_v, degree, copies)
    count = tree_noise_count(n=n, d=d, d_v=d_v, degree=degree, copies=copies)
    u = rng.uniform(0.02, 0.98, count)
    rel = build(K, V, degree, copies, u)
    noise_free = build(K, V, degree, copies, np.full(count, 0.5))
    for q in to_matrix(rng.uniform(0, 1, (2, d)), CTX, "Q"):
        f = kernel.features(q, degree, prec=PREC)
        for c in range(copies):
            for k in range(d_v + 1):
                sm, sm0 = rel.softmax[c][k], noise_free.softmax[c][k]
                err = sm.query(f) - sm0.query(f)
                total = CTX.zero
                for key, coef in sm.error_coefficients(f).items():
                    if key in ("c0", "c1"):
                        idx = scalar_noise_index(c, k, ("c0", "c1").index(key), d_v=d_v)
                        place = (key, c, k)
                    else:
                        t, m, i = key
                        idx = node_noise_index(i, c, k, t, m, d_v=d_v, r=r, copies=copies)
                        place = ("node", c, k, t, m, i)
                    total += coef * draw_for(place, u[idx], plan=plan, d=d,
                                             degree=degree, d_v=d_v)
                assert abs(err - total) <= tol(sm.c1)
                bound = sure_noise_bound(sm.noise_groups(f), CTX)
                assert abs(err) <= bound
                # power: with the c0 coefficient's sign flipped the combination no longer matches
                flipped = total - 2 * sm.error_coefficients(f)["c0"] * draw_for(
                    ("c0", c, k), u[scalar_noise_index(c, k, 0, d_v=d_v)], plan=plan,
                    d=d, degree=degree, d_v=d_v)
                assert abs(err - flipped) > tol(sm.c1)
