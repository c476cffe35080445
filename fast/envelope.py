"""Certified and high-probability envelopes of the fast path, with a floating-point allowance.

Paper: the main theorem's additive error and the adaptive-query guarantee (ICLR Theorem 1.2;
v2 §3, App. H); spec PAPER.md §4.1, §2.6, §5 item 10; DESIGN §4 and §9(c).
Exact counterpart: ``dpxattn.reference.envelope`` (proof note
``proofs_notes/16-certified-envelope.md``); the fast path's floating-point allowance is derived
in ``proofs_notes/19-fast-path.md``.

The answer's numerator and denominator noises are known linear combinations of independent
truncated Laplace draws, with coefficients fixed by the query. From per-entry sums of those
coefficients this module forms

* the sure noise bound ``sum |c| A`` and, at failure probability p, ``min(sure, Hoeffding,
  Bernstein, Chernoff)`` (the same four thresholds as the reference; Chernoff uses the exact
  truncated Laplace moment generating function with lambda found by the same golden-section
  search on log lambda);
* the ratio step ``(E_N + R_w E_D) / D~`` (``|N_T/D_T| <= R_w``, ``|D~ - D_T| <= E_D`` after
  clamping; conventions "Certified envelope"); for the high-probability envelope also the
  reference's released-answer form ``(t_N + |a| t_D) / (D~ - t_D)`` (a = the copy's answer);
* the final rounding step :func:`finalize`: ``+ 2 u_q |answer|`` for the last division (and the
  median's mean), then a relative margin ``1 + MARGIN_ULPS u_64`` and one step up, covering the
  rounding of the bound's own float64 evaluation.

Gaussian law (``law="gaussian"``, ``direct``): no sure bound exists; at failure probability p
the noise ``U . Z[:, k]`` is exactly N(0, sigma^2 ||U||_2^2), bounded by
``sigma z_p ||U||_2 (1 + gamma(r + 8))`` with ``z_p = Phi^-1(1 - p/2)`` from the reference, rounded
up (:func:`gaussian_quantile`, :func:`gaussian_noise_bound`); the ratio step is the same.

Floating-point constants: ``u`` is the unit roundoff of a dtype (2^-53 for float64, 2^-24 for
float32) and ``gamma(k, u) = k u / (1 - k u)`` the classical bound on k accumulated roundings
(Higham, *Accuracy and Stability of Numerical Algorithms*, Lemma 3.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from dpxattn.fast.directed import float_down

__all__ = [
    "MARGIN_ULPS",
    "unit_roundoff",
    "gamma",
    "DirectEnvelopeTerms",
    "bernstein_hoeffding_sure",
    "tlap_log_mgf",
    "chernoff_bound",
    "hp_noise_bound",
    "ratio_bound",
    "hp_ratio_bound",
    "finalize",
    "median_copy_failure",
    "gaussian_quantile",
    "gaussian_noise_bound",
]

#: relative margin (in float64 ulps) covering the float64 evaluation of the bound itself
MARGIN_ULPS = 256


def unit_roundoff(dtype: torch.dtype) -> float:
    """2^-53 (float64) or 2^-24 (float32)."""
    return 2.0**-53 if dtype == torch.float64 else 2.0**-24


def gamma(k: int, u: float) -> float:
    """k u / (1 - k u), rounded up (valid while k u < 1/2)."""
    ku = k * u
    if ku >= 0.5:
        return math.inf
    return math.nextafter(ku / (1.0 - ku), math.inf) * (1 + 2.0**-50)


@dataclass(frozen=True)
class DirectEnvelopeTerms:
    """Coefficient sums of the ``direct`` noise at m queries (each (m,), float64):
    ``l1 = ||P(q)||_1``, ``l2sq = ||P(q)||_2^2``, ``linf = max_t P(q)_t``, ``uM = P(q) . M``;
    ``U`` (m, r) the coefficients themselves (for the Chernoff bound)."""

    U: torch.Tensor
    l1: torch.Tensor
    l2sq: torch.Tensor
    linf: torch.Tensor
    uM: torch.Tensor


def bernstein_hoeffding_sure(*, sure, sum_c2_A2, sum_c2_var, max_cA, failure):
    """Noise bound for a linear combination sum c_i Z_i of independent bounded draws.

    ``failure`` None: the sure bound ``sum |c_i| A_i``. Otherwise ``min(sure, Hoeffding,
    Bernstein)`` at failure probability ``failure``: Hoeffding ``sqrt(2 ln(2/p) sum c^2 A^2)``;
    Bernstein ``h + sqrt(h^2 + 2 V L)``, ``L = ln(2/p)``, ``h = M L / 3``, ``V = sum c^2 sigma^2``,
    ``M = max |c| A`` (each threshold holds with probability >= 1 - p; so does their minimum,
    fixed before the draw). Tensors of any common shape.
    """
    if failure is None:
        return sure
    L = math.log(2.0 / failure)
    hoeffding = torch.sqrt(2.0 * L * sum_c2_A2)
    h = max_cA * (L / 3.0)
    bernstein = h + torch.sqrt(h * h + 2.0 * L * sum_c2_var)
    return torch.minimum(sure, torch.minimum(hoeffding, bernstein))


def tlap_log_mgf(mu: torch.Tensor, b, A) -> torch.Tensor:
    """log E[exp(mu Z)], Z ~ TLap with Laplace scale b and half-width A, in float64 (closed form).

    E[e^{mu Z}] = B (I_1 + I_2), B = 1/(2 b (1 - e^{-A/b})), I_1 = int_0^A e^{(|mu| - 1/b) z} dz,
    I_2 = int_0^A e^{-(|mu| + 1/b) z} dz; the float64 twin of
    ``dpxattn.reference.envelope.tlap_log_mgf`` (same formula as its float search helper).
    """
    mu = mu.abs()
    beta = 1.0 / b
    log_B = -torch.log(2.0 * b) - torch.log(-torch.expm1(-A / b))
    diff = mu - beta
    ad = diff.abs() * A
    log_core = torch.log(-torch.expm1(-ad)) - torch.log(diff.abs())
    log_i1 = torch.where(diff > 0, diff * A + log_core, log_core)
    log_i1 = torch.where(ad < 1e-300, torch.log(A * torch.ones_like(ad)), log_i1)
    log_i2 = torch.log(-torch.expm1(-(mu + beta) * A)) - torch.log(mu + beta)
    return log_B + torch.logaddexp(log_i1, log_i2)


_INV_PHI = (math.sqrt(5) - 1) / 2
_GOLDEN_STEPS = 48


def chernoff_bound(coef: torch.Tensor, count: torch.Tensor, b: torch.Tensor, A: torch.Tensor,
                   failure: float) -> torch.Tensor:
    """Chernoff threshold with the exact TLap MGF: P[|sum c_i Z_i| > t] <= failure.

    Terms along the last axis: ``coef`` |c| (..., T), ``count`` multiplicity of each term (the
    number of iid draws sharing that coefficient and law), ``b``/``A`` broadcastable to (..., T).
    ``t(lambda) = (ln(2/p) + sum count log E[e^{lambda c Z}]) / lambda`` is valid for every
    lambda > 0; lambda is chosen per entry by the reference's golden-section search on
    log lambda over [ln(1e-8/s), ln(1e8/s)], s = max c b, 48 steps, vectorised over entries.
    """
    L = math.log(2.0 / failure)
    coef = coef.abs()
    scale = (coef * b).amax(dim=-1).clamp_min(1e-300)

    def t_of(x: torch.Tensor) -> torch.Tensor:
        lam = torch.exp(x)
        return (L + (count * tlap_log_mgf(lam.unsqueeze(-1) * coef, b, A)).sum(dim=-1)) / lam

    lo = torch.log(1e-8 / scale)
    hi = torch.log(1e8 / scale)
    x1 = hi - _INV_PHI * (hi - lo)
    x2 = lo + _INV_PHI * (hi - lo)
    f1, f2 = t_of(x1), t_of(x2)
    for _ in range(_GOLDEN_STEPS):
        left = f1 <= f2
        hi = torch.where(left, x2, hi)
        lo = torch.where(left, lo, x1)
        nx1 = torch.where(left, hi - _INV_PHI * (hi - lo), x2)
        nx2 = torch.where(left, x1, lo + _INV_PHI * (hi - lo))
        point = torch.where(left, nx1, nx2)
        fp = t_of(point)
        f1, f2 = torch.where(left, fp, f2), torch.where(left, f1, fp)
        x1, x2 = nx1, nx2
    best = torch.where(f1 <= f2, f1, f2)
    return torch.where(coef.amax(dim=-1) > 0, best, torch.zeros_like(best))


def hp_noise_bound(*, sure, sum_c2_A2, sum_c2_var, max_cA, coef, count, b, A, failure,
                   offset=None):
    """min(sure, Hoeffding, Bernstein, Chernoff) at failure probability ``failure``.

    ``offset`` given (the hardened release): the error is a deterministic rounding part
    bounded by ``offset`` (sum |c| g/2) plus zero-mean discrete noise described by
    ``sum_c2_A2``, ``sum_c2_var``, ``max_cA`` (bound K g, variance <= 2 (t g)^2); the result is
    ``min(sure, offset + min(Hoeffding, Bernstein))`` and the TLap Chernoff is not used (its MGF
    is the continuous law's). ``coef``, ``count``, ``b``, ``A`` are then ignored."""
    first = bernstein_hoeffding_sure(sure=sure, sum_c2_A2=sum_c2_A2, sum_c2_var=sum_c2_var,
                                     max_cA=max_cA, failure=failure)
    if offset is not None:
        return torch.minimum(sure, offset + first)
    return torch.minimum(first, chernoff_bound(coef, count, b, A, failure))


def hp_ratio_bound(num_bound: torch.Tensor, den_bound: torch.Tensor, R_w: float,
                   denominator: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """min((t_N + R_w t_D)/D~, (t_N + |a| t_D)/(D~ - t_D) where D~ > t_D), a = the answer.

    On the event |N~ - N_T| <= t_N and |D~ - D_T| <= t_D, |a - N_T/D_T| <= both (the
    reference's ``hp_ratio_error_bound``; proof note ``proofs_notes/16-certified-envelope.md``).
    """
    first = ratio_bound(num_bound, den_bound, R_w, denominator)
    gap = denominator - den_bound
    second = (num_bound + answer.abs() * den_bound) / torch.where(gap > 0, gap, torch.ones_like(gap))
    return torch.where(gap > 0, torch.minimum(first, second), first)


def ratio_bound(num_bound: torch.Tensor, den_bound: torch.Tensor, R_w: float,
                denominator: torch.Tensor) -> torch.Tensor:
    """(E_N + R_w E_D) / D~ (broadcasting): the answer's error given the two noise bounds."""
    return (num_bound + R_w * den_bound) / denominator


def finalize(bound: torch.Tensor, answer: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Add the last rounding steps and the margin; returns float64 (see the module docstring)."""
    uq = unit_roundoff(dtype)
    out = bound + 2.0 * uq * answer.detach().to(torch.float64).abs()
    out = out * (1.0 + MARGIN_ULPS * 2.0**-53)
    return torch.nextafter(out, torch.full_like(out, math.inf))


@lru_cache(maxsize=128)
def median_copy_failure(copies: int, failure_prob: float) -> float:
    """Per-copy failure probability q with P[Bin(l, q) >= ceil(l/2)] <= p (float64, rounded
    down), from the reference's exact binomial bisection (``dpxattn.reference.envelope``)."""
    if copies == 1:
        return failure_prob
    from dpxattn.reference import envelope as ref_env
    from dpxattn.reference._mp import context

    ctx = context(None)
    q = ref_env.median_copy_failure_prob(copies, failure_prob, ctx)
    return float_down(q, "q")


@lru_cache(maxsize=256)
def gaussian_quantile(failure_prob: float) -> float:
    """z = Phi^-1(1 - p/2) as a float64 >= the exact value: P[|N(0, 1)| > z] <= p. From the
    reference's ``envelope.gaussian_quantile`` (exact normal quantile, rounded up), rounded up."""
    from dpxattn.fast.sensitivities import round_up
    from dpxattn.reference import envelope as ref_env
    from dpxattn.reference._mp import context

    return round_up(ref_env.gaussian_quantile(failure_prob, context(None)), "normal quantile")


def gaussian_noise_bound(sigma: float, l2sq: torch.Tensor, r: int,
                         failure: float) -> torch.Tensor:
    """t = sigma z_p ||U||_2 (1 + gamma(r + 8, u64)): P[|U . Z| > t] <= p for Z iid N(0, sigma^2)
    and fixed coefficients U (``l2sq`` = ||U||_2^2 evaluated in float64 over r terms; the factor
    covers that sum's and the square root's rounding, so t is at least the exact threshold of
    the computed coefficients). ``(m,)`` float64."""
    z = gaussian_quantile(failure)
    return torch.sqrt(l2sq) * (sigma * z * (1.0 + gamma(r + 8, unit_roundoff(torch.float64))))
