"""Category-pair arithmetic: numbering the ``s0`` pairs and naming which a level touches.

Pure functions over integers and :class:`~mcslabel.level.Level` (no I/O). Pairs
``cA,cB`` (``A < B``) over ``n`` categories are numbered ``0 .. C(n,2)-1`` in
lexicographic order of ``(A, B)``: :func:`pair_index` and :func:`pair_at` convert.
May import: the rest of the model only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence

from mcslabel.errors import InvalidInput, InvalidLevel
from mcslabel.level import DEFAULT_CATEGORIES, Level


def pair_count(categories: int) -> int:
    """Number of pairs ``cA,cB`` (A < B) over ``categories`` categories: C(n, 2)."""
    return categories * (categories - 1) // 2


def pair_index(a: int, b: int, categories: int) -> int:
    """Index of the pair ``(a, b)``, ``a < b < categories``, in lexicographic order."""
    if not 0 <= a < b < categories:
        raise InvalidLevel(f"c{a},c{b} is not a pair with a < b < {categories}")
    return a * (2 * categories - a - 1) // 2 + (b - a - 1)


def pair_at(index: int, categories: int) -> tuple[int, int]:
    """Inverse of :func:`pair_index`."""
    if not 0 <= index < pair_count(categories):
        raise InvalidInput(f"pair index {index} out of range for {categories} categories")
    m = 2 * categories - 1
    a = (m - math.isqrt(m * m - 8 * index)) // 2
    # isqrt rounding may land one row off: step to the row holding index.
    while a > 0 and a * (m - a) // 2 > index:
        a -= 1
    while (a + 1) * (m - a - 1) // 2 <= index:
        a += 1
    start = a * (m - a) // 2
    return a, a + 1 + (index - start)


def name_hash_index(name: str, categories: int = DEFAULT_CATEGORIES) -> int:
    """The preferred pair index of a deterministic name (SHA-256, host independent)."""
    digest = hashlib.sha256(b"mcslabel-name\x00" + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % pair_count(categories)


def comparable_pairs(level: Level, categories: int) -> Iterator[int]:
    """Indexes of the ``s0`` pairs comparable with ``level`` (dominating or dominated).

    A pair lies under ``level`` when its two categories are in the level's
    set; it lies over ``level`` when the level is ``s0`` with one category
    that the pair contains (or is the pair itself, already counted). This
    lists up to C(n, 2) pairs: the allocator blocks by rule instead
    (:meth:`~mcslabel.allocation.allocator.Allocator.blocks`); this is for
    reports and tests.
    """
    cats = sorted(c for c in level.categories if c < categories)
    for i, a in enumerate(cats):
        for b in cats[i + 1 :]:
            yield pair_index(a, b, categories)
    if level.sensitivity == 0 and len(level.categories) == 1 and cats:
        (c,) = cats
        for other in range(categories):
            if other != c:
                yield pair_index(min(c, other), max(c, other), categories)


def pairs_never_comparable(levels: Sequence[Level]) -> bool:
    """True when no two of ``levels`` are comparable (the allocator's invariant)."""
    return not any(a.comparable(b) for i, a in enumerate(levels) for b in levels[i + 1 :])


__all__ = [
    "comparable_pairs",
    "name_hash_index",
    "pair_at",
    "pair_count",
    "pair_index",
    "pairs_never_comparable",
]
