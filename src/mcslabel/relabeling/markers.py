"""The unchanged-tree marker: skip the walk of a volume nothing has touched.

Opt-in (``relabel(..., trust_marker=True)``, ``mcslabel relabel
--trust-marker``). A complete relabel made with it records on the volume's
top directory, in the ``trusted.mcslabel.relabeled`` attribute (only a
process with ``CAP_SYS_ADMIN`` on the host can write ``trusted.*``; a
container cannot forge it), the label it wrote, when its walk started and
ended, and how many entries it saw. A later relabel to the *same* label with
``trust_marker=True`` skips the walk of the entries when

- the top directory still carries that label, there is no mount point
  inside the volume, and the marker names that label;
- no directory of the tree changed since the walk started: its ``ctime`` is
  before the start, or before the end with a ``mtime`` before the start
  (the relabel's own write of its label); the top directory's ``mtime``
  is before the start (writing the marker changes its ``ctime``).

Creating, removing or renaming an entry anywhere changes its directory's
``mtime``; ``chmod``, ``chown``, a label or ``touch -d`` on a directory
changes its ``ctime``: each makes the next relabel walk the tree (and write
a new marker). The check reads only directories: one ``fstatat`` per
directory, and a listing only of directories that have subdirectories
(``st_nlink`` on ext4, XFS and tmpfs; every directory elsewhere).

What it can miss, by design:

- a label changed *in place* on an existing file, symlink or device after
  the marked relabel (``chcon``, ``setfattr``, another tool; the change
  touches only that entry's ``ctime``, no directory's), also through a hard
  link from elsewhere on the file system;
- a directory's times set back to before the walk *during* the walk
  (``rsync -t``, ``touch -d`` racing the relabel), or a wall clock stepped
  back between the relabel and the check;
- content of the top directory's entries changed by a process that then
  sets the top directory's ``mtime`` back (``touch -d``; the top
  directory's ``ctime`` cannot be used: the marker itself changes it).

Files created by a container running at the volume's label get that label
from the kernel, so a volume used only by its container stays trusted in
spirit but not in fact: any entry created makes the next run walk. Without
``trust_marker`` the marker is neither read nor written.

This module imports nothing heavy (no ``attrs``, no ``typing`` at run time):
a marker-trusted ``mcslabel relabel`` of an unchanged tree is mostly process
start-up, and :func:`check_marker` is all of its work.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time

from mcslabel.relabeling._fsfacts import (
    NLINK_COUNTS_SUBDIRS_FS,
    O_DIR,
    nlink_counts_subdirs,
    right_labels,
)
from mcslabel.relabeling.mounts import holder, points_under

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from mcslabel.relabeling.mounts import Mount
    from mcslabel.relabeling.refusals import RefusedPaths

#: The attribute on the volume's top directory.
MARKER_XATTR = "trusted.mcslabel.relabeled"
_MAGIC = "mcslabel-marker 1"
_LABEL_XATTR = "security.selinux"
# A walk's start is taken this much early: file times come from a coarse clock.
_CLOCK_SLACK_NS = 20_000_000


class Marker:
    """A complete relabel to ``target``: its walk from ``started`` to
    ``ended`` (ns since the epoch), ``entries`` entries seen. Immutable."""

    __slots__ = ("ended", "entries", "started", "target")

    target: str
    started: int
    ended: int
    entries: int

    def __init__(self, target: str, started: int, ended: int, entries: int) -> None:
        for name, value in (
            ("target", target),
            ("started", started),
            ("ended", ended),
            ("entries", entries),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Marker is immutable: cannot set {name!r}")

    def _fields(self) -> tuple[str, int, int, int]:
        return (self.target, self.started, self.ended, self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Marker):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "Marker(target={!r}, started={!r}, ended={!r}, entries={!r})".format(*self._fields())

    def encode(self) -> bytes:
        return f"{_MAGIC} {self.target} {self.started} {self.ended} {self.entries}".encode()

    @classmethod
    def decode(cls, raw: bytes) -> Marker | None:
        """The marker in ``raw``, or None when it is not one (never raises)."""
        try:
            parts = raw.decode("ascii").split(" ")
            if " ".join(parts[:2]) != _MAGIC or len(parts) != 6:
                return None
            started, ended, entries = int(parts[3]), int(parts[4]), int(parts[5])
        except (UnicodeDecodeError, ValueError):
            return None
        if not 0 <= started <= ended or entries < 0:
            return None
        return cls(parts[2], started, ended, entries)


def walk_started() -> int:
    """The time a marked walk starts at (a little early: see the module docs)."""
    return time.time_ns() - _CLOCK_SLACK_NS


def read_marker(fd: int) -> Marker | None:
    """The marker on the directory open as ``fd``, or None."""
    try:
        return Marker.decode(os.getxattr(fd, MARKER_XATTR))
    except OSError:
        return None


def write_marker(fd: int, marker: Marker) -> bool:
    """Record ``marker`` on the directory open as ``fd``; False when the file
    system or the caller's privileges do not allow ``trusted.*`` attributes."""
    try:
        os.setxattr(fd, MARKER_XATTR, marker.encode())
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EROFS, errno.ENOSPC):
            return False
        raise
    return True


def remove_marker(fd: int) -> None:
    """Forget the marker on what ``fd`` refers to (``O_PATH`` fds too)."""
    with contextlib.suppress(OSError):
        os.removexattr(f"/proc/self/fd/{fd}", MARKER_XATTR)


def unchanged_since(root_fd: int, marker: Marker, *, nlink_counts_subdirs: bool) -> bool:
    """True when no directory under ``root_fd`` changed since ``marker``'s walk
    (see the module docs); False as soon as one did, or cannot be read."""
    start, end = marker.started, marker.ended
    try:
        st = os.fstat(root_fd)
        if st.st_mtime_ns > start:
            return False
        stack = [os.open(".", O_DIR, dir_fd=root_fd)]
    except OSError:
        return False
    try:
        while stack:
            fd = stack.pop()
            try:
                with os.scandir(fd) as it:
                    for entry in it:
                        if not entry.is_dir(follow_symlinks=False):
                            continue
                        st = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                        if not stat.S_ISDIR(st.st_mode):
                            return False  # swapped since it was listed
                        if st.st_ctime_ns > start and (
                            st.st_ctime_ns > end or st.st_mtime_ns > start
                        ):
                            return False
                        if not (nlink_counts_subdirs and st.st_nlink == 2):
                            stack.append(os.open(entry.name, O_DIR, dir_fd=fd))
            finally:
                os.close(fd)
    except OSError:
        return False
    finally:
        for fd in stack:
            os.close(fd)
    return True


def marked_unchanged(
    root_fd: int, target: str, *, nlink_counts_subdirs_known: bool = False
) -> int | None:
    """The entry count of a trusted marker on the directory open as ``root_fd``
    when it carries ``target`` and its tree is unchanged since (see the
    module docs), else None. ``nlink_counts_subdirs_known``: the caller knows
    the file system keeps ``st_nlink == 2 + subdirectories`` (otherwise
    ``fstatfs`` says)."""
    marker = read_marker(root_fd)
    if marker is None or marker.target != target:
        return None
    try:
        label = os.getxattr(root_fd, _LABEL_XATTR)
    except OSError:
        return None
    if label not in right_labels(target.encode("ascii") + b"\0"):
        return None
    nlink = nlink_counts_subdirs_known or nlink_counts_subdirs(root_fd)
    if not unchanged_since(root_fd, marker, nlink_counts_subdirs=nlink):
        return None
    return marker.entries


def open_root(
    root: str, *, refused: RefusedPaths, mounts: list[Mount]
) -> tuple[int, os.stat_result]:
    """``root`` (canonical, allowed) opened for a relabel: an ``O_DIR`` fd for a
    directory, an ``O_PATH`` fd for anything else, and its ``stat``.

    The fd, not the name, is what gets labeled: it is checked again against
    ``refused`` through ``/proc/self/fd``, so a path swapped for a symlink or
    a refused directory between the check and the open is refused.
    Raises :class:`~mcslabel.errors.RelabelError` or
    :class:`~mcslabel.errors.RefusedPath`; on success the caller owns the fd.
    """
    from mcslabel.errors import RelabelError
    from mcslabel.relabeling.refusals import allowed_path

    try:
        fd = os.open(root, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise RelabelError(f"cannot open {root}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            try:
                dir_fd = os.open(root, O_DIR)
            except OSError as exc:
                raise RelabelError(f"cannot open {root}: {exc.strerror}") from exc
            os.close(fd)
            fd = dir_fd
            st2 = os.fstat(fd)
            if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
                raise RelabelError(f"{root} was replaced while opening it")
        allowed_path(os.readlink(f"/proc/self/fd/{fd}"), refused=refused, mounts=mounts)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def check_marker(
    root: str, target: str, *, refused: RefusedPaths, mounts: list[Mount]
) -> int | None:
    """The entry count :func:`~mcslabel.relabeling.relabel` reports when it
    skips the walk of canonical ``root`` for ``target`` (a full context), or
    None when it has to walk: ``root`` is not a directory, has a mount point
    inside, or its marker does not vouch for it (:func:`marked_unchanged`).

    Raises what :func:`open_root` raises.
    """
    fd, st = open_root(root, refused=refused, mounts=mounts)
    try:
        # The marker speaks for a tree without mounts inside (their content is not dated).
        if not stat.S_ISDIR(st.st_mode) or points_under(root, mounts):
            return None
        # The mount table names the file system (no ctypes fstatfs to load) when
        # the mount holding root is the very file system the fd is on.
        mount = holder(root, mounts)
        known = (
            mount is not None
            and mount.fstype in NLINK_COUNTS_SUBDIRS_FS
            and mount.device == f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
        )
        return marked_unchanged(fd, target, nlink_counts_subdirs_known=known)
    finally:
        os.close(fd)


__all__ = [
    "MARKER_XATTR",
    "Marker",
    "check_marker",
    "marked_unchanged",
    "open_root",
    "read_marker",
    "remove_marker",
    "unchanged_since",
    "walk_started",
    "write_marker",
]
