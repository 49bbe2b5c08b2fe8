"""Mirroring a daemon's container levels into the registry.

Owns: :class:`SyncResult` and :func:`sync`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import attrs

from mcslabel.errors import DominanceConflict, InvalidLevel, LabelInUse, UnknownAllocation
from mcslabel.integrations.docker.daemon import container_exists
from mcslabel.integrations.docker.inspection import OWNER_PREFIX, ContainerLabel, labels_in_use
from mcslabel.level import Level

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator


#: Most pairs :func:`sync` reserves to fence in one custom level the registry refuses.
MAX_FENCE_PAIRS = 4096


@attrs.frozen
class SyncResult:
    """What :func:`sync` changed in the registry."""

    #: (level, owner) pairs newly reserved.
    reserved: tuple[tuple[str, str], ...] = ()
    #: (level, owner) pairs that were already held by that owner.
    kept: tuple[tuple[str, str], ...] = ()
    #: (level, owner) pairs released because the container is gone.
    released: tuple[tuple[str, str], ...] = ()
    #: (pair, owner): pairs reserved to fence in a custom level the registry refused.
    fenced: tuple[tuple[str, str], ...] = ()
    #: (level, owner, reason) for levels the registry refused (held elsewhere, dominance).
    conflicts: tuple[tuple[str, str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "reserved": [{"level": lv, "owner": o} for lv, o in self.reserved],
            "kept": [{"level": lv, "owner": o} for lv, o in self.kept],
            "released": [{"level": lv, "owner": o} for lv, o in self.released],
            "fenced": [{"level": lv, "owner": o} for lv, o in self.fenced],
            "conflicts": [{"level": lv, "owner": o, "reason": r} for lv, o, r in self.conflicts],
        }


def sync(allocator: Allocator, client: Any, *, owner_prefix: str = OWNER_PREFIX) -> SyncResult:
    """Mirror the daemon's container levels into ``allocator``.

    Each container's level is reserved (shared) under ``<owner_prefix><id>``,
    so the containers of one pod, and containers that share a level by
    mistake, hold one refcounted allocation: the level stays held while any
    of them exists. Allocations under ``owner_prefix`` whose container no
    longer exists are released first.

    Custom levels (not an ``s0`` pair) are reserved before pairs, so that a
    level such as ``s0:c1,c2,c3`` blocks the pairs it dominates. When the
    registry refuses a custom level (it is comparable with a level held
    already), the free pairs comparable with it are reserved under the
    container's owner instead ("fenced", at most :data:`MAX_FENCE_PAIRS`):
    nothing that container could read, or be read by, is handed out while
    it exists. What the registry still refuses (a level held unshared by a
    non-Docker owner) is reported in ``conflicts``, never raised.
    """
    from mcslabel.allocation.allocator import comparable_pairs, pair_at

    everything = list(labels_in_use(client))
    live = {owner_prefix + c.id for c in everything}
    containers = [c for c in everything if c.level is not None and not c.disabled]
    reserved: list[tuple[str, str]] = []
    kept: list[tuple[str, str]] = []
    released: list[tuple[str, str]] = []
    fenced: list[tuple[str, str]] = []
    conflicts: list[tuple[str, str, str]] = []

    # Release first: a removed container's level must not block a new one's.
    for allocation in allocator.list():
        for owner in allocation.owners:
            if owner.startswith(owner_prefix) and owner not in live:
                if container_exists(client, owner[len(owner_prefix) :]):
                    continue  # created after the listing (e.g. by a concurrent run())
                with contextlib.suppress(UnknownAllocation):
                    allocator.release(allocation.level, owner=owner)
                    released.append((str(allocation.level), owner))

    def rank(c: ContainerLabel) -> tuple[bool, int, str]:
        assert c.level is not None
        return (c.level.is_pair and c.level.sensitivity == 0, -len(c.level.categories), c.id)

    for c in sorted(containers, key=rank):
        assert c.level is not None
        level_text, owner = str(c.level), owner_prefix + c.id
        before = allocator.get(c.level)
        try:
            allocator.reserve(c.level, owner, shared=True)
        except DominanceConflict as exc:
            pairs = sorted(set(comparable_pairs(c.level, allocator.categories)))
            if c.level.is_pair or len(pairs) > MAX_FENCE_PAIRS:
                conflicts.append((level_text, owner, str(exc)))
                continue
            for index in pairs:
                pair = Level.pair(*pair_at(index, allocator.categories))
                with contextlib.suppress(LabelInUse, DominanceConflict, InvalidLevel):
                    allocator.reserve(pair, owner, shared=True)
                    fenced.append((str(pair), owner))
            continue
        except (LabelInUse, InvalidLevel) as exc:
            conflicts.append((level_text, owner, str(exc)))
            continue
        if before is not None and owner in before.owners:
            kept.append((level_text, owner))
        else:
            reserved.append((level_text, owner))
    return SyncResult(
        tuple(reserved), tuple(kept), tuple(released), tuple(fenced), tuple(conflicts)
    )


__all__ = ["MAX_FENCE_PAIRS", "SyncResult", "sync"]
