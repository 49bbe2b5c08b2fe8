"""Path contexts: real xattrs on real files, and file_contexts lookups checked
against libselinux's own ``selabel_lookup`` command as the oracle."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcslabel.errors import InvalidContext, InvalidInput, NoFileContext
from mcslabel.verification.filecontexts import (
    file_contexts_entry,
    normalize_path,
    path_context,
    read_xattr_context,
)
from mcslabel.verification.policy import PolicyRoot
from tests.verify_testpolicy import HOMEDIRS_EMPTY, build_root

PATHS = [
    "/var",
    "/var/lib/containers",
    "/var/log/messages",
    "/root",
    "/root/.ssh",
    "/home",
    "/home/alice",
    "/home/alice/.ssh/id_rsa",
    "/etc/shadow",
    "/usr/bin/bash",
    "/tmp",
    "/srv/www",
]


def _oracle(fc: Path, path: str) -> str | None:
    done = subprocess.run(
        ["selabel_lookup", "-b", "file", "-r", "-k", path, "-f", str(fc)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip().removeprefix("Default context: ")


@pytest.fixture(params=["installed", "centos"])
def policy_root(request: pytest.FixtureRequest) -> PolicyRoot:
    if request.param == "installed":
        return PolicyRoot.installed()
    return PolicyRoot.at(request.getfixturevalue("centos_root"))


@pytest.mark.skipif(shutil.which("selabel_lookup") is None, reason="selinux-utils missing")
def test_lookup_agrees_with_selabel_lookup(policy_root: PolicyRoot) -> None:
    for path in PATHS:
        expected = _oracle(policy_root.file_contexts_file, path)
        if expected is None:
            with pytest.raises(NoFileContext):
                file_contexts_entry(path, policy_root=policy_root)
            continue
        context, source = file_contexts_entry(path, policy_root=policy_root)
        assert (str(context), source) == (expected, "file_contexts"), path


def test_none_entry_is_a_typed_error() -> None:
    # CentOS: /root/\.debug(/.*)?  <<none>>
    root = PolicyRoot.installed()
    with pytest.raises(NoFileContext, match="/proc") as info:
        file_contexts_entry("/proc", policy_root=root)
    assert info.value.path == "/proc"


def test_centos_none_entry(centos_root: Path) -> None:
    with pytest.raises(NoFileContext):
        file_contexts_entry("/root/.debug", policy_root=PolicyRoot.at(centos_root))


def test_mode_selects_typed_entries() -> None:
    # Debian: '/home -d' and '/home -l' both home_root_t, but a regular file
    # called /home only matches the catch-all entries.
    root = PolicyRoot.installed()
    as_dir, _ = file_contexts_entry("/home", policy_root=root, mode=stat.S_IFDIR)
    assert as_dir.type == "home_root_t"


def test_xattr_wins_and_root_prefix(tmp_path: Path) -> None:
    root = PolicyRoot.installed()
    var = tmp_path / "var"
    var.mkdir()
    plain = path_context("/var", policy_root=root, root=tmp_path)
    assert (plain.source, plain.context.type) == ("file_contexts", "var_t")
    assert plain.inspected == str(var)
    os.setxattr(var, "security.selinux", b"system_u:object_r:container_file_t:s0:c1,c2\0")
    labeled = path_context("/var", policy_root=root, root=tmp_path)
    assert labeled.source == "xattr"
    assert str(labeled.context) == "system_u:object_r:container_file_t:s0:c1,c2"
    assert read_xattr_context(str(var)) == "system_u:object_r:container_file_t:s0:c1,c2"


def test_symlink_label_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    os.setxattr(target, "security.selinux", b"system_u:object_r:container_file_t:s0")
    (tmp_path / "var").symlink_to(target)
    # The link carries no label of its own: the target's must not leak through.
    root = PolicyRoot.installed()
    ctx = path_context("/var", policy_root=root, root=tmp_path)
    assert ctx.source == "file_contexts"
    # ... and the entry is the one for a symlink ('/var -d' is for directories only).
    as_link, _ = file_contexts_entry("/var", policy_root=root, mode=stat.S_IFLNK)
    assert ctx.context == as_link
    assert ctx.context.type != "container_file_t"


def test_symlinks_inside_a_root_resolve_inside_it(tmp_path: Path) -> None:
    # An image whose /home is an absolute link (/home -> /var/home, as on Silverblue):
    # the lookup must read the image's /var/home/alice, never this host's.
    image = tmp_path / "image"
    alice = image / "var" / "home" / "alice"
    alice.mkdir(parents=True)
    os.setxattr(alice, "security.selinux", b"system_u:object_r:user_home_dir_t:s0:c7\0")
    (image / "home").symlink_to("/var/home")
    (image / "up").symlink_to("../../../../var/home")  # '..' never climbs out of the root
    root = PolicyRoot.installed()
    for path in ("/home/alice", "/up/alice"):
        ctx = path_context(path, policy_root=root, root=image)
        assert (ctx.source, ctx.inspected) == ("xattr", str(alice)), path
        assert str(ctx.context) == "system_u:object_r:user_home_dir_t:s0:c7"
    (image / "loop").symlink_to("/loop")
    with pytest.raises(InvalidInput, match="too many symlinks"):
        path_context("/loop/x", policy_root=root, root=image)


def test_garbage_xattr_is_a_typed_error(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    os.setxattr(var, "security.selinux", b"not a context")
    with pytest.raises(InvalidContext, match="xattr"):
        path_context("/var", policy_root=PolicyRoot.installed(), root=tmp_path)


def test_homedirs_template_fallback(tmp_path: Path) -> None:
    bare = PolicyRoot.at(build_root(tmp_path / "bare", homedirs=HOMEDIRS_EMPTY))
    home, source = file_contexts_entry("/home/bob", policy_root=bare)
    assert (home.type, source) == ("user_home_dir_t", "homedirs_template")
    below, _ = file_contexts_entry("/home/bob/a/b", policy_root=bare)
    assert below.type == "user_home_t"
    full = PolicyRoot.at(build_root(tmp_path / "full"))
    home, source = file_contexts_entry("/home/bob", policy_root=full)
    assert (home.type, source) == ("user_home_dir_t", "file_contexts")


@pytest.mark.parametrize("bad", ["", "var", "./var", "/var\0", 42])
def test_bad_paths(bad: object) -> None:
    with pytest.raises((InvalidInput, TypeError)):
        normalize_path(bad)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "..", ".", "", "var", "home", "x y"]), max_size=8))
def test_normalize_is_absolute_and_idempotent(parts: list[str]) -> None:
    path = "/" + "/".join(parts)
    once = normalize_path(path)
    assert once.startswith("/") and not once.startswith("//")
    assert normalize_path(once) == once
    assert "/./" not in once + "/" and "/../" not in once + "/"
