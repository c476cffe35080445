"""The package layout of DESIGN §3: one import root, every folder listed, bare names refused."""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from pathlib import Path

import pytest

import dpxattn

REPO = Path(__file__).resolve().parents[1]
MAPPED = {"reference": "dpxattn.reference", "fast": "dpxattn.fast",
          "verification": "dpxattn.verification", "benchmarks": "dpxattn.benchmarks"}


def _config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    cfg = _config()
    listed = set(cfg["packages"])
    found = set()
    for folder, root in [("src/dpxattn", "dpxattn"), *MAPPED.items()]:
        base = REPO / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([root, *rel.parts]) if rel.parts else root)
    assert found == listed, f"pyproject packages {sorted(listed)} != folders {sorted(found)}"


def test_package_dir_maps_the_top_level_folders():
    cfg = _config()
    assert cfg["package-dir"][""] == "src"
    for folder, name in MAPPED.items():
        assert cfg["package-dir"][name] == folder


def test_no_top_level_dpxattn_folder():
    assert not (REPO / "dpxattn").exists(), "a top-level dpxattn/ would shadow the installed copy"


def test_installed_not_the_checkout():
    if os.environ.get("DPXATTN_EXPECT_INSTALLED") != "1":
        pytest.skip("only under `make test`, which installs dpxattn non-editably first")
    assert "site-packages" in Path(dpxattn.__file__).parts, dpxattn.__file__


@pytest.mark.parametrize("folder", sorted(MAPPED))
def test_bare_name_import_is_refused(folder, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.delitem(sys.modules, folder, raising=False)
    with pytest.raises(ImportError, match="dpxattn"):
        importlib.import_module(folder)
    sys.modules.pop(folder, None)
