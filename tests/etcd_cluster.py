"""A real 3-member etcd cluster on loopback for the etcd store tests.

Started with ``scripts/etcd-cluster.sh`` (the same script CI and people use), so the script is
exercised too. ``etcd_cluster`` is one cluster per test session, reused from
``$MCSLABEL_TEST_ETCD`` (comma-separated ``host:port`` endpoints) when ``.ci/run`` already started
one; tests that kill members use ``private_etcd_cluster`` so they never disturb the shared one.
Each test gets a fresh key prefix from ``etcd_prefix``, so tests do not see each other's keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "etcd-cluster.sh"


@attrs.define
class EtcdCluster:
    """A running cluster: its endpoints and, when we started it, its state directory."""

    endpoints: tuple[str, ...]
    directory: Path | None = None

    def url(self, prefix: str, **options: str | int | float) -> str:
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"etcd://{','.join(self.endpoints)}/{prefix.strip('/')}" + (
            f"?{query}" if query else ""
        )

    def _script(self, *args: str) -> str:
        if self.directory is None:
            raise RuntimeError("cluster was not started by this test session")
        done = subprocess.run(
            ["bash", str(SCRIPT), *args, str(self.directory)],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if done.returncode != 0 and args[0] != "status":
            raise RuntimeError(f"etcd-cluster.sh {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def kill_member(self, index: int) -> None:
        """SIGKILL one member (its data stays, so it can rejoin)."""
        self._script("kill-member", str(index))

    def start_member(self, index: int) -> None:
        self._script("start-member", str(index))

    def status(self) -> str:
        return self._script("status")

    def stop(self) -> None:
        self._script("stop")


def start_cluster(directory: Path) -> EtcdCluster:
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        if os.environ.get("CI"):
            pytest.fail("etcd-server / etcd-client not installed (run scripts/setup.sh)")
        pytest.skip("etcd-server / etcd-client not installed")
    done = subprocess.run(
        ["bash", str(SCRIPT), "start", str(directory)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"could not start etcd cluster: {done.stderr}")
    endpoints = tuple(done.stdout.strip().splitlines()[-1].split(","))
    return EtcdCluster(endpoints=endpoints, directory=directory)


def _cluster_dir() -> Path:
    # /dev/shm keeps the tests fast (no fsync to disk); the benchmark uses /var/tmp
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix="mcslabel-etcd-test-", dir=base))


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster]:
    """The session's shared 3-member cluster (reused from $MCSLABEL_TEST_ETCD if set)."""
    preset = os.environ.get("MCSLABEL_TEST_ETCD")
    if preset:
        yield EtcdCluster(endpoints=tuple(preset.split(",")))
        return
    cluster = start_cluster(_cluster_dir())
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def private_etcd_cluster() -> Iterator[EtcdCluster]:
    """A cluster of this test's own, for tests that kill members."""
    cluster = start_cluster(_cluster_dir())
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def etcd_prefix() -> str:
    """A key prefix no other test uses."""
    return f"mcslabel-test-{uuid.uuid4().hex[:12]}"
