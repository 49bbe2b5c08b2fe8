"""MLS/MCS levels and ranges: parsing, canonical form, dominance.

Pure model: no I/O, no SELinux bindings. Parsing and printing follow
libsepol (and the kernel, whose ``mls.c`` is the same code): it accepts what
they accept and prints what they print.

- Categories may repeat or overlap (``s0:c1,c1`` is ``s0:c1``, ``s0:c0.c5,c3``
  is ``s0:c0.c5``); a dotted run must go upwards (``c5.c5`` and ``c5.c3`` are
  refused).
- The canonical text has categories sorted, a run of three or more written
  ``cA.cB``, a run of two written ``cA,cB``; a range whose ends are equal
  prints as one level (``s0-s0`` is ``s0``).
- Sensitivities and categories are checked against counts the caller passes
  (a loaded policy's); the defaults are the largest mainstream sizes.

``strict=True`` additionally refuses what libsepol would silently fold:
repeated or overlapping categories and, for :meth:`Level.parse`, a
degenerate range such as ``s0-s0``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from mcslabel._levelsyntax import (
    COMMON,
    DEFAULT_CATEGORIES,
    DEFAULT_SENSITIVITIES,
    category_out_of_range,
    check_raw,
    format_categories,
    number,
    parse_categories,
    sensitivity_in_range,
)
from mcslabel.errors import InvalidLevel, show_input


def _to_frozenset(value: Iterable[int]) -> frozenset[int]:
    return value if isinstance(value, frozenset) else frozenset(value)


def _validate_categories(
    instance: Level, attribute: attrs.Attribute[frozenset[int]], value: frozenset[int]
) -> None:
    for c in value:
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise InvalidLevel(f"category {show_input(c)} must be a non-negative integer")


def _validate_sensitivity(instance: Level, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, str):
        raise InvalidLevel(
            f"Level({show_input(value)}): Level takes a sensitivity number and categories;"
            f" parse text with Level.parse({show_input(value)})"
        )
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidLevel(f"sensitivity {show_input(value)} must be a non-negative integer")


@attrs.frozen(eq=False, repr=False)
class Level:
    """One MLS/MCS level: a sensitivity and a set of categories.

    Build one from text with :meth:`Level.parse` (or :meth:`Level.pair`).
    Equality and hashing are on the canonical form: ``s0:c1,c2`` equals
    ``s0:c2,c1``; a level also equals its text (``Level.parse("s0") == "s0"``).
    Levels have no ``<``: MLS levels are only partially ordered, use
    :meth:`dominates`.
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
        strict: bool = False,
    ) -> Level:
        """Parse a raw level such as ``s0``, ``s0:c1,c2`` or ``s0:c0.c5,c9``.

        Accepts what libsepol accepts: repeated and overlapping categories
        fold (``s0:c1,c1`` is ``s0:c1``), and a range whose ends are equal
        (``s0-s0``) is that level. ``strict=True`` refuses both.
        Raises :class:`~mcslabel.errors.InvalidLevel` saying what is wrong.
        """
        common = COMMON.fullmatch(text) if isinstance(text, str) else None
        if common is not None:
            sens_digits, a, b = common.groups()
            sensitivity = int(sens_digits)
            sensitivity_in_range(sensitivity, text, sensitivities)
            if a is None:
                return cls(sensitivity)
            cats = {int(a)} if b is None else {int(a), int(b)}
            for c in cats:
                if c >= categories:
                    raise category_out_of_range(c, text, categories)
            if strict and len(cats) == 1 and b is not None:
                raise InvalidLevel(f"category c{a} appears twice in {show_input(text)}")
            return cls(sensitivity, frozenset(cats))
        check_raw(text, "level")
        if "-" in text:
            span = LevelRange.parse(text, categories=categories, sensitivities=sensitivities)
            if strict or span.low != span.high:
                raise InvalidLevel(f"{show_input(text)} is a range (low-high), not a single level")
            return span.low
        sens_text, sep, cats_text = text.partition(":")
        sensitivity = number(sens_text, "s", "sensitivity", text)
        sensitivity_in_range(sensitivity, text, sensitivities)
        if not sep:
            return cls(sensitivity)
        if not cats_text:
            raise InvalidLevel(f"{show_input(text)} has ':' but no categories")
        found = parse_categories(text, cats_text, categories, strict)
        return cls(sensitivity, frozenset(found))

    @classmethod
    def pair(cls, a: int, b: int, *, sensitivity: int = 0) -> Level:
        """The level ``s<sensitivity>:cA,cB`` for two distinct categories."""
        if a == b:
            raise InvalidLevel(f"a category pair needs two distinct categories, got c{a} twice")
        return cls(sensitivity, frozenset((a, b)))

    @classmethod
    def coerce(
        cls,
        value: Level | str,
        *,
        categories: int = DEFAULT_CATEGORIES,
        sensitivities: int = DEFAULT_SENSITIVITIES,
    ) -> Level:
        """``value`` itself when it is a Level, else parsed: for APIs taking either."""
        if isinstance(value, Level):
            return value
        if isinstance(value, str):
            return cls.parse(value, categories=categories, sensitivities=sensitivities)
        raise InvalidLevel(f"a level must be a Level or text, not {type(value).__name__}")

    @property
    def is_pair(self) -> bool:
        """True for exactly two categories: the shape container runtimes hand out."""
        return len(self.categories) == 2

    @property
    def sorted_categories(self) -> tuple[int, ...]:
        return tuple(sorted(self.categories))

    def dominates(self, other: Level | str) -> bool:
        """True when this level's sensitivity and categories cover ``other``'s."""
        if not isinstance(other, Level):
            other = Level.coerce(other)
        return self.sensitivity >= other.sensitivity and self.categories >= other.categories

    def comparable(self, other: Level | str) -> bool:
        """True when either level dominates the other (equal levels included)."""
        if not isinstance(other, Level):
            other = Level.coerce(other)
        return self.dominates(other) or other.dominates(self)

    def check(
        self, *, categories: int = DEFAULT_CATEGORIES, sensitivities: int = DEFAULT_SENSITIVITIES
    ) -> Level:
        """Return self after checking it fits a policy of the given size."""
        sensitivity_in_range(self.sensitivity, str(self), sensitivities)
        too_big = [c for c in self.categories if c >= categories]
        if too_big:
            raise InvalidLevel(
                f"category c{min(too_big)} is out of range (policy has c0..c{categories - 1})"
            )
        return self

    def __eq__(self, other: object) -> bool:
        if other.__class__ is Level:
            return self.sensitivity == other.sensitivity and self.categories == other.categories
        if isinstance(other, str):
            return _text_equals(self, other)
        if isinstance(other, LevelRange):  # s0-s0 is s0, as for the kernel
            return other.low == other.high == self
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self.sensitivity, self.categories))

    def __repr__(self) -> str:
        return f"Level({str(self)!r})"

    def __str__(self) -> str:
        if not self.categories:
            return f"s{self.sensitivity}"
        return f"s{self.sensitivity}:{format_categories(self.categories)}"


def _text_equals(value: Level | LevelRange, text: str) -> bool:
    try:
        other = parse_level_or_range(text, categories=1 << 20, sensitivities=1 << 20)
    except InvalidLevel:
        return False
    return value == other


def _validate_range(instance: LevelRange, attribute: attrs.Attribute[Level], value: Level) -> None:
    if not isinstance(instance.low, Level) or not isinstance(value, Level):
        raise InvalidLevel("LevelRange takes two Level values; parse text with LevelRange.parse")
    if not value.dominates(instance.low):
        raise InvalidLevel(
            f"range {instance.low}-{value}: the high level must dominate the low one"
        )


@attrs.frozen(eq=False, repr=False)
class LevelRange:
    """An MLS range ``low-high`` where ``high`` dominates ``low``.

    Prints as one level when both ends are equal, as libsepol does.
    """

    low: Level
    high: Level = attrs.field(validator=_validate_range)

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        categories: int = DEFAULT_CATEGORIES,
        sensitivities: int = DEFAULT_SENSITIVITIES,
        strict: bool = False,
    ) -> LevelRange:
        """Parse ``low-high`` (``s0-s0:c0.c1023``) or a single level (low == high)."""
        check_raw(text, "range")
        low_text, sep, high_text = text.partition("-")
        if sep and "-" in high_text:
            raise InvalidLevel(f"range {show_input(text)} has more than one '-'")
        sizes: dict[str, Any] = {
            "categories": categories,
            "sensitivities": sensitivities,
            "strict": strict,
        }
        if not low_text:
            raise InvalidLevel(f"range {show_input(text)} has no low level before '-'")
        low = Level.parse(low_text, **sizes)
        if not sep:
            return cls(low, low)
        if not high_text:
            raise InvalidLevel(f"range {show_input(text)} has no high level after '-'")
        high = Level.parse(high_text, **sizes)
        return cls(low, high)

    @classmethod
    def coerce(
        cls,
        value: LevelRange | Level | str,
        *,
        categories: int = DEFAULT_CATEGORIES,
        sensitivities: int = DEFAULT_SENSITIVITIES,
    ) -> LevelRange:
        """A range from a range, a level (low == high) or text."""
        if isinstance(value, LevelRange):
            return value
        if isinstance(value, Level):
            return cls(value, value)
        if isinstance(value, str):
            return cls.parse(value, categories=categories, sensitivities=sensitivities)
        raise InvalidLevel(
            f"a level range must be a LevelRange or text, not {type(value).__name__}"
        )

    def contains(self, level: Level | str) -> bool:
        """True when ``level`` lies within the range (high dominates it, it dominates low)."""
        if not isinstance(level, Level):
            level = Level.coerce(level)
        return self.high.dominates(level) and level.dominates(self.low)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is LevelRange:
            return self.low == other.low and self.high == other.high
        if isinstance(other, str):
            return _text_equals(self, other)
        if isinstance(other, Level):
            return self.low == self.high == other
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        # Equal to its level's hash when both ends are equal: they compare equal.
        return hash(self.low) if self.low == self.high else hash((self.low, self.high))

    def __repr__(self) -> str:
        return f"LevelRange({str(self)!r})"

    def __str__(self) -> str:
        if self.low == self.high:
            return str(self.low)
        return f"{self.low}-{self.high}"


def parse_level_or_range(
    text: str,
    *,
    categories: int = DEFAULT_CATEGORIES,
    sensitivities: int = DEFAULT_SENSITIVITIES,
    strict: bool = False,
) -> Level | LevelRange:
    """Parse a level, or a range when the text holds a ``-``.

    A range whose ends are equal (``s0-s0``) is returned as that level: the
    kernel makes no difference between them.
    """
    if isinstance(text, str) and "-" in text:
        span = LevelRange.parse(
            text, categories=categories, sensitivities=sensitivities, strict=strict
        )
        return span.low if span.low == span.high and not strict else span
    return Level.parse(text, categories=categories, sensitivities=sensitivities, strict=strict)


__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_SENSITIVITIES",
    "Level",
    "LevelRange",
    "format_categories",
    "parse_level_or_range",
]
