"""Data on disk holds its level (issue 12, cases 2, 3, 6 and 8) on a real dockerd and a real
SQLite file: a privately relabeled volume keeps its level held after its container is gone,
until it is restored or forgotten, and one volume never carries two private levels.
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
from mcslabel.errors import LabelInUse
from mcslabel.integrations.docker import (
    OWNER_PREFIX,
    remove,
    restore_volume,
    run,
    sync,
    volume_owner,
    volume_report,
)
from tests.docker_env import IMAGE, TEST_LABEL
from tests.xattrs import label

pytestmark = pytest.mark.docker

if TYPE_CHECKING:
    from tests.docker_env import Containers

MCSLABEL = Path(sys.executable).with_name("mcslabel")
XATTR = "security.selinux"
VAR_T = "system_u:object_r:var_t:s0"


def _label(path: Path) -> str | None:
    raw = label(path)
    return None if raw is None else raw.rstrip(b"\0").decode()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MCSLABEL_STORE"}
    return subprocess.run(
        [str(MCSLABEL), *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


@pytest.fixture
def volume(var_t_volume: Path) -> Path:
    return var_t_volume


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'labels.db'}"


def _run(containers: Containers, allocator: Allocator, tmp_path: Path, **kwargs: Any) -> Any:
    started = run(
        containers.client,
        IMAGE,
        ["sleep", "300"],
        allocator=allocator,
        journal_dir=tmp_path / "journals",
        labels={TEST_LABEL: containers.run_id},
        **kwargs,
    )
    containers.created.append(started.container)
    return started


def test_v_without_z_does_not_relabel(containers: Containers, volume: Path, store: str) -> None:
    # Case 6: docker and podman never relabel without :z/:Z.
    name = f"mcslabel-test-{containers.run_id}-plain"
    done = _cli(
        "docker", "run", "--store", store, "--create-store", "--json", "--name", name,
        "--label", f"{TEST_LABEL}={containers.run_id}",
        "--journal-dir", str(volume.parent / "journals"),
        "-v", f"{volume}:/data", IMAGE, "sleep", "300",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    containers.created.append(containers.client.containers.get(out["id"]))
    assert out["journals"] == []
    assert _label(volume) == VAR_T and _label(volume / "f") == VAR_T


def test_keep_labels_leaves_the_level_held_until_forgotten(
    containers: Containers, volume: Path, store: str, tmp_path: Path
) -> None:
    # Case 2: rm --keep-labels used to release a level the volume still carries.
    journals = str(tmp_path / "journals")
    name = f"mcslabel-test-{containers.run_id}-keep"
    done = _cli(
        "docker", "run", "--store", store, "--create-store", "--json", "--name", name,
        "--label", f"{TEST_LABEL}={containers.run_id}", "--journal-dir", journals,
        "-v", f"{volume}:/data:Z", IMAGE, "sleep", "300",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    containers.created.append(containers.client.containers.get(out["id"]))
    level = out["level"]
    done = _cli("docker", "rm", "--store", store, "--json", "--keep-labels", name)
    assert done.returncode == 0, done.stderr
    removed = json.loads(done.stdout)
    assert removed["id"] == out["id"] and removed["restored"] is False
    assert removed["held_volumes"] == [str(volume)]
    assert _label(volume) == f"system_u:object_r:container_file_t:{level}"

    taken = _cli("reserve", "--store", store, "--owner", "docker:someone-else", level)
    assert taken.returncode != 0, taken.stdout
    listed = json.loads(_cli("docker", "volumes", "--store", store, "--json").stdout)
    (mine,) = [v for v in listed["volumes"] if v["path"] == str(volume)]
    assert mine["level"] == level and mine["held"] and mine["orphaned"]

    done = _cli(
        "docker", "volumes", "--store", store, "--journal-dir", journals, "forget", str(volume)
    )
    assert done.returncode == 0, done.stderr
    assert _label(volume) == f"system_u:object_r:container_file_t:{level}"  # forgotten, not undone
    taken = _cli("reserve", "--store", store, "--owner", "docker:someone-else", level)
    assert taken.returncode == 0, taken.stderr


def test_vanished_container_leaves_level_held_and_sync_reports_the_journal(
    containers: Containers, volume: Path, store: str, tmp_path: Path
) -> None:
    # Case 3: `docker rm -f` then sync used to release the level of data still on disk.
    allocator = Allocator(open_store(store, create=True))
    started = _run(containers, allocator, tmp_path, volumes=[f"{volume}:/data:Z"])
    started.container.remove(force=True)
    result = sync(containers.client, allocator=allocator, filters=containers.filters,
                  journal_dir=tmp_path / "journals")  # fmt: skip
    assert (str(started.level), started.owner) in result.released
    (orphan,) = [o for o in result.orphaned if o[0] == str(volume)]
    assert orphan[1] == str(started.level) and orphan[2] == tuple(map(str, started.journals))
    record = allocator.get(started.level)
    assert record is not None and record.owners == (volume_owner(volume),)
    with pytest.raises(LabelInUse):
        allocator.reserve(started.level, "svc:next")

    found = volume_report(containers.client, allocator, journal_dir=tmp_path / "journals")
    restore_volume(found, volume, allocator=allocator)
    assert _label(volume) == VAR_T and _label(volume / "f") == VAR_T
    assert allocator.get(started.level) is None
    assert not any(j.exists() for j in started.journals)


def test_a_second_private_relabel_is_refused_and_restores_end_at_the_original(
    containers: Containers, volume: Path, store: str, tmp_path: Path
) -> None:
    # Case 8: A then B with -v DIR:/x:Z used to leave the volume at A's level, held by nobody.
    allocator = Allocator(open_store(store, create=True))
    a = _run(containers, allocator, tmp_path, volumes=[f"{volume}:/x:Z"])
    with pytest.raises(LabelInUse, match=f"{a.level}.*{OWNER_PREFIX}{a.id}"):
        _run(containers, allocator, tmp_path, volumes=[f"{volume}:/x:Z"])
    assert _label(volume) == f"system_u:object_r:container_file_t:{a.level}"
    remove(containers.client, a.id, allocator=allocator)
    assert _label(volume) == VAR_T and _label(volume / "f") == VAR_T
    assert allocator.allocations() == []


def test_joining_a_volume_shares_its_level_and_the_last_one_out_restores(
    containers: Containers, volume: Path, store: str, tmp_path: Path
) -> None:
    allocator = Allocator(open_store(store, create=True))
    a = _run(containers, allocator, tmp_path, volumes=[f"{volume}:/x:Z"])
    b = _run(containers, allocator, tmp_path, volumes=[f"{volume}:/x:Z"], join=True)
    assert b.level == a.level
    removal = remove(containers.client, a.id, allocator=allocator)
    assert not removal.restored and removal.held_volumes == (str(volume),)
    assert _label(volume) == f"system_u:object_r:container_file_t:{a.level}"  # B still runs
    record = allocator.get(a.level)
    assert record is not None and set(record.owners) == {volume_owner(volume), b.owner}
    remove(containers.client, b.id, allocator=allocator)
    assert _label(volume) == VAR_T and _label(volume / "f") == VAR_T
    assert allocator.allocations() == []
    assert list((tmp_path / "journals").glob("*.journal")) == []
