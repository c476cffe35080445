"""The checks of ``dpxattn verify --target module:attr``: anyone's implementation, through the
target protocol only (``proofs_notes/29-target-protocol.md``).

Every check below touches the target only through :mod:`dpxattn.verification.target`
(``build``, ``noise_count``, ``query``, ``released``, optional ``error_bound``); the exact
reference (``dpxattn.reference``) supplies what the target must match. For each mechanism the
target declares:

1. **conformance** (exact): built from the same uniforms as the reference over the conformance
   table's single-copy box cases (:data:`dpxattn.verification.conformance.CASES`), the released
   numbers and the answers agree with the reference's exact ones within ``rtol |ref| + atol``
   (:func:`float64_tolerance`: DESIGN §6's 1e-10 relative, and an absolute float64 allowance of
   1e-11 times the magnitudes that enter each number);
2. **noiselessness** (exact): at uniforms 1/2 the released numbers are the exact statistic and
   the answers the exact noiseless answers (same tolerance, no noise);
3. **noise law** (statistical): the recovered noise ``released(rng) - released(u = 1/2)`` of
   independent rng builds, per entry and pooled, for each law of the structure's components
   (:func:`components`: ``direct`` one, TLap(Delta_S, eps, delta); ``tree`` c0, c1 and the
   DPTree levels) against the exact TLap of the reference's parameters (KS with the reference
   grid bracket, chi-square; alpha 1e-6 each; per entry the largest KS distance at alpha 1e-6 /
   entries each), the sure support (exact), and power: the same pooled KS rejects the recovered
   draws times 0.7 and times 1.3 (beta from the mutant's exact law, ``checks_noise.ks_escape``);
4. **sensitivity** (search): over the neighbouring pairs that replace row 0 of a fixed data set
   by any two corners (keys in {0, R}^d, values in {-R_w, R_w}^d_v), the l1 change of each
   component of the target's noiseless release never exceeds the reference's sensitivity of it;
5. **audit** (audit): the empirical eps lower bound
   (:func:`dpxattn.verification.audit.audit`, confidence 1 - 1e-6) of the released numbers, and
   of the answers at one query, on the pair of 4 with the largest composed loss bound
   sum_c eps_c change_c / Delta_c (the same draws as 3 on one side) stays
   <= the claimed eps; the same draws with their noise halved are audited as an info figure;
6. **adaptive queries** (search; if the built target has ``error_bound``): random queries and an
   eps0-net grid on builds from rng and from extreme uniforms never see |query - Taylor
   attention| above ``error_bound`` (Taylor attention: dpxattn's fast noiseless answers, within
   :data:`TAYLOR_RTOL` of the exact ones by the conformance table; that much is allowed).

Checks that cannot run for a target (a mechanism it does not declare, no ``error_bound``) are
listed in the report with the reason. Rates: the exact
and search records cannot fail a correct float64 implementation; each statistical and audit
record states alpha = 1e-6, each power record its beta (note 20).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from dpxattn.randomness import derive_seed
from dpxattn.verification.harness import HarnessRun
from dpxattn.verification.records import CheckContext, CheckRecord
from dpxattn.verification.registry import CheckSpec
from dpxattn.verification.target import (LoadedTarget, ReferenceTarget, build_target,
                                         context_target, released_vector)

__all__ = [
    "ALPHA",
    "AUDIT_ALPHA",
    "RTOL",
    "ATOL_FACTOR",
    "TargetSizes",
    "StatConfig",
    "STAT_CONFIGS",
    "TARGET_CHECKS",
    "sizes_for",
    "float64_tolerance",
    "conformance_cases",
    "target_degrees",
    "stat_config",
    "check_target_conformance",
    "check_target_noiseless",
    "check_target_noise_law",
    "check_target_sensitivity",
    "check_target_audit",
    "check_target_adaptive",
    "target_conformance",
    "target_noiseless",
    "target_noise_law",
    "target_sensitivity",
    "target_audit",
    "target_adaptive",
    "clear_shared",
    "target_specs",
    "run_target",
]

#: false-alarm rate of every statistical assertion (DESIGN §6)
ALPHA = 1e-6
#: 1 - confidence of every audit (as checks_privacy)
AUDIT_ALPHA = 1e-6
#: DESIGN §6 relative tolerance
RTOL = 1e-10
#: absolute float64 allowance: this times the magnitudes entering a number (about 5e4 ulps)
ATOL_FACTOR = 1e-11
#: power factors of the noise law (DESIGN §6)
POWER_FACTORS = (0.7, 1.3)
#: points of the reference grid behind KS and chi-square; chi-square bins
GRID_POINTS, CHI_BINS = 2048, 128


@dataclass(frozen=True)
class TargetSizes:
    """Builds per side of the audit (the first ``noise`` of side a feed the noise law), queries
    of the adaptive search per structure, conformance cases (None: the whole table)."""

    noise: int
    audit: int
    queries: int
    quick_cases: bool


def sizes_for(level: str, scale: float = 1.0) -> TargetSizes:
    """quick: 20 000 noise-law builds (2.4e5 pooled draws), 40 000 per audit side, 2 000
    queries; standard: 1.2e5 builds (DESIGN §6 per entry), 1e6 per audit side (DESIGN §6),
    1e4 queries; full: standard times ``scale``."""
    if level == "quick":
        return TargetSizes(noise=20_000, audit=40_000, queries=2_000, quick_cases=True)
    f = max(float(scale), 1.0) if level == "full" else 1.0
    return TargetSizes(noise=int(120_000 * f), audit=int(1_000_000 * f), queries=int(10_000 * f),
                       quick_cases=False)


@dataclass(frozen=True)
class StatConfig:
    """The configuration of checks 3-6: sizes, bounds and budget."""

    n: int
    d: int
    d_v: int
    degree: int
    R: float = 1.0
    R_w: float = 1.0
    eps: float = 1.0
    delta: float = 1e-6

    def kwargs(self, mechanism: str) -> dict:
        return dict(eps=self.eps, delta=self.delta, R=self.R, R_w=self.R_w, degree=self.degree,
                    mechanism=mechanism)

    @property
    def label(self) -> str:
        return (f"n={self.n} d={self.d} d_v={self.d_v} s={self.degree} R={self.R:g} "
                f"R_w={self.R_w:g} eps={self.eps:g} delta={self.delta:g}")


#: direct: d = 2, degree 2: r = 6 features, 12 released numbers; tree: d = 1, degree 1, n = 4
#: (N = 4): r = 2, 4 scalars and 84 nodes, 88 released numbers in 28 components
STAT_CONFIGS = {"direct": StatConfig(n=4, d=2, d_v=1, degree=2),
                "tree": StatConfig(n=4, d=1, d_v=1, degree=1)}


# ---------------------------------------------------------------------------------------------
# tolerance and the reference's side
# ---------------------------------------------------------------------------------------------

def float64_tolerance(ref_exact: np.ndarray, ref_noise: np.ndarray, *, weights_l1: np.ndarray,
                      R_w: float, floor: float, terms: float = 1.0) -> tuple[np.ndarray, float, float]:
    """``(answer_atol (m,), released_atol, rtol)`` of one case.

    ``ref_exact``: the exact statistic (the reference at uniforms 1/2), ``ref_noise`` the
    reference's draws (released - exact); released numbers: ``atol = ATOL_FACTOR (max |exact| +
    max |noise|)``. Answers (N_k / D, N_k = w . S~[:, k]): ``ATOL_FACTOR (1 + R_w) terms
    ||w||_1 (max |exact| + max |noise|) / floor`` per query row, ``weights_l1`` = ||w||_1 of each
    query's weights (``direct``: the features' l1 norm; ``tree``: that of the law-of-cosines
    coefficients, ``terms`` the nodes per coordinate read), ``floor`` the denominator's public
    floor. An allowance about 5e4 ulps of what enters each number: a correct float64
    implementation is far inside it.
    """
    mag = float(np.max(np.abs(ref_exact))) + float(np.max(np.abs(ref_noise)) if ref_noise.size else 0.0)
    atol_rel = ATOL_FACTOR * mag
    atol_ans = ATOL_FACTOR * (1.0 + R_w) * terms * np.asarray(weights_l1, dtype=np.float64) * mag / floor
    return atol_ans, atol_rel, RTOL


def _query_weights(mechanism: str, Q: np.ndarray, degree: int, n: int) -> tuple[np.ndarray, float]:
    """(||weights||_1 per query (m,), terms) for :func:`float64_tolerance`."""
    from dpxattn.reference.kernel import features

    U = np.array([[float(x) for x in features(list(q), degree)] for q in Q], dtype=np.float64)
    l1 = np.abs(U).sum(axis=1)
    if mechanism == "direct":
        return l1, 1.0
    # law of cosines: c1 + ||u||^2 c0 + sum_t (u_t^2 + 2 u_t + 1) (moment nodes, 2 log2 N each)
    levels = max(1, math.ceil(math.log2(max(n, 1))) + 1)
    w = 1.0 + (U * U).sum(axis=1) + ((U * U) + 2 * np.abs(U) + 1).sum(axis=1)
    return w, float(2 * levels)


def target_degrees(obj):
    """The degrees a target offers: its optional ``degrees`` attribute (a tuple), or None for
    every degree."""
    degrees = getattr(obj, "degrees", None)
    return None if degrees is None else tuple(int(s) for s in degrees)


def stat_config(obj, mechanism: str) -> StatConfig:
    """The configuration of checks 3-5 for a target: :data:`STAT_CONFIGS`, at the largest
    degree the target offers when it does not offer that one (``degrees``)."""
    cfg = STAT_CONFIGS[mechanism]
    degrees = target_degrees(obj)
    if degrees is not None and cfg.degree not in degrees:
        cfg = replace(cfg, degree=max(degrees))
    return cfg


def conformance_cases(mechanisms, quick: bool, degrees=None):
    """The conformance table's cases that the protocol can express: box domain, one copy,
    default grid and scale (:data:`dpxattn.verification.conformance.CASES`), at the
    ``degrees`` given (None: all); quick: at most 4 per mechanism, n = 1 and extreme uniforms
    first."""
    from dpxattn.verification.conformance import CASES

    out = []
    for mech in mechanisms:
        rows = [c for c in CASES if c.mechanism == mech and c.domain == "box" and c.copies == 1
                and c.grid_size is None and c.scale is None
                and (degrees is None or c.degree in degrees)]
        if quick:
            first = [c for c in rows if c.n == 1 or c.uniforms in ("low", "high", "half")]
            rows = (first + [c for c in rows if c not in first])[:4]
        out.extend(rows)
    return out


def _case_inputs(case, root: int):
    from dpxattn.verification.conformance import case_data, case_uniforms

    K, V, Q = case_data(case, root)
    count = ReferenceTarget.noise_count(n=case.n, d=case.d, d_v=case.d_v, degree=case.degree,
                                        mechanism=case.mechanism)
    return K, V, Q, case_uniforms(case, count, root)


def _compare(name: str, got, want: np.ndarray, atol, rtol: float) -> tuple[float, dict]:
    """max |got - want| / (rtol |want| + atol) and details; shape mismatch -> inf."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf, {f"{name}_shape": list(got.shape), f"{name}_expected_shape": list(want.shape)}
    if not np.all(np.isfinite(got)):
        return math.inf, {f"{name}_finite": False}
    tol = rtol * np.abs(want) + atol
    ratio = np.abs(got - want) / np.maximum(tol, np.finfo(np.float64).tiny)
    return float(ratio.max()) if ratio.size else 0.0, {f"{name}_max_abs_diff": float(np.max(np.abs(got - want)))}


_not_applicable = CheckRecord.not_applicable


def _reference_case(case, K, V, Q, u):
    ref = ReferenceTarget.build(K, V, uniforms=u, **_case_kwargs(case))
    half = ReferenceTarget.build(K, V, uniforms=np.full(u.size, 0.5), **_case_kwargs(case))
    return ref, half


def _case_kwargs(case) -> dict:
    return dict(eps=case.eps, delta=case.delta, R=case.R, R_w=case.R_w, degree=case.degree,
                mechanism=case.mechanism)


def _conformance_records(target: LoadedTarget, ctx: CheckContext, *, noiseless: bool) -> list[CheckRecord]:
    what = "noiselessness" if noiseless else "conformance"
    sizes = sizes_for(ctx.level, ctx.scale)
    out = []
    for case in conformance_cases(target.obj.mechanisms, sizes.quick_cases,
                                  target_degrees(target.obj)):
        ctx.note(f"{what}: {case.name}")
        K, V, Q, u = _case_inputs(case, ctx.seed)
        if noiseless:
            u = np.full(u.size, 0.5)
        ref, half = _reference_case(case, K, V, Q, u)
        ref_rel, ref_half = released_vector(ref), released_vector(half)
        ref_ans = ref.query(Q)
        weights, terms = _query_weights(case.mechanism, Q, case.degree, case.n)
        atol_ans, atol_rel, rtol = float64_tolerance(ref_half, ref_rel - ref_half, weights_l1=weights,
                                                     R_w=case.R_w, floor=float(case.n), terms=terms)
        details: dict = {"case": case.name, "rtol": rtol, "released_atol": atol_rel,
                         "answers_atol_max": float(np.max(atol_ans))}
        try:
            count = int(target.obj.noise_count(n=case.n, d=case.d, d_v=case.d_v, degree=case.degree,
                                               mechanism=case.mechanism))
            details["noise_count"] = count
            if count != u.size:
                stat = math.inf
                details["noise_count_expected"] = int(u.size)
            else:
                built = build_target(target.obj, K, V, uniforms=u.copy(), **_case_kwargs(case))
                s_rel, d_rel = _compare("released", released_vector(built), ref_rel, atol_rel, rtol)
                s_ans, d_ans = _compare("answers", built.query(Q), ref_ans, atol_ans[:, None], rtol)
                again, _ = _compare("repeat", built.query(Q), np.asarray(built.query(Q)), 0.0, 0.0)
                details.update(d_rel, **d_ans, released_ratio=s_rel, answers_ratio=s_ans,
                               repeated_queries_identical=again == 0.0)
                stat = max(s_rel, s_ans, 0.0 if again == 0.0 else math.inf)
        except Exception as exc:  # noqa: BLE001 - a target that raises fails the record
            stat = math.inf
            details["error"] = f"{type(exc).__name__}: {exc}"
        out.append(CheckRecord(
            name=f"{what}: {case.name}", kind="exact",
            tests=(("at uniforms 1/2 (zero noise) the target's released numbers equal the exact "
                    "statistic and its answers the exact noiseless answers (reference)")
                   if noiseless else
                   ("built from the same uniforms as the exact reference, the target's released "
                    "numbers and answers agree with the reference's (DESIGN §6)"))
            + "; statistic max |target - reference| / (rtol |reference| + atol), repeated "
              "queries identical",
            statistic=stat, threshold=1.0, comparison="<=", passed=bool(stat <= 1.0),
            details=details))
    return out


def check_target_conformance(target: LoadedTarget, ctx: CheckContext) -> list[CheckRecord]:
    """Check 1 (exact): shared-uniform conformance with the exact reference."""
    return _conformance_records(target, ctx, noiseless=False)


def check_target_noiseless(target: LoadedTarget, ctx: CheckContext) -> list[CheckRecord]:
    """Check 2 (exact): at uniforms 1/2 the release is the exact statistic."""
    return _conformance_records(target, ctx, noiseless=True)


# ---------------------------------------------------------------------------------------------
# the statistical configuration: the worst corner pair and the draws on it (checks 3-5)
# ---------------------------------------------------------------------------------------------

@dataclass
class _Draws:
    """Released numbers (and answers at one query) of rng builds on both sides of the pair."""

    a: np.ndarray
    b: np.ndarray
    ans_a: np.ndarray
    ans_b: np.ndarray
    base_a: np.ndarray
    base_b: np.ndarray
    query: np.ndarray
    seconds: float


def _base_data(cfg: StatConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(derive_seed(seed, "target", "base data"))
    return rng.random((cfg.n, cfg.d)) * cfg.R, rng.uniform(-cfg.R_w, cfg.R_w, (cfg.n, cfg.d_v))


@dataclass(frozen=True)
class Component:
    """One released component of the reference's plan: the flat indices of its numbers, their
    common law TLap(sensitivity, eps, delta) and the l1 sensitivity of the component."""

    name: str
    indices: tuple[int, ...]
    sensitivity: float
    eps: float
    delta: float


def components(cfg: StatConfig, mechanism: str) -> list[Component]:
    """The components of the structure at ``cfg``, from the exact reference (its plan and its
    built release; nothing private is read: the laws are public constants).

    ``direct``: one component, S, TLap(Delta_S, eps, delta) on every entry. ``tree`` (one copy):
    per column k, c0 and c1 (sensitivities ``sensitivity.c0`` / ``c1`` at the column's weight
    bound, budgets ``share("c0")`` / ``share("c1")``) and, per (column, coordinate, moment,
    level), the nodes of that level of that DPTree (its sensitivity, ``share("tree_level")``);
    indices in the layout of :func:`dpxattn.verification.target.released_vector`.
    """
    from dpxattn.reference import sensitivity

    K = np.full((cfg.n, cfg.d), cfg.R / 2)
    V = np.zeros((cfg.n, cfg.d_v))
    count = ReferenceTarget.noise_count(n=cfg.n, d=cfg.d, d_v=cfg.d_v, degree=cfg.degree,
                                        mechanism=mechanism)
    att = ReferenceTarget.build(K, V, uniforms=np.full(count, 0.5), **cfg.kwargs(mechanism)).att
    rel = att.release
    if mechanism == "direct":
        return [Component("S", tuple(range(count)), float(rel.sensitivity), float(rel.eps),
                          float(rel.delta))]
    plan = att.privacy
    cols, r = cfg.d_v + 1, rel.r
    out = []
    for k in range(cols):
        bound = cfg.R_w if k < cfg.d_v else 1
        for which, (name, sens) in enumerate((
                ("c0", sensitivity.c0(bound)),
                ("c1", sensitivity.c1_column(cfg.d, cfg.degree, cfg.R, bound,
                                             denominator=k == cfg.d_v)))):
            e, dl = plan.share(name)
            out.append(Component(f"{name} column {k}", (2 * k + which,), float(sens), float(e),
                                 float(dl)))
    e, dl = plan.share("tree_level")
    sm = rel.softmax[0]
    nodes = len(sm[0].coordinates[0].trees[0].noisy)
    for k in range(cols):
        for t in range(r):
            for m, tree in enumerate(sm[k].coordinates[t].trees):
                for level in range(tree.levels):
                    idx = tuple(2 * cols + ((i * cols + k) * r + t) * 3 + m
                                for i in range(2**level - 1, min(2**(level + 1) - 1, nodes)))
                    out.append(Component(f"column {k} coordinate {t} moment {m} level {level}",
                                         idx, float(tree.sensitivity), float(e), float(dl)))
    return out


@dataclass
class _PairSearch:
    K: np.ndarray
    V: np.ndarray
    K2: np.ndarray
    V2: np.ndarray
    ratio: float  # max over pairs and components of l1 change / sensitivity
    worst_component: str
    pairs: int
    corners: int
    describe: str
    comps: list = field(default_factory=list)


def _pair_search(target: LoadedTarget, cfg: StatConfig, mechanism: str, seed: int) -> _PairSearch:
    """Every pair of corners for row 0 of the base data; per component, the l1 change of the
    target's noiseless release over its sensitivity. The audit's pair maximises the composed
    loss bound sum_c eps_c change_c / Delta_c (ties within 1e-12 relative broken by the number of
    entries that change, so that a pair moving every released number is preferred)."""
    import itertools

    comps = components(cfg, mechanism)
    K0, V0 = _base_data(cfg, seed)
    keys = [np.array(k, dtype=np.float64) * cfg.R for k in itertools.product((0, 1), repeat=cfg.d)]
    vals = [np.array(v, dtype=np.float64) * cfg.R_w for v in itertools.product((-1, 1), repeat=cfg.d_v)]
    corners = [(k, v) for k in keys for v in vals]
    count = int(target.obj.noise_count(n=cfg.n, d=cfg.d, d_v=cfg.d_v, degree=cfg.degree,
                                       mechanism=mechanism))
    half = np.full(count, 0.5)
    released = []
    for k, v in corners:
        K, V = K0.copy(), V0.copy()
        K[0], V[0] = k, v
        released.append((K, V, released_vector(build_target(target.obj, K, V, uniforms=half.copy(),
                                                            **cfg.kwargs(mechanism)))))
    best, key, worst, where, pairs = None, None, 0.0, "", 0
    for i, j in itertools.combinations(range(len(corners)), 2):
        diff = np.abs(released[i][2] - released[j][2])
        if diff.size != count:
            raise ValueError(f"released() has {diff.size} numbers, noise_count says {count}")
        pairs += 1
        loss = 0.0
        for c in comps:
            ratio = float(diff[list(c.indices)].sum()) / c.sensitivity
            loss += c.eps * ratio
            if ratio > worst:
                worst, where = ratio, c.name
        rank = (round(loss, 12 - int(math.floor(math.log10(loss)))) if loss > 0 else 0.0,
                int(np.count_nonzero(diff)))
        if key is None or rank > key:
            key, best = rank, (i, j)
    i, j = best
    (K, V, _), (K2, V2, _) = released[i], released[j]
    text = (f"row 0: key {corners[i][0].tolist()} value {corners[i][1].tolist()} vs key "
            f"{corners[j][0].tolist()} value {corners[j][1].tolist()}")
    return _PairSearch(K, V, K2, V2, worst, where, pairs, len(corners), text, comps)


def _draw(target: LoadedTarget, cfg: StatConfig, mechanism: str, pair: _PairSearch, builds: int,
          seed: int, ctx: CheckContext) -> _Draws:
    count = int(target.obj.noise_count(n=cfg.n, d=cfg.d, d_v=cfg.d_v, degree=cfg.degree,
                                       mechanism=mechanism))
    half = np.full(count, 0.5)
    q = np.full((1, cfg.d), cfg.R)
    kw = cfg.kwargs(mechanism)
    t0 = time.perf_counter()
    sides = []
    for side, (K, V) in enumerate(((pair.K, pair.V), (pair.K2, pair.V2))):
        rng = np.random.default_rng(derive_seed(seed, "target", "draws", side))
        base = released_vector(build_target(target.obj, K, V, uniforms=half.copy(), **kw))
        rel = np.empty((builds, base.size))
        ans = np.empty((builds, cfg.d_v))
        for i in range(builds):
            if i % 5000 == 0:
                ctx.note(f"draws: side {'ab'[side]} {i}/{builds}")
            b = build_target(target.obj, K, V, rng=rng, **kw)
            rel[i] = released_vector(b)
            ans[i] = np.asarray(b.query(q), dtype=np.float64).reshape(-1)
        sides.append((rel, ans, base))
    (a, ans_a, base_a), (b, ans_b, base_b) = sides
    return _Draws(a, b, ans_a, ans_b, base_a, base_b, q, time.perf_counter() - t0)


class _Shared:
    """The pair search and the draws, computed once per (target, mechanism, level, seed)."""

    def __init__(self) -> None:
        self.cache: dict = {}

    def get(self, target: LoadedTarget, mechanism: str, ctx: CheckContext, builds: int):
        key = (id(target.obj), mechanism, ctx.level, ctx.seed, builds)
        if key not in self.cache:
            cfg = stat_config(target.obj, mechanism)
            self.cache = {k: v for k, v in self.cache.items()  # drop other targets and seeds
                          if (k[0], k[2], k[3]) == (key[0], key[2], key[3])}
            ctx.note("sensitivity: corner pairs")
            pair = _pair_search(target, cfg, mechanism, ctx.seed)
            draws = _draw(target, cfg, mechanism, pair, builds, ctx.seed, ctx)
            self.cache[key] = (cfg, pair, draws)  # one per mechanism; run_target clears it
        return self.cache[key]


_SHARED = _Shared()


def _stat_mechanisms(target: LoadedTarget, name: str):
    """(mechanisms checks 3-5 run for, records of those they cannot run for: none today, as
    :data:`STAT_CONFIGS` covers every mechanism of :data:`MECHANISMS`)."""
    yes = [m for m in target.obj.mechanisms if m in STAT_CONFIGS]
    return yes, [_not_applicable(f"{name} [{m}]", f"no configuration for mechanism '{m}'")
                 for m in target.obj.mechanisms if m not in STAT_CONFIGS]


#: the tree's builds per side, as a fraction of the level's (a tree build reads ~7x more numbers)
TREE_BUILD_FRACTION = 0.5


def _builds(sz: TargetSizes, mechanism: str) -> int:
    """Builds per side of the audit for ``mechanism`` (the first ``noise`` feed check 3)."""
    return sz.audit if mechanism == "direct" else max(int(sz.audit * TREE_BUILD_FRACTION), 1)


def _sizes(ctx: CheckContext, sizes: TargetSizes | None) -> TargetSizes:
    return sizes if sizes is not None else sizes_for(ctx.level, ctx.scale)


# ---------------------------------------------------------------------------------------------
# check 3: the recovered noise law
# ---------------------------------------------------------------------------------------------

def _summary(x: np.ndarray):
    from dpxattn.verification.checks_noise import SampleSummary

    return SampleSummary(gof=np.sort(x), n_region=x.size, low_count=0, high_count=0,
                         max_abs=float(np.max(np.abs(x))))


def check_target_noise_law(target: LoadedTarget, ctx: CheckContext,
                           sizes: TargetSizes | None = None) -> list[CheckRecord]:
    """Check 3 (statistical, power, exact support): the recovered noise per entry and pooled
    against the exact TLap of the reference's parameters, one set of records per law (``direct``:
    one law, TLap(Delta_S, eps, delta); ``tree``: one per distinct (sensitivity, budget) of its
    components, :func:`components`)."""
    from dpxattn.verification.checks_noise import NoiseConfig

    sz = _sizes(ctx, sizes)
    mechs, out = _stat_mechanisms(target, "noise law")
    for mech in mechs:
        cfg, pair, draws = _SHARED.get(target, mech, ctx, _builds(sz, mech))
        Z_all = draws.a[: sz.noise] - draws.base_a[None, :]
        groups: dict = {}
        for c in pair.comps:
            groups.setdefault((c.sensitivity, c.eps, c.delta), []).extend(c.indices)
        for (sens, e, dl), idx in groups.items():
            ctx.note(f"noise law: exact law TLap({sens:.4g}, {e:.4g}, {dl:.3g})")
            out.extend(_noise_law_records(mech, cfg, Z_all[:, sorted(idx)], draws.base_a,
                                          NoiseConfig(sens, e, dl), len(groups)))
    return out


def _noise_law_records(mech: str, cfg: StatConfig, Z: np.ndarray, base: np.ndarray, config,
                       groups: int) -> list[CheckRecord]:
    """The records of check 3 for the entries of one law (``Z``: builds x entries)."""
    from dpxattn.verification.checks_noise import (chi_square_test, exact_law, ks_escape,
                                                   ks_test)
    from scipy import stats

    out: list[CheckRecord] = []
    law = exact_law(config, GRID_POINTS)
    n, entries = Z.shape
    label = (f"{mech} [{cfg.label}; TLap(Delta={config.sensitivity:.6g}, eps={config.eps:.6g}, "
             f"delta={config.delta:.6g}), {entries} of the entries]" if groups > 1 else
             f"{mech} [{cfg.label}; TLap(Delta_S={config.sensitivity:.6g}, eps={cfg.eps:g}, "
             f"delta={cfg.delta:g})]")
    pooled = Z.reshape(-1)
    ks = ks_test(_summary(pooled), law, ALPHA)
    chi = chi_square_test(_summary(pooled), law, CHI_BINS, ALPHA)
    for o in (ks, chi):
        out.append(CheckRecord(
            name=f"noise law: pooled {o.test}: {label}", kind="statistical",
            tests=f"recovered noise released(rng) - released(u=1/2), all {entries} entries of "
                  f"{n} builds pooled: {o.tests}", statistic=o.statistic, threshold=o.threshold,
            comparison="<=", passed=not o.rejected, alpha=ALPHA, sample_size=pooled.size,
            details=dict(o.details)))
    per_alpha = ALPHA / entries
    per = [ks_test(_summary(Z[:, j]), law, per_alpha) for j in range(entries)]
    worst = max(range(entries), key=lambda j: per[j].statistic - per[j].threshold)
    out.append(CheckRecord(
        name=f"noise law: per-entry KS: {label}", kind="statistical",
        tests=(f"each of the {entries} released entries' recovered noise ({n} draws each) has "
               f"KS distance to the exact law below the critical value at alpha/{entries} "
               "(Bonferroni: alpha for the record); statistic the worst entry's D_lo"),
        statistic=per[worst].statistic, threshold=per[worst].threshold, comparison="<=",
        passed=not any(o.rejected for o in per), alpha=ALPHA, sample_size=n,
        details={"worst_entry": int(worst), "rejected_entries": [j for j, o in enumerate(per) if o.rejected],
                 "D_lo_per_entry": [o.statistic for o in per]}))
    slack = 4.0 * 2.0**-52 * (float(np.max(np.abs(base))) + law.A_float)
    biggest = float(np.max(np.abs(pooled)))
    out.append(CheckRecord(
        name=f"noise law: support: {label}", kind="exact",
        tests="no recovered draw leaves [-A, A] (A the reference's support bound, plus 4 ulps "
              "of the released magnitude for the subtraction)",
        statistic=biggest, threshold=law.A_float + slack, comparison="<=",
        passed=biggest <= law.A_float + slack, sample_size=pooled.size,
        details={"A": law.A_float, "slack": slack}))
    crit = float(stats.kstwo.isf(ALPHA, pooled.size))
    for f in POWER_FACTORS:
        o = ks_test(_summary(pooled * f), law, ALPHA)
        beta, info = ks_escape(law, f, pooled.size, ALPHA)
        out.append(CheckRecord(
            name=f"noise law: power: recovered noise x{f:g}: {label}", kind="power",
            tests=(f"the pooled KS test at the same sample size rejects the target's own draws "
                   f"multiplied by {f:g} (a wrong noise scale); beta from the mutant's exact "
                   "law (DKW at its sup-distance to the claimed law)"),
            statistic=o.statistic, threshold=crit, comparison=">=", passed=bool(o.rejected),
            beta=max(beta, 1e-300), sample_size=pooled.size, details={**info}))
    return out


# ---------------------------------------------------------------------------------------------
# check 4: sensitivity
# ---------------------------------------------------------------------------------------------

#: relative float allowance on the noiseless release's l1 change
SENSITIVITY_SLACK = 1e-12


def check_target_sensitivity(target: LoadedTarget, ctx: CheckContext,
                             sizes: TargetSizes | None = None) -> list[CheckRecord]:
    """Check 4 (search): over corner pairs, the l1 change of each component of the noiseless
    release never exceeds the reference's sensitivity of that component (:func:`components`)."""
    sz = _sizes(ctx, sizes)
    mechs, out = _stat_mechanisms(target, "sensitivity")
    for mech in mechs:
        cfg, pair, _ = _SHARED.get(target, mech, ctx, _builds(sz, mech))
        out.append(CheckRecord(
            name=f"sensitivity: corner pairs: {mech} [{cfg.label}]", kind="search",
            tests=(f"over the {pair.pairs} neighbouring pairs replacing row 0 by two of the "
                   f"{pair.corners} corners (keys in {{0, R}}^d, values in {{-R_w, R_w}}^d_v), "
                   f"the l1 change of each of the {len(pair.comps)} components of the target's "
                   "noiseless release (uniforms 1/2) is at most the reference's sensitivity of "
                   "that component; statistic the largest change / sensitivity"),
            statistic=pair.ratio, threshold=1.0 + SENSITIVITY_SLACK, comparison="<=",
            passed=pair.ratio <= 1.0 + SENSITIVITY_SLACK, sample_size=pair.pairs,
            details={"worst_component": pair.worst_component, "audit_pair": pair.describe,
                     "components": len(pair.comps)}))
    return out


# ---------------------------------------------------------------------------------------------
# check 5: audit
# ---------------------------------------------------------------------------------------------

def check_target_audit(target: LoadedTarget, ctx: CheckContext,
                       sizes: TargetSizes | None = None) -> list[CheckRecord]:
    """Check 5 (audit): eps lower bounds of the released numbers and of the answers on the worst
    corner pair stay <= the claimed eps; the halved noise as an info figure."""
    from dpxattn.verification.audit import audit

    sz = _sizes(ctx, sizes)
    mechs, out = _stat_mechanisms(target, "audit")
    for mech in mechs:
        cfg, pair, dr = _SHARED.get(target, mech, ctx, _builds(sz, mech))
        rng = np.random.default_rng(derive_seed(ctx.seed, "target", "audit"))
        halved = (dr.base_a + 0.5 * (dr.a - dr.base_a), dr.base_b + 0.5 * (dr.b - dr.base_b))
        for what, sa, sb, kind in (("released numbers", dr.a, dr.b, "audit"),
                                   ("answers", dr.ans_a, dr.ans_b, "audit"),
                                   ("released numbers, noise x0.5", *halved, "info")):
            ctx.note(f"audit: {what}")
            res = audit(sa, sb, delta=cfg.delta, confidence=1.0 - AUDIT_ALPHA, rng=rng)
            lb = float(res.eps_lower_bound)
            passed = lb <= cfg.eps if kind == "audit" else True
            out.append(CheckRecord(
                name=f"audit: {what}: {mech} [{cfg.label}]", kind=kind,
                tests=(f"empirical eps lower bound (Clopper-Pearson, confidence 1 - {AUDIT_ALPHA:g}) "
                       f"of the target's {what} on the worst corner pair "
                       + ("is at most the claimed eps" if kind == "audit" else
                          "with the target's own draws halved (an under-noised variant): shown, "
                          "no verdict")),
                statistic=lb, threshold=cfg.eps, comparison="<=" if kind == "audit" else "==",
                passed=passed, alpha=AUDIT_ALPHA if kind == "audit" else None,
                confidence=1.0 - AUDIT_ALPHA, sample_size=int(sa.shape[0]),
                details={**res.to_dict(), "pair": pair.describe, "query": dr.query.tolist(),
                         "draw_seconds": dr.seconds}))
            if kind == "info":  # an info record passes and compares nothing
                out[-1].threshold, out[-1].statistic = lb, lb
    return out


# ---------------------------------------------------------------------------------------------
# check 6: adaptive queries against the target's own error_bound
# ---------------------------------------------------------------------------------------------

def check_target_adaptive(target: LoadedTarget, ctx: CheckContext,
                          sizes: TargetSizes | None = None) -> list[CheckRecord]:
    """Check 6 (search): |query - Taylor attention| <= error_bound over random and grid queries,
    on rng builds and on builds from extreme uniforms."""
    from dpxattn.verification.target import FastTarget

    sz = _sizes(ctx, sizes)
    out = []
    for mech in target.obj.mechanisms:
        cfg = (stat_config(target.obj, mech) if mech in STAT_CONFIGS
               else StatConfig(n=5, d=1, d_v=1, degree=1))
        K, V = _base_data(cfg, ctx.seed)
        kw = cfg.kwargs(mech)
        count = int(target.obj.noise_count(n=cfg.n, d=cfg.d, d_v=cfg.d_v, degree=cfg.degree,
                                           mechanism=mech))
        probe = build_target(target.obj, K, V, uniforms=np.full(count, 0.5), **kw)
        if not callable(getattr(probe, "error_bound", None)):
            out.append(_not_applicable(f"adaptive queries [{mech}]",
                                       "the built target has no error_bound (optional in the protocol)"))
            continue
        rng = np.random.default_rng(derive_seed(ctx.seed, "target", "adaptive", mech))
        side = max(2, int(round((sz.queries / 2) ** (1.0 / cfg.d))))
        grid = np.stack(np.meshgrid(*[np.linspace(0, cfg.R, side)] * cfg.d), -1).reshape(-1, cfg.d)
        Q = np.vstack([rng.random((sz.queries - min(grid.shape[0], sz.queries // 2), cfg.d)) * cfg.R,
                       grid[: sz.queries // 2]])
        # Taylor attention: the noiseless answers of dpxattn's fast path (float64) - within
        # TAYLOR_RTOL of the exact ones (the conformance table's tolerance)
        taylor = FastTarget.build(K, V, uniforms=np.full(FastTarget.noise_count(
            n=cfg.n, d=cfg.d, d_v=cfg.d_v, degree=cfg.degree, mechanism=mech), 0.5), **kw).query(Q)
        worst, where, structures = 0.0, "", 0
        builds = [("rng", {"rng": rng}), ("uniforms 1 - 2^-53", {"uniforms": np.full(count, 1 - 2.0**-53)}),
                  ("uniforms 2^-53", {"uniforms": np.full(count, 2.0**-53)})]
        V_neg = np.full_like(V, -cfg.R_w)
        for label, src in builds + [("rng, V = -R_w", {"rng": rng})]:
            Vb = V_neg if "V = -R_w" in label else V
            tb = taylor if Vb is V else FastTarget.build(K, Vb, uniforms=np.full(FastTarget.noise_count(
                n=cfg.n, d=cfg.d, d_v=cfg.d_v, degree=cfg.degree, mechanism=mech), 0.5), **kw).query(Q)
            for rep in range(2 if label.startswith("rng") else 1):
                ctx.note(f"adaptive queries: {label}")
                b = build_target(target.obj, K, Vb, **src, **kw)
                err = np.abs(np.asarray(b.query(Q), dtype=np.float64) - tb)
                bound = np.asarray(b.error_bound(Q), dtype=np.float64) * (1 + TAYLOR_RTOL) + \
                    TAYLOR_RTOL * np.abs(tb)
                r = float(np.max(err / np.maximum(bound, np.finfo(np.float64).tiny)))
                structures += 1
                if r > worst:
                    worst, where = r, f"{label} #{rep}"
        out.append(CheckRecord(
            name=f"adaptive queries: {mech} [{cfg.label}]", kind="search",
            tests=(f"{Q.shape[0]} queries (random and a {side}^{cfg.d} grid incl. the corners) on "
                   f"{structures} structures (rng builds, extreme uniforms, V = -R_w): "
                   "|query - Taylor attention| never exceeds the target's error_bound; statistic "
                   "the largest ratio"),
            statistic=worst, threshold=1.0, comparison="<=", passed=worst <= 1.0,
            sample_size=int(Q.shape[0] * structures), details={"worst_at": where}))
    return out


#: relative allowance for the float64 Taylor attention used as truth in check 6
TAYLOR_RTOL = 1e-10

def _sizes_override(ctx: CheckContext) -> TargetSizes | None:
    return ctx.overrides.get("target_sizes")


def target_conformance(ctx: CheckContext) -> list[CheckRecord]:
    """Registry entry ``target-conformance``: check 1 against ``ctx``'s target."""
    return check_target_conformance(context_target(ctx), ctx)


def target_noiseless(ctx: CheckContext) -> list[CheckRecord]:
    """Registry entry ``target-noiseless``: check 2 against ``ctx``'s target."""
    return check_target_noiseless(context_target(ctx), ctx)


def target_noise_law(ctx: CheckContext) -> list[CheckRecord]:
    """Registry entry ``target-noise-law``: check 3 against ``ctx``'s target."""
    return check_target_noise_law(context_target(ctx), ctx, _sizes_override(ctx))


def target_sensitivity(ctx: CheckContext) -> list[CheckRecord]:
    """Registry entry ``target-sensitivity``: check 4 against ``ctx``'s target."""
    return check_target_sensitivity(context_target(ctx), ctx, _sizes_override(ctx))


def target_audit(ctx: CheckContext) -> list[CheckRecord]:
    """Registry entry ``target-audit``: check 5 against ``ctx``'s target."""
    return check_target_audit(context_target(ctx), ctx, _sizes_override(ctx))


def target_adaptive(ctx: CheckContext) -> list[CheckRecord]:
    """Registry entry ``target-adaptive``: check 6 against ``ctx``'s target."""
    return check_target_adaptive(context_target(ctx), ctx, _sizes_override(ctx))


def clear_shared() -> None:
    """Forget the pair searches and draws shared by checks 3-5 (the harness calls it per run)."""
    _SHARED.cache.clear()


def target_specs() -> list[CheckSpec]:
    """The registry's entries of checks 1-6 (``target-*``), in report order."""
    from dpxattn.verification.registry import CHECKS

    return [spec for spec in CHECKS if spec.module == __name__]


#: (check name, registry function, summary) of checks 1-6, in report order
TARGET_CHECKS: list[tuple[str, Callable, str]] = [
    (spec.name, globals()[spec.function], spec.summary) for spec in target_specs()]

def run_target(target: LoadedTarget, level: str = "quick", *, root_seed: int | None = None,
               fresh_entropy: bool = False, scale: float = 1.0, out_dir=None,
               progress: bool = True, sizes: TargetSizes | None = None,
               only=()) -> HarnessRun:
    """Checks 1-6 alone against ``target`` (all, or those named in ``only``): the harness
    (:func:`dpxattn.verification.harness.run_harness`) restricted to :func:`target_specs`.
    ``sizes`` overrides the level's sample sizes (tests). Seeds as in the registry: check c
    draws from ``derive_seed(root, "target", c)``; checks 3-5 share ``derive_seed(root,
    "target", "statistical")`` and so one pair search and one set of draws."""
    from dpxattn.verification.harness import run_harness

    specs = target_specs()
    names = [spec.name for spec in specs]
    unknown = [o for o in only if o not in names]
    if unknown:
        raise ValueError(f"unknown target check(s) {unknown}; choose from {names}")
    return run_harness(level, out_dir=out_dir, root_seed=root_seed, fresh_entropy=fresh_entropy,
                       only=tuple(only), scale=scale, checks=specs, progress=progress,
                       target=target, overrides={} if sizes is None else {"target_sizes": sizes})
