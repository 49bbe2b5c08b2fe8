"""A held volume is asked of every engine (docker AND podman) before it is restored or forgotten.

Real parts: the installed ``mcslabel`` script, the real dockerd, the real podman
service, real SQLite stores and real ``security.selinux`` xattrs. A volume
relabeled by one engine's ``run`` and then used by the other engine's container
must not be restored (or its level released) from the first engine's side; an
engine that does not answer is a refusal unless the risk is accepted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mcslabel.allocation import Allocator, open_store
from mcslabel.errors import EngineUnreachable, VolumeInUse
from mcslabel.integrations import docker as docker_engine
from mcslabel.integrations import podman
from tests.docker_env import IMAGE, TEST_LABEL

if TYPE_CHECKING:
    from tests.docker_env import Containers
    from tests.podman_env import PodmanContainers

pytestmark = [pytest.mark.docker, pytest.mark.podman]

MCSLABEL = Path(sys.executable).with_name("mcslabel")
XATTR = "security.selinux"
VAR_T = "system_u:object_r:var_t:s0"
NOWHERE = "unix:///nonexistent/mcslabel-podvol-test.sock"


def _label(path: Path) -> str:
    return os.getxattr(path, XATTR).rstrip(b"\0").decode()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MCSLABEL_STORE", "CONTAINER_HOST")}
    return subprocess.run(
        [str(MCSLABEL), *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def volume(var_t_volume: Path) -> Path:
    return var_t_volume


@pytest.fixture
def where(tmp_path: Path) -> list[str]:
    """--store and --journal-dir of this test."""
    return ["--store", f"sqlite:///{tmp_path / 'labels.db'}", "--journal-dir", str(tmp_path / "j")]


def _orphan(engine: str, made: Containers, volume: Path, where: list[str]) -> str:
    """``mcslabel <engine> run -v volume:/data:Z``, then the container removed behind
    mcslabel's back (``docker rm -f``): the volume keeps its level held. Returns it."""
    done = _cli(
        engine, "run", *where, "--create-store", "--json", "--label",
        f"{TEST_LABEL}={made.run_id}", "-v", f"{volume}:/data:Z", IMAGE, "sleep", "300",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    started = _json(done)
    made.client.containers.get(started["id"]).remove(force=True)
    assert _label(volume / "f").endswith(":" + started["level"])
    return str(started["level"])


def _mount(made: Containers, path: str | Path, *, start: bool = True) -> Any:
    """A plain container of ``made``'s engine bind-mounting ``path`` (no mcslabel involved)."""
    return made.create(volumes={str(path): {"bind": "/data", "mode": "rw"}}, start=start)


def _refused(done: subprocess.CompletedProcess[str], kind: str) -> str:
    assert done.returncode == 3, (done.stdout, done.stderr)
    error = _json(done)["error"]
    assert error["type"] == kind, error
    return str(error["message"])


def test_docker_restore_refuses_a_volume_a_podman_container_mounts(
    containers: Containers, podman_containers: PodmanContainers, volume: Path, where: list[str]
) -> None:
    level = _orphan("docker", containers, volume, where)
    user = _mount(podman_containers, volume)
    listed = _json(_cli("docker", "volumes", *where, "--json"))
    (mine,) = [v for v in listed["volumes"] if v["path"] == str(volume)]
    assert not mine["orphaned"] and mine["containers"] == [user.id]
    assert mine["users"] == [
        {"engine": "podman", "id": user.id, "name": user.name, "state": "running", "how": "mount"}
    ]
    assert [(e["name"], e["reachable"]) for e in listed["engines"]] == [
        ("docker", True),
        ("podman", True),
    ]
    for action in ("restore", "forget"):
        message = _refused(
            _cli("docker", "volumes", action, str(volume), *where, "--json"), "VolumeInUse"
        )
        assert f"podman container {user.name}" in message
    assert _label(volume / "f").endswith(":" + level)  # nothing was restored
    user.remove(force=True)
    done = _cli("docker", "volumes", "restore", str(volume), *where, "--json")
    assert done.returncode == 0, done.stderr
    assert _json(done)["volume"]["path"] == str(volume)
    assert _label(volume / "f") == VAR_T
    # The volume let its level go (the removed container's docker:<id> stays until sync).
    held = Allocator(open_store(where[1])).get(level)
    assert held is None or not any(o.startswith("volume:") for o in held.owners)


def test_podman_restore_refuses_a_volume_a_docker_container_mounts(
    containers: Containers, podman_containers: PodmanContainers, volume: Path, where: list[str]
) -> None:
    level = _orphan("podman", podman_containers, volume, where)
    user = _mount(containers, volume)
    listed = _json(_cli("podman", "volumes", "list", *where, "--json"))
    (mine,) = [v for v in listed["volumes"] if v["path"] == str(volume)]
    assert [(u["engine"], u["id"]) for u in mine["users"]] == [("docker", user.id)]
    for action in ("restore", "forget"):
        message = _refused(
            _cli("podman", "volumes", action, str(volume), *where, "--json"), "VolumeInUse"
        )
        assert f"docker container {user.name}" in message
    assert _label(volume / "f").endswith(":" + level)
    user.remove(force=True)
    done = _cli("podman", "volumes", "restore", str(volume), *where)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "engines: podman asked, docker asked"
    assert _label(volume / "f") == VAR_T


def test_an_unreachable_engine_is_a_refusal_unless_accepted(
    containers: Containers, volume: Path, where: list[str]
) -> None:
    level = _orphan("docker", containers, volume, where)
    away = ["--podman-host", NOWHERE]
    listed = _cli("docker", "volumes", *where, *away, "--json")
    assert listed.returncode == 0, listed.stderr
    engines = {e["name"]: e for e in _json(listed)["engines"]}
    assert engines["docker"]["reachable"] and not engines["podman"]["reachable"]
    assert (
        engines["podman"]["url"] == NOWHERE and "cannot reach podman" in engines["podman"]["error"]
    )
    table = _cli("docker", "volumes", *where, *away)
    assert f"podman UNREACHABLE at {NOWHERE}" in table.stdout
    assert "podman did not answer" in table.stderr
    for action in ("restore", "forget"):
        message = _refused(
            _cli("docker", "volumes", action, str(volume), *where, *away, "--json"),
            "EngineUnreachable",
        )
        assert NOWHERE in message and "--allow-unreachable" in message
    assert _label(volume / "f").endswith(":" + level)
    # Left out on purpose: asked of docker alone.
    alone = _json(_cli("docker", "volumes", *where, *away, "--engine", "docker", "--json"))
    assert [e["name"] for e in alone["engines"]] == ["docker"]
    done = _cli("docker", "volumes", "restore", str(volume), *where, *away, "--allow-unreachable")
    assert done.returncode == 0, done.stderr
    assert _label(volume / "f") == VAR_T
    # The command's own engine must answer: that stays an error (exit 3).
    own = _cli("podman", "volumes", "--podman-host", NOWHERE, *where, "--json")
    assert own.returncode == 3 and _json(own)["error"]["type"] == "DockerError"


def test_one_volume_used_by_both_engines_and_named_two_ways(
    containers: Containers,
    podman_containers: PodmanContainers,
    volume: Path,
    where: list[str],
    tmp_path: Path,
) -> None:
    _orphan("docker", containers, volume, where)
    link = tmp_path / "link"
    link.symlink_to(volume)
    # podman mounts it through the symlink (reported as typed), docker a directory inside it.
    (volume / "sub").mkdir()
    by_podman = _mount(podman_containers, f"{link}/")
    by_docker = _mount(containers, volume / "sub")
    for name in (f"{volume}/", str(link), f"{link}//"):
        message = _refused(
            _cli("docker", "volumes", "forget", name, *where, "--json"), "VolumeInUse"
        )
        assert f"podman container {by_podman.name}" in message
        assert f"docker container {by_docker.name}" in message
    by_podman.remove(force=True)
    message = _refused(
        _cli("podman", "volumes", "restore", str(link), *where, "--json"), "VolumeInUse"
    )
    assert by_podman.name not in message and by_docker.name in message
    by_docker.remove(force=True)
    done = _cli("podman", "volumes", "restore", f"{link}/", *where, "--json")
    assert done.returncode == 0, done.stderr
    assert _json(done)["volume"]["path"] == str(volume)  # the real path, whatever was typed
    assert _label(volume / "f") == VAR_T


def test_a_container_being_started_blocks_the_restore(
    containers: Containers, podman_containers: PodmanContainers, volume: Path, where: list[str]
) -> None:
    level = _orphan("docker", containers, volume, where)
    # Created, not started yet: it will mount the volume.
    created = _mount(podman_containers, volume, start=False)
    message = _refused(
        _cli("docker", "volumes", "restore", str(volume), *where, "--json"), "VolumeInUse"
    )
    assert f"podman container {created.name}" in message
    created.remove(force=True)
    # An `mcslabel run --join` in progress holds the level as pid:<n>@<host> before its
    # container exists: a live process on this host, so the restore waits for it.
    allocator = Allocator(open_store(where[1]))
    allocator.add_owner(level, f"pid:{os.getpid()}@{allocator.host}")
    message = _refused(
        _cli("docker", "volumes", "restore", str(volume), *where, "--json"), "VolumeInUse"
    )
    assert f"a starting mcslabel run (pid:{os.getpid()}@" in message
    allocator.release(level, owner=f"pid:{os.getpid()}@{allocator.host}")
    assert _cli("docker", "volumes", "restore", str(volume), *where).returncode == 0


def test_the_library_asks_both_engines(
    containers: Containers, podman_containers: PodmanContainers, volume: Path, where: list[str]
) -> None:
    _orphan("podman", podman_containers, volume, where)
    allocator = Allocator(open_store(where[1]))
    journals = where[3]
    user = _mount(containers, volume)
    for report in (
        podman.volume_report(podman_containers.client, allocator, journal_dir=journals),
        docker_engine.volume_report(containers.client, allocator, journal_dir=journals),
    ):
        assert {e.name for e in report.engines if e.reachable} == {"docker", "podman"}
        with pytest.raises(VolumeInUse) as refused:
            podman.restore_volume(report, volume, allocator=allocator)
        assert refused.value.engine == "docker" and refused.value.container == user.name
    away = podman.volume_report(
        podman_containers.client,
        allocator,
        journal_dir=journals,
        others=docker_engine.connect_engines(["docker"], {"docker": NOWHERE}),
    )
    with pytest.raises(EngineUnreachable) as unreachable:
        podman.forget_volume(away, volume, allocator=allocator)
    assert unreachable.value.engines == ("docker",)
    user.remove(force=True)
    report = podman.volume_report(podman_containers.client, allocator, journal_dir=journals)
    assert podman.restore_volume(report, volume, allocator=allocator).path == str(volume)
    assert _label(volume / "f") == VAR_T


def test_a_container_created_during_the_restore_keeps_the_level_held(
    containers: Containers, podman_containers: PodmanContainers, volume: Path, where: list[str]
) -> None:
    # The race, made deterministic: the report is taken, then a podman container is created
    # on the volume before restore_volume runs (as if between its question and its restore).
    level = _orphan("docker", containers, volume, where)
    allocator = Allocator(open_store(where[1]))
    report = docker_engine.volume_report(containers.client, allocator, journal_dir=where[3])
    late = _mount(podman_containers, volume, start=False)
    with pytest.raises(VolumeInUse, match=f"was restored, but now podman container {late.name}"):
        docker_engine.restore_volume(report, volume, allocator=allocator)
    held = allocator.get(level)
    assert held is not None and f"volume:{volume}" in held.owners  # not handed out again


@pytest.mark.parametrize("first", ["docker", "podman"])
def test_rm_keeps_a_volume_the_other_engines_joined_container_uses(
    containers: Containers,
    podman_containers: PodmanContainers,
    volume: Path,
    where: list[str],
    first: str,
) -> None:
    # One volume, one level, a container of each engine at it (the second one --join).
    started = {}
    for made, extra in ((containers, []), (podman_containers, ["--join"])):
        engine = "docker" if made is containers else "podman"
        done = _cli(
            engine, "run", *where, "--create-store", "--json", *extra, "--label",
            f"{TEST_LABEL}={made.run_id}", "-v", f"{volume}:/data:Z", IMAGE, "sleep", "300",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        started[engine] = _json(done)
        made.created.append(made.client.containers.get(started[engine]["id"]))
    level = started["docker"]["level"]
    assert started["podman"]["level"] == level
    second = "podman" if first == "docker" else "docker"
    done = _cli(first, "rm", started[first]["id"], where[0], where[1], "--json")
    assert done.returncode == 0, done.stderr
    removed = _json(done)
    # The other engine's container still runs at the level on the volume: kept.
    assert removed["restored"] is False and removed["held_volumes"] == [str(volume)]
    assert _label(volume / "f").endswith(":" + level)
    done = _cli(second, "rm", started[second]["id"], where[0], where[1], "--json")
    assert done.returncode == 0, done.stderr
    assert _json(done)["restored"] is True
    assert _label(volume / "f") == VAR_T
