"""Check of the Gaussian samplers: float N(0, sigma^2) and exact discrete N_Z(0, sigma^2).

Gaussian law -- paper: none (arXiv 2407.14717 uses truncated Laplace only; our ``law="gaussian"``,
proofs_notes/24-analytic-gaussian.md and 25-discrete-gaussian.md); DESIGN §6; note 20.

Two samplers are compared with their exact laws, each on several scales including extreme ones:

* **float** -- :func:`dpxattn.fast.noise.gaussian` (sigma Phi^-1(u) of 53-bit uniforms, seeded
  ``torch.Generator``: an audit, labelled so) against N(0, sigma^2);
* **discrete** -- :func:`dpxattn.fast.secure_gaussian.sample_gaussian_units` (CKS20 Algorithm 3,
  seeded ``numpy.random.Generator``) against N_Z(0, sigma^2) in lattice units, on the grid
  sigma^2 = t (t - 1) the releases use (``reference.discrete_gaussian.grid_sigma2``), including
  the t of the canonical direct build and t = 8e8 (near the sampler's largest grid point
  2^30; its x1.3 mutant must stay within it), and on small
  rational sigma^2 where the law's lattice structure is visible.

Tests per configuration (alpha = :data:`ALPHA` = 1e-6 each):

1. **KS**: sup |F_n - F|; for an integer law it is attained at the sample points and their
   predecessors, so it is computed exactly from the sorted draws. F is bracketed
   (:meth:`GaussianLaw.cdf_bracket`): float, ``scipy.special.ndtr`` within
   :data:`FLOAT_CDF_ERROR`; discrete with sigma <= :data:`SUM_LIMIT`, the float64 pmf
   exp(-y^2 / 2 sigma^2) / N (N from the reference) summed over |y| <= 40 sigma + 40 (error
   bound from the number of terms, plus the reference's certified tail); larger sigma,
   Phi((y + 1/2) / sigma), whose error is at most 0.1 / sigma^2 (:func:`midpoint_cdf_error`).
   The test rejects when the bracket's lower end of the statistic exceeds the exact critical value
   of ``scipy.stats.kstwo`` (valid and conservative for discontinuous laws).
2. **chi-square** on about :data:`CHI_BINS` cells cut near the law's quantiles (data-independent
   cuts; integers for the discrete law), cell masses from the same bracketed CDF, cells with an
   expected count below 5 merged; rejects above ``chi2.isf(alpha, cells - 1)`` (the usual
   large-sample law of Pearson's statistic, as in the TLap checks).
3. **moments**: the sample mean against 0 (alpha/2) and the sample second moment against the
   exact E X^2 (alpha/2, two-sided). Float: exact laws (sum X / (sigma sqrt n) ~ N(0, 1),
   sum X^2 / sigma^2 ~ chi^2_n). Discrete: the law is sigma^2-sub-Gaussian (CKS20 Cor. 9), so
   P(|sum Y| >= r) <= 2 exp(-r^2 / (2 n sigma^2)); and E exp(lambda Y^2) = N(s') / N(s) with
   s' = s / (1 - 2 lambda s) exactly (the pmf times exp(lambda y^2) is the unnormalised pmf at
   s'), which gives Chernoff bounds on both tails of sum Y^2 from the reference's certified
   normaliser (:func:`square_tail_bound`); the acceptance window is where both are >= alpha/4.

Power (DESIGN §6): the same tests at the same sample sizes on the same sampler with sigma
multiplied by 0.7 and by 1.3 (discrete: the grid point t' = round(f t), or sigma^2 f^2 exactly
for the rational configurations). Each of the three tests must reject each mutant. The power
record's ``beta`` (the chance the mutant escapes: that the record fails a correct build) is the
sum of rigorous bounds on each test's miss from the mutant's exact law: KS, DKW (Massart) at the
mutant's distance to F on a grid, less the brackets; chi-square,
:func:`dpxattn.verification.power_bounds.chi_square_escape` with the mutant's cell masses;
moments, the exact chi-square tail of f^2 chi^2_n (float) or the Chernoff bound at the mutant's
law (discrete). At the quick and standard sizes every beta is below 1e-20.

Exact records: the float sampler's quantile map agrees with the reference's ``gaussian.ppf`` at
extreme uniforms (relative error <= :data:`PPF_RTOL`); the discrete sampler returns the
reference's integers on a random tape (``reference.discrete_gaussian.sample_from_tape``).

Budget: 3 records at alpha per configuration: quick 5 configurations (1.5e-5), standard 9
(2.7e-5), within the check's 5e-5.

Shapes: samplers return 1-D float64 (float) or int64 (discrete) arrays; every record is a
``CheckRecord``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import mpmath
import numpy as np
import torch
from scipy import special, stats

from dpxattn.fast.noise import gaussian
from dpxattn.fast.secure_gaussian import sample_gaussian_units, secure_gaussian_parameters
from dpxattn.randomness import derive_seed
from dpxattn.reference import discrete_gaussian as dg
from dpxattn.reference import gaussian as ref_gaussian
from dpxattn.verification.power_bounds import chi_square_escape, dkw_escape, union
from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "ALPHA",
    "CHI_BINS",
    "FLOAT_CDF_ERROR",
    "SUM_LIMIT",
    "PPF_RTOL",
    "SCALE_FACTORS",
    "GaussianLaw",
    "configs_for",
    "sample_size",
    "midpoint_cdf_error",
    "ks_statistic",
    "square_tail_bound",
    "moment_windows",
    "run_tests",
    "escape_bounds",
    "check_gaussian_noise",
]

#: false-alarm rate of every statistical record of this check (DESIGN §6: <= 1e-6)
ALPHA = 1e-6
#: chi-square cells before merging
CHI_BINS = 64
#: an upper bound on |ndtr(x) - Phi(x)| in float64 (Cephes' ndtr: a few ulps of values <= 1)
FLOAT_CDF_ERROR = 1e-13
#: discrete laws with sigma (units) up to this have their CDF summed term by term
SUM_LIMIT = 2000.0
#: the float quantile map must agree with the reference's to this relative error
PPF_RTOL = 1e-13
#: the wrong variants: sigma times these
SCALE_FACTORS = (0.7, 1.3)
#: the largest grid scale tested: its x1.3 mutant must stay within the sampler's t <= 2^30
LARGEST_T = 800_000_000
#: escape bounds below this are reported as this (float64 underflow)
BOUND_FLOOR = 1e-300
#: grid points on which a mutant's distance to the exact CDF is evaluated
DISTANCE_POINTS = 512
_MP = mpmath.MPContext()
_MP.prec = 128


def midpoint_cdf_error(sigma: float) -> float:
    """Upper bound on |P(Y <= m) - Phi((m + 1/2) / sigma)| for Y ~ N_Z(0, sigma^2), sigma >= 1.

    With f(x) = exp(-x^2 / 2 sigma^2): sum_{y <= m} f(y) is the midpoint rule for the integral of
    f up to m + 1/2; each unit cell errs by f''(xi) / 24, and the sum over cells of max |f''| is at
    most int |f''| + int |f'''| = (sqrt(2 pi) / sigma) (E|U^2 - 1| + E|U^3 - 3U| / sigma) with
    E|U^2 - 1| = 4 phi(1) < 0.97 and E|U^3 - 3U| < 1.6 (U standard normal). Dividing by
    N >= sigma sqrt(2 pi) (the Poisson dual series has positive terms) and bounding
    sigma sqrt(2 pi) / N in [1 - 2 exp(-2 pi^2 sigma^2) / (1 - ...), 1]: the error is at most
    (0.97 + 1.6 / sigma) / (24 sigma^2) + 3 exp(-2 pi^2 sigma^2) <= 0.1 / sigma^2.
    """
    if sigma < 1:
        raise ValueError(f"midpoint_cdf_error needs sigma >= 1 (got {sigma!r})")
    return (0.97 + 1.6 / sigma) / (24.0 * sigma * sigma) + 3.0 * math.exp(-2.0 * math.pi ** 2 * sigma ** 2)


@dataclass(frozen=True)
class GaussianLaw:
    """The exact law under test: ``family`` "float" (N(0, sigma2)) or "discrete"
    (N_Z(0, sigma2), lattice units; sigma2 a Fraction the sampler accepts)."""

    family: str
    sigma2: Fraction | float
    label: str

    @property
    def sigma(self) -> float:
        return math.sqrt(float(self.sigma2))

    @property
    def second_moment(self) -> float:
        """E X^2: sigma^2 (float); the reference's closed form (discrete, < sigma^2)."""
        if self.family == "float":
            return float(self.sigma2)
        return float(dg.moments(self.sigma2, prec=96)[1])

    def scaled(self, factor: float) -> "GaussianLaw":
        """The law of the mutant with sigma times ``factor``."""
        if self.family == "float":
            return GaussianLaw("float", float(self.sigma2) * factor * factor, f"{self.label} x{factor}")
        s2 = Fraction(self.sigma2)
        t = dg.proposal_scale(s2)
        if s2 == dg.grid_sigma2(t):
            return GaussianLaw("discrete", dg.grid_sigma2(max(2, round(factor * t))), f"{self.label} x{factor}")
        return GaussianLaw("discrete", s2 * Fraction(factor).limit_denominator(100) ** 2,
                           f"{self.label} x{factor}")

    def cdf_bracket(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) with lo <= F(x) <= hi elementwise (x float64; integers for "discrete")."""
        x = np.asarray(x, dtype=np.float64)
        if self.family == "float":
            mid, err = special.ndtr(x / self.sigma), FLOAT_CDF_ERROR
        elif self.sigma <= SUM_LIMIT:
            mid, err = self._summed_cdf(x)
        else:
            mid = special.ndtr((np.floor(x) + 0.5) / self.sigma)
            err = midpoint_cdf_error(self.sigma) + FLOAT_CDF_ERROR
        return np.clip(mid - err, 0.0, 1.0), np.clip(mid + err, 0.0, 1.0)

    def _summed_cdf(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        half = int(math.ceil(40.0 * self.sigma)) + 40
        ys = np.arange(-half, half + 1, dtype=np.float64)
        norm = float(dg.normaliser(self.sigma2, prec=96))
        cum = np.cumsum(np.exp(-ys * ys / (2.0 * float(self.sigma2))) / norm)
        tail = float(dg.tail_upper(half, self.sigma2))
        err = 4.0 * ys.size * np.finfo(np.float64).eps + 2.0 * tail
        idx = np.clip(np.floor(x) + half, -1, 2 * half).astype(np.int64)
        return np.where(idx < 0, 0.0, cum[np.maximum(idx, 0)]), err


def configs_for(level: str) -> tuple[GaussianLaw, ...]:
    """The laws tested at ``level``: quick 2 float + 3 discrete, standard and full 4 + 5."""
    canonical = secure_gaussian_parameters(sensitivity=9.8, eps=1.0, delta=1e-6, changed=1485)
    float_laws = [GaussianLaw("float", 1.0, "float sigma=1"),
                  GaussianLaw("float", canonical.sigma ** 2, f"float sigma={canonical.sigma:.6g}")]
    discrete = [GaussianLaw("discrete", Fraction(1), "discrete sigma^2=1"),
                GaussianLaw("discrete", dg.grid_sigma2(100), "discrete t=100"),
                GaussianLaw("discrete", canonical.sigma2_units,
                            f"discrete t={dg.proposal_scale(canonical.sigma2_units)} (canonical)")]
    if level != "quick":
        float_laws += [GaussianLaw("float", 1e-12, "float sigma=1e-6"),
                       GaussianLaw("float", 1e18, "float sigma=1e9")]
        discrete += [GaussianLaw("discrete", Fraction(5, 2), "discrete sigma^2=5/2"),
                     GaussianLaw("discrete", dg.grid_sigma2(LARGEST_T), f"discrete t={LARGEST_T} (largest)")]
    return tuple(float_laws + discrete)


def sample_size(level: str, scale: float = 1.0) -> int:
    """Draws per configuration (DESIGN §6: >= 1.2e5): quick 1.2e5, standard 4e5, full 1e6 x scale."""
    return {"quick": 120_000, "standard": 400_000}.get(level, int(1_000_000 * max(scale, 1.0)))


def _draw(law: GaussianLaw, n: int, seed: int) -> np.ndarray:
    if law.family == "float":
        g = torch.Generator().manual_seed(seed)
        return gaussian((n,), law.sigma, generator=g).numpy()
    return sample_gaussian_units(n, law.sigma2, generator=np.random.default_rng(seed))[0]


def ks_statistic(draws: np.ndarray, law: GaussianLaw) -> float:
    """A lower bound on sup_x |F_n(x) - F(x)| (exact up to F's bracket): at each distinct sorted
    value u with c draws <= u, F_n - F peaks at u and F - F_n just below u (at u - 1 for
    integers, u itself for a continuous law)."""
    u, counts = np.unique(draws, return_counts=True)
    n = draws.size
    above = np.cumsum(counts) / n
    below = above - counts / n
    lo, hi = law.cdf_bracket(u)
    left = law.cdf_bracket(u - 1.0)[0] if law.family == "discrete" else lo
    return float(max(np.max(above - hi), np.max(left - below), 0.0))


def _cells(law: GaussianLaw, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Right cut points (the last +inf) and their cell masses (bracket midpoints), cells with an
    expected count below 5 merged into a neighbour."""
    q = special.ndtri(np.arange(1, CHI_BINS) / CHI_BINS) * law.sigma
    cuts = np.unique(np.floor(q)) if law.family == "discrete" else q
    cdf = np.concatenate([[0.0], np.mean(law.cdf_bracket(cuts), axis=0), [1.0]])
    edges, masses = list(cuts) + [np.inf], list(np.diff(cdf))
    j = 0
    while j < len(masses):
        if masses[j] * n < 5 and len(masses) > 1:
            k = j + 1 if j + 1 < len(masses) else j - 1
            lo_, hi_ = min(j, k), max(j, k)
            masses[lo_:hi_ + 1] = [masses[lo_] + masses[hi_]]
            edges[lo_:hi_ + 1] = [edges[hi_]]
            j = 0
            continue
        j += 1
    return np.array(edges), np.array(masses)


def _cell_counts(draws: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(edges, draws, side="left")
    return np.bincount(idx, minlength=edges.size)[:edges.size]


def _log_mgf_square(law: GaussianLaw, lam: Fraction) -> float:
    """ln E exp(lam Y^2) for Y ~ N_Z(0, s): ln N(s / (1 - 2 lam s)) - ln N(s), lam < 1 / (2 s)."""
    s = Fraction(law.sigma2)
    s_new = s / (1 - 2 * lam * s)
    return float(_MP.log(dg.normaliser(s_new, prec=128)) - _MP.log(dg.normaliser(s, prec=128)))


def square_tail_bound(law: GaussianLaw, n: int, v: float) -> float:
    """Chernoff bound on P(mean of Y_i^2 >= v) (v > E Y^2) or P(mean <= v) (v < E Y^2) for ``n``
    i.i.d. Y ~ ``law``: exp(n (ln E e^{lam Y^2} - lam v)) at lam = (1 - s / v) / (2 s), the
    minimiser for the continuous law (any lam of the right sign gives a valid bound). Float laws
    use the exact chi-square tail instead."""
    s = float(law.sigma2)
    if law.family == "float":
        x = n * v / s
        return float(stats.chi2.sf(x, n) if v > s else stats.chi2.cdf(x, n))
    lam = Fraction((1.0 - s / v) / (2.0 * s))  # exact (a dyadic rational)
    if (v > law.second_moment) != (lam > 0) or lam == 0:
        return 1.0
    exponent = n * (_log_mgf_square(law, lam) - float(lam) * v)
    return min(1.0, math.exp(exponent)) if exponent < 700 else 1.0


def _bisect(fn: Callable[[float], bool], lo: float, hi: float, steps: int = 60) -> tuple[float, float]:
    """The boundary of a monotone predicate, bracketed: (lo, hi) with fn(lo) false, fn(hi) true."""
    if fn(lo) or not fn(hi):
        raise ValueError("the predicate does not change sign on the bracket")
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fn(mid) else (mid, hi)
    return lo, hi


def moment_windows(law: GaussianLaw, n: int) -> dict:
    """Acceptance radii / windows of the moments test at ``n`` draws: ``mean_radius`` for
    |mean|, and (``v_lo``, ``v_hi``) for the mean of X^2, each tail at alpha/4."""
    s, m2, a = float(law.sigma2), law.second_moment, ALPHA / 4
    if law.family == "float":
        radius = float(special.ndtri(1 - a)) * law.sigma / math.sqrt(n)
        v_lo, v_hi = (float(stats.chi2.ppf(a, n)) * s / n, float(stats.chi2.isf(a, n)) * s / n)
    else:
        radius = law.sigma * math.sqrt(2.0 * math.log(2.0 / (ALPHA / 2)) / n)
        width = 12.0 * s / math.sqrt(n)
        # the window's ends are the points nearest E X^2 whose Chernoff bound is <= alpha/4
        v_hi = _bisect(lambda v: square_tail_bound(law, n, v) <= a, m2, m2 + width)[1]
        v_lo = _bisect(lambda v: square_tail_bound(law, n, v) > a, m2 - width, m2)[0]
    return {"mean_radius": radius, "v_lo": v_lo, "v_hi": v_hi}


@dataclass(frozen=True)
class Outcome:
    test: str
    statistic: float
    threshold: float
    rejected: bool
    details: dict


def run_tests(draws: np.ndarray, law: GaussianLaw) -> dict[str, Outcome]:
    """The three tests of the module docstring on ``draws`` against ``law``."""
    n = draws.size
    crit = float(stats.kstwo.isf(ALPHA, n))
    d = ks_statistic(draws, law)
    edges, masses = _cells(law, n)
    counts = _cell_counts(draws, edges)
    chi = float(np.sum((counts - n * masses) ** 2 / (n * masses)))
    chi_crit = float(stats.chi2.isf(ALPHA, masses.size - 1))
    w = moment_windows(law, n)
    x = draws.astype(np.float64)
    mean, second = float(np.mean(x)), float(np.mean(x * x))
    m2 = law.second_moment
    side = ((second - m2) / (w["v_hi"] - m2) if second >= m2 else (m2 - second) / (m2 - w["v_lo"]))
    moment_stat = max(abs(mean) / w["mean_radius"], side)
    return {
        "KS": Outcome("KS", d, crit, d > crit, {"critical": crit}),
        "chi-square": Outcome("chi-square", chi, chi_crit, chi > chi_crit,
                              {"cells": int(masses.size)}),
        "moments": Outcome("moments", moment_stat, 1.0, moment_stat > 1.0,
                           {"mean": mean, "second_moment": second, "exact_second_moment": law.second_moment,
                            **w}),
    }


def _distance_lower(law: GaussianLaw, mutant: GaussianLaw) -> float:
    """A lower bound on sup |G - F| on a grid of +-6 sigma (brackets subtracted)."""
    x = np.linspace(-6.0, 6.0, DISTANCE_POINTS) * max(law.sigma, mutant.sigma)
    if law.family == "discrete":
        x = np.floor(x)
    f_lo, f_hi = law.cdf_bracket(x)
    g_lo, g_hi = mutant.cdf_bracket(x)
    return float(max(np.max(g_lo - f_hi), np.max(f_lo - g_hi), 0.0))


def escape_bounds(law: GaussianLaw, mutant: GaussianLaw, n: int) -> dict[str, float]:
    """Rigorous upper bounds on the chance that each test misses ``mutant`` at ``n`` draws."""
    crit = float(stats.kstwo.isf(ALPHA, n))
    edges, masses = _cells(law, n)
    cdf = np.concatenate([[0.0], np.mean(mutant.cdf_bracket(edges[:-1]), axis=0), [1.0]])
    chi_crit = float(stats.chi2.isf(ALPHA, masses.size - 1))
    chi_beta, _ = chi_square_escape(n, chi_crit, masses, np.clip(np.diff(cdf), 0.0, 1.0))
    w = moment_windows(law, n)
    m2 = mutant.second_moment
    moments = (square_tail_bound(mutant, n, w["v_lo"]) if m2 < w["v_lo"]
               else square_tail_bound(mutant, n, w["v_hi"]) if m2 > w["v_hi"] else 1.0)
    return {"KS": max(dkw_escape(n, crit, _distance_lower(law, mutant)), BOUND_FLOOR),
            "chi-square": max(float(chi_beta), BOUND_FLOOR), "moments": max(moments, BOUND_FLOOR)}


def _records_for(law: GaussianLaw, n: int, seed: int) -> list[CheckRecord]:
    outcomes = run_tests(_draw(law, n, seed), law)
    tests = {"KS": "Kolmogorov-Smirnov distance to the exact CDF (bracketed), exact kstwo critical value",
             "chi-square": f"Pearson chi-square on about {CHI_BINS} quantile cells of the exact law",
             "moments": "sample mean vs 0 and sample second moment vs the exact E X^2 (exact laws "
                        "for float, sub-Gaussian and Chernoff bounds for discrete); statistic = "
                        "the largest of |mean| / its radius and the second moment's distance from E X^2 / the "
                        "window's half-width on that side (rejects above 1)"}
    out = [CheckRecord(name=f"{o.test} [{law.label}]", kind="statistical", tests=tests[o.test],
                       statistic=o.statistic, threshold=o.threshold, comparison="<=",
                       passed=not o.rejected, alpha=ALPHA, sample_size=n, details=o.details)
           for o in outcomes.values()]
    for k, factor in enumerate(SCALE_FACTORS):
        mutant = law.scaled(factor)
        got = run_tests(_draw(mutant, n, derive_seed(seed, "mutant", k)), law)
        caught = [t for t, o in got.items() if o.rejected]
        bounds = escape_bounds(law, mutant, n)
        out.append(CheckRecord(
            name=f"power: sigma x{factor} [{law.label}]", kind="power",
            tests=(f"the same tests at the same size reject the sampler with sigma x{factor} "
                   f"(sigma^2 = {float(mutant.sigma2):.6g}); every test must; statistic = how many did; "
                   "beta = the sum of the tests' miss bounds from the mutant's exact law"),
            statistic=float(len(caught)), threshold=float(len(got)), comparison=">=",
            passed=len(caught) == len(got), beta=union(bounds.values()), sample_size=n,
            details={"rejected_by": caught, "beta_terms": bounds,
                     "statistics": {t: o.statistic for t, o in got.items()}}))
    return out


def _ppf_record(rng: np.random.Generator) -> CheckRecord:
    u = np.concatenate([[2.0 ** -53, 1e-300, 2.0 ** -1074, 0.5, 1 - 2.0 ** -53, 1e-6],
                        rng.random(26) * (1 - 2.0 ** -53) + 2.0 ** -54])
    fast = gaussian((u.size,), 1.0, uniforms=torch.from_numpy(u)).numpy()
    exact = [float(ref_gaussian.ppf(float(x), 1, prec=200)) for x in u]
    err = max(abs(f - e) / max(abs(e), 1e-300) for f, e in zip(fast, exact))
    return CheckRecord(name="float quantile vs reference", kind="exact",
                       tests="fast sigma Phi^-1(u) vs the reference's ppf at 200 bits, extreme and "
                             "random uniforms; statistic the largest relative error",
                       statistic=float(err), threshold=PPF_RTOL, comparison="<=",
                       passed=err <= PPF_RTOL, sample_size=int(u.size))


def _tape_record(rng: np.random.Generator) -> CheckRecord:
    sigma2 = dg.grid_sigma2(1000)
    tape = rng.integers(0, 2 ** 64, size=(64, 160), dtype=np.uint64)
    fast = sample_gaussian_units(64, sigma2, tape=tape)[0].tolist()
    ref = dg.sample_from_tape(tape, sigma2)
    wrong = sum(a != b for a, b in zip(fast, ref))
    return CheckRecord(name="discrete sampler vs reference on a tape", kind="exact",
                       tests="the fast CKS20 sampler returns the reference's integers on random "
                             "64-bit words (t = 1000); statistic the number of disagreements",
                       statistic=float(wrong), threshold=0.0, comparison="<=", passed=wrong == 0,
                       sample_size=64)


def check_gaussian_noise(ctx: CheckContext) -> list[CheckRecord]:
    """Run the check at ``ctx.level`` (see the module docstring)."""
    n = sample_size(ctx.level, ctx.scale)
    records = [_ppf_record(ctx.rng), _tape_record(ctx.rng)]
    for k, law in enumerate(configs_for(ctx.level)):
        ctx.note(law.label)
        records += _records_for(law, n, derive_seed(ctx.seed, "gaussian-noise", k))
    return records
