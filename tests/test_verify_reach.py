"""What verify sees: ranged processes, path spellings, pseudo file systems,
the rule behind each context, booleans that matter, and how it is fed levels."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from mcslabel.allocation.allocator import Allocator
from mcslabel.allocation.stores import open_store
from mcslabel.cli import main
from mcslabel.errors import InvalidInput, MCSLabelError
from mcslabel.level import Level, LevelRange
from mcslabel.verification.filecontexts import equivalent_paths, file_contexts_entry
from mcslabel.verification.policy import PolicyRoot
from mcslabel.verification.report import NotChecked, Reason
from mcslabel.verification.verifier import verify

FILE_READ = {"perms": {"file": ["read"]}, "classes": ["file"]}


@pytest.fixture(scope="module")
def empty_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty-root")


# --- a ranged process -------------------------------------------------------------


@pytest.mark.parametrize("level", ["s0-s0:c0.c1023", "s0:c1,c2-s0:c0.c1023"])
def test_a_ranged_container_reaches_every_held_level(level: str) -> None:
    report = verify(paths=(), level=level, held=["s0:c3,c4", "s0:c7,c9"], **FILE_READ)
    assert report.level == LevelRange.parse(level)
    held = {str(m.level): m for m in report.mcs.checks if m.relation == "held"}
    assert set(held) == {"s0:c3,c4", "s0:c7,c9"}
    for m in held.values():
        # libsepol (audit2why too) allows it: the range's high end dominates.
        assert m.check.allowed and m.cross_pair and m.violation
    assert not report.ok
    assert any("s0:c3,c4" in v and level in v for v in report.violations)


def test_the_same_pair_as_a_degenerate_range_is_just_the_level() -> None:
    report = verify(paths=(), level="s0:c1,c2-s0:c1,c2", held=["s0:c3,c4"], **FILE_READ)
    assert report.level == Level.pair(1, 2) and isinstance(report.level, Level)
    assert report.ok


def test_cli_level_range_exits_1_and_names_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", "--level", "s0-s0:c0.c1023", "--path", "/var", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["ok"] is False
    assert data["level"] == "s0-s0:c0.c1023"
    assert data["mcs"]["domain_context"].endswith(":s0-s0:c0.c1023")
    assert main(["verify", "--level", "s0:c1,c2", "--path", "/var"]) == 0


# --- path spellings, genfscon, the rule -------------------------------------------


def test_both_spellings_of_docker_sock_give_one_answer_on_centos(centos_root: Path) -> None:
    root = PolicyRoot.at(centos_root)
    assert not (root.file_contexts_file.parent / "file_contexts.subs_dist").exists()
    assert "/run/docker.sock" in equivalent_paths("/var/run/docker.sock", root)
    answers = {
        str(file_contexts_entry(p, policy_root=root, mode=stat.S_IFSOCK)[0])
        for p in ("/var/run/docker.sock", "/run/docker.sock")
    }
    assert answers == {"system_u:object_r:container_var_run_t:s0"}


def test_both_spellings_in_a_report_name_the_same_rule(centos_root: Path, tmp_path: Path) -> None:
    report = verify(
        policy_root=centos_root,
        root=tmp_path,
        paths=["/var/run/docker.sock", "/run/docker.sock", "/var/lock/x", "/run/lock/x"],
        **FILE_READ,
    )
    by_path = {p.path: p for p in report.paths}
    assert by_path["/var/run/docker.sock"].context == by_path["/run/docker.sock"].context
    assert by_path["/var/lock/x"].context == by_path["/run/lock/x"].context
    rule = by_path["/var/run/docker.sock"].rule
    assert rule.startswith("file_contexts: /run/docker") and "(as /run/docker.sock)" in rule
    assert by_path["/run/docker.sock"].to_dict()["rule"].startswith("file_contexts: /run/docker")


def test_debian_spellings_agree_too(empty_root: Path) -> None:
    report = verify(paths=["/var/run/docker.sock", "/run/docker.sock"], root=empty_root)
    a, b = report.paths
    assert a.context == b.context and a.context.type == "container_runtime_t"


def test_pseudo_file_systems_take_genfscon(empty_root: Path) -> None:
    report = verify(paths=["/proc", "/proc/sys/kernel", "/sys", "/var"], root=empty_root)
    by_path = {p.path: p for p in report.paths}
    assert by_path["/proc"].context.type == "proc_t"
    assert by_path["/proc"].source == "genfscon"
    assert by_path["/proc"].rule == "genfscon proc / system_u:object_r:proc_t:s0"
    assert by_path["/proc/sys/kernel"].context.type == "sysctl_kernel_t"
    assert by_path["/sys"].context.type == "sysfs_t"
    assert by_path["/var"].source == "file_contexts"
    assert by_path["/var"].rule.startswith("file_contexts: /var ")


# --- booleans that matter ----------------------------------------------------------


def test_an_allow_granted_unconditionally_lists_no_boolean(empty_root: Path) -> None:
    report = verify(paths=["/var"], root=empty_root, classes=["dir"], perms={"dir": ["search"]})
    check = report.check("/var", "dir", "search")
    assert check.allowed
    assert any(g.conditional is None for g in check.grants)
    assert check.booleans == ()
    assert check.to_dict()["booleans"] == []


def test_an_allow_granted_only_by_a_conditional_rule_lists_its_boolean(tmp_path: Path) -> None:
    from tests.verify_testpolicy import build_root

    root = build_root(tmp_path / "root")
    report = verify(
        policy_root=root,
        paths=["/mnt/nfs/x"],
        root=tmp_path,
        booleans={"container_use_nfs": True},
        **FILE_READ,
    )
    check = report.check("/mnt/nfs/x", "file", "read")
    assert check.allowed and check.booleans == ("container_use_nfs",)


# --- how verify is fed --------------------------------------------------------------


def test_report_check_of_an_unchecked_cell_is_a_typed_error(empty_root: Path) -> None:
    report = verify(paths=["/var"], root=empty_root, **FILE_READ)
    with pytest.raises(NotChecked, match="bogus") as info:
        report.check("/var", "file", "bogus")
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, MCSLabelError)
    assert "file:read" in str(info.value)
    with pytest.raises(NotChecked, match="/nowhere"):
        report.check("/nowhere", "file", "read")


def test_store_url_allocator_and_held_levels(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    store = open_store(url, create=True)
    try:
        taken = Allocator(store).allocate("test:verify-reach").level
    finally:
        store.close()
    by_url = verify(paths=(), store=url, level="s0:c0,c1", **FILE_READ)
    assert by_url.mcs.held == (taken,)
    again = open_store(url)
    try:
        by_allocator = verify(paths=(), allocator=Allocator(again), level="s0:c0,c1", **FILE_READ)
        by_store = verify(paths=(), store=again, level="s0:c0,c1", **FILE_READ)
    finally:
        again.close()
    assert by_allocator.mcs.held == by_store.mcs.held == (taken,)
    mixed = verify(paths=(), store=url, held=[str(taken), "s0:c5,c6"], **FILE_READ)
    assert mixed.mcs.held == (taken, Level.pair(5, 6))
    assert all(
        m.check.reason is Reason.CONSTRAINT for m in mixed.mcs.checks if m.relation == "held"
    )


def test_bad_held_input_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"s0:c5\.c5"):
        verify(paths=(), held=["s0:c5.c5"], **FILE_READ)
    with pytest.raises(InvalidInput, match="not an Allocator"):
        verify(paths=(), allocator=object(), **FILE_READ)  # type: ignore[arg-type]
