"""``mcslabel check LEVEL|CONTEXT``: parse and print the canonical form."""

from __future__ import annotations

import argparse
import re
from typing import Any

from mcslabel.cli._common import EXIT_OK, add_json_flag, print_json
from mcslabel.cli.policy import add_policy_flags
from mcslabel.cli.translate import add_translate_flags, untranslated
from mcslabel.context import Context
from mcslabel.level import (
    DEFAULT_CATEGORIES,
    DEFAULT_SENSITIVITIES,
    Level,
    LevelRange,
    parse_level_or_range,
)

# Levels start with a sensitivity (s0); anything else is taken for a context.
_LEVEL_START = re.compile(r"s[0-9]+(?:[:\-]|$)")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="parse a level, range or context and print its canonical form",
        description="Parse a raw MLS/MCS level (s0:c1,c2), range (s0-s0:c0.c1023) or"
        " context (user:role:type:level) the way libsepol does and print the kernel's"
        " canonical form. Sensitivities and categories are those of the installed policy"
        " (or --policy-root/--policy), read by libsepol, which also confirms the level;"
        " --no-policy or --categories/--sensitivities check offline."
        " Exit 2 with a one-line error when it is malformed.",
    )
    parser.add_argument("label", metavar="LEVEL|CONTEXT")
    add_policy_flags(parser)
    parser.add_argument(
        "--no-policy",
        action="store_true",
        help="do not load a policy: check against --categories/--sensitivities",
    )
    parser.add_argument(
        "--categories",
        type=int,
        default=None,
        metavar="N",
        help="category count to validate against"
        f" (implies --no-policy; default {DEFAULT_CATEGORIES})",
    )
    parser.add_argument(
        "--sensitivities",
        type=int,
        default=None,
        metavar="N",
        help="sensitivity count to validate against"
        f" (implies --no-policy; default {DEFAULT_SENSITIVITIES})",
    )
    add_translate_flags(parser, policy_root=False)  # add_policy_flags gave --policy-root
    add_json_flag(parser)
    parser.set_defaults(handler=_check)


def _level_text(text: str) -> str | None:
    if text.count(":") >= 2 and not _LEVEL_START.match(text):
        parts = text.split(":", 3)
        return parts[3] if len(parts) == 4 else None
    return text


def _policy_facts(args: argparse.Namespace, text: str) -> tuple[int, int, str | None, bool]:
    """(categories, sensitivities, policy path or None, libsepol accepts ``text``'s level)."""
    offline = args.no_policy or args.categories is not None or args.sensitivities is not None
    if offline:
        if args.policy_root or args.policy:
            from mcslabel.errors import InvalidInput

            raise InvalidInput("--no-policy/--categories/--sensitivities exclude --policy(-root)")
        return (
            args.categories if args.categories is not None else DEFAULT_CATEGORIES,
            args.sensitivities if args.sensitivities is not None else DEFAULT_SENSITIVITIES,
            None,
            True,
        )
    from mcslabel.errors import PolicyError, PolicyNotMLS, SELinuxUnavailable
    from mcslabel.verification.policy import mls_facts

    level = _level_text(text)
    try:
        facts = mls_facts(
            args.policy_root, policy=args.policy, probes=(level,) if level else (), cache=True
        )
    except (PolicyError, SELinuxUnavailable):
        if args.policy_root or args.policy:
            raise
        # No policy on this host (or no libsepol): the largest mainstream sizes.
        return DEFAULT_CATEGORIES, DEFAULT_SENSITIVITIES, None, True
    if not facts.mls:
        raise PolicyNotMLS(f"{facts.path} is not an MLS/MCS policy: it has no levels")
    return facts.categories, facts.sensitivities, str(facts.path), all(facts.accepted)


def _check(args: argparse.Namespace) -> int:
    text: str = untranslated(args, args.label)
    categories, sensitivities, policy, accepted = _policy_facts(args, text)
    data: dict[str, Any]
    if text.count(":") >= 2 and not _LEVEL_START.match(text):
        ctx = Context.parse(text, categories=categories, sensitivities=sensitivities)
        data = {
            "kind": "context",
            "canonical": str(ctx),
            "user": ctx.user,
            "role": ctx.role,
            "type": ctx.type,
            "level": None if ctx.level is None else str(ctx.level),
        }
    else:
        value = parse_level_or_range(text, categories=categories, sensitivities=sensitivities)
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
    if not accepted:
        # The counts fit but libsepol refuses: never print a level it would not take.
        from mcslabel.errors import InvalidLevel

        raise InvalidLevel(f"{_level_text(text)} is not a valid level in {policy}")
    data["policy"] = policy
    if args.json:
        print_json(data)
    else:
        print(data["canonical"])
    return EXIT_OK


__all__ = [
    "register",
]
