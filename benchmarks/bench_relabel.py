"""Relabel speed against ``chcon -R`` and peak memory, side by side in one run.

Generates a tree of 100,000 files in 1,000 directories on the real file
system (ext4 under /var/tmp; tmpfs would work too but is not where volumes
live), then times, alternating with ``chcon -R <full context>``:

- a first relabel (every label changes; each round uses a fresh level);
- a second relabel of the already-correct tree;
- a first relabel with a journal;
- the variants behind the defaults (serial in the calling thread, other
  worker-process counts).

The defaults fork one worker process per core for a tree this big (see
docs/relabel.md); ``--workers N`` runs the three main cases with N instead.

Peak RSS of a relabel is measured in a child process for 100k and 1M files
(``--no-million`` skips the 1M tree, ``--quick`` runs 10k files only).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CTX = "system_u:object_r:container_file_t:s0:c{},c{}"
TARGETS = {"first": 0.75, "second": 0.4, "journal": 1.0}


def make_tree(root: Path, dirs: int, files_per_dir: int) -> None:
    root.mkdir(parents=True)
    for d in range(dirs):
        sub = root / f"d{d:05d}"
        sub.mkdir()
        for f in range(files_per_dir):
            fd = os.open(sub / f"f{f:04d}", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"x" * (f % 7))
            os.close(fd)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measured(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds; CPU counts every thread and child (chcon).

    Every timed run starts with nothing dirty: without the ``sync`` the
    kernel's write-back of the previous case's 100,000 changed inodes lands
    in whichever run comes next (ours or chcon's), on the same two cores.
    """
    os.sync()
    cpu = _cpu()
    wall = timed(fn)
    return wall, _cpu() - cpu


def chcon(root: Path, context: str) -> None:
    subprocess.run(["chcon", "-R", context, str(root)], check=True)


class Levels:
    def __init__(self) -> None:
        self.n = 0

    def fresh(self) -> tuple[str, str]:
        self.n += 1
        a, b = 2 * self.n, 2 * self.n + 1
        return f"s0:c{a},c{b}", CTX.format(a, b)


def peak_rss(root: Path, level: str, journal: Path | None) -> float:
    """Peak RSS (MiB) of a child process that relabels ``root`` once (or of
    its largest worker process, whichever is bigger)."""
    code = (
        "import resource, sys\n"
        "from mcslabel.relabeling.engine import relabel\n"
        "r = relabel(sys.argv[1], level=sys.argv[2], journal=sys.argv[3] or None)\n"
        "assert r.ok, r\n"
        "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # largest worker\n"
        "print(r.changed, max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, kids))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(root), level, str(journal or "")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[1]) / 1024


def baseline_rss() -> float:
    code = (
        "import resource\nimport mcslabel.relabeling.engine\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout) / 1024


def remove_journal(path: Path) -> None:
    """The journal and its segments (PATH.1 ...)."""
    for p in [path, *path.parent.glob(path.name + ".*")]:
        p.unlink(missing_ok=True)


def main() -> int:
    from mcslabel.relabeling.engine import relabel

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10k files, one round, no 1M tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-million", action="store_true")
    ap.add_argument("--dir", default="/var/tmp", help="parent of the scratch tree (ext4)")
    ap.add_argument("--workers", type=int, default=None, help="workers for the main cases")
    ap.add_argument("--no-variants", action="store_true", help="only the three main cases")
    args = ap.parse_args()
    dirs, per_dir = (100, 100) if args.quick else (1000, 100)
    rounds = 1 if args.quick else args.rounds
    scratch = Path(tempfile.mkdtemp(prefix="mcslabel-bench-", dir=args.dir))
    levels = Levels()
    try:
        tree = scratch / "tree"
        t = timed(lambda: make_tree(tree, dirs, per_dir))
        n = dirs * per_dir
        print(f"tree: {n} files in {dirs} dirs under {tree} (made in {t:.1f}s)")
        from mcslabel.relabeling.engine import default_workers

        probe = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
        chosen = default_workers(probe) if args.workers is None else args.workers
        os.close(probe)
        print(f"main cases: workers={chosen}; load average {os.getloadavg()[0]:.2f} at the start")
        ours: dict[str, list[tuple[float, float]]] = {k: [] for k in TARGETS}
        peer: dict[str, list[tuple[float, float]]] = {k: [] for k in TARGETS}
        variants: dict[str, list[tuple[float, float]]] = {}

        main_kw: dict[str, object] = {"workers": args.workers}

        def ours_first(**kw: object) -> tuple[float, float]:
            level, _ = levels.fresh()
            box: list[Any] = []
            cost = measured(lambda: box.append(relabel(tree, level=level, **kw)))  # type: ignore[arg-type]
            assert box[0].ok, box[0]
            assert box[0].changed == n + dirs + 1, box[0]
            return cost

        def theirs(ctx: str) -> tuple[float, float]:
            return measured(lambda: chcon(tree, ctx))

        for i in range(rounds):
            peer["first"].append(theirs(levels.fresh()[1]))
            ours["first"].append(ours_first(**main_kw))
            # second: the tree already has the label it is asked for
            level, ctx = levels.fresh()
            relabel(tree, level=level)
            again: list[Any] = []
            ours["second"].append(
                measured(lambda a=again, lv=level: a.append(relabel(tree, level=lv, **main_kw)))  # type: ignore[misc,arg-type]
            )
            assert again[0].changed == 0, again[0]
            assert again[0].unchanged == n + dirs + 1, again[0]
            peer["second"].append(theirs(ctx))
            peer["journal"].append(theirs(levels.fresh()[1]))
            journal = scratch / f"journal-{i}"
            ours["journal"].append(ours_first(journal=journal, **main_kw))
            remove_journal(journal)
            if args.no_variants:
                continue
            for name, kw in (
                ("first, serial (workers=0)", {"workers": 0}),
                ("first, workers=1", {"workers": 1}),
                ("first, workers=3", {"workers": 3}),
                ("first + journal, serial", {"workers": 0, "journal": scratch / "jv"}),
                ("first + journal, workers=3", {"workers": 3, "journal": scratch / "jv"}),
            ):
                variants.setdefault(name, []).append(ours_first(**kw))
                remove_journal(scratch / "jv")
            for name, kw in (
                ("second, serial (workers=0)", {"workers": 0}),
                ("second, workers=3", {"workers": 3}),
            ):
                level, _ = levels.fresh()
                relabel(tree, level=level)
                variants.setdefault(name, []).append(
                    measured(lambda level=level, kw=kw: relabel(tree, level=level, **kw))  # type: ignore[misc]
                )

        def med(xs: list[tuple[float, float]], i: int) -> float:
            return statistics.median(x[i] for x in xs)

        print(
            f"\n{'case (median of ' + str(rounds) + ')':34s} {'mcslabel':>9s} {'chcon -R':>9s}"
            f" {'ratio':>6s} {'target':>7s}   {'CPU ratio':>9s}"
        )
        failed = False
        names = {
            "first": "first relabel",
            "second": "second (already right)",
            "journal": "first relabel + journal",
        }
        for case, limit in TARGETS.items():
            a, b = med(ours[case], 0), med(peer[case], 0)
            cpu_ratio = med(ours[case], 1) / med(peer[case], 1)
            ok = a / b <= limit
            failed |= not ok
            print(
                f"{names[case]:34s} {a:8.3f}s {b:8.3f}s {a / b:6.2f} {'<=' + str(limit):>7s}"
                f" {'ok' if ok else 'MISSED':6s} {cpu_ratio:6.2f}"
            )
        chcon_first = med(peer["first"], 0)
        chcon_cpu = med(peer["first"], 1)
        print("\nvariants (median wall s, ratio to chcon -R; CPU s, CPU ratio), chcon first:")
        print(f"  {'chcon -R':34s} {chcon_first:8.3f}s        {chcon_cpu:7.3f}s")
        for name, costs in variants.items():
            w, c = med(costs, 0), med(costs, 1)
            print(f"  {name:34s} {w:8.3f}s {w / chcon_first:5.2f} {c:7.3f}s {c / chcon_cpu:5.2f}")
        print(f"  (load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")

        print("\npeak RSS of one relabel (child process, MiB):")
        print(f"  {'import only':34s} {baseline_rss():8.1f}")
        rss = peak_rss(tree, "s0:c900,c901", None)
        print(f"  {f'{n} files':34s} {rss:8.1f}")
        rss = peak_rss(tree, "s0:c902,c903", scratch / "rss-journal")
        print(f"  {f'{n} files + journal':34s} {rss:8.1f}")
        if not args.quick and not args.no_million:
            big = scratch / "million"
            t = timed(lambda: make_tree(big, 1000, 1000))
            print(f"  (1,000,000 files in 1,000 dirs made in {t:.0f}s)")
            rss = peak_rss(big, "s0:c900,c901", None)
            print(f"  {'1000000 files':34s} {rss:8.1f}")
            rss = peak_rss(big, "s0:c902,c903", scratch / "rss-j1m")
            print(f"  {'1000000 files + journal':34s} {rss:8.1f}")
        return 1 if failed else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
