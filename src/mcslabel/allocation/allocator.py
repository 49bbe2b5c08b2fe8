"""Hand out unique MCS category pairs from a shared registry.

:class:`Allocator` holds the policy of allocation (uniform random pairs from
``secrets``, deterministic pairs for names, dominance safety, exhaustion,
leases, gc); a :class:`~mcslabel.allocation.stores.base.Store` holds the records and
provides atomic primitives. Every store gets the same guarantees.

How a random pair is picked in O(log n) whatever the occupancy: the allocator
keeps an in-memory index of *blocked* pair indexes (held, excluded, or
comparable with a held custom level) in a Fenwick tree, kept in step with the
store through its revision (one full load, then only the changes). It draws
``k`` uniformly below the number of free pairs and takes the ``k``-th free
pair, then commits it with a put-if-absent insert. A conflict (another
process took it) means the index was stale: it syncs and draws again, a
bounded number of times. Before raising :class:`~mcslabel.errors.SpaceExhausted`
it reloads the whole store, so it never reports a full space falsely.

Pairs are numbered ``0 .. C(n,2)-1`` in lexicographic order of ``(a, b)``,
``a < b``: see :func:`pair_index` and :func:`pair_at`.
"""

from __future__ import annotations

import bisect
import builtins
import hashlib
import math
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import attrs

from mcslabel.allocation.stores.base import (
    Allocation,
    Changes,
    InsertOutcome,
    Store,
    check_name,
    check_owner,
    trusted_pair_level,
)
from mcslabel.context import Context
from mcslabel.errors import (
    AllocationError,
    DominanceConflict,
    InvalidContext,
    InvalidInput,
    InvalidLevel,
    LabelInUse,
    SpaceExhausted,
    UnknownAllocation,
)
from mcslabel.errors import show_input as _q
from mcslabel.level import DEFAULT_CATEGORIES, Level, LevelRange

#: Levels never handed out by default: ``s0:c1022,c1023`` is the privileged
#: label runtimes use for shared mounts.
DEFAULT_EXCLUDE = ("s0:c1022,c1023",)
#: Commit attempts per call before giving up under contention.
MAX_ATTEMPTS = 64
# Rejection draws tried before the Fenwick descent (see Allocator._draw). Only
# used while at least half the pairs are free, so the expected number of draws
# stays below 2 however large this is; large makes the descent (which first
# applies every queued tree change) rare: 2**-16 at worst, ~never at low occupancy.
_REJECTION_DRAWS = 16
#: Seconds a random allocation may reuse the last view of the store before
#: reading the changes first. A stale view cannot cause a duplicate (the
#: put-if-absent commit refuses, and the allocator then syncs and redraws);
#: it only costs a retry.
SYNC_INTERVAL = 1.0
#: Owners gc may prove gone: ``pid:<n>@<host>`` and ``process:<n>@<host>``.
PROCESS_OWNER = re.compile(r"(?:pid|process):([1-9][0-9]{0,9})@(.+)")


# --- pair numbering ---------------------------------------------------------


def pair_count(categories: int) -> int:
    """Number of pairs ``cA,cB`` (A < B) over ``categories`` categories: C(n, 2)."""
    return categories * (categories - 1) // 2


def pair_index(a: int, b: int, categories: int) -> int:
    """Index of the pair ``(a, b)``, ``a < b < categories``, in lexicographic order."""
    if not 0 <= a < b < categories:
        raise InvalidLevel(f"c{a},c{b} is not a pair with a < b < {categories}")
    return a * (2 * categories - a - 1) // 2 + (b - a - 1)


def pair_at(index: int, categories: int) -> tuple[int, int]:
    """Inverse of :func:`pair_index`."""
    if not 0 <= index < pair_count(categories):
        raise InvalidInput(f"pair index {index} out of range for {categories} categories")
    m = 2 * categories - 1
    a = (m - math.isqrt(m * m - 8 * index)) // 2
    # isqrt rounding may land one row off: step to the row holding index.
    while a > 0 and a * (m - a) // 2 > index:
        a -= 1
    while (a + 1) * (m - a - 1) // 2 <= index:
        a += 1
    start = a * (m - a) // 2
    return a, a + 1 + (index - start)


def _checked_time(what: str, value: float) -> float:
    """``value`` if it is a finite number of seconds, else InvalidInput (a broken clock)."""
    if type(value) is float and math.isfinite(value):
        return value  # the common case, checked in two C calls
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number of seconds, got {_q(value)}")
    return value


def name_hash_index(name: str, categories: int = DEFAULT_CATEGORIES) -> int:
    """The preferred pair index of a deterministic name (SHA-256, host independent)."""
    digest = hashlib.sha256(b"mcslabel-name\x00" + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % pair_count(categories)


def comparable_pairs(level: Level, categories: int) -> Iterator[int]:
    """Indexes of the ``s0`` pairs comparable with ``level`` (dominating or dominated).

    A pair lies under ``level`` when its two categories are in the level's
    set; it lies over ``level`` when the level is ``s0`` with one category
    that the pair contains (or is the pair itself, already counted).
    """
    cats = sorted(c for c in level.categories if c < categories)
    for i, a in enumerate(cats):
        for b in cats[i + 1 :]:
            yield pair_index(a, b, categories)
    if level.sensitivity == 0 and len(level.categories) == 1 and cats:
        (c,) = cats
        for other in range(categories):
            if other != c:
                yield pair_index(min(c, other), max(c, other), categories)


# --- the free-pair index ----------------------------------------------------


class _FreeIndex:
    """Counts of blocking reasons per pair + a Fenwick tree over "free" flags.

    Tree updates are deferred: ``block``/``unblock`` are O(1) and queue the
    change; the queue is applied (or the tree rebuilt in O(n) when the queue
    is long) only when a query needs the tree. While most pairs are free the
    allocator draws by rejection and never queries it, so allocation stays
    O(1); when it does query, each queued change costs O(log n) once.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        self._blocks = [0] * size
        # Padded to a power of two so the descent in kth_free needs no bound check;
        # the padding slots are counted as blocked (never free).
        self._cap = 1 << max(size - 1, 0).bit_length() if size > 1 else 1
        self._top = self._cap
        # Queued changes: i for "slot i became free", ~i for "slot i became blocked".
        self._pending: list[int] = []
        self._tree: list[int] = []
        self._rebuild()

    def _rebuild(self) -> None:
        """Build the tree from the block counts in O(n)."""
        cap, size = self._cap, self.size
        if self.free == size:
            # All free: node i covers (i - lowbit(i), i], of which slots <= size count.
            tree = [i & -i for i in range(cap + 1)]
            for i in range(size + 1, cap + 1):  # padding nodes: count only real slots
                tree[i] = max(0, size - i + (i & -i))
            self._tree = tree
            self._pending.clear()
            return
        tree = [0, *(0 if b else 1 for b in self._blocks)] + [0] * (cap - size)
        for i in range(1, cap + 1):
            parent = i + (i & -i)
            if parent <= cap:
                tree[parent] += tree[i]
        self._tree = tree
        self._pending.clear()

    def _flush(self) -> None:
        pending = self._pending
        if len(pending) * 4 > self._cap // max(self._cap.bit_length(), 1):
            self._rebuild()
            return
        tree, n = self._tree, self._cap
        for change in pending:
            if change >= 0:
                i, delta = change + 1, 1
            else:
                i, delta = ~change + 1, -1
            while i <= n:
                tree[i] += delta
                i += i & -i
        pending.clear()

    def _add(self, index: int, delta: int) -> None:
        self.free += delta
        self._pending.append(index if delta > 0 else ~index)
        if len(self._pending) > self._cap:
            self._rebuild()  # bounds the queue under long churn at low occupancy

    def block(self, index: int) -> None:
        count = self._blocks[index] + 1
        self._blocks[index] = count
        if count == 1:
            self._add(index, -1)

    def unblock(self, index: int) -> None:
        count = self._blocks[index] - 1
        self._blocks[index] = count
        if count == 0:
            self._add(index, 1)

    def is_free(self, index: int) -> bool:
        return self._blocks[index] == 0

    def kth_free(self, k: int) -> int:
        """Index of the k-th (0-based) free pair; requires ``0 <= k < free``."""
        if self._pending:
            self._flush()
        pos, remaining, step, tree = 0, k + 1, self._top, self._tree
        while step:
            value = tree[pos + step]
            if value < remaining:
                pos += step
                remaining -= value
            step >>= 1
        return pos  # 1-based position pos+1 -> 0-based index pos

    def free_before(self, index: int) -> int:
        """Number of free pairs with an index below ``index``."""
        if self._pending:
            self._flush()
        total, i, tree = 0, index, self._tree
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total


# --- records ----------------------------------------------------------------


@attrs.frozen
class GcEvent:
    """One thing :meth:`Allocator.gc` did."""

    level: Level
    #: The owner dropped, or None when the whole allocation expired.
    owner: str | None
    reason: Literal["lease-expired", "process-gone"]
    #: Whether the level became free.
    freed: bool


@attrs.frozen
class Discovered:
    """A level found in use by running processes (:meth:`Allocator.reserve_in_use`)."""

    level: Level
    pids: tuple[int, ...]
    outcome: Literal["reserved", "already-held", "conflict"]
    detail: str = ""


def _check_flags(shared: bool, persistent: bool) -> None:
    # Records are built unvalidated (Allocation.trusted): a non-bool flag would be stored
    # and make every later read of the store fail as corrupt.
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


def _holders(allocation: Allocation) -> str:
    owners = allocation.owners
    text = ", ".join(owners[:3]) + (f" and {len(owners) - 3} more" if len(owners) > 3 else "")
    return text


def _process_gone(pid: int, proc_root: Path) -> bool:
    try:
        stat = (proc_root / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False  # cannot prove it gone
    # A zombie has exited; only its parent's wait() is missing.
    state = stat.rpartition(")")[2].split()
    return bool(state) and state[0] in ("Z", "X")


class Allocator:
    """Allocates MCS levels from ``store``; see the module docs for the method.

    :param store: where records live (:func:`mcslabel.allocation.stores.open_store`).
    :param categories: the policy's category count (1024 on mainstream policies).
    :param exclude: levels never handed out, plus every pair comparable with them.
    :param host: this host's name, recorded in each allocation and used by
        :meth:`gc` to recognise its own ``pid:<n>@<host>`` owners.
    :param clock: seconds since the epoch (tests pass a fake clock).
    :param max_attempts: commit attempts per call before giving up under contention.
    :param sync_interval: see :data:`SYNC_INTERVAL`.

    Thread-safe; one instance per process is enough.
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
        if categories > 1 << 16:
            raise InvalidInput(f"categories {categories} is beyond any SELinux policy")
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
            self._level(x, what="excluded level", categories=1 << 16) for x in exclude
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
        self._lock = threading.RLock()
        self._records: dict[str, Allocation] = {}
        self._names: dict[str, str] = {}
        self._customs: dict[str, Allocation] = {}
        self._revision = -1
        self._generation = 0
        self._synced_at = -math.inf
        self.sync_interval = sync_interval
        # Index of each row's first pair (c_a, c_a+1): pair_at by bisection in C.
        self._row_starts = [a * (2 * categories - a - 1) // 2 for a in range(categories - 1)]
        self._index = self._fresh_index()

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

    def _is_pair(self, level: Level) -> bool:
        return level.sensitivity == 0 and level.is_pair

    def _pair_of(self, index: int) -> tuple[int, int]:
        """:func:`pair_at` for an index known to be in range (the hot path)."""
        starts = self._row_starts
        a = bisect.bisect_right(starts, index) - 1
        return a, a + 1 + index - starts[a]

    def _pair_level(self, index: int) -> Level:
        return trusted_pair_level(*self._pair_of(index))

    def _pair_index_of(self, level: Level) -> int:
        a, b = level.sorted_categories
        return pair_index(a, b, self.categories)

    # --- the in-memory index --------------------------------------------

    def _fresh_index(self) -> _FreeIndex:
        index = _FreeIndex(self.total_pairs)
        for level in self.exclude:
            for i in self._blocked_by(level):
                index.block(i)
        return index

    def _blocked_by(self, level: Level) -> Iterable[int]:
        if self._is_pair(level):
            a, b = level.sorted_categories
            return (pair_index(a, b, self.categories),) if b < self.categories else ()
        return set(comparable_pairs(level, self.categories))

    def _apply(self, key: str, new: Allocation | None) -> None:
        old = self._records.pop(key, None)
        if old is not None:
            if old.name is not None and self._names.get(old.name) == key:
                del self._names[old.name]
            self._customs.pop(key, None)
            for i in self._blocked_by(old.level):
                self._index.unblock(i)
        if new is not None:
            self._records[key] = new
            if new.name is not None:
                self._names[new.name] = key
            if not self._is_pair(new.level):
                self._customs[key] = new
            for i in self._blocked_by(new.level):
                self._index.block(i)

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
                if key in self._customs:
                    self._customs[key] = record
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
                self._records, self._names, self._customs = {}, {}, {}
                self._index = self._fresh_index()
            for record in snapshot.allocations:
                self._apply(record.key, record)
            self._revision = snapshot.revision
            self._generation = snapshot.generation

    @property
    def free_pairs(self) -> int:
        """Free pairs as of the last sync (call :meth:`sync` first for a fresh count)."""
        return self._index.free

    def _exhausted(self) -> SpaceExhausted:
        held = sum(1 for k in self._records if self._is_pair(self._records[k].level))
        return SpaceExhausted(
            f"no free category pair among {self.total_pairs} over {self.categories} categories"
            f" ({held} held as pairs, {len(self._customs)} custom levels held,"
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
    ) -> Allocation:
        # owner, name, ttl and level were checked at the public API edge.
        now = _checked_time("created", self.clock())
        return Allocation.trusted(
            level,
            (owner,),
            now,
            expires=None if ttl is None else _checked_time("expires", now + ttl),
            name=name,
            shared=shared,
            host=self.host,
            custom=not self._is_pair(level),
            persistent=persistent,
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
                index = self._draw()
                a, b = self._pair_of(index)
                # What _new_record does, with the key formatted once from the ints.
                now = _checked_time("created", self.clock())
                record = Allocation.trusted(
                    trusted_pair_level(a, b),
                    (owner,),
                    now,
                    expires=None if ttl is None else _checked_time("expires", now + ttl),
                    shared=shared,
                    host=self.host,
                    persistent=persistent,
                    key=f"s0:c{a},c{b}",
                )
                outcome = self.store.insert(record, generation=self._generation)
                if outcome is InsertOutcome.INSERTED:
                    # Known new pair: block its index directly (what _apply would do).
                    self._records[record.key] = record
                    self._index.block(index)
                    return record
                if outcome is InsertOutcome.GENERATION_MOVED:
                    if generation_seen == self._generation:
                        self._backoff(attempt)
                    generation_seen = self._generation
            raise self._give_up("allocate")

    def _draw(self) -> int:
        """A free pair index, uniform over the free pairs.

        While at least half the pairs are free, rejection draws over the
        whole space first (each accepted draw is uniform over the free pairs;
        O(1) expected, fewer than 2 draws); after 16 misses, or when most
        pairs are held, the k-th free pair from the Fenwick index (O(log n)
        at any occupancy).
        A mixture of uniform draws is uniform, so the split is invisible.
        """
        index, total = self._index, self.total_pairs
        if index.free * 2 >= total:  # worth it only while most pairs are free
            is_free, randbelow = index.is_free, secrets.randbelow
            for _ in range(_REJECTION_DRAWS):
                candidate = randbelow(total)
                if is_free(candidate):
                    return candidate
        return index.kth_free(secrets.randbelow(index.free))

    def name_level(self, name: str) -> Level:
        """The pair a name maps to on an empty registry (same on every host).

        When that pair is taken, excluded or blocked, the name gets the next
        free pair in index order (wrapping), which depends on occupancy;
        once allocated, the name keeps its pair until released.
        """
        return self._pair_level(name_hash_index(check_name(name), self.categories))

    def _named_index(self, name: str) -> int | None:
        if self._index.free == 0:
            return None
        start = name_hash_index(name, self.categories)
        before = self._index.free_before(start)
        k = before if before < self._index.free else 0
        return self._index.kth_free(k)

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
                index = self._named_index(name)
                if index is None:
                    self.sync(full=True)
                    if name in self._names:
                        continue
                    index = self._named_index(name)
                    if index is None:
                        raise self._exhausted()
                record = self._new_record(
                    self._pair_level(index),
                    owner,
                    shared=True,
                    ttl=ttl,
                    persistent=persistent,
                    name=name,
                )
                outcome = self.store.insert(record, generation=self._generation)
                if outcome is InsertOutcome.INSERTED:
                    self._apply(record.key, record)
                    return record
                if outcome is InsertOutcome.GENERATION_MOVED:
                    self._backoff(attempt)
            raise self._give_up(f"allocate name {_q(name)}")

    def _join(self, current: Allocation, owner: str, ttl: float | None) -> Allocation | None:
        """Add ``owner`` to a held level; None when the record vanished meanwhile.

        A lease only grows: a joiner with a ttl extends it to at least
        ``now + ttl``; a joiner without one removes it (the level is then
        held until released).
        """
        for _ in range(self.max_attempts):
            if owner in current.owners:
                return current
            if not current.shared:
                raise LabelInUse(
                    f"{current.level} is held by {_holders(current)} and is not shared",
                    level=current.key,
                    holder=current.owners[0],
                )
            if current.refcount >= 4096:
                raise AllocationError(f"{current.level} already has the most owners allowed")
            expires: float | None = None
            if ttl is not None and current.expires is not None and not current.persistent:
                expires = max(current.expires, self.clock() + ttl)
            new = attrs.evolve(current, owners=(*current.owners, owner), expires=expires)
            if self.store.replace(current, new):
                return new
            fresh = self.store.get(current.level)
            if fresh is None:
                return None
            current = fresh
        raise self._give_up(f"join {current.level}")

    # --- reservation ----------------------------------------------------

    def _dominance_check(self, level: Level) -> Callable[[Iterable[Allocation]], None]:
        key = str(level)

        def check(held: Iterable[Allocation]) -> None:
            for record in held:
                if record.key != key and record.level.comparable(level):
                    relation = "dominates" if level.dominates(record.level) else "is dominated by"
                    raise DominanceConflict(
                        f"{level} {relation} {record.level}, held by {_holders(record)}:"
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
        dominated by any held or excluded level. Reserving a held level:
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
        check = self._dominance_check(wanted)
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
                if self._is_pair(wanted):
                    if not self._index.is_free(self._pair_index_of(wanted)):
                        # Blocked by a custom level (or by the pair itself, seen stale).
                        check(self._customs.values())
                        continue
                    outcome = self.store.insert(record, generation=self._generation)
                else:
                    outcome = self.store.insert_custom(record, check)
                if outcome is InsertOutcome.INSERTED:
                    self._apply(record.key, record)
                    return record
                if outcome is InsertOutcome.GENERATION_MOVED:
                    self._backoff(attempt)
            raise self._give_up(f"reserve {wanted}")

    # --- release, renew, queries ----------------------------------------

    def release(self, level: Level | str, owner: str | None = None) -> Allocation | None:
        """Drop ``owner`` from ``level``; free it when no owner is left.

        ``owner=None`` frees the level whoever holds it. Returns the
        remaining allocation, or None when the level became free. Raises
        :class:`~mcslabel.errors.UnknownAllocation` when the level is not
        allocated or ``owner`` does not hold it.
        """
        wanted = self._level(level)
        if owner is not None:
            check_owner(owner)
        with self._lock:
            for _ in range(self.max_attempts):
                current = self.store.get(wanted)
                if current is None:
                    raise UnknownAllocation(f"{wanted} is not allocated")
                if owner is not None and owner not in current.owners:
                    raise UnknownAllocation(
                        f"{wanted} is not held by {_q(owner)} (held by {_holders(current)})"
                    )
                if owner is None or current.refcount == 1:
                    if self.store.delete(current):
                        self._apply(current.key, None)
                        return None
                    continue
                remaining = tuple(o for o in current.owners if o != owner)
                new = attrs.evolve(current, owners=remaining)
                if self.store.replace(current, new):
                    return new
            raise self._give_up(f"release {wanted}")

    def renew(self, level: Level | str, ttl: float) -> Allocation:
        """Set ``level``'s lease to expire ``ttl`` seconds from now."""
        wanted = self._level(level)
        _check_ttl(ttl, False)
        for _ in range(self.max_attempts):
            current = self.store.get(wanted)
            if current is None:
                raise UnknownAllocation(f"{wanted} is not allocated")
            if current.persistent:
                raise InvalidInput(f"{wanted} is persistent and carries no lease to renew")
            new = attrs.evolve(current, expires=self.clock() + ttl)
            if self.store.replace(current, new):
                return new
        raise self._give_up(f"renew {wanted}")

    def get(self, level: Level | str) -> Allocation | None:
        """The allocation holding exactly ``level``, or None."""
        return self.store.get(self._level(level))

    def owned_by(self, owner: str) -> Iterator[Allocation]:
        """Allocations that ``owner`` holds (alone or shared)."""
        return (a for a in self.list() if owner in a.owners)

    def _sorted(self, records: Iterable[Allocation]) -> builtins.list[Allocation]:
        return sorted(records, key=lambda a: (a.level.sensitivity, a.level.sorted_categories))

    # --- gc and discovery -----------------------------------------------

    def gc(self, *, proc_root: str | os.PathLike[str] = "/proc") -> builtins.list[GcEvent]:
        """Free expired leases and drop this host's ``pid:``/``process:`` owners that are gone.

        A pid owner counts as gone when ``/proc/<n>`` is missing or a zombie;
        owners of other hosts are never touched. Persistent allocations have
        no lease, but their dead-process owners are still dropped.
        """
        if not isinstance(proc_root, (str, os.PathLike)):
            raise InvalidInput(f"proc_root must be a path, got {_q(proc_root)}")
        root = Path(proc_root)
        events: builtins.list[GcEvent] = []
        now = self.clock()
        for record in self.store.snapshot().allocations:
            if record.expired(now):
                if self.store.delete(record):
                    events.append(GcEvent(record.level, None, "lease-expired", True))
                continue
            gone = []
            for owner in record.owners:
                match = PROCESS_OWNER.fullmatch(owner)
                if match and match.group(2) == self.host and _process_gone(int(match[1]), root):
                    gone.append(owner)
            for owner in gone:
                try:
                    remaining = self.release(record.level, owner)
                except UnknownAllocation:
                    continue  # someone else released it meanwhile
                events.append(GcEvent(record.level, owner, "process-gone", remaining is None))
        if events:
            self.sync()
        return events

    def reserve_in_use(
        self, *, proc_root: str | os.PathLike[str] = "/proc"
    ) -> builtins.list[Discovered]:
        """Reserve the levels running processes already use, under ``process:<pid>@<host>``.

        Reads ``/proc/*/attr/current``; without the SELinux LSM those files
        are absent or empty and nothing is found. Only single levels with
        categories count (a range such as ``s0-s0:c0.c1023`` is a cleared
        process, not a container). Each process becomes one owner of a shared
        reservation, so the level stays held while any of them runs and
        :meth:`gc` frees it once they are all gone. Levels already held by
        someone else are reported as ``already-held``.
        """
        found: dict[Level, builtins.list[int]] = {}
        try:
            entries = sorted(
                (int(e.name) for e in os.scandir(proc_root) if e.name.isdigit()),
            )
        except OSError as exc:
            raise InvalidInput(f"cannot list {proc_root}: {exc.strerror}") from None
        for pid in entries:
            try:
                raw = Path(proc_root, str(pid), "attr", "current").read_bytes()
            except OSError:
                continue
            text = raw.rstrip(b"\x00\n").decode("ascii", "replace")
            if not text:
                continue
            try:
                context = Context.parse(text, categories=self.categories)
            except InvalidContext:
                continue
            level = context.level
            if isinstance(level, LevelRange):
                if level.low != level.high:
                    continue
                level = level.low
            if level is None or not level.categories:
                continue
            found.setdefault(level, []).append(pid)
        results: builtins.list[Discovered] = []
        for level, pids in found.items():
            outcome: Literal["reserved", "already-held", "conflict"] = "reserved"
            detail = ""
            for pid in pids:
                try:
                    self.reserve(level, f"process:{pid}@{self.host}", shared=True)
                except LabelInUse as exc:
                    outcome, detail = "already-held", str(exc)
                    break
                except (DominanceConflict, InvalidLevel) as exc:
                    outcome, detail = "conflict", str(exc)
                    break
            results.append(Discovered(level, tuple(pids), outcome, detail))
        return results

    def list(self) -> Iterator[Allocation]:
        """Every allocation, sorted by level."""
        return iter(self._sorted(self.store.snapshot().allocations))


def pairs_never_comparable(levels: Sequence[Level]) -> bool:
    """True when no two of ``levels`` are comparable (the allocator's invariant)."""
    return not any(a.comparable(b) for i, a in enumerate(levels) for b in levels[i + 1 :])


__all__ = [
    "DEFAULT_EXCLUDE",
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
