"""Refuse imports of a mapped folder under its bare name (DESIGN §3).

``reference/``, ``fast/``, ``verification/`` and ``benchmarks/`` are installed as
``dpxattn.reference`` and so on. Imported as plain ``reference`` (from a repository checkout on
sys.path), they would shadow nothing but would run a second, unaccounted copy of the code.
"""

from __future__ import annotations

__all__ = ["require_mapped"]


def require_mapped(module_name: str, expected: str) -> None:
    if module_name != expected:
        raise ImportError(
            f"this folder is the package {expected!r}; import it as such (got {module_name!r}). "
            "Install dpxattn (`make install`) instead of putting the repository root on sys.path."
        )
