"""law="gaussian" for the ``tree`` mechanism (``proofs_notes/26-tree-gaussian.md``).

The l2 sensitivity of the whole tree release (``reference.sensitivity.tree_release_l2``) checked
against exact brute force over neighbouring corner pairs of the full released vector
(``reference.sensitivity.released_tree``): brute force <= bound everywhere, = bound at the
attaining pair when d_v R_w^2 >= 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from dpxattn.accounting import tree_levels
from dpxattn.reference import sensitivity
from dpxattn.reference._mp import DEFAULT_PREC, context

CTX = context(DEFAULT_PREC)


def _close(a, b, rel=1e-25):
    return abs(a - b) <= rel * max(abs(a), abs(b))


def _released(degree, R, G, copies, scale=None):
    return lambda K, V: sensitivity.released_tree(K, V, degree=degree, R=R, grid_size=G,
                                                  copies=copies, scale=scale)


def test_released_tree_is_the_noiseless_release_in_uniform_order():
    """released_tree equals the reference TreeRelease's released numbers at uniforms 1/2 (TLap
    noise zero up to the ppf's last-bit rounding), position by position in the uniform order."""
    from dpxattn.accounting import plan_tree
    from dpxattn.reference.dptree_softmax import (TreeRelease, node_noise_index,
                                                  scalar_noise_index, tree_noise_count)
    rng = np.random.default_rng(3)
    n, d, d_v, s, G, l = 5, 2, 2, 2, 3, 2
    K = [[CTX.mpf(float(x)) for x in row] for row in rng.uniform(0, 1, (n, d))]
    V = [[CTX.mpf(float(x)) for x in row] for row in rng.uniform(-1, 1, (n, d_v))]
    count = tree_noise_count(n=n, d=d, d_v=d_v, degree=s, copies=l, grid_size=G)
    plan = plan_tree(eps=1, delta=1e-6, n=n, d=d, d_v=d_v, degree=s, copies=l, grid_size=G)
    rel = TreeRelease.build(K, V, plan=plan, R=1, R_w=1, degree=s, copies=l, grid_size=G,
                            uniforms=np.full(count, 0.5))
    vec = sensitivity.released_tree(K, V, degree=s, R=1, grid_size=G, copies=l)
    assert len(vec) == count
    r = rel.r
    for c in range(l):
        for k in range(d_v + 1):
            sm = rel.softmax[c][k]
            assert abs(vec[scalar_noise_index(c, k, 0, d_v=d_v)] - sm.c0) < 1e-40
            assert abs(vec[scalar_noise_index(c, k, 1, d_v=d_v)] - sm.c1) < 1e-40
            for t in range(r):
                for m in range(3):
                    for i, node in enumerate(sm.coordinates[t].trees[m].noisy):
                        j = node_noise_index(i, c, k, t, m, d_v=d_v, r=r, copies=l)
                        assert abs(vec[j] - node) < 1e-40


def test_row_norm_bound_is_the_attained_norm_of_one_rows_contribution():
    """S_max = ||a(R 1_d)||^2: the released vector of one row (k = R 1, weight 1 in the
    denominator column only needs V = 0 there) has squared norm S_max per column."""
    d, s, G = 2, 2, 5
    S = sensitivity.tree_row_norm_sq_bound(d, s, 1, grid_size=G)
    # one row, value column 0 with v = 0: only the denominator column is nonzero
    vec = sensitivity.released_tree([[CTX.one] * d], [[CTX.zero]], degree=s, R=1, grid_size=G)
    assert _close(CTX.fsum(x * x for x in vec), S)
    L = tree_levels(G)
    assert L == 4


@pytest.mark.parametrize("d,d_v,s,R,R_w,G,copies", [
    (1, 1, 1, 1.0, 1.0, 2, 1),     # m = 1: attained
    (2, 1, 1, 1.0, 1.0, 3, 1),
    (2, 2, 1, 0.75, 1.0, 4, 2),    # copies: sqrt(2)
    (1, 2, 2, 1.0, 0.8, 3, 1),     # m = 1.28 >= 1
    (2, 1, 2, 1.0, 0.5, 2, 1),     # m = 0.25 < 1: upper bound only
    (1, 2, 1, 1.5, 0.4, 3, 1),     # m = 0.32 < 1
])
def test_l2_sensitivity_against_exact_brute_force(d, d_v, s, R, R_w, G, copies):
    """Brute force over every pair of corner rows (and random interior pairs) of the whole
    released vector: <= the bound everywhere; = the bound at k = k' = R 1, v = -v' = R_w 1
    when d_v R_w^2 >= 1."""
    n = 3
    pairs = sensitivity.neighbouring_corner_pairs(n, d, d_v, R, R_w,
                                                  rng=np.random.default_rng(11), n_random=3)
    best, arg = sensitivity.max_change_brute_force(_released(s, R, G, copies), pairs, norm="l2")
    bound = sensitivity.tree_release_l2(d, s, R, R_w, d_v, grid_size=G, copies=copies)
    assert best <= bound * (1 + CTX.mpf(2) ** -(DEFAULT_PREC - 8))
    if d_v * R_w * R_w >= 1:
        assert _close(best, bound)
        Rm = CTX.mpf(R)
        assert arg.K[0] == [Rm] * d == arg.K2[0]
        assert [abs(v) for v in arg.V[0]] == [CTX.mpf(R_w)] * d_v
        assert all(a == -b for a, b in zip(arg.V[0], arg.V2[0]))
    else:
        assert best < bound


def test_l2_bound_power_a_smaller_bound_is_exceeded():
    """Power: the brute force exceeds the bound with one level (or one copy) left out, so the
    test above would catch a formula that forgot the levels or the copies."""
    d, d_v, s, R, R_w, G = 1, 1, 1, 1.0, 1.0, 4
    pairs = sensitivity.neighbouring_corner_pairs(2, d, d_v, R, R_w)
    best, _ = sensitivity.max_change_brute_force(_released(s, R, G, 2), pairs, norm="l2")
    one_copy = sensitivity.tree_release_l2(d, s, R, R_w, d_v, grid_size=G, copies=1)
    fewer_levels = sensitivity.tree_release_l2(d, s, R, R_w, d_v, grid_size=G // 2, copies=2)
    assert best > one_copy * 1.1 and best > fewer_levels * 1.01
    assert _close(best, sensitivity.tree_release_l2(d, s, R, R_w, d_v, grid_size=G, copies=2))


def test_l2_bound_closed_form_and_against_l1():
    """The closed form at d = 2, s = 2, R = 1, scale 1/2 (M from the feature bounds), and the l2
    bound below the l1 sum of the per-component sensitivities."""
    from dpxattn.reference.kernel import feature_bounds
    d, s, d_v, G = 2, 2, 8, 4096
    M = feature_bounds(d, s, 1)
    sq = CTX.fsum(x * x for x in M)
    quad = CTX.fsum(x ** 4 for x in M)
    L = tree_levels(G)
    S = L * (len(M) + sq + quad) + 1 + sq * sq
    got = sensitivity.tree_release_l2(d, s, 1, 1, d_v, grid_size=G)
    assert _close(got, 2 * CTX.sqrt(d_v * S))
    assert _close(sq, 1 + 1 + CTX.mpf(1) / 2)  # T_2(scale d R^2 = 1) = 2.5
