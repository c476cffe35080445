"""dpxattn.distributed on a distributed.LocalCluster (2 worker processes, 1 thread each).

Deterministic tests (no statistical assertion): the released structure of a distributed
accumulation is bit-identical to a single-process Accumulator over the same rows with the same
generator seed, whatever the partitions; workers return unreleased Accumulators only.
"""

import sys

import numpy as np
import pytest
import torch

from dpxattn.fast import Accumulator

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

PUBLIC = dict(d=3, d_v=2, degree=2, R=1.0, R_w=1.0)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=50)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 3)), rng.uniform(-1, 1, (n, 2))


def _single(K, V, seed, **release):
    acc = Accumulator(**PUBLIC).add(K, V)
    return acc.release(eps=1.0, delta=1e-6, generator=np.random.default_rng(seed), **release)


@pytest.mark.parametrize("chunks", [(250, 250, 301), (1, 500, 300)])
def test_distributed_release_bit_identical(client, chunks):
    from dpxattn.distributed import accumulate

    K, V = _data(sum(chunks))
    dK = da.from_array(K, chunks=(chunks, 3))
    dV = da.from_array(V, chunks=(100, 1))  # unlike K's: rechunked to K's partitions
    acc = accumulate(dK, dV, **PUBLIC)
    assert acc.n == K.shape[0]
    att = acc.release(eps=1.0, delta=1e-6, generator=np.random.default_rng(7))
    ref = _single(K, V, 7)
    assert torch.equal(att.released_tensors()["S"], ref.released_tensors()["S"])
    Q = torch.rand(5, 3, dtype=torch.float64)
    assert torch.equal(att.query(Q), ref.query(Q))


def test_distributed_secure_bit_identical(client):
    from dpxattn.distributed import accumulate

    K, V = _data(600, seed=1)
    acc = accumulate(da.from_array(K, chunks=(200, 3)), da.from_array(V, chunks=(200, 2)),
                     **PUBLIC)
    att = acc.release(eps=1.0, delta=1e-6, generator=np.random.default_rng(3), noise="secure")
    ref = _single(K, V, 3, noise="secure")
    assert torch.equal(att.released_tensors()["S"], ref.released_tensors()["S"])


def test_distributed_tree_bit_identical(client):
    """The tree's grid-cell sums merge exactly too: the released nodes and scalars of a
    distributed accumulation equal a single process's (same seed, float and secure noise)."""
    from dpxattn.distributed import accumulate

    K, V = _data(700, seed=2)
    tree = dict(PUBLIC, mechanism="tree", grid_size=32)
    for noise in ("float", "secure"):
        acc = accumulate(da.from_array(K, chunks=((100, 350, 250), 3)),
                         da.from_array(V, chunks=(70, 2)), **tree)
        att = acc.release(eps=1.0, delta=1e-6, generator=np.random.default_rng(5), noise=noise,
                          copies=2)
        ref = Accumulator(**tree).add(K, V).release(eps=1.0, delta=1e-6, noise=noise, copies=2,
                                                    generator=np.random.default_rng(5))
        assert torch.equal(att.release.payload, ref.release.payload)
        assert torch.equal(att.release.scalars, ref.release.scalars)


def test_distributed_dataframe(client):
    dd = pytest.importorskip("dask.dataframe", reason="dask.dataframe needs pandas")
    pd = pytest.importorskip("pandas")
    from dpxattn.distributed import accumulate

    K, V = _data(600, seed=1)
    acc = accumulate(dd.from_pandas(pd.DataFrame(K), npartitions=3),
                     dd.from_pandas(pd.DataFrame(V), npartitions=2), **PUBLIC)
    att = acc.release(eps=1.0, delta=1e-6, generator=np.random.default_rng(3))
    ref = _single(K, V, 3)
    assert torch.equal(att.released_tensors()["S"], ref.released_tensors()["S"])


def test_distributed_validates_on_workers(client):
    from dpxattn.distributed import accumulate
    from dpxattn.errors import BoundError

    K, V = _data(100)
    K[57, 1] = 1.5  # outside [0, R]
    with pytest.raises(BoundError):
        accumulate(da.from_array(K, chunks=50), da.from_array(V, chunks=50), **PUBLIC)
    with pytest.raises(ValueError, match="rows"):
        accumulate(da.from_array(K[:99]), da.from_array(V), **PUBLIC)
    with pytest.raises(ValueError, match="dask array"):
        accumulate(K, V, **PUBLIC)


def test_missing_dask_names_the_extra(monkeypatch):
    from dpxattn import distributed as mod

    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(mod.DistributedUnavailableError, match="'distributed'"):
        mod.accumulate(None, None, **PUBLIC)
