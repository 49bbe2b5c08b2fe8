"""Plumbing of the etcd store: requests, records, transactions, the host lease.

May import: the model, :mod:`mcslabel.allocation.stores.base`, this package's modules.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from mcslabel.allocation.stores.base import Allocation
from mcslabel.allocation.stores.etcd._feed import _ChangeFeed
from mcslabel.allocation.stores.etcd._members import _Members
from mcslabel.allocation.stores.etcd._wire import (
    _NOT_FOUND,
    _b64,
    _kvs,
    _LeaseLost,
    _range_end,
    _Refused,
    _revision,
    _unb64,
)
from mcslabel.allocation.stores.etcd.config import EtcdConfig
from mcslabel.errors import (
    InvalidInput,
    StoreCorrupt,
    StoreError,
    StoreOutcomeUnknown,
)
from mcslabel.errors import show_input as _q


class _EtcdClient:
    """The plumbing under :class:`~mcslabel.allocation.stores.etcd.store.EtcdStore`.

    Owns the member connection, record encoding, transaction builders, this
    host's lease (and its keepalive thread), and withdrawing inserts whose
    outcome was unknown.
    """

    def __init__(self, config: EtcdConfig) -> None:
        self._config = config
        self._members = _Members(config)
        p = config.prefix
        self._levels = f"{p}/levels/"
        self._names = f"{p}/names/"
        self._tombstones = f"{p}/deleted/"
        self._generation_key = f"{p}/generation"
        self._lock_key = f"{p}/custom-lock"
        self._host_key = f"{p}/hosts/{config.host}"
        self._lease_lock = threading.Lock()
        self._lease: int | None = None
        self._lease_refreshed = 0.0
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        self._closed = False
        # Inserts reported as failed whose write may still commit: (record, value sent).
        self._unconfirmed: list[tuple[Allocation, str]] = []
        self._withdrawing = False
        self._feed: _ChangeFeed | None = None
        # A write met a conflict: the feed may be behind, so answer the next changes() exactly.
        self._conflicted = False
        # Revision of this store's last successful write: changes() reflects it.
        self._last_write = 0

    # --- plumbing -------------------------------------------------------------

    def _call(self, path: str, payload: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        if self._closed:
            raise StoreError("the etcd store is closed")
        if self._unconfirmed and not self._withdrawing:
            self._withdraw_unconfirmed()
        try:
            return self._members.call(path, payload)
        except _Refused as exc:
            if exc.code == _NOT_FOUND and "lease" in exc.message:
                raise _LeaseLost(exc.message) from None
            raise StoreError(f"etcd refused the request: {exc.message}") from None

    def _txn(self, txn: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        reply, ambiguous = self._call("kv/txn", txn)
        if reply.get("succeeded") and any("request_range" not in op for op in txn["success"]):
            self._last_write = max(self._last_write, _revision(reply))
        return reply, ambiguous

    def _record(self, kv: Mapping[str, Any]) -> Allocation:
        key = _unb64(kv["key"])
        try:
            data = json.loads(_unb64(kv.get("value", "")))
            if not isinstance(data, dict):
                raise InvalidInput("record is not a JSON object")
            record = Allocation.from_dict(data, revision=int(kv["mod_revision"]))
        except (ValueError, InvalidInput) as exc:
            raise StoreCorrupt(f"etcd key {_q(key)} holds a damaged record: {exc}") from None
        if self._levels + record.key != key:
            raise StoreCorrupt(f"etcd key {_q(key)} holds the record of {record.key}")
        return record

    def _value(self, allocation: Allocation) -> str:
        data = allocation.to_dict()
        # Unique per write, so after a timed-out request we can tell our write from another's.
        data["write"] = uuid.uuid4().hex
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    # --- host lease -----------------------------------------------------------

    def _lease_for(self, allocation: Allocation) -> int:
        """The lease to bind ``allocation`` to: the host lease, or 0 (none)."""
        if allocation.persistent or self._config.lease_ttl is None:
            return 0
        return self._host_lease()

    def _host_lease(self) -> int:
        ttl = self._config.lease_ttl
        assert ttl is not None
        with self._lease_lock:
            if self._lease is not None and time.monotonic() - self._lease_refreshed < ttl / 3:
                return self._lease
            if self._lease is not None and self._refresh(self._lease):
                return self._lease
            self._lease = self._join_or_grant_host_lease(ttl)
            self._lease_refreshed = time.monotonic()
            self._start_keepalive()
            return self._lease

    def _refresh(self, lease: int) -> bool:
        reply, _ = self._call("lease/keepalive", {"ID": lease})
        alive = int(reply.get("result", {}).get("TTL", -1)) > 0
        if alive:
            self._lease_refreshed = time.monotonic()
        return alive

    def _join_or_grant_host_lease(self, ttl: int) -> int:
        """The lease this host's processes share: the recorded one if alive, else a new one."""
        host_key = _b64(self._host_key)
        for _ in range(10):
            reply, _ = self._call("kv/range", {"key": host_key})
            kvs = _kvs(reply)
            seen = int(kvs[0]["mod_revision"]) if kvs else 0
            if kvs:
                try:
                    lease = int(json.loads(_unb64(kvs[0].get("value", "")))["lease"])
                except (ValueError, KeyError, TypeError):
                    raise StoreCorrupt(
                        f"etcd key {_q(self._host_key)} does not hold a host lease record"
                    ) from None
                if self._refresh(lease):
                    return lease
            granted, _ = self._call("lease/grant", {"TTL": ttl, "ID": 0})
            lease = int(granted["ID"])
            value = json.dumps({"lease": str(lease), "ttl": ttl})
            txn = {
                "compare": [
                    {"key": host_key, "result": "EQUAL", "target": "MOD", "mod_revision": seen}
                ],
                "success": [
                    {"request_put": {"key": host_key, "value": _b64(value), "lease": lease}}
                ],
            }
            result, _ = self._txn(txn)
            if result.get("succeeded"):
                return lease
            # Another process of this host won the race: use its lease, drop ours.
            self._call("kv/lease/revoke", {"ID": lease})
        raise StoreError(f"could not settle the etcd lease of host {_q(self._config.host)}")

    def _start_keepalive(self) -> None:
        if not self._config.keepalive or self._keepalive is not None:
            return
        self._keepalive = threading.Thread(
            target=self._keep_alive, name="mcslabel-etcd-keepalive", daemon=True
        )
        self._keepalive.start()

    def _keep_alive(self) -> None:
        ttl = self._config.lease_ttl
        assert ttl is not None
        # A separate connection: a request hanging on the caller's thread must not starve this.
        members = _Members(self._config)
        try:
            while not self._stop.wait(ttl / 3):
                lease = self._lease
                if lease is None:
                    continue
                try:
                    reply, _ = members.call("lease/keepalive", {"ID": lease})
                except (StoreError, _Refused):
                    continue  # the next write re-checks and re-grants if needed
                if int(reply.get("result", {}).get("TTL", -1)) > 0:
                    self._lease_refreshed = time.monotonic()
                else:
                    with self._lease_lock:
                        if self._lease == lease:
                            self._lease = None
        finally:
            members.close()

    def _with_lease(self, allocation: Allocation, write: Any) -> Any:
        """Run ``write(lease)``; if the host lease vanished under it, settle a new one, retry."""
        for _ in range(3):
            lease = self._lease_for(allocation)
            try:
                return write(lease)
            except _LeaseLost:
                with self._lease_lock:
                    if self._lease == lease:
                        self._lease = None
        raise StoreError("the etcd host lease keeps expiring; is the clock or the cluster sick?")

    def _generation_of(self, reply: Mapping[str, Any]) -> int:
        kvs = _kvs(reply)
        return int(kvs[0]["mod_revision"]) if kvs else 0

    def _range(self, prefix: str, **extra: int) -> dict[str, Any]:
        return {
            "request_range": {"key": _b64(prefix), "range_end": _b64(_range_end(prefix)), **extra}
        }

    def _get_op(self, key: str) -> dict[str, Any]:
        return {"request_range": {"key": _b64(key)}}

    def _absent(self, key: str) -> dict[str, Any]:
        return {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}

    def _at(self, key: str, revision: int) -> dict[str, Any]:
        return {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}

    @contextlib.contextmanager
    def _unconfirmed_on_timeout(self, allocation: Allocation, value: str) -> Iterator[None]:
        """Remember an insert whose outcome is unknown, so it can be withdrawn later."""
        try:
            yield
        except StoreOutcomeUnknown as exc:
            self._unconfirmed.append((allocation, value))
            raise StoreOutcomeUnknown(
                f"{exc}; the allocation of {allocation.level} for {', '.join(allocation.owners)}"
                " may still be committed by etcd: this store withdraws it on its next successful"
                " call, or release it by hand once the cluster is back"
            ) from None

    def _withdraw_unconfirmed(self) -> None:
        """Delete records of inserts that were reported failed but may have committed.

        Only a record still holding exactly the value that was sent is deleted,
        so a level another host allocated meanwhile is never touched.
        """
        self._withdrawing = True
        try:
            while self._unconfirmed:
                allocation, value = self._unconfirmed[0]
                level_key = self._levels + allocation.key
                ops = self._delete_ops(allocation)
                same = {
                    "key": _b64(level_key),
                    "result": "EQUAL",
                    "target": "VALUE",
                    "value": _b64(value),
                }
                self._txn({"compare": [same], "success": ops})
                self._unconfirmed.pop(0)
        finally:
            self._withdrawing = False

    def _delete_ops(self, record: Allocation) -> list[dict[str, Any]]:
        """Delete a record (and its name), leaving a tombstone for the change feed."""
        ops: list[dict[str, Any]] = [
            {"request_delete_range": {"key": _b64(self._levels + record.key)}},
            {
                "request_put": {
                    "key": _b64(self._tombstones + record.key),
                    "value": _b64(record.key),
                }
            },
        ]
        if record.name is not None:
            ops.append({"request_delete_range": {"key": _b64(self._names + record.name)}})
        return ops


__all__ = ["_EtcdClient"]
