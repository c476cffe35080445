"""dpxattn.fast.DPCrossAttention: build, query, envelopes, privacy plan, validation, hygiene."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from dpxattn.errors import BoundError, ParameterError, ShapeError, UniformsError
from dpxattn.fast import DPCrossAttention
from dpxattn.fast.cross_attention import TOLERANCES
from dpxattn.fast.features import features_t
from dpxattn.randomness import LABEL_GIVEN, LABEL_SECURE, LABEL_SEEDED
from dpxattn.reference import DPCrossAttention as RefDPCrossAttention
from dpxattn.verification.conformance import ConformanceCase, plain_float64

KW = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0)


def _data(rng, n, d, d_v, m=5, R=1.0, R_w=1.0):
    K = torch.tensor(rng.random((n, d)) * R)
    V = torch.tensor(rng.uniform(-R_w, R_w, (n, d_v)))
    Q = torch.tensor(rng.random((m, d)) * R)
    return K, V, Q


def _taylor(Q, K, V, degree, scale=None):
    """Noiseless Taylor attention in float64 (sum_j T_s(scale <q,k_j>) v_j / sum_j T_s(...))."""
    sc = 1.0 / K.shape[1] if scale is None else scale
    t = sc * (Q @ K.T)
    T = sum(t**j / math.factorial(j) for j in range(degree + 1))
    return (T @ V) / T.sum(dim=1, keepdim=True)


# --- agreement with independent recomputations ---------------------------------------------------

@pytest.mark.parametrize("mechanism,n,d,d_v,s,copies", [
    ("direct", 2000, 3, 3, 3, 1), ("tree", 100, 2, 2, 2, 2), ("tree", 129, 1, 1, 3, 1)])
def test_matches_plain_float64_at_larger_n(mechanism, n, d, d_v, s, copies, rng):
    case = ConformanceCase("t", mechanism, n, d, d_v, s, copies=copies, m=7)
    K, V, Q = _data(rng, n, d, d_v, m=7)
    count = DPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=s, mechanism=mechanism,
                                         copies=copies)
    u = rng.random(count)
    att = DPCrossAttention.build(K, V, degree=s, mechanism=mechanism, uniforms=u,
                                 **({"copies": copies} if mechanism == "tree" else {}), **KW)
    plain = plain_float64(case, K.numpy(), V.numpy(), Q.numpy(), u)
    np.testing.assert_allclose(att.query(Q).numpy(), plain, rtol=1e-9, atol=1e-11)


def test_noise_count_matches_reference():
    for mech, extra in (("direct", {}), ("tree", {"copies": 3}), ("tree", {"grid_size": 5})):
        for n, d, d_v, s in ((1, 1, 1, 0), (17, 3, 2, 2), (64, 2, 4, 4)):
            assert DPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=s, mechanism=mech,
                                                **extra) == RefDPCrossAttention.noise_count(
                n=n, d=d, d_v=d_v, degree=s, mechanism=mech, **extra)
    assert DPCrossAttention.noise_count(n=10, d=2, d_v=1, degree=2) == 6 * 2
    # tree: 2 l (d_v+1) + (2N - 1) l (d_v+1) 3 r with N = 16 for n = 10
    assert DPCrossAttention.noise_count(n=10, d=2, d_v=1, degree=2, mechanism="tree",
                                        copies=2) == 2 * 2 * 2 + 31 * 2 * 2 * 3 * 6


# --- envelopes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["direct", "tree"])
@pytest.mark.parametrize("extreme", [None, 2.0**-53, 1 - 2.0**-53])
def test_envelope_holds_and_hp_is_tighter(mechanism, extreme, rng):
    n, d, d_v, s = 40, 2, 2, 3
    K, V, Q = _data(rng, n, d, d_v, m=30)
    count = DPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=s, mechanism=mechanism)
    u = rng.random(count) if extreme is None else np.full(count, extreme)
    att = DPCrossAttention.build(K, V, degree=s, mechanism=mechanism, uniforms=u, **KW)
    err = (att.query(Q) - _taylor(Q, K, V, s)).abs()
    sure = att.error_bound(Q)
    hp = att.hp_error_bound(Q, 0.01)
    assert sure.shape == hp.shape == (30, d_v) and sure.dtype == torch.float64
    assert bool((err <= sure).all())
    assert bool((hp <= sure).all()) and bool((hp > 0).all())
    if extreme is not None and mechanism == "direct":
        # power: at extreme uniforms the sure envelope is within a factor 2.5 of being attained
        assert float((err / sure).max()) > 0.4


def test_attention_envelope_against_exact_softmax(rng):
    K, V, Q = _data(rng, 60, 2, 2, m=20)
    for mechanism in ("direct", "tree"):
        att = DPCrossAttention.build(K, V, degree=4, mechanism=mechanism,
                                     generator=torch.Generator().manual_seed(9), **KW)
        w = torch.softmax(Q @ K.T / 2, dim=1)
        exact = w @ V
        kb = att.kernel_error_bound()
        assert 0 < kb < 0.1 and kb == att.kernel_error_bound()
        assert bool(((att.query(Q) - exact).abs() <= att.attention_error_bound(Q)).all())
        # the kernel part alone bounds the noiseless Taylor attention against exact attention
        assert bool(((_taylor(Q, K, V, 4) - exact).abs() <= kb).all())


def test_envelope_holds_for_float32_queries_and_tolerance(rng):
    K, V, Q = _data(rng, 300, 8, 4, m=64)
    for mechanism in ("direct", "tree"):
        att = DPCrossAttention.build(K, V, degree=3, mechanism=mechanism,
                                     generator=torch.Generator().manual_seed(5), **KW)
        a64 = att.query(Q)
        a32 = att.query(Q.float())
        assert a32.dtype == torch.float32
        tol = TOLERANCES[torch.float32]
        assert bool(((a32.double() - a64).abs() <= tol.atol * 1.0 + tol.rtol * a64.abs()).all())
        b32 = att.error_bound(Q.float())
        assert b32.dtype == torch.float64
        assert bool(((a32.double() - _taylor(Q, K, V, 3)).abs() <= b32).all())
    assert DPCrossAttention.RTOL_F64 == 1e-10 and DPCrossAttention.RTOL_F32 == 1e-4


def test_tree_float32_queries_are_evaluated_in_float64(rng):
    # the tree's float32 answer is its float64 answer at the same (float32-valued) queries, cast
    K, V, Q = _data(rng, 300, 8, 4, m=64)
    att = DPCrossAttention.build(K, V, degree=3, mechanism="tree",
                                 generator=torch.Generator().manual_seed(5), **KW)
    Q32 = Q.float()
    assert torch.equal(att.query(Q32), att.query(Q32.double()).float())


def test_scale_R_and_grid_options(rng):
    K, V, Q = _data(rng, 50, 3, 2, R=2.0, R_w=0.5)
    for mechanism, extra in (("direct", {}), ("tree", {"grid_size": 7, "copies": 2})):
        att = DPCrossAttention.build(K, V, eps=2.0, delta=1e-4, R=2.0, R_w=0.5, degree=3,
                                     scale=0.2, mechanism=mechanism,
                                     generator=np.random.default_rng(1), **extra)
        err = (att.query(Q) - _taylor(Q, K, V, 3, scale=0.2)).abs()
        assert bool((err <= att.error_bound(Q)).all())
    assert att.grid_size == 7 and att.copies == 2


# --- determinism, hygiene ---------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["direct", "tree"])
def test_determinism(mechanism, seed, rng):
    K, V, Q = _data(rng, 33, 3, 2)
    a = DPCrossAttention.build(K, V, degree=2, mechanism=mechanism,
                               generator=torch.Generator().manual_seed(seed), **KW)
    b = DPCrossAttention.build(K, V, degree=2, mechanism=mechanism,
                               generator=torch.Generator().manual_seed(seed), **KW)
    for x, y in zip(a.released_tensors().values(), b.released_tensors().values()):
        assert torch.equal(x, y)
    assert torch.equal(a.query(Q), a.query(Q)) and torch.equal(a.query(Q), b.query(Q))
    assert torch.equal(a.error_bound(Q), a.error_bound(Q))
    c = DPCrossAttention.build(K, V, degree=2, mechanism=mechanism,
                               generator=torch.Generator().manual_seed(seed + 1), **KW)
    assert not torch.equal(a.query(Q), c.query(Q))


def _reachable(obj, seen=None):
    """Everything reachable from obj through attributes, slots, dicts, sequences."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None), Fraction)):
        return
    seen.add(id(obj))
    yield obj
    children = []
    if isinstance(obj, dict):
        children = list(obj.keys()) + list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif isinstance(obj, torch.Tensor) or isinstance(obj, np.ndarray):
        children = []
    else:
        if dataclasses.is_dataclass(obj):
            children += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                children.append(getattr(obj, slot))
        if hasattr(obj, "__dict__") and not isinstance(obj, type):
            children += list(vars(obj).values())
    for c in children:
        yield from _reachable(c, seen)


@pytest.mark.parametrize("mechanism", ["direct", "tree"])
def test_nothing_private_is_reachable(mechanism, rng):
    K, V, Q = _data(rng, 20, 2, 2)
    K.requires_grad_(True)
    V.requires_grad_(True)
    att = DPCrossAttention.build(K, V, degree=2, mechanism=mechanism, generator=torch.Generator().manual_seed(3), **KW)
    att.query(Q.float())  # populate the float32 cache too
    exact_S = features_t(K.detach(), 2) @ torch.cat([V.detach(), torch.ones(20, 1, dtype=torch.float64)], 1)
    tensors = [o for o in _reachable(att) if isinstance(o, torch.Tensor)]
    assert tensors
    private = [K.detach(), V.detach(), exact_S] + [K.detach()[i] for i in range(20)] + \
              [V.detach()[i] for i in range(20)]
    storages = {K.untyped_storage().data_ptr(), V.untyped_storage().data_ptr()}
    for t in tensors:
        assert t.grad_fn is None and not t.requires_grad
        assert t.untyped_storage().data_ptr() not in storages
        flat = t.detach().double().reshape(-1)
        for p in private:
            pf = p.reshape(-1)
            if pf.numel() <= flat.numel():
                # no private vector appears as a contiguous run of a released tensor
                windows = flat.unfold(0, pf.numel(), 1)
                assert not bool(torch.isclose(windows, pf, rtol=1e-12, atol=0).all(dim=1).any())
    names = {type(o).__name__ for o in _reachable(att)}
    assert "DPCrossAttention" in names


def test_privacy_plan_labels_and_totals(rng):
    K, V, Q = _data(rng, 10, 2, 1)
    secure = DPCrossAttention.build(K, V, degree=1, noise="float", **KW)
    seeded = DPCrossAttention.build(K, V, degree=1, generator=torch.Generator(), **KW)
    given = DPCrossAttention.build(K, V, degree=1, uniforms=rng.random(6), **KW)
    hardened = DPCrossAttention.build(K, V, degree=1, **KW)  # the default: hardened, OS words
    assert secure.privacy.randomness == LABEL_SECURE
    assert hardened.privacy.randomness.startswith("secure: OS CSPRNG (os.urandom)")
    assert seeded.privacy.randomness == LABEL_SEEDED
    assert given.privacy.randomness == LABEL_GIVEN
    tree = DPCrossAttention.build(K, V, degree=1, mechanism="tree", copies=2, clip=True,
                                  generator=np.random.default_rng(0), **KW)
    assert tree.privacy.total() == (Fraction(1.0), Fraction(1e-6))
    assert tree.privacy.clip is True and "clip mode: on" in str(tree.privacy)
    assert "tree" in repr(tree) and tree.privacy.to_dict()["total_checks"]


# --- validation ------------------------------------------------------------------------------------

def test_bounds_nan_and_clip(rng):
    K, V, Q = _data(rng, 6, 2, 2)
    with pytest.raises(BoundError, match=r"K entries must lie in \[0, R\] = \[0, 1.0\]"):
        DPCrossAttention.build(K * 1.5 + 0.1, V, degree=1, **KW)
    with pytest.raises(BoundError, match=r"V entries must lie in \[-R_w, R_w\]"):
        DPCrossAttention.build(K, V * 3, degree=1, **KW)
    bad = K.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(BoundError, match="K entries must be finite"):
        DPCrossAttention.build(bad, V, degree=1, clip=True, **KW)
    badv = V.clone()
    badv[0, 0] = float("inf")
    with pytest.raises(BoundError, match="V entries must be finite"):
        DPCrossAttention.build(K, badv, degree=1, **KW)
    # the message never shows a private value
    with pytest.raises(BoundError) as info:
        DPCrossAttention.build(K + 7.25, V, degree=1, **KW)
    assert "7.25" not in str(info.value)
    # clip=True equals building on clipped data
    u = rng.random(DPCrossAttention.noise_count(n=6, d=2, d_v=2, degree=1))
    wild = DPCrossAttention.build(K * 3 - 1, V * 3, degree=1, clip=True, uniforms=u, **KW)
    tame = DPCrossAttention.build((K * 3 - 1).clamp(0, 1), (V * 3).clamp(-1, 1), degree=1,
                                  uniforms=u, **KW)
    assert torch.equal(wild.release.S, tame.release.S)
    assert torch.equal(wild.query(Q * 5), tame.query((Q * 5).clamp(0, 1)))
    with pytest.raises(BoundError, match=r"Q entries must lie in \[0, R\]"):
        tame.query(Q + 2)
    with pytest.raises(BoundError, match="Q entries must be finite"):
        tame.query(torch.full((1, 2), float("nan"), dtype=torch.float64))


def test_shapes_dtypes_devices_parameters(rng):
    K, V, Q = _data(rng, 6, 2, 2)
    att = DPCrossAttention.build(K, V, degree=1, **KW)
    cases = [
        (ShapeError, "V must have 6 rows", lambda: DPCrossAttention.build(K, V[:5], degree=1, **KW)),
        (ShapeError, "K must be a 2-D", lambda: DPCrossAttention.build(K[0], V, degree=1, **KW)),
        (ShapeError, "Q must have 2 columns", lambda: att.query(torch.zeros(1, 3, dtype=torch.float64))),
        (ShapeError, "K must have at least 1 row", lambda: DPCrossAttention.build(K[:0], V[:0], degree=1, **KW)),
        (ParameterError, "K.dtype", lambda: DPCrossAttention.build(K.to(torch.complex128), V, degree=1, **KW)),
        (ParameterError, "K.dtype", lambda: DPCrossAttention.build(K.half(), V, degree=1, **KW)),
        (ParameterError, "Q.device", lambda: att.query(torch.zeros(1, 2, device="meta"))),
        (ParameterError, "copies must be 1", lambda: DPCrossAttention.build(K, V, degree=1, copies=2, **KW)),
        (ParameterError, "grid_size must be None", lambda: DPCrossAttention.build(K, V, degree=1, grid_size=4, **KW)),
        (ParameterError, "mechanism", lambda: DPCrossAttention.build(K, V, degree=1, mechanism="flat", **KW)),
        (ParameterError, "degree", lambda: DPCrossAttention.build(K, V, degree=-1, **KW)),
        (ParameterError, "clip must be True or False", lambda: DPCrossAttention.build(K, V, degree=1, clip=1, **KW)),
        (ParameterError, "delta must satisfy", lambda: DPCrossAttention.build(K, V, degree=1, eps=1, delta=0.7, R=1, R_w=1)),
        (ParameterError, "R_w must be finite", lambda: DPCrossAttention.build(K, V, degree=1, eps=1, delta=1e-6, R=1, R_w=0)),
        (ParameterError, "generator", lambda: DPCrossAttention.build(K, V, degree=1, generator=7, **KW)),
        (UniformsError, "length", lambda: DPCrossAttention.build(K, V, degree=1, uniforms=[0.5] * 5, **KW)),
        (UniformsError, r"\(0, 1\)", lambda: DPCrossAttention.build(K, V, degree=1, uniforms=[0.0] * 9, **KW)),
        (ParameterError, "failure_prob", lambda: att.hp_error_bound(Q, 1.5)),
    ]
    for err, match, fn in cases:
        with pytest.raises(err, match=match):
            fn()
        assert issubclass(err, ValueError)
    # integer and numpy inputs are accepted (converted to float64); empty query batches too
    ok = DPCrossAttention.build(np.ones((3, 2), dtype=np.int64), V[:3].numpy(), degree=1, **KW)
    assert ok.query(torch.zeros(0, 2, dtype=torch.float64)).shape == (0, 2)


# --- autograd w.r.t. the query --------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["direct", "tree"])
def test_autograd_through_query(mechanism, rng):
    K, V, Q = _data(rng, 30, 3, 2, m=4)
    Q = (Q * 0.8 + 0.1).requires_grad_(True)
    att = DPCrossAttention.build(K, V, degree=3, mechanism=mechanism,
                                 generator=torch.Generator().manual_seed(0), **KW)
    out = att.query(Q)
    (out[:, 0].sum() + 2 * out[:, 1].sum()).backward()
    assert Q.grad is not None and bool(torch.isfinite(Q.grad).all())
    if mechanism == "direct":
        assert torch.autograd.gradcheck(lambda q: att.query(q), (Q.detach().clone().requires_grad_(),))
    else:
        # away from cell boundaries the answer is smooth in q: central differences agree
        h = 1e-6
        q0 = Q.detach()
        g = torch.zeros_like(q0)
        for i in range(q0.shape[0]):
            for j in range(q0.shape[1]):
                e = torch.zeros_like(q0)
                e[i, j] = h
                f = lambda q: (att.query(q)[:, 0].sum() + 2 * att.query(q)[:, 1].sum()).item()  # noqa: E731
                g[i, j] = (f(q0 + e) - f(q0 - e)) / (2 * h)
        close = torch.isclose(g, Q.grad, rtol=1e-4, atol=1e-6)
        assert float(close.double().mean()) >= 0.75  # a split cell may move inside [q-h, q+h]


# --- devices ---------------------------------------------------------------------------------------

def test_to_same_device_roundtrip(rng):
    K, V, Q = _data(rng, 12, 2, 1)
    for mechanism in ("direct", "tree"):
        att = DPCrossAttention.build(K, V, degree=2, mechanism=mechanism, generator=torch.Generator(), **KW)
        moved = att.to("cpu")
        assert torch.equal(moved.query(Q), att.query(Q))
        assert torch.equal(moved.error_bound(Q), att.error_bound(Q))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the same code paths run on CPU above)")
def test_cuda_matches_cpu(rng):
    K, V, Q = _data(rng, 257, 3, 2, m=64)
    for mechanism in ("direct", "tree"):
        count = DPCrossAttention.noise_count(n=257, d=3, d_v=2, degree=3, mechanism=mechanism)
        u = rng.random(count)
        cpu = DPCrossAttention.build(K, V, degree=3, mechanism=mechanism, uniforms=u, **KW)
        gpu = DPCrossAttention.build(K.cuda(), V.cuda(), degree=3, mechanism=mechanism, uniforms=u, **KW)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.query(Q.cuda()).cpu(), cpu.query(Q), rtol=1e-10, atol=1e-12)
        assert torch.equal(gpu.query(Q.cuda()), gpu.query(Q.cuda()))
        err = (gpu.query(Q.cuda()).cpu() - _taylor(Q, K, V, 3)).abs()
        assert bool((err <= gpu.error_bound(Q.cuda()).cpu()).all())
        moved = cpu.to("cuda")
        torch.testing.assert_close(moved.query(Q.cuda()).cpu(), cpu.query(Q), rtol=1e-12, atol=1e-13)
        g = torch.Generator(device="cuda").manual_seed(1)
        a = DPCrossAttention.build(K.cuda(), V.cuda(), degree=3, mechanism=mechanism, generator=g, **KW)
        g = torch.Generator(device="cuda").manual_seed(1)
        b = DPCrossAttention.build(K.cuda(), V.cuda(), degree=3, mechanism=mechanism, generator=g, **KW)
        assert torch.equal(a.query(Q.cuda()), b.query(Q.cuda()))


def test_tree_split_table_path_equals_node_gather_path(rng):
    """Both query paths of the tree (canonical-node gather; split table after amortisation)
    give the same answers (the table is a post-processing of the released nodes)."""
    K, V, Q = _data(rng, 1000, 2, 2, m=4)
    att = DPCrossAttention.build(K, V, degree=2, mechanism="tree", copies=2,
                                 generator=torch.Generator().manual_seed(4), **KW)
    rel = att.release
    assert rel._split is None
    by_nodes = att.query(Q)  # 4 tokens x 2h << G = 1000: gathers canonical nodes
    assert rel._split is None
    table = rel.split_table()
    assert table.shape == (1000, rel.payload.shape[1], 2, 3, 3)
    by_table = att.query(Q)
    torch.testing.assert_close(by_table, by_nodes, rtol=1e-12, atol=1e-12)
    assert bool(((by_table - _taylor(Q, K, V, 2)).abs() <= att.error_bound(Q)).all())
    fresh = DPCrossAttention.build(K, V, degree=2, mechanism="tree", copies=2,
                                   generator=torch.Generator().manual_seed(4), **KW)
    fresh.query(torch.rand(60, 2, dtype=torch.float64))  # 60 tokens x 2h >= G: table built
    assert fresh.release._split is not None
