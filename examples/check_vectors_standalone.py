"""Check an implementation against dpxattn's conformance vectors without dpxattn: the steps a
non-Python implementation follows, written with json and numpy only.

    dpxattn vectors export --out vectors/          # once, anywhere dpxattn is installed
    python examples/check_vectors_standalone.py vectors/

For each vector of ``vectors/*.json`` (``vectors.schema.json`` describes the fields):

1. parse every decimal string as an IEEE-754 double (round to nearest): K (n, d), V (n, d_v),
   Q (m, d), the uniforms and the params are float64 values written exactly;
2. build the mechanism from (K, V, params) with the given uniforms instead of a random source:
   noise draw j is the inverse CDF of uniform j (1/2 gives 0), in the documented order
   (``derived.uniform_order``); ``derived`` holds every constant the numbers depend on
   (sensitivity, Laplace scale and support bound, or sigma), to compare one's own constants;
3. compare every released number (``expected.released``, flattened row-major in key order: the
   uniforms' order) within ``rtol |expected| + atol`` and every answer of Q within
   ``rtol |expected| + atol_answers``.

Here step 2 is the independent numpy ``direct`` of ``third_party_numpy.py`` (law "tlap"); other
vectors (tree, gaussian) are counted as not applicable. Exit status 0 if every applicable vector
passed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from third_party_numpy import Correct  # noqa: E402  (the implementation under test)


def _parse(x):
    return [_parse(y) for y in x] if isinstance(x, list) else float(x)


def check(vec: dict) -> tuple[bool | None, float]:
    """(passed, worst ratio); passed is None when the vector does not apply."""
    if vec["mechanism"] != "direct" or vec["law"] != "tlap" or not vec["params"]["scale_is_default"]:
        return None, 0.0
    p = vec["params"]
    K, V, Q = (np.array(_parse(vec[k])) for k in ("K", "V", "Q"))
    u = np.array(_parse(vec["uniforms"]))
    built = Correct.build(K, V, eps=float(p["eps"]), delta=float(p["delta"]), R=float(p["R"]),
                          R_w=float(p["R_w"]), degree=int(p["degree"]), mechanism="direct",
                          uniforms=u)
    tol = vec["tolerance"]
    rtol, atol, atol_a = float(tol["rtol"]), float(tol["atol"]), float(tol["atol_answers"])
    want = np.array(_parse(vec["expected"]["released"]["S"]))
    got = built.released()["S"]
    worst = float(np.max(np.abs(got - want) / (rtol * np.abs(want) + atol)))
    want_a = np.array(_parse(vec["expected"]["answers"]))
    worst = max(worst, float(np.max(np.abs(built.query(Q) - want_a) / (rtol * np.abs(want_a) + atol_a))))
    return worst <= 1.0, worst


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_vectors_standalone.py VECTORS_DIR", file=sys.stderr)
        return 2
    files = sorted(p for p in Path(argv[0]).glob("*.json") if not p.name.endswith(".schema.json"))
    results = []
    for f in files:
        for vec in json.loads(f.read_text()):
            ok, ratio = check(vec)
            results.append((vec["id"], ok, ratio))
            if ok is False:
                print(f"FAIL {vec['id']}: worst |got - expected| / tolerance = {ratio:.3g}")
    applied = [r for r in results if r[1] is not None]
    passed = sum(1 for r in applied if r[1])
    print(f"{passed} of {len(applied)} applicable vectors passed ({len(results)} in all)")
    return 0 if applied and passed == len(applied) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
