"""dpxattn.fast (folder `fast/`). Public names are imported lazily on first use."""

from __future__ import annotations

import importlib

from dpxattn._guard import require_mapped

require_mapped(__name__, "dpxattn.fast")
del require_mapped

#: public name -> submodule that defines it (extend with your own lines only)
_EXPORTS: dict[str, str] = {
    "DPCrossAttention": "cross_attention",
    "truncated_laplace": "noise",
    "tlap_ppf": "noise",
    "tlap_constants": "noise",
    "features": "features",
    "DPTree": "tree",
    "PrivateCrossAttention": "module",
    "secure_release": "secure_noise",
    "secure_support_bound": "secure_noise",
    "Projection": "projection",
    "random_projection": "projection",
    "fit_pca": "projection",
    "to_ball": "domain_map",
    "BoxMap": "domain_map",
    "DegreeChoice": "degree_choice",
    "choose_degree": "degree_choice",
    "certified_kernel_error": "degree_choice",
    "Accumulator": "accumulator",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
