"""The exact discrete Gaussian N_Z(0, sigma^2), its exact sampler and its lattice release (note 25).

dpxattn.reference.discrete_gaussian; proofs_notes/25-discrete-gaussian.md. Exact checks compare
certified enclosures with independent sums (the direct series against its Poisson dual, the
closed-form moments against the pmf summed term by term, the certified delta against a
brute-force hockey-stick divergence); the statistical tests (the sampler's law) state alpha and
are shown to have power against the scale x0.7 and x1.3 mutants.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from dpxattn.errors import BoundError, ParameterError, UniformsError
from dpxattn.reference import discrete_gaussian as dg
from dpxattn.reference import discrete_laplace as dl
from dpxattn.reference._mp import context, interval_context

ALPHA = 1e-6  # false-alarm rate of each statistical assertion (DESIGN §6)
N_DRAWS = 120_000  # DESIGN §6: >= 1.2e5 draws per sampler configuration
PREC = 256
CTX = context(PREC)
TINY = Fraction(1, 2**200)


def tape(rng, rows: int, cols: int = 160) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=(rows, cols), dtype=np.uint64, endpoint=True)


def word_stream(rng, chunk: int = 1 << 16):
    """An endless iterator of uniform 64-bit words (no tape to run out of)."""
    while True:
        yield from rng.integers(0, 2**64 - 1, size=chunk, dtype=np.uint64, endpoint=True).tolist()


def f(x: Fraction) -> float:
    return float(x)


def direct_weights(s2: Fraction, M: int):
    """Interval enclosures of exp(-y^2 / (2 s2)) for |y| <= M, computed here, independently."""
    iv = interval_context(PREC)
    return {y: iv.exp(-iv.mpf(y * y * s2.denominator) / iv.mpf(2 * s2.numerator)) for y in range(-M, M + 1)}


def ends(x):
    return dg._ends(x)


# --------------------------------------------------------------------------------- the law

SIGMAS2 = [Fraction(1, 3), Fraction(1, 2), Fraction(2), Fraction(7, 3), Fraction(12), Fraction(81, 2),
           Fraction(1560)]


@pytest.mark.parametrize("s2", SIGMAS2)
def test_direct_series_and_poisson_dual_give_the_same_normaliser(s2):
    lo_d, hi_d = dg.normaliser_enclosure(s2, method="direct")
    lo_p, hi_p = dg.normaliser_enclosure(s2, method="dual")
    assert lo_d <= hi_p and lo_p <= hi_d  # the two certified enclosures overlap
    assert hi_d - lo_d < TINY * hi_d and hi_p - lo_p < TINY * hi_p
    # sqrt(2 pi) sigma <= N (all dual terms are positive), and N -> sqrt(2 pi) sigma quickly
    root = math.sqrt(2 * math.pi * float(s2))
    assert f(lo_p) >= root * (1 - 1e-15)
    if s2 >= 2:
        assert f(hi_p) == pytest.approx(root, rel=1e-15)


@pytest.mark.parametrize("s2", SIGMAS2[:-1])
def test_pmf_sums_to_one_certified(s2):
    """sum_{|y| <= M} e^{-y^2/(2 s2)} (summed here) plus the certified tail, over the dual
    normaliser, encloses 1 to 2^-200."""
    M = 20 * (math.isqrt(s2.numerator // s2.denominator) + 1) + 20
    iv = interval_context(PREC)
    total = iv.mpf(0)
    for w in direct_weights(s2, M).values():
        total += w
    lo_n, hi_n = dg.normaliser_enclosure(s2, method="dual")
    lo_w, hi_w = ends(total)
    tail = 2 * dg.tail_upper(M, s2)
    assert lo_w / hi_n <= 1 <= hi_w / lo_n + tail
    assert hi_w / lo_n + tail - lo_w / hi_n < TINY
    # and the module's pmf agrees with these weights
    for y in (0, 1, -2, M // 3):
        lo, hi = dg.pmf_enclosure(y, s2)
        wl, wh = ends(direct_weights(s2, abs(y))[y])
        assert lo <= wh / lo_n and wl / hi_n <= hi
    assert float(sum(dg.pmf(y, s2) for y in range(-M, M + 1))) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("s2", SIGMAS2)
def test_moments_closed_form_equal_the_series(s2):
    """(N, E Y^2, E Y^4) from Poisson summation against the pmf summed term by term."""
    N, m2, m4 = dg.moments(s2, prec=PREC)
    s = CTX.mpf(s2.numerator) / s2.denominator
    M = 20 * (math.isqrt(s2.numerator // s2.denominator) + 1) + 20
    w = [CTX.exp(-CTX.mpf(y * y) / (2 * s)) for y in range(M + 1)]
    N_s = w[0] + 2 * CTX.fsum(w[1:])
    m2_s = 2 * CTX.fsum(y * y * w[y] for y in range(1, M + 1)) / N_s
    m4_s = 2 * CTX.fsum(y**4 * w[y] for y in range(1, M + 1)) / N_s
    assert abs(N - N_s) <= 1e-60 * N_s
    assert abs(m2 - m2_s) <= 1e-60 * (1 + m2_s)
    assert abs(m4 - m4_s) <= 1e-60 * (1 + m4_s)
    assert m2 <= s  # the discrete Gaussian's variance is below sigma^2 (CKS20) ...
    if s2 <= 2:  # ... by about 4 pi^2 sigma^4 e^{-2 pi^2 sigma^2}: resolved at 256 bits here
        assert m2 < s
    if s2 >= 2:
        assert float(m2) == pytest.approx(float(s), rel=1e-15)
        assert float(m4) == pytest.approx(3 * float(s) ** 2, rel=1e-15)


@pytest.mark.parametrize("s2,m", [(Fraction(2), 1), (Fraction(2), 6), (Fraction(12), 4), (Fraction(12), 20),
                                  (Fraction(81, 2), 30)])
def test_tail_upper_bounds_the_tail(s2, m):
    lo_n, _ = dg.normaliser_enclosure(s2)
    weights = direct_weights(s2, 40 * m + 60)
    exact = sum(ends(weights[y])[1] for y in range(m + 1, 40 * m + 61)) / lo_n
    bound = dg.tail_upper(m, s2)
    assert exact <= bound <= Fraction(1, 2)
    assert dg.tail_upper(0, s2) == Fraction(1, 2)


# ------------------------------------------------------------------- the sampler's constants

@given(p=st.integers(1, 10**7), q=st.integers(1, 10**4), y=st.integers(-10**6, 10**6))
def test_acceptance_exponent_is_exact(p, q, y):
    s2 = Fraction(p, q)
    t, a, b, D = dg.acceptance_constants(s2)
    assert (t - 1) ** 2 <= s2 < t * t  # t = floor(sigma) + 1
    assert t == dg.proposal_scale(s2)
    assert Fraction((b * abs(y) - a) ** 2, D) == (abs(y) - s2 / t) ** 2 / (2 * s2)
    assert Fraction(a, b) == s2 / t and math.gcd(a, b) == 1


@given(t=st.integers(2, 2**30))
def test_grid_sigma2_has_small_acceptance_denominators(t):
    s2 = dg.grid_sigma2(t)
    assert dg.acceptance_constants(s2) == (t, t - 1, 1, 2 * t * (t - 1))
    assert 2 * t * (t - 1) <= dl.RANGE_LIMIT


# ------------------------------------------------------------------------------ the sampler

@pytest.mark.statistical
@pytest.mark.parametrize("num,den", [(0, 1), (3, 4), (1, 1), (7, 4), (5, 2), (41, 10)])
def test_bernoulli_exp_rational_rate_with_power(rng, num, den):
    """Bernoulli(exp(-num/den)) for gamma below and above 1: two-sided binomial test at alpha =
    1e-6 (n = 40000); the same test rejects exp(-(gamma + 0.25)) (power)."""
    n = 40_000
    words = word_stream(rng)
    hits = sum(dg.bernoulli_exp_rational(num, den, words) for _ in range(n))
    p = math.exp(-num / den)
    assert stats.binomtest(hits, n, p).pvalue > ALPHA
    assert stats.binomtest(hits, n, math.exp(-(num / den + 0.25))).pvalue < ALPHA


def laplace_probs(t: int, M: int) -> np.ndarray:
    """P(Y = y), y = -M..M, and the two tails, for P(y) proportional to q^|y|, q = e^{-1/t}."""
    q = math.exp(-1 / t)
    c = (1 - q) / (1 + q)
    body = np.array([c * q ** abs(y) for y in range(-M, M + 1)])
    tail = c * q ** (M + 1) / (1 - q)
    return np.concatenate([[tail], body, [tail]])


def binned(draws, M: int) -> np.ndarray:
    d = np.clip(np.asarray(draws), -M - 1, M + 1) + M + 1
    return np.bincount(d, minlength=2 * M + 3)


@pytest.mark.statistical
@pytest.mark.parametrize("t,a_stop", [(3, dg.A_STOP), (3, 2), (1, 1)])
def test_laplace_proposal_law_chi_square(rng, monkeypatch, t, a_stop):
    """The untruncated discrete Laplace proposal follows q^|y| (chi-square, alpha = 1e-6, 2e4
    draws), also when the geometric part is continued at a tiny a_stop (memorylessness), and the
    same test rejects the proposal at scale t + 1 (power)."""
    monkeypatch.setattr(dg, "A_STOP", a_stop)
    n, M = 20_000, 4 * t + 4
    words = word_stream(rng)
    draws = [dg.laplace_from_words(t, words) for _ in range(n)]
    probs = laplace_probs(t, M)
    keep = probs * n >= 5
    counts = binned(draws, M)
    stat = stats.chisquare(counts[keep], probs[keep] * n * counts[keep].sum() / (probs[keep] * n).sum())
    assert stat.pvalue > ALPHA
    mutant = [dg.laplace_from_words(t + 1, words) for _ in range(n)]
    counts = binned(mutant, M)
    stat = stats.chisquare(counts[keep], probs[keep] * n * counts[keep].sum() / (probs[keep] * n).sum())
    assert stat.pvalue < ALPHA


def gaussian_bins(s2: Fraction, bins: int | None):
    """Bin edges (right-closed on integers) and exact probabilities: one bin per integer in
    [-M, M] with two tail bins (``bins`` None), or about ``bins`` equal-probability bins."""
    lo_n, hi_n = dg.normaliser_enclosure(s2)
    sigma = math.sqrt(float(s2))
    M = int(12 * sigma) + 12
    w = {y: float(dg._ends(v)[0]) / float(lo_n) for y, v in direct_weights(s2, M).items()}
    if bins is None:
        M2 = max(y for y in range(M) if w[y] * N_DRAWS >= 8)
        edges = np.arange(-M2 - 1, M2 + 1)  # bin j: (edges[j-1], edges[j]]
        probs = np.array([sum(w[y] for y in range(-M, -M2))] + [w[y] for y in range(-M2, M2 + 1)]
                         + [sum(w[y] for y in range(M2 + 1, M + 1))])
        return edges, probs
    cdf, edges, probs, last = 0.0, [], [], 0.0
    for y in range(-M, M + 1):
        cdf += w[y]
        if cdf - last >= 1 / bins and y < M:
            edges.append(y)
            probs.append(cdf - last)
            last = cdf
    probs.append(1 - last)
    return np.array(edges), np.array(probs)


def chi_square(draws, edges, probs) -> tuple[float, float]:
    counts = np.bincount(np.searchsorted(edges, np.asarray(draws), side="left"), minlength=len(probs))
    expected = probs * len(draws)
    assert np.all(expected >= 5)
    stat = float(np.sum((counts - expected) ** 2 / expected))
    return stat, float(stats.chi2.isf(ALPHA, len(probs) - 1))


@pytest.mark.statistical
@pytest.mark.parametrize("s2,bins", [(Fraction(12), None), (dg.grid_sigma2(40), 60)])
def test_reference_sampler_law_chi_square_with_power(seed, s2, bins):
    """Pearson chi-square of 1.2e5 reference draws against the exact pmf (alpha = 1e-6) accepts
    the sampler; the same test rejects the sampler run at sigma x0.7 and x1.3 (sigma^2 x0.49,
    x1.69), drawn from fresh words (power)."""
    edges, probs = gaussian_bins(s2, bins)
    words = word_stream(np.random.default_rng(seed))
    draws = [dg.sample_from_words(s2, words) for _ in range(N_DRAWS)]
    stat, critical = chi_square(draws, edges, probs)
    assert stat <= critical
    for factor in (Fraction(49, 100), Fraction(169, 100)):
        mutant = [dg.sample_from_words(s2 * factor, words) for _ in range(N_DRAWS)]
        stat, critical = chi_square(mutant, edges, probs)
        assert stat > critical, f"sigma^2 x{factor} mutant not rejected"


def test_tape_determinism_and_row_independence(rng):
    """The same tape gives the same draws; a draw reads only its own row; changing a word a draw
    did not read changes nothing; sample_from_tape is sample_from_words row by row."""
    s2 = Fraction(81, 2)
    words = tape(rng, 300)
    a = dg.sample_from_tape(words, s2)
    assert a == dg.sample_from_tape(words.copy(), s2)
    assert a == [dg.sample_from_words(s2, iter(row.tolist())) for row in words]
    used = []
    for row in words:  # how many words each draw consumed
        it = iter(row.tolist())
        dg.sample_from_words(s2, it)
        used.append(len(row) - sum(1 for _ in it))
    changed = words.copy()
    for i, u in enumerate(used):
        changed[i, u:] = rng.integers(0, 2**64 - 1, size=words.shape[1] - u, dtype=np.uint64, endpoint=True)
    assert dg.sample_from_tape(changed, s2) == a
    swapped = words[::-1].copy()
    assert dg.sample_from_tape(swapped, s2) == a[::-1]
    assert 3 <= np.mean(used) <= 12  # about 6.5 words per draw


def test_sampler_rejects_bad_words_short_tapes_and_out_of_range_laws():
    with pytest.raises(UniformsError, match="too few random words"):
        dg.sample_from_words(12, iter([1, 2, 3]))
    with pytest.raises(UniformsError, match="must be integers"):
        dg.sample_from_words(12, iter([2**64] * 40))
    with pytest.raises(UniformsError, match="uint64"):
        dg.sample_from_tape(np.zeros((2, 40), dtype=np.int64), 12)
    with pytest.raises(ParameterError, match="sigma2"):  # D = 2 p q t'^2 > 2^62
        dg.sample_from_words(Fraction(2**40 + 1, 3), iter([0] * 100))
    # the grid keeps it exact up to t = 2^30
    assert dg.acceptance_constants(dg.grid_sigma2(2**30))[3] <= dl.RANGE_LIMIT


@pytest.mark.parametrize("bad", [0, -1, -0.5, 0.0, float("nan"), float("inf"), "12", "1e-6", None, True,
                                 complex(1, 0)])
def test_bad_sigma2_raises_parameter_error_naming_it(bad):
    for call in (lambda: dg.normaliser_enclosure(bad), lambda: dg.pmf(0, bad), lambda: dg.moments(bad),
                 lambda: dg.sample_from_words(bad, iter([0] * 10)), lambda: dg.proposal_scale(bad),
                 lambda: dg.acceptance_constants(bad), lambda: dg.sample_from_tape(
                     np.zeros((1, 8), dtype=np.uint64), bad)):
        with pytest.raises(ParameterError, match="sigma2"):
            call()


def test_bad_inputs_of_the_helpers():
    with pytest.raises(ParameterError, match="method"):
        dg.normaliser_enclosure(2, method="fft")
    with pytest.raises(ParameterError, match="num/den"):
        dg.bernoulli_exp_rational(-1, 2, iter([]))
    with pytest.raises(ParameterError, match="num/den"):
        dg.bernoulli_exp_rational(1, 2**63, iter([]))
    with pytest.raises(ParameterError, match="t"):
        dg.laplace_from_words(0, iter([]))
    with pytest.raises(ParameterError, match="t"):
        dg.grid_sigma2(1)
    with pytest.raises(ParameterError, match="m"):
        dg.tail_upper(-1, 2)


# ------------------------------------------------ the lattice release's certified (eps, delta)

def brute_hockey_stick(s2: Fraction, v: tuple[int, ...], eps: float) -> tuple[float, float]:
    """A (lower, upper) enclosure of the exact hockey-stick divergence sup_S P[Y in S] - e^eps P[Y + v in S]
    of iid N_Z(0, s2)^d (d = len(v) <= 2): the sum of (p(y) - e^eps p(y - v))_+ over the window
    |y_j| <= M (float64 from certified pmfs, +- 1e-12 for its rounding), plus (upper end) the
    certified mass of P outside the window (d x 2 x tail_upper(M))."""
    M = int(11 * math.sqrt(float(s2))) + 12 + max(abs(x) for x in v)
    p = np.array([float(dg.pmf_enclosure(y, s2, prec=128)[1]) for y in range(-M, M + 1)])
    ext = np.concatenate([np.zeros(M + 1), p, np.zeros(M + 1)])  # p(y) for |y| <= 2M + 1
    shifted = [ext[M + 1 - vj: 3 * M + 2 - vj] for vj in v]  # p(y_j - v_j), y_j = -M..M
    if len(v) == 1:
        diff = p - math.exp(eps) * shifted[0]
    else:
        diff = np.outer(p, p) - math.exp(eps) * np.outer(shifted[0], shifted[1])
    window = float(np.sum(np.maximum(diff, 0.0)))
    return window - 1e-12, window + 1e-12 + len(v) * 2 * float(dg.tail_upper(M, s2))


def brute_hockey_stick_upper(s2: Fraction, v: tuple[int, ...], eps: float) -> float:
    return brute_hockey_stick(s2, v, eps)[1]


HOCKEY_CASES = [  # (sigma^2, shift, eps): small sigma (the CKS20 bound binds) and moderate sigma
    (Fraction(2), (1,), 2.0), (Fraction(6), (2,), 0.5), (Fraction(12), (1,), 1.0), (Fraction(12), (3,), 1.0),
    (Fraction(42), (4,), 1.0), (Fraction(2500), (50,), 1.0), (Fraction(2500), (37,), 0.5),
    (Fraction(12), (1, 1), 1.0), (Fraction(6), (2, 1), 1.0), (Fraction(12), (3, 4), 0.5),
    (Fraction(100), (6, 8), 1.0), (Fraction(400), (12, 16), 1.0),
]


@pytest.mark.parametrize("s2,v,eps", HOCKEY_CASES)
def test_certified_delta_dominates_the_brute_force_hockey_stick(s2, v, eps):
    """Each certified bound of delta_bounds (the coupling bound and CKS20's concentrated-DP
    bound, and so their minimum) is >= the exact hockey-stick divergence summed over a window
    with a certified tail, in 1-D and 2-D; a smaller shift is covered too (monotone bound). The
    coupling lemma is two-sided: for this v, delta_BW(||v||_2/sigma, eps + ||v||_1/sigma^2) <=
    exact <= delta_BW(||v||_2/sigma, eps - ||v||_1/sigma^2) (note 25, Lemma 6)."""
    from dpxattn.reference.gaussian import hockey_stick

    Q = sum(x * x for x in v)
    b = dg.delta_bounds(s2, Q, len(v), Fraction(eps))
    lower, exact = brute_hockey_stick(s2, v, eps)
    assert exact <= f(b["upper"]) and exact <= f(b["coupling"]) and exact <= f(b["cdp"])
    assert b["upper"] == min(b["coupling"], b["cdp"], Fraction(1))
    smaller = tuple(max(0, x - 1) for x in v)
    if any(smaller):
        assert brute_hockey_stick_upper(s2, smaller, eps) <= f(b["upper"])
    sigma = math.sqrt(float(s2))
    l1 = sum(abs(x) for x in v) / float(s2)
    below = float(hockey_stick(list(v), eps + l1, sigma))
    above = float(hockey_stick(list(v), eps - l1, sigma))
    assert below * (1 - 1e-9) <= exact and lower <= above * (1 + 1e-9)
    if s2 >= 100:  # the discrete law is close to the continuous one: the coupling bound is near-tight
        assert exact == pytest.approx(f(b["continuous"]), rel=0.02)
        assert f(b["coupling"]) <= 1.25 * exact


@pytest.mark.parametrize("s2", [Fraction(1, 4), Fraction(1, 2), Fraction(2), Fraction(12), Fraction(81, 2)])
def test_quantile_coupling_moves_each_draw_by_at_most_one(s2):
    """Note 25 Lemma 5: F_G(k) <= F_Y(k) <= F_G(k + 1) for every integer k (Y ~ N_Z(0, s2),
    G ~ N(0, s2)), decided with certified enclosures; so the quantile coupling has |Y - G| <= 1.
    coupling_condition certifies the lemma's hypothesis (sigma^2 >= 1/4)."""
    assert dg.coupling_condition(s2)
    sigma = math.sqrt(float(s2))
    M = int(8 * sigma) + 6
    lo_n, hi_n = dg.normaliser_enclosure(s2)
    weights = direct_weights(s2, M)
    F_lo = F_hi = Fraction(0)  # enclose P(-M <= Y <= k)
    tail = dg.tail_upper(M, s2)  # P(Y < -M) <= tail
    # rational bounds 1/sigma in [inv_lo, inv_hi]; F_G(x) = 1 - Q(x / sigma) increases in x / sigma
    inv_hi = Fraction(1) / Fraction(sigma * (1 - 1e-15))
    inv_lo = Fraction(1) / Fraction(sigma * (1 + 1e-15))
    slack = Fraction(1, 10**70)  # the enclosures' width is ~1e-77
    for k in range(-M, M):
        wl, wh = ends(weights[k])
        F_lo, F_hi = F_lo + wl / hi_n, F_hi + wh / lo_n
        G_k = 1 - dg.normal_sf_enclosure(k * (inv_hi if k > 0 else inv_lo))[0]  # >= F_G(k)
        G_k1 = 1 - dg.normal_sf_enclosure((k + 1) * (inv_lo if k + 1 > 0 else inv_hi))[1]  # <= F_G(k+1)
        assert F_lo >= G_k - slack  # F_Y(k) >= P(-M <= Y <= k) >= F_lo >= F_G(k)
        assert F_hi + tail <= G_k1 + slack  # F_Y(k) <= F_hi + P(Y < -M) <= F_G(k + 1)
    for tiny in (Fraction(1, 4), Fraction(1), Fraction(2**60)):
        assert dg.coupling_condition(tiny)
    assert not dg.coupling_condition(Fraction(1, 100))  # the lemma's proof needs sigma^2 >= 1/4
    assert dg.delta_bounds(Fraction(1, 100), 1, 1, 1)["coupling"] == 1  # then only CKS20's bound


@given(num=st.integers(0, 10**12), den=st.integers(1, 10**6), changed=st.integers(1, 10**4), k=st.integers(-30, 5))
def test_sensitivity_sq_units_is_the_exact_floor(num, den, changed, k):
    a = Fraction(num + 1, den) / Fraction(2) ** k
    Q = dg.sensitivity_sq_units(Fraction(num + 1, den), changed, k)
    # Q <= (a + sqrt(c))^2 < Q + 1
    def below(x):  # x <= (a + sqrt c)^2 = a^2 + c + 2 a sqrt(c), decided exactly
        rest = x - (a * a + changed)
        return rest <= 0 or rest * rest <= 4 * a * a * changed
    assert below(Q) and not below(Q + 1)


@given(data=st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1, 1)), min_size=1, max_size=12),
       exponent=st.integers(-12, 2))
def test_rounding_moves_the_l2_change_by_at_most_sqrt_changed(data, exponent):
    """For neighbours x, x' = x + d, the rounded integer change v satisfies ||v||_2^2 <= Q =
    floor((||d||_2 / g + sqrt(changed))^2) (note 25, Lemma 4), exactly."""
    x = [Fraction(a) for a, _ in data]
    d = [Fraction(b) for _, b in data]
    changed = sum(1 for b in d if b != 0)
    if changed == 0:
        return
    norm2 = sum(b * b for b in d)
    # an exact rational upper bound on ||d||_2 (the sensitivity passed)
    sens = Fraction(math.isqrt(int(norm2 * 10**12)) + 1, 10**6)
    v = [dl.round_to_lattice_units(xi + di, exponent) - dl.round_to_lattice_units(xi, exponent)
         for xi, di in zip(x, d)]
    assert sum(z * z for z in v) <= dg.sensitivity_sq_units(sens, changed, exponent)


@pytest.mark.parametrize("x", [-3.5, -0.3, 0, 0.5, 1.7, 4.753, 9.9, 25, 31, 40])
def test_normal_sf_enclosure_contains_the_normal_tail(x):
    ctx = context(400)
    exact = ctx.erfc(ctx.mpf(x) / ctx.sqrt(2)) / 2
    lo, hi = dg.normal_sf_enclosure(x)
    assert CTX.mpf(lo.numerator) / lo.denominator <= exact <= CTX.mpf(hi.numerator) / hi.denominator
    assert hi - lo <= Fraction(1, 2**200)  # absolute width (relative beyond 30: Mills' ratio)
    if x > 30:
        assert hi <= Fraction(102, 100) * lo


@pytest.mark.parametrize("sigma,sens,eps", [(4.0, 1.0, 1.0), (39.0, 9.2376, 1.0), (2.0, 1.0, 0.1), (10.0, 3.0, 2.0)])
def test_continuous_delta_upper_is_balle_wang(sigma, sens, eps):
    from dpxattn.reference.gaussian import delta_for_sigma
    s2 = Fraction(sigma) ** 2
    # with sens_sq = Delta^2 exactly (a perfect square of a dyadic) the bound is Balle & Wang's delta
    D = Fraction(sens)
    scale = D.denominator ** 2
    up = dg.continuous_delta_upper(s2 * scale, int(D * D * scale), eps)
    exact = delta_for_sigma(sigma, sens, eps, prec=200)
    assert float(up) == pytest.approx(float(exact), rel=1e-12)
    assert CTX.mpf(up.numerator) / up.denominator >= exact * (1 - CTX.mpf(2) ** -150)


def test_cdp_bound_is_a_valid_upper_bound_at_every_alpha():
    """Any alpha > 1 gives an upper bound (the chosen alpha is the smallest of them, up to
    float search); checked against the exact 1-D hockey-stick at sigma^2 = 12, shift 2."""
    s2, v, eps = Fraction(12), (2,), 1.0
    exact = brute_hockey_stick_upper(s2, v, eps)
    rho = Fraction(4) / (2 * s2)
    best = dg.cdp_delta_upper(rho, eps)
    for alpha in (Fraction(11, 10), Fraction(3), Fraction(10), Fraction(40)):
        assert exact <= f(dg.cdp_delta_upper(rho, eps, alpha=alpha))
        assert best <= dg.cdp_delta_upper(rho, eps, alpha=alpha) * (1 + Fraction(1, 10**9))
    with pytest.raises(ParameterError, match="alpha"):
        dg.cdp_delta_upper(rho, eps, alpha=1)


CONFIGS = [(9.2376, 1.0, 1e-6, 1485), (29.2, 1.0, 1e-6, 8721), (1.0, 1.0, 1e-6, 1), (1.0, 0.1, 1e-9, 100),
           (Fraction(3, 7), Fraction(1, 2), Fraction(1, 10**5), 3)]


@pytest.mark.parametrize("sens,eps,delta,changed", CONFIGS)
def test_lattice_gaussian_parameters_are_consistent_and_minimal(sens, eps, delta, changed):
    from dpxattn.reference.gaussian import sigma_for
    p = dg.lattice_gaussian_parameters(sens, eps, delta, changed)
    g = Fraction(2) ** p.exponent
    assert p.sensitivity_sq_units == dg.sensitivity_sq_units(sens, changed, p.exponent)
    assert p.sigma2_units == dg.grid_sigma2(p.scale_units) and 2 * p.scale_units * (p.scale_units - 1) <= dl.RANGE_LIMIT
    parts = dg.delta_bounds(p.sigma2_units, p.sensitivity_sq_units, changed, Fraction(eps))
    assert parts["upper"] == p.delta_upper <= Fraction(delta)
    assert p.delta_achieved <= float(delta)
    prev = dg.delta_bounds(dg.grid_sigma2(p.scale_units - 1), p.sensitivity_sq_units, changed, Fraction(eps))
    assert prev["upper"] > Fraction(delta)  # the smallest sigma on the grid
    # sigma in (2^29, 2^30] lattice units (up to the search's increase), the continuous sigma below
    assert 2**28 < math.sqrt(p.sigma2_units) < 2**30 * 1.05
    sc = float(sigma_for(sens, eps, delta))
    assert p.sigma_continuous == sc
    assert 1.0 <= p.sigma_ratio <= 1.00001
    assert p.sigma >= float(g) * math.sqrt(p.sigma2_units)
    assert p.max_value_units == dl.MAX_EXACT_UNITS - dg.TAIL_SIGMAS * p.scale_units
    d = p.to_dict()
    assert d["scale_units"] == p.scale_units and d["law"] == "discrete_gaussian"
    assert str(p).startswith("lattice release, discrete Gaussian")


def test_canonical_sigma_ratio_is_within_a_millionth():
    """The figure the note reports: canonical direct (Delta_2 = 9.2376, eps = 1, delta = 1e-6,
    1485 entries) needs sigma at most 1 + 1e-6 times the continuous analytic sigma; the coupling
    bound binds (CKS20's is 4x too large there) and its eps shift is about 1.4e-8."""
    p = dg.lattice_gaussian_parameters(9.2376, 1.0, 1e-6, 1485)
    assert 1.0 < p.sigma_ratio < 1.000001
    assert p.delta_upper == p.delta_coupling < p.delta_cdp / 4
    assert p.eps_shift < Fraction(2, 10**8)


def test_value_bound_coarsens_the_lattice_until_the_release_stays_exact():
    fine = dg.lattice_gaussian_parameters(1.0, 1.0, 1e-6, 10)
    coarse = dg.lattice_gaussian_parameters(1.0, 1.0, 1e-6, 10, value_bound=1e9)
    assert coarse.exponent > fine.exponent
    g = Fraction(2) ** coarse.exponent
    assert coarse.max_value_units == math.floor(Fraction(10**9) / g + Fraction(1, 2))
    assert coarse.max_value_units + dg.TAIL_SIGMAS * coarse.scale_units <= dl.MAX_EXACT_UNITS
    assert coarse.delta_upper <= Fraction(1e-6)


def test_release_from_tape_rounds_then_adds_the_noise(rng):
    values = [0.0, 1.5, -2.25, 1e-300, 123.456, -0.0]
    words = tape(rng, len(values))
    p = dg.lattice_gaussian_parameters(1.0, 1.0, 1e-6, len(values))
    out = dg.release_from_tape(values, words, sensitivity=1.0, eps=1.0, delta=1e-6, changed=len(values))
    g = Fraction(2) ** p.exponent
    for x, row, r in zip(values, words, out):
        assert r == (dl.round_to_lattice_units(x, p.exponent) + dg.sample_from_words(p.sigma2_units, iter(row.tolist()))) * g
    with pytest.raises(BoundError, match="finite"):
        dg.release_from_tape([float("nan")], words[:1], sensitivity=1.0, eps=1.0, delta=1e-6, changed=1)
    with pytest.raises(BoundError, match="value_bound"):
        dg.release_from_tape([3.0], words[:1], sensitivity=1.0, eps=1.0, delta=1e-6, changed=1, value_bound=2.0)
    with pytest.raises(BoundError, match="max_value_units"):
        dg.release_from_tape([1e300], words[:1], sensitivity=1.0, eps=1.0, delta=1e-6, changed=1)


@pytest.mark.parametrize("kwargs,name", [
    (dict(sensitivity=0), "sensitivity"), (dict(sensitivity="1"), "sensitivity"), (dict(eps=-1), "eps"),
    (dict(eps="1"), "eps"), (dict(delta=0.7), "delta"), (dict(delta=0), "delta"), (dict(changed=0), "changed"),
    (dict(value_bound=-1.0), "value_bound"),
])
def test_lattice_gaussian_parameters_bad_inputs(kwargs, name):
    args = dict(sensitivity=1.0, eps=1.0, delta=1e-6, changed=3) | kwargs
    vb = args.pop("value_bound", None)
    with pytest.raises(ParameterError, match=name):
        dg.lattice_gaussian_parameters(args["sensitivity"], args["eps"], args["delta"], args["changed"],
                                       value_bound=vb)
