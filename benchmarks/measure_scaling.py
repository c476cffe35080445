"""The scaling table: log-log slopes with bands (``research/PERF_ANCHORS.md`` §5, S1-S7).

* S1  build vs n (noiseless baseline and ``direct``), d=8, s=2, n in {1e3..1e6}: [0.8, 1.2];
* S2  ``tree`` build vs n, n in {1e3, 1e4, 1e5}: [0.85, 1.25];
* S3  ``direct`` query (m = 1024 tokens, full range) vs n: <= 0.1;
* S4  ``tree`` query vs n: <= 0.3 (it should grow like log n);
* S5  ``direct`` build vs r at n = 1e5, d=8 s=1..4 and d=16 s=1..3 (one fit per d): [0.6, 1.3];
* S6  ``direct`` query per token vs r, same grid: <= 1.3 (near 2 means an accidental r^2);
* S7  SDPA f32 vs n (a sanity check that the harness measures work): [0.8, 1.2].

Tree points whose estimated memory exceeds the budget are left out and the row says so.

Verdicts: the points of a series are timed interleaved, so repetition k gives one time per size
and one least-squares slope b_k; the row's measured slope is the median of the b_k and its
verdict reads the run-confidence interval for the median of their law (``intervals``: PASS when
the whole interval lies in the band, FAIL when it lies wholly outside, UNSURE otherwise). The note
keeps the fit of the per-size medians (b +- its standard error, the RMS residual in log units, the
points).
"""

from __future__ import annotations

from dpxattn.benchmarks import baselines as bl
from dpxattn.benchmarks import subject
from dpxattn.benchmarks.configs import BenchConfig, ScalingGrids
from dpxattn.benchmarks.context import RunContext
from dpxattn.benchmarks.intervals import loglog_slopes
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


def _slope_row(id: str, what: str, grid: str, sizes, timings, ctx: RunContext, note: str = "",
               scale: float = 1.0) -> Target:
    """A slope row from one :class:`~dpxattn.benchmarks.timing.Timing` per size (times x
    ``scale``): per-repetition slopes, their median and interval, the fit of the medians."""
    op, band = BANDS[id]
    if len(sizes) < 2:
        return skipped(id, what, grid, op, band, note or "fewer than two points measured")
    medians = [t.median * scale for t in timings]
    fit = fit_loglog(sizes, medians)
    reps = min(len(t.samples) for t in timings)
    slopes = loglog_slopes(sizes, [[t.samples[k] * scale for t in timings] for k in range(reps)])
    interval = ctx.interval(slopes, "least-squares slopes of the repetitions")
    text = (f"{reps} per-repetition slopes; fit of medians {fit.slope:.3g} +-{fit.stderr:.2g}, "
            f"resid {fit.residual:.2g}; points " + ", ".join(
                f"{int(s)}:{t:.3g}s" for s, t in zip(sizes, medians)))
    return judge(id, what, grid, interval.estimate, op, band, interval=interval,
                 note=(note + "; " if note else "") + text)


def measure_scaling(ctx: RunContext, grids: ScalingGrids) -> list[Target]:
    """Every slope row (S1-S7). The points of one series are timed interleaved (one
    repetition of every point before the next), on nested prefixes of one data set, so a slow
    phase of the machine cannot bend a slope."""
    rows: list[Target] = []
    d, s = grids.n_series_d, grids.n_series_degree
    n_max = max(max(grids.build_n), max(grids.sdpa_n), max(grids.tree_n))
    cfg_n = BenchConfig("scaling-n", d=d, degree=s, n=n_max, m=grids.m, d_v=grids.d_v)
    label_n = f"d={d} s={s} r={cfg_n.r} m={grids.m}"
    fmap = bl.FeatureMapBaseline(d, s, cfg_n.scale, device=ctx.device)
    data = ctx.data(d, grids.d_v, n_max, grids.m, cfg_n.R, cfg_n.R_w)
    parts = {n: data.head(n) for n in set(grids.build_n) | set(grids.sdpa_n) | set(grids.tree_n)}

    def direct_build(part, cfg=cfg_n):
        return lambda: ctx.build(cfg, part.K, part.V, "direct")

    ns = list(grids.build_n)
    ctx.log(f"[bench] scaling vs n: builds at n={ns}")
    nl = ctx.time_many([(lambda p=parts[n]: bl.noiseless_build(fmap, p.K, p.V)) for n in ns])
    dp = ctx.time_many([direct_build(parts[n]) for n in ns])
    ctx.log(f"[bench] scaling vs n: queries at n={ns}")
    structures = [direct_build(parts[n])() for n in ns]
    dq = ctx.time_many([(lambda a=a: a.query(data.Q)) for a in structures])
    del structures
    sd = ctx.time_many([(lambda p=parts[n]: bl.sdpa_exact(p.Q32, p.K32, p.V32, cfg_n.scale))
                        for n in grids.sdpa_n])
    rows.append(_slope_row("S1", "noiseless build of M, z vs n", label_n, ns, nl, ctx))
    rows.append(_slope_row("S1", "direct build vs n", label_n, ns, dp, ctx))
    rows.append(_slope_row("S3", "direct query (m tokens) vs n", label_n, ns, dq, ctx))
    rows.append(_slope_row("S7", "SDPA f32 (m tokens) vs n", label_n, list(grids.sdpa_n), sd, ctx))
    rows += _tree_slopes(ctx, grids, cfg_n, parts, data, label_n)
    for dd in dict.fromkeys(d2 for d2, _ in grids.r_series):
        degrees = [ss for d2, ss in grids.r_series if d2 == dd]
        cfgs = [BenchConfig("scaling-r", d=dd, degree=ss, n=grids.r_n, m=grids.m, d_v=grids.d_v)
                for ss in degrees]
        ctx.log(f"[bench] scaling vs r: d={dd}, r={[c.r for c in cfgs]}")
        data_r = ctx.data(dd, grids.d_v, grids.r_n, grids.m, cfgs[0].R, cfgs[0].R_w)
        tb = ctx.time_many([direct_build(data_r, c) for c in cfgs])
        structures = [direct_build(data_r, c)() for c in cfgs]
        tq = ctx.time_many([(lambda a=a: a.query(data_r.Q)) for a in structures])
        del structures
        rs = [c.r for c in cfgs]
        label = f"d={dd} s={','.join(map(str, degrees))} n={grids.r_n}"
        rows.append(_slope_row("S5", "direct build vs r", label, rs, tb, ctx))
        rows.append(_slope_row("S6", "direct query per token vs r", label, rs, tq, ctx,
                               scale=1.0 / grids.m))
    return rows


def _tree_slopes(ctx: RunContext, grids: ScalingGrids, cfg_n: BenchConfig, parts: dict, data,
                 label_n: str) -> list[Target]:
    """S2 and S4. Builds are interleaved across n (one structure alive at a time); the
    structures for the query series are held together only when all fit the memory budget,
    otherwise their queries are timed one n at a time (and the note says so)."""
    if "tree" not in ctx.mechanisms:
        note = "tree rows not run (--mechanisms)"
        return [_slope_row("S2", "tree build vs n", label_n, [], [], ctx, note),
                _slope_row("S4", "tree query (m tokens) vs n", label_n, [], [], ctx, note)]
    budget = ctx.memory_budget()
    tn, left_out = [], []
    for n in grids.tree_n:
        payload = subject.payload_bytes(cfg_n, n, "tree")
        if budget is not None and 1.5 * payload + (256 << 20) > budget:
            left_out.append(f"n={n} left out (payload {payload / 2**30:.3g} GiB, budget {budget / 2**30:.3g} GiB)")
        else:
            tn.append(n)
    build = lambda part: (lambda: ctx.build(cfg_n, part.K, part.V, "tree"))
    ctx.log(f"[bench] scaling vs n (tree): builds at n={tn}")
    tb = ctx.time_many([build(parts[n]) for n in tn])
    total = sum(1.5 * subject.payload_bytes(cfg_n, n, "tree") for n in tn) + (256 << 20)
    ctx.log(f"[bench] scaling vs n (tree): queries at n={tn}")
    if budget is None or total <= budget:
        structures = [build(parts[n])() for n in tn]
        tq = ctx.time_many([(lambda a=a: a.query(data.Q)) for a in structures])
        del structures
    else:
        left_out.append("queries timed one n at a time (all structures together exceed the budget; "
                        "repetition k's slope joins the k-th repetitions of separate runs)")
        tq = []
        for n in tn:
            att = build(parts[n])()
            tq.append(ctx.time(lambda: att.query(data.Q)))
            del att
    note = "; ".join(left_out)
    return [_slope_row("S2", "tree build vs n", label_n, tn, tb, ctx, note),
            _slope_row("S4", "tree query (m tokens) vs n", label_n, tn, tq, ctx, note)]
