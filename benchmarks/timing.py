"""Timing and peak-memory measurement for ``dpxattn bench``.

Timing (:func:`measure`): one or more warm-up calls, then the number of calls per repetition
(``inner``) is calibrated so that one repetition lasts at least ``min_rep_time`` seconds; the
median over ``repetitions`` (>= 5 by default) repetitions of (repetition time / inner) is the
reported time per call, and min / max are kept beside it, and every repetition's time per call
(``Timing.samples``, in order): the benchmark's verdicts are read from confidence intervals over
them (``intervals`` module). :func:`measure_many` does the same for several functions with their
repetitions interleaved, for the two sides of a ratio: repetition k of every side runs before
repetition k + 1 of any, so ``a.samples[k] / b.samples[k]`` is a paired ratio. On CUDA the device
is synchronised before the clock is read at both ends of a repetition (``sync``), so the time is
the device's.

Settling (``settle_s``): a thread pool that is not torch's (numpy's OpenBLAS, behind the numpy
exact-softmax oracle) keeps its threads spinning for a while after a call returns; on this
2-core machine the next torch function then ran about 2x slower (measured: a 135 us direct query
took 260 us right after the oracle and 135 us after a 0.1-1 s pause). :func:`measure_many`
therefore pauses ``settle_s`` seconds after each function's block, so every block starts on idle
cores whatever ran before it. The pause is outside the timed region.

Memory (:func:`measure_memory`), why not ``tracemalloc``: tracemalloc only sees allocations made
through Python's allocator; torch and numpy buffers come from C ``malloc`` / ``mmap`` and are
invisible to it. So:

* CPU, method ``rss-hwm`` (Linux): ``malloc_trim(0)`` returns freed heap pages to the OS, then
  writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's peak-RSS mark (VmHWM) to the
  current RSS; the function runs; the peak increase is ``VmHWM - RSS_before`` and the retained
  increase ``RSS_after - RSS_before`` (the result still alive). This sees every page any
  allocator touched, at 4 KiB page granularity. It can under-count only memory that was already
  resident and free inside an allocator's cache before the call.
* CPU fallback, method ``rss-sampled``: where clear_refs is not writable, a background thread
  samples ``/proc/self/statm`` every ``interval`` seconds; short spikes between samples are
  missed (a lower bound).
* CUDA, method ``cuda-allocator``: ``torch.cuda.reset_peak_memory_stats`` and
  ``max_memory_allocated`` (the caching allocator's exact view of tensor memory).
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = [
    "Timing",
    "MemoryUse",
    "measure",
    "measure_many",
    "measure_memory",
    "device_sync",
    "rss_bytes",
    "available_memory_bytes",
]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Timing:
    """Seconds per call: ``median`` (reported), ``min``, ``max`` over ``repetitions``, each
    repetition being ``inner`` back-to-back calls; ``samples``: every repetition's seconds per
    call, in the order they ran."""

    median: float
    min: float
    max: float
    repetitions: int
    inner: int
    samples: tuple[float, ...] = ()

    @property
    def spread(self) -> float:
        """(max - min) / median: the run-to-run spread inside this measurement."""
        return (self.max - self.min) / self.median if self.median > 0 else math.nan

    def to_dict(self) -> dict:
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max,
                "repetitions": self.repetitions, "inner": self.inner,
                "samples_s": list(self.samples)}


def device_sync(device) -> Callable[[], None]:
    """A no-argument function that waits for ``device``'s queued work (a no-op on CPU)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def _timed(fn: Callable[[], Any], calls: int, sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return time.perf_counter() - t0


def _timed_keep(fn: Callable[[], Any], calls: int, sync: Callable[[], None]) -> tuple[float, Any]:
    """Like :func:`_timed`, but the last call's result is returned instead of dropped (the
    earlier calls' results are dropped at once, as in :func:`_timed`)."""
    sync()
    t0 = time.perf_counter()
    for _ in range(calls - 1):
        fn()
    last = fn()
    sync()
    return time.perf_counter() - t0, last


def _calibrate(fn: Callable[[], Any], *, warmup: int, first_call: float | None,
               min_rep_time: float, max_inner: int, sync: Callable[[], None]) -> int:
    """Calls per repetition: 1 for a call that lasts ``min_rep_time`` or more; otherwise the
    count found by growing a batch (timeit's autorange) until it lasts ``min_rep_time``.

    A single warm-up call is a poor estimate on a busy machine (one descheduled call is 10-100x
    slow, and an inner loop of 1 then leaves every repetition at the scheduler's mercy), hence
    the batch growth. ``warmup`` calls run first unless ``first_call`` gives the time of a call
    the caller has just made.
    """
    if warmup < 1 and first_call is None:
        raise ValueError("warmup=0 needs first_call (the time of a call already made)")
    last = math.inf if first_call is None else float(first_call)
    for _ in range(warmup):
        last = _timed(fn, 1, sync)
    if last >= min_rep_time:
        return 1
    calls = 1
    while calls < max_inner:
        elapsed = _timed(fn, calls, sync)
        if elapsed >= min_rep_time:
            return calls
        guess = math.ceil(calls * 1.2 * min_rep_time / max(elapsed, 1e-9))
        calls = min(max_inner, max(2 * calls, min(10 * calls, guess)))
    return calls


def measure(fn: Callable[[], Any], *, repetitions: int = 5, min_rep_time: float = 0.05,
            warmup: int = 1, max_inner: int = 1_000_000,
            sync: Callable[[], None] | None = None, first_call: float | None = None) -> Timing:
    """Time ``fn()`` (its result is discarded at once, so large results do not pile up).

    ``warmup`` calls run first, then the calls per repetition (``inner``) are calibrated
    (:func:`_calibrate`), then ``repetitions`` repetitions of ``inner`` calls each. Returns
    seconds per call. A caller that has just run ``fn`` itself (e.g. under
    :func:`measure_memory`) may pass ``warmup=0`` and that call's time as ``first_call``, so an
    expensive function is not run once more for nothing.
    """
    return measure_many([fn], repetitions=repetitions, min_rep_time=min_rep_time, warmup=warmup,
                        max_inner=max_inner, sync=sync, first_calls=[first_call])[0]


def measure_many(fns: Sequence[Callable[[], Any]], *, repetitions: int = 5,
                 min_rep_time: float = 0.05, max_inner: int = 1_000_000,
                 sync: Callable[[], None] | None = None, warmup: int = 1,
                 first_calls: Sequence[float | None] | None = None,
                 settle_s: float = 0.0,
                 on_result: Sequence[Callable[[Any], None] | None] | None = None) -> list[Timing]:
    """Time several functions **interleaved**: repetition k runs fn_0's inner loop, then fn_1's,
    and so on, before repetition k + 1 starts. A slow phase of the machine (PERF_ANCHORS §2.7:
    minutes in which cache-bound kernels run 2x slower) then hits every side of a ratio alike,
    so ratios of the returned medians compare like with like.

    Each function is warmed up and gets its own ``inner`` (:func:`_calibrate`); where
    ``first_calls[i]`` gives the time of a call the caller has just made, fn_i's warm-up is
    skipped. ``settle_s``: seconds of pause after each function's calibration and after each of
    its timed blocks (module docstring, "Settling"); never inside a timed block.

    ``on_result[i]`` (optional, one entry per function): called with the result of the last
    call of each of fn_i's timed blocks, after the clock has stopped (e.g. to measure the error
    of each independently built structure). The result is then dropped and the time that takes
    is added to the block, so the block still pays for freeing every result it made, as an
    unobserved block does; only the callback itself is outside the timing.
    """
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1 (got {repetitions})")
    sync = sync or (lambda: None)
    firsts = list(first_calls) if first_calls is not None else [None] * len(fns)
    if len(firsts) != len(fns):
        raise ValueError("first_calls must have one entry per function")
    if settle_s < 0:
        raise ValueError(f"settle_s must be >= 0 (got {settle_s})")
    hooks = list(on_result) if on_result is not None else [None] * len(fns)
    if len(hooks) != len(fns):
        raise ValueError("on_result must have one entry per function")

    def settle() -> None:
        if settle_s > 0:
            time.sleep(settle_s)

    inners = []
    for fn, first in zip(fns, firsts):
        inners.append(_calibrate(fn, warmup=warmup if first is None else 0, first_call=first,
                                 min_rep_time=min_rep_time, max_inner=max_inner, sync=sync))
        settle()
    per_call: list[list[float]] = [[] for _ in fns]
    for _ in range(repetitions):
        for i, (fn, inner) in enumerate(zip(fns, inners)):
            hook = hooks[i]
            if hook is None:
                elapsed = _timed(fn, inner, sync)
            else:
                elapsed, last = _timed_keep(fn, inner, sync)
                hook(last)
                t0 = time.perf_counter()
                del last
                sync()
                elapsed += time.perf_counter() - t0
            per_call[i].append(elapsed / inner)
            settle()
    return [Timing(statistics.median(p), min(p), max(p), repetitions, inner, tuple(p))
            for p, inner in zip(per_call, inners)]


@dataclass(frozen=True)
class MemoryUse:
    """Bytes above the baseline taken just before the call: ``peak`` during it, ``retained``
    after it (its result alive). ``method`` says how they were measured (module docstring)."""

    peak: int
    retained: int
    method: str

    def to_dict(self) -> dict:
        return {"peak_bytes": self.peak, "retained_bytes": self.retained, "method": self.method}


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    """The process's resident set size now (Linux ``/proc/self/statm``), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (what can be allocated without swapping), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def measure_memory(fn: Callable[[], Any], *, device="cpu", interval: float = 0.001) -> tuple[Any, MemoryUse | None]:
    """Run ``fn()`` once and return ``(result, MemoryUse)``; the MemoryUse is None where no
    method works on this platform. See the module docstring for the methods."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        result = fn()
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev) - base
        retained = torch.cuda.memory_allocated(dev) - base
        return result, MemoryUse(int(peak), int(retained), "cuda-allocator")
    _trim_heap()
    base = rss_bytes()
    if base is None:
        return fn(), None
    if _reset_hwm():
        result = fn()
        hwm = _status_kib("VmHWM")
        after = rss_bytes()
        if hwm is not None and after is not None:
            return result, MemoryUse(max(0, hwm * 1024 - base), max(0, after - base), "rss-hwm")
    peak_seen = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            now = rss_bytes()
            if now is not None and now > peak_seen[0]:
                peak_seen[0] = now
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        stop.set()
        thread.join()
    after = rss_bytes() or base
    peak_seen[0] = max(peak_seen[0], after)
    return result, MemoryUse(peak_seen[0] - base, max(0, after - base), "rss-sampled")
