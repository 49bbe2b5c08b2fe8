"""Context mounts: label a whole file system at mount time instead of relabeling it.

``mount -o context="system_u:object_r:container_file_t:s0:c3,c9"`` gives
every file of the mounted file system that context, in O(1): nothing is
walked, no xattr is written (KEP-1710, SELinuxMountReadWriteOncePod, does
exactly this for Kubernetes volumes). This module holds the option text
(quoted, because the level's comma otherwise splits the option list:
``ext4: Unknown parameter 'c9'``), the ``fscontext``/``defcontext``/
``rootcontext`` family and which file systems honour which, and what the
mount table (read by :mod:`mcslabel.relabeling.mounts`) says the kernel
applied.
Mounting is :mod:`mcslabel.relabeling.volume_mounts`.

The rules (the kernel's ``selinux_set_mnt_opts``):

- ``context=``: every file reads as this context; on-disk xattrs are ignored
  and setting a label fails (``EOPNOTSUPP``). Any file system, including
  those without xattrs (vfat, nfs, cifs). Excludes ``defcontext=``.
- ``fscontext=``: the label of the file system (superblock) object only,
  checked by ``associate``/``mount`` permissions; files keep their labels.
- ``defcontext=``: the label of files that have no xattr, instead of the
  policy's default. Only file systems labeled by xattrs (ext4, xfs, btrfs...).
- ``rootcontext=``: the root directory's label, set before user space sees
  it (tmpfs and other in-memory file systems).
- Each superblock has one set of these: a second mount of the same device
  with different options fails, and a bind mount carries none.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator, Mapping

import attrs

from mcslabel.context import Context
from mcslabel.errors import InvalidContext, InvalidInput
from mcslabel.errors import show_input as _q
from mcslabel.level import Level
from mcslabel.relabeling import mounts
from mcslabel.relabeling.mounts import Mount


class Labeling(enum.Enum):
    """How a file system type labels its files (``fs_use_*``/``genfscon`` in policy)."""

    XATTR = "xattr"  # fs_use_xattr: each inode's security.selinux
    TRANSITION = "transition"  # fs_use_trans: in-memory, from the creating process
    GENFS = "genfs"  # genfscon: one label per path prefix, no xattrs


# The common file system types of container hosts, by how the mainstream
# policies (refpolicy, Fedora) label them.
_FS_TYPES = {
    Labeling.XATTR: "ext2 ext3 ext4 xfs btrfs f2fs jfs reiserfs gfs2 ocfs2 squashfs erofs zfs"
    " overlay ceph jffs2 ubifs",
    Labeling.TRANSITION: "tmpfs ramfs devpts mqueue shm hugetlbfs",
    Labeling.GENFS: "vfat msdos exfat ntfs ntfs3 iso9660 udf nfs cifs smb3 fuse 9p",
}
_LABELING: Mapping[str, Labeling] = {
    fstype: labeling for labeling, names in _FS_TYPES.items() for fstype in names.split()
}

#: Every option of the family, in the order the kernel prints them.
OPTION_NAMES = ("context", "fscontext", "defcontext", "rootcontext")

#: Which labeling behaviours honour which option.
HONOURED_BY: Mapping[str, frozenset[Labeling]] = {
    "context": frozenset(Labeling),
    "fscontext": frozenset(Labeling),
    "defcontext": frozenset({Labeling.XATTR}),
    "rootcontext": frozenset(Labeling),
}


def labeling_of(fstype: str) -> Labeling | None:
    """How ``fstype`` labels its files; None for a type these rules do not know.

    ``fuse.sshfs`` and other FUSE subtypes count as ``fuse``.
    """
    return _LABELING.get(fstype) or _LABELING.get(fstype.partition(".")[0])


def honoured(option: str, fstype: str) -> bool | None:
    """True when ``fstype`` honours ``option``; None for an unknown type."""
    _check_option_name(option)
    labeling = labeling_of(fstype)
    return None if labeling is None else labeling in HONOURED_BY[option]


def _check_option_name(option: str) -> None:
    if option not in OPTION_NAMES:
        raise InvalidInput(f"{_q(option)} is not one of {', '.join(OPTION_NAMES)}")


def format_option(name: str, context: Context) -> str:
    """``name="context"``, quoted so the level's commas stay inside the value."""
    _check_option_name(name)
    return f'{name}="{context}"'


def _context_with_level(
    instance: MountContexts, attribute: attrs.Attribute[Context | None], value: Context | None
) -> None:
    if value is not None and (not isinstance(value, Context) or value.level is None):
        raise InvalidContext(f"{attribute.name} needs a full context with a level, got {value}")


@attrs.frozen
class MountContexts:
    """The context options of one mount; at least one, ``context`` never with ``defcontext``."""

    context: Context | None = attrs.field(default=None, validator=_context_with_level)
    fscontext: Context | None = attrs.field(default=None, validator=_context_with_level)
    defcontext: Context | None = attrs.field(default=None, validator=_context_with_level)
    rootcontext: Context | None = attrs.field(default=None, validator=_context_with_level)

    def __attrs_post_init__(self) -> None:
        if not self.items():
            raise InvalidInput("a context mount needs at least one of " + ", ".join(OPTION_NAMES))
        if self.context is not None and self.defcontext is not None:
            raise InvalidInput(
                "context= and defcontext= exclude each other: with context= no file's own"
                " label is read, so there is no unlabeled file to default"
            )

    @classmethod
    def for_context(
        cls, context: Context, options: tuple[str, ...] = ("context",)
    ) -> MountContexts:
        """The same ``context`` for each option named in ``options``."""
        for name in options:
            _check_option_name(name)
        return cls(**dict.fromkeys(options, context))

    def items(self) -> list[tuple[str, Context]]:
        return [(n, c) for n in OPTION_NAMES if (c := getattr(self, n)) is not None]

    @property
    def level(self) -> Level | None:
        """The level files read as: ``context``'s, else ``defcontext``'s."""
        chosen = self.context or self.defcontext
        return None if chosen is None else chosen.low

    def options(self) -> list[str]:
        """Each option as ``mount -o`` takes it."""
        return [format_option(n, c) for n, c in self.items()]

    def applied_by(self, entry: MountEntry) -> bool:
        """True when mount ``entry`` shows every one of these options with its context."""
        shown = entry.contexts()
        return all(shown.get(name) == value for name, value in self.items())

    def check_fstype(self, fstype: str) -> None:
        """Raise :class:`~mcslabel.errors.InvalidInput` for an option ``fstype`` ignores."""
        labeling = labeling_of(fstype)
        for name, _ in self.items():
            if labeling is not None and labeling not in HONOURED_BY[name]:
                raise InvalidInput(
                    f"{fstype} does not honour {name}= (its files are labeled by"
                    f" {labeling.value}, {name}= needs xattr labeling)"
                )

    def __str__(self) -> str:
        return ",".join(self.options())


def split_options(text: str) -> list[str]:
    """Split a mount option list on the commas outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p]


@attrs.frozen
class MountEntry:
    """One line of ``/proc/self/mountinfo``."""

    mount_id: int
    root: str  # the directory of the file system shown at the mount point
    mount_point: str
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @classmethod
    def of(cls, mount: Mount) -> MountEntry:
        """The entry of a mount-table line (:mod:`mcslabel.relabeling.mounts`)."""
        return cls(
            mount_id=mount.mount_id,
            root=mount.root,
            mount_point=mount.point,
            fstype=mount.fstype,
            source=mount.source,
            super_options=tuple(split_options(mount.super_options)),
        )

    def option(self, name: str) -> str | None:
        """The value of super option ``name`` (quotes removed), or None."""
        for option in self.super_options:
            key, sep, value = option.partition("=")
            if key == name:
                return value.strip('"') if sep else ""
        return None

    def contexts(self) -> dict[str, Context]:
        """The context options the kernel applied to this file system."""
        found = {}
        for name in OPTION_NAMES:
            value = self.option(name)
            if value:
                try:
                    found[name] = Context.parse(value)
                except InvalidContext:
                    continue  # a translated or unparsable label applies nothing we asked
        return found


def _entries(mounts: list[Mount]) -> list[MountEntry]:
    # Lines without a mount id or the part after " - " hold no options to check.
    return [MountEntry.of(m) for m in mounts if m.mount_id >= 0 and m.fstype]


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Every line of a ``mountinfo`` file, in order (a later mount hides an earlier)."""
    return _entries(mounts.parse_mountinfo(text))


def read_mountinfo(path: str | os.PathLike[str] = mounts.MOUNTINFO) -> list[MountEntry]:
    """:func:`parse_mountinfo` of the file at ``path``; raises :class:`OSError` if unreadable."""
    return _entries(mounts.read_mountinfo(path, strict=True))


def mount_at(entries: list[MountEntry], mount_point: str) -> MountEntry | None:
    """The mount visible at ``mount_point`` (the last one mounted there)."""
    found = None
    for entry in entries:
        if entry.mount_point == mount_point:
            found = entry
    return found


def _walk_up(path: str) -> Iterator[str]:
    while True:
        yield path
        if path == "/":
            return
        path = os.path.dirname(path)


def mount_holding(entries: list[MountEntry], path: str) -> MountEntry | None:
    """The mount whose file system holds canonical ``path``."""
    for candidate in _walk_up(path):
        if (entry := mount_at(entries, candidate)) is not None:
            return entry
    return None


def selinux_enabled(selinuxfs: str | os.PathLike[str] = "/sys/fs/selinux") -> bool:
    """True when the kernel runs SELinux (selinuxfs is mounted and has ``enforce``)."""
    return os.path.exists(os.path.join(selinuxfs, "enforce"))


__all__ = [
    "HONOURED_BY",
    "OPTION_NAMES",
    "Labeling",
    "MountContexts",
    "MountEntry",
    "format_option",
    "honoured",
    "labeling_of",
    "mount_at",
    "mount_holding",
    "parse_mountinfo",
    "read_mountinfo",
    "selinux_enabled",
    "split_options",
]
