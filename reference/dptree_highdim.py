"""DPTreeHighDim: weighted distance queries in D dimensions, one DPTreeDistance per coordinate.

Paper: Alg. 'DPTreeHighDim' Init/Query and its lemma (v2 App. G); spec PAPER.md
§2.4 (the distance splits exactly over coordinates), §3.3, §3.7. Proof note:
``proofs_notes/09-highdim.md``.

Data: points X (n x D), coordinate t in [0, upper_t] (``upper``: one public bound, or one per
coordinate, e.g. the feature bounds M_t of the cross-attention), weights w (n,) in [-R_w, R_w].
Query y (D,), y_t in [0, upper_t]: ``sum_t DPTreeDistance_t.query(y_t)`` estimates
``sum_i w_i ||y - x_i||_p^p = sum_t sum_i w_i |y_t - x_it|^p``.

Budget across the D coordinates (:func:`dpxattn.accounting.plan_dptree_highdim`):

* ``composition="basic"``: (eps/D, delta/D) per coordinate; total (eps, delta).
* ``composition="advanced"``: per-coordinate eps_t from the advanced composition theorem
  (:func:`coordinate_eps`, via :mod:`dpxattn.reference.composition`), delta_t = delta/D;
  total (eps, delta + delta').

Inside a coordinate the split over p + 1 moment trees and L levels is that of
:mod:`dpxattn.reference.dptree_distance`, on a public grid of G cells per coordinate.

Error: the answer minus the noiseless answer is ``sum coef * node noise`` over keys
``(coordinate t, moment k, node)`` (:meth:`DPTreeHighDim.error_coefficients`); the coordinates'
noises are independent. Sure bound: the sum of the coordinates' sure bounds.

Uniform order: node-major, ``u[i D (p + 1) + t (p + 1) + k]`` is node i (level order) of moment
tree k of coordinate t; :func:`noise_count` = (2N - 1) D (p + 1). This is the cross-attention
order of ``proofs_notes/01-conventions.md`` restricted to one (copy, column): for node i, the
columns (coordinate t, moment m).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from dpxattn.accounting import COMPOSITIONS, padded_size, plan_dptree_highdim
from dpxattn.errors import BoundError, ParameterError, ShapeError
from dpxattn.params import check_positive, check_positive_int, check_privacy
from dpxattn.reference import composition
from dpxattn.reference import dptree_distance as dd
from dpxattn.reference._mp import check_entries, context, resolve_prec, to_matrix, to_vector
from dpxattn.reference.dptree import PAPER_FAILURE, draw_uniforms, hoeffding_bound, numerics_label

__all__ = [
    "coordinate_eps",
    "coordinate_uppers",
    "coordinate_uniforms",
    "noise_count",
    "weighted_distance",
    "discretisation_error_bound",
    "DPTreeHighDim",
]


def noise_count(grid_size: int, D: int, p: int) -> int:
    """Uniforms one DPTreeHighDim consumes: (2N - 1) D (p + 1), N = 2^ceil(log2 G).

    D DPTreeDistance structures (v2 App. G); spec PAPER.md §3.3.
    """
    D = check_positive_int("D", D)
    return dd.noise_count(grid_size, p) * D


def coordinate_uniforms(uniforms, *, grid_size: int, D: int, p: int, t: int) -> np.ndarray:
    """Coordinate t's uniforms, in its own node-major (node i, moment k) order.

    ``uniforms`` is the structure's array in the order of the module docstring; the result is
    ``uniforms.reshape(2N - 1, D, p + 1)[:, t, :].ravel()``. Paper: DPTreeHighDim.Init, one
    structure per coordinate (v2 App. G); spec PAPER.md §3.3.
    """
    u = np.asarray(uniforms, dtype=np.float64)
    nodes = 2 * padded_size(grid_size) - 1
    if u.shape != (noise_count(grid_size, D, p),):
        raise ParameterError("uniforms", f"must have shape ({noise_count(grid_size, D, p)},)",
                             f"shape {u.shape}")
    return u.reshape(nodes, D, p + 1)[:, t, :].ravel()


def coordinate_uppers(upper, D: int) -> list:
    """The D per-coordinate public bounds: ``upper`` repeated, or ``upper`` itself (length D).

    Per-coordinate bounds (e.g. the features' M_t) are a stated improvement on one R for all
    coordinates (PAPER.md §5 item 11); DPTreeHighDim (v2 App. G), §3.3.
    """
    if isinstance(upper, (list, tuple, np.ndarray)):
        ups = (list(np.asarray(upper, dtype=object).ravel()) if isinstance(upper, np.ndarray)
               else list(upper))
        if len(ups) != D:
            raise ShapeError("upper", f"must be one bound or D = {D} bounds", f"length {len(ups)}")
    else:
        ups = [upper] * D
    for t, u in enumerate(ups):
        check_positive(f"upper[{t}]", u)
    return ups


def coordinate_eps(eps, D: int, delta_prime, *, prec=None) -> Fraction:
    """Advanced composition: the per-coordinate eps_t whose D-fold composition is eps.

    eps_t is the largest value, to ``prec`` bits, with a certified
    sqrt(2 D ln(1/delta')) eps_t + D eps_t (e^eps_t - 1) <= eps
    (:func:`dpxattn.reference.composition.advanced_step_eps`, Dwork-Roth Thm 3.20), returned as
    the exact Fraction of that (dyadic) value, so the plan records exactly what the trees use.
    Paper: DPTreeHighDim with (delta', c) (v1/v2, App. G); spec PAPER.md §2.2,
    §3.3, §5 item 16 (solve for eps_t rather than trusting c).
    """
    D = check_positive_int("D", D)
    return dd.exact_fraction(composition.advanced_step_eps(D, eps, delta_prime, prec=prec),
                             "eps_t")


def _points(points, weights, uppers, R_w, ctx):
    X = to_matrix(points, ctx, "X")
    ws = to_vector(weights, ctx, "w")
    if len(X) != len(ws):
        raise ShapeError("w", f"must have one weight per row of X ({len(X)})", f"length {len(ws)}")
    cols = [[row[t] for row in X] for t in range(len(X[0]))]
    for t, col in enumerate(cols):
        check_entries(col, f"X[:, {t}]", 0, uppers[t], f"[0, upper_{t}]")
    check_entries(ws, "w", -R_w, R_w, "[-R_w, R_w]")
    return cols, ws


def weighted_distance(points, weights, y, *, p: int, prec=None):
    """Brute force sum_i w_i ||y - x_i||_p^p = sum_t sum_i w_i |y_t - x_it|^p (PAPER §2.4)."""
    ctx = context(prec)
    X = to_matrix(points, ctx, "X")
    yv = to_vector(y, ctx, "y")
    if len(yv) != len(X[0]):
        raise ShapeError("y", f"must have D = {len(X[0])} entries", f"length {len(yv)}")
    return ctx.fsum(dd.weighted_distance([row[t] for row in X], weights, yv[t], p=p, prec=prec)
                    for t in range(len(yv)))


def discretisation_error_bound(points, weights, y, *, upper, grid_size: int, prec=None):
    """sum_t (upper_t/G) sum_{cell(x_it) = cell(y_t)} |w_i|: the p = 1 grid error (private).

    Paper: DPTreeHighDim over the sound DPTreeDistance (v2 App. F-G); spec
    PAPER.md §3.2, §3.3.
    """
    ctx = context(prec)
    X = to_matrix(points, ctx, "X")
    D = len(X[0])
    ups = coordinate_uppers(upper, D)
    yv = to_vector(y, ctx, "y")
    total = ctx.zero
    for t in range(D):
        b = dd.discretisation_error_bound([row[t] for row in X], weights, yv[t], upper=ups[t],
                                          grid_size=grid_size, prec=prec)
        total = ctx.fadd(total, b, rounding="u")
    return total


class DPTreeHighDim:
    """A built DPTreeHighDim: D noisy DPTreeDistance structures, nothing private.

    Paper: Alg. 'DPTreeHighDim' (v2 App. G); spec PAPER.md §3.3. Attributes:
    ``p``, ``D``, ``uppers`` (D public bounds), ``R_w``, ``grid_size``, ``n``, ``prec``,
    ``composition``, ``coordinates`` (tuple of D :class:`DPTreeDistance`), ``plan``.
    """

    __slots__ = ("p", "D", "uppers", "R_w", "grid_size", "n", "prec", "composition",
                 "coordinates", "plan")

    def __init__(self, *, p, D, uppers, R_w, grid_size, n, prec, composition, coordinates, plan):
        self.p = p
        self.D = D
        self.uppers = tuple(uppers)
        self.R_w = R_w
        self.grid_size = grid_size
        self.n = n
        self.prec = prec
        self.composition = composition
        self.coordinates = tuple(coordinates)
        self.plan = plan

    @staticmethod
    def noise_count(grid_size: int, D: int, p: int) -> int:
        """(2N - 1) D (p + 1), node-major order (node i, coordinate t, moment k)."""
        return noise_count(grid_size, D, p)

    @classmethod
    def build(cls, points, weights, *, upper, R_w, p: int, eps, delta, grid_size=None,
              composition: str = "basic", delta_prime=None, uniforms=None, generator=None,
              prec=None) -> "DPTreeHighDim":
        """DPTreeHighDim.Init: one DPTreeDistance per coordinate on its public grid.

        ``points``: X (n, D), column t in [0, upper_t]; ``weights``: w (n,) in [-R_w, R_w];
        ``grid_size``: G cells per coordinate (default n). (eps, delta)-DP (basic) or
        (eps, delta + delta')-DP (advanced) under replace-one-(x_i, w_i) adjacency.
        Paper: DPTreeHighDim.Init (v2 App. G); spec PAPER.md §3.3.
        """
        p_bits = resolve_prec(prec)
        check_privacy(eps, delta)
        check_positive("R_w", R_w)
        if composition not in COMPOSITIONS:
            raise ParameterError("composition", f"must be one of {COMPOSITIONS}", composition)
        ctx = context(p_bits)
        X = to_matrix(points, ctx, "X")
        D = len(X[0])
        uppers = coordinate_uppers(upper, D)
        cols, ws = _points(X, weights, uppers, R_w, ctx)
        n = len(ws)
        G = n if grid_size is None else check_positive_int("grid_size", grid_size)
        if composition == "advanced":
            if delta_prime is None:
                raise ParameterError("delta_prime", "is required with composition='advanced'")
            eps_t = coordinate_eps(eps, D, delta_prime, prec=p_bits)
            plan = plan_dptree_highdim(eps, delta, G, D=D, p=p, composition="advanced",
                                       delta_prime=delta_prime, eps_coordinate=eps_t)
        else:
            plan = plan_dptree_highdim(eps, delta, G, D=D, p=p, delta_prime=delta_prime)
        u, label = draw_uniforms(noise_count(G, D, p), uniforms=uniforms, generator=generator)
        level = plan.share("tree_level")
        coords = [dd.DPTreeDistance._from_level_budget(
            cols[t], ws, upper=uppers[t], R_w=R_w, p=p, grid_size=G, level_budget=level,
            uniforms=coordinate_uniforms(u, grid_size=G, D=D, p=p, t=t), prec=p_bits)
            for t in range(D)]
        return cls(p=p, D=D, uppers=uppers, R_w=R_w, grid_size=G, n=n, prec=p_bits,
                   composition=composition, coordinates=coords,
                   plan=plan.with_labels(randomness=label, clip=False,
                                         numerics=numerics_label(p_bits)))

    # -- queries (post-processing of the noisy nodes only) --------------------------------------

    def _query_point(self, y) -> list:
        yv = list(y) if not isinstance(y, np.ndarray) else list(y.ravel())
        if len(yv) != self.D:
            raise ShapeError("y", f"must have D = {self.D} entries", f"length {len(yv)}")
        for t, v in enumerate(yv):
            f = dd.exact_fraction(v, f"y[{t}]")
            if f < 0 or f > dd.exact_fraction(self.uppers[t], "upper"):
                raise BoundError(f"y[{t}]", f"must lie in [0, upper_{t}]", v)
        return yv

    def query(self, y, *, form=None):
        """sum_t DPTreeDistance_t.query(y_t): the noisy sum_i w_i ||y - x_i||_p^p.

        Paper: DPTreeHighDim.Query (v2 App. G); spec PAPER.md §3.3.
        """
        yv = self._query_point(y)
        ctx = context(self.prec)
        return ctx.fsum(c.query(yv[t], form=form) for t, c in enumerate(self.coordinates))

    def error_coefficients(self, y, *, form=None) -> dict:
        """(coordinate t, moment k, node) -> coefficient: answer - noiseless = sum coef * noise."""
        yv = self._query_point(y)
        return {(t, k, i): c for t, s in enumerate(self.coordinates)
                for (k, i), c in s.error_coefficients(yv[t], form=form).items()}

    def noise_ranges(self, y, *, form=None) -> list:
        """|coef| A for every noise term of the answer (rounded up)."""
        yv = self._query_point(y)
        return [r for t, s in enumerate(self.coordinates) for r in s.noise_ranges(yv[t], form=form)]

    def sure_error_bound(self, y, *, form=None):
        """sum over coordinates of their sure bounds: surely |query(y) - noiseless| <= this.

        For p = 1 add :func:`discretisation_error_bound` to bound the distance to the exact
        answer. Grows like D x (per-coordinate bound): ~ D^2 under basic composition (the
        paper's r^2). Paper: DPTreeHighDim error (v2 App. G); PAPER.md §3.3.
        """
        ctx = context(self.prec)
        total = ctx.zero
        for r in self.noise_ranges(y, form=form):
            total = ctx.fadd(total, r, rounding="u")
        return total

    def hoeffding_error_bound(self, y, *, form=None, failure=PAPER_FAILURE):
        """|query(y) - noiseless| <= this w.p. >= 1 - failure: independent coordinates and nodes
        (Hoeffding, :func:`dpxattn.reference.dptree.hoeffding_bound`); grows like sqrt(D) x
        (per-coordinate range), ~ D^{1.5} under basic composition (PAPER §3.3)."""
        ranges = self.noise_ranges(y, form=form)
        return hoeffding_bound(ranges, failure) if ranges else context(self.prec).zero
