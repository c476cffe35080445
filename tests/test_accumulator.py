"""The streaming build (fast/accumulator.py, fast/exact_sum.py, reference/exact_accumulation.py):
exact and layout-independent sums, the n-independent sensitivity, consumption, bad input.
Proof note: proofs_notes/30-exact-accumulation.md."""

from __future__ import annotations

import itertools
import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from dpxattn.errors import BoundError, ParameterError
from dpxattn.fast import DPCrossAttention
from dpxattn.fast.accumulator import Accumulator, AccumulatorError, exact_constants
from dpxattn.fast.exact_sum import combine
from dpxattn.fast.features import features_t

P = dict(d=2, d_v=2, degree=2, R=1.0, R_w=1.0)


def _data(n, seed=0, d=2, d_v=2):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, d)), rng.uniform(-1, 1, (n, d_v))


def _acc(K, V, chunks=(None,), **kw):
    acc = Accumulator(**{**P, **kw})
    if chunks == (None,):
        acc.add(K, V)
    else:
        for lo, hi in zip((0,) + chunks, chunks + (len(K),)):
            acc.add(K[lo:hi], V[lo:hi])
    return acc


def _python_integer_sums(K, V, a, b, degree=2):
    """sum_i round(P_i 2^a) round(W_i 2^b) in Python integers from the same float64 features:
    (r, d_v + 1) nested lists of ints (S~ 2^(a+b))."""
    n = len(K)
    F = features_t(torch.tensor(K), degree).numpy()  # (r, n)
    W = np.hstack([V, np.ones((n, 1))])
    Pq = [[int(x) for x in np.round(row * 2.0**a)] for row in F]
    Wq = [[int(x) for x in col] for col in np.round(W * 2.0**b).T]
    return [[sum(p * w for p, w in zip(Pq[t], Wq[k])) for k in range(W.shape[1])]
            for t in range(len(Pq))]


@pytest.mark.parametrize("case", ["uniform", "extreme"])
def test_sums_are_exact_integers_of_the_rounded_rows(case):
    """combine(state) is the Python-integer sum of the rounded rows. "extreme": every key near
    the corner (R, R) and values +-(1 - 2^-20) R_w (odd lattice integers), so every product is near the 2^41 lattice bound and each
    2^11-row GEMM's sums near 2^52 (the exactness argument's limit), over several GEMMs and
    carries (n = 8 GEMM_ROWS + 5; in one GEMM its sums would pass 2^53)."""
    from dpxattn.reference.exact_accumulation import GEMM_ROWS

    if case == "uniform":
        K, V = _data(37)
    else:
        n = 8 * GEMM_ROWS + 5
        rng = np.random.default_rng(9)
        K = 1.0 - 1e-6 * rng.uniform(size=(n, 2))  # features near their bounds, odd integers
        V = np.where(rng.uniform(size=(n, 2)) < 0.9, 1.0, -1.0) * (1 - 2.0**-20)
    acc = _acc(K, V)
    want = _python_integer_sums(K, V, acc.a, acc.b)
    high, low = acc._state.tolist()
    assert [[(h << 32) + lo for h, lo in zip(*rows)] for rows in zip(high, low)] == want
    assert combine(acc._state, acc.a, acc.b).tolist() == [
        [float(Fraction(x, 1 << (acc.a + acc.b))) for x in row] for row in want]
    assert bool((acc._state[1] >= 0).all()) and bool((acc._state[1] < 2**32).all())


def test_any_chunking_order_or_sharding_gives_the_same_sums_bit_for_bit():
    K, V = _data(500, seed=1)
    one = _acc(K, V)
    chunked = _acc(K, V, chunks=(3, 97, 98, 400))
    perm = np.random.default_rng(2).permutation(500)
    shuffled = _acc(K[perm], V[perm], chunks=(250,))
    left, right = _acc(K[:123], V[:123]), _acc(K[123:], V[123:])
    merged = right.merge(left)
    for other in (chunked, shuffled, merged):
        assert torch.equal(one._state, other._state) and one.n == other.n == 500
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    a = one.release(eps=1.0, delta=1e-6, generator=g(), noise="float")
    b = merged.release(eps=1.0, delta=1e-6, generator=g(), noise="float")
    assert torch.equal(a.release.S, b.release.S)


def test_release_agrees_with_build_from_the_same_uniforms():
    """float mode, same uniforms: the answers differ only by the lattice rounding and the
    noise scale's allowance for it (the sensitivity grows by 2 sum e, relative 1.3e-6 here)."""
    K, V = _data(300, seed=3)
    Q = torch.tensor(_data(20, seed=4)[0])
    count = DPCrossAttention.noise_count(n=300, d=2, d_v=2, degree=2)
    u = np.random.default_rng(5).uniform(size=count)
    acc = _acc(K, V).release(eps=1.0, delta=1e-6, uniforms=u)
    built = DPCrossAttention.build(torch.tensor(K), torch.tensor(V), eps=1.0, delta=1e-6,
                                   uniforms=u, **{k: P[k] for k in ("R", "R_w", "degree")})
    assert torch.allclose(acc.query(Q), built.query(Q), rtol=1e-5, atol=1e-9)
    ratio = acc.privacy.components[0].sensitivity_value / built.privacy.components[0].sensitivity_value
    assert 1 < ratio < 1 + 1e-5
    assert "exact accumulation" in " ".join(acc.privacy.notes)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_sensitivity_does_not_grow_with_n(norm):
    """The target: the sensitivity at n = 1e9 <= 1.0001 x its value at n = 1e3
    (canonical configuration); float64 sums' allowance grows 126x over the same range."""
    from dpxattn.fast.sensitivities import direct_secure_constants

    cfg = dict(d=8, degree=3, R=1.0, R_w=1.0, d_v=8, norm=norm)
    small = exact_constants(n=10**3, **cfg)
    big = exact_constants(n=10**9, **cfg)
    assert big[2] <= 1.0001 * small[2] and small[2] >= small[4]
    if norm == "l1":
        old = [direct_secure_constants(n=n, d=8, degree=3, R=1.0, R_w=1.0, d_v=8)[0]
               for n in (10**3, 10**9)]
        assert old[1] / old[0] > 100


def test_sensitivity_bounds_the_rounded_statistic_on_corner_pairs():
    """Exact brute force: every neighbouring pair of corner rows (keys in {0, R}^d, values in
    {-R_w, R_w}^d_v) moves the accumulated S~ by at most the released sensitivity, l1 and l2."""
    d, d_v, s = 1, 1, 2
    cfg = dict(d=d, d_v=d_v, degree=s, R=1.0, R_w=1.0)
    rows = [(k, v) for k in itertools.product((0.0, 1.0), repeat=d)
            for v in itertools.product((-1.0, 1.0), repeat=d_v)]
    base_K, base_V = _data(3, seed=6, d=d, d_v=d_v)
    l1 = exact_constants(n=4, d=d, degree=s, R=1.0, R_w=1.0, d_v=d_v, norm="l1")[2]
    l2 = exact_constants(n=4, d=d, degree=s, R=1.0, R_w=1.0, d_v=d_v, norm="l2")[2]

    def S(row):
        acc = Accumulator(**cfg)
        acc.add(np.vstack([base_K, [row[0]]]), np.vstack([base_V, [row[1]]]))
        return combine(acc._state, acc.a, acc.b).numpy()

    worst1 = worst2 = 0.0
    for x, y in itertools.product(rows, repeat=2):
        diff = S(x) - S(y)
        worst1, worst2 = max(worst1, np.abs(diff).sum()), max(worst2, np.sqrt((diff**2).sum()))
    assert worst1 <= l1 and worst2 <= l2
    assert worst1 > 0.5 * l1  # the bound is not vacuous


def test_memory_mapped_input(tmp_path):
    K, V = _data(200, seed=8)
    np.save(tmp_path / "K.npy", K)
    np.save(tmp_path / "V.npy", V)
    mm = _acc(np.load(tmp_path / "K.npy", mmap_mode="r"), np.load(tmp_path / "V.npy", mmap_mode="r"))
    assert torch.equal(mm._state, _acc(K, V)._state)


def _rss_mib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's VmRSS")
def test_memory_map_pages_are_given_back(tmp_path):
    """One add of a 96 MiB read-only map: the resident set grows by far less than the file
    (the copied rows' pages are given back with MADV_DONTNEED; without it the whole file stays
    resident), the sums equal an in-memory add, and a copy-on-write map keeps its private
    change (it is never given back)."""
    n = 1 << 20
    K = np.lib.format.open_memmap(tmp_path / "K.npy", mode="w+", dtype=np.float64, shape=(n, 2))
    V = np.lib.format.open_memmap(tmp_path / "V.npy", mode="w+", dtype=np.float64, shape=(n, 10))
    rng = np.random.default_rng(21)
    for start in range(0, n, 1 << 17):
        K[start:start + (1 << 17)] = rng.uniform(size=(1 << 17, 2))
        V[start:start + (1 << 17)] = rng.uniform(-1, 1, size=(1 << 17, 10))
    K.flush(), V.flush()
    del K, V
    K = np.load(tmp_path / "K.npy", mmap_mode="r")
    V = np.load(tmp_path / "V.npy", mmap_mode="r")
    before = _rss_mib()
    acc = Accumulator(**{**P, "d_v": 10}).add(K, V)
    grown = _rss_mib() - before
    assert grown < 96 // 3, grown
    assert torch.equal(acc._state, Accumulator(**{**P, "d_v": 10}).add(np.array(K),
                                                                       np.array(V))._state)
    Kc = np.load(tmp_path / "K.npy", mmap_mode="c")
    Kc[5, 0] = 0.125
    Accumulator(**{**P, "d_v": 10}).add(Kc[:1 << 17], V[:1 << 17])
    assert Kc[5, 0] == 0.125


def test_memory_maps_are_read_from_their_files(tmp_path, monkeypatch):
    """Rows of read-only maps are read with preadv at the right file position: sliced views and
    float32 maps give the sums of the same rows in memory; a wrong position (the map's start
    computed with another granularity) is caught by the first/last-row comparison and falls
    back to copying through the map, with the same sums."""
    import mmap

    import dpxattn.fast.accumulator as fa

    K, V = _data(3000, seed=22)
    np.save(tmp_path / "K.npy", K)
    np.save(tmp_path / "V.npy", V)
    np.save(tmp_path / "V32.npy", V.astype(np.float32))
    Km = np.load(tmp_path / "K.npy", mmap_mode="r")
    Vm = np.load(tmp_path / "V.npy", mmap_mode="r")
    V32 = np.load(tmp_path / "V32.npy", mmap_mode="r")
    part = Km[1234:2345]
    assert np.array_equal(fa._read_mapped_rows(part), K[1234:2345])
    assert torch.equal(_acc(Km[7:], Vm[7:])._state, _acc(K[7:], V[7:])._state)
    assert torch.equal(_acc(Km, V32)._state, _acc(K, V.astype(np.float32).astype(np.float64))._state)
    assert fa._read_mapped_rows(np.load(tmp_path / "K.npy", mmap_mode="c")[:5]) is None
    monkeypatch.setattr(mmap, "ALLOCATIONGRANULARITY", 64)  # header offset 128: position off
    assert fa._read_mapped_rows(part) is None
    assert torch.equal(_acc(Km, Vm)._state, _acc(K, V)._state)


def test_secure_and_gaussian_releases():
    K, V = _data(400, seed=9)
    for law in ("tlap", "gaussian"):
        att = _acc(K, V).release(eps=1.0, delta=1e-6, law=law)
        assert att.noise == "secure" and att.law == law and att.privacy.total_checks()
        Q = torch.tensor(_data(5, seed=10)[0])
        assert att.query(Q).shape == (5, 2)


@pytest.mark.parametrize("mechanism,law,extra", [
    ("direct", "tlap", {}), ("direct", "gaussian", {}), ("tree", "tlap", {"copies": 3}),
    ("tree", "tlap", {"composition": "pld"}), ("tree", "gaussian", {"grid_size": 8}),
    ("direct", "gaussian", {"domain": "ball", "clip": True})])
def test_secure_build_is_one_add_and_release(mechanism, law, extra):
    """build in secure mode (the default) IS one add and one release: with the same seeded
    generator the released numbers and the plan are identical. Fails if build computes float64
    sums with their allowance (other sensitivities, other lattice, other numbers)."""
    K, V = _data(70, seed=21)
    if extra.get("domain") == "ball":
        K = K * 1.2 - 0.5  # some rows outside the unit ball: clipped the same way on both paths
    public = {**P, "mechanism": mechanism, **{k: extra[k] for k in ("domain", "clip") if k in extra}}
    if mechanism == "tree":
        public["grid_size"] = extra.get("grid_size", 70)
    options = {k: extra[k] for k in ("copies", "composition") if k in extra}
    built = DPCrossAttention.build(torch.tensor(K), torch.tensor(V), eps=1.0, delta=1e-6, law=law,
                                   noise="secure", generator=torch.Generator().manual_seed(4),
                                   **{k: v for k, v in public.items() if k not in ("d", "d_v")},
                                   **options)
    acc = Accumulator(**public)
    acc.add(K, V)
    released = acc.release(eps=1.0, delta=1e-6, law=law, noise="secure",
                           generator=torch.Generator().manual_seed(4), **options)
    for name, x in built.released_tensors().items():
        assert torch.equal(x, released.released_tensors()[name]), name
    assert built.privacy.to_dict() == released.privacy.to_dict()
    assert "exact accumulation" in " ".join(built.privacy.notes)
    assert "exactly accumulated" in " ".join(built.privacy.notes)  # the hardened note says so


def test_the_ball_domain():
    rng = np.random.default_rng(11)
    K = rng.normal(size=(100, 2))
    K /= np.linalg.norm(K, axis=1, keepdims=True) * 1.01
    V = rng.uniform(-1, 1, (100, 2))
    att = _acc(K, V, domain="ball").release(eps=1.0, delta=1e-6, law="gaussian", noise="float",
                                            generator=torch.Generator().manual_seed(0))
    assert att.domain == "ball"


def test_consumption_and_bad_input():
    K, V = _data(10)
    acc = _acc(K, V)
    acc.release(eps=1.0, delta=1e-6, generator=torch.Generator().manual_seed(0))
    for call in (lambda: acc.release(eps=1.0, delta=1e-6), lambda: acc.add(K, V)):
        with pytest.raises(AccumulatorError, match="already released"):
            call()
    with pytest.raises(AccumulatorError, match="no rows"):
        Accumulator(**P).release(eps=1.0, delta=1e-6)
    with pytest.raises(AccumulatorError, match="same public"):
        Accumulator(**P).merge(Accumulator(**{**P, "R_w": 2.0}))
    with pytest.raises(AccumulatorError, match="grid_size"):
        Accumulator(mechanism="tree", **P)  # the tree's grid must be fixed before the rows
    with pytest.raises(BoundError):
        Accumulator(**P).add(K + 1.5, V)
    with pytest.raises(ParameterError, match="d = 2"):
        Accumulator(**P).add(K[:, :1], V)
    with pytest.raises(ParameterError):
        Accumulator(**P).add(K, V).release(eps=-1.0, delta=1e-6)
    clipped = Accumulator(**P, clip=True).add(K + 1.5, V)
    assert clipped.n == 10
    acc = Accumulator(**P).add(K, V)
    with pytest.raises(AccumulatorError, match="into itself"):
        acc.merge(acc)
    assert acc.n == 10 and acc._state is not None


def test_the_ball_refuses_what_build_refuses():
    """An odd degree on the ball with T_s(-scale R^2) <= 0 (no public denominator floor) is
    refused at construction, as build refuses it (T_3(-4) = -17/3); T_3(-1) = 1/3 is fine."""
    with pytest.raises(ParameterError, match="T_s|degree"):
        Accumulator(**{**P, "degree": 3}, domain="ball", scale=4.0)
    Accumulator(**{**P, "degree": 3}, domain="ball", scale=1.0)


def test_cli_build_streams_memory_maps(tmp_path, capsys):
    """`dpxattn build --stream`: chunks of the memory-mapped files through the accumulator, a
    progress line on stderr, the structure saved and served like build's; the tree streams too
    (its grid n by default, as build's)."""
    from dpxattn.cli import main

    K, V = _data(300, seed=12)
    np.save(tmp_path / "K.npy", K)
    np.save(tmp_path / "V.npy", V)
    np.save(tmp_path / "Q.npy", _data(4, seed=13)[0])
    args = ["build", "--keys", str(tmp_path / "K.npy"), "--values", str(tmp_path / "V.npy"),
            "--eps", "1", "--delta", "1e-6", "--R", "1", "--R-w", "1", "--degree", "2",
            "--stream", "--chunk-rows", "64"]
    assert main(args + ["--out", str(tmp_path / "s.npz")]) == 0
    captured = capsys.readouterr()
    assert "accumulated 300 / 300 rows (100%)" in captured.err
    assert "exact accumulation" in captured.out
    att = DPCrossAttention.load(tmp_path / "s.npz")
    assert att.n == 300 and att.query(torch.tensor(np.load(tmp_path / "Q.npy"))).shape == (4, 2)
    assert main(args + ["--mechanism", "tree", "--out", str(tmp_path / "t.npz")]) == 0
    tree = DPCrossAttention.load(tmp_path / "t.npz")
    assert tree.mechanism == "tree" and tree.grid_size == 300 and tree.release.lattice
    assert "accumulated 300 / 300 rows (100%)" in capsys.readouterr().err


@pytest.mark.parametrize("domain", ["box", "ball"])
def test_envelope_covers_the_lattice_rounding(domain):
    """The released S~ deviates from the exact S by the rounding of every row (up to
    n 2^-(a+1) W per entry), far more than the float64 build's gamma(n + s + 3) covers at small
    n: the fast path's fp_allowance adds it (lattice = (a, b)). 1000 copies of one row make the
    rounding errors add coherently; the exact numerators come from the reference's 160-bit
    features of the same float64 rows. The old allowance (lattice dropped) fails here."""
    from dpxattn.reference import kernel
    from dpxattn.reference._mp import to_fraction

    n = 1000
    k = np.array([[0.3141592653589793, 0.2718281828459045]])
    if domain == "ball":
        k = k - 0.45
    v = np.array([[0.7777777777777777, -0.123456789012345]])
    K, V = np.repeat(k, n, axis=0), np.repeat(v, n, axis=0)
    acc = _acc(K, V, domain=domain)
    S_rounded = combine(acc._state, acc.a, acc.b)  # (r, d_v + 1) float64 of the exact S~
    att = acc.release(eps=1.0, delta=1e-6, noise="float", law="gaussian" if domain == "ball"
                      else "tlap", generator=torch.Generator().manual_seed(0))
    rel = att.release
    Q = torch.tensor([[0.5, 0.25], [1.0, 0.0]], dtype=torch.float64) * (0.6 if domain == "ball"
                                                                       else 1.0)
    terms = rel.envelope_terms(Q)
    U = terms.U.numpy() if domain == "box" else features_t(Q, 2, scale=rel.scale).t().numpy()
    feats = kernel.features([Fraction(x) for x in k[0]], 2, scale=rel.scale, prec=160)
    W = [Fraction(x) for x in v[0]] + [Fraction(1)]
    worst = 0.0
    for col, weight in enumerate([P["R_w"]] * 2 + [1.0]):
        exact = [n * sum(Fraction(float(U[q, t])) * to_fraction(f) * W[col]
                         for t, f in enumerate(feats)) for q in range(len(Q))]
        got = [sum(Fraction(float(U[q, t])) * Fraction(float(S_rounded[t, col]))
                   for t in range(U.shape[1])) for q in range(len(Q))]
        dev = np.array([float(abs(g - e)) for g, e in zip(got, exact)])
        den = col == 2  # the denominator column: weight 1, not rounded
        allowed = rel.fp_allowance(terms, weight, torch.float64, U.shape[1],
                                   denominator=den).numpy()
        assert np.all(dev <= allowed), (col, dev, allowed)
        lattice, rel.lattice = rel.lattice, None
        worst = max(worst, float((dev / rel.fp_allowance(terms, weight, torch.float64,
                                                         U.shape[1], denominator=den)
                                  .numpy()).max()))
        rel.lattice = lattice
    assert worst > 10, worst  # without the lattice term the allowance is far too small
