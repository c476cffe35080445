"""The benchmark's own noiseless and exact baselines (never the code under test).

Every ratio the benchmark prints divides a ``dpxattn.fast`` time by one of these, measured in the
same process. They are written here, independently of ``fast/``, so that a slow or wrong fast
path cannot make its own denominator slow or wrong too.

* :class:`FeatureMapBaseline` - the Taylor feature map P (PAPER §2.3; DESIGN §4 monomial order;
  ``proofs_notes/01-conventions.md``), evaluated feature-major: P(X)^T is an (r, c) array, the
  rows of degree k are (parent row of degree k-1) * (one coordinate row) * sqrt(scale / mult),
  so each step is a contiguous row gather plus a multiply, on cache-sized chunks of c rows.
* :func:`noiseless_build` - S = P(K)^T [V, 1] (r x (d_v + 1)): the noiseless M and z of the
  ``direct`` mechanism (DESIGN §2), accumulated in float64 chunk by chunk.
* :func:`linear_attention` - the noiseless polynomial (Taylor) attention (P(Q) M) / (P(Q) z),
  shape (m, d_v): the floor a DP query is compared with.
* :func:`sdpa_exact` - exact softmax attention by ``torch.nn.functional.scaled_dot_product_attention``.
* :func:`numpy_exact_softmax` - exact softmax attention in numpy float64 (the test oracle's
  arithmetic), chunked over query tokens.
* :func:`python_walk_range_sums` - range sums over a level-order tree array answered one query
  at a time by a Python loop over the canonical nodes (the naive baseline of the tree queries).
* :func:`canonical_node_counts` - how many canonical nodes a batch of ranges decomposes into
  (vectorised), to turn a tree query time into bytes gathered per second.

Paper location of the structures measured: DPTree / DPTreeDistance / the cross-attention
structure - paper: v2 §4 and App. D; spec PAPER.md §3.1-3.5.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import torch

__all__ = [
    "FeatureMapBaseline",
    "feature_bounds",
    "noiseless_build",
    "linear_attention",
    "sdpa_exact",
    "numpy_exact_softmax",
    "python_walk_range_sums",
    "canonical_node_counts",
    "tree_split_cells",
    "L2_TARGET_BYTES",
]

#: feature-chunk target size: r * c * 8 bytes of P(X)^T should stay inside one core's L2 (1 MiB)
L2_TARGET_BYTES = 1 << 19


class FeatureMapBaseline:
    """Feature-major evaluation of the Taylor features P(x) in the DESIGN §4 order.

    ``P(x)_alpha = x^alpha sqrt(scale^|alpha| / alpha!)`` for the multisets of
    ``combinations_with_replacement(range(d), k)``, k = 0..degree. Shapes: :meth:`transposed`
    maps X^T (d, c) to P(X)^T (r, c).
    """

    def __init__(self, d: int, degree: int, scale: float, *, device="cpu", dtype=torch.float64):
        self.d, self.degree, self.scale = int(d), int(degree), float(scale)
        index: dict[tuple[int, ...], int] = {}
        self.blocks: list[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for k in range(self.degree + 1):
            start = len(index)
            parents, lasts, ratios = [], [], []
            for combo in itertools.combinations_with_replacement(range(self.d), k):
                index[combo] = len(index)
                if k:
                    parents.append(index[combo[:-1]])
                    lasts.append(combo[-1])
                    ratios.append(math.sqrt(self.scale / Counter(combo)[combo[-1]]))
            if k:
                self.blocks.append((
                    start, len(index),
                    torch.tensor(parents, dtype=torch.long, device=device),
                    torch.tensor(lasts, dtype=torch.long, device=device),
                    torch.tensor(ratios, dtype=dtype, device=device).unsqueeze(1),
                ))
        self.r = len(index)
        self.dtype = dtype
        self.device = torch.device(device)

    def chunk_rows(self) -> int:
        """Rows per chunk so that one P(X)^T chunk is about :data:`L2_TARGET_BYTES`."""
        return max(64, (L2_TARGET_BYTES // (8 * self.r)) // 64 * 64)

    def transposed(self, xt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """P(X)^T of shape (r, c) from X^T of shape (d, c) (contiguous)."""
        c = xt.shape[1]
        f = out if out is not None else torch.empty((self.r, c), dtype=xt.dtype, device=xt.device)
        f[0].fill_(1.0)
        for start, stop, parents, lasts, ratios in self.blocks:
            block = f[start:stop]
            torch.mul(f.index_select(0, parents), xt.index_select(0, lasts), out=block)
            block.mul_(ratios.to(xt.dtype))
        return f


def feature_bounds(fmap: FeatureMapBaseline, R: float) -> torch.Tensor:
    """M_alpha = R^|alpha| sqrt(scale^|alpha| / alpha!) = P(R 1)_alpha, shape (r,)."""
    ones = torch.full((fmap.d, 1), float(R), dtype=torch.float64, device=fmap.device)
    return fmap.transposed(ones)[:, 0]


def noiseless_build(fmap: FeatureMapBaseline, K: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """S = P(K)^T [V, 1], shape (r, d_v + 1), float64; K (n, d), V (n, d_v)."""
    n, d_v = V.shape
    S = torch.zeros((fmap.r, d_v + 1), dtype=torch.float64, device=K.device)
    c = fmap.chunk_rows()
    buf = torch.empty((fmap.r, c), dtype=torch.float64, device=K.device)
    vext = torch.ones((c, d_v + 1), dtype=torch.float64, device=K.device)
    for i in range(0, n, c):
        j = min(n, i + c)
        f = fmap.transposed(K[i:j].T.to(torch.float64).contiguous(), out=buf[:, : j - i])
        vext[: j - i, :d_v] = V[i:j]
        S.addmm_(f, vext[: j - i])
    return S


def linear_attention(fmap: FeatureMapBaseline, S: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Noiseless Taylor attention (P(Q) M) / (P(Q) z), shape (m, d_v); Q (m, d), S (r, d_v + 1)."""
    fq = fmap.transposed(Q.T.to(S.dtype).contiguous())
    out = fq.T @ S
    return out[:, :-1] / out[:, -1:]


def sdpa_exact(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, scale: float) -> torch.Tensor:
    """Exact softmax(scale Q K^T) V by torch SDPA (one batch, one head), shape (m, d_v)."""
    out = torch.nn.functional.scaled_dot_product_attention(Q[None, None], K[None, None], V[None, None],
                                                           scale=scale)
    return out[0, 0]


def numpy_exact_softmax(Q: np.ndarray, K: np.ndarray, V: np.ndarray, scale: float,
                        *, chunk: int = 128) -> np.ndarray:
    """Exact softmax(scale Q K^T) V in numpy float64, max-subtracted, chunked over tokens; (m, d_v)."""
    Q = np.asarray(Q, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    out = np.empty((Q.shape[0], V.shape[1]))
    for i in range(0, Q.shape[0], chunk):
        logits = (Q[i:i + chunk] @ K.T) * scale
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        out[i:i + chunk] = (logits @ V) / logits.sum(axis=1, keepdims=True)
    return out


def python_walk_range_sums(nodes, leaves: int, starts, stops) -> list[float]:
    """Sum of leaves ``[a, b]`` (inclusive) for each query, one query at a time, in Python.

    ``nodes``: a level-order array of 2N - 1 scalars (root 0, children 2i + 1, 2i + 2, leaf j at
    N - 1 + j), N = ``leaves`` a power of two. The walk is the bottom-up canonical decomposition.
    """
    values = nodes.tolist() if hasattr(nodes, "tolist") else list(nodes)
    out = []
    for a, b in zip(starts, stops):
        lo, hi, total = int(a) + leaves, int(b) + leaves + 1, 0.0
        while lo < hi:
            if lo & 1:
                total += values[lo - 1]
                lo += 1
            if hi & 1:
                hi -= 1
                total += values[hi - 1]
            lo >>= 1
            hi >>= 1
        out.append(total)
    return out


def canonical_node_counts(leaves: int, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Number of canonical (maximal dyadic) nodes of each range ``[a, b]`` (inclusive; a > b is
    the empty range, 0 nodes) in a tree of ``leaves`` = N leaves, vectorised over the ranges."""
    lo = np.asarray(starts, dtype=np.int64) + leaves
    hi = np.asarray(stops, dtype=np.int64) + leaves + 1
    count = np.zeros(lo.shape, dtype=np.int64)
    while True:
        live = lo < hi
        if not live.any():
            return count
        left = live & (lo & 1).astype(bool)
        count += left
        lo = lo + left
        right = live & (hi & 1).astype(bool)
        count += right
        hi = hi - right
        lo >>= 1
        hi >>= 1


def tree_split_cells(features: np.ndarray, bounds: np.ndarray, grid: int) -> np.ndarray:
    """The public split cell j_t = min(floor(u_t G / M_t), G - 1) of each query feature
    (``proofs_notes/01-conventions.md``, mechanism ``tree``); features (m, r), bounds (r,)."""
    cells = np.floor(np.asarray(features) * grid / np.asarray(bounds)).astype(np.int64)
    return np.clip(cells, 0, grid - 1)
