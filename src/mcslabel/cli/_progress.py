"""A progress line for long commands: count, total, rate and ETA, on a TTY only.

The total of a relabel comes from a first count of the tree's names, run in
a thread beside the relabel (names only, no stat but one per directory), so
the relabel starts at once and the total, percentage and ETA appear when
the count is done; measured in docs/cli.md ("Progress"). A restore's total
is its journal's record count (the journal's lines, read once).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressLine:
    """Called with the engine's progress counts; redraws one stderr line in place."""

    def __init__(
        self,
        verb: str,
        noun: str = "entries",
        *,
        stream: TextIO | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.verb = verb
        self.noun = noun
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started = clock()
        self.total: int | None = None
        self.width = 0

    def line(self, done: int, changed: int, failed: int, now: float) -> str:
        elapsed = now - self.started
        parts = [f"{self.verb}: {done:,}"]
        if self.total:
            parts[0] += f"/{self.total:,}"
        parts[0] += f" {self.noun}"
        if self.total:
            parts[0] += f" ({min(done, self.total) * 100 // self.total}%)"
        rate = done / elapsed if elapsed >= 0.5 else 0.0
        if rate:
            parts.append(f"{rate:,.0f}/s")
        if self.total and rate:
            parts.append(f"ETA {_duration(max(self.total - done, 0) / rate)}")
        parts.append(f"{changed:,} changed")
        if failed:
            parts.append(f"{failed:,} failed")
        return "  ".join(parts)

    def __call__(self, p: Any) -> None:
        text = self.line(p.visited, p.changed, p.failed, self.clock())
        pad = " " * max(self.width - len(text), 0)  # erase a longer previous line
        self.stream.write(f"\r{text}{pad}")
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        if self.width:
            self.stream.write("\n")
            self.stream.flush()


def count_tree(root: str, *, one_file_system: bool = True) -> int:
    """Entries under ``root`` and ``root`` itself (names only; mounts as relabel sees them)."""
    try:
        root_dev = os.lstat(root).st_dev
    except OSError:
        return 0
    seen = 1
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    seen += 1
                    if entry.is_dir(follow_symlinks=False) and (
                        not one_file_system or entry.stat(follow_symlinks=False).st_dev == root_dev
                    ):
                        stack.append(entry.path)
        except OSError:
            continue
    return seen


def count_in_background(bar: ProgressLine, root: str, *, one_file_system: bool) -> None:
    """Set ``bar.total`` from a count of ``root`` made in a daemon thread."""

    def work() -> None:
        bar.total = count_tree(root, one_file_system=one_file_system)

    threading.Thread(target=work, name="mcslabel-count", daemon=True).start()


def count_lines(paths: Iterable[os.PathLike[str] | str]) -> int:
    """Newlines in ``paths`` (a journal's records, plus a few header lines)."""
    total = 0
    for path in paths:
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    total += chunk.count(b"\n")
        except OSError:
            continue
    return total


def wanted(args: Any) -> bool:
    """A progress line only for a person: stderr is a TTY and no --json."""
    return sys.stderr.isatty() and not getattr(args, "json", False)


__all__ = ["ProgressLine", "count_in_background", "count_lines", "count_tree", "wanted"]
