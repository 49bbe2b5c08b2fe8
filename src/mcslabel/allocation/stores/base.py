"""The store interface: what the allocator needs from a label registry.

A store keeps one record (:class:`Allocation`) per held level, keyed by the
level's canonical text (``s0:c1,c2``). It offers atomic primitives, full and
incremental reads, and nothing else: choosing pairs, dominance checks,
exhaustion and deterministic names live in :mod:`mcslabel.allocation.allocator` and are
shared by every store.

The primitives map one to one onto etcd v3 transactions, so a distributed
store needs no global lock and no hot key on the common path:

- `snapshot`: a range read of the prefix at one revision.
- `changes`: a range read with `min_mod_revision` plus tombstone keys (or
  the watch history); `None` once compacted.
- `get`: a single-key read.
- `insert`: a txn comparing level key `create_revision == 0`, name key
  `create_revision == 0`, generation key `== generation`, custom lock absent.
- `replace`, `delete`: a txn comparing the level key's
  `mod_revision == current.revision`.
- `insert_custom`: the rare, heavier protocol described below.

Custom (non-pair) reservations, such as ``s0:c5`` or ``s0:c1,c2,c3``, must
not be comparable with any held level. That is a check over *every* held
level, so it cannot be a per-key compare. The protocol:

1. Pair inserts carry the *custom generation* the allocator saw when it last
   synced, and fail with :attr:`InsertOutcome.GENERATION_MOVED` when the
   store's generation differs or a custom reservation is in progress.
2. :meth:`Store.insert_custom` first makes further pair inserts fail (etcd:
   one txn that puts a lease-bound custom-lock key if absent and bumps the
   generation key; SQLite: ``BEGIN IMMEDIATE``), then reads every held
   level at a revision after that point, hands them to the allocator's
   ``check`` callback (which raises to refuse), then inserts the record,
   releases the lock and bumps the generation again. A crashed reserver's
   lock expires with its lease.

A pair insert either committed before step 2 (so ``check`` sees it) or is
refused after it; a custom reservation either committed before an
allocator's sync (so the allocator's index blocks every comparable pair) or
moved the generation (so the allocator's insert is refused and it resyncs).
"""

# INTERFACE-FROZEN

from __future__ import annotations

import enum
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q
from mcslabel.level import DEFAULT_SENSITIVITIES, Level

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


def _to_owners(value: Iterable[str]) -> tuple[str, ...]:
    if type(value) is tuple and len(value) == 1:
        return value  # the common case: one owner, already a tuple
    if isinstance(value, str):
        raise InvalidInput(f"owners must be a collection of strings, not the string {_q(value)}")
    return tuple(sorted(set(value)))


def _validate_owners(
    instance: Allocation, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    if not value:
        raise InvalidInput(f"allocation of {instance.level} has no owner")
    if len(value) > MAX_OWNERS:
        raise InvalidInput(f"allocation of {instance.level} has more than {MAX_OWNERS} owners")
    if len(value) > 1 and not instance.shared:
        raise InvalidInput(f"allocation of {instance.level} is not shared but has several owners")
    for owner in value:
        check_owner(owner)


def _validate_level(instance: Allocation, attribute: attrs.Attribute[Level], value: Level) -> None:
    if not isinstance(value, Level):
        raise InvalidInput(f"allocation level must be a Level, not {type(value).__name__}")
    if not value.categories:
        raise InvalidInput(f"level {value} has no categories and cannot be allocated")


def _validate_time(instance: Allocation, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{attribute.name} must be a finite number of seconds, got {_q(value)}")


def _validate_name(
    instance: Allocation, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is not None:
        check_name(value)


def _validate_persistent(
    instance: Allocation, attribute: attrs.Attribute[bool], value: bool
) -> None:
    if value and instance.expires is not None:
        raise InvalidInput(f"allocation of {instance.level} is persistent and cannot carry a lease")


@attrs.frozen
class Allocation:
    """One held level, as a store records it.

    ``owners`` is the reference count: every owner (``docker:<id>``,
    ``pid:<n>@<host>``, ``k8s-pod:<uid>``...) that shares the level on
    purpose; the level is freed when the last owner releases it. Only a
    ``shared`` allocation may have more than one owner.

    ``revision`` is the store's modification revision of the record
    (0 for a record not yet stored). It is what :meth:`Store.replace` and
    :meth:`Store.delete` compare against and is excluded from equality.
    """

    level: Level = attrs.field(validator=_validate_level)
    owners: tuple[str, ...] = attrs.field(converter=_to_owners, validator=_validate_owners)
    #: Unix time the level was first allocated.
    created: float = attrs.field(validator=_validate_time)
    #: Unix time after which :meth:`~mcslabel.Allocator.gc` frees it; None = no lease.
    expires: float | None = attrs.field(default=None, validator=_validate_time)
    #: Deterministic-allocation name (unique across the store), or None.
    name: str | None = attrs.field(default=None, validator=_validate_name)
    #: Whether further owners may join (pods, named allocations).
    shared: bool = False
    #: Host name of the allocator that created the record.
    host: str = ""
    #: True for a reserved level that is not an ``s0`` category pair.
    custom: bool = False
    #: True for labels of persistent data (volumes): never lease-bound, never expired by gc.
    persistent: bool = attrs.field(default=False, validator=_validate_persistent)
    #: Store modification revision; 0 before the record is stored.
    revision: int = attrs.field(default=0, eq=False)
    #: The store key: the level's canonical text (derived, computed once).
    key: str = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "key", level_key(self.level))

    @classmethod
    def trusted(
        cls,
        level: Level,
        owners: tuple[str, ...],
        created: float,
        *,
        expires: float | None = None,
        name: str | None = None,
        shared: bool = False,
        host: str = "",
        custom: bool = False,
        persistent: bool = False,
        revision: int = 0,
        key: str | None = None,
    ) -> Allocation:
        """A record built from values the caller has already validated.

        The allocation hot path: the allocator checks owner, name, ttl and
        level once at its public API edge, so running the validators again
        per record would only cost time. ``key`` defaults to
        :func:`level_key`; a caller that already has it passes it. Anything
        that comes from outside (a stored record, user input) goes through
        the validating constructor or :meth:`from_json` instead.
        """
        record = _new(cls)
        _set_level(record, level)
        _set_owners(record, owners)
        _set_created(record, created)
        _set_expires(record, expires)
        _set_name(record, name)
        _set_shared(record, shared)
        _set_host(record, host)
        _set_custom(record, custom)
        _set_persistent(record, persistent)
        _set_revision(record, revision)
        _set_key(record, level_key(level) if key is None else key)
        return record

    def with_revision(self, revision: int) -> Allocation:
        """This record at store revision ``revision``; skips re-validating the rest."""
        clone = _new(Allocation)
        _set_level(clone, self.level)
        _set_owners(clone, self.owners)
        _set_created(clone, self.created)
        _set_expires(clone, self.expires)
        _set_name(clone, self.name)
        _set_shared(clone, self.shared)
        _set_host(clone, self.host)
        _set_custom(clone, self.custom)
        _set_persistent(clone, self.persistent)
        _set_revision(clone, revision)
        _set_key(clone, self.key)
        return clone

    @property
    def refcount(self) -> int:
        return len(self.owners)

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict; :meth:`from_json` is its inverse (``revision`` excluded)."""
        return {
            "level": self.key,
            "owners": list(self.owners),
            "created": self.created,
            "expires": self.expires,
            "name": self.name,
            "shared": self.shared,
            "host": self.host,
            "custom": self.custom,
            "persistent": self.persistent,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object], *, revision: int = 0) -> Allocation:
        """Rebuild a record; raises :class:`~mcslabel.errors.InvalidInput` on a bad one."""
        try:
            level = _parse_stored_level(str(data["level"]))
            owners = data["owners"]
            if not isinstance(owners, list):
                raise InvalidInput("owners is not a list")
            created = data["created"]
            expires = data.get("expires")
            name = data.get("name")
            host = data.get("host", "")
            flags = {k: data.get(k, False) for k in ("shared", "custom", "persistent")}
            if not all(isinstance(v, bool) for v in flags.values()):
                raise InvalidInput("a flag is not a boolean")
            if not isinstance(host, str) or (name is not None and not isinstance(name, str)):
                raise InvalidInput("host or name is not a string")
            return cls(
                level=level,
                owners=owners,
                created=created,  # type: ignore[arg-type]
                expires=expires,  # type: ignore[arg-type]
                name=name,
                shared=flags["shared"],  # type: ignore[arg-type]
                host=host,
                custom=flags["custom"],  # type: ignore[arg-type]
                persistent=flags["persistent"],  # type: ignore[arg-type]
                revision=revision,
            )
        except KeyError as exc:
            raise InvalidInput(f"allocation record lacks field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"allocation record is malformed: {exc}") from None


_SLOTS = tuple(f.name for f in attrs.fields(Allocation))


def _slot_setter(cls: type, field: str) -> Callable[[object, object], None]:
    """A fast setter for ``field`` that bypasses the frozen class's ``__setattr__``.

    The slot's own descriptor (attrs classes are slotted) skips the generic
    attribute lookup of ``object.__setattr__``; both write the same slot.
    """
    descriptor = cls.__dict__.get(field)
    if isinstance(descriptor, types.MemberDescriptorType):
        return descriptor.__set__

    def setter(instance: object, value: object) -> None:
        object.__setattr__(instance, field, value)

    return setter


# trusted() and with_revision() write every field by hand: fail loudly if a field is added.
if _SLOTS != (
    "level",
    "owners",
    "created",
    "expires",
    "name",
    "shared",
    "host",
    "custom",
    "persistent",
    "revision",
    "key",
):  # pragma: no cover
    raise TypeError("Allocation fields changed: update trusted() and with_revision()")
_set_level = _slot_setter(Allocation, "level")
_set_owners = _slot_setter(Allocation, "owners")
_set_created = _slot_setter(Allocation, "created")
_set_expires = _slot_setter(Allocation, "expires")
_set_name = _slot_setter(Allocation, "name")
_set_shared = _slot_setter(Allocation, "shared")
_set_host = _slot_setter(Allocation, "host")
_set_custom = _slot_setter(Allocation, "custom")
_set_persistent = _slot_setter(Allocation, "persistent")
_set_revision = _slot_setter(Allocation, "revision")
_set_key = _slot_setter(Allocation, "key")


@attrs.frozen
class Snapshot:
    """Every held allocation as of one store revision."""

    #: Store revision the read was taken at; pass it to :meth:`Store.changes`.
    revision: int
    #: Custom generation at that revision; pass it to :meth:`Store.insert`.
    generation: int
    allocations: tuple[Allocation, ...]


@attrs.frozen
class Changes:
    """What changed after a revision: the current record of each changed key.

    ``changed`` maps a level key to its record now, or to None when the key
    was deleted. Keys changed several times appear once, in their latest
    state, so applying a ``Changes`` twice is harmless.
    """

    revision: int
    generation: int
    changed: Mapping[str, Allocation | None]


class InsertOutcome(enum.Enum):
    """Result of :meth:`Store.insert` and :meth:`Store.insert_custom`."""

    #: The record is stored.
    INSERTED = "inserted"
    #: Another record holds the level key; nothing written.
    KEY_HELD = "key-held"
    #: Another record holds the allocation name; nothing written.
    NAME_HELD = "name-held"
    #: The custom generation moved (or a custom reservation is in progress); resync, retry.
    GENERATION_MOVED = "generation-moved"


#: The allocator's dominance check for :meth:`Store.insert_custom`: it raises
#: an :class:`~mcslabel.errors.AllocationError` to refuse the reservation.
CustomCheck = Callable[[Iterable[Allocation]], None]


@runtime_checkable
class Store(Protocol):
    """A label registry. Implementations: memory, SQLite, etcd.

    Every method is atomic on its own and safe to call from several
    processes (and hosts, for distributed stores) at once. Methods raise
    :class:`~mcslabel.errors.StoreError` (or a subclass:
    ``StoreUnavailable`` when no backend answers, ``StoreCorrupt`` for a
    damaged record or file; nothing is ever overwritten or reset to recover).
    Revisions increase strictly with every write, store-wide.
    """

    @property
    def url(self) -> str:
        """The URL that reopens this store (``sqlite:///path``, ``memory://``...)."""
        ...

    def snapshot(self) -> Snapshot:
        """Every allocation, the revision and the custom generation, read consistently."""
        ...

    def changes(self, since: int) -> Changes | None:
        """Records changed after revision ``since`` (deletions as None).

        Returns None when the store no longer has the history back to
        ``since`` (compaction); the caller then takes a :meth:`snapshot`.
        Cost is proportional to the number of changes, not to store size.
        """
        ...

    def get(self, level: Level) -> Allocation | None:
        """The current record for ``level``, or None. A fresh (linearizable) read."""
        ...

    def insert(self, allocation: Allocation, *, generation: int) -> InsertOutcome:
        """Put ``allocation`` if its level key (and its name, if any) are free.

        Stores only when the custom generation still equals ``generation``
        and no custom reservation is in progress; otherwise returns
        ``GENERATION_MOVED``. ``KEY_HELD`` takes precedence over
        ``NAME_HELD``, which takes precedence over ``GENERATION_MOVED``.
        Used for pair allocations and for reservations of pair levels.
        """
        ...

    def insert_custom(self, allocation: Allocation, check: CustomCheck) -> InsertOutcome:
        """Put a custom (non-pair) reservation after ``check`` accepts every held level.

        Blocks pair inserts, reads every held allocation (excluding none),
        calls ``check`` with them (it raises to refuse; the exception
        propagates and nothing is written), then stores ``allocation`` if its
        key and name are free and moves the custom generation so that
        allocators synced before it resync. Returns ``INSERTED``,
        ``KEY_HELD`` or ``NAME_HELD``; never ``GENERATION_MOVED``.
        """
        ...

    def replace(self, current: Allocation, new: Allocation) -> bool:
        """Compare-and-swap: store ``new`` if the key's record is still at ``current.revision``.

        ``new.level`` must equal ``current.level`` (else InvalidInput). A
        changed ``name`` must stay unique (returns False if taken). Returns
        False, writing nothing, when the record changed or vanished.
        """
        ...

    def delete(self, current: Allocation) -> bool:
        """Compare-and-delete: remove the record if still at ``current.revision``."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards. Idempotent."""
        ...


__all__ = [
    "MAX_OWNERS",
    "MAX_OWNER_LENGTH",
    "Allocation",
    "Changes",
    "InsertOutcome",
    "Snapshot",
    "Store",
    "check_name",
    "check_owner",
    "level_key",
    "trusted_pair_level",
]
