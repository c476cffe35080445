"""Check 4 of the harness: the empirical privacy audit of the real mechanisms and of planted mutants.

The auditor (:func:`dpxattn.verification.audit.audit`: events chosen on one split, one-sided
Clopper-Pearson bounds on a fresh split, union bound; DESIGN §6) is applied to

* the real ``direct`` and ``tree`` structures, on their released numbers and on their query
  answers, on the worst-case neighbouring (K, V) pairs found by check 3
  (:func:`dpxattn.verification.checks_sensitivity.search_sensitivity`): the lower bound must stay
  <= the eps the audited numbers claim;
* every planted mutant of :mod:`dpxattn.verification.mutants` (noise x0.5, the denominator
  released without noise, c0/c1 exact, the literal DPTreeDistance over sorted keys): the lower
  bound must EXCEED the claimed eps, which is the statistical proof of the literal paper's leaks
  (PAPER §5 items 5-7) and the power of the privacy test (DESIGN §6). These are ``power``
  records: beside the audit, a FIXED event chosen from the mutant's exact law (before the
  draws; :func:`oracle_test`) is bounded on the same draws with Clopper-Pearson at confidence
  1 - 1e-6, and the record passes when either bound exceeds the claim. Its ``beta`` is the exact
  chance, from that law, that the fixed event's bound does not
  (:func:`dpxattn.verification.power_bounds.clopper_pearson_escape`): 0 for the exact leaks (a
  coordinate released without noise is a point mass that differs on the pair), a binomial tail
  for the half-noise mutants (event probabilities from the exact TLap CDF, the sampler's
  rounding allowed for; on answers, rigorous numerical bounds on the ratio's law). The pair
  is the one check 3's search returns, fixed before the draws: beta holds given that pair.

What is claimed for a set of released numbers is the sum of the plan's shares of the components
they belong to (basic composition; ``dpxattn.accounting``): e.g. c0 of one value column is one
component with share (eps/J, delta/J); an answer is post-processing of the whole structure, so
it claims the structure's total (eps, delta). The audit's delta is the claimed delta.

Every audit runs at confidence 1 - :data:`AUDIT_ALPHA`: a correct mechanism is flagged with
probability <= 1e-6 per audit (5 audit records: 5e-6 for the check, plus the mutants' betas). Sample sizes: :data:`SAMPLES` (>= 1e6 per side at ``standard``
for every audit of noisy numbers, DESIGN §6; 2e5 for the point-mass leaks; at ``quick``
smaller, on configurations chosen so the mutants are still caught: tiny n, a single released
number or a few). Batches of releases come from the real release code
(:func:`dpxattn.verification.mutants.verify_batches_match_builds` checks them bit for bit
against ``DPCrossAttention.build``).

Paper: the privacy claims of DPTree, DPTreeDistance, DPTreeSoftmax and the cross-attention
structure (v2 §2-4, App. D-I; ICLR Thm 1.2, Algorithm 3 and line 269); spec
PAPER.md §2.1, §3.1-3.7, §5 items 5-7. Notes: ``proofs_notes/21-empirical-audit.md``.
Shapes: each audit feeds the auditor (N, k) arrays of released numbers or answers per side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from dpxattn.errors import ParameterError
from dpxattn.verification.audit import AuditResult, audit
from dpxattn.verification.checks_sensitivity import SearchBudget, search_sensitivity
from dpxattn.verification.mutants import (SortedTreeConfig, StructureConfig, get_variant,
                                          noiseless_release, sample_answers, sample_released,
                                          sample_sorted_tree, verify_batches_match_builds)
from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "AUDIT_ALPHA",
    "SAMPLES",
    "AuditCase",
    "CaseResult",
    "DIRECT_CONFIG",
    "TREE_CONFIG",
    "TREE_LEAK_CONFIG",
    "SORTED_CONFIG",
    "audit_cases",
    "default_case",
    "run_case",
    "check_privacy",
]

#: false-alarm rate of each audit assertion (confidence 1 - alpha)
AUDIT_ALPHA = 1e-6

#: draws per side: (audits of noisy numbers and answers, audits of exact leaks). An exact leak
#: is a point mass on each side: its bound ln((p_lo - delta)/q_hi) grows like ln N whatever N,
#: so 2e5 suffice at standard (the sorted-keys listing is the slowest to sample)
SAMPLES = {"quick": (50_000, 5_000), "standard": (1_000_000, 200_000), "full": (2_000_000, 400_000)}

#: direct: R_w = 10 puts 20/21 of the l1 sensitivity into the value column, so the change of the
#: worst pair is nearly the whole Delta_S and the x0.5 mutant is visible with few samples
DIRECT_CONFIG = StructureConfig("direct", n=2, d=1, d_v=1, degree=1, R=1.0, R_w=10.0, eps=1.0,
                                delta=1e-6)
#: tree: J = 16 components, so eps = 16 gives c0, c1 and each tree level (L = 1 for n = 1) a
#: share of exactly 1; n = 1 keeps a release at 16 numbers (the audit samples millions of them)
TREE_CONFIG = StructureConfig("tree", n=1, d=1, d_v=1, degree=1, R=1.0, R_w=1.0, eps=16.0,
                              delta=1e-6)
#: tree with the usual eps = 1 (answers; the exact-sum mutants must leak more than the WHOLE
#: structure's eps)
TREE_LEAK_CONFIG = replace(TREE_CONFIG, eps=1.0)
#: the literal DPTreeDistance over sorted keys
SORTED_CONFIG = SortedTreeConfig(n=4, R_x=1.0, R_w=1.0, eps=1.0, delta=1e-6)

#: the pair search used to pick the worst-case neighbours (corners + a few random; cheap)
PAIR_SEARCH = SearchBudget(random_pairs=10, optimiser_starts=0, optimiser_evals=0, per_family=False)


@dataclass(frozen=True)
class AuditCase:
    """One audit: a variant, what is audited, on which structure, and what it claims.

    ``selection``: which released numbers (``"S"``, ``"S ones column"``, ``"c0 column 0"``,
    ``"c0 c1 column 0"``, ``"root column 0"``, ``"denominator"``, ``"keys and nodes"``) or
    ``"answers"``; ``claim``: the plan components (key -> count) the audited numbers belong to,
    or ``None`` for the structure's total; ``pair_family``: the check-3 family whose worst pair
    is used.
    """

    name: str
    variant: str
    selection: str
    config: object
    claim: tuple | None
    pair_family: str
    exact_leak: bool = False

    @property
    def mutant(self) -> bool:
        return get_variant(self.variant).mutant


@dataclass
class OracleTest:
    """A mutant's fixed-event test: one event chosen from the mutant's EXACT law before the
    draws, its Clopper-Pearson eps lower bound on all the draws, and beta, the exact chance
    (from the law) that this bound does not exceed the claim.

    ``p_law`` <= P_D(event) and ``q_law`` >= P_D'(event) are rigorous bounds from the law (float
    rounding of the sampler included); ``x``, ``y`` the counts among the ``n`` draws per side.
    """

    event: str
    p_law: float
    q_law: float
    x: int
    y: int
    n: int
    eps_lower_bound: float
    beta: float
    beta_terms: dict

    def exposed(self, claim: float) -> bool:
        return self.eps_lower_bound > claim

    def to_dict(self) -> dict:
        return {"event": self.event, "p_law_lower": self.p_law, "q_law_upper": self.q_law,
                "count_D": self.x, "count_D_prime": self.y, "draws_per_side": self.n,
                "eps_lower_bound": self.eps_lower_bound, "beta": self.beta}


@dataclass
class CaseResult:
    case: AuditCase
    result: AuditResult
    claimed_eps: float
    claimed_delta: float
    pair: str
    samples: int
    oracle: OracleTest | None = None

    @property
    def exposed(self) -> bool:
        """The audit's eps lower bound exceeds the claim (what ``dpxattn audit`` reports)."""
        return self.result.eps_lower_bound > self.claimed_eps

    audit_exposed = exposed

    @property
    def passed(self) -> bool:
        """Real mechanisms: not exposed. Mutants (power): exposed by the audit or by the fixed
        event of the mutant's exact law."""
        if not self.case.mutant:
            return not self.exposed
        return self.exposed or (self.oracle is not None and self.oracle.exposed(self.claimed_eps))


def audit_cases() -> list[AuditCase]:
    """The cases of check 4, in report order: the real mechanisms first, then the mutants."""
    D, T, TL, S = DIRECT_CONFIG, TREE_CONFIG, TREE_LEAK_CONFIG, SORTED_CONFIG
    return [
        AuditCase("direct: released S", "direct", "S", D, (("S", 1),), "S"),
        AuditCase("direct: answers at q = R and q = 0", "direct", "answers", D, None, "S"),
        AuditCase("tree: released c0 of value column 0", "tree", "c0 column 0", T, (("c0", 1),),
                  "c0 (value columns)"),
        AuditCase("tree: released root node (value column 0)", "tree", "root column 0", T,
                  (("tree_level", 1),), "tree levels (value columns)"),
        AuditCase("tree: answers at q = R and q = 0", "tree", "answers", TL, None, "c1 (value columns)"),
        AuditCase("mutant direct-half-noise: released S", "direct-half-noise", "S", D, (("S", 1),), "S"),
        AuditCase("mutant direct-half-noise: answers", "direct-half-noise", "answers", D, None, "S"),
        AuditCase("mutant direct-exact-denominator: released ones column", "direct-exact-denominator",
                  "S ones column", D, (("S", 1),), "S ones column (denominator)", exact_leak=True),
        AuditCase("mutant tree-half-noise: released c0 of value column 0", "tree-half-noise",
                  "c0 column 0", T, (("c0", 1),), "c0 (value columns)"),
        AuditCase("mutant tree-exact-c0-c1: released c0, c1 of value column 0", "tree-exact-c0-c1",
                  "c0 c1 column 0", TL, None, "c1 (value columns)", exact_leak=True),
        AuditCase("mutant tree-exact-denominator: released denominator c1 and roots",
                  "tree-exact-denominator", "denominator", TL, None, "c1 (denominator)",
                  exact_leak=True),
        AuditCase("mutant sorted-keys-tree: released keys and nodes", "sorted-keys-tree",
                  "keys and nodes", S, None, "sorted", exact_leak=True),
    ]


def default_case(variant: str, *, eps=None, delta=None, answers: bool = False) -> AuditCase:
    """The case of check 4 for ``variant`` (its released numbers, or its answers when
    ``answers`` and the variant has an answers case), with eps/delta replaced when given."""
    get_variant(variant)
    cases = [c for c in audit_cases() if c.variant == variant]
    if not cases:
        raise ParameterError("mechanism", "must have an audit case in check 4 (sorted-positions-tree "
                             "is exposed by the sensitivity search of check 3)", variant)
    pick = [c for c in cases if (c.selection == "answers") == answers] or cases
    case = pick[0]
    cfg = case.config
    if eps is not None:
        cfg = replace(cfg, eps=float(eps))
    if delta is not None:
        cfg = replace(cfg, delta=float(delta))
    return replace(case, config=cfg)


# ---------------------------------------------------------------------------------------------
# claims, pairs, selections
# ---------------------------------------------------------------------------------------------

def claimed_budget(case: AuditCase) -> tuple[float, float]:
    """(eps, delta) the audited numbers claim: the sum of their components' plan shares, or
    the structure's total (answers; mutants with exact sums; the sorted-keys listing)."""
    cfg = case.config
    if case.claim is None or isinstance(cfg, SortedTreeConfig):
        return float(cfg.eps), float(cfg.delta)
    plan = cfg.plan()
    eps, delta = Fraction(0), Fraction(0)
    for key, count in case.claim:
        e, d = plan.share(key)
        eps += count * e
        delta += count * d
    return float(eps), float(delta)


def _sorted_pair(cfg: SortedTreeConfig):
    """Points spread over (0, R_x), alternating weights; the neighbour moves the first key to R_x."""
    x = np.linspace(0.0, cfg.R_x, cfg.n + 2)[1:-1]
    w = np.where(np.arange(cfg.n) % 2 == 0, cfg.R_w, -cfg.R_w).astype(np.float64)
    x2 = x.copy()
    x2[0] = cfg.R_x
    return (x, w), (x2, w.copy()), "key of point 0 moved from the smallest to R_x (rank shift)"


def _select(case: AuditCase, batch, where: dict) -> np.ndarray:
    """(N, k) float64 array of the audited numbers of a batch."""
    cfg = case.config
    sel = case.selection
    if sel == "answers":
        return batch.reshape(batch.shape[0], -1).numpy()
    if sel == "S":
        return batch["S"].reshape(batch["S"].shape[0], -1).numpy()
    if sel == "S ones column":
        return batch["S"][:, :, cfg.d_v].numpy()
    if sel == "c0 column 0":
        return batch["scalars"][:, 0, 0:1].numpy()
    if sel == "c0 c1 column 0":
        return batch["scalars"][:, 0, :].numpy()
    if sel == "root column 0":
        return batch["payload"][:, 0, where["coordinate"], 0, where["moment"]].reshape(-1, 1).numpy()
    if sel == "denominator":
        sc = batch["scalars"][:, cfg.d_v, 1:2]
        roots = batch["payload"][:, 0, :, cfg.d_v, :].reshape(sc.shape[0], -1)
        return np.concatenate([sc.numpy(), roots.numpy()], axis=1)
    if sel == "keys and nodes":
        parts = [batch[k].reshape(batch[k].shape[0], -1).numpy() for k in ("keys", "nodes") if k in batch]
        return np.concatenate(parts, axis=1)
    raise ValueError(f"unknown selection {sel!r}")


def _queries(cfg: StructureConfig) -> np.ndarray:
    return np.array([[cfg.R] * cfg.d, [0.0] * cfg.d])


def run_case(case: AuditCase, samples: int, rng: np.random.Generator) -> CaseResult:
    """Find the worst pair (check 3), sample both sides through the real code, audit."""
    cfg = case.config
    where: dict = {}
    if isinstance(cfg, SortedTreeConfig):
        (x, w), (x2, w2), text = _sorted_pair(cfg)
        a = sample_sorted_tree(case.variant, cfg, x, w, samples, rng)
        b = sample_sorted_tree(case.variant, cfg, x2, w2, samples, rng)
    else:
        search = search_sensitivity(cfg, rng, PAIR_SEARCH)
        if case.selection == "root column 0":
            roots = [i for i, q in enumerate(search.quantities)
                     if dict(q.where).get("level") == 0 and dict(q.where).get("column") == 0]
            i = max(roots, key=lambda j: float(search.exact_change[j] / search.quantities[j].analytic))
            pair, where = search.best_pair[i], dict(search.quantities[i].where)
        else:
            _, pair = search.family_best(case.pair_family)
        text = pair.describe()
        if case.selection == "answers":
            Q = _queries(cfg)
            a = sample_answers(case.variant, cfg, pair.K, pair.V, Q, samples, rng)
            b = sample_answers(case.variant, cfg, pair.K2, pair.V2, Q, samples, rng)
        else:
            a = sample_released(case.variant, cfg, pair.K, pair.V, samples, rng)
            b = sample_released(case.variant, cfg, pair.K2, pair.V2, samples, rng)
    eps_c, delta_c = claimed_budget(case)
    sa, sb = _select(case, a, where), _select(case, b, where)
    res = audit(sa, sb, delta=delta_c, confidence=1.0 - AUDIT_ALPHA, rng=rng)
    oracle = None
    if case.mutant:
        sides = (((x, w), (x2, w2)) if isinstance(cfg, SortedTreeConfig)
                 else ((pair.K, pair.V), (pair.K2, pair.V2)))
        oracle = oracle_test(case, sides, where, sa, sb, eps_c, delta_c)
    return CaseResult(case, res, eps_c, delta_c, text, samples, oracle)


# ---------------------------------------------------------------------------------------------
# the mutants' fixed-event tests (power with a derived beta)
# ---------------------------------------------------------------------------------------------

#: the fast inverse CDF's error allowed for (absolute, times the support bound A): far above
#: the few ulps tests/test_fast_noise.py verifies
PPF_ERROR = 1e-10
#: absolute slack on every float64 evaluation of a CDF or of a sum of bin probabilities
CDF_SLACK = 1e-12
#: bins of the numerical bounds on the law of a sum of draws and of a ratio (answers): coarse
#: to rank the candidate events, fine for the few whose beta is computed
BINS, FINE_BINS = 100, 1500
#: noiseless coordinates of each exact-leak selection: a slice of the selected columns
NOISELESS_COLUMNS = {"S ones column": slice(None), "c0 c1 column 0": slice(None),
                     "denominator": slice(None), "keys and nodes": "keys"}


def _cdf(k, x) -> np.ndarray:
    """The CDF of TLap with the sampler's float64 constants ``k`` (vectorised, float64: a few
    ulps; callers add :data:`CDF_SLACK`). F(x) = 1/2 + sign(x) (1 - e^{-|x|/b}) / (2 (1 - e^{-a}))
    on [-A, A], 0 below and 1 above."""
    x = np.asarray(x, dtype=np.float64)
    mag = -np.expm1(-np.abs(x) / k.b) / (2.0 * k.one_minus_e_minus_a)
    out = np.where(x < 0, 0.5 - mag, 0.5 + mag)
    return np.clip(np.where(x >= k.support_up, 1.0, np.where(x <= -k.support_up, 0.0, out)), 0.0, 1.0)


def _perturbation(k, exact: float) -> float:
    """Bound on |released - (exact + Z)| for a coupling with Z ~ TLap(k) exactly continuous.

    The seeded uniform U = (j + 1/2) 2^-52 is V + (W - 1/2) 2^-52 with V uniform on (0, 1)
    exactly and |U - V| <= 2^-53; the inverse CDF is Lipschitz with constant 1/f(A) =
    2 b (e^a - 1) = 2 b (1 - e^-a) / e^-a; the fast inverse CDF is within PPF_ERROR A of the
    exact one; the release's sum rounds by <= 2^-53 (|exact| + A). So released = exact + Z + xi
    with Z = F^-1(V) and |xi| <= the sum of the three.
    """
    A = float(k.support_up)
    slope = 2.0 * k.b * k.one_minus_e_minus_a / k.e_minus_a
    return (PPF_ERROR * A + 2.0**-53 * slope + 2.0**-52 * (abs(exact) + A)) * (1.0 + 1e-9)


def _above_bounds(k, exact: float, t: float) -> tuple[float, float]:
    """(lower, upper) bounds on P(released > t), released = fl(exact + z), z of law k."""
    eta = _perturbation(k, exact)
    lo = 1.0 - float(_cdf(k, t - exact + eta)) - CDF_SLACK
    hi = 1.0 - float(_cdf(k, t - exact - eta)) + CDF_SLACK
    return max(lo, 0.0), min(hi, 1.0)


def _below_bounds(k, exact: float, t: float) -> tuple[float, float]:
    """(lower, upper) bounds on P(released < t) (mirror of :func:`_above_bounds`)."""
    eta = _perturbation(k, exact)
    lo = float(_cdf(k, t - exact - eta)) - CDF_SLACK
    hi = float(_cdf(k, t - exact + eta)) + CDF_SLACK
    return max(lo, 0.0), min(hi, 1.0)


def _plug_in(p: float, q: float, n: int, delta: float) -> float:
    """A cheap stand-in for the expected eps bound of an event (used only to rank events)."""
    lo = p - delta - 4.0 * math.sqrt(max(p, 1e-300) / n)
    hi = q + 17.0 / n + 4.0 * math.sqrt(q / n)
    return math.log(lo / hi) if lo > 0 else -math.inf


def _exact_selection(case: AuditCase, data, where: dict) -> np.ndarray:
    """The audited numbers without noise (1-D): the real build fed the median uniform."""
    cfg = case.config
    if isinstance(cfg, SortedTreeConfig):
        return np.sort(np.asarray(data[0], dtype=np.float64))  # the stored keys
    t = noiseless_release(cfg, *data)
    batch = ({"S": t["S"].unsqueeze(0)} if cfg.mechanism == "direct" else
             {"scalars": t["scalars"], "payload": t["payload"].permute(2, 0, 1, 3, 4)})
    return _select(case, batch, where)[0]


def _mutant_law(case: AuditCase, data):
    """The TLapConstants of the audited noisy numbers of a half-noise mutant (one law)."""
    cfg = case.config
    variant = get_variant(case.variant)
    if cfg.mechanism == "direct":
        from dpxattn.verification.mutants import _direct_parts

        _, law = _direct_parts(cfg, *data, variant.noise_factor)
        (k,) = law.constants
        return k
    from dpxattn.verification.mutants import _tree_count, _tree_release

    count = _tree_count(cfg, 1)
    rel = _tree_release(cfg, *data, copies=1, factor=variant.noise_factor,
                        uniforms=np.full(count, 0.5))
    if case.selection != "c0 column 0":
        raise ValueError(f"no exact law for the tree selection {case.selection!r}")
    b = float(rel.scalar_law.b[0, 0])
    (k,) = [c for c in rel.scalar_law.constants if c.b == b
            and c.support_down == float(rel.scalar_law.support_down[0, 0])]
    return k


def _best_event(candidates, n: int, claim: float, delta: float, alpha: float):
    """The candidate (description, p_law, q_law, indicators) with the smallest exact beta among
    the few best by plug-in value. Candidates are functions of the law only (no draws);
    ``indicators()`` evaluates the event on the draws."""
    from dpxattn.verification.power_bounds import clopper_pearson_escape

    ranked = sorted(candidates, key=lambda c: _plug_in(c[1], c[2], n, delta), reverse=True)[:3]
    best = None
    for cand in ranked:
        if len(cand) > 4:  # a finer (still rigorous) evaluation of the law's bounds
            p, q = cand[4]()
            cand = (cand[0], p, q, cand[3])
        beta, terms = clopper_pearson_escape(n, cand[1], n, cand[2], claim, delta, alpha)
        if best is None or beta < best[0]:
            best = (beta, terms, cand)
    return best


def _noisy_candidates(k, ea: np.ndarray, eb: np.ndarray, sa: np.ndarray, sb: np.ndarray):
    """Box events on the coordinates whose exact values differ (both directions): every
    coordinate j beyond its threshold on the side of its shift. The laws are exact + i.i.d.
    TLap of law k, independent across coordinates, so a box's probability is the product of
    the coordinates' probabilities (each bounded by :func:`_above_bounds` /
    :func:`_below_bounds`). Thresholds: D''s exact value + f A for a common f, on the 1, 2, ...
    coordinates of largest shift."""
    A = float(k.support_up)
    order = [int(j) for j in np.argsort(-np.abs(ea - eb)) if ea[j] != eb[j]]
    out = []
    for (xa, xb, ya, yb, tag) in ((ea, eb, sa, sb, "D over D'"), (eb, ea, sb, sa, "D' over D")):
        for m in range(1, len(order) + 1):
            cols = order[:m]
            for f in np.linspace(-1.0, 1.02, 52):
                p = q = 1.0
                rule = []
                for j in cols:
                    up = bool(xa[j] > xb[j])
                    t = float(xb[j] + f * A) if up else float(xb[j] - f * A)
                    bounds = _above_bounds if up else _below_bounds
                    p *= bounds(k, float(xa[j]), t)[0]
                    q *= bounds(k, float(xb[j]), t)[1]
                    rule.append((j, up, t))

                def indicators(ya=ya, yb=yb, rule=tuple(rule)):
                    ia = np.ones(len(ya), dtype=bool)
                    ib = np.ones(len(yb), dtype=bool)
                    for j, up, t in rule:
                        ia &= (ya[:, j] > t) if up else (ya[:, j] < t)
                        ib &= (yb[:, j] > t) if up else (yb[:, j] < t)
                    return ia, ib

                text = " and ".join(f"y{j} {'>' if up else '<'} {t:.6g}" for j, up, t in rule)
                out.append((f"{text} ({tag})", p, min(q, 1.0), indicators))
    return out


def _sum_cdf_bounds(k, weights: np.ndarray, x: np.ndarray,
                    bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) bounds on P(sum_t w_t Z_t <= x), Z_t i.i.d. TLap(k), at the points x.

    One nonzero weight: F(x / |w|) (Z is symmetric). Two: the first variable binned into
    ``bins`` bins [v_i, v_(i+1)] of its support, P(bin) F((x - |w_0| v_(i+1)) / |w_1|) summed from below,
    with v_i in place of v_(i+1) from above.
    """
    w = np.abs(weights[weights != 0])
    x = np.asarray(x, dtype=np.float64)
    if len(w) == 1:
        v = _cdf(k, x / w[0])
        return np.clip(v - CDF_SLACK, 0, 1), np.clip(v + CDF_SLACK, 0, 1)
    if len(w) != 2:
        raise ValueError("the answer bounds support one or two nonzero features")
    A = float(k.support_up)
    edges = np.linspace(-A, A, bins + 1)
    prob = np.diff(_cdf(k, edges))
    lo = (prob[None, :] * _cdf(k, (x[:, None] - w[0] * edges[None, 1:]) / w[1])).sum(axis=1)
    hi = (prob[None, :] * _cdf(k, (x[:, None] - w[0] * edges[None, :-1]) / w[1])).sum(axis=1)
    return np.clip(lo - CDF_SLACK, 0, 1), np.clip(hi + CDF_SLACK, 0, 1)


def _ratio_below(k, u: np.ndarray, sN: float, sD: float, etaN: float, etaD: float, n: float,
                 t: float, lower: bool, bins: int = BINS) -> float:
    """Bound on P(N / max(D, n) < -t), t > 0, N = sN + X + xiN, D = sD + Y + xiD with X, Y
    independent copies of sum_t u_t Z_t and |xi| <= eta (the float answer's rounding in the
    factors 1 +- 2^-52). Lower bound (``lower``): E[phi(Y)], phi(y) = P(X < -t (1 + 2^-52)
    max(sD + y + etaD, n) - sN - etaN), non-increasing; Abel summation over a grid y_0..y_K of
    Y's support with a lower bound on Y's CDF. Upper bound: the mirror with -eta and an upper
    bound on Y's CDF."""
    A_Y = float(np.abs(u).sum() * k.support_up)
    grid = np.linspace(-A_Y, A_Y, bins + 1)
    G_lo, G_hi = _sum_cdf_bounds(k, u, grid, bins)
    if lower:
        h = -t * (1 + 2.0**-52) * np.maximum(sD + grid + etaD, n) - sN - etaN
        phi = _sum_cdf_bounds(k, u, h, bins)[0]
        diff = np.maximum(phi[1:-1] - phi[2:], 0.0)  # phi(y_j) - phi(y_(j+1)), j = 1..K-1
        val = phi[-1] + float(np.sum(G_lo[1:-1] * diff)) - CDF_SLACK
    else:
        h = -t * (1 - 2.0**-52) * np.maximum(sD + grid - etaD, n) - sN + etaN
        phi = _sum_cdf_bounds(k, u, h, bins)[1]
        diff = np.maximum(phi[:-2] - phi[1:-1], 0.0)  # phi(y_(j-1)) - phi(y_j), j = 1..K-1
        val = phi[-2] + float(np.sum(G_hi[1:-1] * diff)) + CDF_SLACK
    return float(min(max(val, 0.0), 1.0))


def _answer_candidates(case: AuditCase, k, sides, sa: np.ndarray, sb: np.ndarray):
    """Threshold events on one direct answer (value column 0, at q = R or q = 0): the answer is
    N / max(D, n) with N = sum_t u_t S~_(t,0), D = sum_t u_t S~_(t,d_v) (u = P(q), two features
    here), every S~ entry its exact value plus an independent draw of law k. Bounds:
    :func:`_ratio_below` ({answer > t} is {-answer < -t}, with -N of the same law around -sN)."""
    import torch

    from dpxattn.fast.features import features

    cfg = case.config
    Q = _queries(cfg)
    U = features(torch.as_tensor(Q, dtype=torch.float64), cfg.degree).numpy()
    exact = [noiseless_release(cfg, *side)["S"].numpy() for side in sides]
    n = float(cfg.n)
    A = float(k.support_up)
    out = []
    for qi in range(len(Q)):
        u = U[qi]
        col = qi * cfg.d_v  # answers reshape (m, d_v) row-major; value column 0
        etas = []
        for e in exact:  # the answer's dot products round by <= 2^-51 sum |u_t y_t| each
            rnd = 2.0**-50 * float(np.abs(u) @ (np.abs(e[:, 0]) + np.abs(e[:, cfg.d_v]) + 2 * A))
            etas.append((sum(abs(u[t]) * _perturbation(k, float(e[t, 0])) for t in range(len(u))) + rnd,
                         sum(abs(u[t]) * _perturbation(k, float(e[t, cfg.d_v])) for t in range(len(u))) + rnd))
        for (ia, ib, tag) in ((0, 1, "D over D'"), (1, 0, "D' over D")):
            Na, Nb = float(u @ exact[ia][:, 0]), float(u @ exact[ib][:, 0])
            Da, Db = float(u @ exact[ia][:, cfg.d_v]), float(u @ exact[ib][:, cfg.d_v])
            ya, yb = (sa, sb) if ia == 0 else (sb, sa)
            sign = -1.0 if Na < Nb else 1.0  # the event {sign * answer < -t}: below for Na < Nb
            A_X = float(np.abs(u).sum() * A)
            for f in np.linspace(0.02, 1.0, 25):
                t = (sign * Nb + f * A_X) / n  # -t n = Nb - f A_X (below) / t n = Nb + f A_X
                if t <= 0:
                    continue
                # sign -1: {answer < -t} around N; sign +1: {answer > t} = {-answer < -t}, -N
                args_p = (k, u, -sign * Na, Da, etas[ia][0], etas[ia][1], n, t)
                args_q = (k, u, -sign * Nb, Db, etas[ib][0], etas[ib][1], n, t)
                p = _ratio_below(*args_p, lower=True)
                q = _ratio_below(*args_q, lower=False)

                def refine(args_p=args_p, args_q=args_q):
                    return (_ratio_below(*args_p, lower=True, bins=FINE_BINS),
                            _ratio_below(*args_q, lower=False, bins=FINE_BINS))

                rel = "<" if sign < 0 else ">"
                thr = -t if sign < 0 else t

                def indicators(ya=ya, yb=yb, col=col, rel=rel, thr=thr):
                    if rel == "<":
                        return ya[:, col] < thr, yb[:, col] < thr
                    return ya[:, col] > thr, yb[:, col] > thr

                out.append((f"answer(q = {Q[qi][0]:g}) {rel} {thr:.6g} ({tag})", p, q, indicators,
                            refine))
    return out


def oracle_test(case: AuditCase, sides, where: dict, sa: np.ndarray, sb: np.ndarray,
                claim: float, delta: float) -> OracleTest:
    """The fixed-event test of a mutant case, from its exact law (see :class:`OracleTest`).

    * exact leaks: a coordinate the mutant releases without noise whose exact values differ on
      the two neighbours: the event {y_j = exact value on D} has probability 1 under D and 0
      under D', surely (the median uniform gives z = 0 exactly): beta is 0 or 1, computed;
    * half-noise on released numbers: thresholds on the coordinate whose exact values differ
      most, exact + TLap of the mutant's law (probabilities from the reference CDF, with the
      sampler's rounding and grid allowed for);
    * half-noise answers: thresholds on the answer at q = 0, bounded through N and D.

    The event is a function of the law only; its bounds use every draw (n per side) at level
    AUDIT_ALPHA / 2 each. beta: :func:`dpxattn.verification.power_bounds.clopper_pearson_escape`.
    """
    from dpxattn.verification.audit import clopper_pearson_lower, clopper_pearson_upper, eps_from_bounds
    from dpxattn.verification.power_bounds import clopper_pearson_escape

    n = int(sa.shape[0])
    alpha = AUDIT_ALPHA / 2
    if case.exact_leak:
        ea, eb = (_exact_selection(case, side, where) for side in sides)
        cols = NOISELESS_COLUMNS[case.selection]
        width = len(ea) if cols == "keys" else None
        idx = np.arange(sa.shape[1])[:width] if cols == "keys" else np.arange(sa.shape[1])[cols]
        differ = [int(j) for j in idx if ea[j] != eb[j]]
        if not differ:
            raise AssertionError(f"{case.name}: no noiseless coordinate differs on the pair")
        j = differ[0]
        beta, terms = clopper_pearson_escape(n, 1.0, n, 0.0, claim, delta, alpha)
        event = f"coordinate {j} == {float(ea[j])!r} (released without noise)"
        ia, ib = sa[:, j] == ea[j], sb[:, j] == ea[j]
        p_law, q_law = 1.0, 0.0
    else:
        k = _mutant_law(case, sides[0])
        if case.selection == "answers":
            cands = _answer_candidates(case, k, sides, sa, sb)
        else:
            ea, eb = (_exact_selection(case, side, where) for side in sides)
            cands = _noisy_candidates(k, ea, eb, sa, sb)
        beta, terms, (event, p_law, q_law, indicators) = _best_event(cands, n, claim, delta, alpha)
        ia, ib = indicators()
    x, y = int(np.count_nonzero(ia)), int(np.count_nonzero(ib))
    lb = float(eps_from_bounds(clopper_pearson_lower(x, n, alpha), clopper_pearson_upper(y, n, alpha),
                               delta))
    return OracleTest(event, p_law, q_law, x, y, n, max(lb, 0.0), beta, terms)


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------

def _record(cr: CaseResult) -> CheckRecord:
    case, res = cr.case, cr.result
    cfg = case.config
    variant = get_variant(case.variant)
    rate: dict = {"alpha": AUDIT_ALPHA}
    extra: dict = {}
    statistic = res.eps_lower_bound
    if case.mutant:
        oracle = cr.oracle
        tests = (f"the mutant is EXPOSED ({variant.description}; {variant.demonstrates}): the "
                 "audit's eps lower bound, or that of a fixed event chosen from the mutant's "
                 "exact law (on the same draws, confidence 1 - 1e-6), exceeds the claimed eps; "
                 "beta: the exact chance that the fixed event's bound does not (its law's "
                 "binomial counts, clopper_pearson_escape)")
        comparison = ">="
        rate = {"beta": oracle.beta}
        statistic = max(res.eps_lower_bound, oracle.eps_lower_bound)
        extra = {"audit_exposed": cr.audit_exposed, "fixed_event": oracle.to_dict(),
                 "beta_terms": oracle.beta_terms}
    else:
        tests = ("the audit's eps lower bound on the real mechanism stays <= the claimed eps "
                 "of the audited numbers")
        comparison = "<="
    return CheckRecord(
        name=f"audit: {case.name}",
        kind="power" if case.mutant else "audit",
        tests=tests,
        statistic=statistic,
        threshold=cr.claimed_eps,
        comparison=comparison,
        passed=cr.passed,
        confidence=1.0 - AUDIT_ALPHA,
        sample_size=2 * cr.samples,
        **rate,
        details={**extra,
            "variant": case.variant,
            "mutant": case.mutant,
            "audited": case.selection,
            "structure": cfg.describe(),
            "claimed_eps": cr.claimed_eps,
            "claimed_delta": cr.claimed_delta,
            "claim": "structure total" if case.claim is None else dict(case.claim),
            "structure_total_eps": float(cfg.eps),
            "neighbouring_pair": cr.pair,
            "samples_per_side": cr.samples,
            "audit": res.to_dict(),
        },
    )


def _consistency_records(rng: np.random.Generator) -> list[CheckRecord]:
    out = []
    for cfg in (DIRECT_CONFIG, TREE_CONFIG):
        K = (np.linspace(1.0, 0.5, cfg.n)[:, None] * cfg.R).repeat(cfg.d, axis=1)
        V = (np.linspace(1.0, -0.3, cfg.n)[:, None] * cfg.R_w).repeat(cfg.d_v, axis=1)
        got = verify_batches_match_builds(cfg, K, V, _queries(cfg), rng)
        ok = got["released_equal"] and got["answers_equal"]
        out.append(CheckRecord(
            name=f"audit sampler is the real build ({cfg.mechanism})",
            kind="exact",
            tests=("the batched releases and answers the audit uses are bit-identical to "
                   "DPCrossAttention.build(K, V, uniforms=...) and its query on the same uniforms"),
            statistic=0.0 if ok else 1.0, threshold=0.0, comparison="<=", passed=ok,
            sample_size=got["samples"], details={**got, "structure": cfg.describe()}))
    return out


def check_privacy(ctx: CheckContext) -> list[CheckRecord]:
    """Check 4: an empirical privacy audit - black-box lower bounds on eps from samples.

    For a pair of neighbouring datasets (the worst pair found by the sensitivity search), the
    mechanism is run many times on each, and a statistically valid LOWER bound on its eps is
    computed from the outputs alone: events are chosen on half of the samples (thresholds on
    each output and on a fitted classifier's score), and their probabilities bounded on the
    other half with one-sided Clopper-Pearson intervals and a union bound, giving
    eps >= ln((p_lo - delta)/q_hi) with confidence 1 - 1e-6. If that lower bound exceeds the
    eps the mechanism claims, the claim is false.

    How to read: for the real mechanisms (direct, tree; on released numbers and on query
    answers) the bound must stay <= the claimed eps - the claim of a set of released numbers is
    the sum of the privacy plan's shares of the components they belong to, an answer claims the
    whole structure's eps. A bound close to the claim (tree c0: about 0.9 of 1 at quick, closer
    at standard) shows the claim is tight and the audit sharp. Every planted mutant must be
    exposed (bound > claim): noise scale x0.5 (an under-noised mechanism), the denominator
    released without noise (the paper's ICLR version), c0/c1 released exactly (its Algorithm 3),
    and the literal DPTreeDistance over sorted keys - these are the literal paper's leaks
    (PAPER §5 items 5-7). The plot shows every bound against its claim. The `sampler` records
    confirm the audit's batched draws are bit-identical to DPCrossAttention.build.

    False alarms: each real-mechanism audit has alpha = 1e-6 (5e-6 for the check). Each mutant
    record is a power record: it also bounds one event fixed in advance from the mutant's exact
    law and passes if the audit or that event exposes the mutant; beta = the exact chance that
    the fixed event does not (0 for the four exact leaks, a point mass; below 1e-18 for the
    half-noise mutants at quick, far lower at standard). The check's total is about 5e-6 at
    every level.
    """
    rng = ctx.rng
    noisy, leak = SAMPLES.get(ctx.level, SAMPLES["standard"])
    if ctx.level == "full":
        noisy, leak = int(noisy * ctx.scale), int(leak * ctx.scale)
    records = _consistency_records(rng)
    results = []
    for case in audit_cases():
        ctx.note(f"auditing {case.name}")
        cr = run_case(case, leak if case.exact_leak else noisy, rng)
        results.append(cr)
        records.append(_record(cr))
    path = ctx.plot_path("audit_eps_bounds.png")
    if path is not None:
        from dpxattn.verification.plots import AuditPoint, plot_audit_bounds

        points = [AuditPoint(cr.case.name.replace("mutant ", ""), cr.claimed_eps,
                             cr.result.eps_lower_bound, cr.case.mutant) for cr in results]
        plot_audit_bounds(points, path, title="Empirical eps lower bounds (confidence 1 - 1e-6) "
                                             "vs the claimed eps")
        for r in records:
            if r.kind == "audit":
                r.plots.append(str(path))
    return records
