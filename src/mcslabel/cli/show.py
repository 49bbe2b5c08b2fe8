"""``mcslabel show PATH...``: labels like ``ls -Z``, plus who holds each level."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcslabel.cli._common import (
    EXIT_INPUT,
    EXIT_OK,
    add_json_flag,
    add_store_flag,
    print_json,
    print_table,
)
from mcslabel.errors import InvalidInput


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "show",
        help="show paths' labels, their levels and who holds each level",
        description="Print each PATH's SELinux context (as ls -Z does, a final symlink"
        " not followed), its level, and the registry owners that hold that level."
        " Read-only: a registry that does not exist yet is not created."
        " Exit 2 when a path cannot be read (the others are still shown).",
    )
    parser.add_argument("paths", metavar="PATH", nargs="+", help="file or directory")
    add_store_flag(parser)
    parser.add_argument(
        "--no-registry", action="store_true", help="do not look the levels up in a store"
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_show)


def _owners(owners: tuple[str, ...] | None) -> str:
    if owners is None:
        return "?"
    return ",".join(owners) or "-"


def _show(args: argparse.Namespace) -> int:
    from mcslabel.allocation.stores import store_url
    from mcslabel.integrations.labels import LabelInfo, show

    store = None if args.no_registry else store_url(args.store)
    infos: list[LabelInfo] = []
    errors: list[dict[str, str]] = []
    for path in args.paths:
        try:
            infos.extend(show(path, store=store))
        except InvalidInput as exc:
            errors.append({"path": path, "message": str(exc)})
            print(f"mcslabel: {exc}", file=sys.stderr)
    if args.json:
        print_json({"labels": [i.to_dict() for i in infos], "errors": errors})
    else:
        print_table(
            ("context", "level", "owners", "path"),
            [
                (
                    i.context or i.raw or "?",  # "?" for no label, as ls -Z
                    i.level or "-",
                    _owners(i.owners),
                    i.path,
                )
                for i in infos
            ],
        )
    return EXIT_INPUT if errors else EXIT_OK


__all__ = ["register"]
