"""The mount table (``/proc/self/mountinfo``), read one way for every user.

A relabel needs two things from it: the mount points inside a volume (not
crossed unless asked), and, for a bind mount, which host directory it shows,
so that a bind of a refused tree is refused wherever that tree lives
(:func:`aliases`). Context mounts (:mod:`mcslabel.relabeling.context_mounts`)
read the file system type and super options of the same lines. Paths are
``str`` decoded with ``surrogateescape`` (any bytes round-trip through
:func:`os.fsencode`).
"""

from __future__ import annotations

import os
from collections import namedtuple

MOUNTINFO = "/proc/self/mountinfo"
_OCTAL_DIGITS = frozenset("01234567")

# Neither typing nor re at run time: the marker path of ``mcslabel relabel``
# reads the mount table in a process that should end in milliseconds.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import NamedTuple

    class Mount(NamedTuple):
        """One line of mountinfo."""

        device: str  # "major:minor" of the file system
        root: str  # the directory of that file system the mount shows ("/" for all of it)
        point: str  # where it is mounted
        #: The kernel's mount id; -1 when the line does not have a number there.
        mount_id: int = -1
        #: File system type (``ext4``, ``fuse.sshfs``); "" when the line lacks the part
        #: after `` - ``.
        fstype: str = ""
        #: Mount source (device, server path, ``tmpfs``...), unescaped.
        source: str = ""
        #: The super options as the kernel prints them (comma-separated; quoted values may
        #: hold commas: see :func:`mcslabel.relabeling.context_mounts.split_options`).
        super_options: str = ""

else:
    Mount = namedtuple(  # the NamedTuple above, built without typing
        "Mount",
        ("device", "root", "point", "mount_id", "fstype", "source", "super_options"),
        defaults=(-1, "", "", ""),
        module=__name__,
    )
    Mount.__doc__ = "One line of mountinfo."


def unoctal(raw: str) -> str:
    """mountinfo's field with ``\\ooo`` escapes (space, tab, newline, backslash) undone."""
    if "\\" not in raw:
        return raw
    head, *pieces = raw.split("\\")
    out = [head]
    for piece in pieces:
        if len(piece) >= 3 and _OCTAL_DIGITS.issuperset(piece[:3]):
            out.append(chr(int(piece[:3], 8)) + piece[3:])
        else:
            out.append("\\" + piece)
    return "".join(out)


def parse_line(line: str) -> Mount | None:
    """The mount one mountinfo line describes; None for a line too short to hold one."""
    head, sep, tail = line.rstrip("\n").partition(" - ")
    fields = head.split(" ", 5)
    if len(fields) < 5:
        return None
    mount_id = int(fields[0]) if fields[0].isascii() and fields[0].isdigit() else -1
    rest = tail.split(" ", 2)
    if not sep or len(rest) < 3:
        return Mount(fields[2], unoctal(fields[3]), unoctal(fields[4]), mount_id)
    fstype, source, options = rest
    return Mount(
        fields[2],
        unoctal(fields[3]),
        unoctal(fields[4]),
        mount_id,
        fstype,
        unoctal(source),
        options,
    )


def parse_mountinfo(text: str) -> list[Mount]:
    """Every mount of a mountinfo text, in order (a later mount hides an earlier one)."""
    return [m for m in map(parse_line, text.splitlines()) if m is not None]


def read_mountinfo(
    path: str | os.PathLike[str] = MOUNTINFO, *, strict: bool = False
) -> list[Mount]:
    """Every mount, in the kernel's order (a later mount hides an earlier one).

    Empty when the table cannot be read, unless ``strict`` (then the
    :class:`OSError` propagates).
    """
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return parse_mountinfo(fh.read())
    except OSError:
        if strict:
            raise
        return []


def _inside(path: str, tree: str) -> bool:
    return path == tree or tree == "/" or path.startswith(tree + "/")


def points_under(root: str, mounts: list[Mount]) -> dict[bytes, Mount]:
    """Mount points strictly inside canonical ``root``, as paths relative to
    it (bytes, as the walks spell them), each with its mount."""
    prefix = root.rstrip("/") + "/"
    return {os.fsencode(m.point[len(prefix) :]): m for m in mounts if m.point.startswith(prefix)}


def holder(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount that canonical ``path`` is on (the longest mount point; the
    later of two on one point, which hides the earlier)."""
    found = None
    for mount in mounts:
        if _inside(path, mount.point) and (found is None or len(mount.point) >= len(found.point)):
            found = mount
    return found


def aliases(path: str, mounts: list[Mount]) -> list[str]:
    """Other spellings of canonical ``path`` through the mounts of its file system.

    The mount holding ``path`` shows directory ``source`` of its file system;
    every mount of the same file system that shows an ancestor of ``source``
    gives an alias (``/srv/vol`` bind-mounted from ``/usr/share`` is also
    ``/usr/share``; a bind of ``/dev/shm/sub`` is also ``/dev/shm/sub``).
    """
    mount = holder(path, mounts)
    if mount is None:
        return []
    rest = path[len(mount.point) :] if mount.point != "/" else path
    source = (mount.root.rstrip("/") + "/" + rest.lstrip("/")).rstrip("/") or "/"
    found = []
    for other in mounts:
        if other.device == mount.device and _inside(source, other.root):
            tail = source[len(other.root) :] if other.root != "/" else source
            alias = os.path.normpath(other.point.rstrip("/") + "/" + tail.lstrip("/"))
            alias = "/" if alias == "//" else alias
            if alias != path and alias not in found:
                found.append(alias)
    return found


__all__ = [
    "MOUNTINFO",
    "Mount",
    "aliases",
    "holder",
    "parse_line",
    "parse_mountinfo",
    "points_under",
    "read_mountinfo",
    "unoctal",
]
