"""The raw level grammar: numbers, category lists, range checks, canonical printing.

Part of the model (no I/O): what :mod:`mcslabel.level` uses to read and write
the text of a level, following libsepol and the kernel's ``mls.c`` (see
there). Public names are re-exported by :mod:`mcslabel.level`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from mcslabel.errors import InvalidLevel, show_input

#: Category count of every mainstream MCS policy (c0..c1023).
DEFAULT_CATEGORIES = 1024
#: Sensitivity count of refpolicy MLS builds (s0..s15); MCS policies use s0 only.
DEFAULT_SENSITIVITIES = 16

# Longest decimal accepted for a sensitivity or category number; bounds the
# work done on hostile input before range checks apply.
MAX_DIGITS = 6
NUMBER = re.compile(r"(0|[1-9][0-9]*)")
# The shapes nearly every label has (s0, s0:c1,c2): parsed without the general loop.
COMMON = re.compile(r"s(0|[1-9][0-9]{0,5})(?::c(0|[1-9][0-9]{0,5})(?:,c(0|[1-9][0-9]{0,5}))?)?")
# mcstrans names (setrans.conf): raw levels never contain these characters.
TRANSLATED_HINT = re.compile(r"[A-Za-z]{2,}|\s")


def number(text: str, prefix: str, what: str, whole: str) -> int:
    if not text.startswith(prefix):
        raise InvalidLevel(
            f"{what} {show_input(text)} in {show_input(whole)} must start with {prefix!r}"
        )
    digits = text[len(prefix) :]
    if not digits:
        raise InvalidLevel(
            f"{what} {show_input(text)} in {show_input(whole)} has no number after {prefix!r}"
        )
    if len(digits) > MAX_DIGITS:
        raise InvalidLevel(f"{what} {show_input(text)} in {show_input(whole)} is out of range")
    if not NUMBER.fullmatch(digits):
        raise InvalidLevel(
            f"{what} {show_input(text)} in {show_input(whole)} must be {prefix!r} followed"
            " by a decimal number without leading zeros"
        )
    return int(digits)


def check_raw(text: object, kind: str) -> str:
    if not isinstance(text, str):
        raise InvalidLevel(f"{kind} must be a string, not {type(text).__name__}")
    if not text:
        raise InvalidLevel(f"empty {kind}")
    if any(ch.isspace() for ch in text):
        raise InvalidLevel(f"{kind} {show_input(text)} contains whitespace")
    if not text.isascii():
        raise InvalidLevel(f"{kind} {show_input(text)} contains non-ASCII characters")
    head = text.split(":", 1)[0].split("-", 1)[0]
    if TRANSLATED_HINT.search(head):
        raise InvalidLevel(
            f"{kind} {show_input(text)} looks like an mcstrans-translated name; use the raw"
            " form such as 's0', 's0:c1,c2' or 's0-s0:c0.c1023'"
        )
    return text


def sensitivity_in_range(sensitivity: int, text: str, sensitivities: int) -> None:
    if sensitivity >= sensitivities:
        have = "s0 only" if sensitivities == 1 else f"s0..s{sensitivities - 1}"
        raise InvalidLevel(
            f"sensitivity s{sensitivity} in {show_input(text)} is out of range (policy has {have})"
        )


def category_out_of_range(c: int, text: str, categories: int) -> InvalidLevel:
    return InvalidLevel(
        f"category c{c} in {show_input(text)} is out of range (policy has c0..c{categories - 1})"
    )


def parse_categories(text: str, cats_text: str, categories: int, strict: bool) -> set[int]:
    found: set[int] = set()
    for part in cats_text.split(","):
        if not part:
            raise InvalidLevel(f"{show_input(text)} has an empty category between commas")
        if "." in part:
            lo_text, _, hi_text = part.partition(".")
            if "." in hi_text:
                raise InvalidLevel(
                    f"category range {show_input(part)} in {show_input(text)} has more than one '.'"
                )
            lo = number(lo_text, "c", "category", text)
            hi = number(hi_text, "c", "category", text)
            if lo >= hi:
                # libsepol (and the kernel) refuse c5.c5 as well as c5.c3.
                fix = f"write c{lo} alone" if lo == hi else f"reversed; write c{hi}.c{lo}"
                raise InvalidLevel(
                    f"category range {show_input(part)} in {show_input(text)} must go from a"
                    f" lower to a higher category ({fix})"
                )
            if hi >= categories:
                raise category_out_of_range(hi, text, categories)
            members: Iterable[int] = range(lo, hi + 1)
        else:
            single = number(part, "c", "category", text)
            if single >= categories:
                raise category_out_of_range(single, text, categories)
            members = (single,)
        if strict:
            for c in members:
                if c in found:
                    raise InvalidLevel(f"category c{c} appears twice in {show_input(text)}")
                found.add(c)
        else:
            found.update(members)
    return found


def runs(cats: Iterable[int]) -> Iterator[tuple[int, int]]:
    ordered = sorted(cats)
    start = prev = ordered[0]
    for c in ordered[1:]:
        if c != prev + 1:
            yield start, prev
            start = c
        prev = c
    yield start, prev


def format_categories(cats: Iterable[int]) -> str:
    """Kernel-style category list: ``c0.c5,c9`` (runs of 3+) or ``c1,c2``.

    libsepol's own printer has a bug this does not copy: a run ending on a
    64-bit boundary followed by a later category prints the wrong end
    (``s0:c62,c63,c200`` comes out as ``s0:c62,c191,c200``); the kernel and
    this function print ``s0:c62,c63,c200``.
    """
    parts: list[str] = []
    for lo, hi in runs(cats):
        if hi - lo >= 2:
            parts.append(f"c{lo}.c{hi}")
        else:
            parts.extend(f"c{c}" for c in range(lo, hi + 1))
    return ",".join(parts)
