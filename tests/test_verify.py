"""verify() on the real policies: the installed Debian refpolicy (+ container
module) and the shared CentOS Stream 9 targeted root.

Oracles: libsepol through audit2why for every decision, and ``sesearch`` /
``seinfo`` (SETools' command-line tools, run as subprocesses) for which TE
rules exist. Paths are looked up under an empty ``root`` so that host xattrs
cannot change the facts checked here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcslabel.level import Level
from mcslabel.verification.policy import PolicyRoot
from mcslabel.verification.verifier import (
    DEFAULT_PERMS,
    McsCheck,
    Reason,
    Report,
    audit2why_decision,
    decisions,
    held_levels,
    other_pair,
    verify,
)

PATHS = ("/var", "/root", "/home", "/home/alice")
TE_DENIED = {Reason.TERULE, Reason.BOOLEAN, Reason.DONTAUDIT}

needs_sesearch = pytest.mark.skipif(
    shutil.which("sesearch") is None or shutil.which("seinfo") is None,
    reason="setools command-line tools not installed",
)


@pytest.fixture(scope="module")
def empty_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty-root")


@pytest.fixture(scope="module")
def debian(empty_root: Path) -> Report:
    return verify(paths=PATHS, root=empty_root)


@pytest.fixture(scope="module")
def centos(centos_root: Path, empty_root: Path) -> Report:
    return verify(policy_root=centos_root, paths=PATHS, root=empty_root)


@pytest.fixture(params=["debian", "centos"])
def report(request: pytest.FixtureRequest) -> Report:
    result: Report = request.getfixturevalue(request.param)
    return result


# --- known facts -----------------------------------------------------------------


def _types(report: Report) -> dict[str, str]:
    return {p.path: p.context.type for p in report.paths}


def test_debian_path_types(debian: Report) -> None:
    assert _types(debian) == {
        "/var": "var_t",
        "/root": "user_home_dir_t",  # Debian labels root's home like any user's
        "/home": "home_root_t",
        "/home/alice": "user_home_dir_t",
    }
    assert {p.source for p in debian.paths} == {"file_contexts"}


def test_centos_path_types(centos: Report) -> None:
    assert _types(centos) == {
        "/var": "var_t",
        "/root": "admin_home_t",
        "/home": "home_root_t",
        "/home/alice": "user_home_dir_t",
    }


def test_defaults_come_from_lxc_contexts(report: Report) -> None:
    assert report.domain == "container_t"
    assert report.level == Level.pair(1, 2)
    assert report.mcs.file_type == "container_file_t"
    assert str(report.mcs.domain_context) == "system_u:system_r:container_t:s0:c1,c2"


@pytest.mark.parametrize("perm", ["read", "write", "append", "unlink"])
def test_host_files_are_not_readable_or_writable(report: Report, perm: str) -> None:
    for path in PATHS:
        check = report.check(path, "file", perm)
        assert not check.allowed, f"{path} file {perm}: {check.reason}"
        assert check.reason in TE_DENIED
        assert check.grants == ()


@pytest.mark.parametrize("perm", ["write", "add_name", "remove_name"])
def test_host_dirs_are_not_writable(report: Report, perm: str) -> None:
    for path in PATHS:
        assert not report.check(path, "dir", perm).allowed


def test_dir_search_is_allowed_with_its_rules(report: Report) -> None:
    types = _types(report)
    for path in PATHS:
        check = report.check(path, "dir", "search")
        assert check.allowed
        assert check.grants, f"no granting rule found for {path} dir search"
        for grant in check.grants:
            assert "search" in grant.perms
            assert grant.tclass == "dir"
            assert grant.expanded_source == "container_t"
            assert grant.expanded_target == types[path]


def test_report_is_ok_and_shaped(report: Report) -> None:
    assert report.ok, report.violations
    data = report.to_dict()
    assert data["ok"] is True
    assert data["domain"] == "container_t"
    assert data["level"] == "s0:c1,c2"
    assert [p["path"] for p in data["paths"]] == list(PATHS)
    cell = data["paths"][0]["checks"][0]
    assert set(cell) >= {"class", "perm", "allowed", "reason", "rules", "booleans"}
    assert len(data["paths"][0]["checks"]) == sum(len(v) for v in DEFAULT_PERMS.values())
    assert data["mcs"]["ok"] is True


def test_grants_name_the_attributes_as_written(centos: Report) -> None:
    # CentOS grants dir search on every file type through attributes.
    grants = centos.check("/home/alice", "dir", "search").grants
    assert any(g.source != "container_t" or g.target != "user_home_dir_t" for g in grants)
    assert all(g.expanded_target == "user_home_dir_t" for g in grants)
    assert any("[container_t -> user_home_dir_t]" in str(g) for g in grants)


# --- MCS ------------------------------------------------------------------------


def _mcs(report: Report, relation: str, tclass: str, perm: str) -> McsCheck:
    for m in report.mcs.checks:
        if (m.relation, m.check.tclass, m.check.perm) == (relation, tclass, perm):
            return m
    raise KeyError((relation, tclass, perm))


@pytest.mark.parametrize("perm", ["read", "write", "append", "unlink", "execute"])
def test_other_pair_is_denied_by_constraint(report: Report, perm: str) -> None:
    m = _mcs(report, "other", "file", perm)
    assert m.cross_pair
    assert m.check.reason is Reason.CONSTRAINT
    assert "mlsconstrain" in m.check.detail
    assert not m.violation


@pytest.mark.parametrize("relation", ["same", "s0"])
def test_same_pair_and_s0_are_allowed(report: Report, relation: str) -> None:
    for perm in ("read", "write", "unlink"):
        m = _mcs(report, relation, "file", perm)
        assert m.check.allowed
        assert not m.cross_pair
        assert m.check.grants


def test_held_levels_are_checked(centos_root: Path) -> None:
    held = [Level.pair(1, 2), Level.pair(3, 4), "s0:c5,c6", Level.parse("s0:c1")]
    report = verify(
        policy_root=centos_root, paths=(), store=held, perms={"file": ["read"]}, classes=["file"]
    )
    by_level = {str(m.level): m for m in report.mcs.checks if m.relation == "held"}
    # The container's own level is not "held by another"; s0:c1 is dominated by s0:c1,c2.
    assert set(by_level) == {"s0:c3,c4", "s0:c5,c6", "s0:c1"}
    assert by_level["s0:c3,c4"].check.reason is Reason.CONSTRAINT
    assert by_level["s0:c5,c6"].check.reason is Reason.CONSTRAINT
    assert by_level["s0:c1"].check.allowed and not by_level["s0:c1"].cross_pair
    assert report.ok


def test_held_levels_accepts_a_store_like_object() -> None:
    class Alloc:
        def __init__(self, level: str) -> None:
            self.level = Level.parse(level)

    class Store:
        def list(self) -> list[Alloc]:
            return [Alloc("s0:c3,c4"), Alloc("s0:c3,c4"), Alloc("s0:c7,c9")]

    assert held_levels(Store()) == (Level.pair(3, 4), Level.pair(7, 9))


def test_held_levels_from_a_real_memory_store() -> None:
    stores = pytest.importorskip("mcslabel.allocation.stores")
    store = stores.open_store("memory://")
    assert held_levels(store) == ()
    held = stores.Allocation(level=Level.pair(3, 4), owners=("test:verify",), created=1.0)
    generation = store.snapshot().generation
    assert store.insert(held, generation=generation).outcome is stores.InsertOutcome.INSERTED
    assert held_levels(store) == (Level.pair(3, 4),)


def test_other_pair_shares_no_category() -> None:
    assert other_pair(Level.pair(1, 2), 1024) == Level.pair(0, 3)
    assert other_pair(Level.pair(0, 1), 1024) == Level.pair(2, 3)


# --- oracles ---------------------------------------------------------------------


def _cells(report: Report) -> list[tuple[str, str, str, str, Any]]:
    return [(p.path, str(p.context), c.tclass, c.perm, c) for p in report.paths for c in p.checks]


def test_every_cell_agrees_with_audit2why(report: Report) -> None:
    # verify decides through libsepol's shared library; audit2why carries its own
    # statically linked libsepol and does its own boolean search: an oracle.
    source = str(report.mcs.domain_context)
    cells = [(target, tclass, perm, c) for _p, target, tclass, perm, c in _cells(report)]
    cells += [(str(m.context), m.check.tclass, m.check.perm, m.check) for m in report.mcs.checks]
    for target, tclass, perm, check in cells:
        expected = audit2why_decision(report.policy, source, target, tclass, perm)
        assert expected.reason is check.reason, (target, tclass, perm)
        if expected.reason is Reason.CONSTRAINT:
            assert "Constraint DENIED" in expected.detail
            assert "mlsconstrain" in check.detail
    with decisions(report.policy) as run:
        first = cells[0]
        assert run(source, first[0], first[1], first[2]).reason is first[3].reason


_RULE = re.compile(r"allow (\S+) (\S+):(\S+) (?:\{ ([^}]*) \}|(\S+));\s*(.*)$")


def _sesearch(policy: str) -> list[tuple[str, str, str, frozenset[str], bool, str]]:
    out = subprocess.run(
        ["sesearch", "-A", "-s", "container_t", "-c", "file,dir", policy],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rules = []
    for line in out.splitlines():
        m = _RULE.match(line.strip())
        if m:
            perms = frozenset((m.group(4) or m.group(5)).split())
            rules.append(
                (m.group(1), m.group(2), m.group(3), perms, bool(m.group(6)), line.strip())
            )
    assert rules, out[:500]
    return rules


def _attributes(policy: str, type_name: str) -> set[str]:
    out = subprocess.run(
        ["seinfo", "-t", type_name, "-x", policy],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    line = next(x for x in out.splitlines() if x.strip().startswith("type "))
    names = line.strip().rstrip(";").removeprefix("type ").split(", ")
    return set(names)


@needs_sesearch
def test_every_cell_agrees_with_sesearch(report: Report) -> None:
    rules = _sesearch(report.policy)
    covers = {p.context.type: _attributes(report.policy, p.context.type) for p in report.paths}
    for _path, target, tclass, perm, check in _cells(report):
        type_name = target.split(":")[2]
        matching = [
            r for r in rules if r[1] in covers[type_name] and r[2] == tclass and perm in r[3]
        ]
        texts = {r[5] for r in matching}
        unconditional = {r[5] for r in matching if not r[4]}
        if unconditional:
            assert check.reason not in (Reason.TERULE, Reason.BOOLEAN), (target, tclass, perm)
        if not matching:
            assert check.reason in (Reason.TERULE, Reason.DONTAUDIT, Reason.BOOLEAN)
            assert check.grants == ()
        if check.allowed:
            mine = {g.rule for g in check.grants}
            assert mine <= texts, mine - texts
            assert unconditional <= mine, unconditional - mine


# --- what we accept ---------------------------------------------------------------


def test_alias_resolves(centos_root: Path) -> None:
    report = verify(
        policy_root=centos_root,
        domain="svirt_lxc_net_t",
        paths=("/var",),
        perms={"file": ["read"]},
        classes=["file"],
    )
    assert report.domain == "container_t"
    assert report.requested_domain == "svirt_lxc_net_t"
    assert report.to_dict()["requested_domain"] == "svirt_lxc_net_t"


def test_two_policies_in_one_process(debian: Report, centos: Report, empty_root: Path) -> None:
    # audit2why holds one policy per process: switching back and forth must work.
    again = verify(paths=PATHS, root=empty_root)
    assert [c.reason for *_, c in _cells(again)] == [c.reason for *_, c in _cells(debian)]
    assert debian.check("/root", "file", "read").reason != Reason.ALLOW
    assert centos.policy != debian.policy


def test_xattr_beats_file_contexts(tmp_path: Path, centos_root: Path) -> None:
    import os

    target = tmp_path / "var"
    target.mkdir()
    os.setxattr(target, "security.selinux", b"system_u:object_r:container_file_t:s0\0")
    report = verify(
        policy_root=centos_root,
        paths=("/var",),
        root=tmp_path,
        perms={"file": ["read"]},
        classes=["file"],
    )
    (path,) = report.paths
    assert path.source == "xattr"
    assert path.context.type == "container_file_t"
    # container_file_t at s0 is readable: the verify flags it.
    assert not report.ok
    assert "container_file_t" in report.violations[0]


def test_installed_root_default_matches_explicit(debian: Report, empty_root: Path) -> None:
    explicit = verify(policy_root=PolicyRoot.installed(), paths=PATHS, root=empty_root)
    assert explicit.to_dict() == debian.to_dict()


def test_a_library_without_the_sepol_api_is_a_typed_error() -> None:
    # libc is real and loaded, and has no sepol_* symbol: what an old or foreign
    # libsepol would look like to _sepol.
    import ctypes
    import ctypes.util

    from mcslabel.errors import SELinuxUnavailable
    from mcslabel.verification._sepol import _declare

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    with pytest.raises(SELinuxUnavailable, match="sepol_compute_av_reason_buffer"):
        _declare(libc, {"sepol_compute_av_reason_buffer": (ctypes.c_int, [])})
