"""Exact reference: the kernel part of the main theorem (PAPER §4.1) against the noiseless references.

Exact checks (to working precision) on random and corner inputs; no alpha applies. Power: the
same checks fail with a too-small eps_s, and the relative form fails for signed values.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpxattn.errors import BoundError, ParameterError
from dpxattn.reference import kernel
from dpxattn.reference import theorem_bounds as tb
from dpxattn.reference._mp import context
from dpxattn.reference.noiseless import attention, taylor_attention

CTX = context(160)
SLACK = CTX.ldexp(1, -130)


def _max_abs_diff(A, B):
    return [[abs(a - b) for a, b in zip(ra, rb)] for ra, rb in zip(A, B)]


def test_closed_forms():
    assert tb.kernel_relative_error(0.5) == 2
    assert tb.kernel_additive_error(0.25, 3) == 2
    with pytest.raises(ParameterError, match="eps_s must satisfy 0 <= eps_s < 1"):
        tb.kernel_relative_error(1)
    # eps/(1 - eps) = 1, sum |w| e = 2, N = 0, D = 2
    assert tb.ratio_lemma_bound([1, -1], [1, 1], 0.5) == 1
    # the paper shape: 1/n and 1/eps scaling, r^2 R^{2s} R_w
    v = tb.paper_additive_error_shape(100, 0.5, 2.0, 1.5, 2, 3, 0.1)
    assert v == pytest.approx(2.0**4 * 1.5 * 10**2 / (0.9 * 100 * 0.5))
    assert tb.paper_additive_error_shape(200, 0.5, 2.0, 1.5, 2, 3, 0.1) == pytest.approx(v / 2)


CORNERS = [
    # (Q, K, V): corners of the box, and a mixed case where the kernels differ most
    ([[1.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]], [[1.0], [-1.0]]),
    ([[1.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]], [[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]),
    ([[0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]], [[1.0], [-1.0]]),
]


@pytest.mark.parametrize("R", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("s", [1, 2, 4])
@pytest.mark.parametrize("case", range(len(CORNERS)))
def test_lemma_bound_holds_at_corners(R, s, case):
    Q, K, V = (np.array(M) * f for M, f in zip(CORNERS[case], (R, R, 1.0)))
    exact, taylor = attention(Q, K, V), taylor_attention(Q, K, V, degree=s)
    bounds = tb.kernel_error_bounds(Q, K, V, degree=s, R=R)
    eps_s = kernel.certified_eps_s(R, s, 2)
    add = tb.kernel_additive_error(eps_s, 1.0)
    for err_row, b_row in zip(_max_abs_diff(taylor, exact), bounds):
        for err, b in zip(err_row, b_row):
            assert err <= b + SLACK and b <= add + SLACK


@settings(max_examples=20)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 3), st.integers(0, 5),
       st.floats(0.25, 2.0), st.booleans(), st.data())
def test_lemma_additive_and_relative_bounds_on_random_inputs(m, n, d, s, R, nonneg_values, data):
    ent = st.floats(0.0, 1.0)
    Q = np.array([data.draw(st.lists(ent, min_size=d, max_size=d)) for _ in range(m)]) * R
    K = np.array([data.draw(st.lists(ent, min_size=d, max_size=d)) for _ in range(n)]) * R
    lo = 0.0 if nonneg_values else -1.0
    V = np.array([data.draw(st.lists(st.floats(lo, 1.0), min_size=2, max_size=2))
                  for _ in range(n)]) * 1.5
    eps_s = kernel.certified_eps_s(R, s, d)
    if eps_s >= 1:
        return
    exact, taylor = attention(Q, K, V), taylor_attention(Q, K, V, degree=s)
    bounds = tb.kernel_error_bounds(Q, K, V, degree=s, R=R)
    add = tb.kernel_additive_error(eps_s, 1.5)
    rel = tb.kernel_relative_error(eps_s)
    for i in range(m):
        for k in range(2):
            err = abs(taylor[i][k] - exact[i][k])
            assert err <= bounds[i][k] + SLACK
            assert bounds[i][k] <= add + SLACK
            if nonneg_values:  # the relative form: only for non-negative values
                assert err <= rel * exact[i][k] + SLACK


@settings(max_examples=15)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 5), st.floats(0.25, 1.25), st.data())
def test_lemma_bound_with_signed_keys(n, d, s, R, data):
    ent = st.floats(-1.0, 1.0)
    Q = np.array([data.draw(st.lists(ent, min_size=d, max_size=d))]) * R
    K = np.array([data.draw(st.lists(ent, min_size=d, max_size=d)) for _ in range(n)]) * R
    V = np.array([[data.draw(st.floats(-1.0, 1.0))] for _ in range(n)])
    if kernel.certified_eps_s(R, s, d, signed=True) >= 1:
        return
    exact, taylor = attention(Q, K, V), taylor_attention(Q, K, V, degree=s)
    bound = tb.kernel_error_bounds(Q, K, V, degree=s, R=R, signed=True)[0][0]
    assert abs(taylor[0][0] - exact[0][0]) <= bound + SLACK
    if Q.min() < 0 or K.min() < 0:  # the non-negative bound refuses signed entries
        with pytest.raises(BoundError, match=r"entries must lie in \[0, R\]"):
            tb.kernel_error_bounds(Q, K, V, degree=s, R=R)


def _two_key_case(R, v1, v2):
    # one key at R 1_d (kernel e^{R^2}, largest Taylor error), one at 0 (kernel 1, no error)
    return np.array([[R, R]]), np.array([[R, R], [0.0, 0.0]]), np.array([[v1], [v2]])


@pytest.mark.parametrize("R,s", [(1.0, 2), (1.0, 4), (1.5, 5)])
def test_power_a_too_small_eps_s_is_caught(R, s):
    Q, K, V = _two_key_case(R, 1.0, -1.0)
    err = abs(taylor_attention(Q, K, V, degree=s)[0][0] - attention(Q, K, V)[0][0])
    eps_s = kernel.certified_eps_s(R, s, 2)
    e = [CTX.exp(CTX.mpf(R) ** 2), CTX.one]
    assert err <= tb.ratio_lemma_bound([1, -1], e, eps_s) + SLACK
    assert err > tb.ratio_lemma_bound([1, -1], e, eps_s / 20)  # a 20x too small eps_s fails


def test_relative_error_is_false_for_signed_values():
    # N = 0 exactly (v2 = -v1 e^{R^2}), so the exact output is 0 but the Taylor output is not:
    # no relative bound can hold; the additive one does.
    R, s = 1.0, 3
    t = CTX.exp(CTX.mpf(R) ** 2)
    Q, K, V = _two_key_case(R, 1 / t, -1)
    exact, taylor = attention(Q, K, V)[0][0], taylor_attention(Q, K, V, degree=s)[0][0]
    assert abs(exact) <= CTX.ldexp(1, -150)
    eps_s = kernel.certified_eps_s(R, s, 2)
    assert abs(taylor) > tb.kernel_relative_error(eps_s) * abs(exact) + CTX.ldexp(1, -100)
    assert abs(taylor - exact) <= tb.kernel_additive_error(eps_s, 1)


def test_eps_s_at_least_one_is_refused():
    with pytest.raises(ParameterError, match="certified eps_s >= 1"):
        tb.kernel_error_bounds([[2.0]], [[-2.0]], [[1.0]], degree=1, R=2.0, signed=True, scale=1)
