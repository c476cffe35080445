"""Refusing what cannot fit: the memory a build needs, estimated before anything is allocated.

Paper: none (software). The feature dimension r = C(d + s, s) of the degree-s Taylor features
(PAPER §2.3) grows fast: d = 16, s = 20 gives r ~ 7e9, whose released statistic alone is
hundreds of GB. Both builds call :func:`check_build_memory` as soon as (n, d, d_v) are known and
before any r-sized allocation, and refuse with :class:`dpxattn.errors.ResourceError` when the
estimate exceeds the budget (:func:`memory_budget`).

Estimates (bytes; upper estimates of the peak, not exact):

* fast ``direct``: 8 r (3 (d_v + 1) + s + 2) (S, its noise, a float32 copy, the feature bounds
  and monomial tables) plus one feature chunk of max(r, 2^18) float64 entries, plus
  :data:`PER_FEATURE_BYTES` per feature for the Python-side tables made at build (monomial
  index tuples, the public bounds computed by the reference): measured peaks at d = 16,
  n = 100 were 36, 106 and 333 MB at s = 5, 6, 7 (r = 20349, 74613, 245157: 1.4-1.8 kB per
  feature);
* fast ``tree``: 2 x 8 x 3 r l (d_v + 1) (2N - 1) (the node payload and its noise), N the padded
  grid size, plus 8 x 2 l (d_v + 1), the same chunk and the same per-feature tables;
* the streaming tree (``implementation="stream"``, :class:`dpxattn.fast.Accumulator`): its
  int64 (high, low) leaf state 2 x 8 x 3 r (d_v + 1) G and the float64 scatter buffer of an
  ``add`` (8 x the leaf count), and at release the int64 nodes of one
  tree (2 x 8 x 3 r (d_v + 1)(2N - 1)), their float64 values (8 x the same count) and the
  payload with its noise as the fast tree's, plus the same chunk and tables;
* reference (mpmath): :data:`MPF_BYTES` per released number plus per feature.
"""

from __future__ import annotations

import os

from dpxattn.accounting import feature_dimension
from dpxattn.errors import ParameterError, ResourceError

__all__ = ["BUDGET_ENV", "DEFAULT_FRACTION", "FALLBACK_BUDGET", "MPF_BYTES", "PER_FEATURE_BYTES",
           "memory_budget",
           "structure_bytes", "check_build_memory"]

#: environment variable that states the budget in bytes (suffixes KiB, MiB, GiB, TiB allowed)
BUDGET_ENV = "DPXATTN_MEMORY_BUDGET"
#: without it, the budget is this fraction of the machine's physical memory
DEFAULT_FRACTION = 0.5
#: the budget where physical memory cannot be read
FALLBACK_BUDGET = 8 << 30
#: bytes one mpf number takes in the reference, with its Python object overhead (generous)
MPF_BYTES = 200
#: bytes of Python-side tables per feature at build (measured 1.4-1.8 kB; module docstring)
PER_FEATURE_BYTES = 2048
_SUFFIXES = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_CHUNK = 1 << 18


def memory_budget() -> int:
    """The most a build may need, in bytes: ``$DPXATTN_MEMORY_BUDGET`` if set, else half the
    physical memory (``os.sysconf``), else 8 GiB."""
    text = os.environ.get(BUDGET_ENV)
    if text:
        text = text.strip()
        factor = next((f for s, f in _SUFFIXES.items() if text.endswith(s)), 1)
        number = text[:-3] if factor != 1 else text
        try:
            value = float(number) * factor
        except ValueError:
            raise ParameterError(BUDGET_ENV, "must be a number of bytes, optionally with a "
                                 "KiB/MiB/GiB/TiB suffix", text) from None
        if not value > 0:
            raise ParameterError(BUDGET_ENV, "must be > 0", text)
        return int(value)
    try:
        return int(DEFAULT_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return FALLBACK_BUDGET


def _padded(grid: int) -> int:
    return 1 << max(0, (grid - 1).bit_length())


def structure_bytes(*, mechanism: str, n: int, d: int, d_v: int, degree: int, copies: int = 1,
                    grid_size: int | None = None, implementation: str = "fast") -> int:
    """The estimated peak bytes of a build (module docstring)."""
    r = feature_dimension(d, degree)
    cols = d_v + 1
    if mechanism == "direct":
        numbers = r * cols
        fast = 8 * r * (3 * cols + degree + 2) + 8 * max(r, _CHUNK) + PER_FEATURE_BYTES * r
    else:
        grid = n if grid_size is None else grid_size
        nodes = 2 * _padded(grid) - 1
        numbers = 3 * r * copies * cols * nodes + 2 * copies * cols
        fast = 2 * 8 * numbers + 8 * max(r, _CHUNK) + PER_FEATURE_BYTES * r
        if implementation == "stream":
            return fast + 8 * 3 * r * cols * (3 * grid + 3 * nodes)
    if implementation == "reference":
        return MPF_BYTES * (numbers + r) + PER_FEATURE_BYTES * r
    return fast


def _gib(x: float) -> str:
    return f"{x / (1 << 30):.3g} GiB"


def check_build_memory(*, mechanism: str, n: int, d: int, d_v: int, degree: int, copies: int = 1,
                       grid_size: int | None = None, implementation: str = "fast") -> int:
    """Raise :class:`ResourceError` when :func:`structure_bytes` exceeds :func:`memory_budget`;
    returns the estimate otherwise."""
    need = structure_bytes(mechanism=mechanism, n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                           grid_size=grid_size, implementation=implementation)
    budget = memory_budget()
    if need > budget:
        r = feature_dimension(d, degree)
        raise ResourceError(
            "degree", f"with d = {d} gives r = C(d + s, s) = {r:,} features: this {implementation} "
            f"{mechanism} build needs about {_gib(need)}, beyond the memory budget of {_gib(budget)}",
            degree, hint=f"lower the degree or d (the projection), or state a larger budget in "
            f"${BUDGET_ENV} (bytes; KiB/MiB/GiB suffixes)")
    return need
