"""``mcslabel kube security-context``: a pod's seLinuxOptions for an allocated level."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcslabel.cli._common import (
    EXIT_OK,
    add_categories_flag,
    add_store_flags,
    open_registry,
    print_json,
    usage_handler,
)
from mcslabel.cli.translate import add_translate_flags, untranslated
from mcslabel.context import Context
from mcslabel.errors import InvalidInput, PolicyError
from mcslabel.level import Level


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "kube",
        help="Kubernetes: the securityContext that runs a pod at an allocated level",
        description="Emit Kubernetes objects for mcslabel levels.",
    )
    sub = parser.add_subparsers(dest="kube_command", metavar="SUBCOMMAND")

    parser.set_defaults(handler=usage_handler(parser))
    ctx = sub.add_parser(
        "security-context",
        help="print {'seLinuxOptions': {...}} for a level or a named allocation",
        description="Print a pod or container securityContext carrying seLinuxOptions"
        " (user, role, type, level). The level is given (--level) or allocated under a"
        " deterministic name (--name NAME --owner O, or --namespace NS for the name ns/NS):"
        " a name already allocated is joined, so every node asking for one namespace (with"
        " the etcd store) gets the same level. user/role/type come from the policy's"
        " lxc_contexts 'process' entry (container_t), or --user/--role/--type.",
    )
    which = ctx.add_mutually_exclusive_group(required=True)
    which.add_argument("--level", metavar="LEVEL", help="a level such as s0:c1,c2")
    which.add_argument("--name", metavar="NAME", help="allocate (or join) this named level")
    which.add_argument(
        "--namespace", metavar="NS", help="allocate (or join) the namespace's level: --name ns/NS"
    )
    ctx.add_argument("--owner", metavar="OWNER", help="owner of the named allocation (required)")
    ctx.add_argument(
        "--persistent",
        action="store_true",
        help="mark a new named allocation persistent (volumes will carry it)",
    )
    add_store_flags(ctx, create=True)  # as the docker commands: --create-store for a new path
    add_categories_flag(ctx)
    ctx.add_argument(
        "-o",
        "--output",
        choices=("json", "yaml"),
        default="json",
        help="output format (default json)",
    )
    ctx.add_argument(
        "--level-only",
        action="store_true",
        help="emit only seLinuxOptions.level; the runtime fills in user/role/type",
    )
    ctx.add_argument("--user", default=None, help="SELinux user (default from lxc_contexts)")
    ctx.add_argument("--role", default=None, help="SELinux role (default from lxc_contexts)")
    ctx.add_argument("--type", default=None, help="process type (default from lxc_contexts)")
    ctx.add_argument(
        "--policy-root",
        metavar="DIR",
        default=None,
        help="read lxc_contexts (and setrans.conf) from this policy root (default: the"
        " installed one if any)",
    )
    add_translate_flags(ctx, policy_root=False)
    ctx.set_defaults(handler=_security_context)


def _process_context(args: argparse.Namespace) -> Context:
    from mcslabel.integrations.kubernetes import DEFAULT_PROCESS_CONTEXT
    from mcslabel.verification.policy import PolicyRoot

    base = DEFAULT_PROCESS_CONTEXT
    if not args.level_only:
        try:
            base = PolicyRoot.coerce(args.policy_root).container_contexts().process
        except PolicyError:
            if args.policy_root is not None:
                raise  # an explicit root must be readable; the installed one is optional
    return Context(
        args.user or base.user, args.role or base.role, args.type or base.type, base.level
    )


def _security_context(args: argparse.Namespace) -> int:
    from mcslabel.integrations.kubernetes import (
        namespace_allocation_name,
        selinux_options,
        to_yaml,
    )

    process = _process_context(args)
    level: Level
    if args.level is not None:
        level = Level.parse(untranslated(args, args.level), categories=args.categories)
    else:
        name = args.name or namespace_allocation_name(args.namespace)
        if not args.owner:
            raise InvalidInput("--name/--namespace allocate a level: give its --owner")
        with open_registry(args) as allocator:
            level = allocator.allocate(args.owner, name=name, persistent=args.persistent).level
    data = selinux_options(level, process=process, level_only=args.level_only)
    if args.output == "yaml":
        sys.stdout.write(to_yaml(data))
    else:
        print_json(data)
    return EXIT_OK


__all__ = [
    "register",
]
