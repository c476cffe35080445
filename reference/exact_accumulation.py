"""Exact accumulation of the ``direct`` statistic: public lattices, integer sums, and the
sensitivity of the rounded statistic (n-independent).

Not in the paper (a numerics device; PAPER §5 items 8 and 18). Proof note:
``proofs_notes/30-exact-accumulation.md``.

The streaming build (:class:`dpxattn.fast.Accumulator`) rounds every row's features and values
to public fixed-point lattices before summing, and sums the products as integers, exactly:

* features: ``P~ = round(fl(P(k)) 2^a) 2^-a``, ``a = FEATURE_BITS - ceil(log2 M_max)``
  (:func:`lattice_exponents`), so |P~ 2^a| <= 2^FEATURE_BITS;
* values: ``W~ = round(W 2^b) 2^-b`` for W = [v, 1], ``b = VALUE_BITS - ceil(log2 max(R_w, 1))``;
* ``S~ = sum_i P~(k_i) W~_i^T``: an exact rational, computed exactly whatever the order, the
  chunking or the shards (integers; the fast path's float64 GEMMs of integers are exact,
  note 30).

S~ is a deterministic function of the data: its sensitivity is that of S plus, per row and per
entry (alpha, k), twice the largest difference between the rounded term and the exact one,
``e_(alpha,k) = (g M_alpha + 2^-(a+1)) (W_k + 2^-(b+1)) + M_alpha 2^-(b+1)`` (W_k = R_w for a
value column and 1, exactly representable, for the ones column, whose value rounding is 0;
g = gamma_{s+3} the float64 evaluation of one feature, note 17): :func:`term_error_bounds`,
:func:`rounded_statistic_sensitivity`. It does not grow with n. The release converts S~ to
float64 once (relative 2^-53 per entry): :func:`conversion_error` (n enters only there, at
2^-53 n; 1e-7 relative at n = 1e9).
"""

from __future__ import annotations

import math

from dpxattn.params import check_positive, check_positive_int
from dpxattn.reference._mp import context, to_mpf
from dpxattn.reference.sensitivity import direct_term_roundings, float64_gamma

__all__ = [
    "FEATURE_BITS",
    "VALUE_BITS",
    "CARRY_BITS",
    "GEMM_ROWS",
    "MAX_ROWS",
    "lattice_exponents",
    "term_error_bounds",
    "rounded_statistic_sensitivity",
    "conversion_error",
]

#: |rounded feature| <= 2^FEATURE_BITS lattice units (resolution 2^-21 of the largest bound)
FEATURE_BITS = 21
#: |rounded value| <= 2^VALUE_BITS lattice units (resolution 2^-20 of max(R_w, 1))
VALUE_BITS = 20
#: rows per exact float64 GEMM: every product of a rounded feature and a rounded value is an
#: integer below 2^(21 + 20) = 2^41 in magnitude, times 2^11 rows = 2^52 < 2^53, so every
#: partial sum is an integer below 2^53 and the GEMM is exact whatever its order
GEMM_ROWS = 1 << 11
#: the int64 state holds each sum as high 2^CARRY_BITS + low, 0 <= low < 2^CARRY_BITS
CARRY_BITS = 32
#: rows an accumulator can hold: |high| <= n 2^(41 - 32) stays far below 2^63 (and n below
#: 2^53 keeps every count exact in float64)
MAX_ROWS = 1 << 48


def lattice_exponents(M_max, R_w) -> tuple[int, int]:
    """(a, b): features on the lattice 2^-a with |P| 2^a <= 2^FEATURE_BITS for |P| <= M_max,
    values on 2^-b with |W| 2^b <= 2^VALUE_BITS for |W| <= max(R_w, 1). Public (bounds only).
    Paper: none (numerics, PAPER.md §5 item 18). Proof note: ``proofs_notes/30-exact-accumulation.md``."""
    check_positive("M_max", M_max)
    check_positive("R_w", R_w)
    a = FEATURE_BITS - math.ceil(math.log2(float(M_max)))
    b = VALUE_BITS - math.ceil(math.log2(max(float(R_w), 1.0)))
    # math.log2 of a float can be one off at exact powers of two: make the bound hold exactly
    while float(M_max) * 2.0 ** a > 2.0 ** FEATURE_BITS:
        a -= 1
    while max(float(R_w), 1.0) * 2.0 ** b > 2.0 ** VALUE_BITS:
        b -= 1
    return a, b


def term_error_bounds(M: list, R_w, d_v: int, degree: int, a: int, b: int, *, prec=None) -> list:
    """e[alpha][k] (mpf): a bound on |P~_alpha W~_k - P_alpha W_k| for one row (module
    docstring), alpha over the features with bounds ``M`` (list), k over the d_v value columns
    and the ones column (last). Paper: none (PAPER.md §5 item 18). Proof note:
    ``proofs_notes/30-exact-accumulation.md``."""
    ctx = context(prec)
    g = to_mpf(float64_gamma(direct_term_roundings(degree)), ctx, "gamma")
    return _row_error_bounds(M, R_w, d_v, g, a, b, ctx)


def _row_error_bounds(M: list, R_w, d_v: int, g, a: int, b: int, ctx) -> list:
    """e[alpha][k] = (g M_alpha + 2^-(a+1)) (R_w + 2^-(b+1)) + M_alpha 2^-(b+1) for the value
    columns and g M_alpha + 2^-(a+1) for the ones column (W = 1 exactly: no value rounding), g
    the features' relative evaluation error."""
    d_v = check_positive_int("d_v", d_v)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    fa = ctx.ldexp(1, -(a + 1))
    fb = ctx.ldexp(1, -(b + 1))
    out = []
    for m in M:
        m = to_mpf(m, ctx, "M")
        feat = g * m + fa
        out.append([feat * (Rw + fb) + m * fb] * d_v + [feat])
    return out


def rounded_statistic_sensitivity(analytic, errors: list, norm: str, *, prec=None):
    """The sensitivity of S~ under replace-one-row: ``analytic + 2 sum e`` (l1) or
    ``analytic + 2 sqrt(sum e^2)`` (l2), e from :func:`term_error_bounds`: S~(X) - S~(X') =
    (S(X) - S(X')) + (E(x) - E(x')), E the rounding of the one changed row's terms.
    Paper: none (PAPER.md §5 items 8, 18). Proof note:
    ``proofs_notes/30-exact-accumulation.md``."""
    ctx = context(prec)
    flat = [e for row in errors for e in row]
    if norm == "l1":
        return to_mpf(analytic, ctx, "analytic") + 2 * ctx.fsum(flat)
    if norm == "l2":
        return to_mpf(analytic, ctx, "analytic") + 2 * ctx.sqrt(ctx.fsum(e * e for e in flat))
    raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")


def conversion_error(n: int, M: list, R_w, d_v: int, errors: list, norm: str, *, prec=None):
    """Twice a bound on the change of the float64 conversion of S~ (relative 2^-53 per entry,
    |S~_(alpha,k)| <= n (M_alpha W_k + e_(alpha,k))), in l1 or l2, added to the sensitivity of
    the released float64 statistic. Paper: none (PAPER.md §5 item 18). Proof note:
    ``proofs_notes/30-exact-accumulation.md``."""
    n = check_positive_int("n", n)
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    u = ctx.ldexp(1, -53)
    mags = [n * u * (to_mpf(m, ctx, "M") * (Rw if k < d_v else 1) + e)
            for m, row in zip(M, errors) for k, e in enumerate(row)]
    total = ctx.fsum(mags) if norm == "l1" else ctx.sqrt(ctx.fsum(x * x for x in mags))
    return 2 * total


# ---------------------------------------------------------------------------------------------
# The reference mirror's constants (reference/accumulator.py): the same public numbers as the
# fast path's ``fast/accumulator.py::_exact_constants``, and the mirror's own rounding bound.
# ---------------------------------------------------------------------------------------------

def accumulator_lattice(d: int, degree: int, R, R_w, *, scale=None, domain: str = "box",
                        prec=None) -> tuple:
    """``(M, a, b)`` of a streaming accumulator: the feature bounds M (list of mpf,
    :func:`dpxattn.reference.kernel.feature_bounds` on the box,
    :func:`dpxattn.reference.ball.ball_feature_bounds` on the ball) and the lattice exponents
    ``lattice_exponents(max M (1 + 2^-40), R_w)``: the largest bound in float64, raised by 2^-40
    relative so that a float64 feature (within gamma_{s+3} M of the exact one) stays within
    2^FEATURE_BITS lattice units. The same call as ``fast/accumulator.py::_exact_constants``;
    ``scale`` as the accumulator resolved it (None is 1/d on the box; the ball's default is
    resolved by the caller). Paper: none (numerics, PAPER.md §5 item 18). Proof note:
    ``proofs_notes/30-exact-accumulation.md``."""
    from dpxattn.reference import ball, kernel

    if domain == "ball":
        M = ball.ball_feature_bounds(d, degree, R, scale=scale, prec=prec)
    else:
        M = kernel.feature_bounds(d, degree, R, scale=scale, prec=prec)
    a, b = lattice_exponents(max(float(m) for m in M) * (1 + 2.0 ** -40), R_w)
    return M, a, b


def released_sensitivity(n: int, d: int, degree: int, R, R_w, d_v: int, *, scale=None,
                         domain: str = "box", norm: str = "l1", prec=None):
    """The ``norm`` ("l1" for TLap, "l2" for the Gaussian law) sensitivity of the released
    float64 S~ of n rows (mpf, not yet rounded to float64): the analytic sensitivity of S
    (:func:`dpxattn.reference.sensitivity.direct_statistic` / ``direct_statistic_l2``, or the
    ball's :mod:`dpxattn.reference.ball_sensitivity`), plus the rounding allowance
    (:func:`rounded_statistic_sensitivity` with :func:`term_error_bounds`), plus
    :func:`conversion_error`, in that order: the same sum as
    ``fast/accumulator.py::_exact_constants``. Paper: none (PAPER.md §5 items 8 and 18).
    Proof note: ``proofs_notes/30-exact-accumulation.md``."""
    from dpxattn.reference import ball_sensitivity, sensitivity

    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    M, a, b = accumulator_lattice(d, degree, R, R_w, scale=scale, domain=domain, prec=prec)
    if domain == "ball":
        fn = (ball_sensitivity.ball_direct_statistic_l2 if norm == "l2"
              else ball_sensitivity.ball_direct_statistic)
    else:
        fn = sensitivity.direct_statistic_l2 if norm == "l2" else sensitivity.direct_statistic
    analytic = fn(d, degree, R, R_w, d_v, scale=scale, prec=prec)
    errors = term_error_bounds(M, R_w, d_v, degree, a, b, prec=prec)
    sens = rounded_statistic_sensitivity(analytic, errors, norm, prec=prec)
    return sens + conversion_error(n, M, R_w, d_v, errors, norm, prec=prec)


def rounding_error_bounds(M: list, R_w, d_v: int, degree: int, a: int, b: int, *,
                          prec=None) -> list:
    """e0[alpha][k] (mpf): a bound on |P~_alpha W~_k - P_alpha W_k| for one row of the
    reference mirror (``reference/accumulator.py``), which rounds its own ``prec``-bit features:
    the formula of :func:`term_error_bounds` with g = gamma_{s+3} at unit roundoff 2^-prec
    instead of float64's 2^-53 (kernel.features takes at most s + 2 roundings at prec bits).
    The exact S differs from the mirror's S~ of n rows by at most n e0 per entry.
    Paper: none (PAPER.md §5 item 18). Proof note: ``proofs_notes/30-exact-accumulation.md``."""
    from fractions import Fraction

    from dpxattn.reference._mp import resolve_prec

    p = resolve_prec(prec)
    ctx = context(p)
    ku = Fraction(degree + 3, 2 ** p)
    return _row_error_bounds(M, R_w, d_v, to_mpf(ku / (1 - ku), ctx, "gamma"), a, b, ctx)


__all__ += ["accumulator_lattice", "released_sensitivity", "rounding_error_bounds"]
