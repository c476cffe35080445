"""Optimal composition (reference/optimal_composition.py): exact small cases, dp-accounting as
the outside oracle, certified search. Proof note: proofs_notes/05-composition.md."""

from __future__ import annotations

import itertools
from fractions import Fraction

import mpmath
import pytest

from dpxattn.errors import ParameterError
from dpxattn.reference import optimal_composition as oc


def _brute_force_delta(k, eps0, delta0, E):
    """delta(E) of the k-fold product of the KOV15 dominating pair, by enumerating outcomes."""
    ctx = mpmath.MPContext()
    ctx.prec = 200
    e, d, E = ctx.mpf(eps0), ctx.mpf(delta0), ctx.mpf(E)
    p = (1 - d) * ctx.exp(e) / (1 + ctx.exp(e))
    q = (1 - d) / (1 + ctx.exp(e))
    P = (d, p, q, ctx.mpf(0))
    Q = (ctx.mpf(0), q, p, d)
    total = ctx.mpf(0)
    for outcome in itertools.product(range(4), repeat=k):
        pp = ctx.fprod(P[i] for i in outcome)
        qq = ctx.fprod(Q[i] for i in outcome)
        total += max(pp - ctx.exp(E) * qq, 0)
    return ctx, total


@pytest.mark.parametrize("k,eps0,delta0,E", [
    (1, 0.5, 0.0, 0.2), (1, 0.5, 1e-3, 0.7), (2, 0.3, 1e-4, 0.1), (3, 0.25, 1e-3, 0.25),
    (4, 0.2, 0.0, 0.0), (5, 0.1, 2e-3, 0.3),
])
def test_matches_brute_force_over_every_outcome(k, eps0, delta0, E):
    ctx, exact = _brute_force_delta(k, eps0, delta0, E)
    got = ctx.mpf(oc.homogeneous_delta(k, eps0, delta0, E))
    assert got >= exact * (1 - ctx.mpf(2) ** -150)            # never below the truth
    assert got <= exact * (1 + ctx.mpf(2) ** -40) + ctx.mpf(2) ** -150   # and tight


def test_a_wrong_formula_is_caught_by_the_brute_force():
    """Power of the check above: dropping the (1 - delta0)^k factor is detected."""
    k, eps0, delta0, E = 3, 0.25, 1e-2, 0.25
    ctx, exact = _brute_force_delta(k, eps0, delta0, E)
    rr = ctx.mpf(oc.homogeneous_delta(k, eps0, 0, E))
    wrong = 1 - (1 - ctx.mpf(delta0)) ** k + rr           # (1 - delta0)^k missing on rr
    assert abs(wrong - exact) > exact * 1e-4


@pytest.mark.parametrize("k,eps0,E", [(100, 0.02, 0.5), (13870, 1.6e-3, 1.0), (2000, 0.01, 1.0)])
def test_agrees_with_dp_accounting_pld(k, eps0, E):
    pld_mod = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution")
    from dp_accounting.pld.common import DifferentialPrivacyParameters

    delta0 = 1e-9
    pld = pld_mod.from_privacy_parameters(DifferentialPrivacyParameters(eps0, delta0),
                                          value_discretization_interval=1e-5)
    oracle = pld.self_compose(k).get_delta_for_epsilon(E)   # pessimistic: >= the true delta
    ours = float(oc.homogeneous_delta(k, eps0, delta0, E))
    assert ours <= oracle * (1 + 1e-9)
    assert ours >= oracle * 0.9     # the oracle's pessimistic discretisation costs a few %


def test_step_eps_is_certified_and_maximal():
    k, E, D = 13870, 1, Fraction(1, 10 ** 6)
    d0 = D / (2 * k)
    e0 = oc.homogeneous_step_eps(k, E, D, d0)
    assert oc.homogeneous_delta(k, e0, d0, E) <= mpmath.mpf(D.numerator) / D.denominator
    assert oc.homogeneous_delta(k, e0 * (1 + Fraction(1, 2 ** 10)), d0, E) > \
        mpmath.mpf(D.numerator) / D.denominator
    assert e0 > 20 * Fraction(E) / k            # far better than basic composition here


def test_step_eps_never_below_basic():
    # one component: the best is eps_total itself (delta(eps) = delta0 <= delta_total)
    assert oc.homogeneous_step_eps(1, 1, Fraction(1, 10 ** 6), Fraction(1, 10 ** 7)) == 1
    e0 = oc.homogeneous_step_eps(3, 1, Fraction(1, 10 ** 6), Fraction(1, 10 ** 7))
    assert e0 >= Fraction(1, 3)


@pytest.mark.parametrize("kwargs,name", [
    (dict(k=0, eps0=0.1, delta0=0, eps_total=1), "k"),
    (dict(k=2, eps0=0, delta0=0, eps_total=1), "eps"),
    (dict(k=2, eps0=0.1, delta0=1, eps_total=1), "delta0"),
    (dict(k=2, eps0=0.1, delta0=0, eps_total=-1), "eps_total"),
])
def test_homogeneous_delta_validates(kwargs, name):
    with pytest.raises(ParameterError, match=name):
        oc.homogeneous_delta(**kwargs)


def test_step_eps_refuses_atoms_above_the_target():
    with pytest.raises(ParameterError, match="k delta0 < delta_total"):
        oc.homogeneous_step_eps(10, 1, Fraction(1, 10 ** 6), Fraction(1, 10 ** 7))
