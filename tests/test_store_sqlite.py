"""SQLiteStore on real files with real concurrent processes; open_store URLs."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcslabel.allocation.allocator import Allocator
from mcslabel.allocation.stores import STORE_ENV, open_store, store_url
from mcslabel.allocation.stores.base import Allocation, Store
from mcslabel.allocation.stores.memory import MemoryStore
from mcslabel.allocation.stores.sqlite import SCHEMA_VERSION, SQLiteStore, default_path
from mcslabel.errors import (
    InvalidInput,
    MCSLabelError,
    StoreCorrupt,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
)
from mcslabel.level import Level

# --- concurrency with real processes ---------------------------------------


def _allocate_many(path: str, count: int, owner: str) -> list[str]:
    alloc = Allocator(SQLiteStore(path), categories=256)
    return [str(alloc.allocate(owner).level) for _ in range(count)]


def test_four_processes_times_1000_allocations_no_duplicates(tmp_path: Path) -> None:
    path = str(tmp_path / "labels.db")
    SQLiteStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_allocate_many, [(path, 1000, f"proc:{i}") for i in range(4)])
    levels = [level for chunk in results for level in chunk]
    assert len(levels) == 4000
    assert len(set(levels)) == 4000
    store = SQLiteStore(path)
    stored = store.snapshot().allocations
    assert len(stored) == 4000 and {a.key for a in stored} == set(levels)
    for i, chunk in enumerate(results):
        assert {a.key for a in stored if a.owners == (f"proc:{i}",)} == set(chunk)
    assert store.integrity_problems() == []


_LOOP = """
import sys
from mcslabel.allocation.allocator import Allocator
from mcslabel.allocation.stores.sqlite import SQLiteStore
alloc = Allocator(SQLiteStore(sys.argv[1]), categories=256)
print("ready", flush=True)
n = 0
while True:
    alloc.allocate(sys.argv[2])
    n += 1
    if n == 20:
        print("allocating", flush=True)
    if n % 50 == 0:
        alloc.release(alloc.owned_by(sys.argv[2])[0].level)
"""


def test_kill_9_mid_allocation_leaves_the_database_consistent(tmp_path: Path) -> None:
    path = str(tmp_path / "labels.db")
    SQLiteStore(path).close()
    victims = [
        subprocess.Popen(
            [sys.executable, "-c", _LOOP, path, f"loop:{i}"], stdout=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    try:
        for victim in victims:
            assert victim.stdout is not None and victim.stdout.readline() == "ready\n"
        # Wait for progress rather than a fixed time: a loaded machine may be slow to fsync.
        for victim in victims:
            assert victim.stdout is not None and victim.stdout.readline() == "allocating\n"
        time.sleep(0.5)
        for victim in victims:
            victim.send_signal(signal.SIGKILL)
    finally:
        for victim in victims:
            victim.kill()
            victim.wait()
    assert all(v.returncode == -signal.SIGKILL for v in victims)
    store = SQLiteStore(path)
    assert store.integrity_problems() == []
    snap = store.snapshot()
    assert len(snap.allocations) > 10
    keys = [a.key for a in snap.allocations]
    assert len(keys) == len(set(keys))
    for record in snap.allocations:
        assert record.level.is_pair and record.owners in (("loop:0",), ("loop:1",))
    # Still usable: a fresh allocator continues without duplicates.
    alloc = Allocator(store, categories=256)
    new = {alloc.allocate("after").key for _ in range(100)}
    assert not new & set(keys)


def test_a_locked_database_gives_store_unavailable_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    alloc = Allocator(store, categories=16)
    first = alloc.allocate("a")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
    try:
        with pytest.raises(StoreUnavailable, match="another process holds it"):
            alloc.allocate("b")
        with pytest.raises(StoreUnavailable):
            alloc.release(first.level)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # The failed calls left nothing behind and the store works again.
    assert [a.key for a in store.snapshot().allocations] == [first.key]
    second = alloc.allocate("b")
    assert second.key != first.key
    assert store.integrity_problems() == []


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), -1.0, "5", True])
def test_bad_busy_timeout_is_invalid_input(tmp_path: Path, timeout: object) -> None:
    with pytest.raises(InvalidInput, match="busy_timeout"):
        SQLiteStore(tmp_path / "labels.db", busy_timeout=timeout)  # type: ignore[arg-type]
    assert not (tmp_path / "labels.db").exists()


@pytest.mark.parametrize("query", ["busy_timeout=inf", "busy_timeout=nan", "busy_timeout=-1"])
def test_bad_busy_timeout_in_url_is_invalid_input(tmp_path: Path, query: str) -> None:
    with pytest.raises(InvalidInput, match="busy_timeout"):
        open_store(f"sqlite://{tmp_path}/labels.db?{query}")


def test_a_closed_store_gives_a_store_error_not_corruption(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "labels.db")
    alloc = Allocator(store, categories=8)
    held = alloc.allocate("o")
    store.close()
    for call in (store.snapshot, lambda: store.get(held.level), lambda: alloc.allocate("p")):
        with pytest.raises(StoreError, match="is closed") as raised:
            call()
        assert not isinstance(raised.value, StoreCorrupt)
    store.close()  # closing twice is harmless
    assert [a.key for a in SQLiteStore(tmp_path / "labels.db").snapshot().allocations] == [held.key]


def test_a_fifo_or_device_path_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "labels.db"
    os.mkfifo(fifo)  # opening it for reading would block forever without a writer
    with pytest.raises(StoreError, match="not a regular file"):
        SQLiteStore(fifo)
    with pytest.raises(StoreError, match="not a regular file"):
        SQLiteStore("/dev/null")


def test_nul_byte_in_path_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="NUL"):
        open_store(f"sqlite://{tmp_path}/la\x00bels.db")
    with pytest.raises(InvalidInput, match="NUL"):
        SQLiteStore(f"{tmp_path}/la\x00bels.db")


# --- bad files: clear errors, nothing overwritten --------------------------


def _unchanged(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before


def test_non_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    path.write_bytes(b"this is my precious text file\n" * 10)
    before = path.read_bytes()
    with pytest.raises(StoreCorrupt, match=r"not an SQLite database.*left untouched"):
        SQLiteStore(path)
    _unchanged(path, before)


def test_damaged_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    store = SQLiteStore(path)
    alloc = Allocator(store)
    for _ in range(200):
        alloc.allocate("o")
    store.close()
    data = bytearray(path.read_bytes())
    # Keep the header, trash the schema page and beyond.
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    before = path.read_bytes()
    with pytest.raises(StoreCorrupt, match="damaged"):
        SQLiteStore(path)
    _unchanged(path, before)


def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreCorrupt, match="not an mcslabel store"):
        SQLiteStore(path)
    _unchanged(path, before)


def test_damaged_record_raises_store_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    store = SQLiteStore(path)
    Allocator(store).reserve("s0:c1,c2", "o")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE allocations SET record = '{\"level\": 5}'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt, match="s0:c1,c2"):
        store.snapshot()
    assert store.integrity_problems() != []


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE mcslabel_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(path)


def test_unwritable_locations(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        SQLiteStore(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the directory"):
        SQLiteStore(blocker / "sub" / "labels.db")
    with pytest.raises(InvalidInput, match="absolute"):
        SQLiteStore("relative.db")


def test_read_only_database_file_gives_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    first = Allocator(SQLiteStore(path)).allocate("o")
    # Root ignores file modes; a read-only bind of the file is the honest test.
    script = (
        "from mcslabel.allocation.allocator import Allocator\n"
        "from mcslabel.allocation.stores.sqlite import SQLiteStore\n"
        f"Allocator(SQLiteStore({str(path)!r})).allocate('o')\n"
    )
    ro = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --bind -o ro "$1" "$1" && echo MOUNTED >&2 && exec "$2" -c "$3"',
            "sh",
            str(tmp_path),
            sys.executable,
            script,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if "MOUNTED" not in ro.stderr:
        pytest.skip(f"cannot make a read-only mount here: {ro.stderr.strip()}")
    assert ro.returncode == 1
    assert "mcslabel.errors.StoreError" in ro.stderr
    assert "read-only mount" in ro.stderr
    # The refused write lost nothing and added nothing.
    assert [a.key for a in Allocator(SQLiteStore(path)).allocations()] == [first.key]


def test_default_path_for_root_and_users(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        assert default_path() == Path("/var/lib/mcslabel/labels.db")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/xdg-state")
    assert default_path() == Path("/tmp/xdg-state/mcslabel/labels.db")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    assert default_path() == Path("/home/u/.local/state/mcslabel/labels.db")


def test_wal_and_durability_settings(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.db")
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


# --- open_store ------------------------------------------------------------


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    with pytest.raises(StoreNotFound, match="create"):
        open_store(f"sqlite://{tmp_path}/a.db")  # an explicit path is never created silently
    assert not (tmp_path / "a.db").exists()
    store = open_store(f"sqlite://{tmp_path}/a.db", create=True)
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "a.db"
    assert isinstance(store, Store)
    assert store.url == f"sqlite://{tmp_path}/a.db"
    normal = open_store(f"sqlite://{tmp_path}/b.db?synchronous=normal", create=True)
    assert isinstance(normal, SQLiteStore) and normal.synchronous == "normal"
    for bad in (
        "postgres://x",
        "nothing",
        "memory://foo",
        "sqlite://relative.db",
        f"sqlite://{tmp_path}/c.db?bogus=1",
        f"sqlite://{tmp_path}/c.db?synchronous=off",
    ):
        with pytest.raises(InvalidInput):
            open_store(bad)
    monkeypatch.setenv(STORE_ENV, "memory://")
    assert store_url() == "memory://" and isinstance(open_store(), MemoryStore)
    assert store_url("sqlite:///x") == "sqlite:///x"
    monkeypatch.delenv(STORE_ENV)
    assert store_url() == "sqlite:///"


def test_store_url_reopens_the_same_data(tmp_path: Path) -> None:
    first = open_store(f"sqlite://{tmp_path}/x.db", create=True)
    rec = Allocator(first).allocate("o")
    second = open_store(first.url)
    got = second.get(rec.level)
    assert got == rec and isinstance(got, Allocation)
    assert got.level == Level.parse(rec.key)


def test_etcd_urls_are_dispatched_to_the_etcd_store() -> None:
    # Only the dispatch is tested here; EtcdStore itself is tested with a real cluster (#7).
    with pytest.raises(MCSLabelError) as info:
        open_store("etcd://")  # no endpoints: the etcd store's own URL check refuses it
    assert "unknown store URL" not in str(info.value)
