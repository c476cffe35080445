"""Noise samplers for check 1: the real fast sampler and its deliberately wrong variants.

DESIGN §6 (power): every distribution test must also reject "the same sampler with its scale
multiplied by 0.7 and by 1.3". These mutants are kept here as fixtures, used by the harness's
power records and by ``tests/test_checks_noise.py``.

A sampler is a callable ``sampler(count, sensitivity, eps, delta, generator) -> np.ndarray``
returning ``count`` float64 draws (1-D) from a seeded ``torch.Generator``. The mutant "scale x f"
returns ``f`` times a correct draw, i.e. TLap with Laplace scale ``f b`` *and* support ``f A``
(the law of TLap(f Delta, eps, delta)): exactly what a sampler with a wrong scale produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["NoiseSampler", "FastSampler", "ScaledSampler", "FAST_SAMPLER", "SCALE_MUTANTS"]


class NoiseSampler:
    """Interface: ``label`` names the sampler; calling it returns ``count`` draws as float64 numpy."""

    label: str = "sampler"
    mutant: bool = False

    def __call__(self, count: int, sensitivity: float, eps: float, delta: float,
                 generator: torch.Generator) -> np.ndarray:  # pragma: no cover - interface
        raise TypeError("NoiseSampler is an interface; use FastSampler or ScaledSampler")


@dataclass(frozen=True)
class FastSampler(NoiseSampler):
    """The production sampler ``dpxattn.fast.noise.truncated_laplace`` (float64, seeded)."""

    label: str = "fast sampler"
    mutant: bool = False

    def __call__(self, count, sensitivity, eps, delta, generator):
        from dpxattn.fast.noise import truncated_laplace

        return truncated_laplace((int(count),), sensitivity, eps, delta, generator=generator).numpy()


@dataclass(frozen=True)
class ScaledSampler(NoiseSampler):
    """A wrong sampler: the fast sampler's draws multiplied by ``factor`` (scale and support x factor)."""

    factor: float = 1.0
    label: str = ""
    mutant: bool = True

    def __call__(self, count, sensitivity, eps, delta, generator):
        return self.factor * FastSampler()(count, sensitivity, eps, delta, generator)


FAST_SAMPLER = FastSampler()
#: the two mutants DESIGN §6 requires every distribution test to reject
SCALE_MUTANTS = (ScaledSampler(0.7, "mutant: scale x0.7"), ScaledSampler(1.3, "mutant: scale x1.3"))
