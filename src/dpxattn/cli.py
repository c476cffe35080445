"""The ``dpxattn`` command line: ``demo``, ``verify``, ``audit``, ``bench``, ``build``, ``query``,
``eval``.

Each subcommand lives in its own module, imported only when that subcommand runs. A module (or
an object named ``module:attr``) provides ``add_arguments(parser)`` and ``run(args) -> int``
(the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "COMMANDS"]

#: subcommand -> (module, one-line help)
COMMANDS = {
    "demo": ("dpxattn.fast.demo", "the main job on a built-in default: DP answers beside exact attention"),
    "verify": ("dpxattn.verification.cli_verify", "run the verification harness and write its report"),
    "audit": ("dpxattn.verification.cli_audit", "one empirical privacy audit (eps lower bound), printed"),
    "bench": ("dpxattn.benchmarks.bench", "the performance table (ratios measured in one run)"),
    "build": ("dpxattn.fast.cli_structure:BuildCommand", "build a structure from K.npy, V.npy and save it"),
    "query": ("dpxattn.fast.cli_structure:QueryCommand", "answer queries from a saved structure"),
    "eval": ("dpxattn.benchmarks.realdata_cli", "private attention on a real corpus (extra 'eval')"),
    "vectors": ("dpxattn.verification.cli_vectors", "export conformance vectors, or check a target against them"),
}


def _command(spec: str):
    """The object with ``add_arguments`` and ``run`` named by ``module`` or ``module:attr``."""
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


def _parser(selected: str | None) -> argparse.ArgumentParser:
    from dpxattn import __version__

    parser = argparse.ArgumentParser(
        prog="dpxattn",
        description="Differentially private cross-attention (arXiv 2407.14717, sound reading).",
    )
    parser.add_argument("--version", action="version", version=f"dpxattn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            _command(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(_command(COMMANDS[args.command][0]).run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
