"""Check 4 (issue 4): the empirical privacy audit of the real mechanisms and of planted mutants.

The auditor (:func:`dpxattn.verification.audit.audit`: events chosen on one split, one-sided
Clopper-Pearson bounds on a fresh split, union bound; DESIGN §6) is applied to

* the real ``direct`` and ``tree`` structures, on their released numbers and on their query
  answers, on the worst-case neighbouring (K, V) pairs found by check 3
  (:func:`dpxattn.verification.checks_sensitivity.search_sensitivity`): the lower bound must stay
  <= the eps the audited numbers claim;
* every planted mutant of :mod:`dpxattn.verification.mutants` (noise x0.5, the denominator
  released without noise, c0/c1 exact, the literal DPTreeDistance over sorted keys): the lower
  bound must EXCEED the claimed eps, which is the statistical proof of the literal paper's leaks
  (PAPER §5 items 5-7) and the power of the privacy test (DESIGN §6).

What is claimed for a set of released numbers is the sum of the plan's shares of the components
they belong to (basic composition; ``dpxattn.accounting``): e.g. c0 of one value column is one
component with share (eps/J, delta/J); an answer is post-processing of the whole structure, so
it claims the structure's total (eps, delta). The audit's delta is the claimed delta.

Every audit runs at confidence 1 - :data:`AUDIT_ALPHA`: a correct mechanism is flagged with
probability <= 1e-6 per audit. Sample sizes: :data:`SAMPLES` (>= 1e6 per side at ``standard``
for every audit of noisy numbers, DESIGN §6; 2e5 for the point-mass leaks; at ``quick``
smaller, on configurations chosen so the mutants are still caught: tiny n, a single released
number or a few). Batches of releases come from the real release code
(:func:`dpxattn.verification.mutants.verify_batches_match_builds` checks them bit for bit
against ``DPCrossAttention.build``).

Paper: the privacy claims of DPTree, DPTreeDistance, DPTreeSoftmax and the cross-attention
structure (v2 §2-4, App. D-I; ICLR Thm 1.2, Algorithm 3 and line 269; v3: unverified); spec
PAPER.md §2.1, §3.1-3.7, §5 items 5-7. Notes: ``proofs_notes/21-empirical-audit.md``.
Shapes: each audit feeds the auditor (N, k) arrays of released numbers or answers per side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from dpxattn.errors import ParameterError
from dpxattn.verification.audit import AuditResult, audit
from dpxattn.verification.checks_sensitivity import SearchBudget, search_sensitivity
from dpxattn.verification.mutants import (SortedTreeConfig, StructureConfig, get_variant,
                                          sample_answers, sample_released, sample_sorted_tree,
                                          verify_batches_match_builds)
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
class CaseResult:
    case: AuditCase
    result: AuditResult
    claimed_eps: float
    claimed_delta: float
    pair: str
    samples: int

    @property
    def exposed(self) -> bool:
        return self.result.eps_lower_bound > self.claimed_eps

    @property
    def passed(self) -> bool:
        return self.exposed if self.case.mutant else not self.exposed


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
    res = audit(_select(case, a, where), _select(case, b, where), delta=delta_c,
                confidence=1.0 - AUDIT_ALPHA, rng=rng)
    return CaseResult(case, res, eps_c, delta_c, text, samples)


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------

def _record(cr: CaseResult) -> CheckRecord:
    case, res = cr.case, cr.result
    cfg = case.config
    variant = get_variant(case.variant)
    if case.mutant:
        tests = (f"the audit EXPOSES the mutant ({variant.description}; {variant.demonstrates}): "
                 "its eps lower bound exceeds the claimed eps")
        comparison = ">="
    else:
        tests = ("the audit's eps lower bound on the real mechanism stays <= the claimed eps "
                 "of the audited numbers")
        comparison = "<="
    return CheckRecord(
        name=f"audit: {case.name}",
        kind="audit",
        tests=tests,
        statistic=res.eps_lower_bound,
        threshold=cr.claimed_eps,
        comparison=comparison,
        passed=cr.passed,
        alpha=AUDIT_ALPHA,
        confidence=1.0 - AUDIT_ALPHA,
        sample_size=2 * cr.samples,
        details={
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
