"""The whole harness against a target (note 29, "Which checks run for a target"): every
registered check says how it reaches the implementation; `dpxattn verify --target` runs the
registry, the checks that reach dpxattn's internals are reported as not applicable with their
reason, and the converted checks build the target through the protocol (bit-identical to the
direct fast build for dpxattn's own target)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dpxattn.cli import main
from dpxattn.verification import checks_realtext as rt
from dpxattn.verification import checks_utility as cu
from dpxattn.verification.harness import run_harness
from dpxattn.verification.records import CheckContext
from dpxattn.verification.registry import CHECKS, REACHES
from dpxattn.verification.report import write_report
from dpxattn.verification.target import OWN_TARGET, load_target

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "third_party_numpy.py")


def test_every_registered_check_says_how_it_reaches_the_target():
    names = [spec.name for spec in CHECKS]
    for spec in CHECKS:
        assert spec.reaches in REACHES
        if spec.reaches == "internals":
            # the reason names what it reaches, and for a mechanism-level check its counterpart
            assert len(spec.why) > 40, spec.name
            counterparts = [n for n in names if n.startswith("target-") and n in spec.why]
            assert counterparts or spec.name in ("kernel-eps-s", "float-attack", "noise-timing"), \
                spec.name
    assert {"utility", "realtext-utility"} <= {s.name for s in CHECKS if s.reaches == "protocol"}
    assert sum(1 for s in CHECKS if s.name.startswith("target-")) == 6


def test_internals_do_not_apply_to_another_target_and_the_report_says_why(tmp_path):
    target = load_target(f"{EXAMPLE}:Correct")
    run = run_harness("quick", only=("noise-distribution", "target-noiseless"), target=target,
                      progress=False)
    assert [cr.spec.name for cr in run.runs] == ["target-noiseless"] and run.passed
    assert run.target == f"{EXAMPLE}:Correct"
    assert any(x.startswith("noise-distribution: runs only for dpxattn's own fast path")
               for x in run.not_applicable)
    assert any("mechanism 'tree'" in x for x in run.not_applicable)
    md, js = write_report(run, tmp_path)
    text = md.read_text()
    assert f"* target: `{EXAMPLE}:Correct`" in text and "## Did not apply" in text
    assert json.loads(js.read_text())["metadata"]["not_applicable"] == run.not_applicable
    assert run.replay_command().startswith(f"dpxattn verify --target {EXAMPLE}:Correct")
    own = run_harness("quick", only=("target-noiseless",), progress=False)
    assert own.target == OWN_TARGET and own.not_applicable == []
    assert "--target" not in own.replay_command()


def test_cli_lists_what_applies_and_fails_when_nothing_applicable_ran(tmp_path, capsys):
    assert main(["verify", "--target", f"{EXAMPLE}:Correct", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "does not apply (internals)" in listing and "[protocol]" in listing
    # nothing applicable ran: nothing was verified, so the exit status is not 0
    assert main(["verify", "--target", f"{EXAMPLE}:Correct", "--only", "noise-timing",
                 "--out", str(tmp_path), "--quiet"]) == 1
    assert "did not apply: noise-timing" in capsys.readouterr().out


def test_utility_through_the_protocol_is_bit_identical_for_our_own_target():
    task = cu.make_task(64, 5, 1.0, seed=3)
    kw = dict(mechanism="direct", eps=1.0, delta=1e-6, degree=2)
    direct = cu.build_structure(task, generator=torch.Generator().manual_seed(9), **kw)
    proto = cu.ProtocolBuilder(None)(task, generator=torch.Generator().manual_seed(9), **kw)
    assert torch.equal(direct.query(task.Q), proto.query(task.Q))
    assert torch.equal(direct.error_bound(task.Q), proto.error_bound(task.Q))
    assert torch.equal(direct.hp_error_bound(task.Q, 0.01), proto.hp_error_bound(task.Q, 0.01))


def test_realtext_does_not_apply_to_a_target_without_the_ball():
    target = load_target(f"{EXAMPLE}:Correct")
    recs = rt.check_realtext(CheckContext(level="quick", seed=1, target=target))
    assert len(recs) == 1 and recs[0].details["applies"] is False
    assert "domain" in recs[0].tests


def test_utility_runs_on_a_direct_only_target_and_says_what_did_not_apply():
    """The numpy example through the utility check: its direct points, sure envelope and
    retrieval are tested; direct-vs-tree and the hp envelope (beyond the protocol) did not
    apply."""
    target = load_target(f"{EXAMPLE}:Correct")
    recs = cu.check_utility(CheckContext(level="quick", seed=5, target=target))
    by_name = {r.name: r for r in recs}
    assert all(r.passed for r in recs)
    skipped = [r.name for r in recs if r.details.get("applies") is False]
    assert any(n.startswith("direct beats tree") for n in skipped)
    assert any(n.startswith("high-probability envelope holds") for n in skipped)
    assert by_name["certified envelope never exceeded"].kind == "exact"
    assert "privacy error decreases with eps (direct)" in by_name
    assert not any("(tree)" in n for n in by_name)
    assert any(n.startswith("retrieval survives privacy") and by_name[n].kind == "statistical"
               for n in by_name)
    assert np.isfinite(by_name["certified envelope never exceeded"].statistic)
