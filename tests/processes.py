"""The test process's own children, zombies included (for "no worker left" checks).

``os.waitpid(-1, WNOHANG)`` raising ``ChildProcessError`` says there is no
child at all, which an earlier test may have made false for reasons of its
own (multiprocessing's resource tracker outlives a spawn pool); comparing the
children before and after a call says what that call left behind.
"""

from __future__ import annotations

import os


def children() -> set[int]:
    """The pids of this process's children, running or zombie (``/proc``)."""
    found: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as fh:
                found.update(int(pid) for pid in fh.read().split())
        except OSError:
            continue  # a thread that has just ended
    return found
