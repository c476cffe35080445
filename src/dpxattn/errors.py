"""Typed errors. Every one is a ``ValueError`` whose message names the parameter and the bound.

A caller may catch ``ValueError`` (or the narrower classes) and read, in the message, which
parameter broke which bound, e.g. ``eps must be finite and > 0 (got -1.0)``.
"""

from __future__ import annotations

__all__ = ["DPXAttnError", "ParameterError", "BoundError", "ShapeError", "UniformsError"]


class DPXAttnError(ValueError):
    """Base class of every input error raised by dpxattn."""

    def __init__(self, name: str, bound: str, value: object = None, *, hint: str = "") -> None:
        self.name = name
        self.bound = bound
        self.value = value
        msg = f"{name} {bound}"
        if value is not None:
            shown = repr(value)
            msg += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class ParameterError(DPXAttnError):
    """A privacy or algorithm parameter is outside its admissible range (eps, delta, degree, ...)."""


class BoundError(DPXAttnError):
    """Private or query data break a public bound (entries outside [0, R], |V| > R_w, NaN, inf)."""


class ShapeError(DPXAttnError):
    """Arrays have the wrong rank or inconsistent sizes."""


class UniformsError(DPXAttnError):
    """Given uniforms have the wrong length or lie outside the open interval (0, 1)."""
