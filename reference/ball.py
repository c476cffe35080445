"""The signed domain ``domain="ball"``: keys and queries with l2 norm <= R, every bound re-derived.

Not in the paper (its domain is [0, R]^d with scale 1/d, PAPER.md §1.1; signed entries are spec
§5 item 3; DESIGN §10, "Domains"). Proof note: ``proofs_notes/27-ball-domain.md``.
Conventions: the feature map P, its order and ``T_s`` are those of
:mod:`dpxattn.reference.kernel` (``<P(x), P(y)> = T_s(scale <x, y>)`` for every real x, y).

With ``B_R = {x in R^d : ||x||_2 <= R}`` and ``a = scale R^2`` (:func:`logit_bound`):

* logits: ``scale <q, k> in [-a, a]`` (Cauchy-Schwarz), whatever d;
* default scale 1 (:data:`DEFAULT_BALL_SCALE`): logits in [-R^2, R^2], the same width the box's
  1/d gives ([0, R^2]) and cosine-similarity attention at temperature 1 when R = 1;
* per-feature bound (tight, attained): ``|P(x)_alpha| <= M_alpha = c_alpha R^k
  prod_i (alpha_i / k)^(alpha_i / 2)``, ``k = |alpha|``, ``c_alpha = sqrt(scale^k / alpha!)``
  (:func:`ball_feature_bounds`);
* per-degree l1 bound ``sum_{|alpha| = k} |P(x)_alpha| <= B_k = min(sum_{|alpha|=k} M_alpha,
  sqrt(C(d + k - 1, k) scale^k / k!) R^k)`` (:func:`ball_degree_l1_bounds`; Cauchy-Schwarz,
  tight at k <= 1);
* ``||P(x)||_2^2 = T_s(scale ||x||^2) <= T_s(a)`` (:func:`ball_feature_norm_sq_bound`, attained on
  the sphere);
* every kernel value ``T_s(scale <q, k>) >= tau_s(a) = min_{[-a, a]} T_s`` (:func:`taylor_min_lower`,
  certified from below): positive for every a when s is even (T_s's minimum over R is
  ``t0^s / s! > 0`` at the one real root t0 of ``T_{s-1}``); for odd s, T_s is increasing and
  ``tau = T_s(-a)``, positive only while ``-a`` is above T_s's one real root, which is certified
  or the configuration is refused (:func:`ball_kernel_floor`);
* the denominator's public lower bound ``sum_j T_s(scale <q, k_j>) >= n tau``
  (:func:`ball_denominator_floor`);
* the kernel error for logits in [-a, a]: :func:`dpxattn.reference.kernel.certified_eps_s_logits`.

Validation (:func:`check_ball_rows`): a row of squared norm > R^2, decided **exactly** (rational
arithmetic), raises :class:`dpxattn.errors.BoundError` naming the bound; with ``clip=True`` it is
projected radially onto the ball (a per-record map, so DP is kept).
"""

from __future__ import annotations

import math
from fractions import Fraction

from dpxattn.errors import BoundError, ParameterError
from dpxattn.params import check_degree, check_positive, check_positive_int
from dpxattn.reference._mp import (check_finite, context, interval_context, interval_lower,
                                   interval_upper, to_fraction, to_mpf)
from dpxattn.reference.kernel import multi_indices

__all__ = [
    "DEFAULT_BALL_SCALE",
    "ball_scale",
    "logit_bound",
    "ball_feature_bounds",
    "ball_degree_l1_bounds",
    "ball_feature_l1_bound",
    "ball_feature_norm_sq_bound",
    "taylor_min_lower",
    "ball_kernel_floor",
    "ball_denominator_floor",
    "check_ball_rows",
    "project_to_ball",
    "ball_plan_note",
]

#: the ball's default inverse temperature: logits scale <q, k> in [-R^2, R^2]
DEFAULT_BALL_SCALE = 1


def ball_scale(scale) -> Fraction:
    """The scale of a ball structure as an exact rational: ``scale`` (> 0) or, for None,
    :data:`DEFAULT_BALL_SCALE`. Proof note ``proofs_notes/27-ball-domain.md`` (default scale).
    Paper: none (the paper's 1/d is for [0, R]^d, PAPER.md §1.1)."""
    if scale is None:
        return Fraction(DEFAULT_BALL_SCALE)
    check_positive("scale", scale)
    return to_fraction(scale, "scale")


def logit_bound(R, scale=None) -> Fraction:
    """a = scale R^2, exactly: |scale <q, k>| <= a for q, k in the ball of radius R.
    Paper: none (PAPER.md §1.1 gives [0, R^2] for the box). Proof note ``proofs_notes/27``."""
    check_positive("R", R)
    return ball_scale(scale) * to_fraction(R, "R") ** 2


def _sqrt_up(q: Fraction, ctx):
    """An mpf of ``ctx`` >= sqrt(q) (interval arithmetic, upper end rounded up)."""
    iv = interval_context(ctx.prec + 16)
    return interval_upper(iv.sqrt(iv.mpf(q.numerator) / q.denominator), ctx)


def _feature_bound_sq(alpha: tuple, scale: Fraction, R2: Fraction) -> Fraction:
    """M_alpha^2 = R^(2k) scale^k / alpha! prod_i (alpha_i / k)^alpha_i, exactly (k = |alpha|)."""
    k = sum(alpha)
    if k == 0:
        return Fraction(1)
    q = (R2 * scale) ** k / math.prod(math.factorial(a) for a in alpha)
    return q * Fraction(math.prod(a**a for a in alpha if a), k**k)


def ball_feature_bounds(d: int, degree: int, R, *, scale=None, prec=None) -> list:
    """M_alpha = sup_{||x|| <= R} |P(x)_alpha| = c_alpha R^k prod_i (alpha_i/k)^(alpha_i/2), in the
    feature order, each rounded up (mpf).

    sup of prod_i x_i^(2 alpha_i) under sum_i x_i^2 = R^2 is at x_i^2 = R^2 alpha_i / k (AM-GM);
    attained. Paper: none (the box's M_alpha is PAPER.md §2.3). Proof note ``proofs_notes/27``.
    """
    d = check_positive_int("d", d)
    s = check_degree(degree)
    ctx = context(prec)
    R2 = to_fraction(check_positive("R", R), "R") ** 2
    sc = ball_scale(scale)
    return [_sqrt_up(_feature_bound_sq(alpha, sc, R2), ctx) for alpha in multi_indices(d, s)]


def ball_degree_l1_bounds(d: int, degree: int, R, *, scale=None, prec=None) -> list:
    """B_k >= sup_{||x|| <= R} sum_{|alpha| = k} |P(x)_alpha| for k = 0..s (mpf, rounded up):
    ``min(sum_{|alpha|=k} M_alpha, sqrt(N_k scale^k / k!) R^k)``, N_k = C(d + k - 1, k).

    The second form: Cauchy-Schwarz, sum |P_alpha| <= sqrt(N_k) (sum P_alpha^2)^(1/2) and
    sum_{|alpha|=k} P(x)_alpha^2 = (scale ||x||^2)^k / k! (multinomial theorem). Tight at k = 0
    (B_0 = 1) and k = 1 (x = R 1/sqrt(d)); not tight in general for k >= 2 (the proof note gives
    the gap). Paper: none. Proof note ``proofs_notes/27-ball-domain.md``.
    """
    d = check_positive_int("d", d)
    s = check_degree(degree)
    ctx = context(prec)
    R2 = to_fraction(check_positive("R", R), "R") ** 2
    sc = ball_scale(scale)
    M = ball_feature_bounds(d, s, R, scale=scale, prec=ctx.prec)
    per = [ctx.zero] * (s + 1)
    for alpha, m in zip(multi_indices(d, s), M):
        per[sum(alpha)] = ctx.fadd(per[sum(alpha)], m, rounding="u")
    out = []
    for k in range(s + 1):
        cs = _sqrt_up(Fraction(math.comb(d + k - 1, k)) * (sc * R2) ** k / math.factorial(k), ctx)
        out.append(min(per[k], cs))
    return out


def ball_feature_l1_bound(d: int, degree: int, R, *, scale=None, prec=None):
    """L = sum_k B_k >= sup_{||x|| <= R} ||P(x)||_1 (mpf, rounded up; includes the constant
    feature 1). Sound, not tight for s >= 2. Paper: none. Proof note ``proofs_notes/27``."""
    ctx = context(prec)
    total = ctx.zero
    for b in ball_degree_l1_bounds(d, degree, R, scale=scale, prec=prec):
        total = ctx.fadd(total, b, rounding="u")
    return total


def _iv_taylor(iv, t, s: int):
    """Interval enclosure of T_s(t) = sum_{j <= s} t^j / j! (t an interval)."""
    total, term = iv.mpf(1), iv.mpf(1)
    for j in range(1, s + 1):
        term = term * t / j
        total = total + term
    return total


def _iv_point(iv, q: Fraction):
    return iv.mpf(q.numerator) / q.denominator


def _guard(a: Fraction) -> int:
    """Guard bits for the alternating sums at -a (terms up to ~e^a cancel to ~e^-a)."""
    return 32 + math.ceil(3 * float(a) / math.log(2))


def ball_feature_norm_sq_bound(degree: int, R, *, scale=None, prec=None):
    """T_s(a) >= ||P(x)||_2^2 = T_s(scale ||x||^2) for ||x|| <= R (T_s increasing on [0, inf));
    attained on the sphere. Rounded up. Paper: PAPER.md §2.3 (box form T_s(R^2)).
    Proof note ``proofs_notes/27-ball-domain.md``."""
    ctx = context(prec)
    s = check_degree(degree)
    a = logit_bound(R, scale)
    iv = interval_context(ctx.prec + 32)
    return interval_upper(_iv_taylor(iv, _iv_point(iv, a), s), ctx)


def taylor_min_lower(a, degree: int, *, prec=None):
    """A certified lower bound (mpf, rounded down) on tau_s(a) = min_{t in [-a, a]} T_s(t).

    T_s' = T_{s-1}. Odd s: T_{s-1} > 0 (even degree, no real root), T_s increasing, tau =
    T_s(-a) (enclosed; may be <= 0). Even s >= 2: T_{s-1} has one real root t0 < 0; if
    T_{s-1}(-a) >= 0 (certified) then t0 <= -a and tau = T_s(-a); otherwise tau >= the global
    minimum T_s(t0) = T_{s-1}(t0) + t0^s/s! = t0^s/s! >= hi^s/s! for a certified bracket
    t0 < hi < 0 (bisection with interval signs). s = 0: tau = 1. ``a`` >= 0 (exact rational).
    Paper: none (the box has tau = 1, PAPER.md §1.1). Proof note ``proofs_notes/27``.
    """
    s = check_degree(degree)
    aq = to_fraction(a, "a")
    if aq < 0:
        raise ParameterError("a", "must be >= 0", a)
    ctx = context(prec)
    if s == 0:
        return ctx.one
    iv = interval_context(ctx.prec + _guard(aq))
    at_minus_a = interval_lower(_iv_taylor(iv, _iv_point(iv, -aq), s), ctx)
    if s % 2 == 1:
        return at_minus_a
    slope = _iv_taylor(iv, _iv_point(iv, -aq), s - 1)
    if slope.a >= 0:
        return at_minus_a
    # bracket the root t0 of T_{s-1} in (lo, hi): T_{s-1}(lo) < 0 < T_{s-1}(hi), hi < 0
    lo, hi = -aq, Fraction(0)
    for _ in range(ctx.prec + 8):
        mid = (lo + hi) / 2
        val = _iv_taylor(iv, _iv_point(iv, mid), s - 1)
        if val.b < 0:
            lo = mid
        elif val.a > 0:
            hi = mid
        else:  # mid is within rounding of t0: a point slightly to the right is above it
            probe = mid + (hi - mid) / 2 ** (ctx.prec // 2)
            if _iv_taylor(iv, _iv_point(iv, probe), s - 1).a > 0:
                hi = probe
            break
    bound = interval_lower(_iv_point(iv, hi) ** s / math.factorial(s), ctx)
    return bound


def ball_kernel_floor(degree: int, R, *, scale=None, prec=None):
    """tau > 0 (mpf, certified from below): every kernel value T_s(scale <q, k>) on the ball is
    >= tau. Raises :class:`dpxattn.errors.ParameterError` naming the degree when tau cannot be
    certified positive (odd s with T_s(-a) <= 0): then the weights can be negative, the
    denominator has no positive public bound and the answer is no weighted average.
    Paper: none. Proof note ``proofs_notes/27-ball-domain.md``.
    """
    s = check_degree(degree)
    a = logit_bound(R, scale)
    tau = taylor_min_lower(a, s, prec=prec)
    if not tau > 0:
        raise ParameterError(
            "degree", f"must be even with domain='ball', or odd with T_s > 0 on [-scale R^2, "
            f"scale R^2] = [-{float(a):.6g}, {float(a):.6g}] (T_{s}(-{float(a):.6g}) = "
            f"{float(tau):.6g} <= 0: kernel weights can be negative)", s,
            hint="use an even degree, or a smaller scale R^2")
    return tau


def ball_denominator_floor(n: int, degree: int, R, *, scale=None, prec=None):
    """n tau (rounded down): the public lower bound of the Taylor denominator
    sum_j T_s(scale <q, k_j>) on the ball; the released denominator is clamped below by it.
    Paper: none (the box's bound is n, PAPER.md §1.1). Proof note ``proofs_notes/27``."""
    n = check_positive_int("n", n)
    ctx = context(prec)
    return ctx.fmul(n, ball_kernel_floor(degree, R, scale=scale, prec=prec), rounding="d")


# ---------------------------------------------------------------------------------------------
# validation and the radial projection (exact decisions)
# ---------------------------------------------------------------------------------------------

def _norm_sq(row) -> Fraction:
    return sum((to_fraction(v) ** 2 for v in row), Fraction(0))


def project_to_ball(row: list, R, ctx) -> list:
    """The radial projection of ``row`` (mpf of ``ctx``) onto the ball of radius R, rounded
    inward: ``x c`` with c <= R/||x|| and every product rounded toward zero, then shrunk by
    2^-(prec - 4) relative steps until the exact squared norm is <= R^2 (a per-record map).
    Rows already inside are returned unchanged. Paper: PAPER.md §5 item 19 (clipping).
    Proof note ``proofs_notes/27-ball-domain.md``."""
    from mpmath.libmp import mpf_sqrt

    R2 = to_fraction(R, "R") ** 2
    if _norm_sq(row) <= R2:
        return row
    nsq = ctx.fsum(v * v for v in row)
    root = ctx.make_mpf(mpf_sqrt(ctx.fmul(nsq, 1 + ctx.ldexp(1, 4 - ctx.prec),
                                          rounding="u")._mpf_, ctx.prec, "u"))
    c = ctx.fdiv(to_mpf(R, ctx, "R"), root, rounding="d")
    for _ in range(64):
        out = [ctx.fmul(v, c, rounding="d") for v in row]  # "d": toward zero
        if _norm_sq(out) <= R2:
            return out
        c = ctx.fmul(c, 1 - ctx.ldexp(1, 4 - ctx.prec), rounding="d")
    raise ArithmeticError("project_to_ball: the projection did not land inside the ball")


def check_ball_rows(rows: list, name: str, R, clip: bool = False, *, private: bool = False):
    """Every row of ``rows`` (lists of mpf) has l2 norm <= R, decided exactly; else
    :class:`BoundError` ``"{name} rows must have l2 norm <= R = ..."`` naming the first row (its
    norm too unless ``private``). NaN/inf always raise. ``clip=True``: rows outside are
    projected radially (:func:`project_to_ball`). Paper: PAPER.md §5 item 19; DESIGN §4.
    Proof note ``proofs_notes/27-ball-domain.md``."""
    check_finite(rows, name)
    R2 = to_fraction(check_positive("R", R), "R") ** 2
    out = []
    for i, row in enumerate(rows):
        nsq = _norm_sq(row)
        if nsq <= R2:
            out.append(row)
            continue
        if clip:
            out.append(project_to_ball(row, R, row[0].context))
            continue
        shown = "" if private else (f" (its norm is {math.sqrt(float(nsq))!r}; squared norm - "
                                    f"R^2 = {float(nsq - R2):.3g} > 0)")
        raise BoundError(f"{name} rows", f"must have l2 norm <= R = {float(to_fraction(R)):g} "
                         "(domain='ball')",
                         hint=f"row {i} is outside{shown}; pass clip=True to project rows "
                              "radially onto the ball")
    return out


def ball_plan_note(clip: bool) -> str:
    """The privacy plan's line for a ball structure (public: the domain and the clip mode, never
    whether a row was projected). Paper: none. Proof note ``proofs_notes/27-ball-domain.md``."""
    return ("domain: ball (keys and queries with l2 norm <= R, signed entries; every bound of "
            "proofs_notes/27-ball-domain.md; the component's sensitivity_value is the ball's, "
            "ball_direct_statistic or ball_direct_statistic_l2, whatever its formula text); "
            "rows outside "
            + ("are projected radially onto the ball (clip mode, a per-record map)" if clip
               else "raise"))
