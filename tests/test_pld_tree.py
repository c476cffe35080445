"""The tree with ``composition="pld"`` (optimal composition of its TLap components): the plan,
the noise it saves, validation, and save/load. Conformance rows: verification/conformance.py
("... pld ..."). Proof note: proofs_notes/05-composition.md ("Optimal composition")."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from dpxattn.accounting import plan_tree
from dpxattn.errors import ParameterError
from dpxattn.fast import DPCrossAttention
from dpxattn.reference import optimal_composition as oc
from dpxattn.reference.cross_attention import DPCrossAttention as RefAttention

CFG = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0, degree=2, mechanism="tree")


def _data(n=64, d=2, d_v=2, seed=0):
    rng = np.random.default_rng(seed)
    return (torch.tensor(rng.uniform(0, 1, (n, d))), torch.tensor(rng.uniform(-1, 1, (n, d_v))),
            torch.tensor(rng.uniform(0, 1, (5, d))))


def test_plan_is_certified_and_gives_every_component_more_budget():
    pld = plan_tree(eps=1, delta=1e-6, n=4096, d=2, d_v=8, degree=2, composition="pld")
    basic = plan_tree(eps=1, delta=1e-6, n=4096, d=2, d_v=8, degree=2)
    eps, delta = pld.total()
    assert pld.composition == "pld" and pld.total_checks()
    assert eps == 1 and delta <= Fraction(1, 10 ** 6)
    K = sum(c.count for c in pld.components)
    e0, d0 = pld.share("tree_level")
    assert all(pld.share(k) == (e0, d0) for k in ("c0", "c1"))
    assert float(delta) == pytest.approx(float(oc.homogeneous_delta(K, e0, d0, 1)), rel=1e-12)
    # the measured gain at this size (d = 2, s = 2, n = 4096, d_v = 8: K = 2124)
    assert e0 / basic.share("tree_level")[0] > 10
    d = pld.to_dict()
    assert d["composition"] == "pld" and d["total_checks"] is True
    assert "optimal composition (pld)" in str(pld)


def test_basic_plan_is_unchanged():
    a = plan_tree(eps=1, delta=1e-6, n=100, d=2, d_v=3, degree=2)
    b = plan_tree(eps=1, delta=1e-6, n=100, d=2, d_v=3, degree=2, composition="basic")
    assert a == b and a.composition == "basic" and a.total() == (1, Fraction(1e-6))


def test_pld_tree_has_less_noise_from_the_same_uniforms():
    K, V, Q = _data(n=256)
    count = DPCrossAttention.noise_count(n=256, d=2, d_v=2, degree=2, mechanism="tree")
    u = np.random.default_rng(1).uniform(size=count)
    half = np.full(count, 0.5)

    def noise(att):
        got = att.released_tensors()
        return torch.cat([(got[k] - exact[k]).flatten() for k in sorted(got)]).abs()

    exact = DPCrossAttention.build(K, V, uniforms=half, **CFG).released_tensors()
    basic = DPCrossAttention.build(K, V, uniforms=u, **CFG)
    pld = DPCrossAttention.build(K, V, uniforms=u, composition="pld", **CFG)
    gain = float(pld.privacy.share("tree_level")[0] / basic.privacy.share("tree_level")[0])
    assert gain > 5
    ratio = noise(basic).mean().item() / noise(pld).mean().item()
    assert ratio > gain / 2          # the noise falls with the per-component eps
    assert pld.privacy.composition == "pld" and pld.privacy.total_checks()
    # the sure envelope follows the plan's shares: still an envelope
    truth = DPCrossAttention.build(K, V, uniforms=half, **CFG).query(Q)
    assert torch.all((pld.query(Q) - truth).abs() <= pld.error_bound(Q) + 1e-12)


def test_reference_and_fast_agree_under_pld():
    K, V, Q = _data(n=9, d=1, d_v=1)
    count = DPCrossAttention.noise_count(n=9, d=1, d_v=1, degree=2, mechanism="tree")
    u = np.random.default_rng(2).uniform(size=count)
    fast = DPCrossAttention.build(K, V, uniforms=u, composition="pld", **CFG)
    ref = RefAttention.build(K.numpy(), V.numpy(), uniforms=u, composition="pld", **CFG)
    got = fast.query(Q).numpy()
    want = np.array([[float(x) for x in row] for row in ref.query(Q.numpy())])
    assert np.allclose(got, want, rtol=1e-10, atol=1e-12)
    assert ref.privacy == fast.privacy.with_labels(randomness=ref.privacy.randomness,
                                                   clip=False, numerics=ref.privacy.numerics) \
        or ref.privacy.components == fast.privacy.components


@pytest.mark.parametrize("kwargs,match", [
    (dict(mechanism="direct", composition="pld"), "nothing to compose"),
    (dict(composition="advanced"), "must be one of"),
    (dict(composition=None), "must be one of"),
])
def test_bad_composition_is_refused(kwargs, match):
    K, V, _ = _data(n=8)
    cfg = dict(CFG, **kwargs)
    with pytest.raises(ParameterError, match=match):
        DPCrossAttention.build(K, V, generator=torch.Generator().manual_seed(0), **cfg)
    with pytest.raises(ParameterError, match=match):
        RefAttention.build(K.numpy(), V.numpy(), generator=np.random.default_rng(0), **cfg)


def test_save_and_load_keep_the_pld_plan(tmp_path):
    K, V, Q = _data(n=16)
    att = DPCrossAttention.build(K, V, generator=torch.Generator().manual_seed(3),
                                 composition="pld", **CFG)
    back = DPCrossAttention.load(att.save(tmp_path / "t.npz"))
    assert back.privacy.composition == "pld" and back.privacy.total_checks()
    assert torch.equal(back.query(Q), att.query(Q))
