"""dpxattn.fast.tree: flat level-order DPTree, batched canonical decompositions (PAPER §3.1)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dpxattn.errors import BoundError, ParameterError
from dpxattn.fast.noise import tlap_constants, tlap_ppf
from dpxattn.fast.tree import (DPTree, canonical_nodes, fill_internal_nodes, gather_sums,
                               grid_cell, histogram_rows, node_count, prefix_suffix_nodes,
                               range_sums)
from dpxattn.reference import dptree as ref_dptree


def _interval(node: int, N: int) -> tuple[int, int]:
    level = (node + 1).bit_length() - 1
    j = node - ((1 << level) - 1)
    w = N >> level
    return j * w, (j + 1) * w - 1


def _python_walk(lo: int, hi: int, N: int) -> list[int]:
    """A per-query walk (the slow path the batched gather replaces): the reference's."""
    return list(ref_dptree.canonical_decomposition(lo, hi, N))


@pytest.mark.parametrize("N", [1, 2, 4, 8, 16, 32])
def test_canonical_nodes_exhaustive(N):
    pairs = [(lo, hi) for lo in range(N) for hi in range(lo, N)]
    lo = torch.tensor([p[0] for p in pairs])
    hi = torch.tensor([p[1] for p in pairs])
    got = canonical_nodes(lo, hi, N)
    h = N.bit_length() - 1
    for (a, b), row in zip(pairs, got.tolist()):
        nodes = sorted(x for x in row if x >= 0)
        assert nodes == sorted(_python_walk(a, b, N))
        covered = sorted(leaf for x in nodes for leaf in range(_interval(x, N)[0], _interval(x, N)[1] + 1))
        assert covered == list(range(a, b + 1))
        assert len(nodes) <= max(1, 2 * h - 2)
        if a == 0:
            assert len(nodes) == (1 if b == N - 1 else bin(b + 1).count("1"))
    empty = canonical_nodes(torch.tensor([3]), torch.tensor([2]), 8)
    assert bool((empty < 0).all())


def test_fill_internal_nodes_and_range_sums(rng):
    N, w = 16, 3
    leaves = torch.tensor(rng.normal(size=(N, w)))
    nodes = torch.zeros(node_count(N), w, dtype=torch.float64)
    nodes[N - 1:] = leaves
    fill_internal_nodes(nodes)
    for i in range(N - 1):
        a, b = _interval(i, N)
        torch.testing.assert_close(nodes[i], leaves[a:b + 1].sum(0), rtol=1e-13, atol=1e-13)
    lo = torch.tensor(rng.integers(0, N, 200))
    hi = torch.maximum(lo, torch.tensor(rng.integers(0, N, 200)))
    got = range_sums(nodes, lo, hi)
    want = torch.stack([leaves[a:b + 1].sum(0) for a, b in zip(lo.tolist(), hi.tolist())])
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
    # strided payload views work (a column slice of a wider array)
    wide = torch.zeros(node_count(N), 2 * w, dtype=torch.float64)
    wide[N - 1:, ::2] = leaves
    fill_internal_nodes(wide[:, ::2])
    assert torch.equal(wide[:, ::2], nodes)


@given(st.integers(0, 6), st.data())
def test_prefix_plus_suffix_covers_the_grid(h, data):
    G = data.draw(st.integers(max(1, 2 ** (h - 1) + (h > 0)), 2**h)) if h else 1
    j = data.draw(st.integers(0, G - 1))
    nodes = prefix_suffix_nodes(torch.tensor([j]), G)[0].tolist()
    N = 2**h
    leaves = sorted(x for n in nodes if n >= 0 for x in range(_interval(n, N)[0], _interval(n, N)[1] + 1))
    assert leaves == list(range(G))


def test_gather_sums_empty_bags_and_grid_cells():
    table = torch.arange(12, dtype=torch.float64).view(4, 3)
    rows = torch.tensor([[0, -1, 3], [-1, -1, -1], [2, 2, -1]])
    got = gather_sums(table, rows)
    want = torch.stack([table[0] + table[3], torch.zeros(3, dtype=torch.float64), 2 * table[2]])
    assert torch.equal(got, want)
    x = torch.tensor([0.0, 0.249, 0.25, 0.999, 1.0], dtype=torch.float64)
    assert grid_cell(x, 1.0, 4).tolist() == [0, 0, 1, 3, 3]
    assert grid_cell(x * 2, torch.tensor(2.0, dtype=torch.float64), 4).tolist() == [0, 0, 1, 3, 3]
    out = torch.zeros(4, 2, dtype=torch.float64)
    histogram_rows(out, torch.tensor([1, 3, 1]), torch.ones(3, 2, dtype=torch.float64))
    assert out[:, 0].tolist() == [0, 2, 0, 1]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9])
def test_dptree_matches_reference_with_shared_uniforms(n, rng):
    vals = rng.uniform(-1, 1, n)
    u = rng.random(2 * (1 << (n - 1).bit_length()) - 1)
    fast = DPTree.build(torch.tensor(vals), sensitivity=2, eps=0.7, delta=1e-5, uniforms=u)
    ref = ref_dptree.DPTree.build(vals.tolist(), sensitivity=2, eps=0.7, delta=1e-5, uniforms=u)
    np.testing.assert_allclose(fast.nodes[:, 0].numpy(), [float(x) for x in ref.noisy],
                               rtol=1e-12, atol=1e-12)
    pairs = [(a, b) for a in range(n) for b in range(a, n)]
    lo, hi = zip(*pairs)
    got = fast.query(lo, hi)[:, 0].tolist()
    bound = fast.sure_error_bound(lo, hi)[:, 0].tolist()
    for (a, b), g, e in zip(pairs, got, bound):
        assert g == pytest.approx(float(ref.query(a, b)), rel=1e-12, abs=1e-12)
        assert e == pytest.approx(float(ref.sure_error_bound(a, b)), rel=1e-12)
        assert abs(g - vals[a:b + 1].sum()) <= e


def test_dptree_error_is_the_sum_of_its_canonical_noises(rng):
    """Zero data: node values ARE the noises; the answer on data = exact + those noises."""
    n, w = 11, 2
    vals = rng.uniform(-1, 1, (n, w))
    N = 16
    u = rng.random((2 * N - 1) * w)
    sens = [1.0, 3.0]
    tree = DPTree.build(torch.tensor(vals), sensitivity=sens, eps=1.0, delta=1e-6, uniforms=u)
    zero = DPTree.build(torch.zeros(n, w, dtype=torch.float64), sensitivity=sens, eps=1.0,
                        delta=1e-6, uniforms=u)
    L = 5
    for c in range(w):
        z = tlap_ppf(torch.tensor(u[c::w]), sens[c], Fraction(1, L), Fraction(1e-6) / L)
        torch.testing.assert_close(zero.nodes[:, c], z, rtol=0, atol=0)
    lo = torch.tensor([0, 3, 5, 10])
    hi = torch.tensor([10, 9, 5, 10])
    exact = torch.stack([torch.tensor(vals[a:b + 1].sum(0)) for a, b in zip(lo.tolist(), hi.tolist())])
    torch.testing.assert_close(tree.query(lo, hi) - exact, zero.query(lo, hi), rtol=0, atol=1e-13)
    k = tlap_constants(3.0, Fraction(1, L), Fraction(1e-6) / L)
    assert float(zero.law.support_up[1]) == k.support_up


def test_dptree_determinism_validation_and_plan(seed):
    vals = torch.linspace(-1, 1, 9, dtype=torch.float64)
    a = DPTree.build(vals, sensitivity=1, eps=1, delta=1e-6, generator=torch.Generator().manual_seed(seed))
    b = DPTree.build(vals, sensitivity=1, eps=1, delta=1e-6, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(a.nodes, b.nodes)
    assert torch.equal(a.query([0, 2], [8, 4]), a.query([0, 2], [8, 4]))
    assert "seeded" in a.plan.randomness
    assert a.plan.total() == (Fraction(1), Fraction(1e-6))
    with pytest.raises(ParameterError, match="range"):
        a.query([3], [2])
    with pytest.raises(ParameterError, match="range"):
        a.query([0], [9])
    with pytest.raises(BoundError, match="finite"):
        DPTree.build(torch.tensor([1.0, float("nan")]), sensitivity=1, eps=1, delta=1e-6)
    assert not hasattr(a, "__dict__")  # slots only: nothing but the public fields


def test_batched_gather_agrees_with_per_query_walk(rng):
    """The batched gather (2000 ranges in one call) agrees with a per-query Python walk."""
    N = 1 << 12
    leaves = torch.tensor(rng.normal(size=(N, 1)))
    nodes = torch.zeros(node_count(N), 1, dtype=torch.float64)
    nodes[N - 1:] = leaves
    fill_internal_nodes(nodes)
    lo = torch.tensor(rng.integers(0, N, 2000))
    hi = torch.maximum(lo, torch.tensor(rng.integers(0, N, 2000)))
    got = range_sums(nodes, lo, hi)[:, 0]
    slow = torch.tensor([float(nodes[_python_walk(a, b, N), 0].sum()) for a, b in
                         zip(lo.tolist()[:200], hi.tolist()[:200])], dtype=torch.float64)
    torch.testing.assert_close(got[:200], slow, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("G", [1, 2, 3, 5, 8, 13, 16, 17, 31, 64, 100])
def test_split_sums_equal_the_canonical_prefix_and_suffix_sums(G, rng, monkeypatch):
    from dpxattn.accounting import padded_size
    import dpxattn.fast.tree as tree_mod
    from dpxattn.fast.tree import split_sums

    N = padded_size(G)
    nodes = torch.tensor(rng.normal(size=(2 * N - 1, 5)))
    want = gather_sums(nodes, prefix_suffix_nodes(torch.arange(G), G))
    torch.testing.assert_close(split_sums(nodes, G), want, rtol=1e-13, atol=1e-13)
    monkeypatch.setattr(tree_mod, "SPLIT_CHUNK_ELEMENTS", 2 * G)  # column chunks of 2
    torch.testing.assert_close(split_sums(nodes, G), want, rtol=1e-13, atol=1e-13)


def test_grid_cells_match_the_reference_rule(rng):
    from dpxattn.reference.dptree_distance import grid_cell as ref_cell

    for M, G in ((1.0, 7), (0.7071067811865476, 16), (2.5, 1000), (1.0, 1)):
        xs = np.concatenate([rng.random(200) * M, [0.0, M, M / 2, M * 0.999999]])
        got = grid_cell(torch.tensor(xs), M, G).tolist()
        assert got == [ref_cell(float(x), M, G) for x in xs]
