"""The lean marker path's readers accept a subset of what the full ones do, with
the same answer (issue 18).

The lean path of ``mcslabel relabel --trust-marker`` reads a level, the
policy's ``lxc_contexts``, one store record and the mount table with code of
its own (no ``attrs``, ``typing``, ``re`` or ``json`` to import). Each reader
here is checked against the full one on generated input: whenever the lean
reader answers, the full reader gives the same answer; where it does not, the
full command line decides.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcslabel import ContainerContexts, Level, open_store
from mcslabel.allocation import holding
from mcslabel.allocation.peek import SCHEMA_VERSION, canonical_pair, sqlite_owners
from mcslabel.allocation.stores._sqlite_file import SCHEMA_VERSION as STORE_SCHEMA_VERSION
from mcslabel.allocation.stores.records import level_key
from mcslabel.cli import _VALUE_GLOBALS
from mcslabel.cli._parser import GLOBAL_OPTIONS
from mcslabel.errors import MCSLabelError, PolicyError
from mcslabel.relabeling.mounts import Mount, unoctal
from mcslabel.verification.policyfiles import plain_file_context

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_lean_readers_know_the_current_formats() -> None:
    assert SCHEMA_VERSION == STORE_SCHEMA_VERSION
    assert {flag for flag, _, takes_value, _, _ in GLOBAL_OPTIONS if takes_value} == _VALUE_GLOBALS
    assert Mount._fields == (
        "device",
        "root",
        "point",
        "mount_id",
        "fstype",
        "source",
        "super_options",
    )
    assert Mount("8:1", "/", "/x") == ("8:1", "/", "/x", -1, "", "", "")


# --- levels -------------------------------------------------------------------

LEVELISH = st.one_of(
    st.builds(lambda a, b: f"s0:c{a},c{b}", st.integers(0, 1100), st.integers(0, 1100)),
    st.from_regex(r"s[0-9]{1,2}:c[0-9]{1,4}[,.]c0?[0-9]{1,4}", fullmatch=True),
    st.text(alphabet="s0123456789:c,.- ", max_size=16),
)


@SETTINGS
@given(LEVELISH)
def test_a_canonical_pair_is_what_the_level_parser_prints(text: str) -> None:
    if canonical_pair(text):
        level = Level.parse(text)
        assert str(level) == text == level_key(level)
        assert len(level.categories) == 2


# --- lxc_contexts ------------------------------------------------------------

NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-]{0,8}", fullmatch=True)
CONTEXT = st.builds(
    lambda u, r, t, lv: f"{u}:{r}:{t}{lv}",
    NAME,
    NAME,
    NAME,
    st.sampled_from(["", ":s0", ":s0:c1", ":s1", ":s0-s0:c0.c1023"]),
)
LINE = st.one_of(
    st.builds(
        lambda k, sp1, sp2, q, v, tail: f"{k}{sp1}={sp2}{q}{v}{q}{tail}",
        st.sampled_from(["process", "file", "ro_file", "content", "x_y", "bad key", ""]),
        st.sampled_from(["", " ", "\t"]),
        st.sampled_from(["", " "]),
        st.sampled_from(['"', "'", ""]),
        CONTEXT,
        st.sampled_from(["", " # note", " ; note", "#", " trailing"]),
    ),
    st.sampled_from(["", "# comment", "   ", '# "quoted" comment', "junk"]),
)


PLAIN_NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True)
PLAIN_LINE = st.builds(
    lambda k, sp, v, lv, tail: f'{k}{sp}="{v}{lv}"{tail}',
    st.sampled_from(["process", "file", "ro_file", "content", "sandbox_lxc_process"]),
    st.sampled_from(["=", " = ", "\t=  "]),
    st.builds(lambda u, r, t: f"{u}:{r}:{t}", PLAIN_NAME, PLAIN_NAME, PLAIN_NAME),
    st.sampled_from(["", ":s0"]),
    st.sampled_from(["", " # note", "   "]),
)
# Mostly plain files (both required entries, in any order), some lines of any shape.
LXC_FILE = st.builds(
    lambda required, more: required + more,
    st.permutations(['process = "system_u:system_r:container_t:s0"', 'file = "a:b:c:s0"']),
    st.lists(st.one_of(PLAIN_LINE, PLAIN_LINE, PLAIN_LINE, LINE), max_size=6),
).flatmap(st.permutations)


@SETTINGS
@given(LXC_FILE)
def test_a_plain_lxc_contexts_gives_the_full_parsers_file_context(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    root = tmp_path_factory.mktemp("root")
    (root / "contexts").mkdir()
    text = "\n".join(lines) + "\n"
    (root / "contexts" / "lxc_contexts").write_text(text)
    lean = plain_file_context(str(root))
    if lean is None:
        return
    try:
        full = ContainerContexts.parse(text)
    except PolicyError as exc:
        raise AssertionError(f"the lean reader took what the full one refuses: {exc}") from exc
    assert lean == str(full.file)


@pytest.mark.parametrize("root", ["/etc/selinux/default", "centos"])
def test_the_shipped_lxc_contexts_are_plain(root: str, centos_root: Path) -> None:
    path = str(centos_root) if root == "centos" else root
    text = (Path(path) / "contexts" / "lxc_contexts").read_text()
    assert plain_file_context(path) == str(ContainerContexts.parse(text).file)


# --- one store record ----------------------------------------------------------

OWNER = st.one_of(
    st.sampled_from(["user:root@vm", "docker:abc", "", " ", "a b", "x\ty", "é", "\u0000"]),
    st.text(max_size=6),
)
VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(OWNER, max_size=3),
)
GOOD_OWNER = st.sampled_from(["user:root@vm", "docker:abc", "pid:1@vm", "k8s-pod:x"])
VALID_RECORD = st.fixed_dictionaries(
    {
        "level": st.just("s0:c5,c6"),
        "owners": st.lists(GOOD_OWNER, min_size=1, max_size=3),
        "created": st.one_of(st.floats(0, 2e9), st.integers(0, 2**40)),
        "expires": st.one_of(st.none(), st.floats(0, 2e9)),
        "name": st.one_of(st.none(), st.sampled_from(["web", "db-1"])),
        "shared": st.booleans(),
        "host": st.sampled_from(["vm", ""]),
        "custom": st.booleans(),
        "persistent": st.just(False),
    }
)
FIELD = st.sampled_from(
    [
        "level",
        "owners",
        "created",
        "expires",
        "name",
        "shared",
        "host",
        "custom",
        "persistent",
        "in_use",
        "other",
    ]
)


def _mutated(record: dict[str, object], how: str, field: str, value: object) -> dict[str, object]:
    out = dict(record)
    if how == "set":
        out[field] = value
    elif how == "drop":
        out.pop(field, None)
    return out


# Mostly valid records; some with one field dropped or set to anything.
RECORD = st.builds(
    _mutated,
    VALID_RECORD,
    st.sampled_from(["keep", "keep", "set", "drop"]),
    FIELD,
    st.one_of(VALUE, st.sampled_from(["s0:c6,c5", "s0:c5.c6", "s0:c5,c7", True])),
)


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("peek") / "labels.db"
    open_store(f"sqlite://{path}", create=True).close()
    return path


@SETTINGS
@given(
    record=RECORD,
    raw=st.sampled_from([None, None, None, "{", "[]", '"x"', '{"level":"s0:c5,c6"}']),
    tail=st.sampled_from(["", "", "", "\x00", "\x00junk", " ", "/*c*/", ",", "{}"]),
    rev=st.one_of(st.integers(-2, 3), st.sampled_from(["x", 1.5, b"1"])),
)
def test_a_record_the_lean_reader_takes_is_one_the_store_takes(
    store_file: Path, record: dict[str, object], raw: str | None, tail: str, rev: object
) -> None:
    text = (raw if raw is not None else json.dumps(record)) + tail
    conn = sqlite3.connect(store_file)
    with conn:
        conn.execute("DELETE FROM allocations")
        conn.execute(
            "INSERT INTO allocations (key, name, record, rev) VALUES ('s0:c5,c6', NULL, ?, ?)",
            (text, rev),
        )
    conn.close()
    lean = sqlite_owners(str(store_file), "s0:c5,c6")
    if lean is None:
        return
    store = open_store(f"sqlite://{store_file}")
    try:
        held = holding(store, "s0:c5,c6")
    except MCSLabelError as exc:
        raise AssertionError(f"the lean reader took a record the store refuses: {exc}") from exc
    finally:
        store.close()
    assert held is not None and held.owners == lean


def full_holding(path: str) -> object:
    store = open_store(f"sqlite://{path}")
    try:
        return holding(store, "s0:c5,c6")
    finally:
        store.close()


def test_a_store_the_full_reader_would_warn_about_is_not_read(tmp_path: Path) -> None:
    # Found by trying: each of these made the full command warn while the
    # lean reader answered.
    url = f"sqlite://{tmp_path / 'base.db'}"
    store = open_store(url, create=True)
    store.close()
    from mcslabel import Allocator

    with Allocator(open_store(url)) as allocator:
        allocator.reserve("s0:c5,c6", "user:x@y")

    def variant(name: str, *sql: str) -> str:
        path = tmp_path / f"{name}.db"
        shutil.copy(tmp_path / "base.db", path)
        conn = sqlite3.connect(path)
        conn.isolation_level = None
        for statement in sql:
            conn.executescript(statement)
        conn.close()
        return str(path)

    assert sqlite_owners(variant("good"), "s0:c5,c6") == ("user:x@y",)
    bad = [
        variant("nul", "UPDATE allocations SET record = record || char(0) || 'junk'"),
        variant("revneg", "UPDATE allocations SET rev = -1"),
        variant("revtext", "UPDATE allocations SET rev = 'x'"),
        variant(
            "verreal",
            "DROP TABLE mcslabel_schema; CREATE TABLE mcslabel_schema (version REAL);"
            " INSERT INTO mcslabel_schema VALUES (1.0)",
        ),
        variant("json5", "UPDATE allocations SET record = record || ' /* c */'"),
        variant(
            "huge",
            "UPDATE allocations SET record = json_set(record, '$.created', 1e308)",
            "UPDATE allocations SET record ="
            " replace(record, '1.0e+308', '1' || printf('%.400c', '0'))",
        ),
    ]
    for path in bad:
        assert sqlite_owners(path, "s0:c5,c6") is None, path
        with pytest.raises(MCSLabelError):  # the full reader: a store error, so a warning
            full_holding(path)
    # A store the full reader cannot open for writing (a read-only mount).
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(variant("delete", "PRAGMA journal_mode = DELETE"), ro / "labels.db")
    subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        assert sqlite_owners(str(ro / "labels.db"), "s0:c5,c6") is None
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_no_record_is_nobody(store_file: Path) -> None:
    conn = sqlite3.connect(store_file)
    with conn:
        conn.execute("DELETE FROM allocations")
    conn.close()
    assert sqlite_owners(str(store_file), "s0:c5,c6") == ()
    assert sqlite_owners(str(store_file), "s0:c6,c5") is None  # not a canonical key
    assert sqlite_owners("relative.db", "s0:c5,c6") is None
    assert sqlite_owners("//" + str(store_file), "s0:c5,c6") is None


# --- the mount table --------------------------------------------------------------


@pytest.mark.parametrize("where", ["tmp", "/dev/shm", "/proc/self"])
def test_the_mount_tables_file_system_name_agrees_with_fstatfs(tmp_path: Path, where: str) -> None:
    from mcslabel.relabeling._fsfacts import NLINK_COUNTS_SUBDIRS_FS, nlink_counts_subdirs
    from mcslabel.relabeling.mounts import holder, read_mountinfo

    path = str(tmp_path) if where == "tmp" else os.path.realpath(where)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.fstat(fd)
        mount = holder(path, read_mountinfo())
        assert mount is not None
        same_fs = mount.device == f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
        named = same_fs and mount.fstype in NLINK_COUNTS_SUBDIRS_FS
        assert named == nlink_counts_subdirs(fd), (mount, same_fs)
        assert named == (where != "/proc/self")  # ext4 or tmpfs here; procfs is neither
    finally:
        os.close(fd)


@SETTINGS
@given(st.text(alphabet="\\0123456789ab /", max_size=24))
def test_unoctal_undoes_escapes_as_the_regular_expression_did(raw: str) -> None:
    expected = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw)
    assert unoctal(raw) == expected
