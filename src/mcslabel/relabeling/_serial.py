"""The serial walk, in the calling thread: dry runs, small trees, ``workers=0``.

It lists directories and cuts chunks of entries, then checks, journals and
writes each chunk (the parallel walk is :mod:`mcslabel.relabeling._worker`).
Labels are read and written with :class:`~mcslabel.relabeling._xattrat.LabelIO`
relative to the directory fd.
"""

from __future__ import annotations

import os
import time

from mcslabel.relabeling import _xattrat
from mcslabel.relabeling._walking import (
    FS_ENCODING,
    O_DIR,
    SKIP,
    MountRules,
    OpenDir,
    WalkCounts,
    right_labels,
)
from mcslabel.relabeling.journal_writer import JournalWriter
from mcslabel.relabeling.results import ProgressCallback, RelabelProgress

# Records per journal batch: one fdatasync per batch keeps the journal's
# cost per file small. Batches also bound open directory fds.
BATCH_ENTRIES = 2048
BATCH_DIRS = 64

Item = tuple[OpenDir, bytes | None, int]  # dir, entry name (None: the dir itself), inode
Change = tuple[OpenDir, bytes | None, int, bytes | None]  # ... and the old label


class SerialWalk(WalkCounts):
    """One relabel's walk in the calling thread."""

    def __init__(
        self,
        *,
        root_fd: int,
        target: bytes,
        dry_run: bool,
        journal: JournalWriter | None,
        rules: MountRules,
        progress: ProgressCallback | None,
        use_xattrat: bool | None,
    ) -> None:
        super().__init__()
        self.root_fd = root_fd
        self.root_dev = rules.root_dev
        self.target = target
        self.right = right_labels(target)
        self.dry_run = dry_run
        self.journal = journal
        self.rules = rules
        self.mount_points = rules.points
        self.progress = progress
        # One reader for the whole walk: it runs in the calling thread only.
        self.label_io = _xattrat.LabelIO(use_xattrat=use_xattrat)
        self.setter = self.label_io.setter(target)
        self.stack: list[tuple[OpenDir, bytes]] = []
        self.chunk: list[Item] = []
        self.chunk_dirs: list[OpenDir] = []
        # Inodes queued for a write in this chunk: ino, or (dev, ino) off the root device.
        self.inflight: set[object] = set()
        self.multi_linked: set[tuple[int, int]] = set()
        self.open_fds: set[int] = set()  # closed by run() if the walk is interrupted
        self.next_progress = 0.0

    # -- bookkeeping ---------------------------------------------------------

    def release(self, d: OpenDir) -> None:
        d.refs -= 1
        if d.refs == 0 and d.fd != self.root_fd:
            self.open_fds.discard(d.fd)
            os.close(d.fd)

    def hold(self, d: OpenDir) -> None:
        d.refs += 1
        self.chunk_dirs.append(d)

    def report(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now >= self.next_progress:
            self.next_progress = now + 0.1
            self.progress(RelabelProgress(self.visited, self.changed, self.unchanged, self.failed))

    # -- walking ---------------------------------------------------------------

    def run(self) -> bool:
        """Walk everything under the root; True when the root may be labeled."""
        root = OpenDir(self.root_fd, b"", self.root_dev)
        try:
            self.list_dir(root, None)
            while self.stack:
                parent, name = self.stack.pop()
                self.enter(parent, name)
            self.submit()
        finally:
            # Empty unless an exception (Ctrl-C, a journal write) cut the walk short.
            for fd in self.open_fds:
                os.close(fd)
            self.open_fds.clear()
        return self.failed == 0

    def enter(self, parent: OpenDir, name: bytes) -> None:
        rel = parent.child(name)
        try:
            fd = os.open(name, O_DIR, dir_fd=parent.fd)
        except OSError as exc:
            # ELOOP/ENOTDIR: swapped for a symlink or a file since it was listed.
            self.error(rel, exc)
            return
        finally:
            self.release(parent)
        self.open_fds.add(fd)
        d = OpenDir(fd, rel, parent.dev)
        try:
            st = os.fstat(fd)
            d.dev = st.st_dev
            verdict = self.rules.verdict(rel, st)
            if verdict == SKIP:
                self.skipped_mounts += 1
                return
            if isinstance(verdict, str):
                self.mount_refused(rel, verdict)
                return
            self.list_dir(d, st.st_ino)
        finally:
            self.release(d)

    def list_dir(self, d: OpenDir, ino: int | None) -> None:
        """Queue every entry of ``d``, then ``d`` itself (unless it is the root)."""
        self.hold(d)
        chunk = self.chunk
        append = chunk.append
        n = 0
        try:
            with os.scandir(d.fd) as it:
                for entry in it:
                    name = entry.name.encode(FS_ENCODING, "surrogateescape")
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError as exc:
                        self.error(d.child(name), exc)
                        continue
                    if is_dir:
                        d.refs += 1
                        self.stack.append((d, name))
                        continue
                    n += 1
                    append((d, name, entry.inode()))
                    if len(chunk) >= BATCH_ENTRIES:
                        self.submit()
                        self.hold(d)
                        chunk = self.chunk
                        append = chunk.append
        except OSError as exc:
            self.error(d.rel, exc)
        if ino is not None:
            n += 1
            chunk.append((d, None, ino))
        self.visited += n
        if len(self.chunk_dirs) >= BATCH_DIRS:
            self.submit()
        self.report()

    def submit(self) -> None:
        chunk, dirs = self.chunk, self.chunk_dirs
        if not chunk and not dirs:
            return
        self.chunk, self.chunk_dirs = [], []
        try:
            if self.journal is None and not self.dry_run and not self.mount_points:
                self.check_and_write(chunk)
            else:
                changes = self.check(chunk)
                if changes and not self.dry_run:
                    self.write(changes)
        finally:
            for d in dirs:
                self.release(d)

    # -- checking, journaling, writing ----------------------------------------

    def check(self, chunk: list[Item]) -> list[Change]:
        get = self.label_io.get
        right = self.right
        careful = bool(self.mount_points) or self.dry_run
        changes = []
        unchanged = 0
        for d, name, ino in chunk:
            try:
                old = get(d.fd, name) if name is not None else _xattrat.get_fd(d.fd)
            except OSError as exc:
                self.error(d.child(name) if name is not None else d.rel, exc)
                continue
            if old in right:
                unchanged += 1
                continue
            if careful and name is not None and not self.keep(d, name):
                unchanged += 1
                continue
            changes.append((d, name, ino, old))
        if changes and not self.dry_run:
            # Another link of an inode already queued in this chunk: leave it to that write.
            kept = []
            root_dev, inflight = self.root_dev, self.inflight
            for item in changes:
                if item[1] is not None:
                    d, ino = item[0], item[2]
                    key: object = ino if d.dev == root_dev else (d.dev, ino)
                    if key in inflight:
                        unchanged += 1
                        continue
                    inflight.add(key)
                kept.append(item)
            changes = kept
        self.unchanged += unchanged
        if self.dry_run:
            self.changed += len(changes)
        return changes

    def check_and_write(self, chunk: list[Item]) -> int:
        """No journal to wait for: write each label right after reading it,
        while the inode is still hot in the CPU caches (measurably faster than
        reading a chunk, then writing it). A second link of an inode is read
        after the first link's write, so it is found right."""
        get, set_at, right = self.label_io.get, self.setter.set, self.right
        value = self.target
        changed = unchanged = 0
        for d, name, _ino in chunk:
            try:
                old = get(d.fd, name) if name is not None else _xattrat.get_fd(d.fd)
                if old in right:
                    unchanged += 1
                    continue
                if name is None:
                    os.setxattr(d.fd, _xattrat.XATTR, value)
                else:
                    set_at(d.fd, name)
                changed += 1
            except OSError as exc:
                self.error(d.child(name) if name is not None else d.rel, exc)
        self.changed += changed
        self.unchanged += unchanged
        return changed

    def keep(self, d: OpenDir, name: bytes) -> bool:
        """Slow path for trees with mount points inside, and for dry runs."""
        if self.mount_points and d.child(name) in self.mount_points:
            self.skipped_mounts += 1  # a file bind-mounted into the tree
            return False
        if self.dry_run:
            try:
                st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
            except OSError:
                return True
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in self.multi_linked:
                    return False
                self.multi_linked.add(key)
        return True

    def write(self, changes: list[Change]) -> None:
        # The write below is inline here and in check_and_write: both are the
        # serial walk's per-entry loops.
        if self.journal is not None:
            seq = self.journal.append(d.record(ino, old, name) for d, name, ino, old in changes)
            # Group commit: one fdatasync covers every chunk appended so far.
            self.journal.sync_through(seq)
        set_at, value = self.setter.set, self.target
        changed = 0
        for d, name, _ino, _old in changes:
            try:
                if name is None:
                    os.setxattr(d.fd, _xattrat.XATTR, value)
                else:
                    set_at(d.fd, name)
                changed += 1
            except OSError as exc:
                self.error(d.child(name) if name is not None else d.rel, exc)
        self.changed += changed
        self.inflight.clear()  # every queued inode is written (or failed) now


__all__ = [
    "BATCH_DIRS",
    "BATCH_ENTRIES",
    "SerialWalk",
]
