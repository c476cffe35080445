"""The discrete Gaussian N_Z(0, sigma^2): its exact law, an exact sampler, the lattice release.

Paper: none - not in arXiv 2407.14717 (the paper calibrates truncated Laplace noise only,
PAPER.md §2.1). The law and the sampler are Canonne, Kamath & Steinke 2020, "The Discrete
Gaussian for Differential Privacy" (NeurIPS 2020, arXiv 2004.00010; **CKS20**): Algorithm 1
(Bernoulli(exp(-gamma)), here ``discrete_laplace.bernoulli_exp``, reused) and Algorithm 3
(the discrete Gaussian by rejection from a discrete Laplace proposal). Proof note:
``proofs_notes/25-discrete-gaussian.md`` (claim, exact form, the sampler's exactness, the
privacy bound of the lattice release, tests).

The law. For a public rational ``sigma2 = sigma^2 > 0``, ``P(Y = y) = exp(-y^2 / (2 sigma^2)) / N``
on the integers, ``N = sum_y exp(-y^2 / (2 sigma^2))`` (:func:`normaliser_enclosure`: certified,
from the direct series or from its Poisson-summation dual ``N = sqrt(2 pi) sigma (1 + 2 sum_{k>=1}
exp(-2 pi^2 sigma^2 k^2))``, each with a rigorous tail bound, in interval arithmetic).

The sampler (:func:`sample_from_words`), exact, integer arithmetic only, from 64-bit words through
the same word source and the same primitives as ``dpxattn.reference.discrete_laplace``:

1. ``t = floor(sigma) + 1`` (:func:`proposal_scale`); a discrete Laplace proposal
   ``P(Y = y)`` proportional to ``exp(-|y| / t)`` on all of Z (:func:`laplace_from_words`: the
   hardened TLap sampler's split ``|Y| = A 2^m + B`` without truncation: the geometric ``A`` is
   drawn by ``threshold_count`` with ``a_stop = 1024`` and, by memorylessness, *continued*
   (not restarted) when it reaches ``a_stop``; ``B`` and the sign exactly as there);
2. accept with probability ``exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))`` (CKS20 Algorithm 3): the
   exponent is the exact rational ``(b |Y| - a)^2 / D`` (:func:`acceptance_constants`), drawn as
   ``floor`` steps of ``bernoulli_exp(1, 1)`` and one ``bernoulli_exp(r, D)``
   (:func:`bernoulli_exp_rational`, CKS20 Algorithm 1 for gamma > 1);
3. restart at 1 on rejection.

Word-consumption rule (the contract the vectorised sampler in ``dpxattn.fast.secure_gaussian``
follows; primitives as documented in ``dpxattn.reference.discrete_laplace``): one draw, with
``m = t.bit_length() - 1``, ``step = 2^m``, ``a_stop = 1024``, ``e = 63 - m``: repeat {
``A = 0``; repeat { ``c = threshold_count(a_stop, step, t)``; ``A += c`` } until ``c < a_stop``;
repeat { word ``w``: ``B = w mod 2^m``, ``r = (w >> m) mod 2^e``, ``s = w >> 63`` } until
Bernoulli(exp(-B/t)) (its step k = 1 read from ``r``, as in the TLap sampler); ``X = A 2^m + B``;
if ``s == 1`` and ``X == 0``: restart; ``n, r = divmod((b X - a)^2, D)``; ``n`` times
``bernoulli_exp(1, 1)``, stopping (restart) at the first false; then ``bernoulli_exp(r, D)``:
false -> restart, true -> return ``-X`` if ``s`` else ``X`` }.

The sampler needs ``D <= 2^62`` (the range of ``uniform_below``); :func:`grid_sigma2` gives the
lattice release's grid ``sigma^2 = t (t - 1)``, for which ``D = 2 t (t - 1)`` (``t <= 2^30``).

The lattice release (:func:`lattice_gaussian_parameters`, :func:`release_from_tape`): round each
coordinate to ``g = 2^k`` (ties to even), add iid ``N_Z(0, t (t - 1))`` lattice units, release
``(round(x/g) + Y) g``. If neighbours move the float64 vector by at most ``Delta_2`` in l2 norm
over at most ``changed`` coordinates, the rounded vectors differ by an integer vector ``v`` with
``||v||_2^2 <= Q = floor((Delta_2 / g + sqrt(changed))^2)`` (:func:`sensitivity_sq_units`) and
``||v||_1 <= sqrt(changed Q)``. Its certified delta at eps (:func:`delta_bounds`) is the smaller
of

* the continuous analytic Gaussian's delta (Balle & Wang 2018) at ``tau = sqrt(Q) / sigma`` and
  at the slightly smaller ``eps - sqrt(changed Q) / sigma^2``: the quantile coupling of
  ``N_Z(0, sigma^2)`` with ``N(0, sigma^2)`` moves no coordinate by more than 1 (note 25, Lemma 5,
  for sigma^2 >= 1/4), so it moves ``<v, Y>`` by at most ``||v||_1``, and the privacy-loss
  functional is monotone (Lemma 6); at sigma ~ 2^29 lattice units the shift is ~1e-8;
* CKS20's bound through concentrated DP: the multivariate discrete Gaussian has Renyi divergence
  ``<= alpha ||v||^2 / (2 sigma^2)`` (its sub-Gaussian MGF), so delta <=
  ``exp((alpha - 1)(alpha rho - eps)) (1 - 1/alpha)^alpha / (alpha - 1)``, ``rho = Q / (2 sigma^2)``
  (CKS20 §2.3), at an alpha chosen numerically (any alpha > 1 is valid).

Shapes: the law functions take Python numbers and return mpf or exact Fraction enclosures; the
sampler takes an iterator of integers in [0, 2^64) (or a (n, T) uint64 tape, one row per draw).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator

from dpxattn.errors import ParameterError
from dpxattn.params import check_positive, check_positive_int, check_privacy, check_real
from dpxattn.reference._mp import context, interval_context, resolve_prec
from dpxattn.reference.discrete_laplace import (
    EXPONENT_MAX,
    EXPONENT_MIN,
    MAX_EXACT_UNITS,
    RANGE_LIMIT,
    WORD_BITS,
    _block_accepted,
    _check_tape,
    _exact,
    _float_up,
    _next_word,
    _pow2_at_least,
    bernoulli_exp,
    lattice_release_from_tape,
    threshold_count,
)

__all__ = [
    "A_STOP",
    "ENCLOSURE_PREC",
    "SIGMA_RESOLUTION_BITS",
    "TAIL_SIGMAS",
    "check_sigma2",
    "normaliser_enclosure",
    "normaliser",
    "pmf",
    "pmf_enclosure",
    "moments",
    "tail_upper",
    "proposal_scale",
    "acceptance_constants",
    "bernoulli_exp_rational",
    "laplace_from_words",
    "sample_from_words",
    "sample_from_tape",
    "grid_sigma2",
    "sensitivity_sq_units",
    "normal_sf_enclosure",
    "continuous_delta_upper",
    "coupling_condition",
    "cdp_delta_upper",
    "delta_bounds",
    "GaussianLatticeParameters",
    "lattice_gaussian_parameters",
    "release_from_tape",
]

#: thresholds of the geometric part per ``threshold_count`` call (continued, not truncated)
A_STOP = 1024
#: working precision (bits) of every certified enclosure of this module
ENCLOSURE_PREC = 256
#: the lattice release's scale: g is the smallest power of two >= sigma_continuous / 2^30,
#: so sigma is about 2^29 .. 2^30 lattice units (the sampler needs 2 t (t - 1) <= 2^62)
SIGMA_RESOLUTION_BITS = 30
#: released lattice integers stay exact float64 values while |noise| <= TAIL_SIGMAS t (larger
#: noise, of probability < e^-2000, is released rounded to float64: post-processing)
TAIL_SIGMAS = 64


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------

def check_sigma2(sigma2) -> Fraction:
    """sigma^2 as an exact positive Fraction (int, float, Fraction, mpf, numpy scalar); strings,
    bool, None, NaN, inf and values <= 0 raise :class:`ParameterError` naming ``sigma2``.

    Paper: none - not in arXiv 2407.14717 (CKS20, the discrete Gaussian's parameter);
    proofs_notes/25-discrete-gaussian.md.
    """
    check_positive("sigma2", sigma2)
    s2 = _exact("sigma2", sigma2)
    if s2 <= 0:
        raise ParameterError("sigma2", "must be finite and > 0", sigma2)
    return s2


def _iv_frac(iv, x: Fraction):
    return iv.mpf(x.numerator) / iv.mpf(x.denominator)


def _ends(x) -> tuple[Fraction, Fraction]:
    """The exact endpoints of an mpmath interval as Fractions."""
    out = []
    for end in x._mpi_:
        sign, man, exp, _ = end
        v = Fraction(int(man)) * (Fraction(2) ** int(exp))
        out.append(-v if sign else v)
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# the law: P(Y = y) = exp(-y^2 / (2 sigma^2)) / N
# ---------------------------------------------------------------------------------------------

def _theta_direct(iv, s2: Fraction, prec: int):
    """N = 1 + 2 sum_{y>=1} e^{-y^2/(2 s2)}, summed to M with tail <= 2 (s2/M) e^{-M^2/(2 s2)}."""
    total = iv.mpf(1)
    tiny = iv.mpf(2) ** -(prec + 20)
    y = 0
    while True:
        y += 1
        total += 2 * iv.exp(-_iv_frac(iv, Fraction(y * y) / (2 * s2)))
        tail = 2 * _iv_frac(iv, s2 / y) * iv.exp(-_iv_frac(iv, Fraction(y * y) / (2 * s2)))
        if y * y > 2 * s2 and tail.b < tiny.a:
            return total + iv.mpf([0, tail.b])


def _theta_dual(iv, s2: Fraction, prec: int):
    """N = sqrt(2 pi s2) (1 + 2 sum_{k>=1} x^{k^2}), x = e^{-2 pi^2 s2}, to K with tail
    <= 2 x^{(K+1)^2} / (1 - x) (Poisson summation; k^2 >= (K+1)^2 + (k - K - 1))."""
    x = iv.exp(-2 * iv.pi ** 2 * _iv_frac(iv, s2))
    total = iv.mpf(1)
    tiny = iv.mpf(2) ** -(prec + 20)
    k = 0
    while True:
        k += 1
        total += 2 * x ** (k * k)
        tail = 2 * x ** ((k + 1) ** 2) / (1 - x)
        if tail.b < tiny.a:
            return iv.sqrt(2 * iv.pi * _iv_frac(iv, s2)) * (total + iv.mpf([0, tail.b]))


def _theta(iv, s2: Fraction, prec: int, method: str | None = None):
    if method is None:
        method = "dual" if s2 >= Fraction(1, 2) else "direct"
    return _theta_dual(iv, s2, prec) if method == "dual" else _theta_direct(iv, s2, prec)


def normaliser_enclosure(sigma2, *, prec: int = ENCLOSURE_PREC, method: str | None = None
                         ) -> tuple[Fraction, Fraction]:
    """A certified enclosure [lo, hi] of N = sum_{y in Z} exp(-y^2 / (2 sigma^2)) (Fractions).

    ``method``: ``"direct"`` (the series, tail bounded by the Gaussian integral), ``"dual"``
    (Poisson summation N = sqrt(2 pi) sigma (1 + 2 sum_k e^{-2 pi^2 sigma^2 k^2}), geometric
    tail) or None (dual for sigma^2 >= 1/2, else direct). Width about 2^-prec relative.

    Paper: none - not in arXiv 2407.14717 (CKS20's normaliser; Poisson summation);
    proofs_notes/25-discrete-gaussian.md.
    """
    s2 = check_sigma2(sigma2)
    prec = check_positive_int("prec", prec, minimum=32)
    if method not in (None, "direct", "dual"):
        raise ParameterError("method", "must be None, 'direct' or 'dual'", method)
    return _ends(_theta(interval_context(prec + 32), s2, prec, method))


def _mid(lo: Fraction, hi: Fraction, ctx):
    m = (lo + hi) / 2
    return ctx.mpf(m.numerator) / m.denominator


def normaliser(sigma2, *, prec=None):
    """N = sum_y exp(-y^2 / (2 sigma^2)) (mpf at ``prec`` bits; the midpoint of the certified
    enclosure).

    Paper: none - not in arXiv 2407.14717 (CKS20); proofs_notes/25-discrete-gaussian.md.
    """
    p = resolve_prec(prec)
    lo, hi = normaliser_enclosure(sigma2, prec=max(p + 16, 64))
    return _mid(lo, hi, context(p))


def pmf_enclosure(y: int, sigma2, *, prec: int = ENCLOSURE_PREC) -> tuple[Fraction, Fraction]:
    """A certified enclosure of P(Y = y) = exp(-y^2 / (2 sigma^2)) / N (Fractions).

    Paper: none - not in arXiv 2407.14717 (CKS20); proofs_notes/25-discrete-gaussian.md.
    """
    s2 = check_sigma2(sigma2)
    y = int(y)
    iv = interval_context(prec + 32)
    value = iv.exp(-_iv_frac(iv, Fraction(y * y) / (2 * s2))) / _theta(iv, s2, prec)
    return _ends(value)


def pmf(y: int, sigma2, *, prec=None):
    """P(Y = y) = exp(-y^2 / (2 sigma^2)) / N for an integer y (mpf at ``prec`` bits).

    Paper: none - not in arXiv 2407.14717 (CKS20); proofs_notes/25-discrete-gaussian.md.
    """
    p = resolve_prec(prec)
    lo, hi = pmf_enclosure(y, sigma2, prec=max(p + 16, 64))
    return _mid(lo, hi, context(p))


def moments(sigma2, *, prec=None):
    """(N, E Y^2, E Y^4) of N_Z(0, sigma^2) (mpf; E Y = E Y^3 = 0 by symmetry), in closed form.

    Poisson summation of x^j e^{-x^2/(2 s)} (s = sigma^2, w_k = 2 pi k, x_k = e^{-s w_k^2 / 2}):
    N = sqrt(2 pi s) sum_k x_k, sum_y y^2 e^{..} = sqrt(2 pi s) sum_k (s - s^2 w_k^2) x_k,
    sum_y y^4 e^{..} = sqrt(2 pi s) sum_k (3 s^2 - 6 s^3 w_k^2 + s^4 w_k^4) x_k (the Fourier
    transforms of x^2 and x^4 times the Gaussian). For sigma^2 >= 1/2 the dual series is summed
    until its terms fall below 2^-(prec + 20) relative (they decrease like e^{-2 pi^2 s k^2});
    below 1/2 the direct series is summed the same way. In particular E Y^2 < sigma^2. Tested
    against the pmf summed term by term.

    Paper: none - not in arXiv 2407.14717 (CKS20 discuss E Y^2 <= sigma^2);
    proofs_notes/25-discrete-gaussian.md.
    """
    s2 = check_sigma2(sigma2)
    p = resolve_prec(prec)
    ctx = context(p + 32)
    s = ctx.mpf(s2.numerator) / s2.denominator
    tiny = ctx.mpf(2) ** -(p + 20)
    if s2 >= Fraction(1, 2):
        sums = [ctx.mpf(1), s, 3 * s * s]  # k = 0
        k = 0
        while True:
            k += 1
            w2 = (2 * ctx.pi * k) ** 2
            x = ctx.exp(-s * w2 / 2)
            terms = [2 * x, 2 * (s - s * s * w2) * x, 2 * (3 * s * s - 6 * s ** 3 * w2 + s ** 4 * w2 * w2) * x]
            sums = [a + b for a, b in zip(sums, terms)]
            if all(abs(tm) <= tiny * max(abs(sm), 1) for tm, sm in zip(terms, sums)):
                break
        root = ctx.sqrt(2 * ctx.pi * s)
        N, m2, m4 = root * sums[0], root * sums[1], root * sums[2]
    else:
        N, m2, m4 = ctx.mpf(1), ctx.mpf(0), ctx.mpf(0)
        y = 0
        while True:
            y += 1
            f = 2 * ctx.exp(-ctx.mpf(y * y) / (2 * s))
            N, m2, m4 = N + f, m2 + y * y * f, m4 + y ** 4 * f
            if y * y > 4 * s and y ** 4 * f <= tiny * m4:
                break
    out = context(p)
    return out.mpf(N), out.mpf(m2 / N), out.mpf(m4 / N)


def tail_upper(m: int, sigma2, *, prec: int = ENCLOSURE_PREC) -> Fraction:
    """A certified upper bound on P(Y > m) = P(Y < -m), integer m >= 0:
    P(Y > m) <= P(G > m) <= sigma e^{-m^2/(2 sigma^2)} / (m sqrt(2 pi)) for G ~ N(0, sigma^2)
    (note 25, Lemma 5 (i), and the Mills-ratio bound; m = 0 gives 1/2).

    Paper: none - not in arXiv 2407.14717 (CKS20); proofs_notes/25-discrete-gaussian.md.
    """
    s2 = check_sigma2(sigma2)
    m = check_positive_int("m", m, minimum=0)
    if m == 0:
        return Fraction(1, 2)
    iv = interval_context(prec)
    s = _iv_frac(iv, s2)
    bound = iv.sqrt(s) * iv.exp(-_iv_frac(iv, Fraction(m * m) / (2 * s2))) / (m * iv.sqrt(2 * iv.pi))
    return min(Fraction(1, 2), _ends(bound)[1])


# ---------------------------------------------------------------------------------------------
# the exact sampler (CKS20 Algorithm 3 on the project's discrete Laplace and Bernoulli samplers)
# ---------------------------------------------------------------------------------------------

def proposal_scale(sigma2) -> int:
    """t = floor(sigma) + 1, exactly: floor(sqrt(p/q)) = isqrt(floor(p/q)) (CKS20 Algorithm 3).

    Paper: none - not in arXiv 2407.14717 (CKS20 Algorithm 3); proofs_notes/25-discrete-gaussian.md.
    """
    s2 = check_sigma2(sigma2)
    return math.isqrt(s2.numerator // s2.denominator) + 1


@functools.lru_cache(maxsize=1024)
def _acceptance(s2: Fraction) -> tuple[int, int, int, int]:
    p, q = s2.numerator, s2.denominator
    t = math.isqrt(p // q) + 1
    g = math.gcd(p, t)
    tp = t // g
    return t, p // g, q * tp, 2 * p * q * tp * tp


def acceptance_constants(sigma2) -> tuple[int, int, int, int]:
    """``(t, a, b, D)`` with ``(|y| - sigma^2 / t)^2 / (2 sigma^2) = (b |y| - a)^2 / D`` exactly.

    With sigma^2 = p/q (lowest terms), t = floor(sigma) + 1, g = gcd(p, t), t' = t/g:
    sigma^2 / t = a / b with a = p/g, b = q t' (lowest terms), and D = 2 p q t'^2. For the grid
    sigma^2 = t (t - 1): a = t - 1, b = 1, D = 2 t (t - 1).

    Paper: none - not in arXiv 2407.14717 (CKS20 Algorithm 3's acceptance exponent);
    proofs_notes/25-discrete-gaussian.md.
    """
    return _acceptance(check_sigma2(sigma2))


def bernoulli_exp_rational(num: int, den: int, words: Iterator[int], *,
                           range_limit: int = RANGE_LIMIT) -> bool:
    """Bernoulli(exp(-num/den)) for integers num >= 0, 1 <= den <= 2^62 (CKS20 Algorithm 1,
    gamma > 1): ``floor(num/den)`` draws of ``bernoulli_exp(1, 1)`` (stopping false at the first
    false one) and then ``bernoulli_exp(num mod den, den)``; exp(-x) = e^{-floor x} e^{-frac x}.

    Paper: none - not in arXiv 2407.14717 (CKS20 Algorithm 1); proofs_notes/25-discrete-gaussian.md.
    """
    if num < 0 or not 1 <= den <= RANGE_LIMIT:
        raise ParameterError("num/den", "must satisfy num >= 0 and 1 <= den <= 2^62", (num, den))
    n, r = divmod(num, den)
    for _ in range(n):
        if not bernoulli_exp(1, 1, words, range_limit=range_limit):
            return False
    return bernoulli_exp(r, den, words, range_limit=range_limit)


def laplace_from_words(t: int, words: Iterable[int], *, range_limit: int = RANGE_LIMIT) -> int:
    """One draw of the discrete Laplace P(y) proportional to exp(-|y|/t) on all of Z (t >= 1).

    The hardened TLap sampler's split (proofs_notes/23, Lemma 4 (c)) without truncation:
    |y| = A 2^m + B with 2^m <= t; ``threshold_count(A_STOP, 2^m, t)`` gives min(A', A_STOP) for
    a geometric A' with P(A' >= a) = e^{-a 2^m / t}, and when it returns A_STOP the excess is
    again such a geometric (memorylessness), drawn the same way and added; B and the sign from
    one word, B accepted with probability e^{-B/t}; (-, 0) restarts.

    Paper: none - not in arXiv 2407.14717 (CKS20 Algorithm 2's law; note 23's sampler);
    proofs_notes/25-discrete-gaussian.md.
    """
    t = check_positive_int("t", t)
    if t > range_limit:
        raise ParameterError("t", "must be <= the range limit (2^62)", t)
    it = iter(words)
    m = t.bit_length() - 1
    step, spare = 1 << m, WORD_BITS - 1 - m
    while True:
        a = 0
        while True:
            c = threshold_count(A_STOP, step, t, it)
            a += c
            if c < A_STOP:
                break
        while True:
            w = _next_word(it)
            b, prefix, negative = w & (step - 1), (w >> m) & ((1 << spare) - 1), w >> (WORD_BITS - 1)
            if _block_accepted(b, t, prefix, spare, it, range_limit):
                break
        x = a * step + b
        if negative and x == 0:
            continue
        return -x if negative else x


def _check_sampler_range(s2: Fraction, range_limit: int) -> tuple[int, int, int, int]:
    t, a, b, D = _acceptance(s2)
    if D > range_limit:
        raise ParameterError(
            "sigma2", "must give the sampler an acceptance denominator D = 2 p q t'^2 <= 2^62 "
            f"(here D = {D})", str(s2),
            hint="use the grid sigma2 = t (t - 1) (grid_sigma2), exact up to t = 2^30, or a "
                 "rational with a smaller numerator and denominator")
    return t, a, b, D


def sample_from_words(sigma2, words: Iterable[int], *, range_limit: int = RANGE_LIMIT) -> int:
    """One exact draw of N_Z(0, sigma^2) from 64-bit words (CKS20 Algorithm 3).

    Proposal Y from :func:`laplace_from_words` at t = floor(sigma) + 1, accepted with probability
    exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)) = exp(-(b |Y| - a)^2 / D) by
    :func:`bernoulli_exp_rational`; restart on rejection. P(accept | Y = y) P(Y = y) is
    proportional to exp(-y^2 / (2 sigma^2)). Raises :class:`ParameterError` when D > 2^62.

    Paper: none - not in arXiv 2407.14717 (CKS20 Algorithm 3); proofs_notes/25-discrete-gaussian.md.
    """
    s2 = check_sigma2(sigma2)
    t, a, b, D = _check_sampler_range(s2, range_limit)
    it = iter(words)
    while True:
        y = laplace_from_words(t, it, range_limit=range_limit)
        if bernoulli_exp_rational((b * abs(y) - a) ** 2, D, it, range_limit=range_limit):
            return y


def sample_from_tape(tape, sigma2, *, range_limit: int = RANGE_LIMIT) -> list[int]:
    """One draw per row of a (n, T) uint64 tape: row i's words, in order, feed draw i.

    Paper: none - not in arXiv 2407.14717 (CKS20 Algorithm 3); proofs_notes/25-discrete-gaussian.md.
    """
    arr = _check_tape(tape)
    s2 = check_sigma2(sigma2)
    _check_sampler_range(s2, range_limit)
    return [sample_from_words(s2, iter(row.tolist()), range_limit=range_limit) for row in arr]


# ---------------------------------------------------------------------------------------------
# certified (eps, delta) of the lattice release
# ---------------------------------------------------------------------------------------------

def grid_sigma2(t: int) -> Fraction:
    """sigma^2 = t (t - 1) lattice units^2 (t >= 2): sigma in (t - 1, t), so floor(sigma) + 1 = t
    and the acceptance denominator is D = 2 t (t - 1). Consecutive grid points differ by
    sigma / sigma' - 1 ~ 1/sigma.

    Paper: none - not in arXiv 2407.14717 (our grid for CKS20 Algorithm 3);
    proofs_notes/25-discrete-gaussian.md.
    """
    t = check_positive_int("t", t, minimum=2)
    return Fraction(t * (t - 1))


def sensitivity_sq_units(sensitivity, changed: int, exponent: int) -> int:
    """Q = floor((Delta_2 / 2^k + sqrt(changed))^2): the rounded vectors' largest squared l2 change,
    in lattice units (an integer: the change is an integer vector).

    Rounding moves each coordinate by at most g/2, so a coordinate changing by d_i changes by
    at most |d_i| + g after rounding, and only ``changed`` coordinates change: by the triangle
    inequality ||v||_2 <= Delta_2 / g + sqrt(changed) (note 25, Lemma 4; the l2 form of note 23's
    Lemma 1).

    Paper: none - not in arXiv 2407.14717 (our lattice release); proofs_notes/25-discrete-gaussian.md.
    """
    sens = _exact("sensitivity", check_positive("sensitivity", sensitivity))
    changed = check_positive_int("changed", changed)
    return _sq_floor(sens / (Fraction(2) ** int(exponent)), changed)


def _sq_floor(a: Fraction, changed: int) -> int:
    """floor((a + sqrt(c))^2) = floor(a^2 + c + sqrt(4 a^2 c)) for a >= 0 rational, c >= 1."""
    base = a * a + changed
    x = 4 * a * a * changed  # sqrt(x) = 2 a sqrt(c)
    # floor(base + sqrt(x)) = the largest integer m with m - base <= sqrt(x); start below it
    m = math.floor(base) + math.isqrt(math.floor(x))
    while True:
        d = m + 1 - base
        if d <= 0 or d * d <= x:
            m += 1
        else:
            return m


def _normal_sf_series(work, x, prec: int):
    """Q(x) for a point x (an mpf of ``work``) by erf's Taylor series, as an interval of ``work``."""
    z = work.mpf(x) / work.sqrt(2)
    z2 = z * z
    zmax = float(abs(x)) / math.sqrt(2)
    term = z  # z^(2n+1) / n!
    total = work.mpf(0)
    tiny = work.mpf(2) ** -(prec + 20)
    n = 0
    while True:
        total += term / (2 * n + 1) if n % 2 == 0 else -(term / (2 * n + 1))
        n += 1
        term = term * z2 / n
        nxt = abs(term) / (2 * n + 1)
        if n > zmax * zmax + 1 and nxt.b < tiny.a:
            total += work.mpf([-nxt.b, nxt.b])
            break
    return (1 - 2 * total / work.sqrt(work.pi)) / 2


def _normal_sf_iv(iv, x, prec: int):
    """Q(x) = P(G > x), G ~ N(0, 1), for an interval x, as an enclosing interval.

    Q decreases, so Q(x) lies in [Q(x.b), Q(x.a)], each end computed at a point (no interval
    dependency blow-up). |x| <= 30: Q = (1 - erf(x / sqrt 2)) / 2 with erf's Taylor series
    erf(z) = (2/sqrt pi) sum_n (-1)^n z^(2n+1) / (n! (2n+1)), summed past n > z^2 (where the terms
    decrease) at prec + 1.45 z^2 + 64 bits, plus the alternating tail [-|T_N|, |T_N|]. x > 30:
    Mills' ratio phi(x) x / (1 + x^2) <= Q(x) <= phi(x) / x; x < -30: 1 - Q(-x).
    """
    lo, hi = _ends(x)
    if lo > 30:
        phi = iv.exp(-x * x / 2) / iv.sqrt(2 * iv.pi)
        return iv.mpf([(phi * x / (1 + x * x)).a, (phi / x).b])
    if hi < -30:
        return 1 - _normal_sf_iv(iv, -x, prec)
    zmax = float(max(abs(lo), abs(hi))) / math.sqrt(2)
    work = interval_context(prec + int(zmax * zmax * 1.4427) + 64)
    ctx = context(work.prec)
    at_hi = _normal_sf_series(work, ctx.make_mpf(x._mpi_[1]), prec)  # Q(x.b): the lower end
    at_lo = _normal_sf_series(work, ctx.make_mpf(x._mpi_[0]), prec)  # Q(x.a): the upper end
    q_lo, _ = _ends(at_hi)
    _, q_hi = _ends(at_lo)
    q_lo, q_hi = max(q_lo, Fraction(0)), min(q_hi, Fraction(1))  # a probability: clip to [0, 1]
    return iv.mpf([_iv_frac(iv, q_lo).a, _iv_frac(iv, q_hi).b])


def normal_sf_enclosure(x, *, prec: int = ENCLOSURE_PREC) -> tuple[Fraction, Fraction]:
    """A certified enclosure of Q(x) = P(N(0, 1) > x) (Fractions): erf's Taylor series with its
    alternating remainder for |x| <= 30, Mills' ratio beyond (mpmath has no interval erfc).

    Paper: none - not in arXiv 2407.14717 (certified arithmetic for Balle & Wang 2018's delta);
    proofs_notes/25-discrete-gaussian.md.
    """
    xf = _exact("x", x)
    iv = interval_context(prec)
    return _ends(_normal_sf_iv(iv, _iv_frac(iv, xf), prec))


def _continuous_delta_iv(iv, sigma2: Fraction, sens_sq: int, eps_iv, prec: int):
    """Balle & Wang's delta at tau = sqrt(sens_sq / sigma2) for an interval eps' (any real)."""
    tau = iv.sqrt(iv.mpf(sens_sq) / _iv_frac(iv, sigma2))
    return _normal_sf_iv(iv, eps_iv / tau - tau / 2, prec) - iv.exp(eps_iv) * _normal_sf_iv(iv, eps_iv / tau + tau / 2, prec)


def continuous_delta_upper(sigma2, sens_sq: int, eps, *, prec: int = ENCLOSURE_PREC) -> Fraction:
    """Certified upper bound on the continuous Gaussian mechanism's hockey-stick divergence at
    eps (Balle & Wang 2018, Theorem 8; any real eps): Q(eps/tau - tau/2) - e^eps Q(eps/tau + tau/2),
    tau = sqrt(sens_sq / sigma2), Q the standard normal upper tail (:func:`normal_sf_enclosure`).

    Paper: none - not in arXiv 2407.14717 (Balle & Wang 2018); proofs_notes/25-discrete-gaussian.md.
    """
    s2 = check_sigma2(sigma2)
    sens_sq = check_positive_int("sens_sq", sens_sq)
    e = _exact("eps", check_real("eps", eps))
    iv = interval_context(prec)
    return max(Fraction(0), _ends(_continuous_delta_iv(iv, s2, sens_sq, _iv_frac(iv, e), prec))[1])


def coupling_condition(sigma2, *, prec: int = ENCLOSURE_PREC) -> bool:
    """Certified ``min(1/3, 1/(3 sigma^4)) >= 2 x / (1 - x)``, x = e^{-2 pi^2 sigma^2}: the
    condition of note 25 Lemma 5 (then F_G(k) <= F_Y(k) <= F_G(k + 1) for every integer k, so the
    quantile coupling of N_Z(0, sigma^2) and N(0, sigma^2) moves no draw by more than 1). True
    for every sigma^2 >= 1/4.

    Paper: none - not in arXiv 2407.14717 (ours); proofs_notes/25-discrete-gaussian.md.
    """
    s2 = check_sigma2(sigma2)
    iv = interval_context(prec)
    s = _iv_frac(iv, s2)
    x = iv.exp(-2 * iv.pi ** 2 * s)  # compared as intervals: x may be far below any Fraction's reach
    rhs = 2 * x / (1 - x)
    return bool(rhs.b <= iv.mpf(1) / 3) and bool(rhs.b <= (1 / (3 * s * s)).a)


def _cdp_alpha(rho: float, eps: float) -> float:
    """The alpha > 1 minimising CKS20's conversion bound (float bisection on its derivative
    (2 alpha - 1) rho - eps + log(1 - 1/alpha)); any alpha > 1 gives a valid bound."""
    if rho <= 0:
        return 2.0
    lo, hi = 1.0 + 1e-9, max(2.0, (eps + 1) / (2 * rho) + 2)
    for _ in range(200):
        mid = (lo + hi) / 2
        if (2 * mid - 1) * rho - eps + math.log1p(-1 / mid) < 0:
            lo = mid
        else:
            hi = mid
    return max(hi, 1.0 + 1e-6)


def _cdp_delta_iv(iv, rho: Fraction, eps: Fraction, alpha: Fraction):
    a, r, e = _iv_frac(iv, alpha), _iv_frac(iv, rho), _iv_frac(iv, eps)
    return iv.exp((a - 1) * (a * r - e) + a * iv.log(1 - 1 / a)) / (a - 1)


def cdp_delta_upper(rho, eps, *, alpha=None, prec: int = ENCLOSURE_PREC) -> Fraction:
    """Certified upper bound on delta(eps) of a mechanism whose Renyi divergences satisfy
    D_alpha <= alpha rho for every alpha > 1 (CKS20 §2.3): at one alpha > 1,
    exp((alpha - 1)(alpha rho - eps)) (1 - 1/alpha)^alpha / (alpha - 1), capped at 1. ``alpha``:
    None picks the minimiser numerically (the bound holds for every alpha > 1).

    Paper: none - not in arXiv 2407.14717 (CKS20 §2.3); proofs_notes/25-discrete-gaussian.md.
    """
    r = _exact("rho", check_positive("rho", rho))
    e = _exact("eps", check_positive("eps", eps))
    al = Fraction(_cdp_alpha(float(r), float(e))) if alpha is None else _exact("alpha", alpha)
    if al <= 1:
        raise ParameterError("alpha", "must be > 1", alpha)
    return min(Fraction(1), _ends(_cdp_delta_iv(interval_context(prec), r, e, al))[1])


def delta_bounds(sigma2, sens_sq: int, changed: int, eps, *, prec: int = ENCLOSURE_PREC) -> dict:
    """The certified delta(eps) of adding iid N_Z(0, sigma^2) to integer vectors whose change v
    has ||v||_2^2 <= ``sens_sq`` and at most ``changed`` nonzero coordinates (note 25, Theorem).

    Returns exact Fractions, each an upper bound (``upper`` the one to use):

    * ``continuous``: Balle & Wang's delta at tau = sqrt(sens_sq)/sigma and eps (the continuous
      Gaussian's; for comparison, not itself a bound on the discrete law);
    * ``eps_shift``: an upper bound on l = sqrt(changed sens_sq) / sigma^2 >= ||v||_1 / sigma^2;
    * ``coupling``: Balle & Wang's delta at tau and eps - l (note 25, Lemma 6: the quantile
      coupling moves <v, Y> by at most ||v||_1 and the privacy-loss functional is monotone), 1
      when the coupling lemma's condition fails (sigma^2 < 1/4);
    * ``cdp``: CKS20's concentrated-DP bound at rho = sens_sq / (2 sigma^2);
    * ``upper`` = min(coupling, cdp, 1).

    Paper: none - not in arXiv 2407.14717 (CKS20 §2.3 and our coupling bound);
    proofs_notes/25-discrete-gaussian.md.
    """
    s2 = check_sigma2(sigma2)
    sens_sq = check_positive_int("sens_sq", sens_sq)
    changed = check_positive_int("changed", changed)
    e = _exact("eps", check_positive("eps", eps))
    iv = interval_context(prec)
    e_iv = _iv_frac(iv, e)
    cont = max(Fraction(0), _ends(_continuous_delta_iv(iv, s2, sens_sq, e_iv, prec))[1])
    shift = iv.sqrt(iv.mpf(changed * sens_sq)) / _iv_frac(iv, s2)
    if coupling_condition(s2, prec=prec):
        coupling = max(Fraction(0), _ends(_continuous_delta_iv(iv, s2, sens_sq, e_iv - shift, prec))[1])
    else:
        coupling = Fraction(1)
    rho = Fraction(sens_sq) / (2 * s2)
    cdp = min(Fraction(1), _ends(_cdp_delta_iv(iv, rho, e, Fraction(_cdp_alpha(float(rho), float(e)))))[1])
    return {"continuous": cont, "eps_shift": _ends(shift)[1], "coupling": min(coupling, Fraction(1)),
            "cdp": cdp, "upper": min(coupling, cdp, Fraction(1))}


# ---------------------------------------------------------------------------------------------
# the lattice release's parameters
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GaussianLatticeParameters:
    """Every public constant of one lattice release with discrete Gaussian noise (note 25).

    Exact fields: ``exponent`` k (g = 2^k), ``sensitivity_sq_units`` Q (>= ||v||_2^2 of the
    rounded change), ``scale_units`` t (the grid index: sigma^2 = t (t - 1) lattice units^2, the
    proposal's scale), ``max_value_units`` (the largest |round(x/g)| accepted), the Fractions
    ``sigma2_units`` = t (t - 1), ``delta_upper`` (certified, <= delta) and the parts of
    :func:`delta_bounds`: ``delta_coupling``, ``delta_cdp``, ``eps_shift`` and, for comparison,
    ``delta_continuous`` (the continuous Gaussian's delta at the same sigma and Q). ``eps_used``
    = eps (the bound is evaluated at eps itself). ``sigma_continuous``: the continuous analytic sigma for the same
    (Delta_2, eps, delta) (reference/gaussian.py::sigma_for), for the comparison.

    Paper: none - not in arXiv 2407.14717 (CKS20; our lattice release);
    proofs_notes/25-discrete-gaussian.md.
    """

    sensitivity: Fraction
    eps: Fraction
    delta: Fraction
    changed: int
    value_bound: Fraction | None
    exponent: int
    sensitivity_sq_units: int
    scale_units: int
    max_value_units: int
    sigma2_units: Fraction
    delta_upper: Fraction
    delta_continuous: Fraction
    delta_coupling: Fraction
    delta_cdp: Fraction
    eps_shift: Fraction
    sigma_continuous: float

    @property
    def granularity(self) -> float:
        """g = 2^k as a float64 (exact)."""
        return math.ldexp(1.0, self.exponent)

    @property
    def eps_used(self) -> Fraction:
        return self.eps

    @property
    def delta_achieved(self) -> float:
        """The certified upper bound on delta, rounded up to a float64."""
        return _float_up(self.delta_upper)

    @property
    def sigma_units(self) -> float:
        """sqrt(t (t - 1)) as a float64, rounded up."""
        return math.nextafter(math.sqrt(float(self.sigma2_units)), math.inf)

    @property
    def sigma(self) -> float:
        """The noise's sigma in value units, g sqrt(t (t - 1)), rounded up (>= the exact value;
        the exact variance of N_Z is below sigma^2)."""
        return math.nextafter(math.ldexp(self.sigma_units, self.exponent), math.inf)

    @property
    def sigma_ratio(self) -> float:
        """sigma / the continuous analytic sigma for the same (Delta_2, eps, delta)."""
        return self.sigma / self.sigma_continuous

    def to_dict(self) -> dict:
        return {
            "law": "discrete_gaussian",
            "granularity": self.granularity,
            "granularity_exponent": self.exponent,
            "sensitivity": float(self.sensitivity),
            "eps": float(self.eps),
            "delta": float(self.delta),
            "changed": self.changed,
            "value_bound": None if self.value_bound is None else float(self.value_bound),
            "sensitivity_sq_units": self.sensitivity_sq_units,
            "scale_units": self.scale_units,
            "sigma2_units": str(self.sigma2_units),
            "sigma": self.sigma,
            "sigma_continuous": self.sigma_continuous,
            "sigma_ratio": self.sigma_ratio,
            "max_value_units": self.max_value_units,
            "delta_achieved": self.delta_achieved,
            "delta_continuous": float(self.delta_continuous),
            "delta_coupling": float(self.delta_coupling),
            "delta_cdp": float(self.delta_cdp),
            "eps_shift": float(self.eps_shift),
        }

    def __str__(self) -> str:
        return (f"lattice release, discrete Gaussian: g = 2^{self.exponent}, sigma^2 = t (t - 1) "
                f"with t = {self.scale_units} units (sigma = {self.sigma:.10g}, "
                f"{self.sigma_ratio:.7f} x the continuous {self.sigma_continuous:.10g}), "
                f"||v||_2^2 <= {self.sensitivity_sq_units} units^2, delta achieved <= "
                f"{self.delta_achieved:.6g} <= {float(self.delta):.6g} at eps = {float(self.eps):.6g}")


def _delta_ok(t: int, Q: int, changed: int, eps: Fraction, delta: Fraction) -> bool:
    return delta_bounds(grid_sigma2(t), Q, changed, eps)["upper"] <= delta


def _smallest_t(Q: int, changed: int, eps: Fraction, delta: Fraction, guess: int) -> int:
    """The smallest t >= 2 with certified delta_bounds(t (t - 1), Q, ...)['upper'] <= delta
    (the bound decreases in t: gallop from ``guess``, then bisect)."""
    ok = functools.partial(_delta_ok, Q=Q, changed=changed, eps=eps, delta=delta)
    guess = max(2, guess)
    if ok(guess):
        hi, step = guess, 1
        lo = hi - step
        while lo >= 2 and ok(lo):
            hi, step = lo, step * 2
            lo = hi - step
        lo = max(lo, 1)  # not ok, or below the grid
    else:
        lo, step = guess, 1
        hi = lo + step
        while not ok(hi):
            lo, step = hi, step * 2
            hi = lo + step
            if hi > 1 << 40:
                raise ParameterError("delta", "cannot be met by the lattice release (the "
                                     "certified bound stays above it)", float(delta))
    while hi - lo > 1:  # invariant: ok(hi), not ok(lo) (or lo < 2)
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


@functools.lru_cache(maxsize=256)
def _gaussian_parameters(sens: Fraction, eps: Fraction, delta: Fraction, changed: int,
                         value_bound: Fraction | None) -> GaussianLatticeParameters:
    from dpxattn.reference.gaussian import sigma_for  # the continuous guide (and comparison)

    sigma_c = float(sigma_for(sens, eps, delta))
    k = _pow2_at_least(Fraction(sigma_c) / (1 << SIGMA_RESOLUTION_BITS))
    while True:
        if k < EXPONENT_MIN or k > EXPONENT_MAX:
            raise ParameterError(
                "granularity exponent", f"must lie in [{EXPONENT_MIN}, {EXPONENT_MAX}] so that "
                "lattice points are exact float64 values", k,
                hint=f"from sensitivity = {float(sens):.6g}, eps = {float(eps):.6g}, delta = "
                     f"{float(delta):.6g}, value_bound = {value_bound}")
        g = Fraction(2) ** k
        Q = _sq_floor(sens / g, changed)
        t = _smallest_t(Q, changed, eps, delta, math.ceil(Fraction(sigma_c) / g) + 1)
        if 2 * t * (t - 1) > RANGE_LIMIT:
            raise ParameterError(
                "changed", "is too large for this delta: the lattice release's certified delta "
                "needs sigma beyond the sampler's range (2 t (t - 1) <= 2^62)", changed,
                hint="the coupling allowance grows like sqrt(changed) / sigma in lattice units")
        if value_bound is None:
            max_units = MAX_EXACT_UNITS - TAIL_SIGMAS * t
            break
        max_units = math.floor(value_bound / g + Fraction(1, 2))
        if max_units + TAIL_SIGMAS * t <= MAX_EXACT_UNITS:
            break
        k += 1  # coarser lattice until the released points stay exact (with overwhelming probability)
    parts = delta_bounds(grid_sigma2(t), Q, changed, eps)
    return GaussianLatticeParameters(
        sensitivity=sens, eps=eps, delta=delta, changed=changed, value_bound=value_bound,
        exponent=k, sensitivity_sq_units=Q, scale_units=t, max_value_units=max_units,
        sigma2_units=grid_sigma2(t), delta_upper=parts["upper"], delta_continuous=parts["continuous"],
        delta_coupling=parts["coupling"], delta_cdp=parts["cdp"], eps_shift=parts["eps_shift"],
        sigma_continuous=sigma_c)


def lattice_gaussian_parameters(sensitivity, eps, delta, changed: int, *, value_bound=None
                                ) -> GaussianLatticeParameters:
    """All public constants of a lattice release with discrete Gaussian noise of a vector with l2
    sensitivity ``sensitivity`` over at most ``changed`` coordinates.

    g = 2^k is the smallest power of two >= sigma_c / 2^30 (sigma_c the continuous analytic
    sigma), coarsened while ``round(value_bound / g) + 64 t > 2^53``; then Q =
    :func:`sensitivity_sq_units` and the smallest grid t with certified
    :func:`delta_bounds` ``<= delta``. Cached: a pure function of its exact arguments.

    Paper: none - not in arXiv 2407.14717 (CKS20; our lattice release);
    proofs_notes/25-discrete-gaussian.md.
    """
    check_privacy(eps, delta)
    sens = _exact("sensitivity", check_positive("sensitivity", sensitivity))
    e = _exact("eps", eps)
    d = _exact("delta", delta)
    changed = check_positive_int("changed", changed)
    vb = None if value_bound is None else _exact("value_bound", check_positive("value_bound", value_bound))
    return _gaussian_parameters(sens, e, d, changed, vb)


def release_from_tape(values, tape, *, sensitivity, eps, delta, changed: int, value_bound=None
                      ) -> list[Fraction]:
    """The exact lattice release with discrete Gaussian noise of a 1-D sequence of finite reals,
    from a (n, T) uint64 tape: ``(round(x_i / g) + Y_i) g`` as exact Fractions (the reference
    the fast ``secure_gaussian_release(..., tape=tape)`` must reproduce bit for bit). Raises
    :class:`BoundError` for NaN/inf, |x| > value_bound, or |round(x/g)| > max_value_units.

    Paper: none - not in arXiv 2407.14717 (CKS20; our lattice release);
    proofs_notes/25-discrete-gaussian.md.
    """
    params = lattice_gaussian_parameters(sensitivity, eps, delta, changed, value_bound=value_bound)
    return lattice_release_from_tape(params, values, tape,
                                     lambda words: sample_from_words(params.sigma2_units, words))
