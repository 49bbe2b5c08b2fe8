"""The store interface: what the allocator needs from a label registry.

A store keeps one record (:class:`Allocation`) per held level, keyed by the
level's canonical text (``s0:c1,c2``). It offers atomic primitives, full and
incremental reads, and nothing else: choosing pairs, dominance checks,
exhaustion and deterministic names live in :mod:`mcslabel.allocation.allocator` and are
shared by every store.

The primitives map one to one onto etcd v3 transactions, so a distributed
store needs no global lock and no hot key on the common path:

- `snapshot`: a range read of the prefix at one revision.
- `changes`: a range read with `min_mod_revision` plus tombstone keys (or
  the watch history); `None` once compacted.
- `get`: a single-key read.
- `insert`: a txn comparing level key `create_revision == 0`, name key
  `create_revision == 0`, generation key `== generation`, custom lock absent.
- `replace`, `delete`: a txn comparing the level key's
  `mod_revision == current.revision`.
- `insert_custom`: the rare, heavier protocol described below.

Custom (non-pair) reservations, such as ``s0:c5`` or ``s0:c1,c2,c3``, must
not be comparable with any held level. That is a check over *every* held
level, so it cannot be a per-key compare. The protocol:

1. Pair inserts carry the *custom generation* the allocator saw when it last
   synced, and fail with :attr:`InsertOutcome.GENERATION_MOVED` when the
   store's generation differs or a custom reservation is in progress.
2. :meth:`Store.insert_custom` first makes further pair inserts fail (etcd:
   one txn that puts a lease-bound custom-lock key if absent and bumps the
   generation key; SQLite: ``BEGIN IMMEDIATE``), then reads every held
   level at a revision after that point, hands them to the allocator's
   ``check`` callback (which raises to refuse), then inserts the record,
   releases the lock and bumps the generation again. A crashed reserver's
   lock expires with its lease.

A pair insert either committed before step 2 (so ``check`` sees it) or is
refused after it; a custom reservation either committed before an
allocator's sync (so the allocator's index blocks every comparable pair) or
moved the generation (so the allocator's insert is refused and it resyncs).
"""

# INTERFACE-FROZEN

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, Protocol, runtime_checkable

import attrs

from mcslabel.allocation.stores.records import (
    IN_USE_PREFIX,
    MAX_OWNER_LENGTH,
    MAX_OWNERS,
    Allocation,
    check_name,
    check_owner,
    level_key,
    record_key,
    trusted_pair_level,
)
from mcslabel.level import Level


@attrs.frozen
class Snapshot:
    """Every held allocation as of one store revision."""

    #: Store revision the read was taken at; pass it to :meth:`Store.changes`.
    revision: int
    #: Custom generation at that revision; pass it to :meth:`Store.insert`.
    generation: int
    allocations: tuple[Allocation, ...]


@attrs.frozen
class Changes:
    """What changed after a revision: the current record of each changed key.

    ``changed`` maps a level key to its record now, or to None when the key
    was deleted. Keys changed several times appear once, in their latest
    state, so applying a ``Changes`` twice is harmless.
    """

    revision: int
    generation: int
    changed: Mapping[str, Allocation | None]


class InsertOutcome(enum.Enum):
    """Result of :meth:`Store.insert` and :meth:`Store.insert_custom`."""

    #: The record is stored.
    INSERTED = "inserted"
    #: Another record holds the level key; nothing written.
    KEY_HELD = "key-held"
    #: Another record holds the allocation name; nothing written.
    NAME_HELD = "name-held"
    #: The custom generation moved (or a custom reservation is in progress); resync, retry.
    GENERATION_MOVED = "generation-moved"


class InsertResult(NamedTuple):
    """What :meth:`Store.insert` and :meth:`Store.insert_custom` did.

    A named tuple: it is built once per allocation, on the hot path.
    """

    outcome: InsertOutcome
    #: The stored record's revision when ``outcome`` is INSERTED, else 0.
    revision: int = 0
    #: The stored record, when the store has it at hand (in-process stores); else None.
    record: Allocation | None = None

    @property
    def inserted(self) -> bool:
        return self.outcome is InsertOutcome.INSERTED

    def stored(self, sent: Allocation) -> Allocation:
        """The record as stored: ``record``, or ``sent`` at ``revision``."""
        return self.record if self.record is not None else sent.with_revision(self.revision)

    @classmethod
    def refused(cls, outcome: InsertOutcome) -> InsertResult:
        """The shared result of a refused insert (nothing stored, no revision)."""
        return _REFUSED[outcome]


_REFUSED = {outcome: InsertResult(outcome) for outcome in InsertOutcome}


#: The allocator's dominance check for :meth:`Store.insert_custom`: it raises
#: an :class:`~mcslabel.errors.AllocationError` to refuse the reservation.
CustomCheck = Callable[[Iterable[Allocation]], None]


@runtime_checkable
class Store(Protocol):
    """A label registry. Implementations: memory, SQLite, etcd.

    Every method is atomic on its own and safe to call from several
    processes (and hosts, for distributed stores) at once. Methods raise
    :class:`~mcslabel.errors.StoreError` (or a subclass:
    ``StoreUnavailable`` when no backend answers, ``StoreCorrupt`` for a
    damaged record or file; nothing is ever overwritten or reset to recover).
    Revisions increase strictly with every write, store-wide.
    """

    @property
    def url(self) -> str:
        """The URL that reopens this store (``sqlite:///path``, ``memory://``...)."""
        ...

    def snapshot(self) -> Snapshot:
        """Every allocation, the revision and the custom generation, read consistently."""
        ...

    def changes(self, since: int) -> Changes | None:
        """Records changed after revision ``since`` (deletions as None).

        Returns None when the store no longer has the history back to
        ``since`` (compaction); the caller then takes a :meth:`snapshot`.
        Cost is proportional to the number of changes, not to store size.
        """
        ...

    def get(self, level: Level, *, in_use: bool = False) -> Allocation | None:
        """The current record for ``level`` (its in-use record with ``in_use``), or None.

        A fresh (linearizable) read.
        """
        ...

    def insert(self, allocation: Allocation, *, generation: int) -> InsertResult:
        """Put ``allocation`` if its level key (and its name, if any) are free.

        Stores only when the custom generation still equals ``generation``
        and no custom reservation is in progress; otherwise returns
        ``GENERATION_MOVED``. ``KEY_HELD`` takes precedence over
        ``NAME_HELD``, which takes precedence over ``GENERATION_MOVED``.
        Used for pair allocations and for reservations of pair levels.
        """
        ...

    def insert_custom(self, allocation: Allocation, check: CustomCheck) -> InsertResult:
        """Put a custom (non-pair) reservation after ``check`` accepts every held level.

        Blocks pair inserts, reads every held allocation (excluding none),
        calls ``check`` with them (it raises to refuse; the exception
        propagates and nothing is written), then stores ``allocation`` if its
        key and name are free and moves the custom generation so that
        allocators synced before it resync. Returns ``INSERTED``,
        ``KEY_HELD`` or ``NAME_HELD``; never ``GENERATION_MOVED``.
        """
        ...

    def replace(self, current: Allocation, new: Allocation) -> bool:
        """Compare-and-swap: store ``new`` if the key's record is still at ``current.revision``.

        ``new.level`` must equal ``current.level`` (else InvalidInput). A
        changed ``name`` must stay unique (returns False if taken). Returns
        False, writing nothing, when the record changed or vanished.
        """
        ...

    def delete(self, current: Allocation) -> bool:
        """Compare-and-delete: remove the record if still at ``current.revision``."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards. Idempotent."""
        ...


__all__ = [
    "IN_USE_PREFIX",
    "MAX_OWNERS",
    "MAX_OWNER_LENGTH",
    "Allocation",
    "Changes",
    "InsertOutcome",
    "InsertResult",
    "Snapshot",
    "Store",
    "check_name",
    "check_owner",
    "level_key",
    "record_key",
    "trusted_pair_level",
]
