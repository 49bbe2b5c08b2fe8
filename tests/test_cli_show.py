"""``mcslabel show`` / ``mcslabel.show()`` and journal housekeeping, on real files."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

import mcslabel
from mcslabel.allocation.stores import open_store
from mcslabel.cli import main

XATTR = "security.selinux"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    web = tmp_path / "web"
    web.mkdir()
    os.setxattr(web, XATTR, b"system_u:object_r:container_file_t:s0:c3,c9\0")
    plain = tmp_path / "plain"
    plain.write_text("")
    with contextlib.suppress(OSError):
        os.removexattr(plain, XATTR)
    odd = tmp_path / "odd"
    odd.write_text("")
    os.setxattr(odd, XATTR, b"not a context\0")
    link = tmp_path / "link"
    link.symlink_to(web)
    return {"web": web, "plain": plain, "odd": odd, "link": link}


def test_show_prints_label_level_and_holder(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    store = f"sqlite://{tmp_path}/labels.db"
    assert (
        run(
            capsys, "reserve", "s0:c9,c3", "--owner", "docker:" + "a" * 64,
            "--store", store, "--create-store",
        )[0]
        == 0
    )  # fmt: skip
    code, out, err = run(capsys, "show", str(files["web"]), str(files["plain"]), "--store", store)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["CONTEXT", "LEVEL", "OWNERS", "PATH"]
    assert lines[1].split() == [
        "system_u:object_r:container_file_t:s0:c3,c9",
        "s0:c3,c9",
        "docker:aaaaaaaaaaaa",  # ids shortened like docker ps
        str(files["web"]),
    ]
    assert lines[2].split() == ["?", "-", "-", str(files["plain"])]  # as ls -Z shows it


def test_show_library_call(files: dict[str, Path], tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/labels.db", create=True)  # a new path: asked
    try:
        mcslabel.Allocator(store).reserve("s0:c3,c9", "vol:web")
        web, link, odd = mcslabel.show([files["web"], files["link"], files["odd"]], store=store)
    finally:
        store.close()
    assert web.level == mcslabel.Level.parse("s0:c3,c9") and web.owners == ("vol:web",)
    assert link.context is None or link.context.type != "container_file_t"  # not followed
    assert odd.context is None and odd.raw == "not a context" and odd.level is None
    (alone,) = mcslabel.show(files["web"])  # no registry: owners unknown
    assert alone.owners is None and alone.registry is False


def test_show_never_creates_a_store(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "labels.db"
    code, out, _ = run(
        capsys, "show", str(files["web"]), "--store", f"sqlite://{missing}", "--json"
    )
    assert code == 0 and not missing.exists() and not missing.parent.exists()
    (label,) = json.loads(out)["labels"]
    assert label["owners"] == [] and label["level"] == "s0:c3,c9"  # no registry: no holder
    code, out, _ = run(capsys, "show", str(files["web"]), "--no-registry")
    assert code == 0 and "?" in out.splitlines()[1]


def test_show_reports_unreadable_paths_and_goes_on(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "show", str(tmp_path / "gone"), str(files["web"]), "--no-registry", "--json"
    )
    assert code == 2
    data = json.loads(out)
    assert [entry["path"] for entry in data["labels"]] == [str(files["web"])]
    assert data["errors"][0]["path"] == str(tmp_path / "gone")
    assert "No such file" in err


def test_journal_housekeeping(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    journals = tmp_path / "journals"
    journals.mkdir()
    journal = journals / "j"
    (journals / "not-a-journal").write_text("hello\n")
    assert run(capsys, "relabel", str(vol), "--shared", "--journal", str(journal))[0] == 0
    # The same --journal again: input error (2) that names the way out.
    code, _, err = run(capsys, "relabel", str(vol), "--shared", "--journal", str(journal))
    assert code == 2 and "already exists" in err
    code, out, _ = run(capsys, "journal", "list", str(journals))
    assert code == 0 and out.splitlines()[1].split()[0] == str(journal)  # not the other file
    # A dry run or a failed restore never removes the journal.
    assert run(capsys, "restore", "--dry-run", "--remove", str(journal))[0] == 0
    assert journal.exists()
    code, out, _ = run(capsys, "restore", "--remove", str(journal), "--json")
    assert code == 0 and json.loads(out)["journal_removed"] is True and not journal.exists()
    assert run(capsys, "journal", "remove", str(journal))[0] == 2  # gone: input error
    assert run(capsys, "journal", "list", str(tmp_path / "missing"))[0] == 2
