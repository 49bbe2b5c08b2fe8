"""The context the kernel gives files on pseudo file systems (``genfscon``).

``/proc``, ``/sys`` and the like carry no xattrs and are never relabeled from
``file_contexts``: the kernel labels them from the policy's ``genfscon``
statements, by file system type and the longest matching path prefix. The
mount points here are the ones every current distribution uses.
"""

from __future__ import annotations

import stat
from typing import Any

import attrs

from mcslabel.context import Context
from mcslabel.verification.policy import Policy

#: Where each genfscon-labeled file system is mounted on a standard host.
PSEUDO_MOUNTS: dict[str, str] = {
    "/proc": "proc",
    "/sys": "sysfs",
    "/sys/fs/cgroup": "cgroup2",
    "/sys/fs/bpf": "bpf",
    "/sys/fs/pstore": "pstore",
    "/sys/fs/selinux": "selinuxfs",
    "/sys/kernel/debug": "debugfs",
    "/sys/kernel/tracing": "tracefs",
    "/sys/kernel/security": "securityfs",
    "/sys/kernel/config": "configfs",
    "/dev/mqueue": "mqueue",
}

#: The file-type letters of genfscon and file_contexts (``-d``...) as stat file types.
FILE_TYPE_LETTERS = {
    "--": stat.S_IFREG,
    "-d": stat.S_IFDIR,
    "-l": stat.S_IFLNK,
    "-s": stat.S_IFSOCK,
    "-p": stat.S_IFIFO,
    "-c": stat.S_IFCHR,
    "-b": stat.S_IFBLK,
}


@attrs.frozen
class GenfsContext:
    """A pseudo-file-system path's context and the genfscon statement behind it."""

    fs: str
    context: Context
    rule: str


def pseudo_filesystem(path: str) -> tuple[str, str] | None:
    """``(fs type, path inside it)`` for a path under a standard pseudo mount."""
    best = ""
    for mount in PSEUDO_MOUNTS:
        if (path == mount or path.startswith(mount + "/")) and len(mount) > len(best):
            best = mount
    if not best:
        return None
    return PSEUDO_MOUNTS[best], path[len(best) :] or "/"


def genfs_context(path: str, policy: Policy, mode: int = 0) -> GenfsContext | None:
    """The genfscon context of ``path`` (normalized), or None off pseudo file systems.

    Like the kernel: among the statements for that file system, the longest
    path that is a prefix of the path inside it wins; a statement with a file
    type applies to that type only.
    """
    found = pseudo_filesystem(path)
    if found is None:
        return None
    fs, inside = found
    best: Any = None
    for statement in policy.setools_policy.genfscons():
        if statement.fs != fs or not inside.startswith(statement.path):
            continue
        wanted = FILE_TYPE_LETTERS.get(str(statement.filetype).strip())
        if wanted is not None and mode and wanted != mode:
            continue
        if best is None or len(statement.path) > len(best.path):
            best = statement
    if best is None:
        return None
    text = " ".join(str(best).split())
    return GenfsContext(fs, Context.parse(str(best.context)), text)


__all__ = [
    "FILE_TYPE_LETTERS",
    "PSEUDO_MOUNTS",
    "GenfsContext",
    "genfs_context",
    "pseudo_filesystem",
]
