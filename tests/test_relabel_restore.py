"""Restore as users run it: worker processes by segment, killed midway, raced.

Every speed-up must change no result: a parallel restore ends with the same
labels and counts as a restore in the calling process, also when it is
killed with SIGKILL and run again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mcslabel.relabeling.engine import relabel
from mcslabel.relabeling.journal import journal_files
from mcslabel.relabeling.restoration import restore
from tests.xattrs import XATTR, every, label

OLDS = [b"system_u:object_r:tmp_t:s0\0", b"system_u:object_r:etc_t:s0", None]


def make(vol: Path, dirs: int, files: int) -> dict[Path, bytes | None]:
    """A tree with three kinds of old label (NUL, no NUL, none) and hard links."""
    vol.mkdir()
    for d in range(dirs):
        sub = vol / f"d{d:03d}"
        sub.mkdir()
        for f in range(files):
            (sub / f"f{f:03d}").write_text("x")
        os.link(sub / "f000", sub / "link")
        os.symlink("f001", sub / "sym")
    for i, p in enumerate(every(vol)):
        old = OLDS[i % 3]
        if old is not None and not p.is_symlink() and p.name != "link":
            os.setxattr(p, XATTR, old)
    return {p: label(p) for p in every(vol)}


@pytest.fixture
def twins(tmp_path: Path) -> tuple[Path, Path, dict[Path, bytes | None]]:
    a, b = tmp_path / "a", tmp_path / "b"
    before = make(a, 30, 40)
    subprocess.run(["cp", "-a", str(a), str(b)], check=True)  # hard links stay links
    for p in every(a):  # the labels exactly (cp -a may leave security.selinux behind)
        q = b / p.relative_to(a)
        if (old := label(p)) is not None:
            os.setxattr(q, XATTR, old, follow_symlinks=False)
    return a, b, before


def test_a_parallel_restore_gives_what_a_serial_one_gives(
    tmp_path: Path, twins: tuple[Path, Path, dict[Path, bytes | None]]
) -> None:
    a, b, before = twins
    results = []
    for vol, workers in ((a, 0), (b, 2)):
        journal = tmp_path / f"j-{vol.name}"
        r = relabel(vol, level="s0:c5,c6", workers=2, journal=journal)
        assert r.ok
        assert len(journal_files(journal)) == 3  # two segments and the main file
        undone = restore(journal, workers=workers)
        labels = {p.relative_to(vol): label(p) for p in every(vol)}
        results.append((undone.restored, undone.unchanged, undone.replaced, undone.failed, labels))
    assert results[0] == results[1]
    assert results[0][1:4] == (0, 0, 0)
    assert results[1][4] == {p.relative_to(a): old for p, old in before.items()}


def test_a_parallel_dry_run_changes_nothing(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    make(vol, 10, 10)
    relabel(vol, level="s0:c5,c6", workers=2, journal=tmp_path / "j")
    after = {p: label(p) for p in every(vol)}
    dry = restore(tmp_path / "j", dry_run=True, workers=2)
    assert dry.restored == len(after) - 10  # the second link of each pair is one inode
    assert {p: label(p) for p in every(vol)} == after


def test_entries_replaced_since_are_left_alone_by_the_workers(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    before = make(vol, 10, 10)
    outside = tmp_path / "outside"
    outside.write_text("x")
    os.setxattr(outside, XATTR, b"system_u:object_r:shadow_t:s0\0")
    relabel(vol, level="s0:c5,c6", workers=2, journal=tmp_path / "j")
    (vol / "d001" / "f002").unlink()
    os.symlink(outside, vol / "d001" / "f002")  # a symlink out where a file was
    shutil.rmtree(vol / "d002")
    os.symlink(tmp_path, vol / "d002")  # a directory swapped for a symlink
    os.setxattr(vol / "d003" / "f004", XATTR, b"system_u:object_r:user_tmp_t:s0\0")
    undone = restore(tmp_path / "j", workers=2)
    assert undone.replaced >= 2  # the file swapped for a symlink, the one relabeled since
    assert {e.errno for e in undone.errors} == {20}  # d002 is no directory now: never followed
    assert label(outside) == b"system_u:object_r:shadow_t:s0\0"
    assert label(vol / "d003" / "f004") == b"system_u:object_r:user_tmp_t:s0\0"
    assert label(vol / "d004" / "f004") == before[vol / "d004" / "f004"]


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from mcslabel.relabeling import restoration

    setx, removex = os.setxattr, os.removexattr

    def slow_set(*a, **k):
        time.sleep(0.0005)  # worker processes inherit this: a window to kill in
        return setx(*a, **k)

    def slow_remove(*a, **k):
        time.sleep(0.0005)
        return removex(*a, **k)

    os.setxattr, os.removexattr = slow_set, slow_remove
    print("started", flush=True)
    restoration.restore(sys.argv[1], workers=2)
    print("finished", flush=True)
    """
)


def test_a_restore_killed_midway_and_run_again_restores_everything(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    before = make(vol, 40, 50)
    journal = tmp_path / "j"
    assert relabel(vol, level="s0:c5,c6", workers=2, journal=journal).ok
    target = label(vol / "d000" / "f000")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(journal)], stdout=subprocess.PIPE)
    assert child.stdout is not None
    child.stdout.readline()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill once some, not all, labels are back
        done = sum(label(p) == before[p] for p in before)
        if done > 50:
            break
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    time.sleep(0.2)  # its workers die by PDEATHSIG
    now = {p: label(p) for p in every(vol)}
    assert any(v == target for v in now.values()), "the kill came too late to be midway"
    assert any(now[p] == before[p] and before[p] != target for p in before)
    again = restore(journal)
    assert again.ok and again.replaced == 0
    assert {p: label(p) for p in every(vol)} == before
