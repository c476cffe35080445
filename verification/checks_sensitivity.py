"""Check 3 of the harness: an adversarial search for the neighbouring pair that maximises each change.

For every released quantity of both mechanisms - the ``direct`` statistic S and its ones column
(the denominator's statistic); the tree's c0, c1 (value columns and the denominator) and every
DPTree level (column, coordinate t, moment m, level) - the search looks for neighbouring
datasets (replace one row; all entries inside the public bounds; DESIGN §1) maximising
``||f(D) - f(D')||_1`` and asserts that the maximum never exceeds the analytic sensitivity of
``dpxattn.reference.sensitivity`` that the noise is calibrated to. Three strategies:

1. **corners**: every pair of corner rows of the bound box
   (:func:`dpxattn.reference.sensitivity.neighbouring_corner_pairs`);
2. **random, boundary-biased** ("hypothesis-style" draws: each entry an endpoint, the midpoint,
   or uniform; the other rows random too);
3. **optimiser**: ``scipy.optimize.minimize`` (Powell, box bounds) over the changed row pair,
   maximising the largest change/analytic ratio of a family, started from the best pairs found.

Candidates are evaluated with the real fast build fed the median uniform (its release is then
the exact sums, :func:`dpxattn.verification.mutants.noiseless_release`); the best pair of each
quantity is then re-evaluated **exactly** with the reference (mpmath: ``released_S``,
``released_c0``, ``released_c1``, and exact tree nodes from ``moment_leaves`` and
``exact_node_sums``), and the assertion is made on the exact value. The record reports the
tightness best/analytic (and best/exact-sup where the reference knows the exact sup).

Power: the same search applied to the literal paper's DPTreeDistance over *sorted* keys
(PAPER §3.2 listing, §5 item 7; :mod:`dpxattn.verification.mutants`) finds per-level changes far
above the sensitivity 2 R_w R_x^k the listing assumes.

Paper: sensitivities of DPTree / DPTreeDistance / DPTreeSoftmax (v2 §4, App. D-G, I) and of our ``direct`` statistic; spec PAPER.md §1.3, §3.1-3.4, §5 items 6-8, 13.
Notes: ``proofs_notes/17-sensitivity.md``, ``proofs_notes/21-empirical-audit.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dpxattn.accounting import padded_size, tree_levels
from dpxattn.verification.mutants import (SortedTreeConfig, StructureConfig, noiseless_release,
                                          sorted_tree_values)
from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "Pair",
    "Quantity",
    "SearchBudget",
    "SearchResult",
    "BUDGETS",
    "RATIO_ALLOWANCE",
    "quantities",
    "flat_release",
    "random_pairs",
    "corner_pairs",
    "search_sensitivity",
    "search_sorted_tree",
    "sensitivity_configs",
    "sensitivity_records",
    "check_sensitivity",
]

#: the assertion allows the reference's own working-precision rounding (160 bits by default):
#: exact changes and analytic values are each rounded once or a few times at 2^-160 relative
RATIO_ALLOWANCE = 1e-30


@dataclass(frozen=True)
class Pair:
    """Neighbouring datasets: (K, V) and (K2, V2) differ in row ``row`` only (float64 arrays)."""

    K: np.ndarray
    V: np.ndarray
    K2: np.ndarray
    V2: np.ndarray
    row: int
    strategy: str

    def describe(self) -> str:
        j = self.row
        return (f"row {j}: key {np.array2string(self.K[j], precision=4)} -> "
                f"{np.array2string(self.K2[j], precision=4)}, value "
                f"{np.array2string(self.V[j], precision=4)} -> {np.array2string(self.V2[j], precision=4)}"
                f" ({self.strategy})")


@dataclass(frozen=True)
class Quantity:
    """One released quantity: how to read it from a release, exactly and its analytic bound.

    ``indices``: its positions in :func:`flat_release` of a fast release (the concatenation of
    ``released_tensors`` flattened in name order); ``exact(K, V) -> list of mpf`` evaluates it
    with the reference;
    ``analytic`` the l1 sensitivity it must not exceed; ``exact_sup`` the reference's exact
    supremum when known (tightness is reported against both).
    """

    key: str
    family: str
    analytic: object
    indices: np.ndarray
    exact: Callable
    exact_sup: object = None
    where: tuple = ()  # e.g. (("column", 0), ("coordinate", 1), ("moment", 2), ("level", 0))


@dataclass(frozen=True)
class SearchBudget:
    random_pairs: int
    optimiser_starts: int
    optimiser_evals: int
    per_family: bool
    max_corners: int = 16


BUDGETS = {
    "quick": SearchBudget(random_pairs=40, optimiser_starts=1, optimiser_evals=60, per_family=False),
    "standard": SearchBudget(random_pairs=400, optimiser_starts=2, optimiser_evals=200, per_family=True),
    "full": SearchBudget(random_pairs=2000, optimiser_starts=4, optimiser_evals=500, per_family=True),
}


@dataclass
class SearchResult:
    """Per quantity: the best change found by the fast evaluation, the pair, and the exact value."""

    config: object
    quantities: list
    best_change: np.ndarray
    best_pair: list
    exact_change: list = field(default_factory=list)
    evaluated: dict = field(default_factory=dict)

    def family_best(self, family: str) -> tuple[int, Pair]:
        """Index and pair of the quantity of ``family`` with the largest exact ratio."""
        idx = [i for i, q in enumerate(self.quantities) if q.family == family]
        if not idx:
            raise KeyError(family)
        i = max(idx, key=lambda j: float(self.exact_change[j] / self.quantities[j].analytic))
        return i, self.best_pair[i]


# ---------------------------------------------------------------------------------------------
# quantities of each mechanism
# ---------------------------------------------------------------------------------------------

def _mp(x):
    """``x`` as an mpf of the reference's working context (160 bits): sums started from it stay
    at that precision (mpmath's global 53 bits would round a change that attains a tight
    bound above it)."""
    from dpxattn.reference._mp import context

    return context(None).mpf(x)


def flat_release(release: dict) -> np.ndarray:
    """All released numbers of a fast release in one float64 vector (tensors in name order)."""
    return np.concatenate([release[k].detach().reshape(-1).numpy() for k in sorted(release)])


def _memo(fn):
    """Cache an exact evaluation per dataset (the search revisits the same datasets)."""
    cache: dict = {}

    def wrapped(K, V):
        key = (np.asarray(K, dtype=np.float64).tobytes(), np.asarray(V, dtype=np.float64).tobytes())
        if key not in cache:
            cache[key] = fn(K, V)
        return cache[key]
    return wrapped


def _direct_quantities(config: StructureConfig, M) -> list[Quantity]:
    """``direct``: the whole matrix S (l1 over every entry) and its ones column (the
    denominator's statistic, bound sum_t M_t), both read off the exact reference S."""
    from dpxattn.reference import sensitivity

    d, s, R, R_w, d_v, sc = config.d, config.degree, config.R, config.R_w, config.d_v, config.scale
    cols, r = d_v + 1, config.r
    ones_bound = sum(M, _mp(0))
    S_exact = _memo(lambda K, V: sensitivity.released_S(K, V, degree=s, scale=sc))
    return [
        Quantity("S (whole matrix)", "S", sensitivity.direct_statistic(d, s, R, R_w, d_v, scale=sc),
                 np.arange(r * cols), S_exact,
                 sensitivity.direct_statistic(d, s, R, R_w, d_v, scale=sc)),
        Quantity("ones column of S (the denominator's statistic)", "S ones column (denominator)",
                 ones_bound, np.arange(r) * cols + d_v,
                 lambda K, V: S_exact(K, V)[d_v::cols], ones_bound - M[0]),
    ]


def _exact_tree_nodes(config: StructureConfig, M):
    """``tree``: the memoised exact node sums of every moment tree of a dataset (reference),
    ``(K, V) -> {(column k, coordinate t, moment m): node sums}``; one cache for all levels."""
    from dpxattn.reference import kernel
    from dpxattn.reference.dptree import exact_node_sums
    from dpxattn.reference.dptree_distance import moment_leaves

    s, d_v, sc, G = config.degree, config.d_v, config.scale, config.grid
    cols, r = d_v + 1, config.r

    @_memo
    def exact_tree(K, V):
        """{(k, t, m): exact node sums} of every moment tree of the dataset (reference)."""
        feats = [kernel.features(row, s, scale=sc) for row in np.asarray(K).tolist()]
        out = {}
        for k in range(cols):
            w = [1] * len(feats) if k == d_v else [row[k] for row in np.asarray(V).tolist()]
            for t in range(r):
                for m in range(3):
                    leaves = moment_leaves([f[t] for f in feats], w, upper=M[t], grid_size=G, k=m)
                    out[(k, t, m)] = exact_node_sums(leaves)
        return out
    return exact_tree


def _tree_column_quantities(config: StructureConfig, k: int, M, exact_tree) -> list[Quantity]:
    """``tree``, column k (k = d_v: the denominator, weight 1; else weight R_w): its scalars
    c0 and c1, then every (coordinate, moment, level) of its moment trees, each level's nodes
    together (the flat layout of :func:`quantities`)."""
    from dpxattn.reference import sensitivity

    d, s, R, R_w, d_v, sc = config.d, config.degree, config.R, config.R_w, config.d_v, config.scale
    cols, r = d_v + 1, config.r
    N = padded_size(config.grid)
    L = tree_levels(config.grid)
    payload_size = (2 * N - 1) * r * cols * 3
    den = k == d_v
    W = 1 if den else R_w
    tag = "denominator" if den else f"value column {k}"
    fam = "denominator" if den else "value columns"
    out = [Quantity(f"c0 ({tag})", f"c0 ({fam})", sensitivity.c0(W),
                    np.array([payload_size + 2 * k]),
                    _memo(lambda K, V, k=k: sensitivity.released_c0(K, V, column=k)),
                    sensitivity.c0_denominator() if den else sensitivity.c0(W),
                    (("column", k),)),
           Quantity(f"c1 ({tag})", f"c1 ({fam})",
                    sensitivity.c1_column(d, s, R, W, denominator=den, scale=sc),
                    np.array([payload_size + 2 * k + 1]),
                    _memo(lambda K, V, k=k: sensitivity.released_c1(K, V, column=k, degree=s,
                                                                    scale=sc)),
                    sensitivity.c1_denominator(d, s, R, scale=sc) if den
                    else sensitivity.c1(d, s, R, W, scale=sc), (("column", k),))]
    for t in range(r):
        for m in range(3):
            analytic = sensitivity.tree_level(M[t], m, W)
            for lev in range(L):
                nodes = np.arange((1 << lev) - 1, (1 << (lev + 1)) - 1)
                out.append(Quantity(
                    f"tree level {lev} (column {'den' if den else k}, coordinate {t}, moment {m})",
                    f"tree levels ({fam})", analytic,
                    ((nodes * r + t) * cols + k) * 3 + m,
                    lambda K, V, key=(k, t, m), nodes=nodes: [exact_tree(K, V)[key][i] for i in nodes],
                    analytic, (("column", k), ("coordinate", t), ("moment", m), ("level", lev))))
    return out


def quantities(config: StructureConfig) -> list[Quantity]:
    """Every released quantity of the structure, with its analytic sensitivity (reference).

    Flat layout (:func:`flat_release`): ``direct``: S (r, cols) row-major; ``tree``: ``payload``
    (2N - 1, r, 1, cols, 3) then ``scalars`` (1, cols, 2), each row-major.
    """
    from dpxattn.reference import kernel

    M = kernel.feature_bounds(config.d, config.degree, config.R, scale=config.scale)
    if config.mechanism == "direct":
        return _direct_quantities(config, M)
    exact_tree = _exact_tree_nodes(config, M)
    out: list[Quantity] = []
    for k in range(config.d_v + 1):
        out += _tree_column_quantities(config, k, M, exact_tree)
    return out


# ---------------------------------------------------------------------------------------------
# candidate pairs
# ---------------------------------------------------------------------------------------------

def _biased(rng: np.random.Generator, shape, low: float, high: float) -> np.ndarray:
    """Boundary-biased draws: endpoint (1/2), midpoint (1/8), uniform (3/8)."""
    kind = rng.integers(0, 8, size=shape)
    ends = np.where(rng.integers(0, 2, size=shape) == 1, high, low)
    out = rng.uniform(low, high, size=shape)
    out = np.where(kind < 4, ends, out)
    return np.where(kind == 4, 0.5 * (low + high), out)


def random_pairs(config: StructureConfig, count: int, rng: np.random.Generator) -> list[Pair]:
    """``count`` neighbouring pairs with boundary-biased entries (the changed row at random)."""
    out = []
    for _ in range(count):
        K = _biased(rng, (config.n, config.d), 0.0, config.R)
        V = _biased(rng, (config.n, config.d_v), -config.R_w, config.R_w)
        j = int(rng.integers(0, config.n))
        K2, V2 = K.copy(), V.copy()
        K2[j] = _biased(rng, config.d, 0.0, config.R)
        V2[j] = _biased(rng, config.d_v, -config.R_w, config.R_w)
        out.append(Pair(K, V, K2, V2, j, "random (boundary-biased)"))
    return out


def corner_pairs(config: StructureConfig, max_corners: int) -> list[Pair]:
    """The reference's corner pairs (exact corners: 0, R, +-R_w), as float64 arrays."""
    from dpxattn.reference.sensitivity import neighbouring_corner_pairs

    out = []
    for p in neighbouring_corner_pairs(config.n, config.d, config.d_v, config.R, config.R_w,
                                       max_corners=max_corners):
        def arr(x):
            return np.array([[float(v) for v in row] for row in x], dtype=np.float64)
        out.append(Pair(arr(p.K), arr(p.V), arr(p.K2), arr(p.V2), p.row, f"corners ({p.label})"))
    return out


class _Evaluator:
    """Changes of every quantity for a pair, from the real noiseless fast build (cached per dataset)."""

    def __init__(self, config: StructureConfig, qs: list[Quantity]) -> None:
        self.config = config
        self.idx = np.concatenate([q.indices for q in qs])
        self.qid = np.concatenate([np.full(len(q.indices), i) for i, q in enumerate(qs)])
        self.count = len(qs)
        self.cache: dict = {}

    def release(self, K, V) -> np.ndarray:
        key = (K.tobytes(), V.tobytes())
        if key not in self.cache:
            if len(self.cache) > 4096:
                self.cache.clear()
            self.cache[key] = flat_release(noiseless_release(self.config, K, V))
        return self.cache[key]

    def __call__(self, pair: Pair) -> np.ndarray:
        diff = np.abs(self.release(pair.K, pair.V) - self.release(pair.K2, pair.V2))
        return np.bincount(self.qid, weights=diff[self.idx], minlength=self.count)


def _pair_from_vector(base: Pair, x: np.ndarray, config: StructureConfig, strategy: str) -> Pair:
    d, d_v = config.d, config.d_v
    K, V, K2, V2 = base.K.copy(), base.V.copy(), base.K.copy(), base.V.copy()
    j = base.row
    K[j], V[j] = x[:d], x[d:d + d_v]
    K2[j], V2[j] = x[d + d_v:2 * d + d_v], x[2 * d + d_v:]
    return Pair(K, V, K2, V2, j, strategy)


def _optimise(config, evaluate, analytic, family_idx, start: Pair, evals: int, record) -> None:
    """Powell search over the changed row pair, maximising the family's largest ratio."""
    from scipy.optimize import minimize

    d, d_v, R, R_w = config.d, config.d_v, config.R, config.R_w
    j = start.row
    x0 = np.concatenate([start.K[j], start.V[j], start.K2[j], start.V2[j]])
    bounds = [(0.0, R)] * d + [(-R_w, R_w)] * d_v + [(0.0, R)] * d + [(-R_w, R_w)] * d_v

    def objective(x):
        x = np.clip(x, [b[0] for b in bounds], [b[1] for b in bounds])
        pair = _pair_from_vector(start, x, config, "optimiser (scipy Powell)")
        ch = evaluate(pair)
        record(ch, pair)
        return -float(np.max(ch[family_idx] / analytic[family_idx]))

    minimize(objective, x0, method="Powell", bounds=bounds,
             options={"maxfev": int(evals), "xtol": 1e-4, "ftol": 1e-10})


def search_sensitivity(config: StructureConfig, rng: np.random.Generator,
                       budget: SearchBudget, *, exact: bool = True) -> SearchResult:
    """Run the three strategies on ``config``; re-evaluate each quantity's best pair exactly."""
    qs = quantities(config)
    evaluate = _Evaluator(config, qs)
    analytic = np.array([float(q.analytic) for q in qs])
    best = np.full(len(qs), -1.0)
    best_pair: list = [None] * len(qs)
    counts = {"corners": 0, "random": 0, "optimiser": 0}

    def record(ch, pair, kind=None):
        better = ch > best
        best[better] = ch[better]
        for i in np.nonzero(better)[0]:
            best_pair[i] = pair
        counts[kind or ("optimiser" if pair.strategy.startswith("optimiser") else "random")] += 1

    for pair in corner_pairs(config, budget.max_corners):
        record(evaluate(pair), pair, "corners")
    for pair in random_pairs(config, budget.random_pairs, rng):
        record(evaluate(pair), pair, "random")
    if budget.per_family:
        groups = [np.array([i for i, q in enumerate(qs) if q.family == fam])
                  for fam in sorted({q.family for q in qs})]
    else:
        groups = [np.arange(len(qs))]
    for idx in groups:
        ratios = best[idx] / analytic[idx]
        starts: list[Pair] = []
        for i in idx[np.argsort(-ratios, kind="stable")]:
            if len(starts) >= budget.optimiser_starts:
                break
            if best_pair[i] is not None and all(best_pair[i] is not p for p in starts):
                starts.append(best_pair[i])
        for start in starts:
            _optimise(config, evaluate, analytic, idx, start, budget.optimiser_evals, record)
    result = SearchResult(config, qs, best, best_pair, evaluated=counts)
    if exact:
        for q, pair in zip(qs, best_pair):
            a, b = q.exact(pair.K, pair.V), q.exact(pair.K2, pair.V2)
            result.exact_change.append(sum((abs(x - y) for x, y in zip(a, b)), _mp(0)))
    return result


# ---------------------------------------------------------------------------------------------
# the literal listing over sorted keys (power)
# ---------------------------------------------------------------------------------------------

def search_sorted_tree(config: SortedTreeConfig, rng: np.random.Generator, pairs: int, *,
                       structured: bool = True) -> dict:
    """Search neighbouring 1-D datasets (points, weights) maximising a per-level l1 change of the
    listing's trees over sorted positions; exact nodes (reference ``exact_node_sums``).

    Returns ``{"ratio": best change / claimed sensitivity, "level", "moment", "change",
    "claimed", "pair"}`` for the best (moment, level) found.
    """
    from dpxattn.reference.dptree import exact_node_sums

    n, Rx, Rw = config.n, config.R_x, config.R_w
    claimed = config.claimed_sensitivities()
    L = tree_levels(n)
    best = {"ratio": -1.0}

    def evaluate(x, w, x2, w2, strategy):
        va, vb = sorted_tree_values(config, x, w), sorted_tree_values(config, x2, w2)
        for k in range(config.p + 1):
            na, nb = exact_node_sums(va[:, k].tolist()), exact_node_sums(vb[:, k].tolist())
            for lev in range(L):
                lo, hi = (1 << lev) - 1, (1 << (lev + 1)) - 1
                ch = sum((abs(p - q) for p, q in zip(na[lo:hi], nb[lo:hi])), _mp(0))
                ratio = float(ch / _mp(claimed[k]))
                if ratio > best["ratio"]:
                    best.update(ratio=ratio, level=lev, moment=k, change=float(ch),
                                claimed=claimed[k], strategy=strategy,
                                pair={"x": x.tolist(), "w": w.tolist(), "x2": x2.tolist(), "w2": w2.tolist()})

    if structured:  # move the smallest key past all others, alternating / constant weights
        x = np.linspace(0.0, Rx, n + 2)[1:-1]
        for w in (np.where(np.arange(n) % 2 == 0, Rw, -Rw), np.full(n, Rw)):
            x2 = x.copy()
            x2[0] = Rx
            evaluate(x, w.astype(np.float64), x2, w.astype(np.float64), "structured (rank shift)")
    for _ in range(pairs):
        x = _biased(rng, n, 0.0, Rx)
        w = _biased(rng, n, -Rw, Rw)
        j = int(rng.integers(0, n))
        x2, w2 = x.copy(), w.copy()
        x2[j] = _biased(rng, 1, 0.0, Rx)[0]
        w2[j] = _biased(rng, 1, -Rw, Rw)[0]
        evaluate(x, w, x2, w2, "random (boundary-biased)")
    return best


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------

def sensitivity_configs(level: str) -> list[StructureConfig]:
    """Structures searched at each level (small n: the change depends on the changed row only)."""
    small = [dict(n=3, d=2, d_v=1, degree=2, R=1.0, R_w=1.0),
             dict(n=4, d=1, d_v=2, degree=3, R=1.5, R_w=0.5)]
    more = [dict(n=5, d=3, d_v=1, degree=2, R=0.8, R_w=2.0),
            dict(n=2, d=2, d_v=1, degree=1, R=2.0, R_w=0.25)]
    direct = small + ([] if level == "quick" else more)
    tree = small[:1] if level == "quick" else small + more
    return ([StructureConfig(mechanism="direct", eps=1.0, delta=1e-6, **b) for b in direct]
            + [StructureConfig(mechanism="tree", eps=1.0, delta=1e-6, **b) for b in tree])


def _fast_noise_covers(config: StructureConfig) -> tuple[bool, str]:
    """The fast path's noise sensitivities (rounded up) are >= the analytic ones."""
    from dpxattn.fast.sensitivities import direct_sensitivity, tree_sensitivities

    qs = quantities(config)
    if config.mechanism == "direct":
        fast = direct_sensitivity(d=config.d, degree=config.degree, R=config.R, R_w=config.R_w,
                                  d_v=config.d_v, scale=config.scale)
        ok = fast >= float(qs[0].analytic)
        return ok, f"direct: fast Delta_S {fast!r} vs analytic {float(qs[0].analytic)!r}"
    scal, nodes = tree_sensitivities(d=config.d, degree=config.degree, R=config.R, R_w=config.R_w,
                                     d_v=config.d_v, scale=config.scale)
    from dpxattn.reference import kernel, sensitivity

    M = kernel.feature_bounds(config.d, config.degree, config.R, scale=config.scale)
    ok = True
    for k in range(config.cols):
        W = 1 if k == config.d_v else config.R_w
        ok &= scal[k, 0] >= float(sensitivity.c0(W))
        ok &= scal[k, 1] >= float(sensitivity.c1_column(config.d, config.degree, config.R, W,
                                                        denominator=k == config.d_v,
                                                        scale=config.scale))
        for t in range(config.r):
            for m in range(3):
                ok &= nodes[k, t, m] >= float(sensitivity.tree_level(M[t], m, W))
    return bool(ok), "tree: every scalar and node sensitivity of the fast path >= the reference's"


def sensitivity_records(result: SearchResult, config: StructureConfig) -> list[CheckRecord]:
    """One record per family of quantities: max exact change / analytic <= 1."""
    records = []
    fams: dict[str, list[int]] = {}
    for i, q in enumerate(result.quantities):
        fams.setdefault(q.family, []).append(i)
    searched = sum(result.evaluated.values())
    for fam, idx in fams.items():
        ratios = [float(result.exact_change[i] / result.quantities[i].analytic) for i in idx]
        worst = idx[int(np.argmax(ratios))]
        q = result.quantities[worst]
        per = []
        for i, ratio in zip(idx, ratios):
            qi = result.quantities[i]
            sup = qi.exact_sup
            per.append({
                "quantity": qi.key,
                "analytic": float(qi.analytic),
                "best_found_exact": float(result.exact_change[i]),
                "tightness": ratio,
                "exact_sup": None if sup is None else float(sup),
                "tightness_vs_exact_sup": None if sup is None or sup == 0 else float(result.exact_change[i] / sup),
                "pair": result.best_pair[i].describe(),
            })
        records.append(CheckRecord(
            name=f"sensitivity: {config.mechanism} {fam} [{config.describe()}]",
            kind="search",
            tests=(f"no neighbouring pair found (corners, {result.evaluated['random']} boundary-biased "
                   f"random pairs, scipy Powell optimiser) changes {fam} by more than its analytic l1 "
                   "sensitivity (dpxattn.reference.sensitivity); the best pair re-evaluated exactly"),
            statistic=max(ratios),
            threshold=1.0 + RATIO_ALLOWANCE,
            comparison="<=",
            passed=max(ratios) <= 1.0 + RATIO_ALLOWANCE,
            sample_size=searched,
            details={
                "worst_quantity": q.key,
                "analytic": float(q.analytic),
                "best_found_exact": float(result.exact_change[worst]),
                "tightness_min": float(min(ratios)),
                "tightness_max": float(max(ratios)),
                "pairs_evaluated": dict(result.evaluated),
                "quantities": per if len(per) <= 12 else sorted(per, key=lambda p: -p["tightness"])[:12],
                "quantities_total": len(per),
            },
        ))
    ok, text = _fast_noise_covers(config)
    records.append(CheckRecord(
        name=f"sensitivity: {config.mechanism} noise calibrated to >= the analytic sensitivity [{config.describe()}]",
        kind="exact",
        tests="every sensitivity the fast path calibrates its noise to is >= the reference's analytic value",
        statistic=0.0 if ok else 1.0, threshold=0.0, comparison="<=", passed=ok,
        details={"compared": text}))
    return records


def check_sensitivity(ctx: CheckContext) -> list[CheckRecord]:
    """Check 3: no neighbouring pair changes a released quantity by more than its sensitivity.

    The noise of every released number is calibrated to an analytic l1 sensitivity (replace
    one row of (K, V), all entries inside the public bounds). If a pair of neighbouring datasets
    moved a quantity further, the noise would be too small and the privacy claim false. For
    each released quantity - the direct statistic S and its ones column (the denominator); the
    tree's c0 and c1 of every value column and of the denominator, and every level of every
    DPTree - an adversarial search looks for the pair that moves it most: all corner pairs of
    the bound box, boundary-biased random pairs, and a scipy (Powell) optimiser started from the
    best pairs. The best pair of each quantity is re-evaluated exactly (mpmath reference).

    How to read: the statistic is the largest (best change found) / (analytic sensitivity) of
    a family; it must be <= 1 (up to the reference's 160-bit rounding). Values near 1 mean the
    analytic bound is tight (c0, c1, tree levels); below 1 it is loose (the direct S bound
    counts the never-changing constant feature; the denominator's c0 is n, public). The
    `noise calibrated` records confirm the fast path's noise uses at least these values. Power:
    the same search on the literal paper's tree over SORTED keys (PAPER §5 item 7) finds
    per-level changes several times the sensitivity that listing assumes (8x, from a structured
    rank-shift pair evaluated in every run: deterministic).

    False alarms: none. Every record compares an exactly re-evaluated change with a proven
    bound, or (power) a deterministic exact change with a threshold: the check's total is 0.
    The tightness figures in the details are shown, not asserted.
    """
    rng = ctx.rng
    budget = BUDGETS.get(ctx.level, BUDGETS["standard"])
    records: list[CheckRecord] = []
    for config in sensitivity_configs(ctx.level):
        ctx.note(f"searching {config.describe()}")
        records += sensitivity_records(search_sensitivity(config, rng, budget), config)
    sorted_cfg = SortedTreeConfig(n=8, R_x=1.0, R_w=1.0, eps=1.0, delta=1e-6)
    best = search_sorted_tree(sorted_cfg, rng, pairs=budget.random_pairs)
    structured = search_sorted_tree(sorted_cfg, rng, pairs=0)  # no random draw: deterministic
    records.append(CheckRecord(
        name="sensitivity (power): the literal DPTreeDistance over sorted keys is exposed",
        kind="search",
        tests=("the same search finds a neighbouring pair whose per-level l1 change of a tree over "
               "SORTED positions (PAPER §3.2 listing, §5 item 7) exceeds the listing's sensitivity "
               "2 R_w R_x^k by at least 50%: the search can find a real sensitivity violation. "
               "Deterministic (cannot fail on a correct build, hence no beta): the structured "
               "rank-shift pairs, evaluated in every run without randomness and exactly (mpmath "
               f"node sums), alone reach {structured['ratio']:g}; the random pairs can only raise "
               "the maximum"),
        statistic=best["ratio"], threshold=1.5, comparison=">=", passed=best["ratio"] >= 1.5,
        sample_size=budget.random_pairs + 2,
        details={"config": sorted_cfg.describe(), "structured_ratio": structured["ratio"],
                 **{k: v for k, v in best.items() if k != "ratio"}},
    ))
    return records
