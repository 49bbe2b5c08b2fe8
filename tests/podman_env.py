"""A real podman (its Docker-compatible API service) for the podman tests.

``podman_client`` connects to podman's socket (``.ci/run`` starts it with
``scripts/podman.sh``); when nothing answers and we are root it runs
``scripts/podman.sh start`` itself. When podman cannot be started the tests
skip, saying why, except under ``CI`` where they fail. ``podman_containers``
makes self-cleaning containers (the docker tests' :class:`Containers`, on the
podman client) and pods (``podman pod create``, with the project's
containers.conf).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from tests.docker_env import IMAGE, REPO, TEST_LABEL, Containers

SCRIPT = REPO / "scripts" / "podman.sh"
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "scripts" / "podman-containers.conf")}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"podman required in CI: {reason}")
    pytest.skip(f"podman could not be started: {reason}")


def podman(*args: str) -> str:
    """Run the podman CLI (as CI and the demo do) and return its stdout."""
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, env=PODMAN_ENV, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def podman_client() -> Iterator[Any]:
    from mcslabel.errors import DockerError
    from mcslabel.integrations.podman import connect

    try:
        client = connect()
    except DockerError as first:
        if os.geteuid() != 0:
            _unavailable(f"{first}; not root, cannot start podman")
        done = subprocess.run(
            ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0:
            _unavailable(f"{first}; scripts/podman.sh start failed: {done.stderr.strip()[-500:]}")
        try:
            client = connect()
        except DockerError as exc:
            _unavailable(str(exc))
    yield client
    client.close()


@attrs.define
class PodmanContainers(Containers):
    """:class:`Containers` on podman, plus pods (removed with their containers)."""

    pods: list[str] = attrs.field(factory=list)

    def pod(self, *, security_opt: list[str] | None = None, share: str = "net") -> str:
        """A pod (with its infra container) carrying this test's label; returns its id."""
        name = f"mcslabel-test-{self.run_id}-pod{len(self.pods)}"
        args = ["pod", "create", "--name", name, "--share", share]
        args += ["--label", f"{TEST_LABEL}={self.run_id}"]
        for opt in security_opt or ():
            args += ["--security-opt", opt]
        pod_id = podman(*args)
        self.pods.append(pod_id)
        return pod_id

    def in_pod(self, pod_id: str, *, security_opt: list[str] | None = None) -> str:
        """A running container in the pod; returns its id."""
        args = ["run", "-d", "--pod", pod_id, "--label", f"{TEST_LABEL}={self.run_id}"]
        for opt in security_opt or ():
            args += ["--security-opt", opt]
        return podman(*args, IMAGE, "sleep", "300")

    def remove_all(self) -> None:
        try:
            super().remove_all()
        finally:
            for pod_id in self.pods:
                subprocess.run(
                    ["podman", "pod", "rm", "-f", "-t", "0", pod_id],
                    capture_output=True,
                    timeout=120,
                    env=PODMAN_ENV,
                    check=False,
                )


@pytest.fixture
def podman_containers(podman_client: Any) -> Iterator[PodmanContainers]:
    made = PodmanContainers(podman_client)
    yield made
    made.remove_all()
