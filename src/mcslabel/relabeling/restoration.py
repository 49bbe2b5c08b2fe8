"""Undo a relabel: put back every old label its journal recorded.

Each file is found again by its path under the journal's root, one
component at a time without following a symlink, and restored only when its
device and inode match the record and it still carries the label the
relabel wrote. A journal written by worker processes (one segment each) is
restored by worker processes too, a segment each, the way the relabel wrote
it; the top directory (in the main journal file) is restored last, by the
caller's process.

In the caller's process an entry is opened (``O_PATH``) and checked and
labeled through that fd. A worker process sets its working directory to the
entry's directory (``fchdir``) and checks and labels the name there
(``lstat``, ``l{get,set,remove}xattr``): one lookup of one component each,
never following a symlink, and measurably fewer syscalls than the fd. Between
the check and the write a process that can rename entries in that directory
(the container owning the volume) could put another of its files under the
name: that file then gets the old label, which is what the container's own
files in that directory get anyway; no path outside the volume is reachable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mcslabel.errors import InvalidInput, JournalError
from mcslabel.errors import show_input as _q
from mcslabel.relabeling import _xattrat
from mcslabel.relabeling._walking import label_here, right_labels
from mcslabel.relabeling.journal import record_tuples, validate_journal, wait_unlocked
from mcslabel.relabeling.markers import remove_marker
from mcslabel.relabeling.refusals import check_relabel_allowed
from mcslabel.relabeling.results import (
    ErrorTally,
    ProgressCallback,
    RelabelProgress,
    RestoreResult,
)

XATTR = _xattrat.XATTR
#: Worker processes a restore uses at most (one per segment, one per core).
MAX_RESTORE_WORKERS = 4
_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Record = tuple[int, int, bytes | None, bytes]  # dev, ino, old label, path under the root


def restore(
    journal: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    refuse: Iterable[str | os.PathLike[str]] = (),
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> RestoreResult:
    """Put back every old label a relabel journal recorded.

    Works on an interrupted journal too (``kill -9`` mid-relabel, or
    mid-restore: a restore can be run again). Files replaced or relabeled
    since are never mislabeled (they are counted as ``replaced``). Files
    that had no label get the attribute removed. ``workers`` caps the
    worker processes (default: one per core, at most
    :data:`MAX_RESTORE_WORKERS`, never more than the journal's segments;
    0 or 1 keeps everything in the calling process). Raises
    :class:`~mcslabel.errors.JournalError` for a damaged journal (before
    changing anything) or a root that is no longer the same directory.
    ``progress`` is called about ten times a second with the records handled
    so far (``visited``; ``changed`` counts the restored). Progress is
    reported from the calling process, so with ``progress`` and no explicit
    ``workers`` the restore runs there (a terminal's progress line costs the
    parallel speed-up; scripts and pipes pass no callback).
    """
    if progress is not None and workers is None:
        workers = 1
    started = time.monotonic()
    lock_fd = wait_unlocked(journal)  # no relabel (or worker of one) still writing
    try:
        return _restore(
            journal,
            started=started,
            dry_run=dry_run,
            refuse=refuse,
            workers=workers,
            progress=progress,
        )
    finally:
        os.close(lock_fd)


def _restore(
    journal: str | os.PathLike[str],
    *,
    started: float,
    dry_run: bool,
    refuse: Iterable[str | os.PathLike[str]],
    workers: int | None,
    progress: ProgressCallback | None = None,
) -> RestoreResult:
    header, finished, files = validate_journal(journal)
    root = check_relabel_allowed(header.root, refuse=refuse)
    if str(root) != header.root:
        raise JournalError(f"journal root {header.root} now resolves to {root}; not restoring")
    try:
        root_fd = os.open(root, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise JournalError(f"cannot open journal root {root}: {exc.strerror}") from exc
    written = right_labels(header.target.encode("ascii", "surrogateescape") + b"\0")
    counts = _Counts()
    try:
        st = os.fstat(root_fd)
        if (st.st_dev, st.st_ino) != (header.dev, header.ino):
            raise JournalError(f"{root} is not the directory the journal was written for")
        if not dry_run:
            remove_marker(root_fd)  # labels are about to change under it
        segments, main = files[:-1], files[-1]
        n = _restore_workers(workers, len(segments))
        if n > 1:
            _parallel_restore(root_fd, segments, n, written, dry_run, counts)
            files = [main]
        seen = [0]  # records handled in earlier files, for progress
        for path in files:
            records = record_tuples(path)
            if progress is not None:
                records = _reporting(records, counts, progress, seen)
            _restore_records(root_fd, records, written, dry_run, counts, False)
    finally:
        os.close(root_fd)
    return RestoreResult(
        root=root,
        restored=counts.restored,
        unchanged=counts.unchanged,
        replaced=counts.replaced,
        failed=counts.errors.failed,
        errors=counts.errors.file_errors(),
        journal_finished=finished,
        duration=time.monotonic() - started,
        dry_run=dry_run,
    )


def _reporting(
    records: Iterator[Record], counts: _Counts, progress: ProgressCallback, seen: list[int]
) -> Iterator[Record]:
    """``records``, calling ``progress`` about ten times a second on the way.

    The counts are those of earlier files (the current one adds its own at
    its end), so ``changed`` trails a little; ``visited`` is exact."""
    next_report = 0.0
    for record in records:
        if seen[0] % 256 == 0 and time.monotonic() >= next_report:
            next_report = time.monotonic() + 0.1
            done = counts.unchanged + counts.replaced
            progress(RelabelProgress(seen[0], counts.restored, done, counts.errors.failed))
        seen[0] += 1
        yield record


def _restore_workers(workers: int | None, segments: int) -> int:
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), MAX_RESTORE_WORKERS)
    if workers < 0:
        raise InvalidInput(f"workers must be >= 0, got {workers}")
    return min(workers, segments)


class _Counts:
    __slots__ = ("errors", "replaced", "restored", "unchanged")

    def __init__(self) -> None:
        self.restored = self.unchanged = self.replaced = 0
        self.errors = ErrorTally()

    def summary(self) -> dict[str, Any]:
        return {
            "restored": self.restored,
            "unchanged": self.unchanged,
            "replaced": self.replaced,
            "failed": self.errors.failed,
            "errors": self.errors.kept,
            "error_counts": self.errors.counts,
        }

    def add(self, final: dict[str, Any]) -> None:
        self.restored += final.get("restored", 0)
        self.unchanged += final.get("unchanged", 0)
        self.replaced += final.get("replaced", 0)
        self.errors.merge(
            final.get("failed", 0), final.get("errors", []), final.get("error_counts", {})
        )


def _parallel_restore(
    root_fd: int,
    segments: list[Path],
    workers: int,
    written: tuple[bytes, bytes],
    dry_run: bool,
    counts: _Counts,
) -> None:
    """Restore ``segments`` in ``workers`` processes (segment ``i`` to worker
    ``i % workers``): each segment holds inodes no other segment holds."""
    from mcslabel.relabeling._parallel import fork_workers

    def task(k: int, out: int) -> dict[str, Any]:
        mine = _Counts()
        for path in segments[k::workers]:
            _restore_records(root_fd, record_tuples(path), written, dry_run, mine, True)
        return mine.summary()

    for final, died in fork_workers(workers, task, None):
        if died is not None:
            counts.errors.worker_died(f"restore worker {died}")
        counts.add(final)


def _restore_records(
    root_fd: int,
    records: Iterator[Record],
    written: tuple[bytes, bytes],
    dry_run: bool,
    counts: _Counts,
    by_name: bool,
) -> None:
    """Restore ``records`` under ``root_fd``; ``by_name`` (worker processes
    only: it changes the working directory) checks and labels each entry by
    its name in its directory, else through an ``O_PATH`` fd of it."""
    dirs = _DirCache(root_fd, chdir=by_name)
    restored = unchanged = replaced = 0
    try:
        for dev, ino, old, rel in records:
            parent, _, name = rel.rpartition(b"/")
            fd = -1
            try:
                if rel == b"." or not by_name:
                    if rel == b".":
                        fd = os.dup(root_fd)
                    else:
                        fd = os.open(
                            name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirs.get(parent)
                        )
                    st = os.fstat(fd)
                else:
                    dirs.get(parent)  # now the working directory
                    st = os.lstat(name)
                if (st.st_dev, st.st_ino) != (dev, ino):
                    replaced += 1
                    continue
                current = _xattrat.get_fd(fd) if fd >= 0 else label_here(name)
                if current == old:
                    unchanged += 1
                elif current not in written:
                    # Relabeled by someone else since (or a new file that
                    # reuses the inode number): not ours to undo.
                    replaced += 1
                else:
                    if dry_run:
                        pass
                    elif fd >= 0:
                        _xattrat.set_fd(fd, old)
                    elif old is None:
                        os.removexattr(name, XATTR, follow_symlinks=False)
                    else:
                        os.setxattr(name, XATTR, old, follow_symlinks=False)
                    restored += 1
            except FileNotFoundError:
                replaced += 1  # gone since: nothing of ours to restore
            except OSError as exc:
                counts.errors.add(rel, exc)
            finally:
                if fd >= 0:
                    os.close(fd)
    finally:
        dirs.close()
        counts.restored += restored
        counts.unchanged += unchanged
        counts.replaced += replaced


class _DirCache:
    """The directory of the last record, opened one component at a time from
    the root without following a symlink (journals list a directory's entries
    together, so one open serves many records)."""

    def __init__(self, root_fd: int, *, chdir: bool) -> None:
        self.root_fd = root_fd
        self.chdir = chdir
        self.rel: bytes | None = None
        self.fd = -1

    def get(self, rel: bytes) -> int:
        if rel != self.rel:
            self.close()
            self.fd = self._open(rel)
            self.rel = rel
            if self.chdir:
                os.fchdir(self.fd)
        return self.fd

    def _open(self, rel: bytes) -> int:
        fd = os.dup(self.root_fd)
        if not rel:
            return fd
        for part in rel.split(b"/"):
            if part in (b"", b".", b".."):
                os.close(fd)
                raise JournalError(f"journal path {_q(rel)} leaves the root; not restoring it")
            try:
                nxt = os.open(part, _O_PATH_DIR, dir_fd=fd)
            finally:
                os.close(fd)
            fd = nxt
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.rel = None


__all__ = [
    "MAX_RESTORE_WORKERS",
    "restore",
]
