"""The refused list, checked after canonicalisation and by file identity."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcslabel.errors import RefusedPath
from mcslabel.relabeling.engine import relabel
from mcslabel.relabeling.refusals import (
    EXACT_PATHS,
    SYSTEM_TREES,
    check_relabel_allowed,
    home_directories,
    refusal_reason,
)

GO_SELINUX = [
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/etc/passwd",
    "/etc/pki",
    "/etc/shadow",
    "/home",
    "/lib",
    "/lib64",
    "/media",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/lib",
    "/var/log",
]


@pytest.mark.parametrize("path", GO_SELINUX)
def test_every_go_selinux_path_is_refused(path: str) -> None:
    # a path missing here (/etc/pki on Debian) is refused as missing
    assert refusal_reason(path) is not None


@pytest.mark.parametrize(
    "spelling",
    ["//usr", "/usr/.", "/usr/", "///usr//", "/var/../etc", "/tmp/../usr/lib/..", "/./etc/."],
)
def test_aliases_of_system_paths_are_refused(spelling: str) -> None:
    with pytest.raises(RefusedPath) as info:
        check_relabel_allowed(spelling)
    assert info.value.reason
    assert info.value.path in ("/usr", "/etc")


@pytest.mark.parametrize(
    "inside", ["/usr/lib", "/etc/default", "/usr/share/doc", "/var/../usr/bin"]
)
def test_everything_inside_a_system_tree_is_refused(inside: str) -> None:
    if not os.path.exists(inside):
        pytest.skip(f"{inside} does not exist here")
    reason = refusal_reason(inside)
    assert reason is not None
    assert reason.startswith("inside system directory")


def test_symlink_to_home_is_refused(tmp_path: Path) -> None:
    os.symlink("/home", tmp_path / "innocent")
    with pytest.raises(RefusedPath) as info:
        relabel(tmp_path / "innocent", level="s0:c1,c2")
    assert info.value.path == "/home"
    assert "system directory /home" in info.value.reason


def test_refusal_happens_before_any_write(tmp_path: Path) -> None:
    with pytest.raises(RefusedPath):
        relabel("/usr/.", level="s0:c1,c2")
    with pytest.raises(RefusedPath):
        relabel("/", shared=True, dry_run=True)
    assert "security.selinux" not in os.listxattr("/usr")


def test_home_directories_and_their_hidden_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home" / "alice"
    (home / ".ssh").mkdir(parents=True)
    (home / "projects" / "vol").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    assert str(home) in home_directories()
    assert refusal_reason(home) == f"home directory {home}"
    assert refusal_reason(str(home) + "/") == f"home directory {home}"
    assert refusal_reason(home / ".ssh") == f"hidden entry .ssh of home directory {home}"
    assert refusal_reason(home / "projects" / "vol") is None
    # a directory that contains a home directory would relabel it too
    assert refusal_reason(tmp_path / "home") == f"contains home directory {home}"


def test_sudo_users_home_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    user = next((e for e in pwd.getpwall() if os.path.isdir(e.pw_dir) and e.pw_dir != "/"), None)
    if user is None:
        pytest.skip("no passwd user with an existing home")
    monkeypatch.setenv("SUDO_USER", user.pw_name)
    monkeypatch.setenv("HOME", "/nonexistent-home")
    assert os.path.normpath(user.pw_dir) in [os.path.normpath(h) for h in home_directories()]
    assert refusal_reason(user.pw_dir) is not None


def test_every_passwd_home_is_refused() -> None:
    import pwd

    homes = [e.pw_dir for e in pwd.getpwall() if os.path.isdir(e.pw_dir)]
    assert homes
    for h in homes:
        assert refusal_reason(h) is not None, h


def test_callers_extend_the_list_but_subpaths_stay_allowed(tmp_path: Path) -> None:
    (tmp_path / "data" / "vol").mkdir(parents=True)
    assert refusal_reason(tmp_path / "data") is None
    assert refusal_reason(tmp_path / "data", refuse=[tmp_path / "data"]) is not None
    assert refusal_reason(tmp_path / "data" / "vol", refuse=[tmp_path / "data"]) is None
    assert refusal_reason(tmp_path, refuse=[tmp_path / "data" / "vol"]) is not None
    with pytest.raises(RefusedPath):
        relabel(tmp_path / "data", level="s0:c1,c2", refuse=[str(tmp_path / "data") + "//"])


def test_tmp_is_refused_but_its_subdirectories_are_not(tmp_path: Path) -> None:
    assert refusal_reason("/tmp") is not None
    assert refusal_reason("/var/tmp") is not None
    assert refusal_reason(tmp_path) is None


def test_missing_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RefusedPath) as info:
        check_relabel_allowed(tmp_path / "nope")
    assert info.value.reason == "missing"
    with pytest.raises(RefusedPath):
        check_relabel_allowed("")


def test_a_bind_mount_of_a_refused_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "looks-harmless"
    target.mkdir()
    done = subprocess.run(["mount", "--bind", "/etc", str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        reason = refusal_reason(target)
        assert reason is not None
        assert "same file as system directory /etc" in reason
        with pytest.raises(RefusedPath):
            relabel(target, level="s0:c1,c2")
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_bind_mount_of_a_subdirectory_of_a_system_tree_is_refused(tmp_path: Path) -> None:
    # /usr/share/doc has an identity no refused directory has: only the
    # mount table tells that /x is /usr/share/doc, and /x/bash is inside /usr.
    target = tmp_path / "vol"
    target.mkdir()
    done = subprocess.run(["mount", "--bind", "/usr/share", str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        for path in (target, target / "doc"):
            reason = refusal_reason(path)
            assert reason is not None, path
            assert "bind mount of /usr/share" in reason
            with pytest.raises(RefusedPath):
                relabel(path, level="s0:c1,c2", dry_run=True)
        assert refusal_reason(tmp_path) is None  # the directory holding the mount is fine
    finally:
        subprocess.run(["umount", str(target)], check=True)


_refused_dirs = [p for p in (*SYSTEM_TREES, *EXACT_PATHS) if os.path.isdir(p) and p != "/"]
_decoration = st.lists(st.sampled_from(["", ".", "./.", "usr/..", "etc/../."]), max_size=3)


@given(
    st.sampled_from(_refused_dirs),
    _decoration,
    st.integers(1, 3),
    st.booleans(),
)
def test_decorated_spellings_of_refused_paths_are_refused(
    path: str, decoration: list[str], slashes: int, trailing: bool
) -> None:
    spelled = "/" * slashes + path.lstrip("/")
    for piece in decoration:
        spelled += "/" + piece
    if trailing:
        spelled += "/"
    assert refusal_reason(spelled) is not None, spelled
