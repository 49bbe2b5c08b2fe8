"""Choosing a level: reserving one, and recording one observed in use.

Owns the dominance rule at reservation time (a custom level may not be
comparable with any held, in-use or excluded level) and levels in use
(recorded whatever they dominate: they block by rule instead). Mixed into
:class:`~mcslabel.allocation.allocator.Allocator`.
May import: the model, :mod:`mcslabel.allocation.stores`, its own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mcslabel.allocation._checks import (
    check_flags,
    check_ttl,
    is_pair,
    observed_level,
    single_level,
)
from mcslabel.allocation._owners import OwnerOperations, holders
from mcslabel.allocation.stores.base import Allocation, InsertOutcome, check_owner
from mcslabel.errors import DominanceConflict, InvalidLevel
from mcslabel.level import Level, LevelRange


class ReservationOperations(OwnerOperations):
    """The reserving half of the allocator (see the module docs)."""

    categories: int
    exclude: tuple[Level, ...]

    # Provided by Allocator.
    def sync(self, *, full: bool = False) -> None:
        raise NotImplementedError

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
        raise NotImplementedError

    def _inserted(self, stored: Allocation) -> Allocation:
        raise NotImplementedError

    def _backoff(self, attempt: int) -> None:
        raise NotImplementedError

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
                        f"{level} {relation} {record.level}, {what} {holders(record)}:"
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
        wanted = single_level(level, self.categories)
        check_owner(owner)
        check_flags(shared, persistent)
        check_ttl(ttl, persistent)
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
                if is_pair(wanted):
                    a, b = wanted.sorted_categories
                    if not self._view.index.is_free(a, b):
                        # Blocked by rule (raises), by the owner's own in-use record,
                        # or by the pair itself seen stale: the insert settles it.
                        check(self._view.blockers.values())
                    result = self.store.insert(record, generation=self._view.generation)
                else:
                    result = self.store.insert_custom(record, check)
                if result.inserted:
                    return self._inserted(result.stored(record))
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
        wanted = observed_level(level)
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
                    return self._inserted(result.stored(record))
            raise self._give_up(f"record {wanted} in use")


__all__ = ["ReservationOperations"]
