"""The scaling table: log-log slopes with bands (``research/PERF_ANCHORS.md`` §5, S1-S7).

* S1  build vs n (noiseless baseline and ``direct``), d=8, s=2, n in {1e3..1e6}: [0.8, 1.2];
* S2  ``tree`` build vs n, n in {1e3, 1e4, 1e5}: [0.85, 1.25];
* S3  ``direct`` query (m = 1024 tokens, full range) vs n: <= 0.1;
* S4  ``tree`` query vs n: <= 0.3 (it should grow like log n);
* S5  ``direct`` build vs r at n = 1e5, d=8 s=1..4 and d=16 s=1..3 (one fit per d): [0.6, 1.3];
* S6  ``direct`` query per token vs r, same grid: <= 1.3 (near 2 means an accidental r^2);
* S7  SDPA f32 vs n (a sanity check that the harness measures work): [0.8, 1.2].

Tree points whose estimated memory exceeds the budget are left out and the row says so.
"""

from __future__ import annotations

import time

from dpxattn.benchmarks import baselines as bl
from dpxattn.benchmarks import subject
from dpxattn.benchmarks.configs import BenchConfig, ScalingGrids
from dpxattn.benchmarks.context import RunContext
from dpxattn.benchmarks.slopes import fit_loglog
from dpxattn.benchmarks.targets import Target, judge, skipped

__all__ = ["measure_scaling", "BANDS"]

BANDS = {
    "S1": ("in", (0.8, 1.2)),
    "S2": ("in", (0.85, 1.25)),
    "S3": ("<=", 0.1),
    "S4": ("<=", 0.3),
    "S5": ("in", (0.6, 1.3)),
    "S6": ("<=", 1.3),
    "S7": ("in", (0.8, 1.2)),
}


def _slope_row(id: str, what: str, grid: str, sizes, times, note: str = "") -> Target:
    op, band = BANDS[id]
    if len(sizes) < 2:
        return skipped(id, what, grid, op, band, note or "fewer than two points measured")
    fit = fit_loglog(sizes, times)
    text = f"+-{fit.stderr:.2g}, resid {fit.residual:.2g}; points " + ", ".join(
        f"{int(s)}:{t:.3g}s" for s, t in zip(sizes, times))
    return judge(id, what, grid, fit.slope, op, band, note=(note + "; " if note else "") + text)


def measure_scaling(ctx: RunContext, grids: ScalingGrids) -> list[Target]:
    """Every slope row (S1-S7)."""
    rows: list[Target] = []
    d, s = grids.n_series_d, grids.n_series_degree
    cfg_n = BenchConfig("scaling-n", d=d, degree=s, n=max(grids.build_n), m=grids.m, d_v=grids.d_v)
    label_n = f"d={d} s={s} r={cfg_n.r} m={grids.m}"
    fmap = bl.FeatureMapBaseline(d, s, cfg_n.scale, device=ctx.device)
    nl, dp, dq, sd = [], [], [], []
    for n in grids.build_n:
        ctx.log(f"[bench] scaling vs n: n={n}")
        data = ctx.data(d, grids.d_v, n, grids.m, cfg_n.R, cfg_n.R_w)
        nl.append(ctx.time(lambda: bl.noiseless_build(fmap, data.K, data.V)).median)
        build = lambda: subject.build(cfg_n, data.K, data.V, "direct", generator=ctx.noise_generator())
        dp.append(ctx.time(build).median)
        att = build()
        dq.append(ctx.time(lambda: att.query(data.Q)).median)
        sd.append(ctx.time(lambda: bl.sdpa_exact(data.Q32, data.K32, data.V32, cfg_n.scale)).median)
    ns = list(grids.build_n)
    rows.append(_slope_row("S1", "noiseless build of M, z vs n", label_n, ns, nl))
    rows.append(_slope_row("S1", "direct build vs n", label_n, ns, dp))
    rows.append(_slope_row("S3", "direct query (m tokens) vs n", label_n, ns, dq))
    rows.append(_slope_row("S7", "SDPA f32 (m tokens) vs n", label_n, list(grids.sdpa_n),
                           sd if tuple(grids.sdpa_n) == tuple(grids.build_n) else
                           [_sdpa(ctx, cfg_n, n, grids) for n in grids.sdpa_n]))
    tb, tq, tn, left_out = [], [], [], []
    budget = ctx.memory_budget()
    for n in (grids.tree_n if "tree" in ctx.mechanisms else ()):
        payload = subject.payload_bytes(cfg_n, n, "tree")
        if budget is not None and 1.5 * payload + (256 << 20) > budget:
            left_out.append(f"n={n} left out (payload {payload / 2**30:.3g} GiB, budget {budget / 2**30:.3g} GiB)")
            continue
        ctx.log(f"[bench] scaling vs n (tree): n={n}")
        data = ctx.data(d, grids.d_v, n, grids.m, cfg_n.R, cfg_n.R_w)
        build = lambda: subject.build(cfg_n, data.K, data.V, "tree", generator=ctx.noise_generator())
        start = time.perf_counter()
        att = build()
        ctx.sync()
        first = time.perf_counter() - start
        tq.append(ctx.time(lambda: att.query(data.Q)).median)
        del att  # one tree alive at a time; the first build is the timing's warm-up
        tb.append(ctx.time(build, warmup=0, first_call=first).median)
        tn.append(n)
    note = "; ".join(left_out) if "tree" in ctx.mechanisms else "tree rows not run (--mechanisms)"
    rows.append(_slope_row("S2", "tree build vs n", label_n, tn, tb, note))
    rows.append(_slope_row("S4", "tree query (m tokens) vs n", label_n, tn, tq, note))
    by_d: dict[int, list[tuple[int, float, float]]] = {}
    for dd, ss in grids.r_series:
        cfg = BenchConfig("scaling-r", d=dd, degree=ss, n=grids.r_n, m=grids.m, d_v=grids.d_v)
        ctx.log(f"[bench] scaling vs r: d={dd} s={ss} r={cfg.r}")
        data = ctx.data(dd, grids.d_v, grids.r_n, grids.m, cfg.R, cfg.R_w)
        build = lambda: subject.build(cfg, data.K, data.V, "direct", generator=ctx.noise_generator())
        tb_r = ctx.time(build).median
        att = build()
        tq_r = ctx.time(lambda: att.query(data.Q)).median / grids.m
        by_d.setdefault(dd, []).append((cfg.r, tb_r, tq_r))
    for dd, pts in by_d.items():
        rs = [p[0] for p in pts]
        label = f"d={dd} s={','.join(str(ss) for d2, ss in grids.r_series if d2 == dd)} n={grids.r_n}"
        rows.append(_slope_row("S5", "direct build vs r", label, rs, [p[1] for p in pts]))
        rows.append(_slope_row("S6", "direct query per token vs r", label, rs, [p[2] for p in pts]))
    return rows


def _sdpa(ctx: RunContext, cfg: BenchConfig, n: int, grids: ScalingGrids) -> float:
    data = ctx.data(cfg.d, grids.d_v, n, grids.m, cfg.R, cfg.R_w)
    return ctx.time(lambda: bl.sdpa_exact(data.Q32, data.K32, data.V32, cfg.scale)).median
