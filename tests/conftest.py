"""Shared test fixtures: the real installed policy and the shared CentOS root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# A real dockerd (docker_client) and self-cleaning test containers (containers).
from tests.docker_env import containers, docker_client  # noqa: F401

# The real 3-member etcd cluster fixtures (etcd_cluster, private_etcd_cluster, etcd_prefix).
from tests.etcd_cluster import etcd_cluster, etcd_prefix, private_etcd_cluster  # noqa: F401

# A real podman (its Docker-compatible API) and self-cleaning podman containers and pods.
from tests.podman_env import podman_client, podman_containers  # noqa: F401

# CI machines are small and shared: judge properties, not generation speed.
settings.register_profile(
    "mcslabel",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("mcslabel")

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the checkout (read-only in CI); MCSLABEL_SHARED overrides.
SHARED = Path(os.environ.get("MCSLABEL_SHARED", REPO.parent / "shared"))
CENTOS_ROOT = SHARED / "policies" / "centos-stream9-targeted"


@pytest.fixture
def var_t_volume(tmp_path: Path) -> Path:
    """A volume directory and one file in it, both labeled ``var_t`` (a host label)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    for p in (data, data / "f"):
        os.setxattr(p, "security.selinux", b"system_u:object_r:var_t:s0\0")
    return data


@pytest.fixture(scope="session")
def centos_root() -> Path:
    """The real CentOS Stream 9 targeted policy root from shared/."""
    if not (CENTOS_ROOT / "policy" / "policy.33").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"shared CentOS policy root missing at {CENTOS_ROOT}")
        pytest.skip(f"shared CentOS policy root missing at {CENTOS_ROOT}")
    return CENTOS_ROOT


@pytest.fixture(scope="session")
def installed_policy():  # type: ignore[no-untyped-def]
    """The installed (Debian refpolicy + container module) policy, loaded."""
    from mcslabel.verification.policy import load_policy

    policy = load_policy()
    assert policy.has_type("container_t"), "run scripts/setup.sh: container module missing"
    return policy
