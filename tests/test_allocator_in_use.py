"""Levels observed in use block by rule; co-owners and transfers (issue 12), real SQLite files."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mcslabel import Allocator, Level, LevelRange, open_store
from mcslabel.allocation.stores.memory import MemoryStore
from mcslabel.allocation.stores.sqlite import SQLiteStore
from mcslabel.errors import DominanceConflict, InvalidLevel, LabelInUse, UnknownAllocation
from mcslabel.pairs import pair_count

# One process allocates, reading a registry another process wrote.
_ALLOCATE = """
import json, sys
from mcslabel import Allocator, open_store
with Allocator(open_store(sys.argv[1]), categories=int(sys.argv[2])) as allocator:
    got = [allocator.allocate("proc:" + str(i)).level for i in range(int(sys.argv[3]))]
    print(json.dumps([str(level) for level in got]))
"""


def _allocate_elsewhere(url: str, categories: int, count: int) -> list[Level]:
    done = subprocess.run(
        [sys.executable, "-c", _ALLOCATE, url, str(categories), str(count)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    import json

    return [Level.parse(text) for text in json.loads(done.stdout)]


def test_conflicting_levels_in_use_block_200_allocations_in_another_process(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path}/labels.db"
    with Allocator(open_store(url, create=True), categories=32) as allocator:
        first = allocator.record_in_use("s0:c10", "docker:first")
        # Comparable with the first: reserve would refuse it, record_in_use never does.
        with pytest.raises(DominanceConflict):
            allocator.reserve("s0:c10,c20,c30", "docker:second")
        second = allocator.record_in_use("s0:c10,c20,c30", "docker:second")
        assert first.in_use and second.in_use and second.revision > first.revision > 0
        listed = {(str(r.level), r.owners, r.in_use) for r in allocator.allocations()}
        assert listed == {
            ("s0:c10", ("docker:first",), True),
            ("s0:c10,c20,c30", ("docker:second",), True),
        }
    seen = [Level.parse("s0:c10"), Level.parse("s0:c10,c20,c30")]
    got = _allocate_elsewhere(url, 32, 200)
    assert len(set(got)) == 200
    assert not [g for g in got if any(g.comparable(s) for s in seen)]


def test_a_wide_level_blocks_all_its_pairs_until_released(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/labels.db"
    with Allocator(open_store(url, create=True), categories=120, exclude=()) as allocator:
        allocator.record_in_use("s0:c0.c99", "docker:wide")
        allocator.sync()
        assert allocator.free_pairs == pair_count(120) - pair_count(100)
        assert not allocator.is_free("s0:c5,c77") and allocator.is_free("s0:c5,c100")
    # Everything left is handed out in another process: none of it under c0.c99.
    got = _allocate_elsewhere(url, 120, pair_count(120) - pair_count(100))
    assert all(max(g.categories) >= 100 for g in got)
    with Allocator(open_store(url), categories=120, exclude=()) as allocator:
        allocator.release("s0:c0.c99", "docker:wide")
        allocator.sync()
        assert allocator.free_pairs == pair_count(100)


def test_a_range_blocks_by_its_high_level_and_blocks_everything() -> None:
    allocator = Allocator(MemoryStore(), categories=64)
    record = allocator.record_in_use(LevelRange.parse("s0-s0:c0.c63", categories=64), "d:all")
    assert record.level == Level.parse("s0:c0.c63", categories=64)
    allocator.sync()
    assert allocator.free_pairs == 0
    with pytest.raises(DominanceConflict):
        allocator.reserve("s0:c3", "other")
    allocator.release("s0-s0:c0.c63", "d:all")
    assert allocator.allocate("o").level.is_pair


def test_in_use_records_are_idempotent_shared_and_refuse_levels_without_categories() -> None:
    allocator = Allocator(MemoryStore(), categories=16)
    allocator.record_in_use("s0:c1,c2,c3", "docker:a")
    again = allocator.record_in_use("s0:c1,c2,c3", "docker:a")
    both = allocator.record_in_use("s0:c1,c2,c3", "docker:b")
    assert again.owners == ("docker:a",) and both.owners == ("docker:a", "docker:b")
    with pytest.raises(InvalidLevel, match="no categories"):
        allocator.record_in_use("s0", "docker:c")
    # Outside --categories is still recorded: it is in use whatever the allocator's size.
    assert allocator.record_in_use("s0:c5,c2000", "docker:d").in_use
    assert allocator.release("s0:c1,c2,c3", "docker:a") == allocator.get("s0:c1,c2,c3", in_use=True)
    assert allocator.release("s0:c1,c2,c3", "docker:b") is None
    with pytest.raises(UnknownAllocation):
        allocator.release("s0:c1,c2,c3", "docker:b")


def test_a_pair_in_use_blocks_the_pair_but_its_own_owner_may_reserve_it() -> None:
    allocator = Allocator(MemoryStore(), categories=16)
    allocator.record_in_use("s0:c3,c4", "docker:x")
    with pytest.raises(DominanceConflict, match="in use by docker:x"):
        allocator.reserve("s0:c3,c4", "svc:other")
    held = allocator.reserve("s0:c3,c4", "docker:x", shared=True)
    assert not held.in_use and held.owners == ("docker:x",)


def test_custom_reservations_block_by_rule_not_by_a_listing() -> None:
    # The old fence reserved at most 4,096 pairs: s0:c0.c99 has 4,950.
    allocator = Allocator(MemoryStore(), categories=1024)
    allocator.reserve("s0:c1,c2", "svc:a")
    allocator.record_in_use("s0:c0.c99", "docker:wide")
    got = [allocator.allocate("o").level for _ in range(2000)]
    wide = Level.parse("s0:c0.c99")
    assert not [g for g in got if g.comparable(wide)]


def test_add_owner_and_transfer() -> None:
    allocator = Allocator(MemoryStore(), categories=16)
    record = allocator.allocate("svc:billing")
    with pytest.raises(LabelInUse):
        allocator.reserve(record.level, "docker:c1")  # not shared
    added = allocator.add_owner(record.level, "docker:c1")
    assert added.owners == ("docker:c1", "svc:billing") and added.revision > record.revision
    assert allocator.add_owner(record.level, "docker:c1") == added  # idempotent
    moved = allocator.transfer(str(record.level), "svc:billing", "svc:payments")
    assert moved.owners == ("docker:c1", "svc:payments")
    with pytest.raises(UnknownAllocation, match="not held by"):
        allocator.transfer(record.level, "svc:billing", "x:y")
    # A pair nobody holds (the allocated one is drawn at random: never that one).
    free = "s0:c9,c10" if str(record.level) != "s0:c9,c10" else "s0:c11,c12"
    with pytest.raises(UnknownAllocation, match="not allocated"):
        allocator.add_owner(free, "docker:c2")
    with pytest.raises(UnknownAllocation, match="not allocated"):
        allocator.transfer(free, "a:b", "c:d")
    assert allocator.release(record.level, "docker:c1") is not None
    assert allocator.release(record.level, "svc:payments") is None


def test_allocate_returns_the_stored_revision_and_list_is_deprecated() -> None:
    with Allocator(MemoryStore(), categories=16) as allocator:
        record = allocator.allocate("o")
        stored = allocator.get(record.level)
        assert stored is not None and record.revision == stored.revision > 0
        # Three categories apart from the random pair (a triple holding it would dominate it).
        free = sorted(set(range(16)) - set(record.level.categories))[:3]
        triple = "s0:" + ",".join(f"c{c}" for c in free)
        reserved = allocator.reserve(triple, "o")
        assert reserved.revision == allocator.get(triple).revision  # type: ignore[union-attr]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert allocator.list() == allocator.allocations()
        assert caught and caught[0].category is DeprecationWarning
        assert isinstance(allocator.allocations(), list)


def test_allocator_closes_its_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "labels.db")
    with Allocator(store) as allocator:
        allocator.allocate("o")
    with pytest.raises(Exception, match="closed"):
        store.snapshot()


def test_stores_are_context_managers(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "labels.db") as store:
        Allocator(store).allocate("o")
    with pytest.raises(Exception, match="closed"):
        store.snapshot()
    with MemoryStore() as memory:
        assert memory.snapshot().allocations == ()
