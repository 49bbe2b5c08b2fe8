"""Allocation on a 3-member loopback etcd cluster vs the embedded SQLite store, same run.

    .venv/bin/python benchmarks/bench_etcd.py [--quick]

1. Throughput: 4 client processes allocate concurrently (1024 categories, so contention comes
   from the store, not from a full space); allocations/s for etcd and SQLite and their ratio.
2. Latency of one allocation at 0 % and 90 % occupancy of a small space (64 categories,
   2016 pairs): p50/p95 for each store. The allocator syncs incrementally, so a fuller space
   must not make an allocation slower.

The cluster's data directories are on /var/tmp (a real disk, etcd fsyncs every write), the
SQLite file too (synchronous=FULL, its default). Started with scripts/etcd-cluster.sh.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from mcslabel.allocation.allocator import Allocator, pair_at, pair_count  # noqa: E402
from mcslabel.allocation.stores import open_store  # noqa: E402
from mcslabel.allocation.stores.base import Allocation  # noqa: E402
from mcslabel.level import Level  # noqa: E402

CLIENTS = 4


def _client(
    url: str, host: str, count: int, start: multiprocessing.Event, out: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    allocator = Allocator(open_store(url), categories=1024, exclude=(), host=host)
    allocator.sync()
    start.wait()
    began = time.perf_counter()
    for i in range(count):
        allocator.allocate(f"bench:{host}:{i}")
    out.put(time.perf_counter() - began)
    allocator.store.close()


def throughput(url: str, per_client: int) -> float:
    """Allocations/s of CLIENTS processes allocating at once (wall clock of the slowest)."""
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(url, f"h{i}", per_client, start, out))
        for i in range(CLIENTS)
    ]
    for proc in procs:
        proc.start()
    time.sleep(2.0)  # let every client import and sync before the gun
    start.set()
    times = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"client failed on {url}")
    return CLIENTS * per_client / max(times)


def fill(url: str, categories: int, fraction: float) -> None:
    """Hold ``fraction`` of the pairs (every k-th pair index, so free pairs are spread out)."""
    store = open_store(url)
    total = pair_count(categories)
    wanted = int(total * fraction)
    generation = store.snapshot().generation
    step = total / wanted if wanted else 0
    for n in range(wanted):
        a, b = pair_at(int(n * step), categories)
        record = Allocation(level=Level.pair(a, b), owners=(f"fill:{n}",), created=time.time())
        store.insert(record, generation=generation)
    store.close()


def latency(url: str, categories: int, samples: int) -> tuple[float, float]:
    """(p50, p95) in ms of one allocate() by a warm allocator, as other hosts see it."""
    allocator = Allocator(open_store(url), categories=categories, exclude=(), host="probe")
    allocator.sync()
    times = []
    for i in range(samples):
        began = time.perf_counter()
        allocator.allocate(f"probe:{i}")
        times.append((time.perf_counter() - began) * 1000)
    allocator.store.close()
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    per_client = 25 if args.quick else 150
    samples = 20 if args.quick else 100
    small = 64

    work = Path(tempfile.mkdtemp(prefix="mcslabel-bench-etcd-", dir="/var/tmp"))
    script = REPO / "scripts" / "etcd-cluster.sh"
    started = subprocess.run(
        ["bash", str(script), "start", str(work / "etcd")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    endpoints = started.stdout.strip().splitlines()[-1]

    def etcd(prefix: str) -> str:
        return f"etcd://{endpoints}/{prefix}"

    def sqlite(name: str) -> str:
        return f"sqlite://{work / name}.db"

    results: dict[str, object] = {}
    try:
        print(f"throughput: {CLIENTS} processes x {per_client} allocations, 1024 categories")
        rate_etcd = throughput(etcd("tput"), per_client)
        rate_sqlite = throughput(sqlite("tput"), per_client)
        print(f"  etcd (3 members)  {rate_etcd:8.1f} alloc/s")
        print(f"  sqlite            {rate_sqlite:8.1f} alloc/s")
        print(f"  etcd / sqlite     {rate_etcd / rate_sqlite:8.2f}x")
        results["throughput"] = {"etcd": rate_etcd, "sqlite": rate_sqlite}

        print(f"latency of one allocate(), {small} categories ({pair_count(small)} pairs)")
        print(f"  {'occupancy':>9}  {'store':<8} {'p50 ms':>8} {'p95 ms':>8}")
        for fraction in (0.0, 0.9):
            for kind, url in (
                ("etcd", etcd(f"lat{int(fraction * 100)}")),
                ("sqlite", sqlite(f"lat{int(fraction * 100)}")),
            ):
                fill(url, small, fraction)
                p50, p95 = latency(url, small, samples)
                results[f"latency_{kind}_{int(fraction * 100)}"] = [p50, p95]
                print(f"  {fraction:>9.0%}  {kind:<8} {p50:8.2f} {p95:8.2f}")
        for kind in ("etcd", "sqlite"):
            empty = results[f"latency_{kind}_0"][0]  # type: ignore[index]
            full = results[f"latency_{kind}_90"][0]  # type: ignore[index]
            print(f"  {kind}: p50 at 90% / p50 at 0% = {full / empty:.2f}x")
    finally:
        subprocess.run(["bash", str(script), "stop", str(work / "etcd")], check=False, timeout=60)
        for db in work.glob("*.db*"):
            db.unlink()
        work.rmdir() if not any(work.iterdir()) else None
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
