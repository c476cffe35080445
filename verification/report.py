"""The verification report: ``DIR/report.md`` for people, ``DIR/report.json`` for machines.

DESIGN §6; proofs_notes/20-verification-standards.md. The Markdown report is written for a reviewer who has not seen the code:
it says what the harness is, how to read a record (statistic, threshold, alpha, power), the
overall verdict, then one section per check (what it means, in the words of the check's own
docstring, its records with their numbers, its plots embedded), and finally the seeds, the
versions, the level and the timing needed to reproduce it. The JSON report holds the same
records (``CheckRecord.to_dict``) and the run metadata.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from dpxattn.verification.harness import HarnessRun, format_number
from dpxattn.verification.registry import load
from dpxattn.verification.target import OWN_TARGET

__all__ = ["write_report", "render_markdown", "report_dict", "jsonable"]

_HOW_TO_READ = """\
## How to read this report

dpxattn releases a noisy summary of private keys and values (K, V) from which any number of
attention queries are answered; its claims are (1) a privacy guarantee, (eps, delta)-DP under
replacement of one row of (K, V), and (2) a *certified* error envelope for every answer. The
harness tests those claims from the outside, check by check. Every check returns **records**;
a record is one assertion:

* **statistic** is what was measured, compared with the **threshold** by the shown comparison
  (`<=`, `>=` or `==`); the record passes when the comparison holds.
* **kind** says what sort of evidence it is: `exact` (a deterministic fact, e.g. the noise
  never leaves its support), `statistical` (a hypothesis test on random draws), `search` (an
  adversarial search that must not beat an analytic bound), `audit` (an empirical lower bound on
  eps), `power` (a deliberately wrong variant, a *mutant*, that the same tests must reject: a
  power record **passes when the wrong variant is caught**), `info` (a figure shown for reading,
  e.g. an accuracy trend; it has no verdict and cannot fail).
* **alpha** is the false-alarm rate of a statistical or audit record: the probability that a
  correct implementation fails it by bad luck. DESIGN §6 asks alpha <= 1e-6 per distribution
  test. **beta** is, for a power record, an upper bound on the probability that its mutant
  escapes at this sample size (derived from the mutant's exact law), which is the only way a
  power record can fail a correct implementation. **confidence** is the level of an interval or
  a lower bound. The header's **false-alarm budget** adds every alpha and beta of the report
  (the union bound): the probability that a correct implementation fails any record anywhere in
  the report is at most that sum, and each level is sized to keep it <= 1e-3.
* **n** is the number of random draws (or search points) the record rests on.

Every statistical test is shown to have **power**: it is run again on a mutant (e.g. the noise
sampler with its scale multiplied by 0.7 or 1.3) and must reject it; those runs appear as
`power` records. A test that cannot fail proves nothing, so a check whose mutants are not
caught fails.

Seeds: one root seed; each check draws from its own seed, `derive_seed(root, check name)`
(`dpxattn.randomness`). Re-running with the same root seed reproduces every number below;
`--only NAME` replays one check alone with the same numbers.
"""


def jsonable(x):
    """A JSON-safe copy: numpy scalars/arrays to Python, non-finite floats to "inf"/"-inf"/"nan"."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(x, Fraction):
        return str(x)
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, str):
        return x
    return str(x)


def _relative_plot(path: str, out_dir: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(out_dir.resolve()).as_posix()
        except ValueError:
            return os.path.relpath(p, out_dir)
    return p.as_posix()


def report_dict(run: HarnessRun, out_dir: Path | str | None = None) -> dict:
    """The JSON report: run metadata, one entry per check, and every record (flat, with its check)."""
    out = Path(out_dir) if out_dir is not None else None
    records = []
    for cr in run.runs:
        for r in cr.records:
            d = r.to_dict()
            d["check"] = cr.spec.name
            if out is not None:
                d["plots"] = [_relative_plot(p, out) for p in r.plots]
            records.append(d)
    checks = []
    for cr in run.runs:
        d = cr.to_dict()
        d.pop("records")
        d["records"] = len(cr.records)
        d["records_failed"] = sum(1 for r in cr.records if not r.passed)
        checks.append(d)
    meta = run.metadata()
    return jsonable({"metadata": meta, "checks": checks, "records": records})


def _check_description(run_spec) -> str:
    try:
        doc = inspect.getdoc(load(run_spec)) or ""
    except Exception:  # noqa: BLE001 - an unloadable check is already a failed record
        doc = ""
    return doc.strip()


def _details_text(details: dict, limit: int = 240) -> str:
    parts = []
    for k, v in details.items():
        if k == "traceback":
            continue
        text = json.dumps(jsonable(v), separators=(", ", ": "))
        if len(text) > limit:
            text = text[: limit - 3] + "..."
        parts.append(f"`{k}` = {text}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _header_lines(run: HarnessRun) -> list[str]:
    """Title, verdict and the run's facts (level, seed, replay, timing, false-alarm budget)."""
    n_rec = len(run.records)
    n_fail = sum(1 for r in run.records if not r.passed)
    verdict = "PASS" if run.passed else "FAIL"
    own = run.target == OWN_TARGET
    L = ["# dpxattn verification report", "",
         f"**Verdict: {verdict}** - {n_rec - n_fail} of {n_rec} records passed in "
         f"{len(run.runs)} checks (level `{run.level}`, {run.seconds:.1f} s).", "",
         f"* target: `{run.target}`"
         + (" (dpxattn's own fast path, the default)" if own else
            f" (through the target protocol; {len(run.not_applicable)} item(s) did not apply, "
            "listed below)"),
         f"* level: `{run.level}`" + (f" (sample sizes x{run.scale:g})" if run.level == "full" else ""),
         f"* root seed: `{run.root_seed}` "
         + ("(drawn from OS entropy for this run; recorded so a failure can be replayed)"
            if run.fresh_entropy else "(fixed; the default reproducible report)"),
         f"* replay: `{run.replay_command()}`",
         f"* started (UTC): {run.started}; wall time {run.seconds:.1f} s"]
    budget = run.budget
    L.append(f"* {budget.sentence()}; by check: "
             + ", ".join(f"{k} {format_number(v)}" for k, v in budget.by_check.items() if v > 0))
    if run.only:
        L.append(f"* restricted to the checks: {', '.join(run.only)}")
    L += ["", _HOW_TO_READ]
    return L


def _not_applicable_lines(run: HarnessRun) -> list[str]:
    """The checks and cases that did not apply to the target, each with its reason."""
    if not run.not_applicable:
        return []
    L = ["## Did not apply", "",
         f"What the harness could not run against `{run.target}`, and why (none of it counts "
         "toward the verdict; note 29 lists which checks run for which targets):", ""]
    L += [f"* {_cell(line)}" for line in run.not_applicable]
    return L + [""]


def _summary_lines(run: HarnessRun) -> list[str]:
    """One table row per check, linking to its section."""
    L = ["## Summary", "", "| # | check | what it checks | records | failed | seconds | verdict |",
         "|---|---|---|---:|---:|---:|---|"]
    for i, cr in enumerate(run.runs, 1):
        failed = sum(1 for r in cr.records if not r.passed)
        L.append(f"| {i} | [{cr.spec.name}](#check-{i}) | {_cell(cr.spec.summary)} | {len(cr.records)} | "
                 f"{failed} | {cr.seconds:.1f} | {'PASS' if cr.passed else '**FAIL**'} |")
    L.append("")
    return L


def _rate_text(r) -> str:
    """The record's false-alarm rate as the table shows it."""
    rate = r.false_failure_rate()
    if rate is None:
        return "none stated"
    if r.kind in ("exact", "search", "info"):
        return "-"
    return f"{'beta' if r.kind == 'power' else 'alpha'} {format_number(rate)}"


def _record_table(cr) -> list[str]:
    L = ["| record | kind | statistic | | threshold | false-alarm rate | n | verdict |",
         "|---|---|---:|:-:|---:|---:|---:|---|"]
    for r in cr.records:
        L.append(f"| {_cell(r.name)} | {r.kind} | {format_number(r.statistic)} | {r.comparison} | "
                 f"{format_number(r.threshold)} | {_rate_text(r)} | "
                 f"{format_number(r.sample_size) if r.sample_size else '-'} | "
                 f"{('info' if r.kind == 'info' else 'pass') if r.passed else '**FAIL**'} |")
    L.append("")
    return L


def _record_assertions(cr) -> list[str]:
    L = ["What each record asserts:", ""]
    for r in cr.records:
        line = f"* **{r.name}** - {r.tests}"
        det = _details_text(r.details)
        if det:
            line += f"  \n  <sub>{det}</sub>"
        L.append(line)
        if "traceback" in r.details:
            L += ["", "  ```"]
            L.extend("  " + t for t in str(r.details["traceback"]).rstrip().splitlines())
            L.append("  ```")
    L.append("")
    return L


def _plot_lines(cr, out: Path) -> list[str]:
    seen: list[str] = []
    for r in cr.records:
        for p in r.plots:
            rel = _relative_plot(p, out)
            if rel not in seen:
                seen.append(rel)
    L = []
    for rel in seen:
        L += [f"![{Path(rel).stem}]({rel})", ""]
    return L


def _check_section(i: int, cr, out: Path) -> list[str]:
    """One check: what it means (its docstring), its records, what they assert, its plots."""
    L = [f'<a id="check-{i}"></a>', "", f"## {i}. {cr.spec.name} - {'PASS' if cr.passed else 'FAIL'}", ""]
    if cr.spec.summary:
        L += [f"*{cr.spec.summary}*", ""]
    desc = _check_description(cr.spec)
    if desc:
        L += ["**What this check does.**", "", desc, ""]
    L += [f"Seed `{cr.seed}` (derived from the root), `{cr.spec.module}.{cr.spec.function}`, "
          f"{cr.seconds:.1f} s.", ""]
    return L + _record_table(cr) + _record_assertions(cr) + _plot_lines(cr, out)


def _environment_lines(run: HarnessRun) -> list[str]:
    meta = run.metadata()
    L = ["## Environment and reproduction", "", "| item | value |", "|---|---|"]
    for k, v in meta["environment"].items():
        L.append(f"| {k} | {_cell(v)} |")
    L += [f"| seed derivation | {meta['seed_derivation']} |", "",
          "Per-check seeds: " + ", ".join(f"`{cr.spec.name}` = {cr.seed}" for cr in run.runs) + ".",
          "", "The machine-readable form of every record above is in `report.json`.", ""]
    return L


def render_markdown(run: HarnessRun, out_dir: Path | str) -> str:
    """The text of report.md (plots referenced relative to ``out_dir``): header, summary, one
    section per check, environment."""
    out = Path(out_dir)
    L = _header_lines(run) + _summary_lines(run) + _not_applicable_lines(run)
    for i, cr in enumerate(run.runs, 1):
        L += _check_section(i, cr, out)
    return "\n".join(L + _environment_lines(run))


def write_report(run: HarnessRun, out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` and ``out_dir/report.json``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    js = out / "report.json"
    md.write_text(render_markdown(run, out), encoding="utf-8")
    js.write_text(json.dumps(report_dict(run, out), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return md, js
