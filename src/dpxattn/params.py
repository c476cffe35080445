"""Validation of the public parameters shared by the reference and the fast implementation.

Every validator returns its argument unchanged (so exact inputs such as ``Fraction`` or ``mpf``
stay exact) or raises a :class:`dpxattn.errors.ParameterError` naming the bound.
Admissible ranges (DESIGN §4, PAPER §2.1):

* ``eps``: finite, > 0;
* ``delta``: 0 < delta <= 1/2 (the truncated Laplace needs A >= Delta, i.e. delta <= 1/2);
* ``degree``: integer >= 0;
* bounds ``R``, ``R_w``, ``sensitivity``, ``scale``: finite, > 0;
* ``copies``: integer >= 1; ``mechanism`` in :data:`MECHANISMS`;
* ``law`` (the noise law): a ``str`` in :data:`LAWS`, both offered by both mechanisms
  (``proofs_notes/24-analytic-gaussian.md``, ``26-tree-gaussian.md``).

Every real-valued parameter must *be* a real number: ``int``, ``float``, ``Fraction``, ``mpf``,
a numpy real scalar, or a 0-d numpy array / torch tensor of a real dtype. Strings (``"1e-6"``),
``Decimal``, complex numbers, ``bool`` and ``None`` are refused with a
:class:`~dpxattn.errors.ParameterError` naming the parameter, in the reference and the fast path
alike (both validate through this module): a parameter that only looks like a number is a caller
error, never converted silently.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

from dpxattn.errors import AccumulatorError, ParameterError

__all__ = [
    "MECHANISMS",
    "LAWS",
    "check_real",
    "check_eps",
    "check_delta",
    "check_degree",
    "check_positive",
    "check_positive_int",
    "check_mechanism",
    "check_law",
    "COMPOSITIONS",
    "check_composition",
    "DOMAINS",
    "check_domain",
    "check_mechanism_options",
    "check_clip",
    "check_privacy",
    "check_build_arguments",
    "check_accumulator_arguments",
    "check_accumulator_release",
    "check_accumulator_merge",
]

MECHANISMS = ("direct", "tree")

#: the noise laws: truncated Laplace on the l1 sensitivity (default; sure envelopes) and the
#: analytic Gaussian on the l2 sensitivity (one component; high-probability envelopes only)
LAWS = ("tlap", "gaussian")

#: the mechanisms that offer each law so far
_LAW_MECHANISMS = {"tlap": ("direct", "tree"), "gaussian": ("direct", "tree")}

#: the largest admissible delta (the truncated Laplace needs A >= Delta), exactly
_HALF = Fraction(1, 2)


_REAL_TYPES = "int, float, Fraction, mpf, a numpy real scalar or a 0-d real array/tensor"


def _real_scalar(name: str, value: object):
    """``value`` itself if it is a real number (see the module docstring), or its Python scalar
    when it is a 0-d numpy array or torch tensor of a real dtype; else :class:`ParameterError`."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return value
    if getattr(value, "ndim", None) == 0 and hasattr(value, "dtype") and hasattr(value, "item"):
        dtype = str(value.dtype)
        if not ("bool" in dtype or "complex" in dtype or dtype in ("object", "O")
                or dtype.startswith(("<U", "<S", "|S", "|U"))):
            item = value.item()
            if isinstance(item, numbers.Real) and not isinstance(item, bool):
                return item
    raise ParameterError(name, f"must be a real number ({_REAL_TYPES}); strings and other "
                               "types are refused", value)


def check_real(name: str, value):
    """``value`` if it is a real number of an accepted type (see the module docstring); a 0-d
    numpy array or tensor becomes its Python scalar. Strings, ``Decimal``, complex, ``bool``,
    ``None`` and anything else raise :class:`ParameterError` naming ``name``."""
    return _real_scalar(name, value)


def _as_float(name: str, value: object) -> float:
    x = _real_scalar(name, value)
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(name, "must be a real number", value) from None


def check_positive(name: str, value):
    """Finite and strictly positive (bounds R, R_w, sensitivities, scale)."""
    if type(value) is float and 0.0 < value < math.inf:  # the common case, decided at once
        return value
    x = _as_float(name, value)
    if not math.isfinite(x) or x <= 0:
        raise ParameterError(name, "must be finite and > 0", value)
    return value


def check_eps(eps):
    """eps > 0 and finite."""
    return check_positive("eps", eps)


def check_delta(delta):
    """0 < delta <= 1/2 (exactly: compared as a Fraction when given as one)."""
    if type(delta) is float and 0.0 < delta <= 0.5:  # the common case, decided at once
        return delta
    x = _as_float("delta", delta)
    # exact for Fraction and int (a comparison with a Fraction is exact); float compares as float
    too_big = delta > _HALF if isinstance(delta, (Fraction, numbers.Integral)) else x > 0.5
    if not math.isfinite(x) or x <= 0 or too_big:
        raise ParameterError("delta", "must satisfy 0 < delta <= 1/2", delta)
    return delta


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """An integer (not bool) >= minimum."""
    if type(value) is int and value >= minimum:  # the common case (bool is a subclass, not int)
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(name, f"must be an integer >= {minimum}", value)
    if value < minimum:
        raise ParameterError(name, f"must be an integer >= {minimum}", value)
    return int(value)


def check_degree(degree) -> int:
    """Taylor degree s: integer >= 0."""
    return check_positive_int("degree", degree, minimum=0)


def check_mechanism(mechanism: str) -> str:
    if mechanism not in MECHANISMS:
        raise ParameterError("mechanism", f"must be one of {MECHANISMS}", mechanism)
    return mechanism


def check_law(law, mechanism: str = "direct") -> str:
    """The noise law: a ``str`` in :data:`LAWS`, offered by ``mechanism`` (already validated).

    Anything but a str, or an unknown name, raises :class:`ParameterError` naming the allowed
    values (and a law a mechanism does not offer, should :data:`_LAW_MECHANISMS` restrict one).
    """
    if not isinstance(law, str):
        raise ParameterError("law", f"must be a str, one of {LAWS}", law)
    if law not in LAWS:
        raise ParameterError("law", f"must be one of {LAWS}", law)
    if mechanism not in _LAW_MECHANISMS[law]:
        raise ParameterError("law", f"'{law}' is not implemented for mechanism '{mechanism}' yet "
                             f"(offered by: {', '.join(_LAW_MECHANISMS[law])})", law,
                             hint=f"use law='tlap' with mechanism='{mechanism}', or "
                                  "mechanism='direct'")
    return law


#: the public key/query domains: the paper's box [0, R]^d (default) and the l2 ball of radius R
#: (signed entries; ``proofs_notes/27-ball-domain.md``)
DOMAINS = ("box", "ball")


def check_domain(domain, mechanism: str = "direct") -> str:
    """The key/query domain: a ``str`` in :data:`DOMAINS`. ``"ball"`` is offered by ``direct``
    only: the tree's DPTrees index a public grid over [0, R] per feature coordinate and bound
    every node with the box's nonnegative features (moments, law of cosines, c1 >= 0), none of
    which holds for signed keys (``proofs_notes/27-ball-domain.md``, "tree")."""
    if not isinstance(domain, str) or domain not in DOMAINS:
        raise ParameterError("domain", f"must be one of {DOMAINS}", domain)
    if domain == "ball" and mechanism != "direct":
        raise ParameterError(
            "domain", f"'ball' is not available for mechanism '{mechanism}': the tree's bounds "
            "(a public grid over [0, R] for each feature coordinate, nonnegative features and "
            "moments) do not hold for signed keys with ||k||_2 <= R", domain,
            hint="use mechanism='direct' with domain='ball', or domain='box' with the tree")
    return domain


#: how the tree's TLap components are composed: basic (default) or optimally ("pld"; the plan
#: :func:`dpxattn.accounting.plan_tree`, ``proofs_notes/05-composition.md``)
COMPOSITIONS = ("basic", "pld")


def check_composition(composition, mechanism: str = "direct", law: str = "tlap") -> str:
    """``composition``: "basic" (default) or "pld" (optimal composition of the tree's TLap
    components). "pld" is for ``tree`` with ``law="tlap"`` only: ``direct`` and every Gaussian
    release are ONE component, so there is nothing to compose."""
    if not isinstance(composition, str) or composition not in COMPOSITIONS:
        raise ParameterError("composition", f"must be one of {COMPOSITIONS}", composition)
    if composition == "pld" and (mechanism != "tree" or law != "tlap"):
        raise ParameterError(
            "composition", f"'pld' composes the tree's TLap components; mechanism '{mechanism}' "
            f"with law '{law}' releases one component, nothing to compose", composition,
            hint="use composition='pld' with mechanism='tree', law='tlap'")
    return composition


def check_privacy(eps, delta):
    """Validate an (eps, delta) pair; returns it unchanged."""
    return check_eps(eps), check_delta(delta)


def check_mechanism_options(mechanism: str, copies, grid_size) -> tuple[int, int | None]:
    """``copies`` >= 1 and ``grid_size`` (None or >= 1); ``direct`` has neither copies nor a grid."""
    copies = check_positive_int("copies", copies)
    if grid_size is not None:
        grid_size = check_positive_int("grid_size", grid_size)
    if mechanism == "direct":
        if copies != 1:
            raise ParameterError("copies", "must be 1 for mechanism 'direct' (no median copies)",
                                 copies)
        if grid_size is not None:
            raise ParameterError("grid_size", "must be None for mechanism 'direct' (no grid)",
                                 grid_size)
    return copies, grid_size


def check_clip(clip) -> bool:
    """``clip`` must be given as a bool: clipping is never implied (DESIGN §4)."""
    if not isinstance(clip, bool):
        raise ParameterError("clip", "must be True or False (given explicitly; never implied)", clip)
    return clip


def check_build_arguments(*, mechanism, eps, delta, R, R_w, degree, scale, copies, grid_size,
                          clip, law="tlap", domain="box",
                          composition="basic") -> tuple[str, int, int, int | None, bool]:
    """The public arguments of ``DPCrossAttention.build`` (DESIGN §4), shared by the reference and
    the fast implementation, checked in one order: mechanism, law (:func:`check_law`),
    domain (:func:`check_domain`), composition (:func:`check_composition`), (eps, delta), R, R_w, degree, scale (None or > 0), copies and grid_size, clip. Returns
    ``(mechanism, degree, copies, grid_size, clip)`` as normalised by their checks (a valid
    ``law`` is returned by neither: it is one of the :data:`LAWS` strings as given)."""
    mechanism = check_mechanism(mechanism)
    check_law(law, mechanism)
    check_domain(domain, mechanism)
    check_composition(composition, mechanism, law)
    check_privacy(eps, delta)
    check_positive("R", R)
    check_positive("R_w", R_w)
    degree = check_degree(degree)
    if scale is not None:
        check_positive("scale", scale)
    copies, grid_size = check_mechanism_options(mechanism, copies, grid_size)
    return mechanism, degree, copies, grid_size, check_clip(clip)


def check_accumulator_arguments(*, mechanism, R, R_w, degree, scale, grid_size, clip,
                                domain) -> tuple[str, int, int | None, bool]:
    """The public parameters of a streaming accumulator (fast and reference alike): those of
    :func:`check_build_arguments` that are fixed before the rows are seen, and the tree's
    ``grid_size``, required (:class:`dpxattn.errors.AccumulatorError`). Returns
    ``(mechanism, degree, grid_size, clip)`` normalised."""
    mechanism, degree, _, grid_size, clip = check_build_arguments(
        mechanism=mechanism, eps=1.0, delta=1e-6, R=R, R_w=R_w, degree=degree, scale=scale,
        copies=1, grid_size=grid_size, clip=clip, domain=domain)
    if mechanism == "tree" and grid_size is None:
        raise AccumulatorError("grid_size", "is required for the tree: its grid is fixed before "
                               "the rows are seen (build's default, n, is not known while "
                               "streaming)", grid_size)
    return mechanism, degree, grid_size, clip


def check_accumulator_release(acc, *, eps, delta, law, copies, composition) -> int:
    """The arguments of an accumulator's ``release`` (fast and reference alike), checked as
    :func:`check_build_arguments` checks build's, with the accumulator ``acc``'s public
    parameters (``mechanism``, ``R``, ``R_w``, ``degree``, ``scale``, ``grid_size``, ``clip``,
    ``domain``); an empty accumulator (``acc.n == 0``) raises
    :class:`dpxattn.errors.AccumulatorError`. Returns ``copies`` normalised."""
    if acc.n == 0:
        raise AccumulatorError("accumulator", "holds no rows: nothing to release")
    tree = acc.mechanism == "tree"
    return check_build_arguments(
        mechanism=acc.mechanism, eps=eps, delta=delta, R=acc.R, R_w=acc.R_w, degree=acc.degree,
        scale=acc.scale, copies=copies, grid_size=acc.grid_size if tree else None,
        clip=acc.clip, law=law, domain=acc.domain, composition=composition)[2]


def check_accumulator_merge(acc, other, kind: type, label: str) -> None:
    """``acc.merge(other)``'s refusals (fast and reference alike), as
    :class:`dpxattn.errors.AccumulatorError`: ``other`` must be another ``kind`` accumulator
    (``label`` names it) with the same public parameters (``_public()``), and both still open
    (``_check_open``)."""
    acc._check_open("merge")
    if other is acc:
        raise AccumulatorError("other", "must be another accumulator (merging one into itself "
                               "would count its rows twice)")
    if not isinstance(other, kind) or other._public() != acc._public():
        raise AccumulatorError("other", f"must be {label} with the same public parameters "
                               "(mechanism, d, d_v, degree, R, R_w, scale, clip, domain, "
                               "grid_size)")
    other._check_open("be merged")
