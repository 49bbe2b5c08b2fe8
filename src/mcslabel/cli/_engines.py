"""What tells the container engines' commands apart, and their shared flags.

``mcslabel docker`` and ``mcslabel podman`` have one set of subcommands, built
by :func:`mcslabel.cli.docker.register_engine` from an :class:`Engine`: its
name, its help texts and the few rules that differ.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcslabel.cli._common import Handler, add_journal_dir_flag, add_json_flag

#: Every engine a volume command asks (as ``mcslabel.integrations.docker.ENGINES``;
#: spelled here so that building the parser imports no integration).
ENGINE_NAMES: tuple[str, ...] = ("docker", "podman")


@dataclass(frozen=True)
class Engine:
    """What tells the container engines' commands apart; the handlers are shared.

    ``name`` is the command, the owner prefix (``<name>:<id>``) and the
    integration module (``mcslabel.integrations.<name>``).
    """

    name: str
    host_help: str
    filter_help: str
    #: Owner prefixes shortened to 12 hex digits in tables.
    short_prefixes: tuple[str, ...]
    #: ``mcslabel <name>``'s help line and description.
    help: str = ""
    description: str = ""
    #: Each subcommand's description (sync, audit, run, rm).
    descriptions: Mapping[str, str] = field(default_factory=dict)
    #: What follows ``KEY=VALUE`` in a bad ``--filter``'s message.
    filter_example: str = ""
    #: The order of the plain rows of sync's table ("adopted" among them).
    sync_order: tuple[str, ...] = ("reserved", "kept", "released", "fenced", "adopted")
    #: Hints after an orphaned volume (sync) and a held volume (rm).
    orphan_hint: str = ""
    held_hint: str = ""
    #: Whether sync's and audit's JSON get their verdict as ``ok`` put first.
    json_verdict: bool = False

    @property
    def host_flag(self) -> str:
        return f"--{self.name}-host"

    def integration(self) -> Any:
        import importlib

        return importlib.import_module(f"mcslabel.integrations.{self.name}")

    def connect(self, args: argparse.Namespace) -> Any:
        return self.integration().connect(getattr(args, f"{self.name}_host"))

    def short(self, owner: str) -> str:
        """``docker:<64 hex>`` as ``docker:<12 hex>``, like the engine's own tables."""
        prefix, sep, rest = owner.partition(":")
        return f"{prefix}:{rest[:12]}" if sep and prefix in self.short_prefixes else owner


def add_host_flag(parser: argparse.ArgumentParser, engine: Engine) -> None:
    parser.add_argument(engine.host_flag, metavar="URL", default=None, help=engine.host_help)


def add_filter_flag(parser: argparse.ArgumentParser, engine: Engine) -> None:
    parser.add_argument(
        "--filter",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help=engine.filter_help,
    )


def add_run_arguments(run: argparse.ArgumentParser, *, json: bool) -> None:
    """``run``'s arguments after ``--volume``: the container's, the journals', the image."""
    run.add_argument(
        "--join",
        action="store_true",
        help="a :Z volume that already holds a private level: run at that level (default: refuse)",
    )
    run.add_argument("--name", metavar="NAME", default=None, help="container name")
    run.add_argument(
        "--label", metavar="KEY=VALUE", action="append", default=[], help="container label"
    )
    add_journal_dir_flag(run)
    if json:
        add_json_flag(run)
    run.add_argument("image", metavar="IMAGE")
    run.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER)


def bind(command: Callable[[Engine, argparse.Namespace], int], engine: Engine) -> Handler:
    """``command`` as the handler of ``engine``'s subcommand."""
    return functools.partial(command, engine)


__all__ = [
    "ENGINE_NAMES",
    "Engine",
    "add_filter_flag",
    "add_host_flag",
    "add_run_arguments",
    "bind",
]
