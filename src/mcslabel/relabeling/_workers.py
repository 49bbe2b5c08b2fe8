"""The parallel relabel: worker *processes*, each owning a share of the inodes.

Threads do not pay for this work (every 2-10 us label syscall hands the GIL
over), processes do. Every worker walks the whole tree itself, the same safe
way as the serial walk (directories opened with ``O_NOFOLLOW | O_DIRECTORY``
relative to their parent's fd, starting from a fresh open of the inherited
root fd, never re-resolving a path), and reads and writes the label of an
entry only when it owns the entry's inode: ``mix(inode) % workers``, the
inode coming free with ``readdir``. Listing costs about 1 us an entry, a
label read or write 6-10 us, so each worker does ``1/workers`` of the
expensive part. Owning by inode keeps every link of a hard-linked file in one
worker, which labels it once and journals its true old label.

A worker works with its current directory set to the directory it labels
(``fchdir``), so ``l{get,set}xattr(name)`` resolve one component inside the
pinned directory, like ``*xattrat`` with ``AT_SYMLINK_NOFOLLOW``, without the
ctypes call (measured 6.1 against 9.4 us a read). Changing the working
directory is fine in a worker process; the caller's process never does it.

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
Workers die with the parent (``PR_SET_PDEATHSIG``), and every one of them
keeps the journal's ``flock`` until it exits, so :func:`mcslabel.relabeling.engine.restore`
never runs while a label may still change.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import marshal
import os
import selectors
import signal
import stat
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from mcslabel.relabeling.journal import JournalWriter, escape, label_field

XATTR: Final = "security.selinux"
MIX: Final = 0x9E3779B1  # Fibonacci hashing: ext4 hands out inodes in runs
_O_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FS_ENCODING: Final = sys.getfilesystemencoding()
_PROGRESS: Final = struct.Struct("<4q")
_PR_SET_PDEATHSIG: Final = 1
_PROGRESS_EVERY: Final = 0.05
# An owned directory without subdirectories up to this size is read from a
# list of its names (a few thousand at most: memory stays flat).
SMALL_LEAF_BYTES: Final = 64 * 1024
# Multi-linked wrong entries per batch under the shared lock (each holds its directory open).
LINKED_BATCH: Final = 128
# File systems whose directories count their subdirectories in st_nlink (2 + n).
_NLINK_COUNTS_SUBDIRS: Final = frozenset({0xEF53, 0x58465342, 0x01021994})  # ext2-4, XFS, tmpfs

# How a worker treats the entries of one directory.
_BY_INODE: Final = 0  # every worker lists it; each labels the inodes it owns
_EVERY: Final = 1  # this worker owns the directory: it labels every entry

Counts = tuple[int, int, int, int]  # visited, changed, unchanged, failed
ErrorRecord = tuple[bytes, int, str]  # path relative to the root, errno, message


def owner(ino: int, workers: int) -> int:
    """The worker that labels inode ``ino``."""
    return ((ino * MIX) >> 16) % workers


def nlink_counts_subdirs(fd: int) -> bool:
    """True when the file system of ``fd`` keeps ``st_nlink == 2 + subdirectories``
    for directories (btrfs, overlayfs and others do not, or not always)."""
    try:
        fstatfs = ctypes.CDLL(None, use_errno=True).fstatfs
    except (OSError, AttributeError):
        return False
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first word
    if fstatfs(fd, buf) != 0:
        return False
    (f_type,) = struct.unpack_from("@l", buf, 0)
    return int(f_type) & 0xFFFFFFFF in _NLINK_COUNTS_SUBDIRS


class Spec:
    """What every worker needs; built in the parent before the fork."""

    def __init__(
        self,
        *,
        root_fd: int,
        root_dev: int,
        root_ino: int,
        target: bytes,
        one_file_system: bool,
        mount_points: dict[bytes, bytes],
        refused_mount: Callable[[bytes, os.stat_result], str | None],
        batch_entries: int,
        batch_dirs: int,
        max_errors: int,
        by_directory: bool = False,
        nlink_counts_subdirs: bool = False,
    ) -> None:
        self.root_fd = root_fd
        self.root_dev = root_dev
        self.root_ino = root_ino
        self.target = target
        self.one_file_system = one_file_system
        self.mount_points = mount_points
        self.refused_mount = refused_mount
        self.batch_entries = batch_entries
        self.batch_dirs = batch_dirs
        self.max_errors = max_errors
        self.by_directory = by_directory
        self.nlink_counts_subdirs = nlink_counts_subdirs
        # The lock that multi-linked entries are labeled under (a walk by directory);
        # a POSIX record lock, which is per process, on a file the fork shares.
        self.lock_fd = -1
        # Read end of the pipe that says the journal is durable (-1: nothing to wait for).
        self.go_fd = -1


class Totals:
    """The workers' results, summed."""

    def __init__(self) -> None:
        self.visited = self.changed = self.unchanged = self.failed = 0
        self.skipped_mounts = 0
        self.errors: list[ErrorRecord] = []
        self.error_counts: dict[str, int] = {}


class OpenDir:
    """An open directory of a walk (serial or worker); closed when nothing refers to it.

    ``dev`` is only tracked by the workers (0 where the walk does not need it).
    """

    __slots__ = ("dev", "fd", "prefix", "refs", "rel", "solo")

    def __init__(self, fd: int, rel: bytes, dev: int = 0) -> None:
        self.fd = fd
        self.rel = rel
        self.dev = dev
        self.refs = 1
        self.prefix: str | None = None
        # Walk by directory: everything below is this worker's alone (it appeared
        # where the other workers had already looked and found no subdirectory).
        self.solo = False

    def child(self, name: bytes) -> bytes:
        return name if not self.rel else self.rel + b"/" + name

    def escaped_child(self, name: bytes | None) -> str:
        """The journal spelling of ``name`` in this directory (``None``: the directory)."""
        if name is None:
            return escape(self.rel) if self.rel else "."
        if self.prefix is None:
            self.prefix = escape(self.rel) + "/" if self.rel else ""
        return self.prefix + escape(name)


def _journal_path(d: OpenDir, name: str | None) -> str:
    """The record's path; plain printable ASCII names (nearly all) skip the escaping."""
    if name is None:
        return d.escaped_child(None)
    if name.isascii() and name.isprintable() and "\\" not in name:
        prefix = d.prefix
        if prefix is None:
            prefix = d.prefix = escape(d.rel) + "/" if d.rel else ""
        return prefix + name
    return d.escaped_child(os.fsencode(name))


def _record(dev: int, ino: int, old: bytes | None, d: OpenDir, name: str | None) -> str:
    """One journal record (``name`` None: the directory ``d`` itself)."""
    return f"{dev}\t{ino}\t{label_field(old)}\t{_journal_path(d, name)}\n"


class _Worker:
    """One worker's walk (runs in the child process)."""

    def __init__(self, spec: Spec, k: int, n: int, segment: JournalWriter | None, out: int):
        self.spec = spec
        self.k = k
        self.n = n
        self.segment = segment
        self.out = out
        self.visited = self.changed = self.unchanged = self.failed = 0
        self.skipped_mounts = 0
        self.errors: list[ErrorRecord] = []
        self.error_counts: dict[str, int] = {}
        # (directory, name or None for the directory itself, device, inode, old label)
        # The batch to journal, then write: its records, the wrong names grouped
        # by directory, the wrong directories, and every directory it holds open.
        self.records: list[str] = []
        self.pending: list[tuple[OpenDir, list[str]]] = []
        self.pending_dir_labels: list[OpenDir] = []
        self.pending_dirs: list[OpenDir] = []
        self.inflight: set[Any] = set()
        # Multi-linked entries with a wrong label, for the shared lock (walk by directory).
        self.linked: list[tuple[OpenDir, str, int, int]] = []
        self.cleared = spec.go_fd < 0
        self.next_progress = 0.0

    def error(self, rel: bytes, exc: OSError) -> None:
        self.failed += 1
        code = exc.errno or 0
        key = os.strerror(code) if code else type(exc).__name__
        self.error_counts[key] = self.error_counts.get(key, 0) + 1
        if len(self.errors) < self.spec.max_errors:
            self.errors.append((rel or b".", code, exc.strerror or str(exc)))

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
            self.next_progress = now + _PROGRESS_EVERY
            counts = (self.visited, self.changed, self.unchanged, self.failed)
            os.write(self.out, b"P" + _PROGRESS.pack(*counts))

    def run(self) -> None:
        spec = self.spec
        fd = os.open(".", _O_DIR, dir_fd=spec.root_fd)  # our own read offset
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (spec.root_dev, spec.root_ino):
            raise OSError(errno.ESTALE, "the root changed under the relabel")
        root = OpenDir(fd, b"", st.st_dev)
        stack: list[tuple[OpenDir, str, int]] = []
        self.scan(root, stack, _BY_INODE)
        self.release(root)
        while stack:
            parent, name, ino = stack.pop()
            self.enter(parent, name, ino, stack)
        self.flush(None)
        self.flush_linked(None)
        self.send_progress(force=True)
        if self.segment is not None:
            self.segment.finish({"changed": self.changed, "failed": self.failed})

    def enter(
        self, parent: OpenDir, name: str, ino: int, stack: list[tuple[OpenDir, str, int]]
    ) -> None:
        n, k = self.n, self.k
        rel = parent.child(name.encode(_FS_ENCODING, "surrogateescape"))
        solo = parent.solo
        try:
            fd = os.open(name, _O_DIR, dir_fd=parent.fd)
        except OSError as exc:
            # ELOOP/ENOTDIR: swapped for a symlink or a file since it was listed.
            if solo or owner(ino, n) == k:
                self.error(rel, exc)
            return
        finally:
            self.release(parent)
        d = OpenDir(fd, rel, 0)
        d.solo = solo
        try:
            st = os.fstat(fd)
            d.dev = st.st_dev
            own = solo or owner(st.st_ino, n) == k
            spec = self.spec
            crossing = st.st_dev != spec.root_dev or rel in spec.mount_points
            if crossing and spec.one_file_system:
                self.skipped_mounts += own
                return
            if crossing and (why := spec.refused_mount(rel, st)):
                if own:
                    self.error(rel, PermissionError(errno.EPERM, f"a mount of {why}; not entered"))
                return
            # Decided from the directory's inode only, never from its size or
            # anything else that may change while the workers walk: every worker
            # must agree on who reads which entry, or some are read by nobody.
            leaf = spec.nlink_counts_subdirs and st.st_nlink == 2 and st.st_dev == spec.root_dev
            if not spec.by_directory:
                self.scan(d, stack, _BY_INODE)
            elif own and leaf and st.st_size <= SMALL_LEAF_BYTES and not spec.mount_points:
                self.scan_leaf(d, stack)
            elif own:
                self.scan(d, stack, _EVERY)
            elif not leaf:
                self.find_subdirs(d, stack)
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
            self.records.append(_record(d.dev, ino, old, d, None))
            return
        try:
            os.setxattr(d.fd, XATTR, target)
            self.changed += 1
        except OSError as exc:
            self.error(d.rel, exc)

    def scan_leaf(self, d: OpenDir, stack: list[tuple[OpenDir, str, int]]) -> None:
        """Read every label of an owned directory without subdirectories (walk
        by directory). ``listdir`` names are all it takes, no ``d_type`` or
        inode: 5% less time for a second relabel (measured). A wrong entry is
        ``lstat``\\ ed for its inode, which fix() needs (with its links) anyway."""
        target = self.spec.target
        right = (target, target[:-1])
        getx = os.getxattr
        try:
            names = os.listdir(d.fd)
            # A subdirectory made or moved in since st_nlink was read: read it the
            # long way, and everything below it alone (the other workers saw no
            # subdirectory here and will not come).
            if os.fstat(d.fd).st_nlink != 2:
                d.solo = True
                self.scan(d, stack, _EVERY)
                return
        except OSError as exc:
            self.error(d.rel, exc)
            return
        self.begin_scan(d)
        wrong: list[tuple[str, int, bytes | None]] = []
        visited = unchanged = 0
        for name in names:
            visited += 1
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
            try:
                st = os.lstat(name)
            except OSError as exc:
                self.error(d.child(os.fsencode(name)), exc)
                continue
            if stat.S_ISDIR(st.st_mode):  # moved in and another out meanwhile: walk it too
                visited -= 1
                d.solo = True
                d.refs += 1
                stack.append((d, name, st.st_ino))
                continue
            wrong.append((name, st.st_ino, old))
        if wrong:
            self.fix(d, wrong)
        self.end_scan(visited, unchanged, 0)

    def find_subdirs(self, d: OpenDir, stack: list[tuple[OpenDir, str, int]]) -> None:
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

    def scan(self, d: OpenDir, stack: list[tuple[OpenDir, str, int]], mode: int) -> None:
        """Read the labels of the entries of ``d`` this worker owns (``mode``),
        queue its subdirectories, then fix the wrong ones (a chunk at a time).

        Without a journal, in the inode split (a first relabel), each wrong
        label is written right after its read instead, while the inode is hot
        (6% less CPU than writing the directory's wrong ones after, measured);
        a second link of an inode is then read after the first one's write,
        so it is found right.
        """
        n, k = self.n, self.k
        spec = self.spec
        target = spec.target
        right = (target, target[:-1])  # a label stored without its NUL is right too
        getx = os.getxattr
        careful = bool(spec.mount_points)
        every = mode == _EVERY
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
    # a call per entry would cost ~0.1 us of the ~5 us an entry takes.

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
                        self.flush_linked(d)
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
            records.append(_record(d.dev, ino, old, d, name))
            if len(records) >= spec.batch_entries:
                self.flush(d)
                records, seen = self.records, self.inflight
                group = None
        self.changed += changed
        self.unchanged += unchanged

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

    def flush_linked(self, current: OpenDir | None) -> None:
        """Label the queued multi-linked entries under the workers' shared lock.

        Each is read again under the lock: another worker (or another link in
        this batch) may have labeled the inode since, and then it is right.
        With a journal, the records are synced before any of these writes.
        """
        items, self.linked = self.linked, []
        if not items:
            return
        target = self.spec.target
        right = (target, target[:-1])
        getx = os.getxattr
        fcntl.lockf(self.spec.lock_fd, fcntl.LOCK_EX)
        try:
            seen: set[tuple[int, int]] = set()
            todo: list[tuple[OpenDir, str, int, int, bytes | None]] = []
            cwd: OpenDir | None = None
            for d, name, dev, ino in items:
                if (dev, ino) in seen:
                    self.unchanged += 1  # another link of an inode in this batch
                    continue
                seen.add((dev, ino))
                if d is not cwd:
                    os.fchdir(d.fd)
                    cwd = d
                try:
                    old: bytes | None = getx(name, XATTR, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno != errno.ENODATA:
                        self.error(d.child(os.fsencode(name)), exc)
                        continue
                    old = None
                if old in right:
                    self.unchanged += 1  # labeled by another worker since
                    continue
                todo.append((d, name, dev, ino, old))
            if todo and self.segment is not None:
                seq = self.segment.append(
                    _record(dev, ino, old, d, name) for d, name, dev, ino, old in todo
                )
                self.segment.sync_through(seq)
                self.wait_until_journal_durable()
            for d, name, _dev, _ino, _old in todo:
                if d is not cwd:
                    os.fchdir(d.fd)
                    cwd = d
                self.changed += self.set_label(d, name)
        finally:
            fcntl.lockf(self.spec.lock_fd, fcntl.LOCK_UN)
            for d, *_ in items:
                self.release(d)
        if current is not None:
            os.fchdir(current.fd)

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

    def summary(self) -> bytes:
        return marshal.dumps(
            {
                "visited": self.visited,
                "changed": self.changed,
                "unchanged": self.unchanged,
                "failed": self.failed,
                "skipped_mounts": self.skipped_mounts,
                "errors": self.errors,
                "error_counts": self.error_counts,
            }
        )


_prctl: Any = None


def _load_prctl() -> Any:
    # Looked up before the fork: dlsym in a child of a threaded parent could
    # meet a lock another thread held at the fork.
    global _prctl
    if _prctl is None:
        try:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False
    return _prctl


def _child(
    spec: Spec,
    k: int,
    n: int,
    segment: JournalWriter | None,
    out: int,
    close: list[int],
    parent: int,
    mask: set[int | signal.Signals],
) -> None:
    """Run worker ``k`` and leave the process; never returns to the caller."""
    code = 70
    try:
        prctl = _prctl
        if prctl:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(code)  # the parent died before the death signal was armed
        # ValueError off the main thread: Ctrl-C then ends the worker through Python.
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # blocked over the fork
        for fd in close:
            os.close(fd)
        worker = _Worker(spec, k, n, segment, out)
        worker.run()
        payload = worker.summary()
        os.write(out, b"F" + struct.pack("<I", len(payload)))
        view = memoryview(payload)
        while view:
            view = view[os.write(out, view) :]
        code = 0
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"mcslabel relabel worker {k}: {exc!r}\n".encode())
    finally:
        os._exit(code)


def run(
    spec: Spec,
    workers: int,
    segments: list[JournalWriter] | None,
    progress: Callable[[Counts], None] | None,
    journal_ready: Callable[[], None] | None = None,
) -> Totals:
    """Fork ``workers`` processes, wait for all of them, return their summed results.

    A worker that dies or fails counts as a failure (``errno`` 0, path ``.``),
    so the root is then not labeled; its journal segment keeps what it did.
    ``progress`` gets the summed counts about ten times a second.
    ``journal_ready`` (a journal created with ``deferred=True``) runs in the
    parent once the workers are started; they read labels meanwhile and
    change none before it returns.
    """
    _load_prctl()
    me = os.getpid()
    pipes: list[tuple[int, int]] = []
    unclosed: set[int] = set()
    seg_fds = [s.fileno() for s in segments] if segments else []
    pids: dict[int, int] = {}
    totals = Totals()
    if spec.by_directory:
        spec.lock_fd = os.memfd_create("mcslabel-relabel-lock", os.MFD_CLOEXEC)
        unclosed.add(spec.lock_fd)
    go_w = -1
    if journal_ready is not None:
        spec.go_fd, go_w = os.pipe2(os.O_CLOEXEC)
        unclosed.update((spec.go_fd, go_w))
    try:
        for _ in range(workers):
            pipes.append(os.pipe2(os.O_CLOEXEC))
            unclosed.update(pipes[-1])
        for k in range(workers):
            close = [fd for i, (r, w) in enumerate(pipes) for fd in (r, w) if i != k or fd == r]
            close += [fd for i, fd in enumerate(seg_fds) if i != k]
            if go_w >= 0:
                close.append(go_w)  # or a failed journal would never reach EOF in the others
            segment = segments[k] if segments else None
            # Flush Python's buffers so the child cannot write them a second time.
            sys.stdout.flush()
            sys.stderr.flush()
            # SIGINT stays blocked across the fork: a Ctrl-C landing in the child
            # before _child's try would send a copy of the caller up its stack.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                pid = os.fork()
                if pid == 0:
                    _child(spec, k, workers, segment, pipes[k][1], close, me, mask)
                pids[k] = pid
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for _, w in pipes:
            os.close(w)
            unclosed.discard(w)
        if journal_ready is not None:
            journal_ready()  # raising kills the workers below, before any label changed
            os.write(go_w, b"1" * workers)
        _collect(pipes, pids, totals, progress)
    except BaseException:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise
    finally:
        for fd in unclosed:
            os.close(fd)
        for k, pid in list(pids.items()):  # left only when something went wrong
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            del pids[k]
    return totals


def _collect(
    pipes: list[tuple[int, int]],
    pids: dict[int, int],
    totals: Totals,
    progress: Callable[[Counts], None] | None,
) -> None:
    buffers = {r: bytearray() for r, _ in pipes}
    index = {r: k for k, (r, _) in enumerate(pipes)}
    latest: dict[int, Counts] = {}
    finals: dict[int, dict[str, Any]] = {}
    sel = selectors.DefaultSelector()
    open_pipes = len(buffers)
    next_report = 0.0
    try:
        for r in buffers:
            sel.register(r, selectors.EVENT_READ)
        while open_pipes:
            for key, _ in sel.select(timeout=0.1):
                r = int(key.fd)
                data = os.read(r, 65536)
                if not data:
                    sel.unregister(r)
                    open_pipes -= 1
                    continue
                buf = buffers[r]
                buf += data
                _parse(buf, index[r], latest, finals)
            now = time.monotonic()
            if progress is not None and latest and now >= next_report:
                next_report = now + 0.1
                progress(_sum(latest.values()))
    finally:
        sel.close()
    for k in list(pids):
        # Forget the pid only once reaped: an interrupted wait leaves it to run()'s cleanup.
        _, status = os.waitpid(pids[k], 0)
        del pids[k]
        final = finals.get(k)
        if final is None or status != 0:
            if os.WIFSIGNALED(status):
                why = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
            else:
                why = f"exit status {os.waitstatus_to_exitcode(status)}"
            totals.failed += 1
            totals.error_counts["worker died"] = totals.error_counts.get("worker died", 0) + 1
            totals.errors.insert(0, (b".", 0, f"relabel worker {k} {why}"))
            counts = latest.get(k, (0, 0, 0, 0))
            final = final or {
                "visited": counts[0],
                "changed": counts[1],
                "unchanged": counts[2],
                "failed": counts[3],
            }
        totals.visited += final.get("visited", 0)
        totals.changed += final.get("changed", 0)
        totals.unchanged += final.get("unchanged", 0)
        totals.failed += final.get("failed", 0)
        totals.skipped_mounts += final.get("skipped_mounts", 0)
        totals.errors.extend(final.get("errors", []))
        for name, count in final.get("error_counts", {}).items():
            totals.error_counts[name] = totals.error_counts.get(name, 0) + count


def _parse(
    buf: bytearray, k: int, latest: dict[int, Counts], finals: dict[int, dict[str, Any]]
) -> None:
    while buf:
        if buf[0:1] == b"P":
            if len(buf) < 1 + _PROGRESS.size:
                return
            latest[k] = _PROGRESS.unpack_from(buf, 1)
            del buf[: 1 + _PROGRESS.size]
        elif buf[0:1] == b"F":
            if len(buf) < 5:
                return
            (size,) = struct.unpack_from("<I", buf, 1)
            if len(buf) < 5 + size:
                return
            finals[k] = marshal.loads(bytes(buf[5 : 5 + size]))
            del buf[: 5 + size]
        else:
            raise RuntimeError(f"relabel worker {k} sent garbage")


def _sum(counts: Any) -> Counts:
    v = c = u = f = 0
    for a, b, x, y in counts:
        v, c, u, f = v + a, c + b, u + x, f + y
    return v, c, u, f


__all__ = [
    "LINKED_BATCH",
    "MIX",
    "SMALL_LEAF_BYTES",
    "XATTR",
    "OpenDir",
    "Spec",
    "Totals",
    "nlink_counts_subdirs",
    "owner",
    "run",
]
