"""The change feed: a watch on the store's prefix, so changes() needs no scan.

May import: the model and this package's private modules.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import socket
import threading
from collections.abc import Mapping
from typing import Any

from mcslabel.allocation.stores.etcd._members import _Members
from mcslabel.allocation.stores.etcd._wire import (
    _b64,
    _range_end,
    _unb64,
)
from mcslabel.allocation.stores.etcd.config import EtcdConfig


class _ChangeFeed:
    """A watch on the store's prefix, kept in a background thread: changes() without a scan.

    etcd filters a ``min_mod_revision`` range by reading the whole prefix, so that read grows
    with the number of held levels. The watch stream delivers each change once (including
    deletions by lease expiry, which leave no tombstone). The feed is a hint that can only be
    late, never wrong: inserts are put-if-absent, and the store answers from an exact range
    read whenever the feed is behind the caller or a write met a conflict.
    """

    #: Seconds without a byte before the stream is presumed dead and reopened elsewhere.
    READ_TIMEOUT = 60.0
    #: Log entries kept; older history is answered by a range read.
    MAX_LOG = 100_000
    #: Seconds changes() waits for the feed to deliver this process's own last write.
    CATCH_UP_WAIT = 0.5

    def __init__(self, config: EtcdConfig, prefix: str, start: int, generation: int) -> None:
        self._config = config
        self._prefix = prefix
        self._lock = threading.Lock()
        self._caught_up = threading.Condition(self._lock)
        # The feed knows every change in (floor, seen]: the log holds (key, kv or None for a
        # deletion) in revision order, with the revisions in a parallel list for bisect.
        self._floor = start - 1
        self._seen = start - 1
        self._log_revisions: list[int] = []
        self._log: list[tuple[str, dict[str, Any] | None]] = []
        self._generation = generation
        self._generation_key = prefix + "generation"
        self.broken = False  # compacted past us: the caller must take a snapshot
        self._stop = threading.Event()
        self._response: Any = None
        self._members = _Members(config)
        self._thread = threading.Thread(target=self._run, name="mcslabel-etcd-watch", daemon=True)
        self._thread.start()

    def since(
        self, revision: int, *, at_least: int = 0
    ) -> tuple[int, int, dict[str, dict[str, Any] | None]] | None:
        """(revision, generation, key -> latest kv or None) after ``revision``; None if unknown.

        Waits briefly until the feed has caught up with ``at_least`` (the caller's own last
        write), so a process always sees its own writes.
        """
        with self._caught_up:
            if not self._caught_up.wait_for(
                lambda: self._seen >= at_least, timeout=self.CATCH_UP_WAIT
            ):
                return None
            if self.broken or revision < self._floor:
                return None
            # The caller may know more than the feed (its revision came from a range read):
            # what it knows arrives here later, and applying it twice is harmless.
            start = bisect.bisect_right(self._log_revisions, revision)
            return max(revision, self._seen), self._generation, dict(self._log[start:])

    def _apply(self, result: Mapping[str, Any]) -> None:
        events = result.get("events", [])
        with self._lock:
            for event in events:
                kv = event["kv"]
                key = _unb64(kv["key"])
                revision = int(kv["mod_revision"])
                deleted = event.get("type") == "DELETE"
                if key == self._generation_key:
                    self._generation = 0 if deleted else revision
                self._log_revisions.append(revision)
                self._log.append((key, None if deleted else kv))
                self._seen = max(self._seen, revision)
            self._caught_up.notify_all()
            if len(self._log) > self.MAX_LOG:
                cut = len(self._log) // 2
                self._floor = self._log_revisions[cut - 1]
                del self._log[:cut], self._log_revisions[:cut]

    def _run(self) -> None:
        members = self._members
        request: dict[str, dict[str, Any]] = {
            "create_request": {
                "key": _b64(self._prefix),
                "range_end": _b64(_range_end(self._prefix)),
            }
        }
        index = members.current
        while not self._stop.is_set():
            client = members.clients[index]
            request["create_request"]["start_revision"] = self._seen + 1
            try:
                members.ensure_token(client)
                self._response = client.session.post(
                    client.get_url("/watch"),
                    **members.options,
                    json=request,
                    stream=True,
                    timeout=(self._config.timeout, self.READ_TIMEOUT),
                )
                if self._response.status_code != 200:
                    members.forget_token()  # an expired token is the likely cause
                    raise OSError(f"watch refused: HTTP {self._response.status_code}")
                for line in self._response.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line.strip():
                        continue
                    result = json.loads(line).get("result", {})
                    if int(result.get("compact_revision", 0) or 0) > 0:
                        self.broken = True  # history we need is gone
                        return
                    if result.get("canceled"):
                        break
                    self._apply(result)
            except Exception:  # any failure: reopen on the next member, from where we were
                if self._stop.is_set():
                    return
            index = (index + 1) % len(members.clients)
            self._stop.wait(0.2)

    def close(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            # Unblock the reader: closing the response from here would wait for its read.
            with contextlib.suppress(Exception):
                sock = socket.fromfd(response.raw._fp.fileno(), socket.AF_INET, socket.SOCK_STREAM)
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._thread.join(timeout=2.0)
        self._members.close()


__all__ = ["_ChangeFeed"]
