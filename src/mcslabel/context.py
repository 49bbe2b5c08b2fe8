"""SELinux security contexts and the container contexts of ``lxc_contexts``.

Pure model: parsing and formatting only. Reading files from a policy root is
:mod:`mcslabel.verification.policy`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

from mcslabel.errors import InvalidContext, InvalidLevel, PolicyError, show_input
from mcslabel.level import (
    DEFAULT_CATEGORIES,
    DEFAULT_SENSITIVITIES,
    Level,
    LevelRange,
    parse_level_or_range,
)

# Identifiers as checkpolicy accepts them for users, roles and types.
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")


def _ident(kind: str) -> Callable[[object, attrs.Attribute[str], str], None]:
    def check(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
        if not isinstance(value, str) or not _IDENT.fullmatch(value):
            raise InvalidContext(f"{kind} {show_input(value)} is not a valid SELinux identifier")

    return check


@attrs.frozen
class Context:
    """``user:role:type[:level-or-range]``."""

    user: str = attrs.field(validator=_ident("user"))
    role: str = attrs.field(validator=_ident("role"))
    type: str = attrs.field(validator=_ident("type"))
    level: Level | LevelRange | None = None

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        categories: int = DEFAULT_CATEGORIES,
        sensitivities: int = DEFAULT_SENSITIVITIES,
    ) -> Context:
        """Parse a raw context; the level part is validated like :meth:`Level.parse`."""
        if not isinstance(text, str):
            raise InvalidContext(f"context must be a string, not {type(text).__name__}")
        if not text:
            raise InvalidContext("empty context")
        if any(ch.isspace() for ch in text):
            raise InvalidContext(f"context {show_input(text)} contains whitespace")
        parts = text.split(":", 3)
        if len(parts) < 3:
            raise InvalidContext(f"context {show_input(text)} needs at least user:role:type")
        user, role, type_ = parts[0], parts[1], parts[2]
        for kind, value in (("user", user), ("role", role), ("type", type_)):
            if not value:
                raise InvalidContext(f"context {show_input(text)} has an empty {kind}")
        level: Level | LevelRange | None = None
        if len(parts) == 4:
            try:
                level = parse_level_or_range(
                    parts[3], categories=categories, sensitivities=sensitivities
                )
            except InvalidLevel as exc:
                raise InvalidContext(f"context {show_input(text)}: {exc}") from exc
        return cls(user, role, type_, level)

    def with_type(self, type_: str) -> Context:
        return attrs.evolve(self, type=type_)

    def with_level(self, level: Level | LevelRange | str | None) -> Context:
        if isinstance(level, str):
            level = parse_level_or_range(level)
        return attrs.evolve(self, level=level)

    @property
    def low(self) -> Level | None:
        """The effective (low) level: what the kernel checks for files and processes."""
        if isinstance(self.level, LevelRange):
            return self.level.low
        return self.level

    def __str__(self) -> str:
        base = f"{self.user}:{self.role}:{self.type}"
        return base if self.level is None else f"{base}:{self.level}"


@attrs.frozen
class ContainerContexts:
    """The container entries of a policy's ``lxc_contexts``.

    ``process`` is the domain containers run in, ``file`` the type of their
    private files, ``ro_file`` of read-only content. Missing optional
    entries fall back the way container-selinux documents them.
    """

    process: Context
    file: Context
    ro_file: Context | None = None
    content: Context | None = None
    sandbox_kvm_process: Context | None = None
    sandbox_lxc_process: Context | None = None
    extra: dict[str, Context] = attrs.field(factory=dict, eq=False)

    @property
    def read_only_file(self) -> Context:
        """``ro_file``, or ``file`` where a policy defines no read-only type."""
        return self.ro_file if self.ro_file is not None else self.file

    @property
    def kvm_process(self) -> Context:
        """``sandbox_kvm_process``, falling back to ``process``."""
        return self.sandbox_kvm_process or self.process

    @property
    def init_process(self) -> Context:
        """``sandbox_lxc_process``, falling back to ``process``."""
        return self.sandbox_lxc_process or self.process

    @classmethod
    def parse(cls, text: str, *, source: str = "lxc_contexts") -> ContainerContexts:
        """Parse ``key = "context"`` lines; ``#`` and ``;`` start comments."""
        values: dict[str, Context] = {}
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = _strip_comment(raw).strip()
            if not line:
                continue
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise PolicyError(
                    f"{source}:{lineno}: expected 'key = \"context\"', got {show_input(raw)}"
                )
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1].strip()
            try:
                values[key] = Context.parse(value)
            except InvalidContext as exc:
                raise PolicyError(f"{source}:{lineno}: {exc}") from exc
        for required in ("process", "file"):
            if required not in values:
                raise PolicyError(f"{source}: no {required!r} entry")
        known = {f.name for f in attrs.fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in values.items() if k in known},
            extra={k: v for k, v in values.items() if k not in known},
        )


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "#;":
            return line[:i]
    return line


__all__ = [
    "ContainerContexts",
    "Context",
]
