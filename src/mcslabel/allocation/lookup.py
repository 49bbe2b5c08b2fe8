"""Reading one record of a store without building an allocator.

:meth:`Allocator.get <mcslabel.allocation.allocator.Allocator.get>` is
:func:`holding` on the allocator's store; a caller that only asks who holds
a level (``mcslabel relabel --level`` checking the store) uses it directly
and loads neither the allocator nor its free-pair index.
May import: the model, the store types and the allocator's level checks.
"""

from __future__ import annotations

from mcslabel.allocation._checks import observed_level
from mcslabel.allocation.stores.base import Allocation, Store
from mcslabel.level import Level, LevelRange


def holding(
    store: Store, level: Level | LevelRange | str, *, in_use: bool = False
) -> Allocation | None:
    """The record of ``store`` holding exactly ``level`` (or its in-use record), or None.

    ``level`` is checked as the allocator checks it: a range means its high
    level, and a level without categories raises
    :class:`~mcslabel.errors.InvalidLevel`.
    """
    return store.get(observed_level(level), in_use=in_use)


__all__ = [
    "holding",
]
