"""Run every benchmarks/bench_*.py in turn (``make bench``).

Each benchmark is a standalone script that measures mcslabel side by side with
the real peer tool and prints ratios; pass ``--quick`` for a short smoke run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n### {script.name}", flush=True)
        failed |= subprocess.call([sys.executable, str(script), *sys.argv[1:]])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
