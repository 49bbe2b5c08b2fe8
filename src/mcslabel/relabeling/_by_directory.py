"""The walk by directory (a tree whose top is already right): the pieces of a
worker that only this walk needs.

The owner of a directory reads every label in it; a leaf (``st_nlink == 2``)
it owns is read from a plain ``listdir``. Entries with more than one link
may sit in directories of different workers, so they are labeled in batches
under a lock the workers share (:func:`flush_linked`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from typing import TYPE_CHECKING

from mcslabel.relabeling._split import HOOKS
from mcslabel.relabeling._walking import OpenDir, Stack, label_here, right_labels
from mcslabel.relabeling._xattrat import XATTR

if TYPE_CHECKING:
    from mcslabel.relabeling._worker import Worker

#: The worker owns the directory: it labels every entry (else: the inodes it owns).
EVERY = 1


def scan_leaf(w: Worker, d: OpenDir, stack: Stack) -> None:
    """Read every label of an owned directory without subdirectories (walk
    by directory). ``listdir`` names are all it takes, no ``d_type`` or
    inode: measurably faster for a second relabel. A wrong entry is
    ``lstat``\\ ed for its inode, which fix() needs (with its links) anyway."""
    if HOOKS.directory_delay:  # a test hook: widens race windows
        time.sleep(HOOKS.directory_delay)
    target = w.spec.target
    right = right_labels(target)
    getx = os.getxattr
    try:
        names = os.listdir(d.fd)
        # A subdirectory made or moved in since st_nlink was read: read it the
        # long way, and everything below it alone (the other workers saw no
        # subdirectory here and will not come).
        if os.fstat(d.fd).st_nlink != 2:
            d.solo = True
            w.scan(d, stack, EVERY)
            return
    except OSError as exc:
        w.error(d.rel, exc)
        return
    w.begin_scan(d)
    wrong: list[tuple[str, int, bytes | None]] = []
    visited = unchanged = 0
    for name in names:
        visited += 1
        try:
            old = getx(name, XATTR, follow_symlinks=False)
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                w.error(d.child(os.fsencode(name)), exc)
                continue
            old = None
        if old in right:
            unchanged += 1
            continue
        try:
            st = os.lstat(name)
        except OSError as exc:
            w.error(d.child(os.fsencode(name)), exc)
            continue
        if stat.S_ISDIR(st.st_mode):  # moved in and another out meanwhile: walk it too
            visited -= 1
            d.solo = True
            d.refs += 1
            stack.append((d, name, st.st_ino))
            continue
        wrong.append((name, st.st_ino, old))
    if wrong:
        w.fix(d, wrong)
    w.end_scan(visited, unchanged, 0)


def find_subdirs(d: OpenDir, stack: Stack) -> None:
    """Queue the subdirectories of another worker's directory (walk by directory)."""
    try:
        with os.scandir(d.fd) as it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        d.refs += 1
                        stack.append((d, entry.name, entry.inode()))
                except OSError:
                    continue  # the directory's owner reads it too, and reports it
    except OSError:
        pass  # the directory's owner reports it


def flush_linked(w: Worker, current: OpenDir | None) -> None:
    """Label the queued multi-linked entries under the workers' shared lock.

    Each is read again under the lock: another worker (or another link in
    this batch) may have labeled the inode since, and then it is right.
    With a journal, the records are synced before any of these writes.
    """
    items, w.linked = w.linked, []
    if not items:
        return
    target = w.spec.target
    right = right_labels(target)
    fcntl.lockf(w.spec.lock_fd, fcntl.LOCK_EX)
    try:
        seen: set[tuple[int, int]] = set()
        todo: list[tuple[OpenDir, str, int, int, bytes | None]] = []
        cwd: OpenDir | None = None
        for d, name, dev, ino in items:
            if (dev, ino) in seen:
                w.unchanged += 1  # another link of an inode in this batch
                continue
            seen.add((dev, ino))
            if d is not cwd:
                os.fchdir(d.fd)
                cwd = d
            try:
                old = label_here(name)
            except OSError as exc:
                w.error(d.child(os.fsencode(name)), exc)
                continue
            if old in right:
                w.unchanged += 1  # labeled by another worker since
                continue
            todo.append((d, name, dev, ino, old))
        if todo and w.segment is not None:
            seq = w.segment.append(d.record(ino, old, name) for d, name, _dev, ino, old in todo)
            w.segment.sync_through(seq)
            w.wait_until_journal_durable()
        for d, name, _dev, _ino, _old in todo:
            if d is not cwd:
                os.fchdir(d.fd)
                cwd = d
            w.changed += w.set_label(d, name)
    finally:
        fcntl.lockf(w.spec.lock_fd, fcntl.LOCK_UN)
        for d, *_ in items:
            w.release(d)
    if current is not None:
        os.fchdir(current.fd)


__all__ = [
    "EVERY",
    "find_subdirs",
    "flush_linked",
    "scan_leaf",
]
