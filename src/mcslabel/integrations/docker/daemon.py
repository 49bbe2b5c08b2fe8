"""Talking to a Docker daemon: the optional SDK, connecting, and what counts as its failure.

Owns: the lazy import of the ``docker`` SDK (extra ``mcslabel[docker]``),
:func:`connect`, and the exception tuple every docker module turns into
:class:`~mcslabel.errors.DockerError`. The SDK is imported as ``docker_sdk``
inside functions: this package is itself called ``docker``.
"""

from __future__ import annotations

import warnings
from typing import Any

from mcslabel.errors import DockerError, InvalidInput


def docker_sdk() -> Any:
    """The ``docker`` SDK module; :class:`~mcslabel.errors.DockerError` when it is missing."""
    try:
        import docker as sdk
    except ImportError as exc:  # pragma: no cover - the extra is installed in dev
        raise DockerError(
            "the docker SDK is not installed: pip install 'mcslabel[docker]'"
        ) from exc
    return sdk


def sdk_failures() -> tuple[type[BaseException], ...]:
    """What the SDK raises when the daemon refuses or is unreachable.

    A daemon that dies mid-call surfaces as a ``requests`` error, not a
    ``DockerException``: both become :class:`~mcslabel.errors.DockerError`.
    """
    import requests

    return (docker_sdk().errors.DockerException, requests.RequestException)


def connect(base_url: str | None = None, *, timeout: int = 30) -> Any:
    """A ``docker.DockerClient`` for ``base_url`` (default: ``$DOCKER_HOST`` or the local socket).

    Raises :class:`~mcslabel.errors.DockerError` when the SDK is missing or no
    daemon answers.
    """
    sdk = docker_sdk()
    client: Any = None
    try:
        if base_url is None:
            client = sdk.from_env(timeout=timeout)
        else:
            client = sdk.DockerClient(base_url=base_url, timeout=timeout)
        client.ping()
    except sdk_failures() as exc:
        if client is not None:
            client.close()
        raise DockerError(f"cannot reach the Docker daemon: {exc}") from exc
    return client


def container_exists(client: Any, container_id: str) -> bool:
    """Whether the daemon still knows ``container_id`` (a removed one is False)."""
    sdk = docker_sdk()
    try:
        client.api.inspect_container(container_id)
    except sdk.errors.NotFound:
        return False
    except sdk_failures() as exc:
        raise DockerError(f"cannot inspect container {container_id[:12]}: {exc}") from exc
    return True


def positional_allocator(args: tuple[Any, ...], allocator: Any, what: str) -> Any:
    """The allocator passed by keyword, or (deprecated) as the second positional argument."""
    if not args:
        return allocator
    if len(args) > 1 or allocator is not None:
        raise InvalidInput(f"{what}(client, *, allocator=...) takes one positional argument")
    warnings.warn(
        f"pass the allocator by keyword: {what}(client, allocator=...)",
        DeprecationWarning,
        stacklevel=3,
    )
    return args[0]


__all__ = [
    "connect",
    "container_exists",
    "docker_sdk",
    "positional_allocator",
    "sdk_failures",
]
