"""Timing check of the hardened release (issue 5): running time independent of the private value.

TLap, hardened release -- paper: truncated Laplace mechanism (v2 §2 / App. B; v3: unverified);
spec PAPER.md §2.1 and §5 item 18; proofs_notes/23-hardened-noise.md (threat model).

:func:`dpxattn.fast.secure_noise.secure_release` draws its noise without reading the values
and rounds them by a fixed sequence of elementwise integer operations, so its running time
should not depend on the private vector. The check measures that, for neighbouring inputs
(x, x') with the production randomness (``os.urandom``):

* each pair's releases are timed in a **random interleaved order** (labels assigned by a seeded
  permutation), so under the null hypothesis "the time does not depend on the input" the labels
  are independent of the timings whatever the machine's drift or load: the two-sample tests
  below are then valid randomisation tests;
* two-sample tests on the timings: Mann-Whitney U (a shift) and Kolmogorov-Smirnov (any change
  of distribution), two-sided, each at ``ALPHA / 2`` (Bonferroni): a record's false-alarm rate
  is at most :data:`ALPHA`;
* power: the same tests, at the same sizes, must flag a **mutant** with the same output law
  whose rounding takes a data-dependent path (a Python loop over the nonzero entries: a "sparse
  fast path"), on the pair (zeros, Delta spread over every coordinate).

Pairs (sensitivity 1 over all ``n`` coordinates): zeros vs one coordinate at +Delta; zeros vs
Delta/n in every coordinate; subnormal entries vs normal entries (a float-rounding path would
take the slow subnormal microcode path; ours uses integers only).

Scope (what a passing record does not show): the time still depends on the random noise draws
(rejection loops), so the joint law of (output, time) is not covered (Jin et al. 2022,
Ratliff and Vadhan 2024); the timer resolution and the machine's noise bound the effect size
this test can see; cache, branch-predictor and power side channels are not measured.
"""

from __future__ import annotations

import gc
import time
from typing import Callable

import numpy as np
from scipy import stats

from dpxattn.fast.secure_noise import secure_parameters, secure_release, sample_noise_units
from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "ALPHA",
    "VECTOR_SIZE",
    "timing_sizes",
    "neighbour_pairs",
    "time_interleaved",
    "two_sample_pvalue",
    "sparse_rounding_release",
    "check_timing",
]

#: false-alarm rate of each timing record (Mann-Whitney and KS at ALPHA / 2 each)
ALPHA = 1e-4
#: coordinates per release (one release = one direct-mechanism-sized vector)
VECTOR_SIZE = 4096
_RELEASE = dict(sensitivity=1.0, eps=1.0, delta=1e-6, changed=VECTOR_SIZE)


def timing_sizes(level: str, scale: float = 1.0) -> int:
    """Timed releases per input of a pair."""
    return {"quick": 150, "standard": 1000}.get(level, int(1000 * scale))


def neighbour_pairs(n: int = VECTOR_SIZE) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, x, x') pairs with ||x - x'||_1 <= 1 = the sensitivity, over at most n coordinates.

    Arrays are written explicitly (np.full), never left as lazily zero-mapped pages.
    """
    zeros = np.full(n, 0.0)
    one_hot = np.full(n, 0.0)
    one_hot[0] = 1.0
    spread = np.full(n, 1.0 / n)
    subnormal = np.full(n, 5e-324) * np.arange(1, n + 1)
    return [
        ("zeros vs one coordinate +Delta", zeros, one_hot),
        ("zeros vs Delta spread over every coordinate", zeros, spread),
        ("subnormal entries vs normal entries", subnormal, spread.copy()),
    ]


def time_interleaved(release: Callable[[np.ndarray], object], x: np.ndarray, y: np.ndarray,
                     reps: int, rng: np.random.Generator, warmup: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Wall times (ns) of ``release(x)`` and ``release(y)``, ``reps`` each, in a random order."""
    for _ in range(warmup):
        release(x)
        release(y)
    order = rng.permutation(np.repeat([0, 1], reps))
    times: tuple[list[int], list[int]] = ([], [])
    inputs = (x, y)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for label in order:
            arg = inputs[label]
            start = time.perf_counter_ns()
            release(arg)
            times[label].append(time.perf_counter_ns() - start)
    finally:
        if enabled:
            gc.enable()
    return np.array(times[0], dtype=np.float64), np.array(times[1], dtype=np.float64)


def two_sample_pvalue(a: np.ndarray, b: np.ndarray) -> tuple[float, dict]:
    """min(p_MannWhitney, p_KS), two-sided; compare with ALPHA / 2 (Bonferroni over the two)."""
    mw = stats.mannwhitneyu(a, b, alternative="two-sided")
    ks = stats.ks_2samp(a, b, alternative="two-sided")
    return float(min(mw.pvalue, ks.pvalue)), {
        "mann_whitney_p": float(mw.pvalue), "ks_p": float(ks.pvalue),
        "median_ns": [float(np.median(a)), float(np.median(b))],
        "iqr_ns": [float(np.subtract(*np.percentile(a, [75, 25]))),
                   float(np.subtract(*np.percentile(b, [75, 25])))],
    }


def _hardened(x: np.ndarray):
    return secure_release(x, **_RELEASE)


def sparse_rounding_release(x: np.ndarray) -> np.ndarray:
    """MUTANT (timing only): the hardened release whose rounding loops in Python over the
    nonzero entries. Same output law as the hardened release; its time grows with the number of
    nonzero private entries. For the power record only; never used by the library."""
    p = secure_parameters(**_RELEASE)
    g = p.granularity
    units = np.zeros(len(x), dtype=np.int64)
    for i in np.flatnonzero(x):
        units[i] = round(float(x[i]) / g)
    noise, _ = sample_noise_units(len(x), p)
    return np.ldexp((units + noise).astype(np.float64), p.exponent)


def check_timing(ctx: CheckContext) -> list[CheckRecord]:
    """Running time of the hardened release on neighbouring inputs is indistinguishable.

    For each pair of :func:`neighbour_pairs`: releases timed in a random interleaved order;
    Mann-Whitney U and KS two-sample tests, two-sided, each at ALPHA/2 (record alpha = 1e-4,
    valid by randomisation). Power: the same test, sizes and alpha flag the sparse-rounding
    mutant on the (zeros, spread) pair. Randomness of the releases: ``os.urandom``.
    """
    reps = timing_sizes(ctx.level, ctx.scale)
    rng = ctx.rng
    records = []
    pairs = neighbour_pairs()
    scope = ("covers the marginal running time only: time still depends on the noise draws, so "
             "the joint (output, time) law, cache/branch/power channels and effects below the "
             "timer's and machine's noise are not covered (proofs_notes/23-hardened-noise.md)")
    for name, x, y in pairs:
        a, b = time_interleaved(_hardened, x, y, reps, rng)
        p, info = two_sample_pvalue(a, b)
        records.append(CheckRecord(
            f"timing hardened: {name}", "statistical",
            "running time of secure_release does not depend on the private vector "
            f"({name}; n = {VECTOR_SIZE}; Mann-Whitney and KS, min p-value vs alpha/2)",
            p, ALPHA / 2, ">=", bool(p >= ALPHA / 2), alpha=ALPHA, sample_size=2 * reps,
            details={**info, "order": "random interleaving (randomisation test)", "scope": scope},
        ))
    name, x, y = pairs[1]
    a, b = time_interleaved(sparse_rounding_release, x, y, reps, rng)
    p, info = two_sample_pvalue(a, b)
    records.append(CheckRecord(
        f"timing power: sparse-rounding mutant, {name}", "power",
        "the same timing test flags a release whose rounding loops over the nonzero entries "
        "(same output law, data-dependent time)",
        p, ALPHA / 2, "<=", bool(p < ALPHA / 2), sample_size=2 * reps,
        details={**info, "mutant": "sparse_rounding_release"},
    ))
    return records
