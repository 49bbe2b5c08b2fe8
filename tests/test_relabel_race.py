"""Races and crashes: symlink swaps during a relabel, kill -9 then restore."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from mcslabel.relabeling.engine import relabel, restore
from mcslabel.relabeling.journal import read_journal, wait_unlocked
from tests.xattrs import XATTR, every, label

OUTSIDE = b"system_u:object_r:shadow_t:s0\0"


@pytest.mark.parametrize(
    ("workers", "top_right"), [(0, False), (2, False), (2, True)], ids=["serial", "2", "2-by-dir"]
)
def test_symlink_swaps_never_redirect_a_label_outside(
    tmp_path: Path, workers: int, top_right: bool
) -> None:
    outside = tmp_path / "outside"
    (outside / "nested").mkdir(parents=True)
    for i in range(50):
        (outside / f"o{i}").write_text("secret")
        (outside / "nested" / f"n{i}").write_text("secret")
    for p in every(outside):
        os.setxattr(p, XATTR, OUTSIDE)
    vol = tmp_path / "vol"
    for d in ("sub", "other"):
        (vol / d / "inner").mkdir(parents=True)
        for i in range(50):
            (vol / d / f"f{i}").write_text("x")
            (vol / d / "inner" / f"g{i}").write_text("x")
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            for name, target in (("sub", outside), ("other", outside / "nested")):
                os.rename(vol / name, vol / f"{name}.away")
                os.symlink(target, vol / name)
                os.unlink(vol / name)
                os.rename(vol / f"{name}.away", vol / name)
                swaps += 1
            os.rename(vol / "sub" / "inner", vol / "sub" / "inner.away")
            os.symlink(outside / "nested", vol / "sub" / "inner")
            os.unlink(vol / "sub" / "inner")
            os.rename(vol / "sub" / "inner.away", vol / "sub" / "inner")

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        results = []
        for i in range(1, 41):
            if top_right:  # the walk by directory (lstat, shared lock) does the writes
                ctx = f"system_u:object_r:container_file_t:s0:c{i},c{i + 100}\0"
                os.setxattr(vol, XATTR, ctx.encode())
            results.append(relabel(vol, level=f"s0:c{i},c{i + 100}", workers=workers))
    finally:
        stop.set()
        thread.join()
    assert swaps > 40  # the swaps really overlapped the relabels
    assert sum(r.changed for r in results) > 1000
    assert {label(p) for p in every(outside)} == {OUTSIDE}


CHILD = textwrap.dedent(
    """
    import sys, time
    from mcslabel.relabeling import testing
    from mcslabel.relabeling.engine import relabel


    def progress(p):
        print("progress", p.changed, flush=True)
        time.sleep(0.15)  # let every call pass the 0.1 s rate limit; widen the window

    # worker processes do not wait for progress(): widen the window
    with testing.slow_directories(0.01):
        relabel(sys.argv[1], level="s0:c5,c6", journal=sys.argv[2], workers=int(sys.argv[3]),
                progress=progress)
    print("finished", flush=True)
    """
)


@pytest.mark.parametrize(
    ("workers", "top_right"),
    [(0, False), (2, False), (3, False), (2, True)],
    ids=["serial", "2", "3", "2-by-dir"],
)
def test_kill_9_mid_relabel_then_restore_returns_every_old_label(
    tmp_path: Path, workers: int, top_right: bool
) -> None:
    vol = tmp_path / "vol"
    labels = [
        None,
        b"system_u:object_r:user_tmp_t:s0\0",
        b"unconfined_u:object_r:user_home_t:s0",  # no trailing NUL: restored exactly
        b"system_u:object_r:container_file_t:s0:c9,c10\0",
    ]
    for d in range(30 if workers == 0 else 100):
        (vol / f"d{d:02d}").mkdir(parents=True)
        for f in range(100):
            p = vol / f"d{d:02d}" / f"f{f:03d}"
            p.write_text(f"{d}/{f}")
    for i, p in enumerate(every(vol)):
        if labels[i % 4] is not None:
            os.setxattr(p, XATTR, labels[i % 4])  # type: ignore[arg-type]
    if top_right:  # the walk by directory: every wrong label lstat'ed, then journaled
        os.setxattr(vol, XATTR, b"system_u:object_r:container_file_t:s0:c5,c6\0")
    before = {p: (label(p), p.lstat().st_mtime_ns) for p in every(vol)}
    journal = tmp_path / "journal"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(vol), str(journal), str(workers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("progress") and int(line.split()[1]) > 0:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    # Its workers die by PDEATHSIG a moment later; they hold the journal's lock till then.
    os.close(wait_unlocked(journal))
    now = {p: label(p) for p in every(vol)}
    changed = [p for p in now if now[p] != before[p][0]]
    assert changed, "the kill came after nothing had changed"
    assert len(changed) < len(now) - 100, "the kill came too late to be mid-relabel"
    assert now[vol] == before[vol][0]  # the top is labeled last
    header, finished, records = read_journal(journal)
    assert header.root == str(vol)
    assert not finished
    recorded = {r.relpath for r in records}
    for p in changed:  # every changed label was journaled first
        assert os.fsencode(p.relative_to(vol)) in recorded
    result = restore(journal)
    assert not result.journal_finished
    assert result.failed == 0
    assert result.restored == len(changed)
    after = {p: (label(p), p.lstat().st_mtime_ns) for p in every(vol)}
    assert after == before
    assert (vol / "d07" / "f042").read_text() == "7/42"
