"""Label stores: where allocations live. Pick one by URL with :func:`open_store`.

``memory://``
    In-process (:class:`~mcslabel.allocation.stores.memory.MemoryStore`); tests and scripts.
``sqlite:///abs/path`` (``sqlite:///`` = the default path)
    The embedded host-wide default (:class:`~mcslabel.allocation.stores.sqlite.SQLiteStore`).
``etcd://h1:2379,h2:2379/prefix``
    Cluster-wide (``mcslabel.allocation.stores.etcd.EtcdStore``), imported only when asked for.

Without a URL, ``$MCSLABEL_STORE`` decides, else the host's SQLite database.
"""

from __future__ import annotations

import importlib
import os

from mcslabel.allocation.stores.base import (
    Allocation,
    Changes,
    CustomCheck,
    InsertOutcome,
    Snapshot,
    Store,
)
from mcslabel.errors import InvalidInput, StoreError
from mcslabel.errors import show_input as _q

#: Environment variable naming the store URL when none is given.
STORE_ENV = "MCSLABEL_STORE"

# scheme -> (module, class); each class has from_url(url). Imported lazily so
# that choosing SQLite never imports the etcd client.
_SCHEMES = {
    "memory": ("mcslabel.allocation.stores.memory", "MemoryStore"),
    "sqlite": ("mcslabel.allocation.stores.sqlite", "SQLiteStore"),
    "etcd": ("mcslabel.allocation.stores.etcd", "EtcdStore"),
    "etcds": ("mcslabel.allocation.stores.etcd", "EtcdStore"),
}


def store_url(url: str | None = None) -> str:
    """The URL :func:`open_store` would open: ``url``, else ``$MCSLABEL_STORE``, else SQLite."""
    if url:
        return url
    return os.environ.get(STORE_ENV) or "sqlite:///"


def open_store(
    url: str | None = None, *, create: bool | None = None, read_only: bool = False
) -> Store:
    """Open the store named by ``url`` (see the module docs).

    ``create``: whether a SQLite store that does not exist yet may be created.
    ``None`` (the default) creates only the default host store (``sqlite:///``,
    no URL and no ``$MCSLABEL_STORE``); a missing file at an explicit path
    raises :class:`~mcslabel.errors.StoreNotFound`, so a mistyped path never
    becomes a new, empty registry. ``read_only``: open for reading only
    (never creates; works on read-only files and mounts); writes then raise
    :class:`~mcslabel.errors.StoreError`. Any bad URL raises
    :class:`~mcslabel.errors.InvalidInput`.
    """
    if create is not None and not isinstance(create, bool):
        raise InvalidInput(f"create must be True, False or None, not {_q(create)}")
    chosen = store_url(url)
    if not isinstance(chosen, str):
        raise InvalidInput(f"store URL must be a string, not {type(chosen).__name__}")
    scheme, sep, _ = chosen.partition("://")
    if not sep or scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise InvalidInput(f"unknown store URL {_q(chosen)}: expected one of {known}")
    if scheme == "memory":
        if chosen != "memory://":
            raise InvalidInput(f"memory store URL takes no path: {_q(chosen)}; use 'memory://'")
        from mcslabel.allocation.stores.memory import MemoryStore

        return MemoryStore()
    module_name, class_name = _SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise StoreError(f"the {scheme}:// store is not available in this build") from None
    if scheme == "sqlite":
        store: Store = module.SQLiteStore.from_url(chosen, create=create, read_only=read_only)
    else:
        store = getattr(module, class_name).from_url(chosen)
    return store


__all__ = [
    "STORE_ENV",
    "Allocation",
    "Changes",
    "CustomCheck",
    "InsertOutcome",
    "Snapshot",
    "Store",
    "open_store",
    "store_url",
]
