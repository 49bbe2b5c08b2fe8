"""Who holds a level, read from an SQLite store file without the store classes.

``mcslabel relabel --level L --trust-marker`` on an unchanged tree is over in
a few milliseconds, and asking the store whether its owner holds ``L`` must
not cost more than the rest: :func:`sqlite_owners` reads the one record with
``sqlite3`` alone (no ``attrs``, no allocator, no schema set-up) and checks
it with the store's own field checks (:mod:`mcslabel.allocation._fields`),
reading the JSON record with SQLite's own JSON functions.

It answers only what it is sure of. Every other case (a file that is not a
store of the schema version this code knows, a busy or damaged file, one the
store could not open for writing, an odd path, a record in any but the
canonical shape) is ``None``: ask the store properly
(:func:`mcslabel.allocation.holding`), which also says what is wrong.
May import: :mod:`mcslabel.errors` and :mod:`mcslabel.allocation._fields`.
"""

from __future__ import annotations

import os
import stat

from mcslabel.allocation._fields import checked_fields
from mcslabel.errors import InvalidInput

#: The schema version this reader knows (``_sqlite_file.SCHEMA_VERSION``; a test keeps them equal).
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
# Paths put into a file: URI as they are (anything else is not read here).
_URI_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-")
_FIELDS = frozenset(
    {"level", "owners", "created", "expires", "name", "shared", "host", "custom", "persistent"}
)


#: Where root keeps the host-wide registry.
SYSTEM_STORE_PATH = "/var/lib/mcslabel/labels.db"


def default_sqlite_path() -> str:
    """``/var/lib/mcslabel/labels.db`` for root, else ``$XDG_STATE_HOME/mcslabel/labels.db``."""
    if os.geteuid() == 0:
        return SYSTEM_STORE_PATH
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "mcslabel", "labels.db")


def sqlite_file(url: str) -> str:
    """The file an ``sqlite://`` store URL names (its ``?options`` left out):
    :func:`default_sqlite_path` for ``sqlite://`` and ``sqlite:///``."""
    path = url[len("sqlite://") :].partition("?")[0]
    return default_sqlite_path() if path in ("", "/") else path


def canonical_pair(text: str) -> bool:
    """``text`` is an ``s0`` category pair as stores key it (``s0:c1,c2``, ``c1 < c2 <= c1023``)."""
    head, sep, rest = text.partition(":c")
    a, comma, b = rest.partition(",c")
    if head != "s0" or not sep or not comma:
        return False
    for digits in (a, b):
        if not (digits.isascii() and digits.isdigit()) or (len(digits) > 1 and digits[0] == "0"):
            return False
    return int(a) < int(b) <= 1023


def sqlite_owners(path: str, key: str) -> tuple[str, ...] | None:
    """The owners of the record of ``key`` (a :func:`canonical_pair`) in the
    SQLite store at absolute ``path``; ``()`` when it has no such record;
    None when this reader cannot be sure (see the module docs)."""
    if not canonical_pair(key) or not path.startswith("/") or "//" in path:
        return None
    if not set(path) <= _URI_SAFE:
        return None
    import sqlite3  # on use: only this reader needs it

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        # The store opens its file for writing (and switches it to WAL): a file it
        # could not open so gets a warning there, so it is not read here.
        directory = os.path.dirname(path)
        if not os.access(path, os.W_OK) or not os.access(directory, os.W_OK | os.X_OK):
            return None
        with open(path, "rb") as fh:
            if fh.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                return None
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0)
    except (OSError, sqlite3.Error):
        return None
    try:
        versions = conn.execute("SELECT version FROM mcslabel_schema").fetchall()
        if len(versions) != 1 or type(versions[0][0]) is not int:
            return None  # the store says the version table is damaged
        if versions[0][0] != SCHEMA_VERSION:
            return None
        row = conn.execute(_RECORD_SQL, (key,)).fetchone()
        if row is None:
            return ()
        record, rev, valid, kind = row
        # What Python's json reads as the store does: one canonical JSON object (no
        # JSON5, no text after a NUL, which SQLite's JSON functions would not see).
        if not isinstance(record, str) or "\0" in record or valid != 1 or kind != "object":
            return None
        if type(rev) is not int or rev < 0:
            return None  # the store's revision check refuses it
        # The record's fields through SQLite's JSON functions: no json (nor re) to import.
        fields = conn.execute(_FIELDS_SQL, (key,)).fetchall()
        owners = conn.execute(_OWNERS_SQL, (key,)).fetchall()
    except (sqlite3.Error, ValueError):  # ValueError: text that is not UTF-8
        return None
    finally:
        conn.close()
    return _owners_of(fields, owners, key)


_RECORD_SQL = (
    "SELECT record, rev, json_valid(record), json_type(record) FROM allocations WHERE key = ?"
)
_FIELDS_SQL = (
    "SELECT j.key, j.type, j.atom FROM allocations AS a, json_each(a.record) AS j WHERE a.key = ?"
)
_OWNERS_SQL = (
    "SELECT j.type, j.atom FROM allocations AS a, json_each(a.record, '$.owners') AS j"
    " WHERE a.key = ?"
)
_NUMBER = frozenset({"integer", "real"})
_BOOL = {"true": True, "false": False}


def _owners_of(
    fields: list[tuple[object, str, object]], owners: list[tuple[str, object]], key: str
) -> tuple[str, ...] | None:
    """The owners of a record of ``key`` whose top-level ``fields`` and ``owners``
    entries (``json_each`` rows) make a valid allocation, else None."""
    types = {name: kind for name, kind, _ in fields}
    atoms = {name: atom for name, _, atom in fields}
    if len(types) != len(fields) or not set(types) <= _FIELDS:
        return None  # a repeated or unknown field: ask the store
    if types.get("level") != "text" or atoms["level"] != key or types.get("owners") != "array":
        return None
    if types.get("created") not in _NUMBER or any(kind != "text" for kind, _ in owners):
        return None
    values: dict[str, object] = {}
    for name, default, kinds in (
        ("expires", None, _NUMBER | {"null"}),
        ("name", None, {"text", "null"}),
        ("host", "", {"text"}),
    ):
        if name in types and types[name] not in kinds:
            return None
        values[name] = atoms.get(name, default)
    for name in ("shared", "custom", "persistent"):
        if types.get(name, "false") not in _BOOL:
            return None
        values[name] = _BOOL[types.get(name, "false")]
    try:
        return checked_fields(
            key,
            [str(atom) for _, atom in owners],
            atoms["created"],
            expires=values["expires"],
            name=values["name"],
            shared=values["shared"],
            host=values["host"],
            custom=values["custom"],
            persistent=values["persistent"],
            in_use=False,
        )
    except InvalidInput:
        return None


__all__ = [
    "SCHEMA_VERSION",
    "SYSTEM_STORE_PATH",
    "canonical_pair",
    "default_sqlite_path",
    "sqlite_file",
    "sqlite_owners",
]
