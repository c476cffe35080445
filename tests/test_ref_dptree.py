"""Exact reference: DPTree (PAPER §3.1) and the building-block plans of dpxattn.accounting.

All checks are exact (at the working precision) or exhaustive over small trees; none is
statistical, so no alpha applies. Each checker is also shown to reject a deliberately wrong
variant (a wrong decomposition, a wrong level budget, a bound one node short).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpxattn.accounting import (padded_size, plan_dptree, plan_dptree_distance,
                                plan_dptree_highdim, tree_height, tree_levels)
from dpxattn.errors import BoundError, ParameterError, UniformsError
from dpxattn.reference import sensitivity
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import DEFAULT_PREC, context, to_mpf
from dpxattn.reference.dptree import (PAPER_FAILURE, DPTree, canonical_decomposition,
                                      certified_upper, chebyshev_error_bound, covering_nodes,
                                      exact_node_sums, hoeffding_error_bound, leaf_node,
                                      level_support_bound, level_variance, node_interval,
                                      node_level, noise_count, range_sum_from_nodes,
                                      sure_error_bound)

PREC = DEFAULT_PREC
CTX = context(PREC)
HI = context(PREC + 64)   # comparisons that must not round at the checked precision
U_LOW = 2.0**-54          # the smallest uniform the secure source can return
U_HIGH = 1.0 - 2.0**-53   # the largest float64 below 1


def as_fraction(x) -> Fraction:
    """An mpf (finite) as an exact Fraction."""
    sign, man, exp, _ = x._mpf_
    return (-1 if sign else 1) * Fraction(man) * Fraction(2) ** exp


def partition_problems(nodes, lo, hi, N) -> list[str]:
    """Why ``nodes`` is not the canonical decomposition of [lo, hi] (empty list: it is)."""
    problems = []
    covered = []
    for i in nodes:
        a, b = node_interval(i, N)
        covered.extend(range(a, b + 1))
        if a < lo or b > hi:
            problems.append(f"node {i} = [{a}, {b}] leaves [{lo}, {hi}]")
        if i:
            pa, pb = node_interval((i - 1) // 2, N)
            if lo <= pa and pb <= hi:
                problems.append(f"node {i} is not maximal (its parent lies inside)")
    if sorted(covered) != list(range(lo, hi + 1)):
        problems.append("the nodes do not partition the range")
    return problems


# ---------------------------------------------------------------------------------------------
# Geometry: levels, intervals, decomposition
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("N", [1, 2, 4, 8, 16, 32, 64])
def test_node_intervals_levels_and_each_leaf_in_exactly_L_nodes(N):
    h = N.bit_length() - 1
    L = h + 1
    per_level = {}
    for i in range(2 * N - 1):
        a, b = node_interval(i, N)
        lvl = node_level(i)
        assert b - a + 1 == N >> lvl
        per_level.setdefault(lvl, []).append((a, b))
        if i:  # a child lies inside its parent
            pa, pb = node_interval((i - 1) // 2, N)
            assert pa <= a and b <= pb
    for lvl, spans in per_level.items():  # each level partitions the leaves
        assert [x for a, b in sorted(spans) for x in range(a, b + 1)] == list(range(N))
    for g in range(N):
        brute = [i for i in range(2 * N - 1) if node_interval(i, N)[0] <= g <= node_interval(i, N)[1]]
        assert len(brute) == L
        assert tuple(brute) == covering_nodes(g, N)
        assert leaf_node(g, N) == brute[-1] and node_interval(brute[-1], N) == (g, g)


@pytest.mark.parametrize("N", [1, 2, 4, 8, 16, 32, 64])
def test_decomposition_exhaustive(N):
    """Every range of every small tree: partition, maximality, size <= max(1, 2h - 2), prefix."""
    h = N.bit_length() - 1
    worst = 0
    for lo in range(N):
        for hi in range(lo, N):
            nodes = canonical_decomposition(lo, hi, N)
            assert partition_problems(nodes, lo, hi, N) == []
            assert [node_interval(i, N)[0] for i in nodes] == sorted(node_interval(i, N)[0] for i in nodes)
            assert len(nodes) <= max(1, 2 * h - 2)
            worst = max(worst, len(nodes))
        prefix = canonical_decomposition(0, lo, N)
        assert len(prefix) == (1 if lo == N - 1 else bin(lo + 1).count("1"))
        assert len(prefix) <= max(1, h)
    assert worst == max(1, 2 * h - 2)  # the bound is attained


@given(st.integers(0, 22), st.data())
def test_decomposition_large_trees(h, data):
    N = 1 << h
    lo = data.draw(st.integers(0, N - 1))
    hi = data.draw(st.integers(lo, min(N - 1, lo + 5000)))
    nodes = canonical_decomposition(lo, hi, N)
    assert len(nodes) <= max(1, 2 * h - 2)
    # interval lengths add up and the nodes tile [lo, hi] left to right
    pos = lo
    for i in nodes:
        a, b = node_interval(i, N)
        assert a == pos
        pos = b + 1
        pa, pb = node_interval((i - 1) // 2, N) if i else (0, -1)
        assert not (i and lo <= pa and pb <= hi)
    assert pos == hi + 1


def test_partition_checker_rejects_wrong_decompositions():
    N = 8
    leaves_only = tuple(leaf_node(g, N) for g in range(1, 7))
    assert any("not maximal" in p for p in partition_problems(leaves_only, 1, 6, N))
    assert partition_problems((4, 5), 1, 6, N)  # [2,3] + [4,5]: misses leaves 1 and 6
    assert partition_problems((1, 5, 13), 0, 5, N)  # overshoots


def test_decomposition_rejects_bad_ranges():
    with pytest.raises(ParameterError, match="N must be a power of two"):
        canonical_decomposition(0, 1, 6)
    with pytest.raises(ParameterError, match="hi must be <= N - 1"):
        canonical_decomposition(0, 8, 8)
    with pytest.raises(ParameterError, match="lo must be <= hi"):
        canonical_decomposition(3, 2, 8)
    with pytest.raises(ParameterError, match="lo must be an integer >= 0"):
        canonical_decomposition(-1, 2, 8)


# ---------------------------------------------------------------------------------------------
# Exact (noise-free) sums: every range equals brute force
# ---------------------------------------------------------------------------------------------

exact_values = st.one_of(
    st.integers(-10**6, 10**6),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


@given(st.lists(exact_values, min_size=1, max_size=17))
def test_exact_node_sums_give_every_range_sum(values):
    nodes = exact_node_sums(values, prec=PREC)
    n, N = len(values), padded_size(len(values))
    assert len(nodes) == 2 * N - 1 == noise_count(n)
    exact = [Fraction(v) for v in values] + [Fraction(0)] * (N - n)
    for i, c in enumerate(nodes):  # every node holds its subtree sum, exactly
        a, b = node_interval(i, N)
        assert as_fraction(c) == sum(exact[a:b + 1], Fraction(0))
    for lo in range(n):
        for hi in range(lo, n):
            # the exact sum, rounded once to the working precision
            assert range_sum_from_nodes(nodes, lo, hi) == to_mpf(sum(exact[lo:hi + 1], Fraction(0)), CTX)


def test_wrong_node_sums_are_detected():
    nodes = exact_node_sums([1, 2, 3, 4], prec=PREC)
    wrong = list(nodes)
    wrong[1] += 1  # corrupt one internal node
    assert range_sum_from_nodes(wrong, 0, 1) != 3 and range_sum_from_nodes(wrong, 0, 0) == 1


# ---------------------------------------------------------------------------------------------
# The noisy structure: uniform order, error = signed sum of node noises, bounds
# ---------------------------------------------------------------------------------------------

def build_with(values, uniforms, *, sensitivity=1, eps=1, delta=Fraction(1, 10**6)):
    return DPTree.build(values, sensitivity=sensitivity, eps=eps, delta=delta,
                        uniforms=uniforms, prec=PREC)


def node_noises(uniforms, n, *, sensitivity=1, eps=1, delta=Fraction(1, 10**6)):
    eps_l, delta_l = plan_dptree(eps, delta, n).share("tree_level")
    return tl.sample(uniforms, sensitivity, eps_l, delta_l, prec=PREC)


@given(st.lists(st.integers(-50, 50), min_size=1, max_size=13), st.integers(0, 2**32 - 1))
def test_noisy_answers_minus_exact_are_the_signed_node_noise_sums(values, seed):
    n = len(values)
    u = np.random.default_rng(seed).random(noise_count(n)) * (1 - 2e-12) + 1e-12
    tree = build_with(values, u)
    noise = node_noises(u, n)
    exact = exact_node_sums(values, prec=PREC)
    # uniform order: node i (level order) gets ppf(u_i), at the level budget eps/L, delta/L
    for i in range(2 * tree.N - 1):
        assert abs(tree.noisy[i] - exact[i] - noise[i]) <= CTX.ldexp(1, 8 - PREC) * (abs(exact[i]) + 1)
    for lo in range(n):
        for hi in range(lo, n):
            err = tree.query(lo, hi) - sum(values[lo:hi + 1])
            coef = tree.error_coefficients(lo, hi)
            assert set(coef) == set(canonical_decomposition(lo, hi, tree.N)) and set(coef.values()) == {1}
            signed = CTX.fsum(c * noise[i] for i, c in coef.items())
            assert abs(err - signed) <= CTX.ldexp(1, 12 - PREC) * (sum(abs(v) for v in values) + 100)
            assert abs(err) <= tree.sure_error_bound(lo, hi)


@pytest.mark.parametrize("u0", [U_LOW, U_HIGH])
@pytest.mark.parametrize("n", [1, 2, 5, 8, 13])
def test_extreme_uniforms_stay_within_and_attain_the_sure_bound(u0, n):
    """All uniforms at an extreme: every node noise is ~ -A_L or ~ +A_L, same sign, so the error
    of each range is ~ |C| A_L: inside the sure bound, and within 1e-12 of it (tight). A bound one
    node short, or one computed at the whole tree's budget instead of eps/L, is exceeded."""
    values = [Fraction(k, 3) for k in range(n)]
    eps, delta = Fraction(1, 2), Fraction(1, 10**5)
    tree = build_with(values, np.full(noise_count(n), u0), eps=eps, delta=delta)
    A_L = level_support_bound(n=n, sensitivity=1, eps=eps, delta=delta, prec=PREC)
    A_whole = tl.support_bound(1, eps, delta, prec=PREC)
    assert A_whole < A_L or n == 1
    for lo in range(n):
        for hi in range(lo, n):
            err = tree.query(lo, hi) - CTX.mpf(sum(values[lo:hi + 1]).numerator) / sum(values[lo:hi + 1]).denominator
            size = len(tree.nodes(lo, hi))
            bound = tree.sure_error_bound(lo, hi)
            assert bound == sure_error_bound(lo, hi, n=n, sensitivity=1, eps=eps, delta=delta, prec=PREC)
            assert abs(err) <= bound
            assert abs(err) >= bound * (1 - HI.mpf(10) ** -9)
            assert (err > 0) == (u0 > 0.5)
            assert abs(err) > (size - 1) * A_L
            assert n == 1 or abs(err) > size * A_whole  # L = 1: the two budgets coincide


def test_build_is_reproducible_and_queries_are_bit_identical(rng):
    values = rng.integers(-9, 9, size=11)
    u = rng.random(noise_count(11)) * 0.98 + 0.01
    a, b = build_with(values, u), build_with(values, u.copy())
    assert a.noisy == b.noisy
    assert a.query(2, 9) == a.query(2, 9) == b.query(2, 9)
    s1 = DPTree.build(values, sensitivity=1, eps=1, delta=0.1, generator=np.random.default_rng(5))
    s2 = DPTree.build(values, sensitivity=1, eps=1, delta=0.1, generator=np.random.default_rng(5))
    assert s1.noisy == s2.noisy and "seeded" in s1.plan.randomness
    secure = DPTree.build(values, sensitivity=1, eps=1, delta=0.1)
    assert "CSPRNG" in secure.plan.randomness and secure.noisy != s1.noisy
    assert "given uniforms" in a.plan.randomness and f"{PREC} bits" in a.plan.numerics


def test_tree_keeps_only_noisy_nodes():
    tree = build_with([3, 1, 4, 1, 5], np.full(noise_count(5), 0.5 + 2.0**-30))
    assert set(tree.__slots__) == {"n", "N", "levels", "sensitivity", "eps_level", "delta_level",
                                   "prec", "noisy", "support_bound", "plan"}
    assert not hasattr(tree, "__dict__")
    assert len(tree.noisy) == 2 * tree.N - 1 == 15 and tree.levels == tree_levels(5) == 4


def test_level_budget_and_constants_come_from_the_plan():
    n, eps, delta = 6, Fraction(3, 4), Fraction(1, 1000)
    tree = build_with([0] * n, np.full(noise_count(n), 0.3), eps=eps, delta=delta)
    L = tree_levels(n)
    assert (tree.eps_level, tree.delta_level) == (eps / L, delta / L)
    exact_A = tl.support_bound(1, eps / L, delta / L, prec=PREC + 64)
    assert exact_A <= tree.support_bound <= exact_A * (1 + HI.ldexp(1, 4 - PREC))
    # A_L = (Delta L / eps) ln(1 + L (e^{eps/L} - 1) / (2 delta)) (PAPER §5 item 15)
    c = HI
    e, dl = to_mpf(eps, c), to_mpf(delta, c)
    closed = (L / e) * c.log(1 + L * c.expm1(e / L) / (2 * dl))
    assert abs(closed - exact_A) <= closed * c.ldexp(1, -PREC)
    var = level_variance(n=n, sensitivity=1, eps=eps, delta=delta, prec=PREC)
    assert var == tree.level_variance() and var < 2 * (L / e) ** 2


def test_paper_form_and_hoeffding_bounds():
    n, eps, delta = 13, Fraction(1), Fraction(1, 10**6)
    h = tree_height(n)
    sigma2 = level_variance(n=n, sensitivity=2, eps=eps, delta=delta, prec=PREC)
    A = level_support_bound(n=n, sensitivity=2, eps=eps, delta=delta, prec=PREC)
    tree = build_with(list(range(n)), np.full(noise_count(n), 0.7), sensitivity=2, eps=eps,
                      delta=delta)
    for lo, hi in [(0, 12), (1, 6), (3, 3), (1, 10)]:
        size = len(canonical_decomposition(lo, hi, padded_size(n)))
        cheb = chebyshev_error_bound(lo, hi, n=n, sensitivity=2, eps=eps, delta=delta, prec=PREC)
        assert cheb == tree.chebyshev_error_bound(lo, hi)
        # paper form: 10 sqrt(|C|) sigma_L at failure 0.01, <= 20 Delta (h+1) sqrt(h) / eps
        assert PAPER_FAILURE == Fraction(1, 100)
        assert abs(cheb - 10 * HI.sqrt(size * sigma2)) <= cheb * HI.ldexp(1, 4 - PREC)
        assert cheb <= 20 * 2 * (h + 1) * HI.sqrt(h) / to_mpf(eps, HI)
        hoef = hoeffding_error_bound(lo, hi, n=n, sensitivity=2, eps=eps, delta=delta,
                                     failure=Fraction(1, 10**6), prec=PREC)
        assert hoef == tree.hoeffding_error_bound(lo, hi, Fraction(1, 10**6))
        # 2 exp(-t^2 / (2 |C| A^2)) at t = hoef is <= the failure probability
        assert 2 * HI.exp(-HI.mpf(hoef) ** 2 / (2 * size * A**2)) <= HI.mpf(10) ** -6
        assert 2 * HI.exp(-(HI.mpf("0.999") * hoef) ** 2 / (2 * size * A**2)) > HI.mpf(10) ** -6
    with pytest.raises(ParameterError, match="failure must satisfy 0 < failure < 1"):
        chebyshev_error_bound(0, 1, n=n, sensitivity=1, eps=1, delta=0.1, failure=0)


def test_paper_log_three_halves_form_needs_h_at_least_one():
    """At n = 1 (h = 0) the paper's 20 Delta (h+1) sqrt(h)/eps is 0, below 10 sigma_L: the
    O(log^{3/2} n) shorthand needs sqrt(max(1, h)); recorded in proofs_notes/06-dptree.md."""
    cheb = chebyshev_error_bound(0, 0, n=1, sensitivity=1, eps=1, delta=Fraction(1, 10**6), prec=PREC)
    assert cheb > 0 == 20 * 1 * (0 + 1) * HI.sqrt(0) / 1


def test_certified_upper_is_above_the_high_precision_value():
    for args in [(1, 1, 1e-5), (2.5, 0.3, 1e-3), (3, 2, 0.4)]:
        up = certified_upper(tl.support_bound, *args, prec=64)
        ref = tl.support_bound(*args, prec=400)
        assert ref <= up <= ref * (1 + ref.context.ldexp(1, -60))
    assert certified_upper(tl.variance, 1, 1, 1e-5, prec=PREC) >= tl.variance(1, 1, 1e-5, prec=400)


# ---------------------------------------------------------------------------------------------
# Privacy of the levels: one entry changes -> each level's l1 change <= Delta
# ---------------------------------------------------------------------------------------------

@given(st.lists(st.integers(-20, 20), min_size=1, max_size=16), st.data())
def test_neighbouring_arrays_change_each_level_by_at_most_delta(values, data):
    """One entry changes by <= Delta: each level moves by <= Delta in l1, in one node (the
    analytic figure of sensitivity.fixed_index_level), and its noise uses <= delta/L."""
    Delta = 3
    assert sensitivity.fixed_index_level(Delta, prec=PREC) == Delta
    i = data.draw(st.integers(0, len(values) - 1))
    neighbour = list(values)
    neighbour[i] += data.draw(st.integers(-Delta, Delta))
    a = exact_node_sums(values, prec=PREC)
    b = exact_node_sums(neighbour, prec=PREC)
    N = padded_size(len(values))
    eps_l, delta_l = plan_dptree(1, Fraction(1, 10**6), len(values)).share("tree_level")
    for lvl in range(tree_levels(len(values))):
        shifts = [b[k] - a[k] for k in range((1 << lvl) - 1, (2 << lvl) - 1)]
        assert sum(abs(s) for s in shifts) == abs(neighbour[i] - values[i]) <= Delta
        assert [k for k, s in zip(range((1 << lvl) - 1, (2 << lvl) - 1), shifts) if s] in (
            [], [covering_nodes(i, N)[lvl]])
        # vector extension (PAPER §2.1): this level's noise is (eps/L, <= delta/L)-DP for the pair
        used = tl.vector_extension_delta(shifts, Delta, eps_l, delta_l, prec=PREC)
        assert used <= HI.mpf(delta_l.numerator) / delta_l.denominator * (1 + HI.ldexp(1, 8 - PREC))


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def test_build_and_query_validation():
    u = np.full(noise_count(3), 0.5)
    with pytest.raises(UniformsError, match="length noise_count = 7"):
        DPTree.build([1, 2, 3], sensitivity=1, eps=1, delta=0.1, uniforms=u[:5])
    with pytest.raises(UniformsError, match=r"strictly inside \(0, 1\)"):
        DPTree.build([1, 2, 3], sensitivity=1, eps=1, delta=0.1, uniforms=np.r_[u[:6], 1.0])
    with pytest.raises(ParameterError, match="exclusive"):
        DPTree.build([1, 2, 3], sensitivity=1, eps=1, delta=0.1, uniforms=u,
                     generator=np.random.default_rng(0))
    with pytest.raises(ParameterError, match="generator must be a numpy.random.Generator"):
        DPTree.build([1, 2, 3], sensitivity=1, eps=1, delta=0.1, generator=3)
    with pytest.raises(BoundError, match="values entries must be finite"):
        DPTree.build([1, float("nan"), 3], sensitivity=1, eps=1, delta=0.1, uniforms=u)
    with pytest.raises(ParameterError, match="sensitivity must be finite and > 0"):
        DPTree.build([1, 2, 3], sensitivity=0, eps=1, delta=0.1, uniforms=u)
    with pytest.raises(ParameterError, match="delta must satisfy"):
        DPTree.build([1, 2, 3], sensitivity=1, eps=1, delta=0.6, uniforms=u)
    tree = DPTree.build([1, 2, 3], sensitivity=1, eps=1, delta=0.1, uniforms=u)
    with pytest.raises(ParameterError, match="hi must be <= n - 1 = 2"):
        tree.query(0, 3)  # a padded leaf is not part of the array
    with pytest.raises(ParameterError, match="lo must be <= hi"):
        tree.query(2, 1)


# ---------------------------------------------------------------------------------------------
# The building-block plans (dpxattn.accounting additions)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 1000, 1025])
def test_plan_dptree_splits_over_exact_levels(n):
    eps, delta = 0.1, Fraction(1, 10**6)
    plan = plan_dptree(eps, delta, n)
    L = tree_levels(n)
    c = plan.component("tree_level")
    assert c.count == L and plan.share("tree_level") == (Fraction(eps) / L, delta / L)
    assert plan.total() == (Fraction(eps), delta) and plan.to_dict()["total_checks"]
    assert plan.sizes == {"n": n, "N": padded_size(n), "levels": L, "nodes": 2 * padded_size(n) - 1}


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("G", [1, 7, 64])
def test_plan_dptree_distance_moment_trees(p, G):
    plan = plan_dptree_distance(1, Fraction(1, 10**5), G, p=p)
    L = tree_levels(G)
    assert plan.component("tree_level").count == (p + 1) * L
    assert plan.share("tree_level") == (Fraction(1, (p + 1) * L), Fraction(1, 10**5 * (p + 1) * L))
    assert plan.total() == (1, Fraction(1, 10**5))
    with pytest.raises(ParameterError, match="p must be 1"):
        plan_dptree_distance(1, 0.1, G, p=3)


def test_plan_dptree_highdim_basic_and_advanced():
    G, D, p = 16, 5, 2
    L = tree_levels(G)
    basic = plan_dptree_highdim(2, Fraction(1, 1000), G, D=D, p=p)
    assert basic.share("tree_level") == (Fraction(2, D * 3 * L), Fraction(1, 1000 * D * 3 * L))
    assert basic.total() == (2, Fraction(1, 1000)) and basic.composition == "basic"
    adv = plan_dptree_highdim(2, Fraction(1, 1000), G, D=D, p=p, composition="advanced",
                              delta_prime=Fraction(1, 10**6), eps_coordinate=Fraction(1, 7))
    assert adv.share("tree_level") == (Fraction(1, 7 * 3 * L), Fraction(1, 1000 * D * 3 * L))
    assert (adv.eps, adv.delta) == (2, Fraction(1, 1000) + Fraction(1, 10**6))
    assert adv.composition == "advanced" and any("advanced composition" in s for s in adv.notes)
    with pytest.raises(ParameterError, match="required with composition='advanced'"):
        plan_dptree_highdim(2, 0.001, G, D=D, p=p, composition="advanced")
    with pytest.raises(ParameterError, match="only for composition='advanced'"):
        plan_dptree_highdim(2, 0.001, G, D=D, p=p, delta_prime=1e-6)
    with pytest.raises(ParameterError, match="eps_coordinate must be <= eps"):
        plan_dptree_highdim(2, 0.001, G, D=D, p=p, composition="advanced", delta_prime=1e-6,
                            eps_coordinate=3)
    with pytest.raises(ParameterError, match="composition must be one of"):
        plan_dptree_highdim(2, 0.001, G, D=D, p=p, composition="rdp")
    with pytest.raises(ParameterError, match="delta_prime must satisfy"):
        plan_dptree_highdim(2, 0.001, G, D=D, p=p, composition="advanced", delta_prime=1,
                            eps_coordinate=0.1)
