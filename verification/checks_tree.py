"""Check 2 of the harness: the noise of the DPTree, node by node and query by query.

Harness check 2; DESIGN §6 (white-box checks); spec PAPER.md §3.1 (DPTree, v2 §4 / App. D) and §3.2 (DPTreeDistance over a public grid, v2 App. F);
conventions ``proofs_notes/01-conventions.md`` ("Mechanism tree"); proof notes
``proofs_notes/06-dptree.md`` and ``20-verification-standards.md``.

What is checked, on the fast ``tree`` mechanism (``dpxattn.fast.DPCrossAttention``) and on the
exact reference DPTree (``dpxattn.reference.dptree.DPTree``):

1. **Per-level node noise variance** (statistical). A structure built from values V = 0 has exact
   value-column node sums equal to 0, so its released value-column nodes ARE the noise. Each
   node of coordinate t, moment m must carry TLap(2 R_w M_t^m, eps_lvl, delta_lvl) with
   (eps_lvl, delta_lvl) = ``plan_tree(...).share("tree_level")``; divided by its sensitivity
   (reference ``sensitivity.tree_level``, ``kernel.feature_bounds``) it is TLap(1, eps_lvl,
   delta_lvl). Per tree level, the pooled second moment of the normalised noise must match the
   reference's exact variance within rtol 0.05; the number of draws per level is chosen so that
   Bernstein's inequality (bounded noise, exact fourth moment) gives a false-alarm rate
   <= 1e-6 at that tolerance (about 1e5 draws; DESIGN §6 asks >= 1e4).
2. **Range queries** (exact, to floating-point tolerance). Two structures built from the same
   seed (hence the same uniforms), one from (K, V) and one from (K, 0): the second's nodes are
   the noises Z, the difference of the two is the exact node sums X. Checked: X's leaves equal
   the brute-force grid sums from the reference feature map and grid cell; X's internal nodes are
   the sums of their children; and for every range [lo, hi] of the grid, the fast range query
   (``fast.tree.range_sums``) minus the exact range sum equals the sum of Z over the reference's
   canonical decomposition of [lo, hi] (all coefficients +1).
3. **Reference DPTree** (exact, mpmath): for every range, query minus exact sum equals the sum of
   the canonical nodes' noises ``tl.ppf(u_i)``; and the fast DPTree primitives
   (``fill_internal_nodes``, ``truncated_laplace`` from the same uniforms, ``range_sums``) answer
   every range within 1e-10 relative of the reference.
4. **Repeated queries are bit-identical** for both mechanisms (answers, sure and
   high-probability envelopes): the structure is fixed at build time; nothing is resampled.

Power (mutants kept here as fixtures): the variance test must reject the node noise scaled by
0.7 and by 1.3 at every level; the range test must catch an off-by-one range query; the
repeated-query test must catch a query that adds fresh noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import mpmath
import numpy as np
import torch

from dpxattn.randomness import derive_seed, generator_uniforms
from dpxattn.verification.checks_noise import bernstein_radius, exact_fourth_moment
from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "ALPHA",
    "RTOL_VARIANCE",
    "RANGE_RTOL",
    "CONFORMANCE_RTOL",
    "TreeCase",
    "TREE_CASE",
    "PayloadMutant",
    "scaled_payload",
    "MUTANT_FACTORS",
    "PAYLOAD_MUTANTS",
    "RESAMPLE_SCALE",
    "RangeQuery",
    "fast_range_query",
    "off_by_one_range_query",
    "QueryFn",
    "resampling_query",
    "level_noise_samples",
    "variance_mutant_escape",
    "off_by_one_escape",
    "resampling_escape",
    "draws_needed",
    "level_variance_records",
    "range_query_records",
    "reference_tree_records",
    "repeated_query_records",
    "check_tree",
]

#: false-alarm rate the per-level variance test must reach (DESIGN §6)
ALPHA = 1e-6
#: DESIGN §6: per-level tree noise variance within rtol 0.05
RTOL_VARIANCE = 0.05
#: the range-query identity holds up to float64 rounding of sums of a few dozen nodes
RANGE_RTOL = 1e-12
#: fast vs reference with shared uniforms (DESIGN §6 conformance tolerance)
CONFORMANCE_RTOL = 1e-10


@dataclass(frozen=True)
class TreeCase:
    """The small tree structure the check builds many times (public parameters only)."""

    n: int = 8
    d: int = 4
    d_v: int = 16
    degree: int = 3
    copies: int = 4
    grid: int = 8
    eps: float = 1.0
    delta: float = 1e-6
    R: float = 1.0
    R_w: float = 1.0

    def build(self, K, V, generator, mechanism: str = "tree"):
        from dpxattn.fast import DPCrossAttention

        extra = {"copies": self.copies, "grid_size": self.grid} if mechanism == "tree" else {}
        return DPCrossAttention.build(K, V, eps=self.eps, delta=self.delta, R=self.R, R_w=self.R_w,
                                      degree=self.degree, mechanism=mechanism, generator=generator,
                                      **extra)

    def plan(self):
        from dpxattn.accounting import plan_tree

        return plan_tree(eps=self.eps, delta=self.delta, n=self.n, d=self.d, d_v=self.d_v,
                         degree=self.degree, copies=self.copies, grid_size=self.grid)


TREE_CASE = TreeCase()


def _torch_gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)


def _keys(case: TreeCase, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(0.0, case.R, size=(case.n, case.d)))


def _values(case: TreeCase, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(-case.R_w, case.R_w, size=(case.n, case.d_v)))


# ---------------------------------------------------------------------------------------------
# Mutants (fixtures): wrong variants the tests must catch
# ---------------------------------------------------------------------------------------------

#: a payload transform applied to the released value-column nodes (noise only, V = 0)
PayloadMutant = Callable[[torch.Tensor], torch.Tensor]


def scaled_payload(factor: float) -> PayloadMutant:
    """Mutant: every node's noise multiplied by ``factor`` (a wrong noise scale)."""
    def mutate(payload: torch.Tensor) -> torch.Tensor:
        return payload * factor
    mutate.__name__ = f"noise x{factor:g}"
    return mutate


#: the noise-scale factors of the payload mutants (DESIGN §6: x0.7 and x1.3)
MUTANT_FACTORS = (0.7, 1.3)
PAYLOAD_MUTANTS = tuple(scaled_payload(f) for f in MUTANT_FACTORS)

#: range query over a 2-D level-order node table: (nodes (2N - 1, w), lo, hi) -> (w,)
RangeQuery = Callable[[torch.Tensor, int, int], torch.Tensor]


def fast_range_query(nodes: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """The fast DPTree range query (``dpxattn.fast.tree.range_sums``) for one range."""
    from dpxattn.fast.tree import range_sums

    t = torch.tensor([lo], dtype=torch.int64)
    return range_sums(nodes, t, torch.tensor([hi], dtype=torch.int64))[0]


def off_by_one_range_query(nodes: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Mutant: answers [lo, hi - 1] for hi > lo (drops the last leaf of the range)."""
    return fast_range_query(nodes, lo, hi - 1 if hi > lo else hi)


#: a query function of a built structure: (structure, Q) -> answers
QueryFn = Callable[[object, torch.Tensor], torch.Tensor]


def _plain_query(att, Q):
    return att.query(Q)


#: the resampling mutant's fresh noise: uniform on +-RESAMPLE_SCALE (|answer| + 1) / 2
RESAMPLE_SCALE = 2.0**-20


def resampling_query(att, Q):
    """Mutant: adds fresh (OS-random) noise at query time, so answers change between calls.

    Each entry gets ``s (u - 1/2)`` with ``s = 2^-20 (|answer| + 1)`` and a fresh uniform ``u``
    of the OS source's grid ``(k + 1/2) 2^-52`` (``u - 1/2`` is then exact): relative to the
    answer, so that the perturbation is never lost to rounding (see
    :func:`resampling_escape`). Every step is one IEEE-rounded float64 operation.
    """
    from dpxattn.randomness import secure_uniforms

    out = att.query(Q)
    u = torch.from_numpy(secure_uniforms(out.numel())).reshape(out.shape).to(out.dtype)
    s = (out.abs() + 1.0) * RESAMPLE_SCALE
    return out + s * (u - 0.5)


# ---------------------------------------------------------------------------------------------
# 1. per-level node noise variance
# ---------------------------------------------------------------------------------------------

def _normalisers(case: TreeCase) -> np.ndarray:
    """(r, 3): the l1 sensitivity 2 R_w M_t^m of each (coordinate, moment) tree, from the reference."""
    from dpxattn.reference import kernel, sensitivity

    M = kernel.feature_bounds(case.d, case.degree, case.R)
    return np.array([[float(sensitivity.tree_level(Mt, m, case.R_w)) for m in range(3)] for Mt in M])


def level_noise_samples(case: TreeCase, builds: int, seed: int,
                        mutant: PayloadMutant | None = None) -> list[np.ndarray]:
    """Normalised value-column node noise of ``builds`` structures built from V = 0, per level.

    Returns one 1-D array per tree level (root first): every value-column node of that level,
    every coordinate, moment and copy, divided by its sensitivity (so each is TLap(1, eps_lvl,
    delta_lvl) if the mechanism is right).
    """
    from dpxattn.accounting import padded_size

    N = padded_size(case.grid)
    L = N.bit_length()
    norm = torch.from_numpy(_normalisers(case))  # (r, 3)
    per_level: list[list[np.ndarray]] = [[] for _ in range(L)]
    V0 = torch.zeros((case.n, case.d_v), dtype=torch.float64)
    for b in range(builds):
        K = _keys(case, derive_seed(seed, "keys", b))
        att = case.build(K, V0, _torch_gen(derive_seed(seed, "build", b)))
        payload = att.release.payload[:, :, :, : case.d_v, :]  # (2N - 1, r, l, d_v, 3)
        if mutant is not None:
            payload = mutant(payload)
        z = payload / norm[None, :, None, None, :]
        for level in range(L):
            rows = z[(1 << level) - 1:(1 << (level + 1)) - 1]
            per_level[level].append(rows.reshape(-1).numpy().copy())
    return [np.concatenate(chunks) for chunks in per_level]


def _unit_law(case: TreeCase) -> dict:
    """Exact variance, fourth moment and support of TLap(1, eps_lvl, delta_lvl), from the reference."""
    from dpxattn.reference import truncated_laplace as tl

    eps_l, delta_l = case.plan().share("tree_level")
    return {
        "eps_level": eps_l,
        "delta_level": delta_l,
        "variance": float(tl.variance(1, eps_l, delta_l)),
        "fourth_moment": exact_fourth_moment(1, eps_l, delta_l),
        "A": float(tl.support_bound(1, eps_l, delta_l)),
    }


def _implied_alpha(n: int, law: dict, rtol: float) -> float:
    """Bernstein: P(|mean Z^2 - var| >= rtol var) <= 2 exp(-n t^2 / (2 v + 2 c t / 3))."""
    var = law["variance"]
    v = max(law["fourth_moment"] - var * var, 0.0)
    c = max(var, law["A"] ** 2 - var)
    t = rtol * var
    return min(1.0, 2.0 * math.exp(-n * t * t / (2.0 * v + 2.0 * c * t / 3.0)))


def draws_needed(law: dict, rtol: float = RTOL_VARIANCE, alpha: float = ALPHA) -> int:
    """Smallest draw count (>= 1e4) at which the rtol test has false-alarm rate <= alpha."""
    var = law["variance"]
    n = 10_000
    while bernstein_radius(n, max(law["fourth_moment"] - var * var, 0.0),
                           max(var, law["A"] ** 2 - var), alpha) > rtol * var:
        n = int(n * 1.1) + 1
    return n


def _level_outcomes(samples: list[np.ndarray], law: dict, rtol: float):
    out = []
    for level, z in enumerate(samples):
        m2 = float(np.mean(z * z))
        rel = abs(m2 - law["variance"]) / law["variance"]
        out.append((level, z.size, m2, rel, _implied_alpha(z.size, law, rtol)))
    return out


def level_variance_records(case: TreeCase, builds: int, seed: int, *, rtol: float = RTOL_VARIANCE,
                           mutant: PayloadMutant | None = None, law: dict | None = None) -> list[CheckRecord]:
    """One statistical record per tree level (records pass when the variance matches)."""
    law = law or _unit_law(case)
    samples = level_noise_samples(case, builds, seed, mutant)
    tag = f"{mutant.__name__}: " if mutant is not None else ""
    recs = []
    for level, n, m2, rel, alpha in _level_outcomes(samples, law, rtol):
        recs.append(CheckRecord(
            name=f"{tag}node noise variance, level {level}",
            kind="statistical",
            tests=(f"the value-column nodes of level {level} (pure noise: built from V = 0), divided "
                   "by their sensitivity 2 R_w M_t^m, have second moment equal to the reference's "
                   f"exact Var TLap(1, eps_lvl, delta_lvl) within rtol {rtol}; alpha from Bernstein"),
            statistic=rel, threshold=rtol, comparison="<=", passed=rel <= rtol, alpha=alpha,
            sample_size=n,
            details={"second_moment": m2, "exact_variance": law["variance"],
                     "eps_level": str(law["eps_level"]), "delta_level": str(law["delta_level"]),
                     "builds": builds, "nodes_in_level": 1 << level},
        ))
    return recs


def variance_mutant_escape(sizes: list[int], law: dict, factor: float,
                           rtol: float = RTOL_VARIANCE) -> tuple[float, list[dict]]:
    """beta of the power record "node noise x``factor``": an upper bound on the chance that the
    per-level variance test accepts the scaled tree at some level (the mutant escapes).

    On a correct build the mutant's normalised node noise is ``factor Z``, Z ~ TLap(1, eps_lvl,
    delta_lvl) i.i.d., so Y = (factor Z)^2 has the exact mean ``f^2 var``, variance
    ``f^4 (E Z^4 - var^2)`` and ``|Y - E Y| <= f^2 max(var, A^2 - var)`` (reference law). A level
    is accepted only if ``|mean Y - var| <= rtol var``, i.e. the mean of its ``n`` draws deviates
    from ``f^2 var`` by at least ``gap = (|f^2 - 1| - rtol) var`` (less 1e-9 var for the float
    rounding of the mean): Bernstein (``power_bounds.bernstein_escape``). The record needs every
    level rejected: union over levels.
    """
    from dpxattn.verification.power_bounds import bernstein_escape, union

    var, f2 = law["variance"], factor * factor
    var_y = f2 * f2 * max(law["fourth_moment"] - var * var, 0.0)
    bound = f2 * max(var, law["A"] ** 2 - var)
    gap = (abs(f2 - 1.0) - rtol - 1e-9) * var
    terms = []
    for level, n in enumerate(sizes):
        # a bound below 1e-300 (float underflow of 2 exp(-x)) is stated as 1e-300
        terms.append({"level": level, "bound": max(bernstein_escape(n, gap, var_y, bound), 1e-300),
                      "rule": "bernstein_escape(n, gap, variance, bound)", "n": int(n),
                      "gap": gap, "variance": var_y, "range": bound})
    return union(t["bound"] for t in terms), terms


def _power_records(case: TreeCase, builds: int, seed: int, law: dict, rtol: float) -> list[CheckRecord]:
    out = []
    for mutant, factor in zip(PAYLOAD_MUTANTS, MUTANT_FACTORS):
        recs = level_variance_records(case, builds, derive_seed(seed, mutant.__name__), rtol=rtol,
                                      mutant=mutant, law=law)
        caught = sum(not r.passed for r in recs)
        beta, terms = variance_mutant_escape([r.sample_size for r in recs], law, factor, rtol)
        out.append(CheckRecord(
            name=f"power: node {mutant.__name__}", kind="power",
            tests="the per-level variance test rejects the tree whose node noise is scaled by "
                  f"{mutant.__name__[len('noise '):]} at every level; statistic = levels "
                  "rejected; beta: Bernstein on the mutant's exact law (E Z^4, support), union "
                  "over levels",
            statistic=float(caught), threshold=float(len(recs)), comparison=">=",
            passed=caught == len(recs), beta=beta, sample_size=min(r.sample_size for r in recs),
            details={"relative_errors": [r.statistic for r in recs], "beta_terms": terms},
        ))
    return out


def off_by_one_escape(case: TreeCase) -> tuple[float, dict]:
    """beta of "power: off-by-one range query caught": a bound on the chance that the range
    identity misses the off-by-one query on a correct build (every deviation <= RANGE_RTOL).

    Take the range [0, 1] of the tree w* of largest noise scale b (value column 0). The mutant
    answers [0, 0]; its deviation is D = (sum of P over canon(0, 0)) - L_0 - L_1 - (sum of Z
    over canon(0, 1)). The two decompositions differ (the reference's canonical_decomposition):
    a node j of canon(0, 0) not in canon(0, 1) enters D once, through P_j = X_j + z_j, so given
    every other noise D = z_j + c up to float rounding rho (a few operations on numbers of
    magnitude <= S; rho <= 64 2^-53 S). Escape needs |D| <= RANGE_RTOL scale <= RANGE_RTOL S,
    where scale = max|P| + max|Z| <= S = n R_w max M_t^m + 2 max A (sure: noise is truncated,
    |v| <= R_w). So z_j lies in a window of width w = 2 (RANGE_RTOL S (1 + 2^-50) + rho); the
    exact inverse CDF at u then lies within e = 1e-10 A_{w*} more (the fast ppf's error, far
    above the few ulps tests/test_fast_noise.py verifies), an interval of u of length <=
    f_max (w + 2 e), f_max = 1/(2 b (1 - e^-a)) the TLap density at 0; the generator's
    uniforms k 2^-53 (k uniform on 2^53 - 1 values) hit it with probability <= f_max (w + 2 e)
    + 2^-52. The noise of node j of tree w* is one independent uniform's draw on a correct build.
    """
    from dpxattn.accounting import padded_size
    from dpxattn.reference import kernel
    from dpxattn.reference import truncated_laplace as tl
    from dpxattn.reference.dptree import canonical_decomposition

    N = padded_size(case.grid)
    c00, c01 = set(canonical_decomposition(0, 0, N)), set(canonical_decomposition(0, 1, N))
    only = sorted(c00 - c01) or sorted(c01 - c00)
    if not only:
        raise AssertionError("the canonical decompositions of [0, 0] and [0, 1] coincide")
    eps_l, delta_l = case.plan().share("tree_level")
    norms = _normalisers(case)  # (r, 3): the sensitivities 2 R_w M_t^m
    M = kernel.feature_bounds(case.d, case.degree, case.R)
    x_max = case.n * case.R_w * max(max(1.0, float(Mt), float(Mt) ** 2) for Mt in M)
    A_unit = float(tl.support_bound(1, eps_l, delta_l))
    a = A_unit * float(eps_l)  # A / b, the same for every sensitivity
    A_max = float(norms.max()) * A_unit
    b_star = float(norms.max()) / float(eps_l)
    A_star = b_star * a
    S = (x_max + 2.0 * A_max) * (1.0 + 1e-12)
    rho = 64.0 * 2.0**-53 * S
    width = 2.0 * (RANGE_RTOL * S * (1.0 + 2.0**-50) + rho)
    e = 1e-10 * A_star
    f_max = 1.0 / (2.0 * b_star * (-math.expm1(-a))) * (1.0 + 1e-9)
    beta = min(1.0, f_max * (width + 2.0 * e) + 2.0**-52)
    return beta, {"rule": "density window: P(u in an interval of length f_max (w + 2 e)) "
                          "<= f_max (w + 2 e) + 2^-52",
                  "bound": beta, "range": [0, 1], "node": int(only[0]), "f_max": f_max,
                  "window": width, "ppf_error": e, "S": S, "rho": rho, "b": b_star}


def resampling_escape(mechanisms: int = 2) -> tuple[float, dict]:
    """beta of "power: a query that resamples noise is caught": a bound on the chance that two
    calls of :func:`resampling_query` agree bit for bit on every entry, for some mechanism.

    Per entry, with the answer ``o`` fixed (a correct build is deterministic at query time;
    answers are finite: bounded noise, denominator clamped to >= n), the returned value
    h(u) = fl(o + fl(s (u - 1/2))), s = fl(|o| + 1) 2^-20, is non-decreasing in u (IEEE rounding
    is monotone; ``u - 1/2`` is exact on the grid (k + 1/2) 2^-52). h differs from the real
    o + s (u - 1/2) by at most s 2^-53 + 2^-53 |o| <= s 2^-33 (1 + 2^-19), so two uniforms with
    the same h are within 2^-32 (1 + 2^-19) of each other: a class of at most 2^20 + 3 of the
    2^52 grid points, and two independent calls agree with probability <= (2^20 + 3) 2^-52.
    One entry suffices; union over the mechanisms.
    """
    per_entry = (2.0**20 + 3.0) * 2.0**-52
    beta = min(1.0, mechanisms * per_entry)
    return beta, {"rule": "monotone rounding: equal outputs need uniforms within 2^-32",
                  "per_entry": per_entry, "mechanisms": mechanisms, "bound": beta}


# ---------------------------------------------------------------------------------------------
# 2. range queries of the fast tree mechanism
# ---------------------------------------------------------------------------------------------

def _brute_force_leaves(case: TreeCase, K: torch.Tensor, V: torch.Tensor) -> np.ndarray:
    """(G, r, d_v, 3) exact leaf sums sum_{cell(P_t(k_i)) = g} v_ik P_t(k_i)^m (reference map)."""
    from dpxattn.reference import kernel
    from dpxattn.reference.dptree_distance import grid_cell

    M = kernel.feature_bounds(case.d, case.degree, case.R)
    r = len(M)
    leaves = [[[[mpmath.mpf(0)] * 3 for _ in range(case.d_v)] for _ in range(r)] for _ in range(case.grid)]
    for i in range(case.n):
        phi = kernel.features([float(x) for x in K[i]], case.degree)
        for t in range(r):
            g = grid_cell(phi[t], M[t], case.grid)
            for k in range(case.d_v):
                w = mpmath.mpf(float(V[i, k]))
                for m in range(3):
                    leaves[g][t][k][m] += w * phi[t] ** m
    return np.array([[[[float(x) for x in col] for col in row] for row in cell] for cell in leaves])


def range_query_records(case: TreeCase, seed: int, range_query: RangeQuery = fast_range_query,
                        *, mutant_name: str = "") -> list[CheckRecord]:
    """Range-query error = signed sum of canonical node noises, on the fast tree mechanism."""
    from dpxattn.accounting import padded_size
    from dpxattn.reference.dptree import canonical_decomposition

    N = padded_size(case.grid)
    K = _keys(case, derive_seed(seed, "keys"))
    V = _values(case, derive_seed(seed, "values"))
    s = derive_seed(seed, "build")
    with_data = case.build(K, V, _torch_gen(s))
    noise_only = case.build(K, torch.zeros_like(V), _torch_gen(s))  # same seed: same uniforms
    P = with_data.release.payload[:, :, 0, : case.d_v, :]          # copy 0, value columns
    Z = noise_only.release.payload[:, :, 0, : case.d_v, :]
    X = P - Z                                                      # exact node sums (+ rounding)
    scale = float(P.abs().max()) + float(Z.abs().max())
    leaves = torch.from_numpy(_brute_force_leaves(case, K, V))     # (G, r, d_v, 3)
    leaf_dev = float((X[N - 1:N - 1 + case.grid] - leaves).abs().max()) / scale
    internal_dev = max(
        float((X[i] - X[2 * i + 1] - X[2 * i + 2]).abs().max()) for i in range(N - 1)) / scale
    w = P[0].numel()
    P2, Z2 = P.reshape(2 * N - 1, w), Z.reshape(2 * N - 1, w)
    leaves2 = leaves.reshape(case.grid, w)
    worst = 0.0
    ranges = 0
    for lo in range(case.grid):
        for hi in range(lo, case.grid):
            err = range_query(P2, lo, hi) - leaves2[lo:hi + 1].sum(dim=0)
            nodes = canonical_decomposition(lo, hi, N)
            noise = Z2[list(nodes)].sum(dim=0)
            worst = max(worst, float((err - noise).abs().max()) / scale)
            ranges += 1
    tag = f"{mutant_name}: " if mutant_name else ""
    recs = [CheckRecord(
        name=f"{tag}range-query error = sum of canonical node noises (fast tree)",
        kind="exact",
        tests=("for every range [lo, hi] of the public grid and every (coordinate, column, moment) "
               "tree: fast range query minus the exact range sum equals the sum of the node noises "
               "over the reference's canonical decomposition of [lo, hi] (coefficients +1); "
               "statistic: largest deviation relative to the largest node magnitude"),
        statistic=worst, threshold=RANGE_RTOL, comparison="<=", passed=worst <= RANGE_RTOL,
        sample_size=ranges * w,
        details={"ranges": ranges, "trees": w, "grid": case.grid, "padded_leaves": N},
    )]
    if not mutant_name:
        dev = max(leaf_dev, internal_dev)
        recs.append(CheckRecord(
            name="fast tree nodes hold the exact subtree sums plus noise",
            kind="exact",
            tests=("built twice from the same uniforms, from (K, V) and from (K, 0): the difference "
                   "of the released nodes has leaves equal to the brute-force grid sums "
                   "(reference feature map and grid cell) and internal nodes equal to the sum of "
                   "their children; statistic: largest deviation relative to the node magnitude"),
            statistic=dev, threshold=RANGE_RTOL, comparison="<=", passed=dev <= RANGE_RTOL,
            sample_size=(2 * N - 1) * w,
            details={"leaf_deviation": leaf_dev, "internal_deviation": internal_dev},
        ))
    return recs


# ---------------------------------------------------------------------------------------------
# 3. the reference DPTree, and the fast primitives against it
# ---------------------------------------------------------------------------------------------

#: the small reference case: (values, sensitivity, eps, delta)
REFERENCE_CASE = ((Fraction(3, 2), Fraction(-1, 4), 2.0, 0.125, -0.75), 2.0, 1.0, 1e-5)


def reference_tree_records(seed: int) -> list[CheckRecord]:
    """Exact error structure of the reference DPTree, and the fast primitives agreeing with it."""
    from dpxattn.accounting import padded_size, plan_dptree
    from dpxattn.fast.noise import truncated_laplace
    from dpxattn.fast.tree import fill_internal_nodes, range_sums
    from dpxattn.reference import truncated_laplace as tl
    from dpxattn.reference.dptree import DPTree

    values, sens, eps, delta = REFERENCE_CASE
    n = len(values)
    N = padded_size(n)
    u = generator_uniforms(np.random.default_rng(seed), DPTree.noise_count(n))
    tree = DPTree.build(values, sensitivity=sens, eps=eps, delta=delta, uniforms=u)
    eps_l, delta_l = plan_dptree(eps, delta, n).share("tree_level")
    mp = mpmath.MPContext()  # private 160-bit context: global mpmath precision untouched
    mp.prec = 160
    noise = [mp.mpf(tl.ppf(float(x), sens, eps_l, delta_l, prec=mp.prec)) for x in u]
    exact = [mp.mpf(Fraction(v).numerator) / Fraction(v).denominator for v in values]
    worst_ref = mp.zero
    fast_nodes = torch.zeros(2 * N - 1, 1, dtype=torch.float64)
    fast_nodes[N - 1:N - 1 + n, 0] = torch.tensor([float(v) for v in values], dtype=torch.float64)
    fill_internal_nodes(fast_nodes)
    fast_nodes[:, 0] += truncated_laplace((2 * N - 1,), sens, eps_l, delta_l, uniforms=u)
    worst_fast = 0.0
    for lo in range(n):
        for hi in range(lo, n):
            q = mp.mpf(tree.query(lo, hi))
            err = q - mp.fsum(exact[lo:hi + 1])
            coef = tree.error_coefficients(lo, hi)
            predicted = mp.fsum(c * noise[i] for i, c in coef.items())
            worst_ref = max(worst_ref, abs(err - predicted) / max(abs(q), mp.one))
            f = float(range_sums(fast_nodes, torch.tensor([lo]), torch.tensor([hi]))[0, 0])
            worst_fast = max(worst_fast, abs(f - float(q)) / max(abs(float(q)), 1.0))
    ranges = n * (n + 1) // 2
    return [
        CheckRecord(
            name="reference DPTree: error = sum of canonical node noises (exact)", kind="exact",
            tests=("reference DPTree over a small array: for every range, query minus the exact "
                   "range sum equals the sum over its error coefficients (canonical nodes, +1) of "
                   "the node noises tl.ppf(u_i) computed independently from the same uniforms "
                   "(160-bit arithmetic; threshold 1e-40 relative)"),
            statistic=float(worst_ref), threshold=1e-40, comparison="<=",
            passed=worst_ref <= mp.mpf("1e-40"), sample_size=ranges,
            details={"n": n, "levels": N.bit_length(), "eps_level": str(eps_l)},
        ),
        CheckRecord(
            name="fast DPTree primitives vs reference DPTree (same uniforms)", kind="exact",
            tests=("the fast primitives (fill_internal_nodes, truncated_laplace from the same "
                   "uniforms, range_sums) answer every range of the small case within 1e-10 "
                   "relative of the reference DPTree (DESIGN §6 conformance tolerance)"),
            statistic=worst_fast, threshold=CONFORMANCE_RTOL, comparison="<=",
            passed=worst_fast <= CONFORMANCE_RTOL, sample_size=ranges,
        ),
    ]


# ---------------------------------------------------------------------------------------------
# 4. repeated queries
# ---------------------------------------------------------------------------------------------

def repeated_query_records(case: TreeCase, seed: int, query_fn: QueryFn = _plain_query,
                           *, mutant_name: str = "", queries: int = 64) -> list[CheckRecord]:
    """Querying the same structure twice gives bit-identical answers and envelopes."""
    K = _keys(case, derive_seed(seed, "keys"))
    V = _values(case, derive_seed(seed, "values"))
    Q = torch.from_numpy(np.random.default_rng(derive_seed(seed, "queries"))
                         .uniform(0.0, case.R, size=(queries, case.d)))
    recs = []
    for mech in ("tree", "direct"):
        att = case.build(K, V, _torch_gen(derive_seed(seed, mech)), mechanism=mech)
        pairs = {"query": (query_fn(att, Q), query_fn(att, Q.clone()))}
        if not mutant_name:
            pairs["error_bound"] = (att.error_bound(Q), att.error_bound(Q.clone()))
            pairs["hp_error_bound"] = (att.hp_error_bound(Q, 1e-3), att.hp_error_bound(Q.clone(), 1e-3))
        mismatches = {k: int((a != b).sum()) + int(a.shape != b.shape) for k, (a, b) in pairs.items()}
        total = sum(mismatches.values())
        tag = f"{mutant_name}: " if mutant_name else ""
        recs.append(CheckRecord(
            name=f"{tag}repeated queries bit-identical ({mech})", kind="exact",
            tests=(f"the {mech} structure queried twice with the same {queries} queries returns "
                   "bit-identical answers" + ("" if mutant_name else
                                              ", sure envelopes and high-probability envelopes")
                   + "; statistic: number of differing entries"),
            statistic=float(total), threshold=0.0, comparison="<=", passed=total == 0,
            sample_size=queries * case.d_v, details={"mismatches": mismatches},
        ))
    return recs


# ---------------------------------------------------------------------------------------------
# the registered check
# ---------------------------------------------------------------------------------------------

def _variance_builds(case: TreeCase, law: dict, ctx: CheckContext) -> int:
    """Structures to build for the per-level variance test: enough for :func:`draws_needed`
    draws at the root level (the smallest), times ``ctx.scale`` at level full."""
    need = draws_needed(law)
    per_build_root = case.copies * case.d_v * 3 * math.comb(case.d + case.degree, case.degree)
    builds = math.ceil(need / per_build_root)
    if ctx.level == "full":
        builds = math.ceil(builds * max(ctx.scale, 1.0))
    return builds


def _off_by_one_power_record(case: TreeCase, seed: int) -> CheckRecord:
    """Power of the range test: it must flag the off-by-one range query (the ranges' seed, so
    the same structure); beta from :func:`off_by_one_escape`."""
    mutant = range_query_records(case, seed, off_by_one_range_query,
                                 mutant_name="off-by-one range")[0]
    beta, terms = off_by_one_escape(case)
    return CheckRecord(
        name="power: off-by-one range query caught", kind="power",
        tests=("the range-query identity fails for a range query that drops the last leaf; "
               "beta: the deviation of the range [0, 1] contains one node's noise with "
               "coefficient 1, which lands in the tiny acceptance window with probability <= "
               "its density times the window (off_by_one_escape)"),
        statistic=mutant.statistic, threshold=RANGE_RTOL, comparison=">=",
        passed=mutant.statistic >= RANGE_RTOL, beta=beta, sample_size=mutant.sample_size,
        details={"beta_terms": terms},
    )


def _resampling_power_record(case: TreeCase, seed: int) -> CheckRecord:
    """Power of the repeatability test: it must flag a query that resamples noise on every call
    (the repeat seed, so the same structures); beta from :func:`resampling_escape`."""
    resampled = repeated_query_records(case, seed, resampling_query,
                                       mutant_name="resampling query")
    beta, terms = resampling_escape(len(resampled))
    return CheckRecord(
        name="power: a query that resamples noise is caught", kind="power",
        tests=("the repeatability test flags a query that adds fresh noise on every call "
               "(uniform, relative 2^-20 of the answer); beta: two calls agree on one entry only "
               "if their uniforms are within 2^-32 (monotone IEEE rounding), union over the "
               "two mechanisms (resampling_escape)"),
        statistic=min(r.statistic for r in resampled), threshold=1.0, comparison=">=",
        passed=all(r.statistic >= 1.0 for r in resampled), beta=beta,
        sample_size=resampled[0].sample_size, details={"beta_terms": terms},
    )


def check_tree(ctx: CheckContext) -> list[CheckRecord]:
    """Check 2: the DPTree noise - per-level node variance, range-query errors, repeatability.

    The paper's tree (PAPER §3.1) adds independent truncated Laplace noise to every node, with
    the tree's budget split evenly over its levels; a range query sums the nodes of its canonical
    decomposition, so its error is exactly the sum of those nodes' noises. This check opens the
    built structure (white box) and verifies each piece: (1) at every tree level, the released
    node noise (read off a structure built from all-zero values, whose exact node sums are 0)
    has exactly the variance the privacy plan and the sensitivity prescribe (rtol 0.05, alpha
    <= 1e-6 by Bernstein's inequality, about 1e5 draws per level); (2) for every range of the
    public grid, the fast range query's error equals the sum of its canonical nodes' noises, and
    the nodes hold the exact subtree sums; (3) the reference DPTree's error equals the sum of its
    canonical node noises exactly, and the fast DPTree primitives reproduce the reference from
    the same uniforms; (4) asking the same queries twice gives bit-identical answers and
    envelopes, for `tree` and `direct` (nothing is resampled at query time, which is what makes
    answering adaptive queries free).

    Power: the variance test rejects node noise scaled by 0.7 and 1.3 at every level; the range
    test catches an off-by-one range query; the repeatability test catches a query that adds
    fresh noise. Each power record states beta, a rigorous bound on the chance that its mutant
    escapes on a correct build: Bernstein on the scaled noise's exact law (union over levels;
    below 1e-100), the density of one node's noise times the range test's acceptance window
    (about 3e-9), and monotone IEEE rounding for the resampling query (about 5e-10). False
    alarms: the variance records' alphas (<= 1e-6 each, about 8e-8 together) plus those betas:
    about 1e-7 for the check at every level. How to read: a variance statistic is the relative
    error of the measured node variance; the exact records' statistics are floating-point
    deviations (about 1e-16).
    """
    case = TREE_CASE
    law = _unit_law(case)
    builds = _variance_builds(case, law, ctx)
    ctx.note(f"per-level variance: {builds} builds")
    records = level_variance_records(case, builds, derive_seed(ctx.seed, "levels"), law=law)
    ctx.note("power: scaled node noise")
    records += _power_records(case, builds, derive_seed(ctx.seed, "levels-mutants"), law, RTOL_VARIANCE)
    ctx.note("range queries")
    records += range_query_records(case, derive_seed(ctx.seed, "ranges"))
    records.append(_off_by_one_power_record(case, derive_seed(ctx.seed, "ranges")))
    ctx.note("reference DPTree")
    records += reference_tree_records(derive_seed(ctx.seed, "reference"))
    ctx.note("repeated queries")
    records += repeated_query_records(case, derive_seed(ctx.seed, "repeat"))
    records.append(_resampling_power_record(case, derive_seed(ctx.seed, "repeat")))
    return records
