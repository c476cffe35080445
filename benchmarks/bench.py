"""``dpxattn bench``: the performance tables (DESIGN §7), every ratio measured in one run.

Prints (Markdown, to stdout; progress goes to stderr):

1. a header (CPU, threads, versions, device) and the run's settings;
2. same-run anchors (GEMM f64/f32, 512 MiB copy, fresh allocation, the noise sampler);
3. one table per configuration (canonical d=8 s=3 n=1e5 m=1024 d_v=8, and (d=4,s=2),
   (d=16,s=2), (d=16,s=3,n=1e4)), both mechanisms, columns of ``measure_config``;
4. the targets, each a row with measured value, its confidence interval, threshold and verdict:
   PASS / FAIL when the whole interval meets / misses the threshold, UNSURE when it straddles
   it (``targets`` module; deterministic values are compared directly; INFO: reported without
   a threshold; SKIP: not measurable in this run, with the reason);
5. the log-log scaling slopes with their bands (per-repetition slopes, same verdicts);
6. the crossover n at which build + m query tokens is cheaper than exact SDPA;
7. the hardened-noise throughput table of ``dpxattn.benchmarks.noise_hardening`` when present.

The ``streaming`` section (``measure_streaming``: the exact streaming accumulator against the
in-memory build, on memory-mapped ``.npy`` files and on a 2-worker Dask cluster; rows ST1-ST6)
prints its figures before the targets table and adds its rows to it; ``--stream-rows`` and
``--dask-rows`` set its sizes.

Confidence: every noisy value (timing ratio, time, slope, error of random builds) is read from
an order-statistic interval for the median of its per-repetition values at ``--confidence``
(default 0.99; ``intervals`` module), which needs ``--repetitions`` >= 8 (default 12). A wrong
PASS or FAIL has probability <= (1 - coverage) / 2 per row (a slope band's FAIL: 1 - coverage);
the summary adds these bounds up over the run's interval rows (a union bound).

``--quick`` runs everything at tiny sizes in seconds (for the smoke test), with 3 repetitions:
its timed rows read UNSURE and say nothing about speed. ``--out FILE`` also writes the whole
run as JSON. Exit status: 0 when the run completed (targets may FAIL or be UNSURE; ``--strict``
turns any FAIL, and only a FAIL, into status 1), 1 when a section raised (its traceback goes to
stderr and a RUN row marks it FAIL).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import traceback

import torch

from dpxattn.benchmarks import anchors as anchors_mod
from dpxattn.benchmarks.configs import ScalingGrids, parse_configs, quick_version
from dpxattn.benchmarks.context import DEFAULT_REPETITIONS, QUICK_REPETITIONS, RunContext
from dpxattn.benchmarks.intervals import DEFAULT_CONFIDENCE, min_repetitions, order_ranks
from dpxattn.benchmarks.measure_config import COLUMNS, measure_config
from dpxattn.benchmarks.measure_extra import measure_reference, measure_tree_ranges
from dpxattn.benchmarks.measure_scaling import measure_scaling
from dpxattn.benchmarks.report import fmt, fmt_bytes, fmt_time, table, targets_table, write_json
from dpxattn.benchmarks.targets import VERDICTS, Target, skipped
from dpxattn.benchmarks import subject

__all__ = ["add_arguments", "run", "SECTIONS"]

SECTIONS = ("anchors", "configs", "ranges", "reference", "laws", "streaming", "slopes",
            "hardening")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``dpxattn bench`` options."""
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds (smoke test); verdicts are not meaningful")
    parser.add_argument("--out", metavar="FILE", help="also write the run as JSON to FILE")
    parser.add_argument("--configs", metavar="LIST", default=None,
                        help="comma-separated: canonical,d4s2,d16s2,d16s3 (default all) or specs "
                             "like d8s3n1e5m1024v8")
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu (default), cuda, cuda:N, or auto (cuda if present)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--mechanisms", default="direct,tree",
                        help="direct,tree (default) or direct: the tree rows take most of a full run")
    parser.add_argument("--repetitions", type=int, default=None,
                        help=f"timed repetitions per measurement (median reported; default "
                             f"{DEFAULT_REPETITIONS}, quick {QUICK_REPETITIONS}; a 0.99 interval "
                             "needs >= 8, fewer make every timed verdict UNSURE)")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE,
                        help="confidence of the intervals the verdicts are read from "
                             f"(default {DEFAULT_CONFIDENCE:g})")
    parser.add_argument("--min-rep-time", type=float, default=None,
                        help="seconds one repetition lasts at least (default 0.05; quick 0.002)")
    parser.add_argument("--mem-budget-gib", type=float, default=None,
                        help="memory a tree structure may use (default: 85%% of MemAvailable)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--settle", type=float, default=RunContext.settle_s, metavar="SECONDS",
                        help="pause after each interleaved timing block so other libraries' "
                             f"spinning threads go idle (default {RunContext.settle_s:g}; 0 with "
                             "--quick)")
    parser.add_argument("--noise", choices=("secure", "float"), default="secure",
                        help="noise mode of the timed builds: secure (hardened lattice release, the "
                             "library default) or float (float64 inversion)")
    parser.add_argument("--seeded-noise", action="store_true",
                        help="draw noise from a seeded torch.Generator instead of the OS CSPRNG")
    parser.add_argument("--seed", type=int, default=20260728, help="seed of the synthetic data")
    parser.add_argument("--stream-rows", type=int, default=None, metavar="N",
                        help="rows of the streaming section's memory-mapped .npy files (default "
                             "1e8, 9.6 GB on disk, reduced to the free space; quick 2e4)")
    parser.add_argument("--dask-rows", type=int, default=None, metavar="N",
                        help="rows of the streaming section's Dask comparison (default 1e7; "
                             "quick 8000)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if any target FAILs (UNSURE rows do not fail the run)")


def _device(text: str) -> torch.device:
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(text)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"dpxattn bench: --device {text}: CUDA is not available on this machine")
    return dev


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in chosen if s not in SECTIONS]
    if bad:
        raise SystemExit(f"dpxattn bench: --sections: unknown {bad}; choose from {SECTIONS}")
    return chosen


class _Report:
    """Collects the printed text and the JSON document side by side."""

    def __init__(self, out) -> None:
        self.out = out
        self.doc: dict = {"targets": [], "slopes": [], "configs": [], "crossover": [], "errors": []}

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def section(self, title: str) -> None:
        self.print()
        self.print(f"## {title}")
        self.print()


def _anchor_rows(a: dict) -> list[tuple[str, str]]:
    rows = [
        ("f64 GEMM %d^3" % a["sizes"]["gemm"], f"{fmt(a['gemm_f64_gflops'])} GFLOP/s"),
        ("f32 GEMM %d^3" % a["sizes"]["gemm"], f"{fmt(a['gemm_f32_gflops'])} GFLOP/s"),
        (f"copy {fmt_bytes(a['sizes']['copy_bytes'])} (read + write)", f"{fmt(a['copy_gbps'])} GB/s"),
        (f"fresh allocation + fill {fmt_bytes(a['sizes']['copy_bytes'])}", f"{fmt(a['fresh_alloc_gibps'])} GiB/s"),
    ]
    if a.get("noise_ns_per_sample") is None:
        rows.append(("noise sampler", a.get("noise_note", "unavailable")))
    else:
        rows.append(("float sampler (noise='float') into a warm buffer, OS uniforms",
                     f"{fmt(a['noise_ns_per_sample'])} ns/sample"))
        rows.append(("float sampler into a warm buffer, seeded torch.Generator",
                     f"{fmt(a['noise_seeded_ns_per_sample'])} ns/sample"))
        if a.get("hardened_ns_per_sample") is not None:
            rows.append(("hardened sampler (noise='secure', exact discrete TLap), OS words",
                         f"{fmt(a['hardened_ns_per_sample'])} ns/sample"))
        if a.get("noise_fresh_ns_per_sample") is not None:
            rows.append(("truncated_laplace (fresh result), OS uniforms",
                         f"{fmt(a['noise_fresh_ns_per_sample'])} ns/sample"))
    return rows


def _config_table(result) -> str:
    rows = []
    for row in result.rows:
        cells = []
        for col in COLUMNS:
            v = row[col]
            if col == "init":
                cells.append(fmt_time(v))
            elif col in ("relerr off", "off vs base", "DP err", "f32 relerr"):
                cells.append(f"{v:.2e}" if isinstance(v, float) and v == v else "n/a")
            else:
                cells.append(v if isinstance(v, str) else fmt(v))
        rows.append(cells)
    return table(COLUMNS, rows)


def _generic_table(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    return table(keys, [[r.get(k, "") if isinstance(r.get(k, ""), str) else fmt(r.get(k)) for k in keys]
                        for r in rows])


def _run_section(rep: _Report, name: str, fn) -> None:
    try:
        fn()
    except Exception as exc:  # a section that raises is reported, the others still run
        traceback.print_exc(file=sys.stderr)
        msg = f"{type(exc).__name__}: {exc}"
        rep.print(f"ERROR in section {name}: {msg}")
        rep.doc["errors"].append({"section": name, "error": msg})
        rep.doc["targets"].append(Target("RUN", f"section {name} completed", "-", None, "", "info",
                                         None, "FAIL", msg[:200]))


def _context(args: argparse.Namespace, device: torch.device) -> RunContext:
    """The run's settings from the options (validated; quick mode's defaults filled in)."""
    min_rep = args.min_rep_time if args.min_rep_time is not None else (0.002 if args.quick else 0.05)
    reps = args.repetitions if args.repetitions is not None else (
        QUICK_REPETITIONS if args.quick else DEFAULT_REPETITIONS)
    if not 0.0 < args.confidence < 1.0:
        raise SystemExit(f"dpxattn bench: --confidence must be in (0, 1) (got {args.confidence})")
    mechanisms = tuple(m.strip() for m in args.mechanisms.split(",") if m.strip())
    if "direct" not in mechanisms or any(m not in ("direct", "tree") for m in mechanisms):
        raise SystemExit("dpxattn bench: --mechanisms must be 'direct,tree' or 'direct'")
    return RunContext(device=device, quick=args.quick, repetitions=max(1, reps), mechanisms=mechanisms,
                      confidence=args.confidence,
                      min_rep_time=min_rep, seeded_noise=args.seeded_noise, seed=args.seed,
                      noise_mode=args.noise, settle_s=0.0 if args.quick else args.settle,
                      mem_budget=int(args.mem_budget_gib * 2**30) if args.mem_budget_gib else None)


def _header_section(rep: _Report, args: argparse.Namespace, ctx: RunContext, sections, configs) -> None:
    """The title, the quick-mode and too-few-repetitions notes, the machine header and the
    settings table; the header and settings also go into the JSON document."""
    header = anchors_mod.header(ctx.device)
    j, coverage = order_ranks(ctx.repetitions, ctx.confidence)
    settings = {"quick": args.quick, "repetitions": ctx.repetitions, "min_rep_time_s": ctx.min_rep_time,
                "confidence": ctx.confidence, "interval_ranks": [j, ctx.repetitions + 1 - j],
                "interval_coverage": coverage,
                "settle_s": ctx.settle_s,
                "sections": list(sections), "configs": [c.name for c in configs],
                "noise_source": ctx.noise_label(), "seed": args.seed, "mechanisms": list(ctx.mechanisms),
                "memory_budget_bytes": ctx.memory_budget()}
    rep.doc.update(header=header, settings=settings)
    rep.print("# dpxattn bench")
    if args.quick:
        rep.print()
        rep.print("QUICK MODE: tiny sizes; timings and verdicts below say nothing about speed.")
    need = min_repetitions(ctx.confidence)
    if ctx.repetitions < need:
        rep.print()
        rep.print(f"NOTE: {ctx.repetitions} repetitions per measurement cannot give a "
                  f"{ctx.confidence:g} interval (needs >= {need}): every timed verdict is UNSURE.")
    warning = anchors_mod.busy_warning()
    if warning:
        rep.print()
        rep.print(warning)
    rep.section("Header")
    rep.print(table(("item", "value"), [(k, str(v)) for k, v in header.items()]))
    rep.print()
    rep.print(table(("setting", "value"), [
        ("repetitions (median reported)", str(ctx.repetitions)),
        ("verdict intervals", f"order statistics {j} and {ctx.repetitions + 1 - j} of "
                              f"{ctx.repetitions}: coverage >= {coverage:.4g} of the median "
                              f"(requested {ctx.confidence:g})"),
        ("min time per repetition", f"{ctx.min_rep_time:g} s"),
        ("pause after each interleaved block (settle)", f"{ctx.settle_s:g} s"),
        ("noise source of timed builds", ctx.noise_label()),
        ("memory budget for tree structures", fmt_bytes(ctx.memory_budget())),
    ]))


def _anchors_section(rep: _Report, ctx: RunContext, sections) -> None:
    """Same-run anchors (also needed by the configuration tables' floors: run for either)."""
    rep.section("Anchors (same run)")
    if "anchors" not in sections and "configs" not in sections:
        rep.print("(not run)")
        return

    def do_anchors():
        sizes = anchors_mod.AnchorSizes.quick() if ctx.quick else anchors_mod.AnchorSizes()
        # G7's floor reads the noise and allocation anchors through their own intervals
        sizes = dataclasses.replace(sizes, repetitions=ctx.repetitions)
        ctx.log("[bench] anchors")
        ctx.anchors = anchors_mod.measure_anchors(ctx.device, sizes)
        rep.doc["anchors"] = ctx.anchors
        rep.print(table(("anchor", "value"), _anchor_rows(ctx.anchors)))
    _run_section(rep, "anchors", do_anchors)


def _config_sections(rep: _Report, ctx: RunContext, sections, configs, fast_why) -> None:
    """One table per configuration; its targets and crossovers are collected for later."""
    if "configs" not in sections:
        return
    for cfg in configs:
        rep.section(f"Configuration {cfg.label()}")
        if fast_why:
            rep.print(f"SKIPPED: {fast_why}")
            rep.doc["targets"].append(skipped("CFG", "configuration table", cfg.name, "info", None, fast_why))
            continue

        def do_config(cfg=cfg):
            result = measure_config(cfg, ctx)
            rep.print(_config_table(result))
            for note in result.notes:
                rep.print(f"- {note}")
            rep.doc["configs"].append({"config": cfg.to_dict(), "rows": result.rows, "notes": result.notes})
            rep.doc["targets"].extend(result.targets)
            rep.doc["crossover"].extend(result.crossover)
        _run_section(rep, f"config {cfg.name}", do_config)


def _extra_target_sections(rep: _Report, ctx: RunContext, sections) -> None:
    """The tree range-query rows and the reference rows (targets only, printed with the rest)."""
    if "ranges" in sections:
        def do_ranges():
            rows, raw = measure_tree_ranges(ctx)
            rep.doc["targets"].extend(rows)
            rep.doc["tree_ranges"] = raw
        _run_section(rep, "ranges", do_ranges)
    if "reference" in sections:
        def do_reference():
            rows, raw = measure_reference(ctx)
            rep.doc["targets"].extend(rows)
            rep.doc["reference"] = raw
        _run_section(rep, "reference", do_reference)
    if "laws" in sections:
        def do_laws():
            from dpxattn.benchmarks.noise_laws import measure_noise_laws

            rows, raw = measure_noise_laws(ctx)
            rep.doc["targets"].extend(rows)
            rep.doc["noise_laws"] = raw
        _run_section(rep, "laws", do_laws)


def _streaming_section(rep: _Report, ctx: RunContext, sections, args: argparse.Namespace) -> None:
    """The streaming build's rows ST1-ST6 (``measure_streaming``): its own table of figures
    here, its targets with the others."""
    rep.section("Streaming (exact accumulator, dpxattn.fast.Accumulator)")
    if "streaming" not in sections:
        rep.print("(not run)")
        return

    def do_streaming():
        from dpxattn.benchmarks.measure_streaming import figures_table_rows, measure_streaming

        rows, raw = measure_streaming(ctx, stream_rows=args.stream_rows, dask_rows=args.dask_rows)
        rep.doc["targets"].extend(rows)
        rep.doc["streaming"] = raw
        rep.print(table(("figure", "value"), figures_table_rows(raw)))
        rep.print()
        rep.print("Targets ST1-ST6 are in the targets table below (benchmarks/README.md, "
                  "'Streaming').")
    _run_section(rep, "streaming", do_streaming)


def _slopes_section(rep: _Report, ctx: RunContext, sections, fast_why) -> None:
    """The log-log scaling slopes S1-S7 with their bands."""
    rep.section("Scaling (log-log slopes)")
    if "slopes" in sections and not fast_why:
        def do_slopes():
            grids = ScalingGrids.quick() if ctx.quick else ScalingGrids()
            rep.doc["slopes"] = measure_scaling(ctx, grids)
            rep.print(targets_table(rep.doc["slopes"]))
        _run_section(rep, "slopes", do_slopes)
    else:
        rep.print("(not run)" if not fast_why else f"SKIPPED: {fast_why}")


def _crossover_section(rep: _Report) -> None:
    """The crossover n of every configuration table that ran."""
    rep.section("Crossover: n at which build + m query tokens is cheaper than exact SDPA (f32)")
    if not rep.doc["crossover"]:
        rep.print("(not run)")
        return
    rep.print(table(("config", "mechanism", "r", "m", "crossover n", "private per key", "SDPA per key",
                     "fitted on n"), [
        (c["config"], c["mechanism"], c["r"], c["m"],
         "never" if c["crossover_n"] is None else f"{c['crossover_n']:.3g}",
         f"{c['private_per_key_ns']:.3g} ns", f"{c['sdpa_per_key_ns']:.3g} ns",
         ",".join(str(k) for k in c["sizes"]))
        for c in rep.doc["crossover"]]))
    rep.print()
    rep.print("Affine fits time = a + b n of (build + m-token query) and of SDPA over m tokens; "
              "'never': the build costs more per key than exact attention of m tokens does.")


def _hardening_section(rep: _Report, ctx: RunContext, sections) -> None:
    """The hardened-noise throughput table, when ``noise_hardening`` can be imported."""
    rep.section("Hardened noise (dpxattn.benchmarks.noise_hardening)")
    if "hardening" not in sections:
        rep.print("(not run)")
        return

    def do_hardening():
        try:
            mod = importlib.import_module("dpxattn.benchmarks.noise_hardening")
        except ImportError as exc:
            rep.print(f"unavailable: dpxattn.benchmarks.noise_hardening cannot be imported ({exc})")
            rep.doc["noise_hardening"] = {"available": False, "reason": str(exc)}
            return
        rows = mod.rows(ctx.quick, repetitions=ctx.repetitions, confidence=ctx.confidence)
        rep.print(_generic_table(rows) if rows else "(no rows)")
        rep.doc["noise_hardening"] = {"available": True, "rows": rows}
    _run_section(rep, "hardening", do_hardening)


def _false_verdict_bound(all_rows) -> tuple[int, float]:
    """(number of interval rows, union bound on a wrong PASS / FAIL among them).

    Every gated row read from an interval that reaches the confidence counts (a row short of
    it is always UNSURE, which is never a wrong verdict). A one-sided target's verdict is wrong
    only if the interval misses on one given side; a band's FAIL (truth inside) if it misses on
    either side.
    """
    interval_rows = [t for t in all_rows
                     if t.interval is not None and t.op != "info" and t.interval.sufficient]
    wrong = sum(t.interval.miss_per_side * (2 if t.op == "in" else 1) for t in interval_rows)
    return len(interval_rows), wrong


def _summary_section(rep: _Report, ctx: RunContext) -> list[Target]:
    """Verdict counts, the union bound on a wrong verdict, the end-of-run load warning and the
    FAIL (and, outside quick mode, UNSURE) rows; returns the FAIL rows."""
    all_rows = list(rep.doc["targets"]) + list(rep.doc["slopes"])
    counts = {v: sum(1 for t in all_rows if t.verdict == v) for v in VERDICTS}
    rep.doc["summary"] = counts
    rep.section("Summary")
    rep.print(", ".join(f"{v} {counts[v]}" for v in VERDICTS))
    n_interval, wrong = _false_verdict_bound(all_rows)
    rep.doc["summary_false_verdict_bound"] = wrong
    rep.print(f"Verdicts of noisy values are read from intervals for the median at confidence "
              f"{ctx.confidence:g}: each PASS or FAIL among them is wrong with probability <= "
              f"(1 - coverage)/2 (a band's FAIL: 1 - coverage); over the {n_interval} such rows, "
              f"some verdict is wrong with probability <= {wrong:.3g} (union bound). UNSURE: the "
              "interval straddles the threshold (measure again, more repetitions); --strict fails "
              "on FAIL only.")
    rep.doc["load_average_1min_at_end"] = anchors_mod.load_average()
    warning = anchors_mod.busy_warning()
    if warning:
        rep.print(warning + " (at the end of the run)")
    failed = [t for t in all_rows if t.verdict == "FAIL"]
    for t in failed:
        rep.print(f"- FAIL {t.id} [{t.config}] {t.what}: {t.measured_text()} {t.interval_text()} "
                  f"(needs {t.threshold_text()})")
    for t in all_rows:
        if t.verdict == "UNSURE" and not ctx.quick:
            rep.print(f"- UNSURE {t.id} [{t.config}] {t.what}: {t.measured_text()} {t.interval_text()} "
                      f"(needs {t.threshold_text()})")
    if ctx.quick:
        rep.print("(quick mode: verdicts are not meaningful; UNSURE rows not listed)")
    return failed


def run(args: argparse.Namespace, out=None) -> int:
    """Run the benchmark with parsed ``args``; print to ``out`` (default stdout); exit status.

    The sections run in the order they are printed (module docstring); a section that raises is
    reported and the others still run (:func:`_run_section`).
    """
    rep = _Report(out or sys.stdout)
    device = _device(args.device)
    sections = _sections(args.sections)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = parse_configs(args.configs)
    if args.quick:
        configs = [quick_version(c) for c in configs]
    ctx = _context(args, device)
    _header_section(rep, args, ctx, sections, configs)
    _anchors_section(rep, ctx, sections)
    fast_why = subject.fast_missing()
    _config_sections(rep, ctx, sections, configs, fast_why)
    _extra_target_sections(rep, ctx, sections)
    _streaming_section(rep, ctx, sections, args)
    rep.section("Targets (research/PERF_ANCHORS.md §5)")
    rep.print(targets_table(rep.doc["targets"]) if rep.doc["targets"] else "(none measured)")
    _slopes_section(rep, ctx, sections, fast_why)
    _crossover_section(rep)
    _hardening_section(rep, ctx, sections)
    failed = _summary_section(rep, ctx)
    if args.out:
        write_json(args.out, rep.doc)
        rep.print(f"JSON written to {args.out}")
    if rep.doc["errors"]:
        return 1
    return 1 if (args.strict and failed) else 0
