"""File-system facts every walk and the marker check share (and what counts as a right label).

Kept free of heavy imports (``ctypes`` loads on first use): the unchanged-tree
marker check (:mod:`mcslabel.relabeling.markers`) runs in processes that
should end in a few milliseconds.
"""

from __future__ import annotations

import os

#: How every walk opens a directory: never through a symlink, never blocking.
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# File systems whose directories count their subdirectories in st_nlink (2 + n).
_NLINK_COUNTS_SUBDIRS = frozenset({0xEF53, 0x58465342, 0x01021994})  # ext2-4, XFS, tmpfs
#: Their names in the mount table (a mount of one of these has one of those magics).
NLINK_COUNTS_SUBDIRS_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "tmpfs"})


def right_labels(target: bytes) -> tuple[bytes, bytes]:
    """The raw labels that count as ``target`` (NUL-terminated): a label
    stored without its trailing NUL is right too."""
    return (target, target[:-1])


def nlink_counts_subdirs(fd: int) -> bool:
    """True when the file system of ``fd`` keeps ``st_nlink == 2 + subdirectories``
    for directories (btrfs, overlayfs and others do not, or not always)."""
    import ctypes  # on use: start-up time
    import struct

    try:
        fstatfs = ctypes.CDLL(None, use_errno=True).fstatfs
    except (OSError, AttributeError):
        return False
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first word
    if fstatfs(fd, buf) != 0:
        return False
    (f_type,) = struct.unpack_from("@l", buf, 0)
    return int(f_type) & 0xFFFFFFFF in _NLINK_COUNTS_SUBDIRS


__all__ = ["NLINK_COUNTS_SUBDIRS_FS", "O_DIR", "nlink_counts_subdirs", "right_labels"]
