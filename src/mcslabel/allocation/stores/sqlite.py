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
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcslabel.allocation.stores._sqlite_file import (
    DEFAULT_BUSY_TIMEOUT,
    SCHEMA_VERSION,
    SYSTEM_PATH,
    Synchronous,
    check_file,
    check_owned,
    check_path,
    check_version,
    connect,
    default_path,
    init_schema,
    store_error,
)
from mcslabel.allocation.stores.base import (
    Allocation,
    Changes,
    CustomCheck,
    InsertOutcome,
    InsertResult,
    Snapshot,
    record_key,
)
from mcslabel.errors import InvalidInput, StoreCorrupt, StoreError, StoreNotFound
from mcslabel.errors import show_input as _q
from mcslabel.level import Level


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
        check_path(self.path)
        self.synchronous: Synchronous = synchronous
        #: Opened for reading only: writes raise StoreError, nothing is created.
        self.read_only = bool(read_only)
        self._lock = threading.RLock()
        self._closed = False
        exists = check_file(self.path, create=create and not read_only, read_only=self.read_only)
        if not exists and self.read_only:
            raise StoreNotFound(f"no SQLite store at {self.path} (nothing to read)")
        try:
            self._conn = connect(self.path, busy_timeout, read_only=self.read_only)
        except sqlite3.Error as exc:
            raise store_error(exc, self.path, "opening") from None
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Identify the file before anything that writes to it (WAL switch included).
            check_owned(self._conn, self.path)
            if self.read_only:
                check_version(self._conn, self.path)
            else:
                self._conn.execute("PRAGMA journal_mode = WAL").fetchone()
                self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
                init_schema(self._conn, self.path)
        except sqlite3.Error as exc:
            self._conn.close()
            raise store_error(exc, self.path, "opening") from None
        except StoreError:
            self._conn.close()
            raise

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
                raise store_error(exc, self.path, doing) from None

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

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
