"""Helpers every subcommand shares: exit codes, error mapping, JSON and tables.

The conventions here are the CLI's contract (docs/cli.md):

* Exit codes: ``0`` ok, ``1`` a check failed (a verdict: findings, leaks,
  conflicts), ``2`` usage or input error (including a missing file or
  optional SDK the user asked for), ``3`` an operation failed (store or daemon
  unavailable, space exhausted, some files failed). A closed stdout pipe ends
  the command like git does: killed by ``SIGPIPE`` (``$?`` is 141), silently.
* ``--json`` prints exactly one JSON object; commands with a verdict put
  ``ok`` in it; an error is ``{"ok": false, "error": {...}}``; times are
  ISO 8601 UTC strings.
* Tables fit the terminal (``COLUMNS``) when printed to one; docker ids are
  shortened to 12 characters as docker's CLI does (JSON keeps them whole).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mcslabel.cli._basics import (
    EXIT_CHECK_FAILED,
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_PIPE,
)
from mcslabel.errors import (
    InvalidInput,
    MCSLabelError,
    PolicyError,
    RefusedPath,
    SELinuxUnavailable,
)

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator

Handler = Callable[[argparse.Namespace], int]

#: JSON fields that hold a moment: epoch seconds become ISO 8601 UTC strings.
TIME_FIELDS = frozenset({"created", "expires", "started", "updated"})

# The causes that make an operation's failure the user's input: a file named
# on the command line that is missing or already there, an optional SDK
# (docker, etcd3gw) not installed for a feature the user asked for.
_INPUT_CAUSES: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    ImportError,
)
_INPUT_ERRORS = (InvalidInput, PolicyError, SELinuxUnavailable, RefusedPath)
_DOCKER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{12})[0-9a-f]{52}(?![0-9a-f])")
ELLIPSIS = "…"


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


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


def add_store_flags(parser: argparse.ArgumentParser, *, create: bool) -> None:
    """``--store`` and, for a command that may create the store, ``--create-store``."""
    add_store_flag(parser)
    if create:
        parser.add_argument(
            "--create-store",
            action="store_true",
            help="create the store at --store if it does not exist yet"
            " (the default host store is always created on first use)",
        )


def open_registry(
    args: argparse.Namespace, url: str | None = None, *, read_only: bool = False
) -> contextlib.AbstractContextManager[Allocator]:
    """The registry: never created at an explicit path without --create-store."""
    create = True if getattr(args, "create_store", False) else None
    return open_allocator(
        url if url is not None else args.store,
        args.categories,
        create=None if read_only else create,
        read_only=read_only,
    )


def add_journal_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journal-dir",
        metavar="DIR",
        default=None,
        help="where relabel journals are kept (default: /var/lib/mcslabel/journals as root)",
    )


def _cause(exc: BaseException) -> BaseException | None:
    """What ``exc`` was raised from: ``raise ... from cause``, or the exception
    being handled under ``raise ... from None`` (only one level: a daemon that
    cannot be reached because its socket file is missing is not the user's input).
    """
    return exc.__cause__ or exc.__context__


def exit_code_for(exc: BaseException) -> int:
    """2 when the user's input is to blame, else 3.

    Input: a malformed value, a refused path, a bad policy, missing SELinux
    bindings, or an operation that failed *because of* input (a missing or
    existing file named on the command line, an optional SDK not installed,
    a request the Docker daemon refused as a client error, e.g. a bad filter).
    """
    if isinstance(exc, _INPUT_ERRORS):
        return EXIT_INPUT
    cause = _cause(exc)
    if isinstance(cause, _INPUT_CAUSES):
        return EXIT_INPUT
    status = getattr(cause, "status_code", None)  # docker.errors.APIError
    if isinstance(status, int) and 400 <= status < 500:
        return EXIT_INPUT
    return EXIT_FAILED


def iso_time(seconds: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (``2026-01-02T03:04:05Z``); None stays None."""
    if seconds is None:
        return None
    import datetime  # imported on use: start-up time

    try:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return "9999-12-31T23:59:59Z"  # a lease past year 9999 (a huge --ttl)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def json_ready(data: Any) -> Any:
    """``data`` with every :data:`TIME_FIELDS` number turned into ISO 8601 UTC."""
    if isinstance(data, Mapping):
        return {
            key: (
                iso_time(value)
                if key in TIME_FIELDS
                and isinstance(value, int | float)
                and not isinstance(value, bool)
                else json_ready(value)
            )
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [json_ready(v) for v in data]
    return data


def print_json(data: Mapping[str, Any], *, ok: bool | None = None) -> None:
    """Print one JSON object (never a bare array: objects can grow keys).

    ``ok``, for a command with a verdict, becomes the object's first key.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"--json output must be an object, not {type(data).__name__}")
    if sys.stdout is None:  # closed when the process started: as print() does, write nothing
        return
    import json  # imported on use: start-up time

    if ok is not None:
        data = {"ok": ok, **{k: v for k, v in data.items() if k != "ok"}}
    json.dump(json_ready(data), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def short_ids(text: str) -> str:
    """Docker's 64-hex ids cut to 12, as ``docker ps`` shows them."""
    return _DOCKER_ID.sub(r"\1", text)


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked by an ellipsis."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS if width > 0 else ""


def table_width() -> int | None:
    """The width to fit tables to: the terminal's, or ``$COLUMNS``; None on a pipe.

    Like systemctl, output to a pipe or file is never cut (scripts grep it).
    """
    if "COLUMNS" not in os.environ and not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size().columns


def fit_widths(widths: list[int], minimums: list[int], limit: int) -> list[int]:
    """Shrink the widest columns first until the row (2-space gaps) fits ``limit``."""
    widths = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - limit
    while excess > 0:
        candidates = [i for i, w in enumerate(widths) if w > minimums[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, width: int | None = None
) -> None:
    """An aligned table with upper-case headers, fitted to the terminal.

    ``width`` overrides the terminal's (tests). Long cells end in an ellipsis;
    docker ids are shortened to 12 characters.
    """
    limit = table_width() if width is None else width
    cells = [[str(h).upper() for h in headers]]
    cells += [[short_ids(str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if limit is not None:
        minimums = [min(w, max(len(cells[0][i]), 6)) for i, w in enumerate(widths)]
        widths = fit_widths(widths, minimums, limit)
    for row in cells:
        line = "  ".join(shorten(c, w).ljust(w) for c, w in zip(row, widths, strict=True))
        print(line.rstrip() if limit is None else shorten(line.rstrip(), limit))


def usage_handler(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command group run without a subcommand: its help, exit 2."""

    def usage(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_INPUT

    return usage


def print_error(args: argparse.Namespace | None, exc: BaseException, code: int) -> None:
    """One line on stderr; with ``--json`` also the error object on stdout."""
    if args is not None and getattr(args, "json", False):
        print_json(
            {
                "ok": False,
                "error": {"type": type(exc).__name__, "message": str(exc), "exit_code": code},
            }
        )
    print(f"mcslabel: error: {exc}", file=sys.stderr)


def run_handler(args: argparse.Namespace) -> int:
    """Run the subcommand; map errors to the exit scheme, one line each."""
    handler: Handler = args.handler
    try:
        return handler(args)
    except BrokenPipeError:
        raise
    except (MCSLabelError, OSError) as exc:
        # An OSError here is one outside the library (a file the CLI itself reads).
        code = exit_code_for(exc) if isinstance(exc, MCSLabelError) else _os_error_code(exc)
        print_error(args, exc, code)
        return code


def _os_error_code(exc: OSError) -> int:
    return EXIT_INPUT if isinstance(exc, _INPUT_CAUSES) else EXIT_FAILED


__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_OK",
    "EXIT_PIPE",
    "TIME_FIELDS",
    "add_categories_flag",
    "add_json_flag",
    "add_store_flag",
    "exit_code_for",
    "fit_widths",
    "iso_time",
    "json_ready",
    "open_allocator",
    "print_error",
    "print_json",
    "print_table",
    "run_handler",
    "short_ids",
    "shorten",
    "table_width",
    "usage_handler",
]
