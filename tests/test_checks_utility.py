"""Check 7 (utility): the retrieval task, the tests' validity, their power against mutants at the
check's own (quick) sample sizes, and the records' logic.

The power of the sign tests, of the hp-envelope test, of the retrieval test and of the certified
envelope against a 50x shrunk envelope has no closed-form beta (the mutants' laws are not known
exactly), so it is shown here, at the sizes ``sizes_for("quick")`` uses, with fixed seeds: each
mutant must make its record fail. The check's own power record (answers moved by 3 envelopes)
has beta = 0 and is tested on real builds too.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats

from dpxattn.randomness import derive_seed
from dpxattn.verification import checks_utility as cu

QUICK = cu.sizes_for("quick")
ALPHA = cu.TEST_ALPHA


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


# ---------------------------------------------------------------------------------------------
# the tests' machinery: exact sign test, Hoeffding's bound, sizes
# ---------------------------------------------------------------------------------------------

def test_sign_test_is_the_exact_binomial_tail():
    assert cu.sign_critical(20, 1e-6) == 20 and cu.sign_critical(19, 1e-6) is None
    assert cu.sign_critical(30, 1e-6) == 28 and cu.sign_critical(30, 2.5e-7) == 29
    for k in (20, 30, 60):
        c = cu.sign_critical(k, 1e-6)
        assert stats.binom.sf(c - 1, k, 0.5) <= 1e-6 < stats.binom.sf(c - 2, k, 0.5)
    near = np.array([1.0, 2.0, 3.0, 4.0])
    far = np.array([0.5, 0.5, 0.3, 0.01])
    st = cu.sign_test(near, far, margin=4.0)
    # pairs against the claim: 4 x far >= near, ties against: 2 >= 1, 2 >= 2 (tie), 1.2 < 3, ...
    assert st.against == 2 and st.p_value == pytest.approx(stats.binom.sf(1, 4, 0.5))
    assert cu.sign_test(near, near / 4, margin=4.0).against == 4  # ties against
    with pytest.raises(ValueError):
        cu.sign_test(near, far[:3], 1.0)


def test_sign_test_level_holds_at_the_boundary_of_the_claim():
    """Under a law exactly at the claim's boundary (each pair against with probability 1/2),
    the rejection rate at level 1/16 with 30 pairs is at most 1/16 (the exact tail)."""
    rng = np.random.default_rng(7)
    level = 1 / 16
    trials = 4000
    near = rng.exponential(size=(trials, 30))
    far = rng.exponential(size=(trials, 30))  # iid: P(far >= near) = 1/2 exactly
    rejects = sum(cu.sign_test(near[i], far[i], 1.0, level).rejects(level) for i in range(trials))
    # binomial(4000, <= 1/16): mean <= 250; 320 is > 4.5 sd above
    assert rejects <= 320


def test_hoeffding_bound_dominates_the_exact_binomial_tail():
    for B in (20, 148, 334):
        for x in (0.02, 0.05, 0.08, 0.2):
            exact = stats.binom.sf(math.ceil(x * B) - 1, B, cu.HP_FAILURE)
            assert exact <= cu.hoeffding_tail(x, B, cu.HP_FAILURE) + 1e-15
        c = cu.hoeffding_critical(B, cu.HP_FAILURE, ALPHA)
        assert cu.hoeffding_tail(c, B, cu.HP_FAILURE) == pytest.approx(ALPHA, rel=1e-6)
    assert cu.hoeffding_tail(0.005, 100, 0.01) == 1.0
    assert cu.hoeffding_critical(2, 0.01, 1e-6) == math.inf  # too few builds: cannot reject


@pytest.mark.parametrize("level", ["quick", "standard", "full"])
def test_sizes_let_every_test_reject(level):
    s = cu.sizes_for(level)
    assert set(cu.EPS_TEST) <= set(s.eps_grid)
    assert set(cu.N_TEST) <= set(s.n_grid) and set(cu.N_TEST) <= set(s.n_grid_tree)
    assert cu.sign_critical(s.pairs, ALPHA / 4) is not None
    assert cu.sign_critical(s.retrieval_builds, ALPHA) is not None
    assert cu.hoeffding_critical(cu.hp_builds_at(s), cu.HP_FAILURE, ALPHA) < 0.1


# ---------------------------------------------------------------------------------------------
# real builds at the quick sizes: correct ends, and the mutants each record must catch
# ---------------------------------------------------------------------------------------------

def _point(mech, n, eps, tag, builder=None, builds=QUICK.pairs, hp_builds=0, R=1.0):
    return cu.run_point(mechanism=mech, n=n, eps=eps, R=R, builds=builds, m=QUICK.m,
                        seed=derive_seed(4242, tag, mech, n, eps), hp_builds=hp_builds,
                        builder=builder)


@pytest.fixture(scope="module")
def ends():
    """The four test points of both mechanisms, correct, at the quick sizes (30 builds each)."""
    (e_lo, e_hi), (n_lo, n_hi) = cu.EPS_TEST, cu.N_TEST
    eps_pts = {m: [_point(m, cu.N_EPS, e, "A") for e in (e_lo, e_hi)] for m in ("direct", "tree")}
    n_pts = {m: [_point(m, n, cu.EPS_N, "B") for n in (n_lo, n_hi)] for m in ("direct", "tree")}
    return eps_pts, n_pts


def _records(eps_pts, n_pts, R_pts=(), extra=()):
    recs = cu.utility_records(eps_pts, n_pts, list(R_pts) + list(extra))
    return {r.name: r for r in recs}


def _replace(group, mech, index, point):
    new = {m: list(v) for m, v in group.items()}
    new[mech][index] = point
    return new


def test_correct_builds_pass_every_record(ends):
    recs = _records(*ends)
    assert all(r.passed for r in recs.values()), [n for n, r in recs.items() if not r.passed]
    for mech in ("direct", "tree"):
        for sweep in ("eps", "n"):
            r = recs[f"privacy error decreases with {sweep} ({mech})"]
            assert r.details["pairs"] == QUICK.pairs and r.statistic <= 5 and r.threshold == 27


@pytest.mark.parametrize("mech", ["direct", "tree"])
def test_n_trend_catches_noise_that_does_not_shrink_with_n(ends, mech):
    eps_pts, n_pts = ends
    lo, hi = cu.N_TEST
    bad = _point(mech, hi, cu.EPS_N, "mutant-n", builder=cu.NoiseScaled(hi / lo))
    rec = _records(eps_pts, _replace(n_pts, mech, 1, bad))[f"privacy error decreases with n ({mech})"]
    assert not rec.passed and rec.details["p_value"] <= ALPHA, rec.details


@pytest.mark.parametrize("mech", ["direct", "tree"])
def test_eps_trend_catches_a_mechanism_that_ignores_eps(ends, mech):
    eps_pts, n_pts = ends
    lo, hi = cu.EPS_TEST
    bad = _point(mech, cu.N_EPS, hi, "mutant-eps", builder=cu.EpsIgnored(lo))
    rec = _records(_replace(eps_pts, mech, 1, bad), n_pts)[f"privacy error decreases with eps ({mech})"]
    assert not rec.passed and rec.details["p_value"] <= ALPHA, rec.details


def test_direct_vs_tree_catches_direct_built_as_the_tree(ends):
    """`direct` built as the tree at every test point: each point's sign test rejects alone."""
    eps_pts, n_pts = ends
    swap = cu.MechanismSwapped("tree")
    eps_bad = {"tree": eps_pts["tree"],
               "direct": [_point("direct", p.n, p.eps, "swap", builder=swap) for p in eps_pts["direct"]]}
    n_bad = {"tree": n_pts["tree"],
             "direct": [_point("direct", p.n, p.eps, "swap", builder=swap) for p in n_pts["direct"]]}
    rec = _records(eps_bad, n_bad)["direct beats tree at every test point"]
    assert not rec.passed and rec.statistic > rec.threshold == 28
    assert all(t["p_value"] <= ALPHA / 4 for t in rec.details["tests"].values()), rec.details


def test_hp_test_catches_an_hp_envelope_five_times_too_small(ends):
    """As many mutant builds as the check's quick hp test has (148), each hp envelope x 0.2."""
    B = cu.hp_builds_at(QUICK)
    bad = _point("direct", cu.N_EPS, cu.EPS_TEST[0], "mutant-hp", builds=B, hp_builds=B,
                 builder=cu.Wrapped(lambda att: cu.ShrunkEnvelope(att, 0.2, hp_only=True)))
    recs = _records(*ends, extra=[bad])
    rec = recs[f"high-probability envelope holds at failure rate {cu.HP_FAILURE:g}"]
    assert rec.sample_size == B and not rec.passed, rec.details
    assert rec.statistic > rec.threshold == pytest.approx(cu.hoeffding_critical(B, cu.HP_FAILURE, ALPHA))
    assert recs["certified envelope never exceeded"].passed  # only the hp envelope is wrong


def test_certified_envelope_catches_an_envelope_fifty_times_too_small(ends):
    bad = _point("direct", cu.N_EPS, cu.EPS_TEST[0], "mutant-sure", builds=2,
                 builder=cu.Wrapped(lambda att: cu.ShrunkEnvelope(att, cu.SHRINK_FACTOR)))
    rec = _records(*ends, extra=[bad])["certified envelope never exceeded"]
    assert not rec.passed and rec.statistic > 1.0


def test_offset_power_record_is_caught_surely_and_can_fail():
    offset = [_point(m, cu.N_EPS, cu.EPS_TEST[0], "offset", builds=2,
                     builder=cu.Wrapped(cu.OffsetAnswer)) for m in ("direct", "tree")]
    rec = cu.offset_power_record(offset)
    assert rec.kind == "power" and rec.beta == 0.0 and rec.passed
    assert rec.statistic >= 2.0 * (1 - 1e-6)  # >= (offset - 1) E / (E + 1e-9)
    correct = [_point(m, cu.N_EPS, cu.EPS_TEST[0], "offset", builds=2) for m in ("direct", "tree")]
    assert not cu.offset_power_record(correct).passed  # real answers are inside their envelope


def test_retrieval_test_catches_an_answer_drowned_in_noise():
    """At the quick sizes (R = 2.5, n = 2e4, 20 builds): correct builds retrieve; a mechanism
    calibrated to eps = 0.01 whatever it is asked fails (nearly) every build, and the record
    (which rejects from 16 failing builds of 20). The check's own power record, the
    query-ignoring mutant, has a rigorous beta: tested below."""
    R = max(QUICK.R_grid)
    kw = dict(builds=QUICK.retrieval_builds, R=R)
    good = _point("direct", QUICK.n_R, 1.0, "retrieval", **kw)
    bad = _point("direct", QUICK.n_R, 1.0, "retrieval", builder=cu.EpsIgnored(0.01), **kw)
    name = f"retrieval survives privacy at R = {R:g}"
    recs_good = _retrieval_records([good])
    recs_bad = _retrieval_records([bad])
    assert recs_good[name].passed and recs_good[name].statistic <= 2
    bad_rec = recs_bad[name]
    assert not bad_rec.passed and bad_rec.statistic > bad_rec.threshold == 15


def test_retrieval_power_record_has_a_rigorous_beta_and_can_fail():
    R = max(QUICK.R_grid)
    top = cu.run_point(mechanism="direct", n=QUICK.n_R, eps=1.0, R=R, builds=QUICK.retrieval_builds,
                       m=QUICK.m, seed=derive_seed(4242, "retrieval-power"), hp_builds=0,
                       query_ignored=True)
    rec = cu.retrieval_power_record(top, QUICK.m)
    assert rec.kind == "power" and rec.passed and 0.0 < rec.beta < 1e-100
    s = stats.binom.sf(94, QUICK.m, 1 / 3)
    k = rec.details["beta_terms"]["escape"]["successes_needed"]
    assert k == QUICK.retrieval_builds - 16 + 1
    assert rec.beta == pytest.approx(math.comb(QUICK.retrieval_builds, k) * s ** k)
    assert np.all(top.acc_query_ignored <= 0.8)  # the mutant's arg-max ignores the labels
    # had the mutant retrieved (here: the real answers), the record fails
    real = dataclasses.replace(top, acc_query_ignored=top.acc_dp, weight_query_ignored=top.weight_dp)
    assert not cu.retrieval_power_record(real, QUICK.m).passed


def _retrieval_records(R_pts):
    return {r.name: r for r in cu.retrieval_records(R_pts)}


# ---------------------------------------------------------------------------------------------
# the records' logic on synthetic points
# ---------------------------------------------------------------------------------------------

def _pt(mech, n, eps, errs, R=1.0, **kw):
    errs = np.asarray(errs, dtype=np.float64)
    k = errs.size
    base = dict(mechanism=mech, n=n, eps=eps, R=R, degree=4, r=35, err_dp=errs, err_exact=errs,
                kernel_bias=np.full(k, 1e-3), sure_ratio=np.full(k, 0.1),
                sure_min_ratio=np.full(k, 1e-3), sure_mean=50 * errs, sure_smallest=10 * errs,
                hp_mean=5 * errs, hp_frac=np.zeros(k), weight_dp=np.full(k, 0.7),
                weight_exact=np.full(k, 0.7), acc_dp=np.ones(k), acc_exact=np.ones(k),
                entries_per_build=400, hp_quantile_ratio=3.0)
    base.update(kw)
    return cu.PointResult(**base)


def _synthetic(k=30, tree_factor=100.0, slope=-1.0, rng=None):
    rng = np.random.default_rng(0) if rng is None else rng
    (e_lo, e_hi), (n_lo, n_hi) = cu.EPS_TEST, cu.N_TEST

    def errs(scale):
        return scale * rng.lognormal(0.0, 0.3, size=k)

    eps_pts = {m: [_pt(m, cu.N_EPS, e, errs(f * (e / e_lo) ** slope)) for e in (e_lo, 100.0, e_hi)]
               for m, f in (("direct", 0.01), ("tree", 0.01 * tree_factor))}
    n_pts = {m: [_pt(m, n, cu.EPS_N, errs(f * (n / n_lo) ** slope)) for n in (n_lo, 512, n_hi)]
             for m, f in (("direct", 0.01), ("tree", 0.01 * tree_factor))}
    R_pts = [_pt("direct", 20000, 1.0, errs(0.01 * R), R=R,
                 weight_exact=np.full(k, 0.3 + 0.15 * R)) for R in (1.0, 2.0, 3.0)]
    return eps_pts, n_pts, R_pts


def _by_name(recs):
    return {r.name: r for r in recs}


def test_records_pass_on_a_well_behaved_measurement_and_state_their_rates():
    recs = cu.utility_records(*_synthetic())
    assert all(r.passed for r in recs), [r.name for r in recs if not r.passed]
    assert len(recs) == 14
    kinds = {r.kind for r in recs}
    assert kinds == {"statistical", "info", "exact"}
    assert all(r.alpha == ALPHA for r in recs if r.kind == "statistical")
    total = sum(r.false_failure_rate() for r in recs) + 0.0  # + the power record's beta 0
    assert total == pytest.approx(7 * ALPHA) and total <= 5e-5


def test_records_fail_when_claims_break():
    from dpxattn.verification.harness import record_consistent

    def names(recs):  # the failed records; every verdict must agree with its own threshold
        assert all(record_consistent(r) for r in recs)
        return {r.name for r in recs if not r.passed}

    assert "direct beats tree at every test point" in names(cu.utility_records(*_synthetic(tree_factor=2.0)))
    flat = names(cu.utility_records(*_synthetic(slope=0.0)))
    assert {f"privacy error decreases with {s} ({m})" for s in ("eps", "n")
            for m in ("direct", "tree")} <= flat
    # a slope of -0.8, steeper than the claim's -1/2 but not the predicted -1, must not fail
    assert not any("decreases" in n for n in names(cu.utility_records(*_synthetic(slope=-0.8))))
    eps_pts, n_pts, R_pts = _synthetic()
    p = eps_pts["direct"][0]
    eps_pts["direct"][0] = dataclasses.replace(p, sure_ratio=np.r_[1.5, p.sure_ratio[1:]])
    for group in (eps_pts, n_pts):  # every build's hp envelope exceeded on 30 % of its entries
        for mech, pts in group.items():
            group[mech] = [dataclasses.replace(q, hp_frac=np.full(q.builds, 0.3)) for q in pts]
    R_pts[-1] = dataclasses.replace(R_pts[-1], acc_dp=np.full(R_pts[-1].builds, 0.5))
    failed = names(cu.utility_records(eps_pts, n_pts, R_pts))
    assert "certified envelope never exceeded" in failed
    assert f"high-probability envelope holds at failure rate {cu.HP_FAILURE:g}" in failed
    assert "retrieval survives privacy at R = 3" in failed


def test_retrieval_fails_from_sixteen_failing_builds_of_twenty():
    _, _, R_pts = _synthetic(k=20)
    top = R_pts[-1]
    assert cu.retrieval_test(top.acc_dp, top.weight_dp).critical == 16
    name = "retrieval survives privacy at R = 3"
    for failing, passes in ((15, True), (16, False)):
        w = np.full(20, 0.7)
        w[:failing] = 0.4  # too little weight on the right document
        rec = _by_name(cu.retrieval_records(R_pts[:-1] + [dataclasses.replace(top, weight_dp=w)]))[name]
        assert rec.passed is passes and rec.statistic == failing and rec.threshold == 15


def test_info_records_never_fail():
    eps_pts, n_pts, R_pts = _synthetic(slope=1.0)
    eps_pts["tree"][0] = dataclasses.replace(eps_pts["tree"][0], hp_quantile_ratio=400.0)
    R_pts = [dataclasses.replace(p, weight_exact=np.full(p.builds, 1.0 - 0.1 * p.R)) for p in R_pts]
    info = [r for r in cu.utility_records(eps_pts, n_pts, R_pts) if r.kind == "info"]
    assert len(info) == 6 and all(r.passed for r in info)
    tight = _by_name(info)["high-probability envelope within a small factor of the observed error"]
    assert tight.statistic == 400.0


def test_duplicate_points_are_all_counted():
    # the eps sweep's eps=100 point and the n sweep's n=512 point share (mechanism, eps, n, R):
    # the worse of the two must still decide the envelope record
    eps_pts, n_pts, R_pts = _synthetic()
    p = n_pts["direct"][1]
    n_pts["direct"][1] = dataclasses.replace(p, sure_ratio=np.full(p.builds, 1.2), experiment="n sweep")
    rec = _by_name(cu.utility_records(eps_pts, n_pts, R_pts))["certified envelope never exceeded"]
    assert not rec.passed and rec.statistic == 1.2
    assert "n sweep: direct eps=100 n=512 R=1" in rec.details["mean_envelope_over_error"]


def test_loglog_slope_and_bootstrap_interval():
    assert cu.loglog_slope([1, 10, 100], [1, 0.1, 0.01]) == pytest.approx(-1.0)
    rng = np.random.default_rng(3)
    per = [10.0 ** -i * rng.lognormal(0, 0.2, size=8) for i in range(3)]
    slope, lo, hi = cu.bootstrap_slope([1, 10, 100], per, rng)
    assert lo <= slope <= hi and -1.2 < lo and hi < -0.8


def test_noise_scaled_mutant_scales_the_released_noise():
    task = cu.make_task(200, 5, 1.0, 11)
    kw = dict(mechanism="direct", eps=1.0, delta=1e-6, degree=4)
    real = cu.build_structure(task, generator=torch.Generator().manual_seed(5), **kw)
    bad = cu.NoiseScaled(3.0)(task, generator=torch.Generator().manual_seed(5), **kw)
    noiseless = cu.NoiseScaled(0.0)(task, generator=torch.Generator().manual_seed(5), **kw)
    S0 = noiseless.release.S
    torch.testing.assert_close(bad.release.S - S0, 3.0 * (real.release.S - S0), rtol=1e-9, atol=1e-9)
    ty = cu.taylor_attention(task, 4)
    torch.testing.assert_close(noiseless.query(task.Q), ty, rtol=1e-9, atol=1e-12)
