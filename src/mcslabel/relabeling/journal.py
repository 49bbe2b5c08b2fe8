"""The relabel journal: every old label, durable before it is changed.

Format (text, one record per line, streamed; ``\\x`` escapes keep it one
line per record whatever bytes a name or label holds)::

    mcslabel-journal 1
    {"root": "/var/tmp/vol", "dev": 2049, "ino": 1234, "target": "...", "started": "..."}
    2049<TAB>1301<TAB>Z<TAB>system_u:object_r:user_tmp_t:s0<TAB>d0001/f001
    2049<TAB>1302<TAB>-<TAB><TAB>d0001/f002
    ...
    mcslabel-journal-end<TAB>{"changed": 100000, "failed": 0}

Each record is ``device, inode, kind, old label, path relative to the root``
(``.`` is the root itself). ``kind`` is ``Z`` for a label stored with the
usual trailing NUL, ``R`` for one stored without it and ``-`` for a file
that had no label (restore removes the attribute). Bytes outside printable
ASCII, backslash and tab are written as ``\\xHH``. The end line is missing
when the relabel was interrupted; the journal is still complete up to its
last full line.

Durability: records are appended in batches and ``fdatasync``\\ ed; a label is
changed only after the batch holding its record is on disk (group commit:
one sync covers every batch written so far), so after ``kill -9`` or a power
cut every changed label has its record.

Segments: a relabel with worker processes gives each worker its own file,
``PATH.1`` ... ``PATH.N`` beside ``PATH``, in the same format with
``"segment": n`` in the header; ``PATH``'s header lists them
(``"segments": ["PATH.1", ...]``, names in the same directory) and ``PATH``
holds the root's record and the end line. The segments are created and
synced before ``PATH``, so a journal never names a segment that is missing.
:func:`read_journal` streams the segments' records, then ``PATH``'s.

Locking: the relabel holds ``flock(LOCK_EX)`` on ``PATH`` (its workers
inherit it) until the last of them exits; :func:`wait_unlocked` lets
``restore`` wait for that, so no label changes behind a restore's back.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcslabel.errors import JournalError
from mcslabel.errors import show_input as _q
from mcslabel.relabeling.journal_format import (
    END,
    MAGIC,
    RECORD,
    JournalHeader,
    JournalRecord,
    escape,
    format_record,
    label_field,
    record_line,
    unescape,
)
from mcslabel.relabeling.journal_writer import JournalWriter


def wait_unlocked(path: str | os.PathLike[str], timeout: float = 10.0) -> int:
    """Wait until no relabel (or worker of one) writes the journal; returns a
    locked fd of it for the caller to close. Raises :class:`JournalError`
    when it stays locked for ``timeout`` seconds."""
    try:
        # O_NONBLOCK: opening a fifo must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JournalError(f"journal {path} is not a regular file")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise JournalError(
                    f"journal {path} is still being written by a running relabel"
                ) from None
            time.sleep(0.02)


def read_journal(
    path: str | os.PathLike[str],
) -> tuple[JournalHeader, bool, Iterator[JournalRecord]]:
    """Validate the whole journal (segments included), then stream its records.

    Returns the header, whether the relabel finished (the end line is
    present) and an iterator over the records, the segments' first. A torn
    last line (no newline: the write was never synced, so its label never
    changed) is ignored; any other malformed line, or a segment that is
    missing or belongs to another relabel, raises :class:`JournalError`
    before a single record is returned.
    """
    header, finished, parts = validate_journal(path)
    return header, finished, itertools.chain.from_iterable(_records(q) for q in parts)


def validate_journal(path: str | os.PathLike[str]) -> tuple[JournalHeader, bool, list[Path]]:
    """Validate the whole journal like :func:`read_journal`; return its header,
    whether it finished, and its files in record order (segments, then itself),
    each to stream with :func:`record_tuples`."""
    p = Path(path)
    header, finished = _validate(p)
    return header, finished, [*_segments(p, header), p]


def journal_files(path: str | os.PathLike[str]) -> list[Path]:
    """The journal's files: its segments (named in its header), then itself.

    A journal left empty (its relabel was killed before the header was
    written, so before any label changed) has segments that no header
    names yet: ``PATH.1``, ``PATH.2``... as long as each is a segment with
    that number.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise JournalError(f"cannot read journal {p}: {exc.strerror}") from exc
    if st.st_size == 0 and stat.S_ISREG(st.st_mode):
        found = []
        for n in itertools.count(1):
            # A crash may also have lost a segment's unsynced header: empty is ours too.
            seg = p.parent / f"{p.name}.{n}"
            try:
                st = seg.lstat()
                if not stat.S_ISREG(st.st_mode) or (
                    st.st_size and _validate(seg)[0].extra.get("segment") != n
                ):
                    break
            except (OSError, JournalError):
                break
            found.append(seg)
        return [*found, p]
    header, _ = _validate(p)
    names = header.extra.get("segments", [])
    if not isinstance(names, list):
        raise JournalError(f"{p}: damaged segment list {_q(str(names))}")
    return [p.parent / n for n in names if isinstance(n, str) and "/" not in n] + [p]


def remove_journal(path: str | os.PathLike[str]) -> None:
    """Delete a journal and its segments (after a restore, or when it is not needed)."""
    for f in journal_files(path):
        f.unlink(missing_ok=True)


def _segments(path: Path, header: JournalHeader) -> list[Path]:
    names = header.extra.get("segments", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise JournalError(f"{path}: damaged segment list {_q(str(names))}")
    found = []
    for n, name in enumerate(names, 1):
        if "/" in name or name in ("", ".", ".."):
            raise JournalError(f"{path}: segment name {_q(name)} is not a plain file name")
        seg = path.parent / name
        if not seg.exists():
            raise JournalError(f"{path}: segment {seg} is missing")
        seg_header, _ = _validate(seg)
        if (
            seg_header.extra.get("segment") != n
            or (seg_header.root, seg_header.dev, seg_header.ino, seg_header.target)
            != (header.root, header.dev, header.ino, header.target)
            or seg_header.started != header.started
        ):
            raise JournalError(f"{seg} is not segment {n} of {path}")
        found.append(seg)
    return found


def _open(path: Path) -> Any:
    try:
        return path.open("r", encoding="ascii", newline="\n")
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror}") from exc


def _validate(path: Path) -> tuple[JournalHeader, bool]:
    with _open(path) as fh:
        try:
            magic = fh.readline()
            meta_line = fh.readline()
            if not magic:
                raise JournalError(
                    f"journal {path} is empty: its relabel stopped before the journal was"
                    " durable, so before any label changed; nothing to restore"
                    " (remove_journal() deletes it)"
                )
            if magic.rstrip("\n") != MAGIC:
                raise JournalError(f"{path} is not an mcslabel journal (first line {_q(magic)})")
            try:
                meta = json.loads(meta_line)
                header = JournalHeader(
                    root=str(meta.pop("root")),
                    dev=int(meta.pop("dev")),
                    ino=int(meta.pop("ino")),
                    target=str(meta.pop("target")),
                    started=str(meta.pop("started")),
                    extra=meta,
                )
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
                raise JournalError(f"{path}: damaged header line {_q(meta_line)}") from exc
            finished = False
            for lineno, line in enumerate(fh, 3):
                if not line.endswith("\n"):
                    break  # torn final write
                if finished:
                    raise JournalError(f"{path}:{lineno}: record after the end line")
                if line.startswith(END + "\t"):
                    finished = True
                    continue
                m = RECORD.fullmatch(line, 0, len(line) - 1)
                if not m:
                    raise JournalError(f"{path}:{lineno}: damaged record {_q(line)}")
                if not _inside_root(m.group(5)):
                    # Refused here, before restore changes a single label.
                    raise JournalError(
                        f"{path}:{lineno}: record path {_q(m.group(5))} leaves the root"
                    )
        except UnicodeDecodeError as exc:
            raise JournalError(f"{path}: not ASCII text ({exc.reason})") from exc
    return header, finished


def _inside_root(field: str) -> bool:
    """Whether a record's path names an entry under the root (``.``: the root)."""
    if field == ".":
        return True
    if "\\" not in field:  # nearly every record: three substring searches
        wrapped = f"/{field}/"
        return "//" not in wrapped and "/./" not in wrapped and "/../" not in wrapped
    rel = b"/" + unescape(field) + b"/"
    return b"\0" not in rel and b"//" not in rel and b"/./" not in rel and b"/../" not in rel


def _records(path: Path) -> Iterator[JournalRecord]:
    for dev, ino, old, relpath in record_tuples(path):
        yield JournalRecord(dev, ino, old, relpath)


def record_tuples(path: Path) -> Iterator[tuple[int, int, bytes | None, bytes]]:
    """The records of one validated journal file as ``(dev, ino, old, relpath)``
    (no object per record: restore streams millions)."""
    with _open(path) as fh:
        fh.readline()
        fh.readline()
        for line in fh:
            if not line.endswith("\n") or line.startswith(END + "\t"):
                break
            m = RECORD.fullmatch(line, 0, len(line) - 1)
            if m is None or not _inside_root(m.group(5)):
                raise JournalError(f"{path}: changed since it was validated: {_q(line)}")
            kind, label = m.group(3), m.group(4)
            old = None if kind == "-" else unescape(label) + (b"\0" if kind == "Z" else b"")
            path_field = m.group(5)
            rel = path_field.encode("ascii") if "\\" not in path_field else unescape(path_field)
            yield int(m.group(1)), int(m.group(2)), old, rel


__all__ = [
    "END",
    "MAGIC",
    "JournalHeader",
    "JournalRecord",
    "JournalWriter",
    "escape",
    "format_record",
    "journal_files",
    "label_field",
    "read_journal",
    "record_line",
    "record_tuples",
    "remove_journal",
    "unescape",
    "validate_journal",
    "wait_unlocked",
]
