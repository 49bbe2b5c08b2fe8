"""How a parallel relabel splits the tree among its worker processes.

Each inode has one owner, ``mix(inode) % workers`` (:func:`owner`), the
inode coming free with ``readdir``; a walk *by directory* gives each
directory to the owner of its inode instead (see
:mod:`mcslabel.relabeling._worker`). :class:`Spec` is what every worker is
handed at the fork; :data:`HOOKS` are the test hooks of
:mod:`mcslabel.relabeling.testing`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Final

from mcslabel.relabeling._fsfacts import nlink_counts_subdirs
from mcslabel.relabeling._walking import O_DIR, MountRules

MIX: Final = 0x9E3779B1  # Fibonacci hashing: ext4 hands out inodes in runs


class Hooks:
    """Test hooks (set through :mod:`mcslabel.relabeling.testing`); all off by default."""

    def __init__(self) -> None:
        #: Seconds a worker sleeps before reading a directory's labels (widens race windows).
        self.directory_delay = 0.0
        #: Treat every file system as one whose st_nlink does not count subdirectories.
        self.distrust_nlink = False
        #: Called in the parent with the Spec and worker count of each parallel walk.
        self.observers: list[Callable[[Spec, int], None]] = []


def owner(ino: int, workers: int) -> int:
    """The worker that labels inode ``ino``."""
    return ((ino * MIX) >> 16) % workers


class Spec:
    """What every worker needs; built in the parent before the fork."""

    def __init__(
        self,
        *,
        root_fd: int,
        root_ino: int,
        target: bytes,
        rules: MountRules,
        batch_entries: int,
        batch_dirs: int,
        by_directory: bool = False,
        nlink_counts_subdirs: bool = False,
    ) -> None:
        self.root_fd = root_fd
        self.root_dev = rules.root_dev
        self.root_ino = root_ino
        self.target = target
        self.rules = rules
        self.mount_points = rules.points
        self.batch_entries = batch_entries
        self.batch_dirs = batch_dirs
        self.by_directory = by_directory
        self.nlink_counts_subdirs = nlink_counts_subdirs
        # The lock that multi-linked entries are labeled under (a walk by directory);
        # a POSIX record lock, which is per process, on a file the fork shares.
        self.lock_fd = -1
        # Read end of the pipe that says the journal is durable (-1: nothing to wait for).
        self.go_fd = -1


HOOKS: Final = Hooks()


# Below this many entries the walk stays in the calling process: forking and
# every worker listing the tree again cost more than they save.
PARALLEL_MIN_ENTRIES = 4096
MAX_DEFAULT_WORKERS = 4


def default_workers(root_fd: int) -> int:
    """Worker processes for a relabel: one per usable core (at most
    :data:`MAX_DEFAULT_WORKERS`) for a tree of at least
    :data:`PARALLEL_MIN_ENTRIES` entries, else none (see docs/performance.md)."""
    cores = len(os.sched_getaffinity(0))
    if cores < 2 or _count_entries(root_fd, PARALLEL_MIN_ENTRIES) < PARALLEL_MIN_ENTRIES:
        return 0
    return min(cores, MAX_DEFAULT_WORKERS)


def _count_entries(root_fd: int, limit: int) -> int:
    """Entries under ``root_fd``, counted up to ``limit`` (names only: cheap).

    Subdirectories are opened one at a time, when their turn comes: a root
    with thousands of subdirectories costs one listing, not thousands of opens.
    """
    seen = 0
    stack: list[tuple[int, list[str]]] = []
    fd = os.open(".", O_DIR, dir_fd=root_fd)
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
                    fd = os.open(names.pop(), O_DIR, dir_fd=parent)
            if fd < 0:
                return seen
    finally:
        if fd >= 0:
            os.close(fd)
        for parent, _ in stack:
            os.close(parent)


__all__ = [
    "HOOKS",
    "MAX_DEFAULT_WORKERS",
    "MIX",
    "PARALLEL_MIN_ENTRIES",
    "Hooks",
    "Spec",
    "default_workers",
    "nlink_counts_subdirs",
    "owner",
]
