"""Distribution-free confidence intervals behind the benchmark's verdicts.

A timing ratio, a time, a slope or an error figure of random DP builds is a noisy statistic: a
bare threshold on it flips between PASS and FAIL from run to run. The benchmark therefore
measures each such quantity ``n`` times (the interleaved repetitions of
:func:`dpxattn.benchmarks.timing.measure_many`, or ``n`` independently drawn builds), forms one
value per repetition (for a ratio: the two sides' times *of the same repetition*, so a slow
phase of the machine hits both alike) and gives an interval for the **median** of their law.

Method (order statistics; no assumption on the law's shape): for x_(1) <= ... <= x_(n) the
sorted values of n independent draws of a law with median theta,
P(x_(j) > theta) = P(x_(n+1-j) < theta) <= P(B <= j - 1) with B ~ Binomial(n, 1/2), so
[x_(j), x_(n+1-j)] covers theta with probability >= 1 - 2 P(B <= j - 1) (for every law, ties
and atoms included: the interval is closed). :func:`order_ranks` takes the largest j whose
coverage bound is >= the requested confidence. Each side misses with probability at most
``(1 - coverage) / 2``; this is the bound on a *false verdict* of
:func:`dpxattn.benchmarks.targets.judge` (a target the median meets read as FAIL, or one it
misses read as PASS).

At confidence 0.99 the smallest usable n is 8 (the interval [min, max], coverage 0.992); n = 12
is the smallest whose interval drops the most extreme value on each side ([x_(2), x_(11)],
coverage 0.9937), the benchmark's default. Fewer repetitions than :func:`min_repetitions` give an
interval whose coverage bound is below the request (``Interval.sufficient`` False): the verdict
is then UNSURE whatever the values.

What the interval assumes: the n values are independent draws of one law. For random builds
(fresh OS noise per build) this holds. For timing repetitions it is the model: consecutive
repetitions of one run share the machine's state, so the interval covers repetition-to-
repetition noise *within the run*; a slow phase lasting the whole run moves every repetition,
and interleaving cancels it in a ratio only as far as it slows both sides alike.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["DEFAULT_CONFIDENCE", "Interval", "order_ranks", "min_repetitions", "median_interval",
           "paired_ratios", "median_interval_between", "loglog_slopes", "binomial_half_cdf"]

#: the confidence of every interval verdict unless ``--confidence`` says otherwise
DEFAULT_CONFIDENCE = 0.99


def binomial_half_cdf(k: int, n: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2), exactly (integer arithmetic, then one division)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def order_ranks(n: int, confidence: float) -> tuple[int, float]:
    """``(j, coverage)``: the interval [x_(j), x_(n+1-j)] of n sorted values and its guaranteed
    coverage 1 - 2 P(B <= j - 1), j the largest rank (<= (n + 1) / 2) whose coverage is
    >= ``confidence``. When even j = 1 ([min, max]) falls short (n < :func:`min_repetitions`),
    returns j = 1 with its coverage 1 - 2^(1-n), below ``confidence``."""
    if n < 1:
        raise ValueError(f"order_ranks needs n >= 1 (got {n})")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")
    miss = (1.0 - confidence) / 2.0
    j = 1
    while j + 1 <= (n + 1) // 2 and binomial_half_cdf(j, n) <= miss:
        j += 1
    return j, 1.0 - 2.0 * binomial_half_cdf(j - 1, n)


def min_repetitions(confidence: float) -> int:
    """The smallest n whose [min, max] covers the median with probability >= ``confidence``."""
    n = 1
    while order_ranks(n, confidence)[1] < confidence:
        n += 1
    return n


@dataclass(frozen=True)
class Interval:
    """A confidence interval [lo, hi] for the median of a law, from n values.

    ``estimate``: the sample median (the row's measured value); ``confidence``: the guaranteed
    coverage (>= ``requested`` when ``sufficient``); ``method``: how it was formed, in words.
    """

    lo: float
    hi: float
    estimate: float
    confidence: float
    requested: float
    n: int
    method: str

    @property
    def sufficient(self) -> bool:
        """True when the guaranteed coverage reaches the requested confidence."""
        return self.confidence >= self.requested - 1e-12

    @property
    def miss_per_side(self) -> float:
        """Bound on the chance the interval lies wholly above (or wholly below) the median."""
        return (1.0 - self.confidence) / 2.0

    def text(self, unit: str = "") -> str:
        """``[lo, hi]unit @coverage%``, with ``< requested%`` appended when insufficient."""
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return "n/a"
        out = f"[{self.lo:.4g}, {self.hi:.4g}]{unit} @{100 * self.confidence:.3g}%"
        if not self.sufficient:
            out += f" < {100 * self.requested:.3g}%"
        return out

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "estimate": self.estimate,
                "confidence": self.confidence, "requested_confidence": self.requested,
                "sufficient": self.sufficient, "n": self.n, "method": self.method}


def _finite(values: Sequence[float]) -> list[float]:
    out = [float(v) for v in values]
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError("an interval needs at least one value, all finite")
    return out


def median_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE,
                    method: str = "median of the repetitions") -> Interval:
    """The order-statistic interval (module docstring) for the median of ``values``' law."""
    xs = sorted(_finite(values))
    n = len(xs)
    j, coverage = order_ranks(n, confidence)
    return Interval(xs[j - 1], xs[n - j], float(statistics.median(xs)), coverage, confidence, n,
                    f"{method}: order statistics {j} and {n + 1 - j} of {n}")


def median_interval_between(lower_values: Sequence[float], upper_values: Sequence[float],
                            estimate_values: Sequence[float], confidence: float,
                            extra_miss: float, requested: float, method: str) -> Interval:
    """An interval for a median when each value is only known to lie in
    [lower_values[k], upper_values[k]] (a ratio with a denominator term known to an interval):
    the j-th order statistic of the lower values and the (n+1-j)-th of the upper ones, at rank
    confidence ``confidence``. ``extra_miss``: the miss probability of the intervals behind
    the bracketing (Bonferroni: the guaranteed coverage is the ranks' coverage minus it);
    ``estimate_values``: the values at the bracketing terms' point estimates."""
    lows, highs = sorted(_finite(lower_values)), sorted(_finite(upper_values))
    n = len(lows)
    if len(highs) != n or len(estimate_values) != n:
        raise ValueError("lower, upper and estimate values must have one entry per repetition")
    j, coverage = order_ranks(n, confidence)
    return Interval(lows[j - 1], highs[n - j], float(statistics.median(_finite(estimate_values))),
                    max(0.0, coverage - extra_miss), requested, n,
                    f"{method}: order statistics {j} and {n + 1 - j} of {n}")


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """numerator[k] / denominator[k]: one ratio per interleaved repetition k."""
    if len(numerator) != len(denominator):
        raise ValueError("paired ratios need one numerator and one denominator per repetition")
    return [float(a) / float(b) for a, b in zip(numerator, denominator)]


def loglog_slopes(sizes: Sequence[float], times_per_rep: Sequence[Sequence[float]]) -> list[float]:
    """The least-squares slope of log(time) on log(size) of each repetition's series:
    ``times_per_rep[k][i]`` is repetition k's time at ``sizes[i]`` (>= 2 distinct sizes)."""
    x = np.log(np.asarray(sizes, dtype=np.float64))
    y = np.log(np.asarray(times_per_rep, dtype=np.float64))
    if x.size < 2 or y.ndim != 2 or y.shape[1] != x.size:
        raise ValueError("loglog_slopes needs >= 2 sizes and one time per size per repetition")
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx <= 0 or not np.all(np.isfinite(y)):
        raise ValueError("loglog_slopes needs distinct sizes and finite, positive times")
    return [float(v) for v in (y - y.mean(axis=1, keepdims=True)) @ xc / sxx]
