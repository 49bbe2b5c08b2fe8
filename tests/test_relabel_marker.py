"""The opt-in unchanged-tree marker (``trust_marker=True``), on real files.

Each speed-up must change no result: a tree changed in any way a directory
records is walked again and ends with the same labels, journal and restore
as without the marker; a relabel or restore killed midway leaves no marker
that could vouch for a half-changed tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mcslabel.relabeling.engine import relabel, restore
from mcslabel.relabeling.journal import read_journal, wait_unlocked
from mcslabel.relabeling.markers import MARKER_XATTR, Marker, read_marker
from tests.xattrs import XATTR, every, label

OLD = b"system_u:object_r:tmp_t:s0\0"
A = b"system_u:object_r:container_file_t:s0:c5,c6\0"


def make(vol: Path, dirs: int = 20, files: int = 20) -> None:
    vol.mkdir()
    for d in range(dirs):
        sub = vol / f"d{d:03d}"
        sub.mkdir()
        (sub / "inner").mkdir()
        for f in range(files):
            (sub / f"f{f:03d}").write_text("x")
        (sub / "inner" / "g").write_text("x")
    for p in every(vol):
        os.setxattr(p, XATTR, OLD, follow_symlinks=False)


def marker_of(vol: Path) -> Marker | None:
    fd = os.open(vol, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return read_marker(fd)
    finally:
        os.close(fd)


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    v = tmp_path / "vol"
    make(v)
    time.sleep(0.05)  # a directory changed just before a walk is not trusted (coarse clock)
    first = relabel(v, level="s0:c5,c6", trust_marker=True)
    assert first.ok and not first.skipped_by_marker
    return v


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unchanged_tree_is_skipped_and_stays_right(vol: Path, workers: int) -> None:
    marker = marker_of(vol)
    assert marker is not None and marker.target == A[:-1].decode()
    assert marker.entries == len(every(vol))
    again = relabel(vol, level="s0:c5,c6", trust_marker=True, workers=workers)
    assert again.ok and again.skipped_by_marker
    assert (again.changed, again.unchanged) == (0, len(every(vol)))
    assert {label(p) for p in every(vol)} == {A}


def test_without_trust_marker_the_tree_is_walked(vol: Path) -> None:
    again = relabel(vol, level="s0:c5,c6")
    assert not again.skipped_by_marker and again.unchanged == len(every(vol))


def test_another_label_walks_and_a_restore_voids_the_marker(vol: Path, tmp_path: Path) -> None:
    other = relabel(vol, level="s0:c7,c8", trust_marker=True, journal=tmp_path / "j")
    assert not other.skipped_by_marker and other.changed == len(every(vol))
    assert restore(tmp_path / "j").restored == len(every(vol))
    assert marker_of(vol) is None
    back = relabel(vol, level="s0:c5,c6", trust_marker=True)
    assert not back.skipped_by_marker  # no marker after the restore: walked


def _create(vol: Path) -> Path:
    new = vol / "d007" / "inner" / "new"
    new.write_text("x")
    os.setxattr(new, XATTR, OLD)
    return new


def _rename_in(vol: Path) -> Path:
    outside = vol.parent / "outside"
    outside.write_text("x")
    os.setxattr(outside, XATTR, OLD)
    os.rename(outside, vol / "d003" / "moved")
    return vol / "d003" / "moved"


def _new_subdir(vol: Path) -> Path:
    sub = vol / "d011" / "inner" / "deeper"
    sub.mkdir()
    os.setxattr(sub, XATTR, OLD)
    return sub


def _top_entry(vol: Path) -> Path:
    top = vol / "top-file"
    top.write_text("x")
    os.setxattr(top, XATTR, OLD)
    return top


def _hard_link(vol: Path) -> Path:
    outside = vol.parent / "linked"
    outside.write_text("x")
    os.setxattr(outside, XATTR, OLD)
    os.link(outside, vol / "d002" / "link")
    return vol / "d002" / "link"


def _subdir_relabeled(vol: Path) -> Path:
    # a directory's own label changed (its ctime moves, not its mtime)
    os.setxattr(vol / "d005" / "inner", XATTR, OLD)
    return vol / "d005" / "inner"


@pytest.mark.parametrize(
    "change",
    [_create, _rename_in, _new_subdir, _top_entry, _hard_link, _subdir_relabeled],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_change_a_directory_records_makes_it_walk_again(
    vol: Path, change: Callable[[Path], Path]
) -> None:
    time.sleep(0.05)  # past the marker's walk: file times are coarse
    wrong = change(vol)
    assert label(wrong) == OLD
    time.sleep(0.05)  # a change just before a walk keeps the next one walking too
    again = relabel(vol, level="s0:c5,c6", trust_marker=True)
    assert again.ok and not again.skipped_by_marker
    assert again.changed == 1
    assert {label(p) for p in every(vol)} == {A}
    assert relabel(vol, level="s0:c5,c6", trust_marker=True).skipped_by_marker


def test_what_it_misses_a_label_changed_in_place(vol: Path) -> None:
    # Documented: a label changed on an existing file touches no directory.
    os.setxattr(vol / "d001" / "f001", XATTR, OLD)
    again = relabel(vol, level="s0:c5,c6", trust_marker=True)
    assert again.skipped_by_marker
    assert label(vol / "d001" / "f001") == OLD
    assert relabel(vol, level="s0:c5,c6").changed == 1  # a plain relabel finds it


def test_a_mount_inside_disables_the_marker(tmp_path: Path) -> None:
    v = tmp_path / "vol"
    make(v, 2, 2)
    (v / "mnt").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "x", str(v / "mnt")], check=True)
    try:
        assert relabel(v, level="s0:c5,c6", trust_marker=True).ok
        assert marker_of(v) is None
        assert not relabel(v, level="s0:c5,c6", trust_marker=True).skipped_by_marker
    finally:
        subprocess.run(["umount", "-l", str(v / "mnt")], check=True)


def test_a_skip_with_a_journal_writes_an_empty_finished_journal(vol: Path, tmp_path: Path) -> None:
    journal = tmp_path / "j"
    again = relabel(vol, level="s0:c5,c6", trust_marker=True, journal=journal)
    assert again.skipped_by_marker and again.journal == journal
    _, finished, records = read_journal(journal)
    assert finished and list(records) == []
    assert restore(journal).restored == 0
    assert {label(p) for p in every(vol)} == {A}


def test_same_labels_journal_and_restore_with_and_without_the_marker(tmp_path: Path) -> None:
    results = []
    for name, trust in (("plain", False), ("marked", True)):
        v = tmp_path / name
        make(v)
        time.sleep(0.05)
        relabel(v, level="s0:c5,c6", trust_marker=trust)
        time.sleep(0.05)
        _create(v)
        journal = tmp_path / f"j-{name}"
        r = relabel(v, level="s0:c5,c6", trust_marker=trust, journal=journal, workers=0)
        _, _, records = read_journal(journal)
        paths = sorted((rec.relpath, rec.old) for rec in records)
        labels = sorted((str(p.relative_to(v)), label(p)) for p in every(v))
        undone = restore(journal)
        after = sorted((str(p.relative_to(v)), label(p)) for p in every(v))
        results.append((r.changed, paths, labels, undone.restored, after))
    assert results[0] == results[1]


def test_a_forged_or_damaged_marker_is_ignored(vol: Path) -> None:
    os.setxattr(vol, MARKER_XATTR, b"mcslabel-marker 1 garbage")
    os.setxattr(vol / "d000" / "f000", XATTR, OLD)
    time.sleep(0.05)
    (vol / "d000" / "touch").write_text("x")
    again = relabel(vol, level="s0:c5,c6", trust_marker=True)
    assert not again.skipped_by_marker and label(vol / "d000" / "f000") == A


KILLED = textwrap.dedent(
    """
    import sys
    from mcslabel.relabeling import testing
    from mcslabel.relabeling.engine import relabel, restore

    def progress(p):
        print("progress", p.changed, flush=True)

    with testing.slow_directories(0.02):
        if sys.argv[1] == "relabel":
            relabel(sys.argv[2], level="s0:c7,c8", workers=2, progress=progress,
                    journal=sys.argv[3])
    print("finished", flush=True)
    """
)


def test_a_relabel_killed_midway_leaves_no_marker(tmp_path: Path) -> None:
    vol = tmp_path / "big"
    make(vol, 200, 20)
    time.sleep(0.05)
    assert relabel(vol, level="s0:c5,c6", trust_marker=True).ok
    assert marker_of(vol) is not None
    # Killed while relabeling to another level: labels changed, the top not yet.
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, "relabel", str(vol), str(tmp_path / "j")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("progress") and int(line.split()[1]) > 0:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    os.close(wait_unlocked(tmp_path / "j"))
    assert label(vol) == A  # the top keeps its label: the marker alone would vouch
    assert marker_of(vol) is None
    again = relabel(vol, level="s0:c5,c6", trust_marker=True)
    assert not again.skipped_by_marker and again.changed > 0
    assert {label(p) for p in every(vol)} == {A}
