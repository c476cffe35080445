"""Input validation for the fast path, with the shared typed errors (dpxattn.errors).

Spec: DESIGN §4 ("Inputs outside the public bounds (and NaN/inf) raise a ValueError that names
the bound; with clip=True ... entries are clipped"), PAPER.md §5 item 19 (clipping is a
per-record map, so it preserves DP); conventions proofs_notes/01-conventions.md ("Data, bounds,
adjacency").

* keys ``K`` (n, d) in ``[0, R]``, values ``V`` (n, d_v) in ``[-R_w, R_w]``, queries ``Q`` (m, d)
  in ``[0, R]``;
* NaN and inf raise :class:`BoundError` even with ``clip=True`` (clipping NaN would invent data);
* an entry outside its bound raises :class:`BoundError` whose message names the bound, e.g.
  ``K entries must lie in [0, R] = [0, 1.0]``, unless ``clip=True`` (then it is clipped; nothing
  records whether any entry was clipped);
* comparisons are exact: a float entry x satisfies ``x <= R`` iff ``x <= float_down(R)``;
* shapes (:class:`ShapeError`), dtypes and devices (:class:`ParameterError`).

Tensors are returned, never copied more than needed; K and V come back as float64 (the
privacy-relevant sums are accumulated in float64), Q keeps float32 or float64.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

from dpxattn.errors import BoundError, ParameterError, ShapeError
from dpxattn.params import check_real
from dpxattn.fast.directed import exact_fraction, float_down, float_up, memo_safe

__all__ = [
    "QUERY_DTYPES",
    "as_tensor",
    "check_matrix",
    "check_range",
    "check_ball_rows",
    "VALIDATION_CHUNK_ELEMENTS",
    "check_keys_values",
    "check_queries",
    "check_failure_prob",
]

#: dtypes a query may have (the released structure itself is float64)
QUERY_DTYPES = (torch.float64, torch.float32)


def _bound_text(x) -> str:
    return repr(float(x)) if not isinstance(x, int) else str(x)


def as_tensor(X, name: str) -> torch.Tensor:
    """A torch tensor view of ``X`` (tensor, numpy array or nested sequence of reals)."""
    if isinstance(X, torch.Tensor):
        t = X
    else:
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError):
            raise ShapeError(name, "must be a tensor or an array of real numbers",
                             type(X).__name__) from None
        if arr.dtype.kind not in "fiu":
            raise ParameterError(f"{name}.dtype", "must be a real (float or integer) type",
                                 str(arr.dtype))
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise ParameterError(f"{name}.dtype", "must be real", t.dtype)
    if not t.is_floating_point():
        if t.dtype == torch.bool:
            raise ParameterError(f"{name}.dtype", "must be a real number type, not bool", t.dtype)
        t = t.to(torch.float64)
    elif t.dtype not in QUERY_DTYPES:
        raise ParameterError(f"{name}.dtype", "must be torch.float64 or torch.float32", t.dtype)
    return t


def check_matrix(X, name: str, *, cols: int | None = None, rows: int | None = None,
                 min_rows: int = 1) -> torch.Tensor:
    """A 2-D real tensor with the given column / row counts (ShapeError otherwise)."""
    t = as_tensor(X, name)
    if t.dim() != 2:
        raise ShapeError(name, "must be a 2-D matrix (rows, columns)", tuple(t.shape))
    if t.shape[0] < min_rows:
        raise ShapeError(name, f"must have at least {min_rows} row(s)", tuple(t.shape))
    if t.shape[1] < 1:
        raise ShapeError(name, "must have at least one column", tuple(t.shape))
    if cols is not None and t.shape[1] != cols:
        raise ShapeError(name, f"must have {cols} columns", tuple(t.shape))
    if rows is not None and t.shape[0] != rows:
        raise ShapeError(name, f"must have {rows} rows (as many as K)", tuple(t.shape))
    return t


def _limit(value, dtype: torch.dtype, *, upper: bool) -> float:
    """The float of ``dtype`` nearest ``value`` on the inside: <= an upper, >= a lower bound."""
    if memo_safe(value):
        return _limit_cached(value, dtype, upper)
    # anything else (e.g. an mpf interval, a tensor, which hashes by identity): no cache
    return _limit_cached.__wrapped__(value, dtype, upper)


@lru_cache(maxsize=256)
def _limit_cached(value, dtype: torch.dtype, upper: bool) -> float:
    q = exact_fraction("bound", value)
    v = float_down(q) if upper else float_up(q)
    if dtype == torch.float32:
        f = np.float32(v)
        if upper and float(f) > v:
            f = np.nextafter(f, np.float32(-np.inf))
        if not upper and float(f) < v:
            f = np.nextafter(f, np.float32(np.inf))
        v = float(f)
    return v


#: entries per validation chunk: the temporaries of :func:`check_range` stay O(this), never
#: O(n d) (benchmark target G10: peak build memory <= 1.3 x payload + one chunk)
VALIDATION_CHUNK_ELEMENTS = 1 << 16


def _row_chunks(data: torch.Tensor):
    """``(start, block)`` over leading-dimension slices of ``data`` holding about
    :data:`VALIDATION_CHUNK_ELEMENTS` entries each (views, no copies; row-major order)."""
    if data.dim() == 0 or data.numel() <= VALIDATION_CHUNK_ELEMENTS:
        yield 0, data  # one chunk: the whole tensor (no slicing)
        return
    rows = data.shape[0]
    per_row = max(1, data[:1].numel())
    step = max(1, VALIDATION_CHUNK_ELEMENTS // per_row)
    for start in range(0, rows, step):
        yield start, data[start:start + step]


def _all_inside(data: torch.Tensor, lo: float, hi: float) -> bool:
    """Every entry in [lo, hi]; False for NaN (min/max propagate it) and +-inf (finite bounds).
    One fused min/max reduction per chunk: no full-size boolean temporaries."""
    for _, block in _row_chunks(data):
        if block.numel() == 0:
            continue
        low, high = torch.aminmax(block)
        if not (float(low) >= lo and float(high) <= hi):
            return False
    return True


def _first(data: torch.Tensor, predicate) -> tuple[int, ...] | None:
    """Index (row-major first) of the first entry where ``predicate(block)`` holds, or None;
    evaluated chunk by chunk."""
    for start, block in _row_chunks(data):
        if block.numel() == 0:
            continue
        mask = predicate(block)
        if bool(mask.any()):
            bad = mask.nonzero()[0].tolist()
            if bad:
                bad[0] += start
            return tuple(bad)
    return None


def check_range(X: torch.Tensor, name: str, low, high, bound_name: str, *,
                clip: bool = False, private: bool = False) -> torch.Tensor:
    """Entries of ``X`` finite and in ``[low, high]`` (exactly), or clipped there with ``clip``.

    Raises :class:`BoundError` naming the bound (``"{name} entries must lie in {bound_name} =
    [low, high]"``) for an out-of-bound entry without ``clip``, and for NaN/inf always (the
    first offending entry in row-major order is named; non-finite entries anywhere take
    precedence over out-of-bound ones). Keeps autograd (clipping is ``torch.clamp``). For
    ``private`` data (K, V) the message gives the offending entry's position only, never its
    value. Checked in chunks of :data:`VALIDATION_CHUNK_ELEMENTS` entries: the temporaries are
    O(chunk), whatever the size of ``X`` (the clipped copy with ``clip=True`` is the output).
    """
    lo = _limit(low, X.dtype, upper=False)
    hi = _limit(high, X.dtype, upper=True)
    return _check_limits(X, name, lo, hi, low, high, bound_name, clip=clip, private=private)


def _check_limits(X: torch.Tensor, name: str, lo: float, hi: float, low, high, bound_name: str,
                  *, clip: bool, private: bool) -> torch.Tensor:
    """:func:`check_range` given the float limits ``lo = _limit(low)``, ``hi = _limit(high)``
    of ``X.dtype`` (``low``, ``high`` only name the bound in the error)."""
    data = X.detach()
    if _all_inside(data, lo, hi):
        return X
    bad = _first(data, lambda block: ~torch.isfinite(block))
    if bad is not None:
        shown = "not finite" if private else f"{data[bad].item()}"
        raise BoundError(f"{name} entries", "must be finite (no NaN or inf)",
                         hint=f"entry {bad} is {shown}")
    if clip:
        return X.clamp(lo, hi)
    bad = _first(data, lambda block: (block < lo) | (block > hi))
    if bad is not None:
        shown = "outside" if private else f"{data[bad].item()!r}"
        raise BoundError(f"{name} entries",
                         f"must lie in {bound_name} = [{_bound_text(low)}, {_bound_text(high)}]",
                         hint=f"entry {bad} is {shown}; pass clip=True to clip")
    return X


def _gamma_up(k: int) -> float:
    """k u / (1 - k u) for float64, rounded up generously (k u < 1/2)."""
    ku = k * 2.0**-53
    return (ku / (1.0 - ku)) * (1 + 2.0**-40)


def _exact_outside(row: torch.Tensor, R2: Fraction) -> bool:
    """sum x_i^2 > R^2, decided in exact rational arithmetic."""
    return sum((Fraction(float(x)) ** 2 for x in row.tolist()), Fraction(0)) > R2


def _outside_rows(data: torch.Tensor, R2: Fraction, lo: float, hi: float) -> torch.Tensor:
    """(m,) bool: row i has exact squared l2 norm > R^2. The float64 sum s of the squares is
    within gamma_d of the exact one (d terms, one rounding each plus the additions), so
    s (1 + 2 gamma_{d+2}) <= R^2 (rounded down) proves inside and s (1 - 2 gamma_{d+2}) > R^2
    (rounded up) proves outside, even after the rounding of those products; rows in between are
    decided exactly (``proofs_notes/27-ball-domain.md``, "Validation")."""
    s = data.to(torch.float64).square().sum(dim=1)
    g = 2.0 * _gamma_up(data.shape[1] + 2)
    out = s * (1.0 - g) > hi
    unsure = (~out) & (s * (1.0 + g) > lo)
    for i in unsure.nonzero().flatten().tolist():
        out[i] = _exact_outside(data[i], R2)
    return out


def check_ball_rows(X: torch.Tensor, name: str, R, *, clip: bool = False,
                    private: bool = False) -> torch.Tensor:
    """Every row of ``X`` (m, d) finite with l2 norm <= R, decided exactly (no slack), or, with
    ``clip``, projected radially onto the ball (``domain="ball"``).

    A row of norm > R raises :class:`BoundError` ``"{name} rows must have l2 norm <= R = ..."``
    naming the first such row (and its norm unless ``private``); NaN/inf always raise. The
    projection multiplies a row by ``c <= R / ||x||`` (computed, then shrunk by 4 gamma_{d+2}
    steps until the exact test passes): a per-record map (DP is kept), identity on rows
    inside; the factor is a constant (no gradient through it), so queries keep autograd.
    Paper: PAPER.md §5 item 19 (clipping). Proof note ``proofs_notes/27-ball-domain.md``.
    """
    data = X.detach()
    if data.numel() and not bool(torch.isfinite(data).all()):
        bad = _first(data, lambda block: ~torch.isfinite(block))
        shown = "not finite" if private else f"{data[bad].item()}"
        raise BoundError(f"{name} entries", "must be finite (no NaN or inf)",
                         hint=f"entry {bad} is {shown}")
    R2 = exact_fraction("R", R) ** 2
    lo, hi = float_down(R2), float_up(R2)
    out = _outside_rows(data, R2, lo, hi) if data.numel() else torch.zeros(0, dtype=torch.bool)
    if not bool(out.any()):
        return X
    idx = out.nonzero().flatten()
    if not clip:
        i = int(idx[0])
        nsq = sum((Fraction(float(x)) ** 2 for x in data[i].tolist()), Fraction(0))
        shown = "" if private else (f" (its norm is {math.sqrt(float(nsq))!r}; squared norm - "
                                    f"R^2 = {float(nsq - R2):.3g} > 0)")
        raise BoundError(f"{name} rows", f"must have l2 norm <= R = {_bound_text(R)} "
                         "(domain='ball')",
                         hint=f"row {i} is outside{shown}; pass clip=True to project rows "
                              "radially onto the ball")
    step = 1.0 - 4.0 * _gamma_up(data.shape[1] + 2)
    rows = data[idx].to(torch.float64)
    c = torch.sqrt(lo / rows.square().sum(dim=1)) * step
    factor = torch.ones(data.shape[0], dtype=torch.float64, device=data.device)
    pending = torch.arange(idx.numel(), device=data.device)
    for _ in range(64):
        factor[idx[pending]] = c[pending]
        trial = data[idx[pending]] * factor[idx[pending]].to(data.dtype).unsqueeze(1)
        still = _outside_rows(trial, R2, lo, hi)
        if not bool(still.any()):
            return X * factor.to(X.dtype).unsqueeze(1)
        pending = pending[still]
        c[pending] = c[pending] * step
    raise ArithmeticError("check_ball_rows: the projection did not land inside the ball")


def check_keys_values(K, V, *, R, R_w, clip: bool,
                      domain: str = "box") -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the private side: K (n, d) in [0, R] (``domain="ball"``: rows of l2 norm <= R,
    :func:`check_ball_rows`), V (n, d_v) in [-R_w, R_w]; float64 out.

    Both on one device; returned detached (no gradient ever flows into the private side).
    """
    K = check_matrix(K, "K")
    V = check_matrix(V, "V", rows=K.shape[0])
    if K.device != V.device:
        raise ParameterError("V.device", f"must equal K.device = {K.device}", str(V.device))
    K = K.detach().to(torch.float64)
    V = V.detach().to(torch.float64)
    if domain == "ball":
        K = check_ball_rows(K, "K", R, clip=clip, private=True)
    else:
        K = check_range(K, "K", 0, R, "[0, R]", clip=clip, private=True)
    low, lo, hi = _value_limits(R_w)
    V = _check_limits(V, "V", lo, hi, low, R_w, "[-R_w, R_w]", clip=clip, private=True)
    return K, V


def _value_limits_of(R_w) -> tuple:
    """``(-R_w exactly, its float64 limit, R_w's float64 limit)``: the bounds V is checked
    against (float64, as :func:`check_keys_values` makes V)."""
    low = -exact_fraction("R_w", R_w)
    return low, _limit(low, torch.float64, upper=False), _limit(R_w, torch.float64, upper=True)


#: keyed by R_w's type and value (a public bound): one exact conversion per distinct R_w
_value_limits_memo = lru_cache(maxsize=256, typed=True)(_value_limits_of)


def _value_limits(R_w) -> tuple:
    if memo_safe(R_w):
        return _value_limits_memo(R_w)
    return _value_limits_of(R_w)


def check_queries(Q, *, d: int, R, device: torch.device, clip: bool,
                  domain: str = "box") -> torch.Tensor:
    """Validate queries: Q (m, d) float32/float64 in [0, R] (``domain="ball"``: rows of l2 norm
    <= R) on ``device`` (m = 0 allowed)."""
    Q = check_matrix(Q, "Q", cols=d, min_rows=0)
    if Q.device != device:
        raise ParameterError("Q.device", f"must be the structure's device {device}", str(Q.device))
    if domain == "ball":
        return check_ball_rows(Q, "Q", R, clip=clip)
    return check_range(Q, "Q", 0, R, "[0, R]", clip=clip)


def check_failure_prob(failure_prob) -> float:
    """0 < failure_prob < 1 as a float (ParameterError otherwise; a real number only)."""
    p = float(check_real("failure_prob", failure_prob))
    if not 0.0 < p < 1.0:
        raise ParameterError("failure_prob", "must satisfy 0 < failure_prob < 1", failure_prob)
    return p
