"""``mcslabel docker``: sync the registry with a Docker daemon, audit its containers, run one.

The subcommands and their handlers are shared with ``mcslabel podman``:
:func:`register_engine` builds them for an :class:`~mcslabel.cli._engines.Engine`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
from typing import Any

from mcslabel.cli._common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    add_categories_flag,
    add_journal_dir_flag,
    add_json_flag,
    add_store_flags,
    open_registry,
    print_json,
    print_table,
    usage_handler,
)
from mcslabel.cli._engines import (
    Engine,
    add_filter_flag,
    add_host_flag,
    add_run_arguments,
    bind,
)
from mcslabel.cli._volumes import add_volumes_parser
from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q

DOCKER = Engine(
    name="docker",
    host_help="daemon address, e.g. unix:///var/run/docker.sock (default: $DOCKER_HOST or the"
    " local socket)",
    filter_help="docker ps filter, e.g. label=app=web (repeatable)",
    short_prefixes=("docker",),
    help="sync the label registry with Docker, audit containers, run one labeled",
    description="Work with the containers of a Docker daemon (extra mcslabel[docker]).",
    descriptions={
        "sync": "Reserve every container's level in the registry under owner docker:<id>"
        " (containers of one pod share one allocation; a container labeled"
        " io.mcslabel.owner=OWNER joins OWNER's allocation) and release the allocations of"
        " containers that no longer exist; their privately relabeled volumes keep the level"
        " held and are reported as orphaned. Conflicts and unreadable levels are reported;"
        " exit 1 when there are any.",
        "audit": "Audit the daemon's containers (running and stopped). Exit 1 when a"
        " finding has severity high. Registry checks run when --store or $MCSLABEL_STORE"
        " names a store.",
        "run": "Allocate a level, relabel each -v volume given Z (private at the level)"
        " or z (shared at s0), journaled, create and start the container with"
        " label=level:<level>, and hand the allocation to owner docker:<id>. A volume without"
        " Z/z is not relabeled. A Z volume keeps the level held (owner volume:<path>) until it"
        " is restored. Undo it all with `mcslabel docker rm`.",
    },
    filter_example=" (e.g. label=app=web)",
    sync_order=("reserved", "kept", "adopted", "released", "fenced"),
    orphan_hint=" (mcslabel docker volumes restore|forget)",
    held_hint=" (mcslabel docker volumes)",
    json_verdict=True,
)


def register_engine(subparsers: Any, engine: Engine) -> None:
    """``mcslabel <engine>`` and its subcommands: sync, audit, run, rm, volumes."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        engine.name, help=engine.help, description=engine.description
    )
    sub = parser.add_subparsers(dest=f"{engine.name}_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=usage_handler(parser))
    texts = {
        "rm": "Remove the container, release its level and restore its volumes' old labels"
        " from the journals (--keep-labels keeps the new ones).",
        **engine.descriptions,
    }

    def command(name: str, help: str, *, create: bool) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = sub.add_parser(name, help=help, description=texts.get(name))
        add_host_flag(made, engine)
        # No store is created at an explicit path without --create-store (audit, rm: never).
        add_store_flags(made, create=create)
        add_categories_flag(made)
        return made

    sync = command(
        "sync",
        "reserve the levels containers use; release those of removed containers",
        create=True,
    )
    add_filter_flag(sync, engine)
    add_journal_dir_flag(sync)
    add_json_flag(sync)
    sync.set_defaults(handler=bind(sync_command, engine))

    audit = command(
        "audit",
        "find shared, dominating or disabled labels, privileged containers, bad mounts",
        create=False,
    )
    add_filter_flag(audit, engine)
    add_json_flag(audit)
    audit.set_defaults(handler=bind(audit_command, engine))

    run = command(
        "run", "start a container at a fresh level with its volumes relabeled", create=True
    )
    run.add_argument(
        "-v",
        "--volume",
        metavar="SRC:DST[:OPTS]",
        action="append",
        default=[],
        help="bind volume; OPTS: ro|rw and Z (private relabel) or z (shared relabel);"
        f" without Z/z the labels are left alone, as {engine.name} does (repeatable)",
    )
    add_run_arguments(run, json=True)
    run.set_defaults(handler=bind(run_command, engine))

    rm = command(
        "rm",
        f"remove a container started by `mcslabel {engine.name} run`; restore its volumes",
        create=False,
    )
    rm.add_argument("container", metavar="CONTAINER", help="id or name")
    rm.add_argument("--keep-labels", action="store_true", help="do not restore old labels")
    add_json_flag(rm)
    rm.set_defaults(handler=bind(rm_command, engine))
    add_volumes_parser(sub, engine)


register = functools.partial(register_engine, engine=DOCKER)


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


__all__ = [
    "DOCKER",
    "Engine",
    "audit_command",
    "register",
    "register_engine",
    "rm_command",
    "run_command",
    "sync_command",
]
