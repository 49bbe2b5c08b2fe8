"""Adopt, don't conflict (issue 12, case 1): a container a script starts at a level it
allocated is that allocation's co-owner under sync and audit, on a real dockerd and a real
SQLite file; the same container without the owner label still conflicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mcslabel.allocation import Allocator, open_store
from mcslabel.errors import InvalidInput
from mcslabel.integrations.docker import (
    OWNER_LABEL,
    OWNER_PREFIX,
    audit,
    run_options,
    security_opt,
    sync,
)
from mcslabel.integrations.pytest_plugin import process_owner
from mcslabel.level import Level

if TYPE_CHECKING:
    from tests.docker_env import Containers

MCSLABEL = Path(sys.executable).with_name("mcslabel")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MCSLABEL_STORE"}
    return subprocess.run(
        [str(MCSLABEL), *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def test_run_options_gives_the_security_option_and_the_owner_label() -> None:
    allocator = Allocator(open_store("memory://"))
    allocation = allocator.allocate("svc:billing")
    assert run_options(allocation) == {
        "security_opt": [f"label=level:{allocation.level}"],
        "labels": {OWNER_LABEL: "svc:billing"},
    }
    assert run_options("s0:c2,c1", owner="svc:x")["security_opt"] == ["label=level:s0:c1,c2"]
    assert security_opt("s0:c1,c2") == security_opt(Level.pair(1, 2))
    with pytest.raises(InvalidInput, match="owner"):
        run_options(Level.pair(1, 2))
    with pytest.raises(InvalidInput, match="does not hold"):
        run_options(allocation, owner="svc:other")
    with pytest.raises(InvalidInput):
        security_opt(42)


@pytest.mark.docker
def test_the_documented_pattern_is_adopted_by_sync_and_audit(
    containers: Containers, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'labels.db'}"
    mine = ["--filter", "label=" + containers.filters["label"]]
    done = _cli("allocate", "--store", store, "--create-store", "--owner", "svc:billing", "--json")
    assert done.returncode == 0, done.stderr
    allocator = Allocator(open_store(store))
    (allocation,) = allocator.owned_by("svc:billing")
    opts = run_options(allocation)
    adopted = containers.create(security_opt=opts["security_opt"], labels=opts["labels"])

    synced = _cli("docker", "sync", "--store", store, "--json", *mine)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    result = json.loads(synced.stdout)
    assert result["ok"] and result["conflicts"] == []
    assert result["adopted"] == [
        {
            "level": str(allocation.level),
            "owner": OWNER_PREFIX + adopted.id,
            "adopted_by": "svc:billing",
        }
    ]
    record = allocator.get(allocation.level)
    assert record is not None
    assert set(record.owners) == {"svc:billing", OWNER_PREFIX + adopted.id}
    audited = _cli("docker", "audit", "--store", store, "--json", *mine)
    assert audited.returncode == 0, audited.stdout
    assert json.loads(audited.stdout)["ok"]

    # The script lets go first: the container keeps the level held until it is gone.
    allocator.release(allocation.level, owner="svc:billing")
    assert allocator.get(allocation.level) is not None
    adopted.remove(force=True)
    sync(containers.client, allocator=allocator, filters=containers.filters)
    assert allocator.get(allocation.level) is None


@pytest.mark.docker
def test_without_the_owner_label_it_is_still_a_conflict(
    containers: Containers, tmp_path: Path
) -> None:
    allocator = Allocator(open_store(f"sqlite:///{tmp_path / 'labels.db'}", create=True))
    allocation = allocator.allocate("svc:billing")
    stranger = containers.create(security_opt=security_opt(allocation))
    result = sync(containers.client, allocator=allocator, filters=containers.filters)
    assert [o for _, o, _ in result.conflicts] == [OWNER_PREFIX + stranger.id]
    assert not result.adopted and not result.ok
    report = audit(containers.client, allocator=allocator, filters=containers.filters)
    assert [f.containers for f in report.by_kind("level-held-elsewhere")] == [(stranger.id,)]
    # A label naming someone who does not hold the level is no pass either.
    liar = containers.create(
        security_opt=security_opt(allocation), labels={OWNER_LABEL: "svc:someone-else"}
    )
    result = sync(containers.client, allocator=allocator, filters=containers.filters)
    assert OWNER_PREFIX + liar.id in [o for _, o, _ in result.conflicts]


@pytest.mark.docker
def test_the_pytest_page_pattern_runs_clean_under_sync_and_audit(
    containers: Containers, tmp_path: Path
) -> None:
    # What docs/pytest.md's "with a real container" does, with sync and audit running
    # against the same registry while the container lives.
    allocator = Allocator(open_store(f"sqlite:///{tmp_path / 'labels.db'}", create=True))
    mcs_level = allocator.allocate(process_owner()).level
    opts = run_options(mcs_level, owner=process_owner())
    c = containers.create(start=True, security_opt=opts["security_opt"], labels=opts["labels"])
    result = sync(containers.client, allocator=allocator, filters=containers.filters)
    assert result.ok and [o for _, o, _ in result.adopted] == [OWNER_PREFIX + c.id]
    assert audit(containers.client, allocator=allocator, filters=containers.filters).ok
