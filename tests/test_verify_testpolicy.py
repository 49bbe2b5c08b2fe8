"""verify() on a small policy compiled by the real checkpolicy (tests/verify_testpolicy.py):
conditional rules, boolean what-if, a leaky domain, a permissive one, bad input."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcslabel.errors import (
    InvalidInput,
    InvalidLevel,
    NoFileContext,
    PolicyError,
    PolicyNotMLS,
    UnknownPolicyName,
)
from mcslabel.integrations.assertions import assert_blocked, assert_isolated
from mcslabel.level import Level
from mcslabel.verification.verifier import MustBlock, Reason, decide, decisions, verify
from tests.verify_testpolicy import HOMEDIRS_EMPTY, build_root

FILE_READ = {"perms": {"file": ["read"]}, "classes": ["file"]}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_root(tmp_path_factory.mktemp("testpolicy"))


@pytest.fixture(scope="module")
def plain_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_root(tmp_path_factory.mktemp("plainpolicy"), mls=False)


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty")


def test_container_domain_is_confined(root: Path, empty: Path) -> None:
    report = assert_blocked(policy_root=root, root=empty)
    assert report.ok
    assert report.check("/var", "dir", "search").allowed
    assert report.check("/var", "dir", "read").reason is Reason.DONTAUDIT
    assert report.check("/home", "file", "read").reason is Reason.TERULE


def test_leaky_domain_is_flagged_with_its_rule(root: Path, empty: Path) -> None:
    report = verify(policy_root=root, domain="leaky_t", root=empty)
    assert not report.ok
    check = report.check("/var", "file", "write")
    assert check.violation
    assert [g.rule for g in check.grants] == [
        "allow leaky_t var_t:file { append open read unlink write };"
    ]
    assert any("leaky_t may write file /var" in v for v in report.violations)
    # open and execute are not must-block by default: allowed or not, no violation.
    assert not report.check("/var", "file", "open").violation
    with pytest.raises(AssertionError, match="leaky_t may unlink file /var"):
        assert_blocked(report)


def test_boolean_what_if_is_named_and_verified(root: Path, empty: Path) -> None:
    report = verify(policy_root=root, paths=["/mnt/nfs"], root=empty, **FILE_READ)  # type: ignore[arg-type]
    check = report.check("/mnt/nfs", "file", "read")
    assert check.reason is Reason.BOOLEAN
    assert check.booleans == ("container_use_nfs=on",)
    (flip,) = check.what_if
    assert (flip.name, flip.value, flip.verified) == ("container_use_nfs", True, True)
    assert check.to_dict()["booleans"] == ["container_use_nfs=on"]


def test_flip_that_a_constraint_still_denies_is_not_verified(root: Path, empty: Path) -> None:
    # /srv is s0:c3: the rule container_read_srv enables would still hit MCS.
    report = verify(policy_root=root, paths=["/srv"], root=empty, **FILE_READ)  # type: ignore[arg-type]
    check = report.check("/srv", "file", "read")
    assert check.reason is Reason.TERULE
    (flip,) = check.what_if
    assert (flip.name, flip.value, flip.verified) == ("container_read_srv", True, False)
    assert check.booleans == ()
    flipped = verify(
        policy_root=root,
        paths=["/srv"],
        root=empty,
        booleans={"container_read_srv": True},
        **FILE_READ,  # type: ignore[arg-type]
    )
    assert flipped.check("/srv", "file", "read").reason is Reason.CONSTRAINT


def test_booleans_override_opens_the_access(root: Path, empty: Path) -> None:
    report = verify(
        policy_root=root,
        paths=["/mnt/nfs"],
        root=empty,
        booleans={"container_use_nfs": True},
        **FILE_READ,  # type: ignore[arg-type]
    )
    check = report.check("/mnt/nfs", "file", "read")
    assert check.allowed and check.violation
    (grant,) = check.grants
    assert grant.conditional == "container_use_nfs"
    assert check.booleans == ("container_use_nfs",)
    assert report.booleans == {"container_use_nfs": True}
    assert report.policy == str((root / "policy" / "policy.33").resolve())
    assert not report.ok


def test_negated_boolean_on_the_leaky_domain(root: Path, empty: Path) -> None:
    report = verify(policy_root=root, domain="leaky_t", paths=["/home"], root=empty)
    check = report.check("/home", "dir", "write")
    assert check.reason is Reason.BOOLEAN
    assert check.booleans == ("leaky_lockdown=off",)
    opened = verify(
        policy_root=root,
        domain="leaky_t",
        paths=["/home"],
        root=empty,
        booleans={"leaky_lockdown": False},
    )
    grant = opened.check("/home", "dir", "add_name").grants[0]
    assert grant.rule.endswith("[ leaky_lockdown ]:False")


def test_permissive_domain_is_not_ok(root: Path, empty: Path) -> None:
    report = verify(policy_root=root, domain="lax_t", root=empty)
    assert report.permissive
    assert not report.ok
    assert "permissive" in report.violations[0]


def test_alias_resolves(root: Path, empty: Path) -> None:
    report = verify(policy_root=root, domain="svirt_lxc_net_t", root=empty)
    assert (report.domain, report.requested_domain) == ("container_t", "svirt_lxc_net_t")


def test_mcs_section(root: Path) -> None:
    report = verify(policy_root=root, paths=(), level="s0:c0,c1", store=["s0:c2,c3", "s0:c1"])
    rel = {(m.relation, str(m.level), m.check.tclass, m.check.perm): m for m in report.mcs.checks}
    assert rel[("same", "s0:c0,c1", "file", "read")].check.allowed
    assert rel[("s0", "s0", "file", "write")].check.allowed
    assert rel[("other", "s0:c2,c3", "file", "read")].check.reason is Reason.CONSTRAINT
    assert rel[("held", "s0:c2,c3", "dir", "add_name")].check.reason is Reason.CONSTRAINT
    assert rel[("held", "s0:c1", "file", "read")].check.allowed  # dominated: not a cross pair
    # getattr is not in the test policy's mlsconstrain: allowed across pairs, and
    # not must-block by default.
    getattr_cell = rel[("other", "s0:c2,c3", "dir", "getattr")]
    assert getattr_cell.check.allowed and not getattr_cell.violation
    assert report.mcs.ok and report.ok
    strict = verify(
        policy_root=root,
        paths=(),
        level="s0:c0,c1",
        must_block=MustBlock(cross_pair={"file": {"read"}, "dir": {"getattr"}}),
    )
    assert not strict.ok
    assert any("getattr" in v and "other pair" in v for v in strict.violations)


def test_assert_isolated(root: Path) -> None:
    assert_isolated("s0:c0,c1", "s0:c2,c3", policy_root=root)
    with pytest.raises(AssertionError, match="not isolated"):
        assert_isolated("s0:c0,c1", "s0:c0.c2", policy_root=root)
    with pytest.raises(AssertionError, match="getattr: allow"):
        assert_isolated("s0:c0,c1", "s0:c2,c3", policy_root=root, perms={"dir": ["getattr"]})


def test_homedirs_without_entries_uses_the_template(tmp_path: Path, empty: Path) -> None:
    bare = build_root(tmp_path / "bare", homedirs=HOMEDIRS_EMPTY)
    report = verify(policy_root=bare, paths=["/home/bob", "/home/bob/notes"], root=empty)
    assert [(p.context.type, p.source) for p in report.paths] == [
        ("user_home_dir_t", "homedirs_template"),
        ("user_home_t", "homedirs_template"),
    ]
    assert report.ok


def test_decide_one_cell(root: Path) -> None:
    policy = root / "policy" / "policy.33"
    d = decide(
        policy,
        "system_u:system_r:container_t:s0:c0,c1",
        "system_u:object_r:container_file_t:s0:c2,c3",
        "file",
        "read",
    )
    assert d.reason is Reason.CONSTRAINT and not d.allowed


def test_concurrent_verifies_on_two_policies(root: Path, centos_root: Path, empty: Path) -> None:
    # audit2why is one global per process; the lock keeps threads from switching it mid-run.
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def run(name: str, **kwargs: object) -> None:
        try:
            results[name] = verify(root=empty, **kwargs).ok  # type: ignore[arg-type]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(
            target=run, args=("leaky",), kwargs={"policy_root": root, "domain": "leaky_t"}
        ),
        threading.Thread(target=run, args=("centos",), kwargs={"policy_root": centos_root}),
        threading.Thread(target=run, args=("test",), kwargs={"policy_root": root}),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert results == {"leaky": False, "centos": True, "test": True}


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"domain": "nosuch_t"}, UnknownPolicyName, "nosuch_t"),
        ({"file_type": "nosuch_file_t"}, UnknownPolicyName, "nosuch_file_t"),
        ({"classes": ["socket"], "perms": {"socket": ["read"]}}, UnknownPolicyName, "socket"),
        ({"perms": {"file": ["fly"]}}, UnknownPolicyName, "fly"),
        ({"classes": ["process"]}, InvalidInput, "no permissions"),
        ({"classes": "file"}, InvalidInput, "one string"),
        ({"paths": ["/proc"]}, NoFileContext, "/proc"),
        ({"paths": ["var"]}, InvalidInput, "absolute"),
        ({"paths": ["/var\0x"]}, InvalidInput, "NUL"),
        ({"level": "s0:c9"}, InvalidLevel, "c9"),
        ({"level": "SystemHigh"}, InvalidLevel, "mcstrans"),
        ({"booleans": {"nosuch_bool": True}}, UnknownPolicyName, "nosuch_bool"),
        ({"booleans": {"container_use_nfs": "yes"}}, InvalidInput, "True or False"),
        ({"store": 42}, InvalidInput, "store"),
    ],
)
def test_bad_input(
    root: Path, empty: Path, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        verify(policy_root=root, root=empty, **kwargs)  # type: ignore[arg-type]


def test_not_a_policy(tmp_path: Path) -> None:
    bogus = tmp_path / "policy.33"
    bogus.write_bytes(os.urandom(4096))
    with pytest.raises(PolicyError, match="not a binary SELinux policy"):
        verify(policy=bogus, paths=(), domain="container_t", file_type="container_file_t")


def test_non_mls_policy(plain_root: Path) -> None:
    with pytest.raises(PolicyNotMLS, match="not an MLS"):
        verify(policy_root=plain_root)


def test_policy_file_without_root_needs_domain(root: Path) -> None:
    policy = root / "policy" / "policy.33"
    with pytest.raises(InvalidInput, match="no domain"):
        verify(policy=policy, paths=())
    with pytest.raises(InvalidInput, match="policy root"):
        verify(policy=policy, domain="container_t", file_type="container_file_t")
    report = verify(policy=policy, domain="container_t", file_type="container_file_t", paths=())
    assert report.ok and report.level == Level.pair(1, 2)


def test_lxc_contexts_naming_an_alias(tmp_path: Path, empty: Path) -> None:
    # CentOS 7 wrote process = "...:svirt_lxc_net_t:s0": the default domain must resolve.
    old = build_root(tmp_path / "el7")
    (old / "contexts" / "lxc_contexts").write_text(
        'process = "system_u:system_r:svirt_lxc_net_t:s0"\n'
        'file = "system_u:object_r:container_file_t:s0"\n'
    )
    report = verify(policy_root=old, root=empty)
    assert (report.domain, report.requested_domain) == ("container_t", "svirt_lxc_net_t")
    assert report.ok


_CATS = st.frozensets(st.integers(min_value=0, max_value=3))


@settings(max_examples=60, deadline=None)
@given(subject=_CATS, obj=_CATS, perm=st.sampled_from(["read", "write", "unlink"]))
def test_mcs_denies_exactly_what_is_not_dominated(
    root: Path, subject: frozenset[int], obj: frozenset[int], perm: str
) -> None:
    policy = root / "policy" / "policy.33"
    s, o = Level(0, subject), Level(0, obj)
    d = decide(
        policy,
        f"system_u:system_r:container_t:{s}",
        f"system_u:object_r:container_file_t:{o}",
        "file",
        perm,
    )
    assert d.reason is (Reason.ALLOW if s.dominates(o) else Reason.CONSTRAINT)


def test_xattr_type_unknown_to_the_policy(root: Path, tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    os.setxattr(tmp_path / "var", "security.selinux", b"system_u:object_r:httpd_sys_content_t:s0")
    with pytest.raises(UnknownPolicyName, match="httpd_sys_content_t"):
        verify(policy_root=root, paths=["/var"], root=tmp_path)


def test_decide_rejects_unknown_names(root: Path) -> None:
    policy = root / "policy" / "policy.33"
    source = "system_u:system_r:container_t:s0"
    target = "system_u:object_r:var_t:s0"
    with pytest.raises(UnknownPolicyName, match="nosuch_t"):
        decide(policy, source, "system_u:object_r:nosuch_t:s0", "file", "read")
    with pytest.raises(UnknownPolicyName, match="fly"):
        decide(policy, source, target, "file", "fly")
    assert decide(policy, source, target, "dir", "search").allowed


def test_rules_survive_a_policy_reload(root: Path, empty: Path) -> None:
    # The rule cache is per SETools policy object: a reloaded policy (load_policy's
    # cache evicted it) must not be matched against the old object's rules.
    from mcslabel.verification.policy import clear_policy_cache

    first = verify(policy_root=root, root=empty).check("/var", "dir", "search").grants
    clear_policy_cache()
    again = verify(policy_root=root, root=empty).check("/var", "dir", "search").grants
    assert first and again == first


def test_verify_inside_a_held_decisions_block(root: Path, empty: Path) -> None:
    # verify() preloads libsepol in a helper thread; it must not wait for a lock
    # that the calling thread holds.
    with decisions(root / "policy" / "policy.33") as run:
        report = verify(policy_root=root, root=empty)
        assert run(
            "system_u:system_r:container_t:s0:c1,c2",
            "system_u:object_r:var_t:s0",
            "dir",
            "search",
        ).allowed
    assert report.ok
