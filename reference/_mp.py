"""Precision, exact conversion and input validation shared by every module of the reference.

The reference never changes mpmath's global precision (``mpmath.mp.prec``): each computation
runs in a private :class:`mpmath.MPContext` obtained from :func:`context`, cached per precision
and never mutated after it is created. Bounds the reference claims to prove use a private
interval context from :func:`interval_context` (directed rounding, never optimistic).

Conversions are exact wherever the input is a dyadic rational (``int``, ``float``, numpy
scalars, ``mpf``): no digit is lost. ``Fraction`` and decimal strings that are not dyadic are
correctly rounded once, at the context's precision. See ``proofs_notes/01-conventions.md``
(data, bounds, adjacency) for the bound conventions :func:`check_entries` enforces.
"""

from __future__ import annotations

import functools
import numbers
from fractions import Fraction

import mpmath
import numpy as np
from mpmath.ctx_iv import MPIntervalContext
from mpmath.ctx_mp_python import _mpf
from mpmath.libmp import from_rational, mpf_pos, round_ceiling, round_floor, round_nearest

from dpxattn.errors import BoundError, ShapeError
from dpxattn.params import check_positive_int

__all__ = [
    "DEFAULT_PREC",
    "context",
    "interval_context",
    "resolve_prec",
    "to_mpf",
    "to_fraction",
    "to_matrix",
    "to_vector",
    "check_entries",
    "check_finite",
    "format_number",
    "interval_upper",
    "interval_lower",
    "rounded",
]

#: Default working precision in bits. 160 bits (about 48 decimal digits) is far beyond float64's
#: 53, so conformance between the reference and the float64 fast path is decided by the fast
#: path's rounding, never by the reference's.
DEFAULT_PREC = 160

_MIN_PREC = 16


def resolve_prec(prec) -> int:
    """Validate a precision in bits (``None`` means :data:`DEFAULT_PREC`); returns an ``int``.

    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    if prec is None:
        return DEFAULT_PREC
    return check_positive_int("prec", prec, minimum=_MIN_PREC)


@functools.lru_cache(maxsize=None)
def _context(prec: int) -> mpmath.MPContext:
    ctx = mpmath.MPContext()
    ctx.prec = prec
    return ctx


@functools.lru_cache(maxsize=None)
def _interval_context(prec: int) -> MPIntervalContext:
    ivctx = MPIntervalContext()
    ivctx.prec = prec
    return ivctx


def context(prec=None) -> mpmath.MPContext:
    """A private mpmath context with ``prec`` bits (cached; callers must never change its prec).

    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    return _context(resolve_prec(prec))


def interval_context(prec=None) -> MPIntervalContext:
    """A private ``mpmath.iv``-style interval context with ``prec`` bits (cached, never mutated).

    Interval arithmetic rounds every lower endpoint down and every upper endpoint up, so an
    enclosure computed with it contains the true value: use it for certified bounds.
    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    return _interval_context(resolve_prec(prec))


def interval_upper(x, ctx: mpmath.MPContext):
    """The upper endpoint of an interval as an mpf of ``ctx``, rounded up (never below it).

    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    return ctx.make_mpf(mpf_pos(x._mpi_[1], ctx.prec, round_ceiling))


def interval_lower(x, ctx: mpmath.MPContext):
    """The lower endpoint of an interval as an mpf of ``ctx``, rounded down (never above it).

    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    return ctx.make_mpf(mpf_pos(x._mpi_[0], ctx.prec, round_floor))


def rounded(x, ctx: mpmath.MPContext):
    """An mpf (of any precision) rounded to nearest at ``ctx.prec``, as an mpf of ``ctx``.

    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    return ctx.make_mpf(mpf_pos(x._mpf_, ctx.prec, round_nearest))


def to_mpf(x, ctx: mpmath.MPContext, name: str = "value"):
    """Convert one real number to an mpf of ``ctx``.

    Exact for ``int``, ``float``, numpy integer and floating scalars and ``mpf`` (of any
    context: the value is kept, not re-rounded). ``Fraction`` and ``str`` are rounded once to
    nearest at ``ctx.prec`` (exact when dyadic). NaN and infinities are converted as such
    (validators reject them). ``bool`` and non-numbers raise :class:`BoundError`.
    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    if isinstance(x, bool) or isinstance(x, np.bool_):
        raise BoundError(name, "must be a real number, not a bool", x)
    if isinstance(x, _mpf):
        return ctx.make_mpf(x._mpf_)
    if isinstance(x, numbers.Integral):
        return ctx.mpf(int(x))
    if isinstance(x, np.floating):
        if not np.isfinite(x):
            return ctx.mpf(float(x))
        p, q = x.as_integer_ratio()
        return ctx.make_mpf(from_rational(int(p), int(q), ctx.prec, round_nearest))
    if isinstance(x, float):
        return ctx.mpf(x)
    if isinstance(x, Fraction):
        return ctx.make_mpf(from_rational(x.numerator, x.denominator, ctx.prec, round_nearest))
    if isinstance(x, str):
        try:
            return ctx.mpf(x)
        except (ValueError, TypeError):
            raise BoundError(name, "must be a real number", x) from None
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return to_mpf(x[()], ctx, name)
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", None) == 0:
        return to_mpf(x.item(), ctx, name)  # 0-d torch tensors and the like
    raise BoundError(name, "must be a real number (int, float, Fraction, str, mpf, numpy scalar)", x)


def to_fraction(x, name: str = "value") -> Fraction:
    """The exact rational value of a finite real number (int, float, Fraction, str, mpf, numpy).

    Every finite float and mpf is a dyadic rational, so nothing is rounded. Used where an
    admissibility condition must be decided exactly (e.g. an l1 norm against a sensitivity).
    Raises :class:`BoundError` for NaN, infinities and non-numbers.
    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    if isinstance(x, bool) or isinstance(x, np.bool_):
        raise BoundError(name, "must be a real number, not a bool", x)
    if isinstance(x, Fraction):
        return x
    if isinstance(x, numbers.Integral):
        return Fraction(int(x))
    if isinstance(x, _mpf):
        sign, man, exp, _ = x._mpf_
        if not man and exp:  # nan or +-inf (zero has exp == 0)
            raise BoundError(name, "must be finite", x)
        value = Fraction(int(man)) * (Fraction(2) ** int(exp))
        return -value if sign else value
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            raise BoundError(name, "must be finite", x)
        return Fraction(*x.as_integer_ratio())
    if isinstance(x, str):
        try:
            return Fraction(x)
        except (ValueError, ZeroDivisionError):
            raise BoundError(name, "must be a finite real number", x) from None
    if getattr(x, "ndim", None) == 0 and hasattr(x, "item"):
        return to_fraction(x.item(), name)
    raise BoundError(name, "must be a real number (int, float, Fraction, str, mpf, numpy scalar)", x)


def _as_nested(X, name: str):
    """numpy arrays and tensors -> numpy; sequences stay as they are."""
    if hasattr(X, "detach") and callable(X.detach):  # torch tensor, without importing torch
        X = X.detach().cpu().numpy()
    return X


def to_matrix(X, ctx: mpmath.MPContext, name: str) -> list[list]:
    """Convert a 2-D array (numpy array, torch tensor, nested sequences) to a list of rows of mpf.

    Shape: (rows, cols) with rows >= 1 and cols >= 1; every row of equal length.
    Raises :class:`ShapeError` naming ``name`` for any other rank, ragged or empty input.
    Entries are converted exactly (see :func:`to_mpf`); bounds are checked separately by
    :func:`check_entries`.
    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    X = _as_nested(X, name)
    if isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise ShapeError(name, "must be a 2-D array (rows x columns)", f"shape {X.shape}")
        rows = [list(row) for row in X]
    else:
        if isinstance(X, (str, bytes)) or not hasattr(X, "__len__"):
            raise ShapeError(name, "must be a 2-D array (rows x columns)", X)
        rows = []
        for row in X:
            row = _as_nested(row, name)
            if isinstance(row, np.ndarray):
                if row.ndim != 1:
                    raise ShapeError(name, "must be a 2-D array (rows x columns)",
                                     f"a row of shape {row.shape}")
                rows.append(list(row))
            elif isinstance(row, (str, bytes)) or not hasattr(row, "__len__"):
                raise ShapeError(name, "must be a 2-D array (rows x columns)", "a scalar row")
            else:
                for entry in row:
                    if hasattr(entry, "__len__") and not isinstance(entry, str):
                        raise ShapeError(name, "must be a 2-D array (rows x columns)",
                                         "a nested entry (rank > 2)")
                rows.append(list(row))
    if not rows:
        raise ShapeError(name, "must have at least one row", "0 rows")
    width = len(rows[0])
    if width == 0:
        raise ShapeError(name, "must have at least one column", "0 columns")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ShapeError(name, f"rows must all have the same length ({width})",
                             f"row {i} has {len(row)}")
    return [[to_mpf(v, ctx, f"{name}[{i}][{j}]") for j, v in enumerate(row)]
            for i, row in enumerate(rows)]


def to_vector(x, ctx: mpmath.MPContext, name: str) -> list:
    """Convert a 1-D array (numpy, tensor, sequence) of length >= 1 to a list of mpf.

    Raises :class:`ShapeError` for any other rank or an empty input.
    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    x = _as_nested(x, name)
    if isinstance(x, np.ndarray):
        if x.ndim != 1:
            raise ShapeError(name, "must be a 1-D array", f"shape {x.shape}")
        items = list(x)
    else:
        if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
            raise ShapeError(name, "must be a 1-D array", x)
        items = list(x)
        for entry in items:
            if hasattr(entry, "__len__") and not isinstance(entry, str):
                raise ShapeError(name, "must be a 1-D array", "a nested entry (rank > 1)")
    if not items:
        raise ShapeError(name, "must have at least one entry", "length 0")
    return [to_mpf(v, ctx, f"{name}[{i}]") for i, v in enumerate(items)]


def format_number(x) -> str:
    """A short, faithful rendering of a bound for error messages (``1``, ``1.0``, ``1/3``).

    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    if isinstance(x, _mpf):
        return mpmath.nstr(x, 15)
    if isinstance(x, (np.floating, np.integer)):
        return repr(x.item())
    return str(x)


def _is_matrix(rows) -> bool:
    return bool(rows) and isinstance(rows[0], (list, tuple))


def check_finite(rows, name: str):
    """Raise :class:`BoundError` if any entry of ``rows`` (list of rows, or a flat list) is NaN/inf.

    Paper: no paper object; reference numerics (DESIGN §5; PAPER.md §5 item 18). Proof note:
    ``proofs_notes/01-conventions.md``.
    """
    matrix = rows if _is_matrix(rows) else [rows]
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if not mpmath.isfinite(v):
                where = f"row {i}, column {j}" if _is_matrix(rows) else f"index {j}"
                raise BoundError(f"{name} entries", "must be finite", hint=f"{where} is {v}")
    return rows


def check_entries(rows, name: str, low, high, bound_name: str, clip: bool = False):
    """Check (or, with ``clip=True``, clip) every entry of ``rows`` into ``[low, high]``.

    ``rows``: a list of rows of mpf (from :func:`to_matrix`) or a flat list of mpf (from
    :func:`to_vector`); ``low``/``high``: the public bounds (numbers, compared exactly);
    ``bound_name``: how the bound is written, e.g. ``"[0, R]"``.

    Returns the rows unchanged (``clip=False``) or a clipped copy (``clip=True``). NaN and
    infinities raise :class:`BoundError` even with ``clip=True`` (clipping a NaN would invent a
    value). An entry outside the bounds with ``clip=False`` raises a :class:`BoundError` whose
    message names the bound, e.g. ``"K entries must lie in [0, R] = [0, 1]"`` (PAPER §5 item 19;
    ``proofs_notes/01-conventions.md``). Clipping is a per-record map, so it preserves DP.
    """
    check_finite(rows, name)
    matrix = rows if _is_matrix(rows) else [rows]
    ctx = None
    for row in matrix:
        if row:
            ctx = row[0].context
            break
    if ctx is None:
        return rows
    lo = to_mpf(low, ctx, f"lower bound of {name}")
    hi = to_mpf(high, ctx, f"upper bound of {name}")
    bound = f"must lie in {bound_name} = [{format_number(low)}, {format_number(high)}]"
    if clip:
        out = [[lo if v < lo else hi if v > hi else v for v in row] for row in matrix]
        return out if _is_matrix(rows) else out[0]
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if v < lo or v > hi:
                where = f"row {i}, column {j}" if _is_matrix(rows) else f"index {j}"
                raise BoundError(f"{name} entries", bound,
                                 hint=f"{where} is {mpmath.nstr(v, 15)}; pass clip=True to clip")
    return rows
