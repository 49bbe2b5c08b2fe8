"""``mcslabel relabel`` and ``mcslabel restore``: label a volume, undo it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcslabel.cli._common import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_OK,
    add_json_flag,
    add_store_flag,
    print_error,
    print_json,
)
from mcslabel.cli._progress import ProgressLine, count_in_background, count_lines, wanted


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "relabel",
        help="relabel a container volume (:Z / :z), journaled and undoable",
        description="Give every file under PATH one SELinux file context: the policy's"
        " container file type at --level (podman's :Z), at s0 with --shared (:z), or"
        " --context. System paths and home directories are refused after"
        " canonicalisation. Exit 0 when every file got its label, 3 when some failed"
        " (the top directory then keeps its old label), 2 for a refused path or bad"
        " input.",
    )
    parser.add_argument("path", metavar="PATH")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--level", metavar="LEVEL", help="private label at LEVEL (:Z)")
    which.add_argument("--shared", action="store_true", help="shared label at s0 (:z)")
    which.add_argument("--context", metavar="CONTEXT", help="exactly this context")
    parser.add_argument("--type", metavar="TYPE", dest="file_type", help="replace the type")
    parser.add_argument("--read-only", action="store_true", help="use lxc_contexts' ro_file type")
    parser.add_argument("--dry-run", action="store_true", help="count, write nothing")
    parser.add_argument(
        "--journal", metavar="FILE", help="record every old label in FILE (new file)"
    )
    parser.add_argument(
        "--cross-mounts",
        action="store_true",
        help="descend into mount points inside PATH (default: stay on PATH's mount)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes (default: one per core, at most 4, for trees of 4096+ entries)",
    )
    parser.add_argument(
        "--refuse",
        metavar="DIR",
        action="append",
        default=[],
        help="refuse this path too (repeatable)",
    )
    parser.add_argument(
        "--policy-root", metavar="DIR", default=None, help="policy root for lxc_contexts"
    )
    parser.add_argument(
        "--trust-marker",
        action="store_true",
        help="skip the walk of a tree unchanged since a marked relabel to this label, and mark"
        " it after a complete one (opt-in: it misses labels changed in place, see docs/relabel.md)",
    )
    add_store_flag(parser)
    parser.add_argument(
        "--owner",
        metavar="OWNER",
        default=None,
        help="who should hold --level in the store (default: user:NAME@HOST, as allocate)",
    )
    parser.add_argument(
        "--require-held",
        action="store_true",
        help="refuse (exit 2) a --level that OWNER does not hold in the store",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_relabel)

    restore = subparsers.add_parser(
        "restore",
        help="put back the labels a relabel journal recorded",
        description="Restore every old label recorded in JOURNAL, also after an"
        " interrupted relabel. Files replaced since (another inode) are left alone."
        " Exit 0 when everything was restored, 3 when some files failed.",
    )
    restore.add_argument("journal", metavar="JOURNAL")
    restore.add_argument("--dry-run", action="store_true", help="count, write nothing")
    restore.add_argument(
        "--remove",
        action="store_true",
        help="delete the journal (and its segments) once every label is restored",
    )
    add_json_flag(restore)
    restore.set_defaults(handler=_restore)


def _refused(args: argparse.Namespace, exc: Exception) -> int:
    print_error(args, exc, EXIT_INPUT)
    return EXIT_INPUT


def _check_type(args: argparse.Namespace) -> None:
    """``--type`` / ``--context``'s type must be a type of the policy (exit 2 if not).

    A policy that cannot be loaded (no SETools, no policy root) only warns:
    the label is then written unchecked, as before.
    """
    if args.file_type is None and args.context is None:
        return
    from mcslabel.context import Context
    from mcslabel.errors import InvalidContext, PolicyError, SELinuxUnavailable
    from mcslabel.verification import load_policy

    wanted = args.file_type if args.file_type is not None else Context.parse(args.context).type
    try:
        policy = load_policy(args.policy_root)
    except (PolicyError, SELinuxUnavailable) as exc:
        print(f"mcslabel: warning: type {wanted!r} not checked: {exc}", file=sys.stderr)
        return
    if not policy.has_type(wanted):
        raise InvalidContext(f"type {wanted!r} is not a type of the policy {policy.path}")


def _store_to_check(args: argparse.Namespace) -> str | None:
    """The store URL a private relabel is checked against: ``--store``,
    ``$MCSLABEL_STORE``, else the default SQLite store when it exists; None
    when there is none (a store is never created here)."""
    import os
    from pathlib import Path

    from mcslabel.allocation import STORE_ENV
    from mcslabel.errors import InvalidInput

    url = args.store or os.environ.get(STORE_ENV) or None
    explicit = url is not None
    url = url or "sqlite:///"
    if url.startswith("sqlite://"):
        from mcslabel.allocation.peek import sqlite_file

        file = Path(sqlite_file(url))
        if not file.exists():
            if explicit:
                raise InvalidInput(f"store {url} does not exist; not creating it to check a level")
            return None
    return url


def _check_held(args: argparse.Namespace) -> None:
    """Warn (or with ``--require-held`` refuse) a ``--level`` its owner does not hold."""
    if args.level is None:
        return
    from mcslabel.errors import InvalidInput

    try:
        url = _store_to_check(args)
    except InvalidInput as exc:
        if args.require_held:
            raise
        print(f"mcslabel: warning: {exc}", file=sys.stderr)
        return
    if url is None:
        if args.require_held:
            raise InvalidInput("--require-held: no store to check the level against")
        return
    from mcslabel.allocation import holding, open_store
    from mcslabel.cli._identity import default_owner
    from mcslabel.errors import StoreError
    from mcslabel.level import Level

    owner = args.owner or default_owner()
    level = Level.parse(args.level)
    try:
        store = open_store(url)
        try:
            # Only reading: the store's record, without loading the allocator.
            held = holding(store, level)
        finally:
            store.close()
    except StoreError as exc:
        # A store that cannot answer (busy, unreachable) does not stop a relabel
        # that did not ask for the check to be strict.
        if args.require_held:
            raise
        print(f"mcslabel: warning: level {args.level} not checked: {exc}", file=sys.stderr)
        return
    if held is not None and owner in held.owners:
        return
    holders = "nobody" if held is None else ", ".join(held.owners)
    why = f"level {args.level} is not held by {owner} in {url} (held by {holders})"
    if args.require_held:
        raise InvalidInput(f"{why}; allocate or reserve it first")
    print(f"mcslabel: warning: {why}", file=sys.stderr)


def _relabel(args: argparse.Namespace) -> int:
    from mcslabel.errors import RefusedPath
    from mcslabel.relabeling.engine import relabel

    _check_type(args)
    _check_held(args)
    refuse = list(args.refuse)
    if args.store and args.store.startswith("sqlite:///"):
        refuse.append(args.store[len("sqlite://") :].partition("?")[0])  # the registry itself
    bar = None
    if wanted(args):
        bar = ProgressLine("relabel")
        count_in_background(bar, args.path, one_file_system=not args.cross_mounts)
    try:
        result = relabel(
            args.path,
            level=args.level,
            shared=args.shared,
            context=args.context,
            file_type=args.file_type,
            read_only=args.read_only,
            dry_run=args.dry_run,
            journal=args.journal,
            one_file_system=not args.cross_mounts,
            workers=args.workers,
            progress=bar,
            policy_root=args.policy_root,
            refuse=refuse,
            trust_marker=args.trust_marker,
        )
    except RefusedPath as exc:
        return _refused(args, exc)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print_json(result.to_dict(), ok=result.ok)
    else:
        verb = "would change" if result.dry_run else "changed"
        if result.skipped_by_marker:
            verb = "unchanged since its marker: walk skipped; changed"
        print(
            f"{result.root}: {verb} {result.changed}, already right {result.unchanged},"
            f" failed {result.failed}, mounts skipped {result.skipped_mounts}"
            f" -> {result.context} ({result.duration:.2f}s)"
        )
        for err in result.errors:
            print(f"  {err.path}: {err.message}", file=sys.stderr)
        if result.failed > len(result.errors):
            print(f"  ... {result.failed - len(result.errors)} more", file=sys.stderr)
        if result.journal is not None:
            print(f"journal: {result.journal} (undo: mcslabel restore {result.journal})")
    return EXIT_OK if result.ok else EXIT_FAILED


def _restore(args: argparse.Namespace) -> int:
    from mcslabel.errors import RefusedPath
    from mcslabel.relabeling.restoration import restore  # not engine: no policy root needed

    bar = None
    if wanted(args):
        from mcslabel.relabeling import journal_files

        bar = ProgressLine("restore", "records")
        files = journal_files(args.journal)
        bar.total = max(count_lines(files) - 2 * len(files) - 1, 1)  # less headers, end line
    try:
        # progress= only for a terminal: a restore without it stays a plain call.
        shown: dict[str, Any] = {} if bar is None else {"progress": bar}
        result = restore(args.journal, dry_run=args.dry_run, **shown)
    except RefusedPath as exc:
        return _refused(args, exc)
    finally:
        if bar is not None:
            bar.close()
    removed = args.remove and result.ok and not result.dry_run
    if removed:
        from mcslabel.relabeling.journal import remove_journal

        remove_journal(args.journal)
    if args.json:
        print_json({**result.to_dict(), "journal_removed": removed}, ok=result.ok)
    else:
        verb = "would restore" if result.dry_run else "restored"
        state = "" if result.journal_finished else " (journal of an interrupted relabel)"
        print(
            f"{result.root}: {verb} {result.restored}, already right {result.unchanged},"
            f" replaced since {result.replaced}, failed {result.failed}{state}"
        )
        for err in result.errors:
            print(f"  {err.path}: {err.message}", file=sys.stderr)
        if removed:
            print(f"removed journal {args.journal}")
    return EXIT_OK if result.ok else EXIT_FAILED


__all__ = [
    "register",
]
