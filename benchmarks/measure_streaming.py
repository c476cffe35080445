"""The ``streaming`` section: the exact streaming build (``dpxattn.fast.Accumulator``) against the
in-memory build, on memory maps and on Dask, every ratio measured in one run.

Not in the paper (corpus scale; PAPER.md §5 items 8 and 18). The accumulator and its constants:
proofs_notes/30-exact-accumulation.md. Data (public, synthetic, from ``--seed``): keys uniform in
[0, 1]^d, values uniform in [-1, 1]^{d_v}; R = R_w = 1, eps = 1, delta = 1e-6. Shapes: K (n, d),
V (n, d_v); the released S is (r, d_v + 1), r = C(d + s, s).

Rows (ratios: the median of the per-repetition ratios of interleaved timings, read from the
run-confidence interval of :mod:`dpxattn.benchmarks.intervals`, as every timed row):

* **ST1** canonical (d = 8, s = 3, d_v = 8, n of the canonical configuration): one
  ``Accumulator(...).add(K, V)`` + ``release`` over one ``DPCrossAttention.build``, same data,
  both in float mode from a seeded generator: exact accumulation over float64 sums (``build``'s
  secure mode is itself one add and release, so only float mode keeps float64 sums): <= 1.3x;
* **ST2** accumulation time (a fresh ``Accumulator`` + one ``add``, no release) against n over
  :data:`SLOPE_ROWS` (x2 apart), canonical: the log-log slope, one least-squares fit per
  repetition (:func:`dpxattn.benchmarks.intervals.loglog_slopes`), in [0.9, 1.1];
* **ST3m** K (n, 4) and V (n, 8) float64 written as ``.npy`` to a temporary directory (deleted
  afterwards), opened with ``np.load(..., mmap_mode="r")`` and streamed through
  ``Accumulator(d=4, degree=3, d_v=8)`` (one ``add`` of the whole maps, then ``release``): the
  peak RSS increase of that pass (``timing.measure_memory``, the kernel's VmHWM mark, as G10)
  <= 2 GiB + one chunk (:func:`chunk_allowance_bytes`). Deterministic: the pages a pass maps
  and the buffers it allocates are fixed by the shapes. The RSS counts the file-backed pages of
  the maps that the pass has read and that stay mapped (clean page cache, reclaimable by the
  kernel, but resident in this process); **ST3a** (INFO) gives the peak anonymous (private)
  memory of the same pass, sampled from ``/proc/self/status`` (a lower bound between samples);
* **ST3t** the same stream's seconds per row (float mode, seeded, as ST1) over the in-memory
  float-mode ``DPCrossAttention.build``'s per
  row (d = 4, s = 3, d_v = 8 at :data:`IN_MEMORY_ROWS` rows, or fewer when the stream is
  smaller): <= 1.3x; **ST3o** (INFO, with its interval) the stream's per row over an in-memory
  ``Accumulator.add`` + ``release``'s per row at that n, timed in the same interleaved block:
  the memory map's share of ST3t (the rest is the accumulator's own cost against ``build``);
* **ST4** ``dpxattn.distributed.accumulate`` on a 2-worker ``distributed.LocalCluster``
  (processes, one thread each; the rows generated on the workers and held there, in
  :data:`DASK_PARTITIONS` partitions) + ``release``, over the single-process
  ``Accumulator.add`` + ``release`` of the same rows (a local numpy copy): wall time <= 1.5x;
  **ST4e** the released S of both, from one accumulation each and the same generator seed,
  compared with ``torch.equal`` in float and in secure mode: FAIL unless bit-identical. SKIP,
  with the reason, where Dask is not importable;
* **ST5** / **ST5g** ``exact_constants`` sensitivity at n = 1e9 over n = 1e3, canonical, l1
  (TLap) and l2 (Gaussian): <= 1.0001 (deterministic, public constants); **ST5s** (INFO) the
  same ratio of the float64 sums' allowance (``direct_secure_constants``; ``build``'s secure
  mode before it went through the accumulator);
* **ST6** the tree (d = 2, s = 2, d_v = 8, a fixed grid of :data:`TREE_GRID` cells, n =
  :data:`TREE_ROWS`): ``Accumulator(mechanism="tree", grid_size=G).add`` + ``release`` over
  ``DPCrossAttention.build(mechanism="tree", grid_size=G)``, same data, float mode as ST1: <= 1.3x;
  **ST6s** / **ST6g** ``tree_exact_constants`` at n = 1e9 over n = 1e3 (canonical, G = 1024):
  the largest per-level l1 sensitivity ratio and the l2 one, <= 1.0001 (deterministic).
"""

from __future__ import annotations

import copy
import importlib
import os
import shutil
import tempfile
import threading
import time

import numpy as np
import torch

from dpxattn.benchmarks import subject
from dpxattn.benchmarks.configs import NAMED, BenchConfig
from dpxattn.benchmarks.context import RunContext
from dpxattn.benchmarks.intervals import loglog_slopes, paired_ratios
from dpxattn.benchmarks.slopes import fit_loglog
from dpxattn.benchmarks.targets import Target, judge, skipped
from dpxattn.benchmarks.timing import measure_memory

__all__ = ["measure_streaming", "figures_table_rows", "StreamingSizes", "chunk_allowance_bytes", "THRESHOLDS",
           "SLOPE_ROWS", "STREAM_ROWS", "DASK_ROWS", "IN_MEMORY_ROWS", "DASK_PARTITIONS", "TREE_ROWS",
           "TREE_GRID"]

#: thresholds: ST1 stream / build time, ST2 slope band, ST3m memory (GiB before the chunk),
#: ST3t stream / in-memory per row, ST4 dask / single-process wall time, ST5 sensitivity ratio
THRESHOLDS = {"ST1": 1.3, "ST2": (0.9, 1.1), "ST3m": 2.0, "ST3t": 1.3, "ST4": 1.5, "ST5": 1.0001,
              "ST6": 1.3}
#: n of the ST2 series (full run; x2 apart, >= 2.5e5 at the top)
SLOPE_ROWS = (125_000, 250_000, 500_000, 1_000_000)
#: rows of the memory-mapped stream (full run; ``--stream-rows`` overrides)
STREAM_ROWS = 100_000_000
#: rows of the in-memory build ST3t compares with (at most the stream's rows)
IN_MEMORY_ROWS = 10_000_000
#: rows of the Dask rows (full run; ``--dask-rows`` overrides)
DASK_ROWS = 10_000_000
#: row partitions of the Dask arrays (over 2 workers)
DASK_PARTITIONS = 8
#: the memory-mapped configuration (d, degree, d_v)
STREAM_SHAPE = (4, 3, 8)
#: disk space left free when sizing the .npy files
DISK_RESERVE_BYTES = 2 << 30
#: rows written per block when the .npy files are generated
WRITE_BLOCK_ROWS = 1 << 20
#: seconds between the anonymous-memory samples of ST3a
ANON_SAMPLE_S = 0.005
#: ST6: rows and grid cells of the tree comparison (full run; ``--quick``: 4096 rows, 256 cells)
TREE_ROWS = 100_000
TREE_GRID = 4096
#: ST6: the tree's configuration (d, degree, d_v)
TREE_SHAPE = (2, 2, 8)
#: the two sides' seed of the bit-identity check ST4e
IDENTITY_SEED = 20261204
_PRIVACY = dict(eps=1.0, delta=1e-6)


class StreamingSizes:
    """The row counts of one run: full defaults, ``--quick`` tiny ones, options override.

    ``canonical_rows`` (ST1), ``slope_rows`` (ST2), ``stream_rows`` (ST3), ``in_memory_rows``
    (ST3t's in-memory side), ``dask_rows`` and ``dask_partitions`` (ST4)."""

    def __init__(self, quick: bool, stream_rows: int | None = None, dask_rows: int | None = None):
        self.canonical_rows = 4_096 if quick else NAMED["canonical"].n
        self.slope_rows = (1_024, 2_048, 4_096, 8_192) if quick else SLOPE_ROWS
        self.stream_rows = stream_rows if stream_rows is not None else (20_000 if quick else STREAM_ROWS)
        self.in_memory_rows = min(self.stream_rows, 20_000 if quick else IN_MEMORY_ROWS)
        self.dask_rows = dask_rows if dask_rows is not None else (8_000 if quick else DASK_ROWS)
        self.dask_partitions = 4 if quick else DASK_PARTITIONS
        for name in ("stream_rows", "dask_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")


def _accumulator(d: int, degree: int, d_v: int):
    from dpxattn.fast import Accumulator

    return Accumulator(mechanism="direct", d=d, d_v=d_v, degree=degree, R=1.0, R_w=1.0)


def _release(acc, ctx: RunContext):
    """``acc.release`` in the run's noise mode and source (as ``RunContext.build``)."""
    return acc.release(generator=ctx.noise_generator(), noise=ctx.noise_mode, **_PRIVACY)


def _seeded(ctx: RunContext) -> torch.Generator:
    """A seeded generator (labelled so by the library; timing only, not for production)."""
    return torch.Generator().manual_seed(ctx.seed + 1)


def _float_release(acc, ctx: RunContext):
    """``acc.release`` in float mode from a seeded generator: the side of ST1, ST3t and ST6
    that is timed against :func:`_float_build`."""
    return acc.release(generator=_seeded(ctx), noise="float", **_PRIVACY)


def _float_build(cfg, K, V, ctx: RunContext, **kw):
    """``DPCrossAttention.build`` in float mode from a seeded generator: float64 sums, the
    baseline of ST1, ST3t and ST6. (Secure mode is itself one accumulator add and release, so
    it would compare the accumulator with itself; float mode keeps float64 sums.)"""
    from dpxattn.fast import DPCrossAttention

    return DPCrossAttention.build(K, V, eps=_PRIVACY["eps"], delta=_PRIVACY["delta"], R=cfg.R,
                                  R_w=cfg.R_w, degree=cfg.degree, generator=_seeded(ctx),
                                  noise="float", **kw)


def chunk_allowance_bytes(d: int, d_v: int, noise: str) -> int:
    """"One chunk" of a streaming ``add`` (8-byte elements): the ``ADD_CHUNK_ROWS`` rows of K and
    V copied out of the input and their validated float64 copies (2 (d + d_v) per row), the
    rounded values [V, 1] (d_v + 1 per row), plus a build's feature and noise chunks
    (``subject.chunk_bytes``)."""
    from dpxattn.fast.accumulator import ADD_CHUNK_ROWS

    per_row = 2 * (d + d_v) + d_v + 1
    return int(ADD_CHUNK_ROWS) * per_row * subject.DTYPE_BYTES + subject.chunk_bytes("direct", noise)


def _ratio_row(id: str, what: str, tag: str, num, den, ctx: RunContext, note: str,
               scale: float = 1.0) -> Target:
    """A ratio row from two interleaved timings (``num.samples[k] / den.samples[k] * scale``)."""
    values = [v * scale for v in paired_ratios(num.samples, den.samples)]
    interval = ctx.interval(values, "paired per-repetition ratios")
    if interval is None:
        return skipped(id, what, tag, "<=", THRESHOLDS[id], "a repetition gave no finite time", "x")
    return judge(id, what, tag, interval.estimate, "<=", THRESHOLDS[id], "x", note, interval=interval)


# -- ST1, ST2: canonical, in memory ------------------------------------------------------------


def _canonical_rows(ctx: RunContext, sizes: StreamingSizes) -> tuple[list[Target], dict]:
    cfg = NAMED["canonical"]
    n_max = max(sizes.canonical_rows, max(sizes.slope_rows))
    data = ctx.data(cfg.d, cfg.d_v, n_max, 1, cfg.R, cfg.R_w)
    K, V = data.K[:sizes.canonical_rows].cpu(), data.V[:sizes.canonical_rows].cpu()
    tag = (f"direct, d={cfg.d}, s={cfg.degree}, d_v={cfg.d_v}, n={sizes.canonical_rows}, "
           "float noise, seeded")
    ctx.log(f"[bench] streaming: ST1 add + release vs build at n={sizes.canonical_rows}")

    def stream():
        return _float_release(_accumulator(cfg.d, cfg.degree, cfg.d_v).add(K, V), ctx)

    t_stream, t_build = ctx.time_many([stream, lambda: _float_build(cfg, K, V, ctx)])
    rows = [_ratio_row("ST1", "exact add + release / float64-sum DPCrossAttention.build (same "
                       "data, float noise)",
                       tag, t_stream, t_build, ctx,
                       f"{t_stream.median * 1e3:.3g} ms vs {t_build.median * 1e3:.3g} ms; "
                       f"torch threads {torch.get_num_threads()}")]
    raw = {"ST1": {"n": sizes.canonical_rows, "stream": t_stream.to_dict(), "build": t_build.to_dict()}}

    ns = list(sizes.slope_rows)
    ctx.log(f"[bench] streaming: ST2 accumulation time at n={ns}")
    parts = [(data.K[:n].cpu(), data.V[:n].cpu()) for n in ns]
    timings = ctx.time_many([(lambda p=p: _accumulator(cfg.d, cfg.degree, cfg.d_v).add(*p))
                             for p in parts])
    rows.append(_slope_row(ctx, ns, timings, f"direct, d={cfg.d}, s={cfg.degree}, d_v={cfg.d_v}"))
    raw["ST2"] = {"n": ns, "timings": [t.to_dict() for t in timings]}
    return rows, raw


def _slope_row(ctx: RunContext, ns, timings, tag: str) -> Target:
    """ST2 from one timing per size: the median of the per-repetition slopes and its interval;
    the note keeps the fit of the per-size medians (as the scaling table's rows)."""
    what = "accumulation time (Accumulator + add) vs n, log-log slope"
    medians = [t.median for t in timings]
    fit = fit_loglog(ns, medians)
    reps = min(len(t.samples) for t in timings)
    slopes = loglog_slopes(ns, [[t.samples[k] for t in timings] for k in range(reps)])
    interval = ctx.interval(slopes, "least-squares slopes of the repetitions")
    if interval is None:
        return skipped("ST2", what, tag, "in", THRESHOLDS["ST2"], "a repetition gave no finite slope")
    note = (f"{reps} per-repetition slopes; fit of medians {fit.slope:.3g} +-{fit.stderr:.2g}, "
            f"resid {fit.residual:.2g}; points " + ", ".join(
                f"{n}:{t:.3g}s" for n, t in zip(ns, medians)))
    return judge("ST2", what, tag, interval.estimate, "in", THRESHOLDS["ST2"], note=note,
                 interval=interval)


# -- ST3: memory-mapped .npy -------------------------------------------------------------------


def _status_kib(fields: tuple[str, ...]) -> dict[str, int]:
    """The named ``/proc/self/status`` fields in KiB (those present)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in fields:
                    out[key] = int(line.split()[1])
    except OSError:
        return {}
    return out


class _AnonSampler:
    """Samples ``RssAnon`` and ``RssFile`` (``/proc/self/status``) every ``interval`` seconds in a
    background thread; ``peak_anon`` / ``peak_file``: the largest increase over the values at
    start, in bytes (None where the fields are missing). Short spikes between samples are
    missed: a lower bound."""

    def __init__(self, interval: float = ANON_SAMPLE_S) -> None:
        self.interval = interval
        self.base = _status_kib(("RssAnon", "RssFile"))
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now = _status_kib(("RssAnon", "RssFile"))
        for key, value in now.items():
            self.peak[key] = max(self.peak.get(key, value), value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "_AnonSampler":
        if self.base:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.base:
            self._stop.set()
            self._thread.join()
            self._sample()

    def increase(self, key: str) -> int | None:
        if key not in self.base:
            return None
        return 1024 * (self.peak[key] - self.base[key])


def _fit_rows_on_disk(directory: str, rows: int, row_bytes: int) -> tuple[int, str]:
    """(rows that fit on the disk of ``directory`` leaving ``DISK_RESERVE_BYTES`` free, a note:
    empty when all ``rows`` fit)."""
    free = shutil.disk_usage(directory).free
    need = rows * row_bytes
    if need + DISK_RESERVE_BYTES <= free:
        return rows, ""
    fit = max(0, (free - DISK_RESERVE_BYTES) // row_bytes)
    fit = (fit // 1_000_000) * 1_000_000 if fit >= 1_000_000 else fit
    return int(fit), (f"ran at n={fit} instead of {rows}: {need / 1e9:.3g} GB of .npy needed, "
                      f"{free / 1e9:.3g} GB free on {directory}")


def _write_npy(directory: str, n: int, d: int, d_v: int, seed: int, ctx: RunContext) -> tuple[str, str]:
    """K (n, d) uniform in [0, 1) and V (n, d_v) uniform in [-1, 1) float64 as ``K.npy`` and
    ``V.npy`` in ``directory``, written block by block (never whole in memory); their paths."""
    from numpy.lib.format import open_memmap

    paths = os.path.join(directory, "K.npy"), os.path.join(directory, "V.npy")
    K = open_memmap(paths[0], mode="w+", dtype=np.float64, shape=(n, d))
    V = open_memmap(paths[1], mode="w+", dtype=np.float64, shape=(n, d_v))
    rng = np.random.default_rng(seed)
    for start in range(0, n, WRITE_BLOCK_ROWS):
        stop = min(n, start + WRITE_BLOCK_ROWS)
        K[start:stop] = rng.random((stop - start, d))
        V[start:stop] = rng.uniform(-1.0, 1.0, (stop - start, d_v))
        if start and start % (16 * WRITE_BLOCK_ROWS) == 0:
            ctx.log(f"[bench] streaming: ST3 wrote {stop:,} / {n:,} rows")
    K.flush()
    V.flush()
    del K, V
    return paths


_WHAT_ANON = "memmap stream: peak anonymous (private) memory increase"
_WHAT_MAP_SHARE = "memmap stream per row / in-memory accumulator per row (the map's share of ST3t)"


def _memmap_rows(ctx: RunContext, sizes: StreamingSizes) -> tuple[list[Target], dict]:
    d, degree, d_v = STREAM_SHAPE
    tag_base = f"direct, d={d}, s={degree}, d_v={d_v}, float noise, seeded"
    allowance = chunk_allowance_bytes(d, d_v, ctx.noise_mode)
    limit_gib = THRESHOLDS["ST3m"] + allowance / 2**30
    directory = tempfile.mkdtemp(prefix="dpxattn-bench-stream-")
    try:
        n, disk_note = _fit_rows_on_disk(directory, sizes.stream_rows, (d + d_v) * subject.DTYPE_BYTES)
        what_m = "memmap stream: peak RSS increase (add + release)"
        what_t = "memmap stream per row / in-memory build per row"
        if n < 1:
            why = disk_note or "no rows"
            return [skipped("ST3m", what_m, tag_base, "<=", limit_gib, why, " GiB"),
                    skipped("ST3a", _WHAT_ANON, tag_base, "info", None, why, " GiB"),
                    skipped("ST3t", what_t, tag_base, "<=", THRESHOLDS["ST3t"], why, "x"),
                    skipped("ST3o", _WHAT_MAP_SHARE, tag_base, "info", None, why, "x")], {}
        ctx.log(f"[bench] streaming: ST3 writing K ({n}, {d}), V ({n}, {d_v}) to {directory}")
        t0 = time.perf_counter()
        k_path, v_path = _write_npy(directory, n, d, d_v, ctx.seed + 41, ctx)
        write_s = time.perf_counter() - t0

        def stream():
            K = np.load(k_path, mmap_mode="r")
            V = np.load(v_path, mmap_mode="r")
            return _float_release(_accumulator(d, degree, d_v).add(K, V), ctx)

        ctx.log(f"[bench] streaming: ST3 memory pass over n={n}")
        _release(_accumulator(d, degree, d_v).add(np.load(k_path, mmap_mode="r")[:256],
                                                  np.load(v_path, mmap_mode="r")[:256]), ctx)
        t0 = time.perf_counter()
        with _AnonSampler() as sampler:
            att, mem = measure_memory(stream)
        first_s = time.perf_counter() - t0
        del att
        n_mem = min(n, sizes.in_memory_rows)
        cfg = BenchConfig("stream-in-memory", d=d, degree=degree, n=n_mem, d_v=d_v)
        data = ctx.data(d, d_v, n_mem, 1, cfg.R, cfg.R_w)
        K_mem, V_mem = data.K.cpu(), data.V.cpu()
        ctx.log(f"[bench] streaming: ST3 stream (n={n}) vs in-memory build (n={n_mem}), interleaved")
        t_stream, t_mem, t_acc = ctx.time_many(
            [stream, lambda: _float_build(cfg, K_mem, V_mem, ctx),
             lambda: _float_release(_accumulator(d, degree, d_v).add(K_mem, V_mem), ctx)],
            first_calls=[first_s, None, None])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    tag = f"{tag_base}, n={n}"
    notes = [disk_note] if disk_note else []
    anon, file_backed = sampler.increase("RssAnon"), sampler.increase("RssFile")
    rows = []
    if mem is None:
        rows.append(skipped("ST3m", what_m, tag, "<=", limit_gib,
                            "no peak-memory method on this platform", " GiB"))
    else:
        split = ("" if anon is None else
                 f"; of it file-backed (the maps' pages read, clean page cache) "
                 f"~{file_backed / 2**30:.3g} GiB, anonymous ~{anon / 2**30:.3g} GiB (ST3a)")
        rows.append(judge("ST3m", what_m, tag, mem.peak / 2**30, "<=", limit_gib, " GiB",
                          "; ".join(notes + [f"2 GiB + one chunk ({allowance / 2**20:.3g} MiB: "
                                             f"{_chunk_words()}); {mem.method}, one pass" + split]),
                          deterministic=True))
    rows.append(judge("ST3a", _WHAT_ANON, tag,
                      None if anon is None else anon / 2**30, "info", unit=" GiB",
                      note=(f"RssAnon sampled every {ANON_SAMPLE_S * 1e3:g} ms (a lower bound)"
                            if anon is not None else "RssAnon not available on this platform")))
    per_row = (f"stream {n / t_stream.median / 1e6:.3g} Mrows/s ({t_stream.median:.3g} s), "
               f"in-memory build {n_mem / t_mem.median / 1e6:.3g} Mrows/s at n={n_mem} "
               f"({t_mem.median:.3g} s); .npy written in {write_s:.3g} s")
    rows.append(_ratio_row("ST3t", what_t, tag, t_stream, t_mem, ctx,
                           "; ".join(notes + [per_row]), scale=n_mem / n))
    parts = paired_ratios(t_stream.samples, t_acc.samples)
    interval = ctx.interval([v * n_mem / n for v in parts], "paired per-repetition ratios")
    rows.append(judge("ST3o", _WHAT_MAP_SHARE, tag, None if interval is None else interval.estimate,
                      "info", unit="x", interval=interval,
                      note=(f"in-memory Accumulator add + release {n_mem / t_acc.median / 1e6:.3g} "
                            f"Mrows/s at n={n_mem} ({t_acc.median:.3g} s), "
                            f"{t_acc.median / t_mem.median:.3g}x the in-memory build")))
    raw = {"n": n, "in_memory_n": n_mem, "disk_note": disk_note, "write_s": write_s,
           "memory": mem.to_dict() if mem else None, "anon_peak_bytes": anon,
           "file_peak_bytes": file_backed, "allowance_bytes": allowance,
           "stream": t_stream.to_dict(), "in_memory_build": t_mem.to_dict(),
           "in_memory_accumulator": t_acc.to_dict()}
    return rows, raw


def _chunk_words() -> str:
    from dpxattn.fast.accumulator import ADD_CHUNK_ROWS

    return (f"{ADD_CHUNK_ROWS} rows of K and V read and validated, [V, 1] rounded, a feature and "
            "a noise chunk")


# -- ST4: Dask ---------------------------------------------------------------------------------


def _dask_missing() -> str | None:
    """None when ``dask.array`` and ``distributed`` can be imported, else why not."""
    for module in ("dask.array", "distributed"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return (f"Dask is not importable ({exc}): install the optional extra 'distributed' "
                    '(pip install "dpxattn[distributed]")')
    return None


def _released_S(acc, noise: str) -> torch.Tensor:
    """S released from a copy of ``acc`` (``acc`` stays open) with the identity seed."""
    att = copy.deepcopy(acc).release(generator=torch.Generator().manual_seed(IDENTITY_SEED),
                                     noise=noise, **_PRIVACY)
    return att.released_tensors()["S"]


def _dask_rows(ctx: RunContext, sizes: StreamingSizes) -> tuple[list[Target], dict]:
    cfg = NAMED["canonical"]
    n, parts = sizes.dask_rows, min(sizes.dask_partitions, sizes.dask_rows)
    tag = (f"direct, d={cfg.d}, s={cfg.degree}, d_v={cfg.d_v}, n={n}, {parts} partitions, "
           f"noise={ctx.noise_mode}")
    what_t = "dask accumulate (2 workers) / single-process stream, wall time (+ release)"
    what_e = "dask release bit-identical to single-process (S, torch.equal; 1 = identical)"
    why = _dask_missing()
    if why:
        return [skipped("ST4", what_t, tag, "<=", THRESHOLDS["ST4"], why, "x"),
                skipped("ST4e", what_e, tag, ">=", 1.0, why)], {"available": False, "reason": why}
    import logging

    import dask
    import dask.array as da
    import distributed

    from dpxattn.distributed import accumulate

    public = dict(d=cfg.d, d_v=cfg.d_v, degree=cfg.degree, R=cfg.R, R_w=cfg.R_w)
    ctx.log(f"[bench] streaming: ST4 starting a 2-worker LocalCluster, n={n}")
    scratch = tempfile.mkdtemp(prefix="dpxattn-bench-dask-")  # the cluster's spill and lock files
    try:
        with dask.config.set({"temporary-directory": scratch}), distributed.LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                silence_logs=logging.ERROR, local_directory=scratch) as cluster, \
                distributed.Client(cluster) as client:
            rng = da.random.default_rng(ctx.seed + 43)
            chunk = -(-n // parts)
            dK = rng.random((n, cfg.d), chunks=(chunk, cfg.d))
            dV = rng.uniform(-1.0, 1.0, (n, cfg.d_v), chunks=(chunk, cfg.d_v))
            dK, dV = client.persist([dK, dV])  # the rows live on the workers from here on
            distributed.wait([dK, dV])
            K, V = np.asarray(dK.compute()), np.asarray(dV.compute())
            workers = len(client.scheduler_info()["workers"])

            def on_dask():
                return _release(accumulate(dK, dV, **public), ctx)

            def single():
                return _release(_accumulator(cfg.d, cfg.degree, cfg.d_v).add(K, V), ctx)

            ctx.log("[bench] streaming: ST4 dask vs single process, interleaved")
            t_dask, t_single = ctx.time_many([on_dask, single])
            acc_dask = accumulate(dK, dV, **public)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    acc_single = _accumulator(cfg.d, cfg.degree, cfg.d_v).add(K, V)
    identical = {mode: bool(torch.equal(_released_S(acc_dask, mode), _released_S(acc_single, mode)))
                 for mode in ("float", "secure")}
    same_n = acc_dask.n == acc_single.n == n
    rows = [_ratio_row("ST4", what_t, tag, t_dask, t_single, ctx,
                       f"{t_dask.median:.3g} s vs {t_single.median:.3g} s; {workers} worker "
                       f"processes x 1 thread; single process: torch threads "
                       f"{torch.get_num_threads()}; rows held on the workers (persisted)")]
    ok = all(identical.values()) and same_n
    rows.append(judge("ST4e", what_e, tag, 1.0 if ok else 0.0, ">=", 1.0,
                      note=(", ".join(f"{m}: {'identical' if v else 'DIFFERENT'}"
                                      for m, v in identical.items())
                            + f"; n {acc_dask.n} vs {acc_single.n}; seed {IDENTITY_SEED}"),
                      deterministic=True))
    raw = {"available": True, "n": n, "partitions": parts, "workers": workers,
           "dask": t_dask.to_dict(), "single": t_single.to_dict(), "identical": identical,
           "rows_equal": same_n}
    return rows, raw


# -- ST5: the sensitivity at scale -------------------------------------------------------------


def _sensitivity_rows() -> tuple[list[Target], dict]:
    from dpxattn.fast.accumulator import exact_constants
    from dpxattn.fast.sensitivities import direct_secure_constants

    cfg = NAMED["canonical"]
    public = dict(d=cfg.d, degree=cfg.degree, R=cfg.R, R_w=cfg.R_w, d_v=cfg.d_v)
    small, large = 1_000, 1_000_000_000
    tag = f"d={cfg.d}, s={cfg.degree}, d_v={cfg.d_v}, R=R_w=1, n=1e9 vs 1e3"
    rows, raw = [], {}
    for rid, norm in (("ST5", "l1"), ("ST5g", "l2")):
        lo = exact_constants(n=small, norm=norm, **public)
        hi = exact_constants(n=large, norm=norm, **public)
        ratio = hi[2] / lo[2]
        raw[norm] = {"n_small": lo[2], "n_large": hi[2], "analytic": lo[4], "ratio": ratio}
        rows.append(judge(rid, f"streaming sensitivity ({norm}) at n=1e9 / n=1e3", tag, ratio, "<=",
                          THRESHOLDS["ST5"], "x",
                          f"{lo[2]:.9g} -> {hi[2]:.9g}, ratio {ratio:.9f} (analytic {lo[4]:.9g}); "
                          "exact_constants",
                          deterministic=True))
    old_lo = direct_secure_constants(n=small, **public)[0]
    old_hi = direct_secure_constants(n=large, **public)[0]
    raw["secure_build_l1"] = {"n_small": old_lo, "n_large": old_hi, "ratio": old_hi / old_lo}
    rows.append(judge("ST5s", "float64 sums' l1 allowance at n=1e9 / n=1e3 (for "
                      "comparison)", tag, old_hi / old_lo, "info", unit="x",
                      note=f"{old_lo:.6g} -> {old_hi:.6g}; direct_secure_constants (float64 "
                           "sums: the allowance grows with n)"))
    return rows, raw


def _tree_rows(ctx: RunContext, sizes: StreamingSizes) -> tuple[list[Target], dict]:
    """ST6 (timed, interleaved) and ST6s / ST6g (public constants)."""
    from dpxattn.fast import Accumulator
    from dpxattn.fast.tree_accumulation import tree_exact_constants

    d, s, d_v = TREE_SHAPE
    n, G = (4_096, 256) if ctx.quick else (TREE_ROWS, TREE_GRID)
    data = ctx.data(d, d_v, n, 1, 1.0, 1.0)
    K, V = data.K[:n].cpu(), data.V[:n].cpu()
    public = dict(d=d, d_v=d_v, degree=s, R=1.0, R_w=1.0)
    tag = f"tree, d={d}, s={s}, d_v={d_v}, n={n}, G={G}, float noise, seeded"
    ctx.log(f"[bench] streaming: ST6 tree add + release vs build at n={n}, G={G}")

    def stream():
        return _float_release(Accumulator(mechanism="tree", grid_size=G, **public).add(K, V),
                              ctx)

    def build():
        return _float_build(BenchConfig("tree", d=d, degree=s, n=n, d_v=d_v), K, V, ctx,
                            mechanism="tree", grid_size=G)

    t_stream, t_build = ctx.time_many([stream, build])
    rows = [_ratio_row("ST6", "exact tree add + release / float64-sum DPCrossAttention.build "
                       "(tree, float noise)", tag,
                       t_stream, t_build, ctx,
                       f"{t_stream.median * 1e3:.3g} ms vs {t_build.median * 1e3:.3g} ms")]
    raw = {"n": n, "grid": G, "stream": t_stream.to_dict(), "build": t_build.to_dict()}
    canonical = dict(d=8, degree=3, R=1.0, R_w=1.0, d_v=8, grid=1024)
    lo, hi = (tree_exact_constants(n=x, **canonical) for x in (10 ** 3, 10 ** 9))
    level = float(np.max(hi[2] / lo[2]))
    l2 = hi[5] / lo[5]
    raw["sensitivity"] = {"level_ratio": level, "l2": [lo[5], hi[5]], "l2_ratio": l2}
    ctag = "tree, d=8, s=3, d_v=8, G=1024"
    rows.append(judge("ST6s", "streaming tree per-level sensitivity (l1) at n=1e9 / n=1e3, the "
                      "largest ratio", ctag, level, "<=", THRESHOLDS["ST5"], "x",
                      f"ratio {level:.9f}; tree_exact_constants", deterministic=True))
    rows.append(judge("ST6g", "streaming tree l2 sensitivity at n=1e9 / n=1e3", ctag, l2, "<=",
                      THRESHOLDS["ST5"], "x", f"{lo[5]:.9g} -> {hi[5]:.9g}, ratio {l2:.9f}",
                      deterministic=True))
    return rows, raw


def measure_streaming(ctx: RunContext, *, stream_rows: int | None = None,
                      dask_rows: int | None = None) -> tuple[list[Target], dict]:
    """Rows ST1-ST6 (module docstring) and their raw figures; ``stream_rows`` / ``dask_rows``
    override the memory-mapped and the Dask row counts."""
    sizes = StreamingSizes(ctx.quick, stream_rows, dask_rows)
    rows, raw = [], {}
    for name, part in (("canonical", _canonical_rows), ("memmap", _memmap_rows),
                       ("dask", _dask_rows)):
        got, raw[name] = part(ctx, sizes)
        rows += got
    got, raw["sensitivity"] = _sensitivity_rows()
    rows += got
    got, raw["tree"] = _tree_rows(ctx, sizes)
    rows += got
    raw["sizes"] = dict(vars(sizes))
    return rows, raw


def figures_table_rows(raw: dict) -> list[tuple[str, str]]:
    """(figure, value) rows of the section's own table, from ``measure_streaming``'s raw."""
    out = []
    st1 = raw.get("canonical", {}).get("ST1")
    if st1:
        out.append((f"canonical add + release, n={st1['n']}",
                    f"{st1['stream']['median_s'] * 1e3:.3g} ms (build {st1['build']['median_s'] * 1e3:.3g} ms)"))
    mm = raw.get("memmap") or {}
    if mm:
        out.append((f"memmap stream, n={mm['n']}",
                    f"{mm['stream']['median_s']:.3g} s, {mm['n'] / mm['stream']['median_s'] / 1e6:.3g} Mrows/s"))
        for key, label in (("in_memory_build", "in-memory build"),
                           ("in_memory_accumulator", "in-memory Accumulator add + release")):
            out.append((f"{label}, n={mm['in_memory_n']}",
                        f"{mm[key]['median_s']:.3g} s, "
                        f"{mm['in_memory_n'] / mm[key]['median_s'] / 1e6:.3g} Mrows/s"))
        if mm.get("memory"):
            out.append(("memmap pass peak RSS increase",
                        f"{mm['memory']['peak_bytes'] / 2**30:.3g} GiB ({mm['memory']['method']})"))
        if mm.get("anon_peak_bytes") is not None:
            out.append(("of it anonymous / file-backed (sampled)",
                        f"{mm['anon_peak_bytes'] / 2**30:.3g} / {mm['file_peak_bytes'] / 2**30:.3g} GiB"))
        if mm.get("disk_note"):
            out.append(("disk", mm["disk_note"]))
    dk = raw.get("dask") or {}
    if dk.get("available"):
        out.append((f"dask accumulate + release, n={dk['n']}, {dk['partitions']} partitions",
                    f"{dk['dask']['median_s']:.3g} s (single process {dk['single']['median_s']:.3g} s)"))
    elif dk:
        out.append(("dask", dk.get("reason", "not run")))
    sens = raw.get("sensitivity") or {}
    for norm in ("l1", "l2"):
        if norm in sens:
            out.append((f"sensitivity {norm} n=1e3 -> 1e9",
                        f"{sens[norm]['n_small']:.9g} -> {sens[norm]['n_large']:.9g}"))
    tree = raw.get("tree") or {}
    if tree.get("stream"):
        out.append((f"tree add + release, n={tree['n']}, G={tree['grid']}",
                    f"{tree['stream']['median_s'] * 1e3:.3g} ms (build "
                    f"{tree['build']['median_s'] * 1e3:.3g} ms)"))
    if "secure_build_l1" in sens:
        s = sens["secure_build_l1"]
        out.append(("float64 sums l1 allowance n=1e3 -> 1e9",
                    f"{s['n_small']:.6g} -> {s['n_large']:.6g} ({s['ratio']:.4g}x)"))
    return out
