"""The harness's audit of the Gaussian law (verification/checks_gaussian_privacy.py)."""

from __future__ import annotations

import pytest

from dpxattn.reference import gaussian as ref_gaussian
from dpxattn.reference.sensitivity import direct_statistic_l2
from dpxattn.verification import checks_gaussian_privacy as cgp
from dpxattn.verification.records import CheckContext
from dpxattn.verification.registry import CHECKS


def test_registered_after_the_tlap_audit():
    names = [c.name for c in CHECKS]
    assert names.index("gaussian-privacy-audit") == names.index("privacy-audit") + 1


def test_the_audited_pair_attains_the_reference_l2_sensitivity():
    cfg = cgp.CONFIG
    exact = float(direct_statistic_l2(cfg.d, cfg.degree, cfg.R, cfg.R_w, cfg.d_v))
    worst = cgp.worst_corner_pair(cfg)
    assert worst["largest"] == pytest.approx(exact, rel=1e-12)
    _, sigma, sens = cgp.noiseless_S(cfg, *cfg.corner(cfg.R, cfg.R_w))
    assert sens >= exact and sens == pytest.approx(exact, rel=1e-12)
    assert sigma == pytest.approx(float(ref_gaussian.sigma_for(sens, cfg.eps, cfg.delta)), rel=1e-12)


def test_the_fixed_event_exposes_half_noise_at_the_quick_size():
    cfg = cgp.CONFIG
    shift = float(direct_statistic_l2(cfg.d, cfg.degree, cfg.R, cfg.R_w, cfg.d_v))
    sigma = float(ref_gaussian.sigma_for(shift, cfg.eps, cfg.delta))
    n = cgp.SAMPLES["quick"]
    assert cgp.fixed_event(shift, 0.5 * sigma, n, cfg.eps, cfg.delta)["beta"] < 1e-20
    # and no fixed event can expose the real mechanism: its exact best event stays below the claim
    real = cgp.fixed_event(shift, sigma, n, cfg.eps, cfg.delta)
    assert real["beta"] > 0.999


@pytest.mark.statistical
def test_quick_run_passes():
    """alpha 1e-6 for the audit record; the mutant's beta < 1e-20 (fixed seed)."""
    records = cgp.check_gaussian_privacy(CheckContext(level="quick", seed=20261203))
    assert all(r.passed for r in records), [(r.name, r.statistic) for r in records if not r.passed]
    power = [r for r in records if r.kind == "power"]
    assert len(power) == 1 and power[0].beta < 1e-20 and power[0].statistic > 1.0
    assert sum(r.false_failure_rate() for r in records) < 2e-6
