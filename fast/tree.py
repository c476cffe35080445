"""DPTree in torch: flat level-order node arrays, batched canonical decompositions, grid cells.

Paper: DPTree (v2 §4 and App. D), DPTreeDistance over a public grid (v2 App. F,
sound variant); spec PAPER.md §3.1-3.2; layout and order
proofs_notes/01-conventions.md ("Mechanism tree").

Layout. A tree over ``G`` leaves is padded to ``N = 2^h`` leaves, ``h = ceil(log2 G)``, and stored
as one array of ``2N - 1`` node rows in level order: root 0, children of i at ``2i + 1`` and
``2i + 2``, level l occupying rows ``[2^l - 1, 2^(l+1) - 1)``, leaf g at row ``N - 1 + g``. The
payload of a row may be any trailing shape (many trees at once, as columns). Internal nodes are
built level by level from the leaves, in place (:func:`fill_internal_nodes`).

Queries. :func:`canonical_nodes` returns, for many inclusive ranges ``[lo, hi]`` at once, the
unique minimal set of maximal dyadic nodes covering each range (the iterative bottom-up
segment-tree walk, vectorised over queries: one step per level, no Python loop over queries or
nodes), padded with ``-1``. :func:`gather_sums` sums payload rows for all queries at once with
``torch.nn.functional.embedding_bag(mode="sum")``.

Grid cells. :func:`grid_cell` maps values in ``[0, M]`` to ``min(floor(x G / M), G - 1)``;
:func:`histogram_rows` accumulates weighted rows into cells with ``index_add_``.

Shapes are given per function; every index tensor is int64 on the payload's device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dpxattn.accounting import padded_size, plan_dptree, tree_levels
from dpxattn.errors import BoundError, ParameterError, ShapeError
from dpxattn.fast.release import noise_law, release_
from dpxattn.fast.uniforms import uniform_stream

__all__ = [
    "node_count",
    "level_slice",
    "leaf_slice",
    "fill_internal_nodes",
    "canonical_nodes",
    "prefix_suffix_nodes",
    "gather_sums",
    "grid_cell",
    "histogram_rows",
    "range_sums",
    "node_levels",
    "split_sums",
    "SPLIT_CHUNK_ELEMENTS",
    "DPTree",
]

#: elements of the per-chunk temporary of :func:`split_sums` (grid cells x payload columns)
SPLIT_CHUNK_ELEMENTS = 1 << 24


def node_count(leaves: int) -> int:
    """``2N - 1`` nodes for ``leaves`` leaves padded to ``N = 2^ceil(log2 leaves)``."""
    return 2 * padded_size(leaves) - 1


def level_slice(level: int) -> slice:
    """Rows of level ``level`` (root = level 0) in the level-order array."""
    return slice((1 << level) - 1, (1 << (level + 1)) - 1)


def leaf_slice(leaves: int) -> slice:
    """Rows of the ``N`` (padded) leaves."""
    N = padded_size(leaves)
    return slice(N - 1, 2 * N - 1)


def node_levels(num_nodes: int, device=None) -> torch.Tensor:
    """The level of every node row (shape (num_nodes,)): floor(log2(i + 1))."""
    idx = torch.arange(1, num_nodes + 1, device=device)
    return (torch.frexp(idx.to(torch.float64))[1] - 1).to(torch.int64)


def fill_internal_nodes(nodes: torch.Tensor) -> torch.Tensor:
    """Set every internal node to the sum of its two children, level by level, in place.

    ``nodes``: (2N - 1, ...) with the leaves already in rows ``[N - 1, 2N - 1)``. Each parent
    is ``left + right`` (one float addition per node per level: a balanced summation tree).
    Returns ``nodes``.
    """
    total = nodes.shape[0]
    N = (total + 1) // 2
    if total != 2 * N - 1 or N & (N - 1):
        raise ShapeError("nodes", "must have 2N - 1 rows with N a power of two", total)
    h = N.bit_length() - 1
    for level in range(h - 1, -1, -1):
        child = nodes[level_slice(level + 1)]
        torch.add(child[0::2], child[1::2], out=nodes[level_slice(level)])
    return nodes


def canonical_nodes(lo: torch.Tensor, hi: torch.Tensor, N: int) -> torch.Tensor:
    """Canonical decomposition of many inclusive leaf ranges ``[lo, hi]`` at once.

    ``lo``, ``hi``: int64 (Q,), ``0 <= lo``, ``hi < N``; ``lo > hi`` is the empty range.
    Returns int64 (Q, 2(h + 1)) node rows (level order), padded with -1; the valid entries of
    a row are the maximal dyadic nodes inside the range, each leaf of the range covered once
    (at most ``2h`` nodes for any range, ``popcount(hi + 1)`` for a prefix).
    """
    if N < 1 or N & (N - 1):
        raise ParameterError("N", "must be a power of two", N)
    h = N.bit_length() - 1
    lo = lo.to(torch.int64)
    hi = hi.to(torch.int64)
    left = lo + N  # heap numbering (root 1), half-open [left, right)
    right = hi + (N + 1)
    out = torch.full((lo.shape[0], 2 * (h + 1)), -1, dtype=torch.int64, device=lo.device)
    for step in range(h + 1):
        active = left < right
        take_left = active & ((left & 1) == 1)
        out[:, 2 * step] = torch.where(take_left, left - 1, -1)
        left = left + take_left.to(torch.int64)
        take_right = active & ((right & 1) == 1)
        right = right - take_right.to(torch.int64)
        out[:, 2 * step + 1] = torch.where(take_right, right - 1, -1)
        left = left >> 1
        right = right >> 1
    return out


def prefix_suffix_nodes(split: torch.Tensor, grid: int) -> torch.Tensor:
    """Nodes of the prefix ``[0, j]`` and the suffix ``[j + 1, G - 1]`` for each split cell j.

    ``split``: int64, any shape, values in ``[0, G - 1]``. Returns int64 of shape
    ``split.shape + (4(h + 1),)``: prefix nodes then suffix nodes, padded with -1 (the suffix is
    empty when ``j = G - 1``). Conventions: "Query at u = P(q)" of the tree mechanism.
    """
    N = padded_size(grid)
    flat = split.reshape(-1).to(torch.int64)
    zero = torch.zeros_like(flat)
    pre = canonical_nodes(zero, flat, N)
    suf = canonical_nodes(flat + 1, torch.full_like(flat, grid - 1), N)
    return torch.cat([pre, suf], dim=1).reshape(*split.shape, -1)


def _popcount(x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    y = x.clone()
    while bool((y > 0).any()):
        out += y & 1
        y >>= 1
    return out


def split_sums(nodes: torch.Tensor, grid: int) -> torch.Tensor:
    """For every split cell j of a grid of G cells: the sum of the canonical nodes of the
    prefix ``[0, j]`` plus those of the suffix ``[j + 1, G - 1]`` (the tree mechanism's ``Pm``).

    ``nodes``: (2N - 1, w) level-order payload. Returns (G, w). A post-processing of released
    nodes: for each j it is exactly the sum :func:`prefix_suffix_nodes` + :func:`gather_sums`
    computes, accumulated in another order. Cost O(G w): the prefix sums follow the Fenwick
    recurrence ``PF(p) = PF(p - lowbit p) + node[p - lowbit p, p)`` (p = j + 1, processed by
    popcount), the suffix sums the greedy left-to-right decomposition of ``[a, G - 1]`` into the
    largest aligned blocks (``SF(a) = node[a, a + size) + SF(a + size)``, processed by distance
    to G); both are the canonical decompositions. Columns are processed in chunks of about
    :data:`SPLIT_CHUNK_ELEMENTS` / G so the temporaries stay small.
    """
    total, width = nodes.shape
    N = (total + 1) // 2
    G = int(grid)
    dev = nodes.device
    # prefix: p = j + 1 in 1..G
    p = torch.arange(1, G + 1, device=dev)
    low = p & -p
    pf_node = (N // low - 1) + (p - low) // low
    pf_prev = p - low  # prefix length before the last block (0: none)
    pf_round = _popcount(p)
    # suffix: a in 0..G-1, the largest aligned block [a, a + size) inside [a, G - 1]
    a = torch.arange(0, G, device=dev)
    size = torch.zeros_like(a)
    e = N
    while e >= 1:
        fits = (size == 0) & (a % e == 0) & (a + e <= G)
        size = torch.where(fits, torch.full_like(a, e), size)
        e //= 2
    sf_node = (N // size - 1) + a // size
    sf_next = a + size
    depth = torch.zeros(G + 1, dtype=torch.int64, device=dev)
    for _ in range(2 * N.bit_length() + 2):
        new = torch.cat([depth[sf_next] + 1, depth[G:]])
        if torch.equal(new, depth):
            break
        depth = new
    sf_round = depth[:G]
    out = torch.empty((G, width), dtype=nodes.dtype, device=dev)
    step = max(1, SPLIT_CHUNK_ELEMENTS // max(1, G))
    for c0 in range(0, width, step):
        cols = nodes[:, c0:c0 + step]
        pf = out[:, c0:c0 + step]  # row j holds PF(j + 1) (prefix [0, j])
        for k in range(1, int(pf_round.max()) + 1):
            idx = (pf_round == k).nonzero().squeeze(1)
            rows = cols[pf_node[idx]]
            if k > 1:  # popcount >= 2: a shorter prefix precedes the last block
                rows += pf[pf_prev[idx] - 1]
            pf[idx] = rows
        sf = torch.zeros((G + 1, cols.shape[1]), dtype=nodes.dtype, device=dev)  # SF(G) = 0
        for k in range(1, int(sf_round.max()) + 1):
            idx = (sf_round == k).nonzero().squeeze(1)
            sf[idx] = cols[sf_node[idx]] + sf[sf_next[idx]]
        pf += sf[1:]
    return out


def gather_sums(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Sum rows of ``table`` (T, w) for each bag of row indices in ``rows`` (B, W), -1 = none.

    Returns (B, w) in ``table``'s dtype: one ``embedding_bag(mode="sum")`` over the flattened
    valid indices (an empty bag sums to 0); for a scalar payload (w = 1) one masked gather. Differentiable in nothing: ``table`` is released data.
    """
    valid = rows >= 0
    if table.shape[1] == 1:  # scalar payload: one masked element gather beats per-bag overhead
        vals = table[rows.clamp(min=0), 0]
        return torch.where(valid, vals, torch.zeros((), dtype=table.dtype,
                                                    device=table.device)).sum(dim=1, keepdim=True)
    counts = valid.sum(dim=1)
    flat = rows[valid]
    offsets = torch.zeros_like(counts)
    if counts.numel() > 1:
        offsets[1:] = torch.cumsum(counts, 0)[:-1]
    return F.embedding_bag(flat, table, offsets, mode="sum")


def grid_cell(x: torch.Tensor, bound, grid: int) -> torch.Tensor:
    """``min(floor(x G / M), G - 1)`` elementwise (int64): the public grid of ``G`` cells on [0, M].

    ``bound`` (M) is a float or a tensor broadcastable against ``x`` (one bound per coordinate).
    Values must lie in [0, M] (validated upstream); the result lies in [0, G - 1].
    Conventions: ``cell(x)`` of the tree mechanism; PAPER.md §3.2 (sound variant).
    """
    cells = torch.floor(x * grid / bound).to(torch.int64)
    return cells.clamp_(0, grid - 1)


def histogram_rows(out: torch.Tensor, cells: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``out[cells[i]] += values[i]`` for every i (``index_add_`` along dim 0), in place.

    ``out``: (C, ...); ``cells``: int64 (B,); ``values``: (B, ...). Summation order within a
    cell is the input order on CPU (deterministic); on CUDA atomics may reorder float additions.
    """
    return out.index_add_(0, cells, values)


def range_sums(nodes: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """DPTree.Query for many ranges: sums of the canonical nodes of ``[lo, hi]`` (PAPER §3.1).

    ``nodes``: (2N - 1, w) level-order payload (noisy or exact); ``lo``, ``hi``: int64 (Q,).
    Returns (Q, w).

    The canonical decomposition of :func:`canonical_nodes` is walked for all ranges at once and
    summed as it goes (levels bottom-up, left node before right at each level): no (Q, 2(h + 1))
    index matrix is materialised, and each level gathers only the Q candidate nodes, masked.
    The same nodes as ``gather_sums(nodes, canonical_nodes(lo, hi, N))``, summed in level order
    (the two agree to float64 rounding; a test checks it). Measured at n = 1e5 leaves, 1e5
    ranges, scalar payload: 2x faster than that gather (benchmark G9).
    """
    total = nodes.shape[0]
    N = (total + 1) // 2
    if nodes.dim() != 2:
        raise ShapeError("nodes", "must be 2-D (2N - 1, w)", tuple(nodes.shape))
    if N & (N - 1) or total != 2 * N - 1:
        raise ShapeError("nodes", "must have 2N - 1 rows with N a power of two", tuple(nodes.shape))
    lo = lo.to(device=nodes.device, dtype=torch.int64).reshape(-1)
    hi = hi.to(device=nodes.device, dtype=torch.int64).reshape(-1)
    if bool(((lo < 0) | (hi >= N)).any()):
        raise ParameterError("range", f"must lie inside [0, {N - 1}]")
    h = N.bit_length() - 1
    left = lo + N  # heap numbering (root 1), half-open [left, right): canonical_nodes' walk
    right = hi + (N + 1)
    acc = torch.zeros((lo.shape[0], nodes.shape[1]), dtype=nodes.dtype, device=nodes.device)
    zero = torch.zeros((), dtype=nodes.dtype, device=nodes.device)
    for _ in range(h + 1):
        active = left < right
        take_left = (left & 1) * active  # 0/1 int64
        # left - 1 is a valid row whether taken or not (masked below); right - 1 is clamped
        # (an untaken right end can be 2N, one past the last row)
        acc += torch.where(take_left.bool().unsqueeze(1), nodes.index_select(0, left - 1), zero)
        left = left + take_left
        take_right = (right & 1) * active
        right = right - take_right
        acc += torch.where(take_right.bool().unsqueeze(1),
                           nodes.index_select(0, (right - 1).clamp_(0, total - 1)), zero)
        left = left >> 1
        right = right >> 1
    return acc



class DPTree:
    """DPTree.Init / Query in torch: ``width`` trees at once, one per payload column.

    Paper: Alg. 'DPTree' (v2 §4 / App. D); spec PAPER.md §3.1; conventions
    ``proofs_notes/01-conventions.md``. Every one of the ``2N - 1`` nodes of each column holds its
    exact subtree sum plus iid TLap(Delta_col, eps/L, delta/L), (eps/L, delta/L) from
    :func:`dpxattn.accounting.plan_dptree`; each column is (eps, delta)-DP for arrays that differ
    in one entry by at most its sensitivity (columns over the same private records compose).
    Uniforms: node-major (node 0, 1, ..., 2N - 2), then column; for one column this is the
    reference's level order (``dpxattn.reference.dptree``).

    Attributes (public only): ``n``, ``N``, ``levels``, ``width``, ``nodes`` (2N - 1, width)
    float64 noisy values, ``law`` (per-column noise constants), ``plan``.
    """

    __slots__ = ("n", "N", "levels", "width", "nodes", "law", "plan")

    def __init__(self, *, n, nodes, law, plan) -> None:
        self.n = n
        self.N = padded_size(n)
        self.levels = tree_levels(n)
        self.width = nodes.shape[1]
        self.nodes = nodes
        self.law = law
        self.plan = plan

    @staticmethod
    def noise_count(n: int, width: int = 1) -> int:
        """(2N - 1) * width uniforms."""
        return node_count(n) * int(width)

    @classmethod
    def build(cls, values, *, sensitivity, eps, delta, generator=None, uniforms=None) -> "DPTree":
        """Build from ``values`` (n,) or (n, width) (private; not kept). Shapes: nodes (2N-1, w)."""
        vals = values if isinstance(values, torch.Tensor) else torch.as_tensor(values)
        vals = vals.detach().to(torch.float64)
        if vals.dim() == 1:
            vals = vals.unsqueeze(1)
        if vals.dim() != 2 or vals.shape[0] < 1 or vals.shape[1] < 1:
            raise ShapeError("values", "must be (n,) or (n, width) with n, width >= 1",
                             tuple(vals.shape))
        if not bool(torch.isfinite(vals).all()):
            raise BoundError("values entries", "must be finite")
        n, width = vals.shape
        plan = plan_dptree(eps, delta, n)
        eps_l, delta_l = plan.share("tree_level")
        sens = np.broadcast_to(np.asarray(sensitivity, dtype=object), (width,))
        law = noise_law((width,), sens, eps_l, delta_l, device=vals.device)
        N = padded_size(n)
        with torch.no_grad():
            nodes = torch.zeros((2 * N - 1, width), dtype=torch.float64, device=vals.device)
            nodes[N - 1:N - 1 + n] = vals
            fill_internal_nodes(nodes)
            stream = uniform_stream(cls.noise_count(n, width), generator=generator,
                                    uniforms=uniforms, device=vals.device)
            release_(nodes, law, stream)
            stream.finish()
        return cls(n=n, nodes=nodes, law=law,
                   plan=plan.with_labels(randomness=stream.label, clip=False))

    def _ranges(self, lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
        lo = torch.as_tensor(lo, dtype=torch.int64, device=self.nodes.device).reshape(-1)
        hi = torch.as_tensor(hi, dtype=torch.int64, device=self.nodes.device).reshape(-1)
        if lo.shape != hi.shape:
            raise ShapeError("lo, hi", "must have the same number of entries", (lo.shape, hi.shape))
        if bool(((lo < 0) | (hi > self.n - 1) | (lo > hi)).any()):
            raise ParameterError("range", f"must satisfy 0 <= lo <= hi <= n - 1 = {self.n - 1}")
        return lo, hi

    def canonical(self, lo, hi) -> torch.Tensor:
        """Canonical nodes of each range (Q, 2(h + 1)), padded with -1."""
        lo, hi = self._ranges(lo, hi)
        return canonical_nodes(lo, hi, self.N)

    def query(self, lo, hi) -> torch.Tensor:
        """DPTree.Query for every range at once: (Q, width) sums of the canonical nodes
        (:func:`range_sums`)."""
        lo, hi = self._ranges(lo, hi)
        return range_sums(self.nodes, lo, hi)

    def sure_error_bound(self, lo, hi) -> torch.Tensor:
        """|C| A_L per range and column (Q, width): surely |query - exact range sum| <= this
        up to float64 rounding of the sums (PAPER §3.1 "Error", deterministic form)."""
        size = (self.canonical(lo, hi) >= 0).sum(dim=1, keepdim=True).to(torch.float64)
        return size * self.law.support_up.unsqueeze(0)
