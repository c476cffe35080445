"""The fast direct path's performance rewrites keep their semantics (benchmark targets G1, G10, G11).

* chunked input validation (``fast/validation.py``): across many chunks, the same first offending
  entry (row-major), NaN/inf taking precedence over out-of-bound entries wherever they are, the
  same clipping, and a tensor returned unchanged when valid;
* the gathered feature fill used by queries equals, bit for bit, the per-step fill the build
  uses (float64 and float32);
* the direct answer's written-in-place quotients equal the plain division (bit for bit) and the
  differentiable path still gives gradients.

Deterministic checks (no statistics); each would fail on the wrong variant named in it.
"""

from __future__ import annotations

import pytest
import torch

from dpxattn.errors import BoundError
from dpxattn.fast import validation
from dpxattn.fast.cross_attention import DPCrossAttention
from dpxattn.fast.features import feature_chunks, feature_plan, features_t


@pytest.fixture
def small_chunks(monkeypatch):
    """Validation chunks of 16 entries, so a (50, 3) tensor spans 10 chunks."""
    monkeypatch.setattr(validation, "VALIDATION_CHUNK_ELEMENTS", 16)


def _hint(exc_info) -> str:
    return str(exc_info.value)


@pytest.mark.parametrize("row", [0, 7, 49])
def test_first_out_of_bound_entry_named_across_chunks(small_chunks, row):
    X = torch.full((50, 3), 0.5, dtype=torch.float64)
    X[row, 2] = 1.5
    X[min(row + 5, 49), 0] = -1.0  # a later offender must not be the one named
    if row + 5 > 49:
        X[49, 0] = 0.5
    with pytest.raises(BoundError, match=r"Q entries must lie in \[0, R\] = \[0, 1\]") as info:
        validation.check_range(X, "Q", 0, 1, "[0, R]")
    assert f"entry ({row}, 2) is 1.5" in _hint(info)


def test_nan_in_a_later_chunk_takes_precedence(small_chunks):
    X = torch.full((50, 3), 0.5, dtype=torch.float64)
    X[2, 1] = 7.0  # out of bound, first chunk
    X[40, 0] = float("nan")  # not finite, a later chunk: this is the error
    with pytest.raises(BoundError, match="must be finite") as info:
        validation.check_range(X, "K", 0, 1, "[0, R]", private=True)
    assert "entry (40, 0) is not finite" in _hint(info)
    with pytest.raises(BoundError, match="must be finite"):
        validation.check_range(X, "K", 0, 1, "[0, R]", clip=True, private=True)


def test_inf_detected_in_any_chunk(small_chunks):
    X = torch.full((50, 3), 0.25, dtype=torch.float32)
    X[33, 2] = float("-inf")
    with pytest.raises(BoundError, match="must be finite") as info:
        validation.check_range(X, "Q", 0, 1, "[0, R]")
    assert "entry (33, 2)" in _hint(info)


def test_clip_and_valid_passthrough_across_chunks(small_chunks):
    g = torch.Generator().manual_seed(11)
    X = torch.rand((50, 3), generator=g, dtype=torch.float64) * 3.0 - 1.0
    clipped = validation.check_range(X, "V", -1, 1, "[-R_w, R_w]", clip=True)
    assert torch.equal(clipped, X.clamp(-1.0, 1.0))
    inside = X.clamp(0.0, 1.0)
    assert validation.check_range(inside, "Q", 0, 1, "[0, R]") is inside
    empty = torch.empty((0, 3), dtype=torch.float64)
    assert validation.check_range(empty, "Q", 0, 1, "[0, R]") is empty


def test_non_contiguous_input_names_logical_position(small_chunks):
    base = torch.full((3, 50), 0.5, dtype=torch.float64)
    base[1, 30] = 2.0
    X = base.t()  # (50, 3), non-contiguous
    with pytest.raises(BoundError) as info:
        validation.check_range(X, "Q", 0, 1, "[0, R]")
    assert "entry (30, 1) is 2.0" in _hint(info)


@pytest.mark.parametrize("d,degree", [(1, 1), (3, 2), (8, 3), (5, 4)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gathered_query_features_equal_build_features(d, degree, dtype):
    g = torch.Generator().manual_seed(d * 10 + degree)
    X = torch.rand((700, d), generator=g, dtype=torch.float64).to(dtype)
    stepwise = torch.cat([F.clone() for _, _, F in feature_chunks(X, degree, rows=128)], dim=1)
    gathered = features_t(X, degree, rows=256)
    assert torch.equal(gathered, stepwise)
    assert torch.equal(features_t(X, degree, plan=feature_plan(d, degree)), stepwise)


def test_features_plan_must_match():
    X = torch.rand((4, 3), dtype=torch.float64)
    with pytest.raises(ValueError, match="plan"):
        features_t(X, 2, plan=feature_plan(4, 2))


def test_direct_answer_matches_plain_division_and_keeps_gradients():
    g = torch.Generator().manual_seed(5)
    K = torch.rand((300, 4), generator=g, dtype=torch.float64)
    V = torch.rand((300, 2), generator=g, dtype=torch.float64) * 2 - 1
    att = DPCrossAttention.build(K, V, eps=1.0, delta=1e-5, R=1, R_w=1, degree=2,
                                 generator=torch.Generator().manual_seed(6))
    rel = att.release
    for dtype in (torch.float64, torch.float32):
        Q = torch.rand((33, 4), generator=g, dtype=torch.float64).to(dtype)
        ans, D = rel.answer(Q)
        NS = rel._S_as(dtype).t() @ features_t(Q, 2)
        plain_D = torch.clamp(NS[-1], min=float(rel.n))
        assert torch.equal(D, plain_D)
        assert torch.equal(ans, (NS[:-1] / plain_D).t())
        assert ans.is_contiguous() and ans.dtype == dtype
    Q = torch.rand((5, 4), generator=g, dtype=torch.float64).requires_grad_(True)
    out = att.query(Q)
    out.sum().backward()
    assert Q.grad is not None and torch.isfinite(Q.grad).all() and Q.grad.abs().sum() > 0
    assert torch.equal(out.detach(), att.query(Q.detach()))
