"""podman: the docker integration, spoken to podman's Docker-compatible API.

podman serves the Docker Engine API on its own socket (``podman system
service``), and its ``inspect`` keeps ``HostConfig.SecurityOpt``
(``label=level:s0:c7,c8``) as docker's does, so :mod:`mcslabel.integrations.docker`
works on podman's containers through the same Docker SDK. Measured here
(podman 4.3.1, Debian 12): every call the docker integration makes answers as
dockerd's does. This module adds only what differs:

- **Where**: :func:`connect` opens ``$CONTAINER_HOST`` or
  ``unix:///run/podman/podman.sock`` and checks that podman answers (a
  dockerd there would mix up two engines' owners).
- **Who owns a level**: allocations of podman containers are owned by
  ``podman:<id>``, so that docker's and podman's ``sync`` on one registry never
  release each other's levels. The docker integration names its engine's
  owners ``docker:<id>``; :class:`PodmanOwners` is the allocator it is handed,
  which stores them as ``podman:<id>`` (and shows docker's own as
  ``other-engine:docker:<id>``, which it leaves alone).
- **Pods**: podman's pods share one level across their containers (the pod's
  ``--security-opt``, held by its infra container). Members join the infra
  container's namespaces, but with ``--share net`` only, not its IPC, which
  is what the docker integration groups by. :func:`connect`'s client adds the
  pod id as the ``io.mcslabel.pod`` label to each member's inspect output (and
  ``io.mcslabel.podman.infra`` to the infra container), from podman's own
  ``/libpod/containers/<id>/json``, so one pod is one group everywhere.
- **Volumes**: a volume's level is held by ``volume:<path>`` whichever engine
  relabeled it; :func:`volume_report` asks podman *and* docker who uses it
  (:mod:`mcslabel.integrations.docker.volume_users`), and
  :func:`restore_volume`/:func:`forget_volume` refuse while either does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from mcslabel.errors import DockerError
from mcslabel.integrations import docker as engine
from mcslabel.integrations.docker.daemon import docker_sdk, sdk_failures
from mcslabel.integrations.docker.volume_users import (
    VolumeReport,
    forget_volume,
    restore_volume,
)
from mcslabel.integrations.docker.volume_users import volume_report as _volume_report

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator

#: Owner prefix of podman containers' allocations.
OWNER_PREFIX = "podman:"
#: The socket ``podman system service`` listens on as root.
DEFAULT_URL = "unix:///run/podman/podman.sock"
#: Label added to the inspect output of a pod's containers: the pod id.
POD_LABEL = "io.mcslabel.pod"
#: Label added to the inspect output of a pod's infra container.
INFRA_LABEL = "io.mcslabel.podman.infra"

_DOCKER = engine.OWNER_PREFIX  # "docker:": the docker integration's name for its engine's owners
_OTHER = "other-engine:"


def _to_store(owner: str) -> str:
    if owner.startswith(_OTHER):
        return owner[len(_OTHER) :]
    if owner.startswith(_DOCKER):
        return OWNER_PREFIX + owner[len(_DOCKER) :]
    return owner


def _to_view(owner: str) -> str:
    if owner.startswith(OWNER_PREFIX):
        return _DOCKER + owner[len(OWNER_PREFIX) :]
    if owner.startswith((_DOCKER, _OTHER)):
        return _OTHER + owner
    return owner


def _arg_to_store(value: Any) -> Any:
    return _to_store(value) if isinstance(value, str) else value


def _result_to_view(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return type(value)(_result_to_view(v) for v in value)
    if attrs.has(type(value)) and isinstance(getattr(value, "owners", None), tuple):
        return attrs.evolve(value, owners=tuple(_to_view(o) for o in value.owners))
    if hasattr(value, "__next__"):
        return (_result_to_view(v) for v in value)
    return value


class PodmanOwners:
    """An :class:`~mcslabel.Allocator` as the docker integration sees it for podman.

    Every owner argument spelled ``docker:<id>`` is stored as ``podman:<id>``;
    every allocation returned shows ``podman:<id>`` as ``docker:<id>`` and a
    real ``docker:<id>`` as ``other-engine:docker:<id>`` (not this engine's,
    so podman's sync never releases it). Everything else passes through.
    """

    def __init__(self, allocator: Allocator) -> None:
        self.allocator = allocator

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.allocator, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(
                *(_arg_to_store(a) for a in args),
                **{k: _arg_to_store(v) for k, v in kwargs.items()},
            )
            return _result_to_view(result)

        return call


def real_owner(text: str) -> str:
    """Owner names in ``text`` as the registry stores them (undo :class:`PodmanOwners`)."""
    return re.sub(
        rf"(?<![\w:-])(?:{re.escape(_OTHER)})?{re.escape(_DOCKER)}",
        lambda m: _DOCKER if m.group(0).startswith(_OTHER) else OWNER_PREFIX,
        text,
    )


def _podman_api(sdk: Any) -> type:
    class PodmanAPIClient(sdk.APIClient):  # type: ignore[misc]
        """Docker's API client, with podman's pod membership in ``inspect_container``."""

        def inspect_container(self, container: Any) -> Any:
            data = super().inspect_container(container)
            try:
                own = self._result(
                    self._get(self._url("/libpod/containers/{0}/json", data["Id"])), True
                )
            except sdk.errors.NotFound:
                return data  # removed meanwhile: what the compat endpoint said stands
            pod = own.get("Pod") or ""
            if pod:
                config = data.setdefault("Config", {})
                labels = dict(config.get("Labels") or {})
                labels.setdefault(POD_LABEL, pod)
                if own.get("IsInfra"):
                    labels[INFRA_LABEL] = "true"
                config["Labels"] = labels
            return data

    return PodmanAPIClient


def connect(base_url: str | None = None, *, timeout: int = 30) -> Any:
    """A Docker SDK client to podman's API (default ``$CONTAINER_HOST``, else the root socket).

    Raises :class:`~mcslabel.errors.DockerError` when nothing answers, or
    when a Docker daemon answers instead of podman.
    """
    sdk = docker_sdk()
    url = base_url or os.environ.get("CONTAINER_HOST") or DEFAULT_URL
    api: Any = None
    try:
        # /_ping, not /version: podman 4.3 takes about a second to answer /version
        # (measured here: 1.0-1.4 s, twice with version="auto"), /_ping 4 ms, and its
        # headers name the API version and, on podman only, Libpod-Api-Version.
        api = _podman_api(sdk)(
            base_url=url, timeout=timeout, version=sdk.constants.MINIMUM_DOCKER_API_VERSION
        )
        pong = api._get(api._url("/_ping", versioned_api=False))
        api._raise_for_status(pong)
    except sdk_failures() as exc:
        if api is not None:
            api.close()
        raise DockerError(
            f"cannot reach podman at {url}: {exc} (start it: podman system service --time=0 {url})"
        ) from exc
    if "Libpod-Api-Version" not in pong.headers:
        api.close()
        raise DockerError(f"{url} answers, but it is not podman (use mcslabel docker there)")
    api._version = pong.headers.get("Api-Version") or sdk.constants.DEFAULT_DOCKER_API_VERSION
    client = sdk.DockerClient.__new__(sdk.DockerClient)
    client.api = api
    return client


def labels_in_use(
    client: Any, *, filters: Mapping[str, Any] | None = None
) -> list[engine.ContainerLabel]:
    """:func:`mcslabel.integrations.docker.labels_in_use` for podman's containers."""
    return list(engine.labels_in_use(client, filters=filters))


def sync(
    client: Any,
    *,
    allocator: Allocator,
    filters: Mapping[str, Any] | None = None,
    journal_dir: str | os.PathLike[str] | None = None,
) -> engine.SyncResult:
    """:func:`mcslabel.integrations.docker.sync` for podman's containers, owners ``podman:<id>``."""
    result = engine.sync(
        client,
        allocator=PodmanOwners(allocator),  # type: ignore[arg-type]
        filters=filters,
        journal_dir=journal_dir,
    )

    def pairs(rows: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        return tuple((level, real_owner(owner)) for level, owner in rows)

    def triples(rows: tuple[tuple[str, str, str], ...]) -> tuple[tuple[str, str, str], ...]:
        return tuple((a, real_owner(b), real_owner(c)) for a, b, c in rows)

    # evolve: fields this module does not map (unreadable ids, orphaned volumes) pass through.
    return attrs.evolve(
        result,
        reserved=pairs(result.reserved),
        kept=pairs(result.kept),
        released=pairs(result.released),
        fenced=pairs(result.fenced),
        conflicts=triples(result.conflicts),
        adopted=triples(result.adopted),
    )


def audit(
    client: Any,
    *,
    allocator: Allocator | None = None,
    filters: Mapping[str, Any] | None = None,
    refused: Any = None,
) -> engine.AuditReport:
    """:func:`mcslabel.integrations.docker.audit` for podman's containers and owners."""
    view = None if allocator is None else PodmanOwners(allocator)
    report = engine.audit(
        client,
        allocator=view,  # type: ignore[arg-type]
        filters=filters,
        refused=refused,
    )
    findings = tuple(
        attrs.evolve(f, message=_podman_words(real_owner(f.message))) for f in report.findings
    )
    return attrs.evolve(report, findings=findings)


def _podman_words(message: str) -> str:
    return message.replace("mcslabel docker ", "mcslabel podman ").replace("dockerd ", "podman ")


def run(
    client: Any,
    image: str,
    command: str | Sequence[str] | None = None,
    *,
    allocator: Allocator,
    volumes: Iterable[engine.Volume | str] = (),
    **kwargs: Any,
) -> engine.LabeledContainer:
    """:func:`mcslabel.integrations.docker.run` on podman; the level's owner is ``podman:<id>``."""
    started = engine.run(
        client,
        image,
        command,
        allocator=PodmanOwners(allocator),  # type: ignore[arg-type]
        volumes=volumes,
        **kwargs,
    )
    return attrs.evolve(started, owner=real_owner(started.owner))


def remove(
    client: Any, container: Any, *, allocator: Allocator, restore: bool = True
) -> engine.Removal:
    """:func:`mcslabel.integrations.docker.remove` on podman."""
    return engine.remove(
        client,
        container,
        allocator=PodmanOwners(allocator),  # type: ignore[arg-type]
        restore=restore,
    )


def volume_report(
    client: Any,
    allocator: Allocator | None,
    *,
    journal_dir: str | os.PathLike[str] | None = None,
    others: Mapping[str, Any] | None = None,
) -> VolumeReport:
    """:func:`mcslabel.integrations.docker.volume_report` from podman's side.

    ``client`` is podman's; ``others`` (default: docker at its default
    address) are the other engines asked. Pass the report to
    :func:`restore_volume` or :func:`forget_volume` (the docker
    integration's: volumes are engine-neutral).
    """
    return _volume_report(
        client, allocator, journal_dir=journal_dir, engine="podman", others=others
    )


__all__ = [
    "DEFAULT_URL",
    "INFRA_LABEL",
    "OWNER_PREFIX",
    "POD_LABEL",
    "PodmanOwners",
    "audit",
    "connect",
    "forget_volume",
    "labels_in_use",
    "real_owner",
    "remove",
    "restore_volume",
    "run",
    "sync",
    "volume_report",
]
