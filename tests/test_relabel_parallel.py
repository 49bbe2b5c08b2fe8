"""The parallel relabel (worker processes, journal segments), on real files and xattrs."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcslabel.errors import JournalError
from mcslabel.relabeling import testing
from mcslabel.relabeling.engine import PARALLEL_MIN_ENTRIES, RelabelProgress, relabel, restore
from mcslabel.relabeling.journal import (
    JournalHeader,
    JournalWriter,
    journal_files,
    read_journal,
    remove_journal,
    wait_unlocked,
)
from tests.processes import children
from tests.xattrs import XATTR, every, label

PRIVATE = b"system_u:object_r:container_file_t:s0:c1,c2\0"
OLD = b"system_u:object_r:user_tmp_t:s0\0"
LINKED = b"unconfined_u:object_r:user_home_t:s0\0"


def make_tree(root: Path, dirs: int, files: int) -> None:
    """``dirs`` directories of ``files`` empty files, everything labeled OLD."""
    root.mkdir(parents=True)
    os.setxattr(root, XATTR, OLD)
    for d in range(dirs):
        sub = root / f"d{d:03d}"
        sub.mkdir()
        os.setxattr(sub, XATTR, OLD)
        for f in range(files):
            fd = os.open(sub / f"f{f:03d}", os.O_WRONLY | os.O_CREAT, 0o644)
            os.setxattr(fd, XATTR, OLD)
            os.close(fd)


def test_owners_split_the_inodes_evenly_and_deterministically() -> None:
    inodes = range(1_000_000, 1_020_000)  # consecutive, as ext4 hands them out
    for workers in (2, 3, 4):
        counts = [0] * workers
        for ino in inodes:
            counts[testing.owner(ino, workers)] += 1
        assert min(counts) > 0.9 * len(inodes) / workers
        assert [testing.owner(i, workers) for i in inodes[:50]] == [
            testing.owner(i, workers) for i in inodes[:50]
        ]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_workers_label_every_entry_once_and_journal_in_segments(
    tmp_path: Path, workers: int
) -> None:
    vol = tmp_path / "vol"
    make_tree(vol, 12, 40)
    before = {p: label(p) for p in every(vol)}
    journal = tmp_path / "j"
    result = relabel(vol, level="s0:c1,c2", workers=workers, journal=journal)
    assert result.ok
    assert (result.changed, result.unchanged, result.failed) == (493, 0, 0)
    assert {label(p) for p in every(vol)} == {PRIVATE}
    header, finished, records = read_journal(journal)
    assert finished
    assert header.extra["segments"] == [f"j.{n}" for n in range(1, workers + 1)]
    recs = list(records)
    assert len(recs) == 493
    assert len({r.relpath for r in recs}) == 493  # nothing journaled twice
    assert recs[-1].relpath == b"."  # the root's record is the main file's, last
    for n in range(1, workers + 1):
        seg = (tmp_path / f"j.{n}").read_text().splitlines()
        assert seg[0] == "mcslabel-journal 1"
        assert json.loads(seg[1])["segment"] == n
        assert seg[-1].startswith("mcslabel-journal-end\t")
    again = relabel(vol, level="s0:c1,c2", workers=workers)
    assert (again.changed, again.unchanged) == (0, 493)
    restored = restore(journal)
    assert restored.ok
    assert restored.restored == 493
    assert {p: label(p) for p in every(vol)} == before


def test_the_default_forks_one_worker_per_core_for_big_trees_only(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    small = tmp_path / "small"
    make_tree(small, 3, 10)
    relabel(small, level="s0:c1,c2", journal=tmp_path / "js")
    header, _, _ = read_journal(tmp_path / "js")
    assert "segments" not in header.extra  # serial: one file
    big = tmp_path / "big"
    make_tree(big, 20, PARALLEL_MIN_ENTRIES // 20 + 1)
    seen: list[RelabelProgress] = []
    result = relabel(big, level="s0:c1,c2", journal=tmp_path / "jb", progress=seen.append)
    assert result.ok
    assert result.changed == 20 * (PARALLEL_MIN_ENTRIES // 20 + 2) + 1
    assert seen[-1].visited == result.changed
    header, _, records = read_journal(tmp_path / "jb")
    expected = 0 if cores < 2 else min(cores, 4)
    assert len(header.extra.get("segments", [])) == expected
    assert sum(1 for _ in records) == result.changed
    assert restore(tmp_path / "jb").restored == result.changed


@pytest.mark.parametrize("workers", [2, 3])
def test_a_hard_link_across_subtrees_is_labeled_once_with_its_true_old_label(
    tmp_path: Path, workers: int
) -> None:
    vol = tmp_path / "vol"
    make_tree(vol, 6, 20)
    pairs = []
    for i in range(30):  # links in different subtrees, many inodes: every worker gets some
        a = vol / f"d{i % 6:03d}" / f"linked{i}"
        b = vol / f"d{(i + 3) % 6:03d}" / f"alias{i}"
        a.touch()
        os.link(a, b)
        os.setxattr(a, XATTR, LINKED)
        pairs.append((a, b))
    owners = {testing.owner(a.stat().st_ino, workers) for a, _ in pairs}
    assert len(owners) == workers
    journal = tmp_path / "j"
    result = relabel(vol, level="s0:c1,c2", workers=workers, journal=journal)
    assert result.ok
    assert result.changed == 6 * 20 + 6 + 1 + 30  # each linked inode once
    assert result.unchanged == 30  # the second link of each
    _, _, records = read_journal(journal)
    recs = [r for r in records if r.relpath.split(b"/")[-1].startswith((b"linked", b"alias"))]
    assert len(recs) == 30
    assert {r.old for r in recs} == {LINKED}  # never the new label as "old"
    restore(journal)
    for a, b in pairs:
        assert label(a) == label(b) == LINKED


def _children() -> list[int]:
    tid = os.getpid()
    text = Path(f"/proc/{tid}/task/{tid}/children").read_text()
    return [int(p) for p in text.split()]


def test_a_dead_worker_fails_the_relabel_and_its_segment_still_restores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = tmp_path / "vol"
    make_tree(vol, 200, 40)
    before = {p: label(p) for p in every(vol)}
    others = set(_children())
    killed: list[int] = []

    def progress(p: RelabelProgress) -> None:
        if not killed:  # the first report comes a few ms into the walk
            for kid in sorted(set(_children()) - others):
                state = Path(f"/proc/{kid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # still working
                    os.kill(kid, signal.SIGKILL)
                    killed.append(kid)
                    return

    journal = tmp_path / "j"
    # >= 0.4 s a worker: still working when a loaded parent looks
    with testing.slow_directories(0.002):
        result = relabel(vol, level="s0:c1,c2", workers=2, journal=journal, progress=progress)
    assert killed
    assert not result.ok
    assert not result.complete
    assert result.errors[0].path == "."
    assert "killed by SIGKILL" in result.errors[0].message
    assert result.error_counts["worker died"] == 1
    assert label(vol) == OLD  # the top is not labeled: the tree is not done
    _, finished, _ = read_journal(journal)
    assert finished  # the relabel itself ended (and said it was incomplete)
    restored = restore(journal)
    assert restored.ok
    assert {p: label(p) for p in every(vol)} == before


def test_restore_waits_for_a_journal_still_being_written(tmp_path: Path) -> None:
    header = JournalHeader(root="/x", dev=1, ino=2, target="u:r:t:s0", started="now")
    writer, segments = JournalWriter.with_segments(tmp_path / "j", header, 2)
    try:
        with pytest.raises(JournalError, match="still being written"):
            wait_unlocked(tmp_path / "j", timeout=0.1)
    finally:
        writer.close()
        for seg in segments:
            seg.close()
    os.close(wait_unlocked(tmp_path / "j", timeout=0.1))


def test_missing_or_foreign_segments_are_refused_before_restoring(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    make_tree(vol, 4, 5)
    relabel(vol, level="s0:c1,c2", workers=2, journal=tmp_path / "j")
    relabel(vol, level="s0:c3,c4", workers=2, journal=tmp_path / "k")
    os.replace(tmp_path / "k.2", tmp_path / "j.2")  # another relabel's segment
    with pytest.raises(JournalError, match="is not segment 2"):
        restore(tmp_path / "j")
    (tmp_path / "j.2").unlink()
    with pytest.raises(JournalError, match="missing"):
        restore(tmp_path / "j")
    assert {label(p) for p in every(vol)} == {b"system_u:object_r:container_file_t:s0:c3,c4\0"}


def test_an_existing_segment_is_never_overwritten(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    make_tree(vol, 2, 2)
    (tmp_path / "j.2").write_text("someone's file")
    with pytest.raises(JournalError, match="already exists"):
        relabel(vol, level="s0:c1,c2", workers=2, journal=tmp_path / "j")
    assert (tmp_path / "j.2").read_text() == "someone's file"
    assert not (tmp_path / "j").exists()
    assert not (tmp_path / "j.1").exists()
    assert {label(p) for p in every(vol)} == {OLD}


def test_remove_journal_deletes_the_segments_too(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    make_tree(vol, 3, 3)
    relabel(vol, level="s0:c1,c2", workers=3, journal=tmp_path / "j")
    assert journal_files(tmp_path / "j") == [tmp_path / n for n in ("j.1", "j.2", "j.3", "j")]
    (tmp_path / "keep").write_text("not the journal's")
    remove_journal(tmp_path / "j")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "vol"]


class _Interrupted(Exception):
    pass


# An interrupt that lands inside an interpreter-internal fork hook (logging's
# _releaseLock) is reported by Python as "ignored": that moment is simply not
# interrupted, which the test allows.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_interrupt_at_any_moment_leaves_no_worker_and_no_fd(tmp_path: Path) -> None:
    # A SIGALRM whose handler raises stands in for Ctrl-C (KeyboardInterrupt)
    # landing anywhere: forking, collecting, waiting for the workers.
    vol = tmp_path / "vol"
    make_tree(vol, 20, 100)

    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    old = signal.signal(signal.SIGALRM, interrupt)
    fds_before = sorted(os.listdir("/proc/self/fd"))
    children_before = children()
    try:
        for n, delay in enumerate([0.001, 0.003, 0.01, 0.02, 0.04, 0.08, 0.16]):
            signal.setitimer(signal.ITIMER_REAL, delay)
            try:
                relabel(vol, level=f"s0:c1,c{n + 2}", workers=2, journal=tmp_path / f"j{n}")
            except _Interrupted:
                pass
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            assert children() <= children_before  # no worker left, not even a zombie
            # An interrupt between a writer's creation and the caller's
            # try/finally leaves it to the garbage collector (it closes on __del__).
            gc.collect()
            leaked = [
                os.readlink(f"/proc/self/fd/{fd}")
                for fd in set(os.listdir("/proc/self/fd")) - set(fds_before)
                if os.path.exists(f"/proc/self/fd/{fd}")  # not listdir's own fd
            ]
            # Not checked: the journal's own files. A signal landing *during* the
            # slow O_CREAT open runs its handler before os.open's fd is stored
            # anywhere (a limit of Python, not of this code).
            leaked = [p for p in leaked if not p.startswith(str(tmp_path / "j"))]
            assert leaked == [], delay
            # No interpreter lock left held by an interrupted fork hook: logging's
            # module lock taken before a fork and never given back hangs any later
            # getLogger (SETools calls it when loading a policy).
            assert logging._lock.acquire(timeout=5), delay  # type: ignore[attr-defined]
            logging._lock.release()  # type: ignore[attr-defined]
    finally:
        signal.signal(signal.SIGALRM, old)


def test_no_label_changes_before_the_deferred_journal_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = tmp_path / "vol"
    make_tree(vol, 40, 200)  # 8,000 entries: several batches per worker
    complete = JournalWriter.complete
    seen_while_waiting: list[set[bytes | None]] = []

    def slow_complete(self: JournalWriter) -> None:
        time.sleep(0.3)  # the workers have read well past their first batch by now
        seen_while_waiting.append({label(p) for p in every(vol)})
        names = [p.name for p in tmp_path.iterdir()]
        assert "j" in names and "j.1" in names
        assert (tmp_path / "j").read_bytes() == b""  # no header before the segments are synced
        complete(self)

    monkeypatch.setattr(JournalWriter, "complete", slow_complete)
    result = relabel(vol, level="s0:c1,c2", workers=2, journal=tmp_path / "j")
    assert seen_while_waiting == [{OLD}]
    assert result.ok and result.changed == 8000 + 40 + 1
    header, finished, _ = read_journal(tmp_path / "j")
    assert finished and header.extra["segments"] == ["j.1", "j.2"]


def test_a_journal_that_cannot_be_made_durable_changes_nothing_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk that fails fsync cannot be made here; the failure is raised where
    # complete() would meet it, after the workers started reading.
    vol = tmp_path / "vol"
    make_tree(vol, 40, 200)

    def failing_complete(self: JournalWriter) -> None:
        time.sleep(0.2)
        raise JournalError(f"cannot write journal {self.path}: Input/output error")

    monkeypatch.setattr(JournalWriter, "complete", failing_complete)
    others = set(_children())
    with pytest.raises(JournalError, match="Input/output error"):
        relabel(vol, level="s0:c1,c2", workers=2, journal=tmp_path / "j")
    assert {label(p) for p in every(vol)} == {OLD}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol"]
    assert set(_children()) <= others  # the workers were reaped


@pytest.mark.parametrize("journaled", [False, True])
def test_links_of_one_inode_in_one_directory_are_written_once(
    tmp_path: Path, journaled: bool
) -> None:
    # A directory's labels are read before its wrong ones are written, so
    # both links of an inode are read wrong: the second must not be written.
    vol = tmp_path / "vol"
    make_tree(vol, 4, 50)
    for i in range(20):
        first = vol / "d000" / f"f{i:03d}"
        os.link(first, vol / "d000" / f"again{i}")
        os.link(first, vol / "d000" / f"third{i}")
    journal = tmp_path / "j" if journaled else None
    result = relabel(vol, level="s0:c1,c2", workers=2, journal=journal)
    assert result.ok
    assert result.changed == 4 * 50 + 4 + 1
    assert result.unchanged == 2 * 20
    if journal is not None:
        _, _, records = read_journal(journal)
        assert len(list(records)) == 4 * 50 + 4 + 1


def test_killed_before_the_journal_is_durable_nothing_changed_and_it_says_so(
    tmp_path: Path,
) -> None:
    vol = tmp_path / "vol"
    make_tree(vol, 40, 200)
    child = (
        "import os, signal, sys, time\n"
        "from mcslabel.relabeling.journal import JournalWriter\n"
        "from mcslabel.relabeling.engine import relabel\n"
        "def die(self):\n"
        "    time.sleep(0.2)  # the workers have read and journaled records by now\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "JournalWriter.complete = die\n"
        "relabel(sys.argv[1], level='s0:c1,c2', workers=2, journal=sys.argv[2])\n"
    )
    journal = tmp_path / "j"
    proc = subprocess.run([sys.executable, "-c", child, str(vol), str(journal)], check=False)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.2)  # the workers die with their parent (PR_SET_PDEATHSIG)
    assert {label(p) for p in every(vol)} == {OLD}
    assert journal.read_bytes() == b""
    assert {p.name for p in tmp_path.iterdir()} == {"vol", "j", "j.1", "j.2"}
    with pytest.raises(JournalError, match=r"empty.*before any label changed"):
        restore(journal)
    assert [p.name for p in journal_files(journal)] == ["j.1", "j.2", "j"]
    remove_journal(journal)
    assert [p.name for p in tmp_path.iterdir()] == ["vol"]


def test_an_interrupt_right_after_the_journal_is_durable_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = tmp_path / "vol"
    make_tree(vol, 40, 200)
    complete = JournalWriter.complete

    def complete_then_interrupt(self: JournalWriter) -> None:
        complete(self)
        raise KeyboardInterrupt  # before any worker was told to write

    monkeypatch.setattr(JournalWriter, "complete", complete_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        relabel(vol, level="s0:c1,c2", workers=2, journal=tmp_path / "j")
    assert {label(p) for p in every(vol)} == {OLD}
    assert [p.name for p in tmp_path.iterdir()] == ["vol"]  # nor j.1, j.2
    monkeypatch.setattr(JournalWriter, "complete", complete)
    assert relabel(vol, level="s0:c1,c2", workers=2, journal=tmp_path / "j").ok


def test_an_empty_journal_also_owns_segments_whose_header_was_lost(tmp_path: Path) -> None:
    # After a crash before anything was synced, a segment can be empty too.
    (tmp_path / "j").write_bytes(b"")
    (tmp_path / "j.1").write_bytes(b"")
    header = JournalHeader(root="/x", dev=1, ino=2, target="t", started="s", extra={"segment": 2})
    JournalWriter(tmp_path / "j.2", header).close()
    (tmp_path / "j.4").write_bytes(b"")  # after a gap: not one of them
    (tmp_path / "other.1").write_bytes(b"")
    assert [p.name for p in journal_files(tmp_path / "j")] == ["j.1", "j.2", "j"]
    remove_journal(tmp_path / "j")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.4", "other.1"]


def test_an_empty_journal_stops_at_a_file_that_is_not_its_segment(tmp_path: Path) -> None:
    (tmp_path / "j").write_bytes(b"")
    (tmp_path / "j.1").write_text("somebody else's notes\n")
    os.symlink("/etc/passwd", tmp_path / "j.2")
    assert [p.name for p in journal_files(tmp_path / "j")] == ["j"]
    (tmp_path / "j.1").unlink()
    (tmp_path / "j.1").symlink_to(tmp_path / "j")
    assert [p.name for p in journal_files(tmp_path / "j")] == ["j"]
