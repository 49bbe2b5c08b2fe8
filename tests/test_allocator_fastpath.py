"""The allocation hot path's shortcuts agree with the validated slow paths they replace.

The allocator builds records through the plain :class:`Allocation` constructor
(validation, :meth:`Allocation.create`, runs once at the public API edge), pair levels through
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

from mcslabel.allocation.allocator import Allocator
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
from mcslabel.pairs import pair_at, pair_count


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
    """from_dict reads ``text`` exactly as the general parser does, errors included."""
    record = {"level": text, "owners": ["o"], "created": 1.0}
    try:
        expected = Level.parse(text, categories=1 << 20)
    except InvalidLevel as exc:
        with pytest.raises(
            InvalidInput, match=f"^allocation record is malformed: {re.escape(str(exc))}$"
        ):
            Allocation.from_dict(record)
        return
    if not expected.categories:
        with pytest.raises(InvalidInput, match="no categories"):
            Allocation.from_dict(record)
        return
    parsed = Allocation.from_dict(record).level
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
def test_plain_record_equals_the_validated_record(
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
    slow = Allocation.create(
        Level.pair(a, 1023),
        owners,
        created,
        expires=expires,
        name=name,
        shared=True,
        host="h",
        persistent=persistent,
        revision=revision,
    )
    fast = Allocation(
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
    assert Allocation.from_dict(fast.to_dict(), revision=revision) == fast


def test_plain_record_of_a_custom_level_gets_its_canonical_key() -> None:
    level = Level.parse("s0:c0.c5,c9")
    record = Allocation(level, ("o",), 1.0, custom=True)
    assert record.key == "s0:c0.c5,c9" == Allocation.create(level, ("o",), 1.0).key
    assert Allocation(level, ("o",), 1.0, in_use=True).key == "in-use/s0:c0.c5,c9"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"owners": []}, "no owner"),
        ({"owners": "o"}, "collection"),
        ({"owners": ["a b"]}, "whitespace"),
        ({"created": math.nan}, "created"),
        ({"expires": "soon"}, "expires"),
        ({"shared": 1}, "shared"),
        ({"in_use": "yes"}, "in_use"),
        ({"persistent": True, "expires": 5.0}, "persistent"),
        ({"name": ""}, "non-empty"),
        ({"revision": -1}, "revision"),
        ({"level": Level(0)}, "no categories"),
    ],
)
def test_create_refuses_each_bad_field(kwargs: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {"level": Level.pair(1, 2), "owners": ["o"], "created": 1.0}
    fields.update(kwargs)
    with pytest.raises(InvalidInput, match=match):
        Allocation.create(**fields)  # type: ignore[arg-type]


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
        slow = Allocation.create(**{k: v for k, v in _fields(record).items() if k != "key"})
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


# --- numbering and the free index (public API only) --------------------


@pytest.mark.parametrize("categories", [2, 3, 4, 5, 16, 33, 64])
def test_every_pair_is_handed_out_once_until_exhaustion(categories: int) -> None:
    allocator = Allocator(MemoryStore(), categories=categories, exclude=())
    got = [allocator.allocate("o").level for _ in range(pair_count(categories))]
    assert sorted(got, key=lambda lv: lv.sorted_categories) == [
        Level.pair(*pair_at(i, categories)) for i in range(pair_count(categories))
    ]
    assert allocator.free_pairs == 0


def test_full_space_allocation_stays_unique_through_rebuilds() -> None:
    """Churn over 1024 categories: the free counts stay exact (index descent included)."""
    allocator = Allocator(MemoryStore())
    held = [allocator.allocate("o") for _ in range(20_000)]
    assert len({r.key for r in held}) == 20_000
    for record in held[::2]:
        allocator.release(record.level, "o")
    allocator.sync()
    assert allocator.free_pairs == pair_count(1024) - 10_000 - 1  # minus the default exclusion
    allocator.record_in_use("s0:c0.c99", "docker:wide")
    allocator.sync()
    inside = sum(1 for r in held[1::2] if max(r.level.categories) < 100)
    assert allocator.free_pairs == pair_count(1024) - 10_000 - 1 - (4950 - inside)
