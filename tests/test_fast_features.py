"""dpxattn.fast.features: P(X) feature-major in THE monomial order (PAPER §2.3, conventions)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dpxattn.errors import ParameterError, ShapeError
from dpxattn.fast.features import (feature_bounds, feature_chunks, feature_plan, features,
                                   features_t, multi_indices)


def _numpy_features(X: np.ndarray, degree: int, scale: float) -> np.ndarray:
    """Plain float64 recomputation: P(x)_alpha = prod x^alpha * sqrt(scale^|alpha| / alpha!)."""
    d = X.shape[1]
    cols = []
    for k in range(degree + 1):
        for combo in itertools.combinations_with_replacement(range(d), k):
            alpha = np.bincount(np.array(combo, dtype=int), minlength=d) if combo else np.zeros(d, int)
            coef = math.sqrt(scale**k / math.prod(math.factorial(a) for a in alpha))
            cols.append(np.prod(X ** alpha, axis=1) * coef)
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("d,s", [(1, 0), (1, 4), (2, 3), (3, 4), (5, 2), (8, 3)])
def test_order_dimension_and_values(d, s, rng):
    alphas = multi_indices(d, s)
    assert len(alphas) == math.comb(d + s, s) == feature_plan(d, s).r
    expected = []
    for k in range(s + 1):
        for combo in itertools.combinations_with_replacement(range(d), k):
            expected.append(tuple(combo.count(i) for i in range(d)))
    assert list(alphas) == expected
    X = rng.random((37, d))
    got = features(torch.tensor(X), s).numpy()
    ref = _numpy_features(X, s, 1.0 / d)
    assert got.shape == (37, math.comb(d + s, s))
    np.testing.assert_allclose(got, ref, rtol=4 * (s + 2) * 2.0**-53, atol=0)


@pytest.mark.parametrize("scale", [None, 0.5, Fraction(1, 3), 2.0])
def test_kernel_identity_any_scale(scale, rng):
    d, s = 3, 4
    X = torch.tensor(rng.random((20, d)))
    Y = torch.tensor(rng.random((15, d)))
    sc = 1.0 / d if scale is None else float(scale)
    G = features(X, s, scale=scale) @ features(Y, s, scale=scale).T
    t = sc * (X @ Y.T)
    T = sum(t**j / math.factorial(j) for j in range(s + 1))
    torch.testing.assert_close(G, T, rtol=1e-14, atol=0)


@given(st.integers(1, 4), st.integers(0, 4),
       st.lists(st.floats(0, 2, allow_nan=False), min_size=8, max_size=8))
def test_kernel_identity_hypothesis(d, s, vals):
    x = torch.tensor(vals[:d], dtype=torch.float64).unsqueeze(0)
    y = torch.tensor(vals[4:4 + d], dtype=torch.float64).unsqueeze(0)
    lhs = float(features(x, s) @ features(y, s).T)
    t = float((x * y).sum()) / d
    rhs = sum(t**j / math.factorial(j) for j in range(s + 1))
    assert lhs == pytest.approx(rhs, rel=1e-13, abs=1e-300)


def test_bounds_hold_and_are_attained(rng):
    d, s, R = 3, 4, 1.7
    M = feature_bounds(d, s, R)
    X = torch.tensor(rng.random((200, d)) * R)
    assert bool((features(X, s) <= M * (1 + 1e-15)).all())
    corner = features(torch.full((1, d), R, dtype=torch.float64), s)[0]
    torch.testing.assert_close(corner, M, rtol=1e-15, atol=0)
    assert bool((features(X, s) >= 0).all())


def test_chunking_is_bit_identical_and_memory_is_per_chunk(rng):
    X = torch.tensor(rng.random((1000, 4)))
    full = features_t(X, 3)
    small = features_t(X, 3, rows=64)
    assert torch.equal(full, small)
    pieces = list((a, b, F.clone()) for a, b, F in feature_chunks(X, 3, rows=300))
    assert [(a, b) for a, b, _ in pieces] == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    assert torch.equal(torch.cat([F for _, _, F in pieces], dim=1), full)
    buffers = {F.data_ptr() for _, _, F in feature_chunks(X, 3, rows=300)}
    assert len(buffers) == 1  # one reused (r, rows) buffer: O(chunk * r) memory


def test_float32_and_out_argument(rng):
    X = torch.tensor(rng.random((50, 3)))
    f64 = features_t(X, 3)
    f32 = features_t(X.float(), 3)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), f64, rtol=1e-6, atol=0)
    out = torch.empty_like(f64)
    assert features_t(X, 3, out=out) is out and torch.equal(out, f64)
    with pytest.raises(ShapeError, match="out"):
        features_t(X, 3, out=torch.empty(3, 3, dtype=torch.float64))


def test_bad_inputs():
    with pytest.raises(ShapeError, match="X must have shape"):
        features_t(torch.zeros(3), 2)
    with pytest.raises(ParameterError, match="degree"):
        features_t(torch.zeros(3, 2, dtype=torch.float64), -1)
    with pytest.raises(ParameterError, match="X.dtype"):
        features_t(torch.zeros(3, 2, dtype=torch.int64), 2)
    with pytest.raises(ParameterError, match="scale must be finite and > 0"):
        feature_plan(2, 2, scale=0.0)


def test_autograd_path_is_identical_and_differentiable(rng):
    X = torch.tensor(rng.random((9, 3)))
    plain = features_t(X, 4)
    Xg = X.clone().requires_grad_(True)
    graded = features_t(Xg, 4)
    assert graded.grad_fn is not None and torch.equal(plain, graded.detach())
    assert torch.autograd.gradcheck(lambda x: features_t(x, 3), (X[:4].clone().requires_grad_(),))
    with torch.no_grad():
        assert features_t(Xg, 2).grad_fn is None


@pytest.mark.parametrize("d,s,scale", [(1, 4, None), (3, 3, None), (4, 2, Fraction(1, 2)), (2, 4, 0.3)])
def test_same_order_values_and_bounds_as_the_reference(d, s, scale, rng):
    from dpxattn.reference import kernel

    assert multi_indices.__wrapped__ is kernel.multi_indices  # one definition of the order
    X = rng.random((4, d)) * 1.5
    got = features(torch.tensor(X), s, scale=scale).numpy()
    for i in range(4):
        ref = np.array([float(v) for v in kernel.features(X[i].tolist(), s, scale=scale)])
        np.testing.assert_allclose(got[i], ref, rtol=4 * (s + 2) * 2.0**-53, atol=0)
    ref_M = np.array([float(v) for v in kernel.feature_bounds(d, s, 1.5, scale=scale)])
    np.testing.assert_allclose(feature_bounds(d, s, 1.5, scale=scale).numpy(), ref_M,
                               rtol=2.0**-52, atol=0)
