"""``dpxattn audit`` (verification/cli_audit.py): one audit, printed; exit status = expected outcome."""

from __future__ import annotations

import pytest

from dpxattn.cli import main


def test_real_mechanism_is_not_exposed(capsys):
    assert main(["audit", "--mechanism", "tree", "--samples", "4000", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "dpxattn audit: tree" in out and "not exposed" in out
    assert "claimed: eps = 1," in out  # c0's share of the default eps = 16 over J = 16 components
    assert "seed 7" in out and "expected for a real mechanism: yes" in out


def test_mutant_is_exposed_and_exit_status_is_zero(capsys):
    assert main(["audit", "--mechanism", "direct-exact-denominator", "--samples", "2000",
                 "--eps", "0.5", "--delta", "1e-5", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "MUTANT" in out and "EXPOSED" in out and "eps=0.5, delta=1e-05" in out
    assert "PAPER §3.5 and §5 item 5" in out


def test_answers_and_fresh_seed(capsys):
    assert main(["audit", "--mechanism", "direct", "--answers", "--samples", "3000"]) == 0
    out = capsys.readouterr().out
    assert "audited: answers" in out and "seeded generator" in out


def test_unexpected_outcome_exits_one(capsys, monkeypatch):
    """A real mechanism whose audit exceeds its claim (here: a claim forced to 0) exits 1."""
    import dpxattn.verification.checks_privacy as cp

    monkeypatch.setattr(cp, "claimed_budget", lambda case: (0.0, float(case.config.delta)))
    assert main(["audit", "--mechanism", "tree", "--samples", "4000", "--seed", "2"]) == 1
    assert "expected for a real mechanism: NO" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["--samples", "10"], "--samples must be >= 100"),
    (["--delta", "0.7"], "delta must satisfy 0 < delta <= 1/2"),
    (["--eps", "-1"], "eps must be finite and > 0"),
])
def test_usage_errors_exit_two(argv, match, capsys):
    assert main(["audit", "--mechanism", "direct", *argv]) == 2
    assert match in capsys.readouterr().err


@pytest.mark.parametrize("name", ["laplace", "sorted-positions-tree"])
def test_unknown_or_unauditable_mechanism_is_an_argparse_error(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--mechanism", name])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_auditable_variant_has_a_case():
    from dpxattn.verification.checks_privacy import default_case
    from dpxattn.verification.cli_audit import auditable
    from dpxattn.verification.mutants import VARIANTS

    assert set(auditable()) == set(VARIANTS) - {"sorted-positions-tree"}
    for name in auditable():
        assert default_case(name).variant == name
    with pytest.raises(ValueError, match="sorted-positions-tree is exposed by the sensitivity"):
        default_case("sorted-positions-tree")
