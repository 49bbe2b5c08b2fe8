"""The SQLite store's file: path checks, opening, the schema and its version.

Everything :class:`~mcslabel.allocation.stores.sqlite.SQLiteStore` does
before its first transaction, and the mapping of SQLite and OS errors to
typed store errors: an unknown or damaged file is refused and left
untouched, never overwritten, migrated down or reset. May import: the model
and :mod:`mcslabel.allocation.stores`, and :mod:`mcslabel.allocation.peek`
(the default path, shared with the lean reader).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from mcslabel.allocation.peek import SYSTEM_STORE_PATH, default_sqlite_path
from mcslabel.errors import InvalidInput, StoreCorrupt, StoreError, StoreNotFound, StoreUnavailable
from mcslabel.errors import show_input as _q

#: Schema version this code writes; a newer file is refused, never downgraded.
SCHEMA_VERSION = 1
#: Where root keeps the host-wide registry.
SYSTEM_PATH = Path(SYSTEM_STORE_PATH)
#: Seconds a writer waits for another process's transaction before giving up.
DEFAULT_BUSY_TIMEOUT = 30.0

_SQLITE_MAGIC = b"SQLite format 3\x00"
Synchronous = Literal["full", "normal"]

_SCHEMA = """
CREATE TABLE mcslabel_schema (version INTEGER NOT NULL);
CREATE TABLE mcslabel_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE allocations (
    key TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    record TEXT NOT NULL,
    rev INTEGER NOT NULL
);
CREATE INDEX allocations_rev ON allocations (rev);
CREATE TABLE tombstones (key TEXT PRIMARY KEY, rev INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX tombstones_rev ON tombstones (rev);
INSERT INTO mcslabel_meta VALUES ('revision', 0), ('generation', 0);
"""


def default_path() -> Path:
    """``/var/lib/mcslabel/labels.db`` for root, else ``$XDG_STATE_HOME/mcslabel/labels.db``."""
    return Path(default_sqlite_path())


def store_error(exc: sqlite3.Error, path: Path, doing: str) -> StoreError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        if "locked" in text or "busy" in text:
            return StoreUnavailable(
                f"SQLite store {path}: {doing}: {text} (another process holds it)"
            )
        hint = ""
        if "readonly" in text or "unable to open" in text:
            hint = " (the file or its directory is not writable, or is on a read-only mount)"
        return StoreError(f"SQLite store {path}: {doing}: {text}{hint}")
    if isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return StoreError(f"SQLite store {path}: {doing}: {text}")  # misuse, not damage
    return StoreCorrupt(
        f"SQLite store {path} is damaged ({text}) while {doing}; it was left untouched"
    )


def check_path(path: Path) -> None:
    text = str(path)
    if "\x00" in text:
        raise InvalidInput(f"SQLite store path {_q(text)} contains a NUL byte")
    if not path.is_absolute():
        raise InvalidInput(f"SQLite store path {_q(text)} must be absolute")
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        raise InvalidInput(f"SQLite store path {_q(text)} cannot be encoded") from None
    if len(encoded) >= 4096:
        raise InvalidInput(f"SQLite store path {_q(text)} is longer than PATH_MAX")
    if any(len(part) > 255 for part in encoded.split(b"/")):
        raise InvalidInput(f"SQLite store path {_q(text)} has a component over 255 bytes")


def path_error(path: Path, doing: str, exc: OSError) -> StoreError:
    """A typed error for an OSError met on ``path``; bad paths are InvalidInput too."""
    reason = exc.strerror or str(exc)
    message = f"cannot {doing} SQLite store {path}: {reason}"
    if exc.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST, errno.ELOOP, errno.EINVAL):
        return StoreNotFound(message + " (not a usable path)")
    return StoreError(message)


def on_read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def connect(path: Path, busy_timeout: float, *, read_only: bool) -> sqlite3.Connection:
    """A connection to ``path``; read-only ones fall back to ``immutable`` on a read-only mount."""

    def open_(target: str | Path, uri: bool = False) -> sqlite3.Connection:
        return sqlite3.connect(
            target,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=uri,
        )

    if not read_only:
        return open_(path)
    uri = "file:" + quote("/" + str(path).lstrip("/"))
    conn = open_(uri + "?mode=ro", uri=True)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if not on_read_only_mount(path):
            raise
    # A WAL database on a read-only mount cannot get its -shm file: nobody can
    # write there either, so reading it as immutable is exact.
    return open_(uri + "?immutable=1", uri=True)


def check_file(path: Path, *, create: bool, read_only: bool) -> bool:
    """Whether the file exists (checking what it is); prepares its directory if asked."""
    try:
        if path.is_dir():
            raise StoreError(f"SQLite store path {path} is a directory, not a database file")
        if path.exists():
            if not path.is_file():  # a FIFO or device would block or fail obscurely on open
                raise StoreError(f"SQLite store path {path} is not a regular file")
            with path.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
            if head and head != _SQLITE_MAGIC:
                raise StoreCorrupt(
                    f"{path} is not an SQLite database (bad header); it was left untouched"
                )
            return True
    except OSError as exc:
        raise path_error(path, "read", exc) from None
    if not create:
        if read_only:
            return False
        raise StoreNotFound(
            f"no SQLite store at {path}; pass create=True (CLI: --create-store) to create one"
        )
    try:
        path.parent.mkdir(mode=0o755 if os.geteuid() == 0 else 0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error(path, "create the directory of", exc) from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create SQLite store {path}: directory is not writable")
    return False


def tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    return {row[0] for row in rows}


def _not_ours(path: Path, found: set[str]) -> StoreCorrupt:
    return StoreCorrupt(
        f"{path} is an SQLite database but not an mcslabel store"
        f" (tables: {', '.join(sorted(found))[:80]}); it was left untouched"
    )


def check_owned(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse an SQLite file that holds tables but not mcslabel's."""
    found = tables(conn)
    if found and "mcslabel_schema" not in found:
        raise _not_ours(path, found)


def check_version(conn: sqlite3.Connection, path: Path) -> None:
    """For read-only use: the file must already be an mcslabel store of a known version."""
    if "mcslabel_schema" not in tables(conn):
        raise StoreCorrupt(f"{path} is an empty SQLite database, not an mcslabel store")
    check_schema_version(conn, path)


def init_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in an empty file (one transaction), then check its version."""
    if "mcslabel_schema" not in tables(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = tables(conn)
            if not found:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO mcslabel_schema VALUES (?)", (SCHEMA_VERSION,))
                conn.execute("COMMIT")
                return
            conn.execute("ROLLBACK")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if "mcslabel_schema" not in found:
            raise _not_ours(path, found)
    check_schema_version(conn, path)


def check_schema_version(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a newer schema (upgrade mcslabel) or a damaged version table."""
    rows = conn.execute("SELECT version FROM mcslabel_schema").fetchall()
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        raise StoreCorrupt(f"{path}: the schema version table is damaged; left untouched")
    version = rows[0][0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this mcslabel"
            f" understands ({SCHEMA_VERSION}); upgrade mcslabel"
        )
    if version < 1:
        raise StoreCorrupt(f"{path}: schema version {version} is invalid; left untouched")


__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "SYSTEM_PATH",
    "Synchronous",
    "check_file",
    "check_owned",
    "check_path",
    "check_schema_version",
    "check_version",
    "connect",
    "default_path",
    "init_schema",
    "on_read_only_mount",
    "path_error",
    "store_error",
    "tables",
]
