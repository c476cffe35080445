"""Tests of the real-text utility check (verification/checks_realtext.py): the generator, the
sign test's logic, the noise-x10 mutant, and the check itself at its quick size: it passes the
real build and fails the over-noised mutant and the TLap law (power, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpxattn.randomness import derive_seed
from dpxattn.verification import checks_realtext as rt
from dpxattn.verification.records import CheckContext
from dpxattn.verification.registry import CHECKS, load

SEED = 20261203


def test_check_is_registered_at_every_level():
    (spec,) = [c for c in CHECKS if c.name == "realtext-utility"]
    assert load(spec) is rt.check_realtext and spec.levels == ("quick", "standard", "full")


def test_generator_shape_and_determinism():
    a, b = rt.make_task(5), rt.make_task(5)
    assert torch.equal(a.K, b.K) and torch.equal(a.Q, b.Q)
    assert not torch.equal(a.K, rt.make_task(6).K)
    assert a.K.shape == (rt.N_PASSAGES, rt.DIM) and a.Q.shape == (rt.N_QUERIES, rt.DIM)
    assert a.V.shape == (rt.N_PASSAGES, rt.THEMES)
    assert float(torch.linalg.vector_norm(torch.cat([a.K, a.Q]), dim=1).max()) <= 1.0
    assert set(np.unique(a.V.numpy())) == {-1.0, 1.0}
    assert np.array_equal(a.V.argmax(dim=1).numpy(), a.labels_k)
    shares = np.bincount(a.labels_k, minlength=rt.THEMES) / rt.N_PASSAGES
    assert np.abs(shares - np.asarray(rt.THEME_SHARES) / sum(rt.THEME_SHARES)).max() < 0.03
    assert rt.degree() == (4, 495)


def _result(loss, taylor=0.42):
    loss = np.asarray(loss, dtype=np.float64)
    t = np.full(loss.shape, taylor)
    return rt.BuildResult(taylor=t, exact=t, dp=t - loss, gap=np.full(loss.shape, 0.07))


def test_sign_test_accepts_within_target_and_rejects_beyond():
    ok = rt.loss_sign_test(_result([0.0] * 30 + [0.05] * 10))  # 10 of 40 above 2 points
    assert ok.against == 10 and ok.p_value > rt.ALPHA
    at = rt.loss_sign_test(_result([0.02] * 40))  # exactly 2 points: within the target
    assert at.against == 0
    bad = rt.loss_sign_test(_result([0.03] * 36 + [0.0] * 4))
    assert bad.against == 36 and bad.critical == 35 and bad.p_value <= rt.ALPHA


def test_noise_times_ten_scales_only_the_noise():
    task = rt.make_task(11, n=300, m=20)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    real = rt.build_fast(task, generator=g())
    # the structure under test, through the protocol, is that same build (bit-identical answers)
    assert torch.equal(rt.build_real(task, generator=g()).query(task.Q), real.query(task.Q))
    one = rt.NoiseTimesTen(1.0)(task, generator=g())
    ten = rt.NoiseTimesTen(10.0)(task, generator=g())
    assert torch.allclose(one.release.S, real.release.S, rtol=0, atol=1e-9)
    exact = 2 * one.release.S - rt.NoiseTimesTen(2.0)(task, generator=g()).release.S
    assert torch.allclose(ten.release.S - exact, 10 * (real.release.S - exact), rtol=1e-9,
                          atol=1e-6)
    assert float((real.release.S - exact).abs().max()) > 1.0  # there is noise to scale


def test_check_records_are_well_formed_on_a_small_run(monkeypatch):
    monkeypatch.setitem(rt.BUILDS, "quick", 3)
    recs = rt.realtext_records("quick", SEED, compare_tlap=True)
    assert [r.kind for r in recs] == ["statistical", "info", "info"]
    main = recs[0]
    assert main.alpha == rt.ALPHA and main.sample_size == 3 * rt.N_QUERIES
    assert len(main.details["per_build_loss_points"]) == 3
    assert 0.3 < recs[1].statistic < 0.55  # the generator's noiseless Taylor top-1
    assert recs[2].details["top1_dp_mean"] < main.details["top1_dp_mean"]  # TLap below


@pytest.mark.slow
def test_check_passes_the_real_build_at_quick_size():
    (main, shape, tl) = rt.check_realtext(CheckContext(level="quick", seed=SEED))
    assert main.passed, main.details
    d = main.details
    assert d["builds"] == 40 and abs(d["loss_mean_points"]) < 2.0
    assert 0.39 <= shape.statistic <= 0.45
    # the TLap law on the same tasks is far below (recorded for the comparison)
    assert tl.details["builds"] == 10 and tl.details["loss_mean_points"] > 5.0


@pytest.mark.slow
@pytest.mark.parametrize("mutant", ["noise x10", "tlap"])
def test_check_fails_the_mutants(mutant):
    """Power at the quick size (no rigorous beta; see the module docstring): an over-noised
    Gaussian release (noise x10) and the TLap law fail the sign test."""
    builder = (rt.NoiseTimesTen(10.0) if mutant == "noise x10" else
               (lambda task, generator: rt.build_real(task, generator=generator, law="tlap")))
    (main, _) = rt.realtext_records("quick", derive_seed(SEED, "realtext"), builder=builder,
                                    compare_tlap=False)
    assert not main.passed, main.details
    assert main.statistic >= 35
