"""Changing who holds a level: join, add an owner, transfer, release, renew.

Owns the compare-and-swap loops over one record's owners and lease, shared by
:class:`~mcslabel.allocation.allocator.Allocator` (which mixes this class in).
May import: the model and :mod:`mcslabel.allocation.stores`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import attrs

from mcslabel.allocation.stores.base import MAX_OWNERS, Allocation, Store, check_owner
from mcslabel.errors import AllocationError, InvalidInput, LabelInUse, UnknownAllocation
from mcslabel.errors import show_input as _q
from mcslabel.level import Level, LevelRange


def holders(allocation: Allocation) -> str:
    """The first owners of ``allocation``, for messages."""
    owners = allocation.owners
    return ", ".join(owners[:3]) + (f" and {len(owners) - 3} more" if len(owners) > 3 else "")


class OwnerOperations:
    """The owner-changing half of the allocator (see the module docs)."""

    store: Store
    clock: Callable[[], float]
    max_attempts: int
    _lock: threading.RLock

    def _give_up(self, what: str) -> AllocationError:
        raise NotImplementedError

    def _observed(self, value: Level | LevelRange | str) -> Level:
        raise NotImplementedError

    def _apply(self, key: str, new: Allocation | None) -> None:
        raise NotImplementedError

    def _join(
        self, current: Allocation, owner: str, ttl: float | None, *, force: bool = False
    ) -> Allocation | None:
        """Add ``owner`` to a held level; None when the record vanished meanwhile.

        Refused (LabelInUse) when the level is not shared, unless ``force``.
        A lease only grows: a joiner with a ttl extends it to at least
        ``now + ttl``; a joiner without one removes it (the level is then
        held until released).
        """
        for _ in range(self.max_attempts):
            if owner in current.owners:
                return current
            if not current.shared and not force:
                raise LabelInUse(
                    f"{current.level} is held by {holders(current)} and is not shared",
                    level=current.key,
                    holder=current.owners[0],
                )
            if current.refcount >= MAX_OWNERS:
                raise AllocationError(f"{current.level} already has the most owners allowed")
            expires: float | None = None
            if ttl is not None and current.expires is not None and not current.persistent:
                expires = max(current.expires, self.clock() + ttl)
            new = attrs.evolve(
                current, owners=tuple(sorted((*current.owners, owner))), expires=expires
            )
            if self.store.replace(current, new):
                return self._stored(new)
            fresh = self.store.get(current.level, in_use=current.in_use)
            if fresh is None:
                return None
            current = fresh
        raise self._give_up(f"join {current.level}")

    def _stored(self, record: Allocation) -> Allocation:
        """``record`` as the store now holds it (with its revision), or ``record``."""
        fresh = self.store.get(record.level, in_use=record.in_use)
        return fresh if fresh is not None and fresh == record else record

    def _held(self, level: Level, in_use: bool = False) -> Allocation:
        current = self.store.get(level, in_use=in_use)
        if current is None:
            raise UnknownAllocation(f"{level} is not {'in use' if in_use else 'allocated'}")
        return current

    def add_owner(self, level: Level | LevelRange | str, owner: str) -> Allocation:
        """Make ``owner`` a co-owner of the allocation of ``level``, shared or not.

        For a process started at a level its script allocated (a container
        carrying ``io.mcslabel.owner``): it holds the level too, so the level
        stays held while either holds it. Idempotent. Raises
        :class:`~mcslabel.errors.UnknownAllocation` when ``level`` is not allocated.
        """
        wanted = self._observed(level)
        check_owner(owner)
        with self._lock:
            for _ in range(self.max_attempts):
                joined = self._join(self._held(wanted), owner, None, force=True)
                if joined is not None:
                    return joined
            raise self._give_up(f"add an owner to {wanted}")

    def transfer(
        self, level: Level | LevelRange | str, from_owner: str, to_owner: str
    ) -> Allocation:
        """Hand ``from_owner``'s hold on ``level`` to ``to_owner`` in one write.

        Raises :class:`~mcslabel.errors.UnknownAllocation` when ``level`` is
        not allocated or ``from_owner`` does not hold it.
        """
        wanted = self._observed(level)
        check_owner(from_owner)
        check_owner(to_owner)
        with self._lock:
            for _ in range(self.max_attempts):
                current = self._held(wanted)
                if from_owner not in current.owners:
                    raise UnknownAllocation(
                        f"{wanted} is not held by {_q(from_owner)} (held by {holders(current)})"
                    )
                owners = {o for o in current.owners if o != from_owner} | {to_owner}
                new = attrs.evolve(current, owners=tuple(sorted(owners)))
                if self.store.replace(current, new):
                    return self._stored(new)
            raise self._give_up(f"transfer {wanted}")

    def release(
        self, level: Level | LevelRange | str, owner: str | None = None
    ) -> Allocation | None:
        """Drop ``owner`` from ``level``; free it when no owner is left.

        Applies to the allocation of ``level`` and to its in-use record
        (:meth:`record_in_use`), whichever ``owner`` is in. ``owner=None``
        frees both whoever holds them. Returns the remaining record (the
        allocation first), or None when nothing is left. Raises
        :class:`~mcslabel.errors.UnknownAllocation` when ``level`` is neither
        allocated nor in use, or ``owner`` holds neither.
        """
        wanted = self._observed(level)
        if owner is not None:
            check_owner(owner)
        with self._lock:
            records = [
                r for r in (self.store.get(wanted), self.store.get(wanted, in_use=True)) if r
            ]
            if not records:
                raise UnknownAllocation(f"{wanted} is not allocated")
            mine = [r for r in records if owner is None or owner in r.owners]
            if not mine:
                raise UnknownAllocation(
                    f"{wanted} is not held by {_q(owner)} (held by {holders(records[0])})"
                )
            left = [self._drop(r, owner) for r in mine]
            return next((r for r in left if r is not None), None)

    def _drop(self, current: Allocation | None, owner: str | None) -> Allocation | None:
        level = None if current is None else current.level
        for _ in range(self.max_attempts):
            if current is None or (owner is not None and owner not in current.owners):
                return current  # released meanwhile
            if owner is None or current.refcount == 1:
                if self.store.delete(current):
                    self._apply(current.key, None)
                    return None
            else:
                new = attrs.evolve(current, owners=tuple(o for o in current.owners if o != owner))
                if self.store.replace(current, new):
                    return self._stored(new)
            current = self.store.get(current.level, in_use=current.in_use)
        raise self._give_up(f"release {level}")

    def renew(self, level: Level | str, ttl: float) -> Allocation:
        """Set ``level``'s lease to expire ``ttl`` seconds from now."""
        wanted = self._observed(level)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < math.inf:
            raise InvalidInput(f"ttl must be a positive number of seconds, got {_q(ttl)}")
        for _ in range(self.max_attempts):
            current = self._held(wanted)
            if current.persistent:
                raise InvalidInput(f"{wanted} is persistent and carries no lease to renew")
            new = attrs.evolve(current, expires=self.clock() + ttl)
            if self.store.replace(current, new):
                return self._stored(new)
        raise self._give_up(f"renew {wanted}")


__all__ = ["OwnerOperations", "holders"]
