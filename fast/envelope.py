"""Certified and high-probability envelopes of the fast path, with a floating-point allowance.

Paper: the main theorem's additive error and the adaptive-query guarantee (ICLR Theorem 1.2;
v2 §3, App. H; v3: unverified); spec PAPER.md §4.1, §2.6, §5 item 10; DESIGN §4 and §9(c).
Exact counterpart: ``dpxattn.reference.envelope`` (proof note
``proofs_notes/16-certified-envelope.md``); the fast path's floating-point allowance is derived
in ``proofs_notes/19-fast-path.md``.

The answer's numerator and denominator noises are known linear combinations of independent
truncated Laplace draws, with coefficients fixed by the query. From per-entry sums of those
coefficients this module forms

* the sure noise bound ``sum |c| A`` and, at failure probability p, ``min(sure, Hoeffding,
  Bernstein)`` (the same three thresholds as the reference);
* the ratio step ``(E_N + R_w E_D) / D~`` (``|N_T/D_T| <= R_w``, ``|D~ - D_T| <= E_D`` after
  clamping; conventions "Certified envelope");
* the final rounding step :func:`finalize`: ``+ 2 u_q |answer|`` for the last division (and the
  median's mean), then a relative margin ``1 + MARGIN_ULPS u_64`` and one step up, covering the
  rounding of the bound's own float64 evaluation.

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
    "ratio_bound",
    "finalize",
    "median_copy_failure",
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
    ``l1 = ||P(q)||_1``, ``l2sq = ||P(q)||_2^2``, ``linf = max_t P(q)_t``, ``uM = P(q) . M``."""

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
