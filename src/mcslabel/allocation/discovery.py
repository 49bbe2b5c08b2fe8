"""Finding levels in use and owners that are gone, from ``/proc``.

Owns: reading ``/proc/<pid>/attr/current`` for the levels running processes
carry (:func:`levels_in_use`), telling whether a ``pid:<n>@<host>`` owner is
gone (:func:`process_gone`), and the two allocator jobs built on them:
:func:`collect_garbage` (what :meth:`Allocator.gc` does) and
:func:`reserve_processes` (what :meth:`Allocator.reserve_in_use` does).
May import: the model and :mod:`mcslabel.allocation.stores`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

from mcslabel.allocation._checks import SEEN_CATEGORIES
from mcslabel.context import Context
from mcslabel.errors import (
    DominanceConflict,
    InvalidContext,
    InvalidInput,
    InvalidLevel,
    LabelInUse,
    UnknownAllocation,
)
from mcslabel.errors import show_input as _q
from mcslabel.level import Level, LevelRange

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator

#: Owners gc may prove gone: ``pid:<n>@<host>`` and ``process:<n>@<host>``.
PROCESS_OWNER = re.compile(r"(?:pid|process):([1-9][0-9]{0,9})@(.+)")


@attrs.frozen
class GcEvent:
    """One thing :meth:`~mcslabel.Allocator.gc` did."""

    level: Level
    #: The owner dropped, or None when the whole allocation expired.
    owner: str | None
    reason: Literal["lease-expired", "process-gone"]
    #: Whether the level became free.
    freed: bool

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "level": str(self.level),
            "owner": self.owner,
            "reason": self.reason,
            "freed": self.freed,
        }


@attrs.frozen
class Discovered:
    """A level found in use by running processes (:meth:`~mcslabel.Allocator.reserve_in_use`)."""

    level: Level
    pids: tuple[int, ...]
    outcome: Literal["reserved", "already-held", "conflict"]
    detail: str = ""
    #: True when the level could not be reserved (``already-held``, ``conflict``) but
    #: was recorded in use (:meth:`~mcslabel.Allocator.record_in_use`) under the
    #: processes' owners: it still blocks every level comparable with it.
    recorded_in_use: bool = False

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "level": str(self.level),
            "pids": list(self.pids),
            "outcome": self.outcome,
            "detail": self.detail,
            "recorded_in_use": self.recorded_in_use,
        }


def _proc_root(proc_root: str | os.PathLike[str]) -> Path:
    if not isinstance(proc_root, (str, os.PathLike)):
        raise InvalidInput(f"proc_root must be a path, got {_q(proc_root)}")
    return Path(proc_root)


def process_gone(pid: int, proc_root: str | os.PathLike[str] = "/proc") -> bool:
    """True when ``pid`` has exited (no ``/proc/<pid>``, or a zombie)."""
    try:
        stat = (_proc_root(proc_root) / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False  # cannot prove it gone
    # A zombie has exited; only its parent's wait() is missing.
    state = stat.rpartition(")")[2].split()
    return bool(state) and state[0] in ("Z", "X")


def levels_in_use(
    proc_root: str | os.PathLike[str] = "/proc", *, categories: int
) -> dict[Level, list[int]]:
    """Single levels with categories that running processes carry -> their pids.

    Without the SELinux LSM the files are absent or empty and nothing is
    found. A range such as ``s0-s0:c0.c1023`` is a cleared process, not a
    container, and is skipped.
    """
    root = _proc_root(proc_root)
    try:
        entries = sorted(int(e.name) for e in os.scandir(root) if e.name.isdigit())
    except OSError as exc:
        raise InvalidInput(f"cannot list {root}: {exc.strerror}") from None
    found: dict[Level, list[int]] = {}
    for pid in entries:
        try:
            raw = (root / str(pid) / "attr" / "current").read_bytes()
        except OSError:
            continue
        text = raw.rstrip(b"\x00\n").decode("ascii", "replace")
        if not text:
            continue
        try:
            # Read with the widest bound record_in_use takes, not the allocator's:
            # s0:c0.c1023 under --categories 16 still dominates every pair.
            level = Context.parse(text, categories=max(categories, SEEN_CATEGORIES)).level
        except InvalidContext:
            continue
        if isinstance(level, LevelRange):
            if level.low != level.high:
                continue
            level = level.low
        if level is not None and level.categories:
            found.setdefault(level, []).append(pid)
    return found


def collect_garbage(
    allocator: Allocator, proc_root: str | os.PathLike[str], *, dry_run: bool = False
) -> list[GcEvent]:
    """Free expired leases; drop this host's process owners that are gone.

    With ``dry_run``, only report what would be done (nothing is written).
    """
    root = _proc_root(proc_root)
    events: list[GcEvent] = []
    now = allocator.clock()
    for record in allocator.store.snapshot().allocations:
        if record.expired(now):
            if dry_run or allocator.store.delete(record):
                events.append(GcEvent(record.level, None, "lease-expired", True))
            continue
        gone = []
        for owner in record.owners:
            match = PROCESS_OWNER.fullmatch(owner)
            if match and match.group(2) == allocator.host and process_gone(int(match[1]), root):
                gone.append(owner)
        if dry_run:
            left = len(record.owners) - len(gone)
            events.extend(GcEvent(record.level, o, "process-gone", left == 0) for o in gone)
            continue
        for owner in gone:
            try:
                remaining = allocator.release(record.level, owner)
            except UnknownAllocation:
                continue  # someone else released it meanwhile
            events.append(GcEvent(record.level, owner, "process-gone", remaining is None))
    if events and not dry_run:
        allocator.sync()
    return events


def reserve_processes(allocator: Allocator, proc_root: str | os.PathLike[str]) -> list[Discovered]:
    """Reserve the levels running processes use, each pid a shared owner.

    A level that cannot be reserved (held by another owner, comparable with a
    held level or another live one) is still in use: it is recorded in use, so
    nothing comparable with it is handed out while its processes run.
    """
    results: list[Discovered] = []
    for level, pids in levels_in_use(proc_root, categories=allocator.categories).items():
        outcome: Literal["reserved", "already-held", "conflict"] = "reserved"
        detail = ""
        owners = [f"process:{pid}@{allocator.host}" for pid in pids]
        refused: list[str] = []
        for i, owner in enumerate(owners):
            try:
                allocator.reserve(level, owner, shared=True)
            except LabelInUse as exc:
                outcome, detail, refused = "already-held", str(exc), owners[i:]
                break
            except (DominanceConflict, InvalidLevel) as exc:
                outcome, detail, refused = "conflict", str(exc), owners[i:]
                break
        # levels_in_use yields levels with categories only, which record_in_use accepts.
        for owner in refused:
            allocator.record_in_use(level, owner)
        results.append(Discovered(level, tuple(pids), outcome, detail, bool(refused)))
    return results


__all__ = [
    "PROCESS_OWNER",
    "Discovered",
    "GcEvent",
    "collect_garbage",
    "levels_in_use",
    "process_gone",
    "reserve_processes",
]
