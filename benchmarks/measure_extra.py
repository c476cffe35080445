"""Rows outside the per-configuration tables.

* G9: batched ``DPTree`` range queries (``dpxattn.fast.tree.DPTree.query``) against a per-query
  Python walk of the same released node array (``baselines.python_walk_range_sums``), scalar
  payload, n = 1e5 leaves, 1e5 random ranges (PERF_ANCHORS §5 G9). The two answers must agree
  (checked: the walk is the same canonical decomposition). The verdict reads the confidence
  interval for the median of the per-repetition speed-ups (``intervals``).
* REF: fast vs exact reference (``dpxattn.reference.DPCrossAttention``, mpmath) on the same small
  structure built from the same uniforms: (reference build + query) ÷ (fast build + query),
  per interleaved repetition (the verdict reads the confidence interval of their median),
  both mechanisms, with the build and query speed-ups apart in the note; the largest difference
  of their answers is reported beside it.
"""

from __future__ import annotations

import numpy as np
import torch

from dpxattn.benchmarks import baselines as bl
from dpxattn.benchmarks import subject
from dpxattn.benchmarks.configs import BenchConfig
from dpxattn.benchmarks.context import RunContext
from dpxattn.benchmarks.intervals import paired_ratios
from dpxattn.benchmarks.targets import Target, judge, skipped

__all__ = ["measure_tree_ranges", "measure_reference", "REFERENCE_CASES"]

#: (mechanism, n, d, degree, d_v, m) of the fast-vs-reference rows: full run, quick run
REFERENCE_CASES = {
    False: (("direct", 4096, 4, 2, 4, 32), ("tree", 256, 4, 2, 4, 32)),
    True: (("direct", 32, 2, 2, 2, 4), ("tree", 8, 2, 1, 1, 2)),
}


def measure_tree_ranges(ctx: RunContext) -> tuple[list[Target], dict]:
    """G9 and its raw figures."""
    why = subject.tree_missing()
    if why:
        return [skipped("G9", "batched tree range queries vs per-query Python walk", "-", ">=", 10.0,
                        why, "x")], {}
    n = 1_000 if ctx.quick else 100_000
    queries = 1_000 if ctx.quick else 100_000
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed + 3)
    values = torch.rand(n, generator=gen, dtype=torch.float64).to(ctx.device)
    a = torch.randint(0, n, (queries,), generator=gen)
    b = torch.randint(0, n, (queries,), generator=gen)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    lo_d, hi_d = lo.to(ctx.device), hi.to(ctx.device)
    tree, query, nodes, N = subject.tree_range_structure(values, eps=1.0, delta=1e-6,
                                                         generator=ctx.noise_generator())
    lo_l, hi_l = lo.tolist(), hi.tolist()
    t_fast, t_walk = ctx.time_many([lambda: query(lo_d, hi_d),
                                    lambda: bl.python_walk_range_sums(nodes, N, lo_l, hi_l)])
    fast = query(lo_d, hi_d).reshape(-1).cpu().numpy()
    walk = np.asarray(bl.python_walk_range_sums(nodes, N, lo_l, hi_l))
    agree = float(np.abs(fast - walk).max() / max(1.0, np.abs(walk).max()))
    interval = ctx.interval(paired_ratios(t_walk.samples, t_fast.samples),
                            "paired per-repetition ratios Python walk / batched query")
    speedup = interval.estimate
    tag = f"n={n}, {queries} ranges, scalar payload"
    raw = {"n": n, "queries": queries, "fast": t_fast.to_dict(), "python_walk": t_walk.to_dict(),
           "fast_us_per_query": t_fast.median / queries * 1e6,
           "walk_us_per_query": t_walk.median / queries * 1e6, "max_rel_difference": agree}
    rows = [judge("G9", "batched tree range queries vs per-query Python walk", tag, speedup, ">=", 10.0, "x",
                  interval=interval, note=f"fast {raw['fast_us_per_query']:.3g} us/query, walk {raw['walk_us_per_query']:.3g} "
                       f"us/query; answers agree to {agree:.2g}")]
    return rows, raw


def measure_reference(ctx: RunContext) -> tuple[list[Target], list[dict]]:
    """REF rows (one per mechanism) and their raw figures."""
    why = subject.reference_missing() or subject.fast_missing()
    if why:
        return [skipped("REF", "fast vs exact reference, same small structure", "-", ">=", 1000.0, why, "x")], []
    rows, raws = [], []
    for mechanism, n, d, s, d_v, m in REFERENCE_CASES[ctx.quick]:
        cfg = BenchConfig(f"ref-{mechanism}", d=d, degree=s, n=n, m=m, d_v=d_v)
        ctx.log(f"[bench] fast vs reference: {mechanism} n={n} d={d} s={s} d_v={d_v} m={m}")
        rng = np.random.default_rng(ctx.seed + 11)
        K = rng.random((n, d)) * cfg.R
        V = (rng.random((n, d_v)) * 2 - 1) * cfg.R_w
        Q = rng.random((m, d)) * cfg.R
        u = 0.01 + 0.98 * rng.random(subject.noise_count(cfg, n, mechanism))
        Kt, Vt, Qt = (torch.from_numpy(x).to(ctx.device) for x in (K, V, Q))
        ref = subject.reference_build(cfg, K, V, mechanism, u)
        fast = subject.build(cfg, Kt, Vt, mechanism, uniforms=u, noise="float")
        t_rb, t_rq, t_fb, t_fq = ctx.time_many([
            lambda: subject.reference_build(cfg, K, V, mechanism, u), lambda: ref.query(Q),
            lambda: subject.build(cfg, Kt, Vt, mechanism, uniforms=u, noise="float"), lambda: fast.query(Qt)])
        ref_ans = np.array([[float(x) for x in row] for row in ref.query(Q)], dtype=np.float64)
        diff = float(np.abs(fast.query(Qt).detach().cpu().numpy() - ref_ans).max())
        t_ref, t_fast = t_rb.median + t_rq.median, t_fb.median + t_fq.median
        interval = ctx.interval(
            paired_ratios([b + q for b, q in zip(t_rb.samples, t_rq.samples)],
                          [b + q for b, q in zip(t_fb.samples, t_fq.samples)]),
            "paired per-repetition ratios (reference build + query) / (fast build + query)")
        speedup = interval.estimate
        tag = f"{mechanism} n={n} d={d} s={s} d_v={d_v} m={m}"
        rows.append(judge("REF", f"fast vs exact reference ({mechanism}, build + query)", tag, speedup,
                          ">=", 1000.0, "x", interval=interval,
                          note=f"reference {t_ref:.3g} s, fast {t_fast * 1e3:.3g} ms (build "
                               f"{t_rb.median / t_fb.median:.3g}x, query {t_rq.median / t_fq.median:.3g}x); "
                               f"max |fast - reference| {diff:.2g}"))
        raws.append({"mechanism": mechanism, "n": n, "d": d, "degree": s, "d_v": d_v, "m": m,
                     "reference_build": t_rb.to_dict(), "reference_query": t_rq.to_dict(),
                     "fast_build": t_fb.to_dict(), "fast_query": t_fq.to_dict(), "speedup": speedup,
                     "max_abs_difference": diff})
    return rows, raws
