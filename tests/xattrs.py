"""Reading real ``security.selinux`` labels in relabel tests."""

from __future__ import annotations

import os
from pathlib import Path

XATTR = "security.selinux"


def label(path: Path) -> bytes | None:
    """The raw label of ``path`` itself (a symlink's own), or None when it has none."""
    try:
        return os.getxattr(path, XATTR, follow_symlinks=False)
    except OSError:
        return None


def every(root: Path) -> list[Path]:
    """``root`` and everything below it, without following symlinks."""
    out = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        out += [Path(dirpath, n) for n in dirnames + filenames]
    return out
