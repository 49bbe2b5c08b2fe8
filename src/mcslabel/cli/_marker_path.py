"""The lean path of ``mcslabel relabel PATH --level L --trust-marker``.

On an unchanged tree the whole command is a handful of system calls: read
the marker, ``fstatat`` the directories, read one store record. The full
command line (argparse, the label model, the store classes: ``attrs`` and
``typing`` among them) costs several times that in imports alone, so the
console script tries this path first (:func:`mcslabel.cli.entry_point`).

It answers only the case it is sure of, and hands everything else to the
full command line, which then does all of its own work from the start:

- the arguments are ``PATH``, ``--trust-marker``, one of ``--level L`` (an
  ``s0`` category pair in canonical form) or ``--shared``, and optionally
  ``--store``, ``--owner``, ``--policy-root``, ``--json``, each at most once;
- the policy root's ``lxc_contexts`` has the plain shape
  (:func:`~mcslabel.verification.policyfiles.plain_file_context`);
- for ``--level``: there is no store to check it against (no ``--store``, no
  ``$MCSLABEL_STORE``, no default store file), or the SQLite store's record
  names the owner (:func:`~mcslabel.allocation.peek.sqlite_owners`); a level
  held by someone else, an etcd store or any doubt goes the full way, which
  warns (or refuses) as always;
- the path is allowed, and its marker vouches for the tree
  (:func:`~mcslabel.relabeling.markers.check_marker`: the same checks
  :func:`mcslabel.relabel` makes before it skips a walk).

It prints what the full command prints (the same line, or the same JSON
object), and writes nothing. On a terminal the full command may show a
progress line for a moment; this path has none to show.
"""

from __future__ import annotations

import os
import sys
import time

from mcslabel.cli._basics import EXIT_FAILED, EXIT_OK, EXIT_PIPE
from mcslabel.errors import MCSLabelError

_VALUED = frozenset({"--level", "--store", "--owner", "--policy-root"})
_FLAGS = frozenset({"--shared", "--trust-marker", "--json"})


def parse(argv: list[str]) -> tuple[str, dict[str, str]] | None:
    """``(PATH, options)`` of the arguments after ``relabel``, or None when they
    are not of the plain form this path takes (see the module docs)."""
    path: str | None = None
    options: dict[str, str] = {}
    tokens = iter(argv)
    for token in tokens:
        if not token.startswith("-"):
            if path is not None:
                return None
            path = token
            continue
        name, eq, value = token.partition("=")
        if name in _VALUED:
            if not eq:
                value = next(tokens, "")
                if value.startswith("-"):
                    return None  # argparse's business (a missing value, or an option)
            if not value:
                return None
        elif name not in _FLAGS or eq:
            return None
        if name in options:
            return None
        options[name] = value
    if path is None or "--trust-marker" not in options:
        return None
    if ("--level" in options) == ("--shared" in options):
        return None
    return path, options


def run(argv: list[str]) -> int | None:
    """Answer ``mcslabel relabel ARGV`` when it is a marker-trusted relabel of an
    unchanged tree (exit status 0, or 141 for a closed pipe); None otherwise."""
    started = time.monotonic()
    parsed = parse(argv)
    if parsed is None:
        return None
    path, options = parsed
    try:
        found = _unchanged(path, options)
    except (MCSLabelError, OSError, ValueError):
        return None  # the full command says what is wrong, as always
    if found is None:
        return None
    root, target, entries = found
    duration = time.monotonic() - started
    if "--json" in options:
        import json

        result = {
            "ok": True,
            "root": root,
            "context": target,
            "changed": 0,
            "unchanged": entries,
            "failed": 0,
            "skipped_mounts": 0,
            "errors": [],
            "error_counts": {},
            "duration": round(duration, 6),
            "dry_run": False,
            "complete": True,
            "journal": None,
            "skipped_by_marker": True,
        }
        text = json.dumps(result, indent=2) + "\n"
    else:
        text = (
            f"{root}: unchanged since its marker: walk skipped; changed 0,"
            f" already right {entries}, failed 0, mounts skipped 0 -> {target}"
            f" ({duration:.2f}s)\n"
        )
    return _write(text)


def _write(text: str) -> int | None:
    """Write ``text`` to stdout in one go: 0, 141 for a closed pipe, or None
    (nothing written) for any other failure, which the full command line then
    meets and reports as it does (``[Errno 28] No space left``: exit 3)."""
    out = sys.stdout
    if out is None:  # stdout closed at start: print() writes nothing, and so does this
        return EXIT_OK
    try:
        data = text.encode(out.encoding, out.errors or "strict")
        out.flush()
        fd = out.fileno()
    except (AttributeError, LookupError, OSError, ValueError):
        return None  # UnicodeEncodeError included: the full way fails the same way
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        return EXIT_PIPE
    except OSError as exc:
        if len(view) == len(data):
            return None
        # Part of it is out, so it is not written twice: answered as run_handler
        # answers an OSError.
        print(f"mcslabel: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _unchanged(path: str, options: dict[str, str]) -> tuple[str, str, int] | None:
    """``(root, target context, entries)`` when the marker vouches for the tree."""
    from mcslabel.verification.policyfiles import plain_file_context, policy_root_dir

    level = options.get("--level", "s0")
    if "--level" in options:
        from mcslabel.allocation.peek import canonical_pair

        if not canonical_pair(level) or not _held(level, options):
            return None
    file_context = plain_file_context(policy_root_dir(options.get("--policy-root")))
    if file_context is None:
        return None
    user, role, type_ = file_context.split(":")[:3]
    target = f"{user}:{role}:{type_}:{level}"

    from mcslabel.relabeling.markers import check_marker
    from mcslabel.relabeling.mounts import read_mountinfo
    from mcslabel.relabeling.refusals import RefusedPaths, allowed_path

    refuse = []
    store = options.get("--store", "")
    if store.startswith("sqlite:///"):
        refuse.append(store[len("sqlite://") :].partition("?")[0])  # the registry itself
    refused = RefusedPaths(refuse)
    mounts = read_mountinfo()
    root = allowed_path(path, refused=refused, mounts=mounts)
    entries = check_marker(root, target, refused=refused, mounts=mounts)
    return None if entries is None else (root, target, entries)


def _held(level: str, options: dict[str, str]) -> bool:
    """True when the store has nothing to say against ``level`` (no store at
    all) or its record names the owner; False when the full command must ask."""
    from mcslabel.allocation.peek import sqlite_file, sqlite_owners

    url = options.get("--store") or os.environ.get("MCSLABEL_STORE") or None
    explicit = url is not None
    url = url or "sqlite:///"
    if not url.startswith("sqlite://") or "?" in url:
        return False  # another store, or store options: the full way
    file = sqlite_file(url)
    try:
        os.stat(file)
    except (FileNotFoundError, NotADirectoryError):
        return not explicit  # no store: nothing to check (an explicit one: it warns)
    owners = sqlite_owners(file, level)
    if owners is None:
        return False
    from mcslabel.cli._identity import default_owner

    return (options.get("--owner") or default_owner()) in owners


__all__ = ["parse", "run"]
