"""Documented hooks for tests of the relabel engine.

Tests of the parallel walk need to know which worker owns an inode, which
split a walk used, and sometimes to slow the workers down to stage a race.
These hooks give that without reaching into private modules; they cost
nothing when unused (one attribute check per directory).

- :func:`owner` and :data:`LINKED_BATCH`: which worker labels an inode, and
  how many multi-linked entries a worker labels per batch under the lock;
- :func:`nlink_counts_subdirs`: whether a file system's directory link
  counts can be trusted;
- :func:`recorded_walks`: the plan of every parallel walk started inside;
- :func:`distrust_nlink`: behave as on a file system whose ``st_nlink`` does
  not count subdirectories;
- :func:`slow_directories`: every worker forked inside sleeps before it reads
  a directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import attrs

from mcslabel.relabeling._split import HOOKS, Spec, nlink_counts_subdirs, owner
from mcslabel.relabeling._worker import LINKED_BATCH


@attrs.frozen
class WalkPlan:
    """How one parallel relabel split its work."""

    workers: int
    by_directory: bool  # shared by directory (top already right), else by inode
    nlink_counts_subdirs: bool


@contextlib.contextmanager
def recorded_walks() -> Iterator[list[WalkPlan]]:
    """Yield a list that receives the :class:`WalkPlan` of each parallel relabel."""
    plans: list[WalkPlan] = []

    def observe(spec: Spec, workers: int) -> None:
        plans.append(WalkPlan(workers, spec.by_directory, spec.nlink_counts_subdirs))

    HOOKS.observers.append(observe)
    try:
        yield plans
    finally:
        HOOKS.observers.remove(observe)


@contextlib.contextmanager
def distrust_nlink() -> Iterator[None]:
    """Walks inside treat every file system as not counting subdirectories in ``st_nlink``."""
    before, HOOKS.distrust_nlink = HOOKS.distrust_nlink, True
    try:
        yield
    finally:
        HOOKS.distrust_nlink = before


@contextlib.contextmanager
def slow_directories(seconds: float) -> Iterator[None]:
    """Workers forked inside sleep ``seconds`` before reading each directory."""
    before, HOOKS.directory_delay = HOOKS.directory_delay, seconds
    try:
        yield
    finally:
        HOOKS.directory_delay = before


__all__ = [
    "LINKED_BATCH",
    "WalkPlan",
    "distrust_nlink",
    "nlink_counts_subdirs",
    "owner",
    "recorded_walks",
    "slow_directories",
]
