"""Checks at the allocator's public edge: levels, owners' leases, flags, clock readings.

Owns turning what callers pass (``Level``, ``LevelRange``, text, ttl numbers)
into checked values, raising typed errors. Pure; no I/O.
May import: the model only.
"""

from __future__ import annotations

import math

from mcslabel.errors import InvalidInput, InvalidLevel
from mcslabel.errors import show_input as _q
from mcslabel.level import Level, LevelRange

#: Categories a level observed in use, or an excluded level, may name.
SEEN_CATEGORIES = 1 << 16


def checked_time(what: str, value: float) -> float:
    """``value`` if it is a finite number of seconds, else InvalidInput (a broken clock)."""
    if type(value) is float and math.isfinite(value):
        return value  # the common case, checked in two C calls
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number of seconds, got {_q(value)}")
    return value


def check_flags(shared: bool, persistent: bool) -> None:
    for what, value in (("shared", shared), ("persistent", persistent)):
        if not isinstance(value, bool):
            raise InvalidInput(f"{what} must be True or False, got {_q(value)}")


def check_ttl(ttl: float | None, persistent: bool = False) -> None:
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
        raise InvalidInput(f"ttl must be a number of seconds, got {_q(ttl)}")
    if ttl <= 0:
        raise InvalidInput(f"ttl must be positive, got {ttl}")
    if persistent:
        raise InvalidInput("a persistent allocation cannot carry a lease (ttl)")


def is_pair(level: Level) -> bool:
    """True for an ``s0`` category pair: what the allocator hands out."""
    return level.sensitivity == 0 and level.is_pair


def single_level(value: Level | LevelRange | str, categories: int, what: str = "level") -> Level:
    """A single level within ``categories``; ranges are refused (InvalidLevel)."""
    if isinstance(value, LevelRange) or (isinstance(value, str) and "-" in value):
        raise InvalidLevel(
            f"{what} {_q(str(value))} is a range; only a single level can be allocated"
        )
    if isinstance(value, str):
        return Level.parse(value, categories=categories)
    if not isinstance(value, Level):
        raise InvalidLevel(f"{what} must be a Level or a string, not {type(value).__name__}")
    return value.check(categories=categories)


def observed_level(value: Level | LevelRange | str) -> Level:
    """The level a process at ``value`` can read: a range's high level; needs categories."""
    if isinstance(value, str):
        if "-" in value:
            value = LevelRange.parse(value, categories=SEEN_CATEGORIES)
        else:
            value = Level.parse(value, categories=SEEN_CATEGORIES)
    if isinstance(value, LevelRange):
        value = value.high  # what a process at that range can read
    if not isinstance(value, Level):
        raise InvalidLevel(f"level must be a Level, a LevelRange or a string, not {_q(value)}")
    value.check(categories=SEEN_CATEGORIES)
    if not value.categories:
        raise InvalidLevel(
            f"{value} has no categories: every level dominates it, so it blocks nothing"
            " that it could read"
        )
    return value


__all__ = [
    "SEEN_CATEGORIES",
    "check_flags",
    "check_ttl",
    "checked_time",
    "is_pair",
    "observed_level",
    "single_level",
]
