"""``mcslabel translate``: mcstrans names and raw levels side by side; ``--translate`` flags."""

from __future__ import annotations

import argparse
from typing import Any

from mcslabel.cli._common import EXIT_OK, add_json_flag, print_json, print_table


def add_translate_flags(parser: argparse.ArgumentParser, *, policy_root: bool = True) -> None:
    """``--translate`` (and ``--policy-root`` unless the command has it already)."""
    parser.add_argument(
        "--translate",
        action="store_true",
        help="accept mcstrans names (SystemHigh, site names) from the policy root's setrans.conf",
    )
    if policy_root:
        parser.add_argument(
            "--policy-root",
            metavar="DIR",
            default=None,
            help="the policy root whose setrans.conf translates (default: the installed one)",
        )


def untranslated(args: argparse.Namespace, text: str) -> str:
    """``text`` (a level, range or context) with its level raw when ``--translate`` was given."""
    if not getattr(args, "translate", False):
        return text
    from mcslabel.verification.translations import load_translations

    categories = getattr(args, "categories", None) or 1024
    return load_translations(args.policy_root).raw_text(text, categories=categories)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "translate",
        help="show mcstrans names next to raw levels (setrans.conf)",
        description="Translate levels both ways with the policy root's setrans.conf (and"
        " its Include files): each LEVEL|NAME is shown raw and translated; without"
        " arguments, every whole-level entry of the file. Exit 2 for a name no entry has.",
    )
    parser.add_argument("labels", metavar="LEVEL|NAME", nargs="*")
    parser.add_argument(
        "--policy-root",
        metavar="DIR",
        default=None,
        help="the policy root whose setrans.conf translates (default: the installed one)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_translate)


def _translate(args: argparse.Namespace) -> int:
    from mcslabel.verification.translations import load_translations, setrans_path

    translations = load_translations(args.policy_root)
    if args.labels:
        raws = [translations.raw(text) for text in args.labels]
        rows = [(str(raw), translations.name(raw)) for raw in raws]
    else:
        rows = list(translations.names.items())
    if args.json:
        print_json(
            {
                "setrans": str(setrans_path(args.policy_root)),
                "files": list(translations.sources),
                "disabled": translations.disabled,
                "translations": [{"raw": raw, "name": name} for raw, name in rows],
            }
        )
    else:
        print_table(("raw", "name"), rows)
    return EXIT_OK


__all__ = [
    "add_translate_flags",
    "register",
    "untranslated",
]
