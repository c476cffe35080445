"""Sensitivities of ``direct``'s statistic S on the ball domain, and neighbours for brute force.

Adjacency: replace one row of (K, V), keys (old and new) in the ball ||k||_2 <= R, values in
[-R_w, R_w]^{d_v} (``proofs_notes/01-conventions.md``; DESIGN §10, "Domains"). The box
counterparts are :func:`dpxattn.reference.sensitivity.direct_statistic` and
:func:`~dpxattn.reference.sensitivity.direct_statistic_l2`; the bounds used are those of
:mod:`dpxattn.reference.ball`. Paper: none (our ``direct`` on our signed domain; PAPER.md §5
items 3 and 8). Proof note: ``proofs_notes/27-ball-domain.md`` ("Sensitivities").

Replacing (x, v) by (x', v') changes S by ``c e^T - a b^T`` with a = P(x), c = P(x'),
b = [v, 1], e = [v', 1]:

* l1 (:func:`ball_direct_statistic`): ``2 d_v R_w (1 + L') + D_1`` with ``L' = sum_{k >= 1} B_k``
  (the per-degree l1 bounds) and ``D_1 = sum_{k >= 1} min(2 B_k, sum_{|alpha| = k} w_alpha
  M_alpha)``, ``w_alpha = 1`` when every alpha_i is even (then P_alpha >= 0) and 2 otherwise:
  an upper bound (not attained in general; brute force sits below it);
* l2 (:func:`ball_direct_statistic_l2`): with m = d_v R_w^2, T = T_s(a), tau = min_{[-a, a]} T_s
  (> 0, required): ``2 R_w sqrt(d_v T)`` for m >= 1, ``sqrt(2 (m + 1) T - 2 (1 - m) tau)`` for
  m < 1; the exact sup for d >= 2 (attained), an upper bound for d = 1;
* floating point (:func:`ball_direct_statistic_float_error`): ``gamma_{n + s + 3} n
  (d_v R_w + 1) L`` with L the l1 bound of P on the ball.
"""

from __future__ import annotations

import itertools
import math

from dpxattn.params import check_degree, check_positive, check_positive_int
from dpxattn.reference._mp import context, resolve_prec, to_mpf
from dpxattn.reference.ball import (ball_degree_l1_bounds, ball_feature_bounds,
                                    ball_feature_l1_bound, ball_feature_norm_sq_bound,
                                    ball_kernel_floor, ball_scale, logit_bound, project_to_ball)
from dpxattn.reference.kernel import multi_indices
from dpxattn.reference.sensitivity import (NeighbourPair, row_pairs, direct_term_roundings,
                                           float64_sum_error_bound)

__all__ = [
    "ball_direct_statistic",
    "ball_direct_statistic_l2",
    "ball_direct_statistic_float_error",
    "ball_l2_worst_pair",
    "ball_neighbouring_pairs",
]


def ball_direct_statistic(d: int, degree: int, R, R_w, d_v: int, *, scale=None, prec=None):
    """An upper bound on sup ||S(X) - S(X')||_1 over ball neighbours (mpf, rounded up).

    Value columns: sum_alpha sum_k |a_alpha v_k - c_alpha v'_k| <= d_v R_w (||a||_1 + ||c||_1)
    <= 2 d_v R_w (1 + L') (the constant feature is 1). Ones column: sum_{alpha != 0}
    |a_alpha - c_alpha|, per degree k at most ||a_k||_1 + ||c_k||_1 <= 2 B_k and at most
    sum_{|alpha|=k} w_alpha M_alpha (|a - c| <= M_alpha when P_alpha >= 0, i.e. every alpha_i
    even; <= 2 M_alpha otherwise). Paper: none. Proof note ``proofs_notes/27-ball-domain.md``.
    """
    d_v = check_positive_int("d_v", d_v)
    s = check_degree(degree)
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    B = ball_degree_l1_bounds(d, s, R, scale=scale, prec=ctx.prec)
    M = ball_feature_bounds(d, s, R, scale=scale, prec=ctx.prec)
    weighted = [ctx.zero] * (s + 1)
    for alpha, m in zip(multi_indices(d, s), M):
        w = 1 if all(a % 2 == 0 for a in alpha) else 2
        weighted[sum(alpha)] = ctx.fadd(weighted[sum(alpha)], w * m, rounding="u")
    rest = ctx.zero
    ones = ctx.zero
    for k in range(1, s + 1):
        rest = ctx.fadd(rest, B[k], rounding="u")
        ones = ctx.fadd(ones, min(2 * B[k], weighted[k]), rounding="u")
    value = ctx.fmul(2 * d_v, ctx.fmul(Rw, 1 + rest, rounding="u"), rounding="u")
    return ctx.fadd(value, ones, rounding="u")


def ball_direct_statistic_l2(d: int, degree: int, R, R_w, d_v: int, *, scale=None, prec=None):
    """sup ||S(X) - S(X')||_F over ball neighbours (mpf, rounded up; exact sup for d >= 2).

    ||change||_F^2 = A |b|^2 + C |e|^2 - 2 p <b, e>, A = T_s(scale |x|^2), C = T_s(scale |x'|^2),
    p = <a, c> = T_s(scale <x, x'>) in [tau, T] (tau > 0: :func:`ball_kernel_floor`, which
    refuses odd degrees with T_s(-a) <= 0). Convex in (v, v'): max at a vertex, |v|^2 = |v'|^2 =
    m, <v, v'> = -m (p > 0): (m + 1)(A + C) - 2 (1 - m) p. m >= 1: increasing in A, C, p:
    4 m T at x = x', |x| = R, v = -v' = R_w 1. m < 1: <= 2 (m + 1) T - 2 (1 - m) tau, attained
    at |x| = |x'| = R with scale <x, x'> = argmin_{[-a, a]} T_s (possible when d >= 2;
    :func:`ball_l2_worst_pair`). T rounded up, tau down: the result is an upper bound.
    Paper: none (Balle & Wang 2018 calibration; PAPER.md §5 item 8). Proof note
    ``proofs_notes/27-ball-domain.md``.
    """
    d = check_positive_int("d", d)
    d_v = check_positive_int("d_v", d_v)
    s = check_degree(degree)
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    T = ball_feature_norm_sq_bound(s, R, scale=scale, prec=ctx.prec)
    tau = ball_kernel_floor(s, R, scale=scale, prec=ctx.prec)
    m = ctx.fmul(d_v, ctx.fmul(Rw, Rw, rounding="u"), rounding="u")
    if m >= 1:
        sq = ctx.fmul(4 * m, T, rounding="u")
    else:
        m_lo = ctx.fmul(d_v, ctx.fmul(Rw, Rw, rounding="d"), rounding="d")
        top = ctx.fmul(2 * (m + 1), T, rounding="u")
        sq = ctx.fsub(top, ctx.fmul(2 * (1 - m_lo), tau, rounding="d"), rounding="u")
    from mpmath.libmp import mpf_sqrt

    return ctx.make_mpf(mpf_sqrt(sq._mpf_, ctx.prec, "u"))


def ball_direct_statistic_float_error(n: int, d: int, degree: int, R, R_w, d_v: int, *,
                                      scale=None, prec=None):
    """gamma_{n + s + 3} n (d_v R_w + 1) L: a bound on sum over the r (d_v + 1) coordinates of
    |fl(S) - S| for the float64 S on the ball (each coordinate's error is <= gamma sum_i |term|,
    and sum over coordinates of |P_alpha(k_i) w| <= L (d_v R_w + 1) per key, L =
    :func:`dpxattn.reference.ball.ball_feature_l1_bound`). The box's form is
    :func:`dpxattn.reference.sensitivity.direct_statistic_float_error`.
    Paper: none (PAPER.md §5 item 18). Proof note ``proofs_notes/27-ball-domain.md``."""
    n = check_positive_int("n", n)
    d_v = check_positive_int("d_v", d_v)
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    L = ball_feature_l1_bound(d, degree, R, scale=scale, prec=ctx.prec)
    return float64_sum_error_bound(n, direct_term_roundings(degree),
                                   ctx.fmul(L, d_v * Rw + 1, rounding="u"), prec=ctx.prec)


def _argmin_logit(degree: int, R, scale, ctx):
    """t* in [-a, a] where T_s is smallest (to working precision; for the worst pair only)."""
    a = ctx.mpf(logit_bound(R, scale).numerator) / logit_bound(R, scale).denominator
    s = degree
    if s == 0:
        return a
    if s % 2 == 1:
        return -a

    def T(t, m):
        return ctx.fsum(t**j / ctx.factorial(j) for j in range(m + 1))
    if T(-a, s - 1) >= 0:
        return -a
    return ctx.findroot(lambda t: T(t, s - 1), (-a, ctx.zero), solver="bisect")


def ball_l2_worst_pair(n: int, d: int, d_v: int, degree: int, R, R_w, *, scale=None,
                       prec=None) -> NeighbourPair:
    """The neighbouring pair at which :func:`ball_direct_statistic_l2` is attained (d >= 2):
    |x| = |x'| = R (rounded inward), v = -v' = R_w 1, and x = x' when d_v R_w^2 >= 1, else
    scale <x, x'> = argmin_{[-a, a]} T_s. Other rows: 0 keys, 0 values.
    Paper: none. Proof note ``proofs_notes/27-ball-domain.md``."""
    ctx = context(resolve_prec(prec))
    Rm = to_mpf(R, ctx, "R")
    Rw = to_mpf(R_w, ctx, "R_w")
    x = [Rm] + [ctx.zero] * (d - 1)
    if d_v * Rw * Rw >= 1 or d == 1:
        x2 = list(x)
    else:
        t = _argmin_logit(degree, R, scale, ctx)
        sc = ball_scale(scale)
        cos = t / (ctx.mpf(sc.numerator) / sc.denominator) / (Rm * Rm)
        cos = max(min(cos, ctx.one), -ctx.one)
        x2 = [Rm * cos, Rm * ctx.sqrt(1 - cos * cos)] + [ctx.zero] * (d - 2)
        x2 = project_to_ball(x2, R, ctx)
    zeros_k = [[ctx.zero] * d for _ in range(n - 1)]
    zeros_v = [[ctx.zero] * d_v for _ in range(n - 1)]
    return NeighbourPair([x] + zeros_k, [[Rw] * d_v] + zeros_v,
                         [x2] + [list(r) for r in zeros_k], [[-Rw] * d_v] + zeros_v, 0,
                         "l2 worst pair")


def _candidate_keys(d: int, degree: int, R, ctx, limit: int) -> list:
    """Keys on (or inside) the ball: 0, +-R e_i, the sign patterns of R 1/sqrt(d) and, per
    multi-index alpha, the sign patterns of its maximiser x_i = R sqrt(alpha_i / |alpha|), all
    projected inward; deduplicated, at most ``limit`` (deterministic order)."""
    Rm = to_mpf(R, ctx, "R")
    out = [[ctx.zero] * d]
    for i in range(d):
        for sg in (1, -1):
            out.append([sg * Rm if j == i else ctx.zero for j in range(d)])
    shapes = [tuple([1] * d)] + [a for a in multi_indices(d, degree) if sum(a) > 0]
    for alpha in shapes:
        k = sum(alpha)
        base = [Rm * ctx.sqrt(ctx.mpf(a) / k) for a in alpha]
        support = [i for i in range(d) if alpha[i]]
        for signs in itertools.product((1, -1), repeat=min(len(support), 3)):
            x = list(base)
            for i, sg in zip(support, signs):
                x[i] = sg * x[i]
            out.append(project_to_ball(x, R, ctx))
    seen, uniq = set(), []
    for x in out:
        key = tuple(x)
        if key not in seen:
            seen.add(key)
            uniq.append(x)
    return uniq[:limit]


def ball_neighbouring_pairs(n: int, d: int, d_v: int, R, R_w, *, degree: int, rng=None,
                            n_random: int = 4, max_keys: int = 24, max_values: int = 4,
                            prec=None) -> list:
    """Neighbouring datasets for brute force on the ball: the changed row at structured keys
    (:func:`_candidate_keys`) x value corners, every unordered pair of distinct rows; the other
    n - 1 rows fixed (cycling through the rows). With a numpy ``rng``, also ``n_random`` pairs
    with uniform keys on the sphere or inside it and uniform values. Returns
    :class:`dpxattn.reference.sensitivity.NeighbourPair` s. Paper: replace-one-row adjacency
    (PAPER.md §1.3). Proof note ``proofs_notes/27-ball-domain.md``."""
    n = check_positive_int("n", n)
    d = check_positive_int("d", d)
    d_v = check_positive_int("d_v", d_v)
    check_positive("R", R)
    check_positive("R_w", R_w)
    ctx = context(resolve_prec(prec))
    Rwm = to_mpf(R_w, ctx, "R_w")
    keys = _candidate_keys(d, check_degree(degree), R, ctx, max_keys)
    vals = [list(v) for v in itertools.product((-Rwm, Rwm), repeat=d_v)][:max_values]
    vals = vals + [[Rwm if i % 2 else -Rwm for i in range(d_v)]]
    rows = [(k, v) for k in keys for v in vals]
    pairs = row_pairs(rows, n, "ball rows")
    if rng is not None:
        Rf = float(R)
        for t in range(check_positive_int("n_random", n_random, minimum=0)):
            def key():
                g = rng.standard_normal(d)
                g = g / max(math.sqrt(float((g * g).sum())), 1e-300)
                radius = Rf if rng.uniform() < 0.5 else Rf * rng.uniform()
                return project_to_ball([to_mpf(x * radius, ctx) for x in g], R, ctx)

            def val():
                return [to_mpf(x, ctx) * Rwm for x in rng.uniform(-1.0, 1.0, d_v)]
            Ks, Vs = [key() for _ in range(n)], [val() for _ in range(n)]
            j = int(rng.integers(0, n))
            K2, V2 = [list(r) for r in Ks], [list(r) for r in Vs]
            K2[j], V2[j] = key(), val()
            pairs.append(NeighbourPair(Ks, Vs, K2, V2, j, f"random ball pair {t}"))
    return pairs
