"""One worker process of a parallel relabel: its walk and its share of the labels.

Every worker walks the whole tree itself, the same safe way as the serial
walk (directories opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to their
parent's fd, starting from a fresh open of the inherited root fd, never
re-resolving a path), and reads and writes the label of an entry only when it
owns the entry's inode: ``mix(inode) % workers``, the inode coming free with
``readdir``. Listing an entry costs far less than a label read or write, so
each worker does ``1/workers`` of the expensive part. Owning by inode keeps
every link of a hard-linked file in one worker, which labels it once and
journals its true old label.

A worker works with its current directory set to the directory it labels
(``fchdir``), so ``l{get,set}xattr(name)`` resolve one component inside the
pinned directory, like ``*xattrat`` with ``AT_SYMLINK_NOFOLLOW``, without the
ctypes call (measurably faster per read). Changing the working directory is
fine in a worker process; the caller's process never does it.

When the top directory's label is already right (the tree was most likely
relabeled whole before, and is being checked again), the workers share the
tree *by directory* instead: the owner of a directory (``mix(inode) %
workers`` of the directory) lists it and reads every label in it, the other
workers list it only to find its subdirectories, and skip it unopened for
its entries when ``st_nlink == 2`` says it has none (only on file systems
known to keep that count: ext2/3/4, XFS, tmpfs). Each entry is then listed
by one worker, not by all. Hard links are the price: two links of one inode
may sit in directories of different workers, so in such a walk every wrong
label is ``lstat``\\ ed, and an inode with more than one link is labeled in a
batch under a lock shared by the workers, re-read first, so it is written
(and journaled) once. That ``lstat`` is why a first relabel, where every
label is wrong, keeps the inode split. Who reads a directory depends only on
its inode, never on its size or link count at the moment a worker looks
(those change under a live volume, and workers that disagree would leave
entries to nobody), so one huge directory is read by one worker in this walk.

Each worker journals into its own segment (``JOURNAL.<n>``) with the same rule
as the serial walk: records are ``fdatasync``\\ ed before the labels change.

The scan loops (:meth:`Worker.scan`, :meth:`Worker.scan_leaf`) keep the label
read and write inline and the class keeps them together with the batch they
fill: a call per entry is measurably slower in these loops.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from typing import Final

from mcslabel.relabeling._by_directory import EVERY, find_subdirs, flush_linked, scan_leaf
from mcslabel.relabeling._split import HOOKS, MIX, Spec, owner
from mcslabel.relabeling._walking import (
    FS_ENCODING,
    O_DIR,
    SKIP,
    OpenDir,
    Stack,
    WalkCounts,
    right_labels,
)
from mcslabel.relabeling._xattrat import XATTR
from mcslabel.relabeling.journal_writer import JournalWriter

PROGRESS: Final = struct.Struct("<4q")  # visited, changed, unchanged, failed
_PROGRESSEVERY: Final = 0.05
# An owned directory without subdirectories up to this size is read from a
# list of its names (a few thousand at most: memory stays flat).
SMALL_LEAF_BYTES: Final = 64 * 1024
# Multi-linked wrong entries per batch under the shared lock (each holds its directory open).
LINKED_BATCH: Final = 128

# How a worker treats the entries of one directory.
_BY_INODE: Final = 0  # every worker lists it; each labels the inodes it owns


class Worker(WalkCounts):
    """One worker's walk (runs in the child process)."""

    def __init__(self, spec: Spec, k: int, n: int, segment: JournalWriter | None, out: int):
        super().__init__()
        self.spec = spec
        self.k = k
        self.n = n
        self.segment = segment
        self.out = out
        # The batch to journal, then write: its records, the wrong names grouped
        # by directory, the wrong directories, and every directory it holds open.
        self.records: list[str] = []
        self.pending: list[tuple[OpenDir, list[str]]] = []
        self.pending_dir_labels: list[OpenDir] = []
        self.pending_dirs: list[OpenDir] = []
        self.inflight: set[object] = set()
        # Multi-linked entries with a wrong label, for the shared lock (walk by directory).
        self.linked: list[tuple[OpenDir, str, int, int]] = []
        self.cleared = spec.go_fd < 0
        self.next_progress = 0.0

    def wait_until_journal_durable(self) -> None:
        """Block until the parent has made the journal itself durable (its
        segments' names, its header); labels may change only after that."""
        if self.cleared:
            return
        if os.read(self.spec.go_fd, 1) != b"1":
            raise RuntimeError("the journal could not be made durable; no label changed")
        self.cleared = True

    def release(self, d: OpenDir) -> None:
        d.refs -= 1
        if d.refs == 0:
            os.close(d.fd)

    def send_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self.next_progress:
            self.next_progress = now + _PROGRESSEVERY
            counts = (self.visited, self.changed, self.unchanged, self.failed)
            os.write(self.out, b"P" + PROGRESS.pack(*counts))

    def run(self) -> None:
        spec = self.spec
        fd = os.open(".", O_DIR, dir_fd=spec.root_fd)  # our own read offset
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (spec.root_dev, spec.root_ino):
            raise OSError(errno.ESTALE, "the root changed under the relabel")
        root = OpenDir(fd, b"", st.st_dev)
        stack: Stack = []
        self.scan(root, stack, _BY_INODE)
        self.release(root)
        while stack:
            parent, name, ino = stack.pop()
            self.enter(parent, name, ino, stack)
        self.flush(None)
        flush_linked(self, None)
        self.send_progress(force=True)
        if self.segment is not None:
            self.segment.finish({"changed": self.changed, "failed": self.failed})

    def enter(self, parent: OpenDir, name: str, ino: int, stack: Stack) -> None:
        n, k = self.n, self.k
        rel = parent.child(name.encode(FS_ENCODING, "surrogateescape"))
        solo = parent.solo
        try:
            fd = os.open(name, O_DIR, dir_fd=parent.fd)
        except OSError as exc:
            # ELOOP/ENOTDIR: swapped for a symlink or a file since it was listed.
            if solo or owner(ino, n) == k:
                self.error(rel, exc)
            return
        finally:
            self.release(parent)
        d = OpenDir(fd, rel, parent.dev)
        d.solo = solo
        try:
            st = os.fstat(fd)
            d.dev = st.st_dev
            own = solo or owner(st.st_ino, n) == k
            spec = self.spec
            verdict = spec.rules.verdict(rel, st)
            if verdict == SKIP:
                self.skipped_mounts += own
                return
            if isinstance(verdict, str):
                if own:
                    self.mount_refused(rel, verdict)
                return
            # Decided from the directory's inode only, never from its size or
            # anything else that may change while the workers walk: every worker
            # must agree on who reads which entry, or some are read by nobody.
            leaf = spec.nlink_counts_subdirs and st.st_nlink == 2 and st.st_dev == spec.root_dev
            if not spec.by_directory:
                self.scan(d, stack, _BY_INODE)
            elif own and leaf and st.st_size <= SMALL_LEAF_BYTES and not spec.mount_points:
                scan_leaf(self, d, stack)
            elif own:
                self.scan(d, stack, EVERY)
            elif not leaf:
                find_subdirs(d, stack)
            # else: another worker's directory without subdirectories, nothing to do here
            if own:
                self.visited += 1
                self.label_dir(d, st.st_ino)
        finally:
            self.release(d)

    def label_dir(self, d: OpenDir, ino: int) -> None:
        target = self.spec.target
        try:
            old = os.getxattr(d.fd, XATTR)
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                self.error(d.rel, exc)
                return
            old = None
        if old == target or old == target[:-1]:
            self.unchanged += 1
            return
        if self.segment is not None:
            d.refs += 1
            self.pending_dirs.append(d)
            self.pending_dir_labels.append(d)
            self.records.append(d.record(ino, old, None))
            return
        try:
            os.setxattr(d.fd, XATTR, target)
            self.changed += 1
        except OSError as exc:
            self.error(d.rel, exc)

    def scan(self, d: OpenDir, stack: Stack, mode: int) -> None:
        """Read the labels of the entries of ``d`` this worker owns (``mode``),
        queue its subdirectories, then fix the wrong ones (a chunk at a time).

        Without a journal, in the inode split (a first relabel), each wrong
        label is written right after its read instead, while the inode is hot
        (measurably less CPU than writing the directory's wrong ones after);
        a second link of an inode is then read after the first one's write,
        so it is found right.
        """
        if HOOKS.directory_delay:  # a test hook: widens race windows
            time.sleep(HOOKS.directory_delay)
        n, k = self.n, self.k
        spec = self.spec
        target = spec.target
        right = right_labels(target)
        getx = os.getxattr
        careful = bool(spec.mount_points)
        every = mode == EVERY
        write_now = self.segment is None and not spec.by_directory
        setx = os.setxattr
        wrong: list[tuple[str, int, bytes | None]] = []
        visited = unchanged = changed = 0
        self.begin_scan(d)
        try:
            with os.scandir(d.fd) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            d.refs += 1
                            stack.append((d, entry.name, entry.inode()))
                            continue
                    except OSError as exc:
                        self.error(d.child(os.fsencode(entry.name)), exc)
                        continue
                    if not every and ((entry.inode() * MIX) >> 16) % n != k:
                        continue
                    visited += 1
                    name = entry.name
                    if careful and d.child(os.fsencode(name)) in spec.mount_points:
                        self.skipped_mounts += 1  # a file bind-mounted into the tree
                        unchanged += 1
                        continue
                    try:
                        old = getx(name, XATTR, follow_symlinks=False)
                    except OSError as exc:
                        if exc.errno != errno.ENODATA:
                            self.error(d.child(os.fsencode(name)), exc)
                            continue
                        old = None
                    if old in right:
                        unchanged += 1
                        continue
                    if write_now:
                        try:
                            setx(name, XATTR, target, follow_symlinks=False)
                            changed += 1
                        except OSError as exc:
                            self.error(d.child(os.fsencode(name)), exc)
                        continue
                    wrong.append((name, entry.inode(), old))
                    if len(wrong) >= spec.batch_entries:
                        self.fix(d, wrong)
                        wrong = []
        except OSError as exc:
            self.error(d.rel, exc)
        if wrong:
            self.fix(d, wrong)
        self.end_scan(visited, unchanged, changed)

    # The label read (getxattr, ENODATA: no label) stays inline in both scans:
    # a call per entry would cost measurably more.

    def begin_scan(self, d: OpenDir) -> None:
        if self.segment is not None:
            d.refs += 1  # held open until its journaled names are written
            self.pending_dirs.append(d)
        os.fchdir(d.fd)

    def end_scan(self, visited: int, unchanged: int, changed: int) -> None:
        self.visited += visited
        self.unchanged += unchanged
        self.changed += changed
        if self.segment is not None and len(self.pending_dirs) >= self.spec.batch_dirs:
            self.flush(None)
        self.send_progress()

    def fix(self, d: OpenDir, wrong: list[tuple[str, int, bytes | None]]) -> None:
        """Write (or queue for the journal) the wrong labels just read in ``d``,
        the current directory; each inode once."""
        spec = self.spec
        journaled = self.segment is not None
        # Two links of one inode in this chunk were both read before either write.
        seen = self.inflight if journaled else set()
        other_dev = d.dev != spec.root_dev
        # Links of one inode may sit in other workers' directories: count them first.
        count_links = spec.by_directory
        records = self.records
        group: list[str] | None = None  # this directory's names in the journal batch
        changed = unchanged = 0
        for name, ino, old in wrong:
            if count_links:
                try:
                    links = os.lstat(name).st_nlink
                except OSError as exc:
                    self.error(d.child(os.fsencode(name)), exc)
                    continue
                if links > 1:
                    d.refs += 1
                    self.linked.append((d, name, d.dev, ino))
                    if len(self.linked) >= LINKED_BATCH:
                        flush_linked(self, d)
                    continue
            key = (d.dev, ino) if other_dev else ino
            if key in seen:
                unchanged += 1  # another link of an inode already handled here
                continue
            seen.add(key)
            if not journaled:
                changed += self.set_label(d, name)
                continue
            if group is None:
                group = []
                self.pending.append((d, group))
            group.append(name)
            records.append(d.record(ino, old, name))
        self.changed += changed
        self.unchanged += unchanged
        # Flushed only after the whole list: every name in it was read before
        # any write, so a flush in its middle (which forgets the inodes in
        # flight) would journal a later link of an inode a second time.
        if journaled and len(records) >= spec.batch_entries:
            self.flush(d)

    def set_label(self, d: OpenDir, name: str) -> int:
        """Write the target label on ``name`` in ``d`` (the current directory):
        1 when written, 0 when it failed (counted). The hot loops (``scan``
        without a journal, ``flush``) keep this inline."""
        try:
            os.setxattr(name, XATTR, self.spec.target, follow_symlinks=False)
            return 1
        except OSError as exc:
            self.error(d.child(os.fsencode(name)), exc)
            return 0

    def flush(self, current: OpenDir | None) -> None:
        """Journal the pending changes durably, then write them."""
        groups, dirs, records = self.pending, self.pending_dirs, self.records
        dir_labels = self.pending_dir_labels
        self.pending, self.pending_dirs, self.records, self.pending_dir_labels = [], [], [], []
        self.inflight.clear()
        if records:
            assert self.segment is not None
            self.segment.sync_through(self.segment.append(records))
            self.wait_until_journal_durable()
            target = self.spec.target
            setx = os.setxattr
            changed = 0
            for d, names in groups:
                os.fchdir(d.fd)
                for name in names:
                    try:
                        setx(name, XATTR, target, follow_symlinks=False)
                        changed += 1
                    except OSError as exc:
                        self.error(d.child(os.fsencode(name)), exc)
            for d in dir_labels:
                try:
                    setx(d.fd, XATTR, target)
                    changed += 1
                except OSError as exc:
                    self.error(d.rel, exc)
            self.changed += changed
        if current is not None:
            current.refs += 1
            dirs_keep = current
            os.fchdir(current.fd)
        else:
            dirs_keep = None
        for d in dirs:
            self.release(d)
        if dirs_keep is not None:
            # The directory being scanned stays held for the next batch.
            self.pending_dirs.append(dirs_keep)

    def summary(self) -> dict[str, object]:
        """What the parent adds up (sent with :mod:`marshal`)."""
        return {
            "visited": self.visited,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "skipped_mounts": self.skipped_mounts,
            "errors": self.errors.kept,
            "error_counts": self.errors.counts,
        }


__all__ = [
    "LINKED_BATCH",
    "PROGRESS",
    "SMALL_LEAF_BYTES",
    "Worker",
]
