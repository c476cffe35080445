"""The streaming accumulator of the ``direct`` and the ``tree`` statistic, exact reference (for
conformance).

Not in the paper (corpus scale; PAPER.md §5 items 8 and 18). Proof note
``proofs_notes/30-exact-accumulation.md``. The mirror of :class:`dpxattn.fast.Accumulator`:

    acc = Accumulator(mechanism="direct", d=2, d_v=2, degree=2, R=1.0, R_w=1.0)
    acc.add(K_chunk, V_chunk)            # lists or numpy arrays, validated like the build's
    acc.merge(other)                     # exact; same public parameters; other consumed
    att = acc.release(eps=1.0, delta=1e-6, law="tlap", uniforms=u)   # consumes acc
    tree = Accumulator(mechanism="tree", d=2, d_v=2, degree=2, R=1.0, R_w=1.0, grid_size=16)
    att = tree.add(K, V).release(eps=1.0, delta=1e-6, law="gaussian", copies=2, uniforms=u)

The tree (section "The tree" of note 30; sums of
:func:`dpxattn.reference.tree_accumulation.rounded_tree_sums`): the state is G x r x (d_v + 1)
x 3 Python integers, leaf g of (coordinate t, column k, moment m) = sum of
round(w P_t(k_i)^m 2^c_m) (ties to even) over the rows whose ``prec``-bit feature P_t falls in
public cell g, c_m = ``term_exponents`` (the fast path's lattices); c0 and c1 are sums of those
integers; ``add`` and ``merge`` add integers, so the sums do not depend on chunking, order or
merging. The release (:meth:`Accumulator.release`) is
:meth:`dpxattn.reference.dptree_softmax.TreeRelease.build` from the sums times 2^-c_m
(``sums=``, ``lattice=``): ``build``'s plan (``plan_tree``, composition "basic" or "pld" for
TLap), noise and uniform order, calibrated to the fast path's float64 sensitivities of the
rounded sums (:func:`tree_noise_sensitivities`: ``rounded_tree_sensitivities`` per level and
scalar for TLap, ``rounded_tree_l2`` for the Gaussian law, each rounded up as the fast path
rounds it). They bound the reference's own sums too: its terms are within
2^-(c_m+1) + 3 g_p W M_t^m of w P_t^m (g_p = gamma_{s+3} at 2^-prec), below the float64 term
bound e of ``term_error_bounds``, and its exact sums need no conversion. The envelopes add the
rows' rounding as a deterministic offset n (E_2 + ||u||^2 e_(0,0) + sum_(t,m) |coef_m(u_t)|
e_(t,m)) / 2 per column (:meth:`dpxattn.reference.dptree_softmax.TreeRelease.rounding_offsets`).

The ``direct`` statistic. Definitions (those of :mod:`dpxattn.reference.exact_accumulation`,
on the same public bounds as ``fast/accumulator.py::_exact_constants``:
``exact_accumulation.accumulator_lattice``):
``(M, a, b)`` the feature bounds and the lattice exponents; for every row (k_i, v_i) with
W_i = [v_i, 1]

    S~ 2^(a+b) = sum_i round(P(k_i) 2^a) round(W_i 2^b)^T        (Python integers)

with ``round`` to nearest, ties to even (Python's ``round`` of a Fraction; ``torch.round`` on the
fast path), and S~ = that integer matrix times 2^-(a+b) (Fractions). The integers do not depend
on how the rows are chunked, ordered or merged.

What P(k_i) is. The reference rounds its own features, ``kernel.features(k_i)`` at ``prec``
bits (mpmath, default 160): within g_p M_alpha of the exact ones, g_p = gamma_{s+3} at unit
roundoff 2^-prec. The fast path rounds fl(P(k_i)), the float64 features: within g M_alpha of
the exact ones, g = gamma_{s+3} at 2^-53 (``proofs_notes/17``). The values are the same on both
paths (round(v 2^b) is exact from a float64 v). Bound on the difference, per entry (alpha, k):

* x_ref = P_ref,alpha(k_i) 2^a and x_fast = fl(P_alpha(k_i)) 2^a differ by at most
  (g + g_p) M_alpha 2^a <= 2 g M_alpha 2^a <= 2^22 g, about (s + 3) 4.7e-10 lattice units
  (M_alpha 2^a <= 2^21 by the choice of a; the factor 2 also covers M's own rounding);
* so round(x_ref) != round(x_fast) only if a half-integer lies between them, hence within
  2 g M_alpha 2^a of x_ref, and then they differ by exactly 1 (the gap is far below 1);
* that row's term moves by |round(W_ik 2^b)| integer units. With B_alpha the rows whose x_ref
  lies within 2 g M_alpha 2^a of a half-integer:

    |S_fast - S_ref|_(alpha, k) 2^(a+b) <= sum_(i in B_alpha) |round(W_ik 2^b)|
                                        <= |B_alpha| (W_k 2^b + 1/2),

  i.e. |B_alpha| 2^-a (W_k + 2^-(b+1)) in S's units (W_k = R_w for a value column, 1 for the
  ones column): :meth:`Accumulator.fast_difference_bound`.

For keys with a continuous distribution a row is in B_alpha with probability about
4 g M_alpha 2^a <= 2^23 g (5.6e-9 at s = 3): the sums are then equal, bit for bit. Inputs
clipped onto the ball are not covered (the reference projects a row at prec bits, the fast path
in float64: the rows themselves differ).

The release: :meth:`dpxattn.reference.direct.DirectRelease.from_statistic` on S~, with the
fast path's sensitivity, the same float64 number (:func:`noise_sensitivity`: the rounded
statistic's sensitivity plus the float64 conversion's allowance, rounded up as
``fast/sensitivities.py::round_up`` does), uniforms in the ``direct`` order. The result is a
:class:`dpxattn.reference.cross_attention.DPCrossAttention` (mechanism ``direct``).
"""

from __future__ import annotations

import math
from fractions import Fraction

from dpxattn.accounting import feature_dimension, plan_direct
from dpxattn.errors import AccumulatorError, ShapeError
from dpxattn.memory import check_build_memory
from dpxattn.params import (check_accumulator_arguments, check_accumulator_merge,
                            check_accumulator_release, check_degree, check_positive_int)
from dpxattn.reference import ball, kernel
from dpxattn.reference._mp import (DEFAULT_PREC, check_entries, context, resolve_prec,
                                   to_fraction, to_matrix)
from dpxattn.reference.exact_accumulation import (MAX_ROWS, accumulator_lattice,
                                                  released_sensitivity, rounding_error_bounds)
from dpxattn.reference.sensitivity import direct_term_roundings, float64_gamma

__all__ = ["Accumulator", "AccumulatorError", "noise_sensitivity", "round_to_lattice",
           "round_up_as_fast", "tree_noise_sensitivities"]

#: the fast path's margin before rounding a constant up to float64 (fast/sensitivities.py)
ROUND_UP_MARGIN = 1 + Fraction(1, 2 ** 90)


def round_to_lattice(x, e: int) -> int:
    """round(x 2^e) as a Python integer, to nearest with ties to even (as ``torch.round``), x
    taken exactly (``to_fraction``). Paper: none (PAPER.md §5 item 18). Proof note:
    ``proofs_notes/30-exact-accumulation.md``."""
    return round(to_fraction(x) * Fraction(2) ** e)


def round_up_as_fast(value) -> float:
    """A reference constant (an mpf of the reference's private mpmath context, or an exact
    number) rounded up to float64 exactly as ``fast/sensitivities.py::round_up`` rounds it: to
    the nearest float64 first (``fast/directed.py::exact_fraction`` reads such an mpf through
    ``float()``), then the smallest float64 >= that times (1 + 2^-90): never below the value
    (at most 2 ulps above it). Paper: none (PAPER.md §5 item 18). Proof note:
    ``proofs_notes/30-exact-accumulation.md``."""
    q = Fraction(float(value)) * ROUND_UP_MARGIN
    f = float(q)
    if Fraction(f) < q:
        f = math.nextafter(f, math.inf)
    return f


def noise_sensitivity(*, n: int, d: int, degree: int, R, R_w, d_v: int, scale=None,
                      domain: str = "box", norm: str = "l1", prec=None) -> float:
    """The float64 sensitivity both implementations calibrate an accumulator's noise to:
    ``released_sensitivity(...)`` (an mpf,
    :func:`dpxattn.reference.exact_accumulation.released_sensitivity`) rounded up as
    ``fast/sensitivities.py::round_up`` rounds it today: the mpf to the nearest float64 first
    (``fast/directed.py::exact_fraction`` reads an mpf of the reference's private mpmath
    context through ``float()``), then the smallest float64 >= that times (1 + 2^-90): the
    float64 just above the nearest one, so never below the mpf (and at most 2 ulps above it).
    Paper: none (PAPER.md §5 items 8 and 18). Proof note:
    ``proofs_notes/30-exact-accumulation.md``."""
    return round_up_as_fast(released_sensitivity(n, d, degree, R, R_w, d_v, scale=scale,
                                                 domain=domain, norm=norm, prec=prec))


def tree_noise_sensitivities(*, n: int, d: int, degree: int, R, R_w, d_v: int, grid_size: int,
                             copies: int = 1, scale=None, law: str = "tlap", prec=None):
    """The float64 sensitivities both implementations calibrate a streaming tree's noise to,
    the numbers of ``fast/tree_accumulation.py::tree_exact_constants``: TLap, ``(scalar, nodes)``
    with ``scalar[k] = [Delta_c0~, Delta_c1~]`` and ``nodes[k][t][m]`` the per-level ones of
    :func:`dpxattn.reference.tree_accumulation.rounded_tree_sensitivities`; Gaussian, the l2
    sensitivity of the whole release (``rounded_tree_l2``, every copy); each rounded up by
    :func:`round_up_as_fast`, on the term exponents of ``term_exponents`` (the public feature
    bounds M and R_w). Paper: DPTreeSoftmax's released numbers (v2 App. I; PAPER.md §3.4-3.7),
    rounded (not in the paper, §5 items 13 and 18). Proof note:
    ``proofs_notes/30-exact-accumulation.md`` ("The tree")."""
    from dpxattn.reference import tree_accumulation as ta

    ex = ta.term_exponents(kernel.feature_bounds(d, degree, R, scale=scale, prec=prec), R_w)
    if law == "gaussian":
        return round_up_as_fast(ta.rounded_tree_l2(n, d, degree, R, R_w, d_v, ex,
                                                   grid_size=grid_size, copies=copies,
                                                   scale=scale, prec=prec))
    scal, levels = ta.rounded_tree_sensitivities(n, d, degree, R, R_w, d_v, ex, scale=scale,
                                                 prec=prec)
    return ([[round_up_as_fast(x) for x in pair] for pair in scal],
            [[[round_up_as_fast(x) for x in ms] for ms in col] for col in levels])


class Accumulator:
    """An exact, mergeable accumulator of the ``direct`` or the ``tree`` statistic (module
    docstring).

    Public parameters as :meth:`dpxattn.reference.DPCrossAttention.build`'s; ``mechanism``
    "direct" or "tree" (the box only, ``grid_size`` G required: the grid is fixed before the
    rows are seen); ``prec`` is the working precision of the features. Holds the public
    parameters, the lattice (``M``, ``a``, ``b`` for ``direct``; ``exponents`` (c_0, c_1, c_2)
    for the tree), the row count ``n`` and the exact integer sums, nothing else: r x (d_v + 1)
    Python integers S~ 2^(a+b) (``direct``), or G x r x (d_v + 1) x 3 grid-cell sums of the
    rounded terms (the tree, :func:`dpxattn.reference.tree_accumulation.rounded_tree_sums`).
    Paper: none (the ``direct`` mechanism is ours, PAPER.md §5 items 8 and 18; the tree's sums
    are DPTreeSoftmax's, v2 App. I, rounded). Proof note:
    ``proofs_notes/30-exact-accumulation.md``.
    """

    def __init__(self, *, mechanism: str = "direct", d: int, d_v: int, degree: int, R, R_w,
                 scale=None, clip: bool = False, domain: str = "box",
                 grid_size: int | None = None, prec=DEFAULT_PREC) -> None:
        """Validate the public parameters (as the reference's build does) and start empty.
        Paper: none (PAPER.md §5 item 8). Proof note ``proofs_notes/30-exact-accumulation.md``."""
        mechanism, degree, grid_size, clip = check_accumulator_arguments(
            mechanism=mechanism, R=R, R_w=R_w, degree=degree, scale=scale, grid_size=grid_size,
            clip=clip, domain=domain)
        self.mechanism = mechanism
        self.prec = resolve_prec(prec)
        self.d = check_positive_int("d", d)
        self.d_v = check_positive_int("d_v", d_v)
        self.degree = check_degree(degree)
        self.R, self.R_w, self.clip, self.domain = R, R_w, clip, domain
        self.grid_size = grid_size
        if domain == "ball":
            scale = ball.ball_scale(scale) if scale is None else scale
            ball.ball_kernel_floor(degree, R, scale=scale, prec=self.prec)  # refuses T_s(-a) <= 0
        self.scale = scale
        self.r = feature_dimension(self.d, self.degree)
        check_build_memory(mechanism=mechanism, n=1, d=self.d, d_v=self.d_v, degree=self.degree,
                           grid_size=grid_size, implementation="reference")
        if mechanism == "tree":
            from dpxattn.reference.tree_accumulation import term_exponents

            self.M = kernel.feature_bounds(self.d, self.degree, R, scale=scale, prec=self.prec)
            self.exponents = term_exponents(self.M, R_w)
            self.a = self.b = None
            self._sums = [[[[0] * 3 for _ in range(self.d_v + 1)] for _ in range(self.r)]
                          for _ in range(grid_size)]
        else:
            self.M, self.a, self.b = accumulator_lattice(self.d, self.degree, R, R_w,
                                                         scale=scale, domain=domain,
                                                         prec=self.prec)
            self.exponents = None
            self._sums = [[0] * (self.d_v + 1) for _ in range(self.r)]
        self.n = 0
        self._consumed = None  # None (open), "released" or "merged"

    @property
    def max_rows(self) -> int:
        """The most rows one accumulator may hold, the fast path's bound: 2^48 (``direct``) or
        2^44 (the tree). Paper: none (PAPER.md §5 item 18). Proof note
        ``proofs_notes/30-exact-accumulation.md``."""
        from dpxattn.reference.tree_accumulation import TREE_MAX_ROWS

        return TREE_MAX_ROWS if self.mechanism == "tree" else MAX_ROWS

    def _public(self) -> tuple:
        return (self.mechanism, self.d, self.d_v, self.degree, self.R, self.R_w, self.scale,
                self.clip, self.domain, self.grid_size, self.prec, self.a, self.b,
                self.exponents)

    def _check_rows(self, n: int) -> None:
        if n > self.max_rows:
            raise AccumulatorError("n", f"must stay <= {self.max_rows} rows per accumulator (the "
                                   "fast path's int64 bound, proofs_notes/30)", n)

    def _check_open(self, what: str) -> None:
        if self._consumed == "released":
            raise AccumulatorError("accumulator", f"was already released: it cannot {what} "
                                   "(a second release would spend the budget twice)")
        if self._consumed == "merged":
            raise AccumulatorError("accumulator", f"was already merged into another one: it "
                                   f"cannot {what} (its rows are counted there)")

    def _rows(self, K, V) -> tuple[list, list]:
        """K, V validated as the reference's build validates them: exact conversion, equal row
        counts, d and d_v columns, the box [0, R]^d or the ball, V in [-R_w, R_w], NaN/inf
        refused, ``clip`` as given."""
        ctx = context(self.prec)
        Km = to_matrix(K, ctx, "K")
        Vm = to_matrix(V, ctx, "V")
        if len(Vm) != len(Km):
            raise ShapeError("V", f"must have as many rows as K (n = {len(Km)})",
                             f"{len(Vm)} rows")
        if len(Km[0]) != self.d:
            raise ShapeError("K", f"must have d = {self.d} columns", f"{len(Km[0])} columns")
        if len(Vm[0]) != self.d_v:
            raise ShapeError("V", f"must have d_v = {self.d_v} columns", f"{len(Vm[0])} columns")
        if self.domain == "ball":
            Km = ball.check_ball_rows(Km, "K", self.R, self.clip, private=True)
        else:
            Km = check_entries(Km, "K", 0, self.R, "[0, R]", self.clip)
        Vm = check_entries(Vm, "V", -self.R_w, self.R_w, "[-R_w, R_w]", self.clip)
        return Km, Vm

    def _lattice_rows(self, k, v) -> tuple[list, list, list]:
        """(features P(k) at prec bits, round(P(k) 2^a), round([v, 1] 2^b)) of one row."""
        feats = kernel.features(k, self.degree, scale=self.scale, prec=self.prec)
        Pq = [round_to_lattice(f, self.a) for f in feats]
        Wq = [round_to_lattice(x, self.b) for x in v] + [round_to_lattice(1, self.b)]
        return feats, Pq, Wq

    def add(self, K, V) -> "Accumulator":
        """Add the rows K (m x d), V (m x d_v) (lists or numpy arrays; validated like the
        reference build's input): sums[t][k] += round(P(k_i)_t 2^a) round(W_ik 2^b)
        (``direct``), or the rows' leaf sums of :func:`dpxattn.reference.tree_accumulation.
        rounded_tree_sums` added into the grid-cell sums (the tree).
        Paper: none (PAPER.md §5 items 8, 18). Proof note
        ``proofs_notes/30-exact-accumulation.md``."""
        self._check_open("add rows")
        Km, Vm = self._rows(K, V)
        self._check_rows(self.n + len(Km))
        if self.mechanism == "tree":
            from dpxattn.reference.tree_accumulation import rounded_tree_sums

            leaves, _ = rounded_tree_sums(Km, Vm, degree=self.degree, R=self.R, R_w=self.R_w,
                                          grid_size=self.grid_size, scale=self.scale,
                                          prec=self.prec)
            _add_into(self._sums, leaves)
            self.n += len(Km)
            return self
        for k, v in zip(Km, Vm):
            _, Pq, Wq = self._lattice_rows(k, v)
            for t in range(self.r):
                for j in range(self.d_v + 1):
                    self._sums[t][j] += Pq[t] * Wq[j]
        self.n += len(Km)
        return self

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Add another reference accumulator's sums (exact); it must have the same public
        parameters (and precision) and be another object; ``other`` is consumed.
        Paper: none (PAPER.md §5 item 8). Proof note ``proofs_notes/30-exact-accumulation.md``."""
        check_accumulator_merge(self, other, Accumulator,
                                "a reference Accumulator (of the same precision)")
        self._check_rows(self.n + other.n)
        _add_into(self._sums, other._sums)
        self.n += other.n
        other._sums = None
        other._consumed = "merged"
        return self

    def integer_sums(self):
        """A copy of the exact integer sums: private data, for tests and conformance only.
        ``direct``: S~ 2^(a+b), r lists of d_v + 1 ints. The tree: ``(leaves, scalars)`` as
        :func:`dpxattn.reference.tree_accumulation.rounded_tree_sums` returns them,
        ``leaves[g][t][k][m]`` (units 2^-c_m) and ``scalars[k] = (c0, c1)`` (units 2^-c_0 and
        2^-c_2: the sum over the leaves of (t = 0, m = 0), and over t and the leaves of
        (t, m = 2)). Paper: none (PAPER.md §5 item 18). Proof note
        ``proofs_notes/30-exact-accumulation.md``."""
        self._check_open("show its sums")
        if self.mechanism == "tree":
            leaves = [[[list(ms) for ms in col] for col in row] for row in self._sums]
            cols = range(self.d_v + 1)
            c0 = [sum(leaf[0][k][0] for leaf in leaves) for k in cols]
            c1 = [sum(leaf[t][k][2] for leaf in leaves for t in range(self.r)) for k in cols]
            return leaves, list(zip(c0, c1))
        return [list(row) for row in self._sums]

    def statistic(self):
        """The exact rounded statistic (Fractions; private, for tests and the release):
        ``direct``, S~ = the integer sums times 2^-(a+b) (r lists of d_v + 1); the tree,
        ``(leaves, scalars)`` of :meth:`integer_sums` times their lattices 2^-c_m (c0 on
        2^-c_0, c1 on 2^-c_2), the ``sums=`` of
        :meth:`dpxattn.reference.dptree_softmax.TreeRelease.build`. Paper: none (PAPER.md §5
        item 18). Proof note ``proofs_notes/30-exact-accumulation.md``."""
        if self.mechanism == "tree":
            leaves, scalars = self.integer_sums()
            unit = [Fraction(2) ** -c for c in self.exponents]
            return ([[[[x * unit[m] for m, x in enumerate(ms)] for ms in col] for col in row]
                     for row in leaves],
                    [(c0 * unit[0], c1 * unit[2]) for c0, c1 in scalars])
        unit = Fraction(2) ** -(self.a + self.b)
        return [[x * unit for x in row] for row in self.integer_sums()]

    def fast_difference_bound(self, K, V) -> list:
        """For the rows K, V (validated as by :meth:`add`, not added): r lists of d_v + 1
        integers bounding |fast integer sums - these integer sums| entrywise (module docstring):
        the sum of |round(W_ik 2^b)| over the rows whose feature P_alpha(k_i) 2^a lies within
        2 g M_alpha 2^a of a half-integer, g = gamma_{s+3} (float64). A conformance diagnostic on
        private rows, never released. Paper: none (PAPER.md §5 item 18). Proof note
        ``proofs_notes/30-exact-accumulation.md``."""
        if self.mechanism != "direct":
            raise AccumulatorError("mechanism", "fast_difference_bound is derived for 'direct' "
                                   "only (the tree's rows can also move cells)", self.mechanism)
        Km, Vm = self._rows(K, V)
        g = float64_gamma(direct_term_roundings(self.degree))
        lift = Fraction(2) ** self.a
        reach = [2 * g * to_fraction(m) * lift for m in self.M]
        out = [[0] * (self.d_v + 1) for _ in range(self.r)]
        for k, v in zip(Km, Vm):
            feats, _, Wq = self._lattice_rows(k, v)
            for t, f in enumerate(feats):
                x = to_fraction(f) * lift
                if abs(x - (math.floor(x) + Fraction(1, 2))) <= reach[t]:
                    for j in range(self.d_v + 1):
                        out[t][j] += abs(Wq[j])
        return out

    def release(self, *, eps, delta, law: str = "tlap", uniforms=None, generator=None,
                copies: int = 1, composition: str = "basic"):
        """The noisy structure, a reference ``DPCrossAttention``. ``direct``: its release is
        :meth:`dpxattn.reference.direct.DirectRelease.from_statistic` of S~ with the fast
        path's sensitivity (:func:`noise_sensitivity`, l1 for TLap, l2 for the Gaussian law)
        and noise from ``uniforms`` (``direct_noise_count`` of them, the ``direct`` order), a
        ``numpy.random.Generator``, or the OS CSPRNG. The tree (:meth:`_release_tree`):
        :meth:`dpxattn.reference.dptree_softmax.TreeRelease.build` from the rounded sums
        (:meth:`statistic`) with the fast path's sensitivities
        (:func:`tree_noise_sensitivities`), ``copies`` and ``composition`` ("basic" or "pld",
        TLap) as in ``build``, uniforms in the tree order (``tree_noise_count`` of them).
        Consumes the accumulator (its sums are dropped); an empty one refuses. Paper: none
        (PAPER.md §5 items 8 and 18; the tree: DPTreeCrossAttention.Init, v2 §3, App. I, on
        rounded sums). Proof note ``proofs_notes/30-exact-accumulation.md``."""
        from dpxattn.reference.cross_attention import DPCrossAttention
        from dpxattn.reference.direct import DirectRelease, direct_noise_count
        from dpxattn.reference.dptree import draw_uniforms, numerics_label

        self._check_open("be released")
        copies = check_accumulator_release(self, eps=eps, delta=delta, law=law, copies=copies,
                                           composition=composition)
        tree = self.mechanism == "tree"
        if tree:
            return self._release_tree(eps, delta, law, uniforms, generator, copies,
                                      composition)
        n, d, d_v, s = self.n, self.d, self.d_v, self.degree
        sens = noise_sensitivity(n=n, d=d, degree=s, R=self.R, R_w=self.R_w, d_v=d_v,
                                 scale=self.scale, domain=self.domain,
                                 norm="l2" if law == "gaussian" else "l1", prec=self.prec)
        u, label = draw_uniforms(direct_noise_count(d=d, d_v=d_v, degree=s), uniforms=uniforms,
                                 generator=generator)
        S = self.statistic()
        self._sums = None
        self._consumed = "released"
        release = DirectRelease.from_statistic(
            S, n=n, d=d, eps=eps, delta=delta, R=self.R, R_w=self.R_w, degree=s,
            sensitivity=sens, scale=self.scale, uniforms=u, prec=self.prec, law=law,
            domain=self.domain,
            rounding=rounding_error_bounds(self.M, self.R_w, d_v, s, self.a, self.b,
                                           prec=self.prec))
        del S
        plan = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, law=law,
                           sensitivity=release.sensitivity,
                           noise_scale=(release.sigma if law == "gaussian"
                                        else release.laplace_scale), domain=self.domain)
        notes = ((ball.ball_plan_note(self.clip),) if self.domain == "ball" else ()) + (
            f"exact accumulation (streaming, reference): features on the lattice 2^-{self.a}, "
            f"values on 2^-{self.b}, integer sums; the noise is calibrated to the sensitivity "
            f"of that rounded statistic, {sens:.9g} (proofs_notes/30-exact-accumulation.md)",)
        plan = plan.with_labels(randomness=label, clip=self.clip,
                                numerics=numerics_label(self.prec), notes=notes)
        return DPCrossAttention(mechanism="direct", release=release, plan=plan, n=n, d=d,
                                d_v=d_v, degree=s, R=self.R, R_w=self.R_w, scale=self.scale,
                                clip=self.clip, copies=1, grid_size=None, prec=self.prec,
                                law=law, domain=self.domain)

    def _release_tree(self, eps, delta, law, uniforms, generator, copies, composition):
        """:meth:`release`'s body for the tree (arguments checked there): the plan of ``build``
        (``plan_tree``), the float64 sensitivities of ``fast/tree_accumulation.py::
        tree_exact_constants`` (:func:`tree_noise_sensitivities`), the sums of
        :meth:`statistic` released by ``TreeRelease.build(None, None, sums=, n=, d=,
        lattice=, sensitivities=)`` (whose envelopes add the rows' rounding)."""
        from dpxattn.accounting import plan_tree
        from dpxattn.reference.cross_attention import DPCrossAttention
        from dpxattn.reference.dptree import draw_uniforms, numerics_label
        from dpxattn.reference.dptree_softmax import TreeRelease, tree_noise_count

        n, d, d_v, s, G = self.n, self.d, self.d_v, self.degree, self.grid_size
        check_build_memory(mechanism="tree", n=n, d=d, d_v=d_v, degree=s, copies=copies,
                           grid_size=G, implementation="reference")
        plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, copies=copies,
                         grid_size=G, composition=composition, law=law)
        sens = tree_noise_sensitivities(n=n, d=d, degree=s, R=self.R, R_w=self.R_w, d_v=d_v,
                                        grid_size=G, copies=copies, scale=self.scale, law=law,
                                        prec=self.prec)
        u, label = draw_uniforms(tree_noise_count(n=n, d=d, d_v=d_v, degree=s, copies=copies,
                                                  grid_size=G),
                                 uniforms=uniforms, generator=generator)
        sums = self.statistic()
        self._sums = None
        self._consumed = "released"
        release = TreeRelease.build(None, None, plan=plan, R=self.R, R_w=self.R_w, degree=s,
                                    scale=self.scale, copies=copies, grid_size=G, uniforms=u,
                                    prec=self.prec, law=law, sums=sums, n=n, d=d,
                                    lattice=self.exponents, sensitivities=sens)
        del sums
        if law == "gaussian":  # the plan records the l2 sensitivity and sigma the release used
            plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, copies=copies,
                             grid_size=G, law=law, sensitivity=release.sensitivity,
                             noise_scale=release.sigma)
            used = f"the l2 sensitivity {sens:.9g}"
        else:
            top = max(x for col in sens[1] for ms in col for x in ms)
            used = f"per-level sensitivities up to {top:.9g}"
        ex = self.exponents
        notes = (f"exact accumulation (streaming, reference): every term on the lattice "
                 f"2^-{ex[0]}, 2^-{ex[1]}, 2^-{ex[2]} (moments 0, 1, 2), integer grid-cell sums; "
                 f"the noise is calibrated to the rounded sums' sensitivity, {used} "
                 "(proofs_notes/30-exact-accumulation.md)",)
        plan = plan.with_labels(randomness=label, clip=self.clip,
                                numerics=numerics_label(self.prec), notes=notes)
        return DPCrossAttention(mechanism="tree", release=release, plan=plan, n=n, d=d,
                                d_v=d_v, degree=s, R=self.R, R_w=self.R_w, scale=self.scale,
                                clip=self.clip, copies=copies, grid_size=G, prec=self.prec,
                                law=law, domain=self.domain)


def _add_into(target: list, other: list) -> None:
    """target += other, entrywise, for equally nested lists of Python integers (exact)."""
    for i, x in enumerate(other):
        if isinstance(x, list):
            _add_into(target[i], x)
        else:
            target[i] += x
