"""``mcslabel podman``: the docker integration on a real podman, pods and owners apart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mcslabel.allocation.allocator import Allocator
from mcslabel.allocation.stores import open_store
from mcslabel.cli import main
from mcslabel.errors import DockerError
from mcslabel.integrations import docker as docker_engine
from mcslabel.integrations import podman
from mcslabel.level import Level
from tests.podman_env import PodmanContainers

pytestmark = pytest.mark.podman


def _allocator(tmp_path: Path) -> Allocator:
    return Allocator(open_store(f"sqlite:///{tmp_path / 'labels.db'}", create=True))


def _kinds(report: Any, *ids: str) -> set[str]:
    return {f.kind for f in report.findings if set(ids) <= set(f.containers)}


def test_connect_refuses_a_docker_daemon(podman_client: Any) -> None:
    assert "podman" in str(podman_client.version()["Components"]).lower()
    with pytest.raises(DockerError, match="not podman"):
        podman.connect("unix:///var/run/docker.sock")
    with pytest.raises(DockerError, match="cannot reach podman"):
        podman.connect("unix:///nonexistent/podman.sock", timeout=2)


def test_audit_finds_duplicate_dominance_and_disable(
    podman_containers: PodmanContainers,
) -> None:
    make = podman_containers.create
    a = make(security_opt=["label=level:s0:c40,c41"])
    b = make(security_opt=["label=level:s0:c40,c41"])
    c = make(security_opt=["label=level:s0:c50,c51"])
    d = make(security_opt=["label=level:s0:c50,c51,c52"])
    e = make(security_opt=["label=disable"])
    report = podman.audit(podman_containers.client, filters=podman_containers.filters)
    assert len(report.containers) == 5
    assert "duplicate-level" in _kinds(report, a.id, b.id)
    assert "dominating-level" in _kinds(report, c.id, d.id)
    assert "label-disabled" in _kinds(report, e.id)
    assert not report.ok


def test_a_pod_shares_one_level_with_its_infra_container(
    podman_containers: PodmanContainers, tmp_path: Path
) -> None:
    pod = podman_containers.pod(security_opt=["label=level:s0:c60,c61"])
    member_1 = podman_containers.in_pod(pod)
    member_2 = podman_containers.in_pod(pod, security_opt=["label=level:s0:c60,c61"])
    outsider = podman_containers.create(security_opt=["label=level:s0:c60,c61"])
    found = podman.labels_in_use(podman_containers.client, filters=podman_containers.filters)
    in_pod = [c for c in found if c.labels.get(podman.POD_LABEL) == pod]
    assert len(in_pod) == 3  # the infra container and both members
    infra = [c for c in in_pod if c.labels.get(podman.INFRA_LABEL) == "true"]
    assert len(infra) == 1 and infra[0].id not in (member_1, member_2)
    assert {str(c.level) for c in in_pod} == {"s0:c60,c61"}
    groups = docker_engine.pods(found)
    assert sorted(len(g) for g in groups) == [1, 3]
    # Members of one pod share on purpose; the outsider is the duplicate.
    report = podman.audit(podman_containers.client, filters=podman_containers.filters)
    duplicates = [f for f in report.findings if f.kind == "duplicate-level"]
    assert duplicates and all(outsider.id in f.containers for f in duplicates)
    podman_containers.client.containers.get(outsider.id).remove(force=True)
    report = podman.audit(podman_containers.client, filters=podman_containers.filters)
    assert "duplicate-level" not in {f.kind for f in report.findings}
    # sync: one allocation, one owner per container of the pod.
    allocator = _allocator(tmp_path)
    result = podman.sync(podman_containers.client, allocator=allocator)
    record = allocator.get("s0:c60,c61")
    assert record is not None
    assert {c.id for c in in_pod} == {o.removeprefix("podman:") for o in record.owners}
    assert all(o.startswith("podman:") for _, o in result.reserved)


def test_sync_then_allocations_never_clash_and_engines_keep_their_owners(
    podman_containers: PodmanContainers, docker_client: Any, tmp_path: Path
) -> None:
    podman_containers.create(security_opt=["label=level:s0:c10,c20"], start=True)
    podman_containers.create(security_opt=["label=level:s0:c10,c20,c30"], start=True)
    allocator = _allocator(tmp_path)
    allocator.reserve("s0:c7,c8", "docker:0123456789ab", shared=True)  # gone from dockerd
    allocator.reserve("s0:c5,c6", "svc:billing")
    first = podman.sync(podman_containers.client, allocator=allocator)
    assert {lv for lv, _ in first.reserved + first.fenced} >= {"s0:c10,c20,c30"}
    assert first.released == ()  # docker's and others' allocations are not podman's to free
    assert allocator.get("s0:c7,c8") is not None and allocator.get("s0:c5,c6") is not None
    held = [Level.parse("s0:c10,c20"), Level.parse("s0:c10,c20,c30")]
    for i in range(200):
        level = allocator.allocate(f"job:{i}").level
        assert not any(level.comparable(h) for h in held), level
    # dockerd's sync on the same registry leaves podman's owners alone too.
    docker_result = docker_engine.sync(docker_client, allocator=allocator)
    assert not any(o.startswith("podman:") for _, o in docker_result.released)
    assert any(o.startswith("podman:") for r in allocator.allocations() for o in r.owners)
    assert allocator.get("s0:c7,c8") is None  # that one was docker's, and its container is gone
    # A removed podman container's level is released by podman's sync.
    for made in podman_containers.created:
        made.remove(force=True)
    again = podman.sync(podman_containers.client, allocator=allocator)
    assert again.released and all(o.startswith("podman:") for _, o in again.released)
    assert not any(o.startswith("podman:") for r in allocator.allocations() for o in r.owners)
    assert allocator.get("s0:c5,c6") is not None


def test_run_and_rm_relabel_and_restore_a_volume(
    podman_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "f").write_text("x")
    store = f"sqlite:///{tmp_path / 'labels.db'}"
    name = f"mcslabel-test-run-{os.getpid()}"
    args = ["--store", store, "--journal-dir", str(tmp_path / "journals")]
    # As the docker commands: no store is created at an explicit path without --create-store.
    assert main(["podman", "sync", "--store", store]) == 2
    assert "--create-store" in capsys.readouterr().err
    assert not (tmp_path / "labels.db").exists()
    args.append("--create-store")
    code = main(["podman", "run", *args, "-v", f"{volume}:/data:Z", "--name", name, "--json",
                 "mcslabel-busybox:test", "sleep", "300"])  # fmt: skip
    out = capsys.readouterr().out
    try:
        assert code == 0
        started = json.loads(out)
        assert started["owner"] == "podman:" + started["id"]
        label = os.getxattr(volume / "f", "security.selinux").rstrip(b"\0").decode()
        assert label.endswith(":" + started["level"])
        inspected = podman_client.api.inspect_container(started["id"])
        assert f"label=level:{started['level']}" in inspected["HostConfig"]["SecurityOpt"]
        records = Allocator(open_store(store)).allocations()
        # The container and (issue 12) the privately relabeled volume hold the level.
        assert [(str(r.level), set(r.owners)) for r in records] == [
            (started["level"], {started["owner"], f"volume:{volume}"})
        ]
    finally:
        assert main(["podman", "rm", name, "--store", store]) == 0
    with pytest.raises(OSError, match="No data"):
        os.getxattr(volume / "f", "security.selinux")
    assert list(Allocator(open_store(store)).allocations()) == []


def test_cli_json_matches_docker_shape(
    podman_containers: PodmanContainers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    podman_containers.create(security_opt=["label=level:s0:c70,c71"])
    store = f"sqlite:///{tmp_path / 'labels.db'}"
    assert main(["podman", "sync", "--store", store, "--create-store", "--json"]) in (0, 1)
    data = json.loads(capsys.readouterr().out)
    assert set(data) == set(docker_engine.SyncResult().to_dict())
    assert any(r["level"] == "s0:c70,c71" for r in data["reserved"])
    label = f"label=io.mcslabel.test={podman_containers.run_id}"
    assert main(["podman", "audit", "--filter", label, "--store", store, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["containers"]) == 1
    assert {f["kind"] for f in report["findings"]} <= {"daemon-selinux-disabled"}


def test_audit_with_the_registry_names_real_owners(
    podman_containers: PodmanContainers, tmp_path: Path
) -> None:
    mine = podman_containers.create(security_opt=["label=level:s0:c80,c81"])
    by_docker = podman_containers.create(security_opt=["label=level:s0:c82,c83"])
    by_service = podman_containers.create(security_opt=["label=level:s0:c84,c85"])
    allocator = _allocator(tmp_path)
    allocator.reserve("s0:c80,c81", "podman:" + mine.id, shared=True)
    allocator.reserve("s0:c82,c83", "docker:feedfacecafe")
    allocator.reserve("s0:c84,c85", "svc:billing")
    report = podman.audit(
        podman_containers.client, allocator=allocator, filters=podman_containers.filters
    )
    elsewhere = {
        f.containers[0]: f.message for f in report.findings if f.kind == "level-held-elsewhere"
    }
    assert set(elsewhere) == {by_docker.id, by_service.id}  # its own podman owner is no finding
    assert elsewhere[by_docker.id].endswith("gave to docker:feedfacecafe")
    assert elsewhere[by_service.id].endswith("gave to svc:billing")
    assert "other-engine" not in " ".join(f.message for f in report.findings)


def test_the_adopted_pattern_runs_clean_on_podman(
    podman_containers: PodmanContainers, tmp_path: Path
) -> None:
    allocator = _allocator(tmp_path)
    allocation = allocator.allocate("svc:billing")
    made = podman_containers.create(**_options(docker_engine.run_options(allocation)))
    result = podman.sync(podman_containers.client, allocator=allocator)
    assert result.conflicts == ()
    assert (str(allocation.level), "podman:" + made.id, "svc:billing") in result.adopted
    report = podman.audit(
        podman_containers.client, allocator=allocator, filters=podman_containers.filters
    )
    assert {f.kind for f in report.findings} <= {"daemon-selinux-disabled"}, report.findings


def _options(options: dict[str, Any]) -> dict[str, Any]:
    return {"security_opt": options["security_opt"], "labels": options["labels"]}
