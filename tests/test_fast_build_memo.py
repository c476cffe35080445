"""The build path's memos (benchmark target S1, fixed overhead) hold public parameters only, are bounded,
key by type as well as value, never key on a mutable tensor, and never change a result or an
error. Deterministic tests (no statistics)."""

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

from dpxattn.accounting import plan_direct
from dpxattn.errors import ParameterError
from dpxattn.fast import cross_attention, features, noise, sensitivities, validation
from dpxattn.fast.directed import memo_safe
from dpxattn.fast.features import feature_bounds, feature_plan
from dpxattn.fast.noise import tlap_constants
from dpxattn.fast.validation import check_keys_values


def test_memo_safe_accepts_immutable_scalars_only():
    assert memo_safe(1, 1.0, Fraction(1, 3), None, np.float64(0.5), np.int64(3), mpmath.mpf(2))
    for bad in (torch.tensor(1.0), np.array(0.5), [1.0], "1", object()):
        assert not memo_safe(1.0, bad)


def test_a_tensor_parameter_is_never_memoised():
    s = torch.tensor(1.0)
    first = tlap_constants(s, 1.0, 1e-6)
    s.fill_(2.0)  # same object (same identity hash), new value
    second = tlap_constants(s, 1.0, 1e-6)
    assert second.sensitivity == 2.0 and first.sensitivity == 1.0
    R = torch.tensor(1.0)
    a = feature_bounds(2, 2, R)
    R.fill_(2.0)
    assert torch.equal(feature_bounds(2, 2, R), feature_bounds(2, 2, 2.0)) and not torch.equal(a, feature_bounds(2, 2, R))


def test_feature_bounds_are_a_fresh_tensor_every_call():
    a = feature_bounds(3, 2, 1.0)
    expect = a.clone()
    a.fill_(-1.0)  # a caller scribbling on its copy does not reach the memo
    assert torch.equal(feature_bounds(3, 2, 1.0), expect)
    assert feature_bounds(3, 2, 1.0, dtype=torch.float32).dtype == torch.float32


def test_memos_key_by_type_bool_is_not_one():
    K = torch.full((4, 2), 0.5, dtype=torch.float64)
    V = torch.zeros((4, 1), dtype=torch.float64)
    check_keys_values(K, V, R=1, R_w=1, clip=False)  # warms every memo with int 1
    with pytest.raises(ParameterError, match="bound must be a real number"):
        check_keys_values(K, V, R=True, R_w=1.0, clip=False)
    with pytest.raises(ParameterError, match="R_w must be a real number"):
        check_keys_values(K, V, R=1.0, R_w=True, clip=False)
    plan_direct(eps=1, delta=Fraction(1, 4), n=3, d=2, d_v=1, degree=1)
    with pytest.raises(ParameterError, match="eps"):
        plan_direct(eps=True, delta=Fraction(1, 4), n=3, d=2, d_v=1, degree=1)
    with pytest.raises(ParameterError, match="degree"):
        feature_plan(2, True)


def test_memoised_results_equal_fresh_ones():
    for sens, eps, delta in ((3.7, Fraction(1, 3), Fraction(1, 10**6)), (1, 2, 0.5),
                             (mpmath.mpf("0.1"), np.float64(0.5), 1e-9)):
        assert tlap_constants(sens, eps, delta) == noise._tlap_constants(sens, eps, delta)
    assert feature_plan(4, 3, 0.3) == features._feature_plan(4, 3, 0.3)
    assert torch.equal(feature_bounds(4, 3, 1.5, scale=0.3), features._bounds_tensor(4, 3, 1.5, 0.3))
    p = plan_direct(eps=0.1, delta=1e-6, n=3, d=2, d_v=1, degree=2)
    assert p.share("S") == (Fraction(0.1), Fraction(1e-6)) and p.eps == Fraction(0.1)
    assert sensitivities.direct_sensitivity(d=3, degree=2, R=1.0, R_w=0.5, d_v=2) == \
        sensitivities._direct_of(3, 2, 1.0, 0.5, 2, None)


def test_every_memo_is_bounded():
    memos = [noise._tlap_constants_memo, features._feature_plan_memo, features._bounds_memo,
             sensitivities._direct_memo, sensitivities._direct_secure_memo,
             validation._value_limits_memo, validation._limit_cached, cross_attention._float_up_memo,
             cross_attention._secure_note_text]
    for m in memos:
        assert m.cache_info().maxsize is not None and m.cache_info().maxsize <= 4096


def test_secure_note_memo_returns_the_same_text():
    g = torch.Generator().manual_seed(5)
    K = torch.rand((30, 3), generator=g, dtype=torch.float64)
    V = torch.rand((30, 2), generator=g, dtype=torch.float64) * 2 - 1
    kw = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0, degree=2, noise="secure")
    a = cross_attention.DPCrossAttention.build(K, V, generator=torch.Generator().manual_seed(1), **kw)
    cross_attention._secure_note_text.cache_clear()
    b = cross_attention.DPCrossAttention.build(K, V, generator=torch.Generator().manual_seed(1), **kw)
    assert str(a.privacy) == str(b.privacy) and torch.equal(a.release.S, b.release.S)
    params = a.release.law.constants
    (note,) = [x for x in a.privacy.notes if x.startswith("hardened release")]
    assert note == cross_attention._secure_note_text(params)
