"""Seed sweeps: run one level of the harness under many root seeds and count the false alarms.

A verification report that fails a correct build by bad luck more often than it says teaches its
reader to ignore red reports. Each report states its false-alarm budget (the union bound of
:class:`dpxattn.verification.harness.FalseAlarmBudget`, at most 1e-3 per report); a sweep is how
a reviewer checks that claim from the outside: ``dpxattn verify --level quick --sweep 50 --seed 1``
runs the level under the root seeds 1, 2, ..., 50 (``--fresh-entropy``: 50 roots from the OS),
prints one row per run and writes ``DIR/sweep.md`` and ``DIR/sweep.json``; the full report of
every failing run goes to ``DIR/seed-ROOT/`` for replay (without plots; a sweep draws none). On a correct build the chance that any
run of a K-run sweep fails is at most K times the per-report budget (union bound again).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TextIO

from dpxattn.verification.harness import (DEFAULT_ROOT_SEED, HarnessRun, draw_root_seed,
                                          format_number, run_harness)

__all__ = ["SweepRun", "SweepResult", "run_sweep", "render_sweep", "write_sweep"]


@dataclass(frozen=True)
class SweepRun:
    """One report of a sweep: its root seed, verdict, failed records, time and budget."""

    root_seed: int
    passed: bool
    failed_records: tuple[str, ...]
    records: int
    seconds: float
    budget: float

    def to_dict(self) -> dict:
        return {"root_seed": self.root_seed, "passed": self.passed,
                "failed_records": list(self.failed_records), "records": self.records,
                "seconds": round(self.seconds, 3), "false_alarm_budget": self.budget}


@dataclass(frozen=True)
class SweepResult:
    level: str
    fresh_entropy: bool
    runs: tuple[SweepRun, ...]
    seconds: float

    @property
    def failures(self) -> int:
        return sum(1 for r in self.runs if not r.passed)

    @property
    def passed(self) -> bool:
        return bool(self.runs) and self.failures == 0

    @property
    def chance_bound(self) -> float:
        """Union bound on the chance that a correct build fails any run of this sweep."""
        return min(1.0, sum(r.budget for r in self.runs))

    def to_dict(self) -> dict:
        secs = [r.seconds for r in self.runs]
        return {"level": self.level, "fresh_entropy": self.fresh_entropy, "runs": len(self.runs),
                "failures": self.failures, "passed": self.passed, "seconds": round(self.seconds, 3),
                "seconds_per_run": {"min": min(secs), "max": max(secs), "mean": sum(secs) / len(secs)}
                if secs else {},
                "chance_of_any_false_alarm_at_most": self.chance_bound,
                "reports": [r.to_dict() for r in self.runs]}


def run_sweep(level: str, *, runs: int, first_seed: int | None = None, fresh_entropy: bool = False,
              out_dir: Path | str | None = None, only: Sequence[str] = (), scale: float = 1.0,
              checks=None, stream: TextIO | None = None, target=None) -> SweepResult:
    """Run ``level`` ``runs`` times: root seeds ``first_seed``, ``first_seed + 1``, ... (or fresh
    OS entropy for each run), against ``target`` (None: dpxattn's own fast path). The full report of each failing run is written to
    ``out_dir/seed-ROOT/`` when ``out_dir`` is given. ``stream`` receives one line per run."""
    from dpxattn.verification.report import write_report

    if isinstance(runs, bool) or int(runs) != runs or runs < 1:
        raise ValueError(f"a sweep needs runs >= 1 (got {runs!r})")
    if fresh_entropy and first_seed is not None:
        raise ValueError("give either a first seed or fresh_entropy=True, not both")
    start = DEFAULT_ROOT_SEED if first_seed is None else int(first_seed)
    out = None if out_dir is None else Path(out_dir)
    done: list[SweepRun] = []
    t0 = time.perf_counter()
    for i in range(int(runs)):
        root = draw_root_seed() if fresh_entropy else start + i
        run: HarnessRun = run_harness(level, root_seed=root, only=only, scale=scale, checks=checks,
                                      progress=False, out_dir=None, target=target)  # rows only
        failed = tuple(f"{cr.spec.name}: {r.name}" for cr in run.runs for r in cr.records if not r.passed)
        if failed and out is not None:
            write_report(run, out / f"seed-{root}")
        row = SweepRun(root, run.passed, failed, len(run.records), run.seconds, run.budget.total)
        done.append(row)
        if stream is not None:
            verdict = "PASS" if row.passed else f"FAIL ({len(failed)}: {'; '.join(failed)[:160]})"
            stream.write(f"[{i + 1}/{runs}] root seed {root}: {verdict} in {row.seconds:.1f}s\n")
            stream.flush()
    return SweepResult(level, fresh_entropy, tuple(done), time.perf_counter() - t0)


def render_sweep(result: SweepResult) -> str:
    """The Markdown summary of a sweep (also its stdout)."""
    secs = [r.seconds for r in result.runs]
    head = (f"seed sweep, level {result.level}: {len(result.runs)} runs "
            f"({'fresh entropy' if result.fresh_entropy else 'consecutive root seeds'}), "
            f"{result.failures} failed; {result.seconds:.0f} s in all, per run "
            f"{min(secs):.1f}-{max(secs):.1f} s (mean {sum(secs) / len(secs):.1f} s)")
    lines = [f"# {head}", "",
             f"On a correct build the chance that any of these runs fails is at most "
             f"{format_number(result.chance_bound)} (the sum of the reports' false-alarm budgets).",
             "", "| root seed | verdict | records | failed records | seconds | budget |",
             "|---:|---|---:|---|---:|---:|"]
    for r in result.runs:
        lines.append(f"| {r.root_seed} | {'PASS' if r.passed else '**FAIL**'} | {r.records} | "
                     f"{'; '.join(r.failed_records) or '-'} | {r.seconds:.1f} | {format_number(r.budget)} |")
    lines.append("")
    lines.append(f"{len(result.runs) - result.failures} of {len(result.runs)} runs passed")
    return "\n".join(lines)


def write_sweep(result: SweepResult, out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``out_dir/sweep.md`` and ``out_dir/sweep.json``."""
    from dpxattn.verification.report import jsonable

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "sweep.md", out / "sweep.json"
    md.write_text(render_sweep(result) + "\n", encoding="utf-8")
    js.write_text(json.dumps(jsonable(result.to_dict()), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return md, js
