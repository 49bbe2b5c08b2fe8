"""``mcslabel docker``: sync the registry with a Docker daemon, audit its containers, run one."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from mcslabel.cli._common import (
    EXIT_CHECK_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    add_categories_flag,
    add_json_flag,
    add_store_flag,
    open_allocator,
    print_json,
    print_table,
)
from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q


def _add_host_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docker-host",
        metavar="URL",
        default=None,
        help="daemon address, e.g. unix:///var/run/docker.sock (default: $DOCKER_HOST or the"
        " local socket)",
    )


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "docker",
        help="sync the label registry with Docker, audit containers, run one labeled",
        description="Work with the containers of a Docker daemon (extra mcslabel[docker]).",
    )
    sub = parser.add_subparsers(dest="docker_command", metavar="SUBCOMMAND")

    def usage(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_INPUT

    parser.set_defaults(handler=usage)

    sync = sub.add_parser(
        "sync",
        help="reserve the levels containers use; release those of removed containers",
        description="Reserve every container's level in the registry under owner docker:<id>"
        " (containers of one pod share one allocation) and release the allocations of"
        " containers that no longer exist. Conflicts are reported; exit 1 when there are any.",
    )
    _add_host_flag(sync)
    add_store_flag(sync)
    add_categories_flag(sync)
    add_json_flag(sync)
    sync.set_defaults(handler=_sync)

    audit = sub.add_parser(
        "audit",
        help="find shared, dominating or disabled labels, privileged containers, bad mounts",
        description="Audit the daemon's containers (running and stopped). Exit 1 when a"
        " finding has severity high. Registry checks run when --store or $MCSLABEL_STORE"
        " names a store.",
    )
    _add_host_flag(audit)
    add_store_flag(audit)
    add_categories_flag(audit)
    audit.add_argument(
        "--filter",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="docker ps filter, e.g. label=app=web (repeatable)",
    )
    add_json_flag(audit)
    audit.set_defaults(handler=_audit)
    _register_run(sub)


def _register_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="start a container at a fresh level with its volumes relabeled",
        description="Allocate a level, relabel each -v volume (Z: private at the level,"
        " z: shared at s0; journaled), create and start the container with"
        " label=level:<level>, and hand the allocation to owner docker:<id>."
        " Undo it all with `mcslabel docker rm`.",
    )
    _add_host_flag(run)
    add_store_flag(run)
    add_categories_flag(run)
    run.add_argument(
        "-v",
        "--volume",
        metavar="SRC:DST[:OPTS]",
        action="append",
        default=[],
        help="bind volume; OPTS: ro|rw and Z (default)|z|noZ (repeatable)",
    )
    run.add_argument("--name", metavar="NAME", default=None, help="container name")
    run.add_argument(
        "--label", metavar="KEY=VALUE", action="append", default=[], help="container label"
    )
    run.add_argument(
        "--journal-dir", metavar="DIR", default=None, help="where relabel journals are kept"
    )
    add_json_flag(run)
    run.add_argument("image", metavar="IMAGE")
    run.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER)
    run.set_defaults(handler=_run)

    rm = sub.add_parser(
        "rm",
        help="remove a container started by `mcslabel docker run`; restore its volumes",
        description="Remove the container, release its level and restore its volumes'"
        " old labels from the journals (--keep-labels keeps the new ones).",
    )
    _add_host_flag(rm)
    add_store_flag(rm)
    add_categories_flag(rm)
    rm.add_argument("container", metavar="CONTAINER", help="id or name")
    rm.add_argument("--keep-labels", action="store_true", help="do not restore old labels")
    add_json_flag(rm)
    rm.set_defaults(handler=_rm)


def _client(args: argparse.Namespace) -> Any:
    from mcslabel.integrations.docker import connect

    return connect(args.docker_host)


def _filters(items: list[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--filter {_q(item)} must be KEY=VALUE (e.g. label=app=web)")
        filters.setdefault(key, []).append(value)
    return filters


def _sync(args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import sync

    client = _client(args)
    with open_allocator(args.store, args.categories) as allocator:
        result = sync(allocator, client)
    if args.json:
        print_json(result.to_dict(), ok=not result.conflicts)
    else:
        rows = [("reserved", lv, o) for lv, o in result.reserved]
        rows += [("kept", lv, o) for lv, o in result.kept]
        rows += [("released", lv, o) for lv, o in result.released]
        rows += [("fenced", lv, o) for lv, o in result.fenced]
        rows += [("conflict", lv, f"{o}: {r}") for lv, o, r in result.conflicts]
        if rows:
            print_table(["action", "level", "owner"], rows)
        else:
            print("nothing to do: no container has a level and the registry holds none")
    return EXIT_CHECK_FAILED if result.conflicts else EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import audit

    filters = _filters(args.filter)
    client = _client(args)
    store_url = args.store or os.environ.get("MCSLABEL_STORE")
    with contextlib.ExitStack() as stack:
        allocator = (
            stack.enter_context(open_allocator(store_url, args.categories)) if store_url else None
        )
        report = audit(client, allocator, filters=filters)
    if args.json:
        print_json(report.to_dict(), ok=report.ok)
    else:
        print(
            f"{len(report.containers)} containers, {len(report.findings)} findings"
            f" ({'ok' if report.ok else 'high severity findings'})"
        )
        if report.findings:
            print_table(["severity", "kind", "containers", "message"], report.rows())
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _run(args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import Volume, run

    volumes = [Volume.parse(v) for v in args.volume]
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--label {_q(item)} must be KEY=VALUE")
        labels[key] = value
    client = _client(args)
    with open_allocator(args.store, args.categories) as allocator:
        started = run(
            client,
            args.image,
            args.command or None,
            allocator=allocator,
            volumes=volumes,
            name=args.name,
            labels=labels,
            journal_dir=args.journal_dir,
        )
    if args.json:
        print_json(
            {
                "id": started.id,
                "level": str(started.level),
                "owner": started.owner,
                "journals": [str(j) for j in started.journals],
            }
        )
    else:
        print(f"{started.id[:12]} {started.level}")
    return EXIT_OK


def _container(client: Any, name: str) -> Any:
    """The container ``name`` (an id, a prefix or a name) names; 2 when there is none."""
    from mcslabel.errors import DockerError

    try:
        return client.containers.get(name)
    except Exception as exc:  # the SDK's NotFound/APIError: its status code says whose fault
        raise DockerError(f"cannot find container {_q(name)}: {exc}") from exc


def _rm(args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import remove

    client = _client(args)
    container = _container(client, args.container)
    with open_allocator(args.store, args.categories) as allocator:
        remove(client, container, allocator=allocator, restore=not args.keep_labels)
    if args.json:
        print_json({"removed": container.id, "restored": not args.keep_labels})
    else:
        print(container.id[:12])  # docker rm prints what it removed
    return EXIT_OK


__all__ = [
    "register",
]
