"""Relabel and restore speed against ``chcon -R``, as a library call and as a
whole ``mcslabel`` process, side by side in one run; peak memory.

Generates a tree of 100,000 files in 1,000 directories on the real file
system (ext4 under /var/tmp), then, each round, alternating with
``chcon -R <full context>`` on the same tree:

- first relabel (every label changes; each round uses a fresh level);
- already right (the tree has the label it is asked for);
- first relabel with a journal;
- restore of that journal (``restore()`` / ``mcslabel restore``);
- already right with the unchanged-tree marker trusted
  (``trust_marker=True`` / ``--trust-marker``, after a marked relabel).

Each case is timed as ``relabel()`` in this process ("library") and as
``mcslabel relabel ...`` in a fresh process ("process": interpreter start,
imports, the walk, output). The process is the console script of a user's
install (``--cli user``, the default): a venv made like the README's
(``python3 -m venv --system-site-packages``) with ``pip install .`` in it,
no extras, no dev tools, under ``build/bench-venv``. ``--cli dev`` runs the
development venv's script instead: there every interpreter start also pays
for the site hooks of the dev tools' environment (in the sandbox this
project is built in, a ``.pth`` file that imports ``certifi`` whenever it is
installed: +15-20 ms a process), which no user install has. Ratios are to
the ``chcon -R`` of the same round; the targets (issue 18) apply to the
whole process. Medians of ``--rounds``.
Every timed run starts with ``os.sync()`` so that write-back of the previous
case lands in neither side's time.

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
# Whole-process targets, ratio to chcon -R.
TARGETS = {"first": 0.75, "right": 0.4, "journal": 1.0, "restore": 1.5, "marker": 0.05}
NAMES = {
    "first": "first relabel",
    "right": "already right",
    "journal": "first relabel + journal",
    "restore": "restore of that journal",
    "marker": "unchanged, --trust-marker",
}
REPO = Path(__file__).resolve().parent.parent
# The console script and interpreter the process figures run (main() sets them).
MCSLABEL = str(Path(sys.executable).with_name("mcslabel"))
CLI_PYTHON = sys.executable


def user_install(venv: Path) -> Path:
    """``venv`` with mcslabel installed from this tree as a user installs it
    (``pip install .``, its one dependency, no extras); its bin directory."""
    if not (venv / "bin" / "python").exists():
        subprocess.run(
            ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True
        )
        subprocess.run([venv / "bin" / "pip", "install", "--quiet", str(REPO)], check=True)
    else:  # this tree's code, whatever was installed before
        pip = [venv / "bin" / "pip", "install", "--quiet", "--force-reinstall", "--no-deps"]
        subprocess.run([*pip, str(REPO)], check=True)
    return venv / "bin"


def make_tree(root: Path, dirs: int, files_per_dir: int) -> None:
    root.mkdir(parents=True)
    for d in range(dirs):
        sub = root / f"d{d:05d}"
        sub.mkdir()
        for f in range(files_per_dir):
            fd = os.open(sub / f"f{f:04d}", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"x" * (f % 7))
            os.close(fd)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


CPU: list[float] = []  # CPU seconds of the last timed() call (every process and child)


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of ``fn``, started with nothing dirty (see the module docs);
    its CPU seconds (this process and every child: workers, chcon) go to CPU."""
    os.sync()
    cpu = _cpu()
    started = time.perf_counter()
    fn()
    wall = time.perf_counter() - started
    CPU[:] = [_cpu() - cpu]
    return wall


# The CLI as users run it: with bytecode caches (this harness may disable them).
CLI_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cli(*argv: str) -> None:
    # stderr too: the store lookup warns that the bench's levels are held by nobody
    subprocess.run(
        [MCSLABEL, *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=CLI_ENV,
    )


def interpreter() -> None:
    subprocess.run([CLI_PYTHON, "-c", "pass"], check=True, env=CLI_ENV)


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
        "from mcslabel import relabel\n"
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


def main() -> int:
    from mcslabel import relabel, remove_journal, restore
    from mcslabel.relabeling.engine import default_workers

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10k files, one round, no 1M tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-million", action="store_true")
    ap.add_argument("--dir", default="/var/tmp", help="parent of the scratch tree (ext4)")
    ap.add_argument(
        "--cli",
        choices=("user", "dev"),
        default="user",
        help="whose console script the process figures run (see the module docs)",
    )
    ap.add_argument("--user-venv", default=str(REPO / "build" / "bench-venv"), metavar="DIR")
    args = ap.parse_args()
    global MCSLABEL, CLI_PYTHON
    if args.cli == "user":
        bin_dir = user_install(Path(args.user_venv))
        MCSLABEL, CLI_PYTHON = str(bin_dir / "mcslabel"), str(bin_dir / "python")
    print(f"process figures: {MCSLABEL}")
    dirs, per_dir = (100, 100) if args.quick else (1000, 100)
    rounds = 1 if args.quick else args.rounds
    scratch = Path(tempfile.mkdtemp(prefix="mcslabel-bench-", dir=args.dir))
    levels = Levels()
    lib: dict[str, list[float]] = {k: [] for k in TARGETS}
    proc: dict[str, list[float]] = {k: [] for k in TARGETS}
    peer: dict[str, list[float]] = {k: [] for k in TARGETS}
    proc_cpu: dict[str, list[float]] = {k: [] for k in TARGETS}
    peer_cpu: dict[str, list[float]] = {k: [] for k in TARGETS}
    bare: list[float] = []  # `python -c pass` (site and its .pth files included)
    try:
        tree = scratch / "tree"
        t = timed(lambda: make_tree(tree, dirs, per_dir))
        n = dirs * per_dir + dirs + 1
        print(f"tree: {dirs * per_dir} files in {dirs} dirs under {tree} (made in {t:.1f}s)")
        # A registry of its own: the CLI consults the store a host has (issue 12),
        # without the load of whatever else uses this host's default one.
        from mcslabel import open_store

        store = f"sqlite://{scratch / 'labels.db'}"
        open_store(store, create=True).close()
        CLI_ENV["MCSLABEL_STORE"] = store
        cli("relabel", str(tree), "--level", "s0:c0,c1", "--dry-run")  # bytecode caches
        probe = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
        print(f"workers: {default_workers(probe)}; load average {os.getloadavg()[0]:.2f}")
        os.close(probe)
        started = time.monotonic()

        def one_round(i: int) -> None:
            tr = str(tree)
            # first relabel: library, process, chcon (each on a fresh level)
            lv1, lv2 = levels.fresh()[0], levels.fresh()[0]
            lib["first"].append(timed(lambda: relabel(tree, level=lv1)))
            proc["first"].append(timed(lambda: cli("relabel", tr, "--level", lv2)))
            proc_cpu["first"].append(CPU[0])
            peer["first"].append(timed(lambda: chcon(tree, levels.fresh()[1])))
            peer_cpu["first"].append(CPU[0])
            # already right: the tree carries the label asked for
            lv, ctx = levels.fresh()
            relabel(tree, level=lv)
            box: list[Any] = []
            lib["right"].append(timed(lambda: box.append(relabel(tree, level=lv))))
            assert box[0].changed == 0, box[0]
            proc["right"].append(timed(lambda: cli("relabel", tr, "--level", lv)))
            proc_cpu["right"].append(CPU[0])
            peer["right"].append(timed(lambda: chcon(tree, ctx)))
            peer_cpu["right"].append(CPU[0])
            # first relabel + journal, then its restore
            j_lib, j_cli = scratch / f"lib-{i}", scratch / f"cli-{i}"
            lv1, lv2 = levels.fresh()[0], levels.fresh()[0]
            lib["journal"].append(timed(lambda: relabel(tree, level=lv1, journal=j_lib)))
            lib["restore"].append(timed(lambda: restore(j_lib)))
            proc["journal"].append(
                timed(lambda: cli("relabel", tr, "--level", lv2, "--journal", str(j_cli)))
            )
            proc_cpu["journal"].append(CPU[0])
            proc["restore"].append(timed(lambda: cli("restore", str(j_cli))))
            proc_cpu["restore"].append(CPU[0])
            for j in (j_lib, j_cli):
                remove_journal(j)
            peer["journal"].append(timed(lambda: chcon(tree, levels.fresh()[1])))
            peer_cpu["journal"].append(CPU[0])
            peer["restore"].append(timed(lambda: chcon(tree, levels.fresh()[1])))
            peer_cpu["restore"].append(CPU[0])
            # unchanged tree, marker trusted (a marked relabel first), at a level
            # its user holds: `mcslabel reserve` (a level held by nobody would warn)
            lv, ctx = levels.fresh()
            cli("reserve", lv)
            relabel(tree, level=lv, trust_marker=True)
            box.clear()
            lib["marker"].append(
                timed(lambda: box.append(relabel(tree, level=lv, trust_marker=True)))
            )
            assert box[0].skipped_by_marker, box[0]
            marked = ("relabel", tr, "--level", lv, "--trust-marker")
            proc["marker"].append(timed(lambda: cli(*marked)))
            proc_cpu["marker"].append(CPU[0])
            peer["marker"].append(timed(lambda: chcon(tree, ctx)))
            peer_cpu["marker"].append(CPU[0])
            # the floor of any whole process: this interpreter starting and ending
            bare.append(timed(interpreter))

        for i in range(rounds):
            one_round(i)
        print(f"({rounds} rounds in {time.monotonic() - started:.0f}s; {n} entries a walk)")

        def med(xs: list[float]) -> float:
            return statistics.median(xs)

        print(
            f"\n{'case (median of ' + str(rounds) + ')':28s} {'chcon -R':>9s}"
            f" {'library':>9s} {'ratio':>6s} {'process':>9s} {'ratio':>6s} {'target':>7s}"
            f"        {'CPU ratio (process)':>19s}"
        )
        failed = False
        for case, limit in TARGETS.items():
            c, a, b = med(peer[case]), med(lib[case]), med(proc[case])
            ok = b / c <= limit
            failed |= not ok
            cpu = med(proc_cpu[case]) / med(peer_cpu[case])
            print(
                f"{NAMES[case]:28s} {c:8.3f}s {a:8.3f}s {a / c:5.2f}x {b:8.3f}s {b / c:5.2f}x"
                f" {'<=' + str(limit):>7s} {'ok' if ok else 'MISSED':6s} {cpu:8.2f}x"
            )
        floor = med(bare)
        print(
            f"(interpreter start alone, `{CLI_PYTHON} -c pass`: {floor:.3f}s ="
            f" {floor / med(peer['marker']):.3f}x of chcon -R; part of every process figure)"
        )
        print(f"(load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")

        print("\npeak RSS of one relabel (child process, MiB):")
        rss = peak_rss(tree, "s0:c900,c901", None)
        print(f"  {f'{dirs * per_dir} files':34s} {rss:8.1f}")
        rss = peak_rss(tree, "s0:c902,c903", scratch / "rss-journal")
        print(f"  {f'{dirs * per_dir} files + journal':34s} {rss:8.1f}")
        if not args.quick and not args.no_million:
            big = scratch / "million"
            t = timed(lambda: make_tree(big, 1000, 1000))
            print(f"  (1,000,000 files in 1,000 dirs made in {t:.0f}s)")
            rss = peak_rss(big, "s0:c900,c901", None)
            print(f"  {'1000000 files':34s} {rss:8.1f}")
            rss = peak_rss(big, "s0:c902,c903", scratch / "rss-j1m")
            print(f"  {'1000000 files + journal':34s} {rss:8.1f}")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  (this benchmark process: {own:.1f})")
        return 1 if failed else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
