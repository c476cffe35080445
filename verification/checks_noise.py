"""Check 1 of the harness: the fast truncated Laplace sampler against the exact law.

Harness check 1; DESIGN §6; spec PAPER.md §2.1 (TLap, v2 §2 / App. B);
proof notes ``proofs_notes/02-tlap-law.md``, ``03-tlap-privacy-tightness.md`` and
``20-verification-standards.md``.

For each configuration (Delta, eps, delta), including extreme ones, the fast sampler
(``dpxattn.fast.noise.truncated_laplace``, float64, seeded) is compared with the exact law of
the reference (``dpxattn.reference.truncated_laplace``, mpmath at 160 bits):

1. **KS**: the Kolmogorov-Smirnov distance to the exact CDF. The exact CDF is evaluated by the
   reference on a grid of G points (its own quantiles, plus +-A and +-inf); between grid points
   it is bracketed by its values at the ends, which brackets the KS statistic:
   ``D_lo <= D <= D_hi`` with ``D_hi - D_lo <= 1/G``. The test rejects when ``D_lo`` exceeds the
   exact critical value of ``scipy.stats.kstwo`` at alpha, so the false-alarm rate stays <= alpha.
2. **chi-square** on B equiprobable bins of the exact law (edges from the same grid).
3. **moments**: the sample mean against 0 and the sample second moment against the exact
   variance, with Bernstein's inequality (non-asymptotic: the noise is bounded by A; the
   variance of Z^2 uses the exact fourth moment, integrated from the reference density),
   alpha/2 each.
4. **support** (exact, a sure property): no draw ever leaves [-A, A], A from the reference.
5. **delta region** (white box): for neighbours with f(D) = 0 and f(D') = Delta the region
   reachable under D but not under D' is {z < -A + Delta}; the reference says its mass is
   exactly delta (and, by symmetry, that of {z > A - Delta}). The sampler's counts in both
   regions are tested against delta with two-sided Clopper-Pearson (exact binomial) tests at
   alpha/2 per region. This uses more draws than the goodness-of-fit tests (about 1000/delta,
   capped), because the regions are rare.
6. **reference** (exact): the region's mass, the reference's ``uncovered_mass(Delta)`` and its
   ``hockey_stick(Delta, eps)`` all equal delta (to 25 significant digits).

Power (DESIGN §6): the same tests at the same sample sizes are run on the mutants of
:mod:`dpxattn.verification.mutants_noise` (scale x0.7 and x1.3: the fast sampler's draws times
f, so a mutant draw is fZ with CDF F(x/f), F the reference's exact CDF). KS, chi-square and
moments must reject both; the support test must reject a mutant whenever its exact miss
probability (1 - P[|fZ| > A])^n at this sample size is <= ``REQUIRED_MISS`` = 1e-9 (x1.3 only: a
narrower law never leaves the support), and the delta-region test likewise (its exact miss
from the mutant's exact region mass and the binomial acceptance interval). The power record's
``beta`` (the chance that the mutant escapes, i.e. that the record fails a correct build) is
the sum over the required tests of a rigorous bound on each one's miss, from the mutant's exact
law (``details["beta_terms"]``): KS, DKW (Massart) at the mutant's sup-distance to F minus the
critical value and the grid bracket (:func:`ks_escape`); chi-square, the exact binomial window
of the best bin, or Bernstein on the projection of the counts onto the likelihood ratio
(Cauchy-Schwarz: X^2 >= that projection squared), or no draw in the cell below -A, whichever is
smallest (:func:`chi_square_escape_bound`); moments, Bernstein on the mutant's sample second
moment at its exact mean f^2 Var Z, variance f^4 E Z^4 - f^4 Var^2 and range f^2 A^2
(:func:`moments_escape`); support and delta region, their exact miss. The bounds take a correct
build's draws to follow the exact law, as every alpha does. Bounds below 1e-300 (float64
underflow) are reported as 1e-300. Every statistical assertion has alpha = 1e-6 (4 per
configuration: 1.6e-5 at quick, 3.2e-5 at standard); at the quick and standard sizes every power
record has beta < 1e-20 (in general at most 2e-9 plus the KS, chi-square and moments bounds).

Shapes: samplers return 1-D float64 arrays; every record is a ``CheckRecord``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mpmath
import numpy as np
import torch
from scipy import stats

from dpxattn.randomness import derive_seed
from dpxattn.verification.mutants_noise import FAST_SAMPLER, SCALE_MUTANTS, NoiseSampler
from dpxattn.verification.power_bounds import (bernstein_escape, binomial_window_upper,
                                               chi_square_escape, dkw_escape, never_hit, union)
from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "ALPHA",
    "REFERENCE_RTOL",
    "NoiseConfig",
    "NoiseSizes",
    "STANDARD_CONFIGS",
    "QUICK_CONFIGS",
    "sizes_for",
    "configs_for",
    "ExactLaw",
    "exact_law",
    "SampleSummary",
    "draw_summary",
    "TestOutcome",
    "ks_test",
    "chi_square_test",
    "moments_test",
    "support_test",
    "region_test",
    "bernstein_radius",
    "bernstein_moments",
    "exact_fourth_moment",
    "region_acceptance",
    "evaluate_sampler",
    "REQUIRED_MISS",
    "chi_square_cells",
    "moment_radii",
    "moments_escape",
    "ks_escape",
    "chi_square_escape_bound",
    "required_power_tests",
    "run_noise_tests",
    "check_noise",
]

#: false-alarm rate of every statistical assertion of this check (DESIGN §6: <= 1e-6)
ALPHA = 1e-6
#: the reference's white-box identities must hold to this relative error (25 digits)
REFERENCE_RTOL = 1e-25
#: working precision (bits) of the reference evaluations made here
REFERENCE_PREC = 160
#: support and delta region must reject a mutant when their exact miss probability against it
#: at the check's sample size is at most this (KS, chi-square and moments always must)
REQUIRED_MISS = 1e-9
#: escape bounds below this are reported as this (float64 evaluation underflows near 1e-308)
BOUND_FLOOR = 1e-300
#: grid points at which the KS bound evaluates the mutant's distance to the exact CDF
KS_DISTANCE_POINTS = 256
#: a private mpmath context at REFERENCE_PREC (the global precision is never touched)
_MP = mpmath.MPContext()
_MP.prec = REFERENCE_PREC
#: target expected count in each delta region (sets the region sample size, before the cap)
REGION_TARGET_COUNT = 1000


@dataclass(frozen=True)
class NoiseConfig:
    """One TLap(Delta, eps, delta) configuration; ``plot`` draws its histogram in the report."""

    sensitivity: float
    eps: float
    delta: float
    plot: bool = False
    why: str = ""

    @property
    def label(self) -> str:
        return f"TLap(Delta={self.sensitivity:g}, eps={self.eps:g}, delta={self.delta:g})"

    @property
    def slug(self) -> str:
        return f"tlap_D{self.sensitivity:g}_e{self.eps:g}_d{self.delta:g}".replace("+", "")


#: DESIGN §6 "several (Delta, eps, delta), including extreme ones"
STANDARD_CONFIGS: tuple[NoiseConfig, ...] = (
    NoiseConfig(1.0, 1.0, 1e-5, plot=True, why="golden values of PAPER App. B"),
    NoiseConfig(1.0, 0.05, 1e-6, plot=True, why="small eps: wide support (A = 203)"),
    NoiseConfig(3.0, 2.0, 0.4, plot=True, why="large delta: support barely wider than Delta"),
    NoiseConfig(1.0, 1.0, 0.5, why="delta = 1/2 exactly: A = Delta, the boundary case"),
    NoiseConfig(2.5, 0.3, 1e-3, why="check value of PAPER §2.1"),
    NoiseConfig(1.0, 10.0, 1e-9, why="large eps, tiny delta: narrow law, far truncation"),
    NoiseConfig(1e-4, 0.5, 1e-7, why="tiny sensitivity (scale 2e-4)"),
    NoiseConfig(1e4, 0.01, 1e-6, why="huge sensitivity and tiny eps (scale 1e6, A = 8.5e6)"),
)
#: the CI subset: same tests, fewer configurations and fewer rare-region draws
QUICK_CONFIGS: tuple[NoiseConfig, ...] = (
    STANDARD_CONFIGS[0], STANDARD_CONFIGS[2], STANDARD_CONFIGS[3], STANDARD_CONFIGS[5],
)


@dataclass(frozen=True)
class NoiseSizes:
    """Sample sizes: goodness-of-fit draws, the cap on delta-region draws, grid and bins."""

    n_gof: int
    region_cap: int
    grid: int
    bins: int

    def n_region(self, delta: float) -> int:
        want = math.ceil(REGION_TARGET_COUNT / delta)
        return int(min(max(want, self.n_gof), max(self.region_cap, self.n_gof)))


def sizes_for(level: str, scale: float = 1.0) -> NoiseSizes:
    """quick: 1.2e5 draws, regions up to 2e6; standard: 1.2e5 (DESIGN §6), regions up to 2e7;
    full: standard times ``scale``."""
    if level == "quick":
        return NoiseSizes(n_gof=120_000, region_cap=2_000_000, grid=2048, bins=200)
    if level == "standard":
        return NoiseSizes(n_gof=120_000, region_cap=20_000_000, grid=4096, bins=256)
    f = max(float(scale), 1.0)
    return NoiseSizes(n_gof=int(120_000 * f), region_cap=int(20_000_000 * f), grid=8192, bins=512)


def configs_for(level: str) -> tuple[NoiseConfig, ...]:
    return QUICK_CONFIGS if level == "quick" else STANDARD_CONFIGS


# ---------------------------------------------------------------------------------------------
# The exact law, from the reference
# ---------------------------------------------------------------------------------------------

@dataclass
class ExactLaw:
    """The exact quantities of one configuration, all computed by the reference.

    ``grid`` (length G + 3) holds -inf, -A, the reference quantiles ppf(j/G) for j = 1..G-1 (as
    float64 points), A, +inf; ``grid_cdf`` the reference CDF at those exact float points.
    """

    config: NoiseConfig
    A: mpmath.mpf
    A_float: float
    variance: float
    fourth_moment: float
    grid: np.ndarray
    grid_cdf: np.ndarray
    region_low_edge: float
    region_high_edge: float
    region_mass: float
    reference_errors: dict

    def density(self, x: np.ndarray) -> np.ndarray:
        from dpxattn.reference import truncated_laplace as tl

        c = self.config
        return np.array([float(tl.pdf(float(v), c.sensitivity, c.eps, c.delta, prec=REFERENCE_PREC))
                         for v in np.asarray(x, dtype=np.float64)])

    def mutant_cdf_mp(self, factor: float, x: float):
        """Exact P[factor Z <= x] = F(x / factor) (mpf; x may be +-inf)."""
        from dpxattn.reference import truncated_laplace as tl

        if x == -math.inf:
            return mpmath.mpf(0)
        if x == math.inf:
            return mpmath.mpf(1)
        c = self.config
        return tl.cdf(_MP.mpf(x) / factor, c.sensitivity, c.eps, c.delta, prec=REFERENCE_PREC)

    def mutant_cdf(self, factor: float, x: float) -> float:
        """Exact P[factor Z <= x] as a float."""
        return float(self.mutant_cdf_mp(factor, x))

    def mutant_region_mass(self, factor: float) -> float:
        """Exact mass of {factor Z < -A + Delta} (= that of {factor Z > A - Delta})."""
        from dpxattn.reference import truncated_laplace as tl

        c = self.config
        edge = _MP.mpf(self.region_low_edge) / factor
        return float(tl.cdf(edge, c.sensitivity, c.eps, c.delta, prec=REFERENCE_PREC))

    def mutant_exceed_prob(self, factor: float) -> float:
        """Exact P[|factor Z| > A] (0 when factor <= 1)."""
        from dpxattn.reference import truncated_laplace as tl

        if factor <= 1.0:
            return 0.0
        c = self.config
        return float(tl.tail(self.A / factor, c.sensitivity, c.eps, c.delta, prec=REFERENCE_PREC))


def exact_fourth_moment(sensitivity, eps, delta) -> float:
    """E Z^4 of TLap(Delta, eps, delta): 2 int_0^A x^4 pdf(x) dx, the reference density
    integrated by mpmath quadrature (a smooth integrand on [0, A]; ~30 correct digits)."""
    from dpxattn.reference import truncated_laplace as tl

    p = REFERENCE_PREC
    ctx = mpmath.MPContext()  # private context: the global mpmath precision is never touched
    ctx.prec = p
    A = tl.support_bound(sensitivity, eps, delta, prec=p)
    half = ctx.quad(lambda x: x**4 * tl.pdf(x, sensitivity, eps, delta, prec=p), [0, A])
    return float(2 * half)


def exact_law(config: NoiseConfig, grid_points: int) -> ExactLaw:
    """Evaluate the reference for one configuration (grid CDF, moments, the delta identities)."""
    from dpxattn.reference import truncated_laplace as tl

    D, e, dl, p = config.sensitivity, config.eps, config.delta, REFERENCE_PREC
    A = tl.support_bound(D, e, dl, prec=p)
    A_float = float(A)
    inner = [float(tl.ppf(mpmath.mpf(j) / grid_points, D, e, dl, prec=p)) for j in range(1, grid_points)]
    pts = np.array([-math.inf, -A_float, *inner, A_float, math.inf], dtype=np.float64)
    if not np.all(np.diff(pts) > 0):
        pts = np.unique(pts)
    cdf = np.empty_like(pts)
    cdf[0], cdf[-1] = 0.0, 1.0
    for i in range(1, len(pts) - 1):
        cdf[i] = float(tl.cdf(float(pts[i]), D, e, dl, prec=p))
    var = tl.variance(D, e, dl, prec=p)
    fourth = exact_fourth_moment(D, e, dl)
    ctx = mpmath.MPContext()  # private context: the global mpmath precision is never touched
    ctx.prec = p
    # white-box identities of the reference: all equal delta
    Dm = ctx.mpf(D)
    dm = ctx.mpf(dl)
    low_mass = tl.cdf(-A + Dm, D, e, dl, prec=p)
    high_mass = tl.tail(A - Dm, D, e, dl, prec=p) / 2
    identities = {
        "cdf(-A + Delta)": low_mass,
        "P[Z > A - Delta] = tail(A - Delta)/2": high_mass,
        "uncovered_mass(Delta)": tl.uncovered_mass(D, D, e, dl, prec=p),
        "hockey_stick(Delta, eps)": tl.hockey_stick(D, e, D, e, dl, prec=p),
    }
    errors = {k: float(abs(v - dm) / dm) for k, v in identities.items()}
    return ExactLaw(config=config, A=A, A_float=A_float, variance=float(var), fourth_moment=float(fourth),
                    grid=pts, grid_cdf=cdf, region_low_edge=float(-A + Dm),
                    region_high_edge=float(A - Dm), region_mass=float(dm), reference_errors=errors)


# ---------------------------------------------------------------------------------------------
# Draws
# ---------------------------------------------------------------------------------------------

@dataclass
class SampleSummary:
    """What the tests need from one sampler's draws at one configuration."""

    gof: np.ndarray           # sorted goodness-of-fit draws (n_gof)
    n_region: int             # draws behind the region counts and the support maximum
    low_count: int            # draws with z < -A + Delta
    high_count: int           # draws with z > A - Delta
    max_abs: float            # max |z| over all n_region draws
    first: np.ndarray = field(default_factory=lambda: np.empty(0))  # unsorted head, for plots


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)


def draw_summary(sampler: NoiseSampler, law: ExactLaw, sizes: NoiseSizes, seed: int,
                 chunk: int = 1 << 21) -> SampleSummary:
    """Draw ``n_gof`` draws (kept) and then more, in chunks, up to ``n_region`` (counted only)."""
    c = law.config
    gen = _generator(seed)
    x = np.asarray(sampler(sizes.n_gof, c.sensitivity, c.eps, c.delta, gen), dtype=np.float64)
    n_region = sizes.n_region(c.delta)
    low = int(np.count_nonzero(x < law.region_low_edge))
    high = int(np.count_nonzero(x > law.region_high_edge))
    max_abs = float(np.max(np.abs(x)))
    done = x.size
    while done < n_region:
        k = min(chunk, n_region - done)
        y = np.asarray(sampler(k, c.sensitivity, c.eps, c.delta, gen), dtype=np.float64)
        low += int(np.count_nonzero(y < law.region_low_edge))
        high += int(np.count_nonzero(y > law.region_high_edge))
        max_abs = max(max_abs, float(np.max(np.abs(y))))
        done += k
    return SampleSummary(gof=np.sort(x), n_region=done, low_count=low, high_count=high,
                         max_abs=max_abs, first=x[:50_000].copy())


# ---------------------------------------------------------------------------------------------
# The tests (each returns a TestOutcome; "rejected" means the sampler fails it)
# ---------------------------------------------------------------------------------------------

@dataclass
class TestOutcome:
    """One test of one sampler at one configuration."""

    test: str
    tests: str
    kind: str
    statistic: float
    threshold: float
    comparison: str
    rejected: bool
    alpha: float | None
    sample_size: int
    details: dict = field(default_factory=dict)


def ks_test(s: SampleSummary, law: ExactLaw, alpha: float = ALPHA) -> TestOutcome:
    """KS distance to the exact CDF, bracketed on the reference grid; rejects when D_lo > crit."""
    x = s.gof
    n = x.size
    j = np.searchsorted(law.grid, x, side="right") - 1
    j = np.clip(j, 0, law.grid.size - 2)
    f_lo = law.grid_cdf[j]
    f_hi = law.grid_cdf[j + 1]
    i = np.arange(1, n + 1, dtype=np.float64)
    d_lo = max(float(np.max(i / n - f_hi)), float(np.max(f_lo - (i - 1) / n)), 0.0)
    d_hi = max(float(np.max(i / n - f_lo)), float(np.max(f_hi - (i - 1) / n)))
    crit = float(stats.kstwo.isf(alpha, n))
    return TestOutcome(
        test="KS", kind="statistical",
        tests=("Kolmogorov-Smirnov distance between the draws and the reference's exact CDF is "
               "below the exact critical value at alpha (scipy kstwo); the statistic is the lower "
               "end of the bracket [D_lo, D_hi] from the reference CDF on a grid"),
        statistic=d_lo, threshold=crit, comparison="<=", rejected=d_lo > crit, alpha=alpha,
        sample_size=n,
        details={"D_lo": d_lo, "D_hi": d_hi, "grid_points": int(law.grid.size - 2),
                 "p_value_at_D_lo": float(stats.kstwo.sf(d_lo, n))},
    )


def chi_square_cells(law: ExactLaw, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The cells of the chi-square test: ``edges`` (grid points, -inf and +inf at the ends; cell
    j is [edges[j], edges[j+1]), the last one also holds +inf) and their exact masses ``prob``
    (from the reference's grid CDF; 0 for the cell below -A)."""
    G = law.grid.size - 3       # quantile intervals between -A and A
    step = max(G // bins, 1)
    idx = sorted(set([0] + list(range(1, law.grid.size - 1, step)) + [law.grid.size - 1]))
    return law.grid[idx], np.diff(law.grid_cdf[idx])


def chi_square_test(s: SampleSummary, law: ExactLaw, bins: int, alpha: float = ALPHA) -> TestOutcome:
    """Pearson chi-square on ``bins`` equiprobable bins of the exact law (tails included)."""
    x = s.gof
    n = x.size
    edges, prob = chi_square_cells(law, bins)
    counts = np.diff(np.searchsorted(x, edges, side="left"))
    counts[-1] += int(np.count_nonzero(x == math.inf))
    keep = prob > 0
    expected = n * prob[keep]
    observed = counts[keep].astype(np.float64)
    lost = int(counts[~keep].sum())  # draws in bins of exact probability zero (outside [-A, A])
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    dof = int(keep.sum()) - 1
    if lost:
        chi2 = math.inf
    crit = float(stats.chi2.isf(alpha, dof))
    return TestOutcome(
        test="chi-square", kind="statistical",
        tests=(f"Pearson chi-square of the draws on {int(keep.sum())} equiprobable bins of the "
               "reference's exact law is below the chi-square quantile at alpha"),
        statistic=chi2, threshold=crit, comparison="<=", rejected=not chi2 <= crit, alpha=alpha,
        sample_size=n,
        details={"bins": int(keep.sum()), "dof": dof, "min_expected": float(expected.min()),
                 "draws_in_zero_probability_bins": lost},
    )


def bernstein_radius(n: int, variance: float, bound: float, alpha: float) -> float:
    """Smallest t with 2 exp(-n t^2 / (2 variance + 2 bound t / 3)) <= alpha (Bernstein).

    For the mean of n iid variables with the given variance and |Y - E Y| <= bound, the
    sample mean is within t of its expectation with probability >= 1 - alpha.
    """
    L = math.log(2.0 / alpha)
    b = 2.0 * bound * L / 3.0
    return (b + math.sqrt(b * b + 8.0 * n * variance * L)) / (2.0 * n)


def moments_test(s: SampleSummary, law: ExactLaw, alpha: float = ALPHA) -> TestOutcome:
    """Sample mean against 0 and sample second moment against the exact variance (Bernstein)."""
    return bernstein_moments(s.gof, variance=law.variance, fourth_moment=law.fourth_moment,
                             bound=law.A_float, alpha=alpha, noise="bounded noise")


def moment_radii(n: int, variance: float, fourth_moment: float, bound: float,
                 alpha: float) -> tuple[float, float]:
    """The acceptance radii of the moments test on ``n`` draws: (mean radius, second-moment
    radius), Bernstein at alpha/2 each (Z^2 has variance E Z^4 - var^2 and range [0, bound^2])."""
    t_mean = bernstein_radius(n, variance, bound, alpha / 2)
    var_of_sq = max(fourth_moment - variance * variance, 0.0)
    t_var = bernstein_radius(n, var_of_sq, max(variance, bound * bound - variance), alpha / 2)
    return t_mean, t_var


def bernstein_moments(x: np.ndarray, *, variance: float, fourth_moment: float, bound: float,
                      alpha: float, noise: str) -> TestOutcome:
    """The moments test on draws ``x`` (1-D) of a symmetric law bounded by ``bound``: the sample
    mean within the Bernstein radius of 0 and the sample second moment within that of the exact
    ``variance`` (the variance of Z^2 from the exact ``fourth_moment``), alpha/2 each. Shared by
    the float sampler's check and the hardened sampler's (``checks_secure_noise``)."""
    n = x.size
    var = variance
    t_mean, t_var = moment_radii(n, var, fourth_moment, bound, alpha)
    mean = float(np.mean(x))
    m2 = float(np.mean(x * x))
    ratio = max(abs(mean) / t_mean, abs(m2 - var) / t_var)
    return TestOutcome(
        test="moments", kind="statistical",
        tests=("sample mean within the Bernstein radius of 0 and sample second moment within the "
               f"Bernstein radius of the reference's exact variance (alpha/2 each; {noise}, "
               "exact fourth moment); the statistic is the larger deviation in radius units"),
        statistic=ratio, threshold=1.0, comparison="<=", rejected=not ratio <= 1.0, alpha=alpha,
        sample_size=n,
        details={"mean": mean, "mean_radius": t_mean, "second_moment": m2, "exact_variance": var,
                 "variance_radius": t_var, "relative_variance_error": (m2 - var) / var,
                 "exact_fourth_moment": fourth_moment},
    )


def moments_escape(n: int, *, variance: float, fourth_moment: float, bound: float,
                   mutant_second_moment: float, mutant_fourth_moment: float, mutant_bound: float,
                   alpha: float = ALPHA) -> tuple[float, dict]:
    """Upper bound on P(the moments test accepts a mutant): it accepts only if the sample second
    moment m2 lies within t_var of the exact ``variance``, so |m2 - mu'| >= |mu' - var| - t_var
    with mu' the mutant's E Z^2; Z^2 has variance E Z^4 - mu'^2 and lies in [0, mutant_bound^2]
    under the mutant (``power_bounds.bernstein_escape``). The mean half gives nothing against
    a symmetric mutant and is not used."""
    _, t_var = moment_radii(n, variance, fourth_moment, bound, alpha)
    mu = float(mutant_second_moment)
    var_y = max(float(mutant_fourth_moment) - mu * mu, 0.0)
    range_y = max(mu, float(mutant_bound) ** 2 - mu)
    # 1e-9 relative: float rounding of the sample second moment and of the exact moments
    gap = abs(mu - variance) - t_var - 1e-9 * (mu + variance)
    b = bernstein_escape(n, gap, var_y, range_y)
    return b, {"bound": b, "how": "Bernstein on the sample second moment", "n": n,
               "acceptance_radius": t_var, "null_second_moment": variance,
               "mutant_second_moment": mu, "mutant_var_of_square": var_y,
               "mutant_square_range": range_y, "gap": gap}


def support_test(s: SampleSummary, law: ExactLaw) -> TestOutcome:
    """Exact: max |z| over every draw is <= A (the reference's A; compared exactly in mpmath)."""
    ok = mpmath.mpf(s.max_abs) <= law.A
    return TestOutcome(
        test="support", kind="exact",
        tests="no draw leaves the support [-A, A] of the exact law (A from the reference); "
              "statistic max|z|/A over every draw of the configuration",
        statistic=s.max_abs / law.A_float, threshold=1.0, comparison="<=", rejected=not ok,
        alpha=None, sample_size=s.n_region,
        details={"max_abs": s.max_abs, "A": float(law.A)},
    )


def _binom_two_sided_p(k: int, n: int, p: float) -> float:
    """Two-sided exact (Clopper-Pearson-consistent) p-value: 2 min(P[X <= k], P[X >= k])."""
    lo = float(stats.binom.cdf(k, n, p))
    hi = float(stats.binom.sf(k - 1, n, p))
    return min(1.0, 2.0 * min(lo, hi))


def region_acceptance(n: int, p: float, alpha_region: float) -> tuple[int, int]:
    """Counts k accepted by the two-sided exact test at level ``alpha_region``: [k_lo, k_hi]."""
    a = alpha_region / 2
    k_lo = int(stats.binom.ppf(a, n, p))
    while stats.binom.cdf(k_lo, n, p) <= a:
        k_lo += 1
    while k_lo > 0 and stats.binom.cdf(k_lo - 1, n, p) > a:
        k_lo -= 1
    k_hi = int(stats.binom.isf(a, n, p))
    while k_hi > 0 and stats.binom.sf(k_hi - 1, n, p) <= a:
        k_hi -= 1
    while stats.binom.sf(k_hi, n, p) > a:
        k_hi += 1
    return k_lo, k_hi


def region_test(s: SampleSummary, law: ExactLaw, alpha: float = ALPHA) -> TestOutcome:
    """Counts in {z < -A + Delta} and {z > A - Delta} against delta (alpha/2 per region)."""
    n = s.n_region
    p = law.region_mass
    p_low = _binom_two_sided_p(s.low_count, n, p)
    p_high = _binom_two_sided_p(s.high_count, n, p)
    stat = min(p_low, p_high)
    conf = 1.0 - alpha / 2
    ci = {}
    for name, k in (("low", s.low_count), ("high", s.high_count)):
        r = stats.binomtest(k, n, p).proportion_ci(confidence_level=conf, method="exact")
        ci[name] = [float(r.low), float(r.high)]
    return TestOutcome(
        test="delta region", kind="statistical",
        tests=("white box: the fraction of draws in the region reachable under D but not under a "
               "neighbour D' (z < -A + Delta, and its mirror z > A - Delta) matches its exact mass "
               "delta: two-sided Clopper-Pearson test per region at alpha/2; statistic = the "
               "smaller p-value"),
        statistic=stat, threshold=alpha / 2, comparison=">=", rejected=not stat >= alpha / 2,
        alpha=alpha, sample_size=n,
        details={"exact_mass": p, "low_count": s.low_count, "high_count": s.high_count,
                 "expected_count": n * p, "clopper_pearson_low": ci["low"],
                 "clopper_pearson_high": ci["high"], "p_value_low": p_low, "p_value_high": p_high},
    )


def evaluate_sampler(sampler: NoiseSampler, law: ExactLaw, sizes: NoiseSizes, seed: int,
                     alpha: float = ALPHA) -> tuple[dict[str, TestOutcome], SampleSummary]:
    """Run the five tests of check 1 on one sampler at one configuration."""
    s = draw_summary(sampler, law, sizes, seed)
    outcomes = {
        "KS": ks_test(s, law, alpha),
        "chi-square": chi_square_test(s, law, sizes.bins, alpha),
        "moments": moments_test(s, law, alpha),
        "support": support_test(s, law),
        "delta region": region_test(s, law, alpha),
    }
    return outcomes, s


def ks_escape(law: ExactLaw, factor: float, n: int, alpha: float = ALPHA,
              points: int = KS_DISTANCE_POINTS) -> tuple[float, dict]:
    """Upper bound on P(the KS test accepts the scale-``factor`` mutant at ``n`` draws).

    The test accepts iff D_lo <= crit, and D_lo >= D - h (h = the largest CDF step of the
    reference grid: ``ks_test`` brackets F between grid points), so it accepts only if the true
    KS distance D <= crit + h. The mutant fZ has CDF G(x) = F(x/f) exactly (F from the
    reference); its sup-distance to F is at least ``dist`` = the largest |F(x/f) - F(x)| over
    ``points`` grid points of the exact law (less 1e-12 for the float grid values), and DKW
    (``power_bounds.dkw_escape``) bounds P(D <= crit + h) by 2 exp(-2 n (dist - crit - h)^2).
    """
    crit = float(stats.kstwo.isf(alpha, n))
    h = float(np.max(np.diff(law.grid_cdf))) + 1e-12
    finite = law.grid[1:-1]
    stride = max(1, finite.size // points)
    pick = np.unique(np.r_[np.arange(0, finite.size, stride), finite.size - 1])
    best, where = 0.0, 0.0
    for i in pick:
        x = float(finite[i])
        d = abs(law.mutant_cdf(factor, x) - float(law.grid_cdf[i + 1]))
        if d > best:
            best, where = d, x
    dist = best - 1e-12
    b = dkw_escape(n, crit + h, dist)
    return b, {"bound": b, "how": "DKW (Massart) at the mutant's exact sup-distance", "n": n,
               "critical": crit, "grid_bracket": h, "distance_lower_bound": dist,
               "distance_at": where, "points": int(pick.size)}


def chi_square_escape_bound(law: ExactLaw, factor: float, n: int, bins: int,
                            alpha: float = ALPHA) -> tuple[float, dict]:
    """Upper bound on P(the chi-square test accepts the scale-``factor`` mutant at ``n`` draws):
    the test's cells (:func:`chi_square_cells`), the mutant's exact cell masses G(e_{j+1}) -
    G(e_j) with G(x) = F(x/f) from the reference, and ``power_bounds.chi_square_escape``: the
    smallest of the best cell's exact binomial window, Bernstein on the projection of the counts
    onto the likelihood ratio, and P(no draw in the cell below -A, where X^2 is infinite)."""
    edges, prob = chi_square_cells(law, bins)
    keep = prob > 0
    crit = float(stats.chi2.isf(alpha, int(keep.sum()) - 1))
    g = [law.mutant_cdf_mp(factor, float(e)) for e in edges]
    q = np.array([float(g[j + 1] - g[j]) for j in range(len(edges) - 1)])
    q = np.clip(q, 0.0, 1.0)
    b, info = chi_square_escape(n, crit, prob[keep], q[keep], infinite_mass=float(q[~keep].sum()))
    return b, {"bound": b, "how": "chi-square escape (best cell window / projection / no draw "
               "below -A)", "n": n, "critical": crit, **info}


def required_power_tests(law: ExactLaw, factor: float, sizes: NoiseSizes,
                         alpha: float = ALPHA) -> tuple[list[str], dict]:
    """Which tests must reject the scale-``factor`` mutant, and the bound on each one's miss.

    KS, chi-square and moments always (DESIGN §6): their miss bounds come from the mutant's
    exact law (:func:`ks_escape`, :func:`chi_square_escape_bound`, :func:`moments_escape`).
    Support and delta region when their exact miss probability at this sample size is <=
    ``REQUIRED_MISS``: support, (1 - P[|fZ| > A])^n; delta region, the exact binomial
    probability that one region's count of the mutant stays in the acceptance interval. The
    record's ``beta`` is the sum of the required tests' bounds (``info["beta"]``; the terms in
    ``info["beta_terms"]``).
    """
    n_gof = sizes.n_gof
    n = sizes.n_region(law.config.delta)
    terms = {}
    terms["KS"] = ks_escape(law, factor, n_gof, alpha)[1]
    terms["chi-square"] = chi_square_escape_bound(law, factor, n_gof, sizes.bins, alpha)[1]
    # the mutant fZ: E (fZ)^2 = f^2 var, E (fZ)^4 = f^4 m4, |fZ| <= f A
    terms["moments"] = moments_escape(
        n_gof, variance=law.variance, fourth_moment=law.fourth_moment, bound=law.A_float,
        mutant_second_moment=factor**2 * law.variance, mutant_fourth_moment=factor**4 * law.fourth_moment,
        mutant_bound=factor * law.A_float * (1 + 1e-15), alpha=alpha)[1]
    q = law.mutant_exceed_prob(factor)
    support_miss = never_hit(n, q)
    terms["support"] = {"bound": support_miss, "how": "exact: (1 - q)^n, q = P[|fZ| > A]", "n": n,
                        "mutant_exceed_probability": q}
    p_mut = law.mutant_region_mass(factor)
    k_lo, k_hi = region_acceptance(n, law.region_mass, alpha / 2)
    # one region accepting is necessary for the test to accept; the interval is widened by one
    # count at each end (the p-value's boundary ties)
    region_miss = binomial_window_upper(n, p_mut, k_lo - 1, k_hi + 1)
    terms["delta region"] = {"bound": region_miss, "how": "exact binomial window of one region",
                             "n": n, "exact_mass": law.region_mass, "mutant_region_mass": p_mut,
                             "acceptance": [k_lo, k_hi]}
    for t in terms.values():
        t["bound"] = max(float(t["bound"]), BOUND_FLOOR)
    required = ["KS", "chi-square", "moments"]
    required += [t for t in ("support", "delta region") if terms[t]["bound"] <= REQUIRED_MISS]
    beta = union(terms[t]["bound"] for t in required)
    region_power = float(stats.binom.cdf(k_lo - 1, n, p_mut) + stats.binom.sf(k_hi, n, p_mut)) \
        if k_lo > 0 else float(stats.binom.sf(k_hi, n, p_mut))
    return required, {"beta": beta, "beta_terms": {t: terms[t] for t in required},
                      "not_required": {t: terms[t] for t in terms if t not in required},
                      "support_exact_power": -math.expm1(n * math.log1p(-q)) if q < 1 else 1.0,
                      "region_exact_power": region_power,
                      "mutant_region_mass": p_mut, "mutant_exceed_probability": q,
                      "region_acceptance": [k_lo, k_hi]}


def _record(o: TestOutcome, config: NoiseConfig, *, prefix: str = "") -> CheckRecord:
    return CheckRecord(
        name=f"{prefix}{o.test} [{config.label}]", kind=o.kind, tests=o.tests,
        statistic=o.statistic, threshold=o.threshold, comparison=o.comparison,
        passed=not o.rejected, alpha=o.alpha, sample_size=o.sample_size, details=dict(o.details),
    )


def _reference_record(law: ExactLaw) -> CheckRecord:
    worst = max(law.reference_errors.values())
    return CheckRecord(
        name=f"reference: delta region mass [{law.config.label}]", kind="exact",
        tests=("the reference's exact law: the region reachable under D but not D' has mass "
               "exactly delta (cdf(-A + Delta), its mirror, uncovered_mass(Delta) and "
               "hockey_stick(Delta, eps) all equal delta); statistic the largest relative error"),
        statistic=worst, threshold=REFERENCE_RTOL, comparison="<=", passed=worst <= REFERENCE_RTOL,
        details={"relative_errors": law.reference_errors, "prec_bits": REFERENCE_PREC},
    )


def _power_record(mutant, law: ExactLaw, outcomes: dict[str, TestOutcome], required: list[str],
                  power_info: dict, sizes: NoiseSizes) -> CheckRecord:
    rejected = [t for t, o in outcomes.items() if o.rejected]
    caught = [t for t in required if t in rejected]
    return CheckRecord(
        name=f"power: {mutant.label} [{law.config.label}]", kind="power",
        tests=("the same tests at the same sample sizes reject the wrong sampler: every required "
               f"test ({', '.join(required)}) must reject it; statistic = how many did; beta = "
               "the sum of the required tests' miss bounds from the mutant's exact law"),
        statistic=float(len(caught)), threshold=float(len(required)), comparison=">=",
        passed=len(caught) == len(required), alpha=None, beta=power_info["beta"],
        sample_size=sizes.n_gof,
        details={"required": required, "rejected_by": rejected,
                 "statistics": {t: o.statistic for t, o in outcomes.items()},
                 "thresholds": {t: o.threshold for t, o in outcomes.items()}, **power_info},
    )


def run_noise_tests(sampler: NoiseSampler, configs, sizes: NoiseSizes, seed: int,
                    alpha: float = ALPHA, laws: dict | None = None) -> list[CheckRecord]:
    """The five tests of check 1 on ``sampler`` at each configuration, as records.

    Records pass when the sampler passes; tests call this with the mutants to see them fail.
    ``laws`` may hold precomputed :class:`ExactLaw` s keyed by configuration.
    """
    out = []
    for config in configs:
        law = (laws or {}).get(config) or exact_law(config, sizes.grid)
        outcomes, _ = evaluate_sampler(sampler, law, sizes, derive_seed(seed, config.label, sampler.label), alpha)
        out.extend(_record(o, config, prefix=f"{sampler.label}: " if sampler.mutant else "")
                   for o in outcomes.values())
    return out


def _plot(ctx: CheckContext, law: ExactLaw, correct: SampleSummary, mutants: dict) -> str | None:
    from dpxattn.verification.plots import plot_noise_histogram

    path = ctx.plot_path(f"noise_{law.config.slug}.png")
    if path is None:
        return None
    plot_noise_histogram(correct.first, law.density, law.A_float, path,
                         title=f"fast sampler vs exact density: {law.config.label}",
                         extra={m.label: s.first[:50_000] for m, s in mutants.items()},
                         regions=[(-law.A_float, law.region_low_edge), (law.region_high_edge, law.A_float)],
                         region_label="delta regions (mass delta each)")
    return str(path)


def check_noise(ctx: CheckContext) -> list[CheckRecord]:
    """Check 1: the fast truncated Laplace sampler matches the exact law (PAPER §2.1).

    At each (Delta, eps, delta), including extreme ones (eps from 0.01 to 10, delta from 1e-9
    to 1/2, Delta from 1e-4 to 1e4), draws from the production sampler
    `dpxattn.fast.noise.truncated_laplace` are compared with the exact law computed by the
    reference at 160 bits: a Kolmogorov-Smirnov test and a chi-square test against the exact CDF,
    the mean and variance against the exact moments, the support bound A (never exceeded: a sure
    property), and the white-box delta region - the draws that a neighbouring dataset could
    never produce must occur with probability exactly delta, which is what makes the
    mechanism (eps, delta)-DP and no worse. The reference's own identities (that region's mass,
    the uncovered mass and the hockey-stick divergence all equal delta) are checked exactly.

    Every statistical record has alpha = 1e-6. Power: the same tests are rerun on the sampler
    with its scale multiplied by 0.7 and by 1.3 and must reject both (`power` records): KS,
    chi-square and moments always, support and delta region where their exact chance of
    missing the mutant is <= 1e-9. A power record's beta (the chance that its mutant escapes,
    i.e. that it fails a correct build) is the sum of the required tests' miss bounds, each
    derived from the mutant's exact law F(x/f): DKW at the mutant's distance to the exact CDF
    (KS), an exact binomial window or a Bernstein bound on the chi-square counts, Bernstein on
    the second moment, and the exact binomial miss of support and delta region (derivation in
    its details, `beta_terms`); at the quick and standard sizes every beta is below 1e-20, and
    the check's false-alarm total is 4e-6 per configuration (1.6e-5 at quick, 3.2e-5 at
    standard). How to read: a KS or chi-square statistic far below its threshold means the
    histogram matches the exact density (see the plots: the blue histogram follows the black
    curve, the mutants' outlines do not); a moments statistic is the deviation in units of the
    Bernstein radius.
    """
    sizes = sizes_for(ctx.level, ctx.scale)
    records: list[CheckRecord] = []
    for config in configs_for(ctx.level):
        ctx.note(f"{config.label}: exact law")
        law = exact_law(config, sizes.grid)
        records.append(_reference_record(law))
        ctx.note(f"{config.label}: fast sampler, {sizes.n_region(config.delta):,} draws")
        outcomes, correct = evaluate_sampler(FAST_SAMPLER, law, sizes,
                                             derive_seed(ctx.seed, config.label, FAST_SAMPLER.label))
        recs = [_record(o, config) for o in outcomes.values()]
        mutant_summaries = {}
        for mutant in SCALE_MUTANTS:
            ctx.note(f"{config.label}: {mutant.label}")
            m_out, m_summary = evaluate_sampler(mutant, law, sizes,
                                                derive_seed(ctx.seed, config.label, mutant.label))
            mutant_summaries[mutant] = m_summary
            required, info = required_power_tests(law, mutant.factor, sizes)
            recs.append(_power_record(mutant, law, m_out, required, info, sizes))
        if config.plot:
            path = _plot(ctx, law, correct, mutant_summaries)
            if path:
                recs[0].plots.append(path)
        records.extend(recs)
    return records
