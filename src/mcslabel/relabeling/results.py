"""What a relabel or a restore reports: counts, kept errors, progress.

Also :class:`ErrorTally`, the one place where a walk (serial, worker or
restore) counts a failed entry, keeps the first :data:`MAX_ERRORS_KEPT` of
them and counts all of them by errno name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from mcslabel.context import Context

#: Failures a result keeps (all are counted in ``failed`` and ``error_counts``).
MAX_ERRORS_KEPT = 100


@attrs.frozen
class FileError:
    """One entry that could not be read or labeled."""

    path: str  # relative to the root; "." is the root
    errno: int
    message: str


@attrs.frozen
class RelabelProgress:
    """Counts so far, handed to the ``progress`` callback (in the caller's thread)."""

    visited: int
    changed: int
    unchanged: int
    failed: int


ProgressCallback = Callable[[RelabelProgress], None]

#: An error as a worker process sends it: path relative to the root, errno, message.
ErrorRecord = tuple[bytes, int, str]


class ErrorTally:
    """Failed entries of one walk: the count, the first few, counts by errno name."""

    __slots__ = ("counts", "failed", "kept", "limit")

    def __init__(self, limit: int = MAX_ERRORS_KEPT) -> None:
        self.failed = 0
        self.limit = limit
        self.kept: list[ErrorRecord] = []
        self.counts: dict[str, int] = {}

    def add(self, rel: bytes, exc: OSError) -> None:
        """Count ``exc`` for the entry at ``rel`` (``b""``: the root)."""
        self.failed += 1
        code = exc.errno or 0
        key = os.strerror(code) if code else type(exc).__name__
        self.counts[key] = self.counts.get(key, 0) + 1
        if len(self.kept) < self.limit:
            self.kept.append((rel or b".", code, exc.strerror or str(exc)))

    def merge(self, failed: int, kept: list[ErrorRecord], counts: Mapping[str, int]) -> None:
        """Add another tally's figures (a worker's, sent over its pipe)."""
        self.failed += failed
        self.kept.extend(kept[: max(0, self.limit - len(self.kept))])
        for key, n in counts.items():
            self.counts[key] = self.counts.get(key, 0) + n

    def worker_died(self, message: str) -> None:
        """A worker that died or failed: one failure, reported first."""
        self.failed += 1
        self.counts["worker died"] = self.counts.get("worker died", 0) + 1
        self.kept.insert(0, (b".", 0, message))
        del self.kept[self.limit :]

    def file_errors(self) -> tuple[FileError, ...]:
        return tuple(FileError(os.fsdecode(rel), code, message) for rel, code, message in self.kept)


@attrs.frozen
class RelabelResult:
    """What a relabel did.

    ``changed`` counts inodes written (or that would be, in a dry run);
    ``unchanged`` counts entries whose label was already right, including
    further hard links of an inode already handled. File content is never
    opened or read. ``complete`` is true when the top directory got its
    label (no entry failed); ``errors`` keeps the first :data:`MAX_ERRORS_KEPT` failures and
    ``error_counts`` counts all of them by errno name. ``skipped_by_marker``
    is true when an unchanged-tree marker let the walk be skipped
    (``trust_marker=True``; nothing was read).
    """

    root: Path
    context: Context
    changed: int
    unchanged: int
    failed: int
    skipped_mounts: int
    errors: tuple[FileError, ...]
    error_counts: Mapping[str, int]
    duration: float
    dry_run: bool
    complete: bool
    journal: Path | None
    skipped_by_marker: bool = False

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.complete

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "context": str(self.context),
            "changed": self.changed,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "skipped_mounts": self.skipped_mounts,
            "errors": [attrs.asdict(e) for e in self.errors],
            "error_counts": dict(self.error_counts),
            "duration": round(self.duration, 6),
            "dry_run": self.dry_run,
            "complete": self.complete,
            "journal": None if self.journal is None else str(self.journal),
            "skipped_by_marker": self.skipped_by_marker,
        }


@attrs.frozen
class RestoreResult:
    """What a restore did.

    ``replaced`` counts entries left alone: the file is gone, is another
    inode now, or carries a label other than the one the relabel wrote.
    """

    root: Path
    restored: int
    unchanged: int
    replaced: int
    failed: int
    errors: tuple[FileError, ...]
    journal_finished: bool
    duration: float
    dry_run: bool

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "restored": self.restored,
            "unchanged": self.unchanged,
            "replaced": self.replaced,
            "failed": self.failed,
            "errors": [attrs.asdict(e) for e in self.errors],
            "journal_finished": self.journal_finished,
            "duration": round(self.duration, 6),
            "dry_run": self.dry_run,
        }


__all__ = [
    "MAX_ERRORS_KEPT",
    "ErrorRecord",
    "ErrorTally",
    "FileError",
    "ProgressCallback",
    "RelabelProgress",
    "RelabelResult",
    "RestoreResult",
]
