"""The conformance table: the fast torch path against the exact reference, from shared uniforms.

DESIGN §6 ("Conformance"): reference vs fast with shared uniforms agree to 1e-10 relative in
float64, or within twice a plain float64 re-computation's own error, whichever is larger, over a
table of cases (n = 1, powers of two and +-1, d = 1 and odd, d_v >= 1, degree 0..4, both
mechanisms, copies 1..3, extreme uniforms near 0 and 1). In the style of SciPy's ``MpmathData``
tables: :data:`CASES` is declarative, :func:`run_case` evaluates one row, :func:`run_table` all.

For each case, one set of uniforms (``noise_count`` of them) and one data set (K, V, Q) are
generated from the case's seed; then

* ``dpxattn.reference.DPCrossAttention`` (exact, mpmath) and ``dpxattn.fast.DPCrossAttention``
  (torch, float64) are built from the same uniforms and queried at Q;
* :func:`plain_float64` recomputes the same mechanism in plain numpy float64 (textbook formulas,
  the conventions' float64 inversion; no code shared with the fast path) to measure how much a
  float64 computation of this case may legitimately differ from the exact one;
* entry by entry, the fast answer must satisfy ``|fast - ref| <= max(1e-10 |ref|, 2 |plain - ref|,
  proven)``, ``proven`` the fast path's own proven floating-point bound
  (:func:`proven_float_error`: without it an answer near 0 could fail a correct build by
  rounding luck, since neither 1e-10 |ref| nor a plain recomputation's error bounds the fast
  path's rounding there);
  the fast certified envelope must contain the exact noiseless Taylor attention
  (``|fast - taylor| <= fast.error_bound``); the fast envelopes (sure and high-probability) must
  agree with the reference's to 1e-10 relative; building twice from the same uniforms must give
  bit-identical released tensors, and querying twice bit-identical answers.

:func:`check_conformance` wraps the table as harness records (``CheckRecord``, exact checks).
Every record is a deterministic fact or a proven bound for a correct build (no false alarm by
chance): answers within the proven floating-point bound, envelopes (sums of positive terms, a
minimum and well-conditioned ratios, rounded up) within 1e-10 relative of the reference's, the
sure envelope containing the exact Taylor attention, bit-identical rebuilds and queries.
Fast-path note: ``proofs_notes/19-fast-path.md``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from dpxattn.randomness import derive_seed, generator_uniforms
from dpxattn.verification.records import CheckRecord

__all__ = [
    "REL_TOL",
    "ConformanceCase",
    "ConformanceRecord",
    "CASES",
    "QUICK_CASES",
    "case_data",
    "case_uniforms",
    "plain_float64",
    "run_case",
    "run_table",
    "check_conformance",
]

#: DESIGN §6 relative tolerance in float64
REL_TOL = 1e-10
#: failure probability at which the high-probability envelopes are compared
HP_FAILURE = 0.05


@dataclass(frozen=True)
class ConformanceCase:
    """One row of the table. ``uniforms``: "random", "low" (all 2^-53), "high" (all 1 - 2^-53),
    "alternating" (low/high), "mixed" (random with a third pushed to each extreme), "half" (all
    1/2: zero noise). ``data``: "random" or "corners" (keys and queries at 0 or R; on the ball:
    at 0 or +-R e_i). ``domain``: "box" or "ball" (``direct`` only; random rows inside the ball
    of radius R; ``proofs_notes/27-ball-domain.md``)."""

    name: str
    mechanism: str
    n: int
    d: int
    d_v: int
    degree: int
    copies: int = 1
    grid_size: int | None = None
    uniforms: str = "random"
    data: str = "random"
    m: int = 3
    R: float = 1.0
    R_w: float = 1.0
    eps: float = 1.0
    delta: float = 1e-6
    scale: float | None = None
    domain: str = "box"
    composition: str = "basic"
    law: str = "tlap"

    @property
    def build_kwargs(self) -> dict:
        kw = dict(eps=self.eps, delta=self.delta, R=self.R, R_w=self.R_w, degree=self.degree,
                  mechanism=self.mechanism, scale=self.scale)
        if self.domain != "box":
            kw.update(domain=self.domain)
        if self.law != "tlap":
            kw.update(law=self.law)
        if self.mechanism == "tree":
            kw.update(copies=self.copies, grid_size=self.grid_size)
            if self.composition != "basic":
                kw.update(composition=self.composition)
        return kw


def _cases() -> list[ConformanceCase]:
    C = ConformanceCase
    out = [
        # direct: n = 1, powers of two and +-1; d = 1 and odd; degree 0..4; d_v 1..3
        C("direct n1 d1 s0", "direct", 1, 1, 1, 0),
        C("direct n1 d3 s4", "direct", 1, 3, 2, 4),
        C("direct n2 d1 s4", "direct", 2, 1, 1, 4),
        C("direct n3 d3 s2", "direct", 3, 3, 3, 2),
        C("direct n7 d5 s1", "direct", 7, 5, 1, 1),
        C("direct n8 d2 s3", "direct", 8, 2, 2, 3),
        C("direct n9 d3 s3 low", "direct", 9, 3, 2, 3, uniforms="low"),
        C("direct n15 d1 s2 high", "direct", 15, 1, 1, 2, uniforms="high"),
        C("direct n16 d3 s4 alt", "direct", 16, 3, 1, 4, uniforms="alternating"),
        C("direct n17 d2 s2 mixed", "direct", 17, 2, 3, 2, uniforms="mixed"),
        C("direct n31 d3 s1 corners", "direct", 31, 3, 2, 1, data="corners"),
        C("direct n32 d1 s0 half", "direct", 32, 1, 2, 0, uniforms="half"),
        C("direct n33 d5 s2 R2", "direct", 33, 5, 2, 2, R=2.0, R_w=0.5),
        C("direct n64 d3 s3 scale", "direct", 64, 3, 2, 3, scale=0.25, eps=0.3, delta=1e-9),
        C("direct n65 d1 s4 high", "direct", 65, 1, 3, 4, uniforms="high"),
        # direct on the ball (signed keys, ||k|| <= R; even degree or odd with T_s(-a) > 0)
        C("ball n1 d1 s2", "direct", 1, 1, 1, 2, domain="ball"),
        C("ball n7 d3 s2", "direct", 7, 3, 2, 2, domain="ball"),
        C("ball n16 d2 s4 low", "direct", 16, 2, 2, 4, uniforms="low", domain="ball"),
        C("ball n17 d3 s3 scale mixed", "direct", 17, 3, 1, 3, scale=0.5, uniforms="mixed",
          domain="ball"),
        C("ball n31 d3 s1 corners", "direct", 31, 3, 2, 1, scale=0.5, data="corners",
          domain="ball"),
        C("ball n32 d2 s0 half", "direct", 32, 2, 1, 0, uniforms="half", domain="ball"),
        C("ball n33 d5 s2 R2 high", "direct", 33, 5, 2, 2, R=2.0, R_w=0.5, scale=0.25,
          uniforms="high", domain="ball"),
        # tree: n = 1, powers of two and +-1; copies 1..3; grid sizes; extreme uniforms
        C("tree n1 d1 s0", "tree", 1, 1, 1, 0),
        C("tree n1 d3 s2", "tree", 1, 3, 1, 2),
        C("tree n2 d1 s3", "tree", 2, 1, 1, 3),
        C("tree n3 d1 s4", "tree", 3, 1, 2, 4),
        C("tree n4 d3 s1 c2", "tree", 4, 3, 1, 1, copies=2),
        C("tree n5 d1 s2 c3", "tree", 5, 1, 2, 2, copies=3),
        C("tree n7 d2 s2 low", "tree", 7, 2, 1, 2, uniforms="low"),
        C("tree n8 d1 s3 high", "tree", 8, 1, 1, 3, uniforms="high"),
        C("tree n9 d3 s1 alt c2", "tree", 9, 3, 1, 1, copies=2, uniforms="alternating"),
        C("tree n15 d1 s1 mixed", "tree", 15, 1, 2, 1, uniforms="mixed"),
        C("tree n16 d2 s1 corners", "tree", 16, 2, 1, 1, data="corners"),
        C("tree n17 d1 s2 G5", "tree", 17, 1, 1, 2, grid_size=5),
        C("tree n31 d1 s1 half c3", "tree", 31, 1, 1, 1, copies=3, uniforms="half"),
        C("tree n32 d1 s0", "tree", 32, 1, 2, 0),
        C("tree n33 d1 s1 R2", "tree", 33, 1, 1, 1, R=2.0, R_w=3.0),
        C("tree n12 d2 s1 G16 scale", "tree", 12, 2, 1, 1, grid_size=16, scale=0.7, eps=2.0,
          delta=1e-3),
        C("tree n9 d2 s4 c2 mixed", "tree", 9, 2, 1, 4, copies=2, uniforms="mixed"),
        C("tree n17 d3 s2 low c3", "tree", 17, 3, 1, 2, copies=3, uniforms="low"),
        # tree with optimal composition of its TLap components (proofs_notes/05)
        C("tree n9 d2 s2 pld", "tree", 9, 2, 2, 2, composition="pld"),
        C("tree n6 d1 s1 c2 pld mixed", "tree", 6, 1, 1, 1, copies=2, uniforms="mixed",
          composition="pld"),
        # the Gaussian law (notes 24, 26): float path from the same uniforms, both mechanisms
        C("gauss direct n1 d1 s0", "direct", 1, 1, 1, 0, law="gaussian"),
        C("gauss direct n9 d3 s3 low", "direct", 9, 3, 2, 3, uniforms="low", law="gaussian"),
        C("gauss direct n16 d2 s2 mixed", "direct", 16, 2, 2, 2, uniforms="mixed",
          law="gaussian"),
        C("gauss ball n8 d2 s2 high", "direct", 8, 2, 1, 2, uniforms="high", domain="ball",
          law="gaussian"),
        C("gauss tree n1 d1 s0", "tree", 1, 1, 1, 0, law="gaussian"),
        C("gauss tree n7 d2 s2 c3 mixed", "tree", 7, 2, 1, 2, copies=3, uniforms="mixed",
          law="gaussian"),
        C("gauss tree n9 d1 s3 G5 low", "tree", 9, 1, 2, 3, grid_size=5, uniforms="low",
          law="gaussian"),
    ]
    return out


CASES: tuple[ConformanceCase, ...] = tuple(_cases())
#: a subset for the harness's quick level (still both mechanisms, n = 1, extremes, copies)
QUICK_CASES: tuple[ConformanceCase, ...] = tuple(c for c in CASES if c.name in {
    "direct n1 d1 s0", "direct n9 d3 s3 low", "direct n15 d1 s2 high", "direct n31 d3 s1 corners",
    "ball n16 d2 s4 low",
    "tree n1 d1 s0", "tree n5 d1 s2 c3", "tree n8 d1 s3 high", "tree n16 d2 s1 corners",
    "gauss direct n9 d3 s3 low", "gauss tree n7 d2 s2 c3 mixed"})
#: the Gaussian rows' absolute tolerance on answers (the float path has no sure envelope to
#: derive a proven floating-point bound from; the tests' floor, tests/test_gaussian_*.py)
GAUSSIAN_ATOL = 1e-12


@dataclass
class ConformanceRecord:
    """One quantity of one case: the measured max relative difference, its tolerance, pass."""

    case: str
    quantity: str
    max_rel_diff: float
    tolerance: float
    passed: bool
    details: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# data and uniforms
# ------------------------------------------------------------------------------------------------

def _rng(case: ConformanceCase, root: int, what: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(root, "conformance", case.name, what))


def case_data(case: ConformanceCase, root: int = 0):
    """(K (n, d), V (n, d_v), Q (m, d)) float64 numpy arrays for the case (seeded)."""
    rng = _rng(case, root, "data")
    if case.domain == "ball":
        return _ball_data(case, rng)
    if case.data == "corners":
        K = rng.integers(0, 2, (case.n, case.d)).astype(np.float64) * case.R
        Q = np.vstack([np.full(case.d, case.R), np.zeros(case.d),
                       rng.integers(0, 2, (max(0, case.m - 2), case.d)) * case.R])[: case.m]
        V = rng.choice([-case.R_w, case.R_w], (case.n, case.d_v))
    else:
        K = rng.random((case.n, case.d)) * case.R
        Q = rng.random((case.m, case.d)) * case.R
        V = rng.uniform(-case.R_w, case.R_w, (case.n, case.d_v))
    return K, V, Q


def _ball_data(case: ConformanceCase, rng: np.random.Generator):
    """Rows inside the ball of radius R: random directions at random radii (some at
    R (1 - 2^-40), on the sphere up to rounding inward), or for "corners" 0 and +-R e_i."""
    def rows(count):
        if case.data == "corners":
            out = np.zeros((count, case.d))
            idx = rng.integers(0, case.d + 1, count)
            sign = rng.choice([-1.0, 1.0], count)
            for i, (j, sg) in enumerate(zip(idx, sign)):
                if j < case.d:
                    out[i, j] = sg * case.R
            return out
        x = rng.standard_normal((count, case.d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        radius = np.where(rng.random(count) < 0.5, 1.0, rng.random(count)) * (1 - 2.0**-40)
        return x * (radius * case.R)[:, None]
    V = (rng.choice([-case.R_w, case.R_w], (case.n, case.d_v)) if case.data == "corners"
         else rng.uniform(-case.R_w, case.R_w, (case.n, case.d_v)))
    return rows(case.n), V, rows(case.m)


def case_uniforms(case: ConformanceCase, count: int, root: int = 0) -> np.ndarray:
    """The case's ``count`` uniforms, strictly inside (0, 1)."""
    lo, hi = 2.0**-53, 1.0 - 2.0**-53
    rng = _rng(case, root, "uniforms")
    if case.uniforms == "low":
        return np.full(count, lo)
    if case.uniforms == "high":
        return np.full(count, hi)
    if case.uniforms == "half":
        return np.full(count, 0.5)
    if case.uniforms == "alternating":
        return np.where(np.arange(count) % 2 == 0, lo, hi)
    u = generator_uniforms(rng, count)
    u = np.clip(u, lo, hi)
    if case.uniforms == "mixed":
        pick = rng.integers(0, 3, count)
        u = np.where(pick == 0, lo, np.where(pick == 1, hi, u))
    return u


# ------------------------------------------------------------------------------------------------
# plain float64 recomputation (numpy; textbook formulas; shares no code with dpxattn.fast)
# ------------------------------------------------------------------------------------------------

def _alphas(d: int, s: int) -> list[tuple[int, ...]]:
    out = []
    for k in range(s + 1):
        for combo in itertools.combinations_with_replacement(range(d), k):
            out.append(tuple(combo.count(i) for i in range(d)))
    return out


def _plain_features(X: np.ndarray, s: int, scale: float) -> np.ndarray:
    cols = []
    for alpha in _alphas(X.shape[1], s):
        k = sum(alpha)
        coef = math.sqrt(scale**k / math.prod(math.factorial(a) for a in alpha))
        cols.append(np.prod(X ** np.array(alpha), axis=1) * coef)
    return np.stack(cols, axis=1)


def _plain_ppf(u: np.ndarray, sens, eps, delta) -> np.ndarray:
    """The conventions' float64 formula: -b log1p(-|2u - 1| (1 - e^-a)) with u's sign."""
    b = float(sens) / float(eps)
    a = math.log1p(math.expm1(float(eps)) / (2 * float(delta)))
    mag = -b * np.log1p(-np.abs(2 * u - 1) * (-math.expm1(-a)))
    return np.where(u < 0.5, -mag, mag)


def _plain_gaussian(u: np.ndarray, l2, eps, delta) -> np.ndarray:
    """sigma Phi^-1(u) (scipy's ndtri), sigma the analytic Gaussian's for the l2 sensitivity
    (``reference.gaussian.sigma_for``, note 24)."""
    from scipy.special import ndtri

    from dpxattn.reference import gaussian

    return float(gaussian.sigma_for(l2, eps, delta)) * ndtri(u)


def _canonical(lo: int, hi: int, N: int) -> list[int]:
    """The reference's canonical decomposition (the one definition), empty for lo > hi."""
    from dpxattn.reference.dptree import canonical_decomposition

    return list(canonical_decomposition(lo, hi, N)) if lo <= hi else []


def _case_scale(case: ConformanceCase, d: int):
    """The case's scale: given, or the domain's default (1/d on the box, 1 on the ball)."""
    if case.scale is not None:
        return case.scale
    return 1 if case.domain == "ball" else Fraction(1, d)


def _plain_direct(case: ConformanceCase, FK, FQ, W, u, n: int, d: int, d_v: int) -> np.ndarray:
    """``direct``: S = phi(K)^T [V | 1] plus one noise draw per entry (uniforms in row-major
    order), answers phi(Q) S with the denominator column clamped below at n (the ball: at
    n tau, ``reference.ball.ball_denominator_floor``)."""
    from dpxattn.accounting import plan_direct
    from dpxattn.reference import ball, ball_sensitivity, sensitivity

    s = case.degree
    plan = plan_direct(eps=case.eps, delta=case.delta, n=n, d=d, d_v=d_v, degree=s)
    e, dl = plan.share("S")
    sc = _case_scale(case, d) if case.domain == "ball" else case.scale
    if case.domain == "ball":
        sens = float(ball_sensitivity.ball_direct_statistic(d, s, case.R, case.R_w, d_v, scale=sc))
        floor = float(ball.ball_denominator_floor(n, s, case.R, scale=sc))
    else:
        sens = float(sensitivity.direct_statistic(d, s, case.R, case.R_w, d_v, scale=case.scale))
        floor = n
    if case.law == "gaussian":
        l2 = (ball_sensitivity.ball_direct_statistic_l2 if case.domain == "ball"
              else sensitivity.direct_statistic_l2)(d, s, case.R, case.R_w, d_v, scale=sc)
        noise = _plain_gaussian(u, l2, e, dl)
    else:
        noise = _plain_ppf(u, sens, e, dl)
    S = FK.T @ W + noise.reshape(-1, d_v + 1)
    NS = FQ @ S
    D = np.maximum(NS[:, -1], floor)
    return NS[:, :-1] / D[:, None]


def _plain_scalars(W, FK, u, weights, T: float, shares, copies: int,
                   ppf=_plain_ppf) -> np.ndarray:
    """``tree``: the noisy scalars (copies, cols, 2): per copy and column, c0 = sum_i w_i and
    c1 = sum_i w_i |phi(k_i)|^2, each with its own draw (two uniforms per (copy, column), the
    first ones of ``u``); sensitivities 2 w and 2 w T, but T - 1 for the denominator's c1 (the
    last column, w = 1; its exact sup) when T > 1 (degree >= 1)."""
    (e0, d0), (e1, d1) = shares
    cols = W.shape[1]
    pos = 0
    scal = np.zeros((copies, cols, 2))
    for c in range(copies):
        for k in range(cols):
            scal[c, k, 0] = W[:, k].sum() + ppf(u[pos:pos + 1], 2 * weights[k], e0, d0)[0]
            s1 = T - 1 if k == cols - 1 and T > 1 else 2 * weights[k] * T
            scal[c, k, 1] = (W[:, k] * (FK**2).sum(1)).sum() + ppf(
                u[pos + 1:pos + 2], s1, e1, d1)[0]
            pos += 2
    return scal


def _plain_node_sums(FK, W, M, G: int, N: int) -> np.ndarray:
    """``tree``: the exact node sums (2N - 1, cols, r, 3) of the moment trees: leaf cell
    floor(phi_t(k_i) G / M_t) (the last cell closed) collects w_i phi_t(k_i)^m, m = 0, 1, 2;
    the leaves sit at N - 1 .. 2N - 2 of the heap layout, each parent sums its two children."""
    n, r = FK.shape
    cols = W.shape[1]
    leaves = np.zeros((N, cols, r, 3))
    cells = np.minimum(np.floor(FK * G / M).astype(int), G - 1)
    for i in range(n):
        for t in range(r):
            for mm in range(3):
                leaves[cells[i, t], :, t, mm] += W[i] * FK[i, t] ** mm
    nodes = np.zeros((2 * N - 1, cols, r, 3))
    nodes[N - 1:] = leaves
    for i in range(N - 2, -1, -1):
        nodes[i] = nodes[2 * i + 1] + nodes[2 * i + 2]
    return nodes


def _plain_noisy_nodes(nodes, u, M, weights, share, copies: int, ppf=_plain_ppf) -> np.ndarray:
    """``tree``: every node of every copy plus its draw (nodes, copies, cols, r, 3): per node,
    copies x cols x r x 3 uniforms in row-major order, sensitivity 2 w_k M_t^m at the
    per-level share ``share``. ``u`` are the uniforms left after the scalars'."""
    el, dl = share
    _, cols, r, _ = nodes.shape
    sens = np.array([[[2 * weights[k] * M[t] ** mm for mm in range(3)] for t in range(r)]
                     for k in range(cols)])
    noisy = np.repeat(nodes[:, None], copies, axis=1)  # (nodes, copies, cols, r, 3)
    width = copies * cols * r * 3
    pos = 0
    for i in range(nodes.shape[0]):
        uu = u[pos:pos + width].reshape(copies, cols, r, 3)
        for k in range(cols):
            for t in range(r):
                for mm in range(3):
                    noisy[i, :, k, t, mm] += ppf(uu[:, k, t, mm], sens[k, t, mm], el, dl)
        pos += width
    return noisy


def _plain_tree_answers(FQ, noisy, scal, M, G: int, N: int, n: int) -> np.ndarray:
    """``tree``: each copy's answers (m, copies, d_v). Per coordinate t, the nodes of the
    canonical decompositions of [0, j_t] and [j_t + 1, G - 1] (j_t: the query's cell) give
    sum_i w_i (phi_t(q) - phi_t(k_i))^2 as q_t^2 P_0 - 2 q_t P_1 + P_2; the numerator is
    (c1 + |phi(q)|^2 c0 - distance) / 2 and the denominator column is clamped below at n."""
    copies, cols = scal.shape[0], scal.shape[1]
    r = FQ.shape[1]
    out = np.zeros((FQ.shape[0], copies, cols - 1))
    for q in range(FQ.shape[0]):
        uq = FQ[q]
        j = np.minimum(np.floor(uq * G / M).astype(int), G - 1)
        num = np.zeros((copies, cols))
        for c in range(copies):
            dist = np.zeros(cols)
            for t in range(r):
                idx = _canonical(0, j[t], N) + _canonical(j[t] + 1, G - 1, N)
                P = noisy[idx, c, :, t, :].sum(axis=0)  # (cols, 3)
                dist += uq[t] ** 2 * P[:, 0] - 2 * uq[t] * P[:, 1] + P[:, 2]
            num[c] = (scal[c, :, 1] + (uq @ uq) * scal[c, :, 0] - dist) / 2
        D = np.maximum(num[:, -1], n)
        out[q] = num[:, :-1] / D[:, None]
    return out


def plain_float64(case: ConformanceCase, K, V, Q, u) -> np.ndarray:
    """The case's answers (m, d_v) recomputed in plain numpy float64 from the same uniforms.

    ``direct``: :func:`_plain_direct`. ``tree``: the scalars take the first 2 x copies x cols
    uniforms (:func:`_plain_scalars`), the node noise the rest (:func:`_plain_noisy_nodes`, on
    the exact sums of :func:`_plain_node_sums`); the answer is the median over the copies of
    :func:`_plain_tree_answers` (the mean of the two middle ones for an even count).
    """
    from dpxattn.accounting import padded_size, plan_tree
    from dpxattn.reference import kernel

    n, d = K.shape
    d_v = V.shape[1]
    s = case.degree
    scale = float(_case_scale(case, d))
    FK = _plain_features(K, s, scale)
    FQ = _plain_features(Q, s, scale)
    W = np.hstack([V, np.ones((n, 1))])
    if case.mechanism == "direct":
        return _plain_direct(case, FK, FQ, W, u, n, d, d_v)
    G = n if case.grid_size is None else case.grid_size
    N = padded_size(G)
    l = case.copies
    M = np.array([float(x) for x in kernel.feature_bounds(d, s, case.R, scale=case.scale)])
    weights = [case.R_w] * d_v + [1.0]
    T = float(kernel.feature_norm_sq_bound(d, s, case.R, scale=case.scale))
    if case.law == "gaussian":  # one sigma for every number, on the whole release's l2 (note 26)
        from dpxattn.reference import sensitivity

        l2 = sensitivity.tree_release_l2(d, s, case.R, case.R_w, d_v, grid_size=G, copies=l,
                                         scale=case.scale)

        def ppf(uu, _sens, _e, _dl):
            return _plain_gaussian(uu, l2, case.eps, case.delta)
        s0 = s1 = sl = (None, None)
    else:
        plan = plan_tree(eps=case.eps, delta=case.delta, n=n, d=d, d_v=d_v, degree=s,
                         copies=case.copies, grid_size=case.grid_size,
                         composition=case.composition)
        s0, s1, sl = (plan.share(k) for k in ("c0", "c1", "tree_level"))
        ppf = _plain_ppf
    scal = _plain_scalars(W, FK, u, weights, T, (s0, s1), l, ppf)
    nodes = _plain_node_sums(FK, W, M, G, N)
    noisy = _plain_noisy_nodes(nodes, u[2 * l * (d_v + 1):], M, weights, sl, l, ppf)
    out = _plain_tree_answers(FQ, noisy, scal, M, G, N, n)
    srt = np.sort(out, axis=1)
    return (srt[:, (l - 1) // 2] + srt[:, l // 2]) / 2


# ------------------------------------------------------------------------------------------------
# running the table
# ------------------------------------------------------------------------------------------------

def _floats(rows) -> np.ndarray:
    return np.array([[float(x) for x in row] for row in rows], dtype=np.float64)


def _rel(diff: np.ndarray, ref: np.ndarray) -> float:
    scale = np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
    return float(np.max(diff / scale)) if diff.size else 0.0


#: the fast inverse CDF's proven accuracy: within 8 ulps of max(|z|, b 2^-20) of the exact
#: inverse (tests/test_fast_noise.py), so within 2^-49 A of it; A >= |z| the support bound
PPF_ULPS_BOUND = 2.0**-49


def proven_float_error(fast, Qt) -> np.ndarray:
    """A proven bound (m, d_v) on |fast answer - exact answer from the same uniforms|, float64.

    The fast path's own floating-point allowance (proofs_notes/19-fast-path.md, the terms its
    certified envelope adds) bounds |N_f - N - noise_f| for every column's computed numerator
    N_f (exact sums N, released float noise noise_f); the float noise is within 2^-49 A per draw
    of the exact inverse CDF the reference uses, which adds 2^-49 times the column's sure noise
    bound. With fpN, fpD those bounds for a value column and the denominator column, and the
    released clamped denominator D_f >= n:
    |a_f - a| <= (fpN + |a_f| (1 + 2^-52) fpD) / max(D_f - fpD, n) + 2^-52 |a_f| (clamp and
    median are 1-Lipschitz; the division and the mean of two middle copies round once).
    Added to the DESIGN §6 tolerance so that an answer near 0 (where 1e-10 |ref| and a plain
    recomputation's error can both be below the fast path's legitimate rounding) never fails a
    correct build: the record becomes a proven bound.
    """
    import torch

    rel = fast.release
    Qv = fast._queries(Qt)
    R_w = float(fast._R_w_up)
    with torch.no_grad():
        if fast.mechanism == "direct":
            ans, D = rel.answer(Qv)  # (m, d_v), (m,)
            terms = rel.envelope_terms(Qv)
            sure = rel.noise_bounds(terms, None)  # A l1, (m,)
            fpN = rel.fp_allowance(terms, R_w, Qv.dtype, fast.r) + PPF_ULPS_BOUND * sure
            fpD = (rel.fp_allowance(terms, 1.0, Qv.dtype, fast.r, denominator=True)
                   + PPF_ULPS_BOUND * sure)
            a = ans.abs()
            floor = float(fast.n) if rel.floor is None else rel.floor  # the ball's n tau
            den = torch.clamp(D - fpD, min=floor)
            bound = (fpN[:, None] + a * (1 + 2.0**-52) * fpD[:, None]) / den[:, None] + 2.0**-52 * a
        else:
            per_copy, D = rel.copy_answers(Qv)  # (m, l, d_v), (m, l)
            from dpxattn.fast.features import features_t

            U = features_t(Qv.to(torch.float64), rel.degree, scale=rel.scale).t()
            sizes = (rel._nodes(U) >= 0).sum(dim=-1).to(torch.float64)
            norm = (U * U).sum(dim=1)
            coef = torch.stack([U * U, 2.0 * U, torch.ones_like(U)], dim=-1)
            cs = coef * sizes.unsqueeze(-1)
            A, A_s = rel.node_law.support_up, rel.scalar_law.support_up
            sure = (A_s[:, 1] + norm[:, None] * A_s[:, 0] + torch.einsum("qtm,ktm->qk", cs, A)) / 2
            col = rel.column_bounds(Qv, None)  # sure + fp, (m, d_v + 1)
            # fp = col - sure: col = fl(sure + fp) and our sure is the same formula (a few ulps
            # apart at most), so fp <= (col - sure) + 16 ulp(col)
            ulp = torch.nextafter(col, torch.full_like(col, math.inf)) - col
            fp = torch.clamp(col - sure, min=0.0) + 16.0 * ulp + PPF_ULPS_BOUND * sure
            fpN, fpD = fp[:, None, :-1], fp[:, None, -1:]
            a = per_copy.abs()
            den = torch.clamp(D.unsqueeze(-1) - fpD, min=float(fast.n))
            per = (fpN + a * (1 + 2.0**-52) * fpD) / den + 2.0**-52 * a
            med = per_copy.median(dim=1).values.abs() if per_copy.shape[1] else a[:, 0]
            bound = per.amax(dim=1) + 2.0**-52 * (a.amax(dim=1) + med)
    return (bound * (1.0 + 1e-9)).numpy()


def run_case(case: ConformanceCase, root: int = 0) -> list[ConformanceRecord]:
    """Evaluate one case: answer, envelopes, envelope containment, determinism records."""
    import torch

    from dpxattn.fast import DPCrossAttention as Fast
    from dpxattn.reference import DPCrossAttention as Ref
    from dpxattn.reference import taylor_attention

    K, V, Q = case_data(case, root)
    kw = case.build_kwargs
    count = Fast.noise_count(n=case.n, d=case.d, d_v=case.d_v, degree=case.degree,
                             mechanism=case.mechanism, copies=case.copies,
                             grid_size=case.grid_size)
    u = case_uniforms(case, count, root)
    ref = Ref.build(K, V, uniforms=u, **kw)
    Kt, Vt, Qt = (torch.tensor(x) for x in (K, V, Q))
    fast = Fast.build(Kt, Vt, uniforms=u, **kw)
    again = Fast.build(Kt, Vt, uniforms=u, **kw)

    ref_ans = _floats(ref.query(Q))
    fast_ans = fast.query(Qt).numpy()
    plain = plain_float64(case, K, V, Q, u)
    diff = np.abs(fast_ans - ref_ans)
    plain_err = np.abs(plain - ref_ans)
    gaussian = case.law == "gaussian"
    proven = (np.full_like(ref_ans, GAUSSIAN_ATOL) if gaussian
              else proven_float_error(fast, Qt))
    tol = np.maximum(np.maximum(REL_TOL * np.abs(ref_ans), 2.0 * plain_err), proven)
    # statistic and threshold on one scale: the worst entry's diff / tol against 1
    worst = float(np.max(diff / np.maximum(tol, np.finfo(np.float64).tiny))) if diff.size else 0.0
    records = [ConformanceRecord(
        case.name, "answer", _rel(diff, ref_ans),
        max(REL_TOL, _rel(2.0 * plain_err, ref_ans), _rel(proven, ref_ans)), bool(np.all(diff <= tol)),
        {"max_abs_diff": float(diff.max()), "plain_max_rel_err": _rel(plain_err, ref_ans),
         "proven_max_rel_bound": _rel(proven, ref_ans), "worst_diff_over_tolerance": worst})]

    bounds = [] if gaussian else [  # Gaussian noise: no sure envelope (error_bound raises)
        ("error_bound", fast.error_bound(Qt).numpy(), _floats(ref.error_bound(Q)))]
    bounds.append(("hp_error_bound", fast.hp_error_bound(Qt, HP_FAILURE).numpy(),
                   _floats(ref.hp_error_bound(Q, HP_FAILURE))))
    for quantity, f_b, r_b in bounds:
        bdiff = np.abs(f_b - r_b)
        records.append(ConformanceRecord(
            case.name, quantity, _rel(bdiff, r_b), REL_TOL,
            bool(np.all(bdiff <= REL_TOL * np.abs(r_b)) and np.all(f_b >= r_b * (1 - 1e-14))),
            {"fast_not_below_reference": bool(np.all(f_b >= r_b * (1 - 1e-14)))}))

    if not gaussian:
        taylor = _floats(taylor_attention(Q, K, V, degree=case.degree,
                                          scale=_case_scale(case, case.d)
                                          if case.domain == "ball" else case.scale))
        bound = fast.error_bound(Qt).numpy()
        ratio = np.abs(fast_ans - taylor) / bound
        records.append(ConformanceRecord(
            case.name, "envelope holds", float(ratio.max()), 1.0, bool(np.all(ratio <= 1.0)),
            {"what": "max |fast - taylor_attention| / fast.error_bound"}))

    same = all(torch.equal(a, b) for a, b in zip(fast.released_tensors().values(),
                                                  again.released_tensors().values()))
    repeat = torch.equal(fast.query(Qt), fast.query(Qt))
    records.append(ConformanceRecord(
        case.name, "determinism", 0.0 if same and repeat else 1.0, 0.0, same and repeat,
        {"structures_bit_identical": same, "repeated_queries_bit_identical": repeat}))
    return records


def run_table(cases=CASES, root: int = 0) -> list[ConformanceRecord]:
    """Every case of the table (default :data:`CASES`), in order."""
    out: list[ConformanceRecord] = []
    for case in cases:
        out.extend(run_case(case, root))
    return out


def check_conformance(ctx) -> list[CheckRecord]:
    """Harness check (exact): the table at the context's level, as :class:`CheckRecord` s.

    ``quick`` runs :data:`QUICK_CASES`, other levels :data:`CASES`; the seed of the data and
    uniforms is the context's. Every record is a deterministic fact or a proven bound, whatever
    the seed: the answers are compared with a tolerance that includes the fast path's proven
    floating-point bound (so an answer near 0 cannot fail by rounding luck), the envelopes are
    well-conditioned sums rounded up, determinism is bit-for-bit. False-alarm total: 0.
    """
    cases = QUICK_CASES if getattr(ctx, "level", "quick") == "quick" else CASES
    out = []
    for rec in run_table(cases, root=int(getattr(ctx, "seed", 0))):
        out.append(CheckRecord(
            name=f"conformance: {rec.case}: {rec.quantity}",
            kind="exact",
            tests=("fast (torch float64) vs exact reference built from the same uniforms "
                   "(DESIGN §6)" if rec.quantity != "envelope holds" else
                   "the fast certified envelope contains the exact noiseless Taylor attention"),
            statistic=rec.max_rel_diff, threshold=rec.tolerance,
            comparison="<=" if rec.quantity != "determinism" else "==",
            passed=rec.passed, details=dict(rec.details)))
    return out


