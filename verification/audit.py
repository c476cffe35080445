"""Empirical privacy audit: a statistically valid lower bound on eps from black-box samples.

Given draws of a mechanism's output on two neighbouring inputs D and D' (``samples_a`` from
M(D), ``samples_b`` from M(D')), (eps, delta)-DP says that for every event S

    P[M(D) in S] <= e^eps P[M(D') in S] + delta     and the same with D, D' swapped,

so any event with p = P_a(S) > delta certifies ``eps >= ln((p - delta) / q)``, q = P_b(S).
The audit (DESIGN §6; harness check 4; proofs_notes/21-empirical-audit.md):

1. shuffles each side and splits it in two: a *selection* split and a fresh *estimation* split;
2. on the selection split, scores every output by each coordinate and, for (N, k) outputs
   with k > 1, by two linear classifiers fitted there (a Fisher / likelihood-ratio projection
   for Gaussian-like outputs, and an l2-regularised logistic regression);
3. enumerates candidate events ``{score > t}`` and their complements ``{score <= t}`` over a
   grid of thresholds t, in both directions (a over b and b over a), and keeps a few finalists
   (the best event per (score, side, direction) group, then the best groups);
4. on the estimation split only, bounds ``p`` from below and ``q`` from above with one-sided
   Clopper-Pearson intervals (``scipy.stats.beta``), each at level ``alpha / (2 F)`` for F
   finalists (a union bound over every bound the estimation split is used for), and reports
   ``eps_lower_bound = max(0, max_finalists ln((p_lo - delta) / q_hi))``.

Validity: the finalists are a function of the selection split only, which is independent of
the estimation split, so conditionally on the selection they are fixed events; with probability
>= ``confidence`` all 2F one-sided bounds hold at once, and then every finalist's value is
<= the true eps(delta) of the pair. Selection only affects power, never validity.

Paper: none (a verification tool; DESIGN §6 "empirical eps lower bound"). Shapes: ``samples_a``
(N_a,) or (N_a, k), ``samples_b`` (N_b,) or (N_b, k), same k.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from dpxattn.errors import ParameterError, ShapeError
from dpxattn.params import check_real

__all__ = [
    "AuditEvent",
    "AuditResult",
    "audit",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "eps_from_bounds",
    "per_bound_alpha",
    "DEFAULT_FINALISTS",
    "DEFAULT_THRESHOLDS",
    "MIN_SAMPLES_PER_SIDE",
]

#: events carried from the selection split to the estimation split (the union bound's size / 2)
DEFAULT_FINALISTS = 6
#: thresholds per score (pooled quantiles, denser in both tails)
DEFAULT_THRESHOLDS = 256
#: fewer draws than this per side cannot give a split and a bound
MIN_SAMPLES_PER_SIDE = 8


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------

def clopper_pearson_lower(successes, trials, alpha):
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion (vectorised).

    ``Beta(alpha; x, n - x + 1)``; 0 when x = 0. Exact (conservative) for every n.
    """
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = stats.beta.ppf(alpha, np.maximum(x, 1.0), np.maximum(n - x + 1.0, 1.0))
    return np.where(x <= 0, 0.0, lo)


def clopper_pearson_upper(successes, trials, alpha):
    """One-sided (1 - alpha) Clopper-Pearson upper bound (vectorised); 1 when x = n."""
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = stats.beta.ppf(1.0 - alpha, x + 1.0, np.maximum(n - x, 1.0))
    return np.where(x >= n, 1.0, hi)


def eps_from_bounds(p_lo, q_hi, delta):
    """``ln((p_lo - delta) / q_hi)``, or -inf where ``p_lo <= delta`` (no evidence)."""
    p = np.asarray(p_lo, dtype=np.float64) - float(delta)
    q = np.asarray(q_hi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(p > 0, np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300)), -np.inf)
    return out


def per_bound_alpha(confidence: float, finalists: int) -> float:
    """Bonferroni level of each one-sided bound: ``(1 - confidence) / (2 * finalists)``.

    Two bounds (p_lo and q_hi) per finalist event; all hold at once with prob. >= confidence.
    """
    return (1.0 - confidence) / (2.0 * finalists)


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditEvent:
    """An event ``{score(x) > threshold}`` (side ">") or its complement (side "<=").

    ``direction`` "a>b" means p is measured on samples_a and q on samples_b (the inequality
    P_a(S) <= e^eps P_b(S) + delta is tested); "b>a" the swapped inequality.
    """

    score: str
    threshold: float
    side: str
    direction: str

    def describe(self) -> str:
        num, den = ("a", "b") if self.direction == "a>b" else ("b", "a")
        return (f"S = {{{self.score} {self.side} {self.threshold:.6g}}}, "
                f"testing P_{num}(S) <= e^eps P_{den}(S) + delta")


@dataclass(frozen=True)
class AuditResult:
    """The audit's answer. ``eps_lower_bound`` holds with probability >= ``confidence``.

    ``event`` is the finalist that attains the bound (None when no finalist gave evidence,
    i.e. eps_lower_bound = 0); ``p_hat``/``q_hat`` are its estimation-split frequencies and
    ``p_lo``/``q_hi`` their Clopper-Pearson bounds at level ``alpha_per_bound`` each.
    """

    eps_lower_bound: float
    delta: float
    confidence: float
    event: AuditEvent | None
    p_hat: float
    q_hat: float
    p_lo: float
    q_hi: float
    n_select_a: int
    n_select_b: int
    n_estimate_a: int
    n_estimate_b: int
    candidates: int
    finalists: int
    alpha_per_bound: float
    method: str
    scores: tuple[str, ...] = ()
    finalist_table: tuple[dict, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "eps_lower_bound": self.eps_lower_bound,
            "delta": self.delta,
            "confidence": self.confidence,
            "event": None if self.event is None else self.event.describe(),
            "p_hat": self.p_hat,
            "q_hat": self.q_hat,
            "p_lo": self.p_lo,
            "q_hi": self.q_hi,
            "n_select": [self.n_select_a, self.n_select_b],
            "n_estimate": [self.n_estimate_a, self.n_estimate_b],
            "candidates": self.candidates,
            "finalists": self.finalists,
            "alpha_per_bound": self.alpha_per_bound,
            "method": self.method,
            "scores": list(self.scores),
        }

    def __str__(self) -> str:
        lines = [
            f"empirical eps lower bound: {self.eps_lower_bound:.4f}  "
            f"(delta = {self.delta:.3g}, confidence {self.confidence:.6g})",
            f"  event: {self.event.describe() if self.event else 'none gave evidence (bound 0)'}",
            f"  p_hat = {self.p_hat:.6g}, p_lo = {self.p_lo:.6g};  q_hat = {self.q_hat:.6g}, "
            f"q_hi = {self.q_hi:.6g}",
            f"  samples: selection {self.n_select_a} + {self.n_select_b}, estimation "
            f"{self.n_estimate_a} + {self.n_estimate_b}",
            f"  {self.candidates} candidate events on the selection split, {self.finalists} "
            f"finalists, each one-sided bound at alpha = {self.alpha_per_bound:.3g}",
            f"  method: {self.method}",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# scores
# ---------------------------------------------------------------------------------------------

def _as_2d(name: str, samples) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ShapeError(name, "must be a 1-D (N,) or 2-D (N, k) array", f"shape {x.shape}")
    if x.shape[0] < MIN_SAMPLES_PER_SIDE:
        raise ShapeError(name, f"must have at least {MIN_SAMPLES_PER_SIDE} rows", f"{x.shape[0]} rows")
    if x.shape[1] < 1:
        raise ShapeError(name, "must have at least one column", f"shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ShapeError(name, "must be finite (no NaN or inf)")
    return x


def _standardiser(xa: np.ndarray, xb: np.ndarray):
    pooled = np.concatenate([xa, xb])
    mu = pooled.mean(axis=0)
    sd = pooled.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return mu, sd


def _fisher_direction(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """Fisher discriminant Sigma^-1 (mu_a - mu_b) on standardised data (likelihood-ratio
    projection for two Gaussians with a shared covariance)."""
    k = za.shape[1]
    cov = 0.5 * (np.cov(za, rowvar=False).reshape(k, k) + np.cov(zb, rowvar=False).reshape(k, k))
    cov = cov + 1e-6 * np.eye(k)
    return np.linalg.solve(cov, za.mean(axis=0) - zb.mean(axis=0))


def _logistic_direction(za: np.ndarray, zb: np.ndarray, *, ridge: float = 1e-3,
                        iterations: int = 25) -> np.ndarray:
    """l2-regularised logistic regression (label 1 = a) by Newton steps; returns the weights
    on the standardised features (the intercept does not change the ordering of scores)."""
    x = np.concatenate([za, zb])
    y = np.concatenate([np.ones(len(za)), np.zeros(len(zb))])
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    w = np.zeros(design.shape[1])
    reg = ridge * len(x) * np.eye(design.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iterations):
        eta = np.clip(design @ w, -35.0, 35.0)
        prob = 1.0 / (1.0 + np.exp(-eta))
        grad = design.T @ (y - prob) - reg @ w
        weight = prob * (1.0 - prob) + 1e-12
        hess = (design * weight[:, None]).T @ design + reg + 1e-9 * np.eye(design.shape[1])
        step = np.linalg.solve(hess, grad)
        w = w + step
        if float(np.max(np.abs(step))) < 1e-9:
            break
    return w[:-1]


def _fit_scores(sel_a: np.ndarray, sel_b: np.ndarray, *, classifiers: bool, max_fit_rows: int,
                rng: np.random.Generator):
    """Score functions fitted on the selection split: (name, function(X) -> (N,))."""
    k = sel_a.shape[1]
    scores = [(f"coordinate {j}" if k > 1 else "output", (lambda x, j=j: x[:, j])) for j in range(k)]
    if classifiers and k > 1:
        fa = sel_a if len(sel_a) <= max_fit_rows else sel_a[rng.choice(len(sel_a), max_fit_rows, replace=False)]
        fb = sel_b if len(sel_b) <= max_fit_rows else sel_b[rng.choice(len(sel_b), max_fit_rows, replace=False)]
        mu, sd = _standardiser(fa, fb)
        za, zb = (fa - mu) / sd, (fb - mu) / sd
        for name, w in (("Fisher projection", _fisher_direction(za, zb)),
                        ("logistic score", _logistic_direction(za, zb))):
            if np.all(np.isfinite(w)) and np.any(w != 0):
                scores.append((name, (lambda x, w=w, mu=mu, sd=sd: ((x - mu) / sd) @ w)))
    return scores


def _thresholds(sa: np.ndarray, sb: np.ndarray, count: int) -> np.ndarray:
    """Candidate thresholds: midpoints between distinct values when there are few, else pooled
    quantiles at probabilities dense in both tails (where the likelihood ratio is extreme)."""
    pooled = np.concatenate([sa, sb])
    uniq = np.unique(pooled)
    if len(uniq) <= count:
        mids = 0.5 * (uniq[1:] + uniq[:-1])
        return mids if len(mids) else uniq[:1]
    n = len(pooled)
    tail = np.geomspace(1.0 / n, 0.25, count // 4)
    probs = np.unique(np.concatenate([tail, np.linspace(0.25, 0.75, count - 2 * (count // 4)), 1.0 - tail]))
    return np.unique(np.quantile(pooled, probs, method="inverted_cdf"))


def _counts_above(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, side="right")


# ---------------------------------------------------------------------------------------------
# the audit
# ---------------------------------------------------------------------------------------------

def _check_parameters(delta, confidence, finalists, select_fraction, thresholds):
    """Validate the audit's scalar parameters; returns (delta, confidence, finalists) as float,
    float, int (the checks run in this order, so the first bad parameter is the one named)."""
    delta = float(check_real("delta", delta))
    if not (math.isfinite(delta) and 0.0 <= delta < 1.0):
        raise ParameterError("delta", "must satisfy 0 <= delta < 1", delta)
    confidence = float(check_real("confidence", confidence))
    if not (0.0 < confidence < 1.0):
        raise ParameterError("confidence", "must lie strictly inside (0, 1)", confidence)
    check_real("select_fraction", select_fraction)
    if isinstance(finalists, bool) or int(finalists) != finalists or finalists < 1:
        raise ParameterError("finalists", "must be an integer >= 1", finalists)
    if not (0.0 < select_fraction < 1.0):
        raise ParameterError("select_fraction", "must lie strictly inside (0, 1)", select_fraction)
    if isinstance(thresholds, bool) or int(thresholds) != thresholds or thresholds < 4:
        raise ParameterError("thresholds", "must be an integer >= 4", thresholds)
    return delta, confidence, int(finalists)


def _check_samples(samples_a, samples_b) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as (N, k) float64 arrays with the same number of columns k."""
    xa = _as_2d("samples_a", samples_a)
    xb = _as_2d("samples_b", samples_b)
    if xa.shape[1] != xb.shape[1]:
        raise ShapeError("samples_b", f"must have the same number of columns as samples_a ({xa.shape[1]})",
                         f"{xb.shape[1]} columns")
    return xa, xb


def _split(xa: np.ndarray, xb: np.ndarray, select_fraction: float, rng: np.random.Generator):
    """Step 1: shuffle each side and cut it into a selection split (about ``select_fraction``
    of its rows, at least one) and an estimation split (the rest, at least one row).

    Returns ``(sel_a, est_a, sel_b, est_b)``; draws one permutation of a, then one of b.
    """
    xa = xa[rng.permutation(len(xa))]
    xb = xb[rng.permutation(len(xb))]
    ka = min(max(int(round(select_fraction * len(xa))), 1), len(xa) - 1)
    kb = min(max(int(round(select_fraction * len(xb))), 1), len(xb) - 1)
    return xa[:ka], xa[ka:], xb[:kb], xb[kb:]


def _select_finalists(scores, sel_a: np.ndarray, sel_b: np.ndarray, *, thresholds: int,
                      alpha_b: float, delta: float, finalists: int):
    """Step 3, on the selection split only (``scores`` from :func:`_fit_scores`, step 2): every
    candidate event, scored by the bound it will face later (Clopper-Pearson at ``alpha_b``),
    then the ``finalists`` best groups.

    For each (score, side, direction) group the best threshold is kept (ties, e.g. when no
    event shows evidence yet, broken by the plug-in log ratio with a half-count correction).
    Returns ``(chosen, n_candidates)``: chosen rows are ``(value, tie-break, event, score fn)``.
    """
    groups = []  # (value, tie-break, event) -- the best event of each (score, side, direction)
    n_candidates = 0
    for name, fn in scores:
        sa, sb = np.sort(fn(sel_a)), np.sort(fn(sel_b))
        ts = _thresholds(sa, sb, thresholds)
        above_a, above_b = _counts_above(sa, ts), _counts_above(sb, ts)
        for side, ca, cb in ((">", above_a, above_b), ("<=", len(sa) - above_a, len(sb) - above_b)):
            for direction, cp, np_, cq, nq in (("a>b", ca, len(sa), cb, len(sb)),
                                                ("b>a", cb, len(sb), ca, len(sa))):
                n_candidates += len(ts)
                value = eps_from_bounds(clopper_pearson_lower(cp, np_, alpha_b),
                                        clopper_pearson_upper(cq, nq, alpha_b), delta)
                # tie-break (no evidence yet): the plug-in log ratio with a half-count correction
                plug = np.log((cp + 0.5) / (np_ + 1.0)) - np.log((cq + 0.5) / (nq + 1.0))
                i = int(np.lexsort((plug, value))[-1])
                groups.append((float(value[i]), float(plug[i]),
                               AuditEvent(name, float(ts[i]), side, direction), fn))
    groups.sort(key=lambda g: (g[0], g[1]), reverse=True)
    return groups[:finalists], n_candidates


def _estimate(chosen, est_a: np.ndarray, est_b: np.ndarray, alpha_b: float,
              delta: float) -> list[dict]:
    """Step 4, on the fresh estimation split: each finalist's frequencies, its one-sided
    Clopper-Pearson bounds p_lo and q_hi at ``alpha_b`` each, and its eps value.

    The union bound is over 2 * len(chosen) bounds; ``alpha_b`` was fixed with ``finalists``,
    so fewer chosen events only make it conservative.
    """
    table = []
    for _, _, ev, fn in chosen:
        sa, sb = fn(est_a), fn(est_b)
        in_a = int(np.count_nonzero(sa > ev.threshold)) if ev.side == ">" else int(np.count_nonzero(sa <= ev.threshold))
        in_b = int(np.count_nonzero(sb > ev.threshold)) if ev.side == ">" else int(np.count_nonzero(sb <= ev.threshold))
        if ev.direction == "a>b":
            cp, np_, cq, nq = in_a, len(sa), in_b, len(sb)
        else:
            cp, np_, cq, nq = in_b, len(sb), in_a, len(sa)
        p_lo = float(clopper_pearson_lower(cp, np_, alpha_b))
        q_hi = float(clopper_pearson_upper(cq, nq, alpha_b))
        table.append({"event": ev, "p_hat": cp / np_, "q_hat": cq / nq, "p_lo": p_lo, "q_hi": q_hi,
                      "eps": float(eps_from_bounds(p_lo, q_hi, delta))})
    return table


def _result(table: list[dict], score_names: tuple[str, ...], splits, *, delta: float,
            confidence: float, finalists: int, alpha_b: float, select_fraction: float,
            n_candidates: int) -> AuditResult:
    """The :class:`AuditResult`: the best finalist's value, floored at 0 (no event when no
    finalist gave evidence), with the split sizes and a one-line description of the method."""
    sel_a, est_a, sel_b, est_b = splits
    best = max(table, key=lambda r: r["eps"])
    bound = best["eps"] if best["eps"] > 0 else 0.0
    method = (
        f"threshold events on {', '.join(score_names)} (and complements, both directions); "
        f"chosen on a {select_fraction:.0%} selection split, bounded on the fresh rest with one-sided "
        f"Clopper-Pearson; union bound over {finalists} finalists x 2 bounds"
    )
    return AuditResult(
        eps_lower_bound=float(bound),
        delta=delta,
        confidence=confidence,
        event=best["event"] if best["eps"] > 0 else None,
        p_hat=float(best["p_hat"]),
        q_hat=float(best["q_hat"]),
        p_lo=best["p_lo"],
        q_hi=best["q_hi"],
        n_select_a=len(sel_a),
        n_select_b=len(sel_b),
        n_estimate_a=len(est_a),
        n_estimate_b=len(est_b),
        candidates=n_candidates,
        finalists=finalists,
        alpha_per_bound=alpha_b,
        method=method,
        scores=score_names,
        finalist_table=tuple(
            {**{k: v for k, v in r.items() if k != "event"}, "event": r["event"].describe()} for r in table
        ),
    )


def audit(samples_a, samples_b, *, delta, confidence=0.95, rng=None,
          finalists: int = DEFAULT_FINALISTS, thresholds: int = DEFAULT_THRESHOLDS,
          select_fraction: float = 0.5, classifiers: bool = True,
          max_fit_rows: int = 200_000) -> AuditResult:
    """A lower bound on eps(delta) of a mechanism from its outputs on neighbours D, D'.

    ``samples_a``: (N_a,) or (N_a, k) outputs on D; ``samples_b``: (N_b,) or (N_b, k) on D'.
    ``delta`` in [0, 1); ``confidence`` in (0, 1): with at least this probability the returned
    ``eps_lower_bound`` is <= the smallest eps for which the mechanism is (eps, delta)-DP on
    this pair (in both directions). ``rng``: a ``numpy.random.Generator`` for the split and the
    classifier's subsample; None draws a fresh one from OS entropy (the split only needs to be
    independent of the samples, so this is not a privacy-relevant source).

    Returns an :class:`AuditResult`; see the module docstring for the method (steps 1-4 below).
    """
    delta, confidence, finalists = _check_parameters(delta, confidence, finalists,
                                                     select_fraction, thresholds)
    xa, xb = _check_samples(samples_a, samples_b)
    if rng is None:
        rng = np.random.default_rng(int.from_bytes(os.urandom(16), "little"))

    sel_a, est_a, sel_b, est_b = _split(xa, xb, select_fraction, rng)
    alpha_b = per_bound_alpha(confidence, finalists)
    scores = _fit_scores(sel_a, sel_b, classifiers=classifiers, max_fit_rows=max_fit_rows, rng=rng)
    chosen, n_candidates = _select_finalists(scores, sel_a, sel_b, thresholds=thresholds,
                                             alpha_b=alpha_b, delta=delta, finalists=finalists)
    table = _estimate(chosen, est_a, est_b, alpha_b, delta)
    return _result(table, tuple(name for name, _ in scores), (sel_a, est_a, sel_b, est_b),
                   delta=delta, confidence=confidence, finalists=finalists, alpha_b=alpha_b,
                   select_fraction=select_fraction, n_candidates=n_candidates)
