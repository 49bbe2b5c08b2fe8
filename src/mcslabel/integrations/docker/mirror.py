"""Mirroring a daemon's container levels into the registry.

Owns: :class:`SyncResult` and :func:`sync`: every container's level held
under ``docker:<id>`` (adopted into its owner's allocation when it carries
``io.mcslabel.owner``), levels that cannot be recorded still blocking what
they could read, released levels of removed containers, and the volumes
and journals left behind by removed containers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from mcslabel.errors import (
    DominanceConflict,
    InvalidInput,
    InvalidLevel,
    LabelInUse,
    MCSLabelError,
    UnknownAllocation,
)
from mcslabel.integrations.docker.daemon import container_exists, positional_allocator
from mcslabel.integrations.docker.inspection import OWNER_PREFIX, ContainerLabel, labels_in_use
from mcslabel.integrations.docker.volume_users import volume_report
from mcslabel.level import Level

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator

_Pairs = tuple[tuple[str, str], ...]


def _pairs(items: _Pairs) -> list[dict[str, str]]:
    return [{"level": lv, "owner": o} for lv, o in items]


@attrs.frozen
class SyncResult:
    """What :func:`sync` changed in the registry, and what it found but could not fix."""

    #: (level, owner) pairs newly reserved.
    reserved: _Pairs = ()
    #: (level, owner) pairs that were already held by that owner.
    kept: _Pairs = ()
    #: (level, owner) pairs released because the container is gone.
    released: _Pairs = ()
    #: (level, owner): levels the registry refused (see ``conflicts``) but that a
    #: container uses: recorded in use, they block every level comparable with them.
    fenced: _Pairs = ()
    #: (level, owner, reason) for levels the registry refused (held elsewhere, dominance,
    #: outside the registry's categories).
    conflicts: tuple[tuple[str, str, str], ...] = ()
    #: (level, owner, adopted by): containers that joined the allocation their
    #: ``io.mcslabel.owner`` label names.
    adopted: tuple[tuple[str, str, str], ...] = ()
    #: (container id, configured level, reason): levels that do not parse, even as the
    #: kernel would read them.
    unreadable: tuple[tuple[str, str, str], ...] = ()
    #: (volume path, level or "", journals) whose container is gone: the level stays
    #: held until `mcslabel docker volumes restore|forget`.
    orphaned: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @property
    def ok(self) -> bool:
        """No conflict and nothing unreadable."""
        return not (self.conflicts or self.unreadable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reserved": _pairs(self.reserved),
            "kept": _pairs(self.kept),
            "released": _pairs(self.released),
            "fenced": _pairs(self.fenced),
            "conflicts": [{"level": lv, "owner": o, "reason": r} for lv, o, r in self.conflicts],
            "adopted": [{"level": lv, "owner": o, "adopted_by": b} for lv, o, b in self.adopted],
            "unreadable": [{"id": i, "level": lv, "reason": r} for i, lv, r in self.unreadable],
            "orphaned": [
                {"path": p, "level": lv or None, "journals": list(j)} for p, lv, j in self.orphaned
            ],
        }


def sync(
    client: Any,
    *args: Any,
    allocator: Allocator | None = None,
    filters: Mapping[str, Any] | None = None,
    owner_prefix: str = OWNER_PREFIX,
    journal_dir: str | os.PathLike[str] | None = None,
) -> SyncResult:
    """Mirror the daemon's container levels into ``allocator``.

    Each container's level is reserved (shared) under ``<owner_prefix><id>``
    (custom levels first, so that ``s0:c1,c2,c3`` blocks the pairs below it),
    so the containers of one pod, and containers that share a level by
    mistake, hold one refcounted allocation: the level stays held while any
    of them exists. A container labeled ``io.mcslabel.owner=<owner>`` (see
    :func:`~mcslabel.integrations.docker.run_options`) at a level that owner
    holds becomes a co-owner of that allocation. Allocations under
    ``owner_prefix`` whose container no longer exists are released first;
    the ``volume:`` owners of their relabeled volumes keep the level held and
    are reported in ``orphaned``.

    ``filters`` (Docker's listing filters) limit which containers are
    mirrored; nothing outside them is released. One container never stops
    the others: what the registry refuses (a level held unshared by another
    owner, dominance, outside its categories) is reported in ``conflicts``
    and still recorded in use (``fenced``, :meth:`Allocator.record_in_use`),
    so nothing comparable with it is handed out while it runs, whatever its
    size; what does not parse is reported in ``unreadable``.

    The old order ``sync(allocator, client)`` still works with a
    :class:`DeprecationWarning`.
    """
    from mcslabel.allocation import Allocator

    if isinstance(client, Allocator) and args:  # the old order: sync(allocator, client)
        client, args = args[0], (client, *args[1:])
    allocator = positional_allocator(args, allocator, "sync")
    if allocator is None:
        raise InvalidInput("sync needs allocator=...")
    everything = list(labels_in_use(client, filters=filters))
    live = {owner_prefix + c.id for c in everything}
    found = _Found()

    # Release first: a removed container's level must not block a new one's.
    for allocation in allocator.allocations():
        for owner in allocation.owners:
            if owner.startswith(owner_prefix) and owner not in live:
                if container_exists(client, owner[len(owner_prefix) :]):
                    continue  # outside the filters, or created after the listing
                with contextlib.suppress(UnknownAllocation):
                    allocator.release(allocation.level, owner=owner)
                    found.released.append((str(allocation.level), owner))

    def rank(c: ContainerLabel) -> tuple[bool, int, str]:
        assert c.level is not None
        return (c.level.is_pair and c.level.sensitivity == 0, -len(c.level.categories), c.id)

    for c in everything:
        if c.unreadable and not c.disabled:
            found.unreadable.append(
                (c.id, str(c.level_text), "the level does not parse, even as the kernel reads it")
            )
    labeled = [c for c in everything if c.level is not None and not c.disabled]
    # Custom levels first, so that a level such as s0:c1,c2,c3 blocks the pairs it dominates.
    for c in sorted(labeled, key=rank):
        assert c.level is not None
        try:
            _mirror(allocator, c, c.level, owner_prefix + c.id, found)
        except MCSLabelError as exc:  # one container never aborts the others
            found.conflicts.append((str(c.level), owner_prefix + c.id, str(exc)))
    # This engine's containers only: orphaned is a hint here; `volumes` asks every engine.
    for volume in volume_report(client, allocator, journal_dir=journal_dir, others={}):
        if volume.orphaned:
            level = "" if volume.level is None else str(volume.level)
            found.orphaned.append((volume.path, level, tuple(str(j) for j in volume.journals)))
    return found.result()


@attrs.define
class _Found:
    reserved: list[tuple[str, str]] = attrs.field(factory=list)
    kept: list[tuple[str, str]] = attrs.field(factory=list)
    released: list[tuple[str, str]] = attrs.field(factory=list)
    fenced: list[tuple[str, str]] = attrs.field(factory=list)
    conflicts: list[tuple[str, str, str]] = attrs.field(factory=list)
    adopted: list[tuple[str, str, str]] = attrs.field(factory=list)
    unreadable: list[tuple[str, str, str]] = attrs.field(factory=list)
    orphaned: list[tuple[str, str, tuple[str, ...]]] = attrs.field(factory=list)

    def result(self) -> SyncResult:
        return SyncResult(**{k: tuple(v) for k, v in attrs.asdict(self, recurse=False).items()})


def _mirror(
    allocator: Allocator, c: ContainerLabel, level: Level, owner: str, found: _Found
) -> None:
    before = allocator.get(level)
    text = str(level)
    if before is not None and owner in before.owners:
        found.kept.append((text, owner))
        return
    if before is not None and c.adopted_by is not None and c.adopted_by in before.owners:
        allocator.add_owner(level, owner)
        found.adopted.append((text, owner, c.adopted_by))
        return
    try:
        allocator.reserve(level, owner, shared=True)
    except (DominanceConflict, LabelInUse, InvalidLevel) as exc:
        found.conflicts.append((text, owner, str(exc)))
        # Still in use: recorded, it blocks every level comparable with it, by rule.
        with contextlib.suppress(InvalidLevel):
            allocator.record_in_use(level, owner)
            found.fenced.append((text, owner))
        return
    found.reserved.append((text, owner))


__all__ = ["SyncResult", "sync"]
