"""The journal format and restore(), on real files and real xattrs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcslabel.errors import JournalError
from mcslabel.relabeling.engine import relabel, restore
from mcslabel.relabeling.journal import (
    MAGIC,
    JournalHeader,
    JournalRecord,
    JournalWriter,
    escape,
    format_record,
    read_journal,
    unescape,
)
from tests.xattrs import XATTR, label

HEADER = JournalHeader(root="/x", dev=1, ino=2, target="u:r:t:s0", started="now")


@given(st.binary(max_size=300))
def test_escape_round_trips_and_stays_on_one_field(raw: bytes) -> None:
    text = escape(raw)
    assert "\t" not in text
    assert "\n" not in text
    assert text.isascii()
    assert unescape(text) == raw


# A name is any bytes but "/" and NUL, never "", "." or ".."; a path joins 1-4 names.
_names = st.binary(min_size=1, max_size=30).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)
_relpaths = st.lists(_names, min_size=1, max_size=4).map(b"/".join)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**64 - 1),
            st.one_of(st.none(), st.binary(max_size=100)),
            _relpaths,
        ),
        max_size=20,
    )
)
def test_records_round_trip(tmp_path_factory: pytest.TempPathFactory, recs: list) -> None:  # type: ignore[type-arg]
    path = tmp_path_factory.mktemp("j") / "journal"
    writer = JournalWriter(path, HEADER)
    writer.sync_through(writer.append(format_record(*r) for r in recs))
    writer.close()
    header, finished, records = read_journal(path)
    assert header == HEADER
    assert not finished
    assert list(records) == [JournalRecord(*r) for r in recs]


@pytest.mark.parametrize(
    "bad", [b"..", b"../x", b"a/../../x", b"a//b", b"a/./b", b"a/", b"/etc/x", b"a\0b"]
)
def test_record_paths_leaving_the_root_are_refused_before_any_record(
    tmp_path: Path, bad: bytes
) -> None:
    path = tmp_path / "journal"
    writer = JournalWriter(path, HEADER)
    good = format_record(1, 3, None, b"fine")
    writer.sync_through(writer.append([good, format_record(1, 4, None, bad), good]))
    writer.close()
    with pytest.raises(JournalError, match="leaves the root"):
        read_journal(path)


def test_a_deeply_nested_header_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    path.write_text(f"{MAGIC}\n" + "[" * 100_000 + "\n")
    with pytest.raises(JournalError, match="damaged header"):
        read_journal(path)


@pytest.mark.timeout(30)
def test_a_journal_that_is_not_a_regular_file_is_a_journal_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # opening it for reading used to wait for a writer forever
    for bad in (tmp_path / "fifo", tmp_path):
        with pytest.raises(JournalError, match="not a regular file"):
            restore(bad)


def test_existing_journals_are_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "j").write_text("precious")
    with pytest.raises(JournalError, match="already exists"):
        JournalWriter(tmp_path / "j", HEADER)
    assert (tmp_path / "j").read_text() == "precious"


def test_a_torn_last_line_is_ignored_and_damage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j"
    writer = JournalWriter(path, HEADER)
    writer.sync_through(writer.append([format_record(1, 2, None, b"a")]))
    writer.close()
    with path.open("a") as fh:
        fh.write("1\t3\tZ\tsystem_u:obj")  # the write a kill -9 cut short
    _, finished, records = read_journal(path)
    assert [r.relpath for r in records] == [b"a"]
    assert not finished
    damaged = tmp_path / "damaged"
    damaged.write_text(path.read_text().replace("1\t2\t-", "1\tX\t-") + "\n")
    with pytest.raises(JournalError, match="damaged record"):
        read_journal(damaged)
    (tmp_path / "other").write_text("hello\n")
    with pytest.raises(JournalError, match="not an mcslabel journal"):
        read_journal(tmp_path / "other")
    with pytest.raises(JournalError):
        read_journal(tmp_path / "missing")


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    v = tmp_path / "vol"
    (v / "sub").mkdir(parents=True)
    (v / "with-nul").write_text("a")
    (v / "raw").write_text("b")
    (v / "none").write_text("c")
    (v / "sub" / "f").write_text("d")
    os.setxattr(v / "with-nul", XATTR, b"system_u:object_r:etc_t:s0\0")
    os.setxattr(v / "raw", XATTR, b"system_u:object_r:etc_t:s0")
    os.setxattr(v / "sub", XATTR, b"system_u:object_r:var_t:s0\0")
    return v


def test_restore_puts_back_exact_old_labels(vol: Path, tmp_path: Path) -> None:
    before = {p: label(p) for p in (vol, vol / "with-nul", vol / "raw", vol / "none", vol / "sub")}
    relabel(vol, level="s0:c1,c2", journal=tmp_path / "j")
    assert label(vol / "none") is not None
    result = restore(tmp_path / "j")
    assert result.ok
    assert result.journal_finished
    assert result.restored == 6
    assert {p: label(p) for p in before} == before
    assert label(vol / "none") is None  # had none, has none: the attribute is removed
    again = restore(tmp_path / "j")
    assert (again.restored, again.unchanged) == (0, 6)


def test_restore_dry_run_changes_nothing(vol: Path, tmp_path: Path) -> None:
    relabel(vol, level="s0:c1,c2", journal=tmp_path / "j")
    result = restore(tmp_path / "j", dry_run=True)
    assert result.restored == 6
    assert label(vol / "raw") == b"system_u:object_r:container_file_t:s0:c1,c2\0"


def test_restore_leaves_replaced_files_alone(vol: Path, tmp_path: Path) -> None:
    relabel(vol, level="s0:c1,c2", journal=tmp_path / "j")
    (vol / "raw").unlink()
    (vol / "raw").write_text("a new file under the old name")
    os.setxattr(vol / "raw", XATTR, b"system_u:object_r:new_t:s0\0")
    (vol / "none").unlink()
    result = restore(tmp_path / "j")
    assert result.replaced == 2
    assert label(vol / "raw") == b"system_u:object_r:new_t:s0\0"
    assert label(vol / "with-nul") == b"system_u:object_r:etc_t:s0\0"


def test_restore_does_not_follow_a_symlink_swapped_in(vol: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("secret")
    os.setxattr(outside / "f", XATTR, b"system_u:object_r:shadow_t:s0\0")
    relabel(vol, level="s0:c1,c2", journal=tmp_path / "j")
    os.rename(vol / "sub", tmp_path / "sub.away")
    os.symlink(outside, vol / "sub")
    result = restore(tmp_path / "j")
    assert result.failed == 1  # sub/f: sub is a symlink now
    assert label(outside / "f") == b"system_u:object_r:shadow_t:s0\0"


def test_restore_refuses_journals_that_point_elsewhere(vol: Path, tmp_path: Path) -> None:
    relabel(vol, level="s0:c1,c2", journal=tmp_path / "j")
    text = (tmp_path / "j").read_text()
    escaping = tmp_path / "escaping"
    escaping.write_text(text.replace("\tsub/f\n", "\t../outside/f\n"))
    with pytest.raises(JournalError, match="leaves the root"):
        restore(escaping)
    moved = tmp_path / "moved"
    moved.write_text(text.replace(f'"root": "{vol}"', '"root": "/etc"'))
    with pytest.raises(Exception, match=r"refusing|not the directory"):
        restore(moved)
    os.rename(vol, tmp_path / "vol.old")
    vol.mkdir()
    with pytest.raises(JournalError, match="not the directory"):
        restore(tmp_path / "j")


def test_a_journal_damaged_at_the_end_changes_no_label(vol: Path, tmp_path: Path) -> None:
    relabel(vol, level="s0:c1,c2", journal=tmp_path / "j", workers=0)
    relabeled = {p: label(p) for p in vol.rglob("*")}
    lines = (tmp_path / "j").read_text().splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if line.startswith("mcslabel-journal-end"))
    damaged = tmp_path / "damaged"
    damaged.write_text("".join(lines[:end]) + "1\t2\t-\t\t../x\n" + "".join(lines[end:]))
    with pytest.raises(JournalError, match="leaves the root"):
        restore(damaged)
    assert {p: label(p) for p in vol.rglob("*")} == relabeled  # nothing restored half-way


def test_names_with_any_bytes_survive_the_journal(tmp_path: Path) -> None:
    v = tmp_path / "vol"
    v.mkdir()
    names = [b"new\nline", b"tab\there", b"back\\slash", b"\xff\xfe not utf-8", b"sp ace"]
    for n in names:
        path = os.fsencode(v) + b"/" + n
        with open(path, "wb"):
            pass
        os.setxattr(path, XATTR, b"system_u:object_r:etc_t:s0\0")
    relabel(v, level="s0:c1,c2", journal=tmp_path / "j")
    _, _, records = read_journal(tmp_path / "j")
    assert {r.relpath for r in records} == {*names, b"."}
    assert restore(tmp_path / "j").restored == len(names) + 1
    for n in names:
        assert os.getxattr(os.fsencode(v) + b"/" + n, XATTR) == b"system_u:object_r:etc_t:s0\0"


def test_a_journal_inside_the_volume_is_refused(vol: Path) -> None:
    from mcslabel.errors import InvalidInput

    with pytest.raises(InvalidInput, match="must not be inside"):
        relabel(vol, level="s0:c1,c2", journal=vol / "sub" / "j")
    assert label(vol / "raw") == b"system_u:object_r:etc_t:s0"


_labels = st.one_of(
    st.none(),
    st.sampled_from(
        [
            b"system_u:object_r:etc_t:s0\0",
            b"system_u:object_r:etc_t:s0",
            b"system_u:object_r:container_file_t:s0:c1,c2\0",  # already the target
            b"unconfined_u:object_r:user_home_t:s0:c0.c1023\0",
        ]
    ),
    st.binary(min_size=1, max_size=40).filter(lambda b: b != b"\0"),
)
_names = st.text(
    st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
).filter(lambda n: n not in (".", ".."))


@settings(max_examples=25)
@given(
    st.lists(st.tuples(st.lists(_names, min_size=1, max_size=3), _labels), max_size=15),
    _labels,
    st.integers(0, 2),
)
def test_relabel_then_restore_is_the_identity(
    tmp_path_factory: pytest.TempPathFactory,
    layout: list[tuple[list[str], bytes | None]],
    root_label: bytes | None,
    workers: int,
) -> None:
    base = tmp_path_factory.mktemp("prop")
    vol = base / "vol"
    vol.mkdir()
    for parts, lab in layout:
        path = vol.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(b"data")
        except OSError:
            continue  # a name used as both file and directory
        if lab is not None:
            os.setxattr(path, XATTR, lab)
    if root_label is not None:
        os.setxattr(vol, XATTR, root_label)
    every = [vol, *(Path(d, n) for d, ds, fs in os.walk(vol) for n in ds + fs)]
    before = {p: label(p) for p in every}
    result = relabel(vol, level="s0:c1,c2", journal=base / "j", workers=workers)
    assert result.ok
    assert {label(p) for p in every} <= {
        b"system_u:object_r:container_file_t:s0:c1,c2\0",
        b"system_u:object_r:container_file_t:s0:c1,c2",
    }
    restored = restore(base / "j")
    assert restored.ok
    assert restored.restored == result.changed
    assert {p: label(p) for p in every} == before
