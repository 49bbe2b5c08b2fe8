"""The walk *by directory* (a tree whose top label is already right), on real files and xattrs.

In that walk each directory's entries are labeled by the worker that owns the
directory, so two links of one inode can sit with different workers: these
tests check that such inodes are still written and journaled once, that
directories without subdirectories skipped by the other workers are still
labeled, and that a very big directory is shared by inode.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcslabel.relabeling import testing
from mcslabel.relabeling.engine import relabel, restore
from mcslabel.relabeling.journal import JournalWriter, read_journal
from tests.xattrs import XATTR, every, label

PRIVATE = b"system_u:object_r:container_file_t:s0:c1,c2\0"
OLD = b"system_u:object_r:user_tmp_t:s0\0"


def touch(path: Path, value: bytes | None = OLD) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    if value is not None:
        os.setxattr(fd, XATTR, value)
    os.close(fd)


def mkdir(path: Path, value: bytes | None = OLD) -> None:
    path.mkdir()
    if value is not None:
        os.setxattr(path, XATTR, value)


@pytest.fixture
def specs() -> Iterator[list[testing.WalkPlan]]:
    """The plan of every parallel walk in the test (to check which split it used)."""
    with testing.recorded_walks() as plans:
        yield plans


def nested_tree(vol: Path) -> Counter[str]:
    """Directories three levels deep (leaves and inner ones, files at every
    level), half of the entries wrong, a few without a label; the top right.
    Returns how many entries were made wrong and right."""
    made: Counter[str] = Counter()
    mkdir(vol, PRIVATE)
    for a in range(12):
        da = vol / f"a{a}"
        mkdir(da, OLD if a % 2 else PRIVATE)
        made["wrong" if a % 2 else "right"] += 1
        for b in range(5):
            db = da / f"b{b}"
            mkdir(db, PRIVATE if b % 2 else OLD)
            made["right" if b % 2 else "wrong"] += 1
            for c in range(3 if b < 3 else 0):  # some b's are leaves
                dc = db / f"c{c}"
                mkdir(dc, None if c == 0 else OLD)
                made["wrong"] += 1
                for f in range(4):
                    touch(dc / f"f{f}", PRIVATE if f == 3 else OLD)
                    made["right" if f == 3 else "wrong"] += 1
            for f in range(3):
                touch(db / f"g{f}", PRIVATE if f == 0 else None)
                made["right" if f == 0 else "wrong"] += 1
        touch(da / "top", OLD)
        made["wrong"] += 1
    touch(vol / "file-in-root", OLD)
    made["wrong"] += 1
    return made


@pytest.mark.parametrize("workers", [2, 3])
def test_a_tree_with_a_right_top_is_walked_by_directory_and_every_label_ends_right(
    tmp_path: Path, workers: int, specs: list[testing.WalkPlan]
) -> None:
    vol = tmp_path / "vol"
    made = nested_tree(vol)
    result = relabel(vol, level="s0:c1,c2", workers=workers)
    assert [s.by_directory for s in specs] == [True]
    assert specs[0].nlink_counts_subdirs  # ext4 / tmpfs keep 2 + subdirectories
    assert result.ok, result.errors
    assert result.changed == made["wrong"]
    assert result.unchanged == made["right"] + 1  # and the top
    assert {label(p) for p in every(vol)} == {PRIVATE}


def test_a_tree_with_a_wrong_top_is_walked_by_inode(
    tmp_path: Path, specs: list[testing.WalkPlan]
) -> None:
    vol = tmp_path / "vol"
    nested_tree(vol)
    os.setxattr(vol, XATTR, OLD)
    result = relabel(vol, level="s0:c1,c2", workers=2)
    assert [s.by_directory for s in specs] == [False]
    assert result.ok
    assert {label(p) for p in every(vol)} == {PRIVATE}


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("journaled", [False, True])
def test_hard_links_in_other_workers_directories_are_written_and_journaled_once(
    tmp_path: Path, workers: int, journaled: bool, specs: list[testing.WalkPlan]
) -> None:
    vol = tmp_path / "vol"
    mkdir(vol, PRIVATE)
    dirs = [vol / f"d{i}" for i in range(24)]  # owned by every worker (checked below)
    for d in dirs:
        mkdir(d, PRIVATE)
    inodes = 300
    for i in range(inodes):
        first = dirs[i % len(dirs)] / f"x{i}"
        touch(first, OLD)
        for j in (1, 7, 13):  # three more links, in other directories
            os.link(first, dirs[(i + j) % len(dirs)] / f"x{i}-{j}")
    owners = {testing.owner(os.stat(d).st_ino, workers) for d in dirs}
    assert owners == set(range(workers))  # the links really are split across workers
    before = {os.stat(p).st_ino: label(p) for p in every(vol)}
    journal = tmp_path / "j" if journaled else None
    result = relabel(vol, level="s0:c1,c2", workers=workers, journal=journal)
    assert [s.by_directory for s in specs] == [True]
    assert result.ok, result.errors
    assert result.changed == inodes  # each inode once, whichever worker got there first
    assert result.unchanged == 3 * inodes + len(dirs) + 1
    assert {label(p) for p in every(vol)} == {PRIVATE}
    if journal is not None:
        _, finished, records = read_journal(journal)
        assert finished
        written = Counter(r.ino for r in records)
        assert len(written) == inodes and set(written.values()) == {1}
        restore(journal)
        assert {os.stat(p).st_ino: label(p) for p in every(vol)} == before


def test_many_linked_wrong_entries_pass_through_several_locked_batches(
    tmp_path: Path, specs: list[testing.WalkPlan]
) -> None:
    vol = tmp_path / "vol"
    mkdir(vol, PRIVATE)
    a, b = vol / "a", vol / "b"
    mkdir(a, PRIVATE)
    mkdir(b, PRIVATE)
    n = 3 * testing.LINKED_BATCH + 5
    for i in range(n):
        touch(a / f"f{i}", None)  # no label at all: restored to none
        os.link(a / f"f{i}", b / f"f{i}")
    journal = tmp_path / "j"
    result = relabel(vol, level="s0:c1,c2", workers=2, journal=journal)
    assert specs[0].by_directory
    assert result.ok and result.changed == n and result.unchanged == n + 3
    _, _, stream = read_journal(journal)
    records = list(stream)
    assert len(records) == n and {r.old for r in records} == {None}
    restore(journal)
    assert all(label(a / f"f{i}") is None for i in range(n))


def test_a_big_directory_is_read_whole_by_its_owner(
    tmp_path: Path, specs: list[testing.WalkPlan]
) -> None:
    vol = tmp_path / "vol"
    mkdir(vol, PRIVATE)
    big = vol / "big"
    mkdir(big, OLD)
    names = [f"a-rather-long-file-name-{i:06d}" for i in range(3000)]
    for name in names:
        touch(big / name, OLD)
    mkdir(big / "sub", OLD)
    touch(big / "sub" / "f", OLD)
    result = relabel(vol, level="s0:c1,c2", workers=2)
    assert specs[0].by_directory
    assert result.ok
    assert result.changed == len(names) + 3
    assert {label(p) for p in every(vol)} == {PRIVATE}


def test_a_directory_growing_during_the_walk_keeps_no_old_entry_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, specs: list[testing.WalkPlan]
) -> None:
    # Workers that judged one directory differently (it grew past a size
    # threshold between their looks) once left its old entries to nobody while
    # the top got labeled. Staged here: the directory's owner has a full batch
    # to journal first and waits for a slow journal; the other worker walks
    # past the directory meanwhile; then the directory grows.
    vol = tmp_path / "vol"
    mkdir(vol, PRIVATE)
    candidates = [vol / f"d{i}" for i in range(300)]
    for d in candidates:
        mkdir(d, PRIVATE)
    grower = vol / os.listdir(vol)[0]  # listed first, so taken from the stack last
    mine = testing.owner(os.stat(grower).st_ino, 2)
    keep = [d for d in candidates if d != grower and testing.owner(d.stat().st_ino, 2) == mine]
    keep = keep[:100]
    for d in candidates:
        if d != grower and d not in keep:
            d.rmdir()
    for d in keep:
        for j in range(30):  # 3,000 wrong labels: more than one journal batch
            touch(d / f"f{j}", OLD)
    old_entries = []
    while os.stat(grower).st_size < 48 * 1024:
        old_entries.append(grower / f"old-{'x' * 150}-{len(old_entries)}")
        touch(old_entries[-1], OLD)
    complete = JournalWriter.complete

    def slow_complete(self: JournalWriter) -> None:
        time.sleep(0.4)  # a slow disk: the other worker finishes its walk meanwhile
        for i in range(400):  # another process fills the directory
            touch(grower / f"new-{'y' * 150}-{i}", None)
        assert os.stat(grower).st_size > 64 * 1024
        complete(self)

    monkeypatch.setattr(JournalWriter, "complete", slow_complete)
    result = relabel(vol, level="s0:c1,c2", workers=2, journal=tmp_path / "j")
    assert specs[0].by_directory
    assert result.ok and result.complete
    assert {label(p) for p in old_entries} == {PRIVATE}
    assert {label(d / f"f{j}") for d in keep for j in range(30)} == {PRIVATE}


def test_nlink_is_trusted_only_where_the_file_system_keeps_it(tmp_path: Path) -> None:
    here = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert testing.nlink_counts_subdirs(here)  # ext4 or tmpfs here
        assert not testing.nlink_counts_subdirs(proc)  # procfs: st_nlink means nothing
    finally:
        os.close(here)
        os.close(proc)


def test_without_nlink_every_worker_lists_every_directory_and_nothing_is_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, specs: list[testing.WalkPlan]
) -> None:
    vol = tmp_path / "vol"
    made = nested_tree(vol)
    with testing.distrust_nlink():
        result = relabel(vol, level="s0:c1,c2", workers=2)
    assert specs[0].by_directory and not specs[0].nlink_counts_subdirs
    assert result.ok and result.changed == made["wrong"]
    assert {label(p) for p in every(vol)} == {PRIVATE}


def test_one_worker_never_walks_by_directory(tmp_path: Path, specs: list[testing.WalkPlan]) -> None:
    vol = tmp_path / "vol"
    made = nested_tree(vol)
    result = relabel(vol, level="s0:c1,c2", workers=1)
    assert [s.by_directory for s in specs] == [False]
    assert result.ok and result.changed == made["wrong"]


def test_a_subdirectory_moved_into_a_leaf_mid_walk_is_walked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, specs: list[testing.WalkPlan]
) -> None:
    # Staged: the move lands between the owner's fstat (st_nlink == 2, no
    # subdirectories) and its listing of the directory.
    vol = tmp_path / "vol"
    mkdir(vol, PRIVATE)
    for i in range(4):
        mkdir(vol / f"leaf{i}", PRIVATE)
        touch(vol / f"leaf{i}" / "f", OLD)
    elsewhere = tmp_path / "elsewhere"  # outside the tree: its move in is the event
    mkdir(elsewhere, PRIVATE)  # right itself: only a walk into it finds what is wrong
    for i in range(12):  # whoever's hash they fall to, only the finder can walk them
        mkdir(elsewhere / f"inner{i}", OLD)
        mkdir(elsewhere / f"inner{i}" / "deeper", PRIVATE)
        touch(elsewhere / f"inner{i}" / "deeper" / "g", OLD)
    listdir = os.listdir

    def listdir_after_a_move(fd: Any = ".") -> list[str]:
        where = Path(os.readlink(f"/proc/self/fd/{fd}")) if isinstance(fd, int) else None
        if where == vol / "leaf0" and elsewhere.exists():
            os.rename(elsewhere, where / "moved")
        return listdir(fd)

    monkeypatch.setattr(os, "listdir", listdir_after_a_move)
    result = relabel(vol, level="s0:c1,c2", workers=2)
    assert specs[0].by_directory
    assert result.ok
    moved = vol / "leaf0" / "moved"
    assert moved.is_dir()
    assert {label(p) for p in every(vol)} == {PRIVATE}  # the moved subtree too
