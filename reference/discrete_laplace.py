"""Discrete truncated Laplace on a power-of-two lattice: the exact law and an exact sampler.

TLap, hardened release -- paper: truncated Laplace mechanism (v2 §2 / App. B);
spec PAPER.md §2.1 (law, vector extension) and §5 item 18 (floating point);
proofs_notes/23-hardened-noise.md (the proof this module's constants come from).

The float path adds ``ppf(u)`` of a float64 uniform to a float64 sum. Its output bits depend on
the private value beyond what the idealised proof allows (Mironov, CCS 2012). The hardened
release never lets a floating-point operation touch the noisy value:

1. a public **granularity** ``g = 2^k`` (:func:`granularity_exponent`; Google's secure noise
   uses the smallest power of two >= b / 2^40, b = Delta / eps);
2. each coordinate is rounded to the nearest lattice point, ties to even
   (:func:`round_to_lattice_units`), which moves the l1 sensitivity to
   ``Delta_int = floor(Delta / g) + changed`` lattice units (:func:`rounded_sensitivity_units`);
3. integer noise ``Z`` with ``P(Z = z) = q^|z| / N`` for ``|z| <= K``, ``q = exp(-1/t)`` and the
   integer **scale** ``t = ceil(Delta_int / eps)`` (:func:`lattice_scale_units`), so the ratio
   of the laws at any shift ``<= Delta_int`` is at most ``exp(Delta_int / t) <= e^eps``;
4. the **support** ``K`` is the smallest integer whose exact hockey-stick divergence at shift
   ``Delta_int`` (the mass reachable under D and not under D', :func:`tail_delta`) is <= delta
   (:func:`support_units`), certified with interval arithmetic;
5. the released value is ``(round(x / g) + Z) * g``, an integer times a power of two, exact in
   float64 (:func:`lattice_parameters` checks the range).

The sampler (:func:`sample_from_words`) is exact: it uses only integer comparisons of 64-bit
random words. It splits ``X = |z|`` as ``X = A 2^m + B`` (quotient and remainder by a public
block ``2^m <= t``, :func:`block_exponent`), which are independent: ``P(A >= a) = e^(-a 2^m / t)``
(drawn by inversion, one uniform real compared digit by digit with the certified digits of
those thresholds, :func:`rate_digit`; usually one word) and ``P(B = b)`` proportional to
``e^(-b/t)`` on ``[0, 2^m)`` (a uniform ``b`` accepted with probability ``e^(-b/t)`` by Canonne,
Kamath, Steinke 2020, Algorithm 1, whose first Bernoulli(b/t) reads the spare bits of b's own
word). A fair sign with the double zero rejected gives ``P(z)`` proportional to
``e^(-|z|/t)``; rejecting ``X > K`` conditions on ``|z| <= K``. About two words per draw. Its
exact word-consumption rule is the contract the vectorised sampler in
``dpxattn.fast.secure_noise`` follows, so the same words give the same integers (the
conformance test).

Word-consumption rule (64-bit words; ``uniform_below(1)`` and ``Bernoulli(0)`` consume none):

* ``uniform_below(n)``: take words ``w`` until ``w < 2^64 - (2^64 mod n)``; return ``w mod n``;
* ``Bernoulli(num / (den k))`` (a step of the exp chain): false without a word if ``num = 0``;
  else ``uniform_below(den k) < num`` when ``den k <= RANGE_LIMIT``, else
  ``uniform_below(den) < num`` and then (only if true) ``uniform_below(k) == 0``;
* ``Bernoulli(exp(-num/den))``, ``0 <= num <= den``: steps ``k = 1, 2, ...`` until a step is
  false; true iff that ``k`` is odd;
* ``W < exp(-a 2^m / t)`` for a uniform real ``W = 0.w_1 w_2 ...`` (64-bit digits drawn only
  when needed, shared by the comparisons of one draw of ``A``): decided at the first digit
  where ``W`` and the threshold differ;
* one draw, with ``m = block_exponent(t, K)``, ``a_stop = K // 2^m + 1`` and ``e = 63 - m``:
  ``A = 0``; while ``A < a_stop`` and ``W < exp(-(A + 1) 2^m / t)``: ``A += 1``; restart if
  ``A == a_stop``; then repeat { word ``w``: ``B = w mod 2^m``, ``r = (w >> m) mod 2^e``,
  ``s = w >> 63`` } until ``Bernoulli(exp(-B/t))``, whose step k = 1 compares the uniform real
  ``V = (r + 0.v_1 v_2 ...) / 2^e`` (further 64-bit digits ``v_i`` drawn only when ``r`` equals
  ``floor(B 2^e / t)``) with ``B/t``; ``X = A 2^m + B``; restart if ``X > K`` or (``s == 1``
  and ``X == 0``); return ``-X`` if ``s`` else ``X``.

Shapes: the law functions take Python integers and return mpf; the sampler takes an iterator of
integers in [0, 2^64) (or a (n, T) uint64 tape, one row per draw) and returns Python integers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator

import mpmath
import numpy as np

from dpxattn.errors import BoundError, ParameterError, ShapeError, UniformsError
from dpxattn.params import check_positive, check_positive_int, check_privacy
from dpxattn.reference._mp import context, interval_context

__all__ = [
    "even_moments",
    "NOISE_RESOLUTION_BITS",
    "ROUNDING_RESOLUTION_BITS",
    "WORD_BITS",
    "RANGE_LIMIT",
    "MAX_EXACT_UNITS",
    "EXPONENT_MIN",
    "EXPONENT_MAX",
    "DECISION_PREC",
    "LatticeParameters",
    "granularity_exponent",
    "rounded_sensitivity_units",
    "lattice_scale_units",
    "normaliser",
    "pmf",
    "cdf",
    "tail_delta",
    "hockey_stick",
    "delta_enclosure",
    "support_units",
    "lattice_parameters",
    "round_to_lattice_units",
    "uniform_below",
    "bernoulli_exp",
    "block_exponent",
    "rate_digit",
    "threshold_count",
    "threshold_first_digits",
    "bernoulli_ratio_from_prefix",
    "sample_from_words",
    "sample_from_tape",
    "release_from_tape",
    "lattice_release_from_tape",
]

#: g is the smallest power of two >= b / 2^NOISE_RESOLUTION_BITS (Google's secure noise: 2^40)
NOISE_RESOLUTION_BITS = 40
#: the starting g also keeps the rounding's extra sensitivity changed g <= Delta 2^-20
ROUNDING_RESOLUTION_BITS = 20
#: every random word is an integer in [0, 2^WORD_BITS)
WORD_BITS = 64
#: the largest range uniform_below is asked for (products den * k above it are split)
RANGE_LIMIT = 1 << 62
#: lattice integers are released only while |m| <= 2^53 (exact in float64)
MAX_EXACT_UNITS = 1 << 53
#: admissible granularity exponents: 2^k * m is exact for |m| <= 2^53 (subnormals included)
EXPONENT_MIN = -1074
EXPONENT_MAX = 1023 - 53
#: working precision (bits) of the interval arithmetic that decides K and certifies delta
DECISION_PREC = 256
_MAX_DECISION_PREC = 8192


# ---------------------------------------------------------------------------------------------
# exact rational helpers
# ---------------------------------------------------------------------------------------------

def _exact(name: str, value) -> Fraction:
    """A real number as an exact Fraction (floats are dyadic, so this loses nothing)."""
    if isinstance(value, mpmath.ctx_mp_python.mpf):
        man, exp = mpmath.mpf(value).man_exp
        return Fraction(int(man)) * (Fraction(2) ** int(exp))
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    try:
        return Fraction(value)
    except (TypeError, ValueError):
        raise ParameterError(name, "must be a finite real number", value) from None


def _pow2_at_least(x: Fraction) -> int:
    """The smallest integer k with 2^k >= x, for x > 0 (exact)."""
    n, d = x.numerator, x.denominator
    k = n.bit_length() - d.bit_length()

    def ge(j: int) -> bool:  # 2^j >= n/d
        return (d << j) >= n if j >= 0 else d >= (n << -j)

    while not ge(k):
        k += 1
    while ge(k - 1):
        k -= 1
    return k


def _floor_div_pow2(x: Fraction, k: int) -> int:
    """floor(x / 2^k), exact."""
    return math.floor(x / (Fraction(2) ** k))


# ---------------------------------------------------------------------------------------------
# the lattice and the noise parameters (all public: functions of Delta, eps, delta, changed)
# ---------------------------------------------------------------------------------------------

def granularity_exponent(sensitivity, eps, changed: int = 1, *,
                         resolution_bits: int = NOISE_RESOLUTION_BITS) -> int:
    """k of the starting granularity g = 2^k: the smallest power of two >= b / 2^resolution_bits
    (Google's secure-noise choice, b = Delta / eps the Laplace scale of PAPER §2.1), made finer
    where needed so that rounding adds at most 2^-ROUNDING_RESOLUTION_BITS Delta of sensitivity:
    k <= the largest k with changed 2^k <= Delta 2^-ROUNDING_RESOLUTION_BITS. Exact.

    With 2^40 lattice points per unit of b the rounding moves a value by at most b / 2^41. The
    second condition only binds when changed / eps > 2^20 (tiny eps over many coordinates).
    :func:`lattice_parameters` may then coarsen g so that every lattice point stays exact.
    """
    sens = _exact("sensitivity", check_positive("sensitivity", sensitivity))
    e = _exact("eps", check_positive("eps", eps))
    changed = check_positive_int("changed", changed)
    resolution_bits = check_positive_int("resolution_bits", resolution_bits, minimum=0)
    return _initial_exponent(sens, e, changed, resolution_bits)


def _initial_exponent(sens: Fraction, eps: Fraction, changed: int, resolution_bits: int) -> int:
    k_noise = _pow2_at_least(sens / eps / (1 << resolution_bits))
    # largest k with changed 2^k <= sens 2^-ROUNDING_RESOLUTION_BITS
    k_rounding = _pow2_at_least(sens / (changed << ROUNDING_RESOLUTION_BITS))
    if Fraction(2) ** k_rounding * changed > sens / (1 << ROUNDING_RESOLUTION_BITS):
        k_rounding -= 1
    return min(k_noise, k_rounding)


def rounded_sensitivity_units(sensitivity, changed: int, exponent: int) -> int:
    """Delta_int = floor(Delta / 2^k) + changed: the l1 sensitivity after rounding, in lattice units.

    Rounding to nearest moves each coordinate by at most g/2, so a coordinate that one neighbour
    change moves by d_i moves by at most d_i + g after rounding; at most ``changed`` coordinates
    move, so the rounded l1 distance is <= Delta + g changed. It is an integer number of lattice
    units, hence <= floor(Delta/g + changed) = floor(Delta/g) + changed
    (proofs_notes/23-hardened-noise.md, Lemma 1).

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    sens = _exact("sensitivity", check_positive("sensitivity", sensitivity))
    changed = check_positive_int("changed", changed)
    return _floor_div_pow2(sens, int(exponent)) + changed


def lattice_scale_units(sensitivity_units: int, eps) -> int:
    """t = ceil(Delta_int / eps): the noise decays as exp(-|z| / t) per lattice unit.

    Then Delta_int / t <= eps, so at any lattice shift of at most Delta_int units the ratio of
    the two laws on the overlap of their supports is <= exp(Delta_int / t) <= e^eps. An integer
    scale keeps every Bernoulli in the sampler a ratio of integers (CKS20 with s = 1).

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    units = check_positive_int("sensitivity_units", sensitivity_units)
    e = _exact("eps", check_positive("eps", eps))
    return math.ceil(Fraction(units) / e)


def _check_law(t: int, K: int) -> tuple[int, int]:
    t = check_positive_int("t (noise scale in lattice units)", t)
    K = check_positive_int("K (support in lattice units)", K, minimum=0)
    return t, K


# ---------------------------------------------------------------------------------------------
# the law: P(Z = z) = q^|z| / N on |z| <= K, q = exp(-1/t)
# ---------------------------------------------------------------------------------------------

def _geometric_sum(ctx, t: int, a: int, b: int):
    """sum_{j=a}^{b} q^j, q = exp(-1/t), 0 <= a; 0 when b < a (closed form, no cancellation)."""
    if b < a:
        return ctx.mpf(0)
    tt = ctx.mpf(t)
    return ctx.exp(-a / tt) * ctx.expm1(-(b - a + 1) / tt) / ctx.expm1(-1 / tt)


def _range_mass(ctx, t: int, lo: int, hi: int):
    """sum_{k=lo}^{hi} q^|k| (unnormalised), 0 when hi < lo."""
    if hi < lo:
        return ctx.mpf(0)
    total = ctx.mpf(0)
    if lo <= -1:  # negative part: k in [lo, min(hi, -1)] <-> j = -k in [max(1, -hi), -lo]
        total += _geometric_sum(ctx, t, max(1, -hi), -lo)
    if lo <= 0 <= hi:
        total += 1
    if hi >= 1:
        total += _geometric_sum(ctx, t, max(1, lo), hi)
    return total


def _normaliser(ctx, t: int, K: int):
    return _range_mass(ctx, t, -K, K)


def normaliser(t: int, K: int, *, prec=None):
    """N = sum_{|z| <= K} exp(-|z|/t) = 1 + 2 q (1 - q^K) / (1 - q) (mpf at ``prec`` bits).

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    t, K = _check_law(t, K)
    return _normaliser(context(prec), t, K)


def pmf(z: int, t: int, K: int, *, prec=None):
    """P(Z = z) = exp(-|z|/t) / N for |z| <= K, else 0 (mpf).

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    t, K = _check_law(t, K)
    ctx = context(prec)
    z = int(z)
    if abs(z) > K:
        return ctx.mpf(0)
    return ctx.exp(-abs(z) / ctx.mpf(t)) / _normaliser(ctx, t, K)


def cdf(z: int, t: int, K: int, *, prec=None):
    """P(Z <= z) (mpf): 0 below -K, 1 from K on.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    t, K = _check_law(t, K)
    ctx = context(prec)
    z = int(z)
    if z < -K:
        return ctx.mpf(0)
    if z >= K:
        return ctx.mpf(1)
    return _range_mass(ctx, t, -K, z) / _normaliser(ctx, t, K)


def _eulerian(m: int) -> list[int]:
    """Eulerian numbers A(m, 0..m-1): sum_{k>=0} k^m x^k = x A_m(x) / (1 - x)^(m+1), m >= 1."""
    row = [1]
    for n in range(2, m + 1):
        row = [(j + 1) * (row[j] if j < len(row) else 0) + (n - j) * (row[j - 1] if j >= 1 else 0)
               for j in range(n)]
    return row


def even_moments(t: int, K: int, *, prec=None):
    """(N, E Z^2, E Z^4) of the law P(Z = z) = q^|z| / N on |z| <= K, q = exp(-1/t) (mpf);
    E Z = E Z^3 = 0 by symmetry.

    Closed forms: with S_i = sum_{j>=0} j^i q^j (S_0 = 1/(1-q), S_i = q A_i(q) / (1-q)^(i+1),
    A_i the Eulerian polynomials), G_m = sum_{k=0}^{K} k^m q^k = S_m - q^(K+1) sum_i C(m, i)
    (K+1)^(m-i) S_i, and N = 2 G_0 - 1, E Z^2 = 2 G_2 / N, E Z^4 = 2 G_4 / N. 1 - q is
    -expm1(-1/t), exact at ``prec`` bits; the one subtraction loses about log10(S_4 / G_4) digits
    (3 for K ~ 13.7 t). Tested against :func:`normaliser` and :func:`pmf` summed term by term.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    t, K = _check_law(t, K)
    ctx = context(prec)
    tt = ctx.mpf(t)
    q = ctx.exp(-1 / tt)
    omq = -ctx.expm1(-1 / tt)
    S = [1 / omq]
    for i in range(1, 5):
        S.append(q * ctx.fsum(c * q**j for j, c in enumerate(_eulerian(i))) / omq ** (i + 1))
    tail = ctx.exp(-(K + 1) / tt)
    k1 = ctx.mpf(K + 1)

    def finite(m: int):
        return S[m] - tail * ctx.fsum(math.comb(m, i) * k1 ** (m - i) * S[i] for i in range(m + 1))

    N = 2 * finite(0) - 1
    return N, 2 * finite(2) / N, 2 * finite(4) / N


def _tail(ctx, t: int, K: int, shift: int):
    """Mass of the outputs reachable from m + Z and not from m + shift + Z (shift >= 0)."""
    if shift == 0:
        return ctx.mpf(0)
    return _range_mass(ctx, t, -K, min(K, shift - K - 1)) / _normaliser(ctx, t, K)


def tail_delta(shift: int, t: int, K: int, *, prec=None):
    """The exact delta of a lattice shift: P[Z < shift - K] (mass of D's support not in D''s).

    For ``|shift| / t <= eps`` this is the exact hockey-stick divergence at eps of
    m + Z against m + shift + Z (the ratio is <= e^eps on the overlap); symmetric in the sign.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    t, K = _check_law(t, K)
    return _tail(context(prec), t, K, abs(int(shift)))


def _hockey_stick(ctx, t: int, K: int, s: int, eps_prime: Fraction):
    """sup_S P[Z in S] - e^eps' P[s + Z in S], s >= 0, exact closed form (see hockey_stick)."""
    if s == 0:
        return ctx.mpf(0)
    if s > 2 * K:
        return ctx.mpf(1)
    tt = ctx.mpf(t)
    ep = ctx.mpf(eps_prime.numerator) / eps_prime.denominator
    total = _range_mass(ctx, t, -K, min(K, s - K - 1))  # (i) outside D''s support
    if Fraction(s, t) > eps_prime:  # (ii) k in [s - K, 0]: ratio e^{s/t}
        lo, hi = max(-K, s - K), 0
        if lo <= hi:
            total += _range_mass(ctx, t, lo, hi) * (1 - ctx.exp(ep - s / tt))
    # (iii) 0 < k < s: P = q^k, P' = q^(s-k), positive iff k < (s - t eps') / 2
    kmax = math.ceil((s - t * eps_prime) / 2) - 1
    lo, hi = max(1, s - K), min(s - 1, K, kmax)
    if lo <= hi:
        pos = _geometric_sum(ctx, t, lo, hi)
        neg = ctx.exp(ep - (s - hi) / tt) * _geometric_sum(ctx, t, 0, hi - lo)  # sum q^(s-k)
        total += pos - neg
    # (iv) k >= s: ratio q^s <= 1 <= e^eps': no contribution
    return total / _normaliser(ctx, t, K)


def hockey_stick(shift: int, eps_prime, t: int, K: int, *, prec=None):
    """Exact hockey-stick divergence sup_S P[Z in S] - e^eps' P[shift + Z in S] (mpf).

    Closed form over four ranges of k (proofs_notes/23, Lemma 2): (i) k < shift - K, reachable
    only from Z: P(k); (ii) shift - K <= k <= 0: ratio e^{shift/t}, contributes
    P(k)(1 - e^{eps'} q^shift) when shift/t > eps'; (iii) 0 < k < shift: positive part of
    (q^k - e^{eps'} q^{shift-k}) / N; (iv) k >= shift: ratio <= 1, nothing. ``eps_prime >= 0``;
    symmetric in the sign of ``shift``.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    t, K = _check_law(t, K)
    e = _exact("eps_prime", eps_prime)
    if e < 0:
        raise ParameterError("eps_prime", "must be >= 0", eps_prime)
    return _hockey_stick(context(prec), t, K, abs(int(shift)), e)


def _as_fraction(x) -> Fraction:
    man, exp = x.man_exp
    return Fraction(int(man)) * (Fraction(2) ** int(exp))


def delta_enclosure(shift: int, t: int, K: int, *, prec: int = DECISION_PREC) -> tuple[Fraction, Fraction]:
    """A certified enclosure [lo, hi] of :func:`tail_delta` (interval arithmetic, exact Fractions).

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    t, K = _check_law(t, K)
    iv = interval_context(prec)
    value = _tail(iv, t, K, abs(int(shift)))
    lo, hi = value._mpi_
    ctx = context(prec)
    return _as_fraction(ctx.make_mpf(lo)), _as_fraction(ctx.make_mpf(hi))


def _tail_at_most(shift: int, t: int, K: int, delta: Fraction) -> bool:
    """Certified ``tail_delta(shift, t, K) <= delta``; raises the precision while undecided and
    answers False (conservative) if even the highest precision cannot decide."""
    prec = DECISION_PREC
    while True:
        lo, hi = delta_enclosure(shift, t, K, prec=prec)
        if hi <= delta:
            return True
        if lo > delta or prec >= _MAX_DECISION_PREC:
            return False
        prec *= 2


def support_units(shift: int, t: int, delta) -> int:
    """K: the smallest integer with certified ``tail_delta(shift, t, K) <= delta``.

    The tail is strictly decreasing in K and exceeds 1/2 >= delta for K < shift, so K >= shift.
    Start from the closed-form solution of q^(K+1) (q^-shift - 1 + 2 delta) = delta (1 + q),
    then gallop and bisect with certified comparisons.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    shift = check_positive_int("shift", shift)
    t = check_positive_int("t", t)
    d = _exact("delta", delta)
    check_privacy(1, d)
    ctx = context(DECISION_PREC)
    tt = ctx.mpf(t)
    q = ctx.exp(-1 / tt)
    dm = ctx.mpf(d.numerator) / d.denominator
    guess = ctx.ceil(tt * ctx.log((ctx.expm1(shift / tt) + 2 * dm) / (dm * (1 + q)))) - 1
    K = max(shift, int(guess))

    def ok(k: int) -> bool:
        return k >= shift and _tail_at_most(shift, t, k, d)

    if ok(K):
        hi, step = K, 1
        lo = K - step
        while lo >= shift and ok(lo):
            hi, step = lo, step * 2
            lo = hi - step
        lo = max(lo, shift - 1)  # not ok (or below the admissible range)
    else:
        lo, step = K, 1
        hi = K + step
        while not ok(hi):
            lo, step = hi, step * 2
            hi = lo + step
    while hi - lo > 1:  # invariant: not ok(lo) (or lo < shift), ok(hi)
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


# ---------------------------------------------------------------------------------------------
# all parameters of one release
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatticeParameters:
    """Every public constant of one hardened release (proofs_notes/23-hardened-noise.md).

    Exact fields: ``exponent`` k (g = 2^k), ``sensitivity_units`` Delta_int, ``scale_units`` t,
    ``support_units`` K, ``max_value_units`` (the largest |round(x/g)| accepted), and the
    Fractions ``eps_used = Delta_int / t <= eps`` and ``delta_upper`` (a certified upper bound on
    the exact delta achieved, <= the target delta). ``delta_achieved`` is ``delta_upper`` rounded
    up to a float64.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """

    sensitivity: Fraction
    eps: Fraction
    delta: Fraction
    changed: int
    value_bound: Fraction | None
    exponent: int
    sensitivity_units: int
    scale_units: int
    support_units: int
    max_value_units: int
    eps_used: Fraction
    delta_upper: Fraction
    delta_lower: Fraction

    @property
    def granularity(self) -> float:
        """g = 2^k as a float64 (exact)."""
        return math.ldexp(1.0, self.exponent)

    @property
    def delta_achieved(self) -> float:
        """The certified upper bound on the exact delta, rounded up to a float64."""
        return _float_up(self.delta_upper)

    def support_bound(self) -> float:
        """Sure bound per coordinate: |released - input| <= K g + g/2 = (2K + 1) 2^(k-1), exact."""
        return math.ldexp(float(2 * self.support_units + 1), self.exponent - 1)

    def to_dict(self) -> dict:
        return {
            "granularity": self.granularity,
            "granularity_exponent": self.exponent,
            "sensitivity": float(self.sensitivity),
            "eps": float(self.eps),
            "delta": float(self.delta),
            "changed": self.changed,
            "value_bound": None if self.value_bound is None else float(self.value_bound),
            "sensitivity_units": self.sensitivity_units,
            "scale_units": self.scale_units,
            "support_units": self.support_units,
            "max_value_units": self.max_value_units,
            "eps_used": float(self.eps_used),
            "eps_used_exact": str(self.eps_used),
            "delta_achieved": self.delta_achieved,
            "support_bound": self.support_bound(),
        }

    def __str__(self) -> str:
        return (f"lattice release: g = 2^{self.exponent}, Delta_int = {self.sensitivity_units}, "
                f"t = {self.scale_units}, K = {self.support_units}, eps used "
                f"{float(self.eps_used):.10g} <= {float(self.eps):.10g}, delta achieved "
                f"<= {self.delta_achieved:.6g} <= {float(self.delta):.6g}")


def _float_up(x: Fraction) -> float:
    f = float(x)
    if Fraction(f) < x:
        f = math.nextafter(f, math.inf)
    return f


@functools.lru_cache(maxsize=256)
def _parameters(sens: Fraction, eps: Fraction, delta: Fraction, changed: int,
                value_bound: Fraction | None, resolution_bits: int) -> LatticeParameters:
    k = _initial_exponent(sens, eps, changed, resolution_bits)
    while True:
        if k < EXPONENT_MIN or k > EXPONENT_MAX:
            raise ParameterError(
                "granularity exponent", f"must lie in [{EXPONENT_MIN}, {EXPONENT_MAX}] so that "
                "lattice points are exact float64 values", k,
                hint=f"from sensitivity = {float(sens):.6g}, eps = {float(eps):.6g}, changed = "
                     f"{changed}, delta = {float(delta):.6g}: no exact lattice fits (eps or delta "
                     "too small for this many changed coordinates, or value_bound too large)")
        units = _floor_div_pow2(sens, k) + changed
        t = math.ceil(Fraction(units) / eps)
        if t > RANGE_LIMIT:
            k += 1  # coarser: fewer lattice units per unit of sensitivity
            continue
        K = support_units(units, t, delta)
        if K + t >= 1 << WORD_BITS or K > MAX_EXACT_UNITS // 2:
            k += 1  # keep the noise within half of the exact float64 range
            continue
        if value_bound is None:
            max_units = MAX_EXACT_UNITS - K
            break
        max_units = math.floor(value_bound / (Fraction(2) ** k) + Fraction(1, 2))
        if max_units + K <= MAX_EXACT_UNITS:
            break
        k += 1  # coarser lattice until every reachable lattice point is an exact float64
    lo, hi = delta_enclosure(units, t, K)
    return LatticeParameters(
        sensitivity=sens, eps=eps, delta=delta, changed=changed, value_bound=value_bound,
        exponent=k, sensitivity_units=units, scale_units=t, support_units=K,
        max_value_units=max_units, eps_used=Fraction(units, t), delta_upper=hi, delta_lower=lo,
    )


def lattice_parameters(sensitivity, eps, delta, changed: int, *, value_bound=None,
                       resolution_bits: int = NOISE_RESOLUTION_BITS) -> LatticeParameters:
    """All public constants of a hardened release of a vector with l1 sensitivity ``sensitivity``.

    ``changed`` (>= 1) bounds how many coordinates one replace-one-row change can move;
    ``value_bound`` (optional, public) bounds |x| for every coordinate. The granularity starts at
    :func:`granularity_exponent` and is coarsened (one doubling at a time, so the result is the
    finest that fits) until t <= 2^62, K <= 2^52 and, when ``value_bound`` is given,
    ``round(value_bound / g) + K <= 2^53`` (every reachable lattice point is an exact float64).
    Without ``value_bound`` the release accepts |round(x/g)| <= 2^53 - K and raises beyond.
    Cached: a pure function of its (exact) arguments.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    check_privacy(eps, delta)
    sens = _exact("sensitivity", check_positive("sensitivity", sensitivity))
    e = _exact("eps", eps)
    d = _exact("delta", delta)
    changed = check_positive_int("changed", changed)
    vb = None if value_bound is None else _exact("value_bound", check_positive("value_bound", value_bound))
    resolution_bits = check_positive_int("resolution_bits", resolution_bits, minimum=0)
    return _parameters(sens, e, d, changed, vb, resolution_bits)


# ---------------------------------------------------------------------------------------------
# rounding (exact, Fractions)
# ---------------------------------------------------------------------------------------------

def round_to_lattice_units(x, exponent: int) -> int:
    """round(x / 2^k) to the nearest integer, ties to even, exactly (x: a finite real number).

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    v = _exact("x", x)
    return round(v / (Fraction(2) ** int(exponent)))  # Fraction.__round__: half to even


# ---------------------------------------------------------------------------------------------
# the exact sampler (word-consumption rule in the module docstring)
# ---------------------------------------------------------------------------------------------

_WORD_MASK = (1 << WORD_BITS) - 1


def _next_word(words: Iterator[int]) -> int:
    try:
        w = int(next(words))
    except StopIteration:
        raise UniformsError("tape", "has too few random words for this draw",
                            hint="give a longer tape (more columns)") from None
    if not 0 <= w <= _WORD_MASK:
        raise UniformsError("random words", f"must be integers in [0, 2^{WORD_BITS})", w)
    return w


def uniform_below(n: int, words: Iterator[int]) -> int:
    """A uniform integer in {0, ..., n-1}: ``w mod n`` of the first word ``w < 2^64 - (2^64 mod n)``.

    The accepted words are uniform on a range whose length is a multiple of n, so ``w mod n``
    is exactly uniform; a word is rejected with probability < n / 2^64 <= 1/4. ``n = 1``
    consumes no word.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    if n == 1:
        return 0
    if not 1 <= n <= RANGE_LIMIT:
        raise ParameterError("n", "must satisfy 1 <= n <= 2^62", n)
    limit = (1 << WORD_BITS) - ((1 << WORD_BITS) % n)
    while True:
        w = _next_word(words)
        if w < limit:
            return w % n


def _bernoulli_step(num: int, den: int, k: int, words: Iterator[int], range_limit: int) -> bool:
    """Bernoulli(num / (den k)) with 0 <= num <= den (num = 0: false, no word)."""
    if num == 0:
        return False
    if den * k <= range_limit:
        return uniform_below(den * k, words) < num
    return uniform_below(den, words) < num and uniform_below(k, words) == 0


def bernoulli_exp(num: int, den: int, words: Iterator[int], *, range_limit: int = RANGE_LIMIT) -> bool:
    """Bernoulli(exp(-num/den)) for integers 0 <= num <= den (CKS20 Algorithm 1).

    Steps k = 1, 2, ... draw Bernoulli(gamma / k), gamma = num/den, until one is false; the
    result is true iff that k is odd: P = sum_k odd (gamma^(k-1)/(k-1)! - gamma^k/k!) = e^-gamma.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    k = 1
    while _bernoulli_step(num, den, k, words, range_limit):
        k += 1
    return k % 2 == 1


def block_exponent(t: int, K: int) -> int:
    """m of the block 2^m splitting X = A 2^m + B: the largest m with 2^m <= t (so B/t < 1) and
    K / 2^m < 2^10 (at most about a thousand thresholds for A), and m >= 0.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    t, K = _check_law(t, K)
    return max(0, min(t.bit_length() - 1, K.bit_length() - 10))


@functools.lru_cache(maxsize=1 << 16)
def rate_digit(num: int, den: int, j: int) -> int:
    """The j-th 64-bit digit (j >= 1) of exp(-num/den) in base 2^64: floor(e^(-num/den) 2^(64 j))
    mod 2^64, for integers num, den >= 1.

    Certified: interval arithmetic at increasing precision until both ends have the same floor
    (e^(-num/den) 2^(64 j) is irrational, so this terminates).

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    num = check_positive_int("num", num)
    den = check_positive_int("den", den)
    j = check_positive_int("j", j)
    prec = 64 * j + num.bit_length() + den.bit_length() + 96
    while True:
        iv = interval_context(prec)
        value = iv.exp(-iv.mpf(num) / iv.mpf(den)) * iv.mpf(2) ** (64 * j)
        ctx = context(prec)
        lo, hi = (int(ctx.floor(ctx.make_mpf(end))) for end in value._mpi_)
        if lo == hi:
            return lo & _WORD_MASK
        prec *= 2


def threshold_first_digits(step: int, t: int, a_stop: int) -> list[int]:
    """First base-2^64 digits floor(e^(-a step/t) 2^64) for a = 1, 2, ..., a_stop, up to the
    first zero digit (excluded: the thresholds decrease, so every later digit is 0 too).

    Certified like :func:`rate_digit` (equal to it entry by entry) but fast: the thresholds are
    successive interval products of e^(-step/t) at 192 bits; an entry whose enclosure straddles
    an integer is recomputed by :func:`rate_digit`.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    step = check_positive_int("step", step)
    t = check_positive_int("t", t)
    a_stop = check_positive_int("a_stop", a_stop, minimum=0)
    prec = 192
    iv, ctx = interval_context(prec), context(prec)
    ratio = iv.exp(-iv.mpf(step) / iv.mpf(t))
    scale = iv.mpf(2) ** WORD_BITS
    value = iv.mpf(1)
    out: list[int] = []
    for a in range(1, a_stop + 1):
        value = value * ratio
        lo, hi = (int(ctx.floor(ctx.make_mpf(end))) for end in (value * scale)._mpi_)
        digit = lo if lo == hi else rate_digit(a * step, t, 1)
        if digit == 0:
            break
        out.append(digit)
    return out


def threshold_count(a_stop: int, step: int, t: int, words: Iterator[int]) -> int:
    """min(A, a_stop) for P(A >= a) = exp(-a step / t), by inversion: A >= a iff W < that
    threshold, for one uniform real W whose 64-bit digits are drawn only when needed.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    digits: list[int] = []

    def below(a: int) -> bool:
        j = 0
        while True:
            if j == len(digits):
                digits.append(_next_word(words))
            c = rate_digit(a * step, t, j + 1)
            if digits[j] != c:
                return digits[j] < c
            j += 1

    a = 0
    while a < a_stop and below(a + 1):
        a += 1
    return a


def bernoulli_ratio_from_prefix(num: int, den: int, prefix: int, bits: int, words: Iterator[int]) -> bool:
    """Bernoulli(num/den), 0 <= num < den, for the uniform real V = (prefix + 0.v_1 v_2 ...) / 2^bits.

    ``prefix`` holds V's first ``bits`` bits; further 64-bit digits of V are drawn only while
    they agree with those of num/den (then V < num/den is decided at the first difference).
    num = 0 is false without a word. Requires num 2^bits < 2^64.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    if num == 0:
        return False
    c, rem = divmod(num << bits, den)
    if prefix != c:
        return prefix < c
    while True:
        d, rem = divmod(rem << WORD_BITS, den)
        w = _next_word(words)
        if w != d:
            return w < d


def _block_accepted(b: int, t: int, prefix: int, bits: int, words: Iterator[int], range_limit: int) -> bool:
    """Bernoulli(exp(-b/t)) (CKS20 Algorithm 1) with its step k = 1 read from ``prefix``."""
    if not bernoulli_ratio_from_prefix(b, t, prefix, bits, words):
        return True  # stopped at k = 1 (odd)
    k = 2
    while _bernoulli_step(b, t, k, words, range_limit):
        k += 1
    return k % 2 == 1


def sample_from_words(t: int, K: int, words: Iterable[int], *, range_limit: int = RANGE_LIMIT) -> int:
    """One draw of the discrete truncated Laplace (scale t, support K) from 64-bit words.

    Exact: X = A 2^m + B with P(A >= a) = e^(-a 2^m/t) and P(B = b) prop. e^(-b/t) on [0, 2^m),
    independent, so P(X = x) prop. e^(-x/t) for every x >= 0; restarting when A reaches a_stop or
    X > K conditions on X <= K; a fair sign with (-, 0) rejected gives P(z) prop. e^(-|z|/t).

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    t, K = _check_law(t, K)
    if t > range_limit:
        raise ParameterError("t", "must be <= the range limit (2^62)", t)
    it = iter(words)
    m = block_exponent(t, K)
    step, spare = 1 << m, WORD_BITS - 1 - m
    a_stop = K // step + 1
    while True:
        a = threshold_count(a_stop, step, t, it)
        if a == a_stop:
            continue
        while True:
            w = _next_word(it)
            b, prefix, negative = w & (step - 1), (w >> m) & ((1 << spare) - 1), w >> (WORD_BITS - 1)
            if _block_accepted(b, t, prefix, spare, it, range_limit):
                break
        x = a * step + b
        if x > K or (negative and x == 0):
            continue
        return -x if negative else x


def _check_tape(tape) -> np.ndarray:
    arr = np.asarray(tape)
    if arr.ndim != 2:
        raise ShapeError("tape", "must be a 2-D array (draws x words)", f"shape {arr.shape}")
    if arr.dtype != np.uint64:
        raise UniformsError("tape", "must have dtype uint64 (64-bit random words)", str(arr.dtype))
    return arr


def sample_from_tape(tape, t: int, K: int, *, range_limit: int = RANGE_LIMIT) -> list[int]:
    """One draw per row of a (n, T) uint64 tape: row i's words, in order, feed draw i.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    arr = _check_tape(tape)
    return [sample_from_words(t, K, iter(row.tolist()), range_limit=range_limit) for row in arr]


def release_from_tape(values, tape, *, sensitivity, eps, delta, changed: int, value_bound=None) -> list[Fraction]:
    """The exact hardened release of a 1-D sequence of finite reals from a (n, T) uint64 tape.

    Returns ``(round(x_i / g) + Z_i) g`` as exact Fractions (the reference the fast
    ``secure_release(..., tape=tape)`` must reproduce bit for bit). Raises
    :class:`BoundError` for NaN/inf, for |x| > value_bound, or for a lattice integer beyond the
    exact float64 range.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    params = lattice_parameters(sensitivity, eps, delta, changed, value_bound=value_bound)
    return lattice_release_from_tape(
        params, values, tape,
        lambda words: sample_from_words(params.scale_units, params.support_units, words))


def lattice_release_from_tape(params, values, tape, draw) -> list[Fraction]:
    """``(round(x_i / g) + draw(words of row i)) g`` as exact Fractions, g = 2^params.exponent:
    the lattice release shared by every hardened law (``draw`` maps an iterator of row i's
    64-bit words to one integer noise draw). ``params`` needs ``exponent``, ``value_bound`` and
    ``max_value_units``. Raises :class:`BoundError` for NaN/inf, |x| > value_bound or
    |round(x/g)| > max_value_units, and :class:`ShapeError` for a tape of the wrong length.

    Paper: none (hardened noise is ours, after Mironov 2012); spec PAPER.md §2.1, §5 item 18; proofs_notes/23-hardened-noise.md.
    """
    xs = [_exact_value(v, i) for i, v in enumerate(values)]
    arr = _check_tape(tape)
    if arr.shape[0] != len(xs):
        raise ShapeError("tape", f"must have one row per value ({len(xs)})", f"{arr.shape[0]} rows")
    g = Fraction(2) ** params.exponent
    out = []
    for i, x in enumerate(xs):
        if params.value_bound is not None and abs(x) > params.value_bound:
            raise BoundError("values", f"must satisfy |x| <= value_bound = {float(params.value_bound)!r}",
                             hint=f"index {i}")
        m = round(x / g)
        if abs(m) > params.max_value_units:
            raise BoundError("values", "must round to at most max_value_units lattice units "
                             f"({params.max_value_units} at g = 2^{params.exponent})", hint=f"index {i}")
        out.append((m + draw(iter(arr[i].tolist()))) * g)
    return out


def _exact_value(v, i: int) -> Fraction:
    if isinstance(v, float) and not math.isfinite(v):
        raise BoundError("values entries", "must be finite", hint=f"index {i} is {v}")
    if isinstance(v, np.floating) and not np.isfinite(v):
        raise BoundError("values entries", "must be finite", hint=f"index {i} is {v}")
    return _exact(f"values[{i}]", v)
