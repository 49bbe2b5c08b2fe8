"""Cluster-wide store on etcd v3: unique levels across every host that shares the cluster.

Talks to etcd's HTTP gateway (``/v3/``, etcd 3.4+) through ``etcd3gw``, imported on first use.
The key layout under the URL's prefix ``P`` (default ``/mcslabel``)::

    P/levels/<level>      one JSON record per held level (put-if-absent, no hot key)
    P/names/<name>        -> <level>, so deterministic names stay unique
    P/deleted/<level>     tombstone written with every delete, read by changes()
    P/generation          its mod_revision is the custom generation
    P/custom-lock         held (lease-bound) while a custom reservation checks dominance
    P/hosts/<host>        the host's lease id, itself bound to that lease

Every write is one etcd transaction whose compares are the store contract
(:mod:`~mcslabel.allocation.stores.base` maps each method to its transaction). A request goes to
one member and fails over to the next on connection errors, timeouts and "no leader"; when no
member answers
within ``timeout`` seconds the call raises :class:`~mcslabel.errors.StoreUnavailable`. There is no
local fallback: a host that cannot reach the cluster cannot allocate, so it cannot duplicate.

With ``lease_ttl`` set, every non-persistent record (and its name key) is bound to its host's etcd
lease, kept alive by a background thread of each process that has the store open (and refreshed
on every write). When the host dies, the lease expires and etcd deletes those records: a dead
host's container labels come back. Persistent-volume records are never lease-bound: their labels
stay on files (NFS, CephFS) after every process is gone, and reusing them for another workload
would give it access to that data.
"""

from __future__ import annotations

from mcslabel.allocation.stores.etcd.config import (
    CUSTOM_LOCK_TTL,
    DEFAULT_PORT,
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT,
    MIN_LEASE_TTL,
    PASSWORD_ENV,
    EtcdConfig,
    parse_url,
)
from mcslabel.allocation.stores.etcd.store import EtcdStore

__all__ = [
    "CUSTOM_LOCK_TTL",
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "MIN_LEASE_TTL",
    "PASSWORD_ENV",
    "EtcdConfig",
    "EtcdStore",
    "parse_url",
]
