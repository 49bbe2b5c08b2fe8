"""sync against a real dockerd and a real SQLite store, and the issue's done-when scenario.

The allocators here use 6 categories (15 pairs), so "allocate never returns a level in use"
is checked by allocating every free pair, not by hoping a random draw would collide.
Other containers on the daemon (not this test's) may show up as conflicts: sync is
daemon-wide by design, so assertions look at this test's containers only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mcslabel.allocation.allocator import Allocator
from mcslabel.allocation.stores import open_store
from mcslabel.integrations.docker import OWNER_PREFIX, sync
from mcslabel.level import Level

# Every test here talks to the real dockerd (deselect with -m "not docker").
pytestmark = pytest.mark.docker

if TYPE_CHECKING:
    from tests.docker_env import Containers

# The CLI installed beside the interpreter running the tests (the venv's).
MCSLABEL = Path(sys.executable).with_name("mcslabel")
CATEGORIES = 6


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'labels.db'}"


@pytest.fixture
def allocator(store_url: str) -> Allocator:
    return Allocator(open_store(store_url, create=True), categories=CATEGORIES, exclude=())


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MCSLABEL_STORE"}
    done = subprocess.run(
        [str(MCSLABEL), *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    if check and done.returncode not in (0, 1):
        raise AssertionError(f"mcslabel {' '.join(args)} -> {done.returncode}: {done.stderr}")
    return done


def _allocate_all(store_url: str) -> list[str]:
    """`mcslabel allocate` until SpaceExhausted (exit 3): every level it will hand out."""
    levels: list[str] = []
    for _ in range(CATEGORIES * CATEGORIES):
        done = _cli(
            "allocate",
            "--store",
            store_url,
            "--categories",
            str(CATEGORIES),
            "--owner",
            "test:allocate-all",
            "--json",
            check=False,
        )
        if done.returncode == 3:
            assert "SpaceExhausted" in done.stdout + done.stderr or "no free" in done.stderr
            return levels
        assert done.returncode == 0, done.stderr
        levels.append(json.loads(done.stdout)["level"])
    raise AssertionError("allocate never ran out of pairs")


def _release_all(store_url: str, levels: list[str]) -> None:
    for level in levels:
        _cli("release", level, "--store", store_url, "--categories", str(CATEGORIES))


def _mine(entries: list[dict[str, str]], *containers: Any) -> set[tuple[str, str]]:
    owners = {OWNER_PREFIX + c.id for c in containers}
    return {(e["level"], e["owner"]) for e in entries if e["owner"] in owners}


def _only(containers: Containers) -> list[str]:
    """sync --filter for this test's containers: others on the shared daemon stay out."""
    return ["--filter", "label=" + containers.filters["label"]]


ALL_PAIRS = {str(Level.pair(a, b)) for a in range(CATEGORIES) for b in range(a + 1, CATEGORIES)}


def test_done_when_audit_sync_allocate_remove(containers: Containers, store_url: str) -> None:
    base = containers.create(security_opt=["label=level:s0:c0,c1"], start=True)
    dup = containers.create(security_opt=["label=level:s0:c0,c1"])
    dom = containers.create(security_opt=["label=level:s0:c0,c1,c2"])
    off = containers.create(security_opt=["label=disable"])

    audited = _cli("docker", "audit", "--json", "--filter", "label=" + containers.filters["label"])
    assert audited.returncode == 1
    kinds = {f["kind"]: set(f["containers"]) for f in json.loads(audited.stdout)["findings"]}
    assert kinds["duplicate-level"] == {base.id, dup.id}
    assert kinds["dominating-level"] == {dom.id, base.id, dup.id}
    assert kinds["label-disabled"] == {off.id}

    synced = _cli(
        "docker",
        "sync",
        "--create-store",
        "--store",
        store_url,
        "--categories",
        str(CATEGORIES),
        *_only(containers),
        "--json",
    )
    result = json.loads(synced.stdout)
    # The custom level goes first and blocks the pair it dominates: that pair is a conflict.
    assert _mine(result["reserved"], dom) == {("s0:c0.c2", OWNER_PREFIX + dom.id)}
    assert {lv for lv, _ in _mine(result["conflicts"], base, dup)} == {"s0:c0,c1"}
    handed_out = _allocate_all(store_url)
    dominated = {"s0:c0,c1", "s0:c0,c2", "s0:c1,c2"}
    assert set(handed_out) == ALL_PAIRS - dominated
    assert len(handed_out) == len(set(handed_out))
    _release_all(store_url, handed_out)

    dom.remove(force=True)
    result = json.loads(
        _cli(
            "docker",
            "sync",
            "--store",
            store_url,
            "--categories",
            str(CATEGORIES),
            *_only(containers),
            "--json",
        ).stdout
    )
    assert _mine(result["released"], dom) == {("s0:c0.c2", OWNER_PREFIX + dom.id)}
    assert _mine(result["reserved"], base, dup) == {
        ("s0:c0,c1", OWNER_PREFIX + base.id),
        ("s0:c0,c1", OWNER_PREFIX + dup.id),
    }
    handed_out = _allocate_all(store_url)
    assert set(handed_out) == ALL_PAIRS - {"s0:c0,c1"}
    _release_all(store_url, handed_out)

    base.remove(force=True)
    _cli(
        "docker", "sync", "--store", store_url, "--categories", str(CATEGORIES), *_only(containers)
    )
    assert "s0:c0,c1" not in _allocate_all(store_url)  # dup still uses it
    dup.remove(force=True)
    result = json.loads(
        _cli(
            "docker",
            "sync",
            "--store",
            store_url,
            "--categories",
            str(CATEGORIES),
            *_only(containers),
            "--json",
        ).stdout
    )
    assert _mine(result["released"], dup) == {("s0:c0,c1", OWNER_PREFIX + dup.id)}
    assert "s0:c0,c1" in _allocate_all(store_url)


def test_sync_pod_shares_one_refcounted_allocation(
    containers: Containers, allocator: Allocator
) -> None:
    pod = {"io.mcslabel.pod": "p-" + containers.run_id}
    a = containers.create(security_opt=["label=level:s0:c3,c4"], labels=pod)
    b = containers.create(security_opt=["label=level:s0:c3,c4"], labels=pod)
    first = sync(containers.client, allocator=allocator, filters=containers.filters)
    assert {(lv, o) for lv, o in first.reserved if o in _owners(a, b)} == {
        ("s0:c3,c4", OWNER_PREFIX + a.id),
        ("s0:c3,c4", OWNER_PREFIX + b.id),
    }
    record = allocator.get("s0:c3,c4")
    assert record is not None and record.shared and record.refcount == 2
    again = sync(containers.client, allocator=allocator, filters=containers.filters)
    assert {o for _, o in again.kept} >= _owners(a, b)
    assert not [r for r in again.reserved if r[1] in _owners(a, b)]
    a.remove(force=True)
    sync(containers.client, allocator=allocator, filters=containers.filters)
    record = allocator.get("s0:c3,c4")
    assert record is not None and record.owners == (OWNER_PREFIX + b.id,)


def _owners(*containers: Any) -> set[str]:
    return {OWNER_PREFIX + c.id for c in containers}


def test_sync_fences_a_custom_level_the_registry_refuses(
    containers: Containers, allocator: Allocator
) -> None:
    pair = containers.create(security_opt=["label=level:s0:c3,c4"])
    sync(containers.client, allocator=allocator, filters=containers.filters)
    # Created after the pair was registered: s0:c3.c5 dominates it and is refused...
    wide = containers.create(security_opt=["label=level:s0:c3,c4,c5"])
    result = sync(containers.client, allocator=allocator, filters=containers.filters)
    assert [c[0] for c in result.conflicts if c[1] == OWNER_PREFIX + wide.id] == ["s0:c3.c5"]
    # ...reported, and recorded in use, which blocks every level it could read, by rule.
    assert {lv for lv, o in result.fenced if o == OWNER_PREFIX + wide.id} == {"s0:c3.c5"}
    recorded = allocator.get("s0:c3,c4,c5", in_use=True)
    assert recorded is not None and recorded.owners == (OWNER_PREFIX + wide.id,)
    allocator.sync()
    assert not any(allocator.is_free(p) for p in ("s0:c3,c4", "s0:c3,c5", "s0:c4,c5"))
    wide.remove(force=True)
    result = sync(containers.client, allocator=allocator, filters=containers.filters)
    assert {lv for lv, o in result.released if o == OWNER_PREFIX + wide.id} == {"s0:c3.c5"}
    assert allocator.get("s0:c3,c4,c5", in_use=True) is None
    record = allocator.get("s0:c3,c4")
    assert record is not None and record.owners == (OWNER_PREFIX + pair.id,)
    pair.remove(force=True)
    sync(containers.client, allocator=allocator, filters=containers.filters)
    assert allocator.get("s0:c3,c4") is None


def test_sync_reports_a_level_held_by_another_owner(
    containers: Containers, allocator: Allocator
) -> None:
    allocator.reserve("s0:c2,c5", "pid:1@elsewhere")  # not shared: podman's, say
    c = containers.create(security_opt=["label=level:s0:c2,c5"])
    result = sync(containers.client, allocator=allocator, filters=containers.filters)
    (conflict,) = [x for x in result.conflicts if x[1] == OWNER_PREFIX + c.id]
    assert conflict[0] == "s0:c2,c5" and "pid:1@elsewhere" in conflict[2]
    record = allocator.get("s0:c2,c5")
    assert record is not None and record.owners == ("pid:1@elsewhere",)


def test_audit_with_registry(containers: Containers, allocator: Allocator) -> None:
    from mcslabel.integrations.docker import audit

    allocator.reserve("s0:c1,c3", "pid:1@elsewhere")
    foreign = containers.create(security_opt=["label=level:s0:c1,c3"])
    unregistered = containers.create(security_opt=["label=level:s0:c4,c5"])
    report = audit(containers.client, allocator=allocator, filters=containers.filters)
    assert [f.containers for f in report.by_kind("level-held-elsewhere")] == [(foreign.id,)]
    assert [f.containers for f in report.by_kind("unregistered-level")] == [(unregistered.id,)]
    sync(containers.client, allocator=allocator, filters=containers.filters)
    report = audit(containers.client, allocator=allocator, filters=containers.filters)
    assert report.by_kind("unregistered-level") == []


class _ListedBeforeCreate:
    """The real client, but its listing predates every container (the race sync must survive)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.api = self

    def containers(self, **kwargs: Any) -> list[Any]:
        return []

    def inspect_container(self, container_id: str) -> Any:
        return self._client.api.inspect_container(container_id)


def test_sync_keeps_a_container_created_after_its_listing(
    containers: Containers, allocator: Allocator
) -> None:
    c = containers.create(security_opt=["label=level:s0:c1,c4"])
    allocator.reserve("s0:c1,c4", OWNER_PREFIX + c.id, shared=True)
    result = sync(
        _ListedBeforeCreate(containers.client), allocator=allocator, filters=containers.filters
    )
    assert result.released == ()
    assert allocator.get("s0:c1,c4") is not None
    c.remove(force=True)
    result = sync(
        _ListedBeforeCreate(containers.client), allocator=allocator, filters=containers.filters
    )
    assert result.released == (("s0:c1,c4", OWNER_PREFIX + c.id),)


def test_docker_commands_never_create_a_mistyped_store(
    containers: Containers, tmp_path: Path
) -> None:
    typo = tmp_path / "typo" / "labels.db"
    mine = ["--filter", "label=" + containers.filters["label"]]
    audited = _cli("docker", "audit", "--store", f"sqlite:///{typo}", *mine, check=False)
    synced = _cli("docker", "sync", "--store", f"sqlite:///{typo}", *mine, check=False)
    assert (audited.returncode, synced.returncode) == (2, 2), audited.stderr + synced.stderr
    assert not typo.parent.exists()
    created = _cli("docker", "sync", "--store", f"sqlite:///{typo}", "--create-store", *mine)
    assert created.returncode == 0, created.stderr
    assert typo.exists()
