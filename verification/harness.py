"""The verification harness: run the registered checks of a level and collect their records.

DESIGN §6; proofs_notes/20-verification-standards.md. Each check of :data:`dpxattn.verification.registry.CHECKS` that lists the
level runs once, with its own seed derived from one root seed,
``derive_seed(root, check name)`` (:func:`dpxattn.randomness.derive_seed`), so

* a report is reproducible: the same root seed gives the same records, check by check, and a
  single check can be replayed alone (``--only NAME``) with the same numbers;
* ``fresh_entropy=True`` draws the root from ``os.urandom`` and records it in the report, so a
  failure seen with real randomness can be replayed with ``--seed ROOT``.

A check that raises becomes one failed record carrying the traceback; a check that returns no
record fails too (a check that asserts nothing must not pass silently); a record whose
``passed`` flag contradicts its own statistic/threshold/comparison is marked failed. The run
passes only if every record passed. Progress is plain text on stderr (no extra dependency).
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence, TextIO

from dpxattn.randomness import derive_seed
from dpxattn.verification.records import FAMILY_FALSE_ALARM, LEVELS, CheckContext, CheckRecord
from dpxattn.verification.registry import CHECKS, CheckSpec, load
from dpxattn.verification.target import MECHANISMS, OWN_TARGET, is_own_target, own_target

__all__ = [
    "DEFAULT_ROOT_SEED",
    "PLOTS_SUBDIR",
    "CheckRun",
    "HarnessRun",
    "ProgressBar",
    "draw_root_seed",
    "select_checks",
    "run_check",
    "run_harness",
    "record_consistent",
    "FalseAlarmBudget",
    "false_alarm_budget",
    "environment",
    "summary_table",
    "format_number",
]

#: the root seed of a reproducible report when none is given (also the test suite's root)
DEFAULT_ROOT_SEED = 20260728
#: plots are written to OUT/plots/ and referenced from report.md relative to OUT
PLOTS_SUBDIR = "plots"

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda s, t: s <= t,
    ">=": lambda s, t: s >= t,
    "==": lambda s, t: s == t,
}


def draw_root_seed() -> int:
    """A fresh 63-bit root seed from the OS CSPRNG (``--fresh-entropy``); printed and recorded."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def record_consistent(record: CheckRecord) -> bool:
    """True unless the record claims to pass while its statistic breaks its own threshold.

    A statistic or threshold that is NaN or not a number cannot be compared: such a record is
    consistent only when it failed. Infinite values compare as usual. An ``info`` record has no
    verdict: it is consistent when it passed (its constructor refuses anything else).
    """
    if record.kind == "info":
        return record.passed
    try:
        s, t = float(record.statistic), float(record.threshold)
    except (TypeError, ValueError):
        return not record.passed
    if math.isnan(s) or math.isnan(t):
        return not record.passed
    return (not record.passed) or _COMPARE[record.comparison](s, t)


@dataclass
class CheckRun:
    """One check's run: its spec, derived seed, wall time, records, and the traceback if it raised."""

    spec: CheckSpec
    seed: int
    seconds: float
    records: list[CheckRecord]
    error: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.records) and all(r.passed for r in self.records)

    def to_dict(self) -> dict:
        return {
            "name": self.spec.name,
            "module": self.spec.module,
            "function": self.spec.function,
            "summary": self.spec.summary,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "passed": self.passed,
            "error": self.error,
            "records": [r.to_dict() for r in self.records],
        }


@dataclass
class HarnessRun:
    """Everything one harness run produced, and the metadata needed to replay it."""

    level: str
    root_seed: int
    fresh_entropy: bool
    scale: float
    started: str
    seconds: float
    runs: list[CheckRun]
    environment: dict = field(default_factory=dict)
    only: tuple[str, ...] = ()
    #: the implementation the checks ran against (``module:attr``; note 29)
    target: str = OWN_TARGET
    #: what did not apply to the target and why: whole checks the run skipped (an "internals"
    #: check for another target, a mechanism the target does not declare) and the records of
    #: the checks that ran which said "did not apply"
    not_applicable: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[CheckRecord]:
        return [r for run in self.runs for r in run.records]

    @property
    def passed(self) -> bool:
        return bool(self.runs) and all(run.passed for run in self.runs)

    @property
    def budget(self) -> "FalseAlarmBudget":
        """The report's false-alarm budget (union bound over its records)."""
        return false_alarm_budget(self.runs)

    @property
    def exit_status(self) -> int:
        """0 only if every record of every check passed; 1 otherwise."""
        return 0 if self.passed else 1

    def replay_command(self) -> str:
        cmd = "dpxattn verify"
        if self.target != OWN_TARGET:
            cmd += f" --target {self.target}"
        cmd += f" --level {self.level} --seed {self.root_seed}"
        if self.level == "full":
            cmd += f" --scale {self.scale:g}"
        for name in self.only:
            cmd += f" --only {name}"
        return cmd

    def metadata(self) -> dict:
        counts = [len(run.records) for run in self.runs]
        return {
            "level": self.level,
            "root_seed": self.root_seed,
            "fresh_entropy": self.fresh_entropy,
            "scale": self.scale,
            "only": list(self.only),
            "started_utc": self.started,
            "seconds": round(self.seconds, 3),
            "passed": self.passed,
            "checks": len(self.runs),
            "records": sum(counts),
            "records_failed": sum(1 for r in self.records if not r.passed),
            "false_alarm_budget": self.budget.to_dict(),
            "replay": self.replay_command(),
            "target": self.target,
            "not_applicable": list(self.not_applicable),
            "seed_derivation": "check seed = dpxattn.randomness.derive_seed(root_seed, check name)",
            "environment": self.environment,
        }


class ProgressBar:
    """A plain-text progress bar on a stream (stderr by default); no dependency.

    On a terminal the bar redraws in place; otherwise (CI logs, pipes) it writes one line per
    event. ``note`` shows what a long check is doing now.
    """

    def __init__(self, total: int, *, stream: TextIO | None = None, width: int = 28) -> None:
        self.total = max(int(total), 1)
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.done = 0
        self.current = ""
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def _bar(self) -> str:
        filled = int(round(self.width * self.done / self.total))
        return "[" + "#" * filled + "." * (self.width - filled) + f"] {self.done}/{self.total}"

    def _emit(self, text: str, *, final: bool = False) -> None:
        elapsed = time.perf_counter() - self.t0
        line = f"{self._bar()} {elapsed:7.1f}s  {text}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, name: str) -> None:
        self.current = name
        self._emit(f"running {name} ...")

    def note(self, text: str) -> None:
        self._emit(f"{self.current}: {text}")

    def finish(self, name: str, passed: bool, seconds: float, n_records: int, n_failed: int) -> None:
        self.done += 1
        verdict = "PASS" if passed else f"FAIL ({n_failed} of {n_records} records failed)"
        self._emit(f"{name}: {verdict} in {seconds:.1f}s, {n_records} records", final=True)


def select_checks(level: str, only: Sequence[str] = (), checks: Sequence[CheckSpec] | None = None) -> list[CheckSpec]:
    """The checks that run at ``level`` (registry order), optionally restricted to ``only`` names."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS} (got {level!r})")
    pool = list(CHECKS if checks is None else checks)
    names = [s.name for s in pool]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ValueError(f"unknown check name(s) {unknown}; known: {names}")
    return [s for s in pool if level in s.levels and (not only or s.name in only)]


def _failure_record(spec: CheckSpec, what: str, details: dict) -> CheckRecord:
    return CheckRecord(
        name=f"{spec.name}: {what}",
        kind="exact",
        tests="the check ran to completion and returned at least one record",
        statistic=1.0,
        threshold=0.0,
        comparison="<=",
        passed=False,
        details=details,
    )


def _mark_failed(record: CheckRecord, why: str) -> None:
    record.passed = False
    record.details = dict(record.details)
    note = f"marked failed by the harness: {why}"
    old = record.details.get("harness_note")
    record.details["harness_note"] = note if old is None else f"{old}; {note}"


@dataclass(frozen=True)
class FalseAlarmBudget:
    """How the per-record false-alarm rates of a report add up (the union bound).

    ``total`` = sum over records of :meth:`CheckRecord.false_failure_rate`: the probability
    that a correct implementation fails any record of the report is at most ``total``.
    ``by_check`` and ``by_kind`` split that sum; ``chance_records`` counts the records that can
    fail by chance (rate > 0); ``undeclared`` names the records that state no rate (each is
    failed by the harness and counted as 1 in ``total``).
    """

    total: float
    by_check: dict
    by_kind: dict
    chance_records: int
    undeclared: tuple[str, ...]
    target: float = FAMILY_FALSE_ALARM

    @property
    def met(self) -> bool:
        return not self.undeclared and self.total <= self.target

    def to_dict(self) -> dict:
        return {"total": self.total, "target": self.target, "met": self.met,
                "chance_records": self.chance_records, "by_check": self.by_check,
                "by_kind": self.by_kind, "undeclared": list(self.undeclared),
                "rule": "union bound: P(a correct implementation fails any record) <= the sum "
                        "over records of alpha (statistical, audit), beta (power: the mutant "
                        "escapes) and 0 (exact, search, info)"}

    def sentence(self) -> str:
        head = (f"false-alarm budget (union bound over {self.chance_records} records that can fail "
                f"by chance: sum of alpha and of power beta) {format_number(self.total)}, target "
                f"<= {format_number(self.target)}: {'met' if self.met else 'NOT MET'}")
        if self.undeclared:
            head += f"; {len(self.undeclared)} record(s) state no rate and were failed"
        return head


def false_alarm_budget(runs: Sequence[CheckRun]) -> FalseAlarmBudget:
    """The union bound on a false alarm anywhere in ``runs`` (see :class:`FalseAlarmBudget`)."""
    total, by_check, by_kind, chance, undeclared = 0.0, {}, {}, 0, []
    for run in runs:
        for r in run.records:
            rate = r.false_failure_rate()
            if rate is None:
                undeclared.append(f"{run.spec.name}: {r.name}")
                rate = 1.0
            if rate > 0:
                chance += 1
            total += rate
            by_check[run.spec.name] = by_check.get(run.spec.name, 0.0) + rate
            by_kind[r.kind] = by_kind.get(r.kind, 0.0) + rate
    return FalseAlarmBudget(total=total, by_check=by_check, by_kind=by_kind,
                            chance_records=chance, undeclared=tuple(undeclared))


def run_check(spec: CheckSpec, ctx: CheckContext) -> CheckRun:
    """Run one check; never raises (an exception becomes a failed record with its traceback)."""
    t0 = time.perf_counter()
    error = None
    try:
        fn = load(spec)
        out = fn(ctx)
        records = list(out or [])
        bad = [type(r).__name__ for r in records if not isinstance(r, CheckRecord)]
        if bad:
            raise TypeError(f"check {spec.name} returned non-CheckRecord items: {bad}")
        if not records:
            records = [_failure_record(spec, "returned no records", {})]
    except Exception:  # noqa: BLE001 - the harness reports every failure as a record
        error = traceback.format_exc()
        records = [_failure_record(spec, "raised an exception", {"traceback": error})]
    for r in records:
        if not record_consistent(r):
            _mark_failed(r, "the record claimed to pass but its statistic "
                            f"{r.statistic!r} {r.comparison} threshold {r.threshold!r} does not hold")
        if r.false_failure_rate() is None:
            _mark_failed(r, f"a {r.kind!r} record can fail by chance but states no rate in [0, 1] "
                            "(alpha for statistical and audit records, beta for power records)")
    return CheckRun(spec, ctx.seed, time.perf_counter() - t0, records, error)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict:
    """Versions and machine facts recorded in every report."""
    import dpxattn

    commit = "unknown"
    try:
        repo = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
        if out.returncode == 0 and out.stdout.strip():
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5, check=False)
            commit = out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "dpxattn": dpxattn.__version__,
        "git_commit": commit,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "torch": _version("torch"),
        "mpmath": _version("mpmath"),
        "matplotlib": _version("matplotlib"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def run_harness(
    level: str = "quick",
    *,
    out_dir: Path | str | None = None,
    root_seed: int | None = None,
    fresh_entropy: bool = False,
    only: Sequence[str] = (),
    scale: float = 1.0,
    checks: Sequence[CheckSpec] | None = None,
    progress: ProgressBar | bool | None = True,
    progress_stream: TextIO | None = None,
    target=None,
    overrides: dict | None = None,
) -> HarnessRun:
    """Run every check of ``level`` and return the :class:`HarnessRun` (does not write the report).

    ``root_seed`` defaults to :data:`DEFAULT_ROOT_SEED`; ``fresh_entropy=True`` draws it from
    the OS instead (giving both is an error). ``out_dir`` receives the plots (in
    ``out_dir/plots``); ``None`` means checks draw no plots. ``checks`` replaces the registry
    (tests use it); ``scale`` multiplies sample sizes at level ``full``.

    ``target`` (a :class:`~dpxattn.verification.target.LoadedTarget`; None: dpxattn's own fast
    path, :data:`~dpxattn.verification.target.OWN_TARGET`) is the implementation under test:
    every check runs with it as ``ctx.target``; a check that ``reaches="internals"``
    (:data:`~dpxattn.verification.registry.REACHES`) runs only for the own target and is listed
    in ``not_applicable`` with its reason for any other. ``overrides`` is handed to every
    check's context (tests: ``{"target_sizes": ...}``).
    """
    if fresh_entropy and root_seed is not None:
        raise ValueError("give either root_seed or fresh_entropy=True, not both")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0 (got {scale!r})")
    root = draw_root_seed() if fresh_entropy else (DEFAULT_ROOT_SEED if root_seed is None else int(root_seed))
    selected = select_checks(level, only, checks)
    loaded = own_target() if target is None else target
    own = is_own_target(loaded)
    not_applicable = [f"{spec.name}: runs only for dpxattn's own fast path: {spec.why}"
                      for spec in selected if not spec.applies_to(own)]
    selected = [spec for spec in selected if spec.applies_to(own)]
    not_applicable += [f"every check [{m}]: the target does not declare mechanism '{m}'"
                       for m in MECHANISMS if m not in loaded.obj.mechanisms]
    from dpxattn.verification.checks_target import clear_shared

    clear_shared()
    plots_dir = None if out_dir is None else Path(out_dir) / PLOTS_SUBDIR
    bar = progress if isinstance(progress, ProgressBar) else (
        ProgressBar(len(selected), stream=progress_stream) if progress else None)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    runs: list[CheckRun] = []
    for spec in selected:
        seed = derive_seed(root, *spec.seed_path) if spec.seed_path else derive_seed(root, spec.name)
        ctx = CheckContext(level=level, seed=seed, out_dir=plots_dir, fresh_entropy=fresh_entropy,
                           scale=float(scale), target=None if own and target is None else loaded,
                           overrides=dict(overrides or {}))
        if bar is not None:
            bar.start(spec.name)
            ctx.progress = bar.note  # CheckContext.note(text) shows a long check's stage
        run = run_check(spec, ctx)
        runs.append(run)
        if bar is not None:
            n_failed = sum(1 for r in run.records if not r.passed)
            bar.finish(spec.name, run.passed, run.seconds, len(run.records), n_failed)
    clear_shared()
    not_applicable += [f"{run.spec.name}: {r.name.replace(': did not apply', '')}: {r.tests}"
                       for run in runs for r in run.records if r.details.get("applies") is False]
    return HarnessRun(level=level, root_seed=root, fresh_entropy=fresh_entropy, scale=float(scale),
                      started=started, seconds=time.perf_counter() - t0, runs=runs,
                      environment=environment(), only=tuple(only), target=loaded.spec,
                      not_applicable=not_applicable)


def format_number(x) -> str:
    """A short, aligned rendering of a number for tables (None as "-", non-finite spelled out)."""
    if x is None:
        return "-"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return f"{x:,}"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.3e}"
    return f"{v:.4g}"


def summary_table(run: HarnessRun, *, width: int = 100) -> str:
    """The end-of-run table: one row per check, then every failed record in full."""
    rows = [("check", "records", "failed", "seconds", "verdict")]
    for cr in run.runs:
        failed = sum(1 for r in cr.records if not r.passed)
        rows.append((cr.spec.name, str(len(cr.records)), str(failed), f"{cr.seconds:.1f}",
                     "PASS" if cr.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"dpxattn verify --level {run.level}: root seed {run.root_seed}"
             + (" (fresh entropy)" if run.fresh_entropy else "") + f"; target {run.target}"]
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    failed = [(cr.spec.name, r) for cr in run.runs for r in cr.records if not r.passed]
    if failed:
        lines.append("")
        lines.append("failed records:")
        for check, r in failed:
            line = (f"  [{check}] {r.name}: statistic {format_number(r.statistic)} (needs {r.comparison} "
                    f"{format_number(r.threshold)}); alpha {format_number(r.alpha)}, n {format_number(r.sample_size)}")
            lines.append(line if len(line) <= width else line[: width - 3] + "...")
            if "traceback" in r.details:
                tb = str(r.details["traceback"]).strip().splitlines()
                lines.append("      " + (tb[-1] if tb else ""))
    total = len(run.records)
    lines.append("")
    lines.append(f"{total - len(failed)} of {total} records passed in {len(run.runs)} checks, "
                 f"{run.seconds:.1f}s: {'PASS' if run.passed else 'FAIL'}")
    lines.append(run.budget.sentence())
    lines.append(f"replay: {run.replay_command()}")
    return "\n".join(lines)
