"""What the serial walk and the worker processes share: the open directory,
the journal spelling of an entry, the mount rules, the counts and errors.

Both walks open every directory with ``O_NOFOLLOW | O_DIRECTORY`` relative
to its parent's fd and label entries relative to a directory fd, never
re-resolving a path; this module holds the pieces of that which must not
differ between them.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Final

from mcslabel.relabeling._fsfacts import O_DIR, right_labels
from mcslabel.relabeling._xattrat import XATTR
from mcslabel.relabeling.journal_format import escape, record_line
from mcslabel.relabeling.mounts import Mount, points_under
from mcslabel.relabeling.refusals import RefusedPaths
from mcslabel.relabeling.results import ErrorTally

FS_ENCODING: Final = sys.getfilesystemencoding()
#: What :meth:`MountRules.verdict` returns for a mount that is not entered.
SKIP: Final = 1


def label_here(name: str | bytes) -> bytes | None:
    """The label of ``name`` in the working directory, not following a symlink
    (``None``: no label). The scan loops keep this read inline instead."""
    try:
        return os.getxattr(name, XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            raise
        return None


class OpenDir:
    """An open directory of a walk; closed when nothing refers to it any more.

    ``dev`` is the device of the directory (and of its entries that are not
    mount points themselves): journal records name it.
    """

    __slots__ = ("dev", "fd", "prefix", "refs", "rel", "solo")

    def __init__(self, fd: int, rel: bytes, dev: int) -> None:
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

    def journal_path(self, name: str | bytes | None) -> str:
        """The journal spelling of ``name`` in this directory (``None``: the
        directory); plain printable ASCII names (nearly all) skip the escaping."""
        if name is None:
            return escape(self.rel) if self.rel else "."
        prefix = self.prefix
        if prefix is None:
            prefix = self.prefix = escape(self.rel) + "/" if self.rel else ""
        if isinstance(name, str):
            if name.isascii() and name.isprintable() and "\\" not in name:
                return prefix + name
            name = os.fsencode(name)
        return prefix + escape(name)

    def record(self, ino: int, old: bytes | None, name: str | bytes | None) -> str:
        """The journal record of entry ``name`` (``None``: this directory)."""
        return record_line(self.dev, ino, old, self.journal_path(name))


#: Directories still to enter: (parent, name, inode).
Stack = list[tuple[OpenDir, str, int]]


class MountRules:
    """Which directories a walk enters: not other mounts (unless crossing is
    asked for), and never a mount of a refused directory."""

    def __init__(
        self,
        *,
        root: str,
        root_dev: int,
        one_file_system: bool,
        refused: RefusedPaths,
        mounts: list[Mount],
    ) -> None:
        self.root = root
        self.root_dev = root_dev
        self.one_file_system = one_file_system
        self.refused = refused
        self.mounts = mounts
        #: Mount points inside the root, relative to it (checked by both walks).
        self.points = points_under(root, mounts)

    def verdict(self, rel: bytes, st: os.stat_result) -> int | str | None:
        """``None``: enter the directory at ``rel``; :data:`SKIP`: another mount,
        not crossed; a string: a refused mount (the reason)."""
        if st.st_dev == self.root_dev and rel not in self.points:
            return None
        if self.one_file_system:
            return SKIP
        return self.refusal(rel, st)

    def refusal(self, rel: bytes, st: os.stat_result) -> str | None:
        """Why a crossed mount must not be entered: it *is* a refused directory
        (same device and inode), or it is a bind mount showing one."""
        why = self.refused.identity_reason((st.st_dev, st.st_ino))
        if why is None and rel in self.points:
            path = self.root.rstrip("/") + "/" + os.fsdecode(rel)
            why = self.refused.bind_reason(path, self.mounts)
        return None if why is None else f"a mount of {why}; not entered"


class WalkCounts:
    """The counts and errors of one walk (serial, or one worker's)."""

    def __init__(self) -> None:
        self.visited = 0
        self.changed = 0
        self.unchanged = 0
        self.skipped_mounts = 0
        self.errors = ErrorTally()

    @property
    def failed(self) -> int:
        return self.errors.failed

    def error(self, rel: bytes, exc: OSError) -> None:
        self.errors.add(rel, exc)

    def mount_refused(self, rel: bytes, why: str) -> None:
        self.errors.add(rel, PermissionError(errno.EPERM, why))


__all__ = [
    "FS_ENCODING",
    "O_DIR",
    "SKIP",
    "MountRules",
    "OpenDir",
    "Stack",
    "WalkCounts",
    "label_here",
    "right_labels",
]
