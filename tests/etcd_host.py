"""A process acting as one host of an etcd-backed cluster, for the multi-process tests.

python -m tests.etcd_host allocate URL HOST CATEGORIES COUNT
    allocate COUNT random pairs, print them as one JSON line, exit
python -m tests.etcd_host hold URL HOST CATEGORIES COUNT
    allocate COUNT pairs plus one persistent pair, print them, then sleep until killed
"""

from __future__ import annotations

import json
import sys
import time

from mcslabel.allocation.allocator import Allocator
from mcslabel.allocation.stores import open_store
from mcslabel.errors import MCSLabelError


def main(argv: list[str]) -> int:
    mode, url, host, categories, count = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    store = open_store(url)
    allocator = Allocator(store, categories=categories, exclude=(), host=host)
    levels: list[str] = []
    errors: list[str] = []
    for i in range(count):
        try:
            levels.append(str(allocator.allocate(f"worker:{host}-{i}").level))
        except MCSLabelError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            if mode == "hold":
                break
    persistent: list[str] = []
    if mode == "hold":
        persistent.append(str(allocator.allocate(f"volume:{host}", persistent=True).level))
    print(json.dumps({"levels": levels, "persistent": persistent, "errors": errors}), flush=True)
    if mode == "hold":
        while True:
            time.sleep(60)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
