"""``mcslabel policy``: the policy in use and its container contexts."""

from __future__ import annotations

import argparse
from typing import Any

from mcslabel.cli._common import EXIT_OK, add_json_flag, print_json, print_table


def add_policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy-root",
        metavar="DIR",
        default=None,
        help="a policy root laid out like /etc/selinux/<type>/ (default: the installed one)",
    )
    parser.add_argument(
        "--policy", metavar="FILE", default=None, help="a binary policy file (policy.NN)"
    )


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "policy",
        help="show the policy and the container contexts of its lxc_contexts",
        description="Load the installed policy (or --policy-root/--policy) and show its"
        " MLS facts and the container domain and file types from lxc_contexts.",
    )
    add_policy_flags(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=_policy)


def _policy(args: argparse.Namespace) -> int:
    from mcslabel.verification.policy import load_policy

    policy = load_policy(args.policy_root, policy=args.policy)
    data: dict[str, Any] = {
        "policy": str(policy.path),
        "root": None if policy.root is None else str(policy.root.path),
        "version": policy.version,
        "mls": policy.mls,
        "sensitivities": policy.sensitivities,
        "categories": policy.categories,
        "container_contexts": None,
    }
    if policy.root is not None:
        cc = policy.container_contexts()
        data["container_contexts"] = {
            "process": str(cc.process),
            "file": str(cc.file),
            "ro_file": str(cc.read_only_file),
            "kvm_process": str(cc.kvm_process),
            "init_process": str(cc.init_process),
            "content": None if cc.content is None else str(cc.content),
            "process_type_defined": policy.has_type(cc.process.type),
            "file_type_defined": policy.has_type(cc.file.type),
        }
    if args.json:
        print_json(data)
        return EXIT_OK
    print_table(
        ["fact", "value"],
        [
            ("policy", data["policy"]),
            ("version", data["version"]),
            ("mls", data["mls"]),
            ("categories", data["categories"]),
        ],
    )
    contexts = data["container_contexts"]
    if contexts is not None:
        print()
        print_table(
            ["entry", "context", "type in policy"],
            [
                (key, contexts[key], policy.has_type(contexts[key].split(":")[2]))
                for key in ("process", "file", "ro_file", "kvm_process", "init_process")
            ],
        )
    return EXIT_OK


__all__ = [
    "add_policy_flags",
    "register",
]
