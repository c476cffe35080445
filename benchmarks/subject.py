"""The code under test, seen through its public contract only (DESIGN §4).

Everything the benchmark calls in ``dpxattn.fast`` / ``dpxattn.reference`` goes through this
module, so the rest of the benchmark never depends on internals:

* ``dpxattn.fast.DPCrossAttention.build / query / error_bound / noise_count`` (both mechanisms);
* ``dpxattn.fast.tree.DPTree.build / query`` and its public ``nodes`` (released, noisy) for the
  tree range-query rows;
* ``dpxattn.reference.DPCrossAttention`` for the fast-vs-reference row;
* ``dpxattn.fast.features.feature_chunks`` (the feature-generation row);
* the public chunk constants ``FEATURE_CHUNK_ELEMENTS``, ``NOISE_CHUNK`` (float noise),
  ``secure_noise.CHUNK`` (hardened noise) and ``TREE_BUILD_CHUNK``, which define the "one
  chunk" allowance of the peak-memory target.

Noise modes (``build(noise=...)``): timed builds use the run's mode (``--noise``; default
"secure", the library's default for a user who passes no generator); builds from given uniforms
(noise off, conformance with the reference) are necessarily "float".

Each ``*_missing()`` returns None when the piece is importable, else the reason (the benchmark
prints it and marks the affected rows SKIP, never silently).
"""

from __future__ import annotations

import importlib

import torch

__all__ = [
    "fast_missing",
    "tree_missing",
    "reference_missing",
    "build",
    "noise_count",
    "payload_bytes",
    "chunk_bytes",
    "feature_pass",
    "tree_range_structure",
    "reference_build",
    "DTYPE_BYTES",
]

DTYPE_BYTES = 8  # every released number is float64


def _missing(module: str, name: str) -> str | None:
    try:
        mod = importlib.import_module(module)
        getattr(mod, name)
    except (ImportError, AttributeError) as exc:
        return f"{module}.{name} is not available in this checkout ({type(exc).__name__}: {exc})"
    return None


def fast_missing() -> str | None:
    """None if ``dpxattn.fast.DPCrossAttention`` can be used, else why not."""
    return _missing("dpxattn.fast.cross_attention", "DPCrossAttention")


def tree_missing() -> str | None:
    """None if ``dpxattn.fast.tree.DPTree`` can be used, else why not."""
    return _missing("dpxattn.fast.tree", "DPTree")


def reference_missing() -> str | None:
    """None if ``dpxattn.reference.DPCrossAttention`` can be used, else why not."""
    return _missing("dpxattn.reference", "DPCrossAttention")


def _fast_class():
    from dpxattn.fast import DPCrossAttention

    return DPCrossAttention


def build(cfg, K: torch.Tensor, V: torch.Tensor, mechanism: str, *, generator=None, uniforms=None,
          noise: str | None = None):
    """``DPCrossAttention.build`` for configuration ``cfg`` (eps, delta, R, R_w, degree, scale);
    ``noise`` None, "secure" or "float" as the contract defines (None: secure unless a
    generator or uniforms are given)."""
    return _fast_class().build(K, V, eps=cfg.eps, delta=cfg.delta, R=cfg.R, R_w=cfg.R_w,
                               degree=cfg.degree, mechanism=mechanism, scale=None,
                               generator=generator, uniforms=uniforms, noise=noise)


def noise_count(cfg, n: int, mechanism: str) -> int:
    """Uniforms (= released float64 numbers) of the structure for ``cfg`` at size ``n``."""
    return int(_fast_class().noise_count(n=n, d=cfg.d, d_v=cfg.d_v, degree=cfg.degree,
                                         mechanism=mechanism))


def payload_bytes(cfg, n: int, mechanism: str) -> int:
    """The structure's theoretical payload: one float64 per released number (one per uniform)."""
    return noise_count(cfg, n, mechanism) * DTYPE_BYTES


def chunk_bytes(mechanism: str, noise: str = "secure") -> int:
    """"One chunk" of a build, from the fast path's public chunk constants (8-byte elements):
    a feature chunk plus a noise chunk (``NOISE_CHUNK`` of the float sampler, ``CHUNK`` of the
    hardened one), plus (``tree``) one block of leaf contributions."""
    from dpxattn.fast.features import FEATURE_CHUNK_ELEMENTS

    if noise == "secure":
        from dpxattn.fast.secure_noise import CHUNK as NOISE_CHUNK
    else:
        from dpxattn.fast.noise import NOISE_CHUNK

    elements = int(FEATURE_CHUNK_ELEMENTS) + int(NOISE_CHUNK)
    if mechanism == "tree":
        from dpxattn.fast.tree_mechanism import TREE_BUILD_CHUNK

        elements += int(TREE_BUILD_CHUNK)
    return elements * DTYPE_BYTES


def feature_pass(K: torch.Tensor, degree: int) -> int:
    """Generate P(K) chunk by chunk with the fast path (as a build does), keep nothing; returns
    the number of feature elements generated (n r)."""
    from dpxattn.fast.features import feature_chunks

    total = 0
    for start, stop, F in feature_chunks(K, degree):
        total += F.numel()
    return total


def tree_range_structure(values: torch.Tensor, *, eps: float, delta: float, generator=None):
    """A fast ``DPTree`` over ``values`` (n,) with unit sensitivity: ``(tree, query, nodes, N)``
    where ``query(lo, hi)`` answers inclusive ranges in one batch and ``nodes`` is the released
    (noisy) level-order array as float64 numpy."""
    from dpxattn.fast.tree import DPTree

    tree = DPTree.build(values, sensitivity=1.0, eps=eps, delta=delta, generator=generator)
    return tree, tree.query, tree.nodes[:, 0].detach().cpu().numpy(), tree.N


def reference_build(cfg, K, V, mechanism: str, uniforms):
    """``dpxattn.reference.DPCrossAttention.build`` from the given uniforms (exact, mpmath)."""
    from dpxattn.reference import DPCrossAttention as Ref

    return Ref.build(K, V, eps=cfg.eps, delta=cfg.delta, R=cfg.R, R_w=cfg.R_w, degree=cfg.degree,
                     mechanism=mechanism, uniforms=uniforms)
