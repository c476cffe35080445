"""The truncated Taylor feature map P and its kernel error eps_s, exactly and certified.

Paper: polynomial-kernel approximation of exp(<q, k>/d), "Lemma I.5" in the ICLR 2025 numbering
(v2 App. I), imported from AS23 Lemma 3.4; spec PAPER.md §2.3 and App. B.
Proof note: ``proofs_notes/10-taylor-kernel.md``. Conventions (feature order, scale, M_alpha,
t_max): ``proofs_notes/01-conventions.md`` (Feature map).

* Multi-indices alpha, |alpha| <= s, in THE order: degree k = 0..s, within degree k the index
  multisets of ``itertools.combinations_with_replacement(range(d), k)`` (:func:`multi_indices`).
* ``P(x)_alpha = x^alpha sqrt(scale^|alpha| / alpha!)``, so ``<P(x), P(y)> = T_s(scale <x, y>)``
  with ``T_s(t) = sum_{j <= s} t^j / j!`` (:func:`taylor`); ``r = C(d + s, s)``.
* On ``[0, R]^d``: ``0 <= P(x)_alpha <= M_alpha = R^|alpha| sqrt(scale^|alpha| / alpha!)``
  (:func:`feature_bounds`) and ``||P(x)||^2 <= T_s(t_max)``, ``t_max = scale d R^2``.
* Relative kernel error on ``t in [0, t_max]`` (non-negative keys and queries):
  ``eps_s = sup_t (e^t - T_s(t))/e^t = 1 - e^{-t_max} T_s(t_max)`` (the sup is at t_max because
  ``d/dt [e^{-t} T_s(t)] = -e^{-t} t^s/s! <= 0``). Signed entries: ``t in [-t_max, t_max]`` and
  the sup of ``|1 - e^{-t} T_s(t)|`` is at one of the two ends.

``scale`` defaults to ``1/d`` (the paper's ``exp(Q K^T / d)``); it is held as an exact rational.
Every function takes ``prec=`` (bits). :func:`certified_eps_s` uses interval arithmetic and is
never below the true eps_s; :func:`eps_s_exact` is the value to working precision.
"""

from __future__ import annotations

import functools
import itertools
import math
from fractions import Fraction

from dpxattn.errors import ParameterError
from dpxattn.params import check_degree, check_positive, check_positive_int
from dpxattn.reference._mp import (context, interval_context, interval_upper, resolve_prec,
                                   rounded, to_fraction, to_mpf, to_vector)

__all__ = [
    "multi_indices",
    "index_multisets",
    "exponent_profile",
    "exponent_profiles",
    "default_scale",
    "features",
    "feature_bounds",
    "taylor",
    "taylor_series",
    "t_max",
    "eps_s_exact",
    "certified_eps_s",
    "certified_eps_s_logits",
    "lagrange_eps_s_bound",
    "select_degree",
    "feature_norm_sq_bound",
]

#: Largest degree :func:`select_degree` tries before giving up.
MAX_DEGREE = 400


@functools.lru_cache(maxsize=256)
def index_multisets(d: int, degree: int) -> tuple[tuple[int, ...], ...]:
    """The feature order as index multisets ``(i1 <= ... <= ik)``, k = 0..s (length r).

    Paper: Taylor feature map (v2 App. I); spec PAPER.md §2.3; DESIGN §4.
    Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    d = check_positive_int("d", d)
    s = check_degree(degree)
    return tuple(combo for k in range(s + 1)
                 for combo in itertools.combinations_with_replacement(range(d), k))


@functools.lru_cache(maxsize=256)
def multi_indices(d: int, degree: int) -> tuple[tuple[int, ...], ...]:
    """THE feature (monomial) order as exponent tuples alpha of length d; length C(d + s, s).

    Entry j is the monomial of ``index_multisets(d, degree)[j]``: alpha_i is the multiplicity
    of i. The fast path uses the same order (tested). Paper: Taylor feature map (v2 App. I); spec PAPER.md §2.3; DESIGN §4. Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    out = []
    for combo in index_multisets(d, degree):
        alpha = [0] * d
        for i in combo:
            alpha[i] += 1
        out.append(tuple(alpha))
    return tuple(out)


def default_scale(d: int) -> Fraction:
    """The paper's scale 1/d (``exp(Q K^T / d)``, PAPER §1.1), exactly.

    Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    return Fraction(1, check_positive_int("d", d))


def _scale_fraction(scale, d: int) -> Fraction:
    if scale is None:
        return default_scale(d)
    check_positive("scale", scale)
    return to_fraction(scale, "scale")


def exponent_profile(alpha) -> tuple[int, ...]:
    """The sorted nonzero exponents of a multi-index alpha (a partition of |alpha|).

    |alpha| and alpha! depend on alpha only through it, so the coefficient
    sqrt(scale^|alpha| / alpha!) and the bound M_alpha take one value per profile: 22 distinct
    profiles at |alpha| = 8 among the C(23, 8) = 490,314 monomials of degree 8 in d = 16.
    Callers compute each value once per profile (the same exact rational, the same rounding).
    Paper: Taylor feature map (v2 App. I); spec PAPER.md §2.3. Proof note:
    ``proofs_notes/10-taylor-kernel.md``.
    """
    return tuple(sorted(a for a in alpha if a))


@functools.lru_cache(maxsize=64)
def exponent_profiles(d: int, degree: int) -> tuple[tuple[int, ...], ...]:
    """:func:`exponent_profile` of every feature, in THE order of :func:`multi_indices`
    (cached: computed once per (d, degree)). Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    return tuple(exponent_profile(alpha) for alpha in multi_indices(d, degree))


@functools.lru_cache(maxsize=256)
def _coefficients(d: int, degree: int, scale: Fraction, prec: int) -> tuple:
    """sqrt(scale^|alpha| / alpha!) per feature, at ``prec`` bits (one rounding of an exact
    rational), computed once per :func:`exponent_profile`."""
    ctx = context(prec)
    wide = context(prec + 16)
    per_profile: dict = {}
    out = []
    for key in exponent_profiles(d, degree):
        c = per_profile.get(key)
        if c is None:
            q = scale ** sum(key) / math.prod(math.factorial(a) for a in key)
            c = per_profile[key] = ctx.mpf(ctx.sqrt(to_mpf(q, wide)))
        out.append(c)
    return tuple(out)


def _monomials(x: list, degree: int, ctx) -> list:
    """x^alpha in feature order, each by one multiplication from its parent multiset."""
    d = len(x)
    value = {(): ctx.one}
    out = []
    for combo in index_multisets(d, degree):
        if combo not in value:
            value[combo] = value[combo[:-1]] * x[combo[-1]]
        out.append(value[combo])
    return out


def features(x, degree: int, *, scale=None, prec=None) -> list:
    """P(x): the r = C(d + s, s) Taylor features of one vector x (length d), in THE order.

    ``<features(x), features(y)> = T_s(scale <x, y>)`` exactly (multinomial theorem), for any
    real x, y and any scale > 0. Returns a list of mpf of length r.
    Paper: feature map P of the polynomial-kernel lemma ("Lemma I.5", ICLR numbering; v2 App. I); spec PAPER.md §2.3. Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    prec = resolve_prec(prec)
    ctx = context(prec)
    s = check_degree(degree)
    xs = to_vector(x, ctx, "x")
    coefs = _coefficients(len(xs), s, _scale_fraction(scale, len(xs)), prec)
    return [c * m for c, m in zip(coefs, _monomials(xs, s, ctx))]


def feature_bounds(d: int, degree: int, R, *, scale=None, prec=None) -> list:
    """M_alpha = R^|alpha| sqrt(scale^|alpha| / alpha!): 0 <= P(x)_alpha <= M_alpha on [0, R]^d.

    (Also |P(x)_alpha| <= M_alpha on [-R, R]^d.) M_alpha = P(R 1_d)_alpha, so the bound is attained.
    Paper: per-coordinate feature bound (PAPER §2.3 and §5 item 11; v2 App. I).
    Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    d = check_positive_int("d", d)
    check_positive("R", R)
    # = features([R] * d): there every monomial of degree k is the same chain of k roundings
    # R * R * ... (see _monomials), so each value is computed once per exponent profile
    prec = resolve_prec(prec)
    ctx = context(prec)
    s = check_degree(degree)
    Rm = to_vector([R], ctx, "x")[0]
    powers = [ctx.one]
    for _ in range(s):
        powers.append(powers[-1] * Rm)
    coefs = _coefficients(d, s, _scale_fraction(scale, d), prec)
    per_profile: dict = {}
    out = []
    for c, key in zip(coefs, exponent_profiles(d, s)):
        v = per_profile.get(key)
        if v is None:
            v = per_profile[key] = c * powers[sum(key)]
        out.append(v)
    return out


def taylor(t, degree: int, *, prec=None):
    """T_s(t) = sum_{j=0}^{s} t^j / j! (the kernel: <P(x), P(y)> = T_s(scale <x, y>)).

    Paper: polynomial-kernel lemma (v2 App. I); spec PAPER.md §2.3.
    Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    ctx = context(prec)
    return taylor_series(ctx, to_mpf(t, ctx, "t"), check_degree(degree))


def taylor_series(ctx, t, s: int):
    """T_s(t) for an mpf t of ``ctx`` and an already validated degree s (no conversion).

    The loop behind :func:`taylor`, for callers that evaluate many kernels at once.
    Paper: PAPER §2.3 (v2 App. I). Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    total, term = ctx.one, ctx.one
    for j in range(1, s + 1):
        term = term * t / j
        total += term
    return total


def t_max(d: int, R, scale=None, *, prec=None):
    """t_max = scale d R^2: the largest scale <q, k> on [0, R]^d (R^2 for the paper's 1/d).

    Paper: logits <q,k>/d in [0, R^2] (PAPER §1.1, §2.3; v2 App. I).
    Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    d = check_positive_int("d", d)
    check_positive("R", R)
    ctx = context(prec)
    return to_mpf(_scale_fraction(scale, d) * d * to_fraction(R, "R") ** 2, ctx, "t_max")


def _tail_series(ctx, t, s: int):
    """sum_{j > s} t^j / j!, summed until the terms are below the working precision."""
    term = ctx.one
    for j in range(1, s + 2):
        term = term * t / j
    total = term
    j = s + 1
    eps = ctx.ldexp(1, -ctx.prec - 8)
    while True:
        j += 1
        term = term * t / j
        total += term
        if j > 2 * abs(t) + 2 and abs(term) <= eps * abs(total):
            return total


def _guard_bits(tau: float, s: int) -> int:
    """Bits lost to cancellation in the alternating tail at -tau (see the proof note)."""
    lost = 2 * tau / math.log(2) + (math.lgamma(s + 2) - (s + 1) * math.log(max(tau, 1e-300))) / math.log(2)
    return 32 + max(0, math.ceil(lost))


def eps_s_exact(R, degree: int, d: int, *, scale=None, signed: bool = False, prec=None):
    """eps_s = 1 - e^{-t_max} T_s(t_max): the exact relative error of the kernel on [0, R]^d.

    ``signed=True``: entries in [-R, R], t in [-t_max, t_max], eps_s = max of |1 - e^{-t} T_s(t)|
    at t = +-t_max. Computed to ``prec`` bits from the tail series (positive for t >= 0; at
    -t_max with enough guard bits for the alternating cancellation). Not a certified bound:
    use :func:`certified_eps_s` for anything a proof relies on.
    Paper: kernel relative error eps_s ("Lemma I.5", ICLR numbering; v2 App. I);
    spec PAPER.md §2.3, App. B. Proof note: ``proofs_notes/10-taylor-kernel.md`` (monotonicity).
    """
    prec = resolve_prec(prec)
    ctx = context(prec)
    s = check_degree(degree)
    t = t_max(d, R, scale, prec=prec)
    nonneg = ctx.exp(-t) * _tail_series(ctx, t, s)
    if not signed:
        return nonneg
    wide = context(prec + _guard_bits(float(t), s))
    tw = wide.convert(t)
    neg = abs(wide.exp(tw) * _tail_series(wide, -tw, s))
    return max(nonneg, rounded(neg, ctx))


def _iv_tail(iv, t, s: int):
    """Interval enclosure of sum_{j > s} t^j / j! for an interval t.

    Terms are summed until j > 2|t| + 2 and the last term is negligible; the rest is enclosed
    rigorously: after the term of index j, |sum_{i > j} t^i/i!| <= |t^j/j!| q/(1 - q') with
    q = |t|/(j + 1), q' = |t|/(j + 2) < 1/2 (geometric domination).
    """
    term = iv.mpf(1)
    for j in range(1, s + 2):
        term = term * t / j
    total = term
    j = s + 1
    tabs = iv.mpf(abs(t).b)  # a point interval: the largest |t|
    tiny = iv.ldexp(iv.mpf(1), -iv.prec - 8)
    while True:
        j += 1
        term = term * t / j
        total += term
        if j > 2 * float(tabs.b) + 2 and abs(term).b <= (tiny * abs(total)).a:
            break
    rem = abs(term) * (tabs / (j + 1)) / (1 - tabs / (j + 2))
    return total + iv.mpf([-rem.b, rem.b])


def certified_eps_s(R, degree: int, d: int, *, scale=None, signed: bool = False, prec=None):
    """An upper bound on eps_s, computed in interval arithmetic: NEVER below the true value.

    t_max = scale d R^2 is enclosed in an interval (scale, R exact rationals), the tail
    ``sum_{j>s} t^j/j!`` is enclosed with a rigorous remainder, and the result's upper endpoint
    is rounded up to ``prec`` bits. Signed: the max of the enclosures at +-t_max.
    Paper: eps_s of the polynomial-kernel lemma ("Lemma I.5", ICLR numbering; v2 App. I); spec PAPER.md §2.3. Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    prec = resolve_prec(prec)
    ctx = context(prec)
    s = check_degree(degree)
    d = check_positive_int("d", d)
    check_positive("R", R)
    tq = _scale_fraction(scale, d) * d * to_fraction(R, "R") ** 2  # exact rational t_max
    guard = _guard_bits(float(tq), s) if signed else 32
    iv = interval_context(prec + guard)
    t = iv.mpf(tq.numerator) / tq.denominator
    nonneg = iv.exp(-t) * _iv_tail(iv, t, s)
    upper = interval_upper(nonneg, ctx)
    if signed:
        neg = abs(iv.exp(t) * _iv_tail(iv, -t, s))
        upper = max(upper, interval_upper(neg, ctx))
    return upper


def certified_eps_s_logits(a, degree: int, *, signed: bool = True, prec=None):
    """An upper bound (interval arithmetic, never below the truth) on
    sup_{t in [-a, a]} |1 - e^{-t} T_s(t)|: the kernel's relative error for logits bounded by a
    in absolute value (``signed=False``: t in [0, a]).

    The sup is at an end: d/dt [e^{-t} T_s(t)] = -e^{-t} t^s/s!, so for even s e^{-t} T_s(t) is
    decreasing through 1 at t = 0, and for odd s it increases to 1 on t < 0 and decreases on
    t > 0; either way |1 - e^{-t} T_s(t)| grows with |t| on each side. Used by
    ``domain="ball"`` with a = scale R^2 (``proofs_notes/27-ball-domain.md``); on the box the
    same quantity at a = t_max is :func:`certified_eps_s`. ``a`` >= 0, exact rational.
    Paper: eps_s of the polynomial-kernel lemma (v2 App. I); spec PAPER.md §2.3.
    Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    prec = resolve_prec(prec)
    ctx = context(prec)
    s = check_degree(degree)
    tq = to_fraction(a, "a")
    if tq < 0:
        raise ParameterError("a", "must be >= 0", a)
    guard = _guard_bits(float(tq), s) if signed else 32
    iv = interval_context(prec + guard)
    t = iv.mpf(tq.numerator) / tq.denominator
    upper = interval_upper(iv.exp(-t) * _iv_tail(iv, t, s), ctx)
    if signed:
        upper = max(upper, interval_upper(abs(iv.exp(t) * _iv_tail(iv, -t, s)), ctx))
    return upper


def lagrange_eps_s_bound(R, degree: int, d: int, *, scale=None, signed: bool = False, prec=None):
    """The paper's bound: eps_s <= t_max^{s+1}/(s+1)! (times e^{t_max} for signed entries).

    (t_max = R^2 for the paper's scale 1/d.) From the Lagrange remainder; always >= eps_s
    (tested), often much larger. Paper: PAPER §2.3 (Lagrange remainder; v2 App. I). Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    ctx = context(prec)
    s = check_degree(degree)
    t = t_max(d, R, scale, prec=prec)
    bound = t ** (s + 1) / ctx.factorial(s + 1)
    return bound * ctx.exp(t) if signed else bound


def select_degree(eps_s_target, R, d: int, *, scale=None, signed: bool = False, prec=None,
                  max_degree: int = MAX_DEGREE) -> int:
    """The minimal degree s whose :func:`certified_eps_s` is <= ``eps_s_target``.

    Raises :class:`ParameterError` if no s <= ``max_degree`` reaches the target.
    Matches PAPER Appendix B's table (non-negative and signed) for the paper's scale 1/d.
    Paper: degree choice s of the polynomial-kernel lemma (v2 App. I);
    spec PAPER.md §2.3, App. B. Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    check_positive("eps_s_target", eps_s_target)
    max_degree = check_positive_int("max_degree", max_degree, minimum=0)
    ctx = context(prec)
    target = to_mpf(eps_s_target, ctx, "eps_s_target")
    for s in range(max_degree + 1):
        if certified_eps_s(R, s, d, scale=scale, signed=signed, prec=prec) <= target:
            return s
    raise ParameterError("eps_s_target", f"is not reached by any degree <= {max_degree}",
                         eps_s_target, hint="raise max_degree or lower R")


def feature_norm_sq_bound(d: int, degree: int, R, *, scale=None, prec=None):
    """T_s(t_max): ||P(x)||^2 = T_s(scale ||x||^2) <= T_s(t_max) on [0, R]^d (and [-R, R]^d).

    Attained at x = R 1_d. Used by the c1 sensitivity 2 R_w T_s(t_max).
    Paper: PAPER §2.3 (||P(x)||^2 <= T_s(R^2)); v2 App. I.
    Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    return taylor(t_max(d, R, scale, prec=prec), degree, prec=prec)
