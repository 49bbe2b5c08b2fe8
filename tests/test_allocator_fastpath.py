"""The allocation hot path's shortcuts agree with the validated slow paths they replace.

The allocator builds records through :meth:`Allocation.trusted` (validators
run once, at the public API edge), pair levels through
:func:`trusted_pair_level`, pair numbers through a bisection table, and
stored pair keys through a strict pattern. Each shortcut is checked here
against the general code it stands in for; bad input must still raise the
typed errors. Real stores only (memory and a real SQLite file).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcslabel.allocation.allocator import Allocator, _FreeIndex, pair_at, pair_count
from mcslabel.allocation.stores.base import (
    Allocation,
    Store,
    level_key,
    trusted_pair_level,
)
from mcslabel.allocation.stores.memory import MemoryStore
from mcslabel.allocation.stores.sqlite import SQLiteStore
from mcslabel.errors import InvalidInput, InvalidLevel
from mcslabel.level import Level


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "l.db")
    yield made
    made.close()


def _fields(record: Allocation) -> dict[str, object]:
    return {f.name: getattr(record, f.name) for f in attrs.fields(Allocation)}


# --- levels and keys ----------------------------------------------------


@given(st.integers(0, 1 << 16), st.integers(1, 1 << 16), st.integers(0, 15))
def test_trusted_pair_level_equals_the_validated_pair(a: int, gap: int, sens: int) -> None:
    fast = trusted_pair_level(a, a + gap, sensitivity=sens)
    slow = Level.pair(a + gap, a, sensitivity=sens)
    assert fast == slow and hash(fast) == hash(slow) and str(fast) == str(slow)
    assert type(fast) is Level and fast.is_pair
    attrs.validate(fast)  # the skipped validators would have accepted it


@given(
    st.builds(
        Level,
        st.integers(0, 15),
        st.frozensets(st.integers(0, 2000), max_size=8),
    )
)
def test_level_key_is_the_canonical_text(level: Level) -> None:
    assert level_key(level) == str(level)


@pytest.mark.parametrize(
    "text",
    [
        "s0:c1,c2",
        "s0:c0,c1023",
        "s15:c7,c999999",
        "s0:c5,c3",  # not canonical: general parser (and the store's key check) decide
        "s0:c3,c3",  # duplicate: InvalidLevel
        "s16:c1,c2",  # sensitivity out of range
        "s0:c01,c2",  # leading zero
        "s0:c1,c1000000",  # 7 digits
        "s0:c1,c2,c3",
        "s0:c1.c3",
        "s0:c1",
        "s0",
        "s0:c1,c2 ",
        "s0:c1,c2\n",
        "S0:c1,c2",
        "s0:c1,c2x",
    ],
)
def test_stored_level_parsing_matches_the_general_parser(text: str) -> None:
    _check_stored_level(text)


@settings(max_examples=300)
@given(
    st.from_regex(r"s[0-9]{1,3}:c[0-9]{1,8},c[0-9]{1,8}", fullmatch=True)
    | st.text(alphabet="sc0123456789:,.-", max_size=16)
)
def test_stored_level_parsing_property(text: str) -> None:
    _check_stored_level(text)


def _check_stored_level(text: str) -> None:
    """from_json reads ``text`` exactly as the general parser does, errors included."""
    record = {"level": text, "owners": ["o"], "created": 1.0}
    try:
        expected = Level.parse(text, categories=1 << 20)
    except InvalidLevel as exc:
        with pytest.raises(
            InvalidInput, match=f"^allocation record is malformed: {re.escape(str(exc))}$"
        ):
            Allocation.from_json(record)
        return
    if not expected.categories:
        with pytest.raises(InvalidInput, match="no categories"):
            Allocation.from_json(record)
        return
    parsed = Allocation.from_json(record).level
    assert parsed == expected and str(parsed) == str(expected)


# --- records ------------------------------------------------------------


@given(
    a=st.integers(0, 1022),
    owners=st.lists(st.from_regex(r"[a-z]{1,8}:[0-9]{1,6}", fullmatch=True), min_size=1),
    created=st.floats(0, 4e9),
    ttl=st.none() | st.floats(1, 1e6),
    name=st.none() | st.from_regex(r"[a-z]{1,10}", fullmatch=True),
    persistent=st.booleans(),
    revision=st.integers(0, 1 << 40),
)
def test_trusted_record_equals_the_validated_record(
    a: int,
    owners: list[str],
    created: float,
    ttl: float | None,
    name: str | None,
    persistent: bool,
    revision: int,
) -> None:
    expires = None if ttl is None or persistent else created + ttl
    owner_tuple = tuple(sorted(set(owners)))
    slow = Allocation(
        level=Level.pair(a, 1023),
        owners=owner_tuple,
        created=created,
        expires=expires,
        name=name,
        shared=True,
        host="h",
        persistent=persistent,
        revision=revision,
    )
    fast = Allocation.trusted(
        trusted_pair_level(a, 1023),
        owner_tuple,
        created,
        expires=expires,
        name=name,
        shared=True,
        host="h",
        persistent=persistent,
        revision=revision,
    )
    assert _fields(fast) == _fields(slow)
    assert fast.key == slow.key == f"s0:c{a},c1023"
    again = fast.with_revision(revision + 1)
    assert again == fast and again.revision == revision + 1 and again.key == fast.key
    assert _fields(again) == {**_fields(fast), "revision": revision + 1}
    attrs.validate(fast)
    assert Allocation.from_json(fast.to_json(), revision=revision) == fast


def test_trusted_record_of_a_custom_level_gets_its_canonical_key() -> None:
    level = Level.parse("s0:c0.c5,c9")
    record = Allocation.trusted(level, ("o",), 1.0, custom=True)
    assert record.key == "s0:c0.c5,c9" == Allocation(level=level, owners=("o",), created=1.0).key


@settings(max_examples=25, deadline=None)
@given(
    ttl=st.none() | st.floats(0.5, 1e9),
    shared=st.booleans(),
    persistent=st.booleans(),
    owner=st.from_regex(r"(docker|pid):[0-9a-f]{1,12}", fullmatch=True),
)
def test_allocated_records_pass_every_validator(
    ttl: float | None, shared: bool, persistent: bool, owner: str
) -> None:
    if ttl is not None and persistent:
        return  # refused at the edge, tested below
    clock_now = 1_700_000_000.5
    allocator = Allocator(MemoryStore(), categories=32, clock=lambda: clock_now, host="h1")
    for _ in range(5):
        record = allocator.allocate(owner, ttl=ttl, shared=shared, persistent=persistent)
        attrs.validate(record)
        slow = Allocation(**{k: v for k, v in _fields(record).items() if k != "key"})
        assert _fields(slow) == _fields(record)
        assert record.created == clock_now and record.host == "h1" and not record.custom
        assert record.expires == (None if ttl is None else clock_now + ttl)
        stored = allocator.get(record.level)
        assert stored == record and stored is not None and stored.revision > 0


# --- the edge still refuses bad input -----------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, "now", True, None])
def test_a_broken_clock_is_refused_and_nothing_is_stored(store: Store, bad: object) -> None:
    allocator = Allocator(store, categories=16, clock=lambda: bad)  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidInput, match="created must be a finite number"):
        allocator.allocate("o")
    with pytest.raises(InvalidInput, match="created must be a finite number"):
        allocator.reserve("s0:c1,c2", "o")
    assert store.snapshot().allocations == ()


def test_an_integer_clock_is_accepted(store: Store) -> None:
    record = Allocator(store, categories=16, clock=lambda: 1_700_000_000).allocate("o", ttl=5)
    assert record.created == 1_700_000_000 and record.expires == 1_700_000_005


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"owner": ""}, "non-empty"),
        ({"owner": "a b"}, "whitespace"),
        ({"owner": "x" * 257}, "longer"),
        ({"owner": 7}, "non-empty string"),
        ({"owner": "o", "name": "bad name"}, "whitespace"),
        ({"owner": "o", "ttl": -1}, "positive"),
        ({"owner": "o", "ttl": math.nan}, "number of seconds"),
        ({"owner": "o", "ttl": 5, "persistent": True}, "persistent"),
    ],
)
def test_bad_input_still_raises_typed_errors(
    store: Store, kwargs: dict[str, object], match: str
) -> None:
    allocator = Allocator(store, categories=16)
    rest = dict(kwargs)  # the parameter dict is shared between the store variants
    owner = rest.pop("owner")
    with pytest.raises(InvalidInput, match=match):
        allocator.allocate(owner, **rest)  # type: ignore[arg-type]
    assert store.snapshot().allocations == ()


# --- numbering and the free index ---------------------------------------


@pytest.mark.parametrize("categories", [2, 3, 4, 5, 16, 33, 64])
def test_bisection_numbering_agrees_with_pair_at(categories: int) -> None:
    allocator = Allocator(MemoryStore(), categories=categories, exclude=())
    for index in range(pair_count(categories)):
        assert allocator._pair_of(index) == pair_at(index, categories)


def test_bisection_numbering_agrees_with_pair_at_over_the_full_space() -> None:
    allocator = Allocator(MemoryStore())
    total = pair_count(1024)
    for index in [*range(0, total, 997), *range(total - 2100, total)]:
        assert allocator._pair_of(index) == pair_at(index, 1024)


def _reference_tree(free: list[bool], cap: int) -> list[int]:
    """The Fenwick tree built the textbook way, one node at a time."""
    tree = [0, *(1 if f else 0 for f in free)] + [0] * (cap - len(free))
    for i in range(1, cap + 1):
        parent = i + (i & -i)
        if parent <= cap:
            tree[parent] += tree[i]
    return tree


@settings(max_examples=200)
@given(st.integers(1, 3000).flatmap(lambda n: st.lists(st.booleans(), min_size=n, max_size=n)))
def test_vectorised_rebuild_equals_the_textbook_tree(free: list[bool]) -> None:
    index = _FreeIndex(len(free))
    for slot, is_free in enumerate(free):
        if not is_free:
            index.block(slot)
    index._rebuild()
    assert index._tree == _reference_tree(free, index._cap)
    assert index.free == sum(free)
    free_slots = [i for i, f in enumerate(free) if f]
    if free_slots:
        assert [index.kth_free(k) for k in (0, len(free_slots) - 1)] == [
            free_slots[0],
            free_slots[-1],
        ]


def test_flushed_and_rebuilt_trees_agree_on_a_large_index() -> None:
    size = pair_count(256)  # 32,640: not a power of two
    flushed, rebuilt = _FreeIndex(size), _FreeIndex(size)
    blocked = list(range(0, size, 7))[:300]  # few changes: applied one by one
    for slot in blocked:
        flushed.block(slot)
        rebuilt.block(slot)
    flushed._flush()
    rebuilt._rebuild()
    assert (
        flushed._tree
        == rebuilt._tree
        == _reference_tree([i not in set(blocked) for i in range(size)], rebuilt._cap)
    )


def test_full_space_allocation_stays_unique_through_rebuilds() -> None:
    """Low occupancy churn: the deferred tree is rebuilt, never wrong (1024 categories)."""
    allocator = Allocator(MemoryStore())
    held = {allocator.allocate("o").key for _ in range(20_000)}
    assert len(held) == 20_000
    index = allocator._index
    # Force the Fenwick path and compare with a direct count of free pairs.
    index._flush()
    assert index.free == pair_count(1024) - 20_000 - 1  # minus the default exclusion
    assert index.free_before(pair_count(1024)) == index.free
