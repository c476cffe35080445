"""Check 4 (verification/checks_privacy.py) and its mutants (verification/mutants.py).

The correct mechanisms pass the audit, every planted mutant is caught, and each mutant is
exactly the real release code with the documented change (white-box tests on shared uniforms).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch

from dpxattn.errors import ParameterError
from dpxattn.verification.checks_privacy import (AUDIT_ALPHA, DIRECT_CONFIG, SORTED_CONFIG,
                                                 TREE_CONFIG, audit_cases, check_privacy,
                                                 claimed_budget, default_case)
from dpxattn.verification.mutants import (CORRECT_NAMES, MUTANT_NAMES, VARIANTS, get_variant,
                                          noiseless_release, sample_answers, sample_released,
                                          sample_sorted_tree, verify_batches_match_builds)
from dpxattn.verification.records import CheckContext

K1 = np.array([[1.0], [0.25]])
V1 = np.array([[10.0], [-3.0]])
KT = np.array([[0.75]])
VT = np.array([[0.5]])


@pytest.mark.parametrize("config,K,V", [(DIRECT_CONFIG, K1, V1), (TREE_CONFIG, KT, VT)],
                         ids=["direct", "tree"])
def test_batched_sampler_is_the_real_build(config, K, V, rng):
    got = verify_batches_match_builds(config, K, V, np.array([[config.R], [0.0]]), rng, samples=4)
    assert got == {"released_equal": True, "answers_equal": True, "samples": 4}


def _same_stream(name, config, K, V, count, seed):
    return sample_released(name, config, K, V, count, np.random.default_rng(seed))


def test_half_noise_mutant_is_exactly_half_the_noise(seed):
    exact = noiseless_release(DIRECT_CONFIG, K1, V1)["S"]
    good = _same_stream("direct", DIRECT_CONFIG, K1, V1, 500, seed)["S"] - exact
    half = _same_stream("direct-half-noise", DIRECT_CONFIG, K1, V1, 500, seed)["S"] - exact
    torch.testing.assert_close(half, 0.5 * good, rtol=1e-12, atol=1e-12)
    ex_t = noiseless_release(TREE_CONFIG, KT, VT)
    good = _same_stream("tree", TREE_CONFIG, KT, VT, 300, seed)
    half = _same_stream("tree-half-noise", TREE_CONFIG, KT, VT, 300, seed)
    torch.testing.assert_close(half["scalars"] - ex_t["scalars"],
                               0.5 * (good["scalars"] - ex_t["scalars"]), rtol=1e-12, atol=1e-12)


def test_exact_denominator_mutants_release_exactly_that_part(seed):
    d_v = DIRECT_CONFIG.d_v
    exact = noiseless_release(DIRECT_CONFIG, K1, V1)["S"]
    good = _same_stream("direct", DIRECT_CONFIG, K1, V1, 200, seed)["S"]
    bad = _same_stream("direct-exact-denominator", DIRECT_CONFIG, K1, V1, 200, seed)["S"]
    assert torch.equal(bad[:, :, d_v], exact[:, d_v].expand(200, -1))
    assert torch.equal(bad[:, :, :d_v], good[:, :, :d_v])
    assert not torch.equal(good[:, :, d_v], bad[:, :, d_v])
    ex = noiseless_release(TREE_CONFIG, KT, VT)
    good = _same_stream("tree", TREE_CONFIG, KT, VT, 100, seed)
    bad = _same_stream("tree-exact-denominator", TREE_CONFIG, KT, VT, 100, seed)
    k = TREE_CONFIG.d_v
    assert torch.equal(bad["scalars"][:, k], ex["scalars"][0, k].expand(100, -1))
    assert torch.equal(bad["payload"][:, :, :, k], ex["payload"][:, :, 0, k].expand(100, -1, -1, -1))
    assert torch.equal(bad["payload"][:, :, :, :k], good["payload"][:, :, :, :k])
    assert torch.equal(bad["scalars"][:, :k], good["scalars"][:, :k])


def test_exact_c0_c1_mutant_releases_the_scalars_exactly(seed):
    ex = noiseless_release(TREE_CONFIG, KT, VT)
    good = _same_stream("tree", TREE_CONFIG, KT, VT, 100, seed)
    bad = _same_stream("tree-exact-c0-c1", TREE_CONFIG, KT, VT, 100, seed)
    assert torch.equal(bad["scalars"], ex["scalars"].expand(100, -1, -1))
    assert torch.equal(bad["payload"], good["payload"])


def test_sorted_keys_listing_stores_the_sorted_private_keys(rng):
    x = np.array([0.7, 0.1, 0.4, 0.9])
    w = np.array([1.0, -1.0, 0.5, -0.5])
    out = sample_sorted_tree("sorted-keys-tree", SORTED_CONFIG, x, w, 50, rng)
    assert torch.equal(out["keys"], torch.tensor(np.sort(x)).expand(50, -1))
    assert out["nodes"].shape == (50, 7, 3)
    hidden = sample_sorted_tree("sorted-positions-tree", SORTED_CONFIG, x, w, 50, rng)
    assert set(hidden) == {"nodes"}
    # with a huge eps the noise is tiny: the leaves of moment k are w x^k in SORTED key order
    loud = dataclasses.replace(SORTED_CONFIG, eps=600.0)  # per-level Laplace scale 0.03
    leaves = sample_sorted_tree("sorted-positions-tree", loud, x, w, 5, rng)["nodes"][:, 3:, :]
    order = np.argsort(x)
    for k in range(3):
        expect = torch.tensor(w[order] * x[order] ** k).expand(5, -1)
        torch.testing.assert_close(leaves[:, :, k], expect, rtol=0, atol=0.3)


def test_variants_are_labelled_and_never_exported():
    import dpxattn.fast as fast
    import dpxattn.reference as reference

    assert set(CORRECT_NAMES) == {"direct", "tree"}
    assert {"direct-half-noise", "tree-half-noise", "direct-exact-denominator",
            "tree-exact-denominator", "tree-exact-c0-c1", "sorted-keys-tree"} <= set(MUTANT_NAMES)
    assert all(VARIANTS[n].mutant and VARIANTS[n].demonstrates for n in MUTANT_NAMES)
    exported = set(fast.__all__) | set(reference.__all__)
    assert not any("mutant" in e.lower() or e in VARIANTS for e in exported)
    with pytest.raises(ParameterError, match="mechanism must be one of"):
        get_variant("laplace")
    with pytest.raises(ParameterError, match="must be 'tree'"):
        sample_released("tree", DIRECT_CONFIG, K1, V1, 10, np.random.default_rng(0))
    with pytest.raises(ParameterError, match="n = 2 rows"):
        sample_released("direct", DIRECT_CONFIG, KT, VT, 10, np.random.default_rng(0))


def test_claims_are_the_plan_shares():
    cases = {c.name: c for c in audit_cases()}
    c0 = cases["tree: released c0 of value column 0"]
    eps, delta = claimed_budget(c0)
    share = TREE_CONFIG.plan().share("c0")
    assert (eps, delta) == (float(share[0]), float(share[1])) and share[0] == Fraction(1)
    assert claimed_budget(cases["direct: released S"]) == (1.0, 1e-6)
    assert default_case("tree", eps=32.0).config.eps == 32.0
    assert default_case("direct", answers=True).selection == "answers"
    # every mutant except the hidden-positions one (exposed by check 3) has an audit case
    audited = {c.variant for c in audit_cases() if c.mutant}
    assert audited == set(MUTANT_NAMES) - {"sorted-positions-tree"}


def test_answers_sampler_matches_the_released_numbers(rng):
    """The direct answers are P(q) S / max(P(q) S_ones, n) of the same batch (q = 0: P = e_0)."""
    a = sample_answers("direct", DIRECT_CONFIG, K1, V1, np.array([[0.0]]), 64, np.random.default_rng(3))
    S = sample_released("direct", DIRECT_CONFIG, K1, V1, 64, np.random.default_rng(3))["S"]
    expect = S[:, 0, 0] / torch.clamp(S[:, 0, 1], min=float(DIRECT_CONFIG.n))
    torch.testing.assert_close(a[:, 0, 0], expect, rtol=1e-14, atol=0)


@pytest.mark.statistical
def test_check_privacy_quick_correct_pass_and_every_mutant_caught(seed):
    """Each audit has false-alarm rate alpha = 1e-6 (confidence 1 - 1e-6); the real mechanisms
    stay <= their claims and every mutant's bound exceeds its claim (power)."""
    records = check_privacy(CheckContext(level="quick", seed=seed))
    assert all(r.passed for r in records), [(r.name, r.statistic, r.threshold) for r in records if not r.passed]
    audits = [r for r in records if r.kind in ("audit", "power")]
    assert all(r.alpha == AUDIT_ALPHA for r in audits if r.kind == "audit")
    mutants = {r.details["variant"] for r in audits if r.details["mutant"]}
    assert mutants == set(MUTANT_NAMES) - {"sorted-positions-tree"}
    for r in audits:
        if r.details["mutant"]:
            assert r.kind == "power" and r.statistic > r.threshold
            # power with a derived beta; and the audit itself exposes every mutant (fixed seed)
            assert r.beta is not None and r.beta <= 1e-12 and r.details["beta_terms"]
            assert r.details["audit_exposed"], r.name
            if "exact" in r.details["variant"] or "sorted" in r.details["variant"]:
                assert r.beta == 0.0  # a point mass: deterministic
        else:
            assert r.kind == "audit" and r.statistic <= r.threshold
    rates = [r.false_failure_rate() for r in records]
    assert all(x is not None and x <= 1e-5 for x in rates) and sum(rates) <= 5e-5
    # the tight single-number audit reaches most of its claim (the audit is not vacuous)
    c0 = next(r for r in audits if r.name == "audit: tree: released c0 of value column 0")
    assert c0.statistic >= 0.8 * c0.threshold


@pytest.mark.statistical
def test_fixed_event_law_bounds_cover_the_sampled_frequencies(seed):
    """The oracle's law bounds p_law <= P_D(event), q_law >= P_D'(event) hold on the sampler: the
    frequencies of its events among many draws stay within binomial error of the bounds (4
    standard errors, a generous allowance), for the half-noise mutants on numbers and answers."""
    from dpxattn.verification.checks_privacy import run_case

    cases = {c.name: c for c in audit_cases()}
    rng = np.random.default_rng(seed)
    for name in ("mutant direct-half-noise: released S", "mutant direct-half-noise: answers",
                 "mutant tree-half-noise: released c0 of value column 0"):
        cr = run_case(cases[name], 60_000, rng)
        o = cr.oracle
        n = o.n
        se_p = np.sqrt(max(o.p_law * (1 - o.p_law), 1e-12) / n)
        se_q = np.sqrt(max(o.q_law * (1 - o.q_law), 1e-12) / n)
        assert o.x / n >= o.p_law - 4 * se_p, (name, o.x / n, o.p_law)
        assert o.y / n <= o.q_law + 4 * se_q, (name, o.y / n, o.q_law)
        # and the bounds are not vacuous: within 25% of the frequencies
        assert o.p_law >= 0.75 * o.x / n and o.q_law <= 1.25 * o.y / n + 5 / n, name


def test_ratio_bounds_bracket_a_simulation():
    """The numerical bounds on P(N / max(D, n) < -t) bracket a direct simulation of the law."""
    from dpxattn.fast.noise import tlap_constants, truncated_laplace
    from dpxattn.verification.checks_privacy import _ratio_below

    k = tlap_constants(10.0, 1.0, 1e-6)
    u = np.array([1.0, 1.0])
    rng = np.random.default_rng(11)
    m = 400_000
    Z = truncated_laplace((4, m), 10.0, 1.0, 1e-6, generator=rng).numpy()
    N = 3.0 + Z[0] + Z[1]
    D = np.maximum(2.0 + Z[2] + Z[3], 2.0)
    for t in (2.0, 8.0, 20.0):
        freq = float(np.mean(N / D < -t))
        lo = _ratio_below(k, u, 3.0, 2.0, 1e-9, 1e-9, 2.0, t, lower=True, bins=800)
        hi = _ratio_below(k, u, 3.0, 2.0, 1e-9, 1e-9, 2.0, t, lower=False, bins=800)
        se = np.sqrt(freq * (1 - freq) / m) + 1e-6
        assert lo - 5 * se <= freq <= hi + 5 * se and lo <= hi, (t, lo, freq, hi)
        assert hi - lo <= 0.1 * freq + 1e-4  # and tight
