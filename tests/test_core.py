"""The shared core: parameter validation, uniforms, and the privacy plan."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from dpxattn.accounting import (feature_dimension, padded_size, plan_direct, plan_tree,
                                tree_height, tree_levels)
from dpxattn.errors import ParameterError, UniformsError
from dpxattn.params import check_degree, check_delta, check_eps, check_mechanism, check_positive
from dpxattn.randomness import check_uniforms, derive_seed, secure_uniforms, uniforms_from_words


@pytest.mark.parametrize("eps", [0, -1.0, float("nan"), float("inf"), "x", None, True])
def test_bad_eps_names_the_bound(eps):
    with pytest.raises(ParameterError, match=r"eps must"):
        check_eps(eps)


@pytest.mark.parametrize("delta", [0, -1e-9, 0.5000001, 1.0, float("nan"), Fraction(51, 100)])
def test_bad_delta_names_the_bound(delta):
    with pytest.raises(ParameterError, match=r"delta must satisfy 0 < delta <= 1/2"):
        check_delta(delta)


def test_good_parameters_pass_through_unchanged():
    assert check_delta(Fraction(1, 2)) == Fraction(1, 2)
    assert check_eps(Fraction(1, 3)) == Fraction(1, 3)
    assert check_degree(0) == 0
    with pytest.raises(ParameterError, match="degree"):
        check_degree(-1)
    with pytest.raises(ParameterError, match="degree"):
        check_degree(2.0)
    with pytest.raises(ParameterError, match="R must be finite and > 0"):
        check_positive("R", 0.0)
    with pytest.raises(ParameterError, match="mechanism"):
        check_mechanism("flat")
    assert issubclass(ParameterError, ValueError)


@pytest.mark.parametrize("n,h,L,N", [(1, 0, 1, 1), (2, 1, 2, 2), (3, 2, 3, 4), (4, 2, 3, 4),
                                     (5, 3, 4, 8), (1024, 10, 11, 1024), (1025, 11, 12, 2048)])
def test_tree_sizes(n, h, L, N):
    assert (tree_height(n), tree_levels(n), padded_size(n)) == (h, L, N)


def test_feature_dimension():
    assert feature_dimension(8, 3) == 165
    assert feature_dimension(4, 2) == 15
    assert feature_dimension(1, 0) == 1


def test_uniforms_strictly_inside():
    words = np.array([0, 2**64 - 1, 2**63], dtype=np.uint64)
    u = uniforms_from_words(words)
    assert u[0] == 2.0**-53 and u[2] == 0.5 + 2.0**-53
    assert u[1] == 1 - 2.0**-53 and u[1] < 1.0  # exactly representable, never rounded to 1
    w = np.array([0, 12345 << 12, 2**63], dtype=np.uint64)
    assert np.all(uniforms_from_words(w) + uniforms_from_words(~w) == 1.0)  # u and 1 - u
    many = uniforms_from_words(np.arange(2**64 - 4096, 2**64, 1, dtype=np.uint64))
    assert many.max() < 1.0
    s = secure_uniforms(1000)
    assert s.shape == (1000,) and np.all((s > 0) & (s < 1))


def test_generator_uniforms_reproducible_and_inside():
    from dpxattn.randomness import generator_uniforms
    a = generator_uniforms(np.random.default_rng(7), 5000)
    b = generator_uniforms(np.random.default_rng(7), 5000)
    assert np.array_equal(a, b) and np.all((a > 0) & (a < 1))


def test_check_uniforms():
    with pytest.raises(UniformsError, match="length"):
        check_uniforms(np.full(3, 0.5), 4)
    with pytest.raises(UniformsError, match=r"strictly inside \(0, 1\)"):
        check_uniforms(np.array([0.5, 1.0]), 2)
    with pytest.raises(UniformsError, match=r"strictly inside"):
        check_uniforms(np.array([0.5, np.nan]), 2)


def test_derive_seed_is_deterministic_and_keyed():
    assert derive_seed(1, "a") == derive_seed(1, "a")
    assert derive_seed(1, "a") != derive_seed(1, "b") != derive_seed(2, "a")


@pytest.mark.parametrize("eps,delta", [(1.0, 1e-5), (0.1, 1e-6), (Fraction(7, 3), Fraction(1, 10**9))])
def test_plans_compose_exactly_to_the_total(eps, delta):
    for plan in (plan_direct(eps=eps, delta=delta, n=100, d=4, d_v=3, degree=2),
                 plan_tree(eps=eps, delta=delta, n=100, d=4, d_v=3, degree=2, copies=3)):
        assert plan.total() == (Fraction(eps), Fraction(delta))
        assert plan.to_dict()["total_checks"] is True
        assert "replace one row" in str(plan)


def test_tree_plan_counts():
    plan = plan_tree(eps=1.0, delta=1e-5, n=100, d=4, d_v=3, degree=2, copies=2)
    r, L = 15, 8
    J = 2 * 4 * (3 * r + 2)
    assert plan.sizes["J"] == J and plan.sizes["levels"] == L
    assert plan.component("tree_level").count == 2 * 4 * 3 * r * L
    assert plan.share("tree_level") == (Fraction(1) / (J * L), Fraction(1e-5) / (J * L))
    assert math.isclose(float(plan.share("c0")[0]), 1 / J)
