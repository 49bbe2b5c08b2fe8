"""run/remove on a real dockerd with real relabels (security.selinux xattrs on ext4).

The kernel has no SELinux LSM, so the container is not confined by the labels; what is
checked is what mcslabel controls: the labels written on the volumes, the level Docker is
told to use, the registry, and that every failure undoes what was done before it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mcslabel.allocation.allocator import Allocator
from mcslabel.allocation.stores import open_store
from mcslabel.errors import DockerError, InvalidInput, RefusedPath, RelabelError
from mcslabel.integrations.docker import (
    JOURNALS_LABEL,
    LEVEL_LABEL,
    OWNER_PREFIX,
    Volume,
    audit,
    container_label,
    remove,
    run,
    volume_owner,
)
from tests.docker_env import IMAGE, TEST_LABEL

# Every test here talks to the real dockerd (deselect with -m "not docker").
pytestmark = pytest.mark.docker

if TYPE_CHECKING:
    from tests.docker_env import Containers

XATTR = "security.selinux"


def _label(path: Path) -> str | None:
    try:
        return os.getxattr(path, XATTR).rstrip(b"\0").decode()
    except OSError:
        return None


@pytest.fixture
def allocator(tmp_path: Path) -> Allocator:
    return Allocator(open_store(f"sqlite:///{tmp_path / 'labels.db'}", create=True))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/srv/a:/data", Volume("/srv/a", "/data", "", False)),  # as docker: no relabel
        ("/srv/a:/data:Z", Volume("/srv/a", "/data", "Z", False)),
        ("/srv/a:/data:ro,z", Volume("/srv/a", "/data", "z", True)),
        ("/srv/a:/data:rw,noZ", Volume("/srv/a", "/data", "", False)),
    ],
)
def test_volume_parse(spec: str, expected: Volume) -> None:
    assert Volume.parse(spec) == expected


@pytest.mark.parametrize(
    "spec", ["/srv/a", "a:/data", "/srv/a:data", "/a:/b:Z,z", "/a:/b:ro,rw", "/a:/b:x", ":/b"]
)
def test_volume_parse_rejects(spec: str) -> None:
    with pytest.raises(InvalidInput):
        Volume.parse(spec)


def _run(
    docker_client: Any, allocator: Allocator, tmp_path: Path, run_id: str, **kwargs: Any
) -> Any:
    return run(
        docker_client,
        IMAGE,
        ["sleep", "300"],
        allocator=allocator,
        journal_dir=tmp_path / "journals",
        labels={TEST_LABEL: run_id},
        **kwargs,
    )


def test_run_relabels_starts_and_remove_restores(
    containers: Containers, allocator: Allocator, tmp_path: Path
) -> None:
    private, shared = tmp_path / "private", tmp_path / "shared"
    private.mkdir()
    shared.mkdir()
    (private / "old.txt").write_text("kept")
    os.setxattr(shared, XATTR, b"system_u:object_r:user_tmp_t:s0\0")
    before = {p: _label(p) for p in (private, private / "old.txt", shared)}

    started = _run(
        containers.client,
        allocator,
        tmp_path,
        containers.run_id,
        volumes=[f"{private}:/data:Z", Volume(shared, "/shared", "z", read_only=True)],
    )
    containers.created.append(started.container)
    level = started.level
    assert level.is_pair and started.owner == OWNER_PREFIX + started.id
    assert _label(private) == f"system_u:object_r:container_file_t:{level}"
    assert _label(private / "old.txt") == f"system_u:object_r:container_file_t:{level}"
    assert _label(shared) == "system_u:object_r:container_ro_file_t:s0"

    seen = container_label(started.container.attrs)
    assert seen.level == level and seen.status == "running"
    assert seen.labels[LEVEL_LABEL] == str(level)
    assert len(started.journals) == 2 and all(j.exists() for j in started.journals)
    # Docker got plain rw/ro binds: mcslabel did the relabel, nothing was asked twice.
    assert {(m.destination, m.relabel, m.read_only) for m in seen.mounts} == {
        ("/data", "", False),
        ("/shared", "", True),
    }
    record = allocator.get(level)
    assert record is not None and set(record.owners) == {volume_owner(private), started.owner}

    code, out = started.container.exec_run(["sh", "-c", "echo hi > /data/new && cat /data/old.txt"])
    assert (code, out) == (0, b"kept")
    assert (private / "new").read_text() == "hi\n"

    remove(containers.client, started.id, allocator=allocator)
    assert {p: _label(p) for p in before} == before
    assert allocator.get(level) is None
    assert not any(j.exists() for j in started.journals)
    assert containers.client.containers.list(all=True, filters={"id": started.id}) == []


def test_big_volume_journal_segments_are_restored_and_removed(
    containers: Containers, allocator: Allocator, tmp_path: Path
) -> None:
    # Big enough for relabel's worker processes, whose journals come in segments (PATH.N).
    volume = tmp_path / "big"
    for d in range(50):
        sub = volume / f"d{d}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"f{f}").touch()
    sample = volume / "d7" / "f42"
    os.setxattr(sample, XATTR, b"system_u:object_r:user_tmp_t:s0\0")
    started = _run(
        containers.client, allocator, tmp_path, containers.run_id, volumes=[f"{volume}:/data:Z"]
    )
    containers.created.append(started.container)
    (journal,) = started.journals
    assert sorted(p.name for p in journal.parent.iterdir() if p.name != journal.name), (
        "expected per-worker segments beside the journal"
    )
    assert _label(sample) == f"system_u:object_r:container_file_t:{started.level}"
    remove(containers.client, started.id, allocator=allocator)
    assert _label(sample) == "system_u:object_r:user_tmp_t:s0"
    assert _label(volume / "d3" / "f1") is None
    assert list(journal.parent.iterdir()) == []


def test_remove_without_restore_keeps_labels(
    containers: Containers, allocator: Allocator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    started = _run(
        containers.client, allocator, tmp_path, containers.run_id, volumes=[f"{data}:/data:Z"]
    )
    containers.created.append(started.container)
    remove(containers.client, started.container, allocator=allocator, restore=False)
    assert _label(data) == f"system_u:object_r:container_file_t:{started.level}"
    # The data still carries the level: the volume holds it until restored or forgotten.
    record = allocator.get(started.level)
    assert record is not None and record.owners == (volume_owner(data),)
    assert record.persistent


def test_run_refused_volume_undoes_everything(
    containers: Containers, allocator: Allocator, tmp_path: Path
) -> None:
    good = tmp_path / "good"
    good.mkdir()
    before = _label(good)
    name = f"mcslabel-test-{containers.run_id}-refused"
    with pytest.raises(RefusedPath):
        _run(
            containers.client,
            allocator,
            tmp_path,
            containers.run_id,
            name=name,
            volumes=[f"{good}:/good:Z", "/etc:/host-etc:Z"],
        )
    assert _label(good) == before
    assert list(allocator.allocations()) == []
    assert containers.client.containers.list(all=True, filters={"name": name}) == []
    assert list((tmp_path / "journals").glob("*.journal")) == []


def test_run_bad_image_undoes_everything(
    containers: Containers, allocator: Allocator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    before = _label(data)
    with pytest.raises(DockerError):
        run(
            containers.client,
            f"mcslabel-no-such-image-{containers.run_id}:none",
            allocator=allocator,
            journal_dir=tmp_path / "journals",
            volumes=[f"{data}:/data"],
        )
    assert _label(data) == before
    assert list(allocator.allocations()) == []


def test_run_missing_volume_source_is_input_error(
    containers: Containers, allocator: Allocator, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput):
        _run(
            containers.client,
            allocator,
            tmp_path,
            containers.run_id,
            volumes=[f"{tmp_path / 'absent'}:/data"],
        )
    assert list(allocator.allocations()) == []


def test_remove_refuses_foreign_container(containers: Containers, allocator: Allocator) -> None:
    plain = containers.create()
    with pytest.raises(InvalidInput):
        remove(containers.client, plain.id, allocator=allocator)
    assert containers.client.containers.get(plain.id).id == plain.id


def test_audit_refused_bind_mounts_and_daemon_socket(containers: Containers) -> None:
    etc_ro = containers.create(volumes={"/etc": {"bind": "/host-etc", "mode": "ro"}})
    etc_rw = containers.create(volumes={"/etc": {"bind": "/host-etc", "mode": "rw"}})
    sock = containers.create(
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}}
    )
    report = audit(containers.client, filters=containers.filters)
    refused = {f.containers[0]: f for f in report.by_kind("refused-bind-mount")}
    assert refused[etc_ro.id].severity == "medium"
    assert refused[etc_rw.id].severity == "high"
    assert "/etc" in refused[etc_rw.id].message
    assert [f.containers for f in report.by_kind("daemon-socket-mount")] == [(sock.id,)]


def test_run_unusable_journal_dir_undoes_everything(
    containers: Containers, allocator: Allocator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    before = _label(data)
    not_a_dir = tmp_path / "journals-file"
    not_a_dir.write_text("")
    with pytest.raises(RelabelError, match="journal directory"):
        run(
            containers.client,
            IMAGE,
            allocator=allocator,
            journal_dir=not_a_dir,
            volumes=[f"{data}:/data:Z"],
            labels={TEST_LABEL: containers.run_id},
        )
    assert _label(data) == before
    assert list(allocator.allocations()) == []
    assert containers.client.containers.list(all=True, filters=containers.filters) == []


def test_remove_refuses_a_tampered_journals_label(
    containers: Containers, allocator: Allocator
) -> None:
    forged = containers.create(labels={LEVEL_LABEL: "s0:c1,c2", JOURNALS_LABEL: "{not json"})
    with pytest.raises(InvalidInput, match=JOURNALS_LABEL):
        remove(containers.client, forged.id, allocator=allocator)
    # Refused before anything was done: the container is still there.
    assert containers.client.containers.get(forged.id).id == forged.id


def test_journals_label_is_json_list(
    containers: Containers, allocator: Allocator, tmp_path: Path
) -> None:
    started = _run(containers.client, allocator, tmp_path, containers.run_id)
    containers.created.append(started.container)
    assert started.container.labels[JOURNALS_LABEL] == "[]"
    remove(containers.client, started.container, allocator=allocator)


def test_cli_run_and_rm(containers: Containers, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    mcslabel = Path(sys.executable).parent / "mcslabel"
    name = f"mcslabel-test-{containers.run_id}-cli"
    common = ["--store", store]
    done = subprocess.run(
        [str(mcslabel), "docker", "run", *common, "--create-store", "--json", "--name", name,
         "--label", f"{TEST_LABEL}={containers.run_id}",
         "--journal-dir", str(tmp_path / "journals"),
         "-v", f"{data}:/data:Z", IMAGE, "sleep", "300"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    containers.created.append(containers.client.containers.get(out["id"]))
    assert _label(data) == f"system_u:object_r:container_file_t:{out['level']}"
    allocator = Allocator(open_store(store))
    record = allocator.get(out["level"])
    assert record is not None and set(record.owners) == {
        volume_owner(data),
        OWNER_PREFIX + out["id"],
    }
    done = subprocess.run(
        [str(mcslabel), "docker", "rm", *common, name],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _label(data) is None
    assert allocator.get(out["level"]) is None
    done = subprocess.run(
        [str(mcslabel), "docker", "run", *common, "-v", "/etc:/x:Z", IMAGE],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "refusing to relabel" in done.stderr
    assert allocator.allocations() == []


def test_undo_restores_every_journal_even_after_a_failure(tmp_path: Path) -> None:
    from mcslabel.errors import JournalError
    from mcslabel.integrations.docker.volumes import restore_journals as _restore_journals
    from mcslabel.relabeling.engine import relabel

    data = tmp_path / "data"
    data.mkdir()
    before = _label(data)
    good = tmp_path / "good.journal"
    relabel(data, level="s0:c5,c6", journal=good)
    damaged = tmp_path / "damaged.journal"
    damaged.write_text("not a journal\n")
    # Newest first: the damaged one fails, the good one is still restored after it.
    with pytest.raises(JournalError):
        _restore_journals([good, damaged], restore=True)
    assert _label(data) == before
    assert not good.exists()
    assert damaged.exists()  # kept for a manual `mcslabel restore`
