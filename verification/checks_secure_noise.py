"""Check of the hardened sampler: the fast discrete truncated Laplace against its exact law.

TLap, hardened release -- paper: truncated Laplace mechanism (v2 §2 / App. B);
spec PAPER.md §2.1 and §5 item 18; DESIGN §6; proof notes
``proofs_notes/23-hardened-noise.md`` and ``20-verification-standards.md``.

The secure-mode release adds integer noise ``Z`` with ``P(Z = z) = exp(-|z|/t) / N`` on
``|z| <= K`` (lattice units). For several laws (t, K) -- taken from
``dpxattn.fast.secure_noise.secure_parameters`` of realistic (Delta, eps, delta), and raw --
including extreme ones (t = 1 from a coarse lattice, t ~ 7.6e11 and ~1.1e12 with K ~ 13.7 t as
in real builds, t = 1e6 in the block-table regime), the production sampler
:func:`dpxattn.fast.secure_noise.sample_noise_units` (seeded ``numpy.random.Generator``: an
audit, labelled so) is compared with the exact law of the reference
``dpxattn.reference.discrete_laplace`` (``cdf``, ``tail_delta``, ``normaliser``, ``pmf``):

1. **chi-square**: Pearson's statistic on bins of integers, cut near the quantiles i/B of the
   law (cut points from a float64 inversion of its closed form: any data-independent cut keeps
   the test exact), bin probabilities from the reference's exact ``cdf`` (256 bits), adjacent
   bins merged until every expected count is >= 5; rejects above ``chi2.isf(alpha, bins - 1)``.
2. **moments**: the sample mean against 0 and the sample second moment against the exact
   variance, each with Bernstein's inequality at alpha/2 (non-asymptotic: |Z| <= K). The exact
   E Z^2 and E Z^4 come from the reference's ``even_moments`` (closed-form geometric sums at
   256 bits), whose normaliser must equal the reference's
   ``normaliser`` and whose moments must equal the reference's ``pmf`` summed term by term
   wherever K <= :data:`SMALL_SUPPORT` (record ``reference: exact law``).
3. **support** (exact, a sure property): every draw lies in [-K, K].
4. **delta region** (white box): with s = Delta_int (the lattice sensitivity), the draws with
   z < s - K (reachable under D, not under a neighbour shifted by s) and those with
   z > K - s (the mirror) are counted; each count is tested against the exact mass
   ``tail_delta(s, t, K)`` by a two-sided Clopper-Pearson test at alpha/2 (the statistic is the
   smaller exact two-sided p-value; the exact mass lies in the Clopper-Pearson interval at
   confidence 1 - alpha/2 iff that p-value is >= alpha/2).
5. **far tail**: the same test for the shift s whose region has exact mass about
   :data:`TAIL_TARGET_MASS` (so the tail of the law is tested where it has counts even when
   delta is 1e-6 or 1e-9).
6. **conformance** (exact): on a tape of random 64-bit words the fast sampler
   (``tape=``) returns the same integers as ``dpxattn.reference.discrete_laplace.sample_from_tape``.

Power (DESIGN §6): the same tests at the same sample sizes are rerun on deliberately wrong
samplers -- the same fast sampler given a wrong integer scale t' with the same K:
:data:`SECURE_SCALE_MUTANTS` (t x 0.7 and x 1.3) and :data:`SECURE_UNDER_NOISED_MUTANT`
(t x 0.5: half the noise at the same claimed eps), whose exact law is dTLap(t', K). Chi-square
and moments must reject every mutant; the delta-region and far-tail tests must reject a mutant
whenever their exact miss probability against it (from the mutant's exact region mass,
``tail_delta(s, t', K)``, and the binomial acceptance interval) is <= ``REQUIRED_MISS`` = 1e-9.
The support test cannot reject (same K). A mutant whose rounded scale equals t is moved one
unit in its direction; where that is impossible (t = 1 has no smaller integer scale) the mutant
does not exist for that law and the config's records say so. The power record's ``beta`` (the
chance that the mutant escapes, i.e. that the record fails a correct build) is the sum over the
required tests of a rigorous bound on each one's miss from the mutant's exact law
(``details["beta_terms"]``): chi-square, the exact binomial window of the best bin (masses from
the reference's ``cdf(z, t', K)``) or Bernstein on the projection of the bin counts onto the
likelihood ratio (``power_bounds.chi_square_escape``); moments, Bernstein on the sample second
moment at the mutant's exact E Z^2, E Z^4 (``even_moments(t', K)``) and range K^2
(``checks_noise.moments_escape``); the region tests, their exact miss (:func:`region_miss`).
The bounds take a correct build's draws to follow the exact law, as every alpha does; bounds
below 1e-300 are reported as 1e-300. Every statistical assertion has alpha = 1e-6 (20 records
at quick, 43 at standard: 2e-5 and 4.3e-5); at the quick and standard sizes every power record
has beta < 1e-9.

Shapes: the sampler returns 1-D int64 arrays (lattice units); every record is a ``CheckRecord``.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats

from dpxattn.fast.secure_noise import sample_noise_units, secure_parameters
from dpxattn.randomness import derive_seed
from dpxattn.reference import discrete_laplace as dl
from dpxattn.reference._mp import context
from dpxattn.verification.checks_noise import (BOUND_FLOOR, TestOutcome, bernstein_moments,
                                               moments_escape, region_acceptance)
from dpxattn.verification.power_bounds import binomial_window_upper, chi_square_escape, union
from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "ALPHA",
    "REFERENCE_PREC",
    "REFERENCE_RTOL",
    "REQUIRED_MISS",
    "REGION_TARGET_COUNT",
    "TAIL_TARGET_MASS",
    "MIN_EXPECTED",
    "SMALL_SUPPORT",
    "TAPE_WORDS",
    "LatticeLaw",
    "SecureNoiseConfig",
    "config_from_parameters",
    "config_from_law",
    "standard_configs",
    "quick_configs",
    "configs_for",
    "SecureNoiseSizes",
    "sizes_for",
    "LatticeMutant",
    "SECURE_SCALE_MUTANTS",
    "SECURE_UNDER_NOISED_MUTANT",
    "SECURE_MUTANTS",
    "ExactLatticeLaw",
    "exact_lattice_law",
    "DrawSummary",
    "draw_summary",
    "chi_square_test",
    "moments_test",
    "support_test",
    "region_test",
    "conformance_test",
    "evaluate_law",
    "region_power",
    "region_miss",
    "chi_square_escape_bound",
    "required_power_tests",
    "check_secure_noise",
]

#: false-alarm rate of every statistical assertion of this check (DESIGN §6: <= 1e-6)
ALPHA = 1e-6
#: working precision (bits) of every exact evaluation made here
REFERENCE_PREC = 256
#: the exact identities (closed forms vs the reference) must hold to this relative error
REFERENCE_RTOL = 1e-25
#: a region test must reject a mutant when its exact miss probability against it at the check's
#: sample size is at most this (chi-square and moments always must)
REQUIRED_MISS = 1e-9
#: target expected count in each delta region (sets the region sample size, before the cap)
REGION_TARGET_COUNT = 1000
#: exact one-sided mass aimed at by the far-tail region
TAIL_TARGET_MASS = 1e-3
#: every chi-square bin has at least this expected count (bins are merged until it holds)
MIN_EXPECTED = 5.0
#: laws with K <= this are also summed term by term with the reference's pmf
SMALL_SUPPORT = 4096
#: random 64-bit words per draw on the conformance tape (a draw uses about 2)
TAPE_WORDS = 64
#: draws generated at a time (bounds memory: a few int64 arrays of this length)
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatticeLaw:
    """The two integers the sampler reads: scale ``t`` and support ``K`` (lattice units)."""

    scale_units: int
    support_units: int


@dataclass(frozen=True)
class SecureNoiseConfig:
    """One law (t, K) with the shift s of its delta region, and where it comes from."""

    t: int
    K: int
    shift: int
    source: str
    why: str = ""
    delta_bounds: tuple | None = None  # (delta_lower, delta_upper, delta) Fractions, from secure_parameters

    @property
    def law(self) -> LatticeLaw:
        return LatticeLaw(self.t, self.K)

    @property
    def label(self) -> str:
        return f"dTLap(t={self.t}, K={self.K}, s={self.shift}) {self.source}"


def config_from_parameters(sensitivity, eps, delta, changed: int = 1, value_bound=None,
                           why: str = "") -> SecureNoiseConfig:
    """The law a secure release with these public inputs uses (``secure_parameters``); the
    delta-region shift is its lattice sensitivity Delta_int."""
    p = secure_parameters(sensitivity=sensitivity, eps=eps, delta=delta, changed=changed,
                          value_bound=value_bound)
    vb = "" if value_bound is None else f", value_bound={value_bound:g}"
    source = f"from secure_parameters(Delta={sensitivity:g}, eps={eps:g}, delta={delta:g}, changed={changed}{vb})"
    return SecureNoiseConfig(p.scale_units, p.support_units, p.sensitivity_units, source, why,
                             (p.delta_lower, p.delta_upper, p.delta))


def config_from_law(t: int, shift: int, *, K: int | None = None, delta=None, why: str = "") -> SecureNoiseConfig:
    """A raw law: ``K`` given, or the reference's ``support_units(shift, t, delta)``."""
    if K is None:
        K = dl.support_units(shift, t, delta)
        source = f"raw: K = support_units(s, t, delta={delta:g})"
    else:
        source = "raw (t, K)"
    return SecureNoiseConfig(int(t), int(K), int(shift), source, why)


@functools.lru_cache(maxsize=1)
def standard_configs() -> tuple[SecureNoiseConfig, ...]:
    """The laws of the standard level (quick runs a subset; :func:`quick_configs`)."""
    return (
        config_from_parameters(1.0, 1.0, 1e-6, why="the benchmark's configuration: t ~ 1.1e12, K ~ 13.7 t"),
        config_from_parameters(0.69, 1.0, 1e-6, why="a real build's split: t ~ 7.6e11, K ~ 13.7 t"),
        config_from_parameters(1.0, 1.0, 0.02, why="delta = 0.02: the delta region has counts"),
        config_from_parameters(3.0, 2.0, 0.4, why="large delta: K ~ 2.2 t, heavy truncation"),
        config_from_parameters(2.0, 0.1, 1e-9, 64, why="tiny delta, 64 changed coordinates: K ~ 17.8 t"),
        config_from_parameters(1.0, 1.0, 1e-6, 1, value_bound=1e15,
                               why="a coarse lattice from a value bound: t = 9"),
        config_from_parameters(1.0, 1.0, 1e-6, 1, value_bound=1e18,
                               why="the coarsest lattice: t = 1 (block 2^0: B is always 0)"),
        config_from_law(1, 1, K=3, why="t = 1, K = 3: a law of 7 atoms, delta region mass 0.02"),
        config_from_law(3, 3, K=12, why="tiny t = 3, K = 4 t"),
        config_from_law(1_000_000, 1_000_000, delta=1e-6, why="t = 1e6: the block-table regime"),
        config_from_law(5, 5, K=400, why="K = 80 t: far truncation"),
    )


def quick_configs() -> tuple[SecureNoiseConfig, ...]:
    """The CI subset: t = 1 (realistic), t = 3, delta = 0.02, t ~ 7.6e11, t = 1e6."""
    s = standard_configs()
    return (s[6], s[8], s[2], s[1], s[9])


def configs_for(level: str) -> tuple[SecureNoiseConfig, ...]:
    return quick_configs() if level == "quick" else standard_configs()


@dataclass(frozen=True)
class SecureNoiseSizes:
    """Sample sizes: goodness-of-fit draws, the cap on region draws, target bins, tape rows."""

    n_gof: int
    region_cap: int
    bins: int
    conformance: int

    def n_region(self, smallest_mass: float) -> int:
        want = math.ceil(REGION_TARGET_COUNT / smallest_mass) if smallest_mass > 0 else self.region_cap
        return int(min(max(want, self.n_gof), max(self.region_cap, self.n_gof)))


def sizes_for(level: str, scale: float = 1.0) -> SecureNoiseSizes:
    """quick: 1.2e5 draws (DESIGN §6), regions up to 2e6, 128 bins, 2000 tape rows; standard:
    1e6, regions up to 2e7, 256 bins, 5000 rows; full: 4e6 and 5e7 times ``scale``, 512 bins."""
    if level == "quick":
        return SecureNoiseSizes(n_gof=120_000, region_cap=2_000_000, bins=128, conformance=2000)
    if level == "standard":
        return SecureNoiseSizes(n_gof=1_000_000, region_cap=20_000_000, bins=256, conformance=5000)
    f = max(float(scale), 1.0)
    return SecureNoiseSizes(n_gof=int(4_000_000 * f), region_cap=int(50_000_000 * f), bins=512,
                            conformance=int(20_000 * f))


# ---------------------------------------------------------------------------------------------
# The mutants (deliberately wrong samplers; DESIGN §6 power)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatticeMutant:
    """A wrong sampler: the fast sampler given the integer scale round(factor t) and the same K
    (moved one unit in the factor's direction when rounding gives t back; None when no such
    integer scale >= 1 exists)."""

    factor: float
    label: str

    def law(self, t: int, K: int) -> LatticeLaw | None:
        wrong = max(1, round(self.factor * t))
        if wrong == t:
            wrong = t + 1 if self.factor > 1 else t - 1
        if wrong < 1:
            return None
        return LatticeLaw(wrong, K)


#: the two scale mutants every distribution test must reject (DESIGN §6)
SECURE_SCALE_MUTANTS = (LatticeMutant(0.7, "mutant: scale x0.7"), LatticeMutant(1.3, "mutant: scale x1.3"))
#: an under-noised sampler: half the noise at the same claimed eps (its eps is twice the claim)
SECURE_UNDER_NOISED_MUTANT = LatticeMutant(0.5, "mutant: under-noised, scale x0.5")
SECURE_MUTANTS = (*SECURE_SCALE_MUTANTS, SECURE_UNDER_NOISED_MUTANT)


# ---------------------------------------------------------------------------------------------
# The exact law
# ---------------------------------------------------------------------------------------------

def _upper_point(u: float, t: int, K: int) -> int:
    """An integer c >= 0 with P(Z > c) close to u (float64 inversion of the closed form; only
    chooses cut points, whose probabilities then come from the reference)."""
    omq = -math.expm1(-1.0 / t)
    N = 1.0 + 2.0 * math.exp(-1.0 / t) * -math.expm1(-K / t) / omq
    arg = u * omq * N + math.exp(-(K + 1) / t)
    c = round(-t * math.log(arg)) - 1 if arg > 0 else K
    return int(min(max(c, 0), K))


@dataclass
class ExactLatticeLaw:
    """Everything the tests need about one law, computed by the reference (and the closed-form
    moments checked against it).

    ``bin_upper`` (int64, ascending, last = K): bin j holds the integers in
    (bin_upper[j-1], bin_upper[j]] (bin 0 starts at -K); ``bin_prob`` their exact masses.
    ``regions`` maps a name to (shift s, exact mass of {z < s - K} = mass of {z > K - s}).
    """

    config: SecureNoiseConfig
    normaliser: float
    variance: float
    fourth_moment: float
    bin_upper: np.ndarray
    bin_prob: np.ndarray
    regions: dict
    identity_errors: dict
    delta_check: dict | None = None

    def merged_bins(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Adjacent bins merged (left to right, a short last group joins the previous one)
        until every expected count n p is >= MIN_EXPECTED."""
        uppers, probs, acc = [], [], 0.0
        for hi, p in zip(self.bin_upper.tolist(), self.bin_prob.tolist()):
            acc += p
            if n * acc >= MIN_EXPECTED:
                uppers.append(hi)
                probs.append(acc)
                acc = 0.0
        if acc > 0:
            if probs:
                probs[-1] += acc
                uppers[-1] = int(self.bin_upper[-1])
            else:
                uppers, probs = [int(self.bin_upper[-1])], [acc]
        return np.array(uppers, dtype=np.int64), np.array(probs)


def _tail_shift(t: int, K: int) -> int:
    """The shift s whose region {z < s - K} has exact mass closest above TAIL_TARGET_MASS from a
    float guess, then adjusted with the reference's ``tail_delta`` (s in [1, K])."""
    T = _upper_point(TAIL_TARGET_MASS, t, K) + 1  # smallest |z| in the region: T = K - s + 1
    s = min(max(K - T + 1, 1), max(K, 1))
    mass = lambda v: float(dl.tail_delta(v, t, K, prec=REFERENCE_PREC))  # noqa: E731
    while s > 1 and mass(s - 1) >= TAIL_TARGET_MASS:
        s -= 1
    while s < K and mass(s) < TAIL_TARGET_MASS:
        s += 1
    return s


def exact_lattice_law(config: SecureNoiseConfig, bins: int) -> ExactLatticeLaw:
    """Evaluate the reference for one law: bins and their masses, moments, region masses, and
    the identities of the ``reference: exact law`` record."""
    t, K, s, p = config.t, config.K, config.shift, REFERENCE_PREC
    ctx = context(p)
    cuts = set()
    for i in range(1, bins):
        frac = i / bins
        c = -_upper_point(frac, t, K) - 1 if frac <= 0.5 else _upper_point(1.0 - frac, t, K)
        if -K <= c <= K - 1:
            cuts.add(c)
    upper = sorted(cuts) + [K]
    cdf = [dl.cdf(c, t, K, prec=p) for c in upper]
    prob = [cdf[0]] + [cdf[i] - cdf[i - 1] for i in range(1, len(cdf))]
    N, m2, m4 = dl.even_moments(t, K, prec=p)
    ref_N = dl.normaliser(t, K, prec=p)
    errors = {"closed-form normaliser vs reference normaliser": float(abs(N - ref_N) / ref_N),
              "sum of bin masses - 1": float(abs(ctx.fsum(prob) - 1))}
    tail_s = _tail_shift(t, K)
    regions = {"delta region": (s, dl.tail_delta(s, t, K, prec=p))}
    if tail_s != s:
        regions["far tail"] = (tail_s, dl.tail_delta(tail_s, t, K, prec=p))
    for name, (shift, mass) in regions.items():  # symmetry: P[z > K - s] = P[z < s - K]
        mirror = 1 - dl.cdf(K - shift, t, K, prec=p)
        errors[f"{name}: P[z > K - s] vs tail_delta(s)"] = float(abs(mirror - mass) / mass) if mass else float(mirror)
    if K <= SMALL_SUPPORT:
        pm = [dl.pmf(z, t, K, prec=p) for z in range(0, K + 1)]
        total = pm[0] + 2 * ctx.fsum(pm[1:])
        e2 = 2 * ctx.fsum(z * z * pm[z] for z in range(1, K + 1))
        e4 = 2 * ctx.fsum(z**4 * pm[z] for z in range(1, K + 1))
        errors["sum of pmf - 1"] = float(abs(total - 1))
        errors["E Z^2: closed form vs sum of pmf"] = float(abs(m2 - e2) / e2) if e2 else float(m2)
        errors["E Z^4: closed form vs sum of pmf"] = float(abs(m4 - e4) / e4) if e4 else float(m4)
        for name, (shift, mass) in regions.items():
            direct = ctx.fsum(pm[z] for z in range(K - shift + 1, K + 1))
            errors[f"{name}: tail_delta(s) vs sum of pmf"] = float(abs(direct - mass) / mass) if mass else float(direct)
    delta_check = None
    if config.delta_bounds is not None:
        lo, hi, target = config.delta_bounds
        exact = regions["delta region"][1]
        slack = 1 + ctx.mpf(2) ** (16 - p)  # rounding of the 256-bit evaluation vs the enclosure
        lo_m, hi_m = ctx.mpf(lo.numerator) / lo.denominator, ctx.mpf(hi.numerator) / hi.denominator
        delta_check = {"delta_lower": float(lo), "tail_delta(Delta_int)": float(exact),
                       "delta_upper": float(hi), "delta_target": float(target),
                       "holds": bool(lo_m <= exact * slack and exact <= hi_m * slack and hi <= target)}
    return ExactLatticeLaw(
        config=config, normaliser=float(N), variance=float(m2), fourth_moment=float(m4),
        bin_upper=np.array(upper, dtype=np.int64), bin_prob=np.array([float(v) for v in prob]),
        regions={k: (v[0], float(v[1])) for k, v in regions.items()}, identity_errors=errors,
        delta_check=delta_check,
    )


# ---------------------------------------------------------------------------------------------
# Draws
# ---------------------------------------------------------------------------------------------

@dataclass
class DrawSummary:
    """What the tests need from one sampler's draws at one law."""

    gof: np.ndarray        # the first n_gof draws (int64)
    n_region: int          # all draws behind the region counts and the support maximum
    max_abs: int           # max |z| over all n_region draws
    region_counts: dict    # name -> (count z < s - K, count z > K - s)
    randomness: str = ""
    seconds: float = 0.0


def draw_summary(law: LatticeLaw, exact: ExactLatticeLaw, sizes: SecureNoiseSizes, seed: int) -> DrawSummary:
    """Draw ``n_region`` values of ``law`` with the fast sampler (seeded numpy generator, in
    chunks) and summarise them; the first ``n_gof`` are kept for goodness of fit."""
    start = time.perf_counter()
    gen = np.random.default_rng(seed)
    K = exact.config.K
    n_region = sizes.n_region(min(m for _, m in exact.regions.values()))
    counts = {name: [0, 0] for name in exact.regions}
    kept, max_abs, done, label = [], 0, 0, ""
    while done < n_region:
        m = min(_CHUNK, n_region - done)
        x, label = sample_noise_units(m, law, generator=gen)
        if done < sizes.n_gof:
            kept.append(x[:sizes.n_gof - done].copy())
        max_abs = max(max_abs, int(np.abs(x).max()))
        for name, (s, _) in exact.regions.items():
            counts[name][0] += int(np.count_nonzero(x < s - K))
            counts[name][1] += int(np.count_nonzero(x > K - s))
        done += m
    return DrawSummary(gof=np.concatenate(kept), n_region=n_region, max_abs=max_abs,
                       region_counts={k: tuple(v) for k, v in counts.items()}, randomness=label,
                       seconds=time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------

def chi_square_test(s: DrawSummary, exact: ExactLatticeLaw, alpha: float = ALPHA) -> TestOutcome:
    """Pearson chi-square on the law's merged bins; a draw outside [-K, K] makes it infinite."""
    x = s.gof
    n = x.size
    upper, prob = exact.merged_bins(n)
    K = exact.config.K
    outside = int(np.count_nonzero(np.abs(x) > K))
    counts = np.bincount(np.searchsorted(upper, x[np.abs(x) <= K], side="left"), minlength=len(prob))
    expected = n * prob
    chi2 = math.inf if outside else float(np.sum((counts - expected) ** 2 / expected))
    dof = len(prob) - 1
    crit = float(stats.chi2.isf(alpha, dof))
    return TestOutcome(
        test="chi-square", kind="statistical",
        tests=(f"Pearson chi-square of the draws on {len(prob)} bins of the exact law (cut near its "
               "quantiles, masses from the reference's exact cdf, merged to expected counts >= 5) "
               "is below the chi-square quantile at alpha"),
        statistic=chi2, threshold=crit, comparison="<=", rejected=not chi2 <= crit, alpha=alpha,
        sample_size=n,
        details={"bins": len(prob), "dof": dof, "min_expected": float(expected.min()),
                 "max_expected": float(expected.max()), "draws_outside_support": outside,
                 "p_value": float(stats.chi2.sf(chi2, dof)) if math.isfinite(chi2) else 0.0},
    )


def moments_test(s: DrawSummary, exact: ExactLatticeLaw, alpha: float = ALPHA) -> TestOutcome:
    """Mean against 0 and second moment against the exact variance, Bernstein at alpha/2 each
    (``checks_noise.bernstein_moments``; |Z| <= K)."""
    # |z| <= 2^53: exact as float64; the sums' float error is ~1e-13 relative
    return bernstein_moments(s.gof.astype(np.float64), variance=exact.variance,
                             fourth_moment=exact.fourth_moment, bound=float(exact.config.K),
                             alpha=alpha, noise="|Z| <= K")


def support_test(s: DrawSummary, exact: ExactLatticeLaw) -> TestOutcome:
    """Exact: max |z| over every draw is <= K (integers, compared exactly)."""
    K = exact.config.K
    return TestOutcome(
        test="support", kind="exact",
        tests="no draw leaves the support [-K, K] of the exact law; statistic max|z| (integer) "
              "over every draw of the law",
        statistic=float(s.max_abs), threshold=float(K), comparison="<=", rejected=s.max_abs > K,
        alpha=None, sample_size=s.n_region, details={"max_abs": s.max_abs, "K": K},
    )


def _two_sided_p(k: int, n: int, p: float) -> float:
    """Exact two-sided p-value 2 min(P[X <= k], P[X >= k]), X ~ Binomial(n, p) (the one the
    Clopper-Pearson interval inverts)."""
    return min(1.0, 2.0 * min(float(stats.binom.cdf(k, n, p)), float(stats.binom.sf(k - 1, n, p))))


def region_test(s: DrawSummary, exact: ExactLatticeLaw, name: str, alpha: float = ALPHA) -> TestOutcome:
    """Counts in {z < shift - K} and {z > K - shift} against their exact mass (alpha/2 each)."""
    shift, mass = exact.regions[name]
    n = s.n_region
    low, high = s.region_counts[name]
    p_low, p_high = _two_sided_p(low, n, mass), _two_sided_p(high, n, mass)
    stat = min(p_low, p_high)
    conf = 1.0 - alpha / 2
    ci = {side: [float(v) for v in stats.binomtest(k, n, mass).proportion_ci(confidence_level=conf, method="exact")]
          for side, k in (("low", low), ("high", high))}
    what = ("the region reachable under D but not under a neighbour shifted by s = Delta_int "
            "lattice units" if name == "delta region" else "the far tail of the law")
    return TestOutcome(
        test=name, kind="statistical",
        tests=(f"{what}: the counts of draws with z < s - K and with z > K - s match the exact "
               "mass tail_delta(s, t, K) (reference): two-sided Clopper-Pearson test per side at "
               "alpha/2; statistic = the smaller exact two-sided p-value"),
        statistic=stat, threshold=alpha / 2, comparison=">=", rejected=not stat >= alpha / 2,
        alpha=alpha, sample_size=n,
        details={"shift": shift, "exact_mass": mass, "low_count": low, "high_count": high,
                 "expected_count": n * mass, "clopper_pearson_low": ci["low"],
                 "clopper_pearson_high": ci["high"], "p_value_low": p_low, "p_value_high": p_high},
    )


def conformance_test(config: SecureNoiseConfig, rows: int, seed: int) -> TestOutcome:
    """Exact: the fast sampler on a (rows, TAPE_WORDS) tape of random words returns the
    reference's ``sample_from_tape`` integers, draw for draw."""
    gen = np.random.default_rng(seed)
    tape = gen.integers(0, 2**64 - 1, size=(rows, TAPE_WORDS), dtype=np.uint64, endpoint=True)
    fast, label = sample_noise_units(rows, config.law, tape=tape)
    ref = np.array(dl.sample_from_tape(tape, config.t, config.K), dtype=np.int64)
    mismatches = int(np.count_nonzero(fast != ref))
    return TestOutcome(
        test="conformance", kind="exact",
        tests=("the fast sampler given a tape of random 64-bit words returns exactly the "
               "integers of the reference's sample_from_tape on the same tape; statistic = the "
               "number of draws that differ"),
        statistic=float(mismatches), threshold=0.0, comparison="<=", rejected=mismatches > 0,
        alpha=None, sample_size=rows,
        details={"tape_words_per_draw": TAPE_WORDS, "randomness": label,
                 "first_draws": fast[:8].tolist(), "distinct_values": int(np.unique(ref).size)},
    )


def evaluate_law(law: LatticeLaw, exact: ExactLatticeLaw, sizes: SecureNoiseSizes, seed: int,
                 alpha: float = ALPHA) -> tuple[dict[str, TestOutcome], DrawSummary]:
    """The statistical tests and the support test on draws of ``law`` (the config's law, or a
    mutant's) against the config's exact law."""
    s = draw_summary(law, exact, sizes, seed)
    out = {"chi-square": chi_square_test(s, exact, alpha), "moments": moments_test(s, exact, alpha),
           "support": support_test(s, exact)}
    for name in exact.regions:
        out[name] = region_test(s, exact, name, alpha)
    return out, s


def region_power(n: int, mass: float, mutant_mass: float, alpha: float = ALPHA) -> float:
    """Exact probability that one side's count under the mutant falls outside the acceptance
    interval of the two-sided test at alpha/2 (a lower bound on the region test's power)."""
    k_lo, k_hi = region_acceptance(n, mass, alpha / 2)
    below = float(stats.binom.cdf(k_lo - 1, n, mutant_mass)) if k_lo > 0 else 0.0
    return below + float(stats.binom.sf(k_hi, n, mutant_mass))


def region_miss(n: int, mass: float, mutant_mass: float, alpha: float = ALPHA) -> float:
    """Upper bound on the exact probability that one side's count under the mutant stays in the
    acceptance interval of the two-sided test at alpha/2 (widened by one count at each end for
    the p-value's boundary ties): the region test accepts the mutant only if both sides do."""
    k_lo, k_hi = region_acceptance(n, mass, alpha / 2)
    return binomial_window_upper(n, mutant_mass, k_lo - 1, k_hi + 1)


def chi_square_escape_bound(exact: ExactLatticeLaw, mutant_law: LatticeLaw, n: int,
                            alpha: float = ALPHA) -> tuple[float, dict]:
    """Upper bound on P(the chi-square test accepts the mutant at ``n`` draws): the test's merged
    bins at ``n``, the mutant's exact bin masses from the reference's ``cdf(z, t', K)`` and
    ``power_bounds.chi_square_escape`` (best bin's exact binomial window, or the projection on
    the likelihood ratio with Bernstein, whichever is smaller)."""
    upper, prob = exact.merged_bins(n)
    crit = float(stats.chi2.isf(alpha, len(prob) - 1))
    t2, K = mutant_law.scale_units, exact.config.K
    cdf = [dl.cdf(int(u), t2, K, prec=REFERENCE_PREC) for u in upper]
    q = np.clip(np.array([float(cdf[0])] + [float(cdf[i] - cdf[i - 1]) for i in range(1, len(cdf))]),
                0.0, 1.0)
    b, info = chi_square_escape(n, crit, prob, q)
    return b, {"bound": b, "how": "chi-square escape (best bin window / projection)", "n": n,
               "critical": crit, **info}


def required_power_tests(exact: ExactLatticeLaw, mutant_law: LatticeLaw, sizes: SecureNoiseSizes,
                         alpha: float = ALPHA) -> tuple[list[str], dict]:
    """Which tests must reject the mutant, and the bound on each one's miss.

    Chi-square and moments always (DESIGN §6), their miss bounds from the mutant's exact law
    dTLap(t', K) (:func:`chi_square_escape_bound`; ``checks_noise.moments_escape`` with the
    mutant's exact E Z^2, E Z^4 from the reference's ``even_moments`` and |Z| <= K). Each region
    test when its exact miss probability (:func:`region_miss`, the mutant's mass
    ``tail_delta(s, t', K)`` from the reference) is <= ``REQUIRED_MISS``. The support test cannot
    reject (same K). ``info["beta"]`` = the sum of the required tests' bounds (the record's
    beta), the terms in ``info["beta_terms"]``.
    """
    c = exact.config
    n = sizes.n_region(min(m for _, m in exact.regions.values()))
    t2 = mutant_law.scale_units
    terms = {"chi-square": chi_square_escape_bound(exact, mutant_law, sizes.n_gof, alpha)[1]}
    _, m2, m4 = dl.even_moments(t2, c.K, prec=REFERENCE_PREC)
    terms["moments"] = moments_escape(
        sizes.n_gof, variance=exact.variance, fourth_moment=exact.fourth_moment, bound=float(c.K),
        mutant_second_moment=float(m2), mutant_fourth_moment=float(m4), mutant_bound=float(c.K),
        alpha=alpha)[1]
    terms["support"] = {"bound": 1.0, "how": "cannot reject: the mutant has the same support K"}
    region_info = {}
    for name, (shift, mass) in exact.regions.items():
        m_mass = float(dl.tail_delta(shift, t2, c.K, prec=REFERENCE_PREC))
        miss = region_miss(n, mass, m_mass, alpha)
        terms[name] = {"bound": miss, "how": "exact binomial window of one side", "n": n,
                       "shift": shift, "exact_mass": mass, "mutant_mass": m_mass,
                       "acceptance": list(region_acceptance(n, mass, alpha / 2))}
        region_info[name] = {"mutant_mass": m_mass, "exact_mass": mass,
                             "exact_power": region_power(n, mass, m_mass, alpha), "miss_bound": miss}
    for t in terms.values():
        t["bound"] = max(float(t["bound"]), BOUND_FLOOR)
    required = ["chi-square", "moments"]
    required += [name for name in exact.regions if terms[name]["bound"] <= REQUIRED_MISS]
    beta = union(terms[t]["bound"] for t in required)
    return required, {"beta": beta, "beta_terms": {t: terms[t] for t in required},
                      "not_required": {t: terms[t] for t in terms if t not in required},
                      "region_power": region_info}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------

def _record(o: TestOutcome, config: SecureNoiseConfig, extra: dict | None = None) -> CheckRecord:
    return CheckRecord(
        name=f"{o.test} [{config.label}]", kind=o.kind, tests=o.tests, statistic=o.statistic,
        threshold=o.threshold, comparison=o.comparison, passed=not o.rejected, alpha=o.alpha,
        sample_size=o.sample_size, details={**o.details, **(extra or {})},
    )


def _identity_record(exact: ExactLatticeLaw, mutants: dict) -> CheckRecord:
    worst = max(exact.identity_errors.values())
    delta_ok = exact.delta_check is None or exact.delta_check["holds"]
    c = exact.config
    return CheckRecord(
        name=f"reference: exact law [{c.label}]", kind="exact",
        tests=("the closed-form moments agree with the reference (normaliser; pmf summed term by "
               f"term when K <= {SMALL_SUPPORT}), the bin masses sum to 1, the mirror regions have "
               "equal mass, and (laws from secure_parameters) delta_lower <= tail_delta(Delta_int) "
               "<= delta_upper <= delta; statistic the largest relative error"),
        statistic=worst, threshold=REFERENCE_RTOL, comparison="<=",
        passed=worst <= REFERENCE_RTOL and delta_ok,
        details={"relative_errors": exact.identity_errors, "prec_bits": REFERENCE_PREC,
                 "certified_delta": exact.delta_check, "why": c.why, "t": c.t, "K": c.K,
                 "K_over_t": c.K / c.t, "delta_region_shift": c.shift,
                 "block_exponent": dl.block_exponent(c.t, c.K), "exact_variance": exact.variance,
                 "regions": {k: {"shift": v[0], "exact_mass": v[1]} for k, v in exact.regions.items()},
                 "mutants": mutants},
    )


def _power_record(mutant: LatticeMutant, mutant_law: LatticeLaw, exact: ExactLatticeLaw,
                  outcomes: dict[str, TestOutcome], required: list[str], info: dict,
                  sizes: SecureNoiseSizes) -> CheckRecord:
    rejected = [t for t, o in outcomes.items() if o.rejected]
    caught = [t for t in required if t in rejected]
    c = exact.config
    return CheckRecord(
        name=f"power: {mutant.label} [{c.label}]", kind="power",
        tests=(f"the same tests at the same sample sizes reject the fast sampler run with the wrong "
               f"scale t' = {mutant_law.scale_units} (x{mutant_law.scale_units / c.t:.4g}) and the "
               f"same K: every required test ({', '.join(required)}) must reject it; statistic = "
               "how many did; beta = the sum of the required tests' miss bounds from the "
               "mutant's exact law"),
        statistic=float(len(caught)), threshold=float(len(required)), comparison=">=",
        passed=len(caught) == len(required), alpha=None, beta=info["beta"], sample_size=sizes.n_gof,
        details={"mutant_t": mutant_law.scale_units, "actual_factor": mutant_law.scale_units / c.t,
                 "required": required, "rejected_by": rejected,
                 "statistics": {t: o.statistic for t, o in outcomes.items()},
                 "thresholds": {t: o.threshold for t, o in outcomes.items()},
                 "beta": info["beta"], "beta_terms": info["beta_terms"],
                 "not_required": info["not_required"], "region_power": info["region_power"]},
    )


def check_secure_noise(ctx: CheckContext) -> list[CheckRecord]:
    """The hardened (secure-mode) sampler matches the exact discrete truncated Laplace law.

    For laws (t, K) from `secure_parameters` of realistic (Delta, eps, delta) and raw ones --
    t from 1 to 1.1e12, K from 3 to 80 t -- draws of the production sampler
    `dpxattn.fast.secure_noise.sample_noise_units` (seeded numpy generator: an audit) are
    compared with the exact law of `dpxattn.reference.discrete_laplace`: a chi-square test on
    bins of the exact cdf, the mean and variance against the exact moments (Bernstein), the
    support [-K, K] (never left: a sure property), the white-box delta region (draws with
    |z| > K - Delta_int, mass exactly tail_delta(Delta_int) = the certified delta) and the far
    tail (mass about 1e-3), each side by a two-sided Clopper-Pearson test. The fast sampler
    given a tape of random words returns the reference's exact sampler's integers draw for draw.

    Every statistical record has alpha = 1e-6. Power: the same tests are rerun on the same
    sampler given a wrong scale (t x 0.7, x 1.3, and x 0.5 = under-noised) and must reject each
    (`power` records): chi-square and moments always, the region tests where their exact chance
    of missing the mutant is <= 1e-9. A power record's beta (the chance that its mutant escapes,
    i.e. that it fails a correct build) is the sum of the required tests' miss bounds, each
    derived from the mutant's exact law dTLap(t', K): an exact binomial window or a Bernstein
    bound on the chi-square counts, Bernstein on the second moment, the exact binomial miss of
    the region tests (derivation in its details, `beta_terms`); at the quick and standard sizes
    every beta is below 1e-9, and the check's false-alarm total is 2e-5 at quick, 4.3e-5 at
    standard. How to read: a chi-square statistic far below its threshold means the histogram
    matches the exact pmf; a moments statistic is the deviation in units of the Bernstein
    radius; a region statistic is a p-value (>= alpha/2 passes).
    """
    sizes = sizes_for(ctx.level, ctx.scale)
    records: list[CheckRecord] = []
    for config in configs_for(ctx.level):
        ctx.note(f"{config.label}: exact law")
        exact = exact_lattice_law(config, sizes.bins)
        mutant_laws = {m: m.law(config.t, config.K) for m in SECURE_MUTANTS}
        mutant_info = {m.label: (None if law is None else law.scale_units) for m, law in mutant_laws.items()}
        records.append(_identity_record(exact, mutant_info))
        ctx.note(f"{config.label}: conformance on a tape")
        records.append(_record(conformance_test(config, sizes.conformance,
                                                derive_seed(ctx.seed, config.label, "tape")), config))
        ctx.note(f"{config.label}: fast sampler")
        outcomes, summary = evaluate_law(config.law, exact, sizes, derive_seed(ctx.seed, config.label, "fast"))
        extra = {"randomness": summary.randomness, "sampler_seconds": summary.seconds}
        records.extend(_record(o, config, extra) for o in outcomes.values())
        for mutant, law in mutant_laws.items():
            if law is None:
                continue
            ctx.note(f"{config.label}: {mutant.label}")
            m_out, _ = evaluate_law(law, exact, sizes, derive_seed(ctx.seed, config.label, mutant.label))
            required, info = required_power_tests(exact, law, sizes)
            records.append(_power_record(mutant, law, exact, m_out, required, info, sizes))
    return records
