"""``mcslabel relabel`` / ``mcslabel restore`` through main(), on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcslabel.cli import main
from tests.xattrs import XATTR, label


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    v = tmp_path / "vol"
    (v / "d").mkdir(parents=True)
    (v / "d" / "f").write_text("x")
    os.setxattr(v / "d" / "f", XATTR, b"system_u:object_r:etc_t:s0\0")
    return v


def test_relabel_and_restore_json(
    vol: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "j"
    code = main(["relabel", str(vol), "--level", "s0:c3,c4", "--journal", str(journal), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["changed"] == 3
    assert out["complete"] is True
    assert out["context"] == "system_u:object_r:container_file_t:s0:c3,c4"
    assert out["journal"] == str(journal)
    assert label(vol / "d" / "f") == b"system_u:object_r:container_file_t:s0:c3,c4\0"
    code = main(["restore", str(journal), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["restored"] == 3
    assert label(vol / "d" / "f") == b"system_u:object_r:etc_t:s0\0"


def test_text_output_shared_read_only_and_dry_run(
    vol: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["relabel", str(vol), "--shared", "--read-only", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would change 3" in out
    assert "container_ro_file_t:s0" in out
    assert label(vol / "d" / "f") == b"system_u:object_r:etc_t:s0\0"


def test_refused_paths_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["relabel", "//usr/", "--shared", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["type"] == "RefusedPath"
    assert "inside system directory /usr" in captured.err


def test_bad_input_exits_2(vol: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["relabel", str(vol), "--level", "s0:c1024"]) == 2
    assert "c1024" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["relabel", str(vol)])  # no label chosen
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["relabel", str(vol), "--shared", "--level", "s0"])


def test_per_file_failures_exit_3(vol: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subprocess.run(["chattr", "+i", str(vol / "d" / "f")], check=True)
    try:
        assert main(["relabel", str(vol), "--level", "s0:c1,c2"]) == 3
    finally:
        subprocess.run(["chattr", "-i", str(vol / "d" / "f")], check=True)
    captured = capsys.readouterr()
    assert "failed 1" in captured.out
    assert "d/f: Operation not permitted" in captured.err


def test_restore_of_a_damaged_journal_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "j").write_text("not a journal\n")
    assert main(["restore", str(tmp_path / "j")]) == 3
    assert "not an mcslabel journal" in capsys.readouterr().err


def test_console_script_draws_no_progress_without_a_tty(vol: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mcslabel.cli", "relabel", str(vol), "--level", "s0:c1,c2"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 and "No module named mcslabel.cli.__main__" in done.stderr:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from mcslabel.cli import main; sys.exit(main(sys.argv[1:]))",
                "relabel",
                str(vol),
                "--level",
                "s0:c1,c2",
            ],
            capture_output=True,
            text=True,
        )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    assert "changed 3" in done.stdout


def test_progress_is_drawn_on_a_tty_only(tmp_path: Path) -> None:
    import pty

    v = tmp_path / "many"
    for d in range(30):
        (v / f"d{d}").mkdir(parents=True)
        for f in range(100):
            (v / f"d{d}" / f"f{f}").touch()
    main_fd, child_fd = pty.openpty()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mcslabel.cli import main; sys.exit(main(sys.argv[1:]))",
            "relabel",
            str(v),
            "--level",
            "s0:c1,c2",
        ],
        stdout=subprocess.PIPE,
        stderr=child_fd,
        text=True,
    )
    os.close(child_fd)
    drawn = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(main_fd)
    assert done.returncode == 0
    assert b"\rrelabel: " in drawn
    assert b"3,031 entries" in drawn  # the final count, 3,000 files + 30 dirs + the root
    assert "\r" not in done.stdout


# --- relabel consults what it can (issue 12, item 10) ---------------------------


@pytest.mark.parametrize(
    "which",
    [
        ["--level", "s0:c3,c4", "--type", "nonexistent_t"],
        ["--context", "system_u:object_r:nope_t:s0"],
    ],
)
def test_a_type_the_policy_does_not_have_is_refused(
    vol: Path, which: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = label(vol / "d" / "f")
    code = main(["relabel", str(vol), *which])
    err = capsys.readouterr().err
    assert code == 2
    assert ("nonexistent_t" if "--type" in which else "nope_t") in err
    assert "not a type of the policy" in err
    assert label(vol / "d" / "f") == before


def test_a_type_the_policy_has_is_written(vol: Path) -> None:
    assert main(["relabel", str(vol), "--level", "s0:c3,c4", "--type", "container_file_t"]) == 0


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A real SQLite registry holding s0:c7,c8 for user:me@test."""
    from mcslabel.allocation import Allocator, open_store

    url = f"sqlite://{tmp_path / 'registry' / 'labels.db'}"
    (tmp_path / "registry").mkdir()
    s = open_store(url, create=True)  # a new path: created only when asked
    try:
        Allocator(s).reserve("s0:c7,c8", owner="user:me@test")
    finally:
        s.close()
    return url


def test_a_level_its_owner_holds_relabels_without_a_word(
    vol: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["relabel", str(vol), "--level", "s0:c7,c8", "--store", store, "--owner", "user:me@test"]
    assert main([*argv, "--require-held"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_level_nobody_holds_warns_and_require_held_refuses(
    vol: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = label(vol / "d" / "f")
    argv = [
        "relabel",
        str(vol),
        "--level",
        "s0:c9,c10",
        "--store",
        store,
        "--owner",
        "user:me@test",
    ]
    assert main([*argv, "--require-held"]) == 2
    err = capsys.readouterr().err
    assert "s0:c9,c10 is not held by user:me@test" in err and "held by nobody" in err
    assert label(vol / "d" / "f") == before
    assert main(argv) == 0
    assert "warning: level s0:c9,c10 is not held" in capsys.readouterr().err
    assert label(vol / "d" / "f") == b"system_u:object_r:container_file_t:s0:c9,c10\0"


def test_a_level_held_by_someone_else_names_the_holder(
    vol: Path, store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCSLABEL_STORE", store)  # the store from the environment
    assert main(["relabel", str(vol), "--level", "s0:c7,c8", "--owner", "user:other@test"]) == 0
    assert "held by user:me@test" in capsys.readouterr().err


def test_a_missing_store_is_never_created_to_check_a_level(
    vol: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path / 'typo' / 'labels.db'}"
    argv = ["relabel", str(vol), "--level", "s0:c3,c4", "--store", url]
    assert main([*argv, "--require-held"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(argv) == 0
    assert "warning" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_a_store_that_cannot_answer_warns_unless_the_check_is_required(
    vol: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all")
    argv = ["relabel", str(vol), "--level", "s0:c3,c4", "--store", f"sqlite://{bad}"]
    assert main([*argv, "--require-held"]) != 0
    assert label(vol / "d" / "f") == b"system_u:object_r:etc_t:s0\0"
    capsys.readouterr()
    assert main(argv) == 0
    assert "not checked" in capsys.readouterr().err
    assert label(vol / "d" / "f") == b"system_u:object_r:container_file_t:s0:c3,c4\0"
    assert bad.read_bytes() == b"not a database at all"
