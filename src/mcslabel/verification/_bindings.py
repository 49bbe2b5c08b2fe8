"""Lazy access to the OS SELinux bindings (libselinux and SETools).

Both come from the distribution, never from PyPI: PyPI's ``selinux`` is a
shim that turns into a stub on Debian, and PyPI's ``setools`` is an unrelated
project. Importing here, on first use, keeps ``mcslabel --version`` and the
pure model free of them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mcslabel.errors import SELinuxUnavailable

OS_PACKAGES = (
    "Debian/Ubuntu: apt-get install python3-selinux python3-setools; "
    "Fedora/RHEL: dnf install python3-libselinux python3-setools. "
    "In a virtualenv, create it with --system-site-packages from the OS python3."
)


def _import(name: str, probe: str, what: str) -> ModuleType:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise SELinuxUnavailable(
            f"{what} ({name}) is not importable: {exc}. {OS_PACKAGES}"
        ) from exc
    if not hasattr(module, probe):
        raise SELinuxUnavailable(
            f"the importable {name!r} module is not the OS {what} (no {probe!r});"
            f" it is probably the PyPI package of that name. {OS_PACKAGES}"
        )
    return module


def setools() -> ModuleType:
    """The SETools module (policy queries)."""
    return _import("setools", "SELinuxPolicy", "SETools")


def selinux() -> ModuleType:
    """The libselinux Python binding."""
    return _import("selinux", "security_check_context_raw", "libselinux binding")


def audit2why() -> ModuleType:
    """libselinux's audit2why extension (libsepol access decisions)."""
    selinux()
    return _import("selinux.audit2why", "analyze", "libselinux audit2why extension")


def setools_error(name: str) -> type[Exception]:
    """The SETools exception class ``name`` (``InvalidType``, ``InvalidClass``...)."""
    return getattr(setools().exception, name)  # type: ignore[no-any-return]
