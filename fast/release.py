"""The one place where the fast path adds noise to private sums (PAPER.md §2.1, DESIGN §5).

Every noisy number a fast structure releases goes through :func:`release_`: the ``direct``
statistic ``S``, the tree's scalars ``c0, c1`` and every tree node. It adds iid truncated Laplace
noise, in place, to a tensor whose **row-major order is the documented uniform order** of the
mechanism (``proofs_notes/01-conventions.md``), consuming the :class:`UniformStream` chunk by
chunk along the first dimension. Sensitivities (and budgets) may differ per trailing entry: they
are given as arrays broadcastable to ``values.shape[1:]`` (e.g. one sensitivity per tree column);
each distinct (sensitivity, eps, delta) gets its constants from
:func:`dpxattn.fast.noise.tlap_constants` (sensitivity rounded up, eps and delta down).

A floating-point-hardened release (lattice rounding plus exact discrete noise; issue 5) is meant
to plug in here and only here.

Privacy unit: replace one row of (K, V); the caller passes the l1 sensitivity of each released
group under that adjacency, taken from ``dpxattn.reference.sensitivity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dpxattn.fast.noise import NOISE_CHUNK, TLapConstants, ppf_from_constants, tlap_constants
from dpxattn.fast.uniforms import UniformStream

__all__ = ["NoiseLaw", "noise_law", "release_"]


@dataclass(frozen=True)
class NoiseLaw:
    """Per-entry TLap constants of one released group, as tensors over the trailing shape.

    ``b``, ``support_down``, ``support_up``, ``variance_bound``: float64 tensors of the trailing
    shape (broadcast); ``e_minus_a``, ``one_minus_e_minus_a``: likewise (they depend on
    (eps, delta) only); ``constants``: the distinct :class:`TLapConstants`, for reports.
    """

    shape: tuple
    b: torch.Tensor
    e_minus_a: torch.Tensor
    one_minus_e_minus_a: torch.Tensor
    support_down: torch.Tensor
    support_up: torch.Tensor
    variance: torch.Tensor
    constants: tuple[TLapConstants, ...]

    def to(self, device) -> "NoiseLaw":
        """The same law with its tensors on ``device``."""
        return NoiseLaw(self.shape, *(getattr(self, f).to(device) for f in (
            "b", "e_minus_a", "one_minus_e_minus_a", "support_down", "support_up", "variance")),
            self.constants)


def _exact_variance(k: TLapConstants) -> float:
    """Var TLap = 2 b^2 (1 - delta (a^2 + 2a)/(e^eps - 1)) (PAPER §2.1), rounded up a little."""
    factor = 1.0 - k.delta * (k.a * k.a + 2.0 * k.a) / math.expm1(k.eps)
    return min(2.0 * k.b * k.b, 2.0 * k.b * k.b * factor * (1.0 + 1e-12))


def noise_law(shape, sensitivity, eps, delta, *, device=None) -> NoiseLaw:
    """The constants of TLap(sensitivity, eps, delta) per entry of ``shape``.

    ``sensitivity``, ``eps``, ``delta``: scalars or nested sequences / arrays broadcastable to
    ``shape`` (exact values allowed: ``Fraction``, ``mpf``; they are rounded safely once).
    """
    shape = tuple(int(s) for s in shape)
    arrays = [np.asarray(x, dtype=object) for x in (sensitivity, eps, delta)]
    bs = np.broadcast_arrays(*[np.broadcast_to(a, shape) for a in arrays]) if shape else arrays
    flat = [a.reshape(-1) for a in bs]
    size = int(np.prod(shape)) if shape else 1
    cache: dict = {}
    fields = np.empty((6, size), dtype=np.float64)
    for idx in range(size):
        key = (flat[0][idx], flat[1][idx], flat[2][idx])
        k = cache.get(key)
        if k is None:
            k = tlap_constants(*key)
            cache[key] = k
        fields[:, idx] = (k.b, k.e_minus_a, k.one_minus_e_minus_a, k.support_down,
                          k.support_up, _exact_variance(k))
    t = torch.from_numpy(fields).to(device)
    views = [t[i].reshape(shape) for i in range(6)]
    return NoiseLaw(shape, *views, constants=tuple(dict.fromkeys(cache.values())))


def release_(values: torch.Tensor, law: NoiseLaw, stream: UniformStream) -> torch.Tensor:
    """Add TLap noise in place to ``values`` (float64, any strides), in row-major uniform order.

    ``values``: shape (rows, *law.shape); the uniforms for row i are the next
    ``prod(law.shape)`` of ``stream``, consumed row by row in chunks of about
    :data:`dpxattn.fast.noise.NOISE_CHUNK` entries. Returns ``values``.
    """
    if tuple(values.shape[1:]) != law.shape:
        raise ValueError(f"release_: values {tuple(values.shape)} vs law {law.shape}")
    width = max(1, int(np.prod(law.shape)) if law.shape else 1)
    rows = max(1, NOISE_CHUNK // width)
    args = (law.b, law.support_down, law.e_minus_a, law.one_minus_e_minus_a)
    for start in range(0, values.shape[0], rows):
        stop = min(values.shape[0], start + rows)
        u = stream.take((stop - start) * width).view(stop - start, *law.shape)
        values[start:stop] += ppf_from_constants(u, *args)
    return values

