"""A real Docker daemon for the docker tests, and containers that clean up after themselves.

``docker_client`` connects to the daemon that answers (``.ci/run`` starts one with
``scripts/dockerd.sh``); when none answers and we are root it runs ``scripts/dockerd.sh start``
itself. When no daemon can be started the tests skip, saying why, except under ``CI`` where
they fail. ``containers`` creates containers with unique names and a per-test label (so a
test can audit only its own containers) and removes them in teardown.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "dockerd.sh"
IMAGE = os.environ.get("MCSLABEL_TEST_IMAGE", "mcslabel-busybox:test")
#: Every container a test creates carries this label, valued with the test's run id.
TEST_LABEL = "io.mcslabel.test"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"Docker daemon required in CI: {reason}")
    pytest.skip(f"no Docker daemon could be started: {reason}")


def _start_daemon() -> str:
    if os.geteuid() != 0:
        return "not root, cannot start dockerd"
    done = subprocess.run(
        ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=180, check=False
    )
    if done.returncode != 0:
        return f"scripts/dockerd.sh start failed: {done.stderr.strip()[-500:]}"
    return ""


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker SDK client to a running daemon with the test image present."""
    from mcslabel.errors import DockerError
    from mcslabel.integrations.docker import connect

    try:
        client = connect()
    except DockerError as first:
        problem = _start_daemon()
        if problem:
            _unavailable(f"{first}; {problem}")
        try:
            client = connect()
        except DockerError as exc:
            _unavailable(str(exc))
    try:
        client.images.get(IMAGE)
    except Exception:
        problem = _start_daemon()  # builds the image when the daemon already runs
        if problem:
            _unavailable(f"test image {IMAGE} missing and {problem}")
    yield client
    client.close()


@attrs.define
class Containers:
    """Creates labeled, uniquely named containers and removes them all at teardown."""

    client: Any
    run_id: str = attrs.field(factory=lambda: uuid.uuid4().hex[:10])
    created: list[Any] = attrs.field(factory=list)

    @property
    def filters(self) -> dict[str, str]:
        """Docker listing filters that select this test's containers only."""
        return {"label": f"{TEST_LABEL}={self.run_id}"}

    def create(
        self,
        *,
        security_opt: list[str] | None = None,
        labels: dict[str, str] | None = None,
        start: bool = False,
        **kwargs: Any,
    ) -> Any:
        name = f"mcslabel-test-{self.run_id}-{len(self.created)}"
        container = self.client.containers.create(
            IMAGE,
            ["sleep", "300"],
            name=name,
            security_opt=security_opt,
            labels={TEST_LABEL: self.run_id, **(labels or {})},
            **kwargs,
        )
        self.created.append(container)
        if start:
            container.start()
            container.reload()
        return container

    def remove_all(self) -> None:
        from docker.errors import NotFound

        failures: list[str] = []
        for container in self.created:  # every one is tried, even after a failure
            try:
                container.remove(force=True)
            except NotFound:  # already removed by the test
                pass
            except Exception as exc:
                failures.append(f"{container.id[:12]}: {exc}")
        if failures:
            raise RuntimeError("containers left behind: " + "; ".join(failures))


@pytest.fixture
def containers(docker_client: Any) -> Iterator[Containers]:
    made = Containers(docker_client)
    yield made
    made.remove_all()
