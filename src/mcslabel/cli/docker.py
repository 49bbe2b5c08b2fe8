"""``mcslabel docker``: sync the registry with a Docker daemon, audit its containers, run one."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from mcslabel.allocation import Allocator
from mcslabel.errors import show_input as _q


def _add_host_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docker-host",
        metavar="URL",
        default=None,
        help="daemon address, e.g. unix:///var/run/docker.sock (default: $DOCKER_HOST or the"
        " local socket)",
    )


def _add_filter_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="docker ps filter, e.g. label=app=web (repeatable)",
    )


def _add_journal_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journal-dir",
        metavar="DIR",
        default=None,
        help="where relabel journals are kept (default: /var/lib/mcslabel/journals as root)",
    )


def _add_store_flags(parser: argparse.ArgumentParser, *, create: bool) -> None:
    add_store_flag(parser)
    if create:
        parser.add_argument(
            "--create-store",
            action="store_true",
            help="create the store at --store if it does not exist yet"
            " (the default host store is always created on first use)",
        )


def _open(
    args: argparse.Namespace, url: str | None = None, *, read_only: bool = False
) -> contextlib.AbstractContextManager[Allocator]:
    """The registry: never created at an explicit path without --create-store."""
    create = True if getattr(args, "create_store", False) else None
    return open_allocator(
        url if url is not None else args.store,
        args.categories,
        create=None if read_only else create,
        read_only=read_only,
    )


def _short(owner: str) -> str:
    """``docker:<64 hex>`` as ``docker:<12 hex>``, like docker's own tables."""
    prefix, sep, rest = owner.partition(":")
    return f"{prefix}:{rest[:12]}" if sep and prefix == "docker" else owner


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
        " (containers of one pod share one allocation; a container labeled"
        " io.mcslabel.owner=OWNER joins OWNER's allocation) and release the allocations of"
        " containers that no longer exist; their privately relabeled volumes keep the level"
        " held and are reported as orphaned. Conflicts and unreadable levels are reported;"
        " exit 1 when there are any.",
    )
    _add_host_flag(sync)
    _add_store_flags(sync, create=True)
    add_categories_flag(sync)
    _add_filter_flag(sync)
    _add_journal_dir_flag(sync)
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
    _add_filter_flag(audit)
    add_json_flag(audit)
    audit.set_defaults(handler=_audit)
    _register_run(sub)


def _register_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="start a container at a fresh level with its volumes relabeled",
        description="Allocate a level, relabel each -v volume given Z (private at the level)"
        " or z (shared at s0), journaled, create and start the container with"
        " label=level:<level>, and hand the allocation to owner docker:<id>. A volume without"
        " Z/z is not relabeled. A Z volume keeps the level held (owner volume:<path>) until it"
        " is restored. Undo it all with `mcslabel docker rm`.",
    )
    _add_host_flag(run)
    _add_store_flags(run, create=True)
    add_categories_flag(run)
    run.add_argument(
        "-v",
        "--volume",
        metavar="SRC:DST[:OPTS]",
        action="append",
        default=[],
        help="bind volume; OPTS: ro|rw and Z (private relabel) or z (shared relabel);"
        " without Z/z the labels are left alone, as docker does (repeatable)",
    )
    run.add_argument(
        "--join",
        action="store_true",
        help="a :Z volume that already holds a private level: run at that level (default: refuse)",
    )
    run.add_argument("--name", metavar="NAME", default=None, help="container name")
    run.add_argument(
        "--label", metavar="KEY=VALUE", action="append", default=[], help="container label"
    )
    _add_journal_dir_flag(run)
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

    volumes = sub.add_parser(
        "volumes",
        help="list, restore or forget volumes that hold a private level",
        description="List the volumes privately relabeled by `mcslabel docker run` (held in the"
        " registry by owner volume:<path>, or described by a journal) with their level and the"
        " containers using them. `restore PATH` puts back the old labels and releases the"
        " level; `forget PATH` drops the journals and releases the level, keeping the labels."
        " Neither touches a volume a live container uses.",
    )
    volumes.add_argument("action", nargs="?", choices=["list", "restore", "forget"], default="list")
    volumes.add_argument("path", metavar="PATH", nargs="?", help="the volume (restore, forget)")
    _add_host_flag(volumes)
    add_store_flag(volumes)
    add_categories_flag(volumes)
    _add_journal_dir_flag(volumes)
    add_json_flag(volumes)
    volumes.set_defaults(handler=_volumes)


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

    filters = _filters(args.filter)
    client = _client(args)
    with _open(args) as allocator:
        result = sync(client, allocator=allocator, filters=filters, journal_dir=args.journal_dir)
    if args.json:
        print_json(result.to_dict(), ok=not result.conflicts)
    else:
        rows = [("reserved", lv, _short(o)) for lv, o in result.reserved]
        rows += [("kept", lv, _short(o)) for lv, o in result.kept]
        rows += [("adopted", lv, f"{_short(o)} with {b}") for lv, o, b in result.adopted]
        rows += [("released", lv, _short(o)) for lv, o in result.released]
        rows += [("fenced", lv, _short(o)) for lv, o in result.fenced]
        rows += [("conflict", lv, f"{_short(o)}: {r}") for lv, o, r in result.conflicts]
        rows += [("unreadable", lv, f"docker:{i[:12]}: {r}") for i, lv, r in result.unreadable]
        rows += [
            ("orphaned", lv or "?", f"volume {p} (mcslabel docker volumes restore|forget)")
            for p, lv, _ in result.orphaned
        ]
        if rows:
            print_table(["action", "level", "owner"], rows)
        else:
            print("nothing to do: no container has a level and the registry holds none")
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def _audit(args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import audit

    filters = _filters(args.filter)
    client = _client(args)
    store_url = args.store or os.environ.get("MCSLABEL_STORE")
    with contextlib.ExitStack() as stack:
        allocator = (
            stack.enter_context(_open(args, store_url, read_only=True)) if store_url else None
        )
        report = audit(client, allocator=allocator, filters=filters)
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
    with _open(args) as allocator:
        removal = remove(client, args.container, allocator=allocator, restore=not args.keep_labels)
    if args.json:
        print_json({"ok": True, **removal.to_dict()})
    else:
        print(f"removed {removal.id[:12]} ({removal.name}) at {removal.level}")
        for path in removal.held_volumes:
            print(f"volume {path} keeps {removal.level} held (mcslabel docker volumes)")
    return EXIT_OK


def _volumes(args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import forget_volume, restore_volume, volume_report

    if (args.action == "list") != (args.path is None):
        raise InvalidInput("usage: mcslabel docker volumes [list | restore PATH | forget PATH]")
    client = _client(args)
    with _open(args, read_only=args.action == "list") as allocator:
        found = volume_report(client, allocator, journal_dir=args.journal_dir)
        if args.action != "list":
            settle = restore_volume if args.action == "restore" else forget_volume
            done = settle(found, args.path, allocator=allocator)
            if args.json:
                print_json({"ok": True, "action": args.action, "volume": done.to_dict()})
            else:
                verb = "restored" if args.action == "restore" else "forgot"
                print(f"{verb} {done.path}: {done.level} released")
            return EXIT_OK
    if args.json:
        print_json({"ok": True, "volumes": [v.to_dict() for v in found]})
    elif found:
        print_table(
            ["path", "level", "held", "containers", "journals"],
            [
                (
                    v.path,
                    v.level or "?",
                    "yes" if v.held else "no",
                    ",".join(c[:12] for c in v.containers) or "(orphaned)",
                    len(v.journals),
                )
                for v in found
            ],
        )
    else:
        print("no volume holds a private level")
    return EXIT_OK


__all__ = [
    "register",
]
