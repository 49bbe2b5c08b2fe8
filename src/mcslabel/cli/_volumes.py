"""``mcslabel docker|podman volumes``: held volumes, asked of every engine.

A volume's level and journals belong to no engine, but each engine knows only
its own containers: both commands ask docker *and* podman who uses a volume
(``--engine`` picks fewer), say which engines answered, and refuse to restore
or forget while a container of any engine uses it or an engine asked did not
answer (``--allow-unreachable`` accepts that risk).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcslabel.cli._common import (
    EXIT_OK,
    add_categories_flag,
    add_journal_dir_flag,
    add_json_flag,
    add_store_flag,
    open_registry,
    print_json,
    print_table,
)
from mcslabel.cli._engines import ENGINE_NAMES, Engine, add_host_flag, bind
from mcslabel.errors import InvalidInput


def add_volumes_parser(sub: Any, engine: Engine) -> None:
    others = [n for n in ENGINE_NAMES if n != engine.name]
    volumes = sub.add_parser(
        "volumes",
        help="list, restore or forget volumes that hold a private level",
        description=f"List the volumes privately relabeled by `mcslabel {engine.name} run`"
        " (or another engine's run: a volume belongs to no engine), held in the registry by"
        " owner volume:<path> or described by a journal, with their level and the containers"
        " using them, asked of every engine (" + ", ".join(ENGINE_NAMES) + "; --engine picks"
        " fewer). `restore PATH` puts back the old labels and releases the level; `forget"
        " PATH` drops the journals and releases the level, keeping the labels. Both are"
        " refused (exit 3) while a container of any engine mounts the volume or holds its"
        " level, and while an engine asked does not answer (--allow-unreachable accepts"
        f" that risk). {engine.name} itself must answer.",
    )
    volumes.add_argument("action", nargs="?", choices=["list", "restore", "forget"], default="list")
    volumes.add_argument("path", metavar="PATH", nargs="?", help="the volume (restore, forget)")
    add_host_flag(volumes, engine)
    for other in others:
        volumes.add_argument(
            f"--{other}-host",
            metavar="URL",
            default=None,
            help=f"{other}'s address, asked too (default: its environment variable, else its"
            " root socket)",
        )
    volumes.add_argument(
        "--engine",
        metavar="NAME",
        action="append",
        choices=ENGINE_NAMES,
        default=None,
        help=f"ask only these engines (repeatable; default: all of {', '.join(ENGINE_NAMES)});"
        f" {engine.name} is always asked: --engine {engine.name} asks it alone",
    )
    volumes.add_argument(
        "--allow-unreachable",
        action="store_true",
        help="restore or forget even when an engine asked does not answer (its containers"
        " may still use the volume)",
    )
    add_store_flag(volumes)
    add_categories_flag(volumes)
    add_journal_dir_flag(volumes)
    add_json_flag(volumes)
    volumes.set_defaults(handler=bind(volumes_command, engine))


def _engines_line(report: Any) -> str:
    parts = [
        f"{e.name} asked" if e.reachable else f"{e.name} UNREACHABLE at {e.url}"
        for e in report.engines
    ]
    return "engines: " + ", ".join(parts)


def volumes_command(engine: Engine, args: argparse.Namespace) -> int:
    from mcslabel.integrations.docker import (
        connect_engines,
        forget_volume,
        restore_volume,
        volume_report,
    )

    if (args.action == "list") != (args.path is None):
        raise InvalidInput(
            f"usage: mcslabel {engine.name} volumes [list | restore PATH | forget PATH]"
        )
    client = engine.connect(args)
    asked = [n for n in (args.engine or ENGINE_NAMES) if n != engine.name]
    hosts = {n: getattr(args, f"{n}_host", None) for n in (engine.name, *asked)}
    others = connect_engines(asked, hosts)
    with open_registry(args, read_only=args.action == "list") as allocator:
        found = volume_report(
            client,
            allocator,
            journal_dir=args.journal_dir,
            engine=engine.name,
            others=others,
            urls=hosts,
        )
        engines = [e.to_dict() for e in found.engines]
        if args.action != "list":
            settle = restore_volume if args.action == "restore" else forget_volume
            done = settle(
                found, args.path, allocator=allocator, accept_unreachable=args.allow_unreachable
            )
            if args.json:
                volume = done.to_dict()
                print_json(
                    {"ok": True, "action": args.action, "volume": volume, "engines": engines}
                )
            else:
                verb = "restored" if args.action == "restore" else "forgot"
                print(f"{verb} {done.path}: {done.level} released")
                print(_engines_line(found))
            return EXIT_OK
    if args.json:
        print_json({"ok": True, "volumes": [v.to_dict() for v in found], "engines": engines})
        return EXIT_OK
    if found:
        print_table(
            ["path", "level", "held", "containers", "journals"],
            [
                (
                    v.path,
                    v.level or "?",
                    "yes" if v.held else "no",
                    ",".join(sorted({_user(u) for u in v.users})) or "(orphaned)",
                    len(v.journals),
                )
                for v in found
            ],
        )
    else:
        print("no volume holds a private level")
    print(_engines_line(found))
    for e in found.unreachable:
        print(
            f"mcslabel: warning: {e.name} did not answer ({e.error}): its containers were not"
            " asked, so a volume shown orphaned may still be in use",
            file=sys.stderr,
        )
    return EXIT_OK


def _user(user: Any) -> str:
    return user.id if user.how == "starting" else f"{user.engine}:{user.id[:12]}"


__all__ = [
    "add_volumes_parser",
    "volumes_command",
]
