"""Text rendering of the benchmark: Markdown tables (pipe tables, so the output pastes into a
README or an issue as it is) and the JSON document.

Every targets / slopes row is rendered as
``| id | what | config | measured | interval (coverage) | threshold | VERDICT | note |`` so that a
reader (and ``tests/test_bench_smoke.py``) can parse it; the verdict is one of
:data:`dpxattn.benchmarks.targets.VERDICTS`. The interval cell is ``[lo, hi]unit @C%`` (C: the
interval's guaranteed coverage of the median; ``< R%`` follows when it falls short of the
requested R), ``exact`` for a deterministic value, ``-`` for a figure without one.
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Sequence

from dpxattn.benchmarks.targets import Target

__all__ = ["table", "targets_table", "fmt", "fmt_time", "fmt_bytes", "write_json", "json_safe"]


def fmt(value, digits: int = 3) -> str:
    """A number in ``digits`` significant digits; n/a for None or NaN."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_time(seconds: float | None) -> str:
    """Seconds in the nearest readable unit (ns, us, ms, s)."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "n/a"
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_bytes(n: float | None) -> str:
    """Bytes in KiB / MiB / GiB."""
    if n is None:
        return "n/a"
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{int(n)} B"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown pipe table with aligned columns; cells are formatted with :func:`fmt`."""
    body = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(list(headers)), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in body]
    return "\n".join(out)


def targets_table(rows: Sequence[Target]) -> str:
    """The targets (or slopes) rows, one per line, verdict in its own column."""
    return table(
        ("id", "what", "config", "measured", "interval (coverage)", "threshold", "verdict", "note"),
        [(t.id, t.what, t.config, t.measured_text(), t.interval_text(), t.threshold_text(), t.verdict,
          t.note) for t in rows],
    )


def json_safe(obj):
    """``obj`` with NaN / inf replaced by None and tuples by lists (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return json_safe(obj.to_dict())
    return obj


def write_json(path: str, document: dict) -> None:
    """Write the run's JSON document (strict JSON: no NaN)."""
    with open(path, "w") as f:
        json.dump(json_safe(document), f, indent=2, allow_nan=False)
        f.write("\n")
