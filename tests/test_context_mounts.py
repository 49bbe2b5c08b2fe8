"""Context mounts: the quoted option, the rules, and a real loop-mounted ext4 image.

This host's kernel has no SELinux: ``mount -o context=...`` succeeds there and
drops the option. ``mcslabel mount`` must notice, unmount and refuse (or
relabel when asked); the live-kernel lane checks the labeling itself.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcslabel.cli import main
from mcslabel.context import Context
from mcslabel.errors import ContextMountError, InvalidContext, InvalidInput
from mcslabel.relabeling import mounts
from mcslabel.relabeling.context_mounts import (
    Labeling,
    MountContexts,
    honoured,
    labeling_of,
    mount_at,
    mount_holding,
    parse_mountinfo,
    read_mountinfo,
    selinux_enabled,
    split_options,
)
from mcslabel.relabeling.volume_mounts import context_mount_advice, mount_volume, unmount
from tests.strategies import levels

FILE_CTX = Context.parse("system_u:object_r:container_file_t:s0:c3,c9")

# What a SELinux kernel prints for a context mount (Fedora 39, loop-mounted ext4).
SELINUX_MOUNTINFO = (
    "29 1 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/root rw,seclabel,attr2\n"
    "412 29 7:0 / /srv/vol\\040a rw,relatime shared:230 - ext4 /dev/loop0"
    ' rw,seclabel,context="system_u:object_r:container_file_t:s0:c3,c9"\n'
    "413 29 7:0 /sub /srv/bind rw,relatime shared:230 - ext4 /dev/loop0"
    ' rw,seclabel,context="system_u:object_r:container_file_t:s0:c3,c9"\n'
)


def test_option_is_quoted_so_the_comma_stays_in_the_value() -> None:
    contexts = MountContexts(context=FILE_CTX)
    assert str(contexts) == 'context="system_u:object_r:container_file_t:s0:c3,c9"'
    assert split_options(f"rw,loop,{contexts},noexec") == [
        "rw",
        "loop",
        str(contexts),
        "noexec",
    ]


@given(levels, st.sets(st.sampled_from(["fscontext", "defcontext", "rootcontext"]), min_size=1))
def test_options_split_back_whole(level: object, names: set[str]) -> None:
    ctx = FILE_CTX.with_level(level)  # type: ignore[arg-type]
    contexts = MountContexts.for_context(ctx, tuple(sorted(names)))
    assert split_options("ro," + str(contexts)) == ["ro", *contexts.options()]


def test_the_rules() -> None:
    assert labeling_of("ext4") is Labeling.XATTR
    assert labeling_of("fuse.sshfs") is Labeling.GENFS
    assert labeling_of("tmpfs") is Labeling.TRANSITION
    assert labeling_of("weirdfs") is None
    assert honoured("context", "vfat") and honoured("context", "ext4")
    assert honoured("defcontext", "ext4") and honoured("defcontext", "vfat") is False
    assert honoured("defcontext", "tmpfs") is False
    assert honoured("rootcontext", "tmpfs")
    assert honoured("context", "weirdfs") is None
    with pytest.raises(InvalidInput, match="defcontext"):
        MountContexts(defcontext=FILE_CTX).check_fstype("nfs")
    MountContexts(defcontext=FILE_CTX, rootcontext=FILE_CTX).check_fstype("xfs")
    with pytest.raises(InvalidInput, match="exclude each other"):
        MountContexts(context=FILE_CTX, defcontext=FILE_CTX)
    MountContexts(context=FILE_CTX, fscontext=FILE_CTX, rootcontext=FILE_CTX)
    with pytest.raises(InvalidInput, match="at least one"):
        MountContexts()
    with pytest.raises(InvalidContext, match="level"):
        MountContexts(context=Context("u", "r", "t"))
    with pytest.raises(InvalidInput, match="not one of"):
        MountContexts.for_context(FILE_CTX, ("context", "mntcontext"))


def test_context_mounts_read_the_one_mount_table_reader() -> None:
    # The relabel engine's reader (relabeling.mounts) and the context view agree on
    # every line: one parser, the context view adds only the split options.
    table = mounts.parse_mountinfo(SELINUX_MOUNTINFO)
    entries = parse_mountinfo(SELINUX_MOUNTINFO)
    assert [(m.mount_id, m.root, m.point) for m in table] == [
        (e.mount_id, e.root, e.mount_point) for e in entries
    ]
    vol = next(m for m in table if m.point == "/srv/vol a")
    assert vol.fstype == "ext4" and vol.source == "/dev/loop0"
    assert f'context="{FILE_CTX}"' in vol.super_options
    assert mounts.holder("/srv/vol a/x", table) == vol
    # A truncated line still names its mount point for the engine, not for the contexts.
    short = mounts.parse_mountinfo("7 1 8:1 / /short rw")
    assert [m.point for m in short] == ["/short"] and parse_mountinfo("7 1 8:1 / /short rw") == []
    # A mount id that is not a decimal number (int() would refuse "²") is no entry either.
    assert parse_mountinfo("\u00b2 1 8:1 / /x rw - ext4 /dev/a rw") == []


def test_mountinfo_of_a_selinux_kernel_shows_the_applied_context() -> None:
    entries = parse_mountinfo(SELINUX_MOUNTINFO)
    vol = mount_at(entries, "/srv/vol a")
    assert vol is not None
    assert vol.fstype == "ext4" and vol.source == "/dev/loop0"
    assert vol.contexts() == {"context": FILE_CTX}
    assert MountContexts(context=FILE_CTX).applied_by(vol)
    assert not MountContexts(context=FILE_CTX.with_level("s0:c3,c8")).applied_by(vol)
    assert not MountContexts(context=FILE_CTX, rootcontext=FILE_CTX).applied_by(vol)
    root = mount_at(entries, "/")
    assert root is not None
    assert root.contexts() == {}
    assert not MountContexts(context=FILE_CTX).applied_by(root)
    assert mount_holding(entries, "/srv/vol a/x/y") == vol
    assert mount_holding(entries, "/srv/volume") == root
    # A bind mount of a directory is not a file system of its own.
    bind = context_mount_advice("/srv/bind", entries=entries)
    assert not bind.own_file_system and "bind mount of /sub" in bind.reason
    assert context_mount_advice("/srv/vol a", entries=entries).own_file_system
    assert not context_mount_advice("/srv/vol a/x", entries=entries).own_file_system


def test_mount_options_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mount-options", "--level", "s0:c9,c3"]) == 0
    assert capsys.readouterr().out == ('context="system_u:object_r:container_file_t:s0:c3,c9"\n')
    args = ["mount-options", "--level", "s0:c3,c9", "--option", "defcontext", "--json"]
    assert main([*args, "--option", "rootcontext", "--type", "svirt_sandbox_file_t"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["contexts"] == {
        "defcontext": "system_u:object_r:svirt_sandbox_file_t:s0:c3,c9",
        "rootcontext": "system_u:object_r:svirt_sandbox_file_t:s0:c3,c9",
    }
    assert main(["mount-options", "--level", "s0:c3,c9", "--option", "defcontext", "-t", "vfat"])
    assert "vfat does not honour defcontext=" in capsys.readouterr().err


# --- a real loop-mounted ext4 image -------------------------------------------


@pytest.fixture
def image(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("context mount tests need root (mount, loop devices)")
        pytest.skip("needs root")
    img, mnt = tmp_path / "vol.img", tmp_path / "mnt"
    mnt.mkdir()
    with img.open("wb") as fh:
        fh.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True, timeout=120)
    yield img, mnt
    while mount_at(read_mountinfo(), str(mnt)) is not None:  # a failed test must not leak
        subprocess.run(["umount", str(mnt)], check=False, timeout=60)


def _loop_devices_of(img: Path) -> list[str]:
    out = subprocess.run(
        ["losetup", "-j", str(img)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return out.splitlines()


def _root_label(img: Path, mnt: Path) -> bytes | None:
    """The image root's on-disk label, read through a plain mount."""
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True, timeout=60)
    try:
        return os.getxattr(mnt, "security.selinux")
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            raise
        return None
    finally:
        unmount(mnt)


@pytest.mark.skipif(selinux_enabled(), reason="the live-kernel lane checks a real context mount")
def test_mount_refuses_when_the_kernel_drops_the_context(
    image: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    img, mnt = image
    code = main(["mount", str(img), str(mnt), "--level", "s0:c3,c9"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    assert "the kernel has no SELinux" in err and "unmounted" in err
    assert "context=" in err and "s0:c3,c9" in err
    assert mount_at(read_mountinfo(), str(mnt)) is None
    assert _loop_devices_of(img) == []
    assert _root_label(img, mnt) is None  # nothing was written either
    with pytest.raises(ContextMountError, match="no SELinux"):
        mount_volume(img, mnt, context=FILE_CTX)
    assert mount_at(read_mountinfo(), str(mnt)) is None


@pytest.mark.skipif(selinux_enabled(), reason="the live-kernel lane checks a real context mount")
def test_fallback_relabels_the_mounted_tree(
    image: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    img, mnt = image
    code = main(
        ["mount", str(img), str(mnt), "--level", "s0:c3,c9", "--fallback-relabel", "--json"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "relabel" and data["applied"] == {}
    assert data["source"] == str(img) and data["fstype"] == "ext4"
    assert data["relabel"]["context"] == str(FILE_CTX) and data["relabel"]["changed"] >= 1
    entry = mount_at(read_mountinfo(), str(mnt))
    assert entry is not None and entry.fstype == "ext4"
    assert os.getxattr(mnt, "security.selinux").rstrip(b"\0") == str(FILE_CTX).encode()
    advice = context_mount_advice(mnt)
    assert advice.own_file_system and advice.fstype == "ext4"
    (mnt / "sub").mkdir()
    assert not context_mount_advice(mnt / "sub").own_file_system
    unmount(mnt)
    assert _loop_devices_of(img) == []
    assert _root_label(img, mnt) == str(FILE_CTX).encode() + b"\0"


def test_bad_sources_and_options_are_refused_before_mounting(
    image: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img, mnt = image
    cases = [
        ([str(tmp_path), str(mnt), "--level", "s0:c1,c2"], "bind mount cannot carry"),
        ([str(tmp_path / "none"), str(mnt), "--level", "s0:c1,c2"], "No such file"),
        ([str(img), str(img), "--level", "s0:c1,c2"], "not a directory"),
        ([str(img), str(mnt), "--level", "s0:c1,c2", "-o", 'ro,context="a:b:c:s0"'], "by mcslabel"),
        (
            [str(img), str(mnt), "--level", "s0:c1,c2", "--option", "defcontext", "-t", "vfat"],
            "vfat",
        ),
        ([str(img), str(mnt), "--level", "SystemLow"], "mcstrans"),
    ]
    for args, message in cases:
        assert main(["mount", *args]) == 2, args
        assert message in capsys.readouterr().err, args
        assert mount_at(read_mountinfo(), str(mnt)) is None


def test_a_failing_mount_says_why(image: tuple[Path, Path]) -> None:
    img, mnt = image
    with pytest.raises(ContextMountError, match="mount"):
        mount_volume(img, mnt, context=FILE_CTX, fstype="xfs")
    assert mount_at(read_mountinfo(), str(mnt)) is None
    assert _loop_devices_of(img) == []
