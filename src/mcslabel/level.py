"""MLS/MCS levels and ranges: parsing, canonical form, dominance.

Pure model: no I/O, no SELinux bindings. The canonical text form is the one
the kernel prints: categories sorted, a run of three or more written
``cA.cB``, a run of two written ``cA,cB``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import attrs

from mcslabel.errors import InvalidLevel
from mcslabel.errors import show_input as _q

#: Category count of every mainstream MCS policy (c0..c1023).
DEFAULT_CATEGORIES = 1024
#: Sensitivity count of refpolicy MLS builds (s0..s15); MCS policies use s0 only.
DEFAULT_SENSITIVITIES = 16

# Longest decimal accepted for a sensitivity or category number; bounds the
# work done on hostile input before range checks apply.
_MAX_DIGITS = 6
_NUMBER = re.compile(r"(0|[1-9][0-9]*)")
# mcstrans names (setrans.conf): raw levels never contain these characters.
_TRANSLATED_HINT = re.compile(r"[A-Za-z]{2,}|\s")


def _number(text: str, prefix: str, what: str, whole: str) -> int:
    if not text.startswith(prefix):
        raise InvalidLevel(f"{what} {_q(text)} in {_q(whole)} must start with {prefix!r}")
    digits = text[len(prefix) :]
    if not digits:
        raise InvalidLevel(f"{what} {_q(text)} in {_q(whole)} has no number after {prefix!r}")
    if len(digits) > _MAX_DIGITS:
        raise InvalidLevel(f"{what} {_q(text)} in {_q(whole)} is out of range")
    if not _NUMBER.fullmatch(digits):
        raise InvalidLevel(
            f"{what} {_q(text)} in {_q(whole)} must be {prefix!r} followed by a decimal"
            " number without leading zeros"
        )
    return int(digits)


def _check_raw(text: str, kind: str) -> None:
    if not isinstance(text, str):
        raise InvalidLevel(f"{kind} must be a string, not {type(text).__name__}")
    if not text:
        raise InvalidLevel(f"empty {kind}")
    if any(ch.isspace() for ch in text):
        raise InvalidLevel(f"{kind} {_q(text)} contains whitespace")
    if not text.isascii():
        raise InvalidLevel(f"{kind} {_q(text)} contains non-ASCII characters")
    head = text.split(":", 1)[0].split("-", 1)[0]
    if _TRANSLATED_HINT.search(head):
        raise InvalidLevel(
            f"{kind} {_q(text)} looks like an mcstrans-translated name; use the raw form"
            " such as 's0', 's0:c1,c2' or 's0-s0:c0.c1023'"
        )


def _to_frozenset(value: Iterable[int]) -> frozenset[int]:
    return value if isinstance(value, frozenset) else frozenset(value)


def _validate_categories(
    instance: Level, attribute: attrs.Attribute[frozenset[int]], value: frozenset[int]
) -> None:
    for c in value:
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise InvalidLevel(f"category {_q(c)} must be a non-negative integer")


def _validate_sensitivity(instance: Level, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidLevel(f"sensitivity {_q(value)} must be a non-negative integer")


@attrs.frozen
class Level:
    """One MLS/MCS level: a sensitivity and a set of categories.

    Equality and hashing are on the canonical form: ``s0:c1,c2`` equals
    ``s0:c2,c1``.
    """

    sensitivity: int = attrs.field(default=0, validator=_validate_sensitivity)
    categories: frozenset[int] = attrs.field(
        default=frozenset(), converter=_to_frozenset, validator=_validate_categories
    )

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        categories: int = DEFAULT_CATEGORIES,
        sensitivities: int = DEFAULT_SENSITIVITIES,
    ) -> Level:
        """Parse a raw level such as ``s0``, ``s0:c1,c2`` or ``s0:c0.c5,c9``.

        Raises :class:`~mcslabel.errors.InvalidLevel` saying what is wrong.
        """
        _check_raw(text, "level")
        if "-" in text:
            raise InvalidLevel(f"{_q(text)} is a range, not a single level (use LevelRange)")
        sens_text, sep, cats_text = text.partition(":")
        sensitivity = _number(sens_text, "s", "sensitivity", text)
        if sensitivity >= sensitivities:
            raise InvalidLevel(
                f"sensitivity s{sensitivity} in {_q(text)} is out of range"
                f" (policy has s0..s{sensitivities - 1})"
            )
        if not sep:
            return cls(sensitivity)
        if not cats_text:
            raise InvalidLevel(f"{_q(text)} has ':' but no categories")
        found: set[int] = set()
        for part in cats_text.split(","):
            if not part:
                raise InvalidLevel(f"{_q(text)} has an empty category between commas")
            if "." in part:
                lo_text, _, hi_text = part.partition(".")
                if "." in hi_text:
                    raise InvalidLevel(
                        f"category range {_q(part)} in {_q(text)} has more than one '.'"
                    )
                lo = _number(lo_text, "c", "category", text)
                hi = _number(hi_text, "c", "category", text)
                if lo > hi:
                    raise InvalidLevel(f"category range {_q(part)} in {_q(text)} is reversed")
                members = range(lo, hi + 1)
            else:
                single = _number(part, "c", "category", text)
                members = range(single, single + 1)
            for c in members:
                if c >= categories:
                    raise InvalidLevel(
                        f"category c{c} in {_q(text)} is out of range"
                        f" (policy has c0..c{categories - 1})"
                    )
                if c in found:
                    raise InvalidLevel(f"category c{c} appears twice in {_q(text)}")
                found.add(c)
        return cls(sensitivity, frozenset(found))

    @classmethod
    def pair(cls, a: int, b: int, *, sensitivity: int = 0) -> Level:
        """The level ``s<sensitivity>:cA,cB`` for two distinct categories."""
        if a == b:
            raise InvalidLevel(f"a category pair needs two distinct categories, got c{a} twice")
        return cls(sensitivity, frozenset((a, b)))

    @property
    def is_pair(self) -> bool:
        """True for exactly two categories: the shape container runtimes hand out."""
        return len(self.categories) == 2

    @property
    def sorted_categories(self) -> tuple[int, ...]:
        return tuple(sorted(self.categories))

    def dominates(self, other: Level) -> bool:
        """True when this level's sensitivity and categories cover ``other``'s."""
        return self.sensitivity >= other.sensitivity and self.categories >= other.categories

    def comparable(self, other: Level) -> bool:
        """True when either level dominates the other (equal levels included)."""
        return self.dominates(other) or other.dominates(self)

    def check(
        self, *, categories: int = DEFAULT_CATEGORIES, sensitivities: int = DEFAULT_SENSITIVITIES
    ) -> Level:
        """Return self after checking it fits a policy of the given size."""
        if self.sensitivity >= sensitivities:
            raise InvalidLevel(f"sensitivity s{self.sensitivity} is out of range")
        too_big = [c for c in self.categories if c >= categories]
        if too_big:
            raise InvalidLevel(
                f"category c{min(too_big)} is out of range (policy has c0..c{categories - 1})"
            )
        return self

    def __str__(self) -> str:
        if not self.categories:
            return f"s{self.sensitivity}"
        return f"s{self.sensitivity}:{format_categories(self.categories)}"


def _runs(cats: Iterable[int]) -> Iterator[tuple[int, int]]:
    ordered = sorted(cats)
    start = prev = ordered[0]
    for c in ordered[1:]:
        if c != prev + 1:
            yield start, prev
            start = c
        prev = c
    yield start, prev


def format_categories(cats: Iterable[int]) -> str:
    """Kernel-style category list: ``c0.c5,c9`` (runs of 3+) or ``c1,c2``."""
    parts: list[str] = []
    for lo, hi in _runs(cats):
        if hi - lo >= 2:
            parts.append(f"c{lo}.c{hi}")
        else:
            parts.extend(f"c{c}" for c in range(lo, hi + 1))
    return ",".join(parts)


def _validate_range(instance: LevelRange, attribute: attrs.Attribute[Level], value: Level) -> None:
    if not instance.high.dominates(instance.low):
        raise InvalidLevel(f"range {instance.low}-{instance.high}: high must dominate low")


@attrs.frozen
class LevelRange:
    """An MLS range ``low-high`` where ``high`` dominates ``low``."""

    low: Level
    high: Level = attrs.field(validator=_validate_range)

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        categories: int = DEFAULT_CATEGORIES,
        sensitivities: int = DEFAULT_SENSITIVITIES,
    ) -> LevelRange:
        """Parse ``low-high`` (``s0-s0:c0.c1023``) or a single level (low == high)."""
        _check_raw(text, "range")
        low_text, sep, high_text = text.partition("-")
        if sep and "-" in high_text:
            raise InvalidLevel(f"range {_q(text)} has more than one '-'")
        low = Level.parse(low_text, categories=categories, sensitivities=sensitivities)
        if not sep:
            return cls(low, low)
        if not high_text:
            raise InvalidLevel(f"range {_q(text)} has no high level after '-'")
        high = Level.parse(high_text, categories=categories, sensitivities=sensitivities)
        return cls(low, high)

    def contains(self, level: Level) -> bool:
        """True when ``level`` lies within the range (high dominates it, it dominates low)."""
        return self.high.dominates(level) and level.dominates(self.low)

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def parse_level_or_range(
    text: str,
    *,
    categories: int = DEFAULT_CATEGORIES,
    sensitivities: int = DEFAULT_SENSITIVITIES,
) -> Level | LevelRange:
    """Parse a level, or a range when the text holds a ``-``."""
    if isinstance(text, str) and "-" in text:
        return LevelRange.parse(text, categories=categories, sensitivities=sensitivities)
    return Level.parse(text, categories=categories, sensitivities=sensitivities)


__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_SENSITIVITIES",
    "Level",
    "LevelRange",
    "format_categories",
    "parse_level_or_range",
]
