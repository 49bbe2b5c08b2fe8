"""Starting and removing containers at allocated levels.

Owns: what to pass to docker for a level (:func:`security_opt`,
:func:`run_options`), :func:`run` (allocate, relabel ``:Z``/``:z`` volumes,
create, hand the level to the container, with undo on failure) and
:func:`remove` (the reverse: a volume's old labels come back only once no
container at its level is left).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from mcslabel.errors import (
    DockerError,
    InvalidInput,
    LabelInUse,
    RelabelError,
    UnknownAllocation,
)
from mcslabel.errors import show_input as _q
from mcslabel.integrations.docker.daemon import container_exists, docker_sdk, sdk_failures
from mcslabel.integrations.docker.inspection import (
    OWNER_LABEL,
    OWNER_PREFIX,
    ContainerLabel,
    container_label,
)
from mcslabel.integrations.docker.volumes import (
    JOURNALS_LABEL,
    LEVEL_LABEL,
    Volume,
    default_journal_dir,
    journal_root,
    release_volume,
    restore_journals,
    volume_holders,
    volume_owner,
)
from mcslabel.level import Level

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator


def _level_of(value: Any, what: str) -> Level:
    level = getattr(value, "level", value)
    if isinstance(level, str):
        return Level.parse(level)
    if not isinstance(level, Level):
        raise InvalidInput(f"{what} needs a Level, its text or an allocation, not {_q(value)}")
    return level


def security_opt(level: Level | str | Any) -> list[str]:
    """``security_opt`` for ``client.containers.run``: ``["label=level:<level>"]``.

    Accepts a :class:`~mcslabel.level.Level`, its text (``"s0:c1,c2"``) or an
    allocation (anything with a ``level`` attribute).
    """
    return [f"label=level:{_level_of(level, 'security_opt')}"]


def run_options(allocation: Any, owner: str | None = None) -> dict[str, Any]:
    """What to pass to docker to run a container at ``allocation``'s level, as its owner's.

    Returns ``{"security_opt": [...], "labels": {"io.mcslabel.owner": owner}}``,
    usable as ``client.containers.run(image, **run_options(allocation))``.
    :func:`~mcslabel.integrations.docker.sync` and
    :func:`~mcslabel.integrations.docker.audit` treat a container carrying
    that label at that level as a co-owner of the allocation, not a conflict.
    ``owner`` defaults to the allocation's only owner; with a bare level it
    is required.
    """
    level = _level_of(allocation, "run_options")
    owners: tuple[str, ...] = tuple(getattr(allocation, "owners", ()))
    if owner is None:
        if len(owners) != 1:
            raise InvalidInput(
                "run_options needs owner=... for "
                + ("a bare level" if not owners else f"an allocation held by {len(owners)} owners")
            )
        owner = owners[0]
    elif owners and owner not in owners:
        raise InvalidInput(f"{_q(owner)} does not hold {level} (held by {', '.join(owners)})")
    return {"security_opt": security_opt(level), "labels": {OWNER_LABEL: owner}}


@attrs.frozen
class LabeledContainer:
    """A container :func:`run` started: its level, registry owner and relabel journals."""

    container: Any = attrs.field(eq=False, repr=False)
    level: Level
    owner: str
    journals: tuple[Path, ...] = ()

    @property
    def id(self) -> str:
        return str(self.container.id)


@attrs.frozen
class Removal:
    """What :func:`remove` did."""

    id: str
    name: str
    level: Level
    #: Whether the volumes' old labels were put back.
    restored: bool
    #: Volumes whose level stays held (labels kept, or still used at that level).
    held_volumes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "level": str(self.level),
            "restored": self.restored,
            "held_volumes": list(self.held_volumes),
        }


def _joined_level(allocator: Allocator, private: Sequence[Volume], join: bool) -> Level | None:
    """The level the private volumes already hold (one volume, one private level)."""
    levels: dict[Level, str] = {}
    for v in private:
        for held in volume_holders(allocator, v.source):
            levels[held.level] = ", ".join(held.owners)
            if not join:
                raise LabelInUse(
                    f"volume {v.source} carries {held.level}, held by {', '.join(held.owners)}:"
                    " a volume keeps one private level; join it (join=True, --join) or"
                    " release it first (mcslabel docker volumes restore|forget)",
                    level=str(held.level),
                    holder=held.owners[0],
                )
    if len(levels) > 1:
        raise LabelInUse(
            "the volumes are held at different levels: "
            + "; ".join(f"{lv} by {who}" for lv, who in levels.items())
        )
    return next(iter(levels), None)


def _journals_of(path: Path, journal_dir: Path) -> list[Path]:
    wanted = os.path.realpath(path)
    found = []
    with contextlib.suppress(OSError):
        for j in sorted(journal_dir.glob("*.journal")):
            described = journal_root(j)
            if described is not None and described[0] == wanted:
                found.append(j)
    return found


def run(
    client: Any,
    image: str,
    command: str | Sequence[str] | None = None,
    *,
    allocator: Allocator,
    volumes: Iterable[Volume | str] = (),
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    journal_dir: str | os.PathLike[str] | None = None,
    join: bool = False,
    start: bool = True,
    **create_kwargs: Any,
) -> LabeledContainer:
    """Start ``image`` at a freshly allocated level with its volumes relabeled.

    Allocates a pair, relabels each ``Z`` volume privately at the level and
    each ``z`` volume shared at ``s0`` (journaled under ``journal_dir``; a
    volume without ``z``/``Z`` is left alone, as Docker does), creates the
    container with ``label=level:<pair>``, moves the allocation to owner
    ``docker:<id>`` and starts it. A privately relabeled volume holds the level
    too (persistent owner ``volume:<path>``) until it is restored or released.

    A ``Z`` volume that already holds a private level is refused with its
    holder named (:class:`~mcslabel.errors.LabelInUse`); ``join=True`` runs the
    container at that level instead. On any failure everything done so far is
    undone. Remove it with :func:`remove`.
    """
    from mcslabel.relabeling import relabel

    docker_sdk()  # DockerError now, before anything is allocated, when the SDK is missing
    specs = [v if isinstance(v, Volume) else Volume.parse(v) for v in volumes]
    for v in specs:
        if not v.source.exists():
            raise InvalidInput(f"volume source {v.source} does not exist")
    private = [v for v in specs if v.relabel == "Z"]
    joined = _joined_level(allocator, private, join)
    run_id = secrets.token_hex(8)
    # Until the container exists the level belongs to this process: a pid owner,
    # which Allocator.gc frees if the process dies before handing it over.
    pending = f"pid:{os.getpid()}@{allocator.host}"
    journals_at = Path(journal_dir) if journal_dir is not None else default_journal_dir()
    if joined is not None:
        level = allocator.add_owner(joined, pending).level
    else:
        # Not shared: nobody joins it by reserving it; owners are added explicitly.
        level = allocator.allocate(pending, persistent=bool(private)).level
    journals: list[Path] = []  # written by this run: undone on failure
    joined_journals: list[Path] = []  # another container's volumes this one shares
    owners = [pending]
    container: Any = None
    try:
        for i, v in enumerate(specs):
            if not v.relabel:
                continue
            if v.relabel == "Z" and volume_holders(allocator, v.source):
                joined_journals += _journals_of(v.source, journals_at)
                continue
            try:
                journals_at.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RelabelError(
                    f"cannot create the journal directory {journals_at}: {exc.strerror}"
                ) from exc
            journal = journals_at / f"{run_id}-{i}.journal"
            journals.append(journal)
            result = relabel(
                v.source,
                level=level if v.relabel == "Z" else None,
                shared=v.relabel == "z",
                read_only=v.read_only,
                journal=journal,
            )
            if not result.ok:
                first = result.errors[0].message if result.errors else "incomplete"
                raise RelabelError(
                    f"relabel of volume {v.source} failed for {result.failed} entries"
                    f" (first: {first}); nothing was started"
                )
            if v.relabel == "Z":  # the data on disk now carries the level
                owners.append(volume_owner(v.source))
                allocator.add_owner(level, owners[-1])
        container = client.containers.create(
            image,
            command,
            name=name,
            security_opt=security_opt(level),
            volumes={
                str(v.source): {"bind": v.destination, "mode": "ro" if v.read_only else "rw"}
                for v in specs
            },
            labels={
                **(labels or {}),
                LEVEL_LABEL: str(level),
                JOURNALS_LABEL: json.dumps([str(j) for j in joined_journals + journals]),
            },
            **create_kwargs,
        )
        owner = OWNER_PREFIX + container.id
        owners.append(owner)
        allocator.transfer(level, pending, owner)
        if start:
            container.start()
            container.reload()
    except BaseException as exc:
        try:
            _undo(allocator, level, container, journals, owners=owners)
        except Exception as undo_failed:  # report the cause, not the failed cleanup
            exc.add_note(f"mcslabel: undoing the partial run failed too: {undo_failed}")
        if isinstance(exc, sdk_failures()):
            raise DockerError(f"cannot start {_q(image)}: {exc}") from exc
        raise
    return LabeledContainer(container, level, owner, (*joined_journals, *journals))


def _undo(
    allocator: Allocator,
    level: Level,
    container: Any,
    journals: Sequence[Path],
    owners: Sequence[str],
) -> None:
    if container is not None:
        with contextlib.suppress(Exception):
            container.remove(force=True)
    try:
        restore_journals(journals, restore=True)
    finally:
        # Released even when a restore fails: the container is gone, and a held
        # level nobody will release is a leak (the journal stays for a retry).
        for owner in owners:
            with contextlib.suppress(UnknownAllocation):
                allocator.release(level, owner=owner)


#: Owners of another engine's containers at the level, as this engine's view shows
#: them (``podman:<id>`` to docker; docker's ``docker:<id>`` reads
#: ``other-engine:docker:<id>`` through podman's view), and a run still starting.
#: This engine cannot tell whether they live: they keep the volumes held, and
#: ``volumes restore`` (which asks every engine) settles them.
_FOREIGN = ("podman:", "other-engine:", "pid:")


def remove(client: Any, container: Any, *, allocator: Allocator, restore: bool = True) -> Removal:
    """Remove a container :func:`run` started, release its level, restore its volumes.

    ``container`` is a container object, an id or a name. The volumes' old
    labels come back (and their ``volume:`` owners let the level go) only
    when no other container is left at the level (a container of another
    engine, or a run still starting, counts as left); until then, and with
    ``restore=False`` (the journals are then deleted), the volumes keep the
    level held.
    """
    try:
        obj = client.containers.get(container) if isinstance(container, str) else container
        obj.reload()
    except sdk_failures() as exc:
        raise DockerError(f"cannot find container {_q(container)}: {exc}") from exc
    found = container_label(obj.attrs)
    text = found.labels.get(LEVEL_LABEL)
    if text is None:
        raise InvalidInput(
            f"container {found.short_id} was not started by mcslabel.integrations.docker.run"
        )
    level = Level.parse(text)
    journals = _journal_paths(found)
    roots = [r[0] for r in map(journal_root, journals) if r is not None]
    try:
        obj.remove(force=True)
    except sdk_failures() as exc:
        raise DockerError(f"cannot remove container {found.short_id}: {exc}") from exc
    current = allocator.get(level)
    others = [
        o
        for o in (current.owners if current is not None else ())
        if o != found.owner
        and (
            (o.startswith(OWNER_PREFIX) and container_exists(client, o[len(OWNER_PREFIX) :]))
            or o.startswith(_FOREIGN)
        )
    ]
    restored = restore and not others
    # Volumes first: the level is handed out again only once nothing carries it.
    try:
        if not others:
            restore_journals(journals, restore=restore)
            if restore:
                for root in roots:
                    release_volume(allocator, root)
    finally:
        with contextlib.suppress(UnknownAllocation):
            allocator.release(level, owner=found.owner)
    return Removal(found.id, found.name, level, restored, () if restored else tuple(roots))


def _journal_paths(found: ContainerLabel) -> list[Path]:
    text = found.labels.get(JOURNALS_LABEL) or "[]"
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(j, str) for j in value):
        raise InvalidInput(
            f"container {found.short_id}: label {JOURNALS_LABEL} is not a JSON list of paths:"
            f" {_q(text)}"
        )
    return [Path(j) for j in value]


__all__ = [
    "JOURNALS_LABEL",
    "LEVEL_LABEL",
    "LabeledContainer",
    "Removal",
    "remove",
    "run",
    "run_options",
    "security_opt",
]
