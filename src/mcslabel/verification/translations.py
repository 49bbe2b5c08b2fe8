"""mcstrans names: read ``setrans.conf`` and translate levels both ways.

Hosts running mcstrans show levels by the names of the policy root's
``setrans.conf`` (``s0`` as ``SystemLow``, ``s0:c0.c1023`` as
``SystemHigh``, site names such as ``s0:c1=PatientRecord``). mcslabel works
on raw levels; this module turns names into raw levels where a caller asks
for it, and raw levels into names for display.

What is read is mcstrans's own grammar (``mcstrans.c``): ``raw=Name`` lines,
``#`` comments, ``Include=GLOB`` (nested at most 32 deep, a relative pattern
taken from the including file's directory), ``Domain=``; ``disable=1``
turns translation off. The composite MLS constructs (``ModifierGroup`` with
its words, ``Base``, ``Default``, ``Join``, ``Prefix``, ``Suffix``,
``Whitespace``, and ``!``/``>`` constraints) build names from parts; they are
parsed and skipped: only whole-level names translate. A range translates as a
whole when it has a name, else each end on its own (``SystemLow-s0:c1``),
as mcstrans does.

:meth:`Translations.parse` is pure; :func:`read_translations` and
:func:`load_translations` read the files.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from mcslabel.context import Context
from mcslabel.errors import InvalidLevel, PolicyError, TranslationError
from mcslabel.errors import show_input as _q
from mcslabel.level import (
    DEFAULT_CATEGORIES,
    DEFAULT_SENSITIVITIES,
    Level,
    LevelRange,
    parse_level_or_range,
)
from mcslabel.verification.policy import PolicyRoot

#: mcstrans refuses deeper ``Include`` nesting.
MAX_INCLUDE_DEPTH = 32
_COMPOSITE_KEYWORDS = frozenset(
    ["Base", "ModifierGroup", "Whitespace", "Join", "Prefix", "Suffix", "Default"]
)

#: Reads the files an ``Include`` pattern names: (pattern, including source) ->
#: (text, source) of each, in order.
IncludeReader = Callable[[str, str], Iterable[tuple[str, str]]]


def _no_includes(pattern: str, source: str) -> Iterable[tuple[str, str]]:
    raise PolicyError(f"{source}: Include={pattern} but no file reader was given")


@attrs.frozen
class Translations:
    """The whole-level names of a ``setrans.conf``: raw (canonical) <-> name."""

    names: Mapping[str, str] = attrs.field(factory=dict)  # canonical raw -> name
    raws: Mapping[str, str] = attrs.field(factory=dict)  # name -> canonical raw
    disabled: bool = False
    composite: bool = False  # the file builds names from ModifierGroups (not translated here)
    sources: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        source: str = "setrans.conf",
        include: IncludeReader = _no_includes,
        categories: int = DEFAULT_CATEGORIES,
        sensitivities: int = DEFAULT_SENSITIVITIES,
    ) -> Translations:
        """Parse a ``setrans.conf``; ``include`` reads the files of ``Include=`` lines."""
        state = _Parser(include, categories, sensitivities)
        state.read(text, source, depth=0)
        return cls(
            names=state.names,
            raws=state.raws,
            disabled=state.disabled,
            composite=state.composite,
            sources=tuple(state.sources),
        )

    def name(self, value: Level | LevelRange | str) -> str:
        """The translated text of a raw level or range (the raw text when it has no name)."""
        if isinstance(value, str):
            value = parse_level_or_range(value)
        raw = str(value)
        if self.disabled:
            return raw
        if raw in self.names:
            return self.names[raw]
        if isinstance(value, LevelRange):
            if value.low == value.high:
                return self.name(value.low)
            return f"{self.name(value.low)}-{self.name(value.high)}"
        return raw

    def raw(
        self,
        text: str,
        *,
        categories: int = DEFAULT_CATEGORIES,
        sensitivities: int = DEFAULT_SENSITIVITIES,
    ) -> Level | LevelRange:
        """The raw level or range of a name (or of raw text, checked as usual).

        ``SystemLow-SystemHigh`` is looked up whole first, then as two ends,
        each a name or raw. Raises :class:`TranslationError` for a name no
        entry has, naming the files read.
        """
        bounds: dict[str, Any] = {"categories": categories, "sensitivities": sensitivities}
        stripped = text.strip() if isinstance(text, str) else text
        found = self._lookup(stripped)
        if found is not None:
            return parse_level_or_range(found, **bounds)
        try:
            return parse_level_or_range(stripped, **bounds)
        except InvalidLevel as raw_error:
            if isinstance(stripped, str) and "-" in stripped:
                for i, ch in enumerate(stripped):
                    if ch != "-":
                        continue
                    low, high = self._end(stripped[:i]), self._end(stripped[i + 1 :])
                    if low is not None and high is not None:
                        return LevelRange.parse(f"{low}-{high}", **bounds)
            if self.disabled:
                raise TranslationError(
                    f"{_q(text)} is not a raw level and translation is disabled (disable=1)"
                    f" in {self._where()}"
                ) from raw_error
            if _looks_raw(stripped):
                raise
            raise TranslationError(
                f"no setrans.conf entry names {_q(text)} (read {self._where()})"
            ) from raw_error

    def _lookup(self, name: str) -> str | None:
        return None if self.disabled else self.raws.get(name)

    def _end(self, text: str) -> str | None:
        found = self._lookup(text.strip())
        if found is not None and "-" not in found:
            return found
        try:
            return str(Level.parse(text.strip()))
        except InvalidLevel:
            return None

    def _where(self) -> str:
        return ", ".join(self.sources) if self.sources else "no setrans.conf"

    def raw_text(self, text: str, *, categories: int = DEFAULT_CATEGORIES) -> str:
        """``text`` with a translated level made raw: a level, a range or a context."""
        if text.count(":") >= 2 and not _LEVEL_START.match(text):
            user, role, type_, *rest = text.split(":", 3)
            if rest and not _looks_raw(rest[0]):
                level = self.raw(rest[0], categories=categories)
                return str(Context(user, role, type_, level))
            return text
        return str(self.raw(text, categories=categories))


# Raw levels start with a sensitivity (s0); a context has user:role:type first.
_LEVEL_START = re.compile(r"s[0-9]+(?:[:\-]|$)")


def _looks_raw(text: str) -> bool:
    return bool(text) and text[0] == "s" and text[1:2].isdigit()


class _Parser:
    def __init__(self, include: IncludeReader, categories: int, sensitivities: int) -> None:
        self.include = include
        self.bounds: dict[str, Any] = {"categories": categories, "sensitivities": sensitivities}
        self.names: dict[str, str] = {}
        self.raws: dict[str, str] = {}
        self.disabled = False
        self.composite = False
        self.in_group = False
        self.sources: list[str] = []

    def read(self, text: str, source: str, depth: int) -> None:
        if depth >= MAX_INCLUDE_DEPTH:
            raise PolicyError(f"{source}: Include nesting deeper than {MAX_INCLUDE_DEPTH}")
        self.sources.append(source)
        for lineno, line in enumerate(text.splitlines(), 1):
            self.line(line.partition("#")[0].strip(), f"{source}:{lineno}", source, depth)

    def line(self, line: str, where: str, source: str, depth: int) -> None:
        if not line:
            return
        ops = [i for i in (line.find("="), line.find("!"), line.find(">")) if i >= 0]
        if not ops:
            raise PolicyError(f"{where}: expected raw=Name, got {_q(line)}")
        at = min(ops)
        key, op, value = line[:at].strip(), line[at], line[at + 1 :].strip()
        if not key or not value:
            raise PolicyError(f"{where}: empty side in {_q(line)}")
        if op != "=":
            self.composite = True  # a constraint on composed names
        elif key == "Include":
            for text, included in self.include(value, source):
                self.read(text, included, depth + 1)
        elif key == "disable":
            self.disabled = value != "0"
        elif key == "Domain":
            self.in_group = False
        elif key in _COMPOSITE_KEYWORDS:
            self.composite = True
            if key == "ModifierGroup":
                self.in_group = True
        elif not self.in_group:  # words of a ModifierGroup are parts of names
            self.entry(key, value, where)

    def entry(self, raw: str, name: str, where: str) -> None:
        try:
            canonical = str(parse_level_or_range(raw, **self.bounds))
        except InvalidLevel as exc:
            raise PolicyError(f"{where}: {exc}") from exc
        # mcstrans keeps the first of two entries for one key, both ways.
        self.names.setdefault(canonical, name)
        self.raws.setdefault(name, canonical)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read {path}: {exc}") from exc


def _include_files(pattern: str, source: str) -> list[tuple[str, str]]:
    base = os.path.dirname(source)
    full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
    return [(_read(Path(p)), p) for p in sorted(glob.glob(full))]


def read_translations(path: str | os.PathLike[str], **bounds: int) -> Translations:
    """Read a ``setrans.conf`` and its includes; a missing file translates nothing."""
    path = Path(path)
    if not path.exists():
        return Translations()
    return Translations.parse(_read(path), source=str(path), include=_include_files, **bounds)


def setrans_path(policy_root: PolicyRoot | str | os.PathLike[str] | None = None) -> Path:
    """``setrans.conf`` of a policy root (default: the installed policy's)."""
    return PolicyRoot.coerce(policy_root).path / "setrans.conf"


def load_translations(
    policy_root: PolicyRoot | str | os.PathLike[str] | None = None, **bounds: int
) -> Translations:
    """The translations of a policy root's ``setrans.conf`` (none when it has none)."""
    return read_translations(setrans_path(policy_root), **bounds)


__all__ = [
    "MAX_INCLUDE_DEPTH",
    "IncludeReader",
    "Translations",
    "load_translations",
    "read_translations",
    "setrans_path",
]
