"""relabel() on real files with real security.selinux xattrs (ext4 under /tmp).

The kernel has no SELinux LSM, but root writes security.selinux on ext4, so
every label here is real and read back with getxattr.
"""

from __future__ import annotations

import itertools
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcslabel.context import Context
from mcslabel.errors import InvalidContext, InvalidInput, InvalidLevel
from mcslabel.relabeling.engine import RelabelProgress, relabel, restore, target_context
from mcslabel.relabeling.journal import read_journal
from tests.processes import children
from tests.xattrs import XATTR, label

PRIVATE = b"system_u:object_r:container_file_t:s0:c1,c2\0"
OLD = b"system_u:object_r:user_tmp_t:s0\0"


def entries(root: Path) -> Iterator[Path]:
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            yield Path(dirpath, name)


def snapshot(root: Path) -> dict[Path, tuple[bytes | None, int, int]]:
    """Every entry's label, mtime and (for files) content checksum-ish size."""
    out = {}
    for p in entries(root):
        st = p.lstat()
        out[p] = (label(p), st.st_mtime_ns, st.st_size)
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret").write_text("outside")
    os.setxattr(d / "secret", XATTR, b"system_u:object_r:shadow_t:s0\0")
    return d


@pytest.fixture
def volume(tmp_path: Path, outside: Path) -> Path:
    """A volume with every kind of entry, all labeled OLD."""
    v = tmp_path / "vol"
    (v / "a" / "b").mkdir(parents=True)
    (v / "a" / "file").write_bytes(b"content\n")
    (v / "a" / "b" / "deep").write_bytes(b"x" * 5000)
    os.link(v / "a" / "file", v / "hardlink")
    os.symlink(outside / "secret", v / "link-out")
    os.symlink(outside, v / "dirlink-out")
    os.mkfifo(v / "fifo")
    os.mknod(v / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(v / "sock"))
    sock.close()
    weird = os.fsencode(v) + b"/we\nird\t\\\xff name"
    with open(weird, "wb") as fh:
        fh.write(b"w")
    for p in entries(v):
        os.setxattr(p, XATTR, OLD, follow_symlinks=False)
    return v


@pytest.mark.parametrize("workers", [0, 2])
def test_private_level_labels_every_kind_of_entry(
    volume: Path, outside: Path, workers: int
) -> None:
    before = snapshot(volume)
    # atime older than mtime: with relatime, any read of the content would bump it.
    for p in entries(volume):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            os.utime(p, ns=(st.st_mtime_ns - 10**9, st.st_mtime_ns))
    files = [p for p in entries(volume) if stat.S_ISREG(p.lstat().st_mode)]
    atimes = {p: p.lstat().st_atime_ns for p in files}
    result = relabel(volume, level="s0:c2,c1", workers=workers)
    assert result.ok
    assert result.failed == 0
    assert str(result.context) == "system_u:object_r:container_file_t:s0:c1,c2"
    after = snapshot(volume)
    assert set(after) == set(before)
    for p, (lab, mtime, size) in after.items():
        assert lab == PRIVATE, p
        assert (mtime, size) == before[p][1:], p  # content and mtimes untouched
    for p in files:
        assert p.lstat().st_atime_ns == atimes[p], p  # content never read
    # 12 entries + root, one of them a second link of an inode
    assert result.changed == len(after) - 1
    assert result.unchanged == 1
    assert label(outside / "secret") == b"system_u:object_r:shadow_t:s0\0"
    assert label(outside) is None
    assert (volume / "a" / "file").read_bytes() == b"content\n"


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
@pytest.mark.parametrize("use_xattrat", [True, False])
def test_every_engine_variant_agrees(volume: Path, workers: int, use_xattrat: bool) -> None:
    result = relabel(volume, level="s0:c1,c2", workers=workers, use_xattrat=use_xattrat)
    assert result.ok
    assert {label(p) for p in entries(volume)} == {PRIVATE}
    assert result.changed == 11


def test_shared_read_only_and_explicit_contexts(volume: Path) -> None:
    relabel(volume, shared=True)
    assert {label(p) for p in entries(volume)} == {b"system_u:object_r:container_file_t:s0\0"}
    relabel(volume, level="s0:c7,c9", read_only=True)
    assert {label(p) for p in entries(volume)} == {
        b"system_u:object_r:container_ro_file_t:s0:c7,c9\0"
    }
    relabel(volume, context="system_u:object_r:svirt_sandbox_file_t:s0:c3.c5")
    assert {label(p) for p in entries(volume)} == {
        b"system_u:object_r:svirt_sandbox_file_t:s0:c3.c5\0"
    }
    relabel(volume, level="s0:c1,c2", file_type="container_var_lib_t")
    assert {label(p) for p in entries(volume)} == {
        b"system_u:object_r:container_var_lib_t:s0:c1,c2\0"
    }


def test_contexts_come_from_the_given_policy_root(centos_root: Path) -> None:
    ctx = target_context(level="s0:c1,c2", read_only=True, policy_root=centos_root)
    assert ctx == Context.parse("system_u:object_r:container_ro_file_t:s0:c1,c2")
    assert str(target_context(shared=True, policy_root=centos_root)).endswith("container_file_t:s0")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, InvalidInput),
        ({"level": "s0:c1,c2", "shared": True}, InvalidInput),
        ({"level": "s0:c1", "context": "u:r:t:s0"}, InvalidInput),
        ({"context": "u:r:t:s0", "read_only": True}, InvalidInput),
        ({"level": "s0:c1024"}, InvalidLevel),
        ({"level": "s0-s0:c1"}, InvalidLevel),
        ({"context": "u:r:t"}, InvalidContext),
        ({"context": "not a context"}, InvalidContext),
        ({"shared": True, "file_type": "bad type!"}, InvalidContext),
    ],
)
def test_bad_label_requests_raise_before_touching_anything(
    volume: Path, kwargs: dict[str, object], error: type[Exception]
) -> None:
    before = snapshot(volume)
    with pytest.raises(error):
        relabel(volume, **kwargs)  # type: ignore[arg-type]
    assert snapshot(volume) == before


@pytest.mark.parametrize("workers", [0, 2])
def test_second_relabel_writes_nothing(volume: Path, workers: int) -> None:
    relabel(volume, level="s0:c1,c2", workers=workers)
    # one file stored without the trailing NUL is right too
    os.setxattr(volume / "a" / "file", XATTR, PRIVATE[:-1])
    ctimes = {p: p.lstat().st_ctime_ns for p in entries(volume)}
    result = relabel(volume, level="s0:c1,c2", workers=workers)
    assert result.ok
    assert result.changed == 0
    assert result.unchanged == 12
    assert {p: p.lstat().st_ctime_ns for p in entries(volume)} == ctimes
    assert label(volume / "a" / "file") == PRIVATE[:-1]


def test_dry_run_writes_nothing(volume: Path, tmp_path: Path) -> None:
    before = snapshot(volume)
    journal = tmp_path / "journal"
    result = relabel(volume, level="s0:c1,c2", dry_run=True, journal=journal)
    assert result.dry_run
    assert result.changed == 11  # the hard link counted once
    assert result.unchanged == 1
    assert snapshot(volume) == before
    assert not journal.exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_hard_links_are_labeled_and_journaled_once(tmp_path: Path, workers: int) -> None:
    v = tmp_path / "links"
    v.mkdir()
    (v / "one").write_text("x")
    for i in range(5):
        os.link(v / "one", v / f"link{i}")
    result = relabel(v, level="s0:c1,c2", journal=tmp_path / "j", workers=workers)
    assert result.changed == 2  # the inode and the root
    assert result.unchanged == 5
    _, finished, records = read_journal(tmp_path / "j")
    assert finished
    assert len(list(records)) == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_top_directory_is_labeled_last_and_only_when_all_succeeded(
    volume: Path,
    tmp_path: Path,
    workers: int,
) -> None:
    subprocess.run(["chattr", "+i", str(volume / "a" / "b" / "deep")], check=True)
    try:
        result = relabel(volume, level="s0:c1,c2", workers=workers)
    finally:
        subprocess.run(["chattr", "-i", str(volume / "a" / "b" / "deep")], check=True)
    assert not result.ok
    assert not result.complete
    assert result.failed == 1
    assert [(e.path, e.errno) for e in result.errors] == [("a/b/deep", 1)]
    assert result.error_counts == {os.strerror(1): 1}
    assert label(volume) == OLD  # the top keeps its old label: the tree is not done
    assert label(volume / "a" / "file") == PRIVATE
    done = relabel(volume, level="s0:c1,c2", journal=tmp_path / "j", workers=workers)
    assert done.ok
    assert label(volume) == PRIVATE
    _, _, records = read_journal(tmp_path / "j")
    assert [r.relpath for r in records] == [b"a/b/deep", b"."]


def test_progress_is_reported_in_the_calling_thread(tmp_path: Path) -> None:
    import threading

    v = tmp_path / "many"
    for d in range(20):
        (v / f"d{d}").mkdir(parents=True)
        for f in range(50):
            (v / f"d{d}" / f"f{f}").touch()
    seen: list[RelabelProgress] = []
    threads = set()

    def progress(p: RelabelProgress) -> None:
        seen.append(p)
        threads.add(threading.get_ident())

    result = relabel(v, level="s0:c1,c2", progress=progress, workers=2)
    assert threads == {threading.get_ident()}
    assert seen
    assert seen[-1].visited == 1021  # 1,000 files, 20 directories and the root
    assert seen[-1].changed == result.changed
    assert all(a.visited <= b.visited for a, b in itertools.pairwise(seen))


def test_single_file_volume(tmp_path: Path) -> None:
    f = tmp_path / "single"
    f.write_text("x")
    result = relabel(f, level="s0:c1,c2", journal=tmp_path / "j")
    assert result.ok
    assert result.changed == 1
    assert label(f) == PRIVATE
    restore(tmp_path / "j")
    assert label(f) is None


@pytest.mark.parametrize("workers", [0, 2])
def test_deep_tree(tmp_path: Path, workers: int) -> None:
    v = tmp_path / "deep"
    p = v
    for i in range(200):
        p = p / f"level{i}"
    p.mkdir(parents=True)
    (p / "leaf").touch()
    result = relabel(v, level="s0:c1,c2", workers=workers)
    assert result.ok
    assert result.changed == 202
    assert label(p / "leaf") == PRIVATE


def _mount(fstype: str, where: Path) -> bool:
    where.mkdir()
    done = subprocess.run(["mount", "-t", fstype, fstype, str(where)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("workers", [0, 2])
def test_mount_points_inside_are_not_crossed(volume: Path, workers: int) -> None:
    inner = volume / "mnt"
    if not _mount("tmpfs", inner):
        pytest.skip("cannot mount tmpfs here")
    try:
        (inner / "on-tmpfs").write_text("x")
        result = relabel(volume, level="s0:c1,c2", workers=workers)
        assert result.ok
        assert result.skipped_mounts == 1
        assert label(inner / "on-tmpfs") is None
        assert label(volume / "a" / "file") == PRIVATE
        crossing = relabel(volume, level="s0:c1,c2", one_file_system=False, workers=workers)
        assert crossing.ok
        assert label(inner / "on-tmpfs") == PRIVATE
    finally:
        subprocess.run(["umount", str(inner)], check=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_file_systems_without_xattrs_fail_per_file(volume: Path, workers: int) -> None:
    inner = volume / "ram"
    if not _mount("ramfs", inner):
        pytest.skip("cannot mount ramfs here")
    try:
        (inner / "f").write_text("x")
        probe = subprocess.run(
            ["setfattr", "-n", XATTR, "-v", "x", str(inner / "f")], capture_output=True
        )
        if probe.returncode == 0:
            pytest.skip("ramfs stores security xattrs on this kernel")
        result = relabel(volume, level="s0:c1,c2", one_file_system=False, workers=workers)
        assert result.failed >= 1
        assert not result.complete
        assert label(volume) == OLD
    finally:
        subprocess.run(["umount", str(inner)], check=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_crossing_mounts_never_enters_a_bind_mount_of_a_refused_path(
    volume: Path, workers: int
) -> None:
    inner = volume / "etc-inside"
    inner.mkdir()
    done = subprocess.run(["mount", "--bind", "/etc", str(inner)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        before = label(Path("/etc/hostname"))
        result = relabel(volume, level="s0:c1,c2", one_file_system=False, workers=workers)
        assert result.failed == 1
        assert result.errors[0].path == "etc-inside"
        assert "system directory /etc" in result.errors[0].message
        assert label(Path("/etc/hostname")) == before
        assert label(Path("/etc")) is None or label(Path("/etc")) != PRIVATE
        default = relabel(volume, level="s0:c1,c2", workers=workers)
        assert default.skipped_mounts == 1  # same file system, still a mount point
        assert default.ok
    finally:
        subprocess.run(["umount", str(inner)], check=True)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_mid_walk_leaves_no_open_fd_and_no_worker(tmp_path: Path, workers: int) -> None:
    # A progress callback that raises stands in for Ctrl-C or a failed journal
    # write: the walk then holds many directory fds (and maybe workers).
    vol = tmp_path / "vol"
    for a in range(20):
        for b in range(20):
            (vol / f"d{a}" / f"e{b}").mkdir(parents=True)
            (vol / f"d{a}" / f"e{b}" / "f").write_text("x")
    calls = 0

    def progress(_: RelabelProgress) -> None:
        nonlocal calls
        calls += 1
        # The serial walk's first report comes with only the root open; the
        # workers' first report may be their last (a loaded machine), so stop there.
        if calls == (1 if workers else 2):
            raise _Stop
        time.sleep(0.15)  # past the 0.1 s rate limit: the next report raises

    fds_before = sorted(os.listdir("/proc/self/fd"))
    children_before = children()
    with pytest.raises(_Stop):
        relabel(vol, level="s0:c1,c2", workers=workers, progress=progress, journal=tmp_path / "j")
    assert sorted(os.listdir("/proc/self/fd")) == fds_before
    assert children() <= children_before  # no worker left, not even a zombie


def test_a_root_that_cannot_be_listed_is_a_relabel_error() -> None:
    # As an unprivileged user a 0711 directory opens with O_PATH but not for
    # reading: that second open used to leak a raw OSError (and close a closed fd).
    with tempfile.TemporaryDirectory(prefix="mcslabel-") as scratch:  # pytest's are 0700
        os.chmod(scratch, 0o755)
        vol = Path(scratch, "vol")
        vol.mkdir()
        vol.chmod(0o711)
        if not all(p.stat().st_mode & 0o001 for p in vol.parents):
            pytest.skip("the scratch directory is not searchable by others")
        _relabel_as_nobody(vol)


def _relabel_as_nobody(vol: Path) -> None:
    code = (
        "from mcslabel.errors import RelabelError\n"
        "from mcslabel.relabeling.engine import relabel\n"
        "try:\n"
        f"    relabel({str(vol)!r}, context='system_u:object_r:container_file_t:s0:c1,c2')\n"
        "except RelabelError as exc:\n"
        "    print('RelabelError', exc)\n"
    )
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip("the venv is not readable by nobody")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("RelabelError cannot open"), done.stdout
