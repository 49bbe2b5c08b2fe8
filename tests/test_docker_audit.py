"""labels_in_use and audit against a real dockerd (scripts/dockerd.sh), plus inspect parsing.

The kernel here has no SELinux LSM, so dockerd leaves ProcessLabel/MountLabel empty and
keeps the labels we ask for in HostConfig.SecurityOpt; the LSM-filled case is covered by
parsing a ``docker inspect`` document as an SELinux host's dockerd writes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcslabel.integrations.docker import (
    AuditReport,
    ContainerLabel,
    audit,
    container_label,
    labels_in_use,
    pods,
)
from mcslabel.level import Level

if TYPE_CHECKING:
    from tests.docker_env import Containers

# The CLI installed beside the interpreter running the tests (the venv's).
MCSLABEL = Path(sys.executable).with_name("mcslabel")


def _inspect(**host: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "Id": "a" * 64,
        "Name": "/web",
        "State": {"Status": "running"},
        "Config": {"Labels": {}},
        "HostConfig": host,
        "Mounts": [],
    }
    doc.update(host.pop("_top", {}))
    return doc


# --- parsing docker inspect ------------------------------------------------------


@pytest.mark.parametrize(
    ("opts", "level", "type_", "disabled"),
    [
        (["label=level:s0:c2,c1"], "s0:c1,c2", None, False),
        (["label:level:s0:c5,c9"], "s0:c5,c9", None, False),  # legacy spelling
        (["label=disable"], None, None, True),
        (["label:disable"], None, None, True),
        (["label=type:spc_t"], None, "spc_t", False),
        (["label=level:s0-s0:c0.c1023"], "s0:c0.c1023", None, False),  # a range reaches high
        (["seccomp=unconfined", "label=user:system_u"], None, None, False),
        ([], None, None, False),
    ],
)
def test_container_label_parses_security_opt(
    opts: list[str], level: str | None, type_: str | None, disabled: bool
) -> None:
    c = container_label(_inspect(SecurityOpt=opts))
    assert (None if c.level is None else str(c.level)) == level
    assert (c.type, c.disabled) == (type_, disabled)
    assert c.name == "web"


def test_container_label_reads_lsm_filled_process_label() -> None:
    # What dockerd writes on an SELinux host; this kernel has no LSM to produce it.
    doc = _inspect(SecurityOpt=None)
    doc["ProcessLabel"] = "system_u:system_r:container_t:s0:c7,c300"
    doc["MountLabel"] = "system_u:object_r:container_file_t:s0:c7,c300"
    c = container_label(doc)
    assert c.level == Level.pair(7, 300)
    assert c.type == "container_t"
    assert c.mount_label == "system_u:object_r:container_file_t:s0:c7,c300"
    assert c.confined


def test_container_label_keeps_unparsable_level_text() -> None:
    c = container_label(_inspect(SecurityOpt=["label=level:s0:c9999"]))
    assert c.level is None and c.level_text == "s0:c9999"


def _fake(i: int, *, labels: dict[str, str] | None = None, joins: tuple[str, ...] = ()) -> Any:
    return ContainerLabel(
        id=f"{i:064x}",
        name=f"c{i}",
        status="running",
        level=Level.pair(1, 2),
        level_text="s0:c1,c2",
        type=None,
        disabled=False,
        privileged=False,
        process_label=None,
        mount_label=None,
        security_opt=(),
        labels=labels or {},
        joins=joins,
    )


@given(st.lists(st.sampled_from(["", "p1", "p2"]), max_size=8))
def test_pods_partition_by_pod_label(values: list[str]) -> None:
    items = [_fake(i, labels={"io.mcslabel.pod": v} if v else {}) for i, v in enumerate(values)]
    groups = pods(items)
    assert sorted(c.id for g in groups for c in g) == sorted(c.id for c in items)
    for group in groups:
        pod_values = {c.labels.get("io.mcslabel.pod", "") for c in group}
        assert len(pod_values) == 1
        assert len(group) == 1 or pod_values != {""}


def test_pods_join_by_namespace_sharing() -> None:
    a, b, c = _fake(1), _fake(2, joins=("c1",)), _fake(3)
    groups = sorted(sorted(x.name for x in g) for g in pods([a, b, c]))
    assert groups == [["c1", "c2"], ["c3"]]


# --- a real daemon ---------------------------------------------------------------


@pytest.mark.docker
def test_labels_in_use_reads_real_containers(containers: Containers) -> None:
    running = containers.create(security_opt=["label=level:s0:c10,c11"], start=True)
    stopped = containers.create(security_opt=["label=type:spc_t", "label=level:s0:c12,c13"])
    off = containers.create(security_opt=["label=disable"])
    priv = containers.create(privileged=True)
    seen = {c.id: c for c in labels_in_use(containers.client, filters=containers.filters)}
    assert set(seen) == {running.id, stopped.id, off.id, priv.id}
    assert seen[running.id].level == Level.pair(10, 11)
    assert seen[running.id].status == "running"
    assert seen[stopped.id].status == "created"
    assert (seen[stopped.id].type, seen[stopped.id].level) == ("spc_t", Level.pair(12, 13))
    assert seen[off.id].disabled and seen[off.id].level is None
    assert seen[priv.id].privileged and not seen[priv.id].confined
    assert seen[running.id].confined


def _three(containers: Containers) -> tuple[Any, Any, Any, Any]:
    """The done-when set: a duplicate level, a dominating level, label=disable."""
    base = containers.create(security_opt=["label=level:s0:c20,c21"], start=True)
    dup = containers.create(security_opt=["label=level:s0:c20,c21"])
    dom = containers.create(security_opt=["label=level:s0:c20,c21,c22"])
    off = containers.create(security_opt=["label=disable"])
    return base, dup, dom, off


@pytest.mark.docker
def test_audit_reports_duplicate_dominating_and_disabled(containers: Containers) -> None:
    base, dup, dom, off = _three(containers)
    report = audit(containers.client, filters=containers.filters)
    assert isinstance(report, AuditReport)
    assert not report.ok
    (duplicate,) = report.by_kind("duplicate-level")
    assert set(duplicate.containers) == {base.id, dup.id}
    assert duplicate.level == "s0:c20,c21" and duplicate.severity == "high"
    (dominating,) = report.by_kind("dominating-level")
    assert set(dominating.containers) == {dom.id, base.id, dup.id}
    assert dominating.level == "s0:c20.c22"
    (disabled,) = report.by_kind("label-disabled")
    assert disabled.containers == (off.id,)


@pytest.mark.docker
def test_cli_audit_json_reports_all_three_and_exits_1(containers: Containers) -> None:
    base, dup, dom, off = _three(containers)
    done = subprocess.run(
        [str(MCSLABEL), "docker", "audit", "--json", "--filter", _filter_arg(containers)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "MCSLABEL_STORE"},
    )
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    kinds = {f["kind"]: set(f["containers"]) for f in data["findings"]}
    assert kinds["duplicate-level"] == {base.id, dup.id}
    assert dom.id in kinds["dominating-level"]
    assert kinds["label-disabled"] == {off.id}
    assert data["ok"] is False and data["counts"]["high"] >= 3
    assert {c["id"] for c in data["containers"]} == {base.id, dup.id, dom.id, off.id}


def _filter_arg(containers: Containers) -> str:
    return "label=" + containers.filters["label"]


@pytest.mark.docker
def test_cli_audit_table_and_clean_exit_0(containers: Containers) -> None:
    containers.create(security_opt=["label=level:s0:c30,c31"])
    containers.create(security_opt=["label=level:s0:c32,c33"])
    done = subprocess.run(
        [str(MCSLABEL), "docker", "audit", "--filter", _filter_arg(containers)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "MCSLABEL_STORE"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("2 containers,")


def test_cli_audit_bad_filter_exit_2() -> None:
    done = subprocess.run(
        [str(MCSLABEL), "docker", "audit", "--filter", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "KEY=VALUE" in done.stderr


@pytest.mark.docker
def test_audit_accepts_pods(containers: Containers) -> None:
    pod = {"io.mcslabel.pod": f"pod-{containers.run_id}"}
    a = containers.create(security_opt=["label=level:s0:c40,c41"], labels=pod, start=True)
    containers.create(security_opt=["label=level:s0:c40,c41"], labels=pod)
    # Docker's own pod pattern: join a's IPC namespace.
    containers.create(security_opt=["label=level:s0:c40,c41"], ipc_mode=f"container:{a.id}")
    report = audit(containers.client, filters=containers.filters)
    assert report.by_kind("duplicate-level") == []
    assert report.ok


@pytest.mark.docker
def test_audit_privileged_and_spc_t(containers: Containers) -> None:
    priv = containers.create(privileged=True)
    spc = containers.create(security_opt=["label=type:spc_t"])
    report = audit(containers.client, filters=containers.filters)
    assert [f.containers for f in report.by_kind("privileged")] == [(priv.id,)]
    assert [f.containers for f in report.by_kind("unconfined-type")] == [(spc.id,)]


@pytest.mark.docker
def test_audit_volume_label_mismatch(containers: Containers, tmp_path: Path) -> None:
    own, other, unlabeled = tmp_path / "own", tmp_path / "other", tmp_path / "none"
    for d in (own, other, unlabeled):
        d.mkdir()
    ctx = "system_u:object_r:container_file_t:{}"
    os.setxattr(own, "security.selinux", ctx.format("s0:c50,c51").encode() + b"\0")
    os.setxattr(other, "security.selinux", ctx.format("s0:c60,c61").encode() + b"\0")
    with_own = containers.create(
        security_opt=["label=level:s0:c50,c51"],
        volumes={str(own): {"bind": "/own", "mode": "rw"}},
    )
    with_other = containers.create(
        security_opt=["label=level:s0:c52,c53"],
        volumes={str(other): {"bind": "/other", "mode": "rw"}},
    )
    # A container at the level the 'other' directory carries: mounting it is reading its data.
    owner = containers.create(security_opt=["label=level:s0:c60,c61"])
    report = audit(
        containers.client,
        filters=containers.filters,
        refused=lambda path: None,  # relabel's refused list is tested in test_docker_run
    )
    (foreign,) = report.by_kind("volume-of-other-container")
    assert foreign.containers == (with_other.id, owner.id)
    assert foreign.path == str(other)
    assert report.involving(with_own.id) == []
    if _has_no_xattr(unlabeled):
        plain = containers.create(
            security_opt=["label=level:s0:c54,c55"],
            volumes={str(unlabeled): {"bind": "/none", "mode": "ro"}},
        )
        report = audit(containers.client, filters=containers.filters, refused=lambda p: None)
        assert [f.kind for f in report.involving(plain.id)] == ["volume-unlabeled"]


def _has_no_xattr(path: Path) -> bool:
    try:
        os.getxattr(path, "security.selinux")
    except OSError:
        return True
    return False


def test_cli_parser_does_not_import_the_docker_sdk() -> None:
    code = (
        "import sys; from mcslabel.cli import build_parser; build_parser();"
        " import mcslabel.integrations.docker, mcslabel.integrations.pytest_plugin;"
        " print(sorted(m for m in sys.modules if m == 'docker' or m.startswith('docker.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_unavailable_daemon_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import docker_env

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Docker daemon could be started: x"):
        docker_env._unavailable("x")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Docker daemon required in CI: x"):
        docker_env._unavailable("x")


@pytest.mark.parametrize("command", ["audit", "sync"])
def test_cli_without_daemon_is_a_clear_failure(command: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(MCSLABEL), "docker", command, "--docker-host", f"unix://{tmp_path}/none.sock",
         "--store", f"sqlite:///{tmp_path / 'labels.db'}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stderr.startswith("mcslabel: error: cannot reach the Docker daemon")
    assert len(done.stderr.splitlines()) == 1


def test_unreachable_daemon_is_a_docker_error_in_every_call(tmp_path: Path) -> None:
    # A pinned API version skips the SDK's version probe, so the first request is the one
    # that meets the dead socket: the SDK raises requests' ConnectionError, not its own.
    import docker as docker_sdk

    from mcslabel.allocation.allocator import Allocator
    from mcslabel.allocation.stores import open_store
    from mcslabel.errors import DockerError
    from mcslabel.integrations.docker import sync

    client = docker_sdk.DockerClient(
        base_url=f"unix://{tmp_path}/none.sock", version="1.41", timeout=5
    )
    allocator = Allocator(open_store(f"sqlite:///{tmp_path / 'labels.db'}", create=True))
    with pytest.raises(DockerError, match="cannot list containers"):
        list(labels_in_use(client))
    with pytest.raises(DockerError):
        audit(client)
    with pytest.raises(DockerError):
        sync(client, allocator=allocator)
    assert allocator.allocations() == []


# --- reading labels as the engine does (issue 12, case 5) -------------------------


@pytest.mark.parametrize(
    ("opts", "level", "disabled"),
    [
        (["label=level:s0:c1,c1"], "s0:c1", False),  # the kernel runs it as s0:c1
        (["label=level:s0:c3,c1,c3"], "s0:c1,c3", False),
        (["label=level:s0:c0.c2,c1"], "s0:c0.c2", False),
        (["label=level:s0-s0:c5,c5,c6"], "s0:c5,c6", False),
        (["disable"], None, True),  # moby: a bare disable is label=disable
        (["label=level:s0:c1,c2", "label=level:s0:c3,c4"], "s0:c3,c4", False),  # last wins
        (["label:level:s0:c1,c1"], "s0:c1", False),
    ],
)
def test_security_opt_read_with_moby_and_kernel_rules(
    opts: list[str], level: str | None, disabled: bool
) -> None:
    c = container_label(_inspect(SecurityOpt=opts))
    assert (None if c.level is None else str(c.level)) == level
    assert c.disabled == disabled
    assert c.confined != disabled
    assert not c.unreadable


def test_bare_disable_is_a_high_label_disabled_finding() -> None:
    from mcslabel.integrations.docker.findings import _confinement_findings

    c = container_label(_inspect(SecurityOpt=["disable"]))
    assert [f.kind for f in _confinement_findings([c])] == ["label-disabled"]


def test_unreadable_option_falls_back_to_inspect_labels() -> None:
    doc = _inspect(SecurityOpt=["label=level:s0:c5.c1"])  # reversed: the kernel refuses it
    doc["ProcessLabel"] = "system_u:system_r:container_t:s0:c5,c9"
    c = container_label(doc)
    assert c.level == Level.pair(5, 9) and c.level_text == "s0:c5.c1"
    doc = _inspect(SecurityOpt=["label=level:s0:c5.c1"])
    doc["MountLabel"] = "system_u:object_r:container_file_t:s0:c5,c7,c7"
    assert container_label(doc).level == Level.pair(5, 7)
    still = container_label(_inspect(SecurityOpt=["label=level:s0:c5.c1"]))
    assert still.level is None and still.unreadable


@given(st.sets(st.integers(0, 1023), min_size=1, max_size=6), st.integers(1, 3))
def test_kernel_reach_is_canonical_whatever_the_repeats(cats: set[int], repeat: int) -> None:
    from mcslabel.integrations.docker import kernel_reach

    text = "s0:" + ",".join(f"c{c}" for c in sorted(cats) * repeat)
    assert kernel_reach(text) == Level(0, frozenset(cats))
    assert kernel_reach(f"s0-{text}") == Level(0, frozenset(cats))


@pytest.mark.docker
def test_sync_reports_unreadable_and_out_of_range_and_never_aborts(
    containers: Containers, tmp_path: Path
) -> None:
    from mcslabel.allocation import Allocator, open_store
    from mcslabel.integrations.docker import OWNER_PREFIX, sync

    allocator = Allocator(
        open_store(f"sqlite:///{tmp_path / 'r.db'}", create=True), categories=6, exclude=()
    )
    wide = containers.create(security_opt=["label=level:s0:c1,c1"])  # read as s0:c1
    far = containers.create(security_opt=["label=level:s0:c100,c200"])  # outside 6 categories
    bad = containers.create(security_opt=["label=level:s0:c9999"])
    good = containers.create(security_opt=["label=level:s0:c2,c3"])
    result = sync(containers.client, allocator=allocator, filters=containers.filters)
    owners = dict(result.reserved)
    assert owners["s0:c2,c3"] == OWNER_PREFIX + good.id
    assert owners["s0:c1"] == OWNER_PREFIX + wide.id
    assert [(lv, o) for lv, o, _ in result.conflicts] == [("s0:c100,c200", OWNER_PREFIX + far.id)]
    assert [(i, lv) for i, lv, _ in result.unreadable] == [(bad.id, "s0:c9999")]
    assert not result.ok

    done = subprocess.run(
        [str(MCSLABEL), "docker", "sync", "--store", f"sqlite:///{tmp_path / 'r.db'}",
         "--categories", "6", "--filter", "label=" + containers.filters["label"]],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "unreadable" in done.stdout and "conflict" in done.stdout
    assert f"docker:{far.id[:12]}" in done.stdout and far.id not in done.stdout


@pytest.mark.docker
def test_sync_filter_mirrors_only_matching_and_releases_nothing_else(
    containers: Containers, tmp_path: Path
) -> None:
    from mcslabel.allocation import Allocator, open_store
    from mcslabel.integrations.docker import OWNER_PREFIX, sync

    allocator = Allocator(
        open_store(f"sqlite:///{tmp_path / 'f.db'}", create=True), categories=6, exclude=()
    )
    inside = containers.create(security_opt=["label=level:s0:c1,c2"], labels={"pick": "yes"})
    outside = containers.create(security_opt=["label=level:s0:c3,c4"])
    sync(containers.client, allocator=allocator, filters=containers.filters)
    picked = {"label": [containers.filters["label"], "pick=yes"]}
    result = sync(containers.client, allocator=allocator, filters=picked)
    assert result.kept == (("s0:c1,c2", OWNER_PREFIX + inside.id),)
    assert result.released == ()  # outside the filter is not "gone"
    assert allocator.get("s0:c3,c4") is not None
    outside.remove(force=True)
    result = sync(containers.client, allocator=allocator, filters=picked)
    assert result.released == (("s0:c3,c4", OWNER_PREFIX + outside.id),)


def test_old_argument_order_still_works_with_a_warning(tmp_path: Path) -> None:
    from mcslabel.allocation import Allocator, open_store
    from mcslabel.integrations.docker.daemon import positional_allocator

    allocator = Allocator(open_store("memory://"))
    assert positional_allocator((), allocator, "audit") is allocator
    with pytest.warns(DeprecationWarning, match="keyword"):
        assert positional_allocator((allocator,), None, "audit") is allocator
