"""Undo a relabel: put back every old label its journal recorded.

Each file is found again by its path under the journal's root, opened
without following symlinks, and restored only when its device and inode
match the record and it still carries the label the relabel wrote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from mcslabel.errors import JournalError
from mcslabel.errors import show_input as _q
from mcslabel.relabeling import _xattrat
from mcslabel.relabeling._walking import right_labels
from mcslabel.relabeling.journal import read_journal, wait_unlocked
from mcslabel.relabeling.markers import remove_marker
from mcslabel.relabeling.refusals import check_relabel_allowed
from mcslabel.relabeling.results import ErrorTally, RestoreResult


def restore(
    journal: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    refuse: Iterable[str | os.PathLike[str]] = (),
) -> RestoreResult:
    """Put back every old label a relabel journal recorded.

    Works on an interrupted journal too (``kill -9`` mid-relabel). Each file
    is found again by its path under the journal's root, opened without
    following symlinks, and restored only when its device and inode match
    the record and it still carries the label the relabel wrote, so a file
    replaced or relabeled since is never mislabeled (it is counted as
    ``replaced``). Files that had no label get the attribute removed.
    Raises :class:`~mcslabel.errors.JournalError` for a damaged journal
    (before changing anything) or a root that is no longer the same
    directory.
    """
    started = time.monotonic()
    lock_fd = wait_unlocked(journal)  # no relabel (or worker of one) still writing
    try:
        return _restore(journal, started=started, dry_run=dry_run, refuse=refuse)
    finally:
        os.close(lock_fd)


def _restore(
    journal: str | os.PathLike[str],
    *,
    started: float,
    dry_run: bool,
    refuse: Iterable[str | os.PathLike[str]],
) -> RestoreResult:
    header, finished, records = read_journal(journal)
    root = check_relabel_allowed(header.root, refuse=refuse)
    if str(root) != header.root:
        raise JournalError(f"journal root {header.root} now resolves to {root}; not restoring")
    try:
        root_fd = os.open(root, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise JournalError(f"cannot open journal root {root}: {exc.strerror}") from exc
    restored = unchanged = replaced = 0
    errors = ErrorTally()
    written = right_labels(header.target.encode("ascii", "surrogateescape") + b"\0")
    parent_rel: bytes | None = None
    parent_fd = -1
    try:
        st = os.fstat(root_fd)
        if (st.st_dev, st.st_ino) != (header.dev, header.ino):
            raise JournalError(f"{root} is not the directory the journal was written for")
        if not dry_run:
            remove_marker(root_fd)  # labels are about to change under it
        for rec in records:
            rel = rec.relpath
            parts = rel.split(b"/")
            if rel != b"." and any(p in (b"", b".", b"..") for p in parts):
                raise JournalError(f"journal path {_q(rel)} leaves the root; not restoring it")
            fd = -1
            try:
                if rel == b".":
                    fd = os.dup(root_fd)
                else:
                    want = b"/".join(parts[:-1])
                    if want != parent_rel:
                        if parent_fd >= 0:
                            os.close(parent_fd)
                            parent_fd, parent_rel = -1, None
                        parent_fd = _open_dir_path(root_fd, parts[:-1])
                        parent_rel = want
                    fd = os.open(
                        parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
                    )
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != (rec.dev, rec.ino):
                    replaced += 1
                    continue
                current = _xattrat.get_fd(fd)
                if current == rec.old:
                    unchanged += 1
                    continue
                if current not in written:
                    # Relabeled by someone else since (or a new file that
                    # reuses the inode number): not ours to undo.
                    replaced += 1
                    continue
                if not dry_run:
                    _xattrat.set_fd(fd, rec.old)
                restored += 1
            except FileNotFoundError:
                replaced += 1  # gone since: nothing of ours to restore
            except OSError as exc:
                errors.add(rel, exc)
            finally:
                if fd >= 0:
                    os.close(fd)
    finally:
        if parent_fd >= 0:
            os.close(parent_fd)
        os.close(root_fd)
    return RestoreResult(
        root=root,
        restored=restored,
        unchanged=unchanged,
        replaced=replaced,
        failed=errors.failed,
        errors=errors.file_errors(),
        journal_finished=finished,
        duration=time.monotonic() - started,
        dry_run=dry_run,
    )


def _open_dir_path(root_fd: int, parts: list[bytes]) -> int:
    """Open ``parts`` under ``root_fd`` one component at a time, never following a symlink."""
    fd = os.dup(root_fd)
    for part in parts:
        try:
            nxt = os.open(
                part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
        finally:
            os.close(fd)
        fd = nxt
    return fd


__all__ = [
    "restore",
]
