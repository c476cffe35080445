"""A distributed build on Dask: each partition accumulated on its worker, merged exactly.

Not in the paper (corpus scale; PAPER.md §5 items 8 and 18). Proof note
``proofs_notes/30-exact-accumulation.md`` (the sums are exact integers, so the merge of the
workers' partial sums equals one accumulator over all rows, bit for bit, in any order).

    import dask.array as da
    from dpxattn.distributed import accumulate
    acc = accumulate(K, V, d=8, d_v=8, degree=3, R=1.0, R_w=1.0)   # K (n, d), V (n, d_v) dask
    att = acc.release(eps=1.0, delta=1e-6)                         # noise drawn once, here

Workers only run :meth:`dpxattn.fast.Accumulator.add` on their partition and return that
accumulator: its int64 sums and row count (partial statistics, no noise, no rows, no logs).
The client merges them (:meth:`~dpxattn.fast.Accumulator.merge`) into a fresh accumulator,
which alone can be released. Needs the optional extra ``distributed``
(``pip install "dpxattn[distributed]"``): without Dask, :func:`accumulate` raises
:class:`DistributedUnavailableError`.

Shapes: K (n, d), V (n, d_v): dask arrays (chunked along rows; any column chunking is
rechunked to one column block) or dask DataFrames whose columns are the coordinates.
"""

from __future__ import annotations

from dpxattn.errors import ParameterError

__all__ = ["accumulate", "DistributedUnavailableError", "EXTRA"]

#: the optional dependency group that provides Dask
EXTRA = "distributed"


class DistributedUnavailableError(ImportError):
    """Dask (``dask[distributed]``) is not installed: install the extra ``distributed``."""


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # the optional extra is missing
        raise DistributedUnavailableError(
            f"dpxattn.distributed needs Dask: install the optional extra {EXTRA!r} "
            f'(pip install "dpxattn[{EXTRA}]", or pip install "dask[distributed]")') from exc
    return dask, da


def _as_array(X, name: str, da):
    """A dask array (rows, cols) from a dask array or a dask DataFrame of columns."""
    if hasattr(X, "to_dask_array"):  # dask DataFrame: its columns are the coordinates
        X = X.to_dask_array(lengths=True)
    if not isinstance(X, da.Array):
        raise ParameterError(name, "must be a dask array or a dask DataFrame of columns",
                             type(X).__name__, hint="use dpxattn.fast.Accumulator for local data")
    if X.ndim != 2:
        raise ParameterError(name, "must be 2-D (rows, columns)", X.ndim)
    if any(c != c for c in X.chunks[0]):  # NaN: unknown partition lengths
        raise ParameterError(name, "must have known partition lengths",
                             hint="compute chunk sizes first (e.g. to_dask_array(lengths=True))")
    return X


def _partial(K_block, V_block, params: dict):
    """On a worker: the exact partial statistic of one partition (an Accumulator, unreleased)."""
    import numpy as np

    from dpxattn.fast.accumulator import Accumulator

    acc = Accumulator(**params)
    acc.add(np.asarray(K_block, dtype=np.float64), np.asarray(V_block, dtype=np.float64))
    return acc


def accumulate(K, V, **accumulator_kwargs):
    """An :class:`dpxattn.fast.Accumulator` on the client holding the exact sums of all rows of
    the dask inputs ``K`` (n, d) and ``V`` (n, d_v).

    ``accumulator_kwargs``: the Accumulator's public parameters (``d``, ``d_v``, ``degree``,
    ``R``, ``R_w``, ``scale``, ``clip``, ``domain``, ``mechanism``, ``grid_size``). V is rechunked to K's row
    partitions; each partition is validated and accumulated by ``Accumulator.add`` on a worker of
    the current Dask scheduler (a ``distributed.Client`` if one is active), and the workers'
    accumulators are merged here (exact: bit-identical to one process adding every row). Nothing
    is released: call ``release`` on the result (noise drawn once, on the client)."""
    dask, da = _dask()
    from dpxattn.fast.accumulator import Accumulator

    acc = Accumulator(**accumulator_kwargs)  # validates the public parameters first
    K = _as_array(K, "K", da)
    V = _as_array(V, "V", da)
    if K.shape[0] != V.shape[0]:
        raise ParameterError("V", f"must have as many rows as K ({K.shape[0]})", V.shape[0])
    K = K.rechunk({1: -1})
    V = V.rechunk({0: K.chunks[0], 1: -1})
    params = dict(accumulator_kwargs)
    parts = [dask.delayed(_partial)(kb, vb, params)
             for kb, vb in zip(K.to_delayed().ravel(), V.to_delayed().ravel())]
    acc.check_rows(K.shape[0])  # before any worker starts
    for part in dask.compute(*parts):
        acc.merge(part)
    return acc
