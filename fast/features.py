"""Polynomial (truncated Taylor) features P(X) in batch, feature-major (PAPER.md §2.3).

Paper: the polynomial kernel approximation of exp(<q, k>/d) ("Lemma I.5" in the ICLR version;
v2 App. I); spec PAPER.md §2.3; order and scaling proofs_notes/01-conventions.md.

For x in R^d and the multi-indices alpha with |alpha| <= s (``degree``), in THE order of the
conventions (degree k = 0..s; within degree k the multisets of
``itertools.combinations_with_replacement(range(d), k)``):

    P(x)_alpha = x^alpha * sqrt(scale^|alpha| / alpha!),   <P(x), P(y)> = T_s(scale <x, y>),

``r = C(d + s, s)``. ``scale`` defaults to ``1/d``.

Generation is feature-major: the degree-k monomials are the degree-(k-1) monomials multiplied by
one input coordinate, block by block. In lexicographic order, the degree-k multisets starting with
index i are ``i`` prepended to the degree-(k-1) multisets whose smallest index is >= i, and those
form a contiguous *suffix* of the degree-(k-1) list. So each degree is ``d`` broadcast products
``x_i (1, n) * previous[suffix_i] (len_i, n)`` written into contiguous rows, then one row scaling by
the coefficients ``sqrt(scale^k / alpha!)``. No per-row index gathers. Inputs are processed in
chunks of rows so temporaries stay O(chunk * r).

Shapes: ``features_t(X)`` is (r, n) (feature-major, what ``P(K)^T W`` needs); ``features(X)`` is
(n, r) (a transposed view of the same memory); ``feature_bounds`` is (r,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import torch
from mpmath.libmp import from_rational, mpf_sqrt, to_float

from dpxattn.accounting import feature_dimension
from dpxattn.errors import ParameterError, ShapeError
from dpxattn.fast.directed import exact_fraction, memo_safe
from dpxattn.params import check_degree, check_positive, check_positive_int
from dpxattn.reference.kernel import default_scale, exponent_profiles
from dpxattn.reference.kernel import multi_indices as _reference_multi_indices

__all__ = [
    "FEATURE_CHUNK_ELEMENTS",
    "multi_indices",
    "FeaturePlan",
    "feature_plan",
    "features_t",
    "features",
    "feature_chunks",
    "chunk_rows",
    "feature_bounds",
    "default_scale",
]

#: target number of feature elements (r x rows) per chunk: a few MiB, cache-friendly
FEATURE_CHUNK_ELEMENTS = 1 << 18


#: THE feature order and the paper's default scale: the reference's definitions (one per concept),
#: the order memoised here because the fast path asks for it on every feature plan.
multi_indices = lru_cache(maxsize=256)(_reference_multi_indices)


def _sqrt_to_float(q: Fraction) -> float:
    """sqrt of an exact rational, to float64 (computed at 96 bits then rounded to nearest)."""
    return to_float(mpf_sqrt(from_rational(q.numerator, q.denominator, 96, "n"), 96, "n"))


@dataclass(frozen=True)
class FeaturePlan:
    """How to generate P(x) feature-major for one (d, degree, scale).

    ``steps`` lists ``(dst_start, src_start, length, i)``: rows ``dst_start:dst_start+length`` of
    the output are input coordinate ``i`` times rows ``src_start:src_start+length`` (both absolute
    row offsets into the (r, n) output). ``coef`` (float64, (r,)) are the coefficients
    ``sqrt(scale^|alpha| / alpha!)``; ``degrees`` the |alpha| of each row.
    """

    d: int
    degree: int
    r: int
    scale: Fraction
    steps: tuple[tuple[int, int, int, int], ...]
    coef: tuple[float, ...]
    degrees: tuple[int, ...]
    alphas: tuple[tuple[int, ...], ...]


@lru_cache(maxsize=256)
def _plan(d: int, s: int, scale: Fraction) -> FeaturePlan:
    # offsets of each degree block and its length C(d + k - 1, k)
    counts = [math.comb(d + k - 1, k) for k in range(s + 1)]
    offsets = [sum(counts[:k]) for k in range(s + 1)]
    steps = []
    for k in range(1, s + 1):
        dst = offsets[k]
        for i in range(d):
            # degree-(k-1) multisets with smallest index >= i: C((d - i) + (k - 1) - 1, k - 1)
            length = math.comb(d - i + k - 2, k - 1) if k >= 2 else 1
            src = offsets[k - 1] + counts[k - 1] - length
            steps.append((dst, src, length, i))
            dst += length
        assert dst == offsets[k] + counts[k]
    alphas = multi_indices(d, s)
    per_profile: dict = {}  # one exact value per exponent profile (reference.kernel)
    coef, degs = [], []
    for key in exponent_profiles(d, s):
        c = per_profile.get(key)
        if c is None:
            fact = math.prod(math.factorial(a) for a in key)
            c = per_profile[key] = _sqrt_to_float(scale ** sum(key) / fact)
        coef.append(c)
        degs.append(sum(key))
    return FeaturePlan(d, s, len(alphas), scale, tuple(steps), tuple(coef), tuple(degs), alphas)


def feature_plan(d: int, degree: int, scale=None) -> FeaturePlan:
    """The cached :class:`FeaturePlan` for ``(d, degree, scale)`` (scale default ``1/d``).

    Memoised on the arguments as given (type and value; public parameters only), so a build or
    a query asks for its plan without re-validating and re-converting them each time; invalid
    arguments are never memoised and raise the same errors every time."""
    if memo_safe(d, degree, scale):
        return _feature_plan_memo(d, degree, scale)
    return _feature_plan(d, degree, scale)


def _feature_plan(d, degree, scale) -> FeaturePlan:
    d = check_positive_int("d", d)
    s = check_degree(degree)
    sc = default_scale(d) if scale is None else exact_fraction("scale", check_positive("scale", scale))
    plan = _plan(d, s, sc)
    assert plan.r == feature_dimension(d, s)
    return plan


_feature_plan_memo = lru_cache(maxsize=256, typed=True)(_feature_plan)


_COEF_CACHE: dict = {}


def _coef(plan: FeaturePlan, dtype: torch.dtype, device: torch.device, lift: int = 0) -> torch.Tensor:
    """The coefficients (r,) times 2^lift (exact: a power of two)."""
    key = (plan.d, plan.degree, plan.scale, dtype, str(device), lift)
    t = _COEF_CACHE.get(key)
    if t is None:
        t = torch.tensor(plan.coef, dtype=torch.float64).mul_(2.0 ** lift).to(device=device,
                                                                              dtype=dtype)
        if len(_COEF_CACHE) > 512:
            _COEF_CACHE.clear()
        _COEF_CACHE[key] = t
    return t


def _fill(out: torch.Tensor, xt: torch.Tensor, plan: FeaturePlan, lift: int = 0) -> None:
    """Write P of the columns of ``xt`` (d, c) into ``out`` (r, c), feature-major, times 2^lift."""
    out[0].fill_(1.0)
    steps = plan.steps
    if plan.degree >= 1:
        # degree 1: x_i * 1.0 == x_i exactly, so one copy replaces d products (bit-identical)
        out[1:1 + plan.d].copy_(xt)
        steps = steps[plan.d:]
    for dst, src, length, i in steps:
        torch.mul(out[src:src + length], xt[i], out=out[dst:dst + length])
    out.mul_(_coef(plan, out.dtype, out.device, lift).unsqueeze(1))


_GATHER_CACHE: dict = {}


def _gathers(plan: FeaturePlan, device: torch.device) -> tuple:
    """Per degree k >= 2: ``(dst_start, dst_stop, parents, coords)`` (index tensors on
    ``device``): the rows ``dst_start:dst_stop`` are ``out[parents] * xt[coords]``, i.e. all of
    :attr:`FeaturePlan.steps` of that degree in one product (the same products, bit-identical)."""
    key = (plan.d, plan.degree, plan.scale, str(device))
    got = _GATHER_CACHE.get(key)
    if got is None:
        got = []
        for k in range(2, plan.degree + 1):
            steps = [step for step in plan.steps if plan.degrees[step[0]] == k]
            parents = [src + j for _, src, length, _ in steps for j in range(length)]
            coords = [i for _, _, length, i in steps for _ in range(length)]
            got.append((steps[0][0], steps[-1][0] + steps[-1][2],
                        torch.tensor(parents, dtype=torch.long, device=device),
                        torch.tensor(coords, dtype=torch.long, device=device)))
        got = tuple(got)
        if len(_GATHER_CACHE) > 512:
            _GATHER_CACHE.clear()
        _GATHER_CACHE[key] = got
    return got


def _fill_gathered(out: torch.Tensor, xt: torch.Tensor, plan: FeaturePlan, lift: int = 0) -> None:
    """:func:`_fill` with one gathered product per degree instead of d (few large ops: what a
    query of m tokens needs; bit-identical to :func:`_fill`). Temporaries: two (block, c)
    gathers, so the build's memory-bounded chunks use :func:`_fill` instead."""
    out[0].fill_(1.0)
    if plan.degree >= 1:
        out[1:1 + plan.d].copy_(xt)
    for dst, stop, parents, coords in _gathers(plan, out.device):
        torch.mul(out.index_select(0, parents), xt.index_select(0, coords), out=out[dst:stop])
    out.mul_(_coef(plan, out.dtype, out.device, lift).unsqueeze(1))


def _differentiable(xt: torch.Tensor, plan: FeaturePlan) -> torch.Tensor:
    """P of the columns of ``xt`` (d, c) as a new (r, c) tensor through autograd-friendly ops
    (the same products as :func:`_fill`, one ``cat`` per degree; used when ``xt`` requires grad)."""
    offsets = [plan.degrees.index(k) for k in range(plan.degree + 1)]
    prev = torch.ones_like(xt[:1])
    blocks = [prev]
    for k in range(1, plan.degree + 1):
        base = offsets[k - 1]
        pieces = [prev[src - base:src - base + length] * xt[i]
                  for dst, src, length, i in plan.steps if plan.degrees[dst] == k]
        prev = torch.cat(pieces, dim=0)
        blocks.append(prev)
    out = torch.cat(blocks, dim=0)
    return out * _coef(plan, out.dtype, out.device).unsqueeze(1)


def _check_x(X: torch.Tensor, d: int | None) -> torch.Tensor:
    if not isinstance(X, torch.Tensor):
        raise ShapeError("X", "must be a torch.Tensor", type(X).__name__)
    if X.dim() != 2:
        raise ShapeError("X", "must have shape (n, d)", tuple(X.shape))
    if d is not None and X.shape[1] != d:
        raise ShapeError("X", f"must have d = {d} columns", tuple(X.shape))
    if X.dtype not in (torch.float64, torch.float32):
        raise ParameterError("X.dtype", "must be torch.float64 or torch.float32", X.dtype)
    return X


def chunk_rows(r: int, elements: int = FEATURE_CHUNK_ELEMENTS) -> int:
    """Rows per chunk so that a (r, rows) feature block holds about ``elements`` entries."""
    return max(64, elements // max(1, r))


def feature_chunks(X: torch.Tensor, degree: int, *, scale=None, rows: int | None = None,
                   lift: int = 0):
    """Yield ``(start, stop, F)`` with ``F`` = P(X[start:stop]) feature-major, shape (r, stop-start).

    ``F`` is a view of one reused buffer: consume it (or overwrite it in place) before the next
    iteration. dtype and device are those of ``X``. Memory: O(rows * r). ``lift``: F is
    P(X) 2^lift, the power of two folded into the coefficients (the same float64 numbers times
    2^lift exactly, barring overflow; the exact accumulation's lattice scaling).
    """
    X = _check_x(X, None)
    n, d = X.shape
    plan = feature_plan(d, degree, scale)
    rows = chunk_rows(plan.r) if rows is None else int(rows)
    buf = torch.empty((plan.r, min(rows, max(n, 1))), dtype=X.dtype, device=X.device)
    # a small input (one chunk whose gathers fit in one chunk's elements) is filled with one
    # gathered product per degree: fewer ops where the fixed per-op cost dominates, the same
    # products (bit-identical), temporaries <= 2 r n <= FEATURE_CHUNK_ELEMENTS
    small = n <= rows and 2 * plan.r * n <= FEATURE_CHUNK_ELEMENTS
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        F = buf[:, : stop - start]
        if small:
            _fill_gathered(F, X[start:stop].t().contiguous(), plan, lift)
        else:
            _fill(F, X[start:stop].t(), plan, lift)
        yield start, stop, F


def features_t(X: torch.Tensor, degree: int, *, scale=None, out: torch.Tensor | None = None,
               rows: int | None = None, plan: FeaturePlan | None = None) -> torch.Tensor:
    """P(X) feature-major: shape (r, n), dtype/device of ``X`` (float64 or float32).

    Paper: polynomial kernel features (v2 App. I); PAPER.md §2.3.
    Written chunk by chunk into ``out`` (allocated if None); no temporaries beyond one chunk
    (each chunk's (d, rows) transposed input is made contiguous: the broadcast products then
    read unit-stride rows). ``plan``: the :func:`feature_plan` of ``(X.shape[1], degree,
    scale)`` when the caller has it (per-query callers cache it; it must match).
    """
    X = _check_x(X, None)
    n, d = X.shape
    if plan is None:
        plan = feature_plan(d, degree, scale)
    elif plan.d != d or plan.degree != degree:
        raise ShapeError("plan", f"must be the feature plan of d = {d}, degree = {degree}",
                         (plan.d, plan.degree))
    if X.requires_grad and torch.is_grad_enabled():
        if out is not None:
            raise ShapeError("out", "must be None when X requires grad", "a tensor")
        return _differentiable(X.t(), plan)
    if out is None:
        out = torch.empty((plan.r, n), dtype=X.dtype, device=X.device)
    elif out.shape != (plan.r, n) or out.dtype != X.dtype:
        raise ShapeError("out", f"must be a ({plan.r}, {n}) tensor of dtype {X.dtype}",
                         (tuple(out.shape), out.dtype))
    rows = chunk_rows(plan.r) if rows is None else int(rows)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        _fill_gathered(out[:, start:stop], X[start:stop].t().contiguous(), plan)
    return out


def features(X: torch.Tensor, degree: int, *, scale=None) -> torch.Tensor:
    """P(X) row-wise: shape (n, r) (a transposed view of :func:`features_t`'s (r, n) result)."""
    return features_t(X, degree, scale=scale).t()


def feature_bounds(d: int, degree: int, R, *, scale=None, dtype=torch.float64,
                   device=None) -> torch.Tensor:
    """M_alpha = R^|alpha| sqrt(scale^|alpha| / alpha!) (the bound of P(x)_alpha on [0, R]^d).

    Shape (r,); float64 values rounded to nearest from the exact
    ``sqrt(R^(2|alpha|) scale^|alpha| / alpha!)``. Paper: feature bound (PAPER.md §2.3).
    A new tensor on every call (a copy of a memoised float64 CPU tensor of public constants).
    """
    if memo_safe(d, degree, R, scale):
        base = _bounds_memo(d, degree, R, scale)
    else:
        base = _bounds_tensor(d, degree, R, scale)
    return base.to(device=device, dtype=dtype, copy=True)


def _bounds_tensor(d, degree, R, scale) -> torch.Tensor:
    """The (r,) float64 CPU tensor of M_alpha for the arguments as given (validated here)."""
    plan = feature_plan(d, degree, scale)
    Rq = exact_fraction("R", check_positive("R", R))
    return torch.tensor(_bound_values(plan.d, plan.degree, plan.scale, Rq), dtype=torch.float64)


#: keyed by argument type and value (public parameters only); never handed out, only copied
_bounds_memo = lru_cache(maxsize=256, typed=True)(_bounds_tensor)


@lru_cache(maxsize=256)
def _bound_values(d: int, s: int, scale: Fraction, Rq: Fraction) -> tuple[float, ...]:
    per_profile: dict = {}  # one exact value per exponent profile (reference.kernel)
    vals = []
    for key in exponent_profiles(d, s):
        v = per_profile.get(key)
        if v is None:
            k = sum(key)
            fact = math.prod(math.factorial(a) for a in key)
            v = per_profile[key] = _sqrt_to_float(Rq ** (2 * k) * scale**k / fact)
        vals.append(v)
    return tuple(vals)
