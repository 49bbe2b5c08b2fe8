"""Kubernetes: the ``securityContext`` that runs a pod at an allocated level.

A pod (or one container) runs at a level when its ``securityContext`` carries
``seLinuxOptions``; CRI-O and containerd hand that level to the container and,
with KEP-1710 (SELinuxMountReadWriteOncePod), mount its volumes with
``-o context=...`` at that level instead of relabeling them.

:func:`selinux_options` builds the object, :func:`to_yaml` writes it without
a YAML library, and :func:`namespace_allocation_name` gives the deterministic
allocation name ``ns/<namespace>`` so that every node asking for a namespace's
level (with the etcd store) gets the same one. Field names and order are the
Kubernetes API's (``V1SELinuxOptions``: user, role, type, level).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from mcslabel.context import Context
from mcslabel.errors import InvalidInput, InvalidLevel
from mcslabel.errors import show_input as _q
from mcslabel.level import Level, LevelRange

#: The container domain container-selinux ships (``process`` in lxc_contexts).
DEFAULT_PROCESS_CONTEXT = Context("system_u", "system_r", "container_t")

# A namespace name is an RFC 1123 DNS label (Kubernetes validates exactly this).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NAMESPACE_PREFIX = "ns/"


def namespace_allocation_name(namespace: str) -> str:
    """``ns/<namespace>``: the allocation name that keeps a namespace's level on every node.

    Raises :class:`~mcslabel.errors.InvalidInput` unless ``namespace`` is a
    valid Kubernetes namespace name (an RFC 1123 label, at most 63 characters).
    """
    if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise InvalidInput(
            f"namespace {_q(namespace)} is not a Kubernetes namespace name"
            " (lowercase letters, digits and '-', at most 63, starting and ending alphanumeric)"
        )
    return _NAMESPACE_PREFIX + namespace


@attrs.frozen
class SELinuxOptions:
    """``seLinuxOptions`` of a pod or container ``securityContext``.

    ``user``/``role``/``type`` of ``None`` are left out, and the runtime fills
    them in from its own defaults (``level_only``). Only the level's low part
    matters for a pod; ranges are refused because Kubernetes passes the text
    through to the runtime, which runs the process at it verbatim.
    """

    level: Level
    user: str | None = DEFAULT_PROCESS_CONTEXT.user
    role: str | None = DEFAULT_PROCESS_CONTEXT.role
    type: str | None = DEFAULT_PROCESS_CONTEXT.type

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.level, Level):
            raise InvalidLevel(
                f"seLinuxOptions need a single level, not {type(self.level).__name__}"
            )
        # Context validates the identifiers; the level is already checked.
        Context(self.user or "u", self.role or "r", self.type or "t")

    @classmethod
    def for_level(
        cls,
        level: Level | str,
        *,
        process: Context | None = None,
        level_only: bool = False,
    ) -> SELinuxOptions:
        """Options for ``level``, user/role/type from ``process`` (lxc_contexts' entry)."""
        if isinstance(level, str):
            if "-" in level:
                raise InvalidLevel(f"{_q(level)} is a range; a pod runs at a single level")
            level = Level.parse(level)
        elif isinstance(level, LevelRange):
            raise InvalidLevel(f"{level} is a range; a pod runs at a single level")
        if level_only:
            return cls(level, None, None, None)
        base = process or DEFAULT_PROCESS_CONTEXT
        return cls(level, base.user, base.role, base.type)

    def to_json(self) -> dict[str, str]:
        """The API object, in the field order of ``V1SELinuxOptions``."""
        fields = {"user": self.user, "role": self.role, "type": self.type, "level": str(self.level)}
        return {k: v for k, v in fields.items() if v is not None}


def selinux_options(
    level: Level | str, *, process: Context | None = None, level_only: bool = False
) -> dict[str, Any]:
    """``{"seLinuxOptions": {...}}``: a pod or container ``securityContext`` for ``level``."""
    options = SELinuxOptions.for_level(level, process=process, level_only=level_only)
    return {"seLinuxOptions": options.to_json()}


# Words YAML 1.1 reads as booleans or null when plain (PyYAML follows 1.1).
_YAML_WORDS = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"])
_PLAIN_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar with everything but printable ASCII escaped."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quoted(value)
    raise InvalidInput(f"to_yaml: cannot write a {type(value).__name__}")


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidInput(f"to_yaml: keys must be strings, not {type(key).__name__}")
    plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS
    return key if plain else _quoted(key)


def _yaml_lines(value: object, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        lines: list[str] = []
        for key, item in value.items():
            head = f"{pad}{_key(key)}:"
            if isinstance(item, Mapping | list | tuple) and item:
                lines.append(head)
                lines.extend(_yaml_lines(item, indent + 1))
            else:
                lines.append(f"{head} {_inline(item)}")
        return lines
    if isinstance(value, list | tuple):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            nested = _yaml_lines(item, indent + 1)
            lines.append(f"{pad}- {nested[0].lstrip()}")
            lines.extend(nested[1:])
        return lines
    return [pad + _scalar(value)]


def _inline(value: object) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    return _scalar(value)


def to_yaml(data: Mapping[str, Any]) -> str:
    """Block-style YAML for JSON-like data (dicts, lists, strings, ints, bools, None).

    Strings are always double-quoted, so a level such as ``s0:c1,c2`` can
    never be read back as anything but a string.
    """
    return "\n".join(_yaml_lines(data, 0)) + "\n"


__all__ = [
    "DEFAULT_PROCESS_CONTEXT",
    "SELinuxOptions",
    "namespace_allocation_name",
    "selinux_options",
    "to_yaml",
]
