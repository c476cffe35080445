"""DPTreeSoftmax (sound form) and the cross-attention ``tree`` mechanism built from it.

Paper: 'DPTreeSoftmax' Init/Query (v2 App. I; the ICLR version's "Algorithm 3"),
the law-of-cosines reduction (v2 App. I), the cross-attention structure and the
median of copies 'DPTreeSoftmaxAdaptive' (v2 §3, App. H); spec PAPER.md §2.5,
§3.4-3.6, §5 items 5-7. Proof notes: ``proofs_notes/11-law-of-cosines.md``,
``proofs_notes/12-dptree-softmax.md``.

Sound form (``proofs_notes/01-conventions.md``, mechanism ``tree``). For weights w (n,) with
|w_i| <= R_w and features Phi_i = P(k_i) in [0, M_1] x ... x [0, M_r]:

* c0 = sum_i w_i and c1 = sum_i w_i ||Phi_i||^2 are released with their own TLap noise
  (sensitivities 2 R_w and 2 R_w T_s(t_max), budgets ``plan.share("c0")``, ``plan.share("c1")``);
  the paper uses them exactly (PAPER §5 item 6);
* per coordinate t, a :class:`dpxattn.reference.dptree_distance.DPTreeDistance` with p = 2 over
  a PUBLIC grid of G cells on [0, M_t] (three moment trees, every node noised at
  ``plan.share("tree_level")``); the paper keeps the sorted private keys (PAPER §5 item 7);
* query at u = P(q): ``(c1~ + ||u||^2 c0~ - sum_t dist_t(u_t)) / 2`` (:func:`law_of_cosines`),
  dist_t in the paper's prefix/suffix ("split") form.

The ``tree`` mechanism (:class:`TreeRelease`): for each copy c = 0..l-1 and each column
k = 0..d_v (k = d_v: the denominator, w = 1, R_w replaced by 1) one DPTreeSoftmax; per copy
D~_c = max(denominator, n), out_c[k] = numerator_k / D~_c; the answer is the entrywise median over
copies (mean of the two middle values for even l).

Gaussian law (``law="gaussian"``, ``proofs_notes/26-tree-gaussian.md``): the WHOLE release (every
copy, column, c0, c1 and node) is one analytic Gaussian mechanism: every released number of
group g (c0, c1, tree (t, m)) gets ``N(0, (lambda_g sigma)^2)`` = ``lambda_g sigma Phi^-1(u)``
from its uniform (the same uniform order, the same count), lambda_g = 2^e the public multipliers
of :func:`dpxattn.reference.tree_noise_weights.tree_noise_weights` (the constant feature's trees
withheld: released as 0, their uniforms unused), ``sigma`` = :func:`gaussian_constants`
(``reference.gaussian.sigma_for`` on the l2 sensitivity of the whole vector scaled by
mu_g = 1 / lambda_g, ``reference.sensitivity.tree_release_l2(weights=)``, both certified upward).

Uniform order (conventions): first the scalars, for copy c, for column k: [c0, c1]
(:func:`scalar_noise_index`); then the nodes, node-major: for node i = 0..2N-2, for payload
column (copy c, column k, coordinate t, moment m) (:func:`node_noise_index`), C = l (d_v + 1) r 3
columns; :func:`tree_noise_count` = 2 l (d_v + 1) + (2N - 1) C, N = 2^ceil(log2 G).
"""

from __future__ import annotations

import numpy as np

from fractions import Fraction
from functools import lru_cache, partial

from dpxattn.accounting import TREE_MOMENTS, feature_dimension, padded_size, tree_levels
from dpxattn.errors import ParameterError, ShapeError
from dpxattn.params import check_degree, check_positive_int
from dpxattn.randomness import check_uniforms
from dpxattn.reference import gaussian, kernel, sensitivity
from dpxattn.reference.tree_noise_weights import TreeNoiseWeights, tree_noise_weights
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import context, resolve_prec, to_mpf
from dpxattn.reference.dptree import DPTree, certified_upper, exact_node_sums
from dpxattn.reference.dptree_distance import DPTreeDistance, moment_leaves, working_bound
from dpxattn.reference.envelope import (CopyErrorTerms, GaussianNoiseGroup, NoiseGroup,
                                        OffsetGroup)

__all__ = [
    "law_of_cosines",
    "distance_coefficients",
    "tree_noise_count",
    "scalar_noise_index",
    "node_noise_index",
    "median",
    "gaussian_constants",
    "DPTreeSoftmax",
    "TreeRelease",
]

#: the query form of every DPTreeDistance in the tree mechanism (paper form, prefix + suffix)
DISTANCE_FORM = "split"


def law_of_cosines(weighted_norm_sq_sum, query_norm_sq, weight_sum, weighted_distance_sum):
    """(c1 + ||u||^2 c0 - dist) / 2, which equals sum_i w_i <x_i, u> (law of cosines).

    With c1 = sum_i w_i ||x_i||^2, c0 = sum_i w_i and dist = sum_i w_i ||x_i - u||^2, the
    identity <x, u> = (||x||^2 + ||u||^2 - ||x - u||^2)/2 summed with weights w_i gives
    sum_i w_i <x_i, u> exactly. Plain arithmetic: exact for Fractions, rounded once per
    operation for mpf. THE one implementation of the identity (the fast path mirrors it).
    Paper: law-of-cosines reduction (v2 App. I); spec PAPER.md §2.5.
    Proof note: ``proofs_notes/11-law-of-cosines.md``.
    """
    return (weighted_norm_sq_sum + query_norm_sq * weight_sum - weighted_distance_sum) / 2


def distance_coefficients(y) -> tuple:
    """(y^2, -2 y, 1): dist(y) = y^2 P0 - 2 y P1 + P2 for the moments P_m = sum w x^m.

    Paper: DPTreeDistance, p = 2 (v2 App. F); spec PAPER.md §3.2.
    """
    return (y * y, -2 * y, 1)


def tree_noise_count(*, n: int, d: int, d_v: int, degree: int, copies: int = 1,
                     grid_size: int | None = None) -> int:
    """2 l (d_v + 1) + (2N - 1) l (d_v + 1) 3 r: the uniforms the ``tree`` mechanism consumes.

    N = 2^ceil(log2 G), G = grid_size (default n), r = C(d + s, s).
    ``proofs_notes/01-conventions.md`` (uniform order of ``tree``).

    Paper: DPTreeSoftmax / DPTreeCrossAttention (v2 App. I, §3); spec PAPER.md §3.4-3.7; proofs_notes/12-dptree-softmax.md.
    """
    n = check_positive_int("n", n)
    d_v = check_positive_int("d_v", d_v)
    copies = check_positive_int("copies", copies)
    G = n if grid_size is None else check_positive_int("grid_size", grid_size)
    r = feature_dimension(d, check_degree(degree))
    cols = copies * (d_v + 1)
    return 2 * cols + (2 * padded_size(G) - 1) * cols * r * TREE_MOMENTS


def scalar_noise_index(c: int, k: int, which: int, *, d_v: int) -> int:
    """Position of the draw of copy c, column k, scalar ``which`` (0: c0, 1: c1): 2 (c (d_v+1) + k) + which.

    Paper: DPTreeSoftmax / DPTreeCrossAttention (v2 App. I, §3); spec PAPER.md §3.4-3.7; proofs_notes/12-dptree-softmax.md.
    """
    return 2 * (c * (d_v + 1) + k) + which


def _payload_column(c: int, k: int, t: int, m: int, *, d_v: int, r: int) -> int:
    return ((c * (d_v + 1) + k) * r + t) * TREE_MOMENTS + m


def node_noise_index(i: int, c: int, k: int, t: int, m: int, *, d_v: int, r: int,
                     copies: int) -> int:
    """Position of the draw of node i of the moment-m tree of (copy c, column k, coordinate t).

    Node-major: ``2 l (d_v + 1) + i C + ((c (d_v + 1) + k) r + t) 3 + m``, C = l (d_v + 1) 3 r.
    ``proofs_notes/01-conventions.md`` (uniform order of ``tree``).

    Paper: DPTreeSoftmax / DPTreeCrossAttention (v2 App. I, §3); spec PAPER.md §3.4-3.7; proofs_notes/12-dptree-softmax.md.
    """
    C = copies * (d_v + 1) * r * TREE_MOMENTS
    return 2 * copies * (d_v + 1) + i * C + _payload_column(c, k, t, m, d_v=d_v, r=r)


def gaussian_constants(d: int, degree: int, R, R_w, d_v: int, eps, delta, *, grid_size: int,
                       copies: int = 1, scale=None, prec=None):
    """``(Delta_2, sigma)`` of the Gaussian ``tree`` release, both certified upward (mpf).

    ``Delta_2``: :func:`dpxattn.reference.sensitivity.tree_release_l2` (the l2 change of the
    whole released vector, every copy included, scaled by the groups' mu of
    :func:`dpxattn.reference.tree_noise_weights.tree_noise_weights`) through
    :func:`dpxattn.reference.dptree.certified_upper`; ``sigma``:
    :func:`dpxattn.reference.gaussian.sigma_for` (Delta_2, eps, delta), rounded up. The fast path
    takes both from here (rounded up to float64). Paper: none (Balle & Wang 2018, Thm 8; the
    tree of PAPER.md §3.4-3.7). Proof note ``proofs_notes/26-tree-gaussian.md``.
    """
    p = resolve_prec(prec)
    args = (d, degree, R, R_w, d_v, eps, delta, grid_size, copies, scale)
    if all(x is None or type(x) in (int, float, Fraction) for x in args):
        return _gaussian_constants_memo(*args, p)  # public parameters only: memoised
    return _gaussian_constants(*args, p)


def _gaussian_constants(d, degree, R, R_w, d_v, eps, delta, grid_size, copies, scale, p):
    weights = tree_noise_weights(d, degree, R, grid_size=grid_size, scale=scale)
    l2 = partial(sensitivity.tree_release_l2, grid_size=grid_size, copies=copies, scale=scale,
                 weights=weights)
    Delta2 = certified_upper(l2, d, degree, R, R_w, d_v, prec=p)
    return Delta2, gaussian.sigma_for(Delta2, eps, delta, prec=p)


#: keyed by argument type and value (1, 1.0 and Fraction(1) apart); the values are mpf, immutable
_gaussian_constants_memo = lru_cache(maxsize=64, typed=True)(_gaussian_constants)


def _gaussian_distance(column, weights, *, upper, R_w, grid_size: int, uniforms, sigmas,
                       prec, leaves=None, n=None) -> DPTreeDistance:
    """A p = 2 DPTreeDistance whose every node of moment tree m gets ``gaussian.ppf(u,
    sigmas[m])``; ``sigmas[m]`` None: the tree is withheld (every node 0, no noise) (node-major
    uniforms, as :meth:`DPTreeDistance._from_level_budget` reads them). Its trees have no
    per-level budget, sensitivity or support bound (``None``): the whole release is one
    Gaussian component, and the noise is unbounded (``proofs_notes/26-tree-gaussian.md``).
    ``leaves`` (``column = weights = None``): the three moment trees' leaf values given by the
    caller for ``n`` rows, as in :meth:`DPTreeDistance._from_level_budget`."""
    ctx = context(prec)
    upper = working_bound(upper, ctx)
    uniforms = np.asarray(uniforms)
    trees = []
    for k in range(TREE_MOMENTS):
        values = (moment_leaves(column, weights, upper=upper, grid_size=grid_size, k=k,
                                prec=prec) if leaves is None else leaves[k])
        exact = exact_node_sums(values, prec=prec)
        if sigmas[k] is None:  # withheld: released as 0 (a constant, no data)
            noisy = [ctx.zero] * len(exact)
        else:
            noise = gaussian.sample(uniforms[k::TREE_MOMENTS], sigmas[k], prec=prec)
            noisy = [ctx.fadd(c, z) for c, z in zip(exact, noise)]
        trees.append(DPTree(n=grid_size, levels=tree_levels(grid_size), sensitivity=None,
                            eps_level=None, delta_level=None, prec=prec, noisy=noisy,
                            support_bound=None, plan=None))
    return DPTreeDistance(p=2, upper=upper, R_w=R_w, grid_size=grid_size,
                          n=len(column) if leaves is None else n, prec=prec, trees=trees,
                          plan=None)


def _group_sigma(sigma, ctx):
    """e -> lambda sigma = 2^e sigma (exact: a power of two), a group's standard deviation."""
    return lambda e: ctx.ldexp(sigma, e)


def _scalar_sums(features, weights, sums, ctx) -> tuple:
    """(c0, c1) of one column: sum_i w_i and sum_i w_i ||Phi_i||^2 at ``ctx``'s precision, or
    the two given scalars of ``sums = (leaves, (c0, c1))`` converted exactly (when dyadic)."""
    if sums is not None:
        c0, c1 = sums[1]
        return to_mpf(c0, ctx, "c0"), to_mpf(c1, ctx, "c1")
    return (ctx.fsum(weights),
            ctx.fsum(w * ctx.fsum(f * f for f in row) for w, row in zip(weights, features)))


def _check_sums(sums, *, n, d, degree, grid_size, lattice, sensitivities, law) -> tuple:
    """``(n, d, d_v, G)`` of a release from sums (:meth:`TreeRelease.build`), the shapes of
    ``sums``, ``lattice`` and ``sensitivities`` checked (:class:`ShapeError`,
    :class:`ParameterError` naming what is missing or wrong)."""
    n = check_positive_int("n", n)
    d = check_positive_int("d", d)
    if grid_size is None:
        raise ParameterError("grid_size", "is required with sums= (the grid the leaves index)")
    G = check_positive_int("grid_size", grid_size)
    r = feature_dimension(d, check_degree(degree))
    try:
        leaves, scalars = sums
    except (TypeError, ValueError):
        raise ShapeError("sums", "must be the pair (leaves, scalars)",
                         type(sums).__name__) from None
    cols = len(scalars)
    if cols < 2 or any(len(pair) != 2 for pair in scalars):
        raise ShapeError("sums", "scalars must be d_v + 1 >= 2 pairs (c0, c1)", cols)
    if len(leaves) != G or any(len(row) != r or any(len(col) != cols or any(
            len(ms) != TREE_MOMENTS for ms in col) for col in row) for row in leaves):
        raise ShapeError("sums", f"leaves must be G = {G} lists of r = {r} lists of "
                         f"d_v + 1 = {cols} lists of {TREE_MOMENTS} moments", len(leaves))
    if lattice is None or len(lattice) != TREE_MOMENTS:
        raise ParameterError("lattice", "must be the term exponents (c_0, c_1, c_2) the sums "
                             "were rounded to (the envelopes add that rounding)", lattice)
    if sensitivities is None:
        raise ParameterError("sensitivities", "are required with sums=: the bounds on the "
                             "change of the given sums under replace-one-row")
    if law != "gaussian":
        try:
            scalar_sens, node_sens = sensitivities
        except (TypeError, ValueError):
            raise ShapeError("sensitivities", "must be (scalar, nodes) for TLap",
                             type(sensitivities).__name__) from None
        if (len(scalar_sens) != cols or any(len(x) != 2 for x in scalar_sens)
                or len(node_sens) != cols or any(len(x) != r or any(
                    len(y) != TREE_MOMENTS for y in x) for x in node_sens)):
            raise ShapeError("sensitivities", f"must be ({cols} pairs, {cols} x {r} x "
                             f"{TREE_MOMENTS}) for TLap", len(scalar_sens))
    return n, d, cols - 1, G


def median(values: list):
    """The median of a list of mpf: the middle value, or the mean of the two middle ones.

    Paper: median of copies, entrywise (v2 App. H); spec PAPER.md §3.6, §5
    item 21.
    """
    s = sorted(values)
    h = len(s) // 2
    return s[h] if len(s) % 2 else (s[h - 1] + s[h]) / 2


class DPTreeSoftmax:
    """A released weighted softmax query structure: noisy c0~, c1~ and r DPTreeDistances.

    Answers ``sum_i w_i <P(k_i), u>`` (= ``w^T T_s(scale K q)`` at u = P(q)) from noisy numbers
    only. Attributes: ``c0``, ``c1`` (noisy mpf), ``c0_support_bound``, ``c1_support_bound``,
    ``c0_variance``, ``c1_variance`` (certified upward), ``c0_laplace_scale``,
    ``c1_laplace_scale`` (b = Delta/eps), ``coordinates`` (tuple of r :class:`DPTreeDistance`,
    p = 2, grid on [0, M_t]), ``moment_variances`` (r tuples of 3 certified node variances),
    ``moment_laplace_scales`` (r tuples of 3 node Laplace scales), ``weight_bound`` (R_w, or 1 for the denominator), ``prec``,
    ``sigma`` (None for TLap; ``law="gaussian"``: the base sigma, the support bounds and
    Laplace scales None), ``noise_weights`` (``law="gaussian"``: the
    :class:`dpxattn.reference.tree_noise_weights.TreeNoiseWeights`; group g's noise is
    N(0, (lambda_g sigma)^2), a withheld group is 0; the variances are those, rounded up).
    Paper: 'DPTreeSoftmax' (v2 App. I); spec PAPER.md §3.4 ("correct version").
    """

    __slots__ = ("c0", "c1", "c0_support_bound", "c1_support_bound", "c0_variance",
                 "c1_variance", "c0_laplace_scale", "c1_laplace_scale", "coordinates",
                 "moment_variances", "moment_laplace_scales", "weight_bound", "prec", "sigma",
                 "noise_weights")

    def __init__(self, *, c0, c1, c0_support_bound, c1_support_bound, c0_variance, c1_variance,
                 c0_laplace_scale, c1_laplace_scale, coordinates, moment_variances,
                 moment_laplace_scales, weight_bound, prec, sigma=None, noise_weights=None):
        self.c0 = c0
        self.c1 = c1
        self.c0_support_bound = c0_support_bound
        self.c1_support_bound = c1_support_bound
        self.c0_variance = c0_variance
        self.c1_variance = c1_variance
        self.c0_laplace_scale = c0_laplace_scale
        self.c1_laplace_scale = c1_laplace_scale
        self.coordinates = tuple(coordinates)
        self.moment_variances = tuple(tuple(v) for v in moment_variances)
        self.moment_laplace_scales = tuple(tuple(v) for v in moment_laplace_scales)
        self.weight_bound = weight_bound
        self.prec = prec
        self.sigma = sigma
        self.noise_weights = noise_weights

    @classmethod
    def build(cls, features, weights, *, weight_bound, feature_bounds, c1_sensitivity, plan,
              grid_size: int, scalar_uniforms, node_uniforms, prec=None,
              sigma=None, sums=None, n=None, c0_sensitivity=None,
              node_sensitivities=None, noise_weights=None) -> "DPTreeSoftmax":
        """DPTreeSoftmax.Init (sound form) from validated, exact inputs.

        ``features``: n rows of r mpf (Phi_i = P(k_i), each in [0, M_t]); ``weights``: n mpf in
        [-weight_bound, weight_bound]; ``feature_bounds``: the r bounds M_t (the grids' upper
        ends); ``c1_sensitivity``: 2 weight_bound T_s(t_max) (a value column) or T_s(t_max) - 1 (the
        denominator; ``reference.sensitivity.c1_column``); ``plan``: the ``tree`` plan
        (budgets ``share("c0")``, ``share("c1")``, ``share("tree_level")``); ``grid_size``: G;
        ``scalar_uniforms``: 2 uniforms [c0, c1]; ``node_uniforms``: a (2N - 1) x (3 r) array,
        row i = node i, column 3 t + m = moment m of coordinate t (node-major, as the
        conventions order them). Released: c0 + Z0, c1 + Z1 and every node of every tree.
        ``sigma`` (``law="gaussian"``; ``plan`` and ``c1_sensitivity`` then unused) and
        ``noise_weights`` (its group multipliers lambda_g = 2^e, default all 1): every released
        number of group g gets ``gaussian.ppf(u, lambda_g sigma)`` from the same uniform instead,
        a withheld group is released as 0 (:func:`gaussian_constants`;
        ``proofs_notes/26-tree-gaussian.md``).

        From sums (``features = weights = None``; not in the paper, PAPER.md §5 item 18,
        ``proofs_notes/30-exact-accumulation.md`` "The tree"): ``sums = (leaves, (c0, c1))``
        computed by the caller for ``n`` rows, ``leaves[t][m]`` the G leaf values of moment tree
        m of coordinate t (exact numbers: Fraction, int, float or mpf; the streaming tree's
        rounded sums times 2^-c_m), c0 and c1 this column's two scalars; released exactly as
        the computed ones are (same noise, same uniforms). ``c0_sensitivity`` (default
        2 weight_bound, :func:`dpxattn.reference.sensitivity.c0`) and ``node_sensitivities``
        (default None: each tree's ``moment_sensitivity``; else r tuples of 3 per-level
        sensitivities, used as given) are the caller's bounds on the change of those sums.
        Paper: DPTreeSoftmax.Init (v2 App. I); spec PAPER.md §3.4.
        """
        p = resolve_prec(prec)
        ctx = context(p)
        r = len(feature_bounds)
        if sigma is not None:
            return cls._build_gaussian(features, weights, weight_bound=weight_bound,
                                       feature_bounds=feature_bounds, grid_size=grid_size,
                                       scalar_uniforms=scalar_uniforms,
                                       node_uniforms=node_uniforms, prec=p, sigma=sigma,
                                       sums=sums, n=n, noise_weights=(
                                           TreeNoiseWeights.isotropic(r) if noise_weights is None
                                           else noise_weights))
        eps0, delta0 = plan.share("c0")
        eps1, delta1 = plan.share("c1")
        level = plan.share("tree_level")
        Delta0 = to_mpf(sensitivity.c0(weight_bound, prec=p) if c0_sensitivity is None
                        else c0_sensitivity, ctx, "Delta_c0")
        Delta1 = to_mpf(c1_sensitivity, ctx, "Delta_c1")
        z0, z1 = (tl.ppf(scalar_uniforms[0], Delta0, eps0, delta0, prec=p),
                  tl.ppf(scalar_uniforms[1], Delta1, eps1, delta1, prec=p))
        c0, c1 = _scalar_sums(features, weights, sums, ctx)
        node_uniforms = np.asarray(node_uniforms)
        coordinates, variances, scales = [], [], []
        constants: dict = {}  # (sensitivity) -> (certified variance, Laplace scale), shared by trees
        for t in range(r):
            column = None if sums is not None else [row[t] for row in features]
            ds = DPTreeDistance._from_level_budget(
                column, weights, upper=feature_bounds[t], R_w=weight_bound, p=2,
                grid_size=grid_size, level_budget=level,
                uniforms=node_uniforms[:, TREE_MOMENTS * t:TREE_MOMENTS * (t + 1)].reshape(-1),
                prec=p, leaves=None if sums is None else sums[0][t],
                sensitivities=None if node_sensitivities is None else node_sensitivities[t],
                n=n)
            coordinates.append(ds)
            for tree in ds.trees:
                if tree.sensitivity not in constants:
                    constants[tree.sensitivity] = (
                        tree.level_variance(),
                        tl.scale(tree.sensitivity, tree.eps_level, tree.delta_level, prec=p))
            variances.append(tuple(constants[tree.sensitivity][0] for tree in ds.trees))
            scales.append(tuple(constants[tree.sensitivity][1] for tree in ds.trees))
        return cls(c0=ctx.fadd(c0, z0), c1=ctx.fadd(c1, z1),
                   c0_support_bound=certified_upper(tl.support_bound, Delta0, eps0, delta0, prec=p),
                   c1_support_bound=certified_upper(tl.support_bound, Delta1, eps1, delta1, prec=p),
                   c0_variance=certified_upper(tl.variance, Delta0, eps0, delta0, prec=p),
                   c1_variance=certified_upper(tl.variance, Delta1, eps1, delta1, prec=p),
                   c0_laplace_scale=tl.scale(Delta0, eps0, delta0, prec=p),
                   c1_laplace_scale=tl.scale(Delta1, eps1, delta1, prec=p),
                   coordinates=coordinates, moment_variances=variances,
                   moment_laplace_scales=scales,
                   weight_bound=to_mpf(weight_bound, ctx, "R_w"), prec=p)

    @classmethod
    def _build_gaussian(cls, features, weights, *, weight_bound, feature_bounds, grid_size,
                        scalar_uniforms, node_uniforms, prec, sigma, noise_weights, sums=None,
                        n=None) -> "DPTreeSoftmax":
        """:meth:`build` with ``law="gaussian"``: the same exact sums (or the given ``sums``),
        N(0, (lambda_g sigma)^2) noise per group g (withheld groups: 0)."""
        ctx = context(prec)
        sigma = to_mpf(sigma, ctx, "sigma")
        w = noise_weights
        sig = _group_sigma(sigma, ctx)
        c0, c1 = _scalar_sums(features, weights, sums, ctx)
        released = []
        for e, value, u in ((w.c0, c0, scalar_uniforms[0]), (w.c1, c1, scalar_uniforms[1])):
            released.append(ctx.zero if e is None else
                            ctx.fadd(value, gaussian.sample([u], sig(e), prec=prec)[0]))
        node_uniforms = np.asarray(node_uniforms)
        coordinates = [
            _gaussian_distance(None if sums is not None else [row[t] for row in features],
                               weights, upper=feature_bounds[t],
                               R_w=weight_bound, grid_size=grid_size,
                               uniforms=node_uniforms[:, TREE_MOMENTS * t:TREE_MOMENTS * (t + 1)]
                               .reshape(-1), sigmas=[None if e is None else sig(e)
                                                     for e in w.nodes[t]], prec=prec,
                               leaves=None if sums is None else sums[0][t], n=n)
            for t in range(len(feature_bounds))]

        def var(e):
            return ctx.zero if e is None else ctx.fmul(sig(e), sig(e), rounding="u")

        return cls(c0=released[0], c1=released[1], c0_support_bound=None,
                   c1_support_bound=None, c0_variance=var(w.c0), c1_variance=var(w.c1),
                   c0_laplace_scale=None, c1_laplace_scale=None, coordinates=coordinates,
                   moment_variances=[tuple(var(e) for e in row) for row in w.nodes],
                   moment_laplace_scales=[(None,) * TREE_MOMENTS] * len(feature_bounds),
                   weight_bound=to_mpf(weight_bound, ctx, "R_w"), prec=prec, sigma=sigma,
                   noise_weights=w)

    def distance(self, u):
        """sum_t DPTreeDistance_t.Query(u_t): the noisy sum_i w_i ||Phi_i - u||^2 (paper form)."""
        ctx = context(self.prec)
        return ctx.fsum(ds.query(ut, form=DISTANCE_FORM) for ds, ut in zip(self.coordinates, u))

    def query(self, u):
        """DPTreeSoftmax.Query at u = P(q): (c1~ + ||u||^2 c0~ - distance(u)) / 2.

        Paper: DPTreeSoftmax.Query (v2 App. I); spec PAPER.md §3.4, §2.5.
        """
        ctx = context(self.prec)
        return law_of_cosines(self.c1, ctx.fsum(x * x for x in u), self.c0, self.distance(u))

    def error_coefficients(self, u) -> dict:
        """Released-noise coefficients of query(u) - sum_i w_i <Phi_i, u>.

        Keys: ``"c0"``, ``"c1"`` and ``(t, m, node)``; the error is the sum of coefficient times
        that draw: 1/2 for c1, ||u||^2/2 for c0, and -1/2 times the DPTreeDistance coefficient
        for each node (dist enters with a minus sign). Paper: spec PAPER.md §3.4, §4.3.
        """
        ctx = context(self.prec)
        half = ctx.mpf(1) / 2
        out = {"c1": half, "c0": ctx.fsum(x * x for x in u) * half}
        for t, (ds, ut) in enumerate(zip(self.coordinates, u)):
            for (m, node), c in ds.error_coefficients(ut, form=DISTANCE_FORM).items():
                out[(t, m, node)] = -c * half
        return out

    def noise_groups(self, u) -> tuple:
        """The error of query(u) as :class:`NoiseGroup` s (c1, c0, then one per (t, m) tree);
        ``law="gaussian"``: :class:`GaussianNoiseGroup` s, every draw N(0, sigma^2)."""
        coef = self.error_coefficients(u)
        if self.sigma is not None:
            per: dict = {}
            for key, c in coef.items():
                per.setdefault(key[:2] if isinstance(key, tuple) else key, []).append(c)
            exps = self.noise_weights.by_group()
            sig = _group_sigma(self.sigma, context(self.prec))
            keys = ["c1", "c0"] + sorted(k for k in per if isinstance(k, tuple))
            # a withheld group releases 0, no noise: it adds nothing to the error
            return tuple(GaussianNoiseGroup(tuple(per[k]), sig(exps[k])) for k in keys
                         if exps[k] is not None)
        groups = [NoiseGroup((coef["c1"],), self.c1_support_bound, self.c1_variance,
                             self.c1_laplace_scale),
                  NoiseGroup((coef["c0"],), self.c0_support_bound, self.c0_variance,
                             self.c0_laplace_scale)]
        per_tree: dict = {}
        for key, c in coef.items():
            if isinstance(key, tuple):
                per_tree.setdefault(key[:2], []).append(c)
        for (t, m), cs in sorted(per_tree.items()):
            groups.append(NoiseGroup(tuple(cs), self.coordinates[t].trees[m].support_bound,
                                     self.moment_variances[t][m],
                                     self.moment_laplace_scales[t][m]))
        return tuple(groups)


class TreeRelease:
    """The released ``tree`` mechanism: l copies x (d_v + 1) columns of :class:`DPTreeSoftmax`.

    Attributes: ``softmax`` (tuple over copies of tuples over columns; column d_v is the
    denominator), ``n``, ``d``, ``d_v``, ``r``, ``degree``, ``scale``, ``copies``,
    ``grid_size``, ``R_w``, ``prec``, ``law`` ("tlap" or "gaussian"), ``sigma`` and
    ``sensitivity`` (``law="gaussian"``: the one sigma and the l2 sensitivity of the whole
    release, :func:`gaussian_constants`; None for TLap), ``rounding`` (None, or for a release
    from the streaming tree's rounded sums e[k][t][m], the per-row bound on |rounded term -
    w P_t^m| that the envelopes add n times, :meth:`error_terms`). Nothing private.
    Paper: cross-attention structure with privatized denominator and median copies (v2 §3,
    App. H); spec PAPER.md §3.5, §3.6.
    """

    __slots__ = ("softmax", "n", "d", "d_v", "r", "degree", "scale", "copies", "grid_size",
                 "R_w", "prec", "law", "sigma", "sensitivity", "rounding")

    def __init__(self, *, softmax, n, d, d_v, degree, scale, copies, grid_size, R_w, prec,
                 law="tlap", sigma=None, sensitivity=None, rounding=None):
        self.softmax = tuple(tuple(cols) for cols in softmax)
        self.n = n
        self.d = d
        self.d_v = d_v
        self.r = feature_dimension(d, degree)
        self.degree = degree
        self.scale = scale
        self.copies = copies
        self.grid_size = grid_size
        self.R_w = R_w
        self.prec = prec
        self.law = law
        self.sigma = sigma
        self.sensitivity = sensitivity
        #: None (sums computed exactly), or e[k][t][m]: per row, |rounded term - w P_t^m| <= it
        #: (the streaming tree's lattices, ``proofs_notes/30-exact-accumulation.md``)
        self.rounding = (None if rounding is None else
                         tuple(tuple(tuple(row) for row in col) for col in rounding))

    @classmethod
    def build(cls, K, V, *, plan, R, R_w, degree, scale=None, copies=1, grid_size=None,
              uniforms, prec=None, law="tlap", sums=None, n=None, d=None, lattice=None,
              sensitivities=None) -> "TreeRelease":
        """Init of the ``tree`` mechanism from validated inputs (see the module docstring).

        ``K``: n rows of d mpf in [0, R]; ``V``: n rows of d_v mpf in [-R_w, R_w];
        ``plan``: ``plan_tree(...)`` for these sizes; ``uniforms``: :func:`tree_noise_count`
        uniforms in the conventions' order (checked). (eps, delta)-DP end to end: every
        released number is one of the plan's components. ``law="gaussian"`` (``plan`` from
        ``plan_tree(law="gaussian")``, its one component ``"tree"``): every released number gets
        N(0, sigma^2) from its uniform, sigma from :func:`gaussian_constants` at the plan's
        (eps, delta) (``proofs_notes/26-tree-gaussian.md``).

        From sums (``K = V = None``; not in the paper: the streaming tree, PAPER.md §5 item 18,
        ``proofs_notes/30-exact-accumulation.md`` "The tree"), the reference counterpart of
        ``fast/tree_mechanism.py::TreeRelease.build(sums=, n=, lattice=)``:
        ``sums = (leaves, scalars)`` computed by the caller for ``n`` rows of ``d``-dimensional
        keys, ``leaves[g][t][k][m]`` the value of leaf g (G = ``grid_size``, required) of the
        moment-m tree of coordinate t and column k, ``scalars[k] = (c0, c1)`` (exact numbers,
        e.g. :func:`dpxattn.reference.tree_accumulation.rounded_tree_sums` times 2^-c_m,
        :meth:`dpxattn.reference.accumulator.Accumulator.statistic`); ``lattice`` the term
        exponents (c_0, c_1, c_2) they were rounded to (required): the envelopes then add the
        rows' rounding, ``rounding`` = e of
        :func:`dpxattn.reference.tree_accumulation.term_error_bounds` (:meth:`error_terms`);
        ``sensitivities`` (required) the caller's bounds on the change of the released numbers
        under replace-one-row, used as given: ``(scalar (d_v + 1 pairs: c0, c1), nodes
        (d_v + 1 x r x 3 per-level))`` for TLap, the one l2 sensitivity of the whole release
        for the Gaussian law (sigma = :func:`dpxattn.reference.gaussian.sigma_for` of it at
        ``plan.share("tree")``). The copies replicate the one set of sums, the noise, its
        uniforms and their order are those of the K, V path, which is unchanged.
        Paper: DPTreeCrossAttention.Init (v2 §3, App. H, I); spec PAPER.md
        §3.5-3.7.
        """
        p = resolve_prec(prec)
        ctx = context(p)
        if sums is None:
            if any(x is not None for x in (n, d, lattice, sensitivities)):
                raise ParameterError("n/d/lattice/sensitivities", "are given with sums= only "
                                     "(a release from K, V computes them)")
            n, d, d_v = len(K), len(K[0]), len(V[0])
            G = n if grid_size is None else grid_size
        else:
            if K is not None or V is not None:
                raise ParameterError("K/V", "must be None when sums= is given")
            n, d, d_v, G = _check_sums(sums, n=n, d=d, degree=degree, grid_size=grid_size,
                                       lattice=lattice, sensitivities=sensitivities, law=law)
        r = feature_dimension(d, degree)
        N = padded_size(G)
        count = tree_noise_count(n=n, d=d, d_v=d_v, degree=degree, copies=copies, grid_size=G)
        u = check_uniforms(uniforms, count)
        scalars = 2 * copies * (d_v + 1)
        nodes = u[scalars:].reshape(2 * N - 1, copies * (d_v + 1) * r * TREE_MOMENTS)
        features = (None if sums is not None else
                    [kernel.features(row, degree, scale=scale, prec=p) for row in K])
        bounds = kernel.feature_bounds(d, degree, R, scale=scale, prec=p)
        one = ctx.one
        Delta2 = sigma = rounding = noise_weights = None
        if law == "gaussian":
            noise_weights = tree_noise_weights(d, degree, R, grid_size=G, scale=scale)
            eps_g, delta_g = plan.share("tree")
            if sums is None:
                Delta2, sigma = gaussian_constants(d, degree, R, R_w, d_v, eps_g, delta_g,
                                                   grid_size=G, copies=copies, scale=scale,
                                                   prec=p)
            else:
                Delta2 = to_mpf(sensitivities, ctx, "sensitivities")
                sigma = gaussian.sigma_for(Delta2, eps_g, delta_g, prec=p)
        if sums is not None:
            from dpxattn.reference.tree_accumulation import term_error_bounds

            rounding = term_error_bounds(bounds, R_w, d_v, degree, lattice, prec=p)
        softmax = []
        for c in range(copies):
            cols = []
            for k in range(d_v + 1):
                value_column = k < d_v
                bound = R_w if value_column else 1
                first = _payload_column(c, k, 0, 0, d_v=d_v, r=r)
                if sums is None:
                    weights = [row[k] for row in V] if value_column else [one] * n
                    given = dict(c1_sensitivity=sensitivity.c1_column(
                        d, degree, R, bound, denominator=not value_column, scale=scale, prec=p))
                else:
                    weights = None
                    leaves, pairs = sums
                    given = dict(sums=([[[leaves[g][t][k][m] for g in range(G)]
                                         for m in range(TREE_MOMENTS)] for t in range(r)],
                                       pairs[k]), n=n)
                    if law != "gaussian":
                        given.update(c0_sensitivity=sensitivities[0][k][0],
                                     c1_sensitivity=sensitivities[0][k][1],
                                     node_sensitivities=sensitivities[1][k])
                    else:
                        given.update(c1_sensitivity=None)
                cols.append(DPTreeSoftmax.build(
                    features, weights, weight_bound=bound, feature_bounds=bounds,
                    plan=plan, grid_size=G,
                    scalar_uniforms=u[scalar_noise_index(c, k, 0, d_v=d_v):
                                      scalar_noise_index(c, k, 0, d_v=d_v) + 2],
                    node_uniforms=nodes[:, first:first + r * TREE_MOMENTS], prec=p,
                    sigma=sigma, noise_weights=noise_weights, **given))
            softmax.append(cols)
        return cls(softmax=softmax, n=n, d=d, d_v=d_v, degree=degree, scale=scale,
                   copies=copies, grid_size=G, R_w=to_mpf(R_w, ctx, "R_w"), prec=p, law=law,
                   sigma=sigma, sensitivity=Delta2, rounding=rounding)

    # -- queries: post-processing only ---------------------------------------------------------

    def query_features(self, q) -> list:
        """u = P(q), length r (q: d mpf in [0, R], validated by the caller)."""
        return kernel.features(q, self.degree, scale=self.scale, prec=self.prec)

    def copy_denominator(self, c: int, u):
        """D~_c = max(denominator structure's answer, n) (clamped below by the public bound)."""
        return max(self.softmax[c][self.d_v].query(u), context(self.prec).mpf(self.n))

    def copy_answer(self, c: int, u) -> list:
        """Copy c's answer row: numerator_k / D~_c for k = 0..d_v - 1."""
        D = self.copy_denominator(c, u)
        return [self.softmax[c][k].query(u) / D for k in range(self.d_v)]

    def answer(self, u) -> list:
        """The private answer row: the entrywise median of the copies' answers (d_v mpf)."""
        rows = [self.copy_answer(c, u) for c in range(self.copies)]
        return [median([row[k] for row in rows]) for k in range(self.d_v)]

    def rounding_offsets(self, u) -> tuple:
        """A release from rounded sums (``rounding`` set): for every column k (the last is the
        denominator) the deterministic bound on |noiseless released numerator - exact
        sum_i w_i <P(k_i), u>|, ``n (E_2 + ||u||^2 e_(0,0) + sum_(t,m) |coef_m(u_t)| e_(t,m))
        / 2`` with e = ``rounding[k]``, E_2 = sum_t e_(t,2), |coef| = (u_t^2, 2 |u_t|, 1),
        rounded up; None otherwise. Derivation: the query is (c1~ + ||u||^2 c0~ - sum_(t,m)
        coef_m(u_t) P~_(t,m)) / 2 where P~_(t,m) sums the prefix and the suffix nodes, together
        every leaf, so its noiseless value is the sum over ALL rows of the rounded terms
        whatever the cells; each of the n rows' terms is within e_(t,m) of w P_t^m (c0~'s
        within e_(0,0), c1~'s sum_t within E_2), and the exact terms give sum_i w_i <P_i, u> by
        the law of cosines. Paper: none (numerics at corpus scale; PAPER.md §5 item 18).
        Proof note ``proofs_notes/30-exact-accumulation.md`` ("The tree")."""
        rounding = getattr(self, "rounding", None)  # absent from structures saved before it
        if rounding is None:
            return None
        ctx = context(self.prec)
        norm = ctx.fsum(ctx.fmul(x, x, rounding="u") for x in u)
        out = []
        for e in rounding:
            total = ctx.fsum([e[t][2] for t in range(len(u))]
                             + [ctx.fmul(norm, e[0][0], rounding="u")]
                             + [ctx.fmul(c, e[t][m], rounding="u")
                                for t, ut in enumerate(u)
                                for m, c in enumerate((ctx.fmul(ut, ut, rounding="u"),
                                                       2 * abs(ut), ctx.one))])
            total = ctx.fmul(total, 1 + ctx.ldexp(1, 8 - self.prec), rounding="u")
            out.append(ctx.fmul(ctx.ldexp(total, -1), self.n, rounding="u"))
        return tuple(out)

    def error_terms(self, u) -> tuple:
        """One :class:`CopyErrorTerms` per copy, for :mod:`dpxattn.reference.envelope`; a
        release from rounded sums adds to every column the deterministic
        :class:`dpxattn.reference.envelope.OffsetGroup` of :meth:`rounding_offsets` (the same
        in every copy: the copies share one set of sums)."""
        offsets = self.rounding_offsets(u)
        extra = ([()] * (self.d_v + 1) if offsets is None else
                 [(OffsetGroup(bound=x),) for x in offsets])
        out = []
        for c in range(self.copies):
            cols = self.softmax[c]
            out.append(CopyErrorTerms(
                numerators=tuple(cols[k].noise_groups(u) + extra[k] for k in range(self.d_v)),
                denominator=cols[self.d_v].noise_groups(u) + extra[self.d_v],
                released_denominator=self.copy_denominator(c, u),
                answers=tuple(self.copy_answer(c, u))))
        return tuple(out)
