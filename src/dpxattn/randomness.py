"""Sources of uniforms, shared by the reference and the fast implementation (DESIGN §5).

Every noise draw of dpxattn is ``ppf(u)`` of one uniform ``u`` in the open interval (0, 1).
Three sources, and the label each puts into the privacy plan:

* secure (default, ``generator=None``): 64-bit words from the OS CSPRNG (``os.urandom``), mapped
  to ``(k + 1/2) 2^-52`` with ``k`` the top 52 bits: 2^52 equally spaced points, symmetric under
  ``u -> 1 - u``, every one exactly representable, never 0 or 1;
* seeded (``generator=`` a ``numpy.random.Generator`` or ``torch.Generator``): reproducible,
  for tests and audits only, and labelled so;
* given (``uniforms=``): an explicit array, for conformance between implementations.

Nothing here touches global random state.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from dpxattn.errors import UniformsError

__all__ = [
    "LABEL_SECURE",
    "LABEL_SEEDED",
    "LABEL_GIVEN",
    "uniforms_from_words",
    "secure_uniforms",
    "generator_uniforms",
    "check_uniforms",
    "derive_seed",
]

LABEL_SECURE = "secure: OS CSPRNG (os.urandom), uniforms (k + 1/2) 2^-52 strictly inside (0, 1)"
LABEL_SEEDED = "seeded generator: reproducible, for tests and audits only - NOT for production"
LABEL_GIVEN = "given uniforms: conformance testing only - NOT for production"

_TWO_M52 = 2.0**-52


def uniforms_from_words(words: np.ndarray) -> np.ndarray:
    """Map uint64 words to float64 uniforms ``(k + 1/2) 2^-52``, ``k = word >> 12``.

    Shape is preserved. Every result lies in [2^-53, 1 - 2^-53], strictly inside (0, 1), and the
    map is exact: ``k + 1/2`` with ``k < 2^52`` has 53 significant bits, which float64 holds.
    (With 53-bit ``k`` the half offset would be lost and ``k = 2^53 - 1`` would round to 1.)
    """
    words = np.asarray(words, dtype=np.uint64)
    return ((words >> np.uint64(12)).astype(np.float64) + 0.5) * _TWO_M52


def secure_uniforms(count: int) -> np.ndarray:
    """``count`` uniforms from the OS CSPRNG, as a 1-D float64 array."""
    if count < 0:
        raise UniformsError("count", "must be >= 0", count)
    words = np.frombuffer(os.urandom(8 * int(count)), dtype=np.uint64)
    return uniforms_from_words(words)


def generator_uniforms(generator: np.random.Generator, count: int) -> np.ndarray:
    """``count`` reproducible uniforms from a seeded ``numpy.random.Generator`` (tests, audits).

    Uses 64-bit raw words through :func:`uniforms_from_words`, so the values are strictly inside
    (0, 1) exactly as the secure source's are. Label the result :data:`LABEL_SEEDED`.
    """
    if count < 0:
        raise UniformsError("count", "must be >= 0", count)
    words = generator.integers(0, np.iinfo(np.uint64).max, size=int(count), dtype=np.uint64,
                               endpoint=True)
    return uniforms_from_words(words)


def check_uniforms(uniforms, count: int) -> np.ndarray:
    """Validate given uniforms: 1-D, length ``count``, finite, strictly inside (0, 1).

    Returns a float64 numpy copy. Raises :class:`UniformsError` naming the violated bound.
    """
    u = np.array(uniforms, dtype=np.float64, copy=True)
    if u.ndim != 1:
        raise UniformsError("uniforms", "must be a 1-D array", f"shape {u.shape}")
    if u.shape[0] != count:
        raise UniformsError("uniforms", f"must have length noise_count = {count}", f"length {u.shape[0]}")
    if count and not (np.all(u > 0.0) and np.all(u < 1.0)):
        raise UniformsError("uniforms", "must lie strictly inside (0, 1) (and not be NaN)")
    return u


def derive_seed(root: int, *keys: object) -> int:
    """A 64-bit seed derived from a root seed and any keys (a check's name, a test id, ...).

    Deterministic across processes and platforms (SHA-256 of the keys' text, then
    ``numpy.random.SeedSequence``), so one root seed reproduces every derived stream.
    """
    digest = hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()
    entropy = [int(root) & 0xFFFFFFFFFFFFFFFF, int.from_bytes(digest[:16], "little")]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
