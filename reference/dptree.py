"""DPTree: private range sums over a fixed-index array, exactly (mpmath, explicit ``prec``).

Paper: Alg. 'DPTree' Init/Query and its error lemma (v2 §4 / App. D); spec
PAPER.md §3.1 (and §5 items 14, 15). Proof note: ``proofs_notes/06-dptree.md``.

Conventions (``proofs_notes/01-conventions.md``):

* the n values are padded with zeros to N = 2^h leaves, h = ceil(log2 n); L = h + 1 levels;
* nodes in level order: root 0, node (level l, index j) = 2^l - 1 + j, children of i are
  2i + 1 and 2i + 2; node (l, j) covers the 0-based leaves [j 2^(h-l), (j+1) 2^(h-l) - 1];
* EVERY node (leaves and root included, 2N - 1 of them) holds its exact subtree sum plus iid
  TLap(Delta, eps/L, delta/L); the split comes from :func:`dpxattn.accounting.plan_dptree`;
* uniforms: one per node, in level order (node 0, 1, ..., 2N - 2); :func:`noise_count` = 2N - 1;
* a range [lo, hi] (0-based, inclusive) is answered by its canonical decomposition, the unique
  minimal set of maximal dyadic nodes inside it; the answer minus the exact range sum is the
  sum of those nodes' noises (every coefficient is +1).

Privacy unit: one entry changes by at most Delta (the caller's sensitivity claim). The built
object keeps only the noisy node values (nothing private).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from dpxattn.accounting import padded_size, plan_dptree, tree_levels
from dpxattn.errors import BoundError, ParameterError, ShapeError
from dpxattn.params import check_positive, check_positive_int
from dpxattn.randomness import (LABEL_GIVEN, LABEL_SECURE, LABEL_SEEDED, check_uniforms,
                                generator_uniforms, secure_uniforms)
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import context, resolve_prec, to_mpf, to_vector

__all__ = [
    "node_level",
    "node_interval",
    "leaf_node",
    "covering_nodes",
    "canonical_decomposition",
    "exact_node_sums",
    "range_sum_from_nodes",
    "noise_count",
    "level_support_bound",
    "level_variance",
    "sure_error_bound",
    "chebyshev_error_bound",
    "hoeffding_error_bound",
    "hoeffding_bound",
    "draw_uniforms",
    "numerics_label",
    "certified_upper",
    "PAPER_FAILURE",
    "DPTree",
]

#: failure probability of the paper-form high-probability bound ("with probability 0.99")
PAPER_FAILURE = Fraction(1, 100)

#: extra bits used when a positive constant is re-evaluated for a certified upper bound
_GUARD_BITS = 32


# ---------------------------------------------------------------------------------------------
# Tree geometry (pure integers)
# ---------------------------------------------------------------------------------------------

def _check_leaf_count(N) -> int:
    N = check_positive_int("N", N)
    if N & (N - 1):
        raise ParameterError("N", "must be a power of two (the padded leaf count 2^h)", N)
    return N


def node_level(i: int) -> int:
    """Level of node i in level order (root 0 is level 0).

    Paper: DPTree (v2 §4 / App. D); spec PAPER.md §3.1.
    """
    i = check_positive_int("node", i, minimum=0)
    return (i + 1).bit_length() - 1


def node_interval(i: int, N: int) -> tuple[int, int]:
    """The 0-based inclusive leaf range [lo, hi] that node i covers in a tree of N = 2^h leaves.

    Paper: DPTree, node (l, k) covers leaves [k 2^(h-l) + 1, (k+1) 2^(h-l)] 1-based (v2 §4 /
    App. D); spec PAPER.md §3 conventions.
    """
    N = _check_leaf_count(N)
    i = check_positive_int("node", i, minimum=0)
    if i > 2 * N - 2:
        raise ParameterError("node", f"must be <= 2N - 2 = {2 * N - 2}", i)
    level = node_level(i)
    j = i - ((1 << level) - 1)
    width = N >> level
    return j * width, (j + 1) * width - 1


def leaf_node(g: int, N: int) -> int:
    """Node index of leaf g (0-based) in level order: N - 1 + g.

    Paper: DPTree (v2 §4 / App. D); spec PAPER.md §3.1; order of
    ``proofs_notes/01-conventions.md``.
    """
    N = _check_leaf_count(N)
    g = check_positive_int("leaf", g, minimum=0)
    if g >= N:
        raise ParameterError("leaf", f"must be < N = {N}", g)
    return N - 1 + g


def covering_nodes(g: int, N: int) -> tuple[int, ...]:
    """The L = h + 1 nodes whose interval contains leaf g, root first (one per level).

    This is why one changed entry touches exactly one node per level (PAPER §3.1, "noise scale
    and why"; v2 §4 / App. D).
    """
    i = leaf_node(g, N)
    path = [i]
    while i:
        i = (i - 1) // 2
        path.append(i)
    return tuple(reversed(path))


def canonical_decomposition(lo: int, hi: int, N: int) -> tuple[int, ...]:
    """Canonical decomposition of the 0-based inclusive leaf range [lo, hi], N = 2^h leaves.

    Returns the node indices (level order numbering), left to right: the unique minimal set of
    maximal dyadic nodes whose intervals partition [lo, hi]. Its size is <= max(1, 2h - 2); a
    prefix [0, j] uses popcount(j + 1) nodes when j + 1 < N and the root alone when j = N - 1.
    Paper: DPTree.Query, "maximal nodes whose interval lies inside [x, y]" (v2 §4 / App. D); spec PAPER.md §3.1. Proof note: ``proofs_notes/06-dptree.md``.
    """
    N = _check_leaf_count(N)
    lo = check_positive_int("lo", lo, minimum=0)
    hi = check_positive_int("hi", hi, minimum=0)
    if hi >= N:
        raise ParameterError("hi", f"must be <= N - 1 = {N - 1}", hi)
    if lo > hi:
        raise ParameterError("lo", f"must be <= hi = {hi} (a non-empty range)", lo)
    out: list[int] = []
    # walk from the root; a node inside [lo, hi] is taken whole, a straddling one is split
    stack = [(0, 0, N - 1)]
    while stack:
        i, a, b = stack.pop()
        if b < lo or a > hi:
            continue
        if lo <= a and b <= hi:
            out.append(i)
            continue
        mid = (a + b) // 2
        stack.append((2 * i + 2, mid + 1, b))  # right pushed first: left popped first
        stack.append((2 * i + 1, a, mid))
    return tuple(out)


def noise_count(n: int) -> int:
    """Uniforms (= noise draws) a DPTree over n entries consumes: 2N - 1, N = 2^ceil(log2 n).

    One per node, every node noised: DPTree.Init (v2 §4 / App. D); spec
    PAPER.md §3.1.
    """
    return 2 * padded_size(n) - 1


# ---------------------------------------------------------------------------------------------
# Exact node sums (the private quantities; used by tests and by the noiseless checks)
# ---------------------------------------------------------------------------------------------

def _values(values, ctx, name: str = "values") -> list:
    vals = to_vector(values, ctx, name)
    for i, v in enumerate(vals):
        if not ctx.isfinite(v):
            raise BoundError(f"{name} entries", "must be finite", hint=f"index {i} is {v}")
    return vals


def exact_node_sums(values, *, prec=None) -> list:
    """The exact subtree sum of every node (level order, 2N - 1 mpf), zero-padded to N leaves.

    Sums are formed with exact addition (no rounding at any precision), so a node's value is
    exactly the sum of its leaves' values as converted by :func:`dpxattn.reference._mp.to_mpf`
    (exact for int, float, mpf; ``Fraction`` rounded once). Private: never stored by a DPTree.
    Paper: DPTree.Init "c[v] = sum of a over v's leaf interval" (v2 §4 / App. D); spec PAPER.md §3.1.
    """
    ctx = context(prec)
    vals = _values(values, ctx)
    N = padded_size(len(vals))
    nodes = [ctx.zero] * (2 * N - 1)
    nodes[N - 1:N - 1 + len(vals)] = vals
    for i in range(N - 2, -1, -1):
        nodes[i] = ctx.fadd(nodes[2 * i + 1], nodes[2 * i + 2], exact=True)
    return nodes


def range_sum_from_nodes(node_values, lo: int, hi: int) -> object:
    """Sum of ``node_values`` over the canonical decomposition of [lo, hi] (N from the length).

    With exact node sums this is the exact range sum; with noisy ones it is DPTree.Query.
    Paper: DPTree.Query (v2 §4 / App. D); spec PAPER.md §3.1.
    """
    count = len(node_values)
    N = (count + 1) // 2
    if 2 * N - 1 != count:
        raise ShapeError("node_values", "must have 2N - 1 entries for a power of two N", count)
    ctx = node_values[0].context
    return ctx.fsum(node_values[i] for i in canonical_decomposition(lo, hi, N))


# ---------------------------------------------------------------------------------------------
# Per-level noise constants and the three error bounds (public: data-independent)
# ---------------------------------------------------------------------------------------------

def certified_upper(fn, *args, prec=None):
    """An upper bound, at ``prec`` bits, on a positive constant ``fn(*args, prec=...)``.

    ``fn`` (e.g. :func:`tl.support_bound`, :func:`tl.variance`) is evaluated at prec + 32 bits,
    where its rounding error is a few units in the last place, i.e. below 2^-(prec + 28)
    relatively; the result is then multiplied by 1 + 2^-prec with upward rounding. The margin
    exceeds that rounding error by a factor > 2^20, so the returned value is never below the
    true constant (DESIGN §5: bounds the reference claims are never optimistic). Not a paper
    construct: it serves the paper's error bounds (v2 §4 / App. D; PAPER.md §3.1).
    """
    p = resolve_prec(prec)
    ctx = context(p)
    value = to_mpf(fn(*args, prec=p + _GUARD_BITS), ctx)
    if not value > 0:
        raise ParameterError("certified_upper", "applies to positive constants only", value)
    return ctx.fmul(value, ctx.fadd(1, ctx.ldexp(1, -p), rounding="u"), rounding="u")


def _level_budget(eps, delta, n):
    return plan_dptree(eps, delta, n).share("tree_level")


def level_support_bound(*, n: int, sensitivity, eps, delta, prec=None):
    """A_L: the per-node truncation bound, TLap(Delta, eps/L, delta/L) support half-width.

    A_L = (Delta L/eps) ln(1 + L (e^(eps/L) - 1)/(2 delta)) (PAPER §5 item 15), certified
    (rounded up, :func:`certified_upper`). Paper: DPTree error lemma (v2 §4 / App. D); spec PAPER.md §3.1.
    """
    eps_l, delta_l = _level_budget(eps, delta, n)
    return certified_upper(tl.support_bound, sensitivity, eps_l, delta_l, prec=prec)


def level_variance(*, n: int, sensitivity, eps, delta, prec=None):
    """sigma_L^2 = Var TLap(Delta, eps/L, delta/L) (exact formula of PAPER §2.1; rounded up)."""
    eps_l, delta_l = _level_budget(eps, delta, n)
    return certified_upper(tl.variance, sensitivity, eps_l, delta_l, prec=prec)


def _decomposition_size(lo, hi, n) -> int:
    n = check_positive_int("n", n)
    if check_positive_int("hi", hi, minimum=0) > n - 1:
        raise ParameterError("hi", f"must be <= n - 1 = {n - 1}", hi)
    return len(canonical_decomposition(lo, hi, padded_size(n)))


def _check_failure(failure) -> Fraction:
    try:
        f = Fraction(failure)
    except (TypeError, ValueError):
        raise ParameterError("failure", "must be a number with 0 < failure < 1", failure) from None
    if not 0 < f < 1:
        raise ParameterError("failure", "must satisfy 0 < failure < 1", failure)
    return f


def _sure(size: int, A):
    return A.context.fmul(size, A, rounding="u")


def _chebyshev(size: int, var, failure):
    f = _check_failure(failure)
    ctx = var.context
    f_down = ctx.fdiv(f.numerator, f.denominator, rounding="d")
    return _sqrt_up(ctx.fdiv(ctx.fmul(size, var, rounding="u"), f_down, rounding="u"), ctx)


def hoeffding_bound(ranges, failure=PAPER_FAILURE):
    """sqrt(2 ln(2/failure) sum_j r_j^2), rounded up: Hoeffding for independent noises.

    If the error is sum_j c_j Z_j with independent mean-zero Z_j in [-A_j, A_j] and
    r_j = |c_j| A_j (``ranges``, non-empty mpf of one context), then P[|error| > t] <=
    2 exp(-t^2 / (2 sum_j r_j^2)) (Hoeffding), so |error| <= the returned t with probability
    >= 1 - failure. Used by every building block's high-probability bound (PAPER §3.1,
    sub-Gaussian form; DESIGN §9 (c)).
    """
    f = _check_failure(failure)
    ranges = list(ranges)
    if not ranges:
        raise ParameterError("ranges", "must be non-empty")
    ctx = ranges[0].context
    squares = ctx.zero
    for r in ranges:
        squares = ctx.fadd(squares, ctx.fmul(r, r, rounding="u"), rounding="u")
    log_term = certified_upper(_log_two_over, f, prec=ctx.prec)  # ln(2/f), rounded up
    return _sqrt_up(ctx.fmul(ctx.fmul(2, log_term, rounding="u"), squares, rounding="u"), ctx)


def _hoeffding(size: int, A, failure):
    return hoeffding_bound([A] * size, failure)


def sure_error_bound(lo: int, hi: int, *, n: int, sensitivity, eps, delta, prec=None):
    """|C| A_L: surely |DPTree.Query(lo, hi) - sum_{i=lo}^{hi} a_i| <= this (truncated noise).

    C is the canonical decomposition of [lo, hi]; (eps, delta) is the whole tree's budget.
    Holds for every noise draw, hence for all queries at once, adaptive ones included (in exact
    arithmetic; the reference's own rounding is ~2^-prec relative to the node values).
    Paper: DPTree error lemma, deterministic form (v2 §4 / App. D); spec
    PAPER.md §3.1 "Error [D]". Proof note: ``proofs_notes/06-dptree.md``.
    """
    size = _decomposition_size(lo, hi, n)
    return _sure(size, level_support_bound(n=n, sensitivity=sensitivity, eps=eps, delta=delta,
                                           prec=prec))


def chebyshev_error_bound(lo: int, hi: int, *, n: int, sensitivity, eps, delta,
                          failure=PAPER_FAILURE, prec=None):
    """sqrt(|C| sigma_L^2 / failure): the paper-form bound, |error| <= it w.p. >= 1 - failure.

    At the paper's failure = 0.01 this is 10 sqrt(|C|) sigma_L (Chebyshev; PAPER §3.1, the
    "with probability 0.99" form that feeds the median trick), <= 20 Delta (h+1) sqrt(h)/eps.
    Paper: DPTree error lemma (v2 §4 / App. D); spec PAPER.md §3.1.
    """
    size = _decomposition_size(lo, hi, n)
    return _chebyshev(size, level_variance(n=n, sensitivity=sensitivity, eps=eps, delta=delta,
                                           prec=prec), failure)


def hoeffding_error_bound(lo: int, hi: int, *, n: int, sensitivity, eps, delta,
                          failure=PAPER_FAILURE, prec=None):
    """A_L sqrt(2 |C| ln(2/failure)): |error| <= it w.p. >= 1 - failure (Hoeffding).

    The error is a sum of |C| independent, mean-zero draws in [-A_L, A_L], so
    P[|error| > t] <= 2 exp(-t^2 / (2 |C| A_L^2)) (PAPER §3.1, sub-Gaussian form).
    Paper: DPTree error lemma (v2 §4 / App. D); spec PAPER.md §3.1.
    """
    size = _decomposition_size(lo, hi, n)
    return _hoeffding(size, level_support_bound(n=n, sensitivity=sensitivity, eps=eps,
                                                delta=delta, prec=prec), failure)


def _log_two_over(f: Fraction, *, prec):
    ctx = context(prec)
    return ctx.log(ctx.fdiv(2 * f.denominator, f.numerator))


def _sqrt_up(x, ctx):
    """sqrt(x) rounded up at ctx's precision (mpmath's sqrt is correctly rounded; + 2 ulp)."""
    r = ctx.sqrt(x)
    return ctx.fadd(r, ctx.ldexp(abs(r), 1 - ctx.prec), rounding="u")


# ---------------------------------------------------------------------------------------------
# Uniforms
# ---------------------------------------------------------------------------------------------

def numerics_label(prec: int) -> str:
    """The numerics line a reference building block puts into its privacy plan.

    The paper assumes exact reals (PAPER.md §5 item 18; DESIGN §5); not a paper construct.
    """
    return (f"exact reference (mpmath, {prec} bits): noise by inversion of the exact CDF; the "
            "proof assumes exact reals (idealised real arithmetic)")


def draw_uniforms(count: int, *, uniforms=None, generator=None) -> tuple[np.ndarray, str]:
    """The ``count`` uniforms a build consumes, and the randomness label for its plan.

    ``uniforms`` given: validated (:func:`dpxattn.randomness.check_uniforms`); a
    ``numpy.random.Generator``: reproducible (labelled so); neither: the OS CSPRNG (DESIGN §5).
    The paper leaves the randomness unspecified (PAPER.md §5 item 20).
    """
    if uniforms is not None and generator is not None:
        raise ParameterError("uniforms/generator", "are exclusive: give at most one")
    if uniforms is not None:
        return check_uniforms(uniforms, count), LABEL_GIVEN
    if generator is not None:
        if not isinstance(generator, np.random.Generator):
            raise ParameterError("generator", "must be a numpy.random.Generator (or None: secure)",
                                 type(generator).__name__)
        return generator_uniforms(generator, count), LABEL_SEEDED
    return secure_uniforms(count), LABEL_SECURE


# ---------------------------------------------------------------------------------------------
# The structure
# ---------------------------------------------------------------------------------------------

class DPTree:
    """A built DPTree: the 2N - 1 noisy node values and the public parameters, nothing else.

    Paper: Alg. 'DPTree' (v2 §4 / App. D); spec PAPER.md §3.1. Attributes:
    ``n``, ``N``, ``levels`` (L), ``sensitivity`` (mpf), ``eps_level``/``delta_level`` (exact
    Fractions from the plan), ``prec``, ``noisy`` (tuple of 2N - 1 mpf, level order),
    ``support_bound`` (A_L, certified), ``plan`` (the :class:`dpxattn.accounting.PrivacyPlan`,
    labelled with the randomness source; ``None`` when the tree is a part of a larger structure
    whose plan is held there). Build with :meth:`build`.
    """

    __slots__ = ("n", "N", "levels", "sensitivity", "eps_level", "delta_level", "prec", "noisy",
                 "support_bound", "plan")

    def __init__(self, *, n, levels, sensitivity, eps_level, delta_level, prec, noisy,
                 support_bound, plan):
        self.n = n
        self.N = padded_size(n)
        self.levels = levels
        self.sensitivity = sensitivity
        self.eps_level = eps_level
        self.delta_level = delta_level
        self.prec = prec
        self.noisy = tuple(noisy)
        self.support_bound = support_bound
        self.plan = plan

    @staticmethod
    def noise_count(n: int) -> int:
        """2N - 1 (one uniform per node, level order)."""
        return noise_count(n)

    @classmethod
    def build(cls, values, *, sensitivity, eps, delta, uniforms=None, generator=None,
              prec=None) -> "DPTree":
        """DPTree.Init over ``values`` (1-D, length n >= 1; int, float, Fraction or mpf).

        Noise: node i gets ``tl.ppf(u_i, Delta, eps/L, delta/L)``, u in level order; (eps/L,
        delta/L) is ``plan_dptree(eps, delta, n).share("tree_level")``. The result is
        (eps, delta)-DP for neighbouring arrays that differ in one entry by at most
        ``sensitivity`` (vector extension per level, basic composition over the L levels).
        Paper: DPTree.Init (v2 §4 / App. D); spec PAPER.md §3.1.
        """
        p = resolve_prec(prec)
        check_positive("sensitivity", sensitivity)
        vals = _values(values, context(p))
        n = len(vals)
        plan = plan_dptree(eps, delta, n)
        u, label = draw_uniforms(noise_count(n), uniforms=uniforms, generator=generator)
        eps_l, delta_l = plan.share("tree_level")
        tree = cls._from_level_budget(vals, sensitivity=sensitivity, eps_level=eps_l,
                                      delta_level=delta_l, uniforms=u, prec=p)
        tree.plan = plan.with_labels(randomness=label, clip=False, numerics=numerics_label(p))
        return tree

    @classmethod
    def _from_level_budget(cls, values, *, sensitivity, eps_level, delta_level, uniforms,
                           prec) -> "DPTree":
        """Assemble a tree whose every node gets TLap(sensitivity, eps_level, delta_level).

        ``values``: exact mpf leaves (length n); ``uniforms``: 2N - 1 validated uniforms in
        level order. Used by :meth:`build` and by DPTreeDistance, whose plans give the level
        budget directly (``plan.share("tree_level")``).
        """
        ctx = context(prec)
        n = len(values)
        exact = exact_node_sums(values, prec=prec)
        noise = tl.sample(uniforms, sensitivity, eps_level, delta_level, prec=prec)
        noisy = [ctx.fadd(c, z) for c, z in zip(exact, noise)]
        A = certified_upper(tl.support_bound, sensitivity, eps_level, delta_level, prec=prec)
        return cls(n=n, levels=tree_levels(n), sensitivity=to_mpf(sensitivity, ctx),
                   eps_level=Fraction(eps_level), delta_level=Fraction(delta_level), prec=prec,
                   noisy=noisy, support_bound=A, plan=None)

    # -- queries (post-processing of the noisy nodes only) --------------------------------------

    def _check_range(self, lo, hi) -> tuple[int, int]:
        hi = check_positive_int("hi", hi, minimum=0)
        if hi > self.n - 1:
            raise ParameterError("hi", f"must be <= n - 1 = {self.n - 1}", hi)
        return lo, hi

    def nodes(self, lo: int, hi: int) -> tuple[int, ...]:
        """The canonical decomposition of [lo, hi] (0-based, inclusive, hi <= n - 1)."""
        lo, hi = self._check_range(lo, hi)
        return canonical_decomposition(lo, hi, self.N)

    def query(self, lo: int, hi: int):
        """DPTree.Query: sum of the noisy nodes of the canonical decomposition of [lo, hi].

        Paper: DPTree.Query (v2 §4 / App. D); spec PAPER.md §3.1.
        """
        return range_sum_from_nodes(self.noisy, *self._check_range(lo, hi))

    def error_coefficients(self, lo: int, hi: int) -> dict[int, int]:
        """node -> coefficient: query(lo, hi) - exact range sum = sum coef[i] * noise_i (all +1)."""
        return {i: 1 for i in self.nodes(lo, hi)}

    def sure_error_bound(self, lo: int, hi: int):
        """|C| A_L: surely |query(lo, hi) - exact| <= it (:func:`sure_error_bound`, PAPER §3.1)."""
        return _sure(len(self.nodes(lo, hi)), self.support_bound)

    def chebyshev_error_bound(self, lo: int, hi: int, failure=PAPER_FAILURE):
        """sqrt(|C| sigma_L^2 / failure), the paper form (:func:`chebyshev_error_bound`)."""
        return _chebyshev(len(self.nodes(lo, hi)), self.level_variance(), failure)

    def hoeffding_error_bound(self, lo: int, hi: int, failure=PAPER_FAILURE):
        """A_L sqrt(2 |C| ln(2/failure)) (:func:`hoeffding_error_bound`)."""
        return _hoeffding(len(self.nodes(lo, hi)), self.support_bound, failure)

    def level_variance(self):
        """sigma_L^2 of every node's noise (certified upper bound of the exact variance)."""
        return certified_upper(tl.variance, self.sensitivity, self.eps_level, self.delta_level,
                               prec=self.prec)
