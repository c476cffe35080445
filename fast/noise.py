"""Truncated Laplace noise in torch by exact-CDF inversion in float64 (PAPER.md §2.1).

Paper: TLap(Delta, eps, delta), the truncated Laplace mechanism the DPTree adds to every node
(v2 §2 / App. B); spec PAPER.md §2.1; conventions proofs_notes/01-conventions.md;
fast-path numerics proofs_notes/19-fast-path.md.

Law: ``b = Delta/eps``, ``a = ln(1 + (e^eps - 1)/(2 delta))``, ``A = b a``; density proportional
to ``exp(-|z|/b)`` on ``[-A, A]``. One uniform per draw, ``z = ppf(u)``:
``|z| = -b ln(1 - q (1 - e^-a))`` with ``q = |2u - 1|`` and the sign of ``u - 1/2``.

Float64 evaluation (same real function as the conventions' formula, accurate to a few ulps over
the whole of (0, 1), including uniforms within 1e-16 of 0 or 1 where the textbook
``log1p(-q (1 - e^-a))`` loses up to ``e^a`` ulps):

* ``t = 2 min(u, 1 - u)`` (exact), the two-sided tail mass beyond ``|z|``;
* centre (``p = (1 - t)(1 - e^-a) <= 1/2``): ``|z| = -b log1p(-p)``;
* tails (``p > 1/2``): ``|z| = -b log(e^-a + t (1 - e^-a))`` (a sum of positive terms, no
  cancellation), with ``e^-a = 2 delta/(2 delta + e^eps - 1)`` and
  ``1 - e^-a = (e^eps - 1)/(2 delta + e^eps - 1)`` computed without cancellation.

Finally ``|z|`` is clamped to ``A_down`` (the largest float64 <= the exact ``A``), so every sample
lies inside the exact support; ``A_up`` (the smallest float64 >= the exact ``A``, from interval
arithmetic) is the sure bound envelopes use. Parameters are rounded in the safe direction first
(sensitivity up, eps and delta down; :mod:`dpxattn.fast.directed`).

Shapes: ``truncated_laplace(shape, ...)`` returns a tensor of ``shape``; ``tlap_ppf(u, ...)`` maps
a float64 tensor of any shape elementwise.

Gaussian law (``law="gaussian"``; ``proofs_notes/24-analytic-gaussian.md``): one uniform per draw
in the same order, ``z = sigma Phi^-1(u)`` (:func:`gaussian_ppf`), with ``Phi^-1`` evaluated as
``-ndtri(t)`` on ``t = min(u, 1 - u)`` (exact) and the sign of ``u - 1/2``
(:func:`normal_quantile`): ``torch.special.ndtri`` is accurate to a few ulps on (0, 1/2],
including the far tail (u = 1e-300, subnormals), and the reflection keeps uniforms near 1 as
accurate as those near 0 (``1 - u`` is exact there). ``u = 1/2`` gives exactly 0. sigma comes
from the exact reference (``dpxattn.reference.gaussian.sigma_for``), rounded up once
(:func:`dpxattn.fast.sensitivities.direct_gaussian_constants`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from dpxattn.errors import ParameterError
from dpxattn.fast.directed import (float_down, float_up, interval_bounds, interval_context,
                                   memo_safe)
from dpxattn.fast.uniforms import UniformStream, uniform_stream
from dpxattn.params import check_delta, check_eps, check_positive

__all__ = [
    "NOISE_CHUNK",
    "TLapConstants",
    "tlap_constants",
    "tlap_ppf",
    "ppf_from_constants",
    "truncated_laplace",
    "fill_noise",
    "normal_quantile",
    "gaussian_ppf",
    "gaussian",
]

#: uniforms converted per step: bounds the temporaries of a large draw (1e8 draws need only the
#: output plus a few chunk-sized buffers)
NOISE_CHUNK = 1 << 17


@dataclass(frozen=True)
class TLapConstants:
    """The float64 constants of TLap(sensitivity, eps, delta), from one function.

    ``sensitivity`` (rounded up), ``eps`` and ``delta`` (rounded down) are the float64 parameters
    actually used; ``b = sensitivity/eps`` (nearest); ``a`` the truncation; ``e_minus_a`` and
    ``one_minus_e_minus_a`` evaluated without cancellation; ``support_down <= A <= support_up``
    bracket the exact ``A = b a`` of the float64 parameters (interval arithmetic). Samples are
    clamped to ``support_down``; envelopes use ``support_up``.
    """

    sensitivity: float
    eps: float
    delta: float
    b: float
    a: float
    e_minus_a: float
    one_minus_e_minus_a: float
    support_down: float
    support_up: float

    @property
    def A(self) -> float:
        """The sure support bound (rounded up): what envelopes multiply."""
        return self.support_up

    @property
    def variance_bound(self) -> float:
        """``2 b^2``, an upper bound on the exact variance (PAPER §2.1: Var < 2 Delta^2/eps^2)."""
        return 2.0 * self.b * self.b


@lru_cache(maxsize=4096)
def _constants(sens: float, eps: float, delta: float) -> TLapConstants:
    try:
        em1 = math.expm1(eps)
        x = em1 / (2.0 * delta)
    except OverflowError:  # eps > ~709.78: e^eps itself overflows float64
        x = math.inf
    if not math.isfinite(x):
        raise ParameterError("eps", "too large for float64 truncation constants "
                             "((e^eps - 1)/(2 delta) overflows)", eps)
    a = math.log1p(x)
    denom = 2.0 * delta + em1
    e_minus_a = 2.0 * delta / denom
    c = em1 / denom
    iv = interval_context()
    s_i, e_i, d_i = iv.mpf(sens), iv.mpf(eps), iv.mpf(delta)
    A_iv = (s_i / e_i) * iv.log(1 + (iv.exp(e_i) - 1) / (2 * d_i))
    A_down, A_up = interval_bounds(A_iv)
    return TLapConstants(sens, eps, delta, sens / eps, a, e_minus_a, c, A_down, A_up)


def tlap_constants(sensitivity, eps, delta) -> TLapConstants:
    """Float64 constants (b, a, A, ...) of TLap(sensitivity, eps, delta) (PAPER §2.1).

    Exact inputs (``Fraction``, ``mpf``, ``int``) are rounded once in the safe direction:
    sensitivity up, eps and delta down. Validates ``sensitivity > 0``, ``eps > 0``,
    ``0 < delta <= 1/2`` with :mod:`dpxattn.params` (typed errors naming the bound).
    Memoised on the arguments as given (type and value: public parameters only; the result is a
    frozen record), so the exact roundings run once per distinct triple; invalid arguments are
    never memoised and raise the same errors every time.
    """
    if memo_safe(sensitivity, eps, delta):
        return _tlap_constants_memo(sensitivity, eps, delta)
    return _tlap_constants(sensitivity, eps, delta)


def _tlap_constants(sensitivity, eps, delta) -> TLapConstants:
    check_positive("sensitivity", sensitivity)
    check_eps(eps)
    check_delta(delta)
    sens = float_up(sensitivity, "sensitivity")
    e = float_down(eps, "eps")
    dl = float_down(delta, "delta")
    if e <= 0.0 or dl <= 0.0:
        raise ParameterError("eps, delta", "must be representable as positive float64", (eps, delta))
    return _constants(sens, e, dl)


_tlap_constants_memo = lru_cache(maxsize=4096, typed=True)(_tlap_constants)


def ppf_from_constants(u: torch.Tensor, b, support_down, e_minus_a,
                       one_minus_e_minus_a) -> torch.Tensor:
    """Elementwise ``ppf(u)`` (float64) with scale ``b`` and clamp ``support_down``.

    Every constant may be a Python float or a float64 tensor broadcastable against ``u`` (one
    column per sensitivity, as in the tree payload); ``e_minus_a`` and ``one_minus_e_minus_a``
    depend on (eps, delta) only. ``u`` must be float64 in (0, 1).
    """
    t = torch.minimum(u, 1.0 - u).mul_(2.0)
    p = (1.0 - t).mul_(one_minus_e_minus_a)
    centre = torch.log1p(p.neg())
    tail = t.mul_(one_minus_e_minus_a).add_(e_minus_a).log_()
    mag = torch.where(p <= 0.5, centre, tail).mul_(-1.0).mul_(b)
    if isinstance(support_down, torch.Tensor):
        torch.minimum(mag, support_down, out=mag)
    else:
        mag.clamp_(max=support_down)
    return mag.copysign_(u - 0.5)


def tlap_ppf(u, sensitivity, eps, delta) -> torch.Tensor:
    """The inverse CDF of TLap(sensitivity, eps, delta) at ``u`` (float64 tensor, any shape).

    ``u`` must lie strictly inside (0, 1); ``ppf(1/2) = 0`` exactly; the result never leaves the
    exact support ``[-A, A]``. Paper: TLap (v2 §2 / App. B); PAPER.md §2.1.
    """
    u = torch.as_tensor(u, dtype=torch.float64)
    k = tlap_constants(sensitivity, eps, delta)
    return ppf_from_constants(u, k.b, k.support_down, k.e_minus_a, k.one_minus_e_minus_a)


def fill_noise(out: torch.Tensor, stream: UniformStream, k: TLapConstants) -> torch.Tensor:
    """Fill the 1-D float64 (or float32) tensor ``out`` with TLap draws, chunk by chunk."""
    total = out.numel()
    for start in range(0, total, NOISE_CHUNK):
        stop = min(total, start + NOISE_CHUNK)
        u = stream.take(stop - start)
        z = ppf_from_constants(u, k.b, k.support_down, k.e_minus_a, k.one_minus_e_minus_a)
        out[start:stop] = z
    return out


def _check_shape_dtype(shape, dtype) -> tuple[int, ...]:
    """A sampler's output shape (an int or a sequence of sizes >= 0) as a tuple, and its dtype
    (float64 or float32): ParameterError naming the bad one."""
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ParameterError("shape", "must have non-negative sizes", shape)
    if dtype not in (torch.float64, torch.float32):
        raise ParameterError("dtype", "must be torch.float64 or torch.float32", dtype)
    return shape


def truncated_laplace(shape, sensitivity, eps, delta, *, generator=None, uniforms=None,
                      dtype=torch.float64, device=None) -> torch.Tensor:
    """iid TLap(sensitivity, eps, delta) draws of the given ``shape`` (PAPER §2.1).

    Paper: truncated Laplace (v2 §2 / App. B); spec PAPER.md §2.1.
    Uniforms: ``generator=None`` secure (OS CSPRNG), a ``torch.Generator`` or
    ``numpy.random.Generator`` (seeded: tests only), or ``uniforms`` (1-D, length
    ``prod(shape)``, consumed in row-major order of ``shape``). Inversion runs in float64 whatever
    ``dtype`` is; a float32 result is the float64 draw rounded to nearest (so within
    ``A (1 + 2^-24)``). Memory: the output plus chunk-sized temporaries (:data:`NOISE_CHUNK`).
    """
    shape = _check_shape_dtype(shape, dtype)
    k = tlap_constants(sensitivity, eps, delta)
    count = math.prod(shape)
    if device is None and isinstance(generator, torch.Generator):
        device = generator.device
    stream = uniform_stream(count, generator=generator, uniforms=uniforms, device=device)
    out = torch.empty(count, dtype=dtype, device=stream.device)
    fill_noise(out, stream, k)
    stream.finish()
    return out.view(shape)


def normal_quantile(u: torch.Tensor) -> torch.Tensor:
    """Phi^-1(u) elementwise for a float64 tensor ``u`` in (0, 1): ``-ndtri(min(u, 1 - u))``
    with the sign of ``u - 1/2`` (exact reflection; 0 at u = 1/2; odd: q(1 - u) = -q(u)).

    Measured against the reference's exact quantile (``reference.gaussian.ppf``): within 5 ulps
    over (0, 1), from 2^-1074 to 1 - 2^-53 (``tests/test_gaussian_direct.py``).
    """
    t = torch.minimum(u, 1.0 - u)
    return torch.special.ndtri(t).neg_().copysign_(u - 0.5)


def gaussian_ppf(u: torch.Tensor, sigma) -> torch.Tensor:
    """sigma Phi^-1(u) (float64, elementwise): the Gaussian draw of one uniform per entry.

    ``sigma``: a Python float or a float64 tensor broadcastable against ``u``. Paper: none (our
    Gaussian law); the reference's twin is ``dpxattn.reference.gaussian.ppf``.
    """
    return normal_quantile(u).mul_(sigma)


def gaussian(shape, sigma, *, generator=None, uniforms=None, dtype=torch.float64,
             device=None) -> torch.Tensor:
    """iid N(0, sigma^2) draws of ``shape``, one uniform each (``sigma Phi^-1(u)``, float64).

    ``sigma`` > 0 (a number; rounded up to float64 once). Uniforms as in
    :func:`truncated_laplace` (``generator=None``: OS CSPRNG; a seeded generator; or
    ``uniforms``, consumed in row-major order). Float inversion only: idealised real arithmetic,
    not a hardened sampler. Paper: none. Proof note ``proofs_notes/24-analytic-gaussian.md``.
    """
    check_positive("sigma", sigma)
    sg = float_up(sigma, "sigma")
    shape = _check_shape_dtype(shape, dtype)
    count = math.prod(shape)
    if device is None and isinstance(generator, torch.Generator):
        device = generator.device
    stream = uniform_stream(count, generator=generator, uniforms=uniforms, device=device)
    out = torch.empty(count, dtype=dtype, device=stream.device)
    for start in range(0, count, NOISE_CHUNK):
        stop = min(count, start + NOISE_CHUNK)
        out[start:stop] = gaussian_ppf(stream.take(stop - start), sg)
    stream.finish()
    return out.view(shape)
