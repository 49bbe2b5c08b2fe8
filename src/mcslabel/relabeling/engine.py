"""Relabel a container volume (``:Z`` / ``:z``), safely and journaled.

Safety by construction: the path is canonicalised and checked against the
refused list (:mod:`mcslabel.relabeling.refusals`); the walk holds directory file
descriptors and labels every entry relative to its parent's fd without
following symlinks, so a rename or symlink swap inside the tree cannot
redirect it outside; it does not cross mount points unless asked, and never
enters a mount of a refused directory; an entry whose label is already right
is not written (no ctime change); the top directory is labeled last and only
when everything else succeeded, so a correct top label means the whole tree
is done. With ``journal=PATH`` every old label is on disk before it is
changed and :func:`~mcslabel.relabeling.restoration.restore` undoes the
relabel, even after ``kill -9``.

The walk itself is :mod:`mcslabel.relabeling._serial` (in the calling
thread) or :mod:`mcslabel.relabeling._parallel` (worker processes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import MappingProxyType

from mcslabel.context import Context
from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q
from mcslabel.level import Level
from mcslabel.relabeling import _split, _xattrat, markers
from mcslabel.relabeling._serial import BATCH_DIRS, BATCH_ENTRIES, SerialWalk
from mcslabel.relabeling._split import MAX_DEFAULT_WORKERS, PARALLEL_MIN_ENTRIES, default_workers
from mcslabel.relabeling._walking import MountRules, OpenDir
from mcslabel.relabeling.journal_format import JournalHeader
from mcslabel.relabeling.journal_writer import JournalWriter
from mcslabel.relabeling.mounts import read_mountinfo
from mcslabel.relabeling.refusals import RefusedPaths, check_relabel_allowed
from mcslabel.relabeling.restoration import restore
from mcslabel.relabeling.results import (
    MAX_ERRORS_KEPT,
    FileError,
    ProgressCallback,
    RelabelProgress,
    RelabelResult,
    RestoreResult,
)
from mcslabel.relabeling.targets import target_context
from mcslabel.verification.policy import PolicyRoot


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
    trust_marker: bool = False,
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
    :mod:`mcslabel.relabeling._worker`); 0 keeps everything in the calling
    thread. The default is one per usable core (at most
    :data:`MAX_DEFAULT_WORKERS`) for trees of at least
    :data:`PARALLEL_MIN_ENTRIES` entries and 0 for smaller ones and dry runs.
    ``progress`` is called in the calling thread about ten times a second.
    ``refuse`` adds paths to the refused list. ``use_xattrat=False``
    forces the procfs fallback (tests). ``trust_marker=True`` skips the
    walk of a tree that a marked relabel to the same label completed and
    whose directories have not changed since, and marks the tree after a
    complete relabel (opt-in; what it can miss:
    :mod:`mcslabel.relabeling.markers`); the result then says
    ``skipped_by_marker``.

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
    mounts = read_mountinfo()
    root = check_relabel_allowed(path, refused=refused, mounts=mounts)
    if journal is not None and Path(os.path.realpath(journal)).is_relative_to(root):
        # Inside the volume the container could rewrite its own undo record.
        raise InvalidInput(f"journal {_q(os.fspath(journal))} must not be inside {root}")
    if workers is not None and workers < 0:
        raise InvalidInput(f"workers must be >= 0, got {workers}")
    writer: JournalWriter | None = None
    segments: list[JournalWriter] = []
    root_fd = -1
    try:
        # Signals wait until the fd is stored where the finally below closes it.
        with _signals_deferred():
            root_fd, st = markers.open_root(str(root), refused=refused, mounts=mounts)
        is_dir = stat.S_ISDIR(st.st_mode)
        rules = MountRules(
            root=str(root),
            root_dev=st.st_dev,
            one_file_system=one_file_system,
            refused=refused,
            mounts=mounts if is_dir else [],
        )
        # The marker speaks for a tree without mounts inside (their content is not dated).
        marked = trust_marker and is_dir and not rules.points
        if marked:
            skipped = markers.marked_unchanged(root_fd, str(ctx))
            if skipped is not None:
                if journal is not None and not dry_run:
                    writer = JournalWriter(journal, _header(root, st, ctx))
                    writer.finish({"changed": 0, "failed": 0, "complete": True})
                return RelabelResult(
                    root=root,
                    context=ctx,
                    changed=0,
                    unchanged=skipped,
                    failed=0,
                    skipped_mounts=0,
                    errors=(),
                    error_counts=MappingProxyType({}),
                    duration=time.monotonic() - started,
                    dry_run=dry_run,
                    complete=True,
                    journal=None if writer is None else writer.path,
                    skipped_by_marker=True,
                )
        walk_start = markers.walk_started()
        if is_dir and not dry_run:
            # Any walk that may change labels voids a marker first: killed midway,
            # it would leave labels changed under a marker that still looks valid.
            markers.remove_marker(root_fd)
        if not is_dir or dry_run:
            workers = 0
        elif workers is None:
            workers = default_workers(root_fd)
        if journal is not None and not dry_run:
            header = _header(root, st, ctx)
            if workers:
                writer, segments = JournalWriter.with_segments(
                    journal, header, workers, deferred=True
                )
            else:
                writer = JournalWriter(journal, header)
        walk = SerialWalk(
            root_fd=root_fd,
            target=target,
            dry_run=dry_run,
            journal=writer,
            rules=rules,
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
        if marked and not dry_run:
            if complete:
                entries = walk.changed + walk.unchanged
                markers.write_marker(
                    root_fd, markers.Marker(str(ctx), walk_start, time.time_ns(), entries)
                )
            else:
                markers.remove_marker(root_fd)
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
        errors=walk.errors.file_errors(),
        error_counts=MappingProxyType(dict(walk.errors.counts)),
        duration=time.monotonic() - started,
        dry_run=dry_run,
        complete=complete,
        journal=None if writer is None else writer.path,
    )


def _header(root: Path, st: os.stat_result, ctx: Context) -> JournalHeader:
    from datetime import UTC, datetime  # only journaled relabels pay for the import

    return JournalHeader(
        root=str(root),
        dev=st.st_dev,
        ino=st.st_ino,
        target=str(ctx),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _run_parallel(
    walk: SerialWalk,
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
    :mod:`mcslabel.relabeling._worker`); otherwise they share it by inode.
    """
    try:
        # One worker shares nothing: it would only pay the walk's lstat of wrong labels.
        by_directory = workers > 1 and _xattrat.get_fd(walk.root_fd) in walk.right
    except OSError:
        by_directory = False
    spec = _split.Spec(
        root_fd=walk.root_fd,
        root_ino=st.st_ino,
        target=walk.target,
        rules=walk.rules,
        batch_entries=BATCH_ENTRIES,
        batch_dirs=BATCH_DIRS,
        by_directory=by_directory,
        nlink_counts_subdirs=by_directory
        and not _split.HOOKS.distrust_nlink
        and _split.nlink_counts_subdirs(walk.root_fd),
    )
    for observe in _split.HOOKS.observers:
        observe(spec, workers)
    user = walk.progress
    # Imported here: a relabel that stays in the calling process (small trees,
    # the marker's fast path) does not load the fork machinery.
    from mcslabel.relabeling import _parallel

    def progress(counts: _parallel.Counts) -> None:
        if user is not None:
            user(RelabelProgress(*counts))

    failed_before = walk.failed
    _parallel.run(spec, workers, walk, segments or None, progress, journal_ready)
    return walk.failed == failed_before


def _label_root(
    walk: SerialWalk, fd: int, st: os.stat_result, writer: JournalWriter | None, dry_run: bool
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
        record = OpenDir(fd, b"", st.st_dev).record(st.st_ino, old, None)
        writer.sync_through(writer.append([record]))
    try:
        _xattrat.set_fd(fd, walk.target)
    except OSError as exc:
        walk.changed -= 1
        walk.error(b"", exc)
        return False
    return True


__all__ = [
    "BATCH_ENTRIES",
    "MAX_DEFAULT_WORKERS",
    "MAX_ERRORS_KEPT",
    "PARALLEL_MIN_ENTRIES",
    "FileError",
    "ProgressCallback",
    "RelabelProgress",
    "RelabelResult",
    "RestoreResult",
    "default_workers",
    "relabel",
    "restore",
    "target_context",
]
