"""Reaching the cluster through any member's gateway, failing over between members.

Owns: one HTTP client per member, authentication, and :meth:`_Members.call`,
which retries the next member on connection errors, timeouts and "no
leader" until the deadline, and says when a request may have been applied
(``ambiguous``). May import: the model and this package's config.
"""

from __future__ import annotations

import importlib
import json
import random
import time
from collections.abc import Mapping
from typing import Any

from mcslabel.allocation.stores.etcd._wire import (
    _UNAUTHENTICATED,
    _Refused,
)
from mcslabel.allocation.stores.etcd.config import EtcdConfig
from mcslabel.errors import (
    StoreError,
    StoreOutcomeUnknown,
    StoreUnavailable,
)
from mcslabel.errors import show_input as _q


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


__all__ = ["_Members"]
