"""Writing a journal: records durable before their labels change, segments, the lock.

See :mod:`mcslabel.relabeling.journal` for the format and its guarantees.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from mcslabel.errors import JournalError
from mcslabel.relabeling.journal_format import END, MAGIC, JournalHeader


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


__all__ = [
    "JournalWriter",
]
