"""Per-group noise multipliers of the Gaussian ``tree`` release: where its l2 budget goes.

Paper: none (the paper releases every DPTree node with its own truncated Laplace noise, PAPER
§3.4-3.7); this is the weighted form of the one Gaussian release of the whole tree
(``proofs_notes/26-tree-gaussian.md``, "Per-group noise"). Releasing ``y + sigma Lambda Z``
with a PUBLIC diagonal ``Lambda`` is the Gaussian mechanism applied to ``Lambda^-1 y`` (l2
sensitivity of the scaled vector), followed by the public map ``x -> Lambda x``; a group whose
exact contribution to every answer is known to be 0 is WITHHELD (released as 0, no data, no
noise).

Groups (the same for every copy and column): the scalars c0 and c1, and each (coordinate t,
moment m) DPTree with every node of it. The multiplier of a group is ``lambda_g = 2^e_g``
(``e_g >= 0`` an integer, so scaling is exact in binary floating point) or withheld
(``e_g = None``):

* the constant feature's trees (alpha = 0, P_0 = 1 for every key and query, index 0 of
  :func:`dpxattn.reference.kernel.multi_indices`) are withheld: their term of the law of
  cosines, (u_0^2 P0 - 2 u_0 P1 + P2) with u_0 = 1 and P0 = P1 = P2 = c0, is exactly 0;
* every other group gets ``lambda_g^2 ~ sqrt(s_g / q_g)``, the minimiser of
  ``sum_g q_g lambda_g^2`` (the answer variance) at fixed ``sum_g s_g / lambda_g^2`` (the
  squared sensitivity): ``s_g`` its share of one row's squared contribution at the worst corner
  (1 for c0, T^2 for c1, L M_t^(2m) for tree (t, m)) and ``q_g`` the mean squared coefficient
  of the group in a column's answer noise (:func:`query_energy`), rounded to the nearest power
  of two and normalised so that the smallest multiplier is 1.

``q_g`` needs a public model of the queries; the model (a documented choice, not a property of
the data): every non-constant feature value u_t uniform on its range [0, M_t], independently,
and every query using h = max(1, tree_height(G)) nodes of each tree (the mean size of the
prefix and suffix canonical decompositions, about h / 2 each). Any public multipliers are
sound; the model only decides how close to optimal they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from dpxattn.params import check_degree, check_positive_int
from dpxattn.reference._mp import context, resolve_prec, to_mpf
from dpxattn.reference.kernel import feature_bounds

__all__ = ["TreeNoiseWeights", "tree_noise_weights", "query_energy", "scale_release"]

MOMENTS = 3


@dataclass(frozen=True)
class TreeNoiseWeights:
    """Exponents e of the multipliers 2^e (None: withheld) of the Gaussian tree's groups.

    ``c0``, ``c1``: the scalars' exponents; ``nodes[t][m]``: tree (coordinate t, moment m).
    :meth:`multiplier` is lambda = 2^e (0 for withheld), :meth:`scale` mu = 2^-e (0 for
    withheld); the release is ``lambda (mu y + sigma Z)``. Paper: none (the weighted Gaussian
    release of the tree; proofs_notes/26-tree-gaussian.md, "Per-group noise").
    """

    c0: int | None
    c1: int | None
    nodes: tuple

    @staticmethod
    def isotropic(r: int) -> "TreeNoiseWeights":
        """Every group multiplier 1, nothing withheld (the unweighted release)."""
        return TreeNoiseWeights(0, 0, ((0,) * MOMENTS,) * r)

    def exponents(self) -> tuple:
        """(c0, c1, then nodes row-major over (t, m)): every group's exponent."""
        return (self.c0, self.c1) + tuple(e for row in self.nodes for e in row)

    def by_group(self) -> dict:
        """Every group's exponent keyed "c0", "c1" and (t, m)."""
        out = {"c0": self.c0, "c1": self.c1}
        out.update({(t, m): e for t, row in enumerate(self.nodes) for m, e in enumerate(row)})
        return out

    @staticmethod
    def multiplier(e) -> float:
        """lambda = 2^e, or 0 for a withheld group (exact in binary floating point)."""
        return 0.0 if e is None else float(2.0 ** e)

    @staticmethod
    def scale(e) -> float:
        """mu = 2^-e, or 0 for a withheld group."""
        return 0.0 if e is None else float(2.0 ** -e)


def query_energy(d: int, degree: int, R, *, grid_size: int, scale=None, prec=None) -> tuple:
    """``(q_c0, q_c1, q_nodes[t][m])``: the mean squared coefficient (times 4) of each group in
    one column's answer noise under the query model of this module: c1 enters with 1/2, c0 with
    ||u||^2 / 2 and each node of tree (t, m) with |coef_m(u_t)| / 2, coef = (u^2, -2u, 1):

    * q_c1 = 1; q_c0 = E ||u||^4 = (1 + sum_t M_t^2 / 3)^2 + sum_t (M_t^4/5 - M_t^4/9);
    * q_(t,m) = h E coef_m(u_t)^2 = h (M_t^4 / 5, 4 M_t^2 / 3, 1) (u_t uniform on [0, M_t]);

    t over the non-constant features (u_0 = 1), h = max(1, tree_height(G)) (a one-cell grid:
    the root). Exact at ``prec`` bits.
    Paper: none (the Gaussian tree's allocation; proofs_notes/26-tree-gaussian.md).
    """
    from dpxattn.accounting import tree_height

    h = max(1, tree_height(check_positive_int("grid_size", grid_size)))  # G = 1: the root
    ctx = context(prec)
    M = feature_bounds(d, degree, R, scale=scale, prec=prec)
    sq = [x * x for x in M[1:]]
    mean = 1 + ctx.fsum(s / 3 for s in sq)
    q_c0 = mean * mean + ctx.fsum(s * s * (ctx.mpf(1) / 5 - ctx.mpf(1) / 9) for s in sq)
    nodes = [None] + [(h * s * s / 5, h * 4 * s / 3, ctx.mpf(h)) for s in sq]
    return q_c0, ctx.one, nodes


def tree_noise_weights(d: int, degree: int, R, *, grid_size: int, scale=None) -> TreeNoiseWeights:
    """The multipliers of the Gaussian ``tree`` release (module docstring): the constant
    feature's trees withheld, every other group 2^e with e the nearest integer to
    log2 (s_g / q_g)^(1/4) less the smallest such value over the groups. Computed at 160 bits
    (a public, deterministic rule; memoised). Paper: none
    (proofs_notes/26-tree-gaussian.md, "Per-group noise")."""
    return _weights(check_positive_int("d", d), check_degree(degree), _key(R),
                    check_positive_int("grid_size", grid_size), _key(scale))


def _key(x):
    """A hashable, exact key: None, int, float, Fraction, or an mpf as its exact Fraction."""
    if hasattr(x, "man") and hasattr(x, "exp"):  # mpf: exactly man 2^exp
        return Fraction(int(x.man)) * Fraction(2) ** int(x.exp)
    return x


@lru_cache(maxsize=64)
def _weights(d, degree, R, grid_size, scale) -> TreeNoiseWeights:
    from dpxattn.accounting import tree_levels

    p = resolve_prec(160)
    ctx = context(p)
    R = to_mpf(R, ctx, "R")
    scale = None if scale is None else to_mpf(scale, ctx, "scale")
    L = tree_levels(grid_size)
    M = feature_bounds(d, degree, R, scale=scale, prec=p)
    T = ctx.fsum(x * x for x in M)
    q_c0, q_c1, q_nodes = query_energy(d, degree, R, grid_size=grid_size, scale=scale, prec=p)
    logs = {"c0": ctx.log(ctx.sqrt(ctx.sqrt(1 / q_c0)), 2),
            "c1": ctx.log(ctx.sqrt(ctx.sqrt(T * T / q_c1)), 2)}
    for t in range(1, len(M)):
        for m in range(MOMENTS):
            s = L * M[t] ** (2 * m)
            logs[(t, m)] = ctx.log(ctx.sqrt(ctx.sqrt(s / q_nodes[t][m])), 2)
    low = min(logs.values())
    e = {g: int(ctx.nint(v - low)) for g, v in logs.items()}
    nodes = tuple(tuple(None if t == 0 else e[(t, m)] for m in range(MOMENTS))
                  for t in range(len(M)))
    return TreeNoiseWeights(e["c0"], e["c1"], nodes)


def scale_release(flat, weights: TreeNoiseWeights, *, d_v: int, copies: int = 1) -> list:
    """``mu * flat`` for a flat ``tree`` release in the uniform order of
    :func:`dpxattn.reference.sensitivity.released_tree` (scalars [c0, c1] per copy and column,
    then node-major over (copy, column, t, m)): the vector the Gaussian noise is calibrated on.
    Paper: none (proofs_notes/26-tree-gaussian.md, "Per-group noise")."""
    cols = copies * (d_v + 1)
    mu_s = [weights.scale(weights.c0), weights.scale(weights.c1)] * cols
    per_node = [weights.scale(e) for row in weights.nodes for e in row] * cols
    out = [x * mu for x, mu in zip(flat[:2 * cols], mu_s)]
    body = flat[2 * cols:]
    width = len(per_node)
    if width == 0 or len(body) % width:
        raise ValueError(f"release of length {len(flat)} does not match {cols} columns of "
                         f"{len(weights.nodes)} coordinates")
    return out + [x * per_node[i % width] for i, x in enumerate(body)]
