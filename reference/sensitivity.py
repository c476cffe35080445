"""l1 sensitivities of every released quantity under replace-one-row adjacency, and brute force.

Adjacency (DESIGN §1, ``proofs_notes/01-conventions.md``): (K, V) and (K', V') differ in one row,
with every entry of both inside the public bounds: keys in [0, R]^d, values in [-R_w, R_w]^{d_v}.
Paper: sensitivities of the DPTree / DPTreeDistance / DPTreeSoftmax releases (v2 §4, App. D-G,
App. I) and of our ``direct`` statistic; spec PAPER.md §1.3, §3.1-3.4, §5 items
6, 8, 13. Proof note: ``proofs_notes/17-sensitivity.md``.

Analytic sensitivities (each an upper bound on max ||f(X) - f(X')||_1 over neighbours):

* :func:`direct_statistic`: S = P(K)^T [V, 1] (r x (d_v + 1)): the exact sup
  ``2 d_v R_w + max(2 d_v R_w, d_v R_w + 1) sum_{alpha != 0} M_alpha`` (attained at corners;
  :func:`direct_statistic_convention` is the earlier count ``(2 d_v R_w + 1) sum_alpha M_alpha``);
* :func:`c0`: sum_i w_i for a value column w: ``2 R_w`` (tight);
* :func:`c1`: sum_i w_i ||P(k_i)||^2: ``2 R_w T_s(t_max)`` (tight);
* :func:`tree_level`: one DPTree level over a public grid, moment m, feature bound M_t:
  ``2 R_w M_t^m``;
* :func:`fixed_index_level`: one DPTree level over a fixed-index array of sensitivity Delta: Delta.

l2 sensitivities (each an upper bound on max ||f(X) - f(X')||_2, for the Gaussian law, note 24):

* :func:`direct_statistic_l2`: the Frobenius norm of the change of S: ``2 R_w sqrt(d_v T)`` with
  ``T = T_s(t_max)`` when ``d_v R_w^2 >= 1`` (the exact sup, attained), else
  ``sqrt(2 T (1 + m) - 2 (1 - m))``, ``m = d_v R_w^2`` (an upper bound);
* :func:`tree_release_l2`: the l2 norm of the change of the WHOLE ``tree`` release (every copy,
  column, coordinate, moment, level, c0, c1): ``2 R_w sqrt(l d_v S_max)`` when ``m >= 1``
  (attained), ``S_max = L (r + sum_t M_t^2 + sum_t M_t^4) + 1 + (sum_t M_t^2)^2``
  (:func:`tree_row_norm_sq_bound`); :func:`released_tree` is that release, noiseless;

Floating-point sums (the hardened release, ``noise="secure"``; ``proofs_notes/23-hardened-noise.md``
"Floating-point sums" and ``proofs_notes/17-sensitivity.md``): the released vectors are float64
evaluations of these sums, so the sensitivity passed to the lattice release must bound the l1
distance of the **computed** vectors. :func:`float64_gamma` is ``gamma_k = k u / (1 - k u)``,
``u = 2^-53``; :func:`float64_sum_error_bound` the classical bound ``|fl(sum) - sum| <= gamma_k
sum |terms|`` (k = number of terms + roundings inside a term; any summation order); the
per-mechanism sums of those bounds over the released coordinates (:func:`direct_statistic_float_error`,
:func:`c0_float_error`, :func:`c1_float_error`, :func:`tree_level_float_error`, with the rounding
counts :func:`direct_term_roundings`, :func:`c1_term_roundings`, :func:`tree_term_roundings`);
and :func:`secure_sensitivity` = analytic + 2 x (that sum).

Brute force (exact, at ``prec`` bits): :func:`neighbouring_corner_pairs` builds neighbouring
datasets whose changed row sits at corners of the bound box (plus optional random interior
rows), :func:`max_change_brute_force` takes the max l1 change of a released function over them,
and :func:`released_S`, :func:`released_c0`, :func:`released_c1` are those functions, exactly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction

from dpxattn.errors import ParameterError
from dpxattn.params import check_degree, check_positive, check_positive_int
from dpxattn.reference._mp import context, resolve_prec, to_mpf, to_matrix
from dpxattn.reference.kernel import feature_bounds, feature_norm_sq_bound, features

__all__ = [
    "direct_statistic",
    "direct_statistic_convention",
    "row_pairs",
    "direct_statistic_l2",
    "tree_row_norm_sq_bound",
    "tree_release_l2",
    "c0",
    "c1",
    "c0_denominator",
    "c1_denominator",
    "c1_column",
    "tree_level",
    "fixed_index_level",
    "NeighbourPair",
    "neighbouring_corner_pairs",
    "max_change_brute_force",
    "l1_change",
    "l2_change",
    "released_S",
    "released_c0",
    "released_c1",
    "released_tree",
    "UNIT_ROUNDOFF_F64",
    "float64_gamma",
    "float64_sum_error_bound",
    "direct_term_roundings",
    "c1_term_roundings",
    "tree_term_roundings",
    "direct_statistic_float_error",
    "c0_float_error",
    "c1_float_error",
    "tree_level_float_error",
    "secure_sensitivity",
    "tree_release_float_error_l2",
]


def direct_statistic(d: int, degree: int, R, R_w, d_v: int, *, scale=None, prec=None):
    """Delta_S, the l1 sensitivity of S = P(K)^T [V, 1]: its exact sup over neighbours,
    2 d_v R_w + max(2 d_v R_w, d_v R_w + 1) sum_{alpha != 0} M_alpha.

    For fixed keys each value coordinate is convex, so the sup is at value corners, v = -v' =
    R_w 1: sum_alpha [d_v R_w (p_alpha + p'_alpha) + |p_alpha - p'_alpha|] with p = P(x) >= 0
    (the box), p_0 = 1 (the constant feature never changes the ones column). Attained at corner
    rows: x = x' = R 1_d when d_v R_w >= 1; x = R 1_d, x' = 0 otherwise. It is what every
    ``direct`` TLap release (reference, fast, accumulator) is calibrated to; the earlier,
    looser count is :func:`direct_statistic_convention`.
    Paper: not in the paper; our sufficient-statistics mechanism (PAPER §5 item 8).
    Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    d_v = check_positive_int("d_v", d_v)
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    M = feature_bounds(d, degree, R, scale=scale, prec=prec)
    rest = ctx.fsum(M[1:])  # M[0] = 1 is the constant feature
    return 2 * d_v * Rw + max(2 * d_v * Rw, d_v * Rw + 1) * rest


def direct_statistic_convention(d: int, degree: int, R, R_w, d_v: int, *, scale=None,
                                prec=None):
    """(2 d_v R_w + 1) sum_alpha M_alpha: the entrywise count, a valid upper bound on the l1
    sensitivity of S that exceeds the exact sup :func:`direct_statistic` by at least 1.

    Column k <= d_v: |P(x)_alpha v_k - P(x')_alpha v'_k| <= 2 M_alpha R_w; the ones column:
    |P(x)_alpha - P(x')_alpha| <= M_alpha (features >= 0). The convention's value before the
    exact sup was adopted (``proofs_notes/17-sensitivity.md``); kept for comparison only.
    Paper: not in the paper (PAPER §5 item 8).
    """
    d_v = check_positive_int("d_v", d_v)
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    return (2 * d_v * Rw + 1) * ctx.fsum(feature_bounds(d, degree, R, scale=scale, prec=prec))


def direct_statistic_l2(d: int, degree: int, R, R_w, d_v: int, *, scale=None, prec=None):
    """l2 sensitivity of S = P(K)^T [V, 1]: sup over neighbours of ||S(X) - S(X')||_F.

    Replacing row (x, v) by (x', v') changes S by c e^T - a b^T with a = P(x), c = P(x'),
    b = [v, 1], e = [v', 1], so ||change||_F^2 = |a|^2 |b|^2 + |c|^2 |e|^2 - 2 <a,c> <b,e>.
    With m = d_v R_w^2 and T = T_s(t_max) = max |P|^2 (``feature_norm_sq_bound``):

    * over the values (a, c fixed): a convex quadratic in (v, v') (its form is PSD since
      <a,c>^2 <= |a|^2 |c|^2), so its max is at a vertex; <a,c> >= 1 > 0 (features >= 0 on
      [0, R]^d, the constant feature is 1), so v' = -v at |v_k| = R_w:
      (|a|^2 + |c|^2)(m + 1) - 2 (1 - m) <a,c>;
    * m >= 1: every term grows with |a|, |c| and <a,c>, all maximal at x = x' = R 1_d:
      4 m T, so Delta_2 = 2 R_w sqrt(d_v T), **attained** (x = x' = R 1, v = -v' = R_w 1);
    * m < 1: (1 - m)|a - c|^2 + 2m(|a|^2 + |c|^2) <= (1 - m)(2T - 2) + 4 m T (|a - c|^2 =
      |a|^2 + |c|^2 - 2<a,c> <= 2T - 2), so Delta_2 <= sqrt(2T(1 + m) - 2(1 - m)): an upper
      bound (not attained when T > 1; exact brute force over corner pairs sits below it).

    Paper: not in the paper; the Gaussian calibration of our ``direct`` statistic (PAPER §5
    item 8; Balle & Wang 2018). Proof note: ``proofs_notes/17-sensitivity.md`` ("l2").
    """
    d_v = check_positive_int("d_v", d_v)
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    T = feature_norm_sq_bound(d, degree, R, scale=scale, prec=prec)
    m = d_v * Rw * Rw
    if m >= 1:
        return 2 * Rw * ctx.sqrt(d_v * T)
    return ctx.sqrt(2 * T * (1 + m) - 2 * (1 - m))


def tree_row_norm_sq_bound(d: int, degree: int, R, *, grid_size: int, scale=None, prec=None,
                           weights=None):
    """S_max = L (r + sum_t M_t^2 + sum_t M_t^4) + 1 + (sum_t M_t^2)^2: the largest squared l2
    norm of one row's contribution a(k) to one column of the ``tree`` release, per unit weight.

    A row with key k and weight w adds w a(k) to one (copy, column): w x_t^m to ONE node per
    level (L = ``tree_levels(grid_size)`` levels) of the moment-m tree of coordinate t
    (x_t = P(k)_t, the actual feature value; the levels partition the leaves), w to c0 and
    w ||P(k)||^2 to c1. So ``||a(k)||^2 = L sum_t (1 + x_t^2 + x_t^4) + 1 + ||P(k)||^4``,
    increasing in every x_t in [0, M_t] and attained at k = R 1_d (x_t = M_t,
    :func:`dpxattn.reference.kernel.feature_bounds`). Rounded at ``prec`` (callers certify it
    upward, :func:`dpxattn.reference.dptree.certified_upper`).
    ``weights`` (a :class:`dpxattn.reference.tree_noise_weights.TreeNoiseWeights`, None: all 1):
    the squared norm of mu a(k), each group scaled by its mu = 2^-e (0 when withheld),
    ``L sum_(t,m) mu_tm^2 x_t^(2m) + mu_c0^2 + mu_c1^2 ||P(k)||^4`` at the same corner (the
    scaling keeps every entry >= 0 and increasing).
    Paper: not in the paper (the Gaussian calibration of the ``tree``, PAPER §3.4-3.7; the
    released nodes of DPTreeSoftmax, v2 App. I). Proof note ``proofs_notes/26-tree-gaussian.md``.
    """
    from dpxattn.accounting import tree_levels  # here: accounting imports nothing of this module
    L = tree_levels(check_positive_int("grid_size", grid_size))
    ctx = context(prec)
    M = feature_bounds(d, degree, R, scale=scale, prec=prec)
    sq = ctx.fsum(x * x for x in M)
    if weights is None:
        quad = ctx.fsum((x * x) ** 2 for x in M)
        return L * (len(M) + sq + quad) + 1 + sq * sq
    mu2 = _squared_scales(weights, ctx)
    nodes = ctx.fsum(mu2[(t, m)] * x ** (2 * m) for t, x in enumerate(M) for m in range(3))
    return L * nodes + mu2["c0"] + mu2["c1"] * sq * sq


def _squared_scales(weights, ctx) -> dict:
    """mu_g^2 = 2^-2e (0 when withheld) of every group of ``weights``, exact mpf."""
    return {g: ctx.mpf(weights.scale(e)) ** 2 for g, e in weights.by_group().items()}


def tree_release_l2(d: int, degree: int, R, R_w, d_v: int, *, grid_size: int, copies: int = 1,
                    scale=None, prec=None, weights=None):
    """l2 sensitivity of the WHOLE ``tree`` release: sup over neighbours of the l2 norm of the
    change of every released number (c0, c1 and every node of every moment tree, every column
    and copy; :func:`released_tree`).

    Replacing row (k, v) by (k', v') changes one copy by b' (x) a' - b (x) a with b = (v, 1)
    (the d_v value columns' weights and the denominator's weight 1) and a = a(k) of
    :func:`tree_row_norm_sq_bound` (entries >= 0; <a, a'> >= r + 1: the r roots of the moment-0
    trees and c0 are 1 for every row). The argument of :func:`direct_statistic_l2` carries over
    with P(x) replaced by a(k) and T by S_max; with m = d_v R_w^2:

    * m >= 1: ``2 R_w sqrt(d_v S_max)``, attained at k = k' = R 1_d, v = -v' = R_w 1;
    * m < 1: ``sqrt(2 (1 + m) S_max - 2 (1 - m)(r + 1))`` (an upper bound).

    The l = ``copies`` copies are identical statistics (independent noise): the change is the
    same in each, so the whole vector's change is sqrt(l) times one copy's.
    ``weights`` (:class:`dpxattn.reference.tree_noise_weights.TreeNoiseWeights`; None: all 1):
    the l2 sensitivity of the SCALED release mu y that the weighted Gaussian tree is calibrated
    on. a is replaced by mu a (entries >= 0, increasing), S_max by the weighted
    :func:`tree_row_norm_sq_bound` and r + 1 by sum_t mu_(t,0)^2 + mu_c0^2 (the moment-0 roots
    and c0 are mu for every row); the same argument, the same attaining corner for m >= 1.
    Paper: not in the paper (PAPER §3.4-3.7, §5 item 8; Balle & Wang 2018). Proof note
    ``proofs_notes/26-tree-gaussian.md``.
    """
    d_v = check_positive_int("d_v", d_v)
    copies = check_positive_int("copies", copies)
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    S = tree_row_norm_sq_bound(d, degree, R, grid_size=grid_size, scale=scale, prec=prec,
                               weights=weights)
    m = d_v * Rw * Rw
    if m >= 1:
        return 2 * Rw * ctx.sqrt(copies * d_v * S)
    if weights is None:
        common = len(feature_bounds(d, degree, R, scale=scale, prec=prec)) + 1
    else:
        mu2 = _squared_scales(weights, ctx)
        common = mu2["c0"] + ctx.fsum(mu2[(t, 0)] for t in range(len(weights.nodes)))
    return ctx.sqrt(copies * (2 * (1 + m) * S - 2 * (1 - m) * common))


def c0(R_w, *, prec=None):
    """2 R_w: l1 sensitivity of c0 = sum_i w_i for a value column w in [-R_w, R_w]^n (tight).

    Paper: c0 of DPTreeSoftmax, used without noise in the ICLR version's Algorithm 3
    (v2 App. I); spec PAPER.md §3.4, §5 item 6. Proof note:
    ``proofs_notes/17-sensitivity.md``.
    """
    ctx = context(prec)
    return 2 * to_mpf(check_positive("R_w", R_w), ctx, "R_w")


def c1(d: int, degree: int, R, R_w, *, scale=None, prec=None):
    """2 R_w T_s(t_max): l1 sensitivity of c1 = sum_i w_i ||P(k_i)||^2 (tight).

    |w ||P(x)||^2 - w' ||P(x')||^2| <= 2 R_w max ||P||^2 = 2 R_w T_s(t_max).
    Paper: c1 of DPTreeSoftmax (v2 App. I); spec PAPER.md §3.4, §3.7.
    Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    return 2 * Rw * feature_norm_sq_bound(d, degree, R, scale=scale, prec=prec)


def c0_denominator(*, prec=None):
    """0: for the denominator column (w = 1) c0 = n is public and never changes.

    The plan budgets it with sensitivity 2 (R_w = 1), which is valid but wasteful.
    Proof note: ``proofs_notes/17-sensitivity.md``.
    Paper: the denominator structure (w = 1), not privatised in the ICLR version (PAPER.md §3.5,
    §5 item 5).
    """
    return context(prec).zero


def c1_denominator(d: int, degree: int, R, *, scale=None, prec=None):
    """T_s(t_max) - 1: the exact sensitivity of c1 = sum_i ||P(k_i)||^2 (denominator, w = 1).

    ||P(x)||^2 = T_s(scale ||x||^2) ranges over [1, T_s(t_max)] on [0, R]^d. The plan's
    2 T_s(t_max) (R_w = 1) is valid but more than twice this.
    Proof note: ``proofs_notes/17-sensitivity.md``.
    Paper: the denominator structure (w = 1) (PAPER.md §3.5, §5 item 5).
    """
    return feature_norm_sq_bound(d, degree, R, scale=scale, prec=prec) - 1


def c1_column(d: int, degree: int, R, weight_bound, *, denominator: bool, scale=None,
              prec=None):
    """The l1 sensitivity the tree's c1 of one column is released with: the exact sup of each
    kind, :func:`c1_denominator` (T_s(t_max) - 1) for the denominator column (w = 1) and
    :func:`c1` (2 R_w T_s(t_max)) for a value column of bound ``weight_bound``. At degree 0
    the denominator's sup is 0 (||P||^2 = 1: c1 = n, public); every released number gets noise
    of a positive scale, so there it keeps the valid bound 2 T_s(t_max) = 2.
    Paper: c1 of DPTreeSoftmax (v2 App. I); spec PAPER.md §3.4, §3.5 (the denominator).
    Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    if denominator and check_degree(degree) > 0:
        return c1_denominator(d, degree, R, scale=scale, prec=prec)
    return c1(d, degree, R, 1 if denominator else weight_bound, scale=scale, prec=prec)


def tree_level(M_t, moment: int, R_w, *, prec=None):
    """2 R_w M_t^moment: l1 sensitivity of one DPTree level over a public grid (moment m).

    Leaf g holds sum_{i: cell(x_i) = g} w_i x_i^m with 0 <= x_i <= M_t; replacing one record
    changes at most two leaves of each level, by |w x^m| + |w' x'^m| <= 2 R_w M_t^m.
    (Denominator: R_w = 1.) Paper: DPTreeDistance, sound public-grid variant (v2 App. F); spec PAPER.md §3.2, §5 item 13. Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    m = _check_moment(moment)
    ctx = context(prec)
    M = to_mpf(check_positive("M_t", M_t), ctx, "M_t")
    return 2 * to_mpf(check_positive("R_w", R_w), ctx, "R_w") * M**m


def _check_moment(moment) -> int:
    try:
        return check_degree(moment)
    except ParameterError:
        raise ParameterError("moment", "must be an integer >= 0", moment) from None


def fixed_index_level(Delta, *, prec=None):
    """Delta: l1 sensitivity of one DPTree level over a fixed-index array (one entry changes by
    at most Delta, and lies in exactly one node per level).

    Paper: DPTree (v2 §4 / App. D); spec PAPER.md §3.1. Proof note:
    ``proofs_notes/17-sensitivity.md``.
    """
    return to_mpf(check_positive("Delta", Delta), context(prec), "Delta")


# ---------------------------------------------------------------------------------------------
# Exact released quantities
# ---------------------------------------------------------------------------------------------

def _rows(K, V, ctx):
    Km, Vm = to_matrix(K, ctx, "K"), to_matrix(V, ctx, "V")
    if len(Km) != len(Vm):
        raise ParameterError("V", f"must have as many rows as K (n = {len(Km)})", f"{len(Vm)} rows")
    return Km, Vm


def _column(Vm, column: int, ctx) -> list:
    d_v = len(Vm[0])
    if isinstance(column, bool) or not isinstance(column, int) or not 0 <= column <= d_v:
        raise ParameterError("column", f"must be an integer in [0, d_v] = [0, {d_v}] "
                             "(d_v is the ones column)", column)
    return [ctx.one] * len(Vm) if column == d_v else [row[column] for row in Vm]


def released_S(K, V, *, degree: int, scale=None, prec=None) -> list:
    """S = P(K)^T [V, 1], flattened row-major (feature index major, columns [V..., ones]).

    The quantity the ``direct`` mechanism releases (r (d_v + 1) numbers), exactly at ``prec``.
    Paper: not in the paper (PAPER §5 item 8; DESIGN §2). Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    ctx = context(resolve_prec(prec))
    Km, Vm = _rows(K, V, ctx)
    feats = [features(k, degree, scale=scale, prec=ctx.prec) for k in Km]
    cols = [row + [ctx.one] for row in Vm]
    r = len(feats[0])
    return [ctx.fsum(f[a] * c[j] for f, c in zip(feats, cols))
            for a in range(r) for j in range(len(cols[0]))]


def released_c0(K, V, *, column: int, prec=None) -> list:
    """[c0] = [sum_i w_i] with w = V[:, column], or the ones column when column == d_v.

    Paper: c0 of DPTreeSoftmax (v2 App. I); spec PAPER.md §3.4.
    Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    ctx = context(resolve_prec(prec))
    _, Vm = _rows(K, V, ctx)
    return [ctx.fsum(_column(Vm, column, ctx))]


def released_c1(K, V, *, column: int, degree: int, scale=None, prec=None) -> list:
    """[c1] = [sum_i w_i ||P(k_i)||^2] with w = V[:, column] (or ones for column == d_v).

    Paper: c1 of DPTreeSoftmax (v2 App. I); spec PAPER.md §3.4.
    Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    ctx = context(resolve_prec(prec))
    Km, Vm = _rows(K, V, ctx)
    w = _column(Vm, column, ctx)
    norms = [ctx.fsum(p * p for p in features(k, degree, scale=scale, prec=ctx.prec)) for k in Km]
    return [ctx.fsum(wi * ni for wi, ni in zip(w, norms))]


def released_tree(K, V, *, degree: int, R, grid_size: int, copies: int = 1, scale=None,
                  prec=None) -> list:
    """The whole noiseless ``tree`` release, flat, in the uniform order of
    :mod:`dpxattn.reference.dptree_softmax` (length ``tree_noise_count``): for copy c, column k:
    [c0, c1]; then node-major, for node i, for (c, k, coordinate t, moment m): the exact node sum
    of the moment-m tree over the public grid (G = ``grid_size`` cells on [0, M_t]; leaves
    ``sum_{cell(x_it) = g} w_i x_it^m``, padded to N = 2^ceil(log2 G) with zeros).
    Columns k < d_v have w = V[:, k], column d_v the ones. Exact at ``prec``.
    Paper: DPTreeSoftmax.Init without noise (v2 App. I); spec PAPER.md §3.4-3.7. Proof note
    ``proofs_notes/26-tree-gaussian.md``.
    """
    from dpxattn.reference.dptree import exact_node_sums
    from dpxattn.reference.dptree_distance import moment_leaves
    ctx = context(resolve_prec(prec))
    Km, Vm = _rows(K, V, ctx)
    G = check_positive_int("grid_size", grid_size)
    copies = check_positive_int("copies", copies)
    d_v = len(Vm[0])
    feats = [features(k, degree, scale=scale, prec=ctx.prec) for k in Km]
    M = feature_bounds(len(Km[0]), degree, R, scale=scale, prec=ctx.prec)
    scalars, columns = [], []
    for k in range(d_v + 1):
        w = _column(Vm, k, ctx)
        scalars += [ctx.fsum(w), ctx.fsum(wi * ctx.fsum(p * p for p in f)
                                          for wi, f in zip(w, feats))]
        for t in range(len(M)):
            xs = [f[t] for f in feats]
            for m in range(3):
                columns.append(exact_node_sums(moment_leaves(
                    xs, w, upper=M[t], grid_size=G, k=m, prec=ctx.prec), prec=ctx.prec))
    nodes = [col[i] for i in range(len(columns[0])) for _ in range(copies) for col in columns]
    return scalars * copies + nodes


# ---------------------------------------------------------------------------------------------
# Neighbouring pairs and brute force
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NeighbourPair:
    """Two datasets (K, V) and (K2, V2) that differ in row ``row`` only (lists of rows of mpf).

    Paper: replace-one-row adjacency (project choice, PAPER.md §1.3). Proof note:
    ``proofs_notes/17-sensitivity.md``.
    """

    K: list
    V: list
    K2: list
    V2: list
    row: int
    label: str


def _corner_set(dim: int, low, high, limit: int, ctx) -> list:
    """All 2^dim corners of [low, high]^dim, or (above ``limit``) a structured subset: the two
    constant corners, each single coordinate at ``high`` (rest ``low``) and the alternating pattern."""
    if 2**dim <= limit:
        return [list(c) for c in itertools.product((low, high), repeat=dim)]
    out = [[low] * dim, [high] * dim]
    out += [[high if i == j else low for i in range(dim)] for j in range(dim)]
    out.append([high if i % 2 else low for i in range(dim)])
    return out


def row_pairs(rows: list, n: int, label: str) -> list:
    """Every unordered pair of distinct candidate rows ``(key, value)`` as the changed row 0 of
    two datasets whose other n - 1 rows are fixed (cycling through the candidates), as
    :class:`NeighbourPair` s. Paper: replace-one-row adjacency (PAPER.md §1.3). Proof note:
    ``proofs_notes/17-sensitivity.md``."""
    others = [rows[(i * 7 + 3) % len(rows)] for i in range(n - 1)]
    oK, oV = [list(k) for k, _ in others], [list(v) for _, v in others]
    pairs = []
    for ia, ib in itertools.combinations(range(len(rows)), 2):
        (ka, va), (kb, vb) = rows[ia], rows[ib]
        pairs.append(NeighbourPair([list(ka)] + oK, [list(va)] + oV, [list(kb)] + oK,
                                   [list(vb)] + oV, 0, f"{label} {ia} -> {ib}"))
    return pairs


def neighbouring_corner_pairs(n: int, d: int, d_v: int, R, R_w, *, rng=None, n_random: int = 4,
                              max_corners: int = 16, prec=None) -> list:
    """Neighbouring datasets for brute force: the changed row at corners of the bound box.

    Keys in [0, R]^d, values in [-R_w, R_w]^{d_v}. Corner rows are all (key corner, value
    corner) combinations (all 2^d and 2^{d_v} corners while that is <= ``max_corners``, else a
    structured subset). For every unordered pair of distinct corner rows (a, b), the dataset
    has row 0 = a and its neighbour row 0 = b; the other n - 1 rows are fixed corner rows
    (cycling through the list, deterministic). With a numpy ``rng`` (explicit randomness), also
    ``n_random`` pairs whose changed rows and other rows are uniform inside the box (exact
    binary values of the float draws). Returns a list of :class:`NeighbourPair`.
    Paper: replace-one-row adjacency (project choice, PAPER §1.3). Proof note:
    ``proofs_notes/17-sensitivity.md``.
    """
    n = check_positive_int("n", n)
    d = check_positive_int("d", d)
    d_v = check_positive_int("d_v", d_v)
    check_positive("R", R)
    check_positive("R_w", R_w)
    ctx = context(resolve_prec(prec))
    Rm, Rwm = to_mpf(R, ctx, "R"), to_mpf(R_w, ctx, "R_w")
    keys = _corner_set(d, ctx.zero, Rm, max_corners, ctx)
    vals = _corner_set(d_v, -Rwm, Rwm, max_corners, ctx)
    rows = [(k, v) for k in keys for v in vals]
    pairs = row_pairs(rows, n, "corner rows")
    if rng is not None:
        for t in range(check_positive_int("n_random", n_random, minimum=0)):
            def key():
                return [to_mpf(x, ctx) * Rm for x in rng.uniform(0.0, 1.0, d)]

            def val():
                return [to_mpf(x, ctx) * Rwm for x in rng.uniform(-1.0, 1.0, d_v)]
            Ks, Vs = [key() for _ in range(n)], [val() for _ in range(n)]
            j = int(rng.integers(0, n))
            K2, V2 = [list(r) for r in Ks], [list(r) for r in Vs]
            K2[j], V2[j] = key(), val()
            pairs.append(NeighbourPair(Ks, Vs, K2, V2, j, f"random interior pair {t}"))
    return pairs


def l1_change(a: list, b: list):
    """||a - b||_1 of two equally long flat lists of mpf.

    Paper: l1 sensitivity (PAPER.md §1.4). Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    if len(a) != len(b):
        raise ParameterError("released values", "must have the same length on both datasets",
                             f"{len(a)} vs {len(b)}")
    ctx = a[0].context if a and hasattr(a[0], "context") else context(None)
    return ctx.fsum(abs(x - y) for x, y in zip(a, b))


def l2_change(a: list, b: list):
    """||a - b||_2 of two equally long flat lists of mpf.

    Paper: none (the l2 sensitivity of the Gaussian law, note 24). Proof note:
    ``proofs_notes/17-sensitivity.md``.
    """
    if len(a) != len(b):
        raise ParameterError("released values", "must have the same length on both datasets",
                             f"{len(a)} vs {len(b)}")
    ctx = a[0].context if a and hasattr(a[0], "context") else context(None)
    return ctx.sqrt(ctx.fsum((x - y) ** 2 for x, y in zip(a, b)))


def max_change_brute_force(released_fn, pairs, *, norm: str = "l1"):
    """max over ``pairs`` of ||released_fn(K, V) - released_fn(K2, V2)|| in the ``norm``
    ("l1" or "l2"), exactly.

    ``released_fn(K, V)`` returns a flat list of mpf. Returns ``(max_change, pair)`` with the
    pair attaining it. Proof note: ``proofs_notes/17-sensitivity.md``.
    Paper: sensitivity definition (PAPER.md §1.4); adversarial search standard, DESIGN §6.
    """
    if norm not in ("l1", "l2"):
        raise ParameterError("norm", "must be 'l1' or 'l2'", norm)
    change = l1_change if norm == "l1" else l2_change
    best, arg = None, None
    for p in pairs:
        ch = change(released_fn(p.K, p.V), released_fn(p.K2, p.V2))
        if best is None or ch > best:
            best, arg = ch, p
    if best is None:
        raise ParameterError("pairs", "must not be empty")
    return best, arg


# ---------------------------------------------------------------------------------------------
# Floating-point sums: public bounds on the float64 evaluation error, and the secure sensitivity
# ---------------------------------------------------------------------------------------------

#: u = 2^-53, the unit roundoff of float64 (round to nearest)
UNIT_ROUNDOFF_F64 = Fraction(1, 2**53)


def float64_gamma(k: int) -> Fraction:
    """gamma_k = k u / (1 - k u) with u = 2^-53, exact (Higham, *Accuracy and Stability of
    Numerical Algorithms*, Lemma 3.1: a product of k factors (1 + d_i)^{+-1}, |d_i| <= u, is
    1 + theta with |theta| <= gamma_k). Requires k u < 1/2 (raises ParameterError otherwise).
    Paper: none (floating point is PAPER.md §5 item 18). Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    k = check_positive_int("k", k, minimum=0)
    ku = k * UNIT_ROUNDOFF_F64
    if ku >= Fraction(1, 2):
        raise ParameterError("k", "must satisfy k 2^-53 < 1/2 for the float64 rounding bound", k)
    return ku / (1 - ku)


def float64_sum_error_bound(terms: int, roundings_per_term: int, term_bound, *, prec=None):
    """gamma_k x terms x term_bound with k = terms + roundings_per_term: a public bound on
    |fl(sum_i t_i) - sum_i T_i| for a float64 sum of ``terms`` computed terms t_i, each obtained
    from its exact value T_i (|T_i| <= ``term_bound``) by at most ``roundings_per_term`` float64
    operations, summed in ANY order (each term passes through at most terms - 1 additions).

    Standard analysis: t_i = T_i (1 + theta_i), and the sum of the t_i in any order is
    sum_i t_i (1 + theta'_i) with |theta'_i| <= gamma_{terms - 1}; so the computed value is
    sum_i T_i (1 + eta_i), |eta_i| <= gamma_{terms - 1 + roundings} <= gamma_k, and the error
    is <= gamma_k sum_i |T_i| <= gamma_k terms term_bound. Returns an mpf at ``prec``.
    Paper: none (PAPER.md §5 item 18). Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    terms = check_positive_int("terms", terms)
    roundings = check_positive_int("roundings_per_term", roundings_per_term, minimum=0)
    ctx = context(prec)
    g = float64_gamma(terms + roundings)
    bound = to_mpf(check_positive("term_bound", term_bound), ctx, "term_bound")
    return ctx.mpf(g.numerator) / g.denominator * terms * bound


def direct_term_roundings(degree: int) -> int:
    """s + 3: roundings inside one term P_alpha(k_i) v_i of S (a feature takes <= s + 1: s - 1
    products, the rounded coefficient and its product; one more for the product with v; two
    more of margin, as in ``proofs_notes/19-fast-path.md``'s gamma(n + s + 3)).

    Paper: none (floating-point evaluation error; the paper assumes exact reals); spec PAPER.md §5 item 18; proofs_notes/17-sensitivity.md, 23-hardened-noise.md.
    """
    return check_degree(degree) + 3


def c1_term_roundings(r: int, degree: int) -> int:
    """r + 2 s + 6: roundings inside one term w_i ||P(k_i)||^2 of c1 (the squared norm is a sum
    of r squares of features with <= s + 1 roundings each; ``proofs_notes/19-fast-path.md``).

    Paper: none (floating-point evaluation error; the paper assumes exact reals); spec PAPER.md §5 item 18; proofs_notes/17-sensitivity.md, 23-hardened-noise.md.
    """
    return check_positive_int("r", r) + 2 * check_degree(degree) + 6


def tree_term_roundings(degree: int, height: int) -> int:
    """3 s + 5 + h: roundings a term w_i P_t(k_i)^m meets before it is part of a released node:
    <= 3 s + 4 inside the term (feature, powers, weight; ``proofs_notes/19-fast-path.md``), one
    of margin, then the <= h pairwise additions that build internal nodes from leaves.

    Paper: none (floating-point evaluation error; the paper assumes exact reals); spec PAPER.md §5 item 18; proofs_notes/17-sensitivity.md, 23-hardened-noise.md.
    """
    return 3 * check_degree(degree) + 5 + check_positive_int("height", height, minimum=0)


def direct_statistic_float_error(n: int, d: int, degree: int, R, R_w, d_v: int, *, scale=None,
                                 prec=None):
    """Sum over the r (d_v + 1) coordinates of S of their float64 error bounds:
    gamma_{n + s + 3} n (d_v R_w + 1) sum_alpha M_alpha (coordinate (alpha, k): n terms bounded by
    M_alpha R_w, or M_alpha for the ones column). Proof note: ``proofs_notes/17-sensitivity.md``.
    Paper: not in the paper (PAPER.md §5 items 8 and 18).
    """
    n = check_positive_int("n", n)
    d_v = check_positive_int("d_v", d_v)
    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    weight = d_v * Rw + 1
    M = feature_bounds(d, degree, R, scale=scale, prec=prec)
    return float64_sum_error_bound(n, direct_term_roundings(degree), ctx.fsum(M) * weight, prec=prec)


def c0_float_error(n: int, R_w, *, prec=None):
    """gamma_n n R_w: float64 error bound of c0 = sum_i w_i (the terms are the exact inputs).
    Proof note: ``proofs_notes/17-sensitivity.md``. Paper: c0 of DPTreeSoftmax (v2 App. I); PAPER.md §3.4, §5 item 18."""
    return float64_sum_error_bound(n, 0, R_w, prec=prec)


def c1_float_error(n: int, d: int, degree: int, R, R_w, *, scale=None, prec=None):
    """gamma_{n + r + 2s + 6} n R_w T_s(t_max): float64 error bound of c1 = sum_i w_i ||P(k_i)||^2.
    Proof note: ``proofs_notes/17-sensitivity.md``. Paper: c1 of DPTreeSoftmax (v2 App. I); PAPER.md §3.4, §5 item 18."""
    from dpxattn.reference.kernel import multi_indices

    ctx = context(prec)
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    r = len(multi_indices(d, degree))
    T = feature_norm_sq_bound(d, degree, R, scale=scale, prec=prec)
    return float64_sum_error_bound(n, c1_term_roundings(r, degree), Rw * T, prec=prec)


def tree_level_float_error(n: int, M_t, moment: int, R_w, *, degree: int, height: int, prec=None):
    """gamma_{n + 3s + 5 + h} n R_w M_t^m: the sum over ONE level's nodes of their float64 error
    bounds (the nodes of a level partition the n terms, each bounded by R_w M_t^m).
    Proof note: ``proofs_notes/17-sensitivity.md``. Paper: DPTreeDistance levels (v2 App. F); PAPER.md §3.2, §5 items 13 and 18."""
    m = _check_moment(moment)
    ctx = context(prec)
    M = to_mpf(check_positive("M_t", M_t), ctx, "M_t")
    Rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    return float64_sum_error_bound(n, tree_term_roundings(degree, height), Rw * M**m, prec=prec)


def tree_release_float_error_l2(n: int, d: int, degree: int, R, R_w, d_v: int, *,
                                grid_size: int, copies: int = 1, scale=None, prec=None):
    """A bound on the l2 norm of the float64 error of the WHOLE computed ``tree`` release
    (every copy, column, c0, c1 and node): ``sqrt(l sum_k (E_c0^2 + E_c1^2 + L sum_{t,m}
    E_level(t, m)^2))``, k over the d_v value columns (weight R_w) and the denominator (weight 1).

    The error vector's entries split into groups: per copy and column the c0 and the c1 entry,
    and per (copy, column, coordinate t, moment m) and level the level's nodes, whose l1 error is
    at most :func:`c0_float_error`, :func:`c1_float_error`, :func:`tree_level_float_error`
    (h = tree_height(grid)); and ``||e||_2^2 = sum_g ||e_g||_2^2 <= sum_g ||e_g||_1^2``. The l
    copies are one computation repeated (identical errors). Used, doubled, on top of
    :func:`tree_release_l2` for the hardened Gaussian tree (triangle inequality, as
    :func:`secure_sensitivity` does in l1). Proof note ``proofs_notes/26-tree-gaussian.md``.
    Paper: not in the paper (PAPER §5 items 13 and 18).
    """
    from dpxattn.accounting import tree_height, tree_levels  # accounting imports nothing here
    G = check_positive_int("grid_size", grid_size)
    copies = check_positive_int("copies", copies)
    d_v = check_positive_int("d_v", d_v)
    ctx = context(prec)
    M = feature_bounds(d, degree, R, scale=scale, prec=prec)
    L, h = tree_levels(G), tree_height(G)
    total = ctx.zero
    for w in [R_w] * d_v + [1]:
        total += c0_float_error(n, w, prec=prec) ** 2
        total += c1_float_error(n, d, degree, R, w, scale=scale, prec=prec) ** 2
        for M_t in M:
            for m in range(3):
                e = tree_level_float_error(n, M_t, m, w, degree=degree, height=h, prec=prec)
                total += L * e * e
    return ctx.sqrt(copies * total)


def secure_sensitivity(analytic, error_bounds, *, prec=None):
    """analytic + 2 sum(error_bounds): an l1 sensitivity of the COMPUTED float64 vector.

    With x, x' the exact vectors on neighbours (||x - x'||_1 <= analytic) and fl(x), fl(x')
    the computed ones (sum_i |fl(x)_i - x_i| <= E, same for x'), the triangle inequality gives
    ||fl(x) - fl(x')||_1 <= analytic + 2 E. ``error_bounds``: one bound or an iterable of them
    (their sum is E). The hardened release (``noise="secure"``) needs this
    (``proofs_notes/23-hardened-noise.md``). Paper: none (PAPER.md §5 item 18).
    Proof note: ``proofs_notes/17-sensitivity.md``.
    """
    ctx = context(prec)
    a = to_mpf(analytic, ctx, "analytic")
    if a < 0:
        raise ParameterError("analytic", "must be >= 0", analytic)
    items = [error_bounds] if not isinstance(error_bounds, (list, tuple)) else list(error_bounds)
    errs = [to_mpf(e, ctx, "error_bounds") for e in items]
    if any(e < 0 for e in errs):
        raise ParameterError("error_bounds", "must be >= 0", error_bounds)
    return a + 2 * ctx.fsum(errs)
