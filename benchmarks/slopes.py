"""Log-log slope fits of the scaling table (``research/PERF_ANCHORS.md`` §5, S1-S7), and the
crossover n at which a private structure (build + m query tokens) becomes cheaper than exact
attention.

A slope is the least-squares fit of log(time) = a + b log(size); it is printed as
``b +- se(b)`` with the RMS residual of the fit in log units (a residual near 0 means the points
lie on the line; a large one means the power law is a poor description, whatever b is). The
slope rows' verdicts do not read ``se(b)`` (a model-based figure): ``measure_scaling`` fits each
repetition's series and reads an order-statistic interval for the median of those slopes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Slope", "fit_loglog", "affine_fit", "crossover_n"]


@dataclass(frozen=True)
class Slope:
    """Fitted exponent b of time ~ size^b, its standard error and the fit's RMS residual."""

    slope: float
    stderr: float
    residual: float
    points: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict:
        return {"slope": self.slope, "stderr": self.stderr, "rms_residual_log": self.residual,
                "points": [list(p) for p in self.points]}


def fit_loglog(sizes, times) -> Slope:
    """Least-squares slope of log(times) against log(sizes) (natural logs; >= 2 points)."""
    x = np.log(np.asarray(sizes, dtype=np.float64))
    y = np.log(np.asarray(times, dtype=np.float64))
    if x.size < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("fit_loglog needs >= 2 points with finite, positive sizes and times")
    A = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    dof = x.size - 2
    sxx = float(((x - x.mean()) ** 2).sum())
    se = math.sqrt(float(resid @ resid) / dof / sxx) if dof > 0 and sxx > 0 else math.nan
    rms = math.sqrt(float(resid @ resid) / x.size)
    return Slope(float(coef[1]), se, rms, tuple(zip(map(float, sizes), map(float, times))))


def affine_fit(sizes, times) -> tuple[float, float]:
    """(alpha, beta) of the least-squares line time = alpha + beta * size (>= 2 points)."""
    x = np.asarray(sizes, dtype=np.float64)
    y = np.asarray(times, dtype=np.float64)
    if x.size < 2:
        raise ValueError("affine_fit needs >= 2 points")
    A = np.stack([np.ones_like(x), x], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(alpha), float(beta)


def crossover_n(private: tuple[float, float], exact: tuple[float, float]) -> float | None:
    """Smallest n >= 1 with private(n) < exact(n), both affine (alpha, beta); None if never.

    ``private`` models build(n) + the m-token query (the query part does not grow with n);
    ``exact`` models exact attention over the same m tokens. With
    a_p + b_p n < a_e + b_e n: if b_p < b_e the private side wins for n > (a_p - a_e)/(b_e - b_p)
    (for every n >= 1 if that is below 1); if b_p >= b_e it wins only for small n (where
    a_p < a_e), which is not a crossover to large n: None.
    """
    a_p, b_p = private
    a_e, b_e = exact
    if b_p >= b_e:
        return None
    return max(1.0, (a_p - a_e) / (b_e - b_p))
