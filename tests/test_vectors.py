"""Conformance vectors (``verification/vectors.py``, ``verification/cli_vectors.py``;
``proofs_notes/29-target-protocol.md``): what they cover, that they follow the schema, that the
fast path reproduces each within its tolerance and the reference exactly, and that a wrong
implementation or a tampered vector fails."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dpxattn.cli import main
from dpxattn.verification.target import FastTarget, ReferenceTarget
from dpxattn.verification.vectors import (SCHEMA_NAME, VectorFileError, decimal_string, to_array,
                                          nested_map, check_vector, check_vectors, export_vectors,
                                          load_vectors, validate)

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "third_party_numpy.py")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("vectors")
    paths = export_vectors(d)
    return d, paths, load_vectors(d)


def _significant(s: str) -> int:
    mant = re.sub(r"[eE].*$", "", s).lstrip("-").replace(".", "").lstrip("0")
    return len(mant)


def test_files_schema_and_coverage(exported):
    d, paths, vectors = exported
    assert (d / SCHEMA_NAME).is_file()
    assert {p.name for p in paths} >= {"direct_tlap.json", "direct_gaussian.json", "tree_tlap.json",
                                       SCHEMA_NAME}
    assert sum(p.stat().st_size for p in paths) < 1_000_000
    for p in paths:
        if p.name != SCHEMA_NAME:
            validate(json.loads(p.read_text()))
    by = lambda key: {v[key] for v in vectors}  # noqa: E731
    assert by("mechanism") == {"direct", "tree"} and by("law") >= {"tlap", "gaussian"}
    sizes = {(v["mechanism"], v["sizes"]["n"]) for v in vectors}
    for mech in ("direct", "tree"):
        ns = {n for m, n in sizes if m == mech}
        assert 1 in ns and any(n & (n - 1) == 0 and n > 1 for n in ns)
        assert any((n + 1) & n == 0 or (n - 1) & (n - 2) == 0 for n in ns if n > 2)
        assert {v["params"]["degree"] for v in vectors if v["mechanism"] == mech} == {0, 1, 2, 3, 4}
        assert any(v["noiseless"] for v in vectors if v["mechanism"] == mech)
    assert {1, 3, 5} <= {v["sizes"]["d"] for v in vectors}
    kinds = {v["uniform_kind"] for v in vectors}
    assert {"low", "high", "half"} <= kinds
    assert any(float(u) < 1e-15 for v in vectors for u in v["uniforms"])
    assert any(float(u) > 1 - 1e-15 for v in vectors for u in v["uniforms"])


def test_numbers_are_decimal_strings_with_enough_digits(exported):
    _, _, vectors = exported
    for v in vectors:
        flat = []
        nested_map(v["expected"]["answers"], flat.append)
        for rel in v["expected"]["released"].values():
            nested_map(rel, flat.append)
        assert all(isinstance(s, str) for s in flat)
        assert all(_significant(s) >= 25 for s in flat if s != "0"), v["id"]
        d = v["derived"]
        keys = ({"sensitivity", "sigma"} if v["law"] == "gaussian" else
                {"sensitivity", "laplace_scale", "support_bound"}) if v["mechanism"] == "direct" \
            else {"scalars", "trees", "levels", "grid_size"}
        assert keys <= set(d), v["id"]


def test_fast_reproduces_every_vector_within_tolerance(exported):
    d, _, vectors = exported
    results = check_vectors(FastTarget, d)
    assert len(results) == len(vectors)
    bad = [(r.id, r.ratio, r.skipped) for r in results if not r.passed or r.skipped]
    assert not bad, bad


def test_reference_reproduces_every_vector_exactly(exported):
    """Rebuilt from the file's inputs alone, the reference's exact numbers print to the very
    strings of the file (every digit)."""
    _, _, vectors = exported
    for v in vectors:
        p = v["params"]
        att = ReferenceTarget.build(
            to_array(v["K"]), to_array(v["V"]), eps=float(p["eps"]), delta=float(p["delta"]),
            R=float(p["R"]), R_w=float(p["R_w"]), degree=p["degree"], mechanism=v["mechanism"],
            law=v["law"], scale=None if p["scale_is_default"] else float(p["scale"]),
            uniforms=np.array([float(u) for u in v["uniforms"]]))
        got = {k: nested_map(x, decimal_string) for k, x in att.released_exact().items()}
        assert got == v["expected"]["released"], v["id"]
        assert nested_map(att.query_exact(to_array(v["Q"])), decimal_string) == v["expected"]["answers"], v["id"]


def test_export_is_deterministic(exported, tmp_path):
    d, paths, _ = exported
    again = export_vectors(tmp_path)
    for p, q in zip(paths, again):
        assert p.read_bytes() == q.read_bytes()


def test_tampered_vector_and_wrong_target_fail(exported):
    _, _, vectors = exported
    v = next(x for x in vectors if x["mechanism"] == "direct" and not x["noiseless"])
    assert check_vector(FastTarget, v).passed
    bad = copy.deepcopy(v)
    s = bad["expected"]["released"]["S"][0][0]
    bad["expected"]["released"]["S"][0][0] = repr(float(s) * (1 + 1e-8) + 1e-8)
    r = check_vector(FastTarget, bad)
    assert not r.passed and r.ratio > 1
    bad = copy.deepcopy(v)
    bad["expected"]["answers"][0][0] = repr(float(bad["expected"]["answers"][0][0]) + 1e-6)
    assert not check_vector(FastTarget, bad).passed


def test_validate_names_the_first_violation(exported):
    _, _, vectors = exported
    v = copy.deepcopy(vectors[0])
    del v["tolerance"]
    with pytest.raises(VectorFileError, match=r"\$\[0\]: missing required field 'tolerance'"):
        validate([v])
    v = copy.deepcopy(vectors[0])
    v["K"][0][0] = 0.5
    with pytest.raises(VectorFileError, match=r"\$\[0\]\.K\[0\]\[0\]: must be of type string"):
        validate([v])
    v = copy.deepcopy(vectors[0])
    v["mechanism"] = "fancy"
    with pytest.raises(VectorFileError, match="must be one of"):
        validate([v])


def test_cli_export_and_check(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["vectors", "export", "--out", str(out)]) == 0
    assert main(["vectors", "check", "--target", "dpxattn.verification.target:FastTarget",
                 "--dir", str(out)]) == 0
    m = re.search(r"(\d+) of (\d+) applicable vectors passed", capsys.readouterr().out)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 40
    assert main(["vectors", "check", "--target", f"{EXAMPLE}:Correct", "--dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "did not apply" in text and "mechanism 'tree' not declared" in text
    assert main(["vectors", "check", "--target", f"{EXAMPLE}:NoiseTimes07", "--dir", str(out)]) == 1
    assert main(["vectors", "check", "--target", "no_such_module_xyz:X", "--dir", str(out)]) == 2
    (out / "broken.json").write_text("[{\"format\": 1}]")
    assert main(["vectors", "check", "--target", f"{EXAMPLE}:Correct", "--dir", str(out)]) == 2
    assert main(["vectors", "check", "--target", f"{EXAMPLE}:Correct",
                 "--dir", str(tmp_path / "empty")]) == 2


def test_standalone_checker_without_dpxattn(exported, tmp_path):
    """examples/check_vectors_standalone.py (json + numpy, the non-Python route) passes the numpy
    example on every applicable vector and fails a tampered one."""
    import ast
    import subprocess
    import sys

    script = Path(EXAMPLE).with_name("check_vectors_standalone.py")
    tree = ast.parse(script.read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "dpxattn" not in mods
    d, _, _ = exported
    run = subprocess.run([sys.executable, str(script), str(d)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"(\d+) of \1 applicable vectors passed", run.stdout)
    vectors = json.loads((d / "direct_tlap.json").read_text())
    v = next(x for x in vectors if not x["noiseless"])
    v["expected"]["answers"][0][0] = repr(float(v["expected"]["answers"][0][0]) + 1e-3)
    (tmp_path / "one.json").write_text(json.dumps([v]))
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 1 and "FAIL" in run.stdout
