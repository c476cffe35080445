"""dpxattn.reference (folder `reference/`). Public names are imported lazily on first use."""

from __future__ import annotations

import importlib

from dpxattn._guard import require_mapped

require_mapped(__name__, "dpxattn.reference")
del require_mapped

#: public name -> submodule that defines it (extend with your own lines only)
_EXPORTS: dict[str, str] = {
    "attention": "noiseless",
    "taylor_attention": "noiseless",
    "DPCrossAttention": "cross_attention",
    "DPTreeSoftmax": "dptree_softmax",
    "DirectRelease": "direct",
    "DPTree": "dptree",
    "DPTreeDistance": "dptree_distance",
    "DPTreeHighDim": "dptree_highdim",
    "lattice_parameters": "discrete_laplace",
    "Accumulator": "accumulator",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
