"""A real 3-member etcd cluster on loopback for the etcd store tests.

Started with ``scripts/etcd-cluster.sh`` (the same script CI and people use), so the script is
exercised too. ``etcd_cluster`` is one cluster per test session, reused from
``$MCSLABEL_TEST_ETCD`` (comma-separated ``host:port`` endpoints) when ``.ci/run`` already started
one; tests that kill members use ``private_etcd_cluster`` so they never disturb the shared one.
Each test gets a fresh key prefix from ``etcd_prefix``, so tests do not see each other's keys.
"""

from __future__ import annotations

import contextlib
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
        if self.directory is not None:
            (self.directory / "owner.pid").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.directory.rmdir()


def make_tls_dir(directory: Path) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, capture_output=True, check=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=mcslabel-test-ca")  # fmt: skip
    # etcd's gateway dials its own gRPC port with the server certificate: it needs clientAuth
    for name, extensions in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):  # fmt: skip
        (directory / f"{name}.ext").write_text(extensions)
        openssl("req", *key, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                "-subj", f"/CN=mcslabel-{name}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext")  # fmt: skip
    return directory


def start_cluster(directory: Path, *, tls: Path | None = None) -> EtcdCluster:
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        if os.environ.get("CI"):
            pytest.fail("etcd-server / etcd-client not installed (run scripts/setup.sh)")
        pytest.skip("etcd-server / etcd-client not installed")
    env = {**os.environ, "ETCD_TLS_DIR": str(tls) if tls else ""}
    done = subprocess.run(
        ["bash", str(SCRIPT), "start", str(directory)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"could not start etcd cluster: {done.stderr}")
    endpoints = tuple(done.stdout.strip().splitlines()[-1].split(","))
    return EtcdCluster(endpoints=endpoints, directory=directory)


def _base_dir() -> Path:
    # /dev/shm keeps the tests fast (no fsync to disk); the benchmark uses /var/tmp
    return Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_abandoned_clusters() -> None:
    """Stop clusters whose test session was killed before its teardown ran."""
    for owner in _base_dir().glob("mcslabel-etcd-test-*/owner.pid"):
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            subprocess.run(
                ["bash", str(SCRIPT), "stop", str(owner.parent)],
                capture_output=True,
                timeout=60,
                check=False,
            )
            owner.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                owner.parent.rmdir()


def _cluster_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="mcslabel-etcd-test-", dir=_base_dir()))
    (directory / "owner.pid").write_text(str(os.getpid()))
    return directory


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster]:
    """The session's shared 3-member cluster (reused from $MCSLABEL_TEST_ETCD if set)."""
    preset = os.environ.get("MCSLABEL_TEST_ETCD")
    if preset:
        yield EtcdCluster(endpoints=tuple(preset.split(",")))
        return
    stop_abandoned_clusters()
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
