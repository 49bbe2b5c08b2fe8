"""Every level in use blocks (issue 12, cases 4 and 9), on a real dockerd and a real SQLite
file: levels sync cannot record as allocations (conflicts, wide ranges) are recorded in use
and keep the allocator from handing out anything comparable with them, whatever their size.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mcslabel.allocation import Allocator, open_store
from mcslabel.errors import DominanceConflict, LabelInUse, SpaceExhausted
from mcslabel.integrations.docker import OWNER_PREFIX, audit, sync
from mcslabel.level import Level

pytestmark = pytest.mark.docker

if TYPE_CHECKING:
    from tests.docker_env import Containers


def _allocator(tmp_path: Path, categories: int) -> Allocator:
    store = open_store(f"sqlite:///{tmp_path / 'labels.db'}", create=True)
    return Allocator(store, categories=categories, exclude=())


@pytest.mark.parametrize("first", ["s0:c10", "s0:c10,c20,c30"])
def test_200_allocations_never_comparable_with_synced_containers(
    containers: Containers, tmp_path: Path, first: str
) -> None:
    # 32 categories (496 pairs, 32 of them comparable with one of the two) so that a hole
    # would be hit by 200 draws, not missed by luck.
    allocator = _allocator(tmp_path, 32)
    levels = [Level.parse("s0:c10"), Level.parse("s0:c10,c20,c30")]
    second = next(str(lv) for lv in levels if str(lv) != first)
    containers.create(security_opt=[f"label=level:{first}"])
    sync(containers.client, allocator=allocator, filters=containers.filters)
    containers.create(security_opt=[f"label=level:{second}"])
    result = sync(containers.client, allocator=allocator, filters=containers.filters)
    assert len(result.conflicts) == 1  # one of the two is comparable with the other
    handed = [allocator.allocate(f"svc:{i}").level for i in range(200)]
    assert not [lv for lv in handed if any(lv.comparable(used) for used in levels)]
    # Nor can anyone reserve (or join) one: fenced pairs used to be shared allocations.
    holes = []
    for a in range(32):
        for b in range(a + 1, 32):
            pair = Level.pair(a, b)
            if any(pair.comparable(used) for used in levels):
                with contextlib.suppress(DominanceConflict, LabelInUse):
                    allocator.reserve(pair, "svc:x", shared=True)
                    holes.append(str(pair))
    assert holes == []


def test_a_wide_container_blocks_what_it_dominates_and_audit_says_high(
    containers: Containers, tmp_path: Path
) -> None:
    allocator = _allocator(tmp_path, 200)  # s0:c0.c99 dominates 4,950 of 19,900 pairs
    allocator.reserve("s0:c1,c2", "svc:a")
    wide = containers.create(security_opt=["label=level:s0:c0.c99"])
    result = sync(containers.client, allocator=allocator, filters=containers.filters)
    assert [(lv, o) for lv, o, _ in result.conflicts] == [("s0:c0.c99", OWNER_PREFIX + wide.id)]
    assert result.fenced == (("s0:c0.c99", OWNER_PREFIX + wide.id),)
    reach = Level.parse("s0:c0.c99")
    handed = [allocator.allocate(f"svc:{i}").level for i in range(500)]
    assert not [lv for lv in handed if reach.dominates(lv)]

    report = audit(containers.client, allocator=allocator, filters=containers.filters)
    (finding,) = report.by_kind("dominates-held-level")
    assert finding.severity == "high" and finding.containers == (wide.id,)
    assert finding.level == "s0:c1,c2" and "svc:a" in finding.message
    assert not report.ok

    wide.remove(force=True)
    sync(containers.client, allocator=allocator, filters=containers.filters)
    assert allocator.get("s0:c0.c99", in_use=True) is None


def test_a_container_at_the_full_range_blocks_everything(
    containers: Containers, tmp_path: Path
) -> None:
    allocator = _allocator(tmp_path, 1024)
    allocator.reserve("s0:c5,c6", "svc:a")
    top = containers.create(security_opt=["label=level:s0-s0:c0.c1023"])
    sync(containers.client, allocator=allocator, filters=containers.filters)
    with pytest.raises(SpaceExhausted):
        allocator.allocate("svc:b")
    top.remove(force=True)
    sync(containers.client, allocator=allocator, filters=containers.filters)
    assert allocator.allocate("svc:b").level.is_pair
