"""Exact reference: noiseless softmax attention and Taylor attention (PAPER §1.1, §2.3).

Exact checks (to working precision) against independent computations; no alpha applies.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dpxattn.reference as ref
from dpxattn.errors import BoundError, ShapeError
from dpxattn.reference import kernel
from dpxattn.reference._mp import context
from dpxattn.reference.noiseless import attention, taylor_attention

CTX = context(160)


def test_names_are_exported_from_the_reference_package():
    assert ref.attention is attention and ref.taylor_attention is taylor_attention


def _numpy_attention(Q, K, V, scale):
    logits = scale * Q @ K.T
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (w @ V) / w.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("m,n,d,d_v", [(1, 1, 1, 1), (3, 5, 2, 4), (2, 7, 3, 1)])
def test_attention_matches_float64_softmax(rng, m, n, d, d_v):
    Q = rng.uniform(-2, 2, (m, d))
    K = rng.uniform(-2, 2, (n, d))
    V = rng.uniform(-1, 1, (n, d_v))
    out = attention(Q, K, V)
    assert len(out) == m and all(len(row) == d_v for row in out)
    np.testing.assert_allclose(np.array(out, dtype=float), _numpy_attention(Q, K, V, 1 / d),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.array(attention(Q, K, V, scale=0.37), dtype=float),
                               _numpy_attention(Q, K, V, 0.37), rtol=1e-12, atol=1e-14)


@settings(max_examples=20)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(0, 4), st.data())
def test_taylor_attention_is_the_feature_ratio(m, n, d, s, data):
    # (P(Q) P(K)^T V) / (P(Q) P(K)^T 1), through the explicit feature map
    ent = st.floats(0.0, 1.5)
    Q = [data.draw(st.lists(ent, min_size=d, max_size=d)) for _ in range(m)]
    K = [data.draw(st.lists(ent, min_size=d, max_size=d)) for _ in range(n)]
    V = [data.draw(st.lists(st.floats(-1, 1), min_size=2, max_size=2)) for _ in range(n)]
    out = taylor_attention(Q, K, V, degree=s)
    PK = [kernel.features(k, s) for k in K]
    for i, q in enumerate(Q):
        pq = kernel.features(q, s)
        w = [CTX.fdot(pq, pk) for pk in PK]
        for c in range(2):
            expect = CTX.fsum(wj * V[j][c] for j, wj in enumerate(w)) / CTX.fsum(w)
            assert abs(out[i][c] - expect) <= CTX.ldexp(1, -140)
        assert CTX.fsum(w) >= n * (1 - CTX.ldexp(1, -150))  # D_poly >= n on non-negative data


def test_taylor_attention_converges_to_attention(rng):
    Q = rng.uniform(0, 1, (2, 3))
    K = rng.uniform(0, 1, (6, 3))
    V = rng.uniform(-1, 1, (6, 2))
    exact = attention(Q, K, V)
    errs = []
    for s in (1, 3, 6, 12, 24):
        approx = taylor_attention(Q, K, V, degree=s)
        errs.append(max(abs(a - b) for ra, rb in zip(approx, exact) for a, b in zip(ra, rb)))
    assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:]))
    assert errs[-1] < CTX.ldexp(1, -80)


def test_exact_inputs_and_scale_conventions():
    Q = [[Fraction(1, 3), "0.5"]]
    K = np.array([[0.25, 1.0], [1.0, 0.0]])
    V = [[1], [-1]]
    a = attention(Q, K, V)
    assert a == attention(Q, K, V, scale=Fraction(1, 2))
    # hand computation: logits (1/12 + 1/4)/... with scale 1/2
    l1 = CTX.mpf(1) / 2 * (CTX.mpf(1) / 3 * CTX.mpf("0.25") + CTX.mpf("0.5"))
    l2 = CTX.mpf(1) / 2 * (CTX.mpf(1) / 3)
    expect = (CTX.exp(l1) - CTX.exp(l2)) / (CTX.exp(l1) + CTX.exp(l2))
    assert abs(a[0][0] - expect) <= CTX.ldexp(1, -150)
    # degree 0: the plain mean of the values
    assert taylor_attention(Q, K, V, degree=0) == [[0]]


def test_shapes_and_non_finite_inputs_are_refused():
    Q, K, V = np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((4, 2))
    with pytest.raises(ShapeError, match="Q must have as many columns as K"):
        attention(np.zeros((2, 2)), K, V)
    with pytest.raises(ShapeError, match="V must have as many rows as K"):
        taylor_attention(Q, K, np.zeros((3, 2)), degree=2)
    with pytest.raises(ShapeError, match="K must be a 2-D array"):
        attention(Q, np.zeros(3), V)
    bad = K.copy()
    bad[1, 2] = np.nan
    with pytest.raises(BoundError, match="K entries must be finite"):
        attention(Q, bad, V)


def test_nonpositive_taylor_denominator_is_refused():
    # signed entries, degree 1: T_1(-2) = -1 < 0
    with pytest.raises(BoundError, match="Taylor denominator must be > 0"):
        taylor_attention([[2.0]], [[-1.0]], [[1.0]], degree=1, scale=1)
    assert taylor_attention([[2.0]], [[-1.0]], [[1.0]], degree=2, scale=1) == [[1]]
