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
import functools
import itertools
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from mcslabel.errors import JournalError
from mcslabel.errors import show_input as _q

MAGIC = "mcslabel-journal 1"
END = "mcslabel-journal-end"
_UNSAFE = re.compile(rb"[^\x20-\x5b\x5d-\x7e]")
_ESCAPED = re.compile(rb"\\x([0-9a-f]{2})")
_RECORD = re.compile(r"(\d+)\t(\d+)\t([ZR-])\t([^\t]*)\t([^\t]+)")


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


class JournalWriter:
    """Appends records; :meth:`sync_through` makes them durable (group commit)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: JournalHeader,
        *,
        lock: bool = True,
        sync_dir: bool = True,
        durable: bool = True,
        write_header: bool = True,
    ) -> None:
        self.path = Path(path)
        self._header_text = ""  # the header still to write (see with_segments(deferred=True))
        self._segments: list[JournalWriter] = []
        try:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600
            )
        except FileExistsError as exc:
            raise JournalError(f"journal {self.path} already exists; not overwriting it") from exc
        except OSError as exc:
            raise JournalError(f"cannot create journal {self.path}: {exc.strerror}") from exc
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = 0  # records written (not necessarily synced)
        self._synced = 0
        meta = {
            "root": header.root,
            "dev": header.dev,
            "ino": header.ino,
            "target": header.target,
            "started": header.started,
            **header.extra,
        }
        text = f"{MAGIC}\n{json.dumps(meta, sort_keys=True)}\n"
        try:
            if lock:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if write_header:
                self._write(text)
            else:
                self._header_text = text
            if durable:
                os.fsync(self._fd)
                if sync_dir:
                    _sync_dir(self.path.parent)
        except BaseException as exc:
            # Nothing was relabeled yet: leave neither the fd nor a headless file.
            self.close()
            self.path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise JournalError(f"cannot write journal {self.path}: {exc.strerror}") from exc
            raise

    @classmethod
    def with_segments(
        cls,
        path: str | os.PathLike[str],
        header: JournalHeader,
        count: int,
        *,
        deferred: bool = False,
    ) -> tuple[JournalWriter, list[JournalWriter]]:
        """The main journal and ``count`` segments (``PATH.1`` ...), all durable.

        With ``deferred``, the files are created (and ``PATH`` locked) but
        nothing is synced and ``PATH`` has no header yet: the caller starts
        its workers, which may read labels meanwhile, and calls the main
        writer's :meth:`complete` before any label changes. The ~5 syncs of a
        new journal then overlap the first batch's reads.
        """
        base = Path(path)
        names = [f"{base.name}.{n}" for n in range(1, count + 1)]
        segments: list[JournalWriter] = []
        try:
            for n, name in enumerate(names, 1):
                seg_header = attrs.evolve(header, extra={**header.extra, "segment": n})
                segments.append(
                    cls(
                        base.parent / name,
                        seg_header,
                        lock=False,
                        sync_dir=False,
                        durable=not deferred,
                    )
                )
            if not deferred:
                _sync_dir(base.parent)  # every segment exists before the journal names it
            main = cls(
                base,
                attrs.evolve(header, extra={**header.extra, "segments": names}),
                durable=not deferred,
                write_header=not deferred,
            )
        except BaseException:
            for seg in segments:
                seg.close()
                seg.path.unlink(missing_ok=True)
            raise
        if deferred:
            main._segments = segments
        return main, segments

    def complete(self) -> None:
        """Make a deferred journal durable, in the order that keeps it readable
        after a crash at any point: the segments, their directory entries, then
        the header that names them."""
        try:
            for seg in self._segments:
                os.fsync(seg.fileno())
            _sync_dir(self.path.parent)
            if self._header_text:
                self._write(self._header_text)
                self._header_text = ""
            os.fsync(self._fd)
            _sync_dir(self.path.parent)
        except OSError as exc:
            raise JournalError(f"cannot write journal {self.path}: {exc.strerror}") from exc

    def discard(self) -> None:
        """Close and delete a deferred journal, segments included, under
        which no label was changed (durable or not)."""
        for seg in self._segments:
            seg.close()
            seg.path.unlink(missing_ok=True)
        self.close()
        self.path.unlink(missing_ok=True)
        self._segments = []

    def fileno(self) -> int:
        return self._fd

    def _write(self, text: str) -> None:
        data = text.encode("ascii")
        try:
            while data:
                n = os.write(self._fd, data)
                data = data[n:]
        except OSError as exc:  # ENOSPC, EIO: the labels after this stay unchanged
            raise JournalError(f"cannot write journal {self.path}: {exc.strerror}") from exc

    def _sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise JournalError(f"cannot sync journal {self.path}: {exc.strerror}") from exc

    def append(self, lines: Iterable[str]) -> int:
        """Write formatted records; returns the sequence number to sync through."""
        text = "".join(lines)
        with self._lock:
            self._write(text)
            self._written += text.count("\n")
            return self._written

    def sync_through(self, seq: int) -> None:
        """Return once every record up to ``seq`` is on disk."""
        if self._synced >= seq:
            return
        with self._sync_lock:
            if self._synced >= seq:
                return
            target = self._written
            self._sync()
            self._synced = target

    def finish(self, summary: dict[str, Any]) -> None:
        self._write(f"{END}\t{json.dumps(summary, sort_keys=True)}\n")
        self._sync()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # A writer dropped by an exception between its creation and the
        # caller's try/finally (a Ctrl-C in between) still gives its fd back.
        if getattr(self, "_fd", -1) >= 0:
            self.close()


def _sync_dir(path: Path) -> None:
    # A new file's directory entry must survive a crash too.
    dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


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
                m = _RECORD.fullmatch(line, 0, len(line) - 1)
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
            m = _RECORD.fullmatch(line, 0, len(line) - 1)
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
