"""Exact reference: the ``direct`` mechanism (S = P(K)^T [V, 1] released once; PAPER §5 item 8).

Every check is exact (at the working precision); none is statistical. Each one that could pass
vacuously is paired with a deliberately wrong variant that it rejects.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from dpxattn.accounting import feature_dimension, plan_direct
from dpxattn.errors import UniformsError
from dpxattn.reference import kernel, sensitivity, taylor_attention
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import DEFAULT_PREC, context, to_matrix
from dpxattn.reference.direct import DirectRelease, direct_noise_count, noise_index

PREC = DEFAULT_PREC
CTX = context(PREC)
EPS, DELTA = Fraction(1), Fraction(1, 10**5)


def working_tol(scale=1):
    return CTX.ldexp(1, 24 - PREC) * (1 + abs(scale))


def data(rng, n, d, d_v, R=1, R_w=1):
    K = rng.uniform(0, R, (n, d))
    V = rng.uniform(-R_w, R_w, (n, d_v))
    return to_matrix(K, CTX, "K"), to_matrix(V, CTX, "V"), K, V


def build(K, V, u, degree, R=1, R_w=1, scale=None):
    return DirectRelease.build(K, V, eps=EPS, delta=DELTA, R=R, R_w=R_w, degree=degree,
                               scale=scale, uniforms=u, prec=PREC)


@pytest.mark.parametrize("Delta,eps,delta", [(3, 1, Fraction(1, 10**5)),
                                               (2, Fraction(1, 90), Fraction(1, 9 * 10**6)),
                                               (Fraction(7, 3), Fraction(1, 3), Fraction(1, 2))])
def test_ppf_at_one_half_is_zero_to_working_precision(Delta, eps, delta):
    """The median uniform gives a zero draw: the noise-free builds below rely on it.

    (tl.ppf evaluates ln(e^-a + 2 min(u, 1-u)(1 - e^-a)), which at u = 1/2 is ln(1) only up to
    one rounding, so the draw is 0 to within a few ulps of A, not always exactly 0.)
    """
    z = tl.ppf(0.5, Delta, eps, delta, prec=PREC)
    A = tl.support_bound(Delta, eps, delta, prec=PREC)
    assert abs(z) <= CTX.ldexp(A, 8 - PREC)
    assert abs(tl.ppf(0.5 + 2.0**-40, Delta, eps, delta, prec=PREC)) > CTX.ldexp(A, 8 - PREC)


@pytest.mark.parametrize("n,d,d_v,degree", [(1, 1, 1, 0), (3, 2, 2, 2), (5, 3, 1, 3)])
def test_noise_free_release_is_the_exact_statistic_and_answers_are_taylor(rng, n, d, d_v, degree):
    K, V, Kf, Vf = data(rng, n, d, d_v)
    count = direct_noise_count(d=d, d_v=d_v, degree=degree)
    assert count == feature_dimension(d, degree) * (d_v + 1)
    rel = build(K, V, np.full(count, 0.5), degree)
    exact = sensitivity.released_S(K, V, degree=degree, prec=PREC)
    flat = [x for row in rel.noisy for x in row]
    assert all(abs(a - b) <= working_tol(rel.support_bound) for a, b in zip(flat, exact))
    Q = rng.uniform(0, 1, (4, d))
    T = taylor_attention(Q, Kf, Vf, degree=degree, prec=PREC)
    for q, t_row in zip(to_matrix(Q, CTX, "Q"), T):
        got = rel.answer(rel.query_features(q))
        assert all(abs(a - b) <= working_tol() for a, b in zip(got, t_row))


def test_sensitivity_and_law_constants(rng):
    K, V, *_ = data(rng, 3, 2, 2)
    rel = build(K, V, np.full(direct_noise_count(d=2, d_v=2, degree=2), 0.5), 2, R=2, R_w=3)
    Delta = sensitivity.direct_statistic(2, 2, 2, 3, 2, prec=PREC)
    assert rel.sensitivity == Delta
    M = kernel.feature_bounds(2, 2, 2, prec=PREC)
    # the exact sup: 2 d_v R_w + max(2 d_v R_w, d_v R_w + 1) sum_{alpha != 0} M_alpha
    assert abs(Delta - (2 * 2 * 3 + 2 * 2 * 3 * CTX.fsum(M[1:]))) <= working_tol(Delta)
    eps_s, delta_s = plan_direct(eps=EPS, delta=DELTA, n=3, d=2, d_v=2, degree=2).share("S")
    assert (rel.eps, rel.delta) == (eps_s, delta_s) == (EPS, DELTA)
    A = tl.support_bound(Delta, EPS, DELTA, prec=PREC)
    assert A <= rel.support_bound <= A * (1 + CTX.ldexp(1, 4 - PREC))
    var = tl.variance(Delta, EPS, DELTA, prec=PREC)
    assert var <= rel.variance <= var * (1 + CTX.ldexp(1, 4 - PREC))


@pytest.mark.parametrize("d,d_v,degree", [(2, 2, 2), (1, 1, 3)])
def test_uniform_order_is_row_major_feature_index_major(rng, d, d_v, degree):
    """Perturbing uniform i moves exactly S~[i // (d_v + 1)][i % (d_v + 1)], by ppf(u_i)."""
    K, V, *_ = data(rng, 4, d, d_v)
    count = direct_noise_count(d=d, d_v=d_v, degree=degree)
    base = build(K, V, np.full(count, 0.5), degree)
    for i in sorted({0, 1, d_v, d_v + 1, count - 1, int(rng.integers(count))}):
        u = np.full(count, 0.5)
        u[i] = 0.875
        moved = build(K, V, u, degree)
        diffs = [(t, k) for t in range(base.r) for k in range(d_v + 1)
                 if moved.noisy[t][k] != base.noisy[t][k]]
        t, k = divmod(i, d_v + 1)
        assert diffs == [(t, k)] and noise_index(t, k, d_v) == i
        z = tl.ppf(0.875, base.sensitivity, EPS, DELTA, prec=PREC)
        assert abs(moved.noisy[t][k] - base.noisy[t][k] - z) <= working_tol(z)
        # a wrong order (column-major) would have moved another entry
        wrong = divmod(i, base.r)[::-1]
        assert wrong == (t, k) or wrong not in diffs


def test_error_is_the_stated_linear_combination_of_draws(rng):
    n, d, d_v, degree = 5, 2, 2, 2
    K, V, Kf, Vf = data(rng, n, d, d_v)
    count = direct_noise_count(d=d, d_v=d_v, degree=degree)
    u = rng.uniform(0.01, 0.99, count)
    rel = build(K, V, u, degree)
    z = tl.sample(u, rel.sensitivity, EPS, DELTA, prec=PREC)
    exact = sensitivity.released_S(K, V, degree=degree, prec=PREC)
    for q in to_matrix(rng.uniform(0, 1, (3, d)), CTX, "Q"):
        f = rel.query_features(q)
        nums = rel.numerators(f)
        for k in range(d_v + 1):
            coef = rel.error_coefficients(f, k)
            released = nums[k] if k < d_v else rel.raw_denominator(f)
            noiseless = CTX.fsum(f[t] * exact[noise_index(t, k, d_v)] for t in range(rel.r))
            err = CTX.fsum(c * z[i] for i, c in coef.items())
            assert abs(released - noiseless - err) <= working_tol(released)
            # power: the coefficients of a neighbouring column do not explain the error
            other = rel.error_coefficients(f, (k + 1) % (d_v + 1))
            assert abs(released - noiseless - CTX.fsum(c * z[i] for i, c in other.items())) > \
                working_tol(released)


def test_denominator_is_clamped_below_by_n(rng):
    K, V, *_ = data(rng, 3, 1, 1)
    count = direct_noise_count(d=1, d_v=1, degree=1)
    rel = build(K, V, np.full(count, 1e-12), 1)  # every draw near -A: raw denominator < 0
    f = rel.query_features([CTX.mpf(1)])
    assert rel.raw_denominator(f) < 0
    assert rel.denominator(f) == 3
    assert rel.error_terms(f)[0].released_denominator == 3


def test_wrong_uniform_count_is_refused(rng):
    K, V, *_ = data(rng, 2, 1, 1)
    count = direct_noise_count(d=1, d_v=1, degree=1)
    with pytest.raises(UniformsError, match=f"length noise_count = {count}"):
        build(K, V, np.full(count + 1, 0.5), 1)
