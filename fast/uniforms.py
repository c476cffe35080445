"""Streams of uniforms for the fast path: secure (default), seeded, or given (DESIGN §5).

Every noise draw is ``ppf(u)`` of one uniform ``u`` strictly inside (0, 1). A build consumes one
:class:`UniformStream` in the documented order of its mechanism (``proofs_notes/01-conventions.md``),
in chunks, so that a structure with 1e8 noisy entries never holds 1e8 uniforms at once.

Sources (labels from :mod:`dpxattn.randomness`, recorded in the privacy plan):

* ``generator=None``: the OS CSPRNG through :func:`dpxattn.randomness.secure_uniforms`
  (uniforms ``(k + 1/2) 2^-52`` from the top 52 bits of each word: exact, never 0 or 1);
* a ``torch.Generator``: ``u = k 2^-53`` with ``k`` uniform on ``{1, ..., 2^53 - 1}`` from
  ``torch.randint`` on the generator's device: exact in float64, strictly inside (0, 1), and
  closed under ``u -> 1 - u``; reproducible, labelled seeded;
* a ``numpy.random.Generator``: :func:`dpxattn.randomness.generator_uniforms`; labelled seeded;
* ``uniforms=``: a 1-D array of exactly ``count`` values in (0, 1), validated by
  :func:`dpxattn.randomness.check_uniforms`; labelled given (conformance only).

Independent components get disjoint consecutive segments of the one stream (never a reused
segment), which is what "one uniform per draw, in a documented order" means.
"""

from __future__ import annotations

import numpy as np
import torch

from dpxattn.errors import ParameterError, UniformsError
from dpxattn.randomness import (LABEL_GIVEN, LABEL_SECURE, LABEL_SEEDED, check_uniforms,
                                generator_uniforms, secure_uniforms)

__all__ = ["UniformStream", "uniform_stream", "torch_generator_uniforms"]

_TWO_M53 = 2.0**-53
_TWO_53 = 2**53


def torch_generator_uniforms(generator: torch.Generator, count: int, device=None) -> torch.Tensor:
    """``count`` float64 uniforms ``k 2^-53``, ``k`` uniform on {1, ..., 2^53 - 1} (reproducible).

    ``k`` is drawn by ``torch.randint(1, 2**53)`` on the generator's device (exact conversion to
    float64); the result is moved to ``device`` (default: the generator's device). Every value
    lies in [2^-53, 1 - 2^-53].
    """
    k = torch.randint(1, _TWO_53, (int(count),), generator=generator, dtype=torch.int64,
                      device=generator.device)
    u = k.to(torch.float64) * _TWO_M53
    return u if device is None else u.to(device)


class UniformStream:
    """A source of uniforms consumed front to back in chunks; see the module docstring.

    ``take(k)`` returns the next ``k`` uniforms as a 1-D float64 tensor on ``device``.
    ``finish()`` checks that exactly ``count`` were consumed (given uniforms must be used up).
    """

    def __init__(self, count: int, *, generator=None, uniforms=None, device=None) -> None:
        self.count = int(count)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.used = 0
        self._given: np.ndarray | None = None
        self._generator = None
        if uniforms is not None:
            if generator is not None:
                raise ParameterError("generator", "must be None when uniforms are given", generator)
            if isinstance(uniforms, torch.Tensor):
                uniforms = uniforms.detach().to("cpu", torch.float64).numpy()
            self._given = check_uniforms(uniforms, self.count)
            self.kind, self.label = "given", LABEL_GIVEN
        elif generator is None:
            self.kind, self.label = "secure", LABEL_SECURE
        elif isinstance(generator, torch.Generator):
            self._generator = generator
            self.kind, self.label = "torch", LABEL_SEEDED
        elif isinstance(generator, np.random.Generator):
            self._generator = generator
            self.kind, self.label = "numpy", LABEL_SEEDED
        else:
            raise ParameterError(
                "generator", "must be None (secure), a torch.Generator or a numpy.random.Generator",
                type(generator).__name__)

    @property
    def seeded(self) -> bool:
        return self.kind in ("torch", "numpy")

    def take(self, k: int) -> torch.Tensor:
        k = int(k)
        if k < 0 or self.used + k > self.count:
            raise UniformsError("uniforms", f"stream of {self.count} uniforms over-consumed",
                                f"{self.used} + {k}")
        start = self.used
        self.used += k
        if self.kind == "given":
            return torch.from_numpy(self._given[start:start + k]).to(self.device)
        if self.kind == "secure":
            return torch.from_numpy(secure_uniforms(k)).to(self.device)
        if self.kind == "numpy":
            return torch.from_numpy(generator_uniforms(self._generator, k)).to(self.device)
        return torch_generator_uniforms(self._generator, k, self.device)

    def finish(self) -> None:
        if self.used != self.count:
            raise UniformsError("uniforms", f"stream must be consumed exactly ({self.count})",
                                self.used)


def uniform_stream(count: int, *, generator=None, uniforms=None, device=None) -> UniformStream:
    """A :class:`UniformStream` of ``count`` uniforms from the chosen source."""
    return UniformStream(count, generator=generator, uniforms=uniforms, device=device)
