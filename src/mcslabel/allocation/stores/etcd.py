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

import base64
import bisect
import contextlib
import importlib
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import attrs

from mcslabel.allocation.stores.base import (
    Allocation,
    Changes,
    CustomCheck,
    InsertOutcome,
    InsertResult,
    Snapshot,
    record_key,
)
from mcslabel.errors import (
    InvalidInput,
    StoreCorrupt,
    StoreError,
    StoreOutcomeUnknown,
    StoreUnavailable,
)
from mcslabel.errors import show_input as _q
from mcslabel.level import Level

#: Seconds an operation keeps trying members before raising StoreUnavailable.
DEFAULT_TIMEOUT = 5.0
#: etcd's client port when an endpoint names none.
DEFAULT_PORT = 2379
#: Key prefix when the URL has no path.
DEFAULT_PREFIX = "/mcslabel"
#: Environment variable with the password for ``user=`` (keeps it out of URLs and ``ps``).
PASSWORD_ENV = "MCSLABEL_ETCD_PASSWORD"
#: Shortest host-lease TTL accepted: the keepalive thread refreshes every TTL/3 seconds.
MIN_LEASE_TTL = 2
#: TTL of the lock a custom reservation holds while it checks dominance.
CUSTOM_LOCK_TTL = 10

_OPTIONS = frozenset(
    {"timeout", "lease_ttl", "host", "keepalive", "ca", "cert", "key", "user", "password_file"}
)
# gRPC status codes etcd returns in its gateway errors.
_NOT_FOUND = 5
_UNAUTHENTICATED = 16


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _range_end(prefix: str) -> str:
    """The first key after every key that starts with ``prefix`` (prefixes here are ASCII)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _parse_endpoint(text: str) -> tuple[str, int]:
    host, port = text, DEFAULT_PORT
    if text.startswith("["):  # [v6]:port
        inner, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InvalidInput(f"bad etcd endpoint {_q(text)}")
        host, port_text = inner, rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if ":" in port_text:
            raise InvalidInput(f"bad etcd endpoint {_q(text)}: write IPv6 hosts as [addr]:port")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidInput(f"bad port in etcd endpoint {_q(text)}")
        port = int(port_text)
    if not host or any(ch.isspace() or ch in "/?#@" for ch in host):
        raise InvalidInput(f"bad host in etcd endpoint {_q(text)}")
    return host, port


def _validate_endpoints(
    instance: EtcdConfig, attribute: attrs.Attribute[Any], value: tuple[tuple[str, int], ...]
) -> None:
    if not value:
        raise InvalidInput("an etcd store needs at least one endpoint (etcd://host:port/prefix)")


def _validate_prefix(instance: EtcdConfig, attribute: attrs.Attribute[str], value: str) -> None:
    if (
        not value.startswith("/")
        or value.endswith("/")
        or len(value) > 200
        or not value.isascii()
        or not value.isprintable()
        or any(ch.isspace() for ch in value)
        or "//" in value
    ):
        raise InvalidInput(f"bad etcd key prefix {_q(value)}: use printable ASCII like /mcslabel")


def _validate_positive(instance: EtcdConfig, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0 or value > 3600:
        raise InvalidInput(f"etcd {attribute.name} must be in (0, 3600] seconds, got {_q(value)}")


def _validate_ttl(instance: EtcdConfig, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not MIN_LEASE_TTL <= value <= 86400:
        raise InvalidInput(
            f"etcd lease_ttl must be {MIN_LEASE_TTL}..86400 seconds, got {_q(value)}"
        )


@attrs.frozen
class EtcdConfig:
    """Where and how to reach the cluster; :meth:`EtcdStore.from_url` builds it from a URL."""

    endpoints: tuple[tuple[str, int], ...] = attrs.field(validator=_validate_endpoints)
    prefix: str = attrs.field(default=DEFAULT_PREFIX, validator=_validate_prefix)
    #: https (``etcds://``); ``ca`` verifies the server, ``cert``/``key`` authenticate us.
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    #: etcd user (RBAC); the password comes from ``password`` (file or env in URLs).
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, validator=_validate_positive)
    #: Seconds; None = records are not lease-bound (they stay until released).
    lease_ttl: int | None = attrs.field(default=None, validator=_validate_ttl)
    #: Lease owner name: this host's records share one lease.
    host: str = attrs.field(factory=socket.gethostname)
    #: Run a keepalive thread for the host lease while the store is open.
    keepalive: bool = True

    def url(self) -> str:
        """The URL that reopens this store (without a password)."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.endpoints)
        options: dict[str, object] = {"timeout": self.timeout}
        if self.lease_ttl is not None:
            options.update(lease_ttl=self.lease_ttl, host=self.host)
            if not self.keepalive:
                options["keepalive"] = 0
        for name in ("ca", "cert", "key", "user"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        query = "&".join(f"{k}={quote(str(v), safe='/:')}" for k, v in options.items())
        return f"{'etcds' if self.tls else 'etcd'}://{hosts}{self.prefix}?{query}"


def parse_url(url: str) -> EtcdConfig:
    """``etcd[s]://[user@]h1:2379,h2:2379/prefix?option=value&...`` -> :class:`EtcdConfig`.

    Options: ``timeout`` (s), ``lease_ttl`` (s), ``host``, ``keepalive`` (0/1), ``ca``, ``cert``,
    ``key`` (PEM paths; any of them implies TLS), ``user``, ``password_file``. The password is
    read from ``password_file``, else ``$MCSLABEL_ETCD_PASSWORD``, else ``user:password@``.
    """
    if not isinstance(url, str):
        raise InvalidInput(f"etcd store URL must be a string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("etcd", "etcds"):
        raise InvalidInput(f"not an etcd store URL: {_q(url)}")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts, userinfo = netloc, ""
    endpoints = tuple(_parse_endpoint(h.strip()) for h in hosts.split(",") if h.strip())
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name not in _OPTIONS:
            raise InvalidInput(f"unknown etcd store option {_q(name)} in {_q(url)}")
        options[name] = value
    user = unquote(userinfo.partition(":")[0]) or options.get("user") or None
    password = unquote(userinfo.partition(":")[2]) or None
    if "password_file" in options:
        try:
            password = Path(options["password_file"]).read_text().strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read etcd password_file: {exc}") from None
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    if password is not None and user is None:
        raise InvalidInput("an etcd password was given without a user")
    try:
        timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        ttl_text = options.get("lease_ttl", "")
        lease_ttl = int(ttl_text) if ttl_text else None
    except ValueError:
        raise InvalidInput(f"timeout and lease_ttl must be numbers in {_q(url)}") from None
    keepalive = options.get("keepalive", "1")
    if keepalive not in ("0", "1"):
        raise InvalidInput(f"etcd keepalive must be 0 or 1, got {_q(keepalive)}")
    tls_files = {name: options.get(name) or None for name in ("ca", "cert", "key")}
    if (tls_files["cert"] is None) != (tls_files["key"] is None):
        raise InvalidInput("etcd client TLS needs both cert= and key=")
    return EtcdConfig(
        endpoints=endpoints,
        prefix="/" + unquote(path).strip("/") if slash and path.strip("/") else DEFAULT_PREFIX,
        tls=scheme == "etcds" or any(tls_files.values()),
        user=user,
        password=password,
        timeout=timeout,
        lease_ttl=lease_ttl,
        host=options.get("host") or socket.gethostname(),
        keepalive=keepalive == "1",
        **tls_files,
    )


def _connection_trouble(message: str) -> str | None:
    """A short reason when ``requests`` could not reach a member at all; None otherwise."""
    if "ConnectionPool(" not in message:
        return None
    for needle, reason in (
        ("refused", "connection refused"),
        ("resolve", "cannot resolve host"),
        ("Name or service not known", "cannot resolve host"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS: server certificate not trusted (ca=)"),
        ("SSL", "TLS handshake failed"),
        ("unreachable", "network unreachable"),
    ):
        if needle in message:
            return reason
    return "cannot connect"


class _Refused(Exception):
    """etcd answered with an error that another member would repeat (auth, bad request...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Members:
    """One cluster reached through any member's gateway; sticks to a member until it fails.

    ``etcd3gw`` talks to one host, so failover lives here: a request that cannot reach a
    member, times out, or meets "no leader" goes to the next, round after round, until the
    deadline. A request may have been applied by a member that then timed out; ``call``
    reports that (``ambiguous``) so the store can check its own write instead of guessing.
    """

    def __init__(self, config: EtcdConfig) -> None:
        try:
            self._etcd3gw = importlib.import_module("etcd3gw")
        except ImportError as exc:
            raise StoreError(
                f"the etcd store needs etcd3gw (pip install 'mcslabel[etcd]'): {exc}"
            ) from None
        # etcd3gw maps only timeouts and connection errors; other requests errors escape it.
        self._requests_error = importlib.import_module("requests").exceptions.RequestException
        self._config = config
        protocol = "https" if config.tls else "http"
        self._clients = [
            self._etcd3gw.client(
                host=host,
                port=port,
                protocol=protocol,
                ca_cert=config.ca,
                cert_cert=config.cert,
                cert_key=config.key,
                api_path="/v3/",
            )
            for host, port in config.endpoints
        ]
        # Per request: requests lets $REQUESTS_CA_BUNDLE override a session's CA, not this.
        self.options: dict[str, Any] = {"verify": config.ca} if config.ca else {}
        # Spread hosts over members instead of all piling onto the first one.
        self._current = random.randrange(len(self._clients))
        self._token: str | None = None

    @property
    def clients(self) -> list[Any]:
        return self._clients

    @property
    def current(self) -> int:
        """The member the last request succeeded on."""
        return self._current

    def endpoint(self, index: int) -> str:
        host, port = self._config.endpoints[index]
        return f"{host}:{port}"

    def ensure_token(self, client: Any) -> None:
        """Authenticate (through ``client``) when a user is configured and no token is held."""
        if self._config.user is not None and self._token is None:
            self._authenticate(client)

    def forget_token(self) -> None:
        if self._config.user is not None:
            self._token = None

    def _authenticate(self, client: Any) -> None:
        config = self._config
        body = {"name": config.user, "password": config.password or ""}
        try:
            reply = client.post(client.get_url("/auth/authenticate"), json=body, **self.options)
        except self._etcd3gw.exceptions.Etcd3Exception as exc:
            code, message = self._error_of(exc)
            if code in (3, 9, _UNAUTHENTICATED):  # bad name/password, auth not enabled...
                raise StoreError(f"etcd refused user {_q(config.user)}: {message}") from None
            raise
        self._token = str(reply["token"])
        for each in self._clients:
            each.session.headers["Authorization"] = self._token

    @staticmethod
    def _error_of(exc: Exception) -> tuple[int, str]:
        detail = getattr(exc, "detail_text", None) or ""
        try:
            data = json.loads(detail)
            return int(data.get("code", -1)), str(data.get("message") or data.get("error"))
        except (ValueError, TypeError, AttributeError):
            return -1, detail or str(exc)

    def call(self, path: str, payload: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST ``payload`` to ``/v3/<path>`` on some member; (reply, ambiguous)."""
        errors = self._etcd3gw.exceptions
        timeout = self._config.timeout
        deadline = time.monotonic() + timeout
        failures: dict[str, str] = {}
        ambiguous = False
        reauthenticated = False
        unreachable_rounds = 0
        while True:
            unreachable = 0
            for step in range(len(self._clients)):
                index = (self._current + step) % len(self._clients)
                client = self._clients[index]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Leave time for another member when this one hangs.
                client.timeout = min(remaining, max(0.5, timeout / 2))
                try:
                    self.ensure_token(client)
                    reply: dict[str, Any] = client.post(
                        client.get_url(path), json=payload, **self.options
                    )
                except errors.ConnectionTimeoutError:
                    ambiguous = True
                    failures[self.endpoint(index)] = f"no reply within {client.timeout:.1f}s"
                    continue
                except errors.ConnectionFailedError as exc:
                    _, message = self._error_of(exc)
                    reason = _connection_trouble(message)
                    if reason is None:  # etcd's own 503: "no leader", "request timed out"...
                        ambiguous = True
                    else:
                        unreachable += 1
                    failures[self.endpoint(index)] = reason or message[:120]
                    continue
                except errors.InternalServerError as exc:
                    ambiguous = True
                    failures[self.endpoint(index)] = self._error_of(exc)[1][:120]
                    continue
                except errors.Etcd3Exception as exc:
                    code, message = self._error_of(exc)
                    if code == _UNAUTHENTICATED and self._config.user and not reauthenticated:
                        reauthenticated = True  # token expired (simple tokens do): once more
                        self._token = None
                        continue
                    raise _Refused(code, message) from None
                except (ValueError, KeyError, TypeError) as exc:
                    # A 200 that is not JSON (or a bad auth reply): something else listens there.
                    unreachable += 1
                    failures[self.endpoint(index)] = f"not an etcd v3 gateway ({exc})"[:120]
                    continue
                except self._requests_error as exc:
                    ambiguous = True  # sent, then the reply broke: it may have been applied
                    failures[self.endpoint(index)] = str(exc)[:120]
                    continue
                if not isinstance(reply, dict) or not any(
                    isinstance(reply.get(part), dict) for part in ("header", "result", "error")
                ):
                    # Every etcd v3 reply carries a header (a streamed one: a result or error).
                    unreachable += 1
                    failures[self.endpoint(index)] = "not an etcd v3 gateway (reply has no header)"
                    continue
                self._current = index
                return reply, ambiguous
            remaining = deadline - time.monotonic()
            # Nothing listens on any member (not even one in an election): say so at once.
            unreachable_rounds = unreachable_rounds + 1 if unreachable == len(self._clients) else 0
            if remaining <= 0 or unreachable_rounds >= 3:
                detail = "; ".join(f"{ep}: {msg}" for ep, msg in failures.items())
                message = (
                    f"no etcd member answered within {timeout:g}s ({detail or 'no reply'})"
                    if remaining <= 0
                    else f"no etcd member is reachable ({detail})"
                )
                if ambiguous:
                    # A member took the request and timed out: it may still commit.
                    raise StoreOutcomeUnknown(message)
                raise StoreUnavailable(message)
            time.sleep(min(0.1, remaining))  # e.g. a leader election in progress

    def health(self) -> list[tuple[str, bool]]:
        """(endpoint, answers) per member, asking each one directly."""
        out: list[tuple[str, bool]] = []
        for index, client in enumerate(self._clients):
            client.timeout = min(2.0, self._config.timeout)
            try:
                client.post(client.get_url("/maintenance/status"), json={}, **self.options)
            except self._etcd3gw.exceptions.Etcd3Exception:
                out.append((self.endpoint(index), False))
            else:
                out.append((self.endpoint(index), True))
        return out

    def close(self) -> None:
        for client in self._clients:
            client.session.close()


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


def _kvs(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    kvs: list[dict[str, Any]] = reply.get("kvs", [])
    return kvs


def _responses(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-operation replies of a txn, unwrapped (``{"response_range": x}`` -> x)."""
    out: list[dict[str, Any]] = []
    for item in reply.get("responses", []):
        out.extend(item.values() if item else [{}])
    return out


def _revision(reply: Mapping[str, Any]) -> int:
    return int(reply["header"]["revision"])


class EtcdStore:
    """A :class:`~mcslabel.Store` on an etcd v3 cluster (see the module docs).

    Open it with :func:`mcslabel.allocation.stores.open_store` or :meth:`from_url`. Thread-safe.
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

    @classmethod
    def from_url(cls, url: str) -> EtcdStore:
        """Open ``etcd[s]://h1:2379,h2:2379/prefix?options`` (see :func:`parse_url`)."""
        return cls(parse_url(url))

    @property
    def url(self) -> str:
        return self._config.url()

    @property
    def config(self) -> EtcdConfig:
        return self._config

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

    # --- Store protocol ---------------------------------------------------------

    def _generation_of(self, reply: Mapping[str, Any]) -> int:
        kvs = _kvs(reply)
        return int(kvs[0]["mod_revision"]) if kvs else 0

    def _range(self, prefix: str, **extra: int) -> dict[str, Any]:
        return {
            "request_range": {"key": _b64(prefix), "range_end": _b64(_range_end(prefix)), **extra}
        }

    def _get_op(self, key: str) -> dict[str, Any]:
        return {"request_range": {"key": _b64(key)}}

    def snapshot(self) -> Snapshot:
        reply, _ = self._txn(
            {"success": [self._range(self._levels), self._get_op(self._generation_key)]}
        )
        levels, generation_read = _responses(reply)
        revision, generation = _revision(reply), self._generation_of(generation_read)
        feed = self._feed
        if feed is None or feed.broken:
            # Follow the prefix from here on, so changes() needs no scan.
            if feed is not None:
                feed.close()
            self._feed = _ChangeFeed(
                self._config, self._config.prefix + "/", revision + 1, generation
            )
        return Snapshot(
            revision=revision,
            generation=generation,
            allocations=tuple(self._record(kv) for kv in _kvs(levels)),
        )

    def changes(self, since: int) -> Changes | None:
        feed = self._feed
        if feed is not None and feed.broken:
            return None  # compacted past the feed: the caller takes a snapshot
        known = (
            None
            if feed is None or self._conflicted
            else feed.since(since, at_least=self._last_write)
        )
        if known is not None:
            revision, generation, latest = known
            changed: dict[str, Allocation | None] = {}
            for key, kv in latest.items():
                if key.startswith(self._levels):
                    changed[key[len(self._levels) :]] = None if kv is None else self._record(kv)
            return Changes(revision, generation, changed)
        self._conflicted = False
        return self._changes_by_range(since)

    def _changes_by_range(self, since: int) -> Changes:
        """The exact answer from a range read: etcd reads the prefix to filter it."""
        # Compaction cannot make a range read of current state fail. Deletions by lease
        # expiry leave no tombstone; the feed or the next snapshot reports them (a missed
        # deletion only makes the allocator skip a free level, never hand out a held one).
        after = {"min_mod_revision": since + 1}
        reply, _ = self._txn(
            {
                "success": [
                    self._range(self._levels, **after),
                    self._range(self._tombstones, **after),
                    self._get_op(self._generation_key),
                ]
            }
        )
        levels, tombstones, generation = _responses(reply)
        changed: dict[str, Allocation | None] = {
            _unb64(kv["key"])[len(self._tombstones) :]: None for kv in _kvs(tombstones)
        }
        for kv in _kvs(levels):
            record = self._record(kv)
            changed[record.key] = record
        return Changes(_revision(reply), self._generation_of(generation), changed)

    def get(self, level: Level, *, in_use: bool = False) -> Allocation | None:
        key = self._levels + record_key(level, in_use=in_use)
        reply, _ = self._call("kv/range", {"key": _b64(key)})
        kvs = _kvs(reply)
        return self._record(kvs[0]) if kvs else None

    def _absent(self, key: str) -> dict[str, Any]:
        return {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}

    def _at(self, key: str, revision: int) -> dict[str, Any]:
        return {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}

    def _put_record(self, allocation: Allocation, value: str, lease: int) -> list[dict[str, Any]]:
        level_key = self._levels + allocation.key
        ops: list[dict[str, Any]] = [
            {"request_put": {"key": _b64(level_key), "value": _b64(value), "lease": lease}},
            {"request_delete_range": {"key": _b64(self._tombstones + allocation.key)}},
        ]
        if allocation.name is not None:
            name_put = {"key": _b64(self._names + allocation.name), "value": _b64(allocation.key)}
            ops.append({"request_put": {**name_put, "lease": lease}})
        return ops

    def _bump_generation(self) -> dict[str, Any]:
        key, value = _b64(self._generation_key), _b64(uuid.uuid4().hex)
        return {"request_put": {"key": key, "value": value}}

    def _outcome(
        self, allocation: Allocation, value: str, reply: Mapping[str, Any], ambiguous: bool
    ) -> InsertResult | None:
        """INSERTED, KEY_HELD or NAME_HELD from a txn's failure reads; None if neither."""
        if reply.get("succeeded"):
            return InsertResult(InsertOutcome.INSERTED, _revision(reply))
        level_read, name_read = _responses(reply)[:2]
        held = _kvs(level_read)
        if held:
            # A timed-out attempt that in fact committed: the key holds our own write.
            if ambiguous and _unb64(held[0].get("value", "")) == value:
                return InsertResult(InsertOutcome.INSERTED, int(held[0]["mod_revision"]))
            return InsertResult.refused(InsertOutcome.KEY_HELD)
        if allocation.name is not None and _kvs(name_read):
            return InsertResult.refused(InsertOutcome.NAME_HELD)
        return None

    def _name_compares(self, allocation: Allocation) -> list[dict[str, Any]]:
        return [] if allocation.name is None else [self._absent(self._names + allocation.name)]

    def _name_read(self, allocation: Allocation) -> dict[str, Any]:
        # Read the level key again when there is no name, keeping the reply shape fixed.
        name = allocation.name
        return self._get_op(self._levels + allocation.key if name is None else self._names + name)

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

    def insert(self, allocation: Allocation, *, generation: int) -> InsertResult:
        value = self._value(allocation)
        with self._unconfirmed_on_timeout(allocation, value):
            return self._insert(allocation, value, generation)

    def _insert(self, allocation: Allocation, value: str, generation: int) -> InsertResult:
        level_key = self._levels + allocation.key

        def write(lease: int) -> InsertResult:
            compares = [
                self._absent(level_key),
                *self._name_compares(allocation),
                self._at(self._generation_key, generation),
                self._absent(self._lock_key),
            ]
            reply, ambiguous = self._txn(
                {
                    "compare": compares,
                    "success": self._put_record(allocation, value, lease),
                    "failure": [self._get_op(level_key), self._name_read(allocation)],
                }
            )
            result = self._outcome(allocation, value, reply, ambiguous)
            if result is None or not result.inserted:
                self._conflicted = True
            return result or InsertResult.refused(InsertOutcome.GENERATION_MOVED)

        result: InsertResult = self._with_lease(allocation, write)
        return result

    def insert_custom(self, allocation: Allocation, check: CustomCheck) -> InsertResult:
        # Check first without a write, so a refusal moves nothing (taking the lock moves the
        # generation, which sends every other allocator to resync).
        before = self.snapshot()
        check(before.allocations)
        lock_lease, lock_revision = self._acquire_custom_lock()
        committed = False
        try:
            # No pair insert commits while the lock is held: if any record appeared or
            # changed since that check, check again against everything held now.
            moved = self._changes_by_range(before.revision).changed
            if any(record is not None for record in moved.values()):
                check(self.snapshot().allocations)
            value = self._value(allocation)
            level_key = self._levels + allocation.key

            def write(lease: int) -> InsertResult:
                reply, ambiguous = self._txn(
                    {
                        "compare": [
                            self._absent(level_key),
                            *self._name_compares(allocation),
                            self._at(self._lock_key, lock_revision),
                        ],
                        "success": [
                            *self._put_record(allocation, value, lease),
                            {"request_delete_range": {"key": _b64(self._lock_key)}},
                            self._bump_generation(),
                        ],
                        "failure": [
                            self._get_op(level_key),
                            self._name_read(allocation),
                            self._get_op(self._lock_key),
                        ],
                    }
                )
                outcome = self._outcome(allocation, value, reply, ambiguous)
                if outcome is None:
                    raise StoreError(
                        "the custom-reservation lock expired before the reservation was stored;"
                        " nothing was written, try again"
                    )
                return outcome

            with self._unconfirmed_on_timeout(allocation, value):
                result: InsertResult = self._with_lease(allocation, write)
            committed = result.inserted
            return result
        finally:
            if not committed:
                self._release_custom_lock(lock_revision)
            # Best effort: otherwise it expires on its own within CUSTOM_LOCK_TTL.
            with contextlib.suppress(StoreError):
                self._call("kv/lease/revoke", {"ID": lock_lease})

    def _acquire_custom_lock(self) -> tuple[int, int]:
        """Take the custom lock (bumping the generation); (lock lease, lock revision).

        Waits for another reserver's lock; a crashed one's lock expires with its lease.
        """
        granted, _ = self._call("lease/grant", {"TTL": CUSTOM_LOCK_TTL, "ID": 0})
        lease = int(granted["ID"])
        deadline = time.monotonic() + self._config.timeout + CUSTOM_LOCK_TTL
        while True:
            lock_put = {"key": _b64(self._lock_key), "value": _b64(self._config.host)}
            reply, ambiguous = self._txn(
                {
                    "compare": [self._absent(self._lock_key)],
                    "success": [
                        {"request_put": {**lock_put, "lease": lease}},
                        self._bump_generation(),
                    ],
                    "failure": [self._get_op(self._lock_key)],
                }
            )
            if reply.get("succeeded"):
                return lease, _revision(reply)
            holder = _kvs(_responses(reply)[0])
            if ambiguous and holder and holder[0].get("lease") == str(lease):
                return lease, int(holder[0]["mod_revision"])
            if time.monotonic() > deadline:
                self._call("kv/lease/revoke", {"ID": lease})
                raise StoreUnavailable("another host holds the etcd custom-reservation lock")
            time.sleep(0.05)

    def _release_custom_lock(self, lock_revision: int) -> None:
        # Best effort: the lock's lease is revoked next, or expires.
        with contextlib.suppress(StoreError):
            self._txn(
                {
                    "compare": [self._at(self._lock_key, lock_revision)],
                    "success": [
                        {"request_delete_range": {"key": _b64(self._lock_key)}},
                        self._bump_generation(),
                    ],
                }
            )

    def replace(self, current: Allocation, new: Allocation) -> bool:
        if new.level != current.level:
            raise InvalidInput(f"replace cannot change level {current.level} to {new.level}")
        level_key = self._levels + current.key
        value = self._value(new)
        for _ in range(3):
            reply, _ = self._txn({"success": [self._get_op(level_key), self._name_read(new)]})
            level_read, name_read = _responses(reply)
            stored = _kvs(level_read)
            if not stored or int(stored[0]["mod_revision"]) != current.revision:
                return False
            compares = [self._at(level_key, current.revision)]
            if new.name is not None:
                names = _kvs(name_read)
                if names and _unb64(names[0].get("value", "")) != current.key:
                    return False  # the new name belongs to another level
                seen = int(names[0]["mod_revision"]) if names else 0
                compares.append(self._at(self._names + new.name, seen))
            ops = self._put_record(new, value, 0)
            # Keep the record's lease (it may be another host's); persistent records drop it.
            kept = 0 if new.persistent else int(stored[0].get("lease", 0))
            if not new.persistent and kept == 0:
                kept = self._lease_for(new)
            for op in ops:
                if "request_put" in op:
                    op["request_put"]["lease"] = kept
            if current.name is not None and current.name != new.name:
                ops.append({"request_delete_range": {"key": _b64(self._names + current.name)}})
            try:
                result, ambiguous = self._txn(
                    {"compare": compares, "success": ops, "failure": [self._get_op(level_key)]}
                )
            except _LeaseLost:
                continue  # the record's lease expired meanwhile: re-read
            if result.get("succeeded"):
                return True
            after = _kvs(_responses(result)[0])
            return bool(ambiguous and after and _unb64(after[0].get("value", "")) == value)
        return False

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

    def delete(self, current: Allocation) -> bool:
        level_key = self._levels + current.key
        ops = self._delete_ops(current)
        reply, ambiguous = self._txn(
            {
                "compare": [self._at(level_key, current.revision)],
                "success": ops,
                "failure": [self._get_op(level_key)],
            }
        )
        if reply.get("succeeded"):
            return True
        # After a timed-out attempt, a vanished record is most likely our own delete.
        return ambiguous and not _kvs(_responses(reply)[0])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._feed is not None:
            self._feed.close()
        if self._keepalive is not None:
            self._keepalive.join(timeout=self._config.timeout)
        self._members.close()

    # --- extras beyond the Store protocol ----------------------------------------

    def host_lease(self) -> int | None:
        """This host's lease id (granting or joining it), or None without ``lease_ttl``."""
        if self._config.lease_ttl is None:
            return None
        return self._host_lease()

    def members_status(self) -> Sequence[tuple[str, bool]]:
        """(endpoint, answers) for each configured member: a health view for status output."""
        return self._members.health()


class _LeaseLost(StoreError):
    """A write named a lease that etcd no longer has (expired or revoked)."""


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
