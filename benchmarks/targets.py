"""Targets and slope bands: a measured value, its threshold and a verdict.

Verdicts (:data:`VERDICTS`):

* ``PASS`` / ``FAIL``: for a noisy quantity (a timing, a timing ratio, a slope, an error of
  random DP builds) from its confidence interval (:mod:`dpxattn.benchmarks.intervals`: an
  order-statistic interval for the median of the per-repetition values, at the run's
  confidence, 0.99 by default): PASS when the whole interval meets the threshold, FAIL when the
  whole interval misses it. Either verdict is wrong with probability at most the interval's
  one-sided miss, (1 - coverage) / 2 (<= 0.005 at 0.99; a band's FAIL, whose interval may
  miss on either side: 1 - coverage). For a deterministic quantity (a
  memory peak of a fixed allocation sequence, a sure error envelope) straight from the value;
* ``UNSURE``: the interval straddles the threshold (or has too few repetitions to reach the
  requested confidence): this run cannot tell; measure again with more repetitions;
* ``INFO``: a figure printed without a threshold (an interval may still be shown);
* ``SKIP``: the value could not be measured in this run, always with the reason.

``--strict`` fails the run on FAIL only (UNSURE is not a failure). The target ids follow
``research/PERF_ANCHORS.md`` §5 (G1-G11, S1-S7; DESIGN §7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dpxattn.benchmarks.intervals import Interval

__all__ = ["Target", "judge", "skipped", "verdict_for", "VERDICTS"]

VERDICTS = ("PASS", "FAIL", "UNSURE", "INFO", "SKIP")


def _meets(value: float, op: str, threshold) -> bool:
    if op == "<=":
        return value <= threshold
    if op == ">=":
        return value >= threshold
    lo, hi = threshold
    return lo <= value <= hi


def verdict_for(op: str, threshold, interval: Interval) -> str:
    """PASS if every point of ``interval`` meets ``op threshold``, FAIL if none does, else
    UNSURE (also UNSURE when the interval's coverage is below the requested confidence)."""
    if not interval.sufficient:
        return "UNSURE"
    lo, hi = interval.lo, interval.hi
    if op == "<=":
        return "PASS" if hi <= threshold else ("FAIL" if lo > threshold else "UNSURE")
    if op == ">=":
        return "PASS" if lo >= threshold else ("FAIL" if hi < threshold else "UNSURE")
    if op == "in":
        b_lo, b_hi = threshold
        if b_lo <= lo and hi <= b_hi:
            return "PASS"
        return "FAIL" if (hi < b_lo or lo > b_hi) else "UNSURE"
    raise ValueError(f"op must be one of <=, >=, in (got {op!r})")


@dataclass(frozen=True)
class Target:
    """One row of a targets or slopes table. ``interval``: the confidence interval the verdict
    was read from (None for a deterministic value, a figure without one, or a SKIP)."""

    id: str
    what: str
    config: str
    measured: float | None
    unit: str
    op: str  # "<=", ">=", "in" (threshold = (lo, hi)), "info"
    threshold: float | tuple[float, float] | None
    verdict: str
    note: str = ""
    interval: Interval | None = None
    basis: str = ""  # "interval", "deterministic" or "" (INFO / SKIP without an interval)

    def threshold_text(self) -> str:
        if self.op == "in":
            lo, hi = self.threshold  # type: ignore[misc]
            return f"in [{lo:g}, {hi:g}]"
        if self.op == "info" or self.threshold is None:
            return "-"
        return f"{self.op} {self.threshold:g}{self.unit}"

    def measured_text(self) -> str:
        if self.measured is None or (isinstance(self.measured, float) and math.isnan(self.measured)):
            return "n/a"
        return f"{self.measured:.4g}{self.unit}"

    def interval_text(self) -> str:
        """The interval with its guaranteed coverage, ``exact`` for a deterministic value."""
        if self.interval is not None:
            return self.interval.text(self.unit)
        return "exact" if self.basis == "deterministic" else "-"

    def to_dict(self) -> dict:
        return {"id": self.id, "what": self.what, "config": self.config, "measured": self.measured,
                "unit": self.unit, "op": self.op,
                "threshold": list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold,
                "verdict": self.verdict, "note": self.note, "basis": self.basis,
                "interval": self.interval.to_dict() if self.interval is not None else None}


def judge(id: str, what: str, config: str, measured: float | None, op: str, threshold=None,
          unit: str = "", note: str = "", *, interval: Interval | None = None,
          deterministic: bool = False) -> Target:
    """A target row with its verdict.

    A gated row (``op`` not "info") must say how it is read: ``interval`` (a noisy quantity:
    the three-way verdict of :func:`verdict_for`; ``measured`` is then its point estimate,
    normally ``interval.estimate``) or ``deterministic=True`` (a value that does not vary from
    run to run: the plain verdict ``measured op threshold``). Neither raises ValueError, so no
    noisy value can be compared with a bare threshold by mistake.
    """
    if op not in ("<=", ">=", "in", "info"):
        raise ValueError(f"op must be one of <=, >=, in, info (got {op!r})")
    if interval is not None and deterministic:
        raise ValueError("a row is read from an interval or is deterministic, not both")
    basis = "interval" if interval is not None else ("deterministic" if deterministic else "")
    if measured is None or not math.isfinite(measured):
        return Target(id, what, config, measured, unit, op, threshold, "SKIP",
                      note or "not measured in this run")
    if op == "info":
        return Target(id, what, config, measured, unit, op, None, "INFO", note, interval, basis)
    if interval is not None:
        verdict = verdict_for(op, threshold, interval)
        if not interval.sufficient:
            extra = (f"{interval.n} values cannot give a {interval.requested:g} interval: UNSURE")
            note = f"{note}; {extra}" if note else extra
        return Target(id, what, config, measured, unit, op, threshold, verdict, note, interval, basis)
    if not deterministic:
        raise ValueError(f"target {id}: a gated row needs an interval (noisy value) or "
                         "deterministic=True")
    verdict = "PASS" if _meets(measured, op, threshold) else "FAIL"
    return Target(id, what, config, measured, unit, op, threshold, verdict, note, None, basis)


def skipped(id: str, what: str, config: str, op: str, threshold, reason: str, unit: str = "") -> Target:
    """A target that could not be measured, with the reason."""
    return Target(id, what, config, None, unit, op, threshold, "SKIP", reason)
