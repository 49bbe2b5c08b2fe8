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

from mcslabel.allocation.allocator import Allocator, Discovered, GcEvent
from mcslabel.allocation.stores import STORE_ENV, Allocation, Store, open_store, store_url

__all__ = [
    "STORE_ENV",
    "Allocation",
    "Allocator",
    "Discovered",
    "GcEvent",
    "Store",
    "open_store",
    "store_url",
]
