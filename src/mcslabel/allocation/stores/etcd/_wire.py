"""Wire helpers for etcd's JSON gateway: base64 keys, reply unpacking, error kinds.

May import: the model.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from mcslabel.errors import StoreError

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


class _Refused(Exception):
    """etcd answered with an error that another member would repeat (auth, bad request...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _LeaseLost(StoreError):
    """A write named a lease that etcd no longer has (expired or revoked)."""


__all__ = [
    "_LeaseLost",
    "_Refused",
    "_b64",
    "_kvs",
    "_range_end",
    "_responses",
    "_revision",
    "_unb64",
]
