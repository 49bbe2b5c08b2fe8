"""Helpers every subcommand shares: output, errors, exit codes."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mcslabel.errors import InvalidInput, MCSLabelError, PolicyError, SELinuxUnavailable

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_INPUT = 2
EXIT_FAILED = 3

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator

Handler = Callable[[argparse.Namespace], int]


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="label store: sqlite:///path, memory://, etcd://h1:2379,h2:2379/prefix"
        " (default: $MCSLABEL_STORE, else the host's SQLite database)",
    )


def add_categories_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--categories",
        type=int,
        default=1024,
        metavar="N",
        help="the policy's category count (default 1024)",
    )


@contextlib.contextmanager
def open_allocator(
    url: str | None, categories: int, *, create: bool | None = True, read_only: bool = False
) -> Iterator[Allocator]:
    """An allocator over the store at ``url``, closed on exit.

    Closing matters: an etcd store ends its host lease and watch threads.
    ``create``/``read_only`` as in :func:`mcslabel.allocation.stores.open_store`.
    """
    from mcslabel.allocation.allocator import Allocator
    from mcslabel.allocation.stores import open_store

    store = open_store(url, create=create, read_only=read_only)
    try:
        yield Allocator(store, categories=categories)
    finally:
        store.close()


def exit_code_for(exc: MCSLabelError) -> int:
    """Bad input (including a bad policy or missing bindings) is 2, the rest 3."""
    if isinstance(exc, (InvalidInput, PolicyError, SELinuxUnavailable)):
        return EXIT_INPUT
    return EXIT_FAILED


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table: readable in a terminal, stable for grep."""
    cells = [[str(h).upper() for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def run_handler(args: argparse.Namespace) -> int:
    handler: Handler = args.handler
    try:
        return handler(args)
    except MCSLabelError as exc:
        if getattr(args, "json", False):
            print_json({"error": {"type": type(exc).__name__, "message": str(exc)}})
        print(f"mcslabel: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)


__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_OK",
    "add_categories_flag",
    "add_json_flag",
    "add_store_flag",
    "exit_code_for",
    "open_allocator",
    "print_json",
    "print_table",
    "run_handler",
]
