"""Exact accumulation of S~ = sum_i P~(k_i) [v_i, 1]~^T in torch: lattice rounding, exact GEMMs.

Not in the paper (numerics; PAPER §5 items 8 and 18). Mirrors the definitions of
``dpxattn.reference.exact_accumulation`` (lattices, allowances); proof note
``proofs_notes/30-exact-accumulation.md``.

Per block of at most ``GEMM_ROWS`` = 2^11 rows: the features come out of
:func:`dpxattn.fast.features.feature_chunks` already scaled by 2^a (folded into the
coefficients, exact) and are rounded in place to integers of at most ``FEATURE_BITS`` = 21 bits;
the values W = [V, 1] are rounded to ``round(W 2^b)`` (at most ``VALUE_BITS`` = 20 bits). One
float64 GEMM of these integers (r, rows) x (rows, d_v + 1), the same shape as ``build``'s,
multiplies integers below 2^41 in magnitude over at most 2^11 rows: every partial sum is an
integer below 2^52, so the GEMM is exact whatever its summation order and converts to int64
exactly. The blocks of one feature chunk (``ACCUMULATE_CHUNK_ELEMENTS`` = 2^20 entries, a
multiple of 2^11 rows) go through one batched GEMM (``torch.bmm``, one product per block), summed
over the blocks in int64 (below 2^52 per block, at most 2^20 / 2^11 = 2^9 blocks: below 2^61).
The state holds each entry as an int64 pair (high, low), total = high 2^32 + low with
0 <= low < 2^32 after every chunk (a carry): a canonical form, so two accumulators hold the same
sums iff their states are equal. At release S~ 2^(a+b) = high 2^32 + low, in Python integers.
Shapes: state (2, r, d_v + 1) int64 = [high, low].
"""

from __future__ import annotations

import torch

from dpxattn.fast.features import chunk_rows, feature_chunks
from dpxattn.reference.exact_accumulation import CARRY_BITS, GEMM_ROWS

__all__ = ["new_state", "add_rows", "carry", "combine", "dyadic_to_float"]

#: float64 entries of one feature chunk of ``add_rows`` (8 MiB; 4x ``build``'s chunk: add + release
#: over build measured 0.92x at d = 4 and 0.97x at d = 8, s = 3, against 1.15x and 1.0x at 2^18)
ACCUMULATE_CHUNK_ELEMENTS = 1 << 20


def new_state(r: int, d_v: int) -> torch.Tensor:
    """An empty state (2, r, d_v + 1) int64: the sums of no rows."""
    return torch.zeros((2, r, d_v + 1), dtype=torch.int64)


def carry(state: torch.Tensor) -> None:
    """Normalise the int64 state (2, r, cols) in place to 0 <= low < 2^CARRY_BITS with the same
    total high 2^32 + low (an arithmetic shift: floor)."""
    c = state[1] >> CARRY_BITS
    state[0] += c
    state[1] -= c << CARRY_BITS


def add_rows(state: torch.Tensor, K: torch.Tensor, V: torch.Tensor, *, degree: int, scale,
             a: int, b: int) -> None:
    """Add the rows (K (n, d), V (n, d_v), validated float64) to the int64 state (2, r, d_v + 1)
    in place: exactly, whatever the chunking (module docstring). Beyond ``build``'s work: one
    in-place rounding pass over each (r, rows) feature block and one over the values."""
    n, d_v = V.shape
    r, cols = state.shape[1], d_v + 1
    W = torch.empty((n, cols), dtype=torch.float64, device=K.device)
    torch.mul(V, 2.0 ** b, out=W[:, :d_v])
    W[:, d_v] = 2.0 ** b
    W.round_()  # integers, |.| <= 2^VALUE_BITS
    rows = max(GEMM_ROWS, chunk_rows(r, ACCUMULATE_CHUNK_ELEMENTS) // GEMM_ROWS * GEMM_ROWS)
    for start, stop, F in feature_chunks(K, degree, scale=scale, rows=rows, lift=a):
        F.round_()  # integers, |.| <= 2^FEATURE_BITS
        c = stop - start
        full = c - c % GEMM_ROWS
        if full:  # B blocks of GEMM_ROWS rows: one batched GEMM, each block's sums exact
            B = full // GEMM_ROWS
            blocks = torch.bmm(F[:, :full].reshape(r, B, GEMM_ROWS).transpose(0, 1),
                               W[start:start + full].reshape(B, GEMM_ROWS, cols))
            state[1] += blocks.to(torch.int64).sum(dim=0)  # < 2^9 2^52 + 2^32 < 2^63
        if full < c:
            state[1] += (F[:, full:] @ W[start + full:stop]).to(torch.int64)
        carry(state)


def combine(state: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """S~ as float64 (r, d_v + 1): the exact integers high 2^32 + low (Python integers, no
    overflow) times 2^-(a+b), each rounded once to float64."""
    high, low = (x.cpu().tolist() for x in state)
    out = [[dyadic_to_float((h << CARRY_BITS) + lo, a + b) for h, lo in zip(r1, r2)]
           for r1, r2 in zip(high, low)]
    return torch.tensor(out, dtype=torch.float64, device=state.device)


def dyadic_to_float(m: int, e: int) -> float:
    """m 2^-e rounded once to float64 (exact rational to nearest: int / power of two)."""
    from fractions import Fraction

    return float(Fraction(m, 1 << e)) if e >= 0 else float(m << (-e))
