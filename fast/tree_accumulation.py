"""Exact accumulation of the ``tree`` statistic in torch: rounded terms, integer grid-cell sums.

Not in the paper (numerics at corpus scale; PAPER §5 items 13 and 18). Mirrors the definitions
of :mod:`dpxattn.reference.tree_accumulation` (term lattices, error bounds, sensitivities);
proof note ``proofs_notes/30-exact-accumulation.md`` ("The tree").

Every row's terms are computed as ``build`` computes them, fl(w fl(P_t(k))^m) (moment m in 0, 1,
2; w = v_k, or 1 for the denominator column), then rounded to the public lattice 2^-c_m:
integers of at most ``TERM_BITS`` = 32 bits. A row's cell in coordinate t is ``build``'s
``grid_cell`` of its float64 feature (the same function of the row alone). The state holds, per
leaf (cell), coordinate, column and moment, the exact integer sum as an int64 pair
(high, low), total = high 2^32 + low, 0 <= low < 2^32 after every ``add`` (a carry: canonical).
The scatter of at most ``SCATTER_ROWS`` = 2^20 rows is exact in float64 (sums below 2^52,
:class:`TreeScatter`) and adds below 2^52 to low, so nothing overflows. At release the internal
nodes are sums of their children in int64 (high and low separately, carried again), and every
released number is high 2^32 + low rounded ONCE to float64, times 2^-c_m (exact): c0 = the root
of (t = 0, m = 0), c1 = the sum over t of the roots of (t, m = 2), both formed in Python
integers first (c1 sums r roots: its high part may pass 2^53).
Shapes: state (2, G, r, d_v + 1, 3) int64 = [high, low] over the G public grid cells.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from dpxattn.accounting import padded_size
from dpxattn.fast.exact_sum import carry, dyadic_to_float
from dpxattn.fast.features import feature_chunks
from dpxattn.fast.tree import fill_internal_nodes, grid_cell
from dpxattn.reference.exact_accumulation import CARRY_BITS
from dpxattn.reference.tree_accumulation import SCATTER_ROWS

__all__ = ["new_tree_state", "add_tree_rows", "TreeScatter", "tree_sums", "tree_exact_constants"]

#: float64 elements of one chunk's (rows, r, d_v + 1, 3) terms (2 MiB: measured fastest of 2^16,
#: 2^18, 2^21 at d = 2, s = 2, d_v = 8, G = 4096)
TERM_CHUNK_ELEMENTS = 1 << 18
MOMENTS = 3


def new_tree_state(grid: int, r: int, d_v: int) -> torch.Tensor:
    """An empty state (2, G, r, d_v + 1, 3) int64: the sums of no rows."""
    return torch.zeros((2, grid, r, d_v + 1, MOMENTS), dtype=torch.int64)


def add_tree_rows(state: torch.Tensor, K: torch.Tensor, V: torch.Tensor, *, degree: int, scale,
                  bounds: torch.Tensor, exponents: tuple[int, int, int]) -> None:
    """Add the rows (K (n, d), V (n, d_v), validated float64) to the state
    (2, G, r, d_v + 1, 3) in place, exactly, whatever the chunking (module docstring): one
    :class:`TreeScatter` over all the rows, flushed."""
    scatter = TreeScatter(state, degree=degree, scale=scale, bounds=bounds, exponents=exponents,
                          rows=len(K))
    scatter.add(K, V)
    scatter.flush()


class TreeScatter:
    """The scatter of rows' rounded terms into a tree state, exact, over any number of ``add``
    calls, then one ``flush`` (the state is canonical after ``flush`` only).

    It runs in float64 (torch's int64 ``index_add_`` is about 7x slower): every rounded term is
    an integer with |t| <= 2^32 (``TERM_BITS``), so over at most ``SCATTER_ROWS`` = 2^20 rows
    every partial sum of a cell is an integer below 2^52 in magnitude and the float additions
    are exact in any order; then the buffer goes into the int64 state's low part and is
    carried. Its buffers are reused (fresh large temporaries per chunk cost more in page faults
    than the arithmetic) and hold only sums of rows already added; :meth:`flush` zeroes them."""

    def __init__(self, state: torch.Tensor, *, degree: int, scale, bounds: torch.Tensor,
                 exponents: tuple[int, int, int], rows: int) -> None:
        _, G, r, cols, _ = state.shape
        dev = state.device
        self.state, self.degree, self.scale, self.bounds = state, degree, scale, bounds
        self.lift = torch.tensor([2.0 ** c for c in exponents], dtype=torch.float64, device=dev)
        self.coord = torch.arange(r, device=dev)
        self.rows = max(1, min(SCATTER_ROWS, TERM_CHUNK_ELEMENTS // (r * cols * MOMENTS), rows))
        self.sums = torch.zeros((G * r, cols * MOMENTS), dtype=torch.float64, device=dev)
        self.terms = torch.empty((self.rows, r, cols, MOMENTS), dtype=torch.float64, device=dev)
        self.W = torch.empty((self.rows, cols), dtype=torch.float64, device=dev)
        self.W[:, cols - 1] = 1.0
        self.pending = 0

    def add(self, K: torch.Tensor, V: torch.Tensor) -> None:
        """Scatter the rows' rounded terms (K (n, d), V (n, d_v), validated float64)."""
        d_v = V.shape[1]
        G, r, cols = self.state.shape[1], self.state.shape[2], d_v + 1
        for start, stop, F in feature_chunks(K, self.degree, scale=self.scale, rows=self.rows):
            c = stop - start
            if self.pending + c > SCATTER_ROWS:
                self.flush()
            W = self.W[:c]
            W[:, :d_v] = V[start:stop]
            Phi = F.t()  # (c, r)
            cells = grid_cell(Phi, self.bounds, G)
            powers = torch.stack([torch.ones_like(Phi), Phi, Phi * Phi], dim=-1)  # (c, r, 3)
            powers.mul_(self.lift)  # exact (a power of two): fl(w p) 2^c = fl(w (p 2^c))
            terms = self.terms[:c]
            torch.mul(W[:, None, :, None], powers[:, :, None, :], out=terms)  # build's floats 2^c
            terms.round_()  # integers, |.| <= 2^TERM_BITS
            self.sums.index_add_(0, (cells * r + self.coord).reshape(-1),
                                 terms.reshape(c * r, cols * MOMENTS))
            self.pending += c

    def flush(self) -> None:
        """state += the scattered sums (exact integers below 2^52), carried (canonical); the
        buffer zeroed."""
        self.state[1] += self.sums.to(torch.int64).view(self.state.shape[1:])
        carry(self.state)
        self.sums.zero_()
        self.pending = 0


def _to_float(high: torch.Tensor, low: torch.Tensor, exponents) -> torch.Tensor:
    """(high 2^32 + low) 2^-c_m as float64, one rounding: high (< 2^53 in magnitude) and low
    (< 2^32) are exact float64 numbers, high 2^32 is exact, their sum is rounded once and the
    power of two is exact. The last dimension is the moment m."""
    scale = torch.tensor([2.0 ** -c for c in exponents], dtype=torch.float64, device=high.device)
    return (high.to(torch.float64) * 2.0 ** CARRY_BITS + low.to(torch.float64)) * scale


def tree_sums(state: torch.Tensor, exponents) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nodes (2N - 1, r, d_v + 1, 3), scalars (d_v + 1, 2))`` float64 of a canonical state:
    every node the exact sum of its leaves' rounded terms (padding leaves zero), c0 and c1 per
    column; each number rounded once (module docstring)."""
    _, G, r, cols, _ = state.shape
    N = padded_size(G)
    nodes = torch.zeros((2, 2 * N - 1, r, cols, MOMENTS), dtype=torch.int64, device=state.device)
    nodes[:, N - 1:N - 1 + G] = state
    fill_internal_nodes(nodes[0])  # |high| <= n at the root (terms below 2^32)
    fill_internal_nodes(nodes[1])  # low < N 2^32 at the root
    carry(nodes)
    root = nodes[:, 0]  # (2, r, cols, 3)
    c0 = root[:, 0, :, 0]  # (2, cols): the moment-0 terms are w, the same for every t
    c1 = root[:, :, :, 2].sum(dim=1)  # (2, cols): sum_t of the moment-2 roots, in integers
    # c1 sums r roots: its high part may pass 2^53, so the scalars go through Python integers
    scalars = torch.tensor([[dyadic_to_float((h0 << CARRY_BITS) + l0, exponents[0]),
                             dyadic_to_float((h1 << CARRY_BITS) + l1, exponents[2])]
                            for h0, l0, h1, l1 in zip(*(x.tolist() for x in (c0[0], c0[1], c1[0],
                                                                            c1[1])))],
                           dtype=torch.float64, device=state.device)
    values = _to_float(nodes[0], nodes[1], exponents)
    return values, scalars


@lru_cache(maxsize=64)
def _tree_exact(n, d, degree, R, R_w, d_v, scale, grid, copies):
    from dpxattn.fast.sensitivities import round_up
    from dpxattn.reference import kernel
    from dpxattn.reference import tree_accumulation as ta

    M = kernel.feature_bounds(d, degree, R, scale=scale)
    T = kernel.feature_norm_sq_bound(d, degree, R, scale=scale)
    ex = ta.term_exponents(M, R_w)
    scal, levels = ta.rounded_tree_sensitivities(n, d, degree, R, R_w, d_v, ex, scale=scale)
    errors = ta.term_error_bounds(M, R_w, d_v, degree, ex)
    up = 1 + 2.0 ** -40  # |fl(x)| <= |x| (1 + 2^-53)
    cols, r = d_v + 1, len(M)
    scalar_sens = np.empty((cols, 2))
    node_sens = np.empty((cols, r, 3))
    scalar_bounds = np.empty((cols, 2))
    node_bounds = np.empty((cols, r, 3))
    for k, W in enumerate([R_w] * d_v + [1.0]):
        e = errors[k]
        E2 = sum(row[2] for row in e)
        scalar_sens[k] = [round_up(x, "rounded tree scalar sensitivity") for x in scal[k]]
        scalar_bounds[k] = (round_up(n * (W + e[0][0]) * up, "c0 value bound"),
                            round_up(n * (W * T + E2) * up, "c1 value bound"))
        for t, Mt in enumerate(M):
            for m in range(3):
                node_sens[k, t, m] = round_up(levels[k][t][m], "rounded tree level sensitivity")
                node_bounds[k, t, m] = round_up(n * (W * Mt ** m + e[t][m]) * up,
                                                "node value bound")
    l2 = round_up(ta.rounded_tree_l2(n, d, degree, R, R_w, d_v, ex, grid_size=grid,
                                     copies=copies, scale=scale), "rounded tree l2 sensitivity")
    for a in (scalar_sens, node_sens, scalar_bounds, node_bounds):
        a.setflags(write=False)
    return ex, scalar_sens, node_sens, scalar_bounds, node_bounds, l2


def tree_exact_constants(*, n: int, d: int, degree: int, R, R_w, d_v: int, grid: int,
                         copies: int = 1, scale=None) -> tuple:
    """``(exponents, scalar_sens (d_v + 1, 2), node_sens (d_v + 1, r, 3), scalar_bounds,
    node_bounds, l2)`` of a streaming tree release, float64 rounded up (read-only arrays): the
    term exponents (c_0, c_1, c_2); the l1 sensitivities of the released float64 c0, c1 and of
    one level of each (column, coordinate, moment) DPTree of the rounded sums
    (:func:`dpxattn.reference.tree_accumulation.rounded_tree_sensitivities`); public bounds on
    every |released sum| (n (W M_t^m + e), n (W + e_0), n (W T + E_2), times 1 + 2^-40); the l2
    sensitivity of the whole released vector (``rounded_tree_l2``, the Gaussian law). n enters
    only through the float64 conversion (2^-53 n relative). Memoised (public parameters).
    Proof note ``proofs_notes/30-exact-accumulation.md`` ("The tree")."""
    from dpxattn.fast.sensitivities import _key

    return _tree_exact(int(n), int(d), int(degree), _key(R), _key(R_w), int(d_v), _key(scale),
                       int(grid), int(copies))
