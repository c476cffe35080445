"""DPTreeDistance on a PUBLIC GRID: weighted l1 and squared l2 distance queries, exactly.

Paper: Alg. 'DPTreeDistance' Init/Query and the 1-D weighted distance lemma (v2 App. E-F; the ICLR version's "Algorithms 5 and 6"); spec PAPER.md §2.4, §3.2 (sound
variant), §5 item 7. Proof notes: ``proofs_notes/07-dptree-distance-l1.md`` (p = 1),
``proofs_notes/08-dptree-distance-l2sq.md`` (p = 2).

Sound variant (never the sorted private keys): the leaves are the G cells of a public grid on
[0, R_x] (``upper`` = R_x), ``cell(x) = min(floor(x G / R_x), G - 1)`` (:func:`grid_cell`, THE
cell rule of the tree mechanism and of the fast path). For each moment k = 0..p a DPTree
(:mod:`dpxattn.reference.dptree`) over the leaves ``leaf_k[g] = sum_{cell(x_i) = g} w_i x_i^k``,
with per-level sensitivity ``2 R_w R_x^k`` (:func:`moment_sensitivity`; replace one (x, w) pair:
at most two leaves, so at most two nodes per level, change) and per-level budget from
:func:`dpxattn.accounting.plan_dptree_distance` (eps/((p+1) L), delta/((p+1) L)).

Numbers: the bound, the points and the query are taken at the working precision ``prec``
(:func:`working_bound`, :func:`dpxattn.reference._mp.to_mpf`; exact for dyadic inputs such as
floats) and the cell rule is then applied EXACTLY to those values (rational arithmetic, no
rounding), so validation, cells, sides and sensitivities all refer to the same numbers. A float64
implementation that evaluates ``floor(x * G / M)`` in floating point can disagree with this rule
when x G / M lies within an ulp of an integer (e.g. x = 0.3, G = 10, M = 1: exact cell 2, float
cell 3); see ``proofs_notes/07-dptree-distance-l1.md``.

Query forms (``form=``):

* p = 1, ``"split"`` (default): y's cell j goes to the prefix when y is in its upper half, to the
  suffix otherwise (:func:`l1_prefix_end`); answer ``y P0 - P1 + S1' - y S0'`` with P = prefix
  sums, S' = suffix sums. Discretisation error <= (R_x/G) sum_{i in y's cell} |w_i|
  (:func:`discretisation_error_bound`).
* p = 1, ``"prefix_total"``: the paper's listing ``y (2 P0 - S0) - (2 P1 - S1)`` with S = the
  noisy roots; same noiseless value and discretisation error, more noise (2|C| + 1 nodes).
* p = 2, ``"split"`` (default; the cross-attention ``tree`` mechanism's form): prefix = cells
  [0, j], suffix = [j + 1, G - 1], j = cell(y); ``Pm = prefix_m + suffix_m``,
  answer ``y^2 P0 - 2 y P1 + P2``. Exact (no discretisation error): the split changes only which
  node noises enter, never the noiseless value.
* p = 2, ``"totals"``: the three roots only, ``y^2 S0 - 2 y S1 + S2``.

Every answer is a fixed linear combination of noisy nodes
(:meth:`DPTreeDistance.error_coefficients`, keys ``(moment k, node)``), so
answer - noiseless = sum coef * node noise, exactly, and ``|error| <= sum |coef| A_k`` surely
(:meth:`DPTreeDistance.sure_error_bound`).

Uniform order: node-major, ``u[i (p + 1) + k]`` is node i of moment tree k (i = 0..2N - 2 in
level order, k = 0..p); :func:`noise_count` = (2N - 1)(p + 1). This is the cross-attention
order of ``proofs_notes/01-conventions.md`` restricted to one (copy, column, coordinate).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from dpxattn.accounting import padded_size, plan_dptree_distance
from dpxattn.errors import BoundError, ParameterError, ShapeError
from dpxattn.params import check_positive, check_positive_int
from dpxattn.reference._mp import check_entries, context, resolve_prec, to_mpf, to_vector
from dpxattn.reference.dptree import (PAPER_FAILURE, DPTree, canonical_decomposition,
                                      draw_uniforms, exact_node_sums, hoeffding_bound,
                                      numerics_label)

__all__ = [
    "FORMS",
    "exact_fraction",
    "working_bound",
    "grid_cell",
    "cell_bounds",
    "l1_prefix_end",
    "split_ranges",
    "moment_sensitivity",
    "moment_leaves",
    "answer_coefficients",
    "noiseless_answer",
    "weighted_distance",
    "discretisation_error_bound",
    "noise_count",
    "DPTreeDistance",
]

#: admissible query forms per power p; the first is the default
FORMS = {1: ("split", "prefix_total"), 2: ("split", "totals")}


# ---------------------------------------------------------------------------------------------
# The public grid
# ---------------------------------------------------------------------------------------------

def exact_fraction(x, name: str = "value") -> Fraction:
    """The exact rational value of an int, float, Fraction, numpy scalar or finite mpf.

    Used to evaluate the public-grid cell rule exactly (PAPER.md §3.2 sound variant; v2 App. F).
    """
    if isinstance(x, Fraction):
        return x
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return Fraction(int(x))
    v = to_mpf(x, context(None), name)  # exact for float, numpy floats and mpf
    if not v.context.isfinite(v):
        raise BoundError(name, "must be finite", x)
    sign, man, exp, _ = v._mpf_
    f = Fraction(man) * (Fraction(2) ** exp)
    return -f if sign else f


def working_bound(upper, ctx):
    """The public bound ``upper`` as an mpf of ``ctx`` (rounded to nearest once if not dyadic).

    Every structure and query of this module works with the bound, the points and the query at
    the working precision: points are validated against this value and the cell rule is then
    applied exactly to these values, so validation, cells and sensitivities agree.
    Paper: the public bound R_x of DPTreeDistance (v2 App. F); PAPER.md §3.2.
    """
    check_positive("upper", upper)
    return to_mpf(upper, ctx, "upper")


def _check_grid(upper, G) -> tuple[Fraction, int]:
    check_positive("upper", upper)
    return exact_fraction(upper, "upper"), check_positive_int("grid_size", G)


def grid_cell(x, upper, G: int) -> int:
    """THE cell rule: ``min(floor(x G / upper), G - 1)`` for x in [0, upper], evaluated exactly.

    The grid is public (G cells of width upper/G on [0, upper]; the last cell is closed), so
    locating a point or a query uses no private data (PAPER §3.2 sound variant, §5 item 7).
    The floor is taken of the exact rational x G / upper of the given numbers (no rounding);
    the structures call it on values already at their working precision.
    Paper: DPTreeDistance, sound variant (v2 App. F); spec PAPER.md §3.2.
    """
    up, G = _check_grid(upper, G)
    v = exact_fraction(x, "x")
    if v < 0 or v > up:
        raise BoundError("x", f"must lie in [0, upper] = [0, {float(up)!r}]", x)
    return min(math.floor(v * G / up), G - 1)


def cell_bounds(g: int, upper, G: int) -> tuple[Fraction, Fraction]:
    """The exact endpoints [g upper/G, (g + 1) upper/G] of cell g of the public grid.

    Paper: DPTreeDistance, sound variant (v2 App. F); spec PAPER.md §3.2.
    """
    up, G = _check_grid(upper, G)
    g = check_positive_int("cell", g, minimum=0)
    if g >= G:
        raise ParameterError("cell", f"must be < G = {G}", g)
    return up * g / G, up * (g + 1) / G


def l1_prefix_end(y, upper, G: int) -> int:
    """Last cell of the prefix for p = 1: j if y is in the upper half of its cell j, else j - 1.

    Putting y's cell on the side of its boundary nearest to y bounds the discretisation error
    by (upper/G) sum_{i in cell j} |w_i| (always the same side would double it). Returns -1 for
    an empty prefix. Paper: sound variant (v2 App. F); spec PAPER.md §3.2.
    """
    j = grid_cell(y, upper, G)
    a, b = cell_bounds(j, upper, G)
    return j if 2 * (exact_fraction(y, "y") - a) >= b - a else j - 1


def split_ranges(prefix_end: int, G: int) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(prefix, suffix) leaf ranges [0, e] and [e + 1, G - 1]; ``None`` where a range is empty.

    Paper: DPTreeDistance.Query, prefix and suffix sums (v2 App. F); spec
    PAPER.md §3.2; ``proofs_notes/01-conventions.md`` (split).
    """
    G = check_positive_int("grid_size", G)
    if not -1 <= prefix_end <= G - 1:
        raise ParameterError("prefix_end", f"must lie in [-1, G - 1] = [-1, {G - 1}]", prefix_end)
    prefix = (0, prefix_end) if prefix_end >= 0 else None
    suffix = (prefix_end + 1, G - 1) if prefix_end < G - 1 else None
    return prefix, suffix


# ---------------------------------------------------------------------------------------------
# Moments and their sensitivity
# ---------------------------------------------------------------------------------------------

def moment_sensitivity(k: int, *, upper, R_w, prec=None):
    """Per-level l1 sensitivity of moment tree k: 2 R_w upper^k, computed exactly (no rounding).

    Replace one pair (x, w) -> (x', w'): leaf cell(x) loses w x^k and leaf cell(x') gains
    w' x'^k (the same leaf when the cells agree), so at most two nodes per level change, by
    |w x^k| + |w' x'^k| <= 2 R_w upper^k in l1. Paper: DPTreeDistance sensitivity (v2 App. F); spec PAPER.md §3.2 ("Delta_k = 2 R_w R_x^k"), §5 item 13.
    """
    ctx = context(prec)
    k = check_positive_int("k", k, minimum=0)
    up = to_mpf(check_positive("upper", upper), ctx, "upper")
    rw = to_mpf(check_positive("R_w", R_w), ctx, "R_w")
    power = ctx.one
    for _ in range(k):
        power = ctx.fmul(power, up, exact=True)
    return ctx.fmul(2 * rw, power, exact=True)


def _power(x, k, ctx):
    out = ctx.one
    for _ in range(k):
        out = ctx.fmul(out, x, exact=True)
    return out


def _points_weights(points, weights, *, upper, R_w, ctx):
    xs = to_vector(points, ctx, "x")
    ws = to_vector(weights, ctx, "w")
    if len(xs) != len(ws):
        raise ShapeError("w", f"must have the same length as x ({len(xs)})", f"length {len(ws)}")
    check_entries(xs, "x", 0, upper, "[0, R_x]")
    check_entries(ws, "w", -R_w, R_w, "[-R_w, R_w]")
    return xs, ws


def moment_leaves(points, weights, *, upper, grid_size: int, k: int, prec=None) -> list:
    """The G leaves of moment tree k, exactly: leaf g = sum_{cell(x_i) = g} w_i x_i^k (mpf).

    Private (used inside the build and by the tests). Exact products and sums.
    Paper: DPTreeDistance.Init, b^(k) = w x^k (v2 App. F); spec PAPER.md §3.2
    (sound variant: leaves are public grid cells, not sorted positions).
    """
    ctx = context(prec)
    xs = to_vector(points, ctx, "x")
    ws = to_vector(weights, ctx, "w")
    if len(xs) != len(ws):
        raise ShapeError("w", f"must have the same length as x ({len(xs)})", f"length {len(ws)}")
    G = check_positive_int("grid_size", grid_size)
    k = check_positive_int("k", k, minimum=0)
    upper = working_bound(upper, ctx)
    leaves = [ctx.zero] * G
    for x, w in zip(xs, ws):
        g = grid_cell(x, upper, G)
        leaves[g] = ctx.fadd(leaves[g], ctx.fmul(w, _power(x, k, ctx), exact=True), exact=True)
    return leaves


# ---------------------------------------------------------------------------------------------
# Query coefficients (public: they depend on y and the public grid only)
# ---------------------------------------------------------------------------------------------

def _check_form(p, form) -> str:
    if p not in FORMS:
        raise ParameterError("p", "must be 1 (weighted l1) or 2 (weighted squared l2)", p)
    if form is None:
        return FORMS[p][0]
    if form not in FORMS[p]:
        raise ParameterError("form", f"must be one of {FORMS[p]} for p = {p}", form)
    return form


def answer_coefficients(y, *, upper, grid_size: int, p: int, form=None, prec=None) -> dict:
    """(moment k, node) -> coefficient (mpf) of the answer to query y, in level-order nodes.

    The answer is ``sum coef * node value`` over the p + 1 moment trees; with noisy nodes it is
    DPTreeDistance.Query, with exact node sums the noiseless grid answer, and their difference
    is ``sum coef * node noise``. Forms: see the module docstring.
    Paper: DPTreeDistance.Query (v2 App. F); spec PAPER.md §3.2.
    """
    form = _check_form(p, form)
    ctx = context(prec)
    upper = working_bound(upper, ctx)
    up, G = _check_grid(upper, grid_size)
    yv = to_mpf(y, ctx, "y")  # cells and sides are decided on y at the working precision
    if not ctx.isfinite(yv) or yv < 0 or exact_fraction(yv, "y") > up:
        raise BoundError("y", f"must lie in [0, upper] = [0, {float(up)!r}]", y)
    N = padded_size(G)
    coef: dict = {}

    def add(k, nodes, c):
        for i in nodes:
            coef[(k, i)] = coef.get((k, i), ctx.zero) + c

    def nodes_of(rng):
        return canonical_decomposition(rng[0], rng[1], N) if rng is not None else ()

    if p == 2:
        weights = (yv * yv, -2 * yv, ctx.one)
        if form == "totals":
            for k in range(3):
                add(k, (0,), weights[k])
        else:
            prefix, suffix = split_ranges(grid_cell(yv, upper, G), G)
            for k in range(3):
                add(k, nodes_of(prefix) + nodes_of(suffix), weights[k])
        return {key: c for key, c in coef.items() if c != 0}
    prefix, suffix = split_ranges(l1_prefix_end(yv, upper, G), G)
    if form == "split":  # sum_prefix w (y - x) + sum_suffix w (x - y)
        add(0, nodes_of(prefix), yv)
        add(1, nodes_of(prefix), -ctx.one)
        add(0, nodes_of(suffix), -yv)
        add(1, nodes_of(suffix), ctx.one)
    else:  # paper listing: y (2 P0 - S0) - (2 P1 - S1), S = root
        add(0, nodes_of(prefix), 2 * yv)
        add(1, nodes_of(prefix), -2 * ctx.one)
        add(0, (0,), -yv)
        add(1, (0,), ctx.one)
    return {key: c for key, c in coef.items() if c != 0}


def _apply(coef: dict, node_tables, ctx):
    return ctx.fsum(c * node_tables[k][i] for (k, i), c in coef.items())


def noiseless_answer(points, weights, y, *, upper, grid_size: int, p: int, form=None, prec=None):
    """The answer's linear functional applied to the EXACT node sums (no noise): private.

    For p = 2 it equals :func:`weighted_distance` (any form); for p = 1 it differs from it by
    at most :func:`discretisation_error_bound`. Used by the tests (zero-noise check).
    Paper: DPTreeDistance.Query without noise (v2 App. F); PAPER.md §3.2.
    """
    ctx = context(prec)
    coef = answer_coefficients(y, upper=upper, grid_size=grid_size, p=p, form=form, prec=prec)
    tables = [exact_node_sums(moment_leaves(points, weights, upper=upper, grid_size=grid_size,
                                            k=k, prec=prec), prec=prec) for k in range(p + 1)]
    return _apply(coef, tables, ctx)


def weighted_distance(points, weights, y, *, p: int, prec=None):
    """Brute force sum_i w_i |y - x_i|^p (exact products and sum, rounded once at ``prec``).

    Paper: weighted l_p^p distance query (v2 App. E); spec PAPER.md §2.4.
    """
    ctx = context(prec)
    if p not in FORMS:
        raise ParameterError("p", "must be 1 (weighted l1) or 2 (weighted squared l2)", p)
    xs = to_vector(points, ctx, "x")
    ws = to_vector(weights, ctx, "w")
    yv = to_mpf(y, ctx, "y")
    terms = [ctx.fmul(w, _power(abs(ctx.fsub(yv, x, exact=True)), p, ctx), exact=True)
             for x, w in zip(xs, ws)]
    return ctx.fsum(terms)


def discretisation_error_bound(points, weights, y, *, upper, grid_size: int, prec=None):
    """(upper/G) sum_{cell(x_i) = cell(y)} |w_i|: bound on |noiseless p = 1 answer - exact|.

    With y's cell j on the side nearest y (:func:`l1_prefix_end`), only points of cell j can be
    on the wrong side, each at distance <= half a cell from y, contributing 2 |w_i| |x_i - y|
    <= |w_i| upper/G. Private (it reads the weights of y's cell); the public worst case is
    n R_w upper/G. Rounded up. Paper: sound variant (v2 App. F); spec PAPER.md
    §3.2.
    """
    ctx = context(prec)
    xs = to_vector(points, ctx, "x")
    ws = to_vector(weights, ctx, "w")
    G = check_positive_int("grid_size", grid_size)
    upper = working_bound(upper, ctx)
    j = grid_cell(to_mpf(y, ctx, "y"), upper, G)
    mass = ctx.fsum(abs(w) for x, w in zip(xs, ws) if grid_cell(x, upper, G) == j)
    width = ctx.fdiv(upper, G, rounding="u")
    return ctx.fmul(ctx.fadd(mass, ctx.ldexp(mass, -ctx.prec), rounding="u"), width, rounding="u")


def noise_count(grid_size: int, p: int) -> int:
    """Uniforms one DPTreeDistance consumes: (2N - 1)(p + 1), N = 2^ceil(log2 G).

    p + 1 moment trees, every node noised (v2 App. F); spec PAPER.md §3.2.
    """
    if p not in FORMS:
        raise ParameterError("p", "must be 1 (weighted l1) or 2 (weighted squared l2)", p)
    return (2 * padded_size(grid_size) - 1) * (p + 1)


# ---------------------------------------------------------------------------------------------
# The structure
# ---------------------------------------------------------------------------------------------

class DPTreeDistance:
    """A built DPTreeDistance: p + 1 noisy moment trees over a public grid, nothing private.

    Paper: Alg. 'DPTreeDistance' (v2 App. F), sound variant of PAPER.md §3.2.
    Attributes: ``p``, ``upper`` (R_x), ``R_w``, ``grid_size`` (G), ``n``, ``prec``, ``trees``
    (tuple of p + 1 :class:`DPTree`, moment k at index k), ``plan`` (labelled
    :class:`dpxattn.accounting.PrivacyPlan`; ``None`` when part of a larger structure).
    """

    __slots__ = ("p", "upper", "R_w", "grid_size", "n", "prec", "trees", "plan")

    def __init__(self, *, p, upper, R_w, grid_size, n, prec, trees, plan):
        self.p = p
        self.upper = upper
        self.R_w = R_w
        self.grid_size = grid_size
        self.n = n
        self.prec = prec
        self.trees = tuple(trees)
        self.plan = plan

    @staticmethod
    def noise_count(grid_size: int, p: int) -> int:
        """(2N - 1)(p + 1), node-major order (node i, then moment k)."""
        return noise_count(grid_size, p)

    @classmethod
    def build(cls, points, weights, *, upper, R_w, p: int, eps, delta, grid_size=None,
              uniforms=None, generator=None, prec=None) -> "DPTreeDistance":
        """DPTreeDistance.Init on the public grid (sound variant).

        ``points``: x (n,) in [0, upper]; ``weights``: w (n,) in [-R_w, R_w] (both checked,
        :class:`BoundError` naming the bound); ``grid_size`` G (default n). (eps, delta)-DP
        under replace-one-(x, w)-pair adjacency. Paper: DPTreeDistance.Init (v2 App. F); spec PAPER.md §3.2.
        """
        p_bits = resolve_prec(prec)
        check_positive("upper", upper)
        check_positive("R_w", R_w)
        ctx = context(p_bits)
        upper = working_bound(upper, ctx)
        xs, ws = _points_weights(points, weights, upper=upper, R_w=R_w, ctx=ctx)
        n = len(xs)
        G = n if grid_size is None else check_positive_int("grid_size", grid_size)
        plan = plan_dptree_distance(eps, delta, G, p=p)
        u, label = draw_uniforms(noise_count(G, p), uniforms=uniforms, generator=generator)
        out = cls._from_level_budget(xs, ws, upper=upper, R_w=R_w, p=p, grid_size=G,
                                     level_budget=plan.share("tree_level"), uniforms=u,
                                     prec=p_bits)
        out.plan = plan.with_labels(randomness=label, clip=False, numerics=numerics_label(p_bits))
        return out

    @classmethod
    def _from_level_budget(cls, xs, ws, *, upper, R_w, p, grid_size, level_budget, uniforms,
                           prec, leaves=None, sensitivities=None, n=None) -> "DPTreeDistance":
        """Assemble from validated mpf points/weights, a level budget and node-major uniforms.

        From sums instead (``xs = ws = None``): ``leaves`` holds the p + 1 moment trees' G leaf
        values computed by the caller (exact numbers; e.g. the streaming tree's rounded sums,
        :func:`dpxattn.reference.tree_accumulation.rounded_tree_sums` times 2^-c_m), ``n`` the
        row count they sum. ``sensitivities``: None (each tree's :func:`moment_sensitivity`) or
        p + 1 per-level sensitivities used as given (the caller's bound on one level's l1
        change). Paper: DPTreeDistance.Init (v2 App. F); spec PAPER.md §3.2; from sums: not in
        the paper (PAPER.md §5 item 18, ``proofs_notes/30-exact-accumulation.md``)."""
        eps_l, delta_l = level_budget
        upper = working_bound(upper, context(prec))
        m = p + 1
        trees = []
        for k in range(m):
            values = (moment_leaves(xs, ws, upper=upper, grid_size=grid_size, k=k, prec=prec)
                      if leaves is None else leaves[k])
            sens = (moment_sensitivity(k, upper=upper, R_w=R_w, prec=prec)
                    if sensitivities is None else sensitivities[k])
            trees.append(DPTree._from_level_budget(
                values, sensitivity=sens, eps_level=eps_l, delta_level=delta_l,
                uniforms=np.asarray(uniforms)[k::m], prec=prec))
        return cls(p=p, upper=upper, R_w=R_w, grid_size=grid_size,
                   n=len(xs) if leaves is None else n, prec=prec, trees=trees, plan=None)

    # -- queries (post-processing of the noisy nodes only) --------------------------------------

    def error_coefficients(self, y, *, form=None) -> dict:
        """(moment k, node) -> coefficient: answer - noiseless = sum coef * noise(k, node)."""
        return answer_coefficients(y, upper=self.upper, grid_size=self.grid_size, p=self.p,
                                   form=form, prec=self.prec)

    def query(self, y, *, form=None):
        """DPTreeDistance.Query(y): the noisy weighted distance sum_i w_i |y - x_i|^p.

        Paper: DPTreeDistance.Query (v2 App. F); spec PAPER.md §3.2.
        """
        coef = self.error_coefficients(y, form=form)
        return _apply(coef, [t.noisy for t in self.trees], context(self.prec))

    def support_bounds(self) -> tuple:
        """A_k: the certified per-node truncation bound of moment tree k."""
        return tuple(t.support_bound for t in self.trees)

    def sure_error_bound(self, y, *, form=None):
        """sum |coef| A_k over the query's nodes: surely |query(y) - noiseless| <= this.

        For p = 2 the noiseless answer is the exact weighted distance; for p = 1 add
        :func:`discretisation_error_bound`. Rounded up. Paper: DPTreeDistance error lemma,
        deterministic form (v2 App. F); spec PAPER.md §3.2.
        """
        ctx = context(self.prec)
        total = ctx.zero
        for r in self.noise_ranges(y, form=form):
            total = ctx.fadd(total, r, rounding="u")
        return total

    def noise_ranges(self, y, *, form=None) -> list:
        """|coef| A_k for every noise term of the answer (rounded up): its sure range."""
        ctx = context(self.prec)
        A = self.support_bounds()
        return [ctx.fmul(abs(c), A[k], rounding="u")
                for (k, _), c in self.error_coefficients(y, form=form).items()]

    def hoeffding_error_bound(self, y, *, form=None, failure=PAPER_FAILURE):
        """|query(y) - noiseless| <= this with probability >= 1 - failure (Hoeffding).

        The noise terms are independent and bounded (:meth:`noise_ranges`), so
        :func:`dpxattn.reference.dptree.hoeffding_bound` applies. A high-probability envelope
        much tighter than :meth:`sure_error_bound` when many nodes enter (DESIGN §9 (c)).
        """
        ranges = self.noise_ranges(y, form=form)
        return hoeffding_bound(ranges, failure) if ranges else context(self.prec).zero
