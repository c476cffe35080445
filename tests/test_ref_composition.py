"""Exact reference: basic and advanced composition (PAPER §2.2), certified; plans add up.

Exact/certified checks; no alpha applies.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpxattn.accounting import plan_direct, plan_tree
from dpxattn.errors import ParameterError
from dpxattn.reference import composition as comp
from dpxattn.reference._mp import context, to_mpf

CTX = context(160)
HI = context(400)


def _advanced_hi(k, eps, dp):
    e = HI.mpf(eps)
    return HI.sqrt(2 * k * HI.log(1 / HI.mpf(dp))) * e + k * e * HI.expm1(e)


def test_basic_is_exact_and_validated():
    assert comp.basic([(0.1, 1e-6), (Fraction(1, 3), 0), (2, "1e-5")]) == (
        Fraction(0.1) + Fraction(1, 3) + 2, Fraction(1e-6) + Fraction(1, 10**5))
    for bad, name in (([(-1, 0)], "eps"), ([(1, 2)], "delta"), ([(1, float("nan"))], "delta"),
                      ([], "components"), ([(1,)], "components")):
        with pytest.raises(ParameterError, match=name):
            comp.basic(bad)


@pytest.mark.parametrize("mechanism", ["direct", "tree"])
@pytest.mark.parametrize("eps,delta", [(1, 1e-6), (Fraction(1, 3), Fraction(1, 10**5)), (0.1, 0.5)])
def test_basic_composition_of_a_plan_gives_back_its_total(mechanism, eps, delta):
    # the budget splits live in dpxattn.accounting; composing the shares must give the total
    if mechanism == "direct":
        plan = plan_direct(eps=eps, delta=delta, n=5, d=2, d_v=3, degree=2)
    else:
        plan = plan_tree(eps=eps, delta=delta, n=5, d=2, d_v=3, degree=2, copies=2)
    shares = [(c.eps, c.delta) for c in plan.components for _ in range(c.count)]
    assert comp.basic(shares) == (Fraction(eps), Fraction(delta))


@settings(max_examples=30)
@given(st.integers(1, 10**4), st.floats(1e-4, 3.0), st.floats(1e-12, 0.9))
def test_advanced_is_a_certified_upper_bound(k, eps, dp):
    res = comp.advanced(k, eps, Fraction(1, 10**7), dp)
    exact = _advanced_hi(k, eps, dp)
    assert res.eps >= exact
    assert res.eps - exact <= CTX.ldexp(exact, -150)
    assert res.delta == k * Fraction(1, 10**7) + Fraction(dp)


@settings(max_examples=20)
@given(st.integers(1, 10**4), st.floats(1e-3, 5.0), st.floats(1e-12, 0.9))
def test_advanced_step_eps_is_safe_and_maximal(k, target, dp):
    e = comp.advanced_step_eps(k, target, dp)
    t = to_mpf(target, CTX)
    assert comp.advanced(k, e, 0, dp).eps <= t  # certified safe
    # and maximal to ~2^-152: one part in 2^140 more already breaks the target
    assert _advanced_hi(k, HI.mpf(e) * (1 + HI.ldexp(1, -140)), dp) > HI.mpf(t)


def test_advanced_beats_basic_only_for_many_components():
    # per-step eps for a total eps = 1 over D coordinates (PAPER §3.3), delta' = 1e-6
    small = comp.advanced_step_eps(10, 1, 1e-6)
    large = comp.advanced_step_eps(10**4, 1, 1e-6)
    assert small < CTX.mpf(1) / 10  # basic eps/D wins at D = 10
    assert large > CTX.mpf(1) / 10**4  # advanced wins at D = 10^4


def test_dr14_corollary_holds_for_small_delta_prime_and_fails_for_large():
    for k in (1, 7, 1000):
        for dp in (1e-9, 1e-3, 0.3):
            e = comp.dr14_step_eps(k, 0.9, dp)
            assert comp.advanced(k, e, 0, dp).eps <= to_mpf(0.9, CTX)
            assert e <= comp.advanced_step_eps(k, 0.9, dp)  # the corollary is conservative
    # the corollary as stated (any delta' > 0) is false for delta' near 1: the check refuses
    with pytest.raises(ParameterError, match="delta_prime is too large for DR14 Cor 3.21"):
        comp.dr14_step_eps(1, 0.9, 0.9)
    with pytest.raises(ParameterError, match="eps_total must satisfy 0 < eps_total < 1"):
        comp.dr14_step_eps(3, 1, 1e-6)
    with pytest.raises(ParameterError, match="delta_prime"):
        comp.advanced(3, 1, 0, 0)
