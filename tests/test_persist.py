"""Saved structures (src/dpxattn/persist.py): round trips are bit-identical, files hold no
pickle, and foreign, altered or truncated files are clear errors."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from dpxattn.fast import DPCrossAttention
from dpxattn.persist import ALLOWED, FORMAT, StructureFileError, load_structure, save_structure
from dpxattn.reference import DPCrossAttention as RefDPCrossAttention

KW = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0, degree=2)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(7)
    K = torch.rand(24, 2, generator=g, dtype=torch.float64)
    V = torch.rand(24, 3, generator=g, dtype=torch.float64) * 2 - 1
    Q = torch.rand(6, 2, generator=g, dtype=torch.float64)
    return K, V, Q


FAST_CASES = {
    "direct float": dict(mechanism="direct", noise="float"),
    "direct secure": dict(mechanism="direct", noise="secure"),
    "direct gaussian float": dict(mechanism="direct", law="gaussian", noise="float"),
    "direct gaussian secure": dict(mechanism="direct", law="gaussian", noise="secure"),
    "tree float": dict(mechanism="tree", noise="float"),
    "tree secure": dict(mechanism="tree", noise="secure"),
    "tree copies=3 grid=16": dict(mechanism="tree", noise="float", copies=3, grid_size=16),
    "direct ball gaussian secure": dict(mechanism="direct", law="gaussian", noise="secure",
                                        domain="ball"),
    "direct ball tlap float": dict(mechanism="direct", noise="float", domain="ball"),
}


@pytest.mark.parametrize("case", list(FAST_CASES))
def test_fast_round_trip_is_bit_identical(case, data, tmp_path):
    K, V, Q = data
    kw = dict(KW, **FAST_CASES[case])
    if kw.get("domain") == "ball":  # signed rows of norm <= R
        K, Q = (0.9 * (2 * X - 1) / (2 * X - 1).norm(dim=1, keepdim=True) for X in (K, Q))
    gen = torch.Generator().manual_seed(3) if kw["noise"] == "float" else None
    att = DPCrossAttention.build(K, V, generator=gen, **kw)
    path = att.save(tmp_path / "s")
    assert path.suffix == ".npz"
    back = DPCrossAttention.load(path)
    assert torch.equal(att.query(Q), back.query(Q))
    assert torch.equal(att.query(Q.float()), back.query(Q.float()))
    if att.law == "tlap":
        assert torch.equal(att.error_bound(Q), back.error_bound(Q))
    assert torch.equal(att.hp_error_bound(Q, 0.05), back.hp_error_bound(Q, 0.05))
    assert back.privacy.to_dict() == att.privacy.to_dict()
    assert repr(back) == repr(att) and back.domain == att.domain
    for name, t in att.released_tensors().items():
        assert torch.equal(t, back.released_tensors()[name])


@pytest.mark.parametrize("mechanism,law", [("direct", "tlap"), ("direct", "gaussian"), ("tree", "tlap")])
def test_reference_round_trip_is_identical(mechanism, law, data, tmp_path):
    K, V, Q = (x[:4].numpy() for x in data)
    att = RefDPCrossAttention.build(K, V, mechanism=mechanism, law=law,
                                    generator=np.random.default_rng(1), **dict(KW, degree=1))
    back = RefDPCrossAttention.load(att.save(tmp_path / "r"))
    assert back.query(Q) == att.query(Q)  # mpf by mpf, at their own precision
    assert back.hp_error_bound(Q, 0.1) == att.hp_error_bound(Q, 0.1)
    assert back.privacy.to_dict() == att.privacy.to_dict()


def test_the_file_is_numpy_arrays_and_json_only(data, tmp_path):
    K, V, _ = data
    path = DPCrossAttention.build(K, V, generator=torch.Generator().manual_seed(0), noise="float",
                                  **KW).save(tmp_path / "s.npz")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert "meta.npy" in names and all(n.endswith(".npy") for n in names)
    with np.load(path, allow_pickle=False) as z:  # loads without pickle
        meta = json.loads(z["meta"].tobytes())
        assert all(z[k].dtype != object for k in z.files)
    assert meta["format"] == FORMAT and meta["implementation"] == "fast"
    # nothing private: the private K and V values appear nowhere in the arrays
    with np.load(path, allow_pickle=False) as z:
        for k in z.files:
            if z[k].dtype == np.float64:
                assert not np.isin(K.numpy().ravel(), z[k].ravel()).any()


def _rewrite(path, meta_edit=None, array_edit=None, out=None):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    if meta_edit:
        meta_edit(meta)
    if array_edit:
        array_edit(arrays)
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out = out or path.with_name("edited.npz")
    np.savez(out, meta=raw, **arrays)
    return out


@pytest.fixture()
def saved(data, tmp_path):
    K, V, _ = data
    att = DPCrossAttention.build(K, V, generator=torch.Generator().manual_seed(0), noise="float", **KW)
    return att.save(tmp_path / "s")


def test_altered_numbers_fail_the_checksum(saved):
    def bump(arrays):
        key = next(k for k, a in arrays.items() if a.dtype == np.float64 and a.size > 1)
        arrays[key] = arrays[key] + 1.0
    with pytest.raises(StructureFileError, match="checksum"):
        DPCrossAttention.load(_rewrite(saved, array_edit=bump))


def test_a_foreign_class_is_refused_even_with_a_valid_checksum(saved):
    """A file naming any class outside the allow-list is refused before anything is built,
    whatever its checksum says (the checksum is recomputed by the forger here)."""
    from dpxattn.persist import _checksum

    def forge(meta):
        meta["state"] = {"object": "os:system", "state": {}}
        meta.pop("checksum")
    path = _rewrite(saved, meta_edit=forge)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(z["meta"].tobytes())
    meta["checksum"] = _checksum(meta, arrays)
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    with pytest.raises(StructureFileError, match="never saves"):
        DPCrossAttention.load(path)
    assert "os:system" not in ALLOWED


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(format="something else"), "is not a dpxattn-structure"),
    (lambda m: m.update(version=99), "format version 99"),
    (lambda m: m.update(implementation="reference"), "not a 'fast' one"),
])
def test_wrong_headers_are_named(saved, edit, match):
    with pytest.raises(StructureFileError, match=match):
        DPCrossAttention.load(_rewrite(saved, meta_edit=edit))


def test_truncated_pickled_and_missing_files_are_clear_errors(saved, tmp_path):
    raw = saved.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(StructureFileError, match="cannot be read"):
        DPCrossAttention.load(cut)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, meta=np.array([{"a": 1}], dtype=object))  # an object array needs pickle
    with pytest.raises(StructureFileError):
        DPCrossAttention.load(pickled)
    with pytest.raises(StructureFileError, match="cannot be read"):
        DPCrossAttention.load(tmp_path / "absent.npz")
    with pytest.raises(StructureFileError, match="not a 'reference' one"):
        RefDPCrossAttention.load(saved)


def test_unknown_objects_are_refused_when_saving(tmp_path):
    with pytest.raises(StructureFileError, match="must be a"):
        save_structure(object(), tmp_path / "x", "fast")
    with pytest.raises(StructureFileError):
        load_structure(tmp_path / "x.npz", "fast")


def test_cli_build_then_query(tmp_path, capsys):
    from dpxattn.cli import main

    rng = np.random.default_rng(0)
    np.save(tmp_path / "K.npy", rng.random((200, 2)))
    np.save(tmp_path / "V.npy", rng.uniform(-1, 1, (200, 2)))
    np.save(tmp_path / "Q.npy", rng.random((3, 2)))
    args = ["build", "--keys", str(tmp_path / "K.npy"), "--values", str(tmp_path / "V.npy"),
            "--eps", "1", "--delta", "1e-6", "--R", "1", "--R-w", "1", "--degree", "2"]
    for law in ("tlap", "gaussian"):
        out = tmp_path / f"{law}.npz"
        assert main(args + ["--law", law, "--out", str(out)]) == 0
        assert main(["query", str(out), "--queries", str(tmp_path / "Q.npy"),
                     "--out", str(tmp_path / f"{law}-A.npy")]) == 0
        answers = np.load(tmp_path / f"{law}-A.npy")
        envelope = np.load(tmp_path / f"{law}-A.envelope.npy")
        assert answers.shape == (3, 2) and envelope.shape == (3, 2) and (envelope > 0).all()
        att = DPCrossAttention.load(out)
        assert np.array_equal(att.query(torch.from_numpy(np.load(tmp_path / "Q.npy"))).numpy(), answers)
    capsys.readouterr()
    # a bound broken: exit 2 with the bound named; a foreign file: exit 2
    assert main(args[:-6] + ["--R", "0.5", "--R-w", "1", "--degree", "2", "--out", str(tmp_path / "x")]) == 2
    assert "[0, R] = [0, 0.5]" in capsys.readouterr().err
    assert main(["query", str(tmp_path / "K.npy"), "--queries", str(tmp_path / "Q.npy")]) == 2
    assert "not an .npz archive" in capsys.readouterr().err
