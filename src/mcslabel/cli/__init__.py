"""The ``mcslabel`` command line.

Each subcommand lives in its own module with a ``register(subparsers)``
function; handlers import their heavy dependencies lazily so that
``mcslabel --version`` imports neither SETools nor docker.

Exit codes, shared by every subcommand:
``0`` ok, ``1`` a check failed (verify/audit findings), ``2`` usage or input
error, ``3`` an operation failed (store unavailable, space exhausted...).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mcslabel import __version__
from mcslabel.cli._common import EXIT_INPUT, EXIT_OK, run_handler

# Subcommand modules, in help order. Each defines register(subparsers).
SUBCOMMAND_MODULES = (
    "mcslabel.cli.check",
    "mcslabel.cli.policy",
    "mcslabel.cli.alloc",
    "mcslabel.cli.docker",
    "mcslabel.cli.podman",
    "mcslabel.cli.verify",
    "mcslabel.cli.relabel",
    "mcslabel.cli.kube",
    "mcslabel.cli.mount",
    "mcslabel.cli.translate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcslabel",
        description="SELinux MCS label management for container hosts.",
    )
    parser.add_argument("--version", action="version", version=f"mcslabel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_INPUT
    return run_handler(args)


def entry_point() -> None:  # pragma: no cover - thin wrapper for console_scripts
    sys.exit(main())


__all__ = ["EXIT_OK", "build_parser", "entry_point", "main"]
