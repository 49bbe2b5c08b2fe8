"""Level and LevelRange: parsing, canonical form, dominance, validation."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcslabel.errors import InvalidLevel, MCSLabelError
from mcslabel.level import Level, LevelRange, format_categories, parse_level_or_range
from tests.strategies import level_ranges, levels


@pytest.mark.parametrize(
    ("text", "canonical", "cats"),
    [
        ("s0", "s0", ()),
        ("s0:c1,c2", "s0:c1,c2", (1, 2)),
        ("s0:c2,c1", "s0:c1,c2", (1, 2)),
        ("s0:c0.c5", "s0:c0.c5", (0, 1, 2, 3, 4, 5)),
        ("s0:c1,c3.c5", "s0:c1,c3.c5", (1, 3, 4, 5)),
        ("s0:c0,c1,c2", "s0:c0.c2", (0, 1, 2)),
        ("s0:c0.c1", "s0:c0,c1", (0, 1)),
        ("s0:c1,c1", "s0:c1", (1,)),
        ("s0:c0.c5,c3", "s0:c0.c5", (0, 1, 2, 3, 4, 5)),
        ("s0:c3,c0.c5", "s0:c0.c5", (0, 1, 2, 3, 4, 5)),
        ("s0:c2.c4,c3.c6", "s0:c2.c6", (2, 3, 4, 5, 6)),
        ("s0-s0", "s0", ()),
        ("s0:c1,c2-s0:c1,c2", "s0:c1,c2", (1, 2)),
        ("s0:c5,c1,c0,c2,c9", "s0:c0.c2,c5,c9", (0, 1, 2, 5, 9)),
        ("s15:c1023", "s15:c1023", (1023,)),
    ],
)
def test_parse_canonical(text: str, canonical: str, cats: tuple[int, ...]) -> None:
    level = Level.parse(text)
    assert str(level) == canonical
    assert level.sorted_categories == cats


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("s0:", "no categories"),
        ("s0:c1,", "empty category"),
        ("s0:,c1", "empty category"),
        ("s0:c1..c3", "more than one"),
        ("s0:c5.c3", "reversed"),
        ("s0:c5.c5", "lower to a higher"),
        ("s0:c1024", "out of range"),
        ("s16", "out of range"),
        ("s0:c99999999999", "out of range"),
        ("S0", "must start with 's'"),
        ("s0:k1", "must start with 'c'"),
        ("s0:c", "no number"),
        ("s0:c01", "leading zeros"),
        ("s0:c+1", "decimal"),
        ("s0: c1", "whitespace"),
        (" s0", "whitespace"),
        ("s0:c1\n", "whitespace"),
        ("SystemLow", "mcstrans"),
        ("SystemHigh", "mcstrans"),
        ("s0-s0:c0.c1023", "is a range"),
        ("-s0", "no low level"),
        ("s0:c\u0661", "non-ASCII"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(InvalidLevel, match=fragment):
        Level.parse(text)


@pytest.mark.parametrize("text", ["s0:c1,c1", "s0:c0.c5,c3", "s0:c5,c5", "s0-s0", "s0:c1-s0:c1"])
def test_strict_refuses_what_libsepol_folds(text: str) -> None:
    with pytest.raises(InvalidLevel):
        Level.parse(text, strict=True)
    Level.parse(text)


def test_error_messages_name_no_python_class() -> None:
    with pytest.raises(InvalidLevel) as info:
        Level.parse("s0-s0:c0.c1023")
    assert "LevelRange" not in str(info.value) and "s0-s0:c0.c1023" in str(info.value)


def test_sensitivities_from_policy() -> None:
    with pytest.raises(InvalidLevel, match="s0 only"):
        Level.parse("s1", sensitivities=1)
    with pytest.raises(InvalidLevel, match="s0 only"):
        Level.parse("s1:c1,c2", sensitivities=1)
    assert Level.parse("s15", sensitivities=16) == Level(15)


def test_repr_is_the_text() -> None:
    assert repr(Level.parse("s0:c2,c1")) == "Level('s0:c1,c2')"
    assert repr(LevelRange.parse("s0-s0:c0.c1023")) == "LevelRange('s0-s0:c0.c1023')"
    assert eval(repr(Level.parse("s0:c1,c2")), {"Level": Level.parse}) == Level.pair(1, 2)


def test_constructor_with_text_points_to_parse() -> None:
    with pytest.raises(InvalidLevel, match=r"Level\.parse\('s0:c1,c2'\)"):
        Level("s0:c1,c2")  # type: ignore[arg-type]
    with pytest.raises(InvalidLevel, match=r"LevelRange\.parse"):
        LevelRange("s0", "s0:c1")  # type: ignore[arg-type]


def test_levels_compare_with_their_text() -> None:
    level = Level.parse("s0:c1,c2")
    assert level == "s0:c2,c1" and "s0:c1,c2" == level  # noqa: SIM300
    assert level != "s0:c1" and level != "garbage" and level != 3
    assert level in ["s0:c1,c2"]
    assert LevelRange.parse("s0-s0:c0.c1023") == "s0-s0:c0.c1023"
    assert LevelRange.parse("s0") == "s0-s0" == Level(0)
    assert level.dominates("s0:c1") and level.comparable("s0")
    assert LevelRange.parse("s0-s0:c0.c1023").contains("s0:c5,c9")
    with pytest.raises(TypeError):
        level < level  # type: ignore[operator]  # noqa: B015


def test_category_count_from_policy() -> None:
    assert str(Level.parse("s0:c255", categories=256)) == "s0:c255"
    with pytest.raises(InvalidLevel, match=r"c0\.\.c255"):
        Level.parse("s0:c256", categories=256)
    with pytest.raises(InvalidLevel, match="out of range"):
        Level(0, frozenset({300})).check(categories=256)


def test_huge_input_is_shortened_in_message() -> None:
    with pytest.raises(InvalidLevel) as info:
        Level.parse("s0:c" + "9" * 100_000)
    assert len(str(info.value)) < 200


def test_dominance_examples() -> None:
    pair = Level.parse("s0:c1,c2")
    assert pair.dominates(Level.parse("s0:c1"))
    assert pair.dominates(Level.parse("s0"))
    assert not Level.parse("s0:c1").dominates(pair)
    assert not pair.dominates(Level.parse("s0:c1,c3"))
    assert not pair.comparable(Level.parse("s0:c3,c4"))
    assert Level.parse("s0:c1,c2,c3").dominates(pair)
    assert pair.is_pair
    assert not Level.parse("s0:c1").is_pair


def test_pair_constructor() -> None:
    assert Level.pair(7, 3) == Level.parse("s0:c3,c7")
    with pytest.raises(InvalidLevel, match="distinct"):
        Level.pair(3, 3)


def test_value_validation_at_the_edge() -> None:
    with pytest.raises(InvalidLevel):
        Level(-1)
    with pytest.raises(InvalidLevel):
        Level(0, frozenset({-5}))


def test_range_parse_and_validation() -> None:
    r = LevelRange.parse("s0-s0:c0.c1023")
    assert str(r) == "s0-s0:c0.c1023"
    assert str(LevelRange.parse("s0:c1,c2-s0:c1,c2")) == "s0:c1,c2"
    assert r.contains(Level.parse("s0:c5,c9"))
    assert LevelRange.parse("s0:c1,c2").low == LevelRange.parse("s0:c1,c2").high
    with pytest.raises(InvalidLevel, match="dominate"):
        LevelRange.parse("s0:c1-s0:c2")
    with pytest.raises(InvalidLevel, match="no high"):
        LevelRange.parse("s0-")
    with pytest.raises(InvalidLevel, match="more than one"):
        LevelRange.parse("s0-s0-s0")
    with pytest.raises(InvalidLevel, match="mcstrans"):
        LevelRange.parse("SystemLow-SystemHigh")
    assert isinstance(parse_level_or_range("s0:c1"), Level)
    assert isinstance(parse_level_or_range("s0-s0:c1"), LevelRange)


def test_format_categories_runs() -> None:
    assert format_categories([4, 1, 2, 3, 9, 10]) == "c1.c4,c9,c10"


@given(levels)
def test_parse_format_roundtrip(level: Level) -> None:
    assert Level.parse(str(level)) == level
    assert str(Level.parse(str(level))) == str(level)


@given(level_ranges())
def test_range_roundtrip(r: LevelRange) -> None:
    assert LevelRange.parse(str(r)) == r


@given(st.lists(st.integers(0, 1023), min_size=1, max_size=30))
def test_any_spelling_parses_to_same_level(cats: list[int]) -> None:
    spelled = "s0:" + ",".join(f"c{c}" for c in cats)
    assert Level.parse(spelled) == Level(0, frozenset(cats))


@given(levels)
def test_dominance_reflexive(a: Level) -> None:
    assert a.dominates(a)


@given(levels, levels)
def test_dominance_antisymmetric(a: Level, b: Level) -> None:
    if a.dominates(b) and b.dominates(a):
        assert a == b


@given(levels, levels, levels)
def test_dominance_transitive(a: Level, b: Level, c: Level) -> None:
    if a.dominates(b) and b.dominates(c):
        assert a.dominates(c)


@given(st.text(max_size=60))
def test_parser_raises_only_mcslabel_errors(text: str) -> None:
    with contextlib.suppress(MCSLabelError):
        parse_level_or_range(text)


@given(
    st.from_regex(r"s[0-9]{1,3}(:[c0-9.,]{0,30})?(-s[0-9]{1,2}(:[c0-9.,]{0,30})?)?", fullmatch=True)
)
def test_near_miss_inputs_raise_only_mcslabel_errors(text: str) -> None:
    try:
        value = parse_level_or_range(text)
    except MCSLabelError:
        return
    assert parse_level_or_range(str(value)) == value


@given(levels)
def test_a_degenerate_range_is_its_level_in_sets_and_dicts(level: Level) -> None:
    span = LevelRange(level, level)
    assert span == level and hash(span) == hash(level) and str(span) == str(level)
    assert {span: 1}[level] == 1
    assert parse_level_or_range(f"{level}-{level}") == level


@given(level_ranges())
def test_text_and_value_agree(r: LevelRange) -> None:
    assert r == str(r)
    assert not r != str(r)  # noqa: SIM202 (__ne__ is hand-written)
    assert r.low == str(r.low) and r.high.dominates(str(r.low))
