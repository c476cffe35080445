"""Targets and slope bands: a measured value, its threshold and a verdict.

Verdicts: ``PASS`` / ``FAIL`` against the threshold; ``INFO`` for a figure printed without a
threshold; ``SKIP`` when the value could not be measured in this run, always with the reason
(nothing is dropped silently). The target ids follow ``research/PERF_ANCHORS.md`` §5 (G1-G11,
S1-S7); issue 3 "Speed" lists the same targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Target", "judge", "skipped", "VERDICTS"]

VERDICTS = ("PASS", "FAIL", "INFO", "SKIP")


@dataclass(frozen=True)
class Target:
    """One row of a targets or slopes table."""

    id: str
    what: str
    config: str
    measured: float | None
    unit: str
    op: str  # "<=", ">=", "in" (threshold = (lo, hi)), "info"
    threshold: float | tuple[float, float] | None
    verdict: str
    note: str = ""

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

    def to_dict(self) -> dict:
        return {"id": self.id, "what": self.what, "config": self.config, "measured": self.measured,
                "unit": self.unit, "op": self.op,
                "threshold": list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold,
                "verdict": self.verdict, "note": self.note}


def judge(id: str, what: str, config: str, measured: float | None, op: str, threshold=None,
          unit: str = "", note: str = "") -> Target:
    """A target row with its verdict computed from ``measured`` ``op`` ``threshold``."""
    if op not in ("<=", ">=", "in", "info"):
        raise ValueError(f"op must be one of <=, >=, in, info (got {op!r})")
    if measured is None or not math.isfinite(measured):
        return Target(id, what, config, measured, unit, op, threshold, "SKIP",
                      note or "not measured in this run")
    if op == "info":
        return Target(id, what, config, measured, unit, op, None, "INFO", note)
    if op == "<=":
        ok = measured <= threshold
    elif op == ">=":
        ok = measured >= threshold
    else:
        lo, hi = threshold
        ok = lo <= measured <= hi
    return Target(id, what, config, measured, unit, op, threshold, "PASS" if ok else "FAIL", note)


def skipped(id: str, what: str, config: str, op: str, threshold, reason: str, unit: str = "") -> Target:
    """A target that could not be measured, with the reason."""
    return Target(id, what, config, None, unit, op, threshold, "SKIP", reason)
