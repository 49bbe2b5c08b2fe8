"""Hypothesis properties of the allocator: numbering, uniqueness, dominance, release."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcslabel.allocation.allocator import (
    Allocator,
    comparable_pairs,
    pair_at,
    pair_count,
    pair_index,
)
from mcslabel.allocation.stores.memory import MemoryStore
from mcslabel.allocation.stores.sqlite import SQLiteStore
from mcslabel.errors import DominanceConflict, InvalidLevel, LabelInUse, SpaceExhausted
from mcslabel.level import Level


@given(
    st.integers(2, 1024).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, pair_count(n) - 1)))
)
def test_pair_index_roundtrip(case: tuple[int, int]) -> None:
    n, i = case
    a, b = pair_at(i, n)
    assert 0 <= a < b < n
    assert pair_index(a, b, n) == i


@given(st.integers(3, 300), st.data())
def test_pair_order_is_lexicographic(n: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, pair_count(n) - 2))
    assert pair_at(i, n) < pair_at(i + 1, n)


@given(
    st.integers(3, 12).flatmap(
        lambda n: st.tuples(st.just(n), st.frozensets(st.integers(0, n - 1), min_size=1))
    ),
)
def test_comparable_pairs_matches_brute_force(case: tuple[int, frozenset[int]]) -> None:
    n, cats = case
    level = Level(0, cats)
    expected = {i for i in range(pair_count(n)) if Level.pair(*pair_at(i, n)).comparable(level)}
    assert set(comparable_pairs(level, n)) == expected


# An operation: ("alloc", shared) | ("reserve", categories) | ("release", which).
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.booleans()),
        st.tuples(st.just("reserve"), st.frozensets(st.integers(0, 6), min_size=1, max_size=3)),
        st.tuples(st.just("release"), st.integers(0, 100)),
    ),
    max_size=60,
)


def _check_invariants(alloc: Allocator, n: int, exclude: Level) -> None:
    held = [a.level for a in alloc.allocations()]
    assert len(held) == len(set(held))
    for i, x in enumerate(held):
        for y in held[i + 1 :]:
            assert not x.comparable(y), (x, y)
        assert not x.comparable(exclude)
    # The index agrees with a from-scratch count of pairs nothing blocks.
    alloc.sync()
    blockers = [*held, exclude]
    free = [
        i
        for i in range(pair_count(n))
        if not any(Level.pair(*pair_at(i, n)).comparable(b) for b in blockers)
    ]
    assert alloc.free_pairs == len(free)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_random_operation_sequences_keep_levels_unique_and_incomparable(
    ops: list[tuple[str, object]],
) -> None:
    n, exclude = 7, Level.pair(5, 6)
    alloc = Allocator(MemoryStore(), categories=n, exclude=[exclude])
    for op, arg in ops:
        if op == "alloc":
            try:
                alloc.allocate("o", shared=bool(arg))
            except SpaceExhausted:
                # Exhaustion is only ever reported when truly nothing is free.
                alloc.sync(full=True)
                assert alloc.free_pairs == 0
        elif op == "reserve":
            assert isinstance(arg, frozenset)
            wanted = Level(0, arg)
            if wanted == exclude:
                with pytest.raises(InvalidLevel, match="excluded"):
                    alloc.reserve(wanted, "r")
                continue
            with contextlib.suppress(DominanceConflict, LabelInUse):
                alloc.reserve(wanted, "r")
        else:
            held = list(alloc.allocations())
            if held:
                assert isinstance(arg, int)
                victim = held[arg % len(held)]
                assert alloc.release(victim.level) is None
                assert alloc.get(victim.level) is None
    _check_invariants(alloc, n, exclude)
    # Release everything: the whole space minus the exclusion is free again.
    for record in list(alloc.allocations()):
        alloc.release(record.level)
    alloc.sync()
    assert alloc.free_pairs == pair_count(n) - 1
    got = {alloc.allocate("o").level for _ in range(pair_count(n) - 1)}
    assert len(got) == pair_count(n) - 1 and exclude not in got


@settings(max_examples=15, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_two_sqlite_allocators_interleaved_never_duplicate(which: list[bool]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "l.db"
        pair = (
            Allocator(SQLiteStore(path), categories=9),
            Allocator(SQLiteStore(path), categories=9),
        )
        got = [pair[int(w)].allocate("o").level for w in which]
        assert len(got) == len(set(got))
        for alloc in pair:
            alloc.store.close()


@settings(max_examples=40, deadline=None)
@given(
    st.text(min_size=1, max_size=30).filter(
        lambda s: s.isprintable() and not any(c.isspace() for c in s)
    )
)
def test_named_allocation_is_stable_and_joins(name: str) -> None:
    first = Allocator(MemoryStore(), categories=64)
    second = Allocator(MemoryStore(), categories=64)
    a = first.allocate("x", name=name)
    b = second.allocate("y", name=name)
    assert a.level == b.level == first.name_level(name)
    again = first.allocate("z", name=name)
    assert again.level == a.level and again.owners == ("x", "z")


_OPS = st.sampled_from(["in-use", "reserve", "allocate", "named", "release"])


@settings(max_examples=120, deadline=None)
@given(
    st.integers(3, 12).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.tuples(
                    _OPS,
                    st.integers(0, 1),
                    st.sets(st.integers(0, n - 1), min_size=1, max_size=n),
                    st.integers(0, 10**6),
                ),
                max_size=40,
            ),
        )
    )
)
def test_free_pairs_agree_with_a_brute_force_model(
    case: tuple[int, list[tuple[str, int, set[int], int]]],
) -> None:
    """Public API only: blocked-by-rule pairs are exactly the comparable ones."""
    from mcslabel.pairs import name_hash_index

    n, ops = case
    alloc = Allocator(MemoryStore(), categories=n, exclude=("s0:c0,c1",))
    pairs = [Level.pair(*pair_at(i, n)) for i in range(pair_count(n))]
    excluded = Level.pair(0, 1)

    def free_model() -> list[bool]:
        held = [r.level for r in alloc.allocations()]
        return [p != excluded and not any(h.comparable(p) for h in held) for p in pairs]

    names: set[str] = set()
    for op, sensitivity, cats, seed in ops:
        level = Level(sensitivity, frozenset(cats))
        if op == "in-use":
            record = alloc.record_in_use(level, f"docker:{seed}")
            assert record.in_use and record.revision > 0
        elif op == "reserve":
            with contextlib.suppress(DominanceConflict, LabelInUse, InvalidLevel):
                alloc.reserve(level, f"o:{seed}")
        elif op in ("allocate", "named"):
            free = free_model()
            name = f"n{seed}" if op == "named" else None
            # A name allocated before is joined, not drawn: no space needed.
            held_name = name is not None and any(r.name == name for r in alloc.allocations())
            if not any(free) and not held_name:
                with pytest.raises(SpaceExhausted):
                    alloc.allocate("o", name=name)
                continue
            got = alloc.allocate("o", name=name)
            index = pair_index(*got.level.sorted_categories, n)
            if name is not None and name not in names:
                names.add(name)
                start = name_hash_index(name, n)
                order = [*range(start, len(pairs)), *range(start)]
                assert index == next(i for i in order if free[i])
            elif name is None:
                assert free[index], got
        else:
            records = alloc.allocations()
            if records:
                victim = records[seed % len(records)]
                alloc.release(victim.level, victim.owners[0])
                if victim.name is not None and alloc.get(victim.level) is None:
                    names.discard(victim.name)
        alloc.sync()
        free = free_model()
        assert [alloc.is_free(p) for p in pairs] == free
        assert alloc.free_pairs == sum(free)
