"""One held level as a store records it: :class:`Allocation`, its keys, its field checks.

The value type every store reads and writes, the canonical store key of a
level (``s0:c1,c2``; ``in-use/s0:c1,c2`` for a level observed in use) and the
checks of owners and names that the allocator applies at its API edge. The
store interface itself is :mod:`mcslabel.allocation.stores.base`. May import:
the model only.
"""

# INTERFACE-FROZEN (the record type, moved here from stores/base.py with that marker)

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping

import attrs

from mcslabel.allocation._fields import (
    MAX_OWNER_LENGTH,
    MAX_OWNERS,
    check_name,
    check_owner,
    checked_fields,
)
from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q
from mcslabel.level import DEFAULT_SENSITIVITIES, Level


def trusted_pair_level(a: int, b: int, *, sensitivity: int = 0) -> Level:
    """``Level.pair(a, b)`` for ints ``0 <= a < b`` the caller has checked; skips validators.

    For hot paths that computed the categories themselves (a drawn pair
    index, a key matched by a strict pattern). Anything else must go
    through :meth:`Level.pair` or :meth:`Level.parse`.
    """
    level = _new(Level)
    _set_attr(level, "sensitivity", sensitivity)
    _set_attr(level, "categories", frozenset((a, b)))
    return level


# A pair level in the canonical text that level_key() writes, within the bounds
# from_json() checks: the digits grammar of Level.parse, at most 6 digits.
_PAIR_TEXT = re.compile(r"s(0|[1-9][0-9]{0,5}):c(0|[1-9][0-9]{0,5}),c(0|[1-9][0-9]{0,5})")
_STORED_CATEGORIES = 1 << 20


def _parse_stored_level(text: str) -> Level:
    """``Level.parse(text, categories=1 << 20)``, with a fast path for canonical pairs.

    Stores hold almost only pairs, and a store's changes are decoded on every
    allocator sync; anything but a canonical pair (``s0:c1,c2``, ``a < b``)
    takes the general parser, so errors and results are the same.
    """
    match = _PAIR_TEXT.fullmatch(text)
    if match is not None:
        sensitivity, a, b = int(match[1]), int(match[2]), int(match[3])
        if a < b < _STORED_CATEGORIES and sensitivity < DEFAULT_SENSITIVITIES:
            return trusted_pair_level(a, b, sensitivity=sensitivity)
    return Level.parse(text, categories=_STORED_CATEGORIES)


def level_key(level: Level) -> str:
    """The store key of ``level``: its canonical text, ``str(level)``.

    Pairs, the common case, are formatted directly instead of through the
    general run-finding logic of :func:`mcslabel.level.format_categories`.
    """
    cats = level.categories
    if len(cats) == 2:
        a, b = cats
        if a > b:
            a, b = b, a
        return f"s{level.sensitivity}:c{a},c{b}"
    return str(level)


_new = object.__new__
_set_attr = object.__setattr__


def _derived_key(record: Allocation) -> str:
    """:func:`record_key` of ``record``, with :func:`level_key` inlined (most records pass here)."""
    level = record.level
    cats = level.categories
    if len(cats) == 2:
        a, b = cats
        key = f"s{level.sensitivity}:c{a},c{b}" if a < b else f"s{level.sensitivity}:c{b},c{a}"
    else:
        key = str(level)
    return IN_USE_PREFIX + key if record.in_use else key


#: Store-key prefix of the records of levels observed in use (:attr:`Allocation.in_use`).
IN_USE_PREFIX = "in-use/"


def record_key(level: Level, *, in_use: bool = False) -> str:
    """The store key of the record of ``level``: in-use records live beside allocations."""
    return IN_USE_PREFIX + level_key(level) if in_use else level_key(level)


@attrs.frozen
class Allocation:
    """One held level, as a store records it.

    Build one with :meth:`create` (or :meth:`from_dict` for stored data): both
    validate every field and normalise ``owners`` to a sorted tuple. The plain
    constructor does neither; it is for code that builds records from values
    it has checked already (the allocator's hot path, :meth:`with_revision`).

    ``owners`` is the reference count: every owner (``docker:<id>``,
    ``pid:<n>@<host>``, ``k8s-pod:<uid>``...) holding the level; the level is
    freed when the last owner releases it. ``shared`` says whether further
    owners may *join* through ``allocate``/``reserve``; an explicit
    :meth:`~mcslabel.Allocator.add_owner` adds one whatever it says.

    ``revision`` is the store's modification revision of the record
    (0 for a record not yet stored). It is what :meth:`Store.replace` and
    :meth:`Store.delete` compare against and is excluded from equality.
    """

    level: Level
    owners: tuple[str, ...]
    #: Unix time the level was first allocated.
    created: float
    #: Unix time after which :meth:`~mcslabel.Allocator.gc` frees it; None = no lease.
    expires: float | None = None
    #: Deterministic-allocation name (unique across the store), or None.
    name: str | None = None
    #: Whether further owners may join (pods, named allocations).
    shared: bool = False
    #: Host name of the allocator that created the record.
    host: str = ""
    #: True for a level that is not an ``s0`` category pair.
    custom: bool = False
    #: True for labels of persistent data (volumes): never lease-bound, never expired by gc.
    persistent: bool = False
    #: True for a level observed in use (:meth:`~mcslabel.Allocator.record_in_use`): it
    #: blocks every comparable level but was never granted; stored beside allocations.
    in_use: bool = False
    #: Store modification revision; 0 before the record is stored.
    revision: int = attrs.field(default=0, eq=False)
    #: The store key, :func:`record_key` of the level: derived when not given (a caller
    #: that has it formatted passes it; :meth:`create` always derives it).
    key: str = attrs.field(
        default=attrs.Factory(_derived_key, takes_self=True),
        eq=False,
        repr=False,
    )

    @classmethod
    def create(
        cls,
        level: Level,
        owners: Iterable[str],
        created: float,
        *,
        expires: float | None = None,
        name: str | None = None,
        shared: bool = False,
        host: str = "",
        custom: bool = False,
        persistent: bool = False,
        in_use: bool = False,
        revision: int = 0,
    ) -> Allocation:
        """A validated record; :class:`~mcslabel.errors.InvalidInput` names what is wrong."""
        if not isinstance(level, Level):
            raise InvalidInput(f"allocation level must be a Level, not {type(level).__name__}")
        if not level.categories:
            raise InvalidInput(f"level {level} has no categories and cannot be allocated")
        checked = checked_fields(
            str(level),
            owners,
            created,
            expires=expires,
            name=name,
            shared=shared,
            host=host,
            custom=custom,
            persistent=persistent,
            in_use=in_use,
        )
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise InvalidInput(f"revision must be an integer >= 0, got {_q(revision)}")
        return cls(
            level,
            checked,
            created,
            expires,
            name,
            shared,
            host,
            custom,
            persistent,
            in_use,
            revision,
        )

    def with_revision(self, revision: int) -> Allocation:
        """This record at store revision ``revision`` (a hot path: no re-validation)."""
        return Allocation(
            self.level,
            self.owners,
            self.created,
            self.expires,
            self.name,
            self.shared,
            self.host,
            self.custom,
            self.persistent,
            self.in_use,
            revision,
            self.key,
        )

    @property
    def refcount(self) -> int:
        return len(self.owners)

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict; :meth:`from_dict` is its inverse (``revision`` excluded)."""
        data: dict[str, object] = {
            "level": level_key(self.level),
            "owners": list(self.owners),
            "created": self.created,
            "expires": self.expires,
            "name": self.name,
            "shared": self.shared,
            "host": self.host,
            "custom": self.custom,
            "persistent": self.persistent,
        }
        if self.in_use:  # absent otherwise, so ordinary records read as before
            data["in_use"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, revision: int = 0) -> Allocation:
        """Rebuild a record; raises :class:`~mcslabel.errors.InvalidInput` on a bad one."""
        try:
            owners = data["owners"]
            if not isinstance(owners, list):
                raise InvalidInput("owners is not a list")
            name = data.get("name")
            if name is not None and not isinstance(name, str):
                raise InvalidInput("name is not a string")
            return cls.create(
                _parse_stored_level(str(data["level"])),
                owners,
                data["created"],  # type: ignore[arg-type]
                expires=data.get("expires"),  # type: ignore[arg-type]
                name=name,
                shared=data.get("shared", False),  # type: ignore[arg-type]
                host=data.get("host", ""),  # type: ignore[arg-type]
                custom=data.get("custom", False),  # type: ignore[arg-type]
                persistent=data.get("persistent", False),  # type: ignore[arg-type]
                in_use=data.get("in_use", False),  # type: ignore[arg-type]
                revision=revision,
            )
        except KeyError as exc:
            raise InvalidInput(f"allocation record lacks field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:  # InvalidInput included: say where it came from
            raise InvalidInput(f"allocation record is malformed: {exc}") from None

    def to_json(self) -> dict[str, object]:
        """Deprecated alias of :meth:`to_dict` (it returns a dict, not JSON text)."""
        warnings.warn(
            "Allocation.to_json() is deprecated; use to_dict()", DeprecationWarning, stacklevel=2
        )
        return self.to_dict()

    @classmethod
    def from_json(cls, data: Mapping[str, object], *, revision: int = 0) -> Allocation:
        """Deprecated alias of :meth:`from_dict`."""
        warnings.warn(
            "Allocation.from_json() is deprecated; use from_dict()",
            DeprecationWarning,
            stacklevel=2,
        )
        return cls.from_dict(data, revision=revision)


__all__ = [
    "IN_USE_PREFIX",
    "MAX_OWNERS",
    "MAX_OWNER_LENGTH",
    "Allocation",
    "check_name",
    "check_owner",
    "level_key",
    "record_key",
    "trusted_pair_level",
]
