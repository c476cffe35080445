"""Empirical privacy audit of the Gaussian law: ``direct`` with ``law="gaussian"`` and its mutant,
on the paper's box and on the signed ball, and the ``tree`` with ``law="gaussian"``.

Gaussian law -- paper: none (arXiv 2407.14717 uses truncated Laplace only; our ``law="gaussian"``
for the ``direct`` statistic and the ``tree`` release, PAPER §5 item 8; Balle & Wang 2018); DESIGN §6; proof notes
``proofs_notes/24-analytic-gaussian.md`` (the calibration), ``17-sensitivity.md`` ("l2": the
worst pair) and ``21-empirical-audit.md`` (the auditor).

The structures (:data:`CONFIGS`), float mode, eps = 1, delta = 1e-6; the release is the whole S
(r x (d_v + 1) numbers), one Gaussian component: S + N(0, sigma^2 I) with sigma from the plan:

* **box**: n = 2 rows, d = 1, d_v = 1, degree 1, R = 1, R_w = 10: m = d_v R_w^2 >= 1, so the l2
  sensitivity 2 R_w sqrt(d_v T_s(t_max)) is ATTAINED (note 17) at x = x' = R, v = -v' = R_w;
* **ball** (``domain="ball"``): n = 2, d = 2, d_v = 1, degree 2, R = 1, R_w = 0.5, scale 1:
  m < 1, so the sup is attained by two keys on the sphere whose logit minimises T_s
  (``reference.ball_sensitivity.ball_l2_worst_pair``, note 27), not by x = x';
* **tree** (``mechanism="tree"``, box, the box structure's parameters): the WHOLE release (c0,
  c1 and every node of every moment tree, 40 numbers) is one Gaussian component on the l2
  sensitivity of its scaled form mu x (``reference.sensitivity.tree_release_l2`` with the
  groups' weights, ``reference.tree_noise_weights``; note 26), attained at k = k' = R,
  v = -v' = R_w (d_v R_w^2 >= 1); the audit works on mu x (:func:`calibration_scales`, a public
  post-processing), where the noise is iid. Its releases are audited through their projection on the unit
  shift (:func:`sample_projections`: the projection of iid N(0, sigma^2) noise on a unit vector
  is exactly N(0, sigma^2), drawn by the real sampler; the release's entrywise law is the
  sampler record's exact check): a post-processing, so the bound stays a valid lower bound, and
  a lossless one for this pair (the likelihood ratio depends on the release only through that
  projection).

Records per structure:

* **sampler is the real build** (exact): the batched draws S0 + sigma Phi^-1(u) equal
  ``DPCrossAttention.build(K, V, law="gaussian", uniforms=u)`` bit for bit on the same uniforms.
* **worst pair** (search): over the candidate pairs replacing row 0 (box: every pair of corner
  rows, key in {0, R}, value in {-R_w, R_w}; ball: ``ball_neighbouring_pairs``, structured keys
  on and inside the sphere times value corners, plus random pairs), no ||S(D) - S(D')||_F
  exceeds the plan's numeric l2 sensitivity, and the audited pair attains it (relative 1e-9).
* **audit of the real mechanism** (audit, alpha = :data:`AUDIT_ALPHA`): the black-box auditor
  (:func:`dpxattn.verification.audit.audit`) on the released S on the audited pair: its eps lower
  bound at the claimed delta stays <= the claimed eps.
* **power: sigma x0.5** (power): the same draws with half the noise at the same claim. Passes when
  the auditor's bound, or that of a FIXED event chosen in advance from the mutant's exact law,
  exceeds the claim. The event: the projection of the release on the unit shift u = dS / |dS|
  exceeds c (chosen to minimise beta); under D the projection is N(0, (sigma/2)^2), under D' it
  is N(|dS|, (sigma/2)^2), exactly. beta = the exact chance that the fixed event's one-sided
  Clopper-Pearson bound (confidence 1 - 1e-6) does not exceed the claim
  (:func:`dpxattn.verification.power_bounds.clopper_pearson_escape`), with the projection's
  float64 rounding allowed for (:data:`PROJECTION_SLACK`).

Budget: one audit record (1e-6) per structure plus the power records' betas (below 1e-9 at
quick and standard).
Shapes: releases are (N, r (d_v + 1)) float64 arrays, one row per release.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

from dpxattn.fast import DPCrossAttention
from dpxattn.fast.noise import gaussian
from dpxattn.reference import gaussian as ref_gaussian
from dpxattn.verification.audit import (audit, clopper_pearson_lower, clopper_pearson_upper,
                                        eps_from_bounds)
from dpxattn.verification.power_bounds import clopper_pearson_escape
from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "AUDIT_ALPHA",
    "SAMPLES",
    "PROJECTION_SLACK",
    "GaussianAuditConfig",
    "CONFIG",
    "BALL_CONFIG",
    "CONFIGS",
    "noiseless_S",
    "sample_releases",
    "worst_corner_pair",
    "fixed_event",
    "check_gaussian_privacy",
]

#: false-alarm rate of the real mechanism's audit (confidence 1 - alpha), and the fixed event's
AUDIT_ALPHA = 1e-6
#: releases per side
SAMPLES = {"quick": 1_000_000, "standard": 2_000_000, "full": 4_000_000}
#: relative allowance for the float64 projection <x - S0, u> (a few ulps of |x| per term)
PROJECTION_SLACK = 1e-12


@dataclass(frozen=True)
class GaussianAuditConfig:
    n: int = 2
    d: int = 1
    d_v: int = 1
    degree: int = 1
    R: float = 1.0
    R_w: float = 10.0
    eps: float = 1.0
    delta: float = 1e-6
    domain: str = "box"
    mechanism: str = "direct"

    @property
    def label(self) -> str:
        what = "tree, " if self.mechanism == "tree" else ""
        return (f"{what}{self.domain}: n={self.n}, d={self.d}, d_v={self.d_v}, s={self.degree}, "
                f"R_w={self.R_w:g}")

    def build_kwargs(self) -> dict:
        kw = dict(eps=self.eps, delta=self.delta, R=self.R, R_w=self.R_w, degree=self.degree,
                  mechanism=self.mechanism, law="gaussian", noise="float")
        return kw if self.domain == "box" else dict(kw, domain=self.domain)

    def corner(self, key: float, value: float) -> tuple[np.ndarray, np.ndarray]:
        """Box: the dataset whose row 0 is (key 1_d, value 1_{d_v}) and whose other rows are fixed."""
        K = np.full((self.n, self.d), 0.5 * self.R)
        V = np.full((self.n, self.d_v), 0.3 * self.R_w)
        K[0], V[0] = key, value
        return K, V

    def worst_pair(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The pair (D, D') at which the l2 sensitivity is attained (module docstring)."""
        if self.domain == "box":
            return self.corner(self.R, self.R_w), self.corner(self.R, -self.R_w)
        from dpxattn.reference.ball_sensitivity import ball_l2_worst_pair

        p = ball_l2_worst_pair(self.n, self.d, self.d_v, self.degree, self.R, self.R_w)
        return tuple((_inside(np.array(K, dtype=float), self.R), np.array(V, dtype=float))
                     for K, V in ((p.K, p.V), (p.K2, p.V2)))

    def candidate_pairs(self, rng: np.random.Generator) -> list:
        """Neighbouring datasets for the worst-pair search (module docstring)."""
        if self.domain == "box":
            corners = [(k, v) for k in (0.0, self.R) for v in (-self.R_w, self.R_w)]
            return [(self.corner(*a), self.corner(*b)) for a in corners for b in corners]
        from dpxattn.reference.ball_sensitivity import ball_neighbouring_pairs

        pairs = ball_neighbouring_pairs(self.n, self.d, self.d_v, self.R, self.R_w,
                                        degree=self.degree, rng=rng, n_random=20, max_keys=12)
        return [tuple((_inside(np.array(K, dtype=float), self.R), np.array(V, dtype=float))
                      for K, V in ((p.K, p.V), (p.K2, p.V2))) for p in pairs]


def _inside(K: np.ndarray, R: float) -> np.ndarray:
    """Float rows of mpf keys moved inward by a few ulps where rounding put them past the
    sphere (the build decides ||k||_2 <= R exactly)."""
    norms = np.linalg.norm(K, axis=1, keepdims=True)
    return np.where(norms > R * (1 - 1e-15), K * (R * (1 - 1e-14) / np.maximum(norms, 1e-300)), K)


CONFIG = GaussianAuditConfig()
BALL_CONFIG = GaussianAuditConfig(n=2, d=2, d_v=1, degree=2, R=1.0, R_w=0.5, domain="ball")
#: the tree's whole release (c0, c1 and every node: 40 numbers), one Gaussian component;
#: d_v R_w^2 >= 1, so its l2 sensitivity is attained at k = k' = R, v = -v' = R_w (note 26)
TREE_CONFIG = GaussianAuditConfig(mechanism="tree")
CONFIGS = (CONFIG, BALL_CONFIG, TREE_CONFIG)


def _build(cfg: GaussianAuditConfig, K, V, uniforms) -> DPCrossAttention:
    return DPCrossAttention.build(torch.as_tensor(K), torch.as_tensor(V),
                                  uniforms=torch.as_tensor(uniforms), **cfg.build_kwargs())


def _count(cfg: GaussianAuditConfig) -> int:
    return DPCrossAttention.noise_count(n=cfg.n, d=cfg.d, d_v=cfg.d_v, degree=cfg.degree,
                                        mechanism=cfg.mechanism, law="gaussian")


def released_in_uniform_order(att: DPCrossAttention) -> np.ndarray:
    """Every released number of a fast build, flat, entry j the one that received uniform j
    (through the target protocol's adapter, :func:`dpxattn.verification.target.released_vector`)."""
    from dpxattn.verification.target import _FastBuilt, released_vector

    return released_vector(_FastBuilt(att))


def calibration_scales(cfg: GaussianAuditConfig) -> np.ndarray:
    """mu per released number, in uniform order: the public scaling under which the noise is
    iid N(0, sigma^2). 1 for ``direct``; for the tree, its groups' mu = 2^-e (0 for a withheld
    group, released as 0) of ``reference.tree_noise_weights`` (note 26, "Per-group noise"):
    the tree releases lambda (mu y + sigma Z), so mu x = mu y + sigma Z where mu > 0."""
    count = _count(cfg)
    if cfg.mechanism != "tree":
        return np.ones(count)
    from dpxattn.reference.tree_noise_weights import scale_release, tree_noise_weights

    weights = tree_noise_weights(cfg.d, cfg.degree, cfg.R, grid_size=cfg.n)
    return np.array(scale_release([1.0] * count, weights, d_v=cfg.d_v), dtype=np.float64)


def noiseless_S(cfg: GaussianAuditConfig, K, V) -> tuple[np.ndarray, float, float]:
    """(the whole release flat in uniform order -- direct: S row-major; the tree: scaled by
    :func:`calibration_scales` --, the plan's sigma, the plan's numeric l2 sensitivity) of the
    real build at uniforms 1/2 (zero noise: Phi^-1(1/2) = 0 exactly)."""
    att = _build(cfg, K, V, np.full(_count(cfg), 0.5))
    (component,) = att.privacy.to_dict()["components"]
    return released_in_uniform_order(att) * calibration_scales(cfg), \
        float(component["sigma"]), float(component["sensitivity_value"])


def sample_releases(S0: np.ndarray, sigma: float, count: int, seed: int) -> np.ndarray:
    """``count`` releases S0 + sigma Phi^-1(u) (the real sampler, seeded: an audit)."""
    g = torch.Generator().manual_seed(seed)
    noise = gaussian((count, S0.size), sigma, generator=g).numpy()
    return noise + S0[None, :]


def sample_projections(S0: np.ndarray, origin: np.ndarray, u: np.ndarray, sigma: float,
                       count: int, seed: int) -> np.ndarray:
    """(count,) draws of the projection <x - origin, u> of a release x = S0 + Z, Z iid
    N(0, sigma^2): <S0 - origin, u> + sigma Phi^-1(V) with V uniform (the real float sampler,
    seeded). For a unit vector u, <Z, u> is exactly N(0, sigma^2), so these are the projected
    releases in law, 1/dim of the cost; that the release IS S0 + sigma Phi^-1(uniforms),
    entry by entry, is the sampler record's exact check. The tree's releases are audited through
    this one-dimensional post-processing (the likelihood ratio of N(S_a, s^2 I) vs
    N(S_b, s^2 I) depends on x only through <x, u>, u the unit shift, so it loses nothing)."""
    g = torch.Generator().manual_seed(seed)
    return float(np.dot(S0 - origin, u)) + gaussian((count,), sigma, generator=g).numpy()


def worst_corner_pair(cfg: GaussianAuditConfig, rng: np.random.Generator | None = None) -> dict:
    """The candidate pairs for row 0 (:meth:`GaussianAuditConfig.candidate_pairs`): the largest
    ||S(D) - S(D')||_F and which pair (its index) attains it."""
    pairs = cfg.candidate_pairs(rng if rng is not None else np.random.default_rng(0))
    memo: dict[bytes, np.ndarray] = {}

    def S(data):  # each distinct dataset is built once (pairs share their rows)
        key = data[0].tobytes() + data[1].tobytes()
        if key not in memo:
            memo[key] = noiseless_S(cfg, *data)[0]
        return memo[key]
    changes = [float(np.linalg.norm(S(a) - S(b))) for a, b in pairs]
    k = int(np.argmax(changes))
    return {"largest": changes[k], "pair_index": k, "pairs": len(pairs)}


def _sampler_record(cfg: GaussianAuditConfig, rng: np.random.Generator) -> CheckRecord:
    K, V = cfg.worst_pair()[0]
    S0, sigma, _ = noiseless_S(cfg, K, V)
    mu = calibration_scales(cfg)
    keep = mu > 0
    equal = True
    for _ in range(4):
        u = rng.random(_count(cfg)) * (1 - 2.0 ** -53) + 2.0 ** -54
        raw = released_in_uniform_order(_build(cfg, K, V, u))
        batch = S0 + gaussian((S0.size,), sigma, uniforms=torch.as_tensor(u)).numpy()
        equal &= bool(np.array_equal((raw * mu)[keep], batch[keep]) and not raw[~keep].any())
    return CheckRecord(name=f"gaussian audit sampler is the real build [{cfg.label}]", kind="exact",
                       tests="S0 + sigma Phi^-1(u) (the batched draws) equals "
                             "DPCrossAttention.build(..., law='gaussian', uniforms=u) bit for bit "
                             "(the tree: scaled by its groups' mu, withheld groups released as 0)",
                       statistic=0.0 if equal else 1.0, threshold=0.0, comparison="<=",
                       passed=equal, sample_size=4)


def fixed_event(shift: float, sigma: float, n: int, claim: float, delta: float) -> dict:
    """The threshold c on the projection (in units of the mutant's sigma) that minimises beta:
    P_D'(T > c) = Phi((shift - c') / sigma), P_D(T > c) = Phi(-c'' / sigma), with c' and c''
    moved by the projection's allowance so that both are bounded the conservative way."""
    best = None
    slack = PROJECTION_SLACK * (abs(shift) + 10.0 * sigma)
    for k in np.linspace(0.0, 6.0, 25):
        c = shift / 2 + k * sigma
        p = float(special.ndtr((shift - (c + slack)) / sigma))
        q = float(special.ndtr(-(c - slack) / sigma))
        beta, terms = clopper_pearson_escape(n, p, n, q, claim, delta, AUDIT_ALPHA / 2)
        if best is None or beta < best["beta"]:
            best = {"threshold": c, "p": p, "q": q, "beta": beta, "beta_terms": terms}
    return best


def _oracle_bound(event: dict, proj_a: np.ndarray, proj_b: np.ndarray, delta: float) -> float:
    n = proj_a.size
    x = int(np.count_nonzero(proj_a > event["threshold"]))
    y = int(np.count_nonzero(proj_b > event["threshold"]))
    lo = clopper_pearson_lower(x, n, AUDIT_ALPHA / 2)
    hi = clopper_pearson_upper(y, n, AUDIT_ALPHA / 2)
    return max(float(eps_from_bounds(lo, hi, delta)), 0.0)


def _released_text(cfg: GaussianAuditConfig) -> str:
    return ("released S" if cfg.mechanism == "direct" else
            "tree's whole release projected on the shift (c0, c1 and every node)")


def check_gaussian_privacy(ctx: CheckContext) -> list[CheckRecord]:
    """Run the audit at ``ctx.level`` (see the module docstring)."""
    rng = ctx.rng
    n = int(SAMPLES.get(ctx.level, SAMPLES["standard"]) * (ctx.scale if ctx.level == "full" else 1))
    records = []
    for cfg in CONFIGS:
        records += _audit_structure(ctx, cfg, n, rng)
    return records


def _audit_structure(ctx: CheckContext, cfg: GaussianAuditConfig, n: int,
                     rng: np.random.Generator) -> list[CheckRecord]:
    records = [_sampler_record(cfg, rng)]
    (K_a, V_a), (K_b, V_b) = cfg.worst_pair()
    S_a, sigma, sens = noiseless_S(cfg, K_a, V_a)
    S_b = noiseless_S(cfg, K_b, V_b)[0]
    worst = worst_corner_pair(cfg, rng)
    shift = float(np.linalg.norm(S_b - S_a))
    records.append(CheckRecord(
        name=f"gaussian worst pair [{cfg.label}]", kind="search",
        tests=(f"over {worst['pairs']} candidate pairs for one row, ||S(D) - S(D')||_F <= the plan's "
               "l2 sensitivity, and the audited pair attains it (relative 1e-9; notes 17, 27)"),
        statistic=max(worst["largest"], shift), threshold=sens, comparison="<=",
        passed=max(worst["largest"], shift) <= sens and shift >= sens * (1 - 1e-9),
        details={**worst, "audited_shift": shift, "sigma": sigma}))
    for label, factor in (("real", 1.0), ("sigma x0.5", 0.5)):
        ctx.note(f"gaussian audit: {cfg.domain}, {label}")
        s = sigma * factor
        u = (S_b - S_a) / shift
        if cfg.mechanism == "tree":  # projected on the shift (sample_projections)
            a = sample_projections(S_a, S_a, u, s, n, int(rng.integers(2 ** 63)))
            b = sample_projections(S_b, S_a, u, s, n, int(rng.integers(2 ** 63)))
            res = audit(b, a, delta=cfg.delta, confidence=1 - AUDIT_ALPHA, rng=rng)
            proj_b, proj_a = b, a
        else:
            a = sample_releases(S_a, s, n, int(rng.integers(2 ** 63)))
            b = sample_releases(S_b, s, n, int(rng.integers(2 ** 63)))
            res = audit(b, a, delta=cfg.delta, confidence=1 - AUDIT_ALPHA, rng=rng)
            proj_b, proj_a = (b - S_a) @ u, (a - S_a) @ u
        details = {"sigma_used": s, "plan_sigma": sigma, "shift": shift, "audit": res.to_dict(),
                   "samples_per_side": n,
                   # the exact delta at the claimed eps of N(0, s^2) vs N(shift, s^2) (reference)
                   "exact_delta_at_claim": float(ref_gaussian.delta_for_sigma(s, shift, cfg.eps))}
        if factor == 1.0:
            records.append(CheckRecord(
                name=f"gaussian audit: {cfg.mechanism} (real) [{cfg.label}]", kind="audit",
                tests=f"the auditor's eps lower bound on the {_released_text(cfg)} (worst pair) "
                      "stays <= the claimed eps of the one Gaussian component",
                statistic=res.eps_lower_bound, threshold=cfg.eps, comparison="<=",
                passed=res.eps_lower_bound <= cfg.eps, alpha=AUDIT_ALPHA,
                confidence=1 - AUDIT_ALPHA, sample_size=2 * n, details=details))
            continue
        event = fixed_event(shift, s, n, cfg.eps, cfg.delta)
        oracle = _oracle_bound(event, proj_b, proj_a, cfg.delta)
        stat = max(res.eps_lower_bound, oracle)
        records.append(CheckRecord(
            name=f"gaussian audit: {cfg.mechanism} sigma x0.5 (mutant) [{cfg.label}]", kind="power",
            tests="half the noise at the same claim is EXPOSED: the auditor's bound or a fixed "
                  "event's (projection on the shift > c, chosen from the mutant's exact law) "
                  "exceeds the claimed eps; beta: the exact chance that the fixed event's does not",
            statistic=stat, threshold=cfg.eps, comparison=">=", passed=stat > cfg.eps,
            beta=event["beta"], confidence=1 - AUDIT_ALPHA, sample_size=2 * n,
            details={**details, "fixed_event": {k: v for k, v in event.items() if k != "beta_terms"},
                     "fixed_event_bound": oracle, "beta_terms": event["beta_terms"]}))
    return records

