"""An in-process store: for tests, scripts and benchmarks. Nothing survives the process."""

from __future__ import annotations

import bisect
import threading

from mcslabel.allocation.stores.base import (
    Allocation,
    Changes,
    CustomCheck,
    InsertOutcome,
    InsertResult,
    Snapshot,
    record_key,
)
from mcslabel.errors import InvalidInput
from mcslabel.level import Level

# InsertResult(INSERTED, revision, record) without the named tuple's Python-level __new__:
# built once per allocation.
_new_result = tuple.__new__
_INSERTED = InsertOutcome.INSERTED


class MemoryStore:
    """A :class:`~mcslabel.allocation.stores.base.Store` held in a dict, guarded by one lock.

    Thread-safe. The change log keeps one entry per write so
    :meth:`changes` costs O(changes + log n), like the persistent stores.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, Allocation] = {}
        self._names: dict[str, str] = {}
        self._revision = 0
        self._generation = 0
        # Parallel lists: revision of each write and the key it touched.
        self._log_revisions: list[int] = []
        self._log_keys: list[str] = []
        self._closed = False

    @property
    def url(self) -> str:
        return "memory://"

    def _bump(self, key: str) -> int:
        self._revision += 1
        self._log_revisions.append(self._revision)
        self._log_keys.append(key)
        return self._revision

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._revision, self._generation, tuple(self._records.values()))

    def changes(self, since: int) -> Changes | None:
        with self._lock:
            start = bisect.bisect_right(self._log_revisions, since)
            changed = {key: self._records.get(key) for key in self._log_keys[start:]}
            return Changes(self._revision, self._generation, changed)

    def get(self, level: Level, *, in_use: bool = False) -> Allocation | None:
        with self._lock:
            return self._records.get(record_key(level, in_use=in_use))

    def _put_new(self, allocation: Allocation) -> InsertResult:
        key = allocation.key
        if key in self._records:
            return InsertResult.refused(InsertOutcome.KEY_HELD)
        if allocation.name is not None and allocation.name in self._names:
            return InsertResult.refused(InsertOutcome.NAME_HELD)
        stored = allocation.with_revision(self._bump(key))
        self._records[key] = stored
        if allocation.name is not None:
            self._names[allocation.name] = key
        return InsertResult(InsertOutcome.INSERTED, stored.revision, stored)

    def insert(self, allocation: Allocation, *, generation: int) -> InsertResult:
        with self._lock:
            key = allocation.key
            if key in self._records:
                return InsertResult.refused(InsertOutcome.KEY_HELD)
            name = allocation.name
            if name is not None and name in self._names:
                return InsertResult.refused(InsertOutcome.NAME_HELD)
            if generation != self._generation:
                return InsertResult.refused(InsertOutcome.GENERATION_MOVED)
            # What _put_new does, without repeating the checks above.
            revision = self._bump(key)
            stored = allocation.with_revision(revision)
            self._records[key] = stored
            if name is not None:
                self._names[name] = key
            return _new_result(InsertResult, (_INSERTED, revision, stored))

    def insert_custom(self, allocation: Allocation, check: CustomCheck) -> InsertResult:
        with self._lock:
            check(tuple(self._records.values()))
            result = self._put_new(allocation)
            if result.inserted:
                self._generation += 1
            return result

    def replace(self, current: Allocation, new: Allocation) -> bool:
        if new.level != current.level:
            raise InvalidInput(f"replace cannot change level {current.level} to {new.level}")
        with self._lock:
            key = current.key
            stored = self._records.get(key)
            if stored is None or stored.revision != current.revision:
                return False
            if new.name is not None and self._names.get(new.name, key) != key:
                return False
            if stored.name is not None:
                del self._names[stored.name]
            if new.name is not None:
                self._names[new.name] = key
            self._records[key] = new.with_revision(self._bump(key))
            return True

    def delete(self, current: Allocation) -> bool:
        with self._lock:
            key = current.key
            stored = self._records.get(key)
            if stored is None or stored.revision != current.revision:
                return False
            del self._records[key]
            if stored.name is not None:
                del self._names[stored.name]
            self._bump(key)
            return True

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = [
    "MemoryStore",
]
