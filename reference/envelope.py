"""Certified (sure) and high-probability error envelopes of a released cross-attention answer.

Paper: the main theorem's additive error and the adaptive-query guarantee (Theorem 1.2 in the
ICLR version, "with probability 1 - p_f"; v2 §3 and App. H); spec PAPER.md
§4.1, §2.6, §5 item 10; DESIGN §4 (``error_bound``) and §9(c) (``hp_error_bound``).
Proof note: ``proofs_notes/16-certified-envelope.md`` (derivation), and
``proofs_notes/14-adaptive-queries.md`` (why the sure envelope makes adaptivity free).

Every released number the answer reads is an exact private sum plus independent truncated
Laplace draws, and the answer's numerator N~_k and denominator D~ are **known linear
combinations** of those draws, with coefficients fixed by the query q alone. So the error of each
is ``sum_g sum_i c_{g,i} Z_{g,i}`` with ``Z_{g,i}`` iid TLap of group g (support bound ``A_g``,
exact variance ``sigma_g^2``). A :class:`NoiseGroup` holds one group's coefficients and law
constants; a :class:`CopyErrorTerms` holds, for one query row and one copy, the groups of every
value column's numerator and of the denominator, and the released (clamped) denominator.

From these:

* sure noise bound ``E = sum_g A_g sum_i |c_{g,i}|`` (:func:`sure_noise_bound`);
* the ratio step (``proofs_notes/01-conventions.md``, certified envelope): with
  ``|N_T/D_T| <= R_w`` and ``|D~ - D_T| <= E_D`` after clamping,
  ``|N~/D~ - N_T/D_T| <= (E_N + R_w E_D) / D~`` (:func:`ratio_error_bound`);
* the median of l copies lies within the largest copy bound (:func:`certified_envelope`);
* high-probability: Hoeffding and Bernstein on the same linear combination, at failure
  probability p/2 for the numerator and p/2 for the denominator (union bound), the median's
  per-copy failure probability from the exact binomial tail (:func:`hp_envelope`).

Gaussian law (``law="gaussian"``, ``direct`` only; ``proofs_notes/16-certified-envelope.md``,
"Gaussian law"): a :class:`GaussianNoiseGroup` holds iid N(0, sigma^2) draws, so a group sum
``sum_i c_i Z_i`` is exactly N(0, sigma^2 sum c_i^2). There is no sure bound
(:func:`sure_noise_bound` and :func:`certified_envelope` raise
:class:`dpxattn.errors.NoSureEnvelopeError`); the high-probability threshold at failure f is
the exact two-sided normal quantile ``sqrt(sum_g sigma_g^2 sum c^2) Phi^-1(1 - f/2)``
(:func:`gaussian_noise_bound`), combined into the ratio exactly as for TLap.

Every bound is returned with :func:`rounding_allowance` added, so that it bounds the difference of
the *computed* (rounded, ``prec`` bits) answer and the computed noiseless Taylor attention, not
only the exact-arithmetic ones.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import mpmath
import numpy as np

from dpxattn.errors import ParameterError, no_sure_envelope
from dpxattn.params import check_real
from dpxattn.reference._mp import context, to_mpf
from dpxattn.reference.dptree import hoeffding_bound
from dpxattn.reference.dptree_distance import exact_fraction

__all__ = [
    "NoiseGroup",
    "GaussianNoiseGroup",
    "OffsetGroup",
    "gaussian_quantile",
    "gaussian_noise_bound",
    "CopyErrorTerms",
    "check_failure_prob",
    "sure_noise_bound",
    "hoeffding_noise_bound",
    "bernstein_noise_bound",
    "tlap_log_mgf",
    "chernoff_noise_bound",
    "hp_noise_bound",
    "ratio_error_bound",
    "hp_ratio_error_bound",
    "rounding_allowance",
    "binomial_upper_tail",
    "median_failures_needed",
    "median_copy_failure_prob",
    "certified_envelope",
    "hp_envelope",
]

@dataclass(frozen=True)
class NoiseGroup:
    """Draws of one TLap law entering an answer linearly: error = sum_i coefficients[i] * Z_i.

    ``coefficients``: tuple of mpf (one per draw that enters; the draws are independent and
    identically distributed TLap with Laplace scale ``laplace_scale`` = b = Delta/eps,
    half-width ``support_bound`` = A (certified upward) and variance ``variance`` = sigma^2
    (certified upward)). Only public numbers: the coefficients are functions of the query.
    Paper: see the module docstring; proof note ``proofs_notes/16-certified-envelope.md``.
    """

    coefficients: tuple
    support_bound: object
    variance: object
    laplace_scale: object


@dataclass(frozen=True)
class GaussianNoiseGroup:
    """Draws of one Gaussian law entering an answer linearly: error = sum_i coefficients[i] Z_i,
    Z_i iid N(0, sigma^2) (``law="gaussian"``; ``sigma`` certified upward by
    :func:`dpxattn.reference.gaussian.sigma_for`). Unbounded: no support bound.
    Paper: none (our Gaussian law; proof note ``proofs_notes/16-certified-envelope.md``).
    """

    coefficients: tuple
    sigma: object


@dataclass(frozen=True)
class OffsetGroup:
    """A deterministic error (not noise) with |error| <= ``bound`` (mpf, certified upward): the
    released value's bounded deviation from the exact statistic that is not noise, e.g. the
    streaming accumulator's lattice rounding, n sum_t |u_t| e_(t,k)
    (``proofs_notes/30-exact-accumulation.md``). It adds ``bound`` to every noise bound, sure or
    high-probability (|Z + x| <= t + |x| whenever |Z| <= t).
    Paper: none (numerics at corpus scale; PAPER.md §5 item 18). Proof note
    ``proofs_notes/16-certified-envelope.md``.
    """

    bound: object


def _split_offsets(groups, ctx) -> tuple[list, object]:
    """(the noise groups, the sum of the :class:`OffsetGroup` bounds rounded up)."""
    offset = ctx.zero
    noise = []
    for g in groups:
        if isinstance(g, OffsetGroup):
            offset = ctx.fadd(offset, g.bound, rounding="u")
        else:
            noise.append(g)
    return noise, offset


def _is_gaussian(groups) -> bool:
    """True if every group is Gaussian, False if none is; a mix raises (no bound combines them)."""
    kinds = {isinstance(g, GaussianNoiseGroup) for g in groups}
    if len(kinds) > 1:
        raise ValueError("noise groups mix the Gaussian and the truncated Laplace laws: no "
                         "envelope of this module combines them")
    return kinds == {True}


@dataclass(frozen=True)
class CopyErrorTerms:
    """One copy's error structure at one query row.

    ``numerators[k]``: the noise groups of value column k's numerator (k = 0..d_v - 1);
    ``denominator``: the noise groups of the (unclamped) denominator;
    ``released_denominator``: D~ after clamping below by its public bound n (so D~ >= n > 0);
    ``answers``: this copy's released answer row N~_k / D~ (d_v mpf; used by the
    high-probability ratio step, :func:`hp_ratio_error_bound`).

    Paper: none (the paper states O~ bounds w.p. 1 - p_f); spec PAPER.md §4.3, §5 item 10; proofs_notes/16-certified-envelope.md.
    """

    numerators: tuple
    denominator: tuple
    released_denominator: object
    answers: tuple


def check_failure_prob(failure_prob, *, prec=None):
    """0 < failure_prob < 1 (finite, not a bool); returns it unchanged, else
    :class:`dpxattn.errors.ParameterError` naming the bound. Checked exactly at ``prec`` bits.

    Paper: none (the paper states O~ bounds w.p. 1 - p_f); spec PAPER.md §4.3, §5 item 10; proofs_notes/16-certified-envelope.md.
    """
    _prob(failure_prob, context(prec))
    return failure_prob


def _prob(failure_prob, ctx: mpmath.MPContext):
    """failure_prob as an mpf of ctx, checked to lie in (0, 1) exactly (mpf inputs are not
    squeezed through float, so tiny per-copy probabilities stay valid)."""
    check_real("failure_prob", failure_prob)
    try:
        p = to_mpf(failure_prob, ctx, "failure_prob")
    except ValueError:
        raise ParameterError("failure_prob", "must be a real number in (0, 1)", failure_prob) from None
    if not (ctx.isfinite(p) and 0 < p < 1):
        raise ParameterError("failure_prob", "must satisfy 0 < failure_prob < 1", failure_prob)
    return p


def sure_noise_bound(groups: Sequence[NoiseGroup], ctx: mpmath.MPContext):
    """E = sum_g A_g sum_i |c_{g,i}|: surely |sum_g sum_i c_{g,i} Z_{g,i}| <= E (|Z| <= A).

    Products and sums rounded up (A_g is itself certified upward by the structure).
    Gaussian groups have no such bound: :class:`dpxattn.errors.NoSureEnvelopeError`.
    Paper: TLap "always accurate up to the truncation bound" (v2 §2); spec
    PAPER.md §2.1, §4.3 row "Adaptive". Proof note ``proofs_notes/16-certified-envelope.md``.
    """
    groups, total = _split_offsets(groups, ctx)
    if _is_gaussian(groups):
        raise no_sure_envelope("error_bound")
    for g in groups:
        for c in g.coefficients:
            total = ctx.fadd(total, ctx.fmul(abs(c), g.support_bound, rounding="u"), rounding="u")
    return total


def hoeffding_noise_bound(groups: Sequence[NoiseGroup], failure_prob, ctx: mpmath.MPContext):
    """t = sqrt(2 ln(2/p) sum_g A_g^2 sum_i c_{g,i}^2): P[|error| > t] <= p (Hoeffding).

    Each term c Z lies in [-|c| A, |c| A] and has mean 0; Hoeffding's inequality gives
    P[|sum| >= t] <= 2 exp(-t^2 / (2 sum c^2 A^2)). Evaluated (rounded up) by THE Hoeffding
    function of the reference, :func:`dpxattn.reference.dptree.hoeffding_bound`, on the ranges
    |c| A. Paper: DPTree error, "sub-Gaussian (Hoeffding, bounded noise)" (v2 App. D); spec PAPER.md §3.1. Proof note ``proofs_notes/16-certified-envelope.md``.
    """
    p = _prob(failure_prob, ctx)
    ranges = [abs(c) * g.support_bound for g in groups for c in g.coefficients if c != 0]
    if not ranges:
        return ctx.zero
    return ctx.make_mpf(hoeffding_bound(ranges, exact_fraction(p, "failure_prob"))._mpf_)


def bernstein_noise_bound(groups: Sequence[NoiseGroup], failure_prob, ctx: mpmath.MPContext):
    """Bernstein: t = (M L/3) + sqrt((M L/3)^2 + 2 V L), L = ln(2/p); P[|error| > t] <= p.

    V = sum_g sigma_g^2 sum_i c_{g,i}^2 (the exact variance of the error), M = max |c| A (every
    term is bounded by M). Bernstein's inequality P[|S| >= t] <= 2 exp(-t^2/(2 (V + M t/3))),
    solved for t. Paper: not in the paper (DESIGN §9(c)); spec PAPER.md §3.1 (error forms).
    Proof note ``proofs_notes/16-certified-envelope.md``.
    """
    p = _prob(failure_prob, ctx)
    V = ctx.fsum(g.variance * ctx.fsum(c * c for c in g.coefficients) for g in groups)
    M = max((abs(c) * g.support_bound for g in groups for c in g.coefficients), default=ctx.zero)
    L = ctx.log(2 / p)
    h = M * L / 3
    return h + ctx.sqrt(h * h + 2 * V * L)


def tlap_log_mgf(mu, laplace_scale, support_bound, ctx: mpmath.MPContext):
    """log E[e^{mu Z}] for Z ~ TLap with Laplace scale b and half-width A, exactly (closed form).

    E[e^{mu Z}] = B (I_1 + I_2), B = 1/(2 b (1 - e^{-A/b})), I_1 = int_0^A e^{(|mu| - 1/b) z} dz,
    I_2 = int_0^A e^{-(|mu| + 1/b) z} dz (symmetric law, so it depends on |mu| only; finite for
    every mu because the support is bounded). Using a half-width A' >= A (a certified upper
    bound) gives a value >= the true one: Laplace(b) conditioned on |Z| <= A' is stochastically
    larger in |Z| and cosh is increasing in |z|. Proof note ``proofs_notes/16-certified-envelope.md``.

    Paper: none (the paper states O~ bounds w.p. 1 - p_f); spec PAPER.md §4.3, §5 item 10; proofs_notes/16-certified-envelope.md.
    """
    b, A = laplace_scale, support_bound
    m = abs(ctx.mpf(mu))
    beta = 1 / b
    log_B = -ctx.log(2 * b) - ctx.log(-ctx.expm1(-A / b))
    diff = m - beta
    if diff == 0:
        log_i1 = ctx.log(A)
    elif diff > 0:
        log_i1 = diff * A + ctx.log(-ctx.expm1(-diff * A)) - ctx.log(diff)
    else:
        log_i1 = ctx.log(-ctx.expm1(diff * A)) - ctx.log(-diff)
    log_i2 = ctx.log(-ctx.expm1(-(m + beta) * A)) - ctx.log(m + beta)
    top = max(log_i1, log_i2)
    return log_B + top + ctx.log(ctx.exp(log_i1 - top) + ctx.exp(log_i2 - top))


def _log_mgf_float(mu: np.ndarray, b: np.ndarray, A: np.ndarray) -> np.ndarray:
    """float64 version of :func:`tlap_log_mgf` (vectorised over draws), for the lambda search."""
    mu = np.abs(mu)
    beta = 1.0 / b
    log_B = -np.log(2 * b) - np.log(-np.expm1(-A / b))
    diff = mu - beta
    ad = np.abs(diff) * A
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_core = np.log(-np.expm1(-ad)) - np.log(np.abs(diff))
        log_i1 = np.where(diff > 0, diff * A + log_core, log_core)
        log_i1 = np.where(ad < 1e-300, np.log(A), log_i1)
        log_i2 = np.log(-np.expm1(-(mu + beta) * A)) - np.log(mu + beta)
    return log_B + np.logaddexp(log_i1, log_i2)


def _golden_min(f, lo: float, hi: float, steps: int = 48) -> float:
    """Argmin of a unimodal f on [lo, hi] by golden-section search (float64)."""
    inv_phi = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(steps):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - inv_phi * (hi - lo)
            f1 = f(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + inv_phi * (hi - lo)
            f2 = f(x2)
    return x1 if f1 <= f2 else x2


def chernoff_noise_bound(groups: Sequence[NoiseGroup], failure_prob, ctx: mpmath.MPContext):
    """Chernoff with the exact TLap moment generating function: P[|error| > t] <= p.

    For every lambda > 0, P[S >= t] <= exp(-lambda t) prod E[e^{lambda c Z}] (Markov), so
    t(lambda) = (ln(2/p) + sum log E[e^{lambda c_i Z_i}]) / lambda is a valid two-sided
    threshold (the law is symmetric). lambda is searched in float64 (golden section on
    log lambda; t(lambda) is unimodal because the log-MGF sum is convex and 0 at 0) using public
    numbers only, then t(lambda*) is evaluated at ``ctx``'s precision with
    :func:`tlap_log_mgf`: any lambda gives a valid bound, so the search only affects tightness.
    As lambda -> infinity t -> the sure bound. Tight for few, heavily truncated draws, where
    Bernstein's M term dominates. Paper: not in the paper (DESIGN §9(c)).
    Proof note ``proofs_notes/16-certified-envelope.md``.
    """
    p = _prob(failure_prob, ctx)
    L = ctx.log(2 / p)
    terms = [(c, g) for g in groups for c in g.coefficients if c != 0]
    if not terms:
        return ctx.zero
    c = np.array([abs(float(ci)) for ci, _ in terms])
    b = np.array([float(g.laplace_scale) for _, g in terms])
    A = np.array([float(g.support_bound) for _, g in terms])
    Lf = float(L)
    scale = float(np.max(c * b))

    def t_of(x: float) -> float:
        lam = math.exp(x)
        return (Lf + float(np.sum(_log_mgf_float(lam * c, b, A)))) / lam

    lam = ctx.mpf(math.exp(_golden_min(t_of, math.log(1e-8 / scale), math.log(1e8 / scale))))
    total = L + ctx.fsum(tlap_log_mgf(lam * ci, g.laplace_scale, g.support_bound, ctx)
                         for ci, g in terms)
    return total / lam


def gaussian_quantile(failure_prob, ctx: mpmath.MPContext):
    """z = Phi^-1(1 - f/2) = -Phi^-1(f/2), rounded up: P[|N(0, 1)| > z] <= f (= f at the exact z).

    Evaluated by :func:`dpxattn.reference.gaussian.ppf` (the one normal quantile of the
    reference, exact to ``ctx.prec`` bits however small f is), then multiplied by
    1 + 2^-(prec - 8) upward. Paper: none. Proof note ``proofs_notes/16-certified-envelope.md``.
    """
    from dpxattn.reference.gaussian import ppf

    f = _prob(failure_prob, ctx)
    z = -ppf(f / 2, 1, prec=ctx.prec)
    return ctx.fmul(z, ctx.fadd(1, ctx.ldexp(1, 8 - ctx.prec), rounding="u"), rounding="u")


def gaussian_noise_bound(groups, failure_prob, ctx: mpmath.MPContext):
    """t = sqrt(sum_g sigma_g^2 sum_i c_{g,i}^2) Phi^-1(1 - p/2): P[|error| > t] <= p, exactly.

    The error ``sum_g sum_i c_{g,i} Z_{g,i}`` of independent N(0, sigma_g^2) draws with
    coefficients fixed by the query is exactly N(0, V), V = sum_g sigma_g^2 sum_i c_{g,i}^2, so
    P[|error| > sqrt(V) z] = 2 (1 - Phi(z)) = p at z = Phi^-1(1 - p/2) (:func:`gaussian_quantile`).
    sqrt(V) is evaluated at ``ctx.prec`` bits and multiplied by 1 + 2^-(prec - 8) upward (its
    rounding error is a few 2^-prec relatively), so the threshold is never below the exact one.
    ``groups``: :class:`GaussianNoiseGroup` s. Paper: none (our Gaussian law).
    Proof note ``proofs_notes/16-certified-envelope.md`` ("Gaussian law").
    """
    V = ctx.fsum(ctx.mpf(g.sigma) ** 2 * ctx.fsum(c * c for c in g.coefficients) for g in groups)
    if V == 0:
        return ctx.zero
    root = ctx.fmul(ctx.sqrt(V), ctx.fadd(1, ctx.ldexp(1, 8 - ctx.prec), rounding="u"),
                    rounding="u")
    return ctx.fmul(root, gaussian_quantile(failure_prob, ctx), rounding="u")


def hp_noise_bound(groups: Sequence[NoiseGroup], failure_prob, ctx: mpmath.MPContext):
    """min(sure, Hoeffding, Bernstein, Chernoff) at failure probability p: P[|error| > t] <= p.

    The thresholds are numbers fixed before the noise is drawn (functions of public constants
    and the query), so their minimum is one of them and inherits its guarantee (the sure one
    with probability 0 of failure). Gaussian groups (:class:`GaussianNoiseGroup`): the exact
    normal quantile :func:`gaussian_noise_bound` instead (no sure bound exists).
    Proof note ``proofs_notes/16-certified-envelope.md``.

    Paper: none (the paper states O~ bounds w.p. 1 - p_f); spec PAPER.md §4.3, §5 item 10; proofs_notes/16-certified-envelope.md.
    """
    groups, offset = _split_offsets(groups, ctx)
    if _is_gaussian(groups):
        return ctx.fadd(gaussian_noise_bound(groups, failure_prob, ctx), offset, rounding="u")
    t = min(sure_noise_bound(groups, ctx), hoeffding_noise_bound(groups, failure_prob, ctx),
            bernstein_noise_bound(groups, failure_prob, ctx),
            chernoff_noise_bound(groups, failure_prob, ctx))
    return ctx.fadd(t, offset, rounding="u")


def ratio_error_bound(numerator_bound, denominator_bound, R_w, released_denominator):
    """(E_N + R_w E_D) / D~: the answer's error given |N~ - N_T| <= E_N and |D~ - D_T| <= E_D.

    Derivation (``proofs_notes/16-certified-envelope.md``): N~/D~ - N_T/D_T =
    ((N~ - N_T) - (N_T/D_T)(D~ - D_T)) / D~, and |N_T/D_T| <= R_w because N_T/D_T is a weighted
    average of values in [-R_w, R_w] with positive weights T_s(scale <q, k_j>) >= 1. Clamping
    D~ below by n <= D_T only moves D~ toward D_T, so |D~ - D_T| <= E_D still holds.
    Rounded up (``released_denominator``: an mpf; the bounds: mpf of the same context).
    Paper: main theorem's additive error, n^{-1} factor from D >= n (v2 §3);
    spec PAPER.md §4.1, §1.1.
    """
    ctx = released_denominator.context
    top = ctx.fadd(numerator_bound, ctx.fmul(R_w, denominator_bound, rounding="u"), rounding="u")
    return ctx.fdiv(top, released_denominator, rounding="u")


def hp_ratio_error_bound(numerator_bound, denominator_bound, R_w, released_denominator,
                         released_answer):
    """min((t_N + R_w t_D)/D~, (t_N + |a| t_D)/(D~ - t_D) when D~ > t_D), a = N~/D~.

    On the event |N~ - N_T| <= t_N, |D~ - D_T| <= t_D, the error x = |a - z| (z = N_T/D_T)
    satisfies x <= (t_N + |z| t_D)/D~ (:func:`ratio_error_bound`'s algebra) with
    |z| <= min(R_w, |a| + x); the second form solves x <= (t_N + (|a| + x) t_D)/D~ for x.
    Both hold on the event, so their minimum does. It reads the released answer (public), so
    it is used for the high-probability envelope; the sure envelope keeps the conventions'
    formula. Proof note ``proofs_notes/16-certified-envelope.md``.

    Paper: none (the paper states O~ bounds w.p. 1 - p_f); spec PAPER.md §4.3, §5 item 10; proofs_notes/16-certified-envelope.md.
    """
    first = ratio_error_bound(numerator_bound, denominator_bound, R_w, released_denominator)
    if released_denominator > denominator_bound:
        second = ((numerator_bound + abs(released_answer) * denominator_bound)
                  / (released_denominator - denominator_bound))
        return min(first, second)
    return first


def rounding_allowance(bound, R_w, *, prec):
    """2^{-floor(prec/2)} (1 + R_w + bound): added to every envelope the reference reports.

    The reference computes the answer and the noiseless Taylor attention at ``prec`` bits;
    each is a sum of at most a few thousand rounded products whose magnitudes, divided by
    D~ >= n, are bounded by R_w T_s(t_max) (r + 2) + bound. Their rounding errors are therefore
    below 2^{-prec} times a polynomial of the sizes, far below this allowance for every size the
    reference can run (``proofs_notes/16-certified-envelope.md``, "rounding"). At 160 bits the
    allowance is about 1e-24 (1 + R_w + bound). Not a paper quantity.
    """
    ctx = context(prec)
    return ctx.ldexp(1 + to_mpf(R_w, ctx, "R_w") + bound, -(int(prec) // 2))


def binomial_upper_tail(trials: int, at_least: int, q, ctx: mpmath.MPContext):
    """P[Bin(trials, q) >= at_least], exactly (a finite sum), at ``ctx``'s precision.

    Paper: median amplification (v2 App. H); spec PAPER.md §2.6.
    """
    q = ctx.mpf(q)
    return ctx.fsum(math.comb(trials, k) * q**k * (1 - q) ** (trials - k)
                    for k in range(at_least, trials + 1))


def median_failures_needed(copies: int) -> int:
    """ceil(l/2): the entrywise median of l values (the mean of the two middle ones for even l)
    can leave [z - b, z + b] only if at least ceil(l/2) of the values do.

    Odd l: the middle value is inside unless (l+1)/2 values are on one side outside. Even l: the
    two middle values (positions l/2 and l/2 + 1) are both inside unless l/2 values are outside.
    Paper: median of copies (v2 App. H); spec PAPER.md §2.6, §3.6.
    Proof note ``proofs_notes/14-adaptive-queries.md``.
    """
    return (int(copies) + 1) // 2


def median_copy_failure_prob(copies: int, failure_prob, ctx: mpmath.MPContext):
    """A per-copy failure probability q (within a relative 1e-20 of the largest, by geometric
    bisection from the valid start (p / C(l, k))^(1/k); cached) with P[Bin(l, q) >= ceil(l/2)] <= failure_prob: if each of the l independent copies exceeds its
    bound with probability <= q, the median exceeds the largest copy bound with probability
    <= failure_prob. For l = 1 this is failure_prob itself.

    Paper: median amplification, l >= ln(|N|/p_f)/0.4802 (v2 App. H); spec
    PAPER.md §2.6. Proof note ``proofs_notes/14-adaptive-queries.md``.
    """
    p = _prob(failure_prob, ctx)
    return ctx.make_mpf(_median_copy_failure_prob(int(copies), p._mpf_, ctx.prec))


@functools.lru_cache(maxsize=256)
def _median_copy_failure_prob(l: int, p_mpf: tuple, prec: int) -> tuple:
    ctx = context(prec)
    p = ctx.make_mpf(p_mpf)
    if l == 1:
        return p._mpf_
    k = median_failures_needed(l)
    # start from a valid q: tail <= C(l, k) q^k <= p at q = (p / C(l, k))^(1/k) (rounded down)
    lo = ctx.fmul(ctx.root(p / math.comb(l, k), k), 1 - ctx.ldexp(1, 8 - prec), rounding="d")
    if binomial_upper_tail(l, k, lo, ctx) > p:  # cannot happen; kept as a guard on rounding
        raise ArithmeticError("median_copy_failure_prob: start point is not valid")
    hi = ctx.one
    for _ in range(100):  # geometric bisection: relative resolution, however small q is
        mid = ctx.sqrt(lo * hi)
        if binomial_upper_tail(l, k, mid, ctx) <= p:
            lo = mid
        else:
            hi = mid
    return lo._mpf_


def _max_copy_bound(copies_terms: Sequence[CopyErrorTerms], column: int, R_w, noise_bound):
    return max(ratio_error_bound(noise_bound(c.numerators[column]), noise_bound(c.denominator),
                                 R_w, c.released_denominator)
               for c in copies_terms)


def certified_envelope(copies_terms: Sequence[CopyErrorTerms], R_w, *, prec) -> list:
    """Sure bound, per value column, on |answer - taylor_attention| at one query row.

    ``copies_terms``: one :class:`CopyErrorTerms` per copy (one for ``direct``). Each copy's
    answer is within ``(E_N + R_w E_D)/D~_c`` of the noiseless Taylor attention surely; the
    answer (the copy itself, or the entrywise median of the copies) is within the largest of
    these. Plus :func:`rounding_allowance`. No probability is involved: the bound holds for every
    query, however chosen (``proofs_notes/14-adaptive-queries.md``).
    Returns a list of d_v mpf. Paper: main theorem (additive error), adaptive queries
    (v2 §3, App. H); spec PAPER.md §4.1, §5 item 10; DESIGN §4.
    """
    ctx = context(prec)
    R_w = to_mpf(R_w, ctx, "R_w")
    d_v = len(copies_terms[0].numerators)

    def sure(groups):
        return sure_noise_bound(groups, ctx)

    out = []
    for k in range(d_v):
        b = _max_copy_bound(copies_terms, k, R_w, sure)
        out.append(b + rounding_allowance(b, R_w, prec=prec))
    return out


def hp_envelope(copies_terms: Sequence[CopyErrorTerms], R_w, failure_prob, *, prec) -> list:
    """High-probability bound, per value column, at one query row: for a query fixed before the
    noise is drawn, P[|answer_k - taylor_attention_k| > bound_k] <= failure_prob for each k.

    Per copy: numerator and denominator each get failure probability q/2 (union bound) in
    :func:`hp_noise_bound`, with q = :func:`median_copy_failure_prob` (q = p for one copy); the
    copy bound is (t_N + R_w t_D)/D~_c on the event that both hold. The median fails only if at
    least ceil(l/2) independent copies fail. Never larger than the sure envelope. Plus
    :func:`rounding_allowance`. For all d_v entries (or m rows) at once, pass
    failure_prob / (m d_v) (union bound). Adaptively chosen queries are NOT covered (the
    coefficients would then depend on the noise): use :func:`certified_envelope` for those
    (``proofs_notes/14-adaptive-queries.md``). Paper: the "with probability 1 - p_f" utility
    bound (ICLR Theorem 1.2; v2 §3); spec PAPER.md §4.1, §2.6; DESIGN §9(c).
    """
    ctx = context(prec)
    R_w = to_mpf(R_w, ctx, "R_w")
    q = median_copy_failure_prob(len(copies_terms), failure_prob, ctx)
    d_v = len(copies_terms[0].numerators)

    t_D = [hp_noise_bound(c.denominator, q / 2, ctx) for c in copies_terms]
    out = []
    for k in range(d_v):
        b = max(hp_ratio_error_bound(hp_noise_bound(c.numerators[k], q / 2, ctx), t, R_w,
                                     c.released_denominator, c.answers[k])
                for c, t in zip(copies_terms, t_D))
        out.append(b + rounding_allowance(b, R_w, prec=prec))
    return out
