"""Exact accumulation of S~ = sum_i P~(k_i) [v_i, 1]~^T in torch: lattice rounding, limb GEMMs.

Not in the paper (numerics; PAPER §5 items 8 and 18). Mirrors the definitions of
``dpxattn.reference.exact_accumulation`` (lattices, limbs, allowances); proof note
``proofs_notes/30-exact-accumulation.md``.

Per chunk of rows: features P (rows, r) and values W = [V, 1] (rows, d_v + 1) in float64 are
rounded to the public lattices (``round(P 2^a)``, ``round(W 2^b)``, integers of at most 40 and
24 bits), split into limbs (features at 2^20, values at 2^12: P = P_h 2^20 + P_l, W = W_h 2^12 +
W_l, 0 <= P_l < 2^20, 0 <= W_l < 2^12), and the four limb products are float64 GEMMs of integers
below 2^32 in magnitude over at most 2^20 rows: every partial sum is an integer below 2^53, so
each GEMM is exact whatever its summation order, and converts to int64 exactly. The four int64
limb sums are the accumulator's state; they add exactly (merge), and
S~ 2^(a+b) = hh 2^32 + hl 2^20 + lh 2^12 + ll is formed in Python integers at release.
Shapes: limb sums (4, r, d_v + 1) int64.
"""

from __future__ import annotations

import torch

from dpxattn.fast.features import chunk_rows, feature_chunks
from dpxattn.reference.exact_accumulation import (FEATURE_LIMB_BITS, GEMM_ROWS, VALUE_LIMB_BITS)

__all__ = ["limb_split", "add_rows", "combine"]


def limb_split(X: torch.Tensor, exponent: int, limb_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) float64 integer limbs of round(X 2^exponent) (ties to even):
    round(X 2^e) = high 2^limb_bits + low with 0 <= low < 2^limb_bits. Exact: the scalings are
    by powers of two (no overflow or underflow at these sizes) and the rounded values are
    integers below 2^53."""
    q = torch.round(X * (2.0 ** exponent))
    high = torch.floor(q * (2.0 ** -limb_bits))
    return high, q - high * (2.0 ** limb_bits)


def add_rows(limbs: torch.Tensor, K: torch.Tensor, V: torch.Tensor, *, degree: int, scale,
             a: int, b: int) -> None:
    """Add the rows (K (n, d), V (n, d_v), validated float64) to the int64 limb sums ``limbs``
    (4, r, d_v + 1) in place: exactly, whatever the chunking. One float64 GEMM per chunk of the
    stacked limbs [P_h; P_l] (2r, rows) x [W_h, W_l] (rows, 2 (d_v + 1)) gives the four limb
    products as its blocks (hh, hl / lh, ll), each exact (module docstring)."""
    n, d_v = V.shape
    r = limbs.shape[1]
    cols = d_v + 1
    rows = min(GEMM_ROWS, 8 * chunk_rows(r + cols))  # <= 2^20 rows: every GEMM exact
    W = torch.empty((max(1, min(n, rows)), cols), dtype=torch.float64, device=K.device)
    W[:, d_v] = 1.0
    for start, stop, F in feature_chunks(K, degree, scale=scale, rows=rows):
        # F: (r, rows) float64 features, feature-major
        Wc = W[: stop - start]
        Wc[:, :d_v] = V[start:stop]
        Ph, Pl = limb_split(F, a, FEATURE_LIMB_BITS)
        Wh, Wl = limb_split(Wc, b, VALUE_LIMB_BITS)
        blocks = (torch.cat([Ph, Pl]) @ torch.cat([Wh, Wl], dim=1)).to(torch.int64)
        limbs[0] += blocks[:r, :cols]
        limbs[1] += blocks[:r, cols:]
        limbs[2] += blocks[r:, :cols]
        limbs[3] += blocks[r:, cols:]


def combine(limbs: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """S~ as float64 (r, d_v + 1): the exact integers hh 2^32 + hl 2^20 + lh 2^12 + ll (Python
    integers, no overflow) times 2^-(a+b), each rounded once to float64."""
    hh, hl, lh, ll = (x.cpu().tolist() for x in limbs)
    shift_hh = FEATURE_LIMB_BITS + VALUE_LIMB_BITS
    out = [[_scaled(((w << shift_hh) + (x << FEATURE_LIMB_BITS) + (y << VALUE_LIMB_BITS) + z),
                    a + b) for w, x, y, z in zip(r1, r2, r3, r4)]
           for r1, r2, r3, r4 in zip(hh, hl, lh, ll)]
    return torch.tensor(out, dtype=torch.float64, device=limbs.device)


def _scaled(m: int, e: int) -> float:
    """m 2^-e rounded once to float64 (exact rational to nearest: int / power of two)."""
    from fractions import Fraction

    return float(Fraction(m, 1 << e)) if e >= 0 else float(m << (-e))
