"""Shared test configuration: hypothesis profiles and per-test seeds derived from one root."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from dpxattn.randomness import derive_seed

# CI is deterministic (derandomized hypothesis, fixed root seed); set DPXATTN_ROOT_SEED to vary.
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT_SEED = int(os.environ.get("DPXATTN_ROOT_SEED", "20260728"))


@pytest.fixture
def seed(request) -> int:
    """A seed derived from the root seed and this test's id (reproducible, order-independent)."""
    return derive_seed(ROOT_SEED, request.node.nodeid)


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """A seeded numpy Generator for this test (tests only: never for production noise)."""
    return np.random.default_rng(seed)


@pytest.fixture
def reversed_uniform_order(monkeypatch):
    """Mutant (power fixture): the fast releases consume their uniforms reversed per chunk.

    Patches ``release_`` where the direct and tree mechanisms call it; conformance from shared
    uniforms must catch it."""
    import dpxattn.fast.release as fast_release

    original = fast_release.release_

    class Reversed:
        def __init__(self, stream):
            self.stream = stream

        def take(self, k):
            return self.stream.take(k).flip(0)

    def wrong(values, law, stream):
        return original(values, law, Reversed(stream))

    monkeypatch.setattr("dpxattn.fast.direct.release_", wrong)
    monkeypatch.setattr("dpxattn.fast.tree_mechanism.release_", wrong)
    return wrong
