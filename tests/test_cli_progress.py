"""Progress lines: total, rate and ETA on a TTY (a real pty), nothing on a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from mcslabel.cli._progress import ProgressLine, count_lines, count_tree

MCSLABEL = str(Path(sys.executable).parent / "mcslabel")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "vol"
    for d in range(10):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(50):
            (root / f"d{d}" / f"f{f}").write_text("")
    return root


def _on_a_tty(*argv: str) -> tuple[int, str, str]:
    """Run with stderr on a real pseudo-terminal; stdout on a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([MCSLABEL, *argv], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.communicate(timeout=120)[0]
    return proc.returncode, out.decode(), b"".join(chunks).decode()


def test_relabel_and_restore_show_progress_on_a_tty(tree: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    code, out, err = _on_a_tty(
        "relabel", str(tree), "--level", "s0:c1,c2", "--journal", str(journal)
    )
    assert code == 0, err
    assert "\rrelabel: " in err and " changed" in err
    assert "/511 entries (100%)" in err  # the count (510 entries and the root) finished first
    code, out, err = _on_a_tty("restore", str(journal))
    assert code == 0, err
    assert "\rrestore: " in err and "/511 records (" in err  # the journal's records
    assert "restored 511" in out


def test_nothing_on_a_pipe(tree: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    done = subprocess.run(
        [MCSLABEL, "relabel", str(tree), "--shared", "--journal", str(journal)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""
    done = subprocess.run(
        [MCSLABEL, "restore", str(journal), "--remove"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""
    assert f"removed journal {journal}" in done.stdout and not journal.exists()


def test_the_line_has_rate_and_eta_once_the_total_is_known() -> None:
    now = [100.0]
    bar = ProgressLine("relabel", clock=lambda: now[0])
    now[0] = 102.0
    assert bar.line(2000, 1500, 0, now[0]) == "relabel: 2,000 entries  1,000/s  1,500 changed"
    bar.total = 10000
    assert bar.line(2000, 1500, 3, now[0]) == (
        "relabel: 2,000/10,000 entries (20%)  1,000/s  ETA 0:08  1,500 changed  3 failed"
    )
    assert bar.line(0, 0, 0, 100.1) == "relabel: 0/10,000 entries (0%)  0 changed"  # no rate yet


def test_counts(tree: Path, tmp_path: Path) -> None:
    assert count_tree(str(tree)) == 511
    assert count_tree(str(tmp_path / "missing")) == 0
    (tmp_path / "lines").write_bytes(b"a\nb\nc\n")
    assert count_lines([tmp_path / "lines", tmp_path / "missing"]) == 3
