"""Docker integration cost, side by side with the docker CLI reading the same data.

Creates N containers (not started) with varied levels on the running daemon
(``scripts/dockerd.sh start``), then measures, alternating, medians of R runs:

- ``mcslabel docker audit --json`` in a fresh process (interpreter, imports, every
  container inspected, findings) vs ``docker inspect $(docker ps -aq)`` (the raw
  read an admin's script would start from);
- ``mcslabel docker sync`` on a fresh SQLite store (first sync: N reservations) and
  again (nothing to do), vs the same ``docker inspect``.

Run: ``.venv/bin/python benchmarks/bench_docker.py [--quick]``. Containers carry a
unique label and are removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MCSLABEL = REPO / ".venv" / "bin" / "mcslabel"
IMAGE = "mcslabel-busybox:test"


def timed(cmd: list[str] | str, *, shell: bool = False) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, shell=shell, check=False, capture_output=True, timeout=600)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, runs = (20, 3) if args.quick else (200, 5)

    import docker

    client = docker.from_env()
    tag = f"io.mcslabel.bench={uuid.uuid4().hex[:8]}"
    key, value = tag.split("=")
    created = []
    try:
        for i in range(n):
            a, b = divmod(i, 900)
            opts = [f"label=level:s0:c{a},c{b + 100}"] if i % 10 else ["label=disable"]
            created.append(
                client.containers.create(IMAGE, ["true"], security_opt=opts, labels={key: value})
            )
        total = len(client.containers.list(all=True))
        print(f"{n} benchmark containers ({total} on the daemon), {runs} runs each, medians")
        inspect_all = "docker inspect $(docker ps -aq) >/dev/null"
        peer, audit = [], []
        for _ in range(runs):
            peer.append(timed(inspect_all, shell=True))
            audit.append(timed([str(MCSLABEL), "docker", "audit", "--json"]))
        first, again = [], []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                store = f"sqlite:///{tmp}/labels.db"
                first.append(timed([str(MCSLABEL), "docker", "sync", "--store", store]))
                again.append(timed([str(MCSLABEL), "docker", "sync", "--store", store]))
        p = statistics.median(peer)
        rows = [
            ("docker inspect (all containers)", p),
            ("mcslabel docker audit --json", statistics.median(audit)),
            ("mcslabel docker sync (fresh store)", statistics.median(first)),
            ("mcslabel docker sync (again, no change)", statistics.median(again)),
        ]
        print(f"{'run':42} {'seconds':>8} {'vs docker inspect':>18}")
        for name, seconds in rows:
            print(f"{name:42} {seconds:8.3f} {seconds / p:17.2f}x")
    finally:
        for c in created:
            c.remove(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
