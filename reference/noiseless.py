"""The noiseless references: exact softmax attention and the Taylor (polynomial-kernel) attention.

Paper: cross-attention Attn(Q, K, V) = D^{-1} exp(scale Q K^T) V, "Definition 1.1" in the ICLR
2025 numbering (v2 §3 / §1), following AS23; the polynomial-kernel attention is
what the private structures estimate (PAPER §2.3, §3.4-3.5). Spec PAPER.md §1.1, §2.3.
Proof notes: ``proofs_notes/10-taylor-kernel.md`` (kernel), ``proofs_notes/18-kernel-error-theorem.md``
(how far the two are apart).

Both take Q (m x d), K (n x d), V (n x d_v) as numpy arrays, tensors or nested sequences of
int/float/Fraction/str/mpf (converted exactly), and return an m x d_v list of rows of mpf at
``prec`` bits. ``scale`` defaults to 1/d (the paper's), held as an exact rational. No bounds are
imposed (they are exact functions of their inputs); NaN/inf raise :class:`BoundError`.
"""

from __future__ import annotations

from dpxattn.errors import BoundError, ShapeError
from dpxattn.params import check_degree, check_positive
from dpxattn.reference._mp import check_finite, context, resolve_prec, to_fraction, to_matrix, to_mpf
from dpxattn.reference.kernel import taylor_series

__all__ = ["attention", "taylor_attention", "check_qkv", "resolve_scale"]


def check_qkv(Q, K, V, ctx):
    """Convert Q (m x d), K (n x d), V (n x d_v) exactly and check their shapes agree and are finite.

    Returns ``(Q, K, V)`` as lists of rows of mpf. Raises :class:`ShapeError` naming the
    mismatch and :class:`BoundError` for NaN/inf.
    Paper: shapes of Definition 1.1 (ICLR numbering; v2 §3); PAPER.md §1.1.
    Proof note: ``proofs_notes/18-kernel-error-theorem.md``.
    """
    Qm, Km, Vm = to_matrix(Q, ctx, "Q"), to_matrix(K, ctx, "K"), to_matrix(V, ctx, "V")
    if len(Qm[0]) != len(Km[0]):
        raise ShapeError("Q", f"must have as many columns as K (d = {len(Km[0])})",
                         f"{len(Qm[0])} columns")
    if len(Vm) != len(Km):
        raise ShapeError("V", f"must have as many rows as K (n = {len(Km)})", f"{len(Vm)} rows")
    for name, M in (("Q", Qm), ("K", Km), ("V", Vm)):
        check_finite(M, name)
    return Qm, Km, Vm


def resolve_scale(scale, d: int, ctx):
    """The scale as an mpf of ``ctx``: 1/d by default, else the given scale > 0 (exact rational).

    Paper: exp(Q K^T / d) (PAPER.md §1.1, §5 item 2; v2 §3).
    Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    if scale is None:
        return ctx.one / d
    check_positive("scale", scale)
    return to_mpf(to_fraction(scale, "scale"), ctx, "scale")


def _weighted_average(weights: list, V: list, ctx) -> list:
    total = ctx.fsum(weights)
    d_v = len(V[0])
    return [ctx.fsum(w * row[k] for w, row in zip(weights, V)) / total for k in range(d_v)]


def attention(Q, K, V, *, scale=None, prec=None) -> list:
    """softmax(scale Q K^T) V, exactly to ``prec`` bits: m x d_v list of rows of mpf.

    Row i is ``sum_j e^{scale <q_i, k_j>} v_j / sum_j e^{scale <q_i, k_j>}``.
    Paper: cross-attention, Definition 1.1 (ICLR numbering; v2 §1/§3);
    spec PAPER.md §1.1. Proof note: ``proofs_notes/18-kernel-error-theorem.md``.
    """
    ctx = context(resolve_prec(prec))
    Qm, Km, Vm = check_qkv(Q, K, V, ctx)
    c = resolve_scale(scale, len(Km[0]), ctx)
    out = []
    for q in Qm:
        logits = [c * ctx.fdot(q, k) for k in Km]
        top = max(logits)
        out.append(_weighted_average([ctx.exp(t - top) for t in logits], Vm, ctx))
    return out


def taylor_attention(Q, K, V, *, degree: int, scale=None, prec=None) -> list:
    """The polynomial-kernel attention: row i is sum_j T_s(scale <q_i, k_j>) v_j / sum_j T_s(...).

    Equals (P(Q) P(K)^T V) / (P(Q) P(K)^T 1) with the Taylor features P of
    :mod:`dpxattn.reference.kernel`; the noiseless target of both private mechanisms. Raises
    :class:`BoundError` if a denominator is <= 0 (possible only with signed entries and a low
    odd degree; with keys and queries in [0, R]^d every T_s >= 1, so the denominator is >= n).
    Paper: DPTreeSoftmax / cross-attention with the polynomial kernel (v2 App. I, §3); spec PAPER.md §2.3, §3.4-3.5. Proof note: ``proofs_notes/10-taylor-kernel.md``.
    """
    s = check_degree(degree)
    ctx = context(resolve_prec(prec))
    Qm, Km, Vm = check_qkv(Q, K, V, ctx)
    c = resolve_scale(scale, len(Km[0]), ctx)
    out = []
    for i, q in enumerate(Qm):
        weights = []
        for k in Km:
            weights.append(taylor_series(ctx, c * ctx.fdot(q, k), s))
        if ctx.fsum(weights) <= 0:
            raise BoundError("Taylor denominator", "must be > 0",
                             hint=f"query row {i}: sum_j T_s(scale <q, k_j>) <= 0 "
                                  "(signed entries with a low odd degree)")
        out.append(_weighted_average(weights, Vm, ctx))
    return out
