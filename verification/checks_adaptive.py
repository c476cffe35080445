"""Check 5 of the harness: adaptive and adversarial queries against the certified envelopes.

The paper claims robustness to adaptive queries "with probability 1 - p_f" through an eps0-net,
a Lipschitz extension and the median of l copies (PAPER §2.6, §3.6, §4.1). With truncated noise
the error of every answer is a fixed linear combination of bounded draws, so ``error_bound(Q)``
is a SURE envelope for every query, however chosen (PAPER §5 item 10; DESIGN §4). This check
attacks it, per structure (``direct`` and ``tree``, built by ``dpxattn.fast``):

(a) about 1e4 queries per structure at ``quick`` and >= 1e4 per strategy at ``standard`` -
    uniformly random queries, an eps0-net grid of
    the query box [0, R]^d (l_inf spacing 2 eps0, cell centres), and gradient ascent on the
    error/envelope ratio with torch autograd through ``DPCrossAttention.query`` (signed steps,
    projected onto the box) - and asserts the envelope is never exceeded: in float64 for every
    query (the truth is the real structure built noiselessly, ``uniforms = 1/2``), and exactly
    for the worst queries (truth re-evaluated with the reference ``taylor_attention`` in mpmath);
(b) the paper-form high-probability bound ``hp_error_bound(Q, p_f)`` (p_f = 1/100, the paper's
    "with probability 0.99") holds at its stated failure rate: over T independent structures,
    each with queries fixed before the noise, one designated entry per structure (so the trials
    are independent), the number of violations must not exceed the Binomial(T, p_f) critical
    value at alpha = 1e-6. The same test is applied to the union form (all entries of all
    fixed queries at once with ``hp_error_bound(Q, p_f/(m d_v))``) and, as its power, to a
    deliberately over-optimistic bound (:data:`WRONG_BOUND_FACTOR` times ``hp_error_bound``),
    which it must reject: a ``power`` record whose beta is derived
    (:func:`wrong_bound_no_violation`, :func:`wrong_bound_escape`): for one copy the numerator
    noise, log-concave and independent of the denominator, must land in a window of length
    ~0.04 C (C the envelope's public noise terms) for the wrong bound to hold, which has
    probability <= that length / its standard deviation; the violation count then dominates a
    binomial. With several copies (the standard level's tree, copies = 3) the median's window has
    no useful sure bound, so that structure has no power record in the report;
    ``tests/test_checks_adaptive.py`` demonstrates its power with fixed seeds.

Gaussian law (``law="gaussian"``, ``direct`` and ``tree``, float mode; notes 24, 26 and 16): the noise is
unbounded, so there is no sure envelope ((a) does not apply: an ``exact`` record checks that
``error_bound`` refuses), and (b) tests ``hp_error_bound`` (exact normal quantiles, then the same
ratio step) with the same binomial records and the same power record; its beta rests on the
numerator noise N(0, sigma^2 |phi(q)|^2), on the event that every uniform lies in
[2^-40, 1 - 2^-40] (its complement's probability is added to each window bound); for the
tree, the numerator noise is N(0, sigma^2 (c1 + |u|^4 c0 + sum coef^2 nodes) / 4), the same
window argument as its TLap records (:func:`_tree_windows`).

The worst error/envelope ratio found is reported (the envelope is typically 10-100x the
observed error: DESIGN §9). Paper: adaptive queries via eps0-net, Lipschitz extension and median
of copies, "with probability 1 - p_f" (v2 App. H; ICLR Thm 1.2); spec PAPER.md
§2.6, §3.6, §4.1, §5 item 10. Notes: ``proofs_notes/22-adaptive-search.md``. Shapes: queries
(m, d) in [0, R]^d; answers and envelopes (m, d_v).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import stats

from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "ALPHA",
    "PAPER_FAILURE_PROB",
    "WRONG_BOUND_FACTOR",
    "AdaptiveConfig",
    "QueryBudget",
    "BUDGETS",
    "adaptive_configs",
    "grid_queries",
    "binomial_critical",
    "attack_structure",
    "hp_failure_test",
    "check_adaptive",
]

#: false-alarm rate of every binomial assertion of this check
ALPHA = 1e-6
#: the paper's failure probability ("with probability 0.99"; PAPER §3.1, §4.1)
PAPER_FAILURE_PROB = 0.01
#: the power fixture: an envelope this many times smaller than hp_error_bound is over-optimistic
WRONG_BOUND_FACTOR = 0.02
#: worst queries whose truth is re-evaluated exactly with the reference (mpmath)
EXACT_RECHECK = 8


@dataclass(frozen=True)
class AdaptiveConfig:
    """A structure to attack: public parameters and the synthetic private data's seed offset."""

    mechanism: str
    n: int
    d: int
    d_v: int
    degree: int
    R: float = 1.0
    R_w: float = 1.0
    eps: float = 1.0
    delta: float = 1e-6
    copies: int = 1
    law: str = "tlap"

    def build_kwargs(self) -> dict:
        kw = dict(eps=self.eps, delta=self.delta, R=self.R, R_w=self.R_w, degree=self.degree,
                  mechanism=self.mechanism)
        if self.mechanism == "tree":
            kw["copies"] = self.copies
        if self.law != "tlap":  # float mode (a seeded generator or uniforms)
            kw.update(law=self.law, noise="float")
        return kw

    def describe(self) -> str:
        c = f", copies={self.copies}" if self.mechanism == "tree" else ""
        law = f", law={self.law}" if self.law != "tlap" else ""
        return (f"{self.mechanism}: n={self.n}, d={self.d}, d_v={self.d_v}, degree={self.degree}, "
                f"R={self.R:g}, R_w={self.R_w:g}, eps={self.eps:g}, delta={self.delta:g}{c}{law}")


@dataclass(frozen=True)
class QueryBudget:
    random: int
    grid: int
    starts: int
    steps: int
    structures: int  # T of the binomial test


BUDGETS = {
    "quick": QueryBudget(random=4_000, grid=4_000, starts=100, steps=20, structures=150),
    "standard": QueryBudget(random=20_000, grid=20_000, starts=250, steps=40, structures=1_000),
    "full": QueryBudget(random=100_000, grid=100_000, starts=500, steps=100, structures=20_000),
}


def adaptive_configs(level: str) -> list[AdaptiveConfig]:
    out = [AdaptiveConfig("direct", n=64, d=2, d_v=2, degree=3),
           AdaptiveConfig("tree", n=16, d=2, d_v=1, degree=2),
           AdaptiveConfig("direct", n=64, d=2, d_v=2, degree=3, law="gaussian"),
           AdaptiveConfig("tree", n=16, d=2, d_v=1, degree=2, law="gaussian")]
    if level != "quick":
        out += [AdaptiveConfig("direct", n=1024, d=4, d_v=3, degree=2, R_w=2.0, eps=0.5),
                AdaptiveConfig("tree", n=32, d=2, d_v=2, degree=2, copies=3)]
    return out


# ---------------------------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------------------------

def grid_queries(d: int, R: float, count: int) -> tuple[torch.Tensor, float]:
    """An eps0-net of [0, R]^d in l_inf: the centres of g^d cells, g = ceil(count^(1/d)).

    Every point of the box is within eps0 = R/(2g) of a grid point (PAPER §2.6). Returns
    (queries (g^d, d) float64, eps0).
    """
    g = max(1, math.ceil(count ** (1.0 / d) - 1e-9))
    axis = (torch.arange(g, dtype=torch.float64) + 0.5) * (R / g)
    mesh = torch.stack(torch.meshgrid(*([axis] * d), indexing="ij"), dim=-1).reshape(-1, d)
    return mesh, R / (2 * g)


def _data(cfg: AdaptiveConfig, rng: np.random.Generator):
    """Synthetic private data with structure (a few key clusters, values tied to clusters)."""
    centres = rng.uniform(0.0, cfg.R, (4, cfg.d))
    which = rng.integers(0, 4, cfg.n)
    K = np.clip(centres[which] + rng.normal(0.0, 0.1 * cfg.R, (cfg.n, cfg.d)), 0.0, cfg.R)
    proto = rng.uniform(-cfg.R_w, cfg.R_w, (4, cfg.d_v))
    V = np.clip(proto[which] + rng.normal(0.0, 0.2 * cfg.R_w, (cfg.n, cfg.d_v)), -cfg.R_w, cfg.R_w)
    return torch.as_tensor(K), torch.as_tensor(V)


def _noiseless(cfg: AdaptiveConfig, K, V):
    """The real structure built with the median uniform: its answers are the Taylor attention."""
    from dpxattn.fast import DPCrossAttention

    kw = cfg.build_kwargs()
    count = DPCrossAttention.noise_count(n=cfg.n, d=cfg.d, d_v=cfg.d_v, degree=cfg.degree,
                                         mechanism=cfg.mechanism, copies=kw.get("copies", 1))
    return DPCrossAttention.build(K, V, uniforms=np.full(count, 0.5), **kw)


def _ratios(att, truth, Q: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(max-entry error/envelope ratio per query (m,), answers (m, d_v)), in chunks."""
    out, answers = [], []
    with torch.no_grad():
        for s in range(0, Q.shape[0], chunk):
            q = Q[s:s + chunk]
            a = att.query(q)
            err = (a - truth.query(q)).abs()
            out.append((err / att.error_bound(q)).amax(dim=1))
            answers.append(a)
    return torch.cat(out), torch.cat(answers)


def _gradient_attack(att, truth, cfg: AdaptiveConfig, budget: QueryBudget, gen: torch.Generator):
    """Signed gradient ascent on error/envelope (autograd through query); every iterate counts.

    Returns (all evaluated queries (starts * steps, d), their ratios).
    """
    q = torch.rand((budget.starts, cfg.d), generator=gen, dtype=torch.float64) * cfg.R
    seen_q, seen_r = [], []
    for step in range(budget.steps):
        q = q.detach().requires_grad_(True)
        err = (att.query(q) - truth.query(q)).abs()
        with torch.no_grad():
            env = att.error_bound(q.detach())
        ratio = (err / env).amax(dim=1)
        seen_q.append(q.detach().clone())
        seen_r.append(ratio.detach().clone())
        ratio.sum().backward()
        lr = cfg.R * 0.1 / (1.0 + step / 10.0)
        with torch.no_grad():
            g = q.grad
            g = torch.where(torch.isfinite(g), g, torch.zeros_like(g))
            q = (q + lr * torch.sign(g)).clamp_(0.0, cfg.R)
    return torch.cat(seen_q), torch.cat(seen_r)


@dataclass
class AttackResult:
    config: AdaptiveConfig
    max_ratio: dict
    counts: dict
    worst_query: list
    eps0: float
    exact_max_ratio: float
    exact_checked: int


def attack_structure(cfg: AdaptiveConfig, budget: QueryBudget, rng: np.random.Generator) -> AttackResult:
    """(a): random, grid and gradient queries against one real structure's sure envelope."""
    from dpxattn.fast import DPCrossAttention
    from dpxattn.reference import taylor_attention

    K, V = _data(cfg, rng)
    att = DPCrossAttention.build(K, V, generator=rng, **cfg.build_kwargs())
    truth = _noiseless(cfg, K, V)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    Qr = torch.rand((budget.random, cfg.d), generator=gen, dtype=torch.float64) * cfg.R
    Qg, eps0 = grid_queries(cfg.d, cfg.R, budget.grid)
    rr, _ = _ratios(att, truth, Qr)
    rg, _ = _ratios(att, truth, Qg)
    Qa, ra = _gradient_attack(att, truth, cfg, budget, gen)
    allQ = torch.cat([Qr, Qg, Qa])
    allr = torch.cat([rr, rg, ra])
    worst = torch.argsort(allr, descending=True)[:EXACT_RECHECK]
    Qw = allQ[worst]
    with torch.no_grad():
        ans = att.query(Qw)
        env = att.error_bound(Qw)
    exact = taylor_attention(Qw.numpy(), K.numpy(), V.numpy(), degree=cfg.degree)
    exact_ratio = 0.0
    for i in range(Qw.shape[0]):
        for k in range(cfg.d_v):
            e = abs(float(ans[i, k]) - exact[i][k])  # float answer vs exact truth, in mpmath
            exact_ratio = max(exact_ratio, float(e / env[i, k].item()))
    return AttackResult(
        cfg,
        max_ratio={"random": float(rr.max()), "grid": float(rg.max()), "gradient": float(ra.max())},
        counts={"random": int(Qr.shape[0]), "grid": int(Qg.shape[0]), "gradient": int(Qa.shape[0])},
        worst_query=allQ[int(worst[0])].tolist(),
        eps0=eps0,
        exact_max_ratio=exact_ratio,
        exact_checked=int(Qw.shape[0]),
    )


# ---------------------------------------------------------------------------------------------
# (b) the high-probability bound at its stated failure rate
# ---------------------------------------------------------------------------------------------

def binomial_critical(trials: int, rate: float, alpha: float = ALPHA) -> int:
    """Largest count c with P[Binomial(trials, rate) >= c] >= alpha: more than c violations
    rejects "the violation rate is <= rate" at level alpha."""
    c = 0
    while stats.binom.sf(c, trials, rate) >= alpha:  # sf(c) = P[X >= c + 1]
        c += 1
    return c


@dataclass
class HPTest:
    config: AdaptiveConfig
    trials: int
    failures: int
    union_failures: int
    wrong_failures: int
    critical: int
    max_ratio: float
    #: per designated entry, an upper bound on P(the wrong bound is NOT violated) (None: no
    #: rigorous bound for this structure, copies > 1)
    no_violation: list | None = None


#: the fast inverse CDF's error allowed for (times the support bound A): far above the few ulps
#: tests/test_fast_noise.py verifies
PPF_ERROR = 1e-10
#: Gaussian law: the window bounds hold on the event that every uniform of the structure lies in
#: [2^-40, 1 - 2^-40] (probability >= 1 - count 2^-39, added to the bound); there every draw is
#: within GAUSSIAN_Z_MAX sigma of 0 (Phi^-1(2^-40) = -7.05...)
GAUSSIAN_TAIL_EXPONENT = 40
GAUSSIAN_Z_MAX = 7.1
#: and the seeded uniform (j + 1/2) 2^-52 is within 2^-53 of an exact uniform V, so the draw is
#: within 2^-53 / phi(7.1) sigma < 2e-5 sigma of sigma Phi^-1(V) (the quantile's slope 1/phi),
#: plus the fast quantile's own 16 ulps and the release sum's rounding (2^-52 relative)
GAUSSIAN_COUPLING = 2e-5


def _coupling_factor(laws) -> float:
    """kappa with |released - (exact + Z)| <= kappa (|exact| + A) for a coupling with Z of the
    exact continuous TLap law: the seeded uniform (j + 1/2) 2^-52 is within 2^-53 of an exact
    uniform V, the inverse CDF is Lipschitz with constant 2 b (e^a - 1) = 2 (e^a - 1) A / a,
    the fast inverse CDF is within PPF_ERROR A of the exact one, and the release's sum rounds by
    2^-53 (|exact| + A). Maximum over every law of the structure."""
    worst = 0.0
    for law in laws:
        b = law.b.reshape(-1).double()
        A = law.support_up.reshape(-1).double()
        e_a = law.e_minus_a.reshape(-1).double()
        a = A / b
        slope_over_A = 2.0 * (1.0 / e_a - 1.0) / a
        worst = max(worst, float((2.0**-53 * slope_over_A).max()))
    return (PPF_ERROR + worst + 2.0**-52) * (1.0 + 1e-9)


def _window(C: float, sigma: float, xi: float, D_max: float, n: float, R_w: float) -> float:
    """Upper bound on P(|err| <= WRONG_BOUND_FACTOR hp) for one entry (see
    :func:`wrong_bound_no_violation`): the numerator noise W (log-concave, standard deviation
    ``sigma``, independent of the denominator given everything else) must fall in a window of
    length 2 f C + 2 xi + 2^-48 D_max (R_w + C/n + 1), and a log-concave density is at most
    1/sigma (Lovasz-Vempala 2007, Lemma 5.5(a): an isotropic log-concave density on R is <= 1;
    equivalently Var X sup f^2 <= 1, Bobkov-Chistyakov 2015; equality for the exponential)."""
    f = WRONG_BOUND_FACTOR * (1.0 + 1e-12)
    length = 2.0 * f * C + 2.0 * xi + 2.0**-48 * D_max * (R_w + C / n + 1.0)
    return min(1.0, length / sigma)


def _direct_windows(att, truth, cfg: AdaptiveConfig, Qv: torch.Tensor, failure_prob: float,
                    R_w: float, n: float) -> list[dict]:
    """``direct`` (one copy): per entry, the window bound with C from the envelope's own public
    terms at failure/2, sigma^2 = Var(TLap) |phi(q)|^2 and xi = (gamma_{2r+4} + kappa) times
    sum_t |phi_t(q)| (|S_tk| + A); D_max bounds the released denominator.

    Gaussian law: the numerator noise is N(0, sigma^2 |phi(q)|^2) (log-concave); unbounded, so
    the bound is taken on the event that every uniform lies in [2^-40, 1 - 2^-40], where
    A = GAUSSIAN_Z_MAX sigma and the coupling to the exact normal draw is GAUSSIAN_COUPLING
    sigma; the event's complement (probability <= count 2^-39) is added to each bound."""
    from dpxattn.fast.envelope import gamma, unit_roundoff
    from dpxattn.reference import truncated_laplace as tl

    u64 = unit_roundoff(torch.float64)
    rel = att.release
    terms = rel.envelope_terms(Qv)
    E = rel.noise_bounds(terms, failure_prob / 2)
    Fv = rel.fp_allowance(terms, R_w, Qv.dtype, att.r)
    Fd = rel.fp_allowance(terms, 1.0, Qv.dtype, att.r, denominator=True)
    C = (E + Fv) + R_w * (E + Fd)  # (m,)
    tail = 0.0
    if att.law == "gaussian":  # on the event of GAUSSIAN_TAIL_EXPONENT (its complement: tail)
        var = rel.law.variance
        A = GAUSSIAN_Z_MAX * rel.law.sigma
        kappa = GAUSSIAN_COUPLING
        tail = rel.S.numel() * 2.0 ** (1 - GAUSSIAN_TAIL_EXPONENT)
    else:
        (k_law,) = rel.law.constants
        var = float(tl.variance(k_law.sensitivity, k_law.eps, k_law.delta))
        A = float(rel.law.support_up.max())
        kappa = _coupling_factor([rel.law])
    S = truth.release.S  # exact (noiseless) statistic, (r, d_v + 1)
    Uabs = terms.U.abs()  # (m, r)
    r = Uabs.shape[1]
    out = []
    for i in range(Qv.shape[0]):
        sigma = math.sqrt(var * float(terms.l2sq[i]))
        D_max = float(Uabs[i] @ (S[:, -1].abs() + A)) * (1 + 2.0**-50) + n
        for k in range(cfg.d_v):
            mag = float(Uabs[i] @ (S[:, k].abs() + A))
            xi = (gamma(2 * r + 4, u64) + kappa) * mag
            bound = min(1.0, _window(float(C[i]), sigma, xi, D_max, n, R_w) + tail)
            out.append({"query": i, "column": k, "C": float(C[i]), "sigma": sigma,
                        "xi": xi, "tail": tail, "bound": bound})
    return out


def _tree_windows(att, truth, cfg: AdaptiveConfig, Qv: torch.Tensor, failure_prob: float,
                  R_w: float, n: float) -> list[dict]:
    """``tree`` (one copy): per entry, the window bound with C from the column bounds at the
    median-copy failure / 2; sigma^2 and xi from the numerator's node and scalar noises
    (each coefficient times its node count, halved as in the numerator's formula); D_max =
    the exact denominator plus its sure column bound plus n.

    Gaussian law (every released number N(0, sigma^2)): as for ``direct``, on the event that every
    uniform lies in [2^-40, 1 - 2^-40] (complement: ``tail``, added to each bound), where every
    draw is within A = GAUSSIAN_Z_MAX sigma (the sure column bound of D_max is then the
    denominator column's sum of |coefficient| A) and the coupling is GAUSSIAN_COUPLING."""
    from dpxattn.fast.envelope import gamma, median_copy_failure, unit_roundoff
    from dpxattn.fast.features import features_t

    u64 = unit_roundoff(torch.float64)
    rel = att.release
    q = median_copy_failure(1, failure_prob) / 2
    col = rel.column_bounds(Qv, q)  # (m, d_v + 1)
    U = features_t(Qv, rel.degree, scale=rel.scale).t()  # (m, r)
    sizes = (rel._nodes(U) >= 0).sum(dim=-1).to(torch.float64)  # (m, r)
    norm = (U * U).sum(dim=1)
    coef = torch.stack([U * U, 2.0 * U, torch.ones_like(U)], dim=-1).abs()  # (m, r, 3)
    cols, r = cfg.d_v + 1, U.shape[1]
    tail = 0.0
    if rel.gaussian:
        sigma_g = rel.node_law.sigma
        var = torch.full((cols, r, 3), rel.node_law.variance, dtype=torch.float64)
        var_s = torch.full((cols, 2), rel.scalar_law.variance, dtype=torch.float64)
        A = torch.full((cols, r, 3), GAUSSIAN_Z_MAX * sigma_g, dtype=torch.float64)
        A_s = torch.full((cols, 2), GAUSSIAN_Z_MAX * sigma_g, dtype=torch.float64)
        kappa = GAUSSIAN_COUPLING
        tail = (rel.payload.numel() + rel.scalars.numel()) * 2.0 ** (1 - GAUSSIAN_TAIL_EXPONENT)
        col_sure = None
    else:
        var, var_s = rel.node_law.variance, rel.scalar_law.variance
        A, A_s = rel.node_law.support_up, rel.scalar_law.support_up
        kappa = _coupling_factor([rel.node_law, rel.scalar_law])
        col_sure = rel.column_bounds(Qv, None)
    Mpow = torch.stack([torch.ones_like(rel.bounds), rel.bounds, rel.bounds**2], -1)
    T = float(rel.norm_bound)
    _, D_exact = truth.release.copy_answers(Qv)  # (m, 1)
    out = []
    for i in range(Qv.shape[0]):
        c2s = coef[i] ** 2 * sizes[i].unsqueeze(-1)
        cs = coef[i] * sizes[i].unsqueeze(-1)
        K_terms = 2 + 3 * int(sizes[i].sum())
        if col_sure is not None:
            den_noise = float(col_sure[i, -1])
        else:  # the denominator column (weight 1): its noise on the event, plus its rounding
            a_den = (float(A_s[-1, 1]) + float(norm[i]) * float(A_s[-1, 0])
                     + float((cs * A[-1]).sum())) / 2
            x_den = (n * T + float(norm[i]) * n + float((cs * Mpow).sum()) * n) / 2
            den_noise = a_den + (gamma(2 * K_terms + 4, u64) + kappa) * (x_den + a_den)
        D_max = float(D_exact[i].abs().max()) + den_noise + n
        C_i = col[i, :-1] + R_w * col[i, -1]
        for k in range(cfg.d_v):
            s2 = (float(var_s[k, 1]) + float(norm[i]) ** 2 * float(var_s[k, 0])
                  + float((c2s * var[k]).sum())) / 4
            x_abs = (n * R_w * T + float(norm[i]) * n * R_w
                     + float((cs * Mpow).sum()) * n * R_w) / 2
            a_abs = (float(A_s[k, 1]) + float(norm[i]) * float(A_s[k, 0])
                     + float((cs * A[k]).sum())) / 2
            xi = (gamma(2 * K_terms + 4, u64) + kappa) * (x_abs + a_abs)
            C = float(C_i[k])
            out.append({"query": i, "column": k, "C": C, "sigma": math.sqrt(s2), "xi": xi,
                        "tail": tail,
                        "bound": min(1.0, _window(C, math.sqrt(s2), xi, D_max, n, R_w) + tail)})
    return out


def wrong_bound_no_violation(att, truth, cfg: AdaptiveConfig, Q: torch.Tensor,
                             failure_prob: float) -> list[dict] | None:
    """For every entry (query i, value column k): an upper bound on the chance that one
    structure does NOT violate the over-optimistic bound WRONG_BOUND_FACTOR x hp_error_bound.

    Public quantities only (the same for every structure built on the data): with one copy,
    hp_error_bound <= (C / D~ + 2^-52 |answer|)(1 + 1e-12), C = t_N + R_w t_D the column's
    noise-plus-rounding bounds at failure/2 (the envelope's own public terms) and D~ >= n the
    released denominator, whose noise is independent of the numerator's. The answer is
    (sigma_N + W + xi) / D~ with W the numerator column's noise (a weighted sum of independent
    truncated Laplace draws: log-concave) and |xi| <= xi_max (the coupling of
    :func:`_coupling_factor` and the float rounding gamma_K of the answer's sums). So the
    entry is not violated only if W falls in a window of length about 0.04 C: D~ cancels. With
    several copies the answer is a median and the window grows with the ratio of the copies'
    denominators, which has no useful sure bound: None.
    """
    if att.copies != 1:
        return None
    Qv = att._queries(Q)
    R_w, n = float(att._R_w_up), float(cfg.n)
    windows = _direct_windows if cfg.mechanism == "direct" else _tree_windows
    with torch.no_grad():
        return windows(att, truth, cfg, Qv, failure_prob, R_w, n)


def hp_failure_test(cfg: AdaptiveConfig, trials: int, rng: np.random.Generator,
                    failure_prob: float = PAPER_FAILURE_PROB) -> HPTest:
    """(b): T independent structures, queries fixed before the noise; count violations."""
    from dpxattn.fast import DPCrossAttention

    K, V = _data(cfg, rng)
    truth = _noiseless(cfg, K, V)
    Q = torch.tensor([[cfg.R] * cfg.d, [0.0] * cfg.d, [0.5 * cfg.R] * cfg.d,
                      list(rng.uniform(0.0, cfg.R, cfg.d))], dtype=torch.float64)
    m = Q.shape[0]
    with torch.no_grad():
        exact = truth.query(Q)
    entries = m * cfg.d_v
    fails = union = wrong = 0
    worst = 0.0
    for t in range(trials):
        att = DPCrossAttention.build(K, V, generator=rng, **cfg.build_kwargs())
        with torch.no_grad():
            err = (att.query(Q) - exact).abs()
            hp = att.hp_error_bound(Q, failure_prob)
            hp_union = att.hp_error_bound(Q, failure_prob / entries)
        i, k = divmod(t % entries, cfg.d_v)  # the designated entry of this structure
        fails += bool(err[i, k] > hp[i, k])
        wrong += bool(err[i, k] > WRONG_BOUND_FACTOR * hp[i, k])
        union += bool((err > hp_union).any())
        worst = max(worst, float((err / hp).max()))
    no_violation = wrong_bound_no_violation(att, truth, cfg, Q, failure_prob)
    return HPTest(cfg, trials, fails, union, wrong, binomial_critical(trials, failure_prob), worst,
                  no_violation)


def wrong_bound_escape(h: HPTest) -> tuple[float, dict]:
    """beta of "an over-optimistic bound is rejected": the structures are independent, and
    structure t violates the wrong bound at its designated entry with probability >= 1 - w_e
    (:func:`wrong_bound_no_violation`), so the violation count dominates Binomial(T, q_min),
    q_min = 1 - max_e w_e over the designated entries; the mutant escapes if the count is <= the
    critical count: beta = P(Binomial(T, q_min) <= critical), exactly."""
    from dpxattn.verification.power_bounds import binomial_window_upper

    entries = h.config.d_v * 4
    used = {t % entries for t in range(h.trials)}
    rows = [e for e in h.no_violation if e["query"] * h.config.d_v + e["column"] in used]
    w = max(e["bound"] for e in rows)
    q_min = 1.0 - w
    beta = 1.0 if q_min <= 0 else max(binomial_window_upper(h.trials, q_min, 0, h.critical), 1e-300)
    return beta, {"rule": "binomial_window_upper(T, q_min, 0, critical)", "bound": beta,
                  "T": h.trials, "q_min": q_min, "critical": h.critical,
                  "worst_entry": max(rows, key=lambda e: e["bound"])}


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------

def _attack_records(res: AttackResult) -> list[CheckRecord]:
    cfg = res.config
    total = sum(res.counts.values())
    worst = max(res.max_ratio.values())
    return [
        CheckRecord(
            name=f"adaptive: sure envelope never exceeded [{cfg.describe()}]",
            kind="search",
            tests=(f"{res.counts['random']} random queries, an eps0-net of {res.counts['grid']} "
                   f"points (eps0 = {res.eps0:.3g}, l_inf) and {res.counts['gradient']} gradient-ascent "
                   "iterates (torch autograd through query): |answer - Taylor attention| <= "
                   "error_bound at every query (worst error/envelope ratio reported)"),
            statistic=worst, threshold=1.0, comparison="<=", passed=worst <= 1.0,
            sample_size=total,
            details={"max_ratio_by_strategy": res.max_ratio, "queries_by_strategy": res.counts,
                     "worst_query": res.worst_query, "eps0": res.eps0,
                     "truth": "the same structure built noiselessly (uniforms = 1/2), float64"},
        ),
        CheckRecord(
            name=f"adaptive: worst queries re-checked exactly [{cfg.describe()}]",
            kind="exact",
            tests=(f"for the {res.exact_checked} worst queries the truth is recomputed exactly "
                   "(reference taylor_attention, mpmath): |answer - truth| <= error_bound"),
            statistic=res.exact_max_ratio, threshold=1.0, comparison="<=",
            passed=res.exact_max_ratio <= 1.0, sample_size=res.exact_checked,
        ),
    ]


def _no_sure_envelope_record(cfg: AdaptiveConfig) -> CheckRecord:
    """Gaussian noise is unbounded, so there is no sure envelope to attack (``error_bound``
    raises ``NoSureEnvelopeError``); the record says so and checks that it does."""
    from dpxattn.errors import NoSureEnvelopeError
    from dpxattn.fast import DPCrossAttention

    K = torch.full((2, cfg.d), 0.5 * cfg.R, dtype=torch.float64)
    V = torch.zeros((2, cfg.d_v), dtype=torch.float64)
    att = DPCrossAttention.build(K, V, generator=torch.Generator().manual_seed(0),
                                 **replace(cfg, n=2).build_kwargs())
    try:
        att.error_bound(K)
        refused = False
    except NoSureEnvelopeError:
        refused = True
    return CheckRecord(
        name=f"adaptive: no sure envelope to attack [{cfg.describe()}]", kind="exact",
        tests=("Gaussian noise is unbounded: error_bound must raise NoSureEnvelopeError (the "
               "adaptive attack applies to sure envelopes only; hp_error_bound holds for queries "
               "fixed before the noise and is tested below)"),
        statistic=0.0 if refused else 1.0, threshold=0.0, comparison="<=", passed=refused)


def _hp_records(h: HPTest) -> list[CheckRecord]:
    cfg = h.config
    common = dict(kind="statistical", alpha=ALPHA, sample_size=h.trials)
    recs = [
        CheckRecord(
            name=f"adaptive: hp_error_bound holds at its failure rate {PAPER_FAILURE_PROB:g} [{cfg.describe()}]",
            tests=(f"over {h.trials} independent structures (one designated entry each, queries fixed "
                   f"before the noise) violations of hp_error_bound(Q, {PAPER_FAILURE_PROB:g}) are not "
                   f"more than Binomial({h.trials}, {PAPER_FAILURE_PROB:g}) allows at alpha = {ALPHA:g}"),
            statistic=float(h.failures), threshold=float(h.critical), comparison="<=",
            passed=h.failures <= h.critical,
            details={"observed_rate": h.failures / h.trials, "max_error_over_hp_bound": h.max_ratio},
            **common,
        ),
        CheckRecord(
            name=f"adaptive: union form over all fixed queries holds at rate {PAPER_FAILURE_PROB:g} [{cfg.describe()}]",
            tests=("the paper form 'all queries at once with probability 1 - p_f' on the fixed queries: "
                   "hp_error_bound(Q, p_f/(m d_v)) for every entry; structures with any violation "
                   f"are not more than Binomial({h.trials}, {PAPER_FAILURE_PROB:g}) allows"),
            statistic=float(h.union_failures), threshold=float(h.critical), comparison="<=",
            passed=h.union_failures <= h.critical,
            details={"observed_rate": h.union_failures / h.trials},
            **common,
        ),
    ]
    if h.no_violation is None:  # several copies: no rigorous beta (tests demonstrate the power)
        return recs
    beta, terms = wrong_bound_escape(h)
    recs.append(CheckRecord(
        name=f"adaptive (power): an over-optimistic bound is rejected [{cfg.describe()}]",
        kind="power",
        tests=(f"the same binomial test rejects a deliberately wrong bound ({WRONG_BOUND_FACTOR:g} x "
               "hp_error_bound): its violations exceed the critical value; beta: each structure "
               "violates it with probability >= q_min (the numerator noise, log-concave, must "
               "miss a window of length ~0.04 C), so the count dominates Binomial(T, q_min)"),
        statistic=float(h.wrong_failures), threshold=float(h.critical + 1), comparison=">=",
        passed=h.wrong_failures >= h.critical + 1, beta=beta, sample_size=h.trials,
        details={"observed_rate": h.wrong_failures / h.trials, "beta_terms": terms},
    ))
    return recs


def check_adaptive(ctx: CheckContext) -> list[CheckRecord]:
    """Check 5: adaptive and adversarial queries never break the certified error envelope.

    Once built, a structure answers any number of queries, possibly chosen adaptively by an
    adversary who has seen earlier answers. Because the noise is truncated, every answer's
    error against the noiseless Taylor attention is a fixed combination of bounded draws, so
    `error_bound(Q)` is a sure envelope for every query at once. This check attacks it: per
    structure, random queries, an eps0-net grid of the query box, and gradient ascent (torch
    autograd through `query`) on error/envelope; the worst queries are re-checked with an exact
    (mpmath) truth. It also tests the paper-form high-probability bound `hp_error_bound(Q, 0.01)`
    ("with probability 0.99") over many independent structures with queries fixed in advance:
    its violation count must be compatible with a 1% rate (binomial test, alpha 1e-6).

    How to read: the envelope records' statistic is the worst error/envelope ratio found (must
    be <= 1; typically a few percent: the sure envelope adds the worst case of every draw). The
    binomial records count violations against the critical count. Power: the same binomial
    test rejects an over-optimistic bound (0.02 x hp_error_bound), a power record with a
    derived beta (each structure violates it with probability >= q_min, about 0.55 here, from
    the log-concave numerator noise; beta = P(Binomial(T, q_min) <= critical), below 1e-35);
    structures with several copies have no such record (tests show their power). The Gaussian
    `direct` and `tree` structures have no sure envelope (an exact record checks `error_bound`
    refuses); their `hp_error_bound` gets the same binomial records and power record.

    False alarms: the envelope records are sure (a proven bound); the binomial records have
    alpha = 1e-6 each (8e-6 at quick, 1.2e-5 at standard); the power betas add less than 1e-30.
    """
    rng = ctx.rng
    budget = BUDGETS.get(ctx.level, BUDGETS["standard"])
    if ctx.level == "full" and ctx.scale != 1.0:
        s = ctx.scale
        budget = replace(budget, random=int(budget.random * s), grid=int(budget.grid * s),
                         structures=int(budget.structures * s))
    records: list[CheckRecord] = []
    for cfg in adaptive_configs(ctx.level):
        if cfg.law == "gaussian":
            records.append(_no_sure_envelope_record(cfg))
        else:
            ctx.note(f"attacking {cfg.describe()}")
            records += _attack_records(attack_structure(cfg, budget, rng))
        ctx.note(f"hp bound failure rate over {budget.structures} structures ({cfg.mechanism})")
        records += _hp_records(hp_failure_test(replace(cfg, n=min(cfg.n, 16)), budget.structures, rng))
    return records
