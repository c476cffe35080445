"""The conformance table (DESIGN §6): fast vs exact reference from shared uniforms, every row."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dpxattn.fast.envelope as fast_envelope
import dpxattn.fast.release as fast_release
from dpxattn.verification import conformance as conf
from dpxattn.verification.records import CheckRecord


@pytest.mark.parametrize("case", conf.CASES, ids=lambda c: c.name)
def test_conformance_row(case):
    records = conf.run_case(case)
    expected = (["answer", "hp_error_bound", "determinism"] if case.law == "gaussian" else
                ["answer", "error_bound", "hp_error_bound", "envelope holds", "determinism"])
    assert [r.quantity for r in records] == expected
    for rec in records:
        assert rec.passed, (rec.quantity, rec.max_rel_diff, rec.tolerance, rec.details)
    answer = records[0]
    assert answer.tolerance >= conf.REL_TOL and answer.max_rel_diff <= answer.tolerance


def test_table_covers_what_design_asks():
    cases = conf.CASES
    ns = {c.n for c in cases}
    assert 1 in ns
    for p in (2, 4, 8, 16, 32):
        assert {p - 1, p, p + 1} <= ns
    for mech in ("direct", "tree"):
        mine = [c for c in cases if c.mechanism == mech]
        assert {c.degree for c in mine} == {0, 1, 2, 3, 4}
        assert {1, 3} <= {c.d for c in mine}
        assert {"low", "high", "random"} <= {c.uniforms for c in mine}
        assert {1, 2} <= {c.d_v for c in mine}
    assert {c.copies for c in cases if c.mechanism == "tree"} == {1, 2, 3}
    assert {c.n for c in conf.QUICK_CASES} and set(conf.QUICK_CASES) <= set(cases)


def test_uniforms_and_data_are_reproducible_and_extreme():
    case = conf.CASES[6]  # "low"
    assert np.all(conf.case_uniforms(case, 10) == 2.0**-53)
    high = [c for c in conf.CASES if c.uniforms == "high"][0]
    assert np.all(conf.case_uniforms(high, 10) == 1 - 2.0**-53)
    rnd = conf.CASES[0]
    a, b = conf.case_uniforms(rnd, 50, root=3), conf.case_uniforms(rnd, 50, root=3)
    assert np.array_equal(a, b) and np.all((a > 0) & (a < 1))
    assert not np.array_equal(a, conf.case_uniforms(rnd, 50, root=4))
    K, V, Q = conf.case_data(rnd)
    assert K.shape == (rnd.n, rnd.d) and V.shape == (rnd.n, rnd.d_v) and Q.shape == (rnd.m, rnd.d)


# --- power: the table catches deliberately wrong fast variants -----------------------------------

def test_power_noise_scale_off_by_1e_8(monkeypatch):
    """Noise 1e-8 too large (relative) is caught by the 1e-10 tolerance on the answers."""
    original = fast_release.ppf_from_constants

    def wrong(u, b, *rest):
        return original(u, b * (1 + 1e-8), *rest)

    monkeypatch.setattr(fast_release, "ppf_from_constants", wrong)
    records = conf.run_case(conf.CASES[5])
    assert not records[0].passed


def test_power_uniform_order_swapped(reversed_uniform_order):
    """Consuming the uniforms in a different order (reversed per chunk) is caught."""
    for case in (conf.CASES[5], [c for c in conf.CASES if c.mechanism == "tree"][3]):
        records = conf.run_case(case)
        assert not records[0].passed, case.name


def test_power_halved_envelope_is_caught(monkeypatch):
    """An envelope half as large is exceeded at extreme uniforms (the 'high' direct row)."""
    original = fast_envelope.finalize

    def half(bound, answer, dtype):
        return original(bound, answer, dtype) / 2

    monkeypatch.setattr("dpxattn.fast.cross_attention.finalize", half)
    high = [c for c in conf.CASES if c.uniforms == "high" and c.mechanism == "direct"][0]
    records = {r.quantity: r for r in conf.run_case(high)}
    assert not records["envelope holds"].passed
    assert not records["error_bound"].passed


def test_check_records_for_the_harness():
    class Ctx:
        level = "quick"
        seed = 11

    recs = conf.check_conformance(Ctx())
    assert recs and all(isinstance(r, CheckRecord) for r in recs)
    assert all(r.passed for r in recs), [r.name for r in recs if not r.passed]
    assert len(recs) == sum(3 if c.law == "gaussian" else 5 for c in conf.QUICK_CASES)
    assert all(math.isfinite(r.statistic) for r in recs)
    d = recs[0].to_dict()
    assert d["kind"] == "exact" and d["comparison"] in ("<=", "==")


def test_proven_float_error_bounds_every_answer_of_the_table():
    """The proven floating-point bound added to the answer tolerance is a bound in fact (fast vs
    exact reference, every entry of every row) and not vacuous (below 1e-5 relative of the
    answers' scale R_w): it only guards answers near 0 against rounding luck."""
    import torch

    from dpxattn.fast import DPCrossAttention as Fast
    from dpxattn.reference import DPCrossAttention as Ref

    for case in (c for c in conf.CASES if c.law == "tlap"):  # Gaussian rows: GAUSSIAN_ATOL
        K, V, Q = conf.case_data(case, 0)
        count = Fast.noise_count(n=case.n, d=case.d, d_v=case.d_v, degree=case.degree,
                                 mechanism=case.mechanism, copies=case.copies,
                                 grid_size=case.grid_size)
        u = conf.case_uniforms(case, count, 0)
        ref = np.array([[float(x) for x in row] for row in Ref.build(K, V, uniforms=u, **case.build_kwargs).query(Q)])
        fast = Fast.build(torch.tensor(K), torch.tensor(V), uniforms=u, **case.build_kwargs)
        got = fast.query(torch.tensor(Q)).numpy()
        proven = conf.proven_float_error(fast, torch.tensor(Q))
        assert np.all(np.abs(got - ref) <= proven), case.name
        assert np.all(proven <= 1e-5 * case.R_w), case.name


def test_table_covers_the_ball_domain():
    """domain="ball" rows (proofs_notes/27-ball-domain.md): n = 1, even and odd degrees, a
    given scale, extreme and zero uniforms, R != 1; every one runs in test_conformance_row."""
    ball = [c for c in conf.CASES if c.domain == "ball" and c.law == "tlap"]
    assert {c.mechanism for c in ball} == {"direct"}
    assert 1 in {c.n for c in ball}
    assert {0, 2, 4} <= {c.degree for c in ball} and any(c.degree % 2 for c in ball)
    assert {"low", "high", "half", "mixed"} <= {c.uniforms for c in ball}
    assert any(c.R != 1 for c in ball) and any(c.scale is not None for c in ball)
    assert any(c.domain == "ball" for c in conf.QUICK_CASES)
    K, _, Q = conf.case_data(ball[1])
    assert np.all((K * K).sum(axis=1) <= ball[1].R ** 2) and (K < 0).any()


def test_table_covers_the_gaussian_law():
    """law="gaussian" rows (notes 24, 26): both mechanisms, n = 1, extreme uniforms, copies, a
    grid, the ball; one of each mechanism in the quick subset."""
    gauss = [c for c in conf.CASES if c.law == "gaussian"]
    assert {c.mechanism for c in gauss} == {"direct", "tree"}
    assert 1 in {c.n for c in gauss} and {"low", "high", "mixed"} <= {c.uniforms for c in gauss}
    assert any(c.copies > 1 for c in gauss) and any(c.grid_size for c in gauss)
    assert any(c.domain == "ball" for c in gauss)
    assert {c.mechanism for c in conf.QUICK_CASES if c.law == "gaussian"} == {"direct", "tree"}
