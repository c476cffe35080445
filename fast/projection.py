"""Public linear projections from an embedding space (dimension D) to the mechanism's d.

The feature dimension r = C(d + s, s) of the polynomial kernel (PAPER.md §2.3) forces a small d,
while real sentence embeddings have hundreds of dimensions (the real-data evaluation,
``dpxattn eval``). A projection applied row by row before :meth:`DPCrossAttention.build` is a
fixed public map of each record, so it changes no sensitivity and costs no privacy **provided
the map itself does not depend on the private set** (``proofs_notes/28-public-maps.md``). The two maps here are public by
construction:

* :func:`random_projection`: a random D x d matrix with orthonormal columns, drawn from an
  explicit generator (None: a seed from the OS CSPRNG), independent of any data;
* :func:`fit_pca`: the top-d principal directions of a sample **that the caller declares
  public** (e.g. documents that are not in the private context, or a public corpus of the same
  kind). It is fitted on that argument only; nothing here reads the private keys. Passing
  private rows to it would make the projection a function of the private set and void the
  privacy plan: that is the caller's promise, stated by the argument's name.

Shapes: inputs (n, D), outputs (n, d), float64 torch tensors (numpy arrays are accepted).
Not in the paper (its keys are given in [0, R]^d); the domain maps that follow a projection are
in :mod:`dpxattn.fast.domain_map`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np
import torch

from dpxattn.errors import ParameterError, ShapeError
from dpxattn.params import check_positive_int

__all__ = ["Projection", "random_projection", "fit_pca"]


def _matrix(X, name: str) -> torch.Tensor:
    if isinstance(X, np.ndarray) or not isinstance(X, torch.Tensor):
        X = torch.as_tensor(np.asarray(X, dtype=np.float64))
    if X.ndim != 2:
        raise ShapeError(name, "must be a 2-D (n, D) array", tuple(X.shape))
    X = X.to(torch.float64)
    if X.numel() and not bool(torch.isfinite(X).all()):
        raise ParameterError(name, "must be finite (no NaN or inf)", "a non-finite entry")
    return X


@dataclass(frozen=True)
class Projection:
    """x -> (x - mean) @ matrix, a public affine map R^D -> R^d.

    ``matrix``: (D, d) float64 with orthonormal columns (``matrix.T @ matrix = I_d``), so the
    map is a contraction: ``||(x - mean) @ matrix|| <= ||x - mean||``. ``mean``: (D,) float64
    (zero for a random projection; the public sample's mean for PCA). ``kind``: "random" or
    "pca"; ``explained``: for PCA the fraction of the public sample's variance kept, else None.
    Paper: none (a public per-record map before build, PAPER.md §5 item 19).
    """

    matrix: torch.Tensor
    mean: torch.Tensor
    kind: str
    explained: float | None = None

    @property
    def dims(self) -> tuple[int, int]:
        """(D, d)."""
        return tuple(self.matrix.shape)

    def __call__(self, X) -> torch.Tensor:
        """(n, D) -> (n, d) float64."""
        X = _matrix(X, "X")
        if X.shape[1] != self.matrix.shape[0]:
            raise ShapeError("X", f"must have D = {self.matrix.shape[0]} columns", tuple(X.shape))
        return (X - self.mean) @ self.matrix

    def center_norm(self) -> float:
        """||mean||_2: with inputs of norm <= B, outputs have norm <= B + ||mean|| (public)."""
        return float(torch.linalg.vector_norm(self.mean))

    def describe(self, source: str | None = None) -> str:
        """One line for the privacy plan (``build(public_maps=[...])``): the kind, D -> d, and
        ``source``, what a PCA was fitted on (the caller's declared-public sample)."""
        D, d = self.dims
        if self.kind == "pca":
            kept = "" if self.explained is None else f", keeps {self.explained:.3g} of its variance"
            return (f"PCA {D} -> {d} fitted on {source or 'a sample declared public'}"
                    f" (centred by its mean{kept})")
        return f"random orthogonal projection {D} -> {d} (data-independent, seeded)"


def _dims(D, d) -> tuple[int, int]:
    D = check_positive_int("D", D)
    d = check_positive_int("d", d)
    if d > D:
        raise ParameterError("d", f"must be <= D = {D} (a projection cannot add dimensions)", d)
    return D, d


def random_projection(D: int, d: int, *, generator: torch.Generator | None = None) -> Projection:
    """A uniformly random (Haar) D x d matrix with orthonormal columns: QR of a Gaussian
    matrix with the signs of R's diagonal moved into Q. Data-independent, hence public.

    ``generator``: a seeded :class:`torch.Generator` (reproducible) or None (a seed from the OS
    CSPRNG via :mod:`secrets`). Same generator state, same matrix. Paper: none."""
    D, d = _dims(D, d)
    if generator is None:
        generator = torch.Generator().manual_seed(secrets.randbits(63))
    elif not isinstance(generator, torch.Generator):
        raise ParameterError("generator", "must be a torch.Generator or None", type(generator))
    G = torch.randn((D, d), generator=generator, dtype=torch.float64)
    Q, Rm = torch.linalg.qr(G)
    diag = torch.diagonal(Rm)
    Q = Q * torch.where(diag < 0, -1.0, 1.0).to(torch.float64)
    return Projection(Q.contiguous(), torch.zeros(D, dtype=torch.float64), "random")


def fit_pca(public_sample, d: int, *, center: bool = True) -> Projection:
    """The top-d principal directions of ``public_sample`` (p, D), as a :class:`Projection`.

    ``public_sample`` must be data the caller declares public (never rows of the private
    context: see the module docstring); only it is read. ``center``: subtract its mean first
    (the mean is part of the public map). Directions are the right singular vectors of the
    (centred) sample, sign-fixed so each direction's largest-magnitude entry is positive
    (deterministic). Needs p >= d rows. Paper: none (keys are given in [0, R]^d, PAPER.md
    §1.1)."""
    X = _matrix(public_sample, "public_sample")
    p, D = X.shape
    D, d = _dims(D, d)
    if p < d:
        raise ShapeError("public_sample", f"must have at least d = {d} rows", tuple(X.shape))
    mean = X.mean(dim=0) if center else torch.zeros(D, dtype=torch.float64)
    _, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    W = Vh[:d].T.contiguous()
    pivot = W.abs().argmax(dim=0)
    signs = torch.sign(W[pivot, torch.arange(d)])
    W = W * signs
    total = float((S ** 2).sum())
    explained = float((S[:d] ** 2).sum()) / total if total > 0 else None
    return Projection(W, mean, "pca", explained)
