"""Allocating MCS levels: the allocator, its free-pair index and its stores.

Owns: handing out unique category pairs, reserving custom levels, levels
recorded in use, co-owners, leases, garbage collection, discovery of levels in
use (``/proc``), and the registry stores (SQLite, memory, etcd) under
:mod:`mcslabel.allocation.stores`. Modules: ``allocator`` (the Allocator),
``discovery`` (/proc, gc); private ``_index`` (the free-pair index), ``_view``
(the synced view of the store), ``_checks``, ``_reservation``, ``_owners``.
Pair numbering lives in the model, :mod:`mcslabel.pairs`.
May import: the model (:mod:`mcslabel.level`, :mod:`mcslabel.context`,
:mod:`mcslabel.errors`). Nothing from relabeling, verification,
integrations or the CLI.
"""

from __future__ import annotations

from mcslabel._lazy import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

# Public name -> the module that defines it, imported on first access: asking
# the store who holds a level does not load the allocator.
_LAZY = {
    "Allocator": "mcslabel.allocation.allocator",
    "Discovered": "mcslabel.allocation.allocator",
    "GcEvent": "mcslabel.allocation.allocator",
    "holding": "mcslabel.allocation.lookup",
    "STORE_ENV": "mcslabel.allocation.stores",
    "Allocation": "mcslabel.allocation.stores",
    "Store": "mcslabel.allocation.stores",
    "open_store": "mcslabel.allocation.stores",
    "store_url": "mcslabel.allocation.stores",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from mcslabel.allocation.allocator import Allocator, Discovered, GcEvent
    from mcslabel.allocation.lookup import holding
    from mcslabel.allocation.stores import STORE_ENV, Allocation, Store, open_store, store_url


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "STORE_ENV",
    "Allocation",
    "Allocator",
    "Discovered",
    "GcEvent",
    "Store",
    "holding",
    "open_store",
    "store_url",
]
