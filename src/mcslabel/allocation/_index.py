"""The allocator's in-memory view of which ``s0`` category pairs are free.

Owns: per-row bitsets of blocked pairs and a Fenwick tree over the rows' free
counts, so that a uniform draw, the ``k``-th free pair and "free pairs before
this one" cost O(log n) big-integer operations at any occupancy, and memory
stays O(n) small integers for ``n`` categories (not O(n^2)).

Row ``a`` holds the pairs ``(a, b)`` with ``a < b < n``; bit ``b`` of the row's
mask is set when the pair is blocked. A pair is blocked by *pair records*
(held or excluded ``s0`` pairs, reference counted) or *by rule* by any other
level ``L`` (custom reservations, levels seen in use, exclusions):

- ``L`` dominates the pair when both categories are in ``L`` (any sensitivity):
  every row ``c`` in ``L`` ORs in the mask of ``L``'s categories;
- the pair dominates ``L`` when ``L`` is ``s0`` with a single category ``c``:
  every pair containing ``c`` is blocked (one mask shared by all rows).

So a level as wide as ``s0:c0.c1023`` costs one mask per row, never a list of
its 523,776 pairs. May import: the model only.
"""

from __future__ import annotations

import bisect

from mcslabel.level import Level
from mcslabel.pairs import pair_count


class FreeIndex:
    """Which pairs over ``categories`` categories are free (see the module docs)."""

    def __init__(self, categories: int) -> None:
        n = categories
        self.categories = n
        self.size = pair_count(n)
        #: Free pairs now.
        self.free = self.size
        self._full = (1 << n) - 1
        # Index of each row's first pair (c_a, c_a+1): pair_of by bisection in C.
        self.row_starts = [a * (2 * n - a - 1) // 2 for a in range(n - 1)]
        # Pair index -> pair records blocking it, for pairs held by more than one (rare:
        # an exclusion that is also allocated); one record is the bit in _pairs alone.
        self._pair_counts: dict[int, int] = {}
        self._pairs = [0] * n  # row -> bits of pairs blocked by pair records
        self._rule_masks: dict[int, list[int]] = {}  # row -> masks of rules containing it
        self._rules = [0] * n  # row -> OR of _rule_masks[row]
        self._singles: dict[int, int] = {}  # category -> s0 single-category rules on it
        self._single_mask = 0
        #: Row -> every blocked bit of the row (only bits > row); read by hot loops.
        self.blocked = [0] * n
        self._row_free = [n - 1 - a for a in range(n)]
        # Fenwick tree over _row_free, 1-based, padded to a power of two.
        self._cap = 1 << max(n - 1, 1).bit_length()
        self._tree: list[int] = []
        # Queued changes not yet in the tree, flat: row, delta, row, delta... (ints, so
        # the garbage collector does not track them); None = rebuild the tree.
        self._pending: list[int] | None = None

    # --- pairs ----------------------------------------------------------

    def pair_of(self, index: int) -> tuple[int, int]:
        """The pair ``(a, b)`` numbered ``index`` (known to be in range)."""
        starts = self.row_starts
        a = bisect.bisect_right(starts, index) - 1
        return a, a + 1 + index - starts[a]

    def index_of(self, a: int, b: int) -> int:
        """The number of the pair ``(a, b)``, ``a < b < categories``."""
        return self.row_starts[a] + b - a - 1

    def is_free(self, a: int, b: int) -> bool:
        return not (self.blocked[a] >> b) & 1

    def block_pair(self, a: int, b: int) -> None:
        """One more pair record holds ``(a, b)``."""
        bit = 1 << b
        row = self._pairs[a]
        if row & bit:  # held already: count the extra record
            index = self.row_starts[a] + b - a - 1  # index_of(), inlined
            self._pair_counts[index] = self._pair_counts.get(index, 1) + 1
            return
        self._pairs[a] = row | bit
        blocked = self.blocked[a]
        if not blocked & bit:  # the hot path: one bit, one row count
            self.blocked[a] = blocked | bit
            self._row_free[a] -= 1  # _moved(a, -1), inlined
            self.free -= 1
            pending = self._pending
            if pending is not None:
                pending.append(a)
                pending.append(-1)
                if len(pending) > 2 * self.categories:
                    self._pending = None

    def unblock_pair(self, a: int, b: int) -> None:
        """One pair record less holds ``(a, b)``."""
        index = self.index_of(a, b)
        count = self._pair_counts.get(index)
        if count is not None:
            if count > 2:
                self._pair_counts[index] = count - 1
            else:
                del self._pair_counts[index]
            return
        if not (self._pairs[a] >> b) & 1:
            raise KeyError(f"pair c{a},c{b} is not held")
        self._pairs[a] &= ~(1 << b)
        self._recompute(a)

    # --- rules ----------------------------------------------------------

    def block(self, level: Level) -> None:
        """Block every pair comparable with ``level``."""
        self._change(level, 1)

    def unblock(self, level: Level) -> None:
        """Undo one :meth:`block` of ``level``."""
        self._change(level, -1)

    def _change(self, level: Level, delta: int) -> None:
        n = self.categories
        cats = [c for c in level.categories if c < n]
        if level.sensitivity == 0 and len(level.categories) == 2:
            if len(cats) == 2:
                a, b = sorted(cats)
                (self.block_pair if delta > 0 else self.unblock_pair)(a, b)
            return  # a pair beyond the category count blocks nothing here
        if level.sensitivity == 0 and len(level.categories) == 1 and cats:
            (c,) = cats
            count = self._singles.get(c, 0) + delta
            if count:
                self._singles[c] = count
            else:
                del self._singles[c]
            if (count == 1 and delta > 0) or count == 0:
                self._single_mask ^= 1 << c
                for row in range(n):
                    self._recompute(row)
            return
        if len(cats) < 2:
            return  # dominates no pair, and no pair dominates it
        mask = 0
        for c in cats:
            mask |= 1 << c
        for c in cats:
            masks = self._rule_masks.setdefault(c, [])
            if delta > 0:
                masks.append(mask)
            else:
                masks.remove(mask)
            combined = 0
            for m in masks:
                combined |= m
            if not masks:
                del self._rule_masks[c]
            self._rules[c] = combined
            self._recompute(c)

    def _recompute(self, row: int) -> None:
        if row in self._singles:
            bits = self._full
        else:
            bits = self._pairs[row] | self._rules[row] | self._single_mask
        bits = bits >> (row + 1) << (row + 1)
        self.blocked[row] = bits
        free = self.categories - 1 - row - bits.bit_count()
        if free != self._row_free[row]:
            self._moved(row, free - self._row_free[row])

    # --- counting -------------------------------------------------------

    def _moved(self, row: int, delta: int) -> None:
        self._row_free[row] += delta
        self.free += delta
        pending = self._pending
        if pending is not None:
            pending.append(row)
            pending.append(delta)
            if len(pending) > 2 * self.categories:
                self._pending = None  # cheaper to rebuild than to replay

    def _flush(self) -> None:
        pending, tree, cap = self._pending, self._tree, self._cap
        if pending is None:
            tree = [0, *self._row_free] + [0] * (cap - self.categories)
            for i in range(1, cap + 1):
                parent = i + (i & -i)
                if parent <= cap:
                    tree[parent] += tree[i]
            self._tree = tree
            self._pending = []
            return
        for at in range(0, len(pending), 2):
            i, delta = pending[at] + 1, pending[at + 1]
            while i <= cap:
                tree[i] += delta
                i += i & -i
        pending.clear()

    def _free_bits(self, row: int) -> int:
        return ~self.blocked[row] & (self._full >> (row + 1) << (row + 1))

    def kth_free(self, k: int) -> tuple[int, int]:
        """The k-th (0-based, in pair order) free pair; requires ``0 <= k < free``."""
        if self._pending is None or self._pending:
            self._flush()
        pos, remaining, step, tree = 0, k + 1, self._cap, self._tree
        while step:
            if pos + step <= self._cap:
                value = tree[pos + step]
                if value < remaining:
                    pos += step
                    remaining -= value
            step >>= 1
        row = pos  # 1-based pos+1 -> row pos
        bits = self._free_bits(row)
        # The remaining-th set bit of bits: bisect on prefix popcounts.
        lo, hi = row + 1, self.categories - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if (bits & ((2 << mid) - 1)).bit_count() >= remaining:
                hi = mid
            else:
                lo = mid + 1
        return row, lo

    def free_before(self, a: int, b: int) -> int:
        """Number of free pairs numbered below the pair ``(a, b)``."""
        if self._pending is None or self._pending:
            self._flush()
        total, i, tree = 0, a, self._tree
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total + (self._free_bits(a) & ((1 << b) - 1)).bit_count()


__all__ = ["FreeIndex"]
