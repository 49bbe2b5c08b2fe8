"""Differential test: mcslabel's level parser and printer against libsepol's.

libsepol (Debian's ``libsepol.so.2``, the same ``mls.c`` as the kernel) is
driven through ctypes in a child process (``sepol_set_policydb_from_file``
installs a process-wide policy; the child keeps it away from the verifier's
own libsepol state). For every generated vector the child reports whether
``sepol_context_to_sid`` accepts ``user:role:type:VECTOR``, the SID, and
``sepol_sid_to_context``'s text. mcslabel must:

- accept exactly the vectors libsepol accepts (same policy sizes);
- parse each to the same level: our canonical text maps to the SAME SID
  (libsepol's sidtab holds one SID per distinct context, so this compares
  the parsed values without trusting either printer);
- print what libsepol prints, except where libsepol's printer is wrong.

libsepol's bug (``mls_sid_to_context``/``mls_compute_context_len`` in
``libsepol/src/mls.c``, upstream HEAD too): when a run of two or more
categories ends on the last bit of a 64-bit ebitmap node (c63, c127, ...)
and the next category lies in a later node, the run's end is printed as the
bit before that later node: ``s0:c62,c63,c200`` prints ``s0:c62,c191,c200``.
:func:`libsepol_printer_bug` reproduces that; a disagreement is accepted
only when libsepol's text is exactly that misprint of our level.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcslabel.errors import InvalidLevel
from mcslabel.level import Level, LevelRange, parse_level_or_range

INSTALLED_POLICY = Path("/etc/selinux/default/policy/policy.33")
VECTORS_PER_POLICY = 6000

# The child: one ctypes session of libsepol, vectors in on stdin (JSON), answers out.
_CHILD = r"""
import ctypes, json, sys
lib = ctypes.CDLL("libsepol.so.2")
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.free.argtypes = [ctypes.c_void_p]
lib.sepol_debug.argtypes = [ctypes.c_int]
lib.sepol_set_policydb_from_file.argtypes = [ctypes.c_void_p]
lib.sepol_context_to_sid.argtypes = [
    ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32)]
lib.sepol_sid_to_context.argtypes = [
    ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
request = json.load(sys.stdin)
lib.sepol_debug(0)
fp = libc.fopen(request["policy"].encode(), b"r")
assert fp, request["policy"]
assert lib.sepol_set_policydb_from_file(fp) == 0
libc.fclose(fp)
prefix = request["prefix"]
answers = []
for level in request["levels"]:
    data = (prefix + level).encode()
    sid = ctypes.c_uint32()
    if lib.sepol_context_to_sid(data, len(data) + 1, ctypes.byref(sid)) < 0:
        answers.append(None)
        continue
    out, size = ctypes.c_void_p(), ctypes.c_size_t()
    assert lib.sepol_sid_to_context(sid.value, ctypes.byref(out), ctypes.byref(size)) == 0
    text = ctypes.string_at(out.value, size.value).rstrip(b"\0").decode()
    libc.free(out.value)
    answers.append([sid.value, text[len(prefix):]])
json.dump(answers, sys.stdout)
"""


def _libsepol(policy: Path, prefix: str, levels: list[str]) -> list[tuple[int, str] | None]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps({"policy": str(policy), "prefix": prefix, "levels": levels}),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return [None if a is None else (a[0], a[1]) for a in json.loads(done.stdout)]


def libsepol_printer_bug(value: Level | LevelRange) -> str:
    """What libsepol's printer writes for ``value`` (see the module docstring)."""
    if isinstance(value, LevelRange):
        if value.low == value.high:
            return libsepol_printer_bug(value.low)
        return f"{libsepol_printer_bug(value.low)}-{libsepol_printer_bug(value.high)}"
    ordered = sorted(value.categories)
    if not ordered:
        return f"s{value.sensitivity}"
    parts: list[str] = []
    head = real_prev = seen_prev = -2
    for index, c in enumerate(ordered):
        if c - seen_prev > 1:
            if head != real_prev:
                parts[-1] += ("." if real_prev - head > 1 else ",") + f"c{seen_prev}"
            parts.append(f"c{c}")
            head = c
        real_prev = seen_prev = c
        if c % 64 == 63 and index + 1 < len(ordered):
            # The bug: past a node's last bit, "previous" becomes the bit
            # before the node holding the next category.
            seen_prev = ordered[index + 1] // 64 * 64 - 1
    if head != real_prev:
        parts[-1] += ("." if real_prev - head > 1 else ",") + f"c{seen_prev}"
    return f"s{value.sensitivity}:" + ",".join(parts)


# --- vectors ----------------------------------------------------------------------

_MALFORMED_CATEGORY = ["", "c", "c01", "C1", "c-1", "c1.", ".c1", "c1..c2", "c1.c2.c3", "x1"]


def _category_number(rng: random.Random, categories: int) -> int:
    if rng.random() < 0.7:
        base = rng.choice([0, 64, 128, 192, 256, 512, 960, categories])
        return max(0, base + rng.randint(-3, 3))
    return rng.randint(0, categories + 4)


def _category_item(rng: random.Random, categories: int) -> str:
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(_MALFORMED_CATEGORY)
    a = _category_number(rng, categories)
    if roll < 0.55:
        return f"c{a}"
    b = a + rng.choice([-2, -1, 0, 1, 1, 2, 3, 5, 64, rng.randint(0, 200)])
    return f"c{a}.c{max(b, 0)}"


def _level_text(rng: random.Random, sensitivities: int, categories: int) -> str:
    roll = rng.random()
    if roll < 0.02:
        sens = rng.choice(["s", "S0", "s01", "s-1", "", "t0"])
    else:
        sens = f"s{rng.choice([0, 0, 0, 1, sensitivities - 1, sensitivities, sensitivities + 1])}"
    if rng.random() < 0.2:
        return sens
    items = [_category_item(rng, categories) for _ in range(rng.choice([1, 2, 2, 3, 4, 6]))]
    if rng.random() < 0.15 and items:  # a duplicate or an overlap on purpose
        items.append(rng.choice(items))
    rng.shuffle(items)
    text = f"{sens}:{','.join(items)}"
    if rng.random() < 0.02:
        text += rng.choice([",", ":", ":c1", "-", " "])
    return text


def generate(rng: random.Random, count: int, sensitivities: int, categories: int) -> list[str]:
    vectors: list[str] = []
    while len(vectors) < count:
        low = _level_text(rng, sensitivities, categories)
        roll = rng.random()
        if roll < 0.55:
            vectors.append(low)
        elif roll < 0.65:
            vectors.append(f"{low}-{low}")
        else:
            vectors.append(f"{low}-{_level_text(rng, sensitivities, categories)}")
    return vectors


# --- the test ---------------------------------------------------------------------


def _mls_policy(directory: Path, sensitivities: int = 16, categories: int = 256) -> Path:
    checkpolicy = shutil.which("checkpolicy")
    if checkpolicy is None:
        pytest.fail("checkpolicy is not installed (apt-get install checkpolicy)")
    top = f"s{sensitivities - 1}:c0.c{categories - 1}"
    conf = "\n".join(
        [
            "class process",
            "class file",
            "sid kernel",
            "sid unlabeled",
            "common file { read write }",
            "class process { transition }",
            "class file inherits file",
            *(f"sensitivity s{i};" for i in range(sensitivities)),
            "dominance { " + " ".join(f"s{i}" for i in range(sensitivities)) + " }",
            *(f"category c{i};" for i in range(categories)),
            *(f"level s{i}:c0.c{categories - 1};" for i in range(sensitivities)),
            "mlsconstrain file { read } (h1 dom h2);",
            "type kernel_t;",
            "type file_t;",
            "allow kernel_t file_t:file read;",
            "role system_r;",
            "role system_r types { kernel_t };",
            f"user system_u roles {{ system_r }} level s0 range s0 - {top};",
            f"sid kernel system_u:system_r:kernel_t:s0 - {top}",
            "sid unlabeled system_u:object_r:file_t:s0",
        ]
    )
    (directory / "policy.conf").write_text(conf + "\n")
    out = directory / "policy.33"
    done = subprocess.run(
        [checkpolicy, "-M", "-c", "33", "-o", str(out), str(directory / "policy.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _ours(text: str, sensitivities: int, categories: int) -> Level | LevelRange | None:
    try:
        return parse_level_or_range(text, sensitivities=sensitivities, categories=categories)
    except InvalidLevel:
        return None


def _differential(
    policy: Path, prefix: str, sensitivities: int, categories: int, seed: int
) -> dict[str, int]:
    vectors = generate(random.Random(seed), VECTORS_PER_POLICY, sensitivities, categories)
    ours = [_ours(v, sensitivities, categories) for v in vectors]
    canonical = [str(o) for o in ours if o is not None]
    answers = _libsepol(policy, prefix, vectors + canonical)
    theirs, of_ours = answers[: len(vectors)], iter(answers[len(vectors) :])
    counts = {"accepted": 0, "refused": 0, "libsepol_misprint": 0}
    problems: list[str] = []
    for vector, mine, answer in zip(vectors, ours, theirs, strict=True):
        again = next(of_ours) if mine is not None else None
        if mine is None or answer is None:
            if (mine is None) != (answer is None):
                problems.append(f"{vector!r}: mcslabel {mine!s}, libsepol {answer}")
            counts["refused"] += 1
            continue
        counts["accepted"] += 1
        sid, printed = answer
        if again is None or again[0] != sid:
            problems.append(f"{vector!r}: parsed {mine} but libsepol's SID differs ({again})")
        if printed != str(mine):
            if printed == libsepol_printer_bug(mine):
                counts["libsepol_misprint"] += 1
            else:
                problems.append(f"{vector!r}: mcslabel prints {mine}, libsepol {printed!r}")
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:30])
    return counts


def test_agrees_with_libsepol_on_the_installed_policy() -> None:
    if not INSTALLED_POLICY.is_file():
        pytest.fail(f"{INSTALLED_POLICY} is missing (apt-get install selinux-policy-default)")
    counts = _differential(
        INSTALLED_POLICY, "system_u:object_r:container_file_t:", 1, 1024, seed=14
    )
    assert counts["accepted"] > 1000 and counts["refused"] > 1000, counts


def test_agrees_with_libsepol_on_a_16_sensitivity_mls_policy(tmp_path: Path) -> None:
    policy = _mls_policy(tmp_path)
    counts = _differential(policy, "system_u:object_r:file_t:", 16, 256, seed=41)
    assert counts["accepted"] > 1000 and counts["refused"] > 1000, counts


def test_the_documented_libsepol_misprint_is_not_copied() -> None:
    level = Level.parse("s0:c62,c63,c200")
    assert str(level) == "s0:c62,c63,c200"
    assert libsepol_printer_bug(level) == "s0:c62,c191,c200"
    answers = _libsepol(INSTALLED_POLICY, "system_u:object_r:container_file_t:", [str(level)])
    assert answers[0] is not None and answers[0][1] == "s0:c62,c191,c200"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s0-s0", "s0"),
        ("s0:c1,c2-s0:c1,c2", "s0:c1,c2"),
        ("s0:c1,c1", "s0:c1"),
        ("s0:c0.c5,c3", "s0:c0.c5"),
        ("s0:c5.c5", None),
    ],
)
def test_the_issue_examples(text: str, expected: str | None) -> None:
    answers = _libsepol(INSTALLED_POLICY, "system_u:object_r:container_file_t:", [text])
    assert (None if answers[0] is None else answers[0][1]) == expected
    mine = _ours(text, 1, 1024)
    assert (None if mine is None else str(mine)) == expected
