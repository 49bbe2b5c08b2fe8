"""``mcslabel check LEVEL|CONTEXT``: parse and print the canonical form."""

from __future__ import annotations

import argparse
import re
from typing import Any

from mcslabel.cli._common import EXIT_OK, add_json_flag, print_json
from mcslabel.cli.policy import add_policy_flags
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
        " (or --policy-root/--policy); --no-policy or --categories/--sensitivities check"
        " offline. Exit 2 with a one-line error when it is malformed.",
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
    add_json_flag(parser)
    parser.set_defaults(handler=_check)


def _sizes(args: argparse.Namespace) -> tuple[int, int, str | None]:
    """(categories, sensitivities, policy path or None) to validate against."""
    offline = args.no_policy or args.categories is not None or args.sensitivities is not None
    if offline:
        if args.policy_root or args.policy:
            from mcslabel.errors import InvalidInput

            raise InvalidInput("--no-policy/--categories/--sensitivities exclude --policy(-root)")
        return (
            args.categories if args.categories is not None else DEFAULT_CATEGORIES,
            args.sensitivities if args.sensitivities is not None else DEFAULT_SENSITIVITIES,
            None,
        )
    from mcslabel.errors import PolicyError, PolicyNotMLS, SELinuxUnavailable
    from mcslabel.verification.policy import load_policy

    try:
        policy = load_policy(args.policy_root, policy=args.policy)
    except (PolicyError, SELinuxUnavailable):
        if args.policy_root or args.policy:
            raise
        # No policy on this host (or no bindings): the largest mainstream sizes.
        return DEFAULT_CATEGORIES, DEFAULT_SENSITIVITIES, None
    if not policy.mls:
        raise PolicyNotMLS(f"{policy.path} is not an MLS/MCS policy: it has no levels")
    return policy.categories, policy.sensitivities, str(policy.path)


def _check(args: argparse.Namespace) -> int:
    text: str = args.label
    categories, sensitivities, policy = _sizes(args)
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
    data["policy"] = policy
    if args.json:
        print_json(data)
    else:
        print(data["canonical"])
    return EXIT_OK


__all__ = [
    "register",
]
