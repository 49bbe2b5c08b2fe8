"""Holes found by attacking relabel and restore (issue 17), on real mounts and files.

Every mount here is real (root mounts tmpfs and bind mounts inside a
temporary volume and unmounts them after); labels are real xattrs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcslabel.errors import RefusedPath
from mcslabel.relabeling.engine import relabel, restore
from mcslabel.relabeling.journal import read_journal
from tests.xattrs import XATTR, every, label

OLD = b"system_u:object_r:tmp_t:s0\0"
PRIVATE = b"system_u:object_r:container_file_t:s0:c5,c6\0"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Mount points to unmount (lazily, last first) after the test."""
    made: list[Path] = []
    yield made
    for point in reversed(made):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _tmpfs(point: Path, mounts: list[Path]) -> None:
    point.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "mcslabel-test", str(point))
    mounts.append(point)


def _bind(source: Path, point: Path, mounts: list[Path]) -> None:
    point.mkdir(parents=True, exist_ok=True)
    _run("mount", "--bind", str(source), str(point))
    mounts.append(point)


def _labeled_volume(tmp_path: Path, mounts: list[Path]) -> Path:
    """The issue's tree: V/own on the volume, V/t a tmpfs with f1 and a subdirectory."""
    vol = tmp_path / "V"
    vol.mkdir()
    _tmpfs(vol / "t", mounts)
    (vol / "t" / "sub").mkdir()
    for p in (vol / "t" / "f1", vol / "t" / "sub" / "f2", vol / "own"):
        p.write_text("x")
    for p in every(vol):
        os.setxattr(p, XATTR, OLD)
    return vol


@pytest.mark.parametrize("workers", [0, 2])
def test_a_crossed_mount_is_journaled_with_its_own_device_and_restores(
    tmp_path: Path, mounts: list[Path], workers: int
) -> None:
    vol = _labeled_volume(tmp_path, mounts)
    journal = tmp_path / "J"
    result = relabel(vol, level="s0:c5,c6", one_file_system=False, journal=journal, workers=workers)
    assert result.ok and result.changed == 6
    assert {label(p) for p in every(vol)} == {PRIVATE}
    _, _, records = read_journal(journal)
    devices = {r.relpath: r.dev for r in records}
    tmpfs_dev = os.stat(vol / "t").st_dev
    assert tmpfs_dev != os.stat(vol).st_dev
    assert devices[b"t"] == devices[b"t/f1"] == devices[b"t/sub/f2"] == tmpfs_dev
    assert devices[b"own"] == devices[b"."] == os.stat(vol).st_dev
    undone = restore(journal)
    assert (undone.restored, undone.replaced, undone.unchanged, undone.failed) == (6, 0, 0, 0)
    assert {label(p) for p in every(vol)} == {OLD}


def test_the_cli_round_trip_of_a_crossed_mount(tmp_path: Path, mounts: list[Path]) -> None:
    vol = _labeled_volume(tmp_path, mounts)
    journal = tmp_path / "J"
    mcslabel = str(Path(sys.executable).with_name("mcslabel"))
    subprocess.run(
        [mcslabel, "relabel", vol, "--level=s0:c5,c6", "--cross-mounts", f"--journal={journal}"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [mcslabel, "restore", str(journal)], check=True, capture_output=True, text=True
    ).stdout
    assert "restored 6," in out and "replaced since 0" in out
    assert label(vol / "t" / "f1") == OLD


def test_two_files_with_one_inode_number_on_two_devices_are_both_labeled(
    tmp_path: Path, mounts: list[Path]
) -> None:
    # Two fresh tmpfs mounts hand out the same inode numbers: the serial walk
    # once took the second for another link of the first and left it alone.
    vol = tmp_path / "V"
    vol.mkdir()
    for side in ("a", "b"):
        _tmpfs(vol / side, mounts)
        (vol / side / "f").write_text("x")
    assert os.stat(vol / "a" / "f").st_ino == os.stat(vol / "b" / "f").st_ino
    result = relabel(
        vol, level="s0:c5,c6", one_file_system=False, journal=tmp_path / "J", workers=0
    )
    assert result.ok
    assert label(vol / "a" / "f") == label(vol / "b" / "f") == PRIVATE


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A labeled directory under /dev/shm (a refused tree on another file system)."""
    path = Path("/dev/shm") / f"mcslabel-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    (path / "inside").write_text("x")
    for p in (path, path / "inside"):
        os.setxattr(p, XATTR, OLD)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bind_of_a_refused_tree_on_another_file_system_is_not_entered(
    tmp_path: Path, mounts: list[Path], shm_dir: Path, workers: int
) -> None:
    vol = tmp_path / "V"
    vol.mkdir()
    (vol / "mine").write_text("x")
    _bind(shm_dir, vol / "shm", mounts)
    result = relabel(vol, level="s0:c5,c6", one_file_system=False, workers=workers)
    assert not result.ok and not result.complete
    assert label(shm_dir / "inside") == OLD and label(shm_dir) == OLD
    assert label(vol / "mine") == PRIVATE
    [error] = result.errors
    assert error.path == "shm"
    assert f"bind mount of {shm_dir}" in error.message
    assert "system directory /dev" in error.message
    # Named directly, it is refused as it always was.
    with pytest.raises(RefusedPath, match=str(shm_dir)):
        relabel(vol / "shm", level="s0:c5,c6")


def test_a_bind_of_a_cgroup_hierarchy_is_not_entered(tmp_path: Path, mounts: list[Path]) -> None:
    cgroups = Path("/sys/fs/cgroup")
    sources = [p for p in sorted(cgroups.iterdir()) if p.is_dir() and os.path.ismount(p)]
    if not sources:
        sources = [p for p in sorted(cgroups.iterdir()) if p.is_dir()] or [cgroups]
    source = sources[0]
    vol = tmp_path / "V"
    vol.mkdir()
    _bind(source, vol / "cg", mounts)
    result = relabel(vol, level="s0:c5,c6", one_file_system=False, dry_run=True, workers=0)
    assert result.changed == 0 and not result.complete  # nothing of the cgroup tree
    [error] = result.errors
    assert f"bind mount of {source}" in error.message


def test_a_plain_tmpfs_mounted_inside_is_still_crossed(tmp_path: Path, mounts: list[Path]) -> None:
    vol = _labeled_volume(tmp_path, mounts)
    result = relabel(vol, level="s0:c5,c6", one_file_system=False, workers=0)
    assert result.ok and label(vol / "t" / "f1") == PRIVATE


def test_mcslabel_state_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = Path("/var/lib/mcslabel")
    (state / "journals").mkdir(parents=True, exist_ok=True)
    for path in (state, state / "journals"):
        with pytest.raises(RefusedPath, match="mcslabel state"):
            relabel(path, level="s0:c5,c6", dry_run=True)
    # A store named by $MCSLABEL_STORE: its directory and what contains it.
    reg = tmp_path / "data" / "registry"
    reg.mkdir(parents=True)
    (reg / "labels.db").write_bytes(b"")
    (tmp_path / "data" / "volume").mkdir()
    monkeypatch.setenv("MCSLABEL_STORE", f"sqlite://{reg / 'labels.db'}")
    for path in (reg, tmp_path / "data"):
        with pytest.raises(RefusedPath, match="mcslabel state"):
            relabel(path, level="s0:c5,c6", dry_run=True)
    assert relabel(tmp_path / "data" / "volume", level="s0:c5,c6", dry_run=True).ok
    # $XDG_STATE_HOME/mcslabel likewise.
    xdg = tmp_path / "xdg"
    (xdg / "mcslabel").mkdir(parents=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(xdg))
    with pytest.raises(RefusedPath, match="mcslabel state"):
        relabel(xdg, level="s0:c5,c6", dry_run=True)


def test_hard_links_are_journaled_once_by_a_parallel_relabel(tmp_path: Path) -> None:
    # Thousands of link pairs per directory: a worker's batch of wrong labels
    # fills the journal batch in its middle, and links read before that flush
    # were once journaled (and counted "already right" by restore) a second time.
    vol = tmp_path / "V"
    vol.mkdir()
    for k in range(3):
        (vol / f"d{k}").mkdir()
        for i in range(2000):
            first = vol / f"d{k}" / f"a{i}"
            first.write_text("x")
            os.link(first, vol / f"d{k}" / f"b{i}")
    for p in every(vol):
        os.setxattr(p, XATTR, OLD)
    journal = tmp_path / "J"
    result = relabel(vol, level="s0:c5,c6", workers=2, journal=journal)
    assert result.ok
    inodes = {os.stat(p, follow_symlinks=False).st_ino for p in every(vol)}
    assert result.changed == len(inodes)
    _, _, records = read_journal(journal)
    keys = [(r.dev, r.ino) for r in records]
    assert len(keys) == len(set(keys)) == len(inodes)
    undone = restore(journal)
    assert (undone.restored, undone.unchanged, undone.replaced) == (len(inodes), 0, 0)
    assert {label(p) for p in every(vol)} == {OLD}
