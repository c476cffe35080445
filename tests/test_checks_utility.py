"""Check 7 (utility): the retrieval task, the measured points, and the records' logic."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dpxattn.verification import checks_utility as cu


def test_task_weights_are_exact_attention_weights(seed):
    task = cu.make_task(600, 20, 2.0, seed)
    assert task.K.min() >= 0 and task.K.max() <= 2.0 and task.Q.max() <= 2.0
    # the document weights read off the answer equal the attention mass on each document's tokens
    A = torch.softmax(task.Q @ task.K.T / cu.D_KEYS, dim=1)
    docs = (task.V @ torch.from_numpy(cu.value_patterns()).T / cu.D_VALUES).argmax(dim=1)
    mass = np.stack([A[:, docs == j].sum(dim=1).numpy() for j in range(cu.DOCS)], axis=1)
    np.testing.assert_allclose(cu.document_weights(cu.exact_attention(task)), mass, atol=1e-12)
    np.testing.assert_allclose(mass.sum(axis=1), 1.0, atol=1e-12)


def test_taylor_attention_is_close_to_exact_within_eps_s(seed):
    task = cu.make_task(500, 30, 1.5, seed)
    s, eps_s = cu.degree_for(1.5)
    assert eps_s <= cu.EPS_S_TARGET
    err = (cu.taylor_attention(task, s) - cu.exact_attention(task)).abs().max()
    assert float(err) <= 2 * eps_s / (1 - eps_s) * task.R_w  # PAPER §4.1, signed values


@pytest.fixture(scope="module")
def measured():
    """One small real measurement of both mechanisms (shared by the tests below)."""
    task = cu.make_task(512, 40, 1.0, 1234)
    ex, ty = cu.exact_attention(task), cu.taylor_attention(task, cu.degree_for(1.0)[0])
    pts = {m: cu.run_point(task, mechanism=m, eps=1.0, delta=1e-6, builds=2, seed=99,
                           exact=ex, taylor=ty) for m in ("direct", "tree")}
    return task, pts


def test_real_points_envelope_holds_and_direct_beats_tree(measured):
    _, pts = measured
    for p in pts.values():
        assert p.sure_worst_ratio <= 1.0
        assert p.entries == 2 * 40 * cu.D_VALUES
    assert pts["direct"].err_exact < pts["tree"].err_exact


def test_shrunk_envelope_mutant_is_caught(measured):
    task, _ = measured
    bad = cu.run_point(task, mechanism="direct", eps=1.0, delta=1e-6, builds=1, seed=5,
                       wrap=lambda att: cu.ShrunkEnvelope(att, cu.SHRINK_FACTOR))
    assert bad.sure_worst_ratio > 1.0


def _pt(mech, n, eps, err, **kw):
    base = dict(mechanism=mech, n=n, eps=eps, R=1.0, degree=4, r=35, builds=1, err_exact=err,
                err_dp=err, sure_mean=50 * err, hp_mean=5 * err, sure_worst_ratio=0.1,
                hp_exceed=0, entries=1000, hp_quantile_ratio=3.0, weight_exact=0.4,
                weight_dp=0.4, acc_exact=1.0, acc_dp=1.0)
    base.update(kw)
    return cu.PointResult(**base)


def _synthetic(tree_factor=50.0, slope=-1.0):
    eps = [0.1, 1.0, 10.0]
    ns = [256, 1024, 4096]
    eps_pts = {m: [_pt(m, 1024, e, f * e**slope) for e in eps]
               for m, f in (("direct", 0.1), ("tree", 0.1 * tree_factor))}
    n_pts = {m: [_pt(m, n, 1.0, f * (n / 256) ** slope) for n in ns]
             for m, f in (("direct", 0.1), ("tree", 0.1 * tree_factor))}
    R_pts = [_pt("direct", 20000, 1.0, 0.01 * R, R=R, weight_exact=0.3 + 0.15 * R,
                 weight_dp=0.3 + 0.15 * R) for R in (1.0, 2.0, 3.0)]
    return eps_pts, n_pts, R_pts


def _by_name(recs):
    return {r.name: r for r in recs}


def test_records_pass_on_a_well_behaved_measurement():
    recs = cu.utility_records(*_synthetic())
    assert all(r.passed for r in recs), [r.name for r in recs if not r.passed]
    assert len(recs) == 10


def test_records_fail_when_claims_break():
    names = lambda recs: {r.name for r in recs if not r.passed}  # noqa: E731
    assert "direct beats tree at every (eps, n) point" in names(cu.utility_records(*_synthetic(tree_factor=0.5)))
    flat = names(cu.utility_records(*_synthetic(slope=-0.2)))
    assert {"privacy error decreases with eps (direct)", "privacy error decreases with n (tree)"} <= flat
    eps_pts, n_pts, R_pts = _synthetic()
    eps_pts["direct"][0] = dataclasses.replace(eps_pts["direct"][0], sure_worst_ratio=1.5,
                                               hp_quantile_ratio=40.0, hp_exceed=900)
    R_pts[-1] = dataclasses.replace(R_pts[-1], acc_dp=0.5, weight_dp=0.3)
    failed = names(cu.utility_records(eps_pts, n_pts, R_pts))
    assert "certified envelope never exceeded" in failed
    assert "high-probability envelope within a small factor of the observed error" in failed
    assert f"high-probability envelope holds at failure rate {cu.HP_FAILURE:g}" in failed
    assert "retrieval survives privacy at R = 3" in failed


def test_duplicate_points_are_all_counted():
    # the eps sweep's eps=1 point and the n sweep's n=1024 point share (mechanism, eps, n, R):
    # the worse of the two must still decide the record
    eps_pts, n_pts, R_pts = _synthetic()
    n_pts["direct"][1] = dataclasses.replace(n_pts["direct"][1], hp_quantile_ratio=40.0,
                                             experiment="n sweep")
    recs = _by_name(cu.utility_records(eps_pts, n_pts, R_pts))
    tight = recs["high-probability envelope within a small factor of the observed error"]
    assert not tight.passed and tight.statistic == 40.0
    assert "n sweep: direct eps=1 n=1024 R=1" in tight.details["factor_per_point"]


def test_loglog_slope():
    assert cu.loglog_slope([1, 10, 100], [1, 0.1, 0.01]) == pytest.approx(-1.0)
