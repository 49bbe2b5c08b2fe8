"""``mcslabel journal list|remove``: relabel journals, kept or cleaned up."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mcslabel.cli._common import (
    EXIT_OK,
    add_json_flag,
    print_json,
    print_table,
    usage_handler,
)

#: Where ``mcslabel docker run`` keeps its journals (root); the default of ``journal list``.
DEFAULT_DIR = "/var/lib/mcslabel/journals"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "journal",
        help="list relabel journals or remove them",
        description="Relabel journals record old labels for `mcslabel restore`. List those"
        " in a directory, or remove a journal with its segment files once it is not needed.",
    )
    sub = parser.add_subparsers(dest="journal_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=usage_handler(parser))
    listing = sub.add_parser(
        "list",
        help="list the journals in directories",
        description="List the relabel journals found in each DIR (default: "
        f"{DEFAULT_DIR}, where `mcslabel docker run` keeps them): root, target label,"
        " start time, and whether the relabel finished. Files that are not journals"
        " and journal segments are skipped.",
    )
    listing.add_argument("dirs", metavar="DIR", nargs="*", help=f"default {DEFAULT_DIR}")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)
    remove = sub.add_parser(
        "remove",
        help="delete journals and their segment files",
        description="Delete each JOURNAL and its segment files (JOURNAL.1, JOURNAL.2...)."
        " The labels it recorded can then no longer be restored.",
    )
    remove.add_argument("journals", metavar="JOURNAL", nargs="+")
    add_json_flag(remove)
    remove.set_defaults(handler=_remove)


def _list(args: argparse.Namespace) -> int:
    from mcslabel.errors import InvalidInput, JournalError
    from mcslabel.relabeling import read_journal

    found: list[dict[str, Any]] = []
    for directory in args.dirs or [DEFAULT_DIR]:
        base = Path(directory)
        if not base.is_dir():
            if args.dirs:
                raise InvalidInput(f"{directory} is not a directory")
            continue
        for path in sorted(base.iterdir()):
            try:
                header, finished, _ = read_journal(path)
            except (JournalError, OSError):
                continue
            if "segment" in header.extra:
                continue
            found.append(
                {
                    "path": str(path),
                    "root": header.root,
                    "target": header.target,
                    "started": header.started,
                    "finished": finished,
                }
            )
    if args.json:
        print_json({"journals": found})
    else:
        print_table(
            ("journal", "root", "target", "started", "finished"),
            [
                (j["path"], j["root"], j["target"], j["started"], "yes" if j["finished"] else "no")
                for j in found
            ],
        )
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    from mcslabel.relabeling import journal_files, remove_journal

    removed: list[str] = []
    for journal in args.journals:
        files = journal_files(journal)
        remove_journal(journal)
        removed.extend(str(f) for f in files)
    if args.json:
        print_json({"removed": removed})
    else:
        for path in removed:
            print(f"removed {path}")
    return EXIT_OK


__all__ = ["DEFAULT_DIR", "register"]
