"""The benchmark's header and its same-run anchors (``research/PERF_ANCHORS.md`` §0, §5 item 2).

Header: CPU model, logical CPUs, torch threads, Python / torch / numpy versions, device.
Anchors (measured in the same process as every table, so slow phases show up in them too):

* ``gemm_f64_gflops`` / ``gemm_f32_gflops``: ``torch.mm`` of two size^3 matrices (1024 by
  default), 2 size^3 / time;
* ``copy_gbps``: ``dst.copy_(src)`` of a 512 MiB buffer into a warm one, counting read + write
  (2 x bytes / time);
* ``fresh_alloc_gibps``: ``torch.empty`` of 512 MiB then ``fill_`` (page faults included), GiB/s;
  this and the copy are the "touch" term of the tree-build denominator;
* ``noise_ns_per_sample``: the fast path's sampler (``dpxattn.fast.noise.fill_noise``, the
  function every release uses) writing ``noise_samples`` draws into a warm buffer, with the
  default (secure, OS CSPRNG) source; ``noise_seeded_ns_per_sample`` the same with a seeded
  ``torch.Generator``; ``noise_fresh_ns_per_sample`` the public ``truncated_laplace`` with a
  freshly allocated result; ``hardened_ns_per_sample`` the hardened sampler of
  ``noise="secure"`` (exact discrete TLap words from the OS CSPRNG). The first (float mode) or
  the last (secure mode, the default) is the T_noise of the build floor (memory is counted
  separately as T_touch).
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from dataclasses import dataclass

import numpy as np
import torch

from dpxattn.benchmarks.timing import Timing, device_sync, measure

__all__ = ["AnchorSizes", "header", "load_average", "busy_warning", "measure_anchors", "cpu_model", "noise_sampler", "warm_noise_filler",
           "hardened_sampler"]


@dataclass(frozen=True)
class AnchorSizes:
    """Sizes of the anchor measurements (full run, or the tiny ``--quick`` ones)."""

    gemm: int = 1024
    copy_bytes: int = 512 << 20
    noise_samples: int = 1 << 22
    min_rep_time: float = 0.1
    repetitions: int = 5

    @classmethod
    def quick(cls) -> "AnchorSizes":
        return cls(gemm=128, copy_bytes=8 << 20, noise_samples=1 << 14, min_rep_time=0.002)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> float | None:
    """The 1-minute load average (``os.getloadavg``), or None where unavailable."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def busy_warning() -> str | None:
    """A warning when other processes keep the CPUs busy (1-minute load average above half the
    logical CPUs): OpenMP kernels then wait on descheduled threads and ms-scale timings swell
    10-50x, so absolute times and even same-run ratios are unreliable."""
    load, cpus = load_average(), os.cpu_count() or 1
    if load is None or load <= 0.5 * cpus:
        return None
    return (f"WARNING: the machine is busy (1-minute load average {load:.2g} on {cpus} logical CPUs): "
            "timings are unreliable; run the benchmark on a quiet machine")


def header(device) -> dict:
    """What the run ran on: printed first, stored in the JSON."""
    dev = torch.device(device)
    info = {
        "load_average_1min": load_average(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(dev),
        "platform": platform.platform(),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def noise_sampler():
    """``dpxattn.fast.noise.truncated_laplace`` (DESIGN §4), or None while it does not exist."""
    try:
        from dpxattn.fast.noise import truncated_laplace
    except ImportError:
        return None
    return truncated_laplace


def warm_noise_filler():
    """``fill(buf, generator)``: TLap(1, 1, 1e-6) draws written into the existing float64 tensor
    ``buf`` by the fast path's own sampler (``dpxattn.fast.noise.fill_noise`` over a fresh
    ``uniform_stream``; generator None = the secure default), or None while it does not exist."""
    try:
        from dpxattn.fast.noise import fill_noise, tlap_constants
        from dpxattn.fast.uniforms import uniform_stream
    except ImportError:
        return None
    constants = tlap_constants(1.0, 1.0, 1e-6)

    def fill(buf: torch.Tensor, generator) -> torch.Tensor:
        stream = uniform_stream(buf.numel(), generator=generator, device=buf.device)
        fill_noise(buf, stream, constants)
        stream.finish()
        return buf

    return fill


def hardened_sampler():
    """``draw(count)``: the hardened sampler of ``noise="secure"``
    (``dpxattn.fast.secure_noise.sample_noise_units``: exact discrete truncated Laplace in
    lattice units, OS CSPRNG words) at sensitivity 1, eps 1, delta 1e-6, one coordinate changed;
    None while it does not exist. Its cost per draw may depend on the law's parameters (a tree
    level's share of eps is far smaller than 1)."""
    try:
        from dpxattn.fast.secure_noise import sample_noise_units, secure_parameters
    except ImportError:
        return None
    params = secure_parameters(sensitivity=1.0, eps=1.0, delta=1e-6, changed=1)
    return lambda count: sample_noise_units(count, params)


def _time(fn, sizes: AnchorSizes, sync) -> Timing:
    return measure(fn, repetitions=sizes.repetitions, min_rep_time=sizes.min_rep_time, sync=sync)


def measure_anchors(device, sizes: AnchorSizes) -> dict:
    """Every anchor of the module docstring, as a flat dict (None where unavailable, with a
    ``*_note`` saying why)."""
    dev = torch.device(device)
    sync = device_sync(dev)
    out: dict = {"sizes": sizes.__dict__.copy()}
    g = sizes.gemm
    for dtype, key in ((torch.float64, "gemm_f64_gflops"), (torch.float32, "gemm_f32_gflops")):
        gen = torch.Generator(device=dev).manual_seed(1)
        a = torch.rand((g, g), dtype=dtype, device=dev, generator=gen)
        b = torch.rand((g, g), dtype=dtype, device=dev, generator=gen)
        c = torch.empty((g, g), dtype=dtype, device=dev)
        t = _time(lambda a=a, b=b, c=c: torch.mm(a, b, out=c), sizes, sync)
        out[key] = 2.0 * g**3 / t.median / 1e9
        out[key + "_timing"] = t.to_dict()
        del a, b, c
    nbytes = sizes.copy_bytes
    src = torch.ones(nbytes // 8, dtype=torch.float64, device=dev)
    dst = torch.zeros_like(src)
    t = _time(lambda dst=dst, src=src: dst.copy_(src), sizes, sync)
    out["copy_gbps"] = 2.0 * nbytes / t.median / 1e9
    out["copy_timing"] = t.to_dict()
    del src, dst
    t = _time(lambda: torch.empty(nbytes // 8, dtype=torch.float64, device=dev).fill_(1.0), sizes, sync)
    out["fresh_alloc_gibps"] = nbytes / t.median / 2**30
    out["fresh_alloc_timing"] = t.to_dict()
    count = sizes.noise_samples
    fill = warm_noise_filler()
    if fill is None:
        out["noise_ns_per_sample"] = None
        out["noise_seeded_ns_per_sample"] = None
        out["noise_note"] = "dpxattn.fast.noise (fill_noise, uniform_stream) is not available in this checkout"
        return out
    buf = torch.empty(count, dtype=torch.float64, device=dev)
    fill(buf, None)  # touch the buffer once: the timed fills write into warm memory
    t = _time(lambda: fill(buf, None), sizes, sync)
    out["noise_ns_per_sample"] = t.median / count * 1e9
    out["noise_timing"] = t.to_dict()
    gen = torch.Generator(device=dev).manual_seed(2)
    t = _time(lambda: fill(buf, gen), sizes, sync)
    out["noise_seeded_ns_per_sample"] = t.median / count * 1e9
    out["noise_seeded_timing"] = t.to_dict()
    hardened = hardened_sampler()
    if hardened is not None:
        t = _time(lambda: hardened(count), sizes, sync)
        out["hardened_ns_per_sample"] = t.median / count * 1e9
        out["hardened_timing"] = t.to_dict()
    else:
        out["hardened_ns_per_sample"] = None
    sampler = noise_sampler()
    if sampler is not None:
        t = _time(lambda: sampler((count,), 1.0, 1.0, 1e-6, device=dev), sizes, sync)
        out["noise_fresh_ns_per_sample"] = t.median / count * 1e9
        out["noise_fresh_timing"] = t.to_dict()
    return out
