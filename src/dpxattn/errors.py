"""Typed errors. Every one is a ``ValueError`` whose message names the parameter and the bound.

A caller may catch ``ValueError`` (or the narrower classes) and read, in the message, which
parameter broke which bound, e.g. ``eps must be finite and > 0 (got -1.0)``.
"""

from __future__ import annotations

__all__ = ["DPXAttnError", "ParameterError", "BoundError", "ShapeError", "UniformsError",
           "NoSureEnvelopeError", "ResourceError", "AccumulatorError", "no_sure_envelope"]


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


class AccumulatorError(ParameterError):
    """A misuse of a streaming accumulator (``dpxattn.fast.Accumulator`` or its reference
    mirror): a second release, an add or merge after release, a merge of unlike accumulators,
    an empty release, a tree without its grid size. Paper: none (corpus scale; spec PAPER.md
    §5 item 18; proof note ``proofs_notes/30-exact-accumulation.md``)."""


class ResourceError(DPXAttnError):
    """A structure would need more memory than the stated budget (``dpxattn.memory``): refused
    before anything is allocated."""


class NoSureEnvelopeError(DPXAttnError):
    """A sure (deterministic) envelope was asked of a structure whose noise is unbounded
    (``law="gaussian"``): only the high-probability envelope ``hp_error_bound`` exists."""


def no_sure_envelope(method: str = "error_bound", law: str = "gaussian") -> NoSureEnvelopeError:
    """The error both implementations raise from ``error_bound`` (and what builds on it) on a
    structure with unbounded noise."""
    return NoSureEnvelopeError(
        method, f"is not available for law='{law}': Gaussian noise is unbounded, so no sure "
                "(deterministic) envelope exists",
        hint="use hp_error_bound(Q, failure_prob), which each entry exceeds with probability "
             "<= failure_prob (proofs_notes/16-certified-envelope.md, Gaussian law)")
