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

import bisect
import builtins
import math
import os
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable

from mcslabel.allocation._checks import (
    SEEN_CATEGORIES,
    check_flags,
    check_ttl,
    checked_time,
    is_pair,
    single_level,
)
from mcslabel.allocation._reservation import ReservationOperations
from mcslabel.allocation._view import RegistryView
from mcslabel.allocation.discovery import (
    Discovered,
    GcEvent,
    collect_garbage,
    reserve_processes,
)
from mcslabel.allocation.lookup import holding
from mcslabel.allocation.stores.base import (
    Allocation,
    InsertOutcome,
    Store,
    check_name,
    check_owner,
    trusted_pair_level,
)
from mcslabel.errors import (
    AllocationError,
    InvalidInput,
    InvalidLevel,
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
# Rejection draws tried before the index descent (see Allocator._draw). Only
# used while at least half the pairs are free, so the expected number of draws
# stays below 2 however large this is.
_REJECTION_DRAWS = 16
#: Seconds a random allocation may reuse the last view of the store before
#: reading the changes first. A stale view cannot cause a duplicate (the
#: put-if-absent commit refuses, and the allocator then syncs and redraws);
#: it only costs a retry.
SYNC_INTERVAL = 1.0


class Allocator(ReservationOperations):
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
            single_level(x, SEEN_CATEGORIES, "excluded level") for x in exclude
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
        self._view = RegistryView(categories, self.exclude)

    # --- lifetime -------------------------------------------------------

    def close(self) -> None:
        """Close the store (an etcd store ends its threads). Idempotent."""
        self.store.close()

    def __enter__(self) -> Allocator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the in-memory view --------------------------------------------

    def sync(self, *, full: bool = False) -> None:
        """Bring the in-memory view up to date (incrementally unless ``full``)."""
        with self._lock:
            view = self._view
            view.synced_at = time.monotonic()
            if not full and view.revision >= 0:
                changes = self.store.changes(view.revision)
                if changes is not None:
                    view.apply_changes(changes)
                    return
            view.load(self.store.snapshot())

    @property
    def free_pairs(self) -> int:
        """Free pairs as of the last sync (call :meth:`sync` first for a fresh count)."""
        return self._view.index.free

    def is_free(self, level: Level | str) -> bool:
        """Whether the pair ``level`` could be handed out, as of the last sync.

        False for a pair that is held, excluded, or comparable with any
        custom level held or level recorded in use.
        """
        wanted = single_level(level, self.categories)
        if not is_pair(wanted):
            raise InvalidLevel(f"{wanted} is not an s0 category pair")
        a, b = wanted.sorted_categories
        return self._view.index.is_free(a, b)

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
        check_flags(shared, persistent)
        check_ttl(ttl, persistent)
        if name is not None:
            return self._allocate_named(owner, check_name(name), ttl, persistent)
        view = self._view
        with self._lock:
            generation_seen = -1
            for attempt in range(self.max_attempts):
                # The commit is what guarantees uniqueness; syncing first only
                # avoids conflicts, so a recent view is reused (see sync_interval).
                if attempt or time.monotonic() - view.synced_at > self.sync_interval:
                    self.sync()
                if view.index.free == 0:
                    self.sync(full=True)
                    if view.index.free == 0:
                        raise view.exhausted()
                a, b = self._draw()
                now = checked_time("created", self.clock())
                record = Allocation(
                    trusted_pair_level(a, b),
                    (owner,),
                    now,
                    None if ttl is None else checked_time("expires", now + ttl),
                    None,
                    shared,
                    self.host,
                    False,
                    persistent,
                    key=f"s0:c{a},c{b}",
                )
                result = self.store.insert(record, generation=view.generation)
                if result.outcome is InsertOutcome.INSERTED:
                    # Known new pair: block it directly (what _apply would do).
                    stored = result.record  # result.stored(), inlined
                    record = record.with_revision(result.revision) if stored is None else stored
                    view.records[record.key] = record
                    view.index.block_pair(a, b)
                    return record
                if result.outcome is InsertOutcome.GENERATION_MOVED:
                    if generation_seen == view.generation:
                        self._backoff(attempt)
                    generation_seen = view.generation
            raise self._give_up("allocate")

    def _draw(self) -> tuple[int, int]:
        """A free pair, uniform over the free pairs.

        While at least half the pairs are free, rejection draws over the
        whole space first (O(1) expected, fewer than 2 draws); after 16
        misses, or when most pairs are held, the k-th free pair from the
        index (O(log n) at any occupancy). A mixture of uniform draws is
        uniform, so the split is invisible.
        """
        index, total = self._view.index, self.total_pairs
        if index.free * 2 >= total:  # worth it only while most pairs are free
            randbelow, bisect_right = secrets.randbelow, bisect.bisect_right
            starts, blocked = index.row_starts, index.blocked
            for _ in range(_REJECTION_DRAWS):
                # FreeIndex.pair_of and is_free, inlined: this is the hot loop.
                candidate = randbelow(total)
                a = bisect_right(starts, candidate) - 1
                b = a + 1 + candidate - starts[a]
                if not (blocked[a] >> b) & 1:
                    return a, b
        return index.kth_free(secrets.randbelow(index.free))

    def _inserted(self, stored: Allocation) -> Allocation:
        self._view.apply(stored.key, stored)
        return stored

    # --- reservation ----------------------------------------------------

    # --- queries --------------------------------------------------------

    def get(self, level: Level | LevelRange | str, *, in_use: bool = False) -> Allocation | None:
        """The allocation holding exactly ``level`` (or its in-use record), or None."""
        return holding(self.store, level, in_use=in_use)

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
        gone. Levels already held by someone else are reported as ``already-held``,
        levels comparable with a held or another live level as ``conflict``; both
        are still recorded in use (:meth:`record_in_use`, ``recorded_in_use`` in
        the result), so nothing comparable with a live process's level is handed out.
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
