"""``mcslabel docker``: sync the registry with a Docker daemon, audit its containers, run one."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcslabel.cli._common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    Handler,
    add_categories_flag,
    add_journal_dir_flag,
    add_json_flag,
    add_store_flag,
    add_store_flags,
    open_registry,
    print_json,
    print_table,
    usage_handler,
)
from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q


@dataclass(frozen=True)
class Engine:
    """What tells the container engines' commands apart; the handlers are shared.

    ``name`` is the command, the owner prefix (``<name>:<id>``) and the
    integration module (``mcslabel.integrations.<name>``).
    """

    name: str
    host_help: str
    filter_help: str
    #: Owner prefixes shortened to 12 hex digits in tables.
    short_prefixes: tuple[str, ...]
    #: What follows ``KEY=VALUE`` in a bad ``--filter``'s message.
    filter_example: str = ""
    #: The order of the plain rows of sync's table ("adopted" among them).
    sync_order: tuple[str, ...] = ("reserved", "kept", "released", "fenced", "adopted")
    #: Hints after an orphaned volume (sync) and a held volume (rm).
    orphan_hint: str = ""
    held_hint: str = ""
    #: Whether sync's and audit's JSON get their verdict as ``ok`` put first.
    json_verdict: bool = False

    @property
    def host_flag(self) -> str:
        return f"--{self.name}-host"

    def integration(self) -> Any:
        import importlib

        return importlib.import_module(f"mcslabel.integrations.{self.name}")

    def connect(self, args: argparse.Namespace) -> Any:
        return self.integration().connect(getattr(args, f"{self.name}_host"))

    def short(self, owner: str) -> str:
        """``docker:<64 hex>`` as ``docker:<12 hex>``, like the engine's own tables."""
        prefix, sep, rest = owner.partition(":")
        return f"{prefix}:{rest[:12]}" if sep and prefix in self.short_prefixes else owner


DOCKER = Engine(
    name="docker",
    host_help="daemon address, e.g. unix:///var/run/docker.sock (default: $DOCKER_HOST or the"
    " local socket)",
    filter_help="docker ps filter, e.g. label=app=web (repeatable)",
    short_prefixes=("docker",),
    filter_example=" (e.g. label=app=web)",
    sync_order=("reserved", "kept", "adopted", "released", "fenced"),
    orphan_hint=" (mcslabel docker volumes restore|forget)",
    held_hint=" (mcslabel docker volumes)",
    json_verdict=True,
)


def add_host_flag(parser: argparse.ArgumentParser, engine: Engine) -> None:
    parser.add_argument(engine.host_flag, metavar="URL", default=None, help=engine.host_help)


def add_filter_flag(parser: argparse.ArgumentParser, engine: Engine) -> None:
    parser.add_argument(
        "--filter",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help=engine.filter_help,
    )


def add_run_arguments(run: argparse.ArgumentParser, *, json: bool) -> None:
    """``run``'s arguments after ``--volume``: the container's, the journals', the image."""
    run.add_argument(
        "--join",
        action="store_true",
        help="a :Z volume that already holds a private level: run at that level (default: refuse)",
    )
    run.add_argument("--name", metavar="NAME", default=None, help="container name")
    run.add_argument(
        "--label", metavar="KEY=VALUE", action="append", default=[], help="container label"
    )
    add_journal_dir_flag(run)
    if json:
        add_json_flag(run)
    run.add_argument("image", metavar="IMAGE")
    run.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER)


def bind(command: Callable[[Engine, argparse.Namespace], int], engine: Engine) -> Handler:
    """``command`` as the handler of ``engine``'s subcommand."""
    return functools.partial(command, engine)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "docker",
        help="sync the label registry with Docker, audit containers, run one labeled",
        description="Work with the containers of a Docker daemon (extra mcslabel[docker]).",
    )
    sub = parser.add_subparsers(dest="docker_command", metavar="SUBCOMMAND")

    parser.set_defaults(handler=usage_handler(parser))

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
    add_host_flag(sync, DOCKER)
    add_store_flags(sync, create=True)
    add_categories_flag(sync)
    add_filter_flag(sync, DOCKER)
    add_journal_dir_flag(sync)
    add_json_flag(sync)
    sync.set_defaults(handler=bind(sync_command, DOCKER))

    audit = sub.add_parser(
        "audit",
        help="find shared, dominating or disabled labels, privileged containers, bad mounts",
        description="Audit the daemon's containers (running and stopped). Exit 1 when a"
        " finding has severity high. Registry checks run when --store or $MCSLABEL_STORE"
        " names a store.",
    )
    add_host_flag(audit, DOCKER)
    add_store_flag(audit)
    add_categories_flag(audit)
    add_filter_flag(audit, DOCKER)
    add_json_flag(audit)
    audit.set_defaults(handler=bind(audit_command, DOCKER))
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
    add_host_flag(run, DOCKER)
    add_store_flags(run, create=True)
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
    add_run_arguments(run, json=True)
    run.set_defaults(handler=bind(run_command, DOCKER))

    rm = sub.add_parser(
        "rm",
        help="remove a container started by `mcslabel docker run`; restore its volumes",
        description="Remove the container, release its level and restore its volumes'"
        " old labels from the journals (--keep-labels keeps the new ones).",
    )
    add_host_flag(rm, DOCKER)
    add_store_flag(rm)
    add_categories_flag(rm)
    rm.add_argument("container", metavar="CONTAINER", help="id or name")
    rm.add_argument("--keep-labels", action="store_true", help="do not restore old labels")
    add_json_flag(rm)
    rm.set_defaults(handler=bind(rm_command, DOCKER))

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
    add_host_flag(volumes, DOCKER)
    add_store_flag(volumes)
    add_categories_flag(volumes)
    add_journal_dir_flag(volumes)
    add_json_flag(volumes)
    volumes.set_defaults(handler=_volumes)


def _key_values(items: list[str], flag: str, example: str = "") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{flag} {_q(item)} must be KEY=VALUE{example}")
        found.setdefault(key, []).append(value)
    return found


def sync_command(engine: Engine, args: argparse.Namespace) -> int:
    filters = _key_values(args.filter, "--filter", engine.filter_example)
    client = engine.connect(args)
    with open_registry(args) as allocator:
        result = engine.integration().sync(
            client, allocator=allocator, filters=filters, journal_dir=args.journal_dir
        )
    if args.json:
        print_json(result.to_dict(), ok=not result.conflicts if engine.json_verdict else None)
        return EXIT_OK if result.ok else EXIT_CHECK_FAILED
    short = engine.short
    rows: list[tuple[str, Any, str]] = []
    for action in engine.sync_order:
        if action == "adopted":
            rows += [("adopted", lv, f"{short(o)} with {b}") for lv, o, b in result.adopted]
        else:
            rows += [(action, lv, short(o)) for lv, o in getattr(result, action)]
    rows += [("conflict", lv, f"{short(o)}: {r}") for lv, o, r in result.conflicts]
    rows += [("unreadable", lv, f"{engine.name}:{i[:12]}: {r}") for i, lv, r in result.unreadable]
    rows += [
        ("orphaned", lv or "?", f"volume {p}{engine.orphan_hint}") for p, lv, _ in result.orphaned
    ]
    if rows:
        print_table(["action", "level", "owner"], rows)
    else:
        print("nothing to do: no container has a level and the registry holds none")
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def audit_command(engine: Engine, args: argparse.Namespace) -> int:
    filters = _key_values(args.filter, "--filter", engine.filter_example)
    client = engine.connect(args)
    store_url = args.store or os.environ.get("MCSLABEL_STORE")
    with contextlib.ExitStack() as stack:
        allocator = (
            stack.enter_context(open_registry(args, store_url, read_only=True))
            if store_url
            else None
        )
        report = engine.integration().audit(client, allocator=allocator, filters=filters)
    if args.json:
        print_json(report.to_dict(), ok=report.ok if engine.json_verdict else None)
    else:
        verdict = "ok" if report.ok else "high severity findings"
        print(f"{len(report.containers)} containers, {len(report.findings)} findings ({verdict})")
        if report.findings:
            print_table(["severity", "kind", "containers", "message"], report.rows())
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def run_command(engine: Engine, args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import Volume

    volumes = [Volume.parse(v) for v in args.volume]
    labels = {k: v[-1] for k, v in _key_values(args.label, "--label").items()}
    client = engine.connect(args)
    with open_registry(args) as allocator:
        started = engine.integration().run(
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


def rm_command(engine: Engine, args: argparse.Namespace) -> int:
    client = engine.connect(args)
    with open_registry(args) as allocator:
        removal = engine.integration().remove(
            client, args.container, allocator=allocator, restore=not args.keep_labels
        )
    if args.json:
        print_json({"ok": True, **removal.to_dict()})
    else:
        print(f"removed {removal.id[:12]} ({removal.name}) at {removal.level}")
        for path in removal.held_volumes:
            print(f"volume {path} keeps {removal.level} held{engine.held_hint}")
    return EXIT_OK


def _volumes(args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import forget_volume, restore_volume, volume_report

    if (args.action == "list") != (args.path is None):
        raise InvalidInput("usage: mcslabel docker volumes [list | restore PATH | forget PATH]")
    client = DOCKER.connect(args)
    with open_registry(args, read_only=args.action == "list") as allocator:
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
    "DOCKER",
    "Engine",
    "add_filter_flag",
    "add_host_flag",
    "add_run_arguments",
    "audit_command",
    "bind",
    "register",
    "rm_command",
    "run_command",
    "sync_command",
]
