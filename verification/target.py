"""The target protocol: what the harness needs of anyone's implementation.

A *target* is a class (or any object) with::

    mechanisms: tuple[str, ...]                       # e.g. ("direct",) or ("direct", "tree")
    laws: tuple[str, ...]                             # optional, default ("tlap",)
    degrees: tuple[int, ...]                          # optional, default every degree
    @classmethod
    def build(cls, K, V, *, eps, delta, R, R_w, degree, mechanism, uniforms=None, rng=None): ...
    @staticmethod
    def noise_count(*, n, d, d_v, degree, mechanism) -> int: ...

``K`` (n, d) and ``V`` (n, d_v) are numpy float64; ``uniforms`` a numpy float64 array in (0, 1)
of length ``noise_count(...)``, in the documented order (DESIGN §4; ``proofs_notes/01``), uniform
1/2 meaning zero noise; ``rng`` a ``numpy.random.Generator``; exactly one of ``uniforms`` /
``rng`` is given. A target that declares a law other than "tlap" in ``laws`` is passed
``law=...`` for it (never for "tlap"). The built object has ``query(Q) -> (m, d_v)`` and
``released() -> dict[str, array]`` (every released number: ``direct``: ``{"S": (r, d_v + 1)}``;
``tree``: ``{"scalars": (l, d_v + 1, 2), "nodes": (2N - 1, l, d_v + 1, r, 3)}``, l the copies
(1 unless given); the arrays flattened row-major and concatenated in that key order are the
released numbers in the uniforms' order, entry j received draw j). Optional:
``error_bound(Q) -> (m, d_v)``, a sure bound on |query(Q) - taylor_attention(Q, K, V)|.

Optional tree parameters (:data:`TREE_PARAMETERS`): a target whose ``build`` AND
``noise_count`` both accept the keywords ``copies`` (l >= 1, the median over l independent
copies) and ``grid_size`` (G >= 1, the public grid; N = 2^ceil(log2 G)) *declares* them and is
passed them by :func:`build_target` / :func:`target_noise_count` whenever a check asks for
them; a target that does not declare them is passed neither, and a check that needs a value
other than the default (one copy, G = n) does not apply to it (:class:`TargetError`, reported
as "did not apply"). Adapter options: keywords beyond the protocol that only dpxattn's own
adapters take (``domain``, ``composition``, ``generator``, ...; :data:`ADAPTER_OPTIONS`) let
the standard checks keep testing every feature of our implementation through the same
:func:`build_target`; a target that does not accept one is not applicable to that case.

:func:`load_target` resolves ``module:attr`` (importable from the current directory or
PYTHONPATH) or ``path/to/file.py:attr`` and checks the protocol, raising :class:`TargetError`
(a ``ValueError``) that says what is wrong. :class:`FastTarget` and :class:`ReferenceTarget` are
dpxattn's own implementations behind the same protocol (``dpxattn.verification.target:FastTarget``).
Proof note: ``proofs_notes/29-target-protocol.md``. Paper: none (the harness; DESIGN §6, §10).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from dpxattn.errors import DPXAttnError

__all__ = [
    "MECHANISMS",
    "TargetError",
    "BuiltTarget",
    "Target",
    "LoadedTarget",
    "load_target",
    "check_protocol",
    "target_laws",
    "TREE_PARAMETERS",
    "ADAPTER_OPTIONS",
    "declares",
    "build_target",
    "target_noise_count",
    "released_vector",
    "FastTarget",
    "ReferenceTarget",
    "OWN_TARGET",
    "own_target",
    "is_own_target",
    "context_target",
    "seeded_source",
]

#: the mechanisms a target may declare (DESIGN §2)
MECHANISMS = ("direct", "tree")


#: the protocol's optional tree parameters: passed only to a target that declares them (its
#: ``build`` and ``noise_count`` accept them); their defaults: one copy, grid size n
TREE_PARAMETERS = ("copies", "grid_size")

#: keywords only dpxattn's own adapters take (the standard checks' features of our
#: implementation): the domain ("box" / "ball"), the tree's composition ("basic" / "pld"), a
#: torch or numpy ``generator`` passed to the fast path as is (so that a check keeps its own
#: seeding bit for bit), the reference's ``prec``, the fast path's ``noise`` ("float" /
#: "secure", with ``generator``)
ADAPTER_OPTIONS = ("domain", "composition", "generator", "prec", "noise")


class TargetError(DPXAttnError):
    """A ``--target`` that cannot be loaded or does not satisfy the protocol."""


@runtime_checkable
class BuiltTarget(Protocol):
    """A built structure: ``query(Q)`` (m, d_v) and ``released()`` (name -> array)."""

    def query(self, Q) -> np.ndarray: ...

    def released(self) -> dict[str, np.ndarray]: ...


@runtime_checkable
class Target(Protocol):
    """The target protocol (module docstring). ``error_bound`` on the built object is optional."""

    mechanisms: tuple[str, ...]

    @classmethod
    def build(cls, K, V, *, eps, delta, R, R_w, degree, mechanism, uniforms=None,
              rng=None) -> BuiltTarget: ...

    @staticmethod
    def noise_count(*, n: int, d: int, d_v: int, degree: int, mechanism: str) -> int: ...


class LoadedTarget:
    """A target object and the name it was loaded under (``spec``), for reports."""

    __slots__ = ("obj", "spec")

    def __init__(self, obj, spec: str) -> None:
        self.obj = obj
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec

    def __repr__(self) -> str:
        return f"LoadedTarget({self.spec!r})"


_BUILD_KEYWORDS = ("eps", "delta", "R", "R_w", "degree", "mechanism", "uniforms", "rng")
_COUNT_KEYWORDS = ("n", "d", "d_v", "degree", "mechanism")


def _accepts(fn, names) -> list[str]:
    """The keywords of ``names`` that ``fn`` cannot take (empty if it has **kwargs)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    params = sig.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []
    have = {p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)}
    return [n for n in names if n not in have]


def check_protocol(obj, spec: str = "target") -> tuple[str, ...]:
    """Check that ``obj`` satisfies the protocol; return its mechanisms.

    Raises :class:`TargetError` naming the first missing or malformed member: ``mechanisms``
    (a non-empty tuple or list of names from :data:`MECHANISMS`), ``build`` and ``noise_count``
    (callables taking the protocol's keywords), ``laws`` if present (names, including "tlap").
    """
    mech = getattr(obj, "mechanisms", None)
    if not isinstance(mech, (tuple, list)) or not mech:
        raise TargetError(f"{spec}.mechanisms", "must be a non-empty tuple of mechanism names "
                          f"from {MECHANISMS}", mech)
    bad = [m for m in mech if m not in MECHANISMS]
    if bad:
        raise TargetError(f"{spec}.mechanisms", f"may only name {MECHANISMS}", tuple(mech))
    for member, keywords in (("build", _BUILD_KEYWORDS), ("noise_count", _COUNT_KEYWORDS)):
        fn = getattr(obj, member, None)
        if not callable(fn):
            raise TargetError(f"{spec}.{member}", "must be a callable (see the protocol in "
                              "dpxattn.verification.target)", fn)
        missing = _accepts(fn, keywords)
        if missing:
            raise TargetError(f"{spec}.{member}", f"must accept the keywords {keywords}",
                              hint=f"missing: {', '.join(missing)}")
    laws = getattr(obj, "laws", ("tlap",))
    if not isinstance(laws, (tuple, list)) or not all(isinstance(x, str) for x in laws):
        raise TargetError(f"{spec}.laws", "must be a tuple of law names, e.g. ('tlap', 'gaussian')",
                          laws)
    return tuple(mech)


def target_laws(obj) -> tuple[str, ...]:
    """The noise laws a target declares (``laws``; default ("tlap",))."""
    return tuple(getattr(obj, "laws", ("tlap",)))


def _import_file(path: Path):
    name = "_dpxattn_target_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError("target", "names a file that Python cannot import", str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise TargetError("target", f"file {path} raised {type(exc).__name__} on import: {exc}") from exc
    return module


def load_target(spec: str) -> LoadedTarget:
    """Resolve ``module:attr`` or ``path/to/file.py:attr`` and check the protocol.

    ``module`` is imported from the current directory or PYTHONPATH; a ``.py`` path (absolute or
    relative to the current directory) is executed as a module. ``attr`` may be dotted
    (``module:Outer.Inner``). Errors (:class:`TargetError`): no ``:attr``, a file that does not
    exist, a module that cannot be imported, a missing attribute, an object that does not
    satisfy the protocol (:func:`check_protocol`).
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise TargetError("target", "must be 'module:attr' or 'path/to/file.py:attr'", spec)
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise TargetError("target", "must be 'module:attr' or 'path/to/file.py:attr'", spec)
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise TargetError("target", "names a file that does not exist", str(path))
        module = _import_file(path)
    else:
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise TargetError("target", f"names a module that cannot be imported ({exc})", where,
                              hint="give 'module:attr' importable from the current directory or "
                                   "PYTHONPATH, or 'path/to/file.py:attr'") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError("target", f"module {where!r} has no attribute {attr!r}", spec)
        obj = getattr(obj, part)
    check_protocol(obj, spec)
    return LoadedTarget(obj, spec)


def declares(obj, name: str) -> bool:
    """Whether a target declares the optional keyword ``name``: for a tree parameter
    (:data:`TREE_PARAMETERS`) both ``build`` and ``noise_count`` accept it; for any other
    keyword ``build`` does (a ``**kwargs`` counts as accepting)."""
    fns = (obj.build, obj.noise_count) if name in TREE_PARAMETERS else (obj.build,)
    return all(not _accepts(fn, (name,)) for fn in fns)


def _tree_keywords(target, n: int, copies, grid_size) -> dict:
    """The tree parameters to pass: those given, if the target declares them; a value other
    than the default (one copy, grid size n) for a target that does not: :class:`TargetError`."""
    kw = {}
    for name, value, default in (("copies", copies, 1), ("grid_size", grid_size, n)):
        if value is None:
            continue
        if declares(target, name):
            kw[name] = value
        elif value != default:
            raise TargetError(name, f"is an optional tree parameter the target does not declare "
                              f"(its build and noise_count take no {name!r}; only {default} applies)",
                              value)
    return kw


def target_noise_count(target, *, n, d, d_v, degree, mechanism, copies=None,
                       grid_size=None) -> int:
    """``target.noise_count`` with the protocol's keywords, ``copies`` / ``grid_size`` passed
    as :func:`build_target` passes them (:data:`TREE_PARAMETERS`)."""
    kw = _tree_keywords(target, n, copies, grid_size)
    return int(target.noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism=mechanism, **kw))


def build_target(target, K, V, *, eps, delta, R, R_w, degree, mechanism, uniforms=None,
                 rng=None, law: str = "tlap", scale=None, copies=None, grid_size=None,
                 options=None):
    """``target.build`` with the protocol's keywords; ``law`` and ``scale`` passed only when
    they are not the defaults ("tlap", None = 1/d); ``copies`` and ``grid_size`` (the optional
    tree parameters) only to a target that declares them (:func:`declares`); ``options`` (a
    dict of :data:`ADAPTER_OPTIONS`, for dpxattn's own adapters) verbatim. Raises
    :class:`TargetError` when the target does not offer what is asked (the caller reports the
    case as not applicable)."""
    kw = dict(eps=eps, delta=delta, R=R, R_w=R_w, degree=degree, mechanism=mechanism,
              uniforms=uniforms, rng=rng)
    kw.update(_tree_keywords(target, len(K), copies, grid_size))
    for name, value in (options or {}).items():
        if _accepts(target.build, (name,)):
            raise TargetError(name, "is not a keyword of the target's build (an adapter option "
                              "of dpxattn's own targets)", value)
        kw[name] = value
    if law != "tlap":
        if law not in target_laws(target):
            raise TargetError("law", f"{law!r} is not among the target's laws {target_laws(target)}")
        kw["law"] = law
    if scale is not None:
        if _accepts(target.build, ("scale",)):
            raise TargetError("scale", "is not a keyword of the target's build (only the default "
                              "1/d applies)")
        kw["scale"] = scale
    K = np.ascontiguousarray(K, dtype=np.float64)
    V = np.ascontiguousarray(V, dtype=np.float64)
    return target.build(K, V, **kw)


def released_vector(built) -> np.ndarray:
    """The released numbers flattened (row-major) and concatenated in ``released()``'s key
    order: entry j received noise draw j (float64, 1-D)."""
    rel = built.released()
    if not isinstance(rel, dict) or not rel:
        raise TargetError("released()", "must return a non-empty dict name -> array", type(rel).__name__)
    return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in rel.values()])


# ---------------------------------------------------------------------------------------------
# adapters: dpxattn's own implementations as targets
# ---------------------------------------------------------------------------------------------

def _up(x: np.ndarray) -> np.ndarray:
    """Round a float64 conversion of a bound one ulp upward (never optimistic)."""
    return np.nextafter(np.asarray(x, dtype=np.float64), math.inf)


class _FastBuilt:
    __slots__ = ("att",)

    def __init__(self, att) -> None:
        self.att = att

    def query(self, Q) -> np.ndarray:
        import torch

        return self.att.query(torch.as_tensor(np.asarray(Q, dtype=np.float64))).numpy()

    def error_bound(self, Q) -> np.ndarray:
        import torch

        return self.att.error_bound(torch.as_tensor(np.asarray(Q, dtype=np.float64))).numpy()

    def hp_error_bound(self, Q, failure_prob: float) -> np.ndarray:
        """Beyond the protocol (our adapters only): the high-probability envelope."""
        import torch

        return self.att.hp_error_bound(torch.as_tensor(np.asarray(Q, dtype=np.float64)),
                                       failure_prob).numpy()

    def released(self) -> dict[str, np.ndarray]:
        t = self.att.released_tensors()
        if self.att.mechanism == "direct":
            return {"S": t["S"].numpy().copy()}
        # fast memory layout (2N - 1, r, l, d_v + 1, 3) -> the uniforms' order (i, c, k, t, m)
        return {"scalars": t["scalars"].numpy().copy(),
                "nodes": t["payload"].permute(0, 2, 3, 1, 4).contiguous().numpy()}


class FastTarget:
    """``dpxattn.fast.DPCrossAttention`` (torch, float64) behind the target protocol.

    ``rng``: a torch generator seeded from it (the fast path's own sampler); ``uniforms``:
    passed through. Declares the tree parameters ``copies`` and ``grid_size``; adapter options
    (:data:`ADAPTER_OPTIONS`): ``domain``, ``composition``, ``generator`` (a torch or numpy
    generator handed to the fast build as is, in place of ``rng``) and ``noise``, all passed
    through. The
    built object also has ``hp_error_bound(Q, p)`` and ``att`` (the structure itself).
    Paper: the structure of v2 §3 (tree) and our direct (DESIGN §2).
    """

    mechanisms = ("direct", "tree")
    laws = ("tlap", "gaussian")

    @classmethod
    def build(cls, K, V, *, eps, delta, R, R_w, degree, mechanism, uniforms=None, rng=None,
              law="tlap", scale=None, copies=1, grid_size=None, domain="box",
              composition="basic", generator=None, noise=None):
        import torch

        from dpxattn.fast import DPCrossAttention

        if generator is not None and (rng is not None or uniforms is not None):
            raise TargetError("generator", "is an alternative to rng and uniforms, not an addition")
        gen = generator
        if rng is not None:
            gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        extra = {}
        if mechanism == "tree":
            extra.update(copies=copies, grid_size=grid_size)
            if composition != "basic":
                extra.update(composition=composition)
        if domain != "box":
            extra.update(domain=domain)
        if noise is not None:
            extra.update(noise=noise)
        att = DPCrossAttention.build(torch.as_tensor(K), torch.as_tensor(V), eps=eps, delta=delta,
                                     R=R, R_w=R_w, degree=degree, mechanism=mechanism,
                                     scale=scale, generator=gen, uniforms=uniforms, law=law, **extra)
        return _FastBuilt(att)

    @staticmethod
    def noise_count(*, n, d, d_v, degree, mechanism, copies=1, grid_size=None) -> int:
        from dpxattn.fast import DPCrossAttention

        return DPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism=mechanism,
                                            copies=copies, grid_size=grid_size)


class _RefBuilt:
    __slots__ = ("att",)

    def __init__(self, att) -> None:
        self.att = att

    def query_exact(self, Q) -> list:
        """The exact answers (m rows of d_v mpf)."""
        return self.att.query(np.asarray(Q, dtype=np.float64))

    def query(self, Q) -> np.ndarray:
        return np.array([[float(x) for x in row] for row in self.query_exact(Q)], dtype=np.float64)

    def error_bound(self, Q) -> np.ndarray:
        rows = self.att.error_bound(np.asarray(Q, dtype=np.float64))
        return _up(np.array([[float(x) for x in row] for row in rows], dtype=np.float64))

    def hp_error_bound(self, Q, failure_prob: float) -> np.ndarray:
        """Beyond the protocol (our adapters only): the high-probability envelope, rounded up."""
        rows = self.att.hp_error_bound(np.asarray(Q, dtype=np.float64), failure_prob)
        return _up(np.array([[float(x) for x in row] for row in rows], dtype=np.float64))

    def released_exact(self) -> dict[str, list]:
        """Every released number as mpf, nested lists in the layout of :meth:`released`."""
        rel = self.att.release
        if self.att.mechanism == "direct":
            return {"S": [list(row) for row in rel.noisy]}
        scal = [[[sm.c0, sm.c1] for sm in cols] for cols in rel.softmax]
        any_sm = rel.softmax[0][0]
        nodes_count = len(any_sm.coordinates[0].trees[0].noisy)
        nodes = [[[[[tree.noisy[i] for tree in ds.trees] for ds in sm.coordinates]
                   for sm in cols] for cols in rel.softmax] for i in range(nodes_count)]
        return {"scalars": scal, "nodes": nodes}

    def released(self) -> dict[str, np.ndarray]:
        def conv(x):
            return [conv(y) for y in x] if isinstance(x, list) else float(x)

        return {k: np.array(conv(v), dtype=np.float64) for k, v in self.released_exact().items()}


class ReferenceTarget:
    """``dpxattn.reference.DPCrossAttention`` (exact, mpmath) behind the target protocol.

    ``released()`` and ``query()`` are the exact numbers rounded to float64; ``released_exact``
    and ``query_exact`` keep them exact (the vectors are exported from these). ``rng``: passed
    as the reference's generator. Declares the tree parameters ``copies`` and ``grid_size``;
    adapter options: ``domain``, ``composition``, ``prec``, ``generator`` (a numpy generator,
    the same as ``rng``). Paper: the structure of v2 §3 (tree) and our direct.
    """

    mechanisms = ("direct", "tree")
    laws = ("tlap", "gaussian")

    @classmethod
    def build(cls, K, V, *, eps, delta, R, R_w, degree, mechanism, uniforms=None, rng=None,
              law="tlap", scale=None, prec=None, copies=1, grid_size=None, domain="box",
              composition="basic", generator=None):
        from dpxattn.reference import DPCrossAttention

        if generator is not None and (rng is not None or uniforms is not None):
            raise TargetError("generator", "is an alternative to rng and uniforms, not an addition")
        kw = {} if prec is None else {"prec": prec}
        if mechanism == "tree":
            kw.update(copies=copies, grid_size=grid_size)
            if composition != "basic":
                kw.update(composition=composition)
        if domain != "box":
            kw.update(domain=domain)
        att = DPCrossAttention.build(np.asarray(K, dtype=np.float64), np.asarray(V, dtype=np.float64),
                                     eps=eps, delta=delta, R=R, R_w=R_w, degree=degree,
                                     mechanism=mechanism, scale=scale,
                                     generator=rng if generator is None else generator,
                                     uniforms=uniforms, law=law, **kw)
        return _RefBuilt(att)

    @staticmethod
    def noise_count(*, n, d, d_v, degree, mechanism, copies=1, grid_size=None) -> int:
        from dpxattn.reference import DPCrossAttention

        return DPCrossAttention.noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism=mechanism,
                                            copies=copies, grid_size=grid_size)


#: the target ``dpxattn verify`` tests when no ``--target`` is given: dpxattn's own fast path
OWN_TARGET = "dpxattn.verification.target:FastTarget"


def own_target() -> LoadedTarget:
    """dpxattn's fast path as a loaded target (:data:`OWN_TARGET`): the harness's default."""
    return LoadedTarget(FastTarget, OWN_TARGET)


def is_own_target(target) -> bool:
    """Whether ``target`` (a :class:`LoadedTarget`, or None for the default) is dpxattn's own
    fast path, the one implementation whose internals (samplers, kernel, timing) the checks
    marked ``reaches="internals"`` in the registry can test."""
    return target is None or getattr(target, "obj", None) is FastTarget


def context_target(ctx) -> LoadedTarget:
    """The target a check runs against: ``ctx.target``, or :func:`own_target` when unset."""
    return own_target() if getattr(ctx, "target", None) is None else ctx.target


def seeded_source(target, generator, **own_options) -> dict:
    """The keywords that seed a build of ``target`` (a loaded target; None: dpxattn's own fast
    path) from a check's torch ``generator``: the own fast path is handed the generator as is
    (adapter option, plus ``own_options``), so its numbers are bit-identical to a direct
    ``DPCrossAttention.build``; any other target gets ``rng = numpy.random.default_rng(seed of
    the generator)``. Returns ``{"options": {...}}`` or ``{"rng": ...}`` for :func:`build_target`."""
    if is_own_target(target):
        return {"options": {"generator": generator, **own_options}}
    return {"rng": np.random.default_rng(generator.initial_seed())}

