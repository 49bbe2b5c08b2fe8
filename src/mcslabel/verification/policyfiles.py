"""Finding a policy root's files without loading the policy (or ``attrs``).

:class:`~mcslabel.verification.policy.PolicyRoot` is the full interface;
this module is what it and the lean marker path of ``mcslabel relabel``
share: which policy root the host configures (:func:`installed_policy_type`,
:func:`policy_root_dir`) and, for the common shape of ``lxc_contexts``
only, the container file context (:func:`plain_file_context`).
May import: :mod:`mcslabel.errors`.
"""

from __future__ import annotations

import os

from mcslabel.errors import PolicyError

SELINUX_DIR = "/etc/selinux"

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WORD = _LETTERS | frozenset("0123456789_")


def installed_policy_type(selinux_dir: str | os.PathLike[str] = SELINUX_DIR) -> str:
    """``SELINUXTYPE`` from ``/etc/selinux/config`` (``targeted``, ``default``...)."""
    config = os.path.join(os.fspath(selinux_dir), "config")
    try:
        with open(config, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise PolicyError(f"cannot read {config}: {exc.strerror}; is a policy installed?") from exc
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "SELINUXTYPE" and value.strip():
            return value.strip().strip("\"'")
    raise PolicyError(f"{config} sets no SELINUXTYPE")


def policy_root_dir(
    policy_root: str | os.PathLike[str] | None = None,
    *,
    selinux_dir: str | os.PathLike[str] = SELINUX_DIR,
) -> str:
    """The directory of ``policy_root`` (default: the root of the policy
    ``selinux_dir``'s config names), as :meth:`PolicyRoot.coerce
    <mcslabel.verification.policy.PolicyRoot.coerce>` finds it;
    :class:`~mcslabel.errors.PolicyError` when it is not a directory."""
    if policy_root is None:
        path = os.path.join(os.fspath(selinux_dir), installed_policy_type(selinux_dir))
        if not os.path.isdir(path):
            raise PolicyError(f"configured policy root {path} does not exist")
        return path
    path = os.fspath(policy_root)
    if not os.path.isdir(path):
        raise PolicyError(f"policy root {path} is not a directory")
    return path


def plain_file_context(root_dir: str) -> str | None:
    """The ``file`` context of ``root_dir``'s ``lxc_contexts``, when the file has
    the plain shape every distribution ships (``key = "user:role:type:s0"``
    lines and ``#`` comments: a subset of what :meth:`ContainerContexts.parse
    <mcslabel.ContainerContexts.parse>` reads, with the same result); None
    for any other file, or one that cannot be read: then
    :meth:`PolicyRoot.container_contexts
    <mcslabel.verification.policy.PolicyRoot.container_contexts>` says what
    it holds, or what is wrong with it."""
    try:
        with open(os.path.join(root_dir, "contexts", "lxc_contexts"), "rb") as fh:
            text = fh.read().decode("ascii")
    except (OSError, UnicodeDecodeError):
        return None
    values: dict[str, str] = {}
    for raw in text.splitlines():
        if ";" in raw or "'" in raw:
            return None
        line, _, comment = raw.partition("#")
        if comment and line.count('"') % 2:
            return None  # a '#' inside quotes
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _identifier(key) or len(value) < 2:
            return None
        if value[0] != '"' or value[-1] != '"':
            return None
        if not _plain_context(value[1:-1]):
            return None
        values[key] = value[1:-1]
    if "process" not in values:
        return None
    return values.get("file")


def _identifier(text: str) -> bool:
    """``[A-Za-z][A-Za-z0-9_]*``: a subset of what checkpolicy takes for a name."""
    return bool(text) and text[0] in _LETTERS and _WORD.issuperset(text)


def _plain_context(text: str) -> bool:
    """``user:role:type`` or ``user:role:type:s0``, each name an :func:`_identifier`."""
    parts = text.split(":")
    if len(parts) == 4 and parts.pop() != "s0":
        return False
    return len(parts) == 3 and all(map(_identifier, parts))


__all__ = [
    "SELINUX_DIR",
    "installed_policy_type",
    "plain_file_context",
    "policy_root_dir",
]
