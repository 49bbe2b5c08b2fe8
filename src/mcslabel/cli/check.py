"""``mcslabel check LEVEL|CONTEXT``: parse and print the canonical form."""

from __future__ import annotations

import argparse
import re
from typing import Any

from mcslabel.cli._common import EXIT_OK, add_json_flag, print_json
from mcslabel.context import Context
from mcslabel.level import Level, LevelRange, parse_level_or_range

# Levels start with a sensitivity (s0); anything else is taken for a context.
_LEVEL_START = re.compile(r"s[0-9]+(?:[:\-]|$)")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="parse a level, range or context and print its canonical form",
        description="Parse a raw MLS/MCS level (s0:c1,c2), range (s0-s0:c0.c1023) or"
        " context (user:role:type:level) and print the kernel's canonical form."
        " Exit 2 with a one-line error when it is malformed.",
    )
    parser.add_argument("label", metavar="LEVEL|CONTEXT")
    parser.add_argument(
        "--categories",
        type=int,
        default=1024,
        metavar="N",
        help="category count to validate against",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    text: str = args.label
    data: dict[str, Any]
    if text.count(":") >= 2 and not _LEVEL_START.match(text):
        ctx = Context.parse(text, categories=args.categories)
        data = {
            "kind": "context",
            "canonical": str(ctx),
            "user": ctx.user,
            "role": ctx.role,
            "type": ctx.type,
            "level": None if ctx.level is None else str(ctx.level),
        }
    else:
        value = parse_level_or_range(text, categories=args.categories)
        data = {
            "kind": "range" if isinstance(value, LevelRange) else "level",
            "canonical": str(value),
        }
        if isinstance(value, Level):
            data.update(
                sensitivity=value.sensitivity,
                categories=list(value.sorted_categories),
                is_pair=value.is_pair,
            )
    if args.json:
        print_json(data)
    else:
        print(data["canonical"])
    return EXIT_OK


__all__ = [
    "register",
]
