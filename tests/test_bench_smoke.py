"""Smoke test of ``dpxattn bench --quick`` (structure only: no assertion here is about speed),
and exact checks of the benchmark's own baselines and helpers (a wrong baseline would make every
ratio of the benchmark meaningless)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from dpxattn.benchmarks import baselines as bl
from dpxattn.benchmarks.configs import DEFAULT_NAMES, NAMED, parse_configs
from dpxattn.benchmarks.slopes import affine_fit, crossover_n, fit_loglog
from dpxattn.benchmarks.targets import VERDICTS, judge
from dpxattn.benchmarks.timing import measure, measure_many, measure_memory
from dpxattn.cli import main

ROW = re.compile(r"^\| (?P<id>[A-Z][A-Za-z0-9]*) +\|.*\| (?P<verdict>PASS|FAIL|UNSURE|INFO|SKIP) +\|")
EXPECTED_TARGETS = {"G1", "G2", "G3", "G4", "G6", "G7", "G8", "G9", "G10", "G11", "REF", "ERR", "ENV",
                    "L1", "L2", "L3", "L4", "L5", "L6"}
EXPECTED_SLOPES = {"S1", "S2", "S3", "S4", "S5", "S6", "S7"}
#: rows read without an interval: a memory peak, a sure envelope, bit-identity, public constants
DETERMINISTIC_IDS = ("G10", "ENV", "ST3m", "ST4e", "ST5", "ST5g", "ST6s", "ST6g")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start:] if end < 0 else text[start:end]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        status = main(["bench", "--quick", "--out", str(out)])
    return status, buf.getvalue(), out


def test_quick_run_completes_and_prints_every_section(quick_run):
    status, text, _ = quick_run
    assert status == 0, text[-2000:]
    for title in ("Header", "Anchors (same run)", "Streaming (exact accumulator",
                  "Targets (research/PERF_ANCHORS.md §5)", "Scaling (log-log slopes)",
                  "Crossover", "Hardened noise", "Summary"):
        assert f"## {title}" in text, title
    assert "QUICK MODE" in text
    assert "ERROR in section" not in text
    for name in DEFAULT_NAMES:
        assert f"## Configuration {name}:" in text, name
        table = _section(text, f"Configuration {name}:")
        mechanisms = re.findall(r"^\| (direct|tree) +\|", table, flags=re.M)
        assert mechanisms == ["direct", "tree"], table


def test_target_and_slope_rows_parse(quick_run):
    _, text, _ = quick_run
    targets = [ROW.match(line) for line in _section(text, "Targets (research/PERF_ANCHORS.md §5)").splitlines()]
    targets = [m for m in targets if m]
    slopes = [ROW.match(line) for line in _section(text, "Scaling (log-log slopes)").splitlines()]
    slopes = [m for m in slopes if m]
    assert {m["id"] for m in targets} >= EXPECTED_TARGETS
    assert {m["id"] for m in slopes} == EXPECTED_SLOPES
    for m in targets + slopes:
        assert m["verdict"] in VERDICTS
    summary = _section(text, "Summary")
    counts = dict(re.findall(r"(PASS|FAIL|UNSURE|INFO|SKIP) (\d+)", summary.splitlines()[2]))
    for verdict in VERDICTS:
        assert int(counts[verdict]) == sum(m["verdict"] == verdict for m in targets + slopes)


def test_json_is_written_and_matches_the_text(quick_run):
    _, text, path = quick_run
    doc = json.loads(path.read_text())
    for key in ("header", "settings", "anchors", "configs", "targets", "slopes", "crossover",
                "tree_ranges", "reference", "noise_laws", "streaming", "noise_hardening", "summary"):
        assert key in doc, key
    assert [c["config"]["name"] for c in doc["configs"]] == list(DEFAULT_NAMES)
    for c in doc["configs"]:
        assert [r["mechanism"] for r in c["rows"]] == ["direct", "tree"]
        for r in c["rows"]:
            assert r["init"] > 0 and r["query us/tok"] > 0
    assert doc["anchors"]["gemm_f64_gflops"] > 0
    assert doc["settings"]["quick"] is True
    printed = sum(1 for line in text.splitlines() if ROW.match(line))
    assert printed == len(doc["targets"]) + len(doc["slopes"])
    assert sum(doc["summary"].values()) == printed
    for row in doc["targets"] + doc["slopes"]:
        assert row["verdict"] in VERDICTS
    assert doc["settings"]["confidence"] == 0.99


def test_noisy_rows_carry_their_interval_and_quick_ones_cannot_pass_or_fail(quick_run):
    # every gated row is read from an interval or declared deterministic; with the quick run's
    # 3 repetitions no 0.99 interval exists, so every interval row is UNSURE (or INFO / SKIP)
    _, text, path = quick_run
    doc = json.loads(path.read_text())
    reps = doc["settings"]["repetitions"]
    assert reps == 3
    seen = set()
    for row in doc["targets"] + doc["slopes"]:
        if row["id"] == "RUN" or row["verdict"] == "SKIP":
            continue
        if row["op"] != "info":
            assert row["basis"] in ("interval", "deterministic"), row
        if row["basis"] == "deterministic":
            assert row["interval"] is None and row["id"] in DETERMINISTIC_IDS, row
            continue
        iv = row["interval"]
        if iv is None:
            assert row["verdict"] == "INFO", row
            continue
        seen.add(row["id"])
        assert iv["n"] == reps and iv["lo"] <= iv["estimate"] <= iv["hi"], row
        assert row["measured"] == pytest.approx(iv["estimate"])
        assert iv["sufficient"] is False and iv["confidence"] < 0.99
        assert row["verdict"] in ("UNSURE", "INFO"), row
    assert seen >= {"G1", "G2", "G4", "G6", "G7", "G8", "G9", "G11", "G11e", "REF", "ERR",
                    "S1", "S2", "S3", "S4", "S5", "S6", "S7"}
    assert "cannot give a 0.99 interval (needs >= 8)" in text
    hardening = [r for r in doc["noise_hardening"]["rows"] if r["kind"] == "build" and "verdict" in r]
    assert len(hardening) == 2 and all(r["verdict"] == "UNSURE" for r in hardening)


def test_noise_off_structures_compute_the_same_taylor_attention_as_the_baseline(quick_run):
    # every uniform 1/2 gives zero noise: the fast structure and this benchmark's own baseline
    # then compute the same noiseless Taylor attention, so the ratios compare equal work
    _, _, path = quick_run
    doc = json.loads(path.read_text())
    for c in doc["configs"]:
        for r in c["rows"]:
            assert r["off vs base"] < 1e-9, (c["config"]["name"], r["mechanism"], r["off vs base"])
            assert r["err/env"] <= 1.0


# -- the baselines and helpers, exactly -------------------------------------------------------


def test_feature_map_baseline_is_the_taylor_kernel(rng):
    d, s, scale = 5, 3, 0.2
    fmap = bl.FeatureMapBaseline(d, s, scale)
    assert fmap.r == math.comb(d + s, s)
    x = torch.from_numpy(rng.random((d, 9)))
    y = torch.from_numpy(rng.random((d, 9)))
    t = scale * (x * y).sum(0)
    taylor = sum(t**j / math.factorial(j) for j in range(s + 1))
    got = (fmap.transposed(x.contiguous()) * fmap.transposed(y.contiguous())).sum(0)
    torch.testing.assert_close(got, taylor, rtol=1e-14, atol=0)
    bounds = bl.feature_bounds(fmap, 1.0)
    assert bool((fmap.transposed(x.contiguous()) <= bounds[:, None] * (1 + 1e-15)).all())


def test_noiseless_build_and_linear_attention_match_brute_force(rng):
    n, d, d_v, s = 3000, 3, 2, 2  # n spans several chunks
    fmap = bl.FeatureMapBaseline(d, s, 1 / d)
    K = torch.from_numpy(rng.random((n, d)))
    V = torch.from_numpy(rng.random((n, d_v)) * 2 - 1)
    Q = torch.from_numpy(rng.random((7, d)))
    S = bl.noiseless_build(fmap, K, V)
    P = fmap.transposed(K.T.contiguous())
    brute = P @ torch.cat([V, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(S, brute, rtol=1e-12, atol=1e-12)
    t = (Q @ K.T) / d
    w = sum(t**j / math.factorial(j) for j in range(s + 1))
    torch.testing.assert_close(bl.linear_attention(fmap, S, Q), (w @ V) / w.sum(1, keepdim=True),
                               rtol=1e-12, atol=1e-12)


def test_exact_attention_baselines_agree(rng):
    Q, K, V = rng.random((5, 4)), rng.random((300, 4)), rng.random((300, 3)) * 2 - 1
    logits = Q @ K.T / 4
    w = np.exp(logits)
    want = (w @ V) / w.sum(1, keepdims=True)
    np.testing.assert_allclose(bl.numpy_exact_softmax(Q, K, V, 0.25, chunk=2), want, rtol=1e-13, atol=1e-15)
    got = bl.sdpa_exact(*(torch.from_numpy(a) for a in (Q, K, V)), 0.25).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("leaves", [1, 2, 8, 16])
def test_python_walk_and_node_counts_match_brute_force(leaves, rng):
    values = rng.random(leaves)
    nodes = np.zeros(2 * leaves - 1)
    nodes[leaves - 1:] = values
    for i in range(leaves - 2, -1, -1):
        nodes[i] = nodes[2 * i + 1] + nodes[2 * i + 2]
    a, b = zip(*[(i, j) for i in range(leaves) for j in range(i, leaves)])
    sums = bl.python_walk_range_sums(nodes, leaves, a, b)
    np.testing.assert_allclose(sums, [values[i:j + 1].sum() for i, j in zip(a, b)], rtol=1e-13)
    counts = bl.canonical_node_counts(leaves, np.array(a), np.array(b))
    for (i, j), c in zip(zip(a, b), counts):
        # brute force: the maximal dyadic blocks inside [i, j]
        k, want = i, 0
        while k <= j:
            size = 1
            while k % (2 * size) == 0 and k + 2 * size - 1 <= j:
                size *= 2
            k += size
            want += 1
        assert c == want, (i, j)
    assert bl.canonical_node_counts(leaves, np.array([leaves]), np.array([leaves - 1]))[0] == 0


def test_slopes_crossover_and_verdicts():
    sizes = [1e3, 1e4, 1e5]
    fit = fit_loglog(sizes, [3e-6 * n**0.9 for n in sizes])
    assert fit.slope == pytest.approx(0.9, abs=1e-12) and fit.residual < 1e-12
    assert affine_fit([1, 2, 3], [3, 5, 7]) == pytest.approx((1.0, 2.0))
    assert crossover_n((10.0, 1.0), (0.0, 2.0)) == pytest.approx(10.0)
    assert crossover_n((0.0, 2.0), (1.0, 1.0)) is None
    assert crossover_n((0.0, 1.0), (5.0, 2.0)) == 1.0
    # deterministic rows: the plain verdict (interval rows: tests/test_bench_intervals.py)
    assert judge("x", "", "", 1.2, "<=", 1.5, deterministic=True).verdict == "PASS"
    assert judge("x", "", "", 1.6, "<=", 1.5, deterministic=True).verdict == "FAIL"
    assert judge("x", "", "", 0.7, "in", (0.8, 1.2), deterministic=True).verdict == "FAIL"
    assert judge("x", "", "", 60.0, ">=", 50.0, deterministic=True).verdict == "PASS"
    assert judge("x", "", "", None, ">=", 50.0).verdict == "SKIP"
    assert judge("x", "", "", 3.0, "info").verdict == "INFO"
    with pytest.raises(ValueError, match="needs an interval"):
        judge("x", "", "", 1.2, "<=", 1.5)  # a gated row must say how it is read


def test_configs_parse():
    assert [c.name for c in parse_configs(None)] == list(DEFAULT_NAMES)
    assert NAMED["canonical"].r == 165 and NAMED["d16s3"].n == 10_000
    (c,) = parse_configs("d6s2n3e3m64v4")
    assert (c.d, c.degree, c.n, c.m, c.d_v) == (6, 2, 3000, 64, 4)
    with pytest.raises(ValueError, match="unknown configuration"):
        parse_configs("bogus")


def test_timing_and_memory_measurement():
    t = measure(lambda: sum(range(1000)), repetitions=5, min_rep_time=0.001)
    assert 0 < t.min <= t.median <= t.max and t.repetitions == 5 and t.inner >= 1
    assert len(t.samples) == 5 and min(t.samples) == t.min and max(t.samples) == t.max
    size = 64 << 20
    result, mem = measure_memory(lambda: torch.ones(size // 8, dtype=torch.float64))
    if mem is None:
        pytest.skip("no memory measurement method on this platform")
    assert mem.peak >= 0.95 * size and mem.retained >= 0.95 * size, mem
    del result


def test_settle_pause_is_outside_the_timed_region_and_validated():
    # a 0.05 s pause after each block must not show up in a ~microsecond function's time
    calls = []
    t_fast, t_other = measure_many([lambda: calls.append(1), lambda: None], repetitions=3,
                                   min_rep_time=0.001, settle_s=0.05)
    assert t_fast.median < 0.01 and t_other.median < 0.01
    with pytest.raises(ValueError, match="settle_s"):
        measure_many([lambda: None], settle_s=-1.0)
