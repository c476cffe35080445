"""Conformance vectors: versioned JSON from the exact reference, and a check of any target
against them (``dpxattn vectors export|check``; ``proofs_notes/29-target-protocol.md``).

In the style of Wycheproof and NIST's validation vectors: a file any implementation, in any
language, can check itself against. Each vector holds the inputs (K, V, Q as float64 values in
decimal), the uniforms (noise draw j is the inverse CDF of uniform j, in the documented order;
1/2 is zero noise), the parameters, every public constant the expected numbers depend on
(``derived``), the expected released numbers and answers (30 significant digits, from the
reference at 160 bits) and the tolerance (``rtol``, ``atol``, ``atol_answers``: DESIGN §6's
1e-10 relative and the float64 allowance of
:func:`dpxattn.verification.checks_target.float64_tolerance`). The cases (:func:`vector_cases`)
are the conformance table's single-copy box rows (n = 1, powers of two and +-1, d = 1 and odd,
degree 0..4, both mechanisms, extreme uniforms near 0 and 1, one given scale) for law "tlap",
the ``direct`` rows for law "gaussian", and a noiseless copy (every uniform 1/2) of each
mechanism's first rows. ``tree`` with law "gaussian" is included when the reference offers it.

Files: ``DIR/<mechanism>_<law>.json`` (a JSON array of vectors) and
``DIR/vectors.schema.json`` (:data:`SCHEMA_PATH`, the JSON schema; :func:`validate` checks a
vector against the subset of JSON schema it uses, without a dependency). Shapes: K (n, d),
V (n, d_v), Q (m, d), answers (m, d_v); released as in :mod:`dpxattn.verification.target`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np

from dpxattn.verification.target import ReferenceTarget, build_target, released_vector

__all__ = [
    "FORMAT",
    "VERSION",
    "DIGITS",
    "SCHEMA_PATH",
    "SCHEMA_NAME",
    "decimal_string",
    "nested_map",
    "to_array",
    "vector_cases",
    "make_vector",
    "export_vectors",
    "load_vectors",
    "validate",
    "VectorFileError",
    "VectorResult",
    "check_vector",
    "check_vectors",
]

FORMAT = "dpxattn-conformance-vectors"
#: the format version: bump when a field's meaning changes
VERSION = 1
#: significant digits of every expected and derived number
DIGITS = 30
#: the schema shipped in the package, copied beside exported files under :data:`SCHEMA_NAME`
SCHEMA_PATH = Path(__file__).with_name("vectors_schema.json")
SCHEMA_NAME = "vectors.schema.json"


def decimal_string(x) -> str:
    """An mpf (or exact rational) as a decimal string with DIGITS significant digits."""
    if isinstance(x, Fraction):
        ctx = mpmath.MPContext()
        ctx.prec = 200
        x = ctx.mpf(x.numerator) / x.denominator
    return mpmath.nstr(x, DIGITS, strip_zeros=False) if x != 0 else "0"


def _f64(x: float) -> str:
    """A float64 input as the shortest decimal that parses back to it exactly."""
    return repr(float(x))


def nested_map(x, fn):
    """``fn`` applied to every leaf of nested lists (or tuples), as nested lists."""
    return [nested_map(y, fn) for y in x] if isinstance(x, (list, tuple)) else fn(x)


def vector_cases():
    """(case, law) pairs: the conformance table's single-copy box rows with the default grid
    (any scale), each law the reference offers for the mechanism, and noiseless copies."""
    from dpxattn.verification.conformance import CASES

    rows = [c for c in CASES if c.domain == "box" and c.copies == 1 and c.grid_size is None
            and c.law == "tlap" and c.composition == "basic"]  # the law comes from the pair
    out = [(c, "tlap") for c in rows]
    out += [(c, "gaussian") for c in rows if c.mechanism == "direct"]
    if _reference_offers("tree", "gaussian"):
        out += [(c, "gaussian") for c in rows if c.mechanism == "tree"
                and (c.n <= 3 or (c.n <= 8 and c.uniforms == "high"))]  # small: the 1 MB budget
    for mech in ("direct", "tree"):
        first = [c for c in rows if c.mechanism == mech and c.uniforms != "half"][:3]
        out += [(replace(c, name=c.name + " noiseless", uniforms="half"), "tlap") for c in first]
    return out


def _reference_offers(mechanism: str, law: str) -> bool:
    from dpxattn.errors import ParameterError
    from dpxattn.params import check_law

    try:
        check_law(law, mechanism)
    except ParameterError:
        return False
    return True


def _derived(att, law: str) -> dict:
    """Every public constant the expected numbers depend on, from the reference structure."""
    rel = att.release
    order = ("direct: S row-major, feature index major (degree k = 0..s, multisets in "
             "itertools.combinations_with_replacement order), columns [V columns..., ones]"
             if att.mechanism == "direct" else
             "tree: scalars [c0, c1] per (copy, column), then nodes node-major (level order), "
             "per node (copy, column, coordinate, moment)")
    out = {"uniform_order": order, "r": rel.r}
    if att.mechanism == "direct":
        out.update(sensitivity=decimal_string(rel.sensitivity), sensitivity_norm="l2" if law == "gaussian" else "l1",
                   eps_component=decimal_string(Fraction(rel.eps)), delta_component=decimal_string(Fraction(rel.delta)),
                   denominator_floor=decimal_string(rel.floor))
        if law == "gaussian":
            out["sigma"] = decimal_string(rel.sigma)
        else:
            out.update(laplace_scale=decimal_string(rel.laplace_scale), support_bound=decimal_string(rel.support_bound))
        return out
    sm0 = rel.softmax[0]
    if law == "gaussian":  # one Gaussian component: every released number N(0, sigma^2)
        eps_g, delta_g = att.privacy.share("tree")
        tree0 = sm0[0].coordinates[0].trees[0]
        sigma = decimal_string(rel.sigma)
        out.update(sensitivity=decimal_string(rel.sensitivity), sensitivity_norm="l2",
                   eps_component=decimal_string(Fraction(eps_g)),
                   delta_component=decimal_string(Fraction(delta_g)), sigma=sigma,
                   grid_size=rel.grid_size, padded_size=tree0.N, levels=tree0.levels,
                   denominator_floor=str(rel.n),
                   scalars=[{"column": k, "sigma": sigma} for k in range(len(sm0))],
                   trees=[{"column": k, "coordinate": t, "moment": m, "sigma": sigma}
                          for k, sm in enumerate(sm0) for t in range(len(sm.coordinates))
                          for m in range(len(sm.coordinates[t].trees))])
        return out
    trees = []
    for k, sm in enumerate(sm0):
        for t, ds in enumerate(sm.coordinates):
            for m, tree in enumerate(ds.trees):
                trees.append({"column": k, "coordinate": t, "moment": m,
                              "sensitivity": decimal_string(tree.sensitivity),
                              "eps_level": decimal_string(Fraction(tree.eps_level)),
                              "delta_level": decimal_string(Fraction(tree.delta_level)),
                              "support_bound": decimal_string(tree.support_bound)})
    out.update(grid_size=rel.grid_size, padded_size=sm0[0].coordinates[0].trees[0].N,
               levels=sm0[0].coordinates[0].trees[0].levels, denominator_floor=str(rel.n),
               scalars=[{"column": k, "c0_laplace_scale": decimal_string(sm.c0_laplace_scale),
                         "c0_support_bound": decimal_string(sm.c0_support_bound),
                         "c1_laplace_scale": decimal_string(sm.c1_laplace_scale),
                         "c1_support_bound": decimal_string(sm.c1_support_bound)} for k, sm in enumerate(sm0)],
               trees=trees)
    return out


def make_vector(case, law: str = "tlap", root: int = 0) -> dict:
    """One vector from the exact reference (module docstring); ``root``: the data seed."""
    from dpxattn.reference.kernel import default_scale
    from dpxattn.verification.checks_target import _case_inputs, _query_weights, float64_tolerance

    K, V, Q, u = _case_inputs(case, root)
    kw = dict(eps=case.eps, delta=case.delta, R=case.R, R_w=case.R_w, degree=case.degree,
              mechanism=case.mechanism, law=law, scale=case.scale)
    ref = ReferenceTarget.build(K, V, uniforms=u, **kw)
    half = ReferenceTarget.build(K, V, uniforms=np.full(u.size, 0.5), **kw)
    rel_exact = ref.released_exact()
    x, z = released_vector(half), released_vector(ref) - released_vector(half)
    weights, terms = _query_weights(case.mechanism, Q, case.degree, case.n)
    atol_ans, atol_rel, rtol = float64_tolerance(x, z, weights_l1=weights, R_w=case.R_w,
                                                 floor=float(case.n), terms=terms)
    scale = default_scale(case.d) if case.scale is None else Fraction(case.scale)
    return {
        "format": FORMAT, "version": VERSION,
        "id": f"{law}-{case.name.replace(' ', '-')}",
        "mechanism": case.mechanism, "law": law, "noiseless": bool(np.all(u == 0.5)),
        "uniform_kind": case.uniforms,
        "sizes": {"n": case.n, "d": case.d, "d_v": case.d_v, "m": int(Q.shape[0]),
                  "r": ref.att.release.r, "noise_count": int(u.size)},
        "params": {"eps": _f64(case.eps), "delta": _f64(case.delta), "R": _f64(case.R),
                   "R_w": _f64(case.R_w), "degree": case.degree, "scale": decimal_string(scale),
                   "scale_exact": str(scale), "scale_is_default": case.scale is None},
        "K": nested_map(K.tolist(), _f64), "V": nested_map(V.tolist(), _f64),
        "Q": nested_map(Q.tolist(), _f64), "uniforms": [_f64(v) for v in u],
        "derived": _derived(ref.att, law),
        "expected": {"released": {k: nested_map(v, decimal_string) for k, v in rel_exact.items()},
                     "answers": nested_map(ref.query_exact(Q), decimal_string)},
        "tolerance": {"rtol": _f64(rtol), "atol": _f64(atol_rel),
                      "atol_answers": _f64(float(np.max(atol_ans)))},
    }


def export_vectors(out_dir, root: int = 0) -> list[Path]:
    """Write ``out_dir/<mechanism>_<law>.json`` and the schema; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list] = {}
    for case, law in vector_cases():
        groups.setdefault(f"{case.mechanism}_{law}", []).append(make_vector(case, law, root))
    paths = []
    for name, vectors in groups.items():
        p = out / f"{name}.json"
        p.write_text(json.dumps(vectors, indent=1) + "\n", encoding="utf-8")
        paths.append(p)
    schema = out / SCHEMA_NAME
    schema.write_text(SCHEMA_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    return paths + [schema]


# ---------------------------------------------------------------------------------------------
# validation (the subset of JSON schema the schema file uses)
# ---------------------------------------------------------------------------------------------

class VectorFileError(ValueError):
    """A vectors file that is not valid JSON or does not follow the schema."""


_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}


def validate(instance, schema: dict | None = None, *, root: dict | None = None, path: str = "$"):
    """Check ``instance`` against ``schema`` (default: the shipped schema, as a whole file, i.e.
    a list of vectors) for the keywords it uses: type, required, properties,
    additionalProperties (a schema), items, minItems, enum, pattern, anyOf, $ref (to #/$defs).
    Raises :class:`VectorFileError` naming the path of the first violation."""
    if schema is None:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    root = schema if root is None else root
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return validate(instance, root["$defs"][name], root=root, path=path)
    if "anyOf" in schema:
        errors = []
        for sub in schema["anyOf"]:
            try:
                return validate(instance, sub, root=root, path=path)
            except VectorFileError as exc:
                errors.append(str(exc))
        raise VectorFileError(f"{path}: matches none of the allowed forms ({errors[0]})")
    t = schema.get("type")
    if t is not None:
        ok = isinstance(instance, _TYPES[t]) and not (t == "integer" and isinstance(instance, bool))
        if not ok:
            raise VectorFileError(f"{path}: must be of type {t} (got {type(instance).__name__})")
    if "enum" in schema and instance not in schema["enum"]:
        raise VectorFileError(f"{path}: must be one of {schema['enum']} (got {instance!r})")
    if "pattern" in schema and not re.search(schema["pattern"], instance):
        raise VectorFileError(f"{path}: {instance!r} is not a decimal number string")
    if isinstance(instance, dict):
        for key in schema.get("required", ()):
            if key not in instance:
                raise VectorFileError(f"{path}: missing required field {key!r}")
        props = schema.get("properties", {})
        for key, value in instance.items():
            if key in props:
                validate(value, props[key], root=root, path=f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                validate(value, schema["additionalProperties"], root=root, path=f"{path}.{key}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            raise VectorFileError(f"{path}: needs at least {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(instance):
                validate(item, schema["items"], root=root, path=f"{path}[{i}]")
    return None


def load_vectors(directory) -> list[dict]:
    """Every vector of ``directory/*.json`` (the schema file excepted), validated."""
    d = Path(directory)
    files = sorted(p for p in d.glob("*.json") if not p.name.endswith(".schema.json"))
    if not files:
        raise VectorFileError(f"{d}: no vectors files (*.json) found")
    out = []
    for p in files:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise VectorFileError(f"{p}: not valid JSON ({exc})") from exc
        try:
            validate(data)
        except VectorFileError as exc:
            raise VectorFileError(f"{p}: {exc}") from exc
        out.extend(data)
    return out


# ---------------------------------------------------------------------------------------------
# checking a target
# ---------------------------------------------------------------------------------------------

@dataclass
class VectorResult:
    """One vector against one target: ``ratio`` = the largest |got - expected| / (rtol
    |expected| + atol) over released numbers and answers (<= 1 passes); ``skipped`` says why a
    vector did not apply (mechanism, law or scale not offered)."""

    id: str
    passed: bool
    ratio: float
    skipped: str = ""
    details: dict | None = None


def to_array(x) -> np.ndarray:
    """Nested lists of decimal strings as a float64 array (round to nearest)."""
    return np.array(nested_map(x, float), dtype=np.float64)


def check_vector(target, vec: dict) -> VectorResult:
    """Build ``target`` from the vector's inputs and uniforms, compare (module docstring)."""
    from dpxattn.verification.target import TargetError, target_laws

    vid = vec["id"]
    mech, law = vec["mechanism"], vec["law"]
    if mech not in target.mechanisms:
        return VectorResult(vid, True, 0.0, f"mechanism {mech!r} not declared by the target")
    if law != "tlap" and law not in target_laws(target):
        return VectorResult(vid, True, 0.0, f"law {law!r} not declared by the target")
    p, s = vec["params"], vec["sizes"]
    K, V, Q = to_array(vec["K"]), to_array(vec["V"]), to_array(vec["Q"])
    u = np.array([float(x) for x in vec["uniforms"]], dtype=np.float64)
    kw = dict(eps=float(p["eps"]), delta=float(p["delta"]), R=float(p["R"]), R_w=float(p["R_w"]),
              degree=int(p["degree"]), mechanism=mech, law=law,
              scale=None if p["scale_is_default"] else float(p["scale"]))
    try:
        count = int(target.noise_count(n=s["n"], d=s["d"], d_v=s["d_v"], degree=kw["degree"],
                                       mechanism=mech))
        if count != s["noise_count"]:
            return VectorResult(vid, False, math.inf, details={"noise_count": count,
                                                              "expected": s["noise_count"]})
        built = build_target(target, K, V, uniforms=u, **kw)
    except TargetError as exc:
        return VectorResult(vid, True, 0.0, f"not offered by the target: {exc}")
    except Exception as exc:  # noqa: BLE001 - a target that raises fails the vector
        return VectorResult(vid, False, math.inf, details={"error": f"{type(exc).__name__}: {exc}"})
    tol = vec["tolerance"]
    rtol, atol, atol_a = float(tol["rtol"]), float(tol["atol"]), float(tol["atol_answers"])
    got_rel = built.released()
    want_rel = vec["expected"]["released"]
    if sorted(got_rel) != sorted(want_rel):
        return VectorResult(vid, False, math.inf, details={"released_names": sorted(got_rel),
                                                          "expected_names": sorted(want_rel)})
    worst, details = 0.0, {}
    for name, want in want_rel.items():
        w = to_array(want)
        g = np.asarray(got_rel[name], dtype=np.float64)
        if g.shape != w.shape:
            return VectorResult(vid, False, math.inf, details={name: f"shape {g.shape} != {w.shape}"})
        r = float(np.max(np.abs(g - w) / (rtol * np.abs(w) + atol)))
        details[f"released {name}"] = r
        worst = max(worst, r)
    wa = to_array(vec["expected"]["answers"])
    ga = np.asarray(built.query(Q), dtype=np.float64)
    if ga.shape != wa.shape:
        return VectorResult(vid, False, math.inf, details={"answers": f"shape {ga.shape} != {wa.shape}"})
    r = float(np.max(np.abs(ga - wa) / (rtol * np.abs(wa) + atol_a)))
    details["answers"] = r
    worst = max(worst, r if math.isfinite(r) else math.inf)
    return VectorResult(vid, bool(worst <= 1.0), worst, details=details)


def check_vectors(target, directory) -> list[VectorResult]:
    """Every vector of ``directory`` against ``target`` (a protocol object)."""
    return [check_vector(target, v) for v in load_vectors(directory)]
