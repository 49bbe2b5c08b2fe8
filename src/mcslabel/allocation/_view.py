"""The allocator's in-memory view of the registry, kept in step with the store.

Owns: every record by key, names to keys, the records that block by rule
(custom levels, levels in use), and the :class:`~mcslabel.allocation._index.FreeIndex`
of blocked pairs, with the store revision and custom generation they reflect.
Applying a snapshot or a set of changes keeps all of them consistent.
May import: the model, :mod:`mcslabel.allocation.stores`, its own modules.
"""

from __future__ import annotations

import math

from mcslabel.allocation._checks import is_pair
from mcslabel.allocation._index import FreeIndex
from mcslabel.allocation.stores.base import Allocation, Changes, Snapshot
from mcslabel.errors import SpaceExhausted
from mcslabel.level import Level


class RegistryView:
    """What the allocator knows of the store (see the module docs). Not thread-safe."""

    def __init__(self, categories: int, exclude: tuple[Level, ...]) -> None:
        self.categories = categories
        self.exclude = exclude
        self.records: dict[str, Allocation] = {}
        self.names: dict[str, str] = {}
        #: Records that block by rule (custom levels, levels in use): checked on reserve.
        self.blockers: dict[str, Allocation] = {}
        #: Store revision and custom generation of the last sync; -1 = never synced.
        self.revision = -1
        self.generation = 0
        #: time.monotonic() of the last sync.
        self.synced_at = -math.inf
        self.index = self._fresh_index()

    def _fresh_index(self) -> FreeIndex:
        index = FreeIndex(self.categories)
        for level in self.exclude:
            index.block(level)
        return index

    def apply(self, key: str, new: Allocation | None) -> None:
        """Record that ``key`` now holds ``new`` (None: deleted)."""
        old = self.records.pop(key, None)
        if old is not None:
            if old.name is not None and self.names.get(old.name) == key:
                del self.names[old.name]
            self.blockers.pop(key, None)
            self.index.unblock(old.level)
        if new is not None:
            self.records[key] = new
            if new.name is not None:
                self.names[new.name] = key
            if new.in_use or not is_pair(new.level):
                self.blockers[key] = new
            self.index.block(new.level)

    def apply_changes(self, changes: Changes) -> None:
        for key, record in changes.changed.items():
            old = self.records.get(key)
            if old is not None and record is not None:
                # Same key, so same level: owners/lease changed, the blocked set did not.
                self.records[key] = record
                if old.name != record.name:
                    if old.name is not None and self.names.get(old.name) == key:
                        del self.names[old.name]
                    if record.name is not None:
                        self.names[record.name] = key
                if key in self.blockers:
                    self.blockers[key] = record
                continue
            self.apply(key, record)
        self.revision = changes.revision
        self.generation = changes.generation

    def load(self, snapshot: Snapshot) -> None:
        """Replace everything with ``snapshot``."""
        if self.revision >= 0:  # the index built by __init__ is still pristine otherwise
            self.records, self.names, self.blockers = {}, {}, {}
            self.index = self._fresh_index()
        for record in snapshot.allocations:
            self.apply(record.key, record)
        self.revision = snapshot.revision
        self.generation = snapshot.generation

    def exhausted(self) -> SpaceExhausted:
        held = sum(1 for k in self.records if k not in self.blockers)
        return SpaceExhausted(
            f"no free category pair among {self.index.size} over {self.categories} categories"
            f" ({held} held as pairs, {len(self.blockers)} custom or in-use levels,"
            f" {len(self.exclude)} excluded levels)"
        )


__all__ = ["RegistryView"]
