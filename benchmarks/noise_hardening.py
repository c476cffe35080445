"""Benchmark rows: hardened vs float noise throughput, measured in one process.

TLap, hardened release -- paper: truncated Laplace mechanism (v2 §2 / App. B);
spec PAPER.md §2.1 and §5 item 18; proofs_notes/23-hardened-noise.md.

Two comparisons at each size n, both with the production randomness (OS CSPRNG):

* ``sampler``: n draws of noise alone: :func:`dpxattn.fast.secure_noise.sample_noise_units`
  (exact discrete truncated Laplace, lattice units) vs
  :func:`dpxattn.fast.noise.truncated_laplace` (float64 inversion);
* ``release``: a whole release of an n-vector: :func:`dpxattn.fast.secure_noise.secure_release`
  (lattice rounding + exact noise + exact scaling) vs ``x + truncated_laplace(...)`` in float64.

* ``build``: the build-time ratio of ``DPCrossAttention.build`` in secure mode (the default:
  lattice release) over float mode (``noise="float"``, OS uniforms), for both mechanisms at
  :data:`BUILD_CONFIGS` (direct: the canonical d = 8, s = 3, d_v = 8, n = 1e5; tree: d = 2,
  s = 2, d_v = 2, n = 16384, 1.77e6 noisy numbers, the largest that builds in well under a second
  here: the canonical tree is a 9 GB payload), the two interleaved; the target is a ratio
  <= 2 (:data:`BUILD_RATIO_TARGET`; measured ratios: proofs_notes/23-hardened-noise.md,
  "Threads"). The row's ratio is the median of the per-repetition ratios and its ``verdict``
  reads their order-statistic confidence interval
  (``dpxattn.benchmarks.intervals``; PASS / FAIL when the whole interval meets / misses the
  target, UNSURE otherwise). Quick runs use n = 1e4 (direct) and 4096 (tree).

Each row gives the median seconds per call (:func:`dpxattn.benchmarks.timing.measure`), the
nanoseconds per sample and, on hardened rows, the ratio to the float row of the same kind and
size. The float path runs in torch (``torch_threads`` threads, recorded per row; on a loaded
machine two threads make it erratic), the hardened path in numpy on one thread. The benchmark
helper includes these rows in ``dpxattn bench``. Shapes: n-vectors.
"""

from __future__ import annotations

import numpy as np
import torch

from dpxattn.benchmarks.intervals import DEFAULT_CONFIDENCE, median_interval, paired_ratios
from dpxattn.benchmarks.targets import verdict_for
from dpxattn.benchmarks.timing import measure, measure_many
from dpxattn.fast.noise import truncated_laplace
from dpxattn.fast.secure_noise import sample_noise_units, secure_parameters, secure_release

__all__ = ["CONFIG", "BUILD_CONFIGS", "BUILD_RATIO_TARGET", "BUILD_REPETITIONS", "sizes", "build_rows",
           "rows"]

#: repetitions of the build-time rows (full, quick): 12 gives a 0.99 interval for the median
#: ratio that drops the most extreme repetition on each side; 3 gives none (UNSURE)
BUILD_REPETITIONS = {False: 12, True: 3}

#: the hardened build's cost target: secure build time <= 2 x float build time
BUILD_RATIO_TARGET = 2.0

#: (mechanism, n, d, d_v, degree) of the build-time rows: full, and quick
BUILD_CONFIGS = {
    False: (("direct", 100_000, 8, 8, 3), ("tree", 16_384, 2, 2, 2)),
    True: (("direct", 10_000, 8, 8, 3), ("tree", 4_096, 2, 2, 2)),
}

#: sensitivity, eps, delta of every row (one coordinate changed per draw: the sampler's view)
CONFIG = {"sensitivity": 1.0, "eps": 1.0, "delta": 1e-6}


def sizes(quick: bool) -> tuple[int, ...]:
    """Vector sizes: quick 1e5; otherwise 1e5, 1e6 and 1e7 draws."""
    return (100_000,) if quick else (100_000, 1_000_000, 10_000_000)


def _row(kind: str, variant: str, n: int, seconds, extra: dict | None = None) -> dict:
    row = {
        "benchmark": "noise hardening",
        "kind": kind,
        "variant": variant,
        "n": n,
        "seconds": seconds.median,
        "seconds_min": seconds.min,
        "seconds_max": seconds.max,
        "repetitions": seconds.repetitions,
        "ns_per_sample": seconds.median / n * 1e9,
        "config": dict(CONFIG),
        "randomness": "os.urandom (secure)",
        "torch_threads": torch.get_num_threads(),
    }
    row.update(extra or {})
    return row


def build_rows(quick: bool, repetitions: int | None = None,
               confidence: float = DEFAULT_CONFIDENCE) -> list[dict]:
    """Secure / float build-time rows for both mechanisms (:data:`BUILD_CONFIGS`), interleaved
    (both sides with OS randomness: secure words vs secure uniforms), ``repetitions`` of each
    (default :data:`BUILD_REPETITIONS`); the secure row carries the ratio's interval at
    ``confidence`` and its verdict."""
    reps = repetitions if repetitions is not None else BUILD_REPETITIONS[bool(quick)]
    from dpxattn.fast import DPCrossAttention

    out: list[dict] = []
    for mechanism, n, d, d_v, degree in BUILD_CONFIGS[bool(quick)]:
        rng = np.random.default_rng(n)  # public stand-in data
        K = torch.from_numpy(rng.random((n, d)))
        V = torch.from_numpy(rng.uniform(-1.0, 1.0, (n, d_v)))
        kw = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0, degree=degree, mechanism=mechanism)
        t_float, t_secure = measure_many(
            [lambda: DPCrossAttention.build(K, V, noise="float", **kw),
             lambda: DPCrossAttention.build(K, V, noise="secure", **kw)], repetitions=reps)
        draws = DPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism=mechanism)
        config = {"mechanism": mechanism, "n": n, "d": d, "d_v": d_v, "degree": degree,
                  "eps": 1.0, "delta": 1e-6, "noisy_numbers": draws}
        interval = median_interval(paired_ratios(t_secure.samples, t_float.samples), confidence,
                                   "paired per-repetition ratios secure build / float build")
        ratio = interval.estimate
        for variant, t in (("float build (idealised numerics)", t_float),
                           ("secure build (hardened lattice release)", t_secure)):
            row = _row("build", variant, n, t)
            row.update({"config": config, "ns_per_sample": t.median / draws * 1e9})
            if t is t_secure:
                row.update({"ratio_vs_float": ratio, "target_ratio": BUILD_RATIO_TARGET,
                            "ratio_interval": interval.text("x"),
                            "verdict": verdict_for("<=", BUILD_RATIO_TARGET, interval)})
            out.append(row)
    return out


def rows(quick: bool, repetitions: int | None = None,
         confidence: float = DEFAULT_CONFIDENCE) -> list[dict]:
    """Hardened vs float rows (``sampler`` and ``release``) at each size of :func:`sizes`, then
    the build-time rows of :func:`build_rows` (``repetitions``, ``confidence`` as there).

    Hardened rows carry ``ratio_vs_float`` = hardened seconds / float seconds (same kind, n): a
    figure without a verdict.
    """
    params = secure_parameters(changed=1, **CONFIG)
    out: list[dict] = []
    for n in sizes(quick):
        reps = 3 if n >= 10_000_000 else 5
        x_np = np.random.default_rng(n).normal(size=n)  # public stand-in data, not private
        x_t = torch.from_numpy(x_np)
        cases = {
            "sampler": (
                lambda: truncated_laplace((n,), **CONFIG),
                lambda: sample_noise_units(n, params),
            ),
            "release": (
                lambda: x_t + truncated_laplace((n,), **CONFIG),
                lambda: secure_release(x_np, changed=n, **CONFIG),
            ),
        }
        for kind, (float_fn, hardened_fn) in cases.items():
            t_float = measure(float_fn, repetitions=reps)
            t_hard = measure(hardened_fn, repetitions=reps)
            out.append(_row(kind, "float64 inversion (idealised numerics)", n, t_float))
            out.append(_row(kind, "hardened lattice + exact discrete TLap", n, t_hard,
                            {"ratio_vs_float": t_hard.median / t_float.median}))
    return out + build_rows(quick, repetitions, confidence)
