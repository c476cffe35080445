"""What every check of the harness returns, and what it is given (note 20).

A check is a function ``check(ctx: CheckContext) -> list[CheckRecord]``; the tests and the CLI
call the same function. It never seeds global state: it draws from ``ctx.rng`` / ``ctx.seed``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "LEVELS",
    "SURE_KINDS",
    "ALPHA_KINDS",
    "POWER_KIND",
    "KINDS",
    "FAMILY_FALSE_ALARM",
    "CheckContext",
    "CheckRecord",
]

#: harness levels: quick (CI, about 4 minutes), standard (DESIGN §6 sample sizes), full
LEVELS = ("quick", "standard", "full")

#: kinds of record that a correct implementation cannot fail: a deterministic fact (``exact``),
#: an adversarial search that must not beat a proven bound (``search``), a figure shown for
#: reading that has no verdict (``info``, always passes)
SURE_KINDS = ("exact", "search", "info")
#: kinds that fail a correct implementation only by bad luck, at their stated ``alpha``
ALPHA_KINDS = ("statistical", "audit")
#: a record that plants a wrong variant (a mutant) and passes when the mutant is caught; it fails
#: a correct implementation only when the mutant escapes, at most at its stated ``beta``
POWER_KIND = "power"
KINDS = SURE_KINDS + ALPHA_KINDS + (POWER_KIND,)

#: the most a report may lose to bad luck: every level is sized so that the union bound (sum
#: over records) of the chance that a correct implementation fails a record is at most this
FAMILY_FALSE_ALARM = 1e-3


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
    #: the implementation under test (a ``verification.target.LoadedTarget``); None means
    #: dpxattn's own fast path (``target:FastTarget``), the default of ``dpxattn verify``
    target: object | None = field(default=None, repr=False, compare=False)
    #: test-only overrides a check may read (e.g. ``"target_sizes"``); empty in reports
    overrides: dict = field(default_factory=dict, repr=False, compare=False)

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

    ``statistic`` is compared with ``threshold`` by ``comparison`` ("<=" or ">="); ``kind`` is
    one of :data:`KINDS`; ``alpha`` is the false-alarm rate of a ``statistical`` or ``audit``
    record (None for the sure kinds); ``beta`` is, for a ``power`` record, an upper bound on the
    probability that its planted wrong variant escapes at this sample size (derived from the
    mutant's exact law; how, in ``details["beta_terms"]``); ``confidence`` the confidence of an
    interval or bound; ``sample_size`` the number of draws it rests on. An ``info`` record is a
    figure without a verdict: it always passes.
    """

    name: str
    kind: str  # one of KINDS
    tests: str
    statistic: float
    threshold: float
    comparison: str
    passed: bool
    alpha: float | None = None
    beta: float | None = None
    confidence: float | None = None
    sample_size: int = 0
    details: dict = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.comparison not in ("<=", ">=", "=="):
            raise ValueError(f"comparison must be '<=', '>=' or '==' (got {self.comparison!r})")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS} (got {self.kind!r})")
        if self.kind == "info" and not self.passed:
            raise ValueError(f"an info record has no verdict and always passes ({self.name!r})")

    @classmethod
    def not_applicable(cls, name: str, why: str) -> "CheckRecord":
        """A record saying that part of a check did not apply to the target, and why: an
        ``info`` record (no verdict), ``details["applies"] = False``; the harness lists it in
        the report's "Did not apply" section."""
        return cls(name=f"{name}: did not apply", kind="info", tests=why, statistic=0.0,
                   threshold=0.0, comparison="==", passed=True, details={"applies": False})

    def false_failure_rate(self) -> float | None:
        """The chance that a correct implementation fails this record, or None if not stated.

        0 for the sure kinds; ``alpha`` for ``statistical`` and ``audit``; ``beta`` for
        ``power`` (the mutant escaping). The harness fails a record whose rate is missing or is
        not a probability, and adds the rates up into the report's false-alarm budget.
        """
        if self.kind in SURE_KINDS:
            return 0.0
        rate = self.alpha if self.kind in ALPHA_KINDS else self.beta
        if rate is None:
            return None
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            return None
        return rate if 0.0 <= rate <= 1.0 else None

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("statistic", "threshold"):
            v = d[key]
            d[key] = None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)
        return d
