"""The verification harness itself: levels, seeds, failures, report files, exit codes (note 20)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from dpxattn.randomness import derive_seed
from dpxattn.verification import harness, registry
from dpxattn.verification.cli_verify import add_arguments, run as cli_run
from dpxattn.verification.harness import (DEFAULT_ROOT_SEED, ProgressBar, record_consistent,
                                          run_harness, select_checks, summary_table)
from dpxattn.verification.plots import Curve, plot_curves
from dpxattn.verification.records import FAMILY_FALSE_ALARM, CheckContext, CheckRecord
from dpxattn.verification.registry import CHECKS, CheckSpec
from dpxattn.verification.report import jsonable, write_report

THIS = __name__


# ---- tiny checks the harness runs in these tests (same contract as the real ones) ----

def tiny_statistical_check(ctx: CheckContext) -> list[CheckRecord]:
    """A tiny statistical check: the mean of 1000 standard normals is within 5.33 sigma of 0."""
    x = ctx.rng.standard_normal(1000)
    z = abs(float(x.mean())) * np.sqrt(1000)
    rec = CheckRecord(name="normal mean", kind="statistical", tests="mean of N(0,1) draws is 0",
                      statistic=z, threshold=5.33, comparison="<=", passed=z <= 5.33,
                      alpha=1e-7, sample_size=1000, details={"first_draw": float(x[0])})
    path = ctx.plot_path("tiny.png")
    if path is not None:
        plot_curves([Curve("draws", np.arange(1, 11), np.abs(x[:10]) + 1e-3)], path, title="tiny",
                    xlabel="i", ylabel="|x|")
        rec.plots.append(str(path))
    return [rec]


def tiny_failing_check(ctx: CheckContext) -> list[CheckRecord]:
    """A check that always fails (an exact assertion that does not hold)."""
    return [CheckRecord(name="one equals two", kind="exact", tests="1 == 2", statistic=1.0,
                        threshold=2.0, comparison="==", passed=False)]


def tiny_raising_check(ctx: CheckContext) -> list[CheckRecord]:
    raise RuntimeError("boom from the tiny check")


def tiny_empty_check(ctx: CheckContext) -> list[CheckRecord]:
    return []


def tiny_lying_check(ctx: CheckContext) -> list[CheckRecord]:
    """Claims to pass although its statistic breaks its threshold."""
    return [CheckRecord(name="liar", kind="exact", tests="3 <= 2", statistic=3.0, threshold=2.0,
                        comparison="<=", passed=True)]


def _spec(fn, levels=("quick", "standard", "full")) -> CheckSpec:
    return CheckSpec(name=fn.__name__.replace("_", "-"), module=THIS, function=fn.__name__,
                     levels=levels, summary=f"tiny: {fn.__name__}")


GOOD = [_spec(tiny_statistical_check)]


def test_tiny_level_end_to_end_writes_report(tmp_path):
    run = run_harness("quick", out_dir=tmp_path, checks=GOOD, progress=False)
    assert run.passed and run.exit_status == 0
    md, js = write_report(run, tmp_path)
    text = md.read_text()
    assert "Verdict: PASS" in text and "How to read this report" in text
    assert "![tiny](plots/tiny.png)" in text  # plots embedded relative to the report
    assert (tmp_path / "plots" / "tiny.png").stat().st_size > 1000
    assert "A tiny statistical check" in text  # the check's docstring explains it
    data = json.loads(js.read_text())
    assert data["metadata"]["root_seed"] == DEFAULT_ROOT_SEED
    assert data["metadata"]["level"] == "quick"
    assert data["records"][0]["check"] == "tiny-statistical-check"
    assert data["records"][0]["plots"] == ["plots/tiny.png"]
    assert data["checks"][0]["seed"] == derive_seed(DEFAULT_ROOT_SEED, "tiny-statistical-check")
    assert "numpy" in data["metadata"]["environment"]


def test_failures_raise_empty_and_inconsistent_records_fail(tmp_path):
    specs = GOOD + [_spec(tiny_failing_check), _spec(tiny_raising_check), _spec(tiny_empty_check),
                    _spec(tiny_lying_check)]
    run = run_harness("quick", out_dir=tmp_path, checks=specs, progress=False)
    assert not run.passed and run.exit_status == 1
    by_name = {cr.spec.name: cr for cr in run.runs}
    assert by_name["tiny-statistical-check"].passed
    raised = by_name["tiny-raising-check"]
    assert not raised.passed and "boom from the tiny check" in raised.records[0].details["traceback"]
    assert not by_name["tiny-empty-check"].passed
    liar = by_name["tiny-lying-check"].records[0]
    assert not liar.passed and "harness_note" in liar.details
    table = summary_table(run)
    assert "FAIL" in table and "RuntimeError: boom" in table and "replay: dpxattn verify" in table
    md, js = write_report(run, tmp_path)
    assert "Verdict: FAIL" in md.read_text() and "boom from the tiny check" in md.read_text()
    assert json.loads(js.read_text())["metadata"]["records_failed"] == 4


def test_seeds_replay_and_fresh_entropy_is_recorded():
    a = run_harness("quick", checks=GOOD, progress=False, root_seed=123)
    b = run_harness("quick", checks=GOOD, progress=False, root_seed=123)
    c = run_harness("quick", checks=GOOD, progress=False, root_seed=124)
    stat = lambda r: r.runs[0].records[0].details["first_draw"]  # noqa: E731
    assert stat(a) == stat(b) and stat(a) != stat(c)
    fresh = run_harness("quick", checks=GOOD, progress=False, fresh_entropy=True)
    assert fresh.fresh_entropy and fresh.replay_command().endswith(f"--seed {fresh.root_seed}")
    replay = run_harness("quick", checks=GOOD, progress=False, root_seed=fresh.root_seed)
    assert stat(replay) == stat(fresh)
    with pytest.raises(ValueError, match="not both"):
        run_harness("quick", checks=GOOD, progress=False, root_seed=1, fresh_entropy=True)


def test_level_selection_and_only():
    specs = [_spec(tiny_statistical_check, levels=("standard",)), _spec(tiny_failing_check)]
    assert [s.name for s in select_checks("quick", checks=specs)] == ["tiny-failing-check"]
    assert len(select_checks("standard", checks=specs)) == 2
    assert [s.name for s in select_checks("standard", ["tiny-statistical-check"], specs)] == [
        "tiny-statistical-check"]
    with pytest.raises(ValueError, match="unknown check"):
        select_checks("quick", ["no-such-check"], specs)
    with pytest.raises(ValueError, match="level must be one of"):
        select_checks("medium", checks=specs)


def test_progress_bar_plain_text():
    stream = io.StringIO()
    bar = ProgressBar(2, stream=stream)
    run = run_harness("quick", checks=GOOD + [_spec(tiny_failing_check)], progress=bar)
    text = stream.getvalue()
    assert "running tiny-statistical-check" in text and "[##############..............] 1/2" in text
    assert "tiny-failing-check: FAIL" in text and not run.passed


def test_record_consistency_rules():
    mk = lambda s, t, c, p: CheckRecord("r", "exact", "", s, t, c, p)  # noqa: E731
    assert record_consistent(mk(1.0, 2.0, "<=", True))
    assert not record_consistent(mk(3.0, 2.0, "<=", True))
    assert record_consistent(mk(3.0, 2.0, "<=", False))
    assert not record_consistent(mk(float("nan"), 2.0, ">=", True))
    assert not record_consistent(mk(float("inf"), 2.0, "<=", True))
    assert record_consistent(mk(float("inf"), 2.0, ">=", True))


def test_json_is_strict_and_false_alarm_sum():
    assert jsonable({"a": np.float64("inf"), "b": np.arange(2), 3: np.bool_(True)}) == {
        "a": "inf", "b": [0, 1], "3": True}
    run = run_harness("quick", checks=GOOD * 1, progress=False)
    assert run.budget.total == pytest.approx(1e-7) and run.budget.met
    assert run.metadata()["false_alarm_budget"]["total"] == pytest.approx(1e-7)


def tiny_undeclared_check(ctx: CheckContext) -> list[CheckRecord]:
    """A statistical record and a power record that state no false-alarm rate, and an info one."""
    return [CheckRecord(name="no alpha", kind="statistical", tests="-", statistic=0.0,
                        threshold=1.0, comparison="<=", passed=True),
            CheckRecord(name="no beta", kind="power", tests="-", statistic=2.0, threshold=1.0,
                        comparison=">=", passed=True),
            CheckRecord(name="a figure", kind="info", tests="-", statistic=5.0, threshold=1.0,
                        comparison="<=", passed=True),
            CheckRecord(name="power with beta", kind="power", tests="-", statistic=2.0,
                        threshold=1.0, comparison=">=", passed=True, beta=2e-7)]


def test_records_that_can_fail_by_chance_must_state_their_rate():
    run = run_harness("quick", checks=GOOD + [_spec(tiny_undeclared_check)], progress=False)
    recs = {r.name: r for r in run.records}
    assert not recs["no alpha"].passed and "states no rate" in recs["no alpha"].details["harness_note"]
    assert not recs["no beta"].passed
    assert recs["a figure"].passed and recs["power with beta"].passed  # info: no verdict
    b = run.budget
    assert not b.met and len(b.undeclared) == 2
    assert b.total == pytest.approx(2.0 + 1e-7 + 2e-7) and b.by_kind["power"] == pytest.approx(1 + 2e-7)
    assert "NOT MET" in summary_table(run)


def test_record_kinds_are_validated():
    with pytest.raises(ValueError, match="kind must be one of"):
        CheckRecord("r", "utility", "", 1.0, 1.0, "<=", True)
    with pytest.raises(ValueError, match="info record"):
        CheckRecord("r", "info", "", 1.0, 1.0, "<=", False)
    assert CheckRecord("r", "power", "", 1.0, 1.0, "<=", True, beta=1.5).false_failure_rate() is None


def _cli(argv: list[str], monkeypatch, specs) -> int:
    import argparse

    monkeypatch.setattr(registry, "CHECKS", specs)
    monkeypatch.setattr(harness, "CHECKS", specs)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return cli_run(parser.parse_args(argv))


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    assert _cli(["--out", str(tmp_path / "ok"), "--quiet"], monkeypatch, GOOD) == 0
    assert (tmp_path / "ok" / "report.md").exists() and (tmp_path / "ok" / "report.json").exists()
    bad = GOOD + [_spec(tiny_failing_check)]
    assert _cli(["--out", str(tmp_path / "bad"), "--quiet", "--seed", "7"], monkeypatch, bad) == 1
    assert json.loads((tmp_path / "bad" / "report.json").read_text())["metadata"]["root_seed"] == 7
    assert _cli(["--out", str(tmp_path / "one"), "--quiet", "--only", "tiny-statistical-check"],
                monkeypatch, bad) == 0
    assert _cli(["--scale", "2"], monkeypatch, GOOD) == 2  # --scale needs --level full
    assert _cli(["--only", "nope"], monkeypatch, GOOD) == 2
    assert _cli(["--list"], monkeypatch, bad) == 0
    out = capsys.readouterr().out
    assert "tiny-failing-check" in out and "records passed" in out


def test_cli_fresh_entropy_records_its_seed(tmp_path, monkeypatch, capsys):
    assert _cli(["--out", str(tmp_path), "--quiet", "--fresh-entropy"], monkeypatch, GOOD) == 0
    meta = json.loads((tmp_path / "report.json").read_text())["metadata"]
    assert meta["fresh_entropy"] is True
    assert f"--seed {meta['root_seed']}" in capsys.readouterr().err


def test_dpxattn_entry_point_dispatches_verify(tmp_path, monkeypatch):
    from dpxattn.cli import main

    monkeypatch.setattr(registry, "CHECKS", GOOD)
    monkeypatch.setattr(harness, "CHECKS", GOOD)
    assert main(["verify", "--out", str(tmp_path), "--quiet"]) == 0
    assert Path(tmp_path, "report.md").exists()


@pytest.mark.parametrize("level", ["quick", pytest.param("standard", marks=pytest.mark.slow)])
def test_real_registry_level_passes(level, tmp_path):
    """The whole registry at a level: report written, every record passed (`dpxattn verify
    --level LEVEL` exits 0), and the level is sized within its false-alarm budget (every record
    states its rate; their sum <= 1e-3). `quick` runs in CI: this is how CI runs the reviewer's
    quick report; `standard` is `slow`."""
    run = run_harness(level, out_dir=tmp_path, progress=False)
    md, js = write_report(run, tmp_path)
    assert md.exists() and js.exists() and any((tmp_path / "plots").glob("*.png"))
    failed = [f"{cr.spec.name}: {r.name}" for cr in run.runs for r in cr.records if not r.passed]
    assert run.exit_status == 0, failed
    budget = run.budget
    assert budget.met and budget.total <= FAMILY_FALSE_ALARM, budget.to_dict()
    assert "false-alarm budget" in md.read_text()


#: root seeds other than CI's on which `quick` once failed a correct build (false alarms of the
#: utility check's bare slope threshold): they stay in the suite
FORMER_FALSE_ALARM_SEEDS = (1, 3)


@pytest.mark.parametrize("runs", [pytest.param(len(FORMER_FALSE_ALARM_SEEDS)),
                                  pytest.param(10, marks=pytest.mark.slow)])
def test_quick_passes_under_other_root_seeds(runs):
    """`quick` under other root seeds: every run passes (a sweep, as `dpxattn verify --sweep`).
    On a correct build this fails with probability <= runs x 1e-3 (each report's budget)."""
    from dpxattn.verification.sweep import run_sweep

    seeds = FORMER_FALSE_ALARM_SEEDS if runs == len(FORMER_FALSE_ALARM_SEEDS) else range(11, 11 + runs)
    # the checks that existed when those seeds raised false alarms (the target-protocol checks,
    # added later, run once in CI in test_real_registry_level_passes and in their own tests)
    checks = [spec for spec in CHECKS if not spec.name.startswith("target-")]
    failed = []
    for seed in seeds:
        res = run_sweep("quick", runs=1, first_seed=seed, checks=checks)
        failed += [f"seed {seed}: {f}" for r in res.runs for f in r.failed_records]
        assert all(r.budget <= FAMILY_FALSE_ALARM for r in res.runs)
    assert not failed, failed


def test_sweep_counts_runs_and_failures(tmp_path, monkeypatch, capsys):
    from dpxattn.verification.sweep import run_sweep

    res = run_sweep("quick", runs=3, first_seed=5, checks=GOOD)
    assert [r.root_seed for r in res.runs] == [5, 6, 7] and res.passed
    assert res.chance_bound == pytest.approx(3e-7)
    bad = run_sweep("quick", runs=2, first_seed=1, checks=GOOD + [_spec(tiny_failing_check)],
                    out_dir=tmp_path)
    assert bad.failures == 2 and not bad.passed
    assert (tmp_path / "seed-1" / "report.md").exists()  # failing runs keep their report
    with pytest.raises(ValueError, match="runs >= 1"):
        run_sweep("quick", runs=0, checks=GOOD)
    assert _cli(["--out", str(tmp_path / "sw"), "--quiet", "--sweep", "2", "--seed", "3"],
                monkeypatch, GOOD) == 0
    data = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert data["runs"] == 2 and data["failures"] == 0 and data["reports"][1]["root_seed"] == 4
    assert "2 of 2 runs passed" in capsys.readouterr().out
    assert _cli(["--out", str(tmp_path / "sw2"), "--quiet", "--sweep", "2"], monkeypatch,
                GOOD + [_spec(tiny_failing_check)]) == 1
    assert _cli(["--quiet", "--sweep", "0"], monkeypatch, GOOD) == 2
