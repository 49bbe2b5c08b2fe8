"""Bounds of the registry: memory at the largest category count, read-only stores (issue 17)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcslabel.allocation.allocator import MAX_CATEGORIES
from mcslabel.allocation.stores import open_store
from mcslabel.allocation.stores.sqlite import SQLiteStore
from mcslabel.cli import main
from mcslabel.errors import InvalidInput, StoreError, StoreNotFound

# Peak RSS of this process: VmHWM (getrusage's ru_maxrss survives exec, so a child of a big
# pytest process would report pytest's own peak).
_HWM = """
def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
"""

# Runs the real CLI in a fresh interpreter and reports that process's own peak RSS.
_PEAK = (
    _HWM
    + """
import sys
from mcslabel.cli import main
code = main(sys.argv[1:])
print("peak-kb", peak_kb(), "code", code)
"""
)

_WIDE = (
    _HWM
    + """
import sys
from mcslabel import Allocator
from mcslabel.allocation.stores.memory import MemoryStore
n = int(sys.argv[1])
with Allocator(MemoryStore(), categories=n) as allocator:
    allocator.record_in_use(f"s0:c0.c{n // 2}", "docker:wide")
    allocator.record_in_use("s0:c7", "docker:single")
    for c in range(n // 2 + 1, n - 2, 3):
        allocator.record_in_use(f"s0:c{c},c{c + 1},c{c + 2}", f"docker:{c}")
    got = [allocator.allocate("o") for _ in range(2000)]
print("peak-kb", peak_kb(), "code", len(got))
"""
)


def _peak_kb(*args: str) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, timeout=300
    )
    words = done.stdout.split()
    assert done.returncode == 0 and "peak-kb" in words, done.stderr
    return int(words[words.index("peak-kb") + 1]), int(words[words.index("code") + 1])


def test_allocate_at_the_largest_category_count_stays_small() -> None:
    # Before: 65,536 categories reached 19.5 GB; the index is now O(n) small integers.
    peak, code = _peak_kb(
        "-c", _PEAK, "allocate", "--store", "memory://", "--categories", str(MAX_CATEGORIES)
    )
    assert code == 0 and peak < 200 * 1024, f"peak RSS {peak} kB"


def test_wide_levels_in_use_at_the_largest_count_stay_small() -> None:
    peak, count = _peak_kb("-c", _WIDE, str(MAX_CATEGORIES))
    assert count == 2000 and peak < 200 * 1024, f"peak RSS {peak} kB"


def test_category_counts_no_policy_has_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for n in (MAX_CATEGORIES + 1, 65536, 1 << 30):
        assert main(["allocate", "--store", "memory://", "--categories", str(n)]) == 2
        assert "at most 4096" in capsys.readouterr().err


# --- read-only stores --------------------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a registry with one allocation, bind-mounted read-only."""
    directory = tmp_path / "ro"
    directory.mkdir()
    store = SQLiteStore(directory / "labels.db")
    from mcslabel import Allocator

    with Allocator(store, categories=16) as allocator:
        allocator.reserve("s0:c1,c2", "svc:kept")
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_list_works_on_a_read_only_mount(
    read_only_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{read_only_dir}/labels.db"
    with pytest.raises(StoreError):  # what `list` did before: "unable to open database file"
        SQLiteStore(read_only_dir / "labels.db")
    code = main(["list", "--store", url, "--categories", "16", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r["level"] for r in json.loads(out)["allocations"]] == ["s0:c1,c2"]
    assert main(["gc", "--dry-run", "--store", url, "--categories", "16"]) == 0
    capsys.readouterr()
    store = open_store(url, read_only=True)
    try:
        with pytest.raises(StoreError, match="read-only"):
            store.delete(store.snapshot().allocations[0])
    finally:
        store.close()
    # A writing command says why it cannot write, and exits 3.
    assert main(["allocate", "--store", url, "--categories", "16"]) == 3
    assert "read-only" in capsys.readouterr().err


def test_reading_never_creates_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite://{tmp_path}/typo/labels.db"
    for argv in (["list"], ["gc", "--dry-run"], ["release", "s0:c1,c2"], ["allocate"]):
        assert main([*argv, "--store", url]) == 2, argv
        assert "no SQLite store" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()
    with pytest.raises(StoreNotFound):
        open_store(url, read_only=True)
    with pytest.raises(InvalidInput):  # StoreNotFound is an input error too
        open_store(url)
    assert not (tmp_path / "typo").exists()
    assert main(["allocate", "--store", url, "--create-store"]) == 0
    assert (tmp_path / "typo" / "labels.db").exists()
