"""What every check of the harness returns, and what it is given (issue 4).

A check is a function ``check(ctx: CheckContext) -> list[CheckRecord]``; the tests and the CLI
call the same function. It never seeds global state: it draws from ``ctx.rng`` / ``ctx.seed``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["LEVELS", "CheckContext", "CheckRecord"]

#: harness levels: quick (CI, about 2 minutes), standard (DESIGN §6 sample sizes), full
LEVELS = ("quick", "standard", "full")


@dataclass
class CheckContext:
    """Inputs of one check run: the level, its derived seed, where plots go."""

    level: str
    seed: int
    out_dir: Path | None = None
    fresh_entropy: bool = False
    scale: float = 1.0  # `full` may multiply sample sizes by this
    #: set by the harness: shows a long check's current stage on the progress bar
    progress: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    @property
    def rng(self) -> np.random.Generator:
        """A fresh seeded numpy Generator for this check (seeded: for audits, labelled so)."""
        return np.random.default_rng(self.seed)

    def note(self, text: str) -> None:
        """Tell the harness's progress bar what the check is doing now (no-op without one)."""
        if self.progress is not None:
            self.progress(text)

    def plot_path(self, name: str) -> Path | None:
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name


@dataclass
class CheckRecord:
    """One assertion of the harness, with everything a reviewer needs to judge it.

    ``statistic`` is compared with ``threshold`` by ``comparison`` ("<=" or ">="); ``alpha`` is
    the false-alarm rate of a statistical assertion (None for exact ones); ``confidence`` the
    confidence of an interval or bound; ``sample_size`` the number of draws it rests on.
    """

    name: str
    kind: str  # "exact" | "statistical" | "search" | "audit" | "benchmark-free utility"
    tests: str
    statistic: float
    threshold: float
    comparison: str
    passed: bool
    alpha: float | None = None
    confidence: float | None = None
    sample_size: int = 0
    details: dict = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.comparison not in ("<=", ">=", "=="):
            raise ValueError(f"comparison must be '<=', '>=' or '==' (got {self.comparison!r})")

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("statistic", "threshold"):
            v = d[key]
            d[key] = None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)
        return d
