"""Exact accumulation of the ``tree`` statistic: public term lattices, integer sums, and the
sensitivities of the rounded release (n enters only through the float64 conversion).

Not in the paper (a numerics device at corpus scale; PAPER §5 items 13 and 18). Proof note:
``proofs_notes/30-exact-accumulation.md`` ("The tree").

The streaming tree build (:class:`dpxattn.fast.Accumulator` with ``mechanism="tree"``) rounds
every row's TERMS, not its factors: for coordinate t, moment m in (0, 1, 2) and column k (weight
w = v_k, or 1 for the denominator),

    T~_(t,m,k) = round(fl(w fl(P_t(k))^m) 2^c_m) 2^-c_m,   c_m = TERM_BITS - ceil(log2 B_m),

B_m = max(R_w, 1) max_t M_t^m (:func:`term_exponents`), so |T~ 2^c_m| <= 2^TERM_BITS. The leaf of
cell g holds the exact sum of the T~ of the rows whose float64 feature falls in g; internal nodes
are exact sums of their children; ``c0~ = sum_i T~_(0,0,k)`` (the moment-0 terms are w) and
``c1~ = sum_i sum_t T~_(t,2,k)`` (w ||P||^2 as the sum of its coordinates' moment-2 terms). All
are exact rationals, the same for any order, chunking or sharding.

One row's rounded term differs from the exact w P_t^m by at most
``e_(t,m,k) = gamma_(3s+4) W_k M_t^m + 2^-(c_m + 1)`` (:func:`term_error_bounds`; W_k = R_w, or
1 for the denominator; 3 s + 4 roundings inside a term, ``tree_term_roundings`` less its margin
and the additions that the exact sums no longer make). The released float64 numbers are the
exact sums rounded once (relative 2^-53; :func:`conversion_error`).
"""

from __future__ import annotations

import math
from fractions import Fraction

from dpxattn.params import check_degree, check_positive, check_positive_int
from dpxattn.reference._mp import context, to_fraction, to_mpf
from dpxattn.reference.kernel import feature_bounds, feature_norm_sq_bound, features
from dpxattn.reference.sensitivity import (c0, c1_column, float64_gamma, tree_level,
                                          tree_release_l2)

__all__ = [
    "TERM_BITS",
    "SCATTER_ROWS",
    "TREE_MAX_ROWS",
    "term_roundings",
    "term_exponents",
    "term_error_bounds",
    "conversion_error",
    "rounded_tree_sensitivities",
    "rounded_tree_l2",
    "rounded_tree_sums",
]

#: |rounded term| <= 2^TERM_BITS lattice units (resolution 2^-32 of the largest term bound)
TERM_BITS = 32
#: rows per flush of the fast path's float64 scatter: a cell's sum of 32-bit terms over 2^20 rows
#: stays below 2^52 (exact in float64, in any order)
SCATTER_ROWS = 1 << 20
#: rows an accumulator can hold: every node's high part, |node| 2^c / 2^32 <= n, stays far
#: below 2^53, so it converts to float64 exactly and the node is rounded once
TREE_MAX_ROWS = 1 << 44


def term_roundings(degree: int) -> int:
    """3 s + 4: roundings inside one float64 term w fl(P_t(k))^m (feature, powers, weight;
    ``proofs_notes/19-fast-path.md``). Paper: none (floating-point evaluation error; PAPER.md
    §5 item 18). Proof note: ``proofs_notes/30-exact-accumulation.md``."""
    return 3 * check_degree(degree) + 4


def term_exponents(M: list, R_w) -> tuple[int, int, int]:
    """(c_0, c_1, c_2): moment m's terms on the lattice 2^-c_m with |T| 2^c_m <= 2^TERM_BITS for
    |T| <= max(R_w, 1) max_t M_t^m. Public (bounds only). Paper: none (numerics, PAPER.md §5
    item 18). Proof note: ``proofs_notes/30-exact-accumulation.md``."""
    check_positive("R_w", R_w)
    W = max(float(R_w), 1.0)
    top = max(float(m) for m in M) * (1 + 2.0**-40)
    out = []
    for m in range(3):
        B = W * (top ** m if m else 1.0)
        c = TERM_BITS - math.ceil(math.log2(B))
        while B * 2.0 ** c > 2.0 ** TERM_BITS:  # log2 of a float can be one off
            c -= 1
        out.append(c)
    return tuple(out)


def term_error_bounds(M: list, R_w, d_v: int, degree: int, exponents, *, prec=None) -> list:
    """e[k][t][m] (mpf): a bound on |T~_(t,m,k) - w P_t^m| for one row, k over the d_v value
    columns (W = R_w) and the denominator (last, W = 1). Paper: none (PAPER.md §5 item 18).
    Proof note: ``proofs_notes/30-exact-accumulation.md``."""
    d_v = check_positive_int("d_v", d_v)
    ctx = context(prec)
    g = to_mpf(float64_gamma(term_roundings(degree)), ctx, "gamma")
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    Ms = [to_mpf(m, ctx, "M") for m in M]
    out = []
    for W in [Rw] * d_v + [ctx.one]:
        out.append([[g * W * Mt ** m + ctx.ldexp(1, -(exponents[m] + 1)) for m in range(3)]
                    for Mt in Ms])
    return out


def conversion_error(n: int, magnitude, *, prec=None):
    """2^-53 n magnitude: the float64 rounding of one exact sum of at most n terms each bounded
    by ``magnitude``. Paper: none (PAPER.md §5 item 18). Proof note:
    ``proofs_notes/30-exact-accumulation.md``."""
    n = check_positive_int("n", n)
    ctx = context(prec)
    return n * ctx.ldexp(1, -53) * to_mpf(magnitude, ctx, "magnitude")


def rounded_tree_sensitivities(n: int, d: int, degree: int, R, R_w, d_v: int, exponents, *,
                               scale=None, prec=None) -> tuple[list, list]:
    """``(scalars[k] = (Delta_c0~, Delta_c1~), levels[k][t][m])`` (mpf): the l1 sensitivities of
    the released float64 c0, c1 and of one level of each (column k, coordinate t, moment m)
    DPTree under replace-one-row. With e from :func:`term_error_bounds`, u n B the conversion
    error of a sum bounded by B (:func:`conversion_error`):

    * a level: at most two of its nodes change (the old row's and the new row's), each exact
      sum by at most W M_t^m + e, each float64 value by that plus two conversions:
      ``2 W M_t^m + 2 e + 4 u n (W M_t^m + e)``;
    * c0~ (one number, terms w rounded): ``2 W + 2 e_0 + 2 u n (W + e_0)``;
    * c1~: a row's sum_t T~_(t,2) is within sum_t e_(t,2) of w ||P||^2 <= W T_s(t_max):
      ``Delta_c1 + 2 E_2 + 2 u n (W T + E_2)``, E_2 = sum_t e_(t,2), Delta_c1 the exact sup
      (:func:`dpxattn.reference.sensitivity.c1_column`: 2 W T for a value column, T - 1 for the
      denominator, whose ||P||^2 lies in [1, T]).

    Independent of n but for the conversion terms (2^-53 n relative).
    Paper: DPTreeSoftmax's released numbers (v2 App. I; PAPER.md §3.4-3.7), rounded (not in the
    paper, §5 items 13 and 18). Proof note: ``proofs_notes/30-exact-accumulation.md``."""
    ctx = context(prec)
    M = feature_bounds(d, degree, R, scale=scale, prec=prec)
    T = feature_norm_sq_bound(d, degree, R, scale=scale, prec=prec)
    errors = term_error_bounds(M, R_w, d_v, degree, exponents, prec=prec)
    Rw = to_mpf(R_w, ctx, "R_w")
    scalars, levels = [], []
    for k, W in enumerate([Rw] * d_v + [ctx.one]):
        e = errors[k]
        e0 = e[0][0]
        E2 = ctx.fsum(row[2] for row in e)
        s0 = c0(W, prec=prec) + 2 * e0 + 2 * conversion_error(n, W + e0, prec=prec)
        s1 = (c1_column(d, degree, R, W, denominator=k == d_v, scale=scale, prec=prec) + 2 * E2
              + 2 * conversion_error(n, W * T + E2, prec=prec))
        scalars.append((s0, s1))
        levels.append([[tree_level(Mt, m, W, prec=prec) + 2 * e[t][m]
                        + 4 * conversion_error(n, W * Mt ** m + e[t][m], prec=prec)
                        for m in range(3)] for t, Mt in enumerate(M)])
    return scalars, levels


def rounded_tree_l2(n: int, d: int, degree: int, R, R_w, d_v: int, exponents, *,
                    grid_size: int, copies: int = 1, scale=None, prec=None):
    """The l2 sensitivity of the WHOLE released float64 tree (every copy, column, c0, c1 and
    node) under replace-one-row: ``Delta_2 + 2 ||e|| + ||conversion||``, with Delta_2 the
    analytic :func:`dpxattn.reference.sensitivity.tree_release_l2`, ||e|| = sqrt(l sum_k
    (e_0^2 + E_2^2 + L sum_(t,m) e_(t,m)^2)) the l2 norm of one row's rounding errors over the
    numbers it enters (one node per level per tree, c0, c1; the old and the new row: the
    factor 2), and the conversion term sqrt(l sum_k ((2 u n B_c0)^2 + (2 u n B_c1)^2 +
    2 L sum_(t,m) (2 u n B_(t,m))^2)) over the at most 2 L changed nodes per tree.
    The Gaussian tree is calibrated on the scaled release mu y (the groups' mu = 2^-e <= 1 of
    :func:`dpxattn.reference.tree_noise_weights.tree_noise_weights`, 0 when withheld): Delta_2
    is that scaled vector's (``weights=``), and since every mu <= 1 the two error norms bound
    the scaled errors too (||mu e|| <= ||e||).
    Paper: not in the paper (the Gaussian calibration of the rounded ``tree``; PAPER §3.4-3.7,
    §5 item 18). Proof note: ``proofs_notes/30-exact-accumulation.md``."""
    from dpxattn.accounting import tree_levels  # accounting imports nothing of this module

    copies = check_positive_int("copies", copies)
    L = tree_levels(check_positive_int("grid_size", grid_size))
    ctx = context(prec)
    M = feature_bounds(d, degree, R, scale=scale, prec=prec)
    T = feature_norm_sq_bound(d, degree, R, scale=scale, prec=prec)
    errors = term_error_bounds(M, R_w, d_v, degree, exponents, prec=prec)
    Rw = to_mpf(R_w, ctx, "R_w")
    rounding = conv = ctx.zero
    for k, W in enumerate([Rw] * d_v + [ctx.one]):
        e = errors[k]
        E2 = ctx.fsum(row[2] for row in e)
        rounding += e[0][0] ** 2 + E2 ** 2 + L * ctx.fsum(x * x for row in e for x in row)
        conv += (2 * conversion_error(n, W + e[0][0], prec=prec)) ** 2
        conv += (2 * conversion_error(n, W * T + E2, prec=prec)) ** 2
        conv += 2 * L * ctx.fsum((2 * conversion_error(n, W * Mt ** m + e[t][m], prec=prec)) ** 2
                                 for t, Mt in enumerate(M) for m in range(3))
    from dpxattn.reference.tree_noise_weights import tree_noise_weights

    weights = tree_noise_weights(d, degree, R, grid_size=grid_size, scale=scale)
    analytic = tree_release_l2(d, degree, R, R_w, d_v, grid_size=grid_size, copies=copies,
                               scale=scale, prec=prec, weights=weights)
    return analytic + 2 * ctx.sqrt(copies * rounding) + ctx.sqrt(copies * conv)


def rounded_tree_sums(K, V, *, degree: int, R, R_w, grid_size: int, scale=None,
                      prec=None) -> tuple[list, list]:
    """The streaming tree's exact integer sums from the reference's own features:
    ``(leaves[g][t][k][m], scalars[k] = (c0, c1))`` (Python integers; the value is the integer
    times 2^-c_m, c_m from :func:`term_exponents`), with leaf g of (t, k, m) the sum of
    round(w P_t(k_i)^m 2^c_m) (nearest, ties to even) over the rows whose feature P_t falls in
    cell g = min(floor(P_t G / M_t), G - 1) of the public grid, c0 = the sum over all leaves of
    (t = 0, m = 0) and c1 = the sum over t and all leaves of (t, m = 2). K: n rows of d numbers
    in [0, R]; V: n rows of d_v numbers in [-R_w, R_w] (validated by the caller). The features
    are ``prec``-bit mpf (:func:`dpxattn.reference.kernel.features`), so the fast path's sums of
    float64 features agree except at rows within its float error of a cell boundary or a
    rounding tie (none on continuous random data, in practice).
    Paper: DPTreeSoftmax's released sums (v2 App. I; PAPER.md §3.4), rounded (not in the paper,
    §5 items 13 and 18). Proof note: ``proofs_notes/30-exact-accumulation.md`` ("The tree")."""
    G = check_positive_int("grid_size", grid_size)
    d = len(K[0])
    d_v = len(V[0])
    ctx = context(prec)
    M = feature_bounds(d, degree, R, scale=scale, prec=prec)
    ex = term_exponents(M, R_w)
    bounds = [to_fraction(m) for m in M]
    r = len(M)
    leaves = [[[[0] * 3 for _ in range(d_v + 1)] for _ in range(r)] for _ in range(G)]
    for k_row, v_row in zip(K, V):
        P = [to_fraction(f) for f in features([to_mpf(x, ctx, "K") for x in k_row], degree,
                                              scale=scale, prec=prec)]
        W = [to_fraction(to_mpf(v, ctx, "V")) for v in v_row] + [Fraction(1)]
        for t, p_t in enumerate(P):
            g = min(int(p_t * G / bounds[t]), G - 1)  # floor: p_t >= 0
            for k, w in enumerate(W):
                for m in range(3):
                    leaves[g][t][k][m] += round(w * p_t ** m * Fraction(2) ** ex[m])
    sums0 = [sum(leaves[g][0][k][0] for g in range(G)) for k in range(d_v + 1)]
    sums1 = [sum(leaves[g][t][k][2] for g in range(G) for t in range(r)) for k in range(d_v + 1)]
    return leaves, list(zip(sums0, sums1))
