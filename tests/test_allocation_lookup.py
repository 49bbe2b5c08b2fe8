"""``holding(store, level)``: who holds a level, read without an allocator.

The CLI's ``relabel --level`` store check uses it instead of
``Allocator.get``; both must answer and refuse alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcslabel import InvalidLevel, Level, LevelRange
from mcslabel.allocation import Allocator, holding, open_store


def test_holding_answers_as_the_allocator_does(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path / 'labels.db'}", create=True)
    try:
        alloc = Allocator(store, categories=64)
        held = alloc.reserve("s0:c3,c9", "test:a")
        for query in ("s0:c3,c9", Level.parse("s0:c3,c9"), LevelRange.parse("s0-s0:c3,c9")):
            assert holding(store, query) == alloc.get(query) == held
        assert holding(store, "s0:c1,c2") is None and alloc.get("s0:c1,c2") is None
        assert holding(store, "s0:c3,c9", in_use=True) is None  # no in-use record
        for bad in ("s0", "s0:c70000", "nonsense"):
            with pytest.raises(InvalidLevel):
                alloc.get(bad)
            with pytest.raises(InvalidLevel):
                holding(store, bad)
    finally:
        store.close()
