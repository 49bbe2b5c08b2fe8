"""``mcslabel podman``: ``mcslabel docker``'s commands for podman's containers and pods."""

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
    print_json,
    print_table,
)
from mcslabel.cli.docker import _add_store_flags, _open
from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q


def _add_common(parser: argparse.ArgumentParser, *, create: bool = True) -> None:
    parser.add_argument(
        "--podman-host",
        metavar="URL",
        default=None,
        help="podman's API socket (default: $CONTAINER_HOST, else"
        " unix:///run/podman/podman.sock; start it with podman system service)",
    )
    # The docker commands' store rules: never created at an explicit path without --create-store.
    _add_store_flags(parser, create=create)
    add_categories_flag(parser)
    add_json_flag(parser)


def _add_filter_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="listing filter, e.g. label=app=web or pod=NAME (repeatable)",
    )


def _add_journal_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journal-dir",
        metavar="DIR",
        default=None,
        help="where relabel journals are kept (default: /var/lib/mcslabel/journals as root)",
    )


def _short(owner: str) -> str:
    """``podman:<64 hex>`` as ``podman:<12 hex>``, like podman's own tables."""
    prefix, sep, rest = owner.partition(":")
    return f"{prefix}:{rest[:12]}" if sep and prefix in ("podman", "docker") else owner


def _key_values(items: list[str], flag: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{flag} {_q(item)} must be KEY=VALUE")
        found.setdefault(key, []).append(value)
    return found


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

    def usage(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_INPUT

    parser.set_defaults(handler=usage)
    sync = sub.add_parser(
        "sync",
        help="reserve the levels containers use; release those of removed containers",
        description="Reserve every podman container's level under owner podman:<id> and"
        " release the allocations of podman containers that no longer exist (docker's"
        " are left alone). Exit 1 when there are conflicts.",
    )
    _add_common(sync)
    _add_filter_flag(sync)
    _add_journal_dir_flag(sync)
    sync.set_defaults(handler=_sync)
    audit = sub.add_parser(
        "audit",
        help="find shared, dominating or disabled labels, privileged containers, bad mounts",
        description="Audit podman's containers (running and stopped). Exit 1 when a finding"
        " has severity high. Registry checks run when --store or $MCSLABEL_STORE names one.",
    )
    _add_common(audit, create=False)
    _add_filter_flag(audit)
    audit.set_defaults(handler=_audit)
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
    run.add_argument(
        "--join",
        action="store_true",
        help="a :Z volume that already holds a private level: run at that level (default: refuse)",
    )
    run.add_argument("--name", default=None, help="container name")
    run.add_argument(
        "--label", metavar="KEY=VALUE", action="append", default=[], help="container label"
    )
    _add_journal_dir_flag(run)
    run.add_argument("image", metavar="IMAGE")
    run.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER)
    run.set_defaults(handler=_run)
    rm = sub.add_parser(
        "rm",
        help="remove a container started by `mcslabel podman run`; restore its volumes",
        description="Remove the container, release its level and restore its volumes' old"
        " labels from the journals (--keep-labels keeps the new ones).",
    )
    _add_common(rm)
    rm.add_argument("container", metavar="CONTAINER", help="id or name")
    rm.add_argument("--keep-labels", action="store_true", help="do not restore old labels")
    rm.set_defaults(handler=_rm)


def _client(args: argparse.Namespace) -> Any:
    from mcslabel.integrations.podman import connect

    return connect(args.podman_host)


def _sync(args: argparse.Namespace) -> int:
    from mcslabel.integrations.podman import sync

    filters = _key_values(args.filter, "--filter")
    client = _client(args)
    with _open(args) as allocator:
        result = sync(client, allocator=allocator, filters=filters, journal_dir=args.journal_dir)
    if args.json:
        print_json(result.to_dict())
        return EXIT_OK if result.ok else EXIT_CHECK_FAILED
    rows = [
        (action, level, _short(owner))
        for action in ("reserved", "kept", "released", "fenced")
        for level, owner in getattr(result, action)
    ]
    rows += [("adopted", lv, f"{_short(o)} with {b}") for lv, o, b in result.adopted]
    rows += [("conflict", lv, f"{_short(o)}: {r}") for lv, o, r in result.conflicts]
    rows += [("unreadable", lv, f"podman:{i[:12]}: {r}") for i, lv, r in result.unreadable]
    rows += [("orphaned", lv or "?", f"volume {p}") for p, lv, _ in result.orphaned]
    if rows:
        print_table(["action", "level", "owner"], rows)
    else:
        print("nothing to do: no container has a level and the registry holds none")
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def _audit(args: argparse.Namespace) -> int:
    from mcslabel.integrations.podman import audit

    filters = _key_values(args.filter, "--filter")
    client = _client(args)
    store_url = args.store or os.environ.get("MCSLABEL_STORE")
    with contextlib.ExitStack() as stack:
        allocator = (
            stack.enter_context(_open(args, store_url, read_only=True)) if store_url else None
        )
        report = audit(client, allocator=allocator, filters=filters)
    if args.json:
        print_json(report.to_dict())
    else:
        verdict = "ok" if report.ok else "high severity findings"
        print(f"{len(report.containers)} containers, {len(report.findings)} findings ({verdict})")
        if report.findings:
            print_table(["severity", "kind", "containers", "message"], report.rows())
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _run(args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import Volume
    from mcslabel.integrations.podman import run

    volumes = [Volume.parse(v) for v in args.volume]
    labels = {k: v[-1] for k, v in _key_values(args.label, "--label").items()}
    client = _client(args)
    with _open(args) as allocator:
        started = run(
            client,
            args.image,
            args.command or None,
            allocator=allocator,
            volumes=volumes,
            name=args.name,
            labels=labels,
            journal_dir=args.journal_dir,
            join=args.join,
        )
    if args.json:
        print_json(
            {
                "ok": True,
                "id": started.id,
                "level": str(started.level),
                "owner": started.owner,
                "journals": [str(j) for j in started.journals],
            }
        )
    else:
        print(f"{started.id[:12]} {started.level}")
    return EXIT_OK


def _rm(args: argparse.Namespace) -> int:
    from mcslabel.integrations.podman import remove

    client = _client(args)
    with _open(args) as allocator:
        removal = remove(client, args.container, allocator=allocator, restore=not args.keep_labels)
    if args.json:
        print_json({"ok": True, **removal.to_dict()})
    else:
        print(f"removed {removal.id[:12]} ({removal.name}) at {removal.level}")
        for path in removal.held_volumes:
            print(f"volume {path} keeps {removal.level} held")
    return EXIT_OK


__all__ = [
    "register",
]
