"""The journal's line format: records, escapes, the header and record types.

See :mod:`mcslabel.relabeling.journal` for the format and its guarantees.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import attrs

MAGIC = "mcslabel-journal 1"
END = "mcslabel-journal-end"
_UNSAFE = re.compile(rb"[^\x20-\x5b\x5d-\x7e]")
_ESCAPED = re.compile(rb"\\x([0-9a-f]{2})")
#: One record line (without its newline): dev, ino, kind, label, path.
RECORD = re.compile(r"(\d+)\t(\d+)\t([ZR-])\t([^\t]*)\t([^\t]+)")


def escape(raw: bytes) -> str:
    """``raw`` as printable ASCII; other bytes, ``\\`` and tab become ``\\xHH``."""
    if not _UNSAFE.search(raw):
        return raw.decode("ascii")
    return "".join(chr(c) if 0x20 <= c <= 0x7E and c != 0x5C else f"\\x{c:02x}" for c in raw)


def unescape(text: str) -> bytes:
    return _ESCAPED.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("ascii"))


@functools.lru_cache(maxsize=1024)
def label_field(old: bytes | None) -> str:
    """The ``kind<TAB>label`` middle of a record (cached: labels repeat a lot)."""
    if old is None:
        return "-\t"
    if old.endswith(b"\0"):
        return "Z\t" + escape(old[:-1])
    return "R\t" + escape(old)


def record_line(dev: int, ino: int, old: bytes | None, path: str) -> str:
    """One journal record; ``path`` is already escaped (:func:`escape`)."""
    return f"{dev}\t{ino}\t{label_field(old)}\t{path}\n"


def format_record(dev: int, ino: int, old: bytes | None, relpath: bytes) -> str:
    """One journal record for the entry at ``relpath`` (``b"."``: the root)."""
    return record_line(dev, ino, old, escape(relpath))


@attrs.frozen
class JournalRecord:
    """One old label: the file (device, inode, path under the root) and its label."""

    dev: int
    ino: int
    old: bytes | None
    relpath: bytes


@attrs.frozen
class JournalHeader:
    root: str
    dev: int
    ino: int
    target: str
    started: str
    extra: dict[str, Any] = attrs.field(factory=dict, eq=False)


__all__ = [
    "END",
    "MAGIC",
    "RECORD",
    "JournalHeader",
    "JournalRecord",
    "escape",
    "format_record",
    "label_field",
    "record_line",
    "unescape",
]
