"""Policy access against the real installed policy and the shared CentOS root."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcslabel.errors import PolicyError
from mcslabel.verification.policy import Policy, PolicyRoot, installed_policy_type, load_policy


def test_installed_policy_has_container_module(installed_policy: Policy) -> None:
    assert installed_policy.mls
    assert installed_policy.categories == 1024
    assert installed_policy.root is not None
    cc = installed_policy.container_contexts()
    assert cc.process.type == "container_t"
    assert installed_policy.has_type(cc.file.type)
    assert installed_policy.has_type(cc.read_only_file.type)
    assert not installed_policy.has_type("no_such_type_t")


def test_centos_root(centos_root: Path) -> None:
    policy = load_policy(centos_root)
    assert policy.mls and policy.categories == 1024 and policy.version == 33
    cc = policy.container_contexts()
    assert str(cc.process) == "system_u:system_r:container_t:s0"
    assert cc.kvm_process.type == "svirt_qemu_net_t"
    # CentOS 7's name for the container domain is an alias in current policies.
    assert policy.has_type("svirt_lxc_net_t")


def test_policy_file_picks_newest(tmp_path: Path, centos_root: Path) -> None:
    (tmp_path / "policy").mkdir()
    data = (centos_root / "policy" / "policy.33").read_bytes()
    (tmp_path / "policy" / "policy.31").write_bytes(b"old")
    (tmp_path / "policy" / "policy.33").write_bytes(data)
    assert PolicyRoot.at(tmp_path).policy_file.name == "policy.33"


def test_policy_file_given_directly(centos_root: Path) -> None:
    policy = load_policy(policy=centos_root / "policy" / "policy.33")
    assert policy.root is None
    with pytest.raises(PolicyError, match="without a policy root"):
        policy.container_contexts()


def test_not_a_policy(tmp_path: Path) -> None:
    bogus = tmp_path / "policy.33"
    bogus.write_bytes(b"\x00not a policy")
    with pytest.raises(PolicyError, match="not a binary SELinux policy"):
        load_policy(policy=bogus)
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(policy=tmp_path / "missing.33")


def test_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not a directory"):
        PolicyRoot.at(tmp_path / "nope")
    with pytest.raises(PolicyError, match="cannot list"):
        _ = PolicyRoot.at(tmp_path).policy_file
    with pytest.raises(PolicyError, match="cannot read"):
        PolicyRoot.at(tmp_path).container_contexts()


def test_installed_policy_type(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("# c\nSELINUX=permissive\nSELINUXTYPE=targeted\n")
    assert installed_policy_type(tmp_path) == "targeted"
    (tmp_path / "config").write_text("SELINUX=permissive\n")
    with pytest.raises(PolicyError, match="no SELINUXTYPE"):
        installed_policy_type(tmp_path)
    with pytest.raises(PolicyError, match="cannot read"):
        installed_policy_type(tmp_path / "missing")


def test_empty_policy_dir(tmp_path: Path) -> None:
    (tmp_path / "policy").mkdir()
    with pytest.raises(PolicyError, match=r"no policy/policy\.NN"):
        _ = PolicyRoot.at(tmp_path).policy_file


def test_policy_root_coerce_takes_every_form(centos_root: Path, tmp_path: Path) -> None:
    root = PolicyRoot.at(centos_root)
    assert PolicyRoot.coerce(root) is root
    assert PolicyRoot.coerce(str(centos_root)) == root == PolicyRoot.coerce(centos_root)
    assert PolicyRoot.coerce(None) == PolicyRoot.installed()
    with pytest.raises(PolicyError, match="not a directory"):
        PolicyRoot.coerce(tmp_path / "missing")
    # load_policy: a root's policy file, or a file given with or without its root.
    assert load_policy(centos_root).root == root
    given = load_policy(root, policy=root.policy_file)
    assert given.root == root and given.path == root.policy_file.resolve()
    assert load_policy(policy=root.policy_file).root is None
