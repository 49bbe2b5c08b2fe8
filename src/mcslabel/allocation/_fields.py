"""The field checks of an allocation record, without the record type.

:meth:`Allocation.create <mcslabel.allocation.stores.Allocation.create>`
checks every field with these, and so does the lean reader of one SQLite
record (:mod:`mcslabel.allocation.peek`), which must accept exactly what a
store accepts. Imports nothing heavy (no ``attrs``, no ``typing`` at run
time). May import: :mod:`mcslabel.errors`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable  # loaded already wherever a store is read (sqlite3)

from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q

#: The most owners one allocation may have; bounds record size in any store.
MAX_OWNERS = 4096
#: Longest owner string or allocation name accepted.
MAX_OWNER_LENGTH = 256


def _check_text(what: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string, got {_q(value)}")
    if len(value) > MAX_OWNER_LENGTH:
        raise InvalidInput(f"{what} {_q(value)} is longer than {MAX_OWNER_LENGTH} characters")
    # isprintable() is False for every whitespace character except the ASCII space.
    if not value.isprintable() or " " in value:
        raise InvalidInput(f"{what} {_q(value)} contains whitespace or control characters")


def check_owner(owner: str) -> str:
    """Return ``owner`` after checking it is printable text without whitespace."""
    _check_text("owner", owner)
    return owner


def check_name(name: str) -> str:
    """Return ``name`` after checking it is a valid deterministic-allocation name."""
    _check_text("allocation name", name)
    return name


def is_time(value: object) -> bool:
    """A finite number of seconds (``bool`` is not one, nor an int too large for a float)."""
    if type(value) is float:
        return math.isfinite(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # a 400-digit int from a damaged record
        return False


def checked_owners(value: object, level: str) -> tuple[str, ...]:
    """``value`` as the sorted, de-duplicated owners of the allocation of ``level``."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidInput(f"owners must be a collection of strings, not {_q(value)}")
    owners = tuple(sorted(set(value)))
    if not owners:
        raise InvalidInput(f"allocation of {level} has no owner")
    if len(owners) > MAX_OWNERS:
        raise InvalidInput(f"allocation of {level} has more than {MAX_OWNERS} owners")
    for owner in owners:
        check_owner(owner)
    return owners


def checked_fields(
    level: str,
    owners: Iterable[str],
    created: object,
    *,
    expires: object,
    name: object,
    shared: object,
    host: object,
    custom: object,
    persistent: object,
    in_use: object,
) -> tuple[str, ...]:
    """Check every field of an allocation of ``level`` but the level; its owners.

    Raises :class:`~mcslabel.errors.InvalidInput` naming the first bad field.
    """
    checked = checked_owners(owners, level)
    for what, value in (("created", created), ("expires", expires)):
        if (value is not None or what == "created") and not is_time(value):
            raise InvalidInput(f"{what} must be a finite number of seconds, got {_q(value)}")
    if name is not None:
        check_name(name)  # type: ignore[arg-type]  # checked: raises for a non-string
    flags = {"shared": shared, "custom": custom, "persistent": persistent, "in_use": in_use}
    for what, value in flags.items():
        if not isinstance(value, bool):
            raise InvalidInput(f"{what} must be True or False, got {_q(value)}")
    if not isinstance(host, str):
        raise InvalidInput(f"host must be a string, got {_q(host)}")
    if persistent and expires is not None:
        raise InvalidInput(f"allocation of {level} is persistent and cannot carry a lease")
    return checked


__all__ = [
    "MAX_OWNERS",
    "MAX_OWNER_LENGTH",
    "check_name",
    "check_owner",
    "checked_fields",
    "checked_owners",
    "is_time",
]
