"""Where and how to reach the cluster: :class:`EtcdConfig` and :func:`parse_url`.

Owns the ``etcd[s]://`` URL grammar, its options and their bounds; every bad
URL is an :class:`~mcslabel.errors.InvalidInput`. No I/O but reading a
``password_file``. May import: the model.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import attrs

from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q

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
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
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
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidInput(
            f"bad etcd store options in {_q(url)}: write them as ?name=value&name=value"
        ) from None
    for name, value in pairs:
        if name not in _OPTIONS:
            raise InvalidInput(f"unknown etcd store option {_q(name)} in {_q(url)}")
        options[name] = value
    user = unquote(userinfo.partition(":")[0]) or options.get("user") or None
    password = unquote(userinfo.partition(":")[2]) or None
    if "password_file" in options:
        try:
            password = Path(options["password_file"]).read_text().strip()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, not UTF-8
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


__all__ = [
    "CUSTOM_LOCK_TTL",
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "MIN_LEASE_TTL",
    "PASSWORD_ENV",
    "EtcdConfig",
    "parse_url",
]
