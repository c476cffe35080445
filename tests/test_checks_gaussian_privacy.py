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


@pytest.mark.slow
@pytest.mark.statistical
def test_quick_run_passes():
    """alpha 1e-6 for each audit record (box, ball, tree); the mutants' beta < 1e-20 (fixed seed).
    Slow (about 2 min): CI runs this check at quick through
    tests/test_verification_harness.py::test_real_registry_level_passes, three root seeds."""
    records = cgp.check_gaussian_privacy(CheckContext(level="quick", seed=20261203))
    assert all(r.passed for r in records), [(r.name, r.statistic) for r in records if not r.passed]
    power = [r for r in records if r.kind == "power"]
    assert len(power) == 3 and all(p.beta < 1e-20 and p.statistic > 1.0 for p in power)
    assert sum(r.false_failure_rate() for r in records) < 4e-6


def test_the_ball_pair_attains_the_ball_l2_sensitivity():
    """On the ball with d_v R_w^2 < 1 the worst pair is not x = x' (note 27): the audited pair
    attains the reference's exact sup, and no candidate pair exceeds it."""
    from dpxattn.reference.ball_sensitivity import ball_direct_statistic_l2

    cfg = cgp.BALL_CONFIG
    exact = float(ball_direct_statistic_l2(cfg.d, cfg.degree, cfg.R, cfg.R_w, cfg.d_v))
    (Ka, Va), (Kb, Vb) = cfg.worst_pair()
    assert not (Ka == Kb).all()  # two different keys on the sphere
    Sa, sigma, sens = cgp.noiseless_S(cfg, Ka, Va)
    Sb = cgp.noiseless_S(cfg, Kb, Vb)[0]
    assert float(((Sa - Sb) ** 2).sum() ** 0.5) == pytest.approx(exact, rel=1e-9)
    assert sens == pytest.approx(exact, rel=1e-12)
    worst = cgp.worst_corner_pair(cfg)
    assert worst["largest"] <= sens


def test_the_tree_pair_attains_the_whole_release_l2_sensitivity():
    """The tree's audited pair (k = k' = R, v = -v' = R_w) moves its whole release, scaled by
    its groups' mu, by exactly the reference's weighted tree_release_l2 (note 26); the sampler
    is the real build."""
    import numpy as np

    from dpxattn.reference.sensitivity import tree_release_l2
    from dpxattn.reference.tree_noise_weights import tree_noise_weights

    cfg = cgp.TREE_CONFIG
    exact = float(tree_release_l2(cfg.d, cfg.degree, cfg.R, cfg.R_w, cfg.d_v, grid_size=cfg.n,
                                  weights=tree_noise_weights(cfg.d, cfg.degree, cfg.R,
                                                             grid_size=cfg.n)))
    (Ka, Va), (Kb, Vb) = cfg.worst_pair()
    Sa, sigma, sens = cgp.noiseless_S(cfg, Ka, Va)
    Sb = cgp.noiseless_S(cfg, Kb, Vb)[0]
    assert Sa.size == cgp._count(cfg) == 40
    assert float(np.linalg.norm(Sa - Sb)) == pytest.approx(exact, rel=1e-12)
    assert sens >= exact and sens == pytest.approx(exact, rel=1e-12)
    assert cgp.worst_corner_pair(cfg)["largest"] <= sens
    assert cgp._sampler_record(cfg, np.random.default_rng(0)).passed


def test_tree_projections_have_the_projected_law():
    """sample_projections draws <S0 - origin, u> + N(0, sigma^2): mean and sd as the projected
    releases' (5 sd tolerance on the mean, 2% on the sd, n = 2e5: chance < 1e-6 of a false
    failure), and a wrong sigma (x1.1) would be outside the sd tolerance."""
    import numpy as np

    S0 = np.arange(5.0)
    u = np.ones(5) / 5 ** 0.5
    proj = cgp.sample_projections(S0, S0 * 0, u, 2.0, 200_000, seed=7)
    assert abs(proj.mean() - float(S0 @ u)) < 5 * 2.0 / 200_000 ** 0.5
    assert abs(proj.std() / 2.0 - 1) < 0.02
