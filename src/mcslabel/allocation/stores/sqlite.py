"""The embedded default store: one SQLite file per host, safe across processes.

Every write is one ``BEGIN IMMEDIATE`` transaction (SQLite's single writer
lock), the journal is WAL so readers never block the writer, and
``synchronous=FULL`` makes a returned allocation survive power loss. A file
that is not an mcslabel database, or is damaged, raises
:class:`~mcslabel.errors.StoreCorrupt`; nothing is ever overwritten, migrated
down or reset to recover.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from mcslabel.allocation.stores.base import (
    Allocation,
    Changes,
    CustomCheck,
    InsertOutcome,
    InsertResult,
    Snapshot,
    record_key,
)
from mcslabel.errors import (
    InvalidInput,
    StoreCorrupt,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
)
from mcslabel.errors import show_input as _q
from mcslabel.level import Level

#: Schema version this code writes; a newer file is refused, never downgraded.
SCHEMA_VERSION = 1
#: Where root keeps the host-wide registry.
SYSTEM_PATH = Path("/var/lib/mcslabel/labels.db")
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
    if os.geteuid() == 0:
        return SYSTEM_PATH
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "mcslabel" / "labels.db"


def _store_error(exc: sqlite3.Error, path: Path, doing: str) -> StoreError:
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


def _check_path(path: Path) -> None:
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


def _path_error(path: Path, doing: str, exc: OSError) -> StoreError:
    """A typed error for an OSError met on ``path``; bad paths are InvalidInput too."""
    reason = exc.strerror or str(exc)
    message = f"cannot {doing} SQLite store {path}: {reason}"
    if exc.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP, errno.EINVAL):
        return StoreNotFound(message + " (not a usable path)")
    return StoreError(message)


def _on_read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class SQLiteStore:
    """A :class:`~mcslabel.allocation.stores.base.Store` in one SQLite file.

    Open one instance per process (never share a connection across
    ``fork``). Thread-safe within a process.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: Synchronous = "full",
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise InvalidInput(f"synchronous must be 'full' or 'normal', not {_q(synchronous)}")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)):
            raise InvalidInput(f"busy_timeout must be a number of seconds, not {_q(busy_timeout)}")
        if not 0 <= busy_timeout <= 86400:  # also refuses NaN
            raise InvalidInput(f"busy_timeout must be 0 to 86400 seconds, not {busy_timeout}")
        if not isinstance(path, (str, os.PathLike, type(None))):
            raise InvalidInput(f"SQLite store path must be a path, not {_q(path)}")
        self.path = Path(path) if path is not None else default_path()
        _check_path(self.path)
        self.synchronous: Synchronous = synchronous
        #: Opened for reading only: writes raise StoreError, nothing is created.
        self.read_only = bool(read_only)
        self._lock = threading.RLock()
        self._closed = False
        exists = self._check_file(create=create and not read_only)
        if not exists and self.read_only:
            raise StoreNotFound(f"no SQLite store at {self.path} (nothing to read)")
        try:
            self._conn = self._connect(busy_timeout)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path, "opening") from None
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Identify the file before anything that writes to it (WAL switch included).
            self._check_owned()
            if self.read_only:
                self._check_version()
            else:
                self._conn.execute("PRAGMA journal_mode = WAL").fetchone()
                self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
                self._init_schema()
        except sqlite3.Error as exc:
            self._conn.close()
            raise _store_error(exc, self.path, "opening") from None
        except StoreError:
            self._conn.close()
            raise

    # --- opening --------------------------------------------------------

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        def connect(target: str | Path, uri: bool = False) -> sqlite3.Connection:
            return sqlite3.connect(
                target,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=uri,
            )

        if not self.read_only:
            return connect(self.path)
        uri = "file:" + quote("/" + str(self.path).lstrip("/"))
        conn = connect(uri + "?mode=ro", uri=True)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if not _on_read_only_mount(self.path):
                raise
        # A WAL database on a read-only mount cannot get its -shm file: nobody can
        # write there either, so reading it as immutable is exact.
        return connect(uri + "?immutable=1", uri=True)

    def _check_file(self, *, create: bool) -> bool:
        """Whether the file exists (checking what it is); prepares its directory if asked."""
        path = self.path
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
            raise _path_error(path, "read", exc) from None
        if not create:
            if self.read_only:
                return False
            raise StoreNotFound(
                f"no SQLite store at {path}; pass create=True (CLI: --create-store) to create one"
            )
        try:
            path.parent.mkdir(
                mode=0o755 if os.geteuid() == 0 else 0o700, parents=True, exist_ok=True
            )
        except OSError as exc:
            raise _path_error(path, "create the directory of", exc) from None
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreError(f"cannot create SQLite store {path}: directory is not writable")
        return False

    def _tables(self) -> set[str]:
        rows = self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        return {row[0] for row in rows}

    def _check_owned(self) -> None:
        tables = self._tables()
        if tables and "mcslabel_schema" not in tables:
            raise StoreCorrupt(
                f"{self.path} is an SQLite database but not an mcslabel store"
                f" (tables: {', '.join(sorted(tables))[:80]}); it was left untouched"
            )

    def _check_version(self) -> None:
        if "mcslabel_schema" not in self._tables():
            raise StoreCorrupt(f"{self.path} is an empty SQLite database, not an mcslabel store")
        self._check_schema_version()

    def _init_schema(self) -> None:
        conn = self._conn
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "mcslabel_schema" not in tables:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tables = {
                    row[0]
                    for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                if not tables:
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
            if "mcslabel_schema" not in tables:
                raise StoreCorrupt(
                    f"{self.path} is an SQLite database but not an mcslabel store"
                    f" (tables: {', '.join(sorted(tables))[:80]}); it was left untouched"
                )
        self._check_schema_version()

    def _check_schema_version(self) -> None:
        rows = self._conn.execute("SELECT version FROM mcslabel_schema").fetchall()
        if len(rows) != 1 or not isinstance(rows[0][0], int):
            raise StoreCorrupt(f"{self.path}: the schema version table is damaged; left untouched")
        version = rows[0][0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this mcslabel"
                f" understands ({SCHEMA_VERSION}); upgrade mcslabel"
            )
        if version < 1:
            raise StoreCorrupt(f"{self.path}: schema version {version} is invalid; left untouched")

    # --- plumbing -------------------------------------------------------

    @property
    def url(self) -> str:
        return f"sqlite://{self.path}"

    @contextmanager
    def _transaction(self, mode: str, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise StoreError(f"the SQLite store {self.path} is closed")
            if self.read_only and mode != "DEFERRED":
                raise StoreError(f"the SQLite store {self.path} is open read-only: {doing}")
            conn = self._conn
            try:
                conn.execute(f"BEGIN {mode}")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    # SQLite has rolled back itself when the connection is unusable.
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise _store_error(exc, self.path, doing) from None

    def _meta(self, conn: sqlite3.Connection) -> tuple[int, int]:
        values = dict(conn.execute("SELECT name, value FROM mcslabel_meta").fetchall())
        try:
            revision, generation = values["revision"], values["generation"]
        except KeyError:
            raise StoreCorrupt(f"{self.path}: the meta table is damaged; left untouched") from None
        if not isinstance(revision, int) or not isinstance(generation, int):
            raise StoreCorrupt(f"{self.path}: the meta table is damaged; left untouched")
        return revision, generation

    def _bump(self, conn: sqlite3.Connection, current: int | None = None) -> int:
        revision = (self._meta(conn)[0] if current is None else current) + 1
        conn.execute("UPDATE mcslabel_meta SET value = ? WHERE name = 'revision'", (revision,))
        return revision

    def _decode(self, key: str, record: str, rev: int) -> Allocation:
        try:
            data = json.loads(record)
            if not isinstance(data, dict):
                raise InvalidInput("record is not a JSON object")
            allocation = Allocation.from_dict(data, revision=rev)
        except (ValueError, InvalidInput) as exc:
            raise StoreCorrupt(
                f"{self.path}: the record for {_q(key)} is damaged ({exc}); left untouched"
            ) from None
        if allocation.key != key:
            raise StoreCorrupt(
                f"{self.path}: the record stored under {_q(key)} is for {allocation.key}"
            )
        return allocation

    @staticmethod
    def _encode(allocation: Allocation) -> str:
        return json.dumps(allocation.to_dict(), separators=(",", ":"))

    # --- Store ----------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._transaction("DEFERRED", "reading all allocations") as conn:
            revision, generation = self._meta(conn)
            rows = conn.execute("SELECT key, record, rev FROM allocations").fetchall()
        return Snapshot(revision, generation, tuple(self._decode(*row) for row in rows))

    def changes(self, since: int) -> Changes | None:
        with self._transaction("DEFERRED", "reading changes") as conn:
            revision, generation = self._meta(conn)
            rows = conn.execute(
                "SELECT key, record, rev FROM allocations WHERE rev > ?", (since,)
            ).fetchall()
            gone = conn.execute("SELECT key FROM tombstones WHERE rev > ?", (since,)).fetchall()
        changed: dict[str, Allocation | None] = {key: None for (key,) in gone}
        for row in rows:
            changed[row[0]] = self._decode(*row)
        return Changes(revision, generation, changed)

    def get(self, level: Level, *, in_use: bool = False) -> Allocation | None:
        key = record_key(level, in_use=in_use)
        with self._transaction("DEFERRED", f"reading {key}") as conn:
            row = conn.execute(
                "SELECT key, record, rev FROM allocations WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else self._decode(*row)

    def _free_for(self, conn: sqlite3.Connection, allocation: Allocation) -> InsertOutcome:
        key = allocation.key
        if conn.execute("SELECT 1 FROM allocations WHERE key = ?", (key,)).fetchone():
            return InsertOutcome.KEY_HELD
        if (
            allocation.name is not None
            and conn.execute(
                "SELECT 1 FROM allocations WHERE name = ?", (allocation.name,)
            ).fetchone()
        ):
            return InsertOutcome.NAME_HELD
        return InsertOutcome.INSERTED

    def _write_new(
        self, conn: sqlite3.Connection, allocation: Allocation, current: int | None = None
    ) -> InsertResult:
        rev = self._bump(conn, current)
        conn.execute(
            "INSERT INTO allocations (key, name, record, rev) VALUES (?, ?, ?, ?)",
            (allocation.key, allocation.name, self._encode(allocation), rev),
        )
        conn.execute("DELETE FROM tombstones WHERE key = ?", (allocation.key,))
        return InsertResult(InsertOutcome.INSERTED, rev)

    def insert(self, allocation: Allocation, *, generation: int) -> InsertResult:
        with self._transaction("IMMEDIATE", f"inserting {allocation.key}") as conn:
            outcome = self._free_for(conn, allocation)
            if outcome is not InsertOutcome.INSERTED:
                return InsertResult.refused(outcome)
            revision, current_generation = self._meta(conn)
            if current_generation != generation:
                return InsertResult.refused(InsertOutcome.GENERATION_MOVED)
            return self._write_new(conn, allocation, revision)

    def insert_custom(self, allocation: Allocation, check: CustomCheck) -> InsertResult:
        with self._transaction("IMMEDIATE", f"reserving {allocation.key}") as conn:
            rows = conn.execute("SELECT key, record, rev FROM allocations").fetchall()
            check(self._decode(*row) for row in rows)
            outcome = self._free_for(conn, allocation)
            if outcome is not InsertOutcome.INSERTED:
                return InsertResult.refused(outcome)
            result = self._write_new(conn, allocation)
            conn.execute("UPDATE mcslabel_meta SET value = value + 1 WHERE name = 'generation'")
            return result

    def replace(self, current: Allocation, new: Allocation) -> bool:
        if new.level != current.level:
            raise InvalidInput(f"replace cannot change level {current.level} to {new.level}")
        key = current.key
        with self._transaction("IMMEDIATE", f"updating {key}") as conn:
            row = conn.execute("SELECT rev FROM allocations WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] != current.revision:
                return False
            if new.name is not None:
                holder = conn.execute(
                    "SELECT key FROM allocations WHERE name = ?", (new.name,)
                ).fetchone()
                if holder is not None and holder[0] != key:
                    return False
            rev = self._bump(conn)
            conn.execute(
                "UPDATE allocations SET name = ?, record = ?, rev = ? WHERE key = ?",
                (new.name, self._encode(new), rev, key),
            )
            return True

    def delete(self, current: Allocation) -> bool:
        key = current.key
        with self._transaction("IMMEDIATE", f"releasing {key}") as conn:
            row = conn.execute("SELECT rev FROM allocations WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] != current.revision:
                return False
            rev = self._bump(conn)
            conn.execute("DELETE FROM allocations WHERE key = ?", (key,))
            conn.execute("INSERT OR REPLACE INTO tombstones (key, rev) VALUES (?, ?)", (key, rev))
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

    # --- SQLite only ----------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """SQLite's ``integrity_check`` findings plus undecodable records; [] when sound."""
        with self._transaction("DEFERRED", "checking integrity") as conn:
            found = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
            rows = conn.execute("SELECT key, record, rev FROM allocations").fetchall()
        problems = [] if found == ["ok"] else found
        for row in rows:
            try:
                self._decode(*row)
            except StoreCorrupt as exc:
                problems.append(str(exc))
        return problems

    @classmethod
    def from_url(
        cls, url: str, *, create: bool | None = None, read_only: bool = False
    ) -> SQLiteStore:
        """Open ``sqlite:///abs/path`` (``?synchronous=normal`` trades power-loss safety).

        ``create=None`` creates the default store (``sqlite:///``) on first use
        but refuses a missing file at an explicit path (StoreNotFound).
        """
        rest = url[len("sqlite://") :]
        path, _, query = rest.partition("?")
        options: dict[str, str] = {}
        for item in filter(None, query.split("&")):
            name, sep, value = item.partition("=")
            if not sep or name not in ("synchronous", "busy_timeout"):
                raise InvalidInput(f"unknown SQLite store option {_q(item)} in {_q(url)}")
            options[name] = value
        if path in ("", "/"):
            store_path: Path | None = None
        elif not path.startswith("/"):
            raise InvalidInput(f"SQLite store URL {_q(url)} needs an absolute path: sqlite:///path")
        else:
            store_path = Path(path)
        sync = options.get("synchronous", "full")
        if sync not in ("full", "normal"):
            raise InvalidInput(f"synchronous must be 'full' or 'normal' in {_q(url)}")
        try:
            timeout = float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))
        except ValueError:
            raise InvalidInput(f"busy_timeout must be a number of seconds in {_q(url)}") from None
        return cls(
            store_path,
            busy_timeout=timeout,
            synchronous=sync,  # type: ignore[arg-type]
            create=store_path is None if create is None else create,
            read_only=read_only,
        )


__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "SYSTEM_PATH",
    "SQLiteStore",
    "default_path",
]
