"""dpxattn.fast.module.PrivateCrossAttention: the nn.Module wrapper of a built DP structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dpxattn.fast import DPCrossAttention
from dpxattn.fast.module import PrivateCrossAttention

KW = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0, degree=2)


def _kv(rng, n=24, d=3, d_v=2):
    return (torch.tensor(rng.random((n, d))), torch.tensor(rng.uniform(-1, 1, (n, d_v))))


@pytest.mark.parametrize("mechanism", ["direct", "tree"])
def test_forward_buffers_and_batch_dims(mechanism, rng):
    K, V = _kv(rng)
    mod = PrivateCrossAttention.from_private(K, V, mechanism=mechanism,
                                             generator=torch.Generator().manual_seed(1), **KW)
    assert list(mod.parameters()) == []
    names = {name for name, _ in mod.named_buffers()}
    assert names == ({"S"} if mechanism == "direct" else {"payload", "scalars"})
    assert all(not b.requires_grad and b.dtype == torch.float64 for b in mod.buffers())
    Q = torch.tensor(rng.random((4, 5, 3)))
    out = mod(Q)
    assert out.shape == (4, 5, 2)
    assert torch.equal(out.reshape(20, 2), mod.structure.query(Q.reshape(20, 3)))
    assert mod.error_bound(Q).shape == (4, 5, 2)
    assert bool((mod.hp_error_bound(Q, 0.05) <= mod.error_bound(Q)).all())
    assert mod.privacy is mod.structure.privacy
    assert "DPCrossAttention" in repr(mod)


@pytest.mark.parametrize("mechanism", ["direct", "tree"])
def test_gradients_flow_to_the_query_side_only(mechanism, rng):
    K, V = _kv(rng)
    mod = PrivateCrossAttention.from_private(K, V, mechanism=mechanism,
                                             generator=torch.Generator().manual_seed(2), **KW)
    proj = nn.Linear(4, 3).double()
    x = torch.tensor(rng.random((6, 4)))
    q = torch.sigmoid(proj(x))  # queries in (0, 1) = inside [0, R]
    loss = mod(q).pow(2).sum()
    loss.backward()
    assert proj.weight.grad is not None and bool(torch.isfinite(proj.weight.grad).all())
    assert float(proj.weight.grad.abs().sum()) > 0
    assert all(b.grad is None for b in mod.buffers())
    before = {k: v.clone() for k, v in mod.state_dict().items()}
    torch.optim.SGD(list(proj.parameters()) + list(mod.parameters()), lr=0.1).step()
    assert all(torch.equal(before[k], v) for k, v in mod.state_dict().items())


def test_state_dict_roundtrip_and_moves(rng):
    K, V = _kv(rng)
    a = PrivateCrossAttention.from_private(K, V, generator=torch.Generator().manual_seed(3), **KW)
    b = PrivateCrossAttention.from_private(K, V, generator=torch.Generator().manual_seed(4), **KW)
    Q = torch.tensor(rng.random((5, 3)))
    assert not torch.equal(a(Q), b(Q))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(Q), b(Q))
    before = a(Q)
    a.float()  # released numbers stay float64; only queries choose their dtype
    assert all(t.dtype == torch.float64 for t in a.buffers())
    assert torch.equal(a(Q), before)
    assert a(Q.float()).dtype == torch.float32
    a.to("cpu")
    assert torch.equal(a(Q), before)
    with pytest.raises(TypeError):
        PrivateCrossAttention("not a structure")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the same code paths run on CPU above)")
def test_module_cuda(rng):
    K, V = _kv(rng)
    for mechanism in ("direct", "tree"):
        mod = PrivateCrossAttention(DPCrossAttention.build(
            K, V, mechanism=mechanism, generator=torch.Generator().manual_seed(5), **KW))
        Q = torch.tensor(rng.random((7, 3)))
        cpu = mod(Q)
        mod.cuda()
        assert mod.structure.device.type == "cuda"
        assert all(b.is_cuda for b in mod.buffers())
        torch.testing.assert_close(mod(Q.cuda()).cpu(), cpu, rtol=1e-12, atol=1e-13)
