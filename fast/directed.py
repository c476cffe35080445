"""Directed rounding of exact numbers to float64, and rigorous interval constants.

The fast path computes in float64, but every constant a proof depends on (a sensitivity, a budget
share, a truncation bound used in a sure envelope) comes from an exact value (``int``,
``Fraction``, ``mpmath.mpf``, a float) rounded to float64 in the *safe* direction:

* sensitivities and support bounds are rounded **up** (the envelope is never optimistic, the noise
  never smaller than the proof assumes);
* budget shares ``eps`` and ``delta`` are rounded **down** (a smaller eps means a larger noise scale,
  a smaller delta a wider truncation; both are conservative).

Interval arithmetic uses a private ``mpmath`` interval context (never the global ``mpmath.iv``),
so nothing here changes global precision. Spec: PAPER.md §2.1 (TLap constants); DESIGN §5.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import mpmath
import numpy as np
from mpmath.libmp import to_rational

from dpxattn.errors import ParameterError

__all__ = [
    "INTERVAL_PREC",
    "exact_fraction",
    "float_up",
    "float_down",
    "interval_context",
    "interval_bounds",
    "memo_safe",
]

#: bits of the private interval context (far beyond float64's 53; the result is rounded outward)
INTERVAL_PREC = 128

_IV = type(mpmath.iv)()
_IV.prec = INTERVAL_PREC


def interval_context():
    """The private mpmath interval context (precision :data:`INTERVAL_PREC`); do not mutate it."""
    return _IV


def exact_fraction(name: str, value) -> Fraction:
    """``value`` as an exact ``Fraction``.

    Accepts ``int``, ``float`` and numpy scalars (exactly), ``Fraction``, ``mpmath.mpf``, and an
    mpmath interval (its midpoint is *not* used: pass an endpoint). Raises
    :class:`ParameterError` for NaN, inf, or anything else.
    """
    if isinstance(value, bool) or value is None:
        raise ParameterError(name, "must be a real number", value)
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if isinstance(value, mpmath.mpf):
        if not mpmath.isfinite(value):
            raise ParameterError(name, "must be finite", value)
        p, q = to_rational(value._mpf_)
        return Fraction(p, q)
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(name, "must be a real number", value) from None
    if not math.isfinite(x):
        raise ParameterError(name, "must be finite", value)
    # float, numpy float64/float32 scalars: binary values, converted exactly
    return Fraction(x)


def float_up(value, name: str = "value") -> float:
    """The smallest float64 >= ``value`` (exact comparison)."""
    q = exact_fraction(name, value)
    f = float(q)  # correctly rounded to nearest
    if Fraction(f) < q:
        f = math.nextafter(f, math.inf)
    return f


def float_down(value, name: str = "value") -> float:
    """The largest float64 <= ``value`` (exact comparison)."""
    q = exact_fraction(name, value)
    f = float(q)
    if Fraction(f) > q:
        f = math.nextafter(f, -math.inf)
    return f


def interval_bounds(iv_value) -> tuple[float, float]:
    """(float64 <= lower end, float64 >= upper end) of an mpmath interval."""
    lo, hi = iv_value._mpi_
    plo, qlo = to_rational(lo)
    phi, qhi = to_rational(hi)
    return float_down(Fraction(plo, qlo)), float_up(Fraction(phi, qhi))



#: exact scalar types whose instances are immutable and hash by value
_VALUE_TYPES = (int, float, Fraction)


def memo_safe(*values) -> bool:
    """True when every value is None or an immutable scalar hashed by value (``int``, ``float``,
    ``Fraction``, numpy scalars, ``mpmath.mpf``): what may key a memo of a pure function
    of public parameters. False for anything else (a tensor hashes by identity and can change in
    place; an array is unhashable): the caller then computes without the memo."""
    for v in values:
        if v is None or type(v) in _VALUE_TYPES or isinstance(v, (np.generic, mpmath.mpf)):
            continue
        return False
    return True
