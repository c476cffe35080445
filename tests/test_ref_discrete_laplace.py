"""Exact law of the discrete truncated Laplace and its lattice parameters (note 23).

dpxattn.reference.discrete_laplace; proofs_notes/23-hardened-noise.md (Lemmas 1-3).
Exact checks compare the closed forms with brute-force sums at high precision; the only
statistical tests (the reference sampler's law) state alpha and are shown to have power.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from dpxattn.errors import ParameterError, UniformsError
from dpxattn.reference import discrete_laplace as dl
from dpxattn.reference._mp import context

PREC = 200
CTX = context(PREC)
TOL = mpmath.mpf(2) ** -150


def brute_pmf(t: int, K: int) -> dict[int, mpmath.mpf]:
    w = {k: CTX.exp(-abs(k) / CTX.mpf(t)) for k in range(-K, K + 1)}
    total = sum(w.values())
    return {k: v / total for k, v in w.items()}


def brute_hockey_stick(shift: int, eps_prime: Fraction, t: int, K: int):
    p = brute_pmf(t, K)
    e = CTX.exp(CTX.mpf(eps_prime.numerator) / eps_prime.denominator)
    out = CTX.mpf(0)
    for k in range(-K - abs(shift), K + abs(shift) + 1):
        out += max(CTX.mpf(0), p.get(k, 0) - e * p.get(k - shift, 0))
    return out


# --------------------------------------------------------------------------------- the law

@pytest.mark.parametrize("t,K", [(1, 0), (1, 5), (3, 2), (7, 30), (50, 400)])
def test_pmf_sums_to_one_and_matches_brute_force(t, K):
    ref = brute_pmf(t, K)
    total = sum(dl.pmf(k, t, K, prec=PREC) for k in range(-K - 2, K + 3))
    assert abs(total - 1) < TOL
    for k in range(-K - 2, K + 3):
        assert abs(dl.pmf(k, t, K, prec=PREC) - ref.get(k, 0)) < TOL
    assert abs(dl.normaliser(t, K, prec=PREC) - sum(CTX.exp(-abs(k) / CTX.mpf(t)) for k in range(-K, K + 1))) < TOL


@pytest.mark.parametrize("t,K", [(1, 3), (4, 9), (9, 20)])
def test_cdf_is_the_running_sum_of_the_pmf(t, K):
    running = CTX.mpf(0)
    for k in range(-K - 3, K + 3):
        running += dl.pmf(k, t, K, prec=PREC)
        assert abs(dl.cdf(k, t, K, prec=PREC) - running) < TOL
    assert dl.cdf(K, t, K) == 1 and dl.cdf(-K - 1, t, K) == 0


@given(t=st.integers(1, 12), K=st.integers(0, 25), shift=st.integers(-60, 60),
       eps_num=st.integers(0, 40))
def test_hockey_stick_closed_form_equals_brute_force(t, K, shift, eps_num):
    eps_prime = Fraction(eps_num, 10)
    exact = dl.hockey_stick(shift, eps_prime, t, K, prec=PREC)
    assert abs(exact - brute_hockey_stick(shift, eps_prime, t, K)) < TOL


@given(t=st.integers(1, 12), K=st.integers(0, 25), shift=st.integers(0, 60))
def test_tail_delta_is_the_unreachable_mass(t, K, shift):
    p = brute_pmf(t, K)
    unreachable = sum((v for k, v in p.items() if not -K <= k - shift <= K), CTX.mpf(0))
    assert abs(dl.tail_delta(shift, t, K, prec=PREC) - unreachable) < TOL
    assert abs(dl.tail_delta(-shift, t, K, prec=PREC) - unreachable) < TOL
    # at eps = shift / t the hockey-stick divergence is exactly that mass (ratio <= e^eps inside)
    if shift:
        assert abs(dl.hockey_stick(shift, Fraction(shift, t), t, K, prec=PREC) - unreachable) < TOL


@given(t=st.integers(1, 12), K=st.integers(1, 25), shift=st.integers(1, 24))
def test_delta_enclosure_contains_the_exact_tail(t, K, shift):
    lo, hi = dl.delta_enclosure(shift, t, K)
    value = dl.tail_delta(shift, t, K, prec=PREC)
    assert lo <= hi
    assert CTX.mpf(lo.numerator) / lo.denominator <= value + TOL
    assert value - TOL <= CTX.mpf(hi.numerator) / hi.denominator
    assert hi - lo < Fraction(1, 2**200)


# ------------------------------------------------------------------ the support K and delta

@given(t=st.integers(1, 10**6), shift_frac=st.fractions(Fraction(1, 100), 3),
       delta_exp=st.integers(1, 14), delta_mant=st.integers(1, 9))
def test_support_units_is_minimal_and_meets_delta(t, shift_frac, delta_exp, delta_mant):
    shift = max(1, math.floor(shift_frac * t))
    delta = Fraction(delta_mant, 10**delta_exp) / 2  # <= 0.45
    K = dl.support_units(shift, t, delta)
    assert K >= shift
    lo, hi = dl.delta_enclosure(shift, t, K)
    assert hi <= delta
    if K > shift:
        lo_prev, _ = dl.delta_enclosure(shift, t, K - 1)
        assert lo_prev > delta


def _fits(sens, eps, delta, changed, k, value_bound=None) -> bool:
    """The representability conditions of lattice_parameters, restated for exponent k."""
    units = math.floor(Fraction(sens) / Fraction(2) ** k) + changed
    t = math.ceil(units / Fraction(eps))
    if t > dl.RANGE_LIMIT:
        return False
    K = dl.support_units(units, t, Fraction(delta))
    if K > dl.MAX_EXACT_UNITS // 2 or K + t >= 2**64:
        return False
    if value_bound is None:
        return True
    return math.floor(Fraction(value_bound) / Fraction(2) ** k + Fraction(1, 2)) + K <= dl.MAX_EXACT_UNITS


@pytest.mark.parametrize("sens,eps,delta,changed", [
    (1.0, 1.0, 1e-6, 1), (2.5, 0.3, 1e-3, 7), (0.01, 4.0, 1e-9, 100), (17.0, 0.05, 1e-12, 1),
    (Fraction(1, 3), Fraction(1, 7), Fraction(1, 10**5), 3), (2.0, 1.0, 1e-6, 1485),
])
def test_lattice_parameters_are_consistent(sens, eps, delta, changed):
    p = dl.lattice_parameters(sens, eps, delta, changed)
    S, E, D = Fraction(sens), Fraction(eps), Fraction(delta)
    g = Fraction(2) ** p.exponent
    b = S / E
    # the starting exponent: Google's b / 2^40, refined so that changed g <= Delta 2^-20
    k0 = dl.granularity_exponent(sens, eps, changed)
    g0 = Fraction(2) ** k0
    assert (g0 >= b / 2**40 > g0 / 2) or (changed * g0 <= S / 2**20 < changed * 2 * g0)
    assert g0 >= b / 2**40 or changed * g0 <= S / 2**20
    assert p.exponent == k0 and _fits(sens, eps, delta, changed, k0)  # typical: no coarsening
    assert p.sensitivity_units == math.floor(S / g) + changed == dl.rounded_sensitivity_units(sens, changed, p.exponent)
    assert p.scale_units == math.ceil(p.sensitivity_units / E) == dl.lattice_scale_units(p.sensitivity_units, eps)
    assert p.eps_used == Fraction(p.sensitivity_units, p.scale_units) <= E
    assert p.support_units == dl.support_units(p.sensitivity_units, p.scale_units, D)
    assert p.delta_lower <= p.delta_upper <= D
    assert p.delta_achieved <= float(D) and Fraction(p.delta_achieved) >= p.delta_upper
    assert p.max_value_units + p.support_units == dl.MAX_EXACT_UNITS
    assert p.support_bound() == float((p.support_units + Fraction(1, 2)) * g)
    # the discrete support is close to the continuous one, A = b ln(1 + (e^eps - 1)/(2 delta))
    A = float(b) * math.log1p(math.expm1(float(E)) / (2 * float(D)))
    assert abs(p.support_units * float(g) - A) <= 1e-6 * A
    assert str(p).startswith("lattice release") and p.to_dict()["support_units"] == p.support_units


def test_tiny_eps_over_many_coordinates_coarsens_to_the_finest_exact_lattice():
    """eps = 1e-9 over a million coordinates: Google's b/2^40 would make the rounding 977 Delta;
    the refined start keeps it small, then g is coarsened just enough to fit t <= 2^62."""
    args = (1.0, 1e-9, 1e-6, 10**6)
    p = dl.lattice_parameters(*args)
    k0 = dl.granularity_exponent(1.0, 1e-9, 10**6)
    assert p.exponent > k0
    assert _fits(*args, p.exponent) and not _fits(*args, p.exponent - 1)
    assert p.changed * p.granularity <= 1e-3 * 1.0  # rounding adds < 0.1% of Delta
    assert p.delta_upper <= Fraction(1e-6) and p.eps_used <= Fraction(1e-9)


def test_value_bound_coarsens_the_lattice_until_every_point_is_exact():
    fine = dl.lattice_parameters(3.0, 0.001, 1e-12, 10)
    coarse = dl.lattice_parameters(3.0, 0.001, 1e-12, 10, value_bound=1e9)
    assert coarse.exponent > fine.exponent
    assert coarse.max_value_units == math.floor(Fraction(10**9) / Fraction(2) ** coarse.exponent + Fraction(1, 2))
    assert coarse.max_value_units + coarse.support_units <= dl.MAX_EXACT_UNITS
    one_finer = Fraction(10**9) / Fraction(2) ** (coarse.exponent - 1)
    assert math.floor(one_finer + Fraction(1, 2)) + dl.support_units(
        math.floor(Fraction(3) / Fraction(2) ** (coarse.exponent - 1)) + 10,
        math.ceil((math.floor(Fraction(3) / Fraction(2) ** (coarse.exponent - 1)) + 10) / Fraction(0.001)),
        Fraction(1e-12)) > dl.MAX_EXACT_UNITS  # minimal coarsening


@given(data=st.data(), exponent=st.integers(-60, 10), changed=st.integers(1, 6))
def test_rounding_adds_at_most_one_granule_per_changed_coordinate(data, exponent, changed):
    """Lemma 1: ||round(x) - round(x')||_1 <= floor(Delta / g) + changed (in lattice units)."""
    g = Fraction(2) ** exponent
    n = changed + 2
    base = data.draw(st.lists(st.fractions(-1000, 1000, max_denominator=2**20), min_size=n, max_size=n))
    moves = data.draw(st.lists(st.fractions(-50, 50, max_denominator=2**20), min_size=changed, max_size=changed))
    other = list(base)
    for i, m in enumerate(moves):
        other[i] = base[i] + m * g  # move `changed` coordinates by arbitrary amounts
    delta = sum((abs(a - b) for a, b in zip(base, other)), Fraction(0))
    if delta == 0:
        return
    units = sum(abs(dl.round_to_lattice_units(a, exponent) - dl.round_to_lattice_units(b, exponent))
                for a, b in zip(base, other))
    assert units <= dl.rounded_sensitivity_units(delta, changed, exponent)


def test_rounding_is_half_to_even():
    assert [dl.round_to_lattice_units(v, 0) for v in (0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001)] == [0, 2, 2, 0, -2, 2, 3]
    assert dl.round_to_lattice_units(3 * 2.0**-41, -40) == 2  # 1.5 granules -> 2
    assert dl.round_to_lattice_units(5e-324, -40) == 0


# -------------------------------------------------------------------- threshold digits

@pytest.mark.parametrize("num,den", [(1, 1), (2, 1), (7, 1), (44, 1), (45, 1), (100, 1),
                                     (3, 64), (2**34, 2**40 + 1), (1000, 7)])
def test_rate_digits_are_the_base_2_64_expansion(num, den):
    big = context(1200)
    scaled = big.exp(-big.mpf(num) / den) * big.mpf(2) ** (64 * 3)
    expansion = int(big.floor(scaled))
    digits = [(expansion >> (64 * (3 - j))) & (2**64 - 1) for j in (1, 2, 3)]
    assert [dl.rate_digit(num, den, j) for j in (1, 2, 3)] == digits


@pytest.mark.parametrize("t,K", [(2**40 + 1, 15023385369202), (64, 5000), (1, 200), (3, 10**6)])
def test_threshold_first_digits_equal_the_certified_digits(t, K):
    step = 1 << dl.block_exponent(t, K)
    a_stop = K // step + 1
    digits = dl.threshold_first_digits(step, t, a_stop)
    assert digits == [dl.rate_digit(a * step, t, 1) for a in range(1, len(digits) + 1)]
    assert len(digits) == a_stop or dl.rate_digit((len(digits) + 1) * step, t, 1) == 0


def test_threshold_count_resolves_ties_with_further_digits():
    # t = 1, step = 1: thresholds e^-a. First word equal to e^-1's first digit: the second decides
    below = [dl.rate_digit(1, 1, 1), dl.rate_digit(1, 1, 2) - 1]
    above = [dl.rate_digit(1, 1, 1), dl.rate_digit(1, 1, 2) + 1]
    it = iter(below + [12345])
    # W just below e^-1 but above e^-2: A = 1, exactly two words used
    assert dl.threshold_count(5, 1, 1, it) == 1 and next(it) == 12345
    assert dl.threshold_count(5, 1, 1, iter(above)) == 0
    assert dl.threshold_count(0, 1, 1, iter([])) == 0  # nothing to decide, no word
    assert dl.threshold_count(3, 1, 1, iter([0])) == 3  # W < e^-3 with one word: capped
    # step 8, t = 64: thresholds e^(-a/8)
    w = dl.rate_digit(16, 64, 1) + 1  # just above e^-2/8: A = 1
    assert dl.threshold_count(100, 8, 64, iter([w])) == 1


def test_bernoulli_ratio_from_prefix_reads_further_digits_only_on_the_boundary():
    num, den, bits = 5, 64 * 3, 20
    c, rem = divmod(num << bits, den)
    assert dl.bernoulli_ratio_from_prefix(num, den, c - 1, bits, iter([])) is True
    assert dl.bernoulli_ratio_from_prefix(num, den, c + 1, bits, iter([])) is False
    d = (rem << 64) // den  # next digit of num/den after the prefix
    assert dl.bernoulli_ratio_from_prefix(num, den, c, bits, iter([d - 1])) is True
    assert dl.bernoulli_ratio_from_prefix(num, den, c, bits, iter([d + 1])) is False
    assert dl.bernoulli_ratio_from_prefix(0, den, 0, bits, iter([])) is False


def test_block_exponent():
    assert dl.block_exponent(1, 10**6) == 0
    assert dl.block_exponent(64, 5000) == 3
    assert dl.block_exponent(2**40 + 1, 15023385369202) == 34
    assert dl.block_exponent(2**40, 100) == 0


# ---------------------------------------------------------------- sampler: errors and laws

def test_sampler_rejects_bad_words_and_short_tapes():
    with pytest.raises(UniformsError, match="too few random words"):
        dl.sample_from_words(5, 30, iter([1, 2]))
    with pytest.raises(UniformsError, match="random words"):
        dl.sample_from_words(5, 30, iter([2**64]))
    with pytest.raises(UniformsError, match="uint64"):
        dl.sample_from_tape(np.zeros((2, 3), dtype=np.int64), 5, 30)
    with pytest.raises(ParameterError, match="delta"):
        dl.lattice_parameters(1.0, 1.0, 0.6, 1)
    with pytest.raises(ParameterError, match="changed"):
        dl.lattice_parameters(1.0, 1.0, 1e-6, 0)
    with pytest.raises(ParameterError, match="eps_prime"):
        dl.hockey_stick(1, -0.5, 3, 5)


def test_uniform_below_uses_modulo_with_rejection_of_the_top_block():
    n = 3
    limit = 2**64 - (2**64 % n)  # words >= limit are rejected (here only 2^64 - 1)
    assert limit == 2**64 - 1
    assert dl.uniform_below(n, iter([limit, 7])) == 7 % 3
    assert dl.uniform_below(n, iter([limit - 1])) == (limit - 1) % 3
    assert dl.uniform_below(1, iter([])) == 0
    assert dl.uniform_below(2**40, iter([2**64 - 1])) == 2**40 - 1  # power of two: never rejects


ALPHA = 1e-6  # false-alarm rate of each statistical assertion below


def _chi_square_pvalue(draws, t, K):
    probs = np.array([float(dl.pmf(k, t, K)) for k in range(-K, K + 1)])
    counts = np.bincount(np.asarray(draws) + K, minlength=2 * K + 1)
    return stats.chisquare(counts, probs * len(draws)).pvalue


@pytest.mark.statistical
def test_reference_sampler_law_chi_square_with_power(rng):
    """The scalar reference sampler follows the exact pmf (chi-square, alpha = 1e-6); the same
    test rejects the sampler run at scale x0.7 and x1.3 (power)."""
    t, K, n = 4, 12, 20_000
    tape = rng.integers(0, 2**64 - 1, size=(n, 48), dtype=np.uint64, endpoint=True)
    draws = dl.sample_from_tape(tape, t, K)
    assert max(abs(z) for z in draws) <= K
    assert _chi_square_pvalue(draws, t, K) > ALPHA
    for wrong_t in (3, 5):  # 0.7 t ~ 3 (x0.75), 1.3 t ~ 5 (x1.25): mutants of the scale
        mutant = dl.sample_from_tape(tape, wrong_t, K)
        assert _chi_square_pvalue(mutant, t, K) < ALPHA


@pytest.mark.statistical
@pytest.mark.parametrize("num,den", [(0, 1), (1, 8), (1, 2), (3, 4), (1, 1)])
def test_bernoulli_exp_rate_with_power(rng, num, den):
    """Bernoulli(exp(-num/den)): two-sided binomial test at alpha = 1e-6 (n = 20000); the same
    test rejects the rate of exp(-(num/den + 0.15)) (power: the mutant parameter)."""
    n = 20_000
    words = iter(rng.integers(0, 2**64 - 1, size=n * 12, dtype=np.uint64, endpoint=True).tolist())
    hits = sum(dl.bernoulli_exp(num, den, words) for _ in range(n))
    p = math.exp(-num / den)
    assert stats.binomtest(hits, n, p).pvalue > ALPHA
    assert stats.binomtest(hits, n, math.exp(-(num / den + 0.15))).pvalue < ALPHA


#: precision of the moment checks (bits)
PREC = 256


@pytest.mark.parametrize("t,K", [(1, 0), (1, 3), (2, 1), (3, 12), (7, 100), (40, 25), (5, 400)])
def test_even_moments_equal_the_pmf_summed_term_by_term(t, K):
    ctx = context(PREC)
    N, m2, m4 = dl.even_moments(t, K, prec=PREC)
    pm = [dl.pmf(z, t, K, prec=PREC) for z in range(K + 1)]
    assert abs(N - dl.normaliser(t, K, prec=PREC)) <= 1e-60 * N
    assert abs(m2 - 2 * ctx.fsum(z**2 * pm[z] for z in range(1, K + 1))) <= 1e-60 * (1 + m2)
    assert abs(m4 - 2 * ctx.fsum(z**4 * pm[z] for z in range(1, K + 1))) <= 1e-60 * (1 + m4)


def test_even_moments_at_huge_scale_match_the_laplace_limit():
    """t ~ 1.1e12, K ~ 13.7 t: E Z^2 / t^2 and E Z^4 / t^4 equal the moments of the continuous
    Laplace truncated at a = K/t (2! G(3, a) / G(1, a) and 4! G(5, a) / G(1, a), G the
    regularised lower incomplete gamma) up to O(1/t): an independent check where the pmf cannot
    be summed term by term."""
    t, K = 1_099_511_627_777, 15_023_385_369_202
    _, m2, m4 = dl.even_moments(t, K, prec=PREC)
    a = K / t
    mass = -math.expm1(-a)
    cont2 = 2 * stats.gamma.cdf(a, 3) / mass  # int_0^a x^2 e^-x dx / int_0^a e^-x dx
    cont4 = 24 * stats.gamma.cdf(a, 5) / mass
    assert float(m2) / t**2 == pytest.approx(cont2, rel=1e-9)
    assert float(m4) / t**4 == pytest.approx(cont4, rel=1e-9)
