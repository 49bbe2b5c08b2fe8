"""pytest plugin: MCS levels, relabeled volumes and policy assertions as fixtures.

Installed with mcslabel and loaded through the ``pytest11`` entry point
(``mcslabel = "mcslabel.integrations.pytest_plugin"``): a project that installs mcslabel
gets these fixtures with no conftest. Disable with ``-p no:mcslabel``.

Fixtures:

``mcs_store``
    A fresh SQLite store in the test's temp dir, or the store ``--mcs-store URL`` names.
``mcs_allocator``
    An :class:`~mcslabel.allocation.allocator.Allocator` on ``mcs_store``.
``mcs_level``
    A fresh category pair allocated for this test and released after it.
``mcs_volume``
    A temp directory relabeled (journaled) to ``mcs_level``, restored after the test.
``selinux_policy``
    The installed policy, or the one under ``--mcs-policy-root DIR`` (session-wide).
``assert_blocked`` / ``assert_isolated``
    :func:`mcslabel.assert_blocked` and :func:`mcslabel.assert_isolated`
    bound to ``selinux_policy``.

Markers:

``@pytest.mark.mcs_level(name=None, shared=False, ttl=None)``
    How ``mcs_level`` allocates: a deterministic ``name``, a shared allocation, a lease.
``@pytest.mark.mcs_volume(shared=False, read_only=False)``
    How ``mcs_volume`` is labeled: ``:z`` (shared, plain ``s0``) or read-only content.

Options: ``--mcs-store URL`` (also the ``mcs_store`` ini key), ``--mcs-policy-root DIR``
(also ``mcs_policy_root``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator
    from mcslabel.allocation.stores import Store
    from mcslabel.level import Level
    from mcslabel.verification.policy import Policy
    from mcslabel.verification.verifier import Report


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mcslabel", "SELinux MCS labels (mcslabel)")
    group.addoption(
        "--mcs-store",
        metavar="URL",
        default=None,
        help="label store for mcs_store (sqlite:///path, memory://, etcd://...);"
        " default: a fresh SQLite file per test",
    )
    group.addoption(
        "--mcs-policy-root",
        metavar="DIR",
        default=None,
        help="policy root for selinux_policy (laid out like /etc/selinux/<type>/);"
        " default: the installed policy",
    )
    parser.addini("mcs_store", "default for --mcs-store", default=None)
    parser.addini("mcs_policy_root", "default for --mcs-policy-root", default=None)


#: The keywords each marker takes (anything else is a usage error, reported once).
MARKER_KEYWORDS = {
    "mcs_level": ("name", "shared", "ttl"),
    "mcs_volume": ("shared", "read_only"),
}


def pytest_configure(config: pytest.Config) -> None:
    _check_options(config)
    config.addinivalue_line(
        "markers",
        "mcs_level(name=None, shared=False, ttl=None): how the mcs_level fixture allocates",
    )
    config.addinivalue_line(
        "markers",
        "mcs_volume(shared=False, read_only=False): how the mcs_volume fixture is labeled",
    )


def _check_options(config: pytest.Config) -> None:
    """A bad ``--mcs-store`` or ``--mcs-policy-root`` stops the run once, at start."""
    from mcslabel.errors import MCSLabelError

    policy_root = _option(config, "mcs_policy_root")
    if policy_root is not None:
        from mcslabel.verification.policy import PolicyRoot

        try:
            _ = PolicyRoot.at(policy_root).policy_file  # a directory holding a policy
        except MCSLabelError as exc:
            raise pytest.UsageError(f"--mcs-policy-root: {exc}") from exc
    store = _option(config, "mcs_store")
    if store is not None:
        from mcslabel.allocation.stores import open_store

        try:
            open_store(store, create=True).close()  # the run creates it, as mcs_store does
        except MCSLabelError as exc:
            raise pytest.UsageError(f"--mcs-store: {type(exc).__name__}: {exc}") from exc


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a misspelled marker keyword once, before any test runs."""
    import difflib

    for item in items:
        for name, allowed in MARKER_KEYWORDS.items():
            for marker in item.iter_markers(name):
                if marker.args:
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.{name} takes keywords only"
                        f" ({', '.join(allowed)}), not {marker.args!r}"
                    )
                for key in marker.kwargs:
                    if key not in allowed:
                        close = difflib.get_close_matches(key, allowed, n=1)
                        hint = f" (did you mean {close[0]!r}?)" if close else ""
                        raise pytest.UsageError(
                            f"{item.nodeid}: @pytest.mark.{name} has no keyword {key!r}{hint};"
                            f" it takes {', '.join(allowed)}"
                        )


def pytest_assertrepr_compare(
    config: pytest.Config, op: str, left: object, right: object
) -> list[str] | None:
    """Levels and contexts in a failed comparison shown as labels (``s0:c1,c2``)."""
    from mcslabel.context import Context
    from mcslabel.level import Level, LevelRange

    kinds = (Level, LevelRange, Context)
    if not isinstance(left, kinds) and not isinstance(right, kinds):
        return None

    def text(value: object) -> str:
        return str(value) if isinstance(value, kinds) else repr(value)

    return [
        f"{text(left)} {op} {text(right)}",
        f"left:  {type(left).__name__} {text(left)}",
        f"right: {type(right).__name__} {text(right)}",
    ]


def _option(config: pytest.Config, name: str) -> str | None:
    value = config.getoption("--" + name.replace("_", "-"), default=None)
    if value:
        return str(value)
    ini = config.getini(name)
    return str(ini) if ini else None


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    return dict(marker.kwargs) if marker is not None else {}


def process_owner() -> str:
    """The owner every allocation of this test process is made under: ``pid:<pid>@<host>``.

    A pid owner is what :meth:`~mcslabel.allocation.allocator.Allocator.gc` frees once the
    process is gone, so a test run killed midway leaves nothing held for long.
    """
    return f"pid:{os.getpid()}@{socket.gethostname()}"


@pytest.fixture
def mcs_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A label store: ``--mcs-store URL``, else a fresh SQLite file in the test's temp dir."""
    from mcslabel.allocation.stores import open_store

    url = _option(request.config, "mcs_store") or f"sqlite:///{tmp_path / 'labels.db'}"
    store = open_store(url, create=True)  # a test run's own registry
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def mcs_allocator(mcs_store: Store) -> Allocator:
    """An allocator on ``mcs_store`` with the default category count and exclusions."""
    from mcslabel.allocation.allocator import Allocator

    return Allocator(mcs_store)


@pytest.fixture
def mcs_level(request: pytest.FixtureRequest, mcs_allocator: Allocator) -> Iterator[Level]:
    """A level allocated for this test (see the ``mcs_level`` marker), released after it."""
    options = _marker_kwargs(request, "mcs_level")
    owner = process_owner()
    allocation = mcs_allocator.allocate(owner, **options)
    try:
        yield allocation.level
    finally:
        from mcslabel.errors import UnknownAllocation

        with contextlib.suppress(UnknownAllocation):  # the test may have released it
            mcs_allocator.release(allocation.level, owner=owner)


@pytest.fixture
def mcs_volume(request: pytest.FixtureRequest, tmp_path: Path, mcs_level: Level) -> Iterator[Path]:
    """A directory relabeled to ``mcs_level`` (``:Z``), or ``:z`` with the marker.

    The relabel is journaled; the old labels are restored after the test.
    """
    from mcslabel.errors import RelabelError
    from mcslabel.relabeling.engine import relabel, restore

    options = _marker_kwargs(request, "mcs_volume")
    volume = tmp_path / "volume"
    volume.mkdir(exist_ok=True)
    journal = tmp_path / "volume.journal"
    shared = bool(options.get("shared", False))
    try:
        result = relabel(
            volume,
            level=None if shared else mcs_level,
            shared=shared,
            read_only=bool(options.get("read_only", False)),
            journal=journal,
        )
        if not result.ok:
            raise RelabelError(f"mcs_volume: {result.failed} entries of {volume} not relabeled")
        yield volume
    finally:
        if journal.exists():  # absent when relabel refused before writing anything
            restore(journal)


@pytest.fixture(scope="session")
def selinux_policy(request: pytest.FixtureRequest) -> Policy:
    """The installed policy, or the policy root given with ``--mcs-policy-root``."""
    from mcslabel.verification.policy import load_policy

    return load_policy(_option(request.config, "mcs_policy_root"))


@pytest.fixture
def assert_blocked(selinux_policy: Policy) -> Callable[..., Report]:
    """:func:`mcslabel.integrations.assertions.assert_blocked` on ``selinux_policy``.

    ``assert_blocked(paths=["/var"], level=mcs_level)`` verifies and raises
    ``AssertionError`` naming each allowed must-block access and its rules;
    it returns the :class:`~mcslabel.verification.verifier.Report`. A report passed in is
    checked as is.
    """
    from mcslabel.integrations.assertions import assert_blocked as check_blocked

    def check(report: Report | None = None, **verify_args: Any) -> Report:
        __tracebackhide__ = True
        if report is None and "policy_root" not in verify_args:
            verify_args.setdefault("policy", selinux_policy)
        return check_blocked(report, **verify_args)

    return check


@pytest.fixture
def assert_isolated(selinux_policy: Policy) -> Callable[..., None]:
    """:func:`mcslabel.integrations.assertions.assert_isolated` on ``selinux_policy``.

    ``assert_isolated(level_a, level_b)`` raises ``AssertionError`` unless the
    container domain at each level is denied, by an MCS constraint, access to
    the other level's files.
    """
    from mcslabel.integrations.assertions import assert_isolated as check_isolated

    def check(level_a: Level | str, level_b: Level | str, **kwargs: Any) -> None:
        __tracebackhide__ = True
        if "policy_root" not in kwargs:
            kwargs.setdefault("policy", selinux_policy)
        check_isolated(level_a, level_b, **kwargs)

    return check


__all__ = [
    "MARKER_KEYWORDS",
    "assert_blocked",
    "assert_isolated",
    "mcs_allocator",
    "mcs_level",
    "mcs_store",
    "mcs_volume",
    "process_owner",
    "pytest_addoption",
    "pytest_assertrepr_compare",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "selinux_policy",
]
