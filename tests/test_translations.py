"""mcstrans names: the CentOS root's real setrans.conf, includes, and --translate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcslabel.cli import main
from mcslabel.errors import InvalidLevel, PolicyError, TranslationError
from mcslabel.level import Level, LevelRange
from mcslabel.verification.translations import (
    Translations,
    load_translations,
    read_translations,
)
from tests.strategies import levels

SYSTEM_HIGH = Level(0, frozenset(range(1024)))


def test_the_centos_roots_names_both_ways(centos_root: Path) -> None:
    tr = load_translations(centos_root)
    assert tr.sources == (str(centos_root / "setrans.conf"),)
    assert tr.raw("SystemHigh") == SYSTEM_HIGH
    assert tr.raw("SystemLow") == Level(0)
    assert tr.raw("SystemLow-SystemHigh") == LevelRange(Level(0), SYSTEM_HIGH)
    assert tr.name(SYSTEM_HIGH) == "SystemHigh"
    assert tr.name("s0-s0:c0.c1023") == "SystemLow-SystemHigh"
    # Without a whole-range entry each end translates on its own, as mcstrans does.
    assert tr.name("s0-s0:c1,c2") == "SystemLow-s0:c1,c2"
    assert tr.raw("SystemLow-s0:c2,c1") == LevelRange.parse("s0-s0:c1,c2")
    assert tr.name("s0:c1,c2") == "s0:c1,c2"
    assert tr.raw("s0:c2,c1") == Level.parse("s0:c1,c2")
    with pytest.raises(TranslationError, match=r"no setrans\.conf entry names 'PatientRecord'"):
        tr.raw("PatientRecord")
    with pytest.raises(InvalidLevel, match="out of range"):
        tr.raw("s0:c1024")  # raw text keeps its own error
    assert not tr.disabled and not tr.composite


def test_check_translate_prints_the_raw_level(
    centos_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--translate", "SystemHigh", "--policy-root", str(centos_root)]) == 0
    assert capsys.readouterr().out == "s0:c0.c1023\n"
    ctx = "system_u:object_r:container_file_t:SystemLow-SystemHigh"
    assert main(["check", "--translate", ctx, "--policy-root", str(centos_root)]) == 0
    assert capsys.readouterr().out == "system_u:object_r:container_file_t:s0-s0:c0.c1023\n"
    # Without --translate a name is still refused with the hint.
    assert main(["check", "SystemHigh"]) == 2
    assert "mcstrans" in capsys.readouterr().err
    assert main(["check", "--translate", "Nope", "--policy-root", str(centos_root)]) == 2
    assert "no setrans.conf entry names 'Nope'" in capsys.readouterr().err


def test_translate_command_shows_names_next_to_raw_levels(
    centos_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["translate", "--policy-root", str(centos_root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RAW", "NAME"]
    assert ["s0:c0.c1023", "SystemHigh"] in [line.split() for line in lines]
    args = ["translate", "SystemHigh", "s0:c5", "--policy-root", str(centos_root), "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["translations"] == [
        {"raw": "s0:c0.c1023", "name": "SystemHigh"},
        {"raw": "s0:c5", "name": "s0:c5"},
    ]


def test_includes_relative_and_absolute_nested(tmp_path: Path) -> None:
    (tmp_path / "setrans.d").mkdir()
    (tmp_path / "setrans.d" / "a.conf").write_text("s0:c1=PatientRecord\nInclude=more/*\n")
    (tmp_path / "setrans.d" / "more").mkdir()
    (tmp_path / "setrans.d" / "more" / "x").write_text("s0:c1,c3 = Company Confidential\n")
    (tmp_path / "setrans.d" / "b.conf").write_text("s0:c2=Accounting  # trailing comment\n")
    (tmp_path / "other.conf").write_text("s0:c7=Absolute\n")
    (tmp_path / "setrans.conf").write_text(
        f"# site names\ns0=SystemLow\nInclude=setrans.d/*.conf\nInclude={tmp_path / 'other.conf'}\n"
    )
    tr = read_translations(tmp_path / "setrans.conf")
    assert tr.raw("PatientRecord") == Level(0, frozenset({1}))
    assert tr.raw("Company Confidential") == Level(0, frozenset({1, 3}))
    assert tr.raw("Accounting") == Level(0, frozenset({2}))
    assert tr.raw("Absolute") == Level(0, frozenset({7}))
    assert [Path(s).name for s in tr.sources] == [
        "setrans.conf",
        "a.conf",
        "x",
        "b.conf",
        "other.conf",
    ]


def test_include_loop_is_an_error_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "setrans.conf").write_text("Include=setrans.conf\n")
    with pytest.raises(PolicyError, match="nesting deeper than 32"):
        read_translations(tmp_path / "setrans.conf")


def test_missing_file_translates_nothing(tmp_path: Path) -> None:
    tr = read_translations(tmp_path / "setrans.conf")
    assert tr.names == {} and tr.name("s0:c1,c2") == "s0:c1,c2"
    with pytest.raises(TranslationError, match=r"no setrans\.conf"):
        tr.raw("SystemHigh")


def test_disable_turns_translation_off() -> None:
    tr = Translations.parse("disable=1\ns0=SystemLow\n")
    assert tr.disabled
    assert tr.name("s0") == "s0"
    with pytest.raises(TranslationError, match="disabled"):
        tr.raw("SystemLow")


def test_composite_constructs_are_skipped_whole_names_kept() -> None:
    # The shape of mcstrans's NATO example: a ModifierGroup's words are parts of names.
    text = """
Domain=NATO
s0=SystemLow
s15:c0.c1023=SystemHigh
Base=Sensitivity Levels
s1=UNCLASSIFIED
ModifierGroup=Releasability
Whitespace=,
Join=/
Prefix=REL
c200.c511=USA
~c200.c511=NOFORN
c0!c1
"""
    tr = Translations.parse(text)
    assert tr.composite
    assert tr.raw("UNCLASSIFIED") == Level(1)
    assert tr.raw("SystemHigh") == Level(15, frozenset(range(1024)))
    assert "USA" not in tr.raws and "NOFORN" not in tr.raws


def test_first_entry_wins_and_raws_are_canonical() -> None:
    tr = Translations.parse("s0:c2,c1=Pair\ns0:c1,c2=Again\ns0:c5=Pair\n")
    assert tr.raw("Pair") == Level.parse("s0:c1,c2")
    assert tr.name("s0:c1,c2") == "Pair"
    assert tr.name("s0:c5") == "Pair"  # the name is taken; the level still shows it


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s0:c1 Name\n", "expected raw=Name"),
        ("=Name\n", "empty side"),
        ("s0:c1=\n", "empty side"),
        ("s0:c99999=Big\n", "out of range"),
        ("Include=x\n", "no file reader"),
    ],
)
def test_malformed_files_say_where(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as info:
        Translations.parse(text, source="site.conf")
    assert "site.conf" in str(info.value)


@given(
    st.dictionaries(
        levels.filter(lambda lvl: lvl.sensitivity == 0),
        st.from_regex(r"[A-Z][A-Za-z]{2,12}", fullmatch=True),
        max_size=8,
    )
)
def test_names_round_trip(entries: dict[Level, str]) -> None:
    text = "".join(f"{level}={name}\n" for level, name in entries.items())
    tr = Translations.parse(text)
    for level in entries:
        name = tr.name(level)
        assert tr.raw(name) == level or tr.raws[name] != str(level)  # a name used twice


def test_translate_where_a_level_is_taken(
    centos_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--policy-root", str(centos_root), "--translate"]
    assert main(["kube", "security-context", "--level", "SystemLow", "--level-only", *root]) == 0
    assert json.loads(capsys.readouterr().out) == {"seLinuxOptions": {"level": "s0"}}
    assert main(["mount-options", "--level", "SystemHigh", *root]) == 0
    assert capsys.readouterr().out == 'context="system_u:object_r:container_file_t:s0:c0.c1023"\n'
    assert main(["mount-options", "--level", "SystemHigh", "--policy-root", str(centos_root)]) == 2
    assert "mcstrans" in capsys.readouterr().err
