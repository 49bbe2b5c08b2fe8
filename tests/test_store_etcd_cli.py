"""``mcslabel allocate|list|release --store etcd://...`` against the real 3-member cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from tests.etcd_cluster import REPO, EtcdCluster

# The CLI as a separate process, exactly as a user (or another host) runs it.
CLI = [sys.executable, "-c", "import sys; from mcslabel.cli import main; sys.exit(main())"]

pytestmark = pytest.mark.etcd


def mcslabel(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("MCSLABEL_STORE", None)
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_allocate_list_release_across_processes(
    etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    url = etcd_cluster.url(etcd_prefix)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [
        subprocess.Popen(
            [*CLI, "allocate", "--store", url,
             "--categories", "6", "--owner", f"job:{i}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for i in range(6)
    ]  # fmt: skip
    levels = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        levels.append(out.strip())
    assert all(level.startswith("s0:c") for level in levels)
    assert max(Counter(levels).values()) == 1, levels
    listed = mcslabel("list", "--store", url, "--json")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)["allocations"]
    assert sorted(r["level"] for r in records) == sorted(levels)
    assert mcslabel("release", levels[0], "--store", url).returncode == 0
    again = json.loads(mcslabel("list", "--store", url, "--json").stdout)["allocations"]
    assert sorted(r["level"] for r in again) == sorted(levels[1:])


def test_named_allocation_is_the_same_from_every_host(
    etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    url = etcd_cluster.url(etcd_prefix)
    first = mcslabel("allocate", "--store", url, "--name", "shared-vol", "--owner", "host:a")
    second = mcslabel("allocate", "--store", url, "--name", "shared-vol", "--owner", "host:b")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout and first.stdout.startswith("s0:c")


def test_unreachable_cluster_fails_clearly_with_exit_3() -> None:
    done = mcslabel("allocate", "--store", "etcd://127.0.0.1:1,127.0.0.1:2/x?timeout=2", "--json")
    assert done.returncode == 3
    assert "no etcd member is reachable" in done.stderr
    assert json.loads(done.stdout)["error"]["type"] == "StoreUnavailable"


def test_bad_etcd_url_is_exit_2() -> None:
    done = mcslabel("allocate", "--store", "etcd://127.0.0.1:2379/p?colour=blue")
    assert done.returncode == 2
    assert "unknown etcd store option" in done.stderr
