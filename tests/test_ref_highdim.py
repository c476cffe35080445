"""Exact reference: DPTreeHighDim (PAPER §3.3), basic and advanced composition over coordinates.

All checks are exact (at the working precision); none is statistical (no alpha applies).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpxattn.accounting import padded_size, plan_dptree_highdim, tree_levels
from dpxattn.errors import BoundError, ParameterError, ShapeError
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import DEFAULT_PREC, context, to_mpf
from dpxattn.reference import dptree_distance as dd
from dpxattn.reference import sensitivity
from dpxattn.reference.dptree import exact_node_sums, hoeffding_bound
from dpxattn.reference.composition import advanced
from dpxattn.reference.dptree_highdim import (DPTreeHighDim, coordinate_eps, coordinate_uniforms,
                                              coordinate_uppers, discretisation_error_bound,
                                              noise_count, weighted_distance)

PREC = DEFAULT_PREC
CTX = context(PREC)
EPS, DELTA = Fraction(2), Fraction(1, 10**4)
U_LOW, U_HIGH = 2.0**-54, 1.0 - 2.0**-53


def tol(*scales):
    return CTX.ldexp(1, 20 - PREC) * (1 + sum(abs(to_mpf(s, CTX)) for s in scales))


@st.composite
def datasets(draw):
    n = draw(st.integers(1, 6))
    D = draw(st.integers(1, 3))
    uppers = [draw(st.sampled_from([Fraction(1), Fraction(2), Fraction(1, 2)])) for _ in range(D)]
    X = [[draw(st.fractions(0, uppers[t], max_denominator=32)) for t in range(D)] for _ in range(n)]
    ws = [draw(st.fractions(-1, 1, max_denominator=8)) for _ in range(n)]
    G = draw(st.integers(1, 6))
    y = [draw(st.fractions(0, uppers[t], max_denominator=40)) for t in range(D)]
    return X, ws, uppers, G, y


def exact_tables(X, ws, uppers, G, p, t):
    col = [row[t] for row in X]
    return [exact_node_sums(dd.moment_leaves(col, ws, upper=uppers[t], grid_size=G, k=k, prec=PREC),
                            prec=PREC) for k in range(p + 1)]


@pytest.mark.parametrize("p", [1, 2])
@settings(max_examples=25)
@given(data=datasets(), seed=st.integers(0, 2**32 - 1))
def test_answer_error_is_the_signed_sum_of_node_noises_and_within_the_sure_bound(p, data, seed):
    X, ws, uppers, G, y = data
    D = len(uppers)
    u = np.random.default_rng(seed).random(noise_count(G, D, p)) * (1 - 2e-12) + 1e-12
    s = DPTreeHighDim.build(X, ws, upper=uppers, R_w=1, p=p, eps=EPS, delta=DELTA, grid_size=G,
                            uniforms=u, prec=PREC)
    eps_l, delta_l = s.plan.share("tree_level")
    L = tree_levels(G)
    assert (eps_l, delta_l) == (EPS / (D * (p + 1) * L), DELTA / (D * (p + 1) * L))
    nodes = 2 * padded_size(G) - 1
    noise, noiseless = {}, CTX.zero
    for t in range(D):
        tables = exact_tables(X, ws, uppers, G, p, t)
        for k in range(p + 1):
            sens = dd.moment_sensitivity(k, upper=uppers[t], R_w=1, prec=PREC)
            # node-major order: u[i D (p + 1) + t (p + 1) + k] is node i of tree (t, k)
            idx = [i * D * (p + 1) + t * (p + 1) + k for i in range(nodes)]
            z = tl.sample(u[idx], sens, eps_l, delta_l, prec=PREC)
            for i in range(nodes):
                noise[(t, k, i)] = z[i]
                assert abs(s.coordinates[t].trees[k].noisy[i] - tables[k][i] - z[i]) <= tol(tables[k][i])
        coef_t = dd.answer_coefficients(y[t], upper=uppers[t], grid_size=G, p=p, prec=PREC)
        noiseless += CTX.fsum(c * tables[k][i] for (k, i), c in coef_t.items())
    coef = s.error_coefficients(y)
    answer = s.query(y)
    assert abs(answer - noiseless - CTX.fsum(c * noise[key] for key, c in coef.items())) <= tol(answer, noiseless)
    exact = weighted_distance(X, ws, y, p=p, prec=PREC)
    slack = discretisation_error_bound(X, ws, y, upper=uppers, grid_size=G, prec=PREC) if p == 1 else 0
    assert abs(noiseless - exact) <= slack + tol(exact)
    bound = s.sure_error_bound(y)
    assert abs(answer - exact) <= bound + slack + tol(answer)
    # the sure bound is the sum of the coordinates' sure bounds (errors add up over coordinates)
    per = [s.coordinates[t].sure_error_bound(y[t]) for t in range(D)]
    assert abs(bound - CTX.fsum(per)) <= tol(bound)


@pytest.mark.parametrize("u0", [U_LOW, U_HIGH])
def test_extreme_uniforms_keep_errors_within_the_sure_bound(u0):
    rng = np.random.default_rng(5)
    n, D, G, p = 7, 3, 5, 2
    uppers = [Fraction(1), Fraction(3, 2), Fraction(1, 3)]
    X = [[Fraction(int(rng.integers(0, 31)), 30) * uppers[t] for t in range(D)] for _ in range(n)]
    ws = [Fraction(int(v), 4) for v in rng.integers(-4, 5, n)]
    s = DPTreeHighDim.build(X, ws, upper=uppers, R_w=1, p=p, eps=EPS, delta=DELTA, grid_size=G,
                            uniforms=np.full(noise_count(G, D, p), u0), prec=PREC)
    for _ in range(12):
        y = [Fraction(int(rng.integers(0, 41)), 40) * uppers[t] for t in range(D)]
        exact = weighted_distance(X, ws, y, p=p, prec=PREC)
        for form in dd.FORMS[p]:
            assert abs(s.query(y, form=form) - exact) <= s.sure_error_bound(y, form=form)


def test_coordinate_slices_equal_standalone_distance_structures():
    """Coordinate t of a DPTreeHighDim is exactly the DPTreeDistance built from its slice of the
    uniforms at the same level budget: the structure adds nothing but the budget split."""
    rng = np.random.default_rng(11)
    n, D, G, p = 5, 2, 4, 2
    X = rng.random((n, D))
    ws = rng.uniform(-1, 1, n)
    u = rng.random(noise_count(G, D, p)) * 0.999 + 0.0005
    s = DPTreeHighDim.build(X, ws, upper=1, R_w=1, p=p, eps=EPS, delta=DELTA, grid_size=G,
                            uniforms=u, prec=PREC)
    assert s.uppers == (1, 1) and coordinate_uppers(2, 3) == [2, 2, 2]
    for t in range(D):
        ut = coordinate_uniforms(u, grid_size=G, D=D, p=p, t=t)
        assert np.array_equal(ut, u.reshape(-1, D, p + 1)[:, t, :].ravel())
        alone = dd.DPTreeDistance._from_level_budget(
            [to_mpf(v, CTX) for v in X[:, t]], [to_mpf(v, CTX) for v in ws], upper=1, R_w=1, p=p,
            grid_size=G, level_budget=s.plan.share("tree_level"), uniforms=ut, prec=PREC)
        assert [tr.noisy for tr in alone.trees] == [tr.noisy for tr in s.coordinates[t].trees]
    y = [0.25, 0.75]
    assert s.query(y) == CTX.fsum(s.coordinates[t].query(y[t]) for t in range(D))


def test_hoeffding_bound_is_sqrt_d_times_smaller_growth():
    """Sure bound: sum of ranges (~ D x per coordinate); Hoeffding: sqrt(2 ln(2/f) sum r^2)."""
    n, G, p = 4, 4, 2
    X1 = [[Fraction(1, 5)], [Fraction(4, 5)], [Fraction(1, 2)], [Fraction(0)]]
    ws = [Fraction(1), Fraction(-1, 2), Fraction(1, 3), Fraction(1)]
    y = [Fraction(3, 5)]
    bounds = {}
    for D in (1, 4):
        X = [row * D for row in X1]
        s = DPTreeHighDim.build(X, ws, upper=1, R_w=1, p=p, eps=EPS, delta=DELTA, grid_size=G,
                                uniforms=np.full(noise_count(G, D, p), 0.3), prec=PREC)
        ranges = s.noise_ranges(y * D)
        hoef = s.hoeffding_error_bound(y * D, failure=Fraction(1, 10**3))
        assert hoef == hoeffding_bound(ranges, Fraction(1, 10**3))
        assert abs(hoef**2 - 2 * CTX.log(2000) * CTX.fsum(r * r for r in ranges)) <= tol(hoef**2)
        bounds[D] = (s.sure_error_bound(y * D), hoef)
    # same per-coordinate nodes; per-coordinate A grows ~D (budget eps/D): sure ~D^2, Hoeffding ~D^1.5
    sure_ratio = bounds[4][0] / bounds[1][0]
    hoef_ratio = bounds[4][1] / bounds[1][1]
    assert 4 * 4 * 0.9 < sure_ratio <= 4 * 4 * 1.3 and abs(hoef_ratio / sure_ratio - 0.5) < 1e-30


@given(st.data())
def test_replacing_one_row_moves_every_coordinate_level_by_at_most_its_sensitivity(data):
    """Replace one row (corners of the box): every (coordinate, moment, level) moves by at most
    2 R_w upper_t^k in l1, the figure of part A's analytic sensitivity.tree_level."""
    X, ws, uppers, G, _ = data.draw(datasets())
    D = len(uppers)
    i = data.draw(st.integers(0, len(X) - 1))
    X2, ws2 = [list(r) for r in X], list(ws)
    X2[i] = [data.draw(st.sampled_from([Fraction(0), uppers[t]])) for t in range(D)]
    ws2[i] = data.draw(st.sampled_from([Fraction(-1), Fraction(1)]))
    N = padded_size(G)
    for t in range(D):
        a, b = exact_tables(X, ws, uppers, G, 2, t), exact_tables(X2, ws2, uppers, G, 2, t)
        for k in range(3):
            sens = dd.moment_sensitivity(k, upper=uppers[t], R_w=1, prec=PREC)
            analytic = sensitivity.tree_level(uppers[t], k, 1, prec=PREC)
            assert abs(sens - analytic) <= tol(sens)
            for lvl in range(N.bit_length()):
                idx = range((1 << lvl) - 1, (2 << lvl) - 1)
                assert sum(abs(b[k][j] - a[k][j]) for j in idx) <= sens


def test_plan_and_validation():
    X = [[0.1, 0.2], [0.3, 0.9]]
    kw = dict(upper=1, R_w=1, p=2, eps=1, delta=Fraction(1, 100), generator=np.random.default_rng(0))
    s = DPTreeHighDim.build(X, [1, -1], **kw)
    assert s.plan.composition == "basic" and s.plan.total() == (1, Fraction(1, 100))
    assert s.noise_count(2, 2, 2) == (2 * 2 - 1) * 2 * 3
    assert s.plan.to_dict()["sizes"]["D"] == 2 and "seeded" in s.plan.randomness
    with pytest.raises(ShapeError, match="y must have D = 2 entries"):
        s.query([0.5])
    with pytest.raises(BoundError, match=r"y\[1\] must lie in \[0, upper_1\]"):
        s.query([0.5, 1.5])
    with pytest.raises(BoundError, match=r"X\[:, 1\] entries must lie in \[0, upper_1\]"):
        DPTreeHighDim.build([[0.1, 1.2]], [1], **kw)
    with pytest.raises(ShapeError, match="upper must be one bound or D = 2 bounds"):
        DPTreeHighDim.build(X, [1, -1], **{**kw, "upper": [1, 1, 1]})
    with pytest.raises(ShapeError, match="w must have one weight per row"):
        DPTreeHighDim.build(X, [1], **kw)
    with pytest.raises(ParameterError, match="composition must be one of"):
        DPTreeHighDim.build(X, [1, -1], **kw, composition="zcdp")
    with pytest.raises(ParameterError, match="delta_prime is required"):
        DPTreeHighDim.build(X, [1, -1], **kw, composition="advanced")
    with pytest.raises(ParameterError, match="only for composition='advanced'"):
        DPTreeHighDim.build(X, [1, -1], **kw, delta_prime=1e-6)
    with pytest.raises(ParameterError, match="uniforms must have shape"):
        coordinate_uniforms(np.zeros(5), grid_size=2, D=2, p=2, t=0)
    assert plan_dptree_highdim(1, Fraction(1, 100), 2, D=2, p=2).share("tree_level") == s.plan.share("tree_level")


@pytest.mark.parametrize("D", [1, 3, 20])
def test_advanced_composition_budget(D):
    """Per-coordinate eps_t from the advanced composition theorem: D-fold composition of
    (eps_t, delta/D) is certified (eps, delta + delta'); eps_t is (almost) the largest such value;
    the trees use exactly eps_t / ((p + 1) L) per level."""
    eps, delta, delta_prime = Fraction(1), Fraction(1, 10**5), Fraction(1, 100)
    eps_t = coordinate_eps(eps, D, delta_prime, prec=PREC)
    assert isinstance(eps_t, Fraction) and 0 < eps_t < eps
    composed = advanced(D, eps_t, delta / D, delta_prime, prec=PREC)
    assert composed.eps <= 1 and composed.delta == delta + delta_prime
    assert advanced(D, eps_t * (1 + Fraction(1, 10**30)), delta / D, delta_prime, prec=PREC).eps > 1
    G, p = 4, 2
    X = [[Fraction(t + 1, D + 2) for t in range(D)], [Fraction(1, 2)] * D]
    s = DPTreeHighDim.build(X, [1, -1], upper=1, R_w=1, p=p, eps=eps, delta=delta, grid_size=G,
                            composition="advanced", delta_prime=delta_prime,
                            uniforms=np.full(noise_count(G, D, p), 0.6), prec=PREC)
    L = tree_levels(G)
    assert s.plan.share("tree_level") == (eps_t / ((p + 1) * L), delta / (D * (p + 1) * L))
    assert (s.plan.eps, s.plan.delta) == (eps, delta + delta_prime) and s.composition == "advanced"
    assert all(tr.eps_level == eps_t / ((p + 1) * L) for c in s.coordinates for tr in c.trees)
    basic = DPTreeHighDim.build(X, [1, -1], upper=1, R_w=1, p=p, eps=eps, delta=delta, grid_size=G,
                                uniforms=np.full(noise_count(G, D, p), 0.6), prec=PREC)
    y = [Fraction(1, 3)] * D
    # advanced beats basic only once D is large enough: sqrt(2 D ln(1/delta')) + ~D eps_t < D
    # (at delta' = 1e-2 already for D = 20; at delta' = 1e-6 only from D ~ 30 on)
    if D == 20:
        assert eps_t > eps / D and s.sure_error_bound(y) < basic.sure_error_bound(y)
    if D == 1:
        assert eps_t < eps / D and s.sure_error_bound(y) > basic.sure_error_bound(y)
