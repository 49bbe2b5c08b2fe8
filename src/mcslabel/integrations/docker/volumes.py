"""Bind volumes of the containers mcslabel starts: ``-v`` specs, holders, journals.

Owns: :class:`Volume` (``SOURCE:DESTINATION[:OPTIONS]`` as ``docker -v`` takes
it: no relabel without ``z``/``Z``), the registry owner that keeps a privately
relabeled volume's level held (``volume:<path>``), where relabel journals
live, and listing, restoring or forgetting what they describe
(:func:`held_volumes`; who uses them, in every engine, and restoring or
forgetting them: :mod:`~mcslabel.integrations.docker.volume_users`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

import attrs

from mcslabel.context import Context
from mcslabel.errors import DockerError, InvalidInput, MCSLabelError, UnknownAllocation
from mcslabel.errors import show_input as _q
from mcslabel.integrations.docker.daemon import sdk_failures
from mcslabel.level import Level, LevelRange

if TYPE_CHECKING:
    from mcslabel.allocation import Allocation
    from mcslabel.allocation.allocator import Allocator

#: Container labels :func:`~mcslabel.integrations.docker.run` sets, read back by
#: :func:`~mcslabel.integrations.docker.remove`: its level and its volumes' journals.
LEVEL_LABEL = "io.mcslabel.level"
JOURNALS_LABEL = "io.mcslabel.journals"
#: Owner prefix of the registry entry a privately relabeled volume holds its level by.
VOLUME_PREFIX = "volume:"


@attrs.frozen
class Volume:
    """A bind volume for :func:`~mcslabel.integrations.docker.run`.

    ``relabel`` is ``"Z"`` (private: the container's level), ``"z"`` (shared:
    plain ``s0``, for several containers) or ``""`` (leave the labels alone,
    the default, as Docker and podman do).
    """

    source: Path = attrs.field(converter=Path)
    destination: str
    relabel: Literal["Z", "z", ""] = ""
    read_only: bool = False

    @classmethod
    def parse(cls, spec: str) -> Volume:
        """Parse ``/src:/dst``, ``/src:/dst:Z``, ``/src:/dst:ro,z``... (default: no relabel)."""
        parts = spec.split(":") if isinstance(spec, str) else []
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise InvalidInput(f"volume {_q(spec)} must be SOURCE:DESTINATION[:OPTIONS]")
        if not parts[0].startswith("/") or not parts[1].startswith("/"):
            raise InvalidInput(f"volume {_q(spec)}: source and destination must be absolute")
        flags = set(parts[2].split(",")) if len(parts) == 3 else set()
        unknown = flags - {"Z", "z", "ro", "rw", "noZ"}
        if unknown or {"Z", "z"} <= flags or {"ro", "rw"} <= flags:
            raise InvalidInput(f"volume {_q(spec)}: options must be ro|rw and Z|z")
        relabel: Literal["Z", "z", ""] = "z" if "z" in flags else "Z" if "Z" in flags else ""
        return cls(parts[0], parts[1], relabel, "ro" in flags)


def volume_owner(path: str | os.PathLike[str]) -> str:
    """The registry owner naming a volume: ``volume:<absolute real path>`` (quoted when needed)."""
    return VOLUME_PREFIX + quote(os.path.realpath(path), safe="/:@+,=-_.~")


def volume_path(owner: str) -> str | None:
    """The path a ``volume:`` owner names, or None for another owner."""
    if not owner.startswith(VOLUME_PREFIX):
        return None
    return unquote(owner[len(VOLUME_PREFIX) :])


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def volume_holders(allocator: Allocator, path: str | os.PathLike[str]) -> list[Allocation]:
    """Allocations held by a volume at, inside or above ``path``."""
    wanted = os.path.realpath(path)
    return [
        a
        for a in allocator.allocations()
        if any(_overlap(wanted, p) for p in map(volume_path, a.owners) if p is not None)
    ]


def default_journal_dir() -> Path:
    """Where :func:`~mcslabel.integrations.docker.run` keeps relabel journals."""
    if os.geteuid() == 0:
        return Path("/var/lib/mcslabel/journals")
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "mcslabel" / "journals"


def journal_root(journal: str | os.PathLike[str]) -> tuple[str, Level | None] | None:
    """(volume path, level written) a journal describes; None when it cannot be read."""
    from mcslabel.relabeling import read_journal

    try:
        header, _, _ = read_journal(journal)
        level = Context.parse(header.target).level
    except (MCSLabelError, OSError, KeyError, ValueError):
        return None
    if isinstance(level, LevelRange):
        level = level.high
    return os.path.realpath(header.root), level


def _journals_in(journal_dir: Path) -> Iterator[Path]:
    with contextlib.suppress(OSError):
        yield from sorted(p for p in journal_dir.iterdir() if p.name.endswith(".journal"))


def restore_journals(journals: Sequence[Path], *, restore: bool) -> None:
    """Restore (or just drop) each journal, newest first; every one is tried.

    A journal that fails to restore is kept for ``mcslabel restore``;
    the first failure is raised once all the others were handled.
    """
    from mcslabel.relabeling import remove_journal
    from mcslabel.relabeling import restore as restore_journal

    first: BaseException | None = None
    for journal in reversed(journals):
        if not journal.exists():
            continue
        try:
            if restore:
                restore_journal(journal)
            remove_journal(journal)  # with its per-worker segments (PATH.1..N)
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


@attrs.frozen
class HeldVolume:
    """A volume whose private level is held in the registry or described by a journal."""

    path: str
    #: The level the volume carries (from the registry, else from its journal).
    level: Level | None
    #: True when a ``volume:<path>`` owner holds the level in the registry.
    held: bool
    #: Ids of the containers that use it (in any engine asked; see :attr:`users`).
    containers: tuple[str, ...] = ()
    journals: tuple[Path, ...] = ()
    #: Who uses it and how (:class:`~mcslabel.integrations.docker.volume_users.VolumeUser`),
    #: as :func:`~mcslabel.integrations.docker.volume_report` found them.
    users: tuple[Any, ...] = ()

    @property
    def orphaned(self) -> bool:
        """No live container uses it: its level stays held until restored or forgotten."""
        return not self.containers and not self.users

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "level": None if self.level is None else str(self.level),
            "held": self.held,
            "orphaned": self.orphaned,
            "containers": list(self.containers),
            "journals": [str(j) for j in self.journals],
            "users": [u.to_dict() for u in self.users],
        }


def held_volumes(
    allocator: Allocator | None,
    *,
    journal_dir: str | os.PathLike[str] | None = None,
    live: Iterable[tuple[str, Sequence[str]]] = (),
) -> list[HeldVolume]:
    """Every volume held by a ``volume:`` owner or described by a journal in ``journal_dir``.

    ``live`` is (container id, journal paths) for the containers that still
    exist (:func:`~mcslabel.integrations.docker.volume_report` asks every engine).
    """
    directory = Path(journal_dir) if journal_dir is not None else default_journal_dir()
    users: dict[str, list[str]] = {}
    for container_id, paths in live:
        for j in paths:
            users.setdefault(str(j), []).append(container_id)
    found: dict[str, dict[str, Any]] = {}

    def entry(path: str) -> dict[str, Any]:
        return found.setdefault(
            path, {"level": None, "held": False, "containers": [], "journals": []}
        )

    for allocation in allocator.allocations() if allocator is not None else ():
        for owner in allocation.owners:
            path = volume_path(owner)
            if path is not None:
                e = entry(path)
                e["level"], e["held"] = allocation.level, True
    for journal in _journals_in(directory):
        described = journal_root(journal)
        if described is None:
            continue
        e = entry(described[0])
        e["level"] = e["level"] or described[1]
        e["journals"].append(journal)
        e["containers"].extend(users.get(str(journal), ()))
    return [
        HeldVolume(
            path,
            e["level"],
            e["held"],
            tuple(sorted(set(e["containers"]))),
            tuple(e["journals"]),
        )
        for path, e in sorted(found.items())
    ]


def release_volume(allocator: Allocator, path: str | os.PathLike[str]) -> Level | None:
    """Drop the ``volume:<path>`` owner from its allocation; the level it held, or None."""
    owner = volume_owner(path)
    for allocation in volume_holders(allocator, path):
        if owner in allocation.owners:
            with contextlib.suppress(UnknownAllocation):
                allocator.release(allocation.level, owner=owner)
            return allocation.level
    return None


def live_journals(client: Any) -> list[tuple[str, list[str]]]:
    """(id, journal paths) of every container :func:`run` started that still exists."""
    try:
        summaries = client.api.containers(all=True, filters={"label": LEVEL_LABEL})
    except sdk_failures() as exc:
        raise DockerError(f"cannot list containers: {exc}") from exc
    found = []
    for s in summaries:
        with contextlib.suppress(ValueError, TypeError):
            paths = json.loads((s.get("Labels") or {}).get(JOURNALS_LABEL) or "[]")
            found.append((str(s["Id"]), [str(p) for p in paths]))
    return found


__all__ = [
    "JOURNALS_LABEL",
    "LEVEL_LABEL",
    "VOLUME_PREFIX",
    "HeldVolume",
    "Volume",
    "default_journal_dir",
    "held_volumes",
    "journal_root",
    "live_journals",
    "release_volume",
    "restore_journals",
    "volume_holders",
    "volume_owner",
    "volume_path",
]
