"""``mcslabel allocate|reserve|release|renew|list|gc``: the label registry."""

from __future__ import annotations

import argparse
import datetime
from typing import TYPE_CHECKING

from mcslabel.cli._common import (
    EXIT_OK,
    add_categories_flag,
    add_json_flag,
    add_store_flag,
    print_json,
    print_table,
)
from mcslabel.cli._identity import default_owner
from mcslabel.level import Level

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator
    from mcslabel.allocation.discovery import GcEvent
    from mcslabel.allocation.stores.base import Allocation


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Allocator:
    """The allocator over ``--store``; a context manager that closes the store.

    Reading commands open the store read-only and never create it; writing
    commands create the default store on first use, and a store at an
    explicit path only with ``--create-store``.
    """
    from mcslabel.allocation.allocator import Allocator
    from mcslabel.allocation.stores import open_store

    create = True if getattr(args, "create_store", False) else None
    store = open_store(args.store, create=None if read_only else create, read_only=read_only)
    try:
        return Allocator(store, categories=args.categories)
    except BaseException:
        store.close()
        raise


def _open_to_read(args: argparse.Namespace) -> Allocator | None:
    """The allocator opened read-only; None when the default store was never created."""
    from mcslabel.allocation.stores import store_url
    from mcslabel.errors import StoreNotFound

    try:
        return _open(args, read_only=True)
    except StoreNotFound:
        if store_url(args.store) == "sqlite:///":
            return None  # nothing was ever allocated on this host
        raise


def _read_all(args: argparse.Namespace) -> list[Allocation]:
    allocator = _open_to_read(args)
    if allocator is None:
        return []
    with allocator:
        return allocator.owned_by(args.owner) if args.owner else allocator.allocations()


def _add_common(parser: argparse.ArgumentParser, *, writes: bool = True) -> None:
    add_store_flag(parser)
    if writes:
        parser.add_argument(
            "--create-store",
            action="store_true",
            help="create the store at --store if it does not exist yet"
            " (the default host store is always created on first use)",
        )
    add_json_flag(parser)
    add_categories_flag(parser)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    try:
        moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return f"{timestamp:.0f}"  # a lease past year 9999 (a huge --ttl): still a valid record
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _show(record: Allocation | None, args: argparse.Namespace) -> None:
    if args.json:
        print_json({"allocation": None} if record is None else record.to_dict())
    elif record is not None:
        print(record.level)


def _allocate(args: argparse.Namespace) -> int:
    with _open(args) as allocator:
        record = allocator.allocate(
            args.owner or default_owner(),
            name=args.name,
            shared=args.shared,
            ttl=args.ttl,
            persistent=args.persistent,
        )
    _show(record, args)
    return EXIT_OK


def _reserve(args: argparse.Namespace) -> int:
    with _open(args) as allocator:
        record = allocator.reserve(
            args.level,
            args.owner or default_owner(),
            shared=args.shared,
            ttl=args.ttl,
            persistent=args.persistent,
        )
    _show(record, args)
    return EXIT_OK


def _release(args: argparse.Namespace) -> int:
    with _open(args) as allocator:
        remaining = allocator.release(args.level, args.owner)
    if args.json:
        print_json(
            {
                "level": str(Level.parse(args.level)),
                "freed": remaining is None,
                "remaining": None if remaining is None else remaining.to_dict(),
            }
        )
    elif remaining is None:
        print(f"released {args.level}")
    else:
        print(f"{remaining.level} still held by {', '.join(remaining.owners)}")
    return EXIT_OK


def _renew(args: argparse.Namespace) -> int:
    with _open(args) as allocator:
        record = allocator.renew(args.level, args.ttl)
    if args.json:
        print_json(record.to_dict())
    else:
        print(f"{record.level} expires {_when(record.expires)}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    records = _read_all(args)
    if args.json:
        print_json({"allocations": [r.to_dict() for r in records]})
        return EXIT_OK
    print_table(
        ("level", "owners", "name", "expires", "host"),
        [
            (
                r.level,
                ",".join(r.owners),
                "(in use)" if r.in_use else r.name or "-",
                _when(r.expires),
                r.host or "-",
            )
            for r in records
        ],
    )
    return EXIT_OK


def _gc(args: argparse.Namespace) -> int:
    if args.dry_run:
        reader = _open_to_read(args)
        events: list[GcEvent] = []
        if reader is not None:
            with reader:
                events = reader.gc(dry_run=True)
    else:
        with _open(args) as allocator:
            events = allocator.gc()
    if args.json:
        print_json({"events": [e.to_dict() for e in events]})
        return EXIT_OK
    for e in events:
        who = "" if e.owner is None else f" owner {e.owner}"
        print(f"{e.level}{who}: {e.reason}{' (freed)' if e.freed else ''}")
    print(f"gc: {len(events)} change(s)")
    return EXIT_OK


def _add_lease_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--owner", metavar="OWNER", help="owner (default user:<you>@<host>)")
    parser.add_argument("--ttl", type=float, metavar="SECONDS", help="lease in seconds (renew it)")
    parser.add_argument("--shared", action="store_true", help="let other owners join")
    parser.add_argument(
        "--persistent", action="store_true", help="label of persistent data: never lease-bound"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "allocate",
        help="allocate a free category pair and print it",
        description="Allocate a category pair no other owner holds (s0:cA,cB) in the label"
        " store and print it. --name makes it deterministic (the same name gets the same"
        " pair); --ttl makes it a lease that gc frees unless renewed.",
    )
    _add_common(p)
    _add_lease_flags(p)
    p.add_argument("--name", metavar="NAME", help="deterministic: same name -> same pair")
    p.set_defaults(handler=_allocate)

    p = subparsers.add_parser(
        "reserve",
        help="reserve a chosen level (dominance-checked)",
        description="Reserve LEVEL for an owner. Refused (exit 3) when another owner holds"
        " it, or holds a level that dominates it or that it dominates.",
    )
    p.add_argument("level", metavar="LEVEL", help="e.g. s0:c3,c7 or s0:c5")
    _add_common(p)
    _add_lease_flags(p)
    p.set_defaults(handler=_reserve)

    p = subparsers.add_parser(
        "release",
        help="release a level (one owner, or all)",
        description="Drop --owner from LEVEL's owners, or free LEVEL for every owner."
        " A shared level is freed when its last owner leaves.",
    )
    p.add_argument("level", metavar="LEVEL")
    p.add_argument("--owner", metavar="OWNER", help="drop only this owner (default: free it)")
    _add_common(p)
    p.set_defaults(handler=_release)

    p = subparsers.add_parser(
        "renew",
        help="extend a level's lease",
        description="Set LEVEL's lease to expire --ttl seconds from now.",
    )
    p.add_argument("level", metavar="LEVEL")
    p.add_argument("--ttl", type=float, required=True, metavar="SECONDS", help="seconds from now")
    _add_common(p)
    p.set_defaults(handler=_renew)

    p = subparsers.add_parser(
        "list",
        help="list allocations",
        description="List the label store's allocations (all, or --owner's): level,"
        " owners, name, lease expiry, host; levels recorded in use show as (in use).",
    )
    p.add_argument("--owner", metavar="OWNER", help="only this owner's allocations")
    _add_common(p, writes=False)
    p.set_defaults(handler=_list)

    p = subparsers.add_parser(
        "gc",
        help="free expired leases and dead processes' levels",
        description="Free the allocations whose lease expired and drop pid:<n>@<this host>"
        " owners whose process is gone.",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="only report what would be freed (reads only)"
    )
    _add_common(p)
    p.set_defaults(handler=_gc)


__all__ = [
    "register",
]
