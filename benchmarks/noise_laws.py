"""Benchmark rows: the Gaussian law against truncated Laplace, same data, same run (the targets of the Gaussian law).

Gaussian law -- paper: none (arXiv 2407.14717 calibrates truncated Laplace only); our
``law="gaussian"`` (analytic Gaussian on the l2 sensitivity, one component for the whole
release): proofs_notes/24-analytic-gaussian.md, 25-discrete-gaussian.md.

Rows (each ratio is the median of per-repetition ratios; the verdict reads its order-statistic
interval at the run's confidence, ``dpxattn.benchmarks.intervals``):

* **L1** ``direct``, canonical (d = 8, s = 3, d_v = 8, R = R_w = 1, eps = 1, delta = 1e-6,
  n = 1e4): mean |answer - Taylor attention| of gaussian over tlap, float mode, target <= 1/5;
* **L2** ``direct`` at d = 16, s = 3 (n = 2e4; quick 5e3): the same ratio, target <= 1/12;
* **L3** ``tree`` at d = 2, s = 2, d_v = 2, n = 4096: the same ratio, target <= 1/10 (the
  Gaussian tree: one component on the l2 sensitivity of the whole release,
  proofs_notes/26-tree-gaussian.md; SKIP with the library's reason where a law is unavailable);
* **L4** build time, ``direct`` canonical at n = 1e5 (quick 1e4): gaussian / tlap, both float
  mode, target <= 1.2;
* **L5** build time: secure gaussian (exact discrete Gaussian lattice release) / float gaussian,
  same configuration, target <= 2;
* **L6** build time, ``tree`` at L3's configuration (quick n = 512): gaussian / tlap, both float
  mode, target <= 1.2.

Data (public stand-ins): keys U[0, 1]^d, values U[-1, 1]^{d_v}, 64 queries U[0, 1]^d, drawn once
per configuration; each repetition of L1-L3 builds one structure per law with fresh seeded noise
(``torch.Generator``, labelled so) and compares both with the noiseless structure (every
uniform 1/2). Shapes: K (n, d), V (n, d_v), Q (64, d).
"""

from __future__ import annotations

import numpy as np
import torch

from dpxattn.benchmarks.context import RunContext
from dpxattn.benchmarks.intervals import paired_ratios
from dpxattn.benchmarks.targets import Target, judge, skipped

__all__ = ["ERROR_CASES", "BUILD_CASE", "measure_noise_laws"]

#: (id, mechanism, d, degree, d_v, n full, n quick, target ratio gaussian / tlap error)
ERROR_CASES = (
    ("L1", "direct", 8, 3, 8, 10_000, 10_000, 1 / 5),
    ("L2", "direct", 16, 3, 8, 20_000, 5_000, 1 / 12),
    ("L3", "tree", 2, 2, 2, 4_096, 4_096, 1 / 10),
)
#: (d, degree, d_v, n full, n quick) of the build-time rows L4, L5
BUILD_CASE = (8, 3, 8, 100_000, 10_000)
#: targets of L4 (gaussian / tlap float build) and L5 (secure / float gaussian build)
BUILD_TARGETS = (1.2, 2.0)
#: (d, degree, d_v, n full, n quick, target) of the tree build-time row L6
TREE_BUILD_CASE = (2, 2, 2, 4_096, 512, 1.2)
QUERIES = 64
_PRIVACY = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0)


def _data(n: int, d: int, d_v: int, seed: int):
    rng = np.random.default_rng(seed)
    K = torch.from_numpy(rng.random((n, d)))
    V = torch.from_numpy(rng.uniform(-1.0, 1.0, (n, d_v)))
    Q = torch.from_numpy(rng.random((QUERIES, d)))
    return K, V, Q


def _kwargs(mechanism: str, degree: int, law: str) -> dict:
    return dict(_PRIVACY, degree=degree, mechanism=mechanism, law=law, noise="float")


def _error_row(ctx: RunContext, case) -> tuple[Target, dict]:
    from dpxattn.errors import ParameterError
    from dpxattn.fast import DPCrossAttention

    rid, mechanism, d, degree, d_v, n_full, n_quick, target = case
    n = n_quick if ctx.quick else n_full
    tag = f"{mechanism}, d={d}, s={degree}, d_v={d_v}, n={n}, eps=1, delta=1e-6, float mode"
    what = f"{mechanism}: mean error gaussian / tlap (same data)"
    K, V, Q = _data(n, d, d_v, ctx.seed + 11 * d + degree)
    count = DPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism=mechanism)
    try:
        truth = DPCrossAttention.build(K, V, uniforms=torch.full((count,), 0.5, dtype=torch.float64),
                                       **_kwargs(mechanism, degree, "tlap"))
        exact = truth.query(Q)
        gen = torch.Generator().manual_seed(ctx.seed + 29)
        DPCrossAttention.build(K[:2], V[:2], generator=gen, **_kwargs(mechanism, degree, "gaussian"))
    except ParameterError as exc:
        return skipped(rid, what, tag, "<=", target, f"not available: {exc}", "x"), {}
    errors = {"tlap": [], "gaussian": []}
    for _ in range(ctx.repetitions):
        for law in errors:
            att = DPCrossAttention.build(K, V, generator=gen, **_kwargs(mechanism, degree, law))
            errors[law].append(float((att.query(Q) - exact).abs().mean()))
    interval = ctx.interval(paired_ratios(errors["gaussian"], errors["tlap"]),
                            "per-repetition ratios of independent builds' mean errors, gaussian / tlap")
    if interval is None:
        return skipped(rid, what, tag, "<=", target, "a repetition gave no finite error", "x"), errors
    med = {law: float(np.median(v)) for law, v in errors.items()}
    note = f"median mean error: tlap {med['tlap']:.3g}, gaussian {med['gaussian']:.3g}"
    return judge(rid, what, tag, interval.estimate, "<=", target, "x", note, interval=interval), errors


def _build_rows(ctx: RunContext) -> tuple[list[Target], dict]:
    from dpxattn.fast import DPCrossAttention

    d, degree, d_v, n_full, n_quick = BUILD_CASE
    n = n_quick if ctx.quick else n_full
    K, V, _ = _data(n, d, d_v, ctx.seed + 5)
    tag = f"direct, d={d}, s={degree}, d_v={d_v}, n={n}, OS randomness"

    def build(law, noise):
        kw = dict(_kwargs("direct", degree, law), noise=noise)
        return lambda: DPCrossAttention.build(K, V, **kw)

    t_tlap, t_gauss, t_secure = ctx.time_many([build("tlap", "float"), build("gaussian", "float"),
                                               build("gaussian", "secure")])
    rows, raw = [], {"tlap_float": t_tlap.to_dict(), "gaussian_float": t_gauss.to_dict(),
                     "gaussian_secure": t_secure.to_dict()}
    for rid, what, num, den, target in (
            ("L4", "build time gaussian / tlap (float mode)", t_gauss, t_tlap, BUILD_TARGETS[0]),
            ("L5", "build time secure gaussian / float gaussian", t_secure, t_gauss, BUILD_TARGETS[1])):
        interval = ctx.interval(paired_ratios(num.samples, den.samples), "paired per-repetition ratios")
        note = f"{num.median * 1e3:.3g} ms vs {den.median * 1e3:.3g} ms"
        rows.append(judge(rid, what, tag, interval.estimate, "<=", target, "x", note, interval=interval))
    return rows, raw


def _tree_build_row(ctx: RunContext) -> tuple[Target, dict]:
    """L6: the tree's float build time, gaussian / tlap (paired, interleaved repetitions)."""
    from dpxattn.errors import ParameterError
    from dpxattn.fast import DPCrossAttention

    d, degree, d_v, n_full, n_quick, target = TREE_BUILD_CASE
    n = n_quick if ctx.quick else n_full
    K, V, _ = _data(n, d, d_v, ctx.seed + 7)
    tag = f"tree, d={d}, s={degree}, d_v={d_v}, n={n}, float mode, seeded noise"
    what = "tree build time gaussian / tlap (float mode)"
    gen = torch.Generator().manual_seed(ctx.seed + 31)

    def build(law):
        return lambda: DPCrossAttention.build(K, V, generator=gen, **_kwargs("tree", degree, law))

    try:
        build("gaussian")()  # once: availability, and the public constants computed (memoised)
    except ParameterError as exc:
        return skipped("L6", what, tag, "<=", target, f"not available: {exc}", "x"), {}
    t_tlap, t_gauss = ctx.time_many([build("tlap"), build("gaussian")])
    interval = ctx.interval(paired_ratios(t_gauss.samples, t_tlap.samples),
                            "paired per-repetition ratios")
    note = f"{t_gauss.median * 1e3:.3g} ms vs {t_tlap.median * 1e3:.3g} ms"
    return (judge("L6", what, tag, interval.estimate, "<=", target, "x", note, interval=interval),
            {"tlap_float": t_tlap.to_dict(), "gaussian_float": t_gauss.to_dict()})


def measure_noise_laws(ctx: RunContext) -> tuple[list[Target], dict]:
    """Rows L1-L6 and their raw figures (module docstring)."""
    rows, raw = [], {"errors": {}}
    for case in ERROR_CASES:
        ctx.log(f"noise laws: {case[0]} ({case[1]}, d={case[2]}, s={case[3]})")
        row, errors = _error_row(ctx, case)
        rows.append(row)
        raw["errors"][case[0]] = errors
    ctx.log("noise laws: build times")
    build_rows, raw["build"] = _build_rows(ctx)
    ctx.log("noise laws: tree build times")
    tree_row, raw["tree_build"] = _tree_build_row(ctx)
    return rows + build_rows + [tree_row], raw
