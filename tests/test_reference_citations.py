"""Every public function and class of the reference cites its paper location.

"Cites" means its docstring names the paper location (structure + v2 location; the v3 caveat
is stated once, in proofs_notes/00-index.md) or the spec section (``PAPER.md``), or says
"Paper: none (...)" where the paper has nothing.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
MODULES = sorted(p.stem for p in REFERENCE.glob("*.py") if not p.stem.startswith("_"))
CITATION_MARKERS = ("PAPER", "paper", "Paper", "v2 ", "spec ")


@pytest.mark.parametrize("module", MODULES)
def test_public_reference_names_cite_the_paper(module):
    mod = importlib.import_module(f"dpxattn.reference.{module}")
    assert mod.__all__, f"dpxattn.reference.{module} has no __all__"
    uncited = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            doc = inspect.getdoc(obj) or ""
            if not any(marker in doc for marker in CITATION_MARKERS):
                uncited.append(name)
    assert not uncited, f"{module}: public names without a paper citation: {uncited}"
