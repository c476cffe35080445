"""The theorem-level error bounds of the main result, as functions (kernel part, exact).

Paper: main theorem, "Theorem 1.2" in the ICLR 2025 numbering (v2 §3 formal / §1 informal): relative error 2 eps_s/(1 - eps_s) and additive error
O~((1 - eps_s)^{-1} n^{-1} eps^{-1} R^{2s} R_w r^2). Spec PAPER.md §4.1, §5 item 12.
Proof note: ``proofs_notes/18-kernel-error-theorem.md``.

* :func:`ratio_lemma_bound` is the exact lemma: if |N_poly - N| <= eps_s sum_j |w_j| e_j and
  |D_poly - D| <= eps_s D (both hold with eps_s the kernel's relative error), then
  ``|N_poly/D_poly - N/D| <= eps_s/(1 - eps_s) (sum_j |w_j| e_j / D + |N|/D)``.
* :func:`kernel_relative_error` ``2 eps_s/(1 - eps_s)`` is a relative error ONLY for
  non-negative values (then the lemma's bracket is 2 N/D); for signed values the lemma gives the
  additive :func:`kernel_additive_error` ``2 eps_s R_w/(1 - eps_s)`` and no relative bound
  holds (the exact output can be 0 while the Taylor output is not).
* :func:`kernel_error_bounds` evaluates the lemma entrywise for given (Q, K, V), with the
  certified eps_s of :mod:`dpxattn.reference.kernel`.
* :func:`paper_additive_error_shape` is the paper's O~ shape with every constant and polylog
  dropped: for reports only, never a bound.
"""

from __future__ import annotations

import math

from dpxattn.accounting import feature_dimension
from dpxattn.errors import ParameterError, ShapeError
from dpxattn.params import check_degree, check_eps, check_positive, check_positive_int
from dpxattn.reference._mp import check_entries, context, resolve_prec, to_mpf, to_vector
from dpxattn.reference.kernel import certified_eps_s
from dpxattn.reference.noiseless import check_qkv, resolve_scale

__all__ = [
    "kernel_relative_error",
    "kernel_additive_error",
    "ratio_lemma_bound",
    "kernel_error_bounds",
    "paper_additive_error_shape",
]


def _eps_s(eps_s, ctx):
    e = to_mpf(eps_s, ctx, "eps_s")
    if not (ctx.isfinite(e) and 0 <= e < 1):
        raise ParameterError("eps_s", "must satisfy 0 <= eps_s < 1", eps_s)
    return e


def kernel_relative_error(eps_s, *, prec=None):
    """2 eps_s/(1 - eps_s): the paper's relative error (valid for non-negative values only).

    Paper: main theorem, relative error (ICLR Thm 1.2; v2 §3); spec PAPER.md
    §4.1, §5 item 12. Proof note: ``proofs_notes/18-kernel-error-theorem.md``.
    """
    ctx = context(prec)
    e = _eps_s(eps_s, ctx)
    return 2 * e / (1 - e)


def kernel_additive_error(eps_s, R_w, *, prec=None):
    """2 eps_s R_w/(1 - eps_s): the kernel's additive error for signed values in [-R_w, R_w].

    Paper: relative error of the main theorem read for signed values (PAPER §4.1, §5 item 12;
    ICLR Thm 1.2; v2 §3). Proof note: ``proofs_notes/18-kernel-error-theorem.md``.
    """
    ctx = context(prec)
    e = _eps_s(eps_s, ctx)
    return 2 * e * to_mpf(check_positive("R_w", R_w), ctx, "R_w") / (1 - e)


def ratio_lemma_bound(weights, kernel_values, eps_s, *, prec=None):
    """eps_s/(1 - eps_s) (sum_j |w_j| e_j / D + |N|/D), N = sum_j w_j e_j, D = sum_j e_j.

    ``weights`` w (length n, any reals), ``kernel_values`` e_j > 0 (the exact kernels
    exp(scale <q, k_j>)). Bounds |N_poly/D_poly - N/D| whenever |N_poly - N| <= eps_s sum |w| e
    and |D_poly - D| <= eps_s D. Paper: PAPER §4.1 (relative-error derivation of the main
    theorem; ICLR Thm 1.2). Proof note: ``proofs_notes/18-kernel-error-theorem.md``.
    """
    ctx = context(prec)
    e = _eps_s(eps_s, ctx)
    w = to_vector(weights, ctx, "weights")
    ks = to_vector(kernel_values, ctx, "kernel_values")
    if len(w) != len(ks):
        raise ShapeError("kernel_values", f"must have the same length as weights ({len(w)})",
                         f"length {len(ks)}")
    if any(not (k > 0 and ctx.isfinite(k)) for k in ks):
        raise ParameterError("kernel_values", "must be finite and > 0")
    D = ctx.fsum(ks)
    N = ctx.fdot(w, ks)
    A = ctx.fsum(abs(a) * b for a, b in zip(w, ks))
    return e / (1 - e) * (A + abs(N)) / D


def kernel_error_bounds(Q, K, V, *, degree: int, R, scale=None, signed: bool = False,
                        prec=None) -> list:
    """Entrywise lemma bounds on |taylor_attention - attention| (m x d_v list of rows of mpf).

    eps_s = :func:`dpxattn.reference.kernel.certified_eps_s` for the bounds (keys and queries in
    [0, R]^d, or [-R, R]^d with ``signed=True``; checked, :class:`BoundError` otherwise; values
    unbounded), and each entry is :func:`ratio_lemma_bound` with w = V[:, k] and
    e_j = exp(scale <q, k_j>). Raises :class:`ParameterError` if eps_s >= 1 (no bound).
    Paper: PAPER §4.1 (ICLR Thm 1.2 relative error). Proof note:
    ``proofs_notes/18-kernel-error-theorem.md``.
    """
    s = check_degree(degree)
    prec = resolve_prec(prec)
    ctx = context(prec)
    check_positive("R", R)
    Qm, Km, Vm = check_qkv(Q, K, V, ctx)
    low = -to_mpf(R, ctx) if signed else 0
    bound_name = "[-R, R]" if signed else "[0, R]"
    check_entries(Qm, "Q", low, R, bound_name)
    check_entries(Km, "K", low, R, bound_name)
    d = len(Km[0])
    e = certified_eps_s(R, s, d, scale=scale, signed=signed, prec=prec)
    if not e < 1:
        raise ParameterError("degree", "gives a certified eps_s >= 1: no kernel error bound",
                             degree, hint=f"eps_s = {float(e):.4g}")
    c = resolve_scale(scale, d, ctx)
    out = []
    for q in Qm:
        ks = [ctx.exp(c * ctx.fdot(q, k)) for k in Km]
        D = ctx.fsum(ks)
        row = []
        for col in range(len(Vm[0])):
            w = [r[col] for r in Vm]
            N = ctx.fdot(w, ks)
            A = ctx.fsum(abs(a) * b for a, b in zip(w, ks))
            row.append(e / (1 - e) * (A + abs(N)) / D)
        out.append(row)
    return out


def paper_additive_error_shape(n: int, eps, R, R_w, degree: int, d: int, eps_s):
    """R^{2s} R_w r^2 / ((1 - eps_s) n eps): the paper's additive error with the O~ dropped.

    NOT a bound: the paper's O~ hides constants and at least log^{3/2} n, log(1/delta), the
    copies factor l and composition constants (PAPER §4.1). For reports that place the paper's
    shape beside our certified envelopes. Returns a float.
    Paper: main theorem additive error (ICLR Thm 1.2; v3 abstract; v2 §3); spec PAPER.md §4.1.
    Proof note: ``proofs_notes/18-kernel-error-theorem.md``.
    """
    n = check_positive_int("n", n)
    check_eps(eps)
    check_positive("R", R)
    check_positive("R_w", R_w)
    s = check_degree(degree)
    d = check_positive_int("d", d)
    e = float(eps_s)
    if not (math.isfinite(e) and 0 <= e < 1):
        raise ParameterError("eps_s", "must satisfy 0 <= eps_s < 1", eps_s)
    r = feature_dimension(d, s)
    return float(R) ** (2 * s) * float(R_w) * r * r / ((1 - e) * n * float(eps))
