"""Start-up time of the CLI next to a bare interpreter (``python3 -c pass``).

Orchestration scripts call ``mcslabel`` once per container, so its start-up
is what they pay. Measured side by side in one run, interleaved (each round
runs every command once, so load on a shared machine hits all alike): the
median wall time of N runs of

* ``python -c pass`` with the interpreter the ``mcslabel`` script uses,
* ``python3 -c pass`` from ``PATH`` (the issue's reference; shown, but the
  ratios are taken against the same interpreter, which is never slower),
* ``mcslabel --version`` and ``mcslabel check s0:c1,c2``.

Target (issue #15): each mcslabel command at most 4x ``python -c pass``.
``--importtime`` also prints the slowest imports of ``mcslabel check``
(``python -X importtime``).

Usage: ``python benchmarks/bench_startup.py [--quick] [--runs N] [--importtime]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 4.0


def _mcslabel() -> list[str]:
    beside = Path(sys.executable).parent / "mcslabel"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mcslabel")
    if found:
        return [found]
    return [sys.executable, "-c", "from mcslabel.cli import entry_point; entry_point()"]


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def _importtime(words: list[str], top: int = 12) -> None:
    code = f"from mcslabel.cli import main; main({words!r})"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    print(f"\nslowest imports of `mcslabel {' '.join(words)}` (cumulative us):")
    for us, name in sorted(rows, reverse=True)[:top]:
        print(f"  {us:>8,}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs instead of 21")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 21)
    cli = _mcslabel()
    python3 = shutil.which("python3") or sys.executable
    cases = {
        "python -c pass (same interpreter)": [sys.executable, "-c", "pass"],
        "python3 -c pass (PATH)": [python3, "-c", "pass"],
        "mcslabel --version": [*cli, "--version"],
        "mcslabel check s0:c1,c2": [*cli, "check", "s0:c1,c2"],
    }
    for argv in cases.values():  # warm the page cache once
        _time(argv)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            times[name].append(_time(argv))
    # The stricter reference: the interpreter mcslabel itself runs on (a pyenv
    # shim's `python3` on PATH is a shell script, several times slower).
    base = statistics.median(times["python -c pass (same interpreter)"])
    print(f"median of {runs} interleaved runs, {os.cpu_count()} cores (shared machines are noisy)")
    print(f"{'command':<36} {'median ms':>10} {'x python':>10}")
    worst = 0.0
    for name, values in times.items():
        median = statistics.median(values)
        ratio = median / base
        if name.startswith("mcslabel"):
            worst = max(worst, ratio)
        print(f"{name:<36} {median * 1000:>10.1f} {ratio:>10.2f}")
    verdict = "ok" if worst <= TARGET else "OVER TARGET"
    print(f"worst mcslabel ratio {worst:.2f} (target <= {TARGET:.0f}x): {verdict}")
    if args.importtime:
        _importtime(["check", "s0:c1,c2"])
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
