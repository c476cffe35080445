"""Refusing what cannot fit (src/dpxattn/memory.py): clear errors before allocation."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest
import torch

from dpxattn.errors import ParameterError, ResourceError
from dpxattn.fast import DPCrossAttention
from dpxattn.memory import BUDGET_ENV, check_build_memory, memory_budget, structure_bytes
from dpxattn.reference import DPCrossAttention as RefDPCrossAttention

KW = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0)


def test_huge_feature_dimension_is_refused_at_once():
    K = torch.rand(100, 16, dtype=torch.float64)
    V = torch.rand(100, 8, dtype=torch.float64)
    t = time.perf_counter()
    with pytest.raises(ResourceError, match=r"r = C\(d \+ s, s\) = 7,307,872,110 features"):
        DPCrossAttention.build(K, V, degree=20, noise="float", generator=torch.Generator(), **KW)
    with pytest.raises(ResourceError, match="reference direct build"):
        RefDPCrossAttention.build(K[:2].numpy(), V[:2].numpy(), degree=20,
                                  generator=np.random.default_rng(0), **KW)
    assert time.perf_counter() - t < 5.0  # refused before any r-sized work (it used to hang)


def test_a_tree_beyond_the_budget_is_refused(monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "64MiB")
    K = torch.rand(4096, 4, dtype=torch.float64)
    V = torch.rand(4096, 4, dtype=torch.float64)
    with pytest.raises(ResourceError, match="beyond the memory budget of 0.0625 GiB"):
        DPCrossAttention.build(K, V, degree=3, mechanism="tree", noise="float",
                               generator=torch.Generator(), **KW)
    # the same build within a larger stated budget goes ahead (direct is small)
    DPCrossAttention.build(K, V, degree=3, noise="float", generator=torch.Generator(), **KW)


@pytest.mark.parametrize("text,value", [("1024", 1024), ("2KiB", 2048), ("1.5GiB", 3 << 29)])
def test_budget_from_the_environment(monkeypatch, text, value):
    monkeypatch.setenv(BUDGET_ENV, text)
    assert memory_budget() == value


@pytest.mark.parametrize("text", ["lots", "-1", "0GiB"])
def test_bad_budget_is_a_clear_error(monkeypatch, text):
    monkeypatch.setenv(BUDGET_ENV, text)
    with pytest.raises(ParameterError, match=BUDGET_ENV):
        memory_budget()


def test_default_budget_is_half_the_machine(monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert 1 << 28 < memory_budget() < 1 << 50


def test_estimate_covers_the_measured_peak():
    """The estimate is an upper estimate of the build's peak resident memory (d = 16, s = 5)."""
    K = torch.rand(100, 16, dtype=torch.float64)
    V = torch.rand(100, 8, dtype=torch.float64)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    DPCrossAttention.build(K, V, degree=5, noise="float", generator=torch.Generator(), **KW)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown <= structure_bytes(mechanism="direct", n=100, d=16, d_v=8, degree=5)


def test_estimates_grow_with_the_structure():
    small = structure_bytes(mechanism="tree", n=1 << 16, d=2, d_v=2, degree=2)
    assert structure_bytes(mechanism="tree", n=1 << 17, d=2, d_v=2, degree=2) > 1.9 * small
    assert structure_bytes(mechanism="tree", n=1 << 16, d=2, d_v=2, degree=2, copies=3) > 2.9 * small
    assert check_build_memory(mechanism="direct", n=10, d=2, d_v=2, degree=2) > 0
