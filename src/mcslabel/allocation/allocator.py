"""The allocator: hands out unique MCS category pairs from a shared registry.

Owns the policy of allocation: uniform random pairs from ``secrets``,
deterministic pairs for names, dominance safety, levels observed in use,
co-owners, exhaustion, leases and gc. A store
(:class:`~mcslabel.allocation.stores.base.Store`) holds the records and
provides atomic primitives, so every store gets the same guarantees.

The allocator keeps a :class:`~mcslabel.allocation._index.FreeIndex` of
blocked pairs in step with the store through its revision (one full load,
then only the changes), draws a free pair uniformly and commits it with a
put-if-absent insert. A conflict means the view was stale: it syncs and
draws again, a bounded number of times. Before raising
:class:`~mcslabel.errors.SpaceExhausted` it reloads the whole store, so it
never reports a full space falsely.
May import: the model, :mod:`mcslabel.allocation.stores`, its own modules.
"""

from __future__ import annotations

import builtins
import math
import os
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable

from mcslabel.allocation import _owners
from mcslabel.allocation._index import FreeIndex
from mcslabel.allocation.discovery import (
    Discovered,
    GcEvent,
    collect_garbage,
    reserve_processes,
)
from mcslabel.allocation.stores.base import (
    Allocation,
    Changes,
    InsertOutcome,
    Store,
    check_name,
    check_owner,
    trusted_pair_level,
)
from mcslabel.errors import (
    AllocationError,
    DominanceConflict,
    InvalidInput,
    InvalidLevel,
    SpaceExhausted,
)
from mcslabel.errors import show_input as _q
from mcslabel.level import DEFAULT_CATEGORIES, Level, LevelRange
from mcslabel.pairs import (  # re-exported: they lived here before mcslabel.pairs
    comparable_pairs,
    name_hash_index,
    pair_at,
    pair_count,
    pair_index,
    pairs_never_comparable,
)

#: Levels never handed out by default: ``s0:c1022,c1023`` is the privileged
#: label runtimes use for shared mounts.
DEFAULT_EXCLUDE = ("s0:c1022,c1023",)
#: Commit attempts per call before giving up under contention.
MAX_ATTEMPTS = 64
#: The most categories an allocator accepts: four times what mainstream
#: policies define (1024). Larger counts are refused as no policy has them.
MAX_CATEGORIES = 4096
#: Categories a level observed in use, or an excluded level, may name.
SEEN_CATEGORIES = 1 << 16
# Rejection draws tried before the index descent (see Allocator._draw). Only
# used while at least half the pairs are free, so the expected number of draws
# stays below 2 however large this is.
_REJECTION_DRAWS = 16
#: Seconds a random allocation may reuse the last view of the store before
#: reading the changes first. A stale view cannot cause a duplicate (the
#: put-if-absent commit refuses, and the allocator then syncs and redraws);
#: it only costs a retry.
SYNC_INTERVAL = 1.0


def _checked_time(what: str, value: float) -> float:
    """``value`` if it is a finite number of seconds, else InvalidInput (a broken clock)."""
    if type(value) is float and math.isfinite(value):
        return value  # the common case, checked in two C calls
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number of seconds, got {_q(value)}")
    return value


def _check_flags(shared: bool, persistent: bool) -> None:
    for what, value in (("shared", shared), ("persistent", persistent)):
        if not isinstance(value, bool):
            raise InvalidInput(f"{what} must be True or False, got {_q(value)}")


def _check_ttl(ttl: float | None, persistent: bool) -> None:
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
        raise InvalidInput(f"ttl must be a number of seconds, got {_q(ttl)}")
    if ttl <= 0:
        raise InvalidInput(f"ttl must be positive, got {ttl}")
    if persistent:
        raise InvalidInput("a persistent allocation cannot carry a lease (ttl)")


def _is_pair(level: Level) -> bool:
    return level.sensitivity == 0 and level.is_pair


class Allocator(_owners.OwnerOperations):
    """Allocates MCS levels from ``store``; see the module docs for the method.

    :param store: where records live (:func:`mcslabel.allocation.stores.open_store`).
    :param categories: the policy's category count (1024 on mainstream policies;
        at most :data:`MAX_CATEGORIES`).
    :param exclude: levels never handed out, plus every level comparable with them.
    :param host: this host's name, recorded in each allocation and used by
        :meth:`gc` to recognise its own ``pid:<n>@<host>`` owners.
    :param clock: seconds since the epoch (tests pass a fake clock).
    :param max_attempts: commit attempts per call before giving up under contention.
    :param sync_interval: see :data:`SYNC_INTERVAL`.

    Thread-safe; one instance per process is enough. A context manager:
    leaving the ``with`` block (or :meth:`close`) closes the store.
    """

    def __init__(
        self,
        store: Store,
        *,
        categories: int = DEFAULT_CATEGORIES,
        exclude: Iterable[Level | str] = DEFAULT_EXCLUDE,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
        max_attempts: int = MAX_ATTEMPTS,
        sync_interval: float = SYNC_INTERVAL,
    ) -> None:
        if isinstance(categories, bool) or not isinstance(categories, int) or categories < 2:
            raise InvalidInput(f"categories must be an integer >= 2, got {_q(categories)}")
        if categories > MAX_CATEGORIES:
            raise InvalidInput(
                f"categories {categories} is more than any SELinux policy defines"
                f" (at most {MAX_CATEGORIES} accepted; mainstream policies have 1024)"
            )
        if isinstance(exclude, str) or not isinstance(exclude, Iterable):
            raise InvalidInput(f"exclude must be a collection of levels, not {_q(exclude)}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput(f"max_attempts must be an integer >= 1, got {_q(max_attempts)}")
        if (
            isinstance(sync_interval, bool)
            or not isinstance(sync_interval, (int, float))
            or not 0 <= sync_interval < math.inf  # also refuses NaN
        ):
            raise InvalidInput(
                f"sync_interval must be a finite number >= 0, got {_q(sync_interval)}"
            )
        self.store = store
        self.categories = categories
        self.total_pairs = pair_count(categories)
        # Exclusions beyond the category count are kept but block nothing, so
        # the default exclusion works for small test spaces too.
        self.exclude: tuple[Level, ...] = tuple(
            self._level(x, what="excluded level", categories=SEEN_CATEGORIES) for x in exclude
        )
        for level in self.exclude:
            if not level.categories:
                raise InvalidLevel(f"excluding {level} would exclude every level")
        if host is not None and not isinstance(host, str):
            raise InvalidInput(f"host must be a string, got {_q(host)}")  # stored in records
        self.host = host if host is not None else socket.gethostname()
        check_owner(f"pid:1@{self.host}")
        self.clock = clock
        self.max_attempts = max_attempts
        self.sync_interval = sync_interval
        self._lock = threading.RLock()
        self._records: dict[str, Allocation] = {}
        self._names: dict[str, str] = {}
        # Records that block by rule (custom levels, levels in use): checked on reserve.
        self._blockers: dict[str, Allocation] = {}
        self._revision = -1
        self._generation = 0
        self._synced_at = -math.inf
        self._index = self._fresh_index()

    # --- lifetime -------------------------------------------------------

    def close(self) -> None:
        """Close the store (an etcd store ends its threads). Idempotent."""
        self.store.close()

    def __enter__(self) -> Allocator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- parsing --------------------------------------------------------

    def _level(
        self, value: Level | LevelRange | str, *, what: str = "level", categories: int = 0
    ) -> Level:
        categories = categories or self.categories
        if isinstance(value, LevelRange) or (isinstance(value, str) and "-" in value):
            raise InvalidLevel(
                f"{what} {_q(str(value))} is a range; only a single level can be allocated"
            )
        if isinstance(value, str):
            return Level.parse(value, categories=categories)
        if not isinstance(value, Level):
            raise InvalidLevel(f"{what} must be a Level or a string, not {type(value).__name__}")
        return value.check(categories=categories)

    def _pair_level(self, index: int) -> Level:
        return trusted_pair_level(*self._index.pair_of(index))

    # --- the in-memory index --------------------------------------------

    def _fresh_index(self) -> FreeIndex:
        index = FreeIndex(self.categories)
        for level in self.exclude:
            index.block(level)
        return index

    def _apply(self, key: str, new: Allocation | None) -> None:
        old = self._records.pop(key, None)
        if old is not None:
            if old.name is not None and self._names.get(old.name) == key:
                del self._names[old.name]
            self._blockers.pop(key, None)
            self._index.unblock(old.level)
        if new is not None:
            self._records[key] = new
            if new.name is not None:
                self._names[new.name] = key
            if new.in_use or not _is_pair(new.level):
                self._blockers[key] = new
            self._index.block(new.level)

    def _apply_changes(self, changes: Changes) -> None:
        for key, record in changes.changed.items():
            old = self._records.get(key)
            if old is not None and record is not None:
                # Same key, so same level: owners/lease changed, the blocked set did not.
                self._records[key] = record
                if old.name != record.name:
                    if old.name is not None and self._names.get(old.name) == key:
                        del self._names[old.name]
                    if record.name is not None:
                        self._names[record.name] = key
                if key in self._blockers:
                    self._blockers[key] = record
                continue
            self._apply(key, record)
        self._revision = changes.revision
        self._generation = changes.generation

    def sync(self, *, full: bool = False) -> None:
        """Bring the in-memory index up to date (incrementally unless ``full``)."""
        with self._lock:
            self._synced_at = time.monotonic()
            if not full and self._revision >= 0:
                changes = self.store.changes(self._revision)
                if changes is not None:
                    self._apply_changes(changes)
                    return
            snapshot = self.store.snapshot()
            if self._revision >= 0:  # the index built by __init__ is still pristine otherwise
                self._records, self._names, self._blockers = {}, {}, {}
                self._index = self._fresh_index()
            for record in snapshot.allocations:
                self._apply(record.key, record)
            self._revision = snapshot.revision
            self._generation = snapshot.generation

    @property
    def free_pairs(self) -> int:
        """Free pairs as of the last sync (call :meth:`sync` first for a fresh count)."""
        return self._index.free

    def is_free(self, level: Level | str) -> bool:
        """Whether the pair ``level`` could be handed out, as of the last sync.

        False for a pair that is held, excluded, or comparable with any
        custom level held or level recorded in use.
        """
        wanted = self._level(level)
        if not _is_pair(wanted):
            raise InvalidLevel(f"{wanted} is not an s0 category pair")
        a, b = wanted.sorted_categories
        return self._index.is_free(a, b)

    def _exhausted(self) -> SpaceExhausted:
        held = sum(1 for k in self._records if k not in self._blockers)
        return SpaceExhausted(
            f"no free category pair among {self.total_pairs} over {self.categories} categories"
            f" ({held} held as pairs, {len(self._blockers)} custom or in-use levels,"
            f" {len(self.exclude)} excluded levels)"
        )

    def _new_record(
        self,
        level: Level,
        owner: str,
        *,
        shared: bool,
        ttl: float | None,
        persistent: bool,
        name: str | None = None,
        in_use: bool = False,
    ) -> Allocation:
        # owner, name, ttl and level were checked at the public API edge.
        now = _checked_time("created", self.clock())
        return Allocation(
            level,
            (owner,),
            now,
            expires=None if ttl is None else _checked_time("expires", now + ttl),
            name=name,
            shared=shared,
            host=self.host,
            custom=not _is_pair(level),
            persistent=persistent,
            in_use=in_use,
        )

    def _backoff(self, attempt: int) -> None:
        # Only reached while another process holds a custom reservation open.
        time.sleep(min(0.001 * (2**attempt), 0.1))

    def _give_up(self, what: str) -> AllocationError:
        return AllocationError(
            f"{what}: gave up after {self.max_attempts} conflicting attempts"
            " (heavy contention on the store)"
        )

    # --- allocation -----------------------------------------------------

    def allocate(
        self,
        owner: str,
        *,
        name: str | None = None,
        shared: bool = False,
        ttl: float | None = None,
        persistent: bool = False,
    ) -> Allocation:
        """Allocate a free ``s0`` category pair for ``owner``.

        Without ``name``: a pair drawn uniformly from the free ones with
        ``secrets``. With ``name``: the name's deterministic pair (see
        :meth:`name_level`); allocating a name that is already allocated
        joins that allocation (named allocations are always shared) and
        returns the same level, so every caller of one name gets one level.

        ``ttl`` (seconds) sets a lease that :meth:`renew` extends and
        :meth:`gc` enforces; ``persistent`` marks volume labels, never
        lease-bound. Raises :class:`~mcslabel.errors.SpaceExhausted` at once
        when no pair is free.
        """
        check_owner(owner)
        _check_flags(shared, persistent)
        _check_ttl(ttl, persistent)
        if name is not None:
            return self._allocate_named(owner, check_name(name), ttl, persistent)
        with self._lock:
            generation_seen = -1
            for attempt in range(self.max_attempts):
                # The commit is what guarantees uniqueness; syncing first only
                # avoids conflicts, so a recent view is reused (see sync_interval).
                if attempt or time.monotonic() - self._synced_at > self.sync_interval:
                    self.sync()
                if self._index.free == 0:
                    self.sync(full=True)
                    if self._index.free == 0:
                        raise self._exhausted()
                a, b = self._draw()
                now = _checked_time("created", self.clock())
                record = Allocation(
                    trusted_pair_level(a, b),
                    (owner,),
                    now,
                    None if ttl is None else _checked_time("expires", now + ttl),
                    None,
                    shared,
                    self.host,
                    False,
                    persistent,
                )
                result = self.store.insert(record, generation=self._generation)
                if result.outcome is InsertOutcome.INSERTED:
                    # Known new pair: block it directly (what _apply would do).
                    record = record.with_revision(result.revision)
                    self._records[record.key] = record
                    self._index.block_pair(a, b)
                    return record
                if result.outcome is InsertOutcome.GENERATION_MOVED:
                    if generation_seen == self._generation:
                        self._backoff(attempt)
                    generation_seen = self._generation
            raise self._give_up("allocate")

    def _draw(self) -> tuple[int, int]:
        """A free pair, uniform over the free pairs.

        While at least half the pairs are free, rejection draws over the
        whole space first (O(1) expected, fewer than 2 draws); after 16
        misses, or when most pairs are held, the k-th free pair from the
        index (O(log n) at any occupancy). A mixture of uniform draws is
        uniform, so the split is invisible.
        """
        index, total = self._index, self.total_pairs
        if index.free * 2 >= total:  # worth it only while most pairs are free
            is_free, randbelow, pair_of = index.is_free, secrets.randbelow, index.pair_of
            for _ in range(_REJECTION_DRAWS):
                a, b = pair_of(randbelow(total))
                if is_free(a, b):
                    return a, b
        return index.kth_free(secrets.randbelow(index.free))

    def name_level(self, name: str) -> Level:
        """The pair a name maps to on an empty registry (same on every host).

        When that pair is taken, excluded or blocked, the name gets the next
        free pair in index order (wrapping), which depends on occupancy;
        once allocated, the name keeps its pair until released.
        """
        return self._pair_level(name_hash_index(check_name(name), self.categories))

    def _named_pair(self, name: str) -> tuple[int, int] | None:
        index = self._index
        if index.free == 0:
            return None
        before = index.free_before(*index.pair_of(name_hash_index(name, self.categories)))
        return index.kth_free(before if before < index.free else 0)

    def _allocate_named(
        self, owner: str, name: str, ttl: float | None, persistent: bool
    ) -> Allocation:
        with self._lock:
            for attempt in range(self.max_attempts):
                self.sync()
                key = self._names.get(name)
                if key is not None:
                    current = self.store.get(self._records[key].level)
                    if current is None or current.name != name:
                        continue
                    joined = self._join(current, owner, ttl)
                    if joined is not None:
                        return joined
                    continue
                pair = self._named_pair(name)
                if pair is None:
                    self.sync(full=True)
                    if name in self._names:
                        continue
                    pair = self._named_pair(name)
                    if pair is None:
                        raise self._exhausted()
                record = self._new_record(
                    trusted_pair_level(*pair),
                    owner,
                    shared=True,
                    ttl=ttl,
                    persistent=persistent,
                    name=name,
                )
                result = self.store.insert(record, generation=self._generation)
                if result.inserted:
                    return self._inserted(record, result.revision)
                if result.outcome is InsertOutcome.GENERATION_MOVED:
                    self._backoff(attempt)
            raise self._give_up(f"allocate name {_q(name)}")

    def _inserted(self, record: Allocation, revision: int) -> Allocation:
        stored = record.with_revision(revision)
        self._apply(stored.key, stored)
        return stored

    # --- reservation ----------------------------------------------------

    def _dominance_check(self, level: Level, owner: str) -> Callable[[Iterable[Allocation]], None]:
        key = str(level)

        def check(held: Iterable[Allocation]) -> None:
            for record in held:
                if record.in_use and record.level == level and owner in record.owners:
                    continue  # the owner's own level, recorded in use: it may hold it too
                if record.key != key and record.level.comparable(level):
                    relation = "dominates" if level.dominates(record.level) else "is dominated by"
                    if record.level == level:
                        relation = "is"
                    what = "in use by" if record.in_use else "held by"
                    raise DominanceConflict(
                        f"{level} {relation} {record.level}, {what} {_owners.holders(record)}:"
                        " one could read the other's files"
                    )

        return check

    def reserve(
        self,
        level: Level | str,
        owner: str,
        *,
        shared: bool = False,
        ttl: float | None = None,
        persistent: bool = False,
    ) -> Allocation:
        """Reserve a chosen level for ``owner``.

        A pair (``s0:c3,c7``) is reserved like an allocation; a custom level
        (``s0:c5``, ``s0:c1,c2,c3``) is refused with
        :class:`~mcslabel.errors.DominanceConflict` when it dominates or is
        dominated by any held, in-use or excluded level. Reserving a held level:
        the same owner gets it back unchanged (idempotent); another owner
        joins it when it is shared, else :class:`~mcslabel.errors.LabelInUse`.
        ``s0`` without categories and ranges are refused (InvalidLevel).
        """
        wanted = self._level(level)
        check_owner(owner)
        _check_flags(shared, persistent)
        _check_ttl(ttl, persistent)
        if not wanted.categories:
            raise InvalidLevel(
                f"{wanted} has no categories: every level dominates it, so it cannot be"
                " reserved; reserve a level with categories such as s0:c1,c2"
            )
        for excluded in self.exclude:
            if wanted == excluded:
                raise InvalidLevel(f"{wanted} is excluded from allocation on this allocator")
            if wanted.comparable(excluded):
                raise DominanceConflict(
                    f"{wanted} is comparable with the excluded level {excluded}"
                )
        check = self._dominance_check(wanted, owner)
        with self._lock:
            for attempt in range(self.max_attempts):
                self.sync()
                current = self.store.get(wanted)
                if current is not None:
                    joined = self._join(current, owner, ttl)
                    if joined is not None:
                        return joined
                    continue
                record = self._new_record(
                    wanted, owner, shared=shared, ttl=ttl, persistent=persistent
                )
                if _is_pair(wanted):
                    a, b = wanted.sorted_categories
                    if not self._index.is_free(a, b):
                        # Blocked by rule (raises), by the owner's own in-use record,
                        # or by the pair itself seen stale: the insert settles it.
                        check(self._blockers.values())
                    result = self.store.insert(record, generation=self._generation)
                else:
                    result = self.store.insert_custom(record, check)
                if result.inserted:
                    return self._inserted(record, result.revision)
                if result.outcome is InsertOutcome.GENERATION_MOVED:
                    self._backoff(attempt)
            raise self._give_up(f"reserve {wanted}")

    def record_in_use(self, level: Level | LevelRange | str, owner: str) -> Allocation:
        """Record that ``owner`` (a running container...) uses ``level``, whatever is held.

        Never refused for dominance: the record blocks every level comparable
        with it (dominating or dominated), by rule, however many pairs that
        is, until :meth:`release` drops its last owner. A range blocks by its
        high level (what it can read). Levels without categories are refused
        (InvalidLevel): every level dominates them. Idempotent per owner;
        several owners share one record. Returns the in-use record.
        """
        wanted = self._observed(level)
        check_owner(owner)
        with self._lock:
            for _ in range(self.max_attempts):
                current = self.store.get(wanted, in_use=True)
                if current is not None:
                    joined = self._join(current, owner, None)
                    if joined is not None:
                        return joined
                    continue
                record = self._new_record(
                    wanted, owner, shared=True, ttl=None, persistent=False, in_use=True
                )
                # Through the custom protocol: it moves the generation, so a pair
                # insert racing with this one is refused and its allocator resyncs.
                result = self.store.insert_custom(record, lambda held: None)
                if result.inserted:
                    return self._inserted(record, result.revision)
            raise self._give_up(f"record {wanted} in use")

    def _observed(self, value: Level | LevelRange | str) -> Level:
        if isinstance(value, str):
            if "-" in value:
                value = LevelRange.parse(value, categories=SEEN_CATEGORIES)
            else:
                value = Level.parse(value, categories=SEEN_CATEGORIES)
        if isinstance(value, LevelRange):
            value = value.high  # what a process at that range can read
        if not isinstance(value, Level):
            raise InvalidLevel(f"level must be a Level, a LevelRange or a string, not {_q(value)}")
        value.check(categories=SEEN_CATEGORIES)
        if not value.categories:
            raise InvalidLevel(
                f"{value} has no categories: every level dominates it, so it blocks nothing"
                " that it could read"
            )
        return value

    # --- queries --------------------------------------------------------

    def get(self, level: Level | LevelRange | str, *, in_use: bool = False) -> Allocation | None:
        """The allocation holding exactly ``level`` (or its in-use record), or None."""
        return self.store.get(self._observed(level), in_use=in_use)

    def allocations(self) -> list[Allocation]:
        """Every record (allocations and levels in use), sorted by level."""
        records = self.store.snapshot().allocations
        return sorted(
            records, key=lambda a: (a.level.sensitivity, a.level.sorted_categories, a.in_use)
        )

    def owned_by(self, owner: str) -> list[Allocation]:
        """Records that ``owner`` holds (alone or shared), sorted by level."""
        return [a for a in self.allocations() if owner in a.owners]

    # --- gc and discovery -----------------------------------------------

    def gc(
        self, *, proc_root: str | os.PathLike[str] = "/proc", dry_run: bool = False
    ) -> list[GcEvent]:
        """Free expired leases and drop this host's ``pid:``/``process:`` owners that are gone.

        A pid owner counts as gone when ``/proc/<n>`` is missing or a zombie;
        owners of other hosts are never touched. Persistent allocations have
        no lease, but their dead-process owners are still dropped. With
        ``dry_run`` nothing is written: the events say what would happen.
        """
        return collect_garbage(self, proc_root, dry_run=dry_run)

    def reserve_in_use(self, *, proc_root: str | os.PathLike[str] = "/proc") -> list[Discovered]:
        """Reserve the levels running processes already use, under ``process:<pid>@<host>``.

        Reads ``/proc/*/attr/current`` (see
        :func:`~mcslabel.allocation.discovery.levels_in_use`). Each process
        becomes one owner of a shared reservation, so the level stays held
        while any of them runs and :meth:`gc` frees it once they are all
        gone. Levels already held by someone else are reported as ``already-held``.
        """
        return reserve_processes(self, proc_root)

    def list(self) -> builtins.list[Allocation]:
        """Deprecated alias of :meth:`allocations` (it shadowed the builtin)."""
        warnings.warn(
            "Allocator.list() is deprecated; use Allocator.allocations()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.allocations()


__all__ = [
    "DEFAULT_EXCLUDE",
    "MAX_ATTEMPTS",
    "MAX_CATEGORIES",
    "SYNC_INTERVAL",
    "Allocator",
    "Discovered",
    "GcEvent",
    "comparable_pairs",
    "name_hash_index",
    "pair_at",
    "pair_count",
    "pair_index",
    "pairs_never_comparable",
]
