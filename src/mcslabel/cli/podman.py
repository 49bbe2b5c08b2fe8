"""``mcslabel podman``: ``mcslabel docker``'s commands for podman's containers and pods."""

from __future__ import annotations

import argparse
from typing import Any

from mcslabel.cli._common import (
    add_categories_flag,
    add_journal_dir_flag,
    add_json_flag,
    add_store_flags,
    usage_handler,
)
from mcslabel.cli.docker import (
    Engine,
    add_filter_flag,
    add_host_flag,
    add_run_arguments,
    audit_command,
    bind,
    rm_command,
    run_command,
    sync_command,
)

PODMAN = Engine(
    name="podman",
    host_help="podman's API socket (default: $CONTAINER_HOST, else"
    " unix:///run/podman/podman.sock; start it with podman system service)",
    filter_help="listing filter, e.g. label=app=web or pod=NAME (repeatable)",
    short_prefixes=("podman", "docker"),
)


def _add_common(parser: argparse.ArgumentParser, *, create: bool = True) -> None:
    add_host_flag(parser, PODMAN)
    # The docker commands' store rules: never created at an explicit path without --create-store.
    add_store_flags(parser, create=create)
    add_categories_flag(parser)
    add_json_flag(parser)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "podman",
        help="the docker commands for podman: sync, audit, run, rm (pods share a level)",
        description="Work with podman's containers through its Docker-compatible API"
        " (podman system service; extra mcslabel[docker]). Same options, findings and"
        " JSON as `mcslabel docker`; registry owners are podman:<id>, and the containers"
        " of one podman pod (its infra container included) are one pod.",
    )
    sub = parser.add_subparsers(dest="podman_command", metavar="SUBCOMMAND")

    parser.set_defaults(handler=usage_handler(parser))
    sync = sub.add_parser(
        "sync",
        help="reserve the levels containers use; release those of removed containers",
        description="Reserve every podman container's level under owner podman:<id> and"
        " release the allocations of podman containers that no longer exist (docker's"
        " are left alone). Exit 1 when there are conflicts.",
    )
    _add_common(sync)
    add_filter_flag(sync, PODMAN)
    add_journal_dir_flag(sync)
    sync.set_defaults(handler=bind(sync_command, PODMAN))
    audit = sub.add_parser(
        "audit",
        help="find shared, dominating or disabled labels, privileged containers, bad mounts",
        description="Audit podman's containers (running and stopped). Exit 1 when a finding"
        " has severity high. Registry checks run when --store or $MCSLABEL_STORE names one.",
    )
    _add_common(audit, create=False)
    add_filter_flag(audit, PODMAN)
    audit.set_defaults(handler=bind(audit_command, PODMAN))
    run = sub.add_parser(
        "run",
        help="start a container at a fresh level with its volumes relabeled",
        description="As `mcslabel docker run`, on podman: allocate a level, relabel each -v"
        " volume, start the container at it, owner podman:<id>. Undo with `mcslabel"
        " podman rm`.",
    )
    _add_common(run)
    run.add_argument(
        "-v",
        "--volume",
        metavar="SRC:DST[:OPTS]",
        action="append",
        default=[],
        help="bind volume; OPTS as for `mcslabel docker run` (repeatable)",
    )
    add_run_arguments(run, json=False)
    run.set_defaults(handler=bind(run_command, PODMAN))
    rm = sub.add_parser(
        "rm",
        help="remove a container started by `mcslabel podman run`; restore its volumes",
        description="Remove the container, release its level and restore its volumes' old"
        " labels from the journals (--keep-labels keeps the new ones).",
    )
    _add_common(rm)
    rm.add_argument("container", metavar="CONTAINER", help="id or name")
    rm.add_argument("--keep-labels", action="store_true", help="do not restore old labels")
    rm.set_defaults(handler=bind(rm_command, PODMAN))


__all__ = [
    "register",
]
