"""Saved structures: a built structure to one file and back, without pickle.

Paper: none (software; issue "corpus scale": structures built once are served elsewhere). What a
file holds is what the structure holds: released (noisy) numbers, public parameters and the
privacy plan. A built structure keeps nothing private (DESIGN §1), so neither does its file.

Format (version :data:`FORMAT_VERSION`): a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) with

* ``meta``: a uint8 array holding UTF-8 JSON: ``format`` (:data:`FORMAT`), ``version``,
  ``implementation`` ("fast" or "reference"), ``dpxattn`` (the writer's version), ``state``
  (the object tree, below) and ``checksum`` (SHA-256 over the JSON of everything else and
  every array's name, dtype, shape and bytes);
* ``a0``, ``a1``, ...: the arrays (tensors' float64 / int64 / bool values, numpy arrays).

The object tree encodes JSON scalars as themselves and the rest as one-key objects:
``{"float": "inf"}`` (non-finite floats), ``{"fraction": "p/q"}``, ``{"mpf": [sign, man, exp,
bc], "prec": bits}`` (exact, with its context's precision), ``{"tuple": [...]}``, ``{"items": [[k, v], ...]}`` (dicts), ``{"tensor": "aK",
"device": ...}``, ``{"ndarray": "aK"}``, ``{"dtype": "float64"}``, ``{"device": "cpu"}`` and
``{"object": "module:Class", "state": {...}}`` for the library's own classes.

Loading never unpickles and never runs code named by the file: ``numpy.load`` is called with
``allow_pickle=False``; an ``object`` is rebuilt only if its class is in :data:`ALLOWED` (an
explicit list of dpxattn's structure, release, law and plan classes), by ``cls.__new__(cls)``
and setting the saved attributes (no ``__init__``, no ``__setstate__``); every other tag, a wrong
format, version or checksum is a :class:`StructureFileError` that says what is wrong. Caches
(:data:`CACHES`) are not saved; they are reset on load. Answers after load are bit-identical.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import math
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from dpxattn.errors import DPXAttnError

__all__ = ["FORMAT", "FORMAT_VERSION", "ALLOWED", "CACHES", "StructureFileError", "save_structure",
           "load_structure"]

FORMAT = "dpxattn-structure"
FORMAT_VERSION = 1

#: the classes a file may name; nothing else is ever instantiated by a load
ALLOWED = frozenset({
    "dpxattn.fast.cross_attention:DPCrossAttention",
    "dpxattn.fast.direct:DirectRelease",
    "dpxattn.fast.tree_mechanism:TreeRelease",
    "dpxattn.fast.release:NoiseLaw",
    "dpxattn.fast.release:GaussianLaw",
    "dpxattn.fast.release:SecureGaussianLaw",
    "dpxattn.fast.noise:TLapConstants",
    "dpxattn.reference.discrete_laplace:LatticeParameters",
    "dpxattn.reference.discrete_gaussian:GaussianLatticeParameters",
    "dpxattn.accounting:PrivacyPlan",
    "dpxattn.accounting:Component",
    "dpxattn.reference.cross_attention:DPCrossAttention",
    "dpxattn.reference.direct:DirectRelease",
    "dpxattn.reference.dptree_softmax:TreeRelease",
    "dpxattn.reference.dptree_softmax:DPTreeSoftmax",
    "dpxattn.reference.dptree_highdim:DPTreeHighDim",
    "dpxattn.reference.dptree_distance:DPTreeDistance",
    "dpxattn.reference.dptree:DPTree",
    "dpxattn.reference.tree_noise_weights:TreeNoiseWeights",
})

#: attributes that are caches: not written, reset to these values on load
CACHES = {
    "dpxattn.fast.cross_attention:DPCrossAttention": {"_kernel_bound": None},
    "dpxattn.fast.direct:DirectRelease": {"_cast": dict},
    "dpxattn.fast.tree_mechanism:TreeRelease": {"_split": None, "_queried": 0},
}

_IMPLEMENTATIONS = {"fast": "dpxattn.fast.cross_attention:DPCrossAttention",
                    "reference": "dpxattn.reference.cross_attention:DPCrossAttention"}


class StructureFileError(DPXAttnError):
    """A structure file is not one this version wrote, or was altered or truncated."""


def _name(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _attributes(obj) -> list[str]:
    if dataclasses.is_dataclass(obj):
        return [f.name for f in dataclasses.fields(obj)]
    names: list[str] = []
    for cls in type(obj).__mro__:
        names += [s for s in getattr(cls, "__slots__", ()) if s not in names]
    return names


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, a: np.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.ascontiguousarray(a)
        return key

    def encode(self, x):
        import mpmath
        import torch

        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, np.integer)):
            return int(x)
        if isinstance(x, (float, np.floating)):
            x = float(x)
            return x if math.isfinite(x) else {"float": repr(x)}
        if isinstance(x, Fraction):
            return {"fraction": f"{x.numerator}/{x.denominator}"}
        if isinstance(x, mpmath.ctx_mp_python._mpf):
            sign, man, exp, bc = x._mpf_
            # the precision of the value's own context: arithmetic on the loaded value rounds
            # as it did before saving
            return {"mpf": [sign, int(man), exp, bc], "prec": int(x.context.prec)}
        if isinstance(x, tuple):
            return {"tuple": [self.encode(v) for v in x]}
        if isinstance(x, list):
            return [self.encode(v) for v in x]
        if isinstance(x, dict):
            return {"items": [[self.encode(k), self.encode(v)] for k, v in x.items()]}
        if isinstance(x, torch.Tensor):
            return {"tensor": self.array(x.detach().cpu().numpy()), "device": str(x.device)}
        if isinstance(x, np.ndarray):
            if x.dtype == object:
                raise StructureFileError("structure", "holds an object array, which cannot be saved")
            return {"ndarray": self.array(x)}
        if isinstance(x, torch.dtype):
            return {"dtype": str(x).removeprefix("torch.")}
        if isinstance(x, torch.device):
            return {"device": str(x)}
        name = _name(x)
        if name not in ALLOWED:
            raise StructureFileError("structure", f"holds a {name}, which the file format does not "
                                     "know (add it to dpxattn.persist.ALLOWED if it is public)")
        skip = CACHES.get(name, {})
        state = {a: self.encode(getattr(x, a)) for a in _attributes(x) if a not in skip}
        return {"object": name, "state": state}


def _checksum(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for key in sorted(arrays):
        a = arrays[key]
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def save_structure(obj, path, implementation: str) -> Path:
    """Write ``obj`` (a built ``DPCrossAttention`` of ``implementation`` "fast" or "reference")
    to ``path`` (``.npz`` is appended by numpy if missing; the path written is returned)."""
    from dpxattn import __version__

    if _name(obj) != _IMPLEMENTATIONS.get(implementation):
        raise StructureFileError("structure", f"must be a {_IMPLEMENTATIONS.get(implementation)}",
                                 _name(obj))
    enc = _Encoder()
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "implementation": implementation,
            "dpxattn": __version__, "state": enc.encode(obj)}
    meta["checksum"] = _checksum(meta, enc.arrays)
    raw = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    with open(path, "wb") as fh:
        np.savez(fh, meta=raw, **enc.arrays)
    return path


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], device) -> None:
        self.arrays = arrays
        self.device = device

    def array(self, key) -> np.ndarray:
        if not isinstance(key, str) or key not in self.arrays:
            raise StructureFileError("structure file", f"refers to a missing array {key!r}")
        return self.arrays[key]

    def decode(self, x):
        import torch

        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, list):
            return [self.decode(v) for v in x]
        if not isinstance(x, dict) or len(x) not in (1, 2):
            raise StructureFileError("structure file", "holds an unknown entry", x)
        if "float" in x and x["float"] in ("inf", "-inf", "nan"):
            return float(x["float"])
        if "fraction" in x:
            p, q = str(x["fraction"]).split("/")
            return Fraction(int(p), int(q))
        if "mpf" in x:
            from dpxattn.reference._mp import context

            sign, man, exp, bc = x["mpf"]
            return context(int(x.get("prec", 53))).make_mpf((int(sign), int(man), int(exp), int(bc)))
        if "tuple" in x:
            return tuple(self.decode(v) for v in x["tuple"])
        if "items" in x:
            return {self.decode(k): self.decode(v) for k, v in x["items"]}
        if "tensor" in x:
            return torch.from_numpy(self.array(x["tensor"]).copy()).to(self.device)
        if "ndarray" in x:
            return self.array(x["ndarray"]).copy()
        if "dtype" in x:
            dt = getattr(torch, str(x["dtype"]), None)
            if not isinstance(dt, torch.dtype):
                raise StructureFileError("structure file", "names an unknown dtype", x["dtype"])
            return dt
        if "device" in x:
            return torch.device(self.device)
        if "object" in x:
            return self.obj(x)
        raise StructureFileError("structure file", "holds an unknown entry", x)

    def obj(self, x: dict):
        name = x["object"]
        if name not in ALLOWED:
            raise StructureFileError("structure file", "names a class that dpxattn never saves "
                                     "(refused: loading never builds other objects)", name)
        module, _, qual = name.partition(":")
        cls = getattr(importlib.import_module(module), qual)
        state = x.get("state")
        if not isinstance(state, dict):
            raise StructureFileError("structure file", f"has no state for {name}")
        obj = cls.__new__(cls)
        expected = set(_attributes(obj)) - set(CACHES.get(name, {}))
        if set(state) != expected:
            raise StructureFileError("structure file", f"does not hold the attributes of {name} "
                                     "(written by another version?)",
                                     sorted(set(state) ^ expected))
        for attr, value in state.items():
            object.__setattr__(obj, attr, self.decode(value))
        for attr, reset in CACHES.get(name, {}).items():
            object.__setattr__(obj, attr, reset() if callable(reset) else reset)
        return obj


def load_structure(path, implementation: str, device="cpu"):
    """Read a structure written by :func:`save_structure` (tensors onto ``device``)."""
    try:
        with open(path, "rb") as fh:
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with z:
                arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise StructureFileError("structure file", "cannot be read as a dpxattn structure "
                                 f"({type(exc).__name__}: {exc})", str(path)) from None
    raw = arrays.pop("meta", None)
    try:
        meta = json.load(io.BytesIO(raw.tobytes())) if raw is not None and raw.dtype == np.uint8 else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StructureFileError("structure file", f"is not a {FORMAT} file", str(path))
    if meta.get("version") != FORMAT_VERSION:
        raise StructureFileError("structure file", f"has format version {meta.get('version')!r}; "
                                 f"this dpxattn reads version {FORMAT_VERSION}", str(path))
    if meta.get("implementation") != implementation:
        raise StructureFileError("structure file", f"holds a {meta.get('implementation')!r} "
                                 f"structure, not a {implementation!r} one", str(path),
                                 hint=f"load it with the {meta.get('implementation')} DPCrossAttention")
    claimed = meta.pop("checksum", None)
    if claimed != _checksum(meta, arrays):
        raise StructureFileError("structure file", "fails its checksum (altered or truncated)",
                                 str(path))
    obj = _Decoder(arrays, device).decode(meta["state"])
    if _name(obj) != _IMPLEMENTATIONS[implementation]:
        raise StructureFileError("structure file", "does not hold a DPCrossAttention", str(path))
    return obj
