"""Who uses a held volume, asked of every container engine on the host.

Owns: :func:`volume_report` (the held volumes with their users in each engine
consulted: docker and podman), :func:`restore_volume` and
:func:`forget_volume` (refused while any container of any engine uses the
volume, and while an engine that should have been asked did not answer),
:func:`connect_engines` and the records they share (:class:`EngineStatus`,
:class:`VolumeUser`, :class:`VolumeReport`).

A volume's level and journals are engine-neutral (owner ``volume:<path>``,
one journal directory), but each engine knows only its own containers: a
volume a podman container mounts looks unused to dockerd. So a report asks
every engine, and says which answered.

A container *uses* a volume when one of its mounts has its source at, inside
or above the volume (compared as real paths: symlinks and trailing slashes
name one volume one way), when its ``io.mcslabel.journals`` label names one
of the volume's journals, or when it co-owns the volume's level in the
registry. An ``mcslabel run`` still starting (its ``pid:<n>@<host>`` owner on
the level) uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import attrs

from mcslabel.errors import DockerError, EngineUnreachable, InvalidInput, VolumeInUse
from mcslabel.errors import show_input as _q
from mcslabel.integrations.docker.daemon import sdk_failures
from mcslabel.integrations.docker.volumes import (
    JOURNALS_LABEL,
    HeldVolume,
    held_volumes,
    journal_root,
    release_volume,
    restore_journals,
)

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator

#: The engines a report asks by default, in order.
ENGINES: tuple[str, ...] = ("docker", "podman")


def default_url(engine: str) -> str:
    """Where ``engine`` is asked when no address is given (its environment variable first)."""
    if engine == "podman":
        return os.environ.get("CONTAINER_HOST") or "unix:///run/podman/podman.sock"
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


@attrs.frozen
class EngineStatus:
    """One engine a report asked (or could not ask)."""

    name: str
    url: str | None = None
    reachable: bool = True
    #: Why it did not answer.
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class VolumeUser:
    """A container that uses a volume, and how."""

    engine: str
    id: str
    name: str = ""
    #: The container's state as its engine says (``running``, ``created``...).
    state: str = ""
    #: ``mount`` (a mount at, inside or above the volume), ``journal`` (its
    #: ``io.mcslabel.journals`` label), ``level`` (co-owner of the volume's
    #: level) or ``starting`` (an ``mcslabel run`` in progress: ``pid:`` owner).
    how: str = "mount"

    def describe(self) -> str:
        if self.how == "starting":
            return f"a starting mcslabel run ({self.id})"
        who = f"{self.name} ({self.id[:12]})" if self.name else self.id[:12]
        return f"{self.engine} container {who}"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class VolumeReport(Sequence[HeldVolume]):
    """The held volumes and the engines asked about them; a sequence of :class:`HeldVolume`."""

    volumes: tuple[HeldVolume, ...] = ()
    engines: tuple[EngineStatus, ...] = ()
    #: The clients of the engines that answered, to ask again before a change.
    clients: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @overload
    def __getitem__(self, index: int) -> HeldVolume: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[HeldVolume]: ...
    def __getitem__(self, index: int | slice) -> HeldVolume | Sequence[HeldVolume]:
        return self.volumes[index]

    def __len__(self) -> int:
        return len(self.volumes)

    def __iter__(self) -> Iterator[HeldVolume]:
        return iter(self.volumes)

    @property
    def unreachable(self) -> tuple[EngineStatus, ...]:
        return tuple(e for e in self.engines if not e.reachable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engines": [e.to_dict() for e in self.engines],
            "volumes": [v.to_dict() for v in self.volumes],
        }


def _real(path: str) -> str:
    return os.path.realpath(path)


def _overlap(a: str, b: str) -> bool:
    if a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/"):
        return True
    try:  # one directory under two names (a bind mount of it, a hard-linked file)
        return os.path.samefile(a, b)
    except OSError:
        return False


def _containers(client: Any, engine: str) -> list[dict[str, Any]]:
    try:
        return list(client.api.containers(all=True))
    except sdk_failures() as exc:
        raise DockerError(f"cannot list {engine}'s containers: {exc}") from exc


def engine_users(client: Any, engine: str) -> tuple[set[str], list[tuple[str, VolumeUser]]]:
    """Every container ``engine`` knows (ids, created and stopped ones too), and
    (real path, user) for each of their mount sources and journaled volumes."""
    ids: set[str] = set()
    found: list[tuple[str, VolumeUser]] = []
    roots: dict[str, tuple[str, Any] | None] = {}  # a journal shared by joined containers
    for s in _containers(client, engine):
        cid = str(s.get("Id") or "")
        ids.add(cid)
        names = s.get("Names") or [""]
        name = str(names[0]).lstrip("/")
        state = str(s.get("State") or "")
        for m in s.get("Mounts") or ():
            source = m.get("Source") if isinstance(m, dict) else None
            if isinstance(source, str) and source.startswith("/"):
                found.append((_real(source), VolumeUser(engine, cid, name, state, "mount")))
        with contextlib.suppress(ValueError, TypeError):
            journals = json.loads((s.get("Labels") or {}).get(JOURNALS_LABEL) or "[]")
            for j in journals:
                described = roots.get(str(j)) or roots.setdefault(str(j), journal_root(str(j)))
                if described is not None:
                    found.append((described[0], VolumeUser(engine, cid, name, state, "journal")))
    return ids, found


def connect_engines(
    names: Iterable[str] = ENGINES, hosts: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    """A client for each engine in ``names`` that answers, else its :class:`EngineStatus`.

    ``hosts`` maps an engine to its address (default: its environment
    variable, else its root socket; see :func:`default_url`).
    """
    from mcslabel.integrations import podman
    from mcslabel.integrations.docker.daemon import connect

    found: dict[str, Any] = {}
    for name in names:
        if name not in ENGINES:
            raise InvalidInput(f"unknown engine {_q(name)} (known: {', '.join(ENGINES)})")
        url = (hosts or {}).get(name) or default_url(name)
        opener = podman.connect if name == "podman" else connect
        try:
            found[name] = opener(url, timeout=10)
        except DockerError as exc:
            found[name] = EngineStatus(name, url, reachable=False, error=str(exc))
    return found


def _level_users(
    allocator: Allocator, volume: HeldVolume, alive: Mapping[str, set[str]]
) -> list[VolumeUser]:
    """The live containers (and starting runs) that co-own the volume's level."""
    from mcslabel.allocation.discovery import PROCESS_OWNER, process_gone

    if volume.level is None or not volume.held:
        return []
    allocation = allocator.get(volume.level)
    found = []
    for owner in allocation.owners if allocation is not None else ():
        prefix, _, rest = owner.partition(":")
        if prefix in alive and rest in alive[prefix]:
            found.append(VolumeUser(prefix, rest, how="level"))
        match = PROCESS_OWNER.fullmatch(owner)
        if match and owner.startswith("pid:"):
            here = match.group(2) == allocator.host
            if not here or not process_gone(int(match.group(1))):
                found.append(VolumeUser("", owner, how="starting"))
    return found


def volume_report(
    client: Any,
    allocator: Allocator | None,
    *,
    journal_dir: str | os.PathLike[str] | None = None,
    engine: str = "docker",
    others: Mapping[str, Any] | None = None,
    urls: Mapping[str, str | None] | None = None,
) -> VolumeReport:
    """Volumes held at a private level or described by a journal, with the containers of
    every engine asked that use them (see :func:`held_volumes`).

    ``client`` is ``engine``'s. ``others`` are the other engines to ask:
    a client, or an :class:`EngineStatus` for one that did not answer (as
    :func:`connect_engines` returns them); ``None`` (the default) asks every
    other engine of :data:`ENGINES` at its default address, ``{}`` none.
    ``urls`` are the engines' addresses, shown in the report (default:
    :func:`default_url`).
    """
    if others is None:
        others = connect_engines([n for n in ENGINES if n != engine])

    def url(name: str) -> str:
        return (urls or {}).get(name) or default_url(name)

    clients: dict[str, Any] = {engine: client}
    statuses = [EngineStatus(engine, url(engine))]
    for name, other in others.items():
        if isinstance(other, EngineStatus):
            statuses.append(other)
        else:
            clients[name] = other
            statuses.append(EngineStatus(name, url(name)))
    users: list[tuple[str, VolumeUser]] = []
    alive: dict[str, set[str]] = {}
    for i, (name, c) in enumerate(clients.items()):
        try:
            alive[name], found = engine_users(c, name)
        except DockerError as exc:
            if name == engine:
                raise
            statuses[i] = EngineStatus(name, url(name), reachable=False, error=str(exc))
            continue
        users += found
    volumes = held_volumes(allocator, journal_dir=journal_dir)
    done = []
    for v in volumes:
        mine = [u for path, u in users if _overlap(v.path, path)]
        if allocator is not None:
            mine += _level_users(allocator, v, alive)
        unique = tuple(dict.fromkeys(mine))
        ids = tuple(sorted({u.id for u in unique if u.how != "starting"}))
        done.append(attrs.evolve(v, containers=ids, users=unique))
    return VolumeReport(tuple(done), tuple(statuses), clients)


def _find(volumes: Sequence[HeldVolume], path: str | os.PathLike[str]) -> HeldVolume:
    wanted = _real(os.fspath(path))
    for v in volumes:
        if v.path == wanted:
            return v
    for v in volumes:  # the same directory under another name (a bind mount of it)
        with contextlib.suppress(OSError):
            if os.path.samefile(v.path, wanted):
                return v
    raise InvalidInput(f"no held volume or journal for {_q(str(path))}")


def _refuse_in_use(volume: HeldVolume, users: Sequence[VolumeUser], what: str) -> None:
    if not users and not volume.containers:
        return
    first = users[0] if users else VolumeUser("", volume.containers[0])
    names = ", ".join(u.describe() for u in users) or ", ".join(c[:12] for c in volume.containers)
    raise VolumeInUse(
        f"volume {volume.path} {what} {names}",
        level="" if volume.level is None else str(volume.level),
        holder=first.id,
        engine=first.engine,
        container=first.name or first.id,
        path=volume.path,
    )


def _settle(
    volumes: Sequence[HeldVolume],
    path: str | os.PathLike[str],
    allocator: Allocator,
    *,
    restore: bool,
    accept_unreachable: bool,
) -> HeldVolume:
    volume = _find(volumes, path)
    _refuse_in_use(volume, volume.users, "is in use by")  # a known user first: definite
    if isinstance(volumes, VolumeReport) and volumes.unreachable and not accept_unreachable:
        missing = "; ".join(f"{e.name} at {e.url}: {e.error}" for e in volumes.unreachable)
        raise EngineUnreachable(
            f"cannot {'restore' if restore else 'forget'} volume {volume.path}: an engine whose"
            f" containers may use it did not answer ({missing}); start it, leave it out"
            " (--engine), or accept the risk (--allow-unreachable)",
            engines=tuple(e.name for e in volumes.unreachable),
        )
    if restore and not volume.journals:
        raise InvalidInput(
            f"volume {volume.path} has no journal to restore its old labels from"
            " (kept with --keep-labels?); forget it to release its level"
        )
    restore_journals(list(volume.journals), restore=restore)
    if isinstance(volumes, VolumeReport) and volumes.clients:
        # Asked again: a container created meanwhile keeps the level held and is named.
        again = [
            u
            for name, c in volumes.clients.items()
            for p, u in engine_users(c, name)[1]
            if _overlap(volume.path, p)
        ]
        _refuse_in_use(volume, again, f"was {'restored' if restore else 'forgotten'}, but now")
    release_volume(allocator, volume.path)
    return volume


def restore_volume(
    volumes: Sequence[HeldVolume],
    path: str | os.PathLike[str],
    *,
    allocator: Allocator,
    accept_unreachable: bool = False,
) -> HeldVolume:
    """Put back a volume's old labels from its journals and release its level.

    Refused (:class:`~mcslabel.errors.VolumeInUse`) while a container of any
    engine asked uses it, and (:class:`~mcslabel.errors.EngineUnreachable`)
    when ``volumes`` is a :class:`VolumeReport` in which an engine did not
    answer, unless ``accept_unreachable``.
    """
    return _settle(volumes, path, allocator, restore=True, accept_unreachable=accept_unreachable)


def forget_volume(
    volumes: Sequence[HeldVolume],
    path: str | os.PathLike[str],
    *,
    allocator: Allocator,
    accept_unreachable: bool = False,
) -> HeldVolume:
    """Drop a volume's journals and release its level; its files keep their labels.

    Refused as :func:`restore_volume` is.
    """
    return _settle(volumes, path, allocator, restore=False, accept_unreachable=accept_unreachable)


__all__ = [
    "ENGINES",
    "EngineStatus",
    "VolumeReport",
    "VolumeUser",
    "connect_engines",
    "default_url",
    "engine_users",
    "forget_volume",
    "restore_volume",
    "volume_report",
]
