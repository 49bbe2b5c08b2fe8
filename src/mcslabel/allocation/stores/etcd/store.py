"""The etcd store: the :class:`~mcslabel.allocation.stores.base.Store` protocol in etcd txns.

May import: the model, :mod:`mcslabel.allocation.stores.base`, this package's modules.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from mcslabel.allocation.stores.base import (
    Allocation,
    Changes,
    CustomCheck,
    InsertOutcome,
    InsertResult,
    Snapshot,
    record_key,
)
from mcslabel.allocation.stores.etcd._client import _EtcdClient
from mcslabel.allocation.stores.etcd._feed import _ChangeFeed
from mcslabel.allocation.stores.etcd._wire import (
    _b64,
    _kvs,
    _LeaseLost,
    _responses,
    _revision,
    _unb64,
)
from mcslabel.allocation.stores.etcd.config import (
    CUSTOM_LOCK_TTL,
    EtcdConfig,
    parse_url,
)
from mcslabel.errors import (
    InvalidInput,
    StoreError,
    StoreUnavailable,
)
from mcslabel.level import Level


class EtcdStore(_EtcdClient):
    """A :class:`~mcslabel.Store` on an etcd v3 cluster (see the module docs).

    Open it with :func:`mcslabel.allocation.stores.open_store` or :meth:`from_url`. Thread-safe.
    """

    @classmethod
    def from_url(cls, url: str) -> EtcdStore:
        """Open ``etcd[s]://h1:2379,h2:2379/prefix?options`` (see :func:`parse_url`)."""
        return cls(parse_url(url))

    @property
    def url(self) -> str:
        return self._config.url()

    @property
    def config(self) -> EtcdConfig:
        return self._config

    # --- Store protocol ---------------------------------------------------------

    def snapshot(self) -> Snapshot:
        reply, _ = self._txn(
            {"success": [self._range(self._levels), self._get_op(self._generation_key)]}
        )
        levels, generation_read = _responses(reply)
        revision, generation = _revision(reply), self._generation_of(generation_read)
        feed = self._feed
        if feed is None or feed.broken:
            # Follow the prefix from here on, so changes() needs no scan.
            if feed is not None:
                feed.close()
            self._feed = _ChangeFeed(
                self._config, self._config.prefix + "/", revision + 1, generation
            )
        return Snapshot(
            revision=revision,
            generation=generation,
            allocations=tuple(self._record(kv) for kv in _kvs(levels)),
        )

    def changes(self, since: int) -> Changes | None:
        feed = self._feed
        if feed is not None and feed.broken:
            return None  # compacted past the feed: the caller takes a snapshot
        known = (
            None
            if feed is None or self._conflicted
            else feed.since(since, at_least=self._last_write)
        )
        if known is not None:
            revision, generation, latest = known
            changed: dict[str, Allocation | None] = {}
            for key, kv in latest.items():
                if key.startswith(self._levels):
                    changed[key[len(self._levels) :]] = None if kv is None else self._record(kv)
            return Changes(revision, generation, changed)
        self._conflicted = False
        return self._changes_by_range(since)

    def _changes_by_range(self, since: int) -> Changes:
        """The exact answer from a range read: etcd reads the prefix to filter it."""
        # Compaction cannot make a range read of current state fail. Deletions by lease
        # expiry leave no tombstone; the feed or the next snapshot reports them (a missed
        # deletion only makes the allocator skip a free level, never hand out a held one).
        after = {"min_mod_revision": since + 1}
        reply, _ = self._txn(
            {
                "success": [
                    self._range(self._levels, **after),
                    self._range(self._tombstones, **after),
                    self._get_op(self._generation_key),
                ]
            }
        )
        levels, tombstones, generation = _responses(reply)
        changed: dict[str, Allocation | None] = {
            _unb64(kv["key"])[len(self._tombstones) :]: None for kv in _kvs(tombstones)
        }
        for kv in _kvs(levels):
            record = self._record(kv)
            changed[record.key] = record
        return Changes(_revision(reply), self._generation_of(generation), changed)

    def get(self, level: Level, *, in_use: bool = False) -> Allocation | None:
        key = self._levels + record_key(level, in_use=in_use)
        reply, _ = self._call("kv/range", {"key": _b64(key)})
        kvs = _kvs(reply)
        return self._record(kvs[0]) if kvs else None

    def _put_record(self, allocation: Allocation, value: str, lease: int) -> list[dict[str, Any]]:
        level_key = self._levels + allocation.key
        ops: list[dict[str, Any]] = [
            {"request_put": {"key": _b64(level_key), "value": _b64(value), "lease": lease}},
            {"request_delete_range": {"key": _b64(self._tombstones + allocation.key)}},
        ]
        if allocation.name is not None:
            name_put = {"key": _b64(self._names + allocation.name), "value": _b64(allocation.key)}
            ops.append({"request_put": {**name_put, "lease": lease}})
        return ops

    def _bump_generation(self) -> dict[str, Any]:
        key, value = _b64(self._generation_key), _b64(uuid.uuid4().hex)
        return {"request_put": {"key": key, "value": value}}

    def _outcome(
        self, allocation: Allocation, value: str, reply: Mapping[str, Any], ambiguous: bool
    ) -> InsertResult | None:
        """INSERTED, KEY_HELD or NAME_HELD from a txn's failure reads; None if neither."""
        if reply.get("succeeded"):
            return InsertResult(InsertOutcome.INSERTED, _revision(reply))
        level_read, name_read = _responses(reply)[:2]
        held = _kvs(level_read)
        if held:
            # A timed-out attempt that in fact committed: the key holds our own write.
            if ambiguous and _unb64(held[0].get("value", "")) == value:
                return InsertResult(InsertOutcome.INSERTED, int(held[0]["mod_revision"]))
            return InsertResult.refused(InsertOutcome.KEY_HELD)
        if allocation.name is not None and _kvs(name_read):
            return InsertResult.refused(InsertOutcome.NAME_HELD)
        return None

    def _name_compares(self, allocation: Allocation) -> list[dict[str, Any]]:
        return [] if allocation.name is None else [self._absent(self._names + allocation.name)]

    def _name_read(self, allocation: Allocation) -> dict[str, Any]:
        # Read the level key again when there is no name, keeping the reply shape fixed.
        name = allocation.name
        return self._get_op(self._levels + allocation.key if name is None else self._names + name)

    def insert(self, allocation: Allocation, *, generation: int) -> InsertResult:
        value = self._value(allocation)
        with self._unconfirmed_on_timeout(allocation, value):
            return self._insert(allocation, value, generation)

    def _insert(self, allocation: Allocation, value: str, generation: int) -> InsertResult:
        level_key = self._levels + allocation.key

        def write(lease: int) -> InsertResult:
            compares = [
                self._absent(level_key),
                *self._name_compares(allocation),
                self._at(self._generation_key, generation),
                self._absent(self._lock_key),
            ]
            reply, ambiguous = self._txn(
                {
                    "compare": compares,
                    "success": self._put_record(allocation, value, lease),
                    "failure": [self._get_op(level_key), self._name_read(allocation)],
                }
            )
            result = self._outcome(allocation, value, reply, ambiguous)
            if result is None or not result.inserted:
                self._conflicted = True
            return result or InsertResult.refused(InsertOutcome.GENERATION_MOVED)

        result: InsertResult = self._with_lease(allocation, write)
        return result

    def insert_custom(self, allocation: Allocation, check: CustomCheck) -> InsertResult:
        # Check first without a write, so a refusal moves nothing (taking the lock moves the
        # generation, which sends every other allocator to resync).
        before = self.snapshot()
        check(before.allocations)
        lock_lease, lock_revision = self._acquire_custom_lock()
        committed = False
        try:
            # No pair insert commits while the lock is held: if any record appeared or
            # changed since that check, check again against everything held now.
            moved = self._changes_by_range(before.revision).changed
            if any(record is not None for record in moved.values()):
                check(self.snapshot().allocations)
            value = self._value(allocation)
            level_key = self._levels + allocation.key

            def write(lease: int) -> InsertResult:
                reply, ambiguous = self._txn(
                    {
                        "compare": [
                            self._absent(level_key),
                            *self._name_compares(allocation),
                            self._at(self._lock_key, lock_revision),
                        ],
                        "success": [
                            *self._put_record(allocation, value, lease),
                            {"request_delete_range": {"key": _b64(self._lock_key)}},
                            self._bump_generation(),
                        ],
                        "failure": [
                            self._get_op(level_key),
                            self._name_read(allocation),
                            self._get_op(self._lock_key),
                        ],
                    }
                )
                outcome = self._outcome(allocation, value, reply, ambiguous)
                if outcome is None:
                    raise StoreError(
                        "the custom-reservation lock expired before the reservation was stored;"
                        " nothing was written, try again"
                    )
                return outcome

            with self._unconfirmed_on_timeout(allocation, value):
                result: InsertResult = self._with_lease(allocation, write)
            committed = result.inserted
            return result
        finally:
            if not committed:
                self._release_custom_lock(lock_revision)
            # Best effort: otherwise it expires on its own within CUSTOM_LOCK_TTL.
            with contextlib.suppress(StoreError):
                self._call("kv/lease/revoke", {"ID": lock_lease})

    def _acquire_custom_lock(self) -> tuple[int, int]:
        """Take the custom lock (bumping the generation); (lock lease, lock revision).

        Waits for another reserver's lock; a crashed one's lock expires with its lease.
        """
        granted, _ = self._call("lease/grant", {"TTL": CUSTOM_LOCK_TTL, "ID": 0})
        lease = int(granted["ID"])
        deadline = time.monotonic() + self._config.timeout + CUSTOM_LOCK_TTL
        while True:
            lock_put = {"key": _b64(self._lock_key), "value": _b64(self._config.host)}
            reply, ambiguous = self._txn(
                {
                    "compare": [self._absent(self._lock_key)],
                    "success": [
                        {"request_put": {**lock_put, "lease": lease}},
                        self._bump_generation(),
                    ],
                    "failure": [self._get_op(self._lock_key)],
                }
            )
            if reply.get("succeeded"):
                return lease, _revision(reply)
            holder = _kvs(_responses(reply)[0])
            if ambiguous and holder and holder[0].get("lease") == str(lease):
                return lease, int(holder[0]["mod_revision"])
            if time.monotonic() > deadline:
                self._call("kv/lease/revoke", {"ID": lease})
                raise StoreUnavailable("another host holds the etcd custom-reservation lock")
            time.sleep(0.05)

    def _release_custom_lock(self, lock_revision: int) -> None:
        # Best effort: the lock's lease is revoked next, or expires.
        with contextlib.suppress(StoreError):
            self._txn(
                {
                    "compare": [self._at(self._lock_key, lock_revision)],
                    "success": [
                        {"request_delete_range": {"key": _b64(self._lock_key)}},
                        self._bump_generation(),
                    ],
                }
            )

    def replace(self, current: Allocation, new: Allocation) -> bool:
        if new.level != current.level:
            raise InvalidInput(f"replace cannot change level {current.level} to {new.level}")
        level_key = self._levels + current.key
        value = self._value(new)
        for _ in range(3):
            reply, _ = self._txn({"success": [self._get_op(level_key), self._name_read(new)]})
            level_read, name_read = _responses(reply)
            stored = _kvs(level_read)
            if not stored or int(stored[0]["mod_revision"]) != current.revision:
                return False
            compares = [self._at(level_key, current.revision)]
            if new.name is not None:
                names = _kvs(name_read)
                if names and _unb64(names[0].get("value", "")) != current.key:
                    return False  # the new name belongs to another level
                seen = int(names[0]["mod_revision"]) if names else 0
                compares.append(self._at(self._names + new.name, seen))
            ops = self._put_record(new, value, 0)
            # Keep the record's lease (it may be another host's); persistent records drop it.
            kept = 0 if new.persistent else int(stored[0].get("lease", 0))
            if not new.persistent and kept == 0:
                kept = self._lease_for(new)
            for op in ops:
                if "request_put" in op:
                    op["request_put"]["lease"] = kept
            if current.name is not None and current.name != new.name:
                ops.append({"request_delete_range": {"key": _b64(self._names + current.name)}})
            try:
                result, ambiguous = self._txn(
                    {"compare": compares, "success": ops, "failure": [self._get_op(level_key)]}
                )
            except _LeaseLost:
                continue  # the record's lease expired meanwhile: re-read
            if result.get("succeeded"):
                return True
            after = _kvs(_responses(result)[0])
            return bool(ambiguous and after and _unb64(after[0].get("value", "")) == value)
        return False

    def delete(self, current: Allocation) -> bool:
        level_key = self._levels + current.key
        ops = self._delete_ops(current)
        reply, ambiguous = self._txn(
            {
                "compare": [self._at(level_key, current.revision)],
                "success": ops,
                "failure": [self._get_op(level_key)],
            }
        )
        if reply.get("succeeded"):
            return True
        # After a timed-out attempt, a vanished record is most likely our own delete.
        return ambiguous and not _kvs(_responses(reply)[0])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._feed is not None:
            self._feed.close()
        if self._keepalive is not None:
            self._keepalive.join(timeout=self._config.timeout)
        self._members.close()

    # --- extras beyond the Store protocol ----------------------------------------

    def host_lease(self) -> int | None:
        """This host's lease id (granting or joining it), or None without ``lease_ttl``."""
        if self._config.lease_ttl is None:
            return None
        return self._host_lease()

    def members_status(self) -> Sequence[tuple[str, bool]]:
        """(endpoint, answers) for each configured member: a health view for status output."""
        return self._members.health()


__all__ = ["EtcdStore"]
