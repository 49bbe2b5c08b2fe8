"""The key cases for two commits side by side, in one run: is the new one slower?

Each commit is checked out with ``git worktree add`` into a temporary
directory (``--new .`` takes this checkout as it is, uncommitted changes
included) and every case runs in a fresh child process whose ``PYTHONPATH``
is that tree's ``src``, with this interpreter. Rounds are interleaved (old,
new, new, old, ...) so that load from other processes hits both alike; the
table shows medians, and ``new/old`` as a speed ratio (above 1.00: new
faster): the median over the rounds of the ratio of each round's old and new
figures, which run seconds apart. The allocation cases take the best of
three runs within their process, ``import`` and ``--version`` the best of five
processes.

Cases: ``import mcslabel``; the ``mcslabel --version`` process (through the
tree's own console-script entry point); memory-store and SQLite allocation
throughput (one process); ``relabel()`` of a 20,000-file tree to a new level
(the library call, in-process: the first call of the process, which pays for
any lazy imports, and a second one); ``verify()`` on the installed policy (policy
load included). Module paths moved between commits, so each case looks its
functions up in the front door first, then in the old module paths.

    python benchmarks/compare_commits.py --old 2b05ce3 [--new HEAD|.] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FILES = 20_000
ALLOCATIONS = 20_000
SQLITE_ALLOCATIONS = 1_000
#: Runs of the allocation cases within one child; the best counts (load only slows a run).
REPEATS = 3
VERIFY_PATHS = ("/var", "/home", "/var/lib/containers")

# Where each name lives, newest layout first (the front door, then the modules of
# the layout move, then the flat modules from before it).
CANDIDATES = {
    "Allocator": ("mcslabel", "mcslabel.allocation.allocator", "mcslabel.allocator"),
    "MemoryStore": ("mcslabel.allocation.stores.memory", "mcslabel.stores.memory"),
    "SQLiteStore": ("mcslabel.allocation.stores.sqlite", "mcslabel.stores.sqlite"),
    "relabel": ("mcslabel", "mcslabel.relabeling.engine", "mcslabel.relabel"),
    "verify": ("mcslabel", "mcslabel.verification.verifier", "mcslabel.verify"),
}


# --- in the child (PYTHONPATH = one tree's src) ---------------------------------


def _find(name: str) -> Callable[..., object]:
    for module_name in CANDIDATES[name]:
        try:
            module = importlib.import_module(module_name)
            found = getattr(module, name)
        except (ImportError, AttributeError):
            continue
        if callable(found) and not isinstance(found, type(os)):
            return found  # type: ignore[no-any-return]
    raise SystemExit(f"{name} not found in {CANDIDATES[name]}")


def _best_rate(allocator: Any, count: int, repeats: int) -> float:
    """Allocations per second, the best of ``repeats`` runs of ``count`` (after a warm-up)."""
    allocator.allocate("warm-up")  # the first call loads the store
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            allocator.allocate("bench")
        best = max(best, count / (time.perf_counter() - start))
    return best


def _child(case: str, arg: str) -> float:
    """Run one case; return its figure (seconds, or operations per second)."""
    if case == "memory":
        allocator = _find("Allocator")(_find("MemoryStore")())
        return _best_rate(allocator, ALLOCATIONS, REPEATS)
    if case == "sqlite":
        store = _find("SQLiteStore")(Path(arg) / f"{os.getpid()}.db")
        return _best_rate(_find("Allocator")(store), SQLITE_ALLOCATIONS, REPEATS)
    if case in ("relabel", "relabel-first"):
        tree, level, other = arg.split("|")
        relabel = _find("relabel")
        if case == "relabel":  # the call again, once the process has made a first one
            relabel(tree, level=other)
        start = time.perf_counter()
        relabel(tree, level=level)
        return time.perf_counter() - start
    if case == "verify":
        verify = _find("verify")
        start = time.perf_counter()
        verify(paths=VERIFY_PATHS, root=arg)
        return time.perf_counter() - start
    raise SystemExit(f"unknown case {case!r}")


# --- in the parent --------------------------------------------------------------


class Tree:
    """One commit's source tree."""

    def __init__(self, label: str, root: Path) -> None:
        self.label = label
        self.root = root
        scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
        module, _, function = scripts["mcslabel"].partition(":")
        self.version_code = (
            f"import sys; sys.argv[0] = 'mcslabel'; from {module} import {function}; "
            f"sys.exit({function}())"
        )

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(self.root / "src")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: imports read bytecode
        return env

    def compile(self) -> None:
        """Byte-compile the tree first, so that no case pays for compiling its sources."""
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(self.root / "src")],
            env=self.env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def run(self, case: str, arg: str, scratch: Path) -> float:
        if case in ("import", "version"):  # a few tens of ms: the best of 5 processes
            return min(self._run(case, arg, scratch) for _ in range(5))
        return self._run(case, arg, scratch)

    def _run(self, case: str, arg: str, scratch: Path) -> float:
        if case == "version":
            argv = [sys.executable, "-c", self.version_code, "--version"]
            start = time.perf_counter()
            subprocess.run(argv, env=self.env(), cwd=scratch, check=True, capture_output=True)
            return time.perf_counter() - start
        # import: a bare interpreter (this script's own imports would shift when the
        # garbage collector runs); the other cases run this script in the child.
        code = "import time; t = time.perf_counter(); import mcslabel; print(time.perf_counter()-t)"
        child = ["-c", code] if case == "import" else [__file__, "--child", case, arg]
        argv = [sys.executable, *child]
        done = subprocess.run(
            argv, env=self.env(), cwd=scratch, check=False, capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(f"{self.label} {case} failed: {done.stderr[-800:]}")
        return float(done.stdout.split()[-1])


def _worktree(rev: str, into: Path) -> Path:
    if rev == ".":
        return REPO
    path = into / rev.replace("/", "_")
    done = subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"cannot check out {rev!r}: {done.stderr.strip()}")
    return path


def _pair(serial: int) -> str:
    """A level no earlier run of this comparison left on the tree, so every file changes."""
    return f"s0:c{serial % 1000},c{1000 + serial % 23}"


def _make_tree(root: Path) -> None:
    for d in range(FILES // 100):
        sub = root / f"d{d:03}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"f{f:02}").touch()


# name, unit, whether a larger figure is better
CASES = (
    ("import", "import mcslabel", "ms", False),
    ("version", "mcslabel --version (process)", "ms", False),
    ("memory", f"memory store, {ALLOCATIONS:,} allocations", "alloc/s", True),
    ("sqlite", f"SQLite store, {SQLITE_ALLOCATIONS:,} allocations", "alloc/s", True),
    ("relabel-first", f"relabel() of {FILES:,} files, 1st call", "s", False),
    ("relabel", f"relabel() of {FILES:,} files, 2nd call", "s", False),
    ("verify", f"verify() of {len(VERIFY_PATHS)} paths", "s", False),
)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(_child(sys.argv[2], sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--new", default=".", help="the new commit ('.': this checkout)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one round (smoke test)")
    parser.add_argument("--cases", default=",".join(c[0] for c in CASES))
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    wanted_names = args.cases.split(",")
    unknown = set(wanted_names) - {c[0] for c in CASES}
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}")
    wanted = [c for c in CASES if c[0] in wanted_names]
    scratch = Path(tempfile.mkdtemp(prefix="mcslabel-compare-"))
    trees: list[Tree] = []
    try:
        for label, rev in (("old", args.old), ("new", args.new)):
            path = _worktree(rev, scratch)
            trees.append(Tree(label, path))
            trees[-1].compile()
        files = scratch / "files"
        if any(c[0].startswith("relabel") for c in wanted):
            _make_tree(files)
        empty = scratch / "empty"
        empty.mkdir()
        figures: dict[tuple[str, str], list[float]] = {}
        serial = 0
        for r in range(rounds):
            for case, *_ in wanted:
                # old, new in even rounds; new, old in odd ones.
                for tree in trees if r % 2 == 0 else trees[::-1]:
                    serial += 1
                    arg = {
                        "sqlite": str(scratch),
                        "relabel": f"{files}|{_pair(serial)}|{_pair(serial + 500)}",
                        "relabel-first": f"{files}|{_pair(serial)}|",
                        "verify": str(empty),
                    }.get(case, "")
                    figures.setdefault((case, tree.label), []).append(tree.run(case, arg, scratch))
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
        print(f"old = {args.old}, new = {args.new}; {rounds} interleaved rounds")
        print(
            f"{'case':<36} {'old':>12} {'new':>12} {'unit':<8} {'new/old speed':>13}"
            "  (medians; the ratio is the median of each round's pair)"
        )
        for case, title, unit, larger_better in wanted:
            olds, news = figures[case, "old"], figures[case, "new"]
            pairs = [n / o if larger_better else o / n for o, n in zip(olds, news, strict=True)]
            scale = 1000 if unit == "ms" else 1
            print(
                f"{title:<36} {statistics.median(olds) * scale:>12,.2f}"
                f" {statistics.median(news) * scale:>12,.2f} {unit:<8}"
                f" {statistics.median(pairs):>12.2f}x"
            )
    finally:
        for tree in trees:
            if tree.root != REPO:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree.root)],
                    check=False,
                    capture_output=True,
                )
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
