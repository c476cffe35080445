"""examples/third_party_numpy.py through the target suite: the correct class passes at
quick in under 2 minutes, each wrong variant fails with the check that exposes it."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from dpxattn.verification.checks_target import run_target
from dpxattn.verification.target import load_target

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "third_party_numpy.py"


def _run(name: str):
    return run_target(load_target(f"{EXAMPLE}:{name}"), "quick", progress=False)


def _failed(run, prefix: str) -> bool:
    """Whether a record whose name starts with ``prefix`` failed."""
    return any(r.name.startswith(prefix) and not r.passed for r in run.records)


def test_example_does_not_import_dpxattn():
    tree = ast.parse(EXAMPLE.read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "dpxattn" not in mods and mods <= {"__future__", "itertools", "math", "numpy"}


@pytest.mark.statistical
def test_correct_passes_at_quick_under_two_minutes():
    t0 = time.perf_counter()
    run = _run("Correct")
    seconds = time.perf_counter() - t0
    assert run.passed, [(r.name, r.statistic, r.threshold) for r in run.records if not r.passed]
    assert seconds < 120, seconds
    assert run.budget.met
    # the suite had power: the noise law's x0.7 / x1.3 records rejected the scaled draws
    assert sum(r.kind == "power" and r.passed for r in run.records) == 2


@pytest.mark.statistical
def test_noise_times_07_fails_the_noise_law_and_conformance():
    run = _run("NoiseTimes07")
    assert not run.passed
    for prefix in ("noise law: pooled KS", "noise law: per-entry KS", "conformance"):
        assert _failed(run, prefix), prefix
    for prefix in ("noiselessness", "sensitivity"):
        assert not _failed(run, prefix), prefix


@pytest.mark.statistical
def test_noiseless_denominator_fails_the_audit_and_the_noise_law():
    run = _run("NoiselessDenominator")
    assert not run.passed
    for prefix in ("audit: released numbers", "noise law: per-entry KS", "conformance"):
        assert _failed(run, prefix), prefix
    per = next(r for r in run.records if r.name.startswith("noise law: per-entry KS"))
    # exactly the ones column (every (d_v + 1)-th entry, d_v = 1) has no noise
    assert per.details["rejected_entries"] == list(range(1, 12, 2))


@pytest.mark.statistical
def test_outside_sampler_diffprivlib_bounded_laplace():
    """diffprivlib's bounded Laplace as a degree-0 direct target: its own law is not the
    truncated Laplace (noise law fails, as it must), yet its released numbers stay within the
    claimed eps on the worst corner pair (audit at alpha 1e-6), and the halved noise is seen."""
    pytest.importorskip("diffprivlib.mechanisms")
    path = EXAMPLE.with_name("diffprivlib_bounded_laplace.py")
    run = run_target(load_target(f"{path}:BoundedLaplaceDirect"), "quick", progress=False,
                     only=("target-noise-law", "target-sensitivity", "target-audit"))
    assert _failed(run, "noise law: pooled KS")
    assert not _failed(run, "sensitivity") and not _failed(run, "audit")
    halved = next(r for r in run.records if r.name.startswith("audit: released numbers, noise x0.5"))
    assert halved.statistic > 1.0  # the audit sees the under-noised variant
    # the target offers degree 0 only (``degrees``): the suite ran there
    assert all("s=0" in r.name for r in run.records)
