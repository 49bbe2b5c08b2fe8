"""Relabel a container volume (``:Z`` / ``:z``), safely, journaled, and undo it.

:func:`relabel` gives every file under a directory one SELinux file context:

- ``level="s0:c1,c2"`` (podman's ``:Z``): the policy's container file
  context from ``lxc_contexts`` (``ro_file`` with ``read_only=True``) at that
  level, private to one container;
- ``shared=True`` (``:z``): the same type at plain ``s0``;
- ``context="user:role:type:level"``: exactly that context.

Safety by construction: the path is canonicalised and checked against the
refused list (:mod:`mcslabel.relabeling.refusals`); the walk holds directory file
descriptors and labels every entry relative to its parent's fd without
following symlinks, so a rename or symlink swap inside the tree cannot
redirect it outside; it does not cross mount points unless asked; an entry
whose label is already right is not written (no ctime change); the top
directory is labeled last and only when everything else succeeded, so a
correct top label means the whole tree is done. With ``journal=PATH`` every
old label is on disk before it is changed and :func:`restore` undoes the
relabel, even after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs

from mcslabel.context import Context
from mcslabel.errors import InvalidContext, InvalidInput, JournalError, RelabelError
from mcslabel.errors import show_input as _q
from mcslabel.level import Level
from mcslabel.relabeling import _workers as _relabel_procs
from mcslabel.relabeling import _xattrat
from mcslabel.relabeling.journal import (
    JournalHeader,
    JournalWriter,
    format_record,
    label_field,
    read_journal,
    wait_unlocked,
)
from mcslabel.relabeling.refusals import RefusedPaths, check_relabel_allowed
from mcslabel.verification.policy import PolicyRoot

# Records per journal batch: one fdatasync (~0.4 ms here) per batch keeps the
# journal's cost under 1 us per file. Batches also bound open directory fds.
BATCH_ENTRIES = 2048
BATCH_DIRS = 64
MAX_ERRORS_KEPT = 100

_FS_ENCODING = sys.getfilesystemencoding()
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


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


@attrs.frozen
class RelabelResult:
    """What a relabel did.

    ``changed`` counts inodes written (or that would be, in a dry run);
    ``unchanged`` counts entries whose label was already right, including
    further hard links of an inode already handled. File content is never
    opened or read. ``complete`` is true when the top directory got its
    label (no entry failed); ``errors`` keeps the first :data:`MAX_ERRORS_KEPT` failures and
    ``error_counts`` counts all of them by errno name.
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


ProgressCallback = Callable[[RelabelProgress], None]


def target_context(
    *,
    level: Level | str | None = None,
    shared: bool = False,
    context: Context | str | None = None,
    file_type: str | None = None,
    read_only: bool = False,
    policy_root: PolicyRoot | str | os.PathLike[str] | None = None,
) -> Context:
    """The file context a relabel writes (see :func:`relabel` for the rules)."""
    chosen = [n for n, v in (("level", level), ("context", context)) if v is not None]
    if shared:
        chosen.append("shared")
    if len(chosen) != 1:
        raise InvalidInput(
            "give exactly one of level (:Z), shared (:z) or context"
            + (f"; got {', '.join(chosen)}" if chosen else "")
        )
    if context is not None:
        if read_only:
            raise InvalidInput("read_only picks the policy's ro_file type; not with a context")
        ctx = context if isinstance(context, Context) else Context.parse(context)
    else:
        if isinstance(policy_root, PolicyRoot):
            root = policy_root
        elif policy_root is None:
            root = PolicyRoot.installed()
        else:
            root = PolicyRoot.at(policy_root)
        contexts = root.container_contexts()
        base = contexts.read_only_file if read_only else contexts.file
        if shared:
            lvl = Level(0)
        elif isinstance(level, Level):
            lvl = level
        else:
            assert level is not None
            lvl = Level.parse(level)
        ctx = base.with_level(lvl)
    if file_type is not None:
        try:
            ctx = ctx.with_type(file_type)
        except InvalidContext as exc:
            raise InvalidContext(f"file_type {_q(file_type)}: {exc}") from exc
    if ctx.level is None:
        raise InvalidContext(f"context {_q(str(ctx))} has no level; MCS file labels need one")
    return ctx


_Dir = _relabel_procs.OpenDir
_Item = tuple[_Dir, bytes | None, int]  # dir, entry name (None: the dir itself), inode


class _Walk:
    """The serial walk (calling thread): lists directories and cuts chunks of
    entries, then checks, journals and writes each chunk (dry runs, small
    trees, ``workers=0``; the parallel walk is :mod:`mcslabel.relabeling._workers`)."""

    def __init__(
        self,
        *,
        root_fd: int,
        root_dev: int,
        target: bytes,
        dry_run: bool,
        journal: JournalWriter | None,
        one_file_system: bool,
        mount_points: dict[bytes, bytes],
        refused: RefusedPaths,
        progress: ProgressCallback | None,
        use_xattrat: bool | None,
    ) -> None:
        self.root_fd = root_fd
        self.root_dev = root_dev
        self.target = target
        # A label stored without the trailing NUL is right too.
        self.right = (target, target[:-1])
        self.dry_run = dry_run
        self.journal = journal
        self.one_file_system = one_file_system
        self.mount_points = mount_points
        self.refused = refused
        self.progress = progress
        # One reader for the whole walk: it runs in the calling thread only
        # (parallel relabels use worker processes, _relabel_procs).
        self.label_io = _xattrat.LabelIO(use_xattrat=use_xattrat)
        self.setter = self.label_io.setter(target)
        self.stack: list[tuple[_Dir, bytes]] = []
        self.chunk: list[_Item] = []
        self.chunk_dirs: list[_Dir] = []
        self.inflight: set[int] = set()
        self.multi_linked: set[tuple[int, int]] = set()
        self.open_fds: set[int] = set()  # closed by run() if the walk is interrupted
        self.visited = 0
        self.changed = 0
        self.unchanged = 0
        self.failed = 0
        self.skipped_mounts = 0
        self.errors: list[FileError] = []
        self.error_counts: Counter[str] = Counter()
        self.next_progress = 0.0

    # -- bookkeeping ---------------------------------------------------------

    def error(self, rel: bytes, exc: OSError) -> None:
        self.failed += 1
        code = exc.errno or 0
        self.error_counts[os.strerror(code) if code else type(exc).__name__] += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(FileError(os.fsdecode(rel or b"."), code, exc.strerror or str(exc)))

    def release(self, d: _Dir) -> None:
        d.refs -= 1
        if d.refs == 0 and d.fd != self.root_fd:
            self.open_fds.discard(d.fd)
            os.close(d.fd)

    def hold(self, d: _Dir) -> None:
        d.refs += 1
        self.chunk_dirs.append(d)

    def report(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now >= self.next_progress:
            self.next_progress = now + 0.1
            self.progress(RelabelProgress(self.visited, self.changed, self.unchanged, self.failed))

    # -- walking (calling thread) ---------------------------------------------

    def run(self) -> bool:
        """Walk everything under the root; True when the root may be labeled."""
        root = _Dir(self.root_fd, b"")
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

    def enter(self, parent: _Dir, name: bytes) -> None:
        rel = parent.child(name)
        try:
            fd = os.open(name, _O_DIR, dir_fd=parent.fd)
        except OSError as exc:
            # ELOOP/ENOTDIR: swapped for a symlink or a file since it was listed.
            self.error(rel, exc)
            return
        finally:
            self.release(parent)
        self.open_fds.add(fd)
        d = _Dir(fd, rel)
        try:
            st = os.fstat(fd)
            crossing = st.st_dev != self.root_dev or rel in self.mount_points
            if crossing and self.one_file_system:
                self.skipped_mounts += 1
                return
            if crossing and (why := self.refused_mount(rel, st)):
                self.error(rel, PermissionError(errno.EPERM, f"a mount of {why}; not entered"))
                return
            self.list_dir(d, st.st_ino)
        finally:
            self.release(d)

    def refused_mount(self, rel: bytes, st: os.stat_result) -> str | None:
        """Why a mount met with ``one_file_system=False`` must not be entered."""
        why = self.refused.identity_reason((st.st_dev, st.st_ino))
        if why is not None:
            return why
        source = self.mount_points.get(rel)
        if source is not None and st.st_dev == os.stat("/").st_dev:
            # A bind mount from the root file system: its source is a host path.
            real = os.fsdecode(source)
            return self.refused.reason(real, None)
        return None

    def list_dir(self, d: _Dir, ino: int | None) -> None:
        """Queue every entry of ``d``, then ``d`` itself (unless it is the root)."""
        self.hold(d)
        chunk = self.chunk
        append = chunk.append
        n = 0
        try:
            with os.scandir(d.fd) as it:
                for entry in it:
                    name = entry.name.encode(_FS_ENCODING, "surrogateescape")
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
        self.work(chunk, dirs)

    # -- checking, journaling, writing ----------------------------------------

    def work(self, chunk: list[_Item], dirs: list[_Dir]) -> None:
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

    def check(self, chunk: list[_Item]) -> list[tuple[_Dir, bytes | None, int, bytes | None]]:
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
            for item in changes:
                if item[1] is not None:
                    if item[2] in self.inflight:
                        unchanged += 1
                        continue
                    self.inflight.add(item[2])
                kept.append(item)
            changes = kept
        self.unchanged += unchanged
        if self.dry_run:
            self.changed += len(changes)
        return changes

    def check_and_write(self, chunk: list[_Item]) -> int:
        """No journal to wait for: write each label right after reading it,
        while the inode is still hot in the CPU caches (a read then write of
        one entry measured 14 us against 8 + 10 us apart). A second link of an
        inode is read after the first link's write, so it is found right."""
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

    def keep(self, d: _Dir, name: bytes) -> bool:
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

    def write(self, changes: list[tuple[_Dir, bytes | None, int, bytes | None]]) -> None:
        if self.journal is not None:
            dev = self.root_dev
            seq = self.journal.append(
                f"{dev}\t{ino}\t{label_field(old)}\t{d.escaped_child(name)}\n"
                for d, name, ino, old in changes
            )
            # Group commit: one fdatasync covers every chunk appended so far.
            self.journal.sync_through(seq)
        set_at, value, inflight = self.setter.set, self.target, self.inflight
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
        for _d, name, ino, _old in changes:
            if name is not None:
                inflight.discard(ino)


def _mount_points_under(root: str) -> dict[bytes, bytes]:
    """Mount points strictly inside ``root``, relative to it, each with the
    directory of its file system it shows (mountinfo's "root" field: for a
    bind mount of ``/etc`` from the root file system, ``/etc``)."""
    prefix = os.fsencode(root.rstrip("/") + "/")
    found: dict[bytes, bytes] = {}
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            for line in fh:
                fields = line.split(b" ")
                if len(fields) < 5:
                    continue
                point = _unoctal(fields[4])
                if point.startswith(prefix):
                    found[point[len(prefix) :]] = _unoctal(fields[3])
    except OSError:
        pass
    return found


def _unoctal(raw: bytes) -> bytes:
    # mountinfo writes space, tab, newline and backslash as \ooo.
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 3 < len(raw) + 1 and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


# Below this many entries the walk stays in the calling process: forking and
# every worker listing the tree again cost more than they save.
PARALLEL_MIN_ENTRIES = 4096
MAX_DEFAULT_WORKERS = 4


def _default_workers(root_fd: int) -> int:
    """Worker processes for a relabel: one per usable core (at most
    :data:`MAX_DEFAULT_WORKERS`) for a tree of at least
    :data:`PARALLEL_MIN_ENTRIES` entries, else none (measured in
    benchmarks/bench_relabel.py; threads never paid, see docs/performance.md)."""
    cores = len(os.sched_getaffinity(0))
    if cores < 2 or _count_entries(root_fd, PARALLEL_MIN_ENTRIES) < PARALLEL_MIN_ENTRIES:
        return 0
    return min(cores, MAX_DEFAULT_WORKERS)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold signal handlers (Ctrl-C...) back for a few syscalls.

    A handler that raises right after ``os.open`` returns, before its result
    is stored, would leak the fd; blocked signals are delivered on exit instead.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _count_entries(root_fd: int, limit: int) -> int:
    """Entries under ``root_fd``, counted up to ``limit`` (names only: cheap).

    Subdirectories are opened one at a time, when their turn comes: a root
    with thousands of subdirectories costs one listing, not thousands of opens.
    """
    seen = 0
    stack: list[tuple[int, list[str]]] = []
    fd = os.open(".", _O_DIR, dir_fd=root_fd)
    try:
        while True:
            subdirs: list[str] = []
            with contextlib.suppress(OSError), os.scandir(fd) as it:
                for entry in it:
                    seen += 1
                    if seen >= limit:
                        return seen
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry.name)
            stack.append((fd, subdirs))
            fd = -1
            while stack and fd < 0:
                parent, names = stack[-1]
                if not names:
                    os.close(parent)
                    stack.pop()
                    continue
                with contextlib.suppress(OSError):
                    fd = os.open(names.pop(), _O_DIR, dir_fd=parent)
            if fd < 0:
                return seen
    finally:
        if fd >= 0:
            os.close(fd)
        for parent, _ in stack:
            os.close(parent)


def relabel(
    path: str | os.PathLike[str],
    *,
    level: Level | str | None = None,
    shared: bool = False,
    context: Context | str | None = None,
    file_type: str | None = None,
    read_only: bool = False,
    dry_run: bool = False,
    journal: str | os.PathLike[str] | None = None,
    one_file_system: bool = True,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    policy_root: PolicyRoot | str | os.PathLike[str] | None = None,
    refuse: Iterable[str | os.PathLike[str]] = (),
    use_xattrat: bool | None = None,
) -> RelabelResult:
    """Give every file under ``path`` one SELinux file context.

    Exactly one of ``level`` (private, ``:Z``), ``shared`` (``:z``) or
    ``context`` picks the label; ``file_type`` replaces its type and
    ``read_only`` picks ``lxc_contexts``' ``ro_file``. Container contexts
    come from ``policy_root`` (default: the installed policy).

    ``journal`` names a new file (never overwritten) that records every
    old label before it changes; pass it to :func:`restore` to undo.
    ``workers`` is the number of worker *processes* (forked; each walks the
    whole tree and labels the inodes it owns, see
    :mod:`mcslabel.relabeling._workers`); 0 keeps everything in the calling
    thread. The default is one per usable core (at most
    :data:`MAX_DEFAULT_WORKERS`) for trees of at least
    :data:`PARALLEL_MIN_ENTRIES` entries and 0 for smaller ones and dry runs.
    ``progress`` is called in the calling thread about ten times a second.
    ``refuse`` adds paths to the refused list. ``use_xattrat=False``
    forces the procfs fallback (tests).

    Raises :class:`~mcslabel.errors.RefusedPath` for a refused path,
    :class:`~mcslabel.errors.InvalidInput` for a bad label and
    :class:`~mcslabel.errors.RelabelError` when the root cannot be opened.
    Per-file failures do not raise: they are counted in the result, and
    the top directory then keeps its old label.
    """
    started = time.monotonic()
    ctx = target_context(
        level=level,
        shared=shared,
        context=context,
        file_type=file_type,
        read_only=read_only,
        policy_root=policy_root,
    )
    target = str(ctx).encode("ascii") + b"\0"
    refused = RefusedPaths(refuse)
    root = check_relabel_allowed(path, refused=refused)
    if journal is not None and Path(os.path.realpath(journal)).is_relative_to(root):
        # Inside the volume the container could rewrite its own undo record.
        raise InvalidInput(f"journal {_q(os.fspath(journal))} must not be inside {root}")
    if workers is not None and workers < 0:
        raise InvalidInput(f"workers must be >= 0, got {workers}")
    writer: JournalWriter | None = None
    segments: list[JournalWriter] = []
    root_fd = -1
    try:
        # Signals wait until each fd is stored where the finally below closes it.
        with _signals_deferred():
            try:
                root_fd = os.open(root, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise RelabelError(f"cannot open {root}: {exc.strerror}") from exc
            st = os.fstat(root_fd)
            if stat.S_ISDIR(st.st_mode):
                try:
                    dir_fd = os.open(root, _O_DIR)
                except OSError as exc:
                    raise RelabelError(f"cannot open {root}: {exc.strerror}") from exc
                path_fd, root_fd = root_fd, dir_fd
                os.close(path_fd)
        if stat.S_ISDIR(st.st_mode):
            st2 = os.fstat(root_fd)
            if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
                raise RelabelError(f"{root} was replaced while opening it")
        # The fd, not the name, is what gets labeled: check what it really is.
        check_relabel_allowed(os.readlink(f"/proc/self/fd/{root_fd}"), refused=refused)
        is_dir = stat.S_ISDIR(st.st_mode)
        if not is_dir or dry_run:
            workers = 0
        elif workers is None:
            workers = _default_workers(root_fd)
        if journal is not None and not dry_run:
            header = JournalHeader(
                root=str(root),
                dev=st.st_dev,
                ino=st.st_ino,
                target=str(ctx),
                started=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            if workers:
                writer, segments = JournalWriter.with_segments(
                    journal, header, workers, deferred=True
                )
            else:
                writer = JournalWriter(journal, header)
        walk = _Walk(
            root_fd=root_fd,
            root_dev=st.st_dev,
            target=target,
            dry_run=dry_run,
            journal=writer,
            one_file_system=one_file_system,
            refused=refused,
            mount_points=_mount_points_under(str(root)) if is_dir else {},
            progress=progress,
            use_xattrat=use_xattrat,
        )
        if workers:
            # Set once complete() has returned, just before the workers are told
            # to write: an interrupt before then discards the journal (durable or
            # not, no label changed under it), so its name stays free.
            durable: list[bool] = []

            def journal_ready() -> None:
                assert writer is not None
                writer.complete()
                durable.append(True)

            try:
                complete = _run_parallel(
                    walk, st, workers, segments, journal_ready if writer is not None else None
                )
            except BaseException:
                if writer is not None and not durable:
                    writer.discard()  # no worker got past its first read batch: nothing changed
                raise
        else:
            complete = walk.run() if is_dir else True
        complete = complete and _label_root(walk, root_fd, st, writer, dry_run)
        walk.report(force=True)
        if writer is not None:
            writer.finish({"changed": walk.changed, "failed": walk.failed, "complete": complete})
    finally:
        for seg in segments:
            seg.close()
        if writer is not None:
            writer.close()
        if root_fd >= 0:
            os.close(root_fd)
    return RelabelResult(
        root=root,
        context=ctx,
        changed=walk.changed,
        unchanged=walk.unchanged,
        failed=walk.failed,
        skipped_mounts=walk.skipped_mounts,
        errors=tuple(walk.errors),
        error_counts=MappingProxyType(dict(walk.error_counts)),
        duration=time.monotonic() - started,
        dry_run=dry_run,
        complete=complete,
        journal=None if writer is None else writer.path,
    )


def _run_parallel(
    walk: _Walk,
    st: os.stat_result,
    workers: int,
    segments: list[JournalWriter],
    journal_ready: Callable[[], None] | None = None,
) -> bool:
    """Relabel everything below the root in ``workers`` processes; True when
    every one of them finished without a failure.

    A root already labeled right means the last relabel to this label most
    likely finished: the workers then share the tree by directory, which
    lists each entry once instead of once per worker (see
    :mod:`mcslabel.relabeling._workers`); otherwise they share it by inode.
    """
    try:
        # One worker shares nothing: it would only pay the walk's lstat of wrong labels.
        by_directory = workers > 1 and _xattrat.get_fd(walk.root_fd) in walk.right
    except OSError:
        by_directory = False
    spec = _relabel_procs.Spec(
        root_fd=walk.root_fd,
        root_dev=st.st_dev,
        root_ino=st.st_ino,
        target=walk.target,
        one_file_system=walk.one_file_system,
        mount_points=walk.mount_points,
        refused_mount=walk.refused_mount,
        batch_entries=BATCH_ENTRIES,
        batch_dirs=BATCH_DIRS,
        max_errors=MAX_ERRORS_KEPT,
        by_directory=by_directory,
        nlink_counts_subdirs=by_directory and _relabel_procs.nlink_counts_subdirs(walk.root_fd),
    )
    user = walk.progress

    def progress(counts: _relabel_procs.Counts) -> None:
        if user is not None:
            user(RelabelProgress(*counts))

    totals = _relabel_procs.run(spec, workers, segments or None, progress, journal_ready)
    walk.visited += totals.visited
    walk.changed += totals.changed
    walk.unchanged += totals.unchanged
    walk.failed += totals.failed
    walk.skipped_mounts += totals.skipped_mounts
    walk.errors.extend(
        FileError(os.fsdecode(rel), code, message)
        for rel, code, message in totals.errors[:MAX_ERRORS_KEPT]
    )
    walk.error_counts.update(totals.error_counts)
    return totals.failed == 0


def _label_root(
    walk: _Walk, fd: int, st: os.stat_result, writer: JournalWriter | None, dry_run: bool
) -> bool:
    walk.visited += 1
    try:
        old = _xattrat.get_fd(fd)
    except OSError as exc:
        walk.error(b"", exc)
        return False
    if old in walk.right:
        walk.unchanged += 1
        return True
    walk.changed += 1
    if dry_run:
        return True
    if writer is not None:
        writer.sync_through(writer.append([format_record(st.st_dev, st.st_ino, old, b".")]))
    try:
        _xattrat.set_fd(fd, walk.target)
    except OSError as exc:
        walk.changed -= 1
        walk.error(b"", exc)
        return False
    return True


def restore(
    journal: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    refuse: Iterable[str | os.PathLike[str]] = (),
    progress: ProgressCallback | None = None,
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
    directory. ``progress`` is called about ten times a second with the
    records handled so far (``visited``), ``changed`` counting the restored.
    """
    started = time.monotonic()
    lock_fd = wait_unlocked(journal)  # no relabel (or worker of one) still writing
    try:
        return _restore(journal, started=started, dry_run=dry_run, refuse=refuse, progress=progress)
    finally:
        os.close(lock_fd)


def _restore(
    journal: str | os.PathLike[str],
    *,
    started: float,
    dry_run: bool,
    refuse: Iterable[str | os.PathLike[str]],
    progress: ProgressCallback | None = None,
) -> RestoreResult:
    header, finished, records = read_journal(journal)
    root = check_relabel_allowed(header.root, refuse=refuse)
    if str(root) != header.root:
        raise JournalError(f"journal root {header.root} now resolves to {root}; not restoring")
    try:
        root_fd = os.open(root, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise JournalError(f"cannot open journal root {root}: {exc.strerror}") from exc
    restored = unchanged = replaced = failed = 0
    errors: list[FileError] = []

    def fail(rel: bytes, exc: OSError) -> None:
        nonlocal failed
        failed += 1
        if len(errors) < MAX_ERRORS_KEPT:
            errors.append(FileError(os.fsdecode(rel), exc.errno or 0, exc.strerror or str(exc)))

    target = header.target.encode("ascii", "surrogateescape")
    written = (target + b"\0", target)
    parent_rel: bytes | None = None
    parent_fd = -1
    try:
        st = os.fstat(root_fd)
        if (st.st_dev, st.st_ino) != (header.dev, header.ino):
            raise JournalError(f"{root} is not the directory the journal was written for")
        next_report = 0.0
        for seen, rec in enumerate(records):
            if progress is not None and seen % 256 == 0 and time.monotonic() >= next_report:
                next_report = time.monotonic() + 0.1
                progress(RelabelProgress(seen, restored, unchanged + replaced, failed))
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
                fail(rel, exc)
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
        failed=failed,
        errors=tuple(errors),
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
    "BATCH_ENTRIES",
    "MAX_DEFAULT_WORKERS",
    "PARALLEL_MIN_ENTRIES",
    "FileError",
    "RelabelProgress",
    "RelabelResult",
    "RestoreResult",
    "relabel",
    "restore",
    "target_context",
]
