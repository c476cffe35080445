"""Public maps of projected vectors into the mechanism's domain (``domain="ball"`` or ``"box"``).

After a public projection (:mod:`dpxattn.fast.projection`) the rows must satisfy the public
bounds that every sensitivity is computed for: l2 norm <= R for ``domain="ball"``
(``proofs_notes/27-ball-domain.md``), entries in [0, R] for the paper's box (PAPER.md §1.1).
Each map here acts on one row at a time with constants that are **public** (R, an input scale,
bounds given by the caller or derived from a norm bound that holds for every possible input),
so applied to the private keys it is a per-record map: it changes neither the adjacency nor any
sensitivity. Nothing here looks at the private set to choose a constant: the box bounds come
either from a norm bound (:meth:`BoxMap.from_norm_bound`, sure for every input) or from a sample
the caller declares public (:meth:`BoxMap.from_public_sample`, then clipped). The same maps are
applied to queries (public).

On real sentence embeddings the signed ball is the domain that works; the box form
of the same vectors gives chance-level attention (measured by ``dpxattn eval``), and the evaluation
reports both.

Shapes: (n, d) in, (n, d) float64 out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dpxattn.errors import ParameterError, ShapeError
from dpxattn.params import check_positive
from dpxattn.fast.projection import _matrix
from dpxattn.fast.validation import check_ball_rows, check_range

__all__ = ["to_ball", "BoxMap"]


def to_ball(X, R, *, normalize: bool = True, input_scale: float = 1.0) -> torch.Tensor:
    """Rows of ``X`` (n, d) mapped into the l2 ball of radius R (``domain="ball"``).

    ``normalize=True``: radial normalisation x -> R x / ||x|| (onto the sphere; a zero row stays
    zero): attention then sees directions only, i.e. cosine similarities, which is how sentence
    embeddings are compared. ``normalize=False``: x -> input_scale * x, then rows of norm > R are
    projected radially onto the ball (the same per-record clip that ``build(clip=True)`` does).
    Either way the result passes the ball's exact norm test (:func:`check_ball_rows`: a row
    whose float norm rounds above R is shrunk until the exact test passes). Paper: none (the
    ball is the signed domain of ``proofs_notes/27-ball-domain.md``); clip: PAPER.md §5 item 19."""
    R = check_positive("R", R)
    check_positive("input_scale", input_scale)
    X = _matrix(X, "X")
    if normalize:
        norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
        X = torch.where(norms > 0, X / torch.where(norms > 0, norms, 1.0) * float(R), X)
    else:
        X = X * float(input_scale)
    return check_ball_rows(X, "X", R, clip=True)


@dataclass(frozen=True)
class BoxMap:
    """x -> clip((x - lo) / (hi - lo) * R, 0, R), coordinate-wise: [lo, hi] onto [0, R]
    (``domain="box"``, the paper's [0, R]^d). ``lo``, ``hi``: (d,) float64 public bounds with
    lo < hi; entries outside [lo, hi] are clipped (a per-record map, PAPER.md §5 item 19).
    Paper: the box [0, R]^d of PAPER.md §1.1."""

    lo: torch.Tensor
    hi: torch.Tensor
    R: float

    def __post_init__(self):
        check_positive("R", self.R)
        if self.lo.shape != self.hi.shape or self.lo.ndim != 1:
            raise ShapeError("lo, hi", "must be (d,) tensors of one shape",
                             (tuple(self.lo.shape), tuple(self.hi.shape)))
        if not bool((self.hi > self.lo).all()):
            raise ParameterError("hi", "must be > lo in every coordinate", "hi <= lo somewhere")

    @classmethod
    def from_norm_bound(cls, d: int, B, R) -> "BoxMap":
        """[-B, B]^d -> [0, R]^d: sure (no clip ever acts) for inputs of l2 norm <= B, e.g.
        orthonormal projections of unit embeddings (B = 1), or of PCA-centred ones
        (B = 1 + ||mean||, :meth:`Projection.center_norm`). Public: depends on B only."""
        B = float(check_positive("B", B))
        return cls(torch.full((d,), -B, dtype=torch.float64),
                   torch.full((d,), B, dtype=torch.float64), float(R))

    @classmethod
    def from_public_sample(cls, public_sample, R, *, quantile: float = 0.0) -> "BoxMap":
        """Bounds from a sample **the caller declares public** (never private rows): per
        coordinate its ``quantile`` and ``1 - quantile`` quantiles (0: min and max). Tighter
        than a norm bound, at the price of clipping the rows outside."""
        X = _matrix(public_sample, "public_sample")
        if not 0.0 <= quantile < 0.5:
            raise ParameterError("quantile", "must lie in [0, 0.5)", quantile)
        if X.shape[0] < 2:
            raise ShapeError("public_sample", "must have at least 2 rows", tuple(X.shape))
        lo = torch.quantile(X, quantile, dim=0)
        hi = torch.quantile(X, 1.0 - quantile, dim=0)
        return cls(lo, torch.maximum(hi, lo + 1e-12), float(R))

    def describe(self, source: str | None = None) -> str:
        """One line for the privacy plan (``build(public_maps=[...])``): the affine map and
        ``source``, where its bounds came from (a norm bound, or a declared-public sample)."""
        return (f"BoxMap: coordinate-wise [lo, hi] -> [0, {self.R:g}] with clip, d = "
                f"{self.lo.shape[0]}, bounds from {source or 'public numbers'}")

    def __call__(self, X) -> torch.Tensor:
        """(n, d) -> (n, d) float64 in [0, R], passing the box's exact check."""
        X = _matrix(X, "X")
        if X.shape[1] != self.lo.shape[0]:
            raise ShapeError("X", f"must have d = {self.lo.shape[0]} columns", tuple(X.shape))
        Y = ((X - self.lo) / (self.hi - self.lo) * self.R).clamp(0.0, self.R)
        return check_range(Y, "X", 0, self.R, "[0, R]", clip=True)
