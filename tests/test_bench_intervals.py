"""The benchmark's interval verdicts on synthetic timings (no real timing here: DESIGN keeps
speed targets in ``dpxattn bench``, never in timed tests).

The coverage checks simulate many runs of a known law and compare the observed coverage with
the stated confidence. Their margins are wide: at 0.99 with 12 values the exact guaranteed
coverage is 0.99365, and the simulated rate falls below 0.99 only with probability < 1e-9 at
these simulation sizes (a binomial tail), whatever the per-test seed.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dpxattn.benchmarks.intervals import (Interval, binomial_half_cdf, loglog_slopes,
                                          median_interval, median_interval_between,
                                          min_repetitions, order_ranks, paired_ratios)
from dpxattn.benchmarks.targets import judge, verdict_for
from dpxattn.benchmarks.timing import measure_many

CONF = 0.99


def _lognormal_ratios(rng, median: float, sigma: float, n: int) -> list[float]:
    """n paired ratios of two interleaved timings: each side lognormal, plus a slow phase that
    multiplies both sides of a repetition alike (and so cancels in the ratio)."""
    phase = rng.lognormal(0.0, 0.5, n)
    den = 1e-3 * phase * rng.lognormal(0.0, sigma / math.sqrt(2), n)
    num = median * 1e-3 * phase * rng.lognormal(0.0, sigma / math.sqrt(2), n)
    return paired_ratios(num, den)


# -- the order-statistic ranks ------------------------------------------------------------


def test_binomial_half_cdf_is_exact():
    assert binomial_half_cdf(-1, 5) == 0.0 and binomial_half_cdf(5, 5) == 1.0
    assert binomial_half_cdf(0, 12) == 1 / 4096
    assert binomial_half_cdf(1, 12) == 13 / 4096
    assert binomial_half_cdf(2, 4) == 11 / 16


@pytest.mark.parametrize("n,j,coverage", [
    (3, 1, 0.75),              # too few: [min, max] covers only 75 %
    (7, 1, 1 - 2 / 128),       # 0.984 < 0.99: still too few
    (8, 1, 1 - 2 / 256),       # the least n with a 0.99 interval
    (11, 1, 1 - 2 / 2048),
    (12, 2, 1 - 2 * 13 / 4096),  # the default: drops one extreme each side
    (15, 3, 1 - 2 * 121 / 32768),
])
def test_order_ranks(n, j, coverage):
    got_j, got_cov = order_ranks(n, CONF)
    assert got_j == j and got_cov == pytest.approx(coverage, abs=1e-15)
    # j is the largest rank whose coverage reaches the confidence
    if got_cov >= CONF and j + 1 <= (n + 1) // 2:
        assert 1 - 2 * binomial_half_cdf(j, n) < CONF
    assert min_repetitions(CONF) == 8


def test_median_interval_orders_and_insufficiency():
    iv = median_interval([5, 1, 4, 2, 3, 9, 8, 7, 6, 12, 11, 10], CONF)
    assert (iv.lo, iv.hi, iv.estimate, iv.n) == (2, 11, 6.5, 12) and iv.sufficient
    assert iv.miss_per_side == pytest.approx(13 / 4096)
    short = median_interval([1.0, 2.0, 3.0], CONF)
    assert not short.sufficient and short.confidence == 0.75 and (short.lo, short.hi) == (1, 3)
    with pytest.raises(ValueError):
        median_interval([1.0, float("nan")], CONF)


# -- three-way verdicts -------------------------------------------------------------------


def test_clearly_better_clearly_worse_and_straddling_sets(rng):
    # a "<= 1.5x" target with 12 paired ratios whose median is 1.1, 2.0, or the threshold itself
    better = median_interval(_lognormal_ratios(rng, 1.1, 0.05, 12), CONF)
    worse = median_interval(_lognormal_ratios(rng, 2.0, 0.05, 12), CONF)
    straddle = median_interval([1.3, 1.4, 1.45, 1.48, 1.49, 1.5, 1.5, 1.51, 1.52, 1.6, 1.7, 1.8], CONF)
    assert judge("G1", "", "", better.estimate, "<=", 1.5, "x", interval=better).verdict == "PASS"
    assert judge("G1", "", "", worse.estimate, "<=", 1.5, "x", interval=worse).verdict == "FAIL"
    row = judge("G1", "", "", straddle.estimate, "<=", 1.5, "x", interval=straddle)
    assert row.verdict == "UNSURE" and row.interval_text().startswith("[1.4, 1.7]x @99.4%")
    # ">=" targets and bands
    assert verdict_for(">=", 1.0, worse) == "PASS" and verdict_for(">=", 3.0, worse) == "FAIL"
    assert verdict_for(">=", 1.5, straddle) == "UNSURE"
    assert verdict_for("in", (1.0, 2.0), straddle) == "PASS"
    assert verdict_for("in", (1.45, 2.0), straddle) == "UNSURE"
    assert verdict_for("in", (2.0, 3.0), straddle) == "FAIL"
    assert verdict_for("in", (0.5, 1.2), straddle) == "FAIL"
    # too few repetitions: UNSURE even far from the threshold, and the note says why
    few = median_interval([1.0, 1.01, 1.02], CONF)
    row = judge("G1", "", "", few.estimate, "<=", 1.5, "x", interval=few)
    assert row.verdict == "UNSURE" and "cannot give a 0.99 interval" in row.note
    assert "< 99%" in row.interval_text()
    # the JSON carries the interval and how it was formed
    d = judge("G1", "", "", better.estimate, "<=", 1.5, "x", interval=better).to_dict()
    assert d["basis"] == "interval" and d["interval"]["confidence"] >= CONF
    assert d["interval"]["n"] == 12 and "order statistics 2 and 11 of 12" in d["interval"]["method"]
    with pytest.raises(ValueError, match="not both"):
        judge("G1", "", "", 1.0, "<=", 1.5, interval=better, deterministic=True)


def test_interval_covers_the_median_at_its_stated_confidence(rng):
    # heavy-ish lognormal ratio noise, the default 12 repetitions: coverage >= 0.99
    runs, n, median = 20_000, 12, 1.3
    covered = 0
    for _ in range(runs):
        iv = median_interval(_lognormal_ratios(rng, median, 0.3, n), CONF)
        covered += iv.lo <= median <= iv.hi
    rate = covered / runs
    assert iv.confidence == pytest.approx(1 - 2 * 13 / 4096)
    assert rate >= CONF, rate  # expected 0.9937 (exact for a continuous law), sd 5.6e-4


def test_false_fail_rate_at_the_threshold_and_power(rng):
    # true median exactly on the threshold: a FAIL is a false alarm, bounded by the one-sided
    # miss 13/4096 = 0.0032 of the interval; a target missed by 30 % FAILs nearly always
    runs, n, t = 20_000, 12, 1.5
    fails = sum(verdict_for("<=", t, median_interval(_lognormal_ratios(rng, t, 0.2, n), CONF)) == "FAIL"
                for _ in range(runs))
    assert fails / runs <= 0.005, fails  # expected <= 0.0032, sd 4e-4
    caught = sum(verdict_for("<=", t, median_interval(_lognormal_ratios(rng, 1.3 * t, 0.1, n), CONF)) == "FAIL"
                 for _ in range(2_000))
    assert caught / 2_000 >= 0.95, caught


def test_bracketed_interval_bonferroni(rng):
    # G7's construction: ratio b_k / (c + nl_k) with c known only to an interval of its own
    b = rng.lognormal(0.0, 0.1, 12)
    nl = rng.lognormal(-1.0, 0.1, 12)
    c_lo, c_mid, c_hi = 0.9, 1.0, 1.1
    iv = median_interval_between(b / (c_hi + nl), b / (c_lo + nl), b / (c_mid + nl),
                                 1 - 0.005, 0.004, CONF, "test")
    j, cov = order_ranks(12, 1 - 0.005)
    assert j == 1 and iv.confidence == pytest.approx(cov - 0.004) and iv.sufficient
    assert iv.lo == pytest.approx(min(b / (c_hi + nl))) and iv.hi == pytest.approx(max(b / (c_lo + nl)))
    assert iv.lo <= iv.estimate <= iv.hi


# -- slopes -------------------------------------------------------------------------------


def test_per_repetition_slopes_and_their_coverage(rng):
    sizes = np.array([1e3, 1e4, 1e5, 1e6])
    exact = loglog_slopes(sizes, [3e-9 * sizes**0.9, 5e-9 * sizes**0.9])
    assert exact == pytest.approx([0.9, 0.9], abs=1e-12)
    # times = c n^b x (a slow phase common to one repetition) x independent lognormal noise:
    # the median of the per-repetition slope's law is b (the noise is symmetric in log)
    runs, n, b = 10_000, 12, 0.95
    x = np.log(sizes)
    xc = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    covered, verdicts = 0, {"PASS": 0, "FAIL": 0, "UNSURE": 0}
    for _ in range(runs):
        logt = (b * x + rng.normal(0, 0.3, (n, 1)) + rng.normal(0, 0.25, (n, sizes.size)))
        slopes = list(logt @ xc)
        iv = median_interval(slopes, CONF)
        covered += iv.lo <= b <= iv.hi
        verdicts[verdict_for("in", (0.8, 1.2), iv)] += 1
    assert covered / runs >= CONF, covered  # expected 0.9937, sd 7.9e-4
    assert verdicts["FAIL"] / runs <= 0.01  # a band's false FAIL is bounded by 1 - coverage
    # the helper computes the same slopes as the closed form
    logt = b * x + rng.normal(0, 0.2, (3, sizes.size))
    assert loglog_slopes(sizes, np.exp(logt)) == pytest.approx(list(logt @ xc), rel=1e-10)
    # a series whose slope is clearly 2 FAILs S6's "<= 1.3"
    steep = [list(np.exp(2.0 * x + rng.normal(0, 0.05, sizes.size))) for _ in range(12)]
    assert verdict_for("<=", 1.3, median_interval(loglog_slopes(sizes, steep), CONF)) == "FAIL"


# -- measure_many's result hook -----------------------------------------------------------


def test_measure_many_samples_are_paired_and_the_hook_sees_each_block_result():
    seen = []
    made = itertools.count()
    t_a, t_b = measure_many([lambda: next(made), lambda: None], repetitions=4, min_rep_time=0.0005,
                            on_result=[seen.append, None])
    assert len(t_a.samples) == len(t_b.samples) == 4
    assert len(seen) == 4 and seen == sorted(seen) and len(set(seen)) == 4  # one per timed block
    with pytest.raises(ValueError, match="on_result"):
        measure_many([lambda: None], on_result=[None, None])


def test_interval_text():
    iv = Interval(1.0, 2.0, 1.5, 0.9937, 0.99, 12, "m")
    assert iv.text("x") == "[1, 2]x @99.4%"
    assert Interval(1.0, 2.0, 1.5, 0.75, 0.99, 3, "m").text() == "[1, 2] @75% < 99%"
