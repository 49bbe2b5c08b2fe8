"""Hypothesis strategies for levels and contexts, shared by the test modules."""

from __future__ import annotations

from hypothesis import strategies as st

from mcslabel.context import Context
from mcslabel.level import Level, LevelRange

CATEGORIES = 1024

category_sets = st.frozensets(st.integers(0, CATEGORIES - 1), max_size=40)
levels = st.builds(Level, st.integers(0, 15), category_sets)
pairs = (
    st.tuples(st.integers(0, CATEGORIES - 1), st.integers(0, CATEGORIES - 1))
    .filter(lambda ab: ab[0] != ab[1])
    .map(lambda ab: Level.pair(*ab))
)


@st.composite
def level_ranges(draw: st.DrawFn) -> LevelRange:
    low = draw(levels)
    extra = draw(category_sets)
    high = Level(draw(st.integers(low.sensitivity, 15)), low.categories | extra)
    return LevelRange(low, high)


identifiers = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True)
contexts = st.builds(
    Context, identifiers, identifiers, identifiers, st.none() | levels | level_ranges()
)
