"""``dpxattn demo``: runs on the built-in default shape, prints the DP answers, envelopes and plan, reproducibly."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dpxattn.cli import main
from dpxattn.fast.demo import DEFAULTS, synthetic_rag

SMALL = ["--n", "600", "--grid", "64"]


def _stable(text: str) -> str:
    """The output without wall-clock timings."""
    return re.sub(r" *\d+(\.\d+)? ms", " <t> ms", text)


def test_demo_both_mechanisms_seeded(capsys):
    assert main(["demo", "--seed", "3", *SMALL]) == 0
    out = capsys.readouterr().out
    for needle in ("=== mechanism: direct, law: tlap ===", "=== mechanism: tree, law: tlap ===",
                   "=== mechanism: direct, law: gaussian ===", "=== side by side",
                   "(no sure envelope: Gaussian noise is unbounded)",
                   "exact softmax attention", "noiseless Taylor", "DP answer",
                   "certified envelope (sure)", "high-probability envelope",
                   "|DP - exact|", "privacy plan (direct)", "privacy plan (tree)",
                   "end-to-end (eps, delta) = (1, 1e-06)", "NOT for production",
                   "vs exact attention (sure, + kernel",
                   "every DP answer within its certified envelopes (of the noiseless Taylor "
                   "attention, and of exact softmax attention): yes"):
        assert needle in out, needle
    assert out.count("query 0 (near document 0)") >= 3  # direct x 2 laws, tree (x its laws)
    assert main(["demo", "--seed", "3", *SMALL]) == 0
    again = capsys.readouterr().out
    assert _stable(out) == _stable(again)


def test_demo_secure_default_and_flags(capsys):
    assert main(["demo", "--mechanism", "direct", "--eps", "2", "--delta", "1e-5", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "OS CSPRNG" in out and "=== mechanism: tree" not in out
    assert "secure: OS CSPRNG" in out  # the plan's randomness label
    assert "(eps, delta) = (2, 1e-05)" in out
    assert main(["demo", "--mechanism", "direct", "--law", "tlap", *SMALL]) == 0
    assert "law: gaussian" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--mechanism", "flat"])


def test_synthetic_rag_shapes_bounds_and_retrieval_signal():
    rng = np.random.default_rng(0)
    K, V, Q, doc, patterns, target = synthetic_rag(rng, n=2000, d=3, d_v=4, docs=3, queries=3,
                                                   R=2.0)
    assert K.shape == (2000, 3) and V.shape == (2000, 4) and Q.shape == (3, 3)
    assert K.min() >= 0 and K.max() <= 2.0 and Q.min() >= 0 and Q.max() <= 2.0
    assert np.abs(V).max() <= 1.0
    logits = Q @ K.T / 3
    w = np.exp(logits)
    w /= w.sum(axis=1, keepdims=True)
    own = [w[i][doc == target[i]].sum() for i in range(3)]
    assert min(own) > 0.5  # attention concentrates on the query's own document
    assert np.allclose(patterns @ patterns.T, 0.64 * 4 * np.eye(3))
    assert DEFAULTS["docs"] <= DEFAULTS["d"]
