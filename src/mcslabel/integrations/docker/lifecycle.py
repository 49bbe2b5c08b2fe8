"""Starting and removing containers at allocated levels.

Owns: :func:`security_opt` (what to pass to docker for a level),
:func:`run` (allocate, relabel volumes, create, hand the level to the
container) and :func:`remove` (the reverse), with undo on failure.
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

from mcslabel.errors import DockerError, InvalidInput, RelabelError, UnknownAllocation
from mcslabel.errors import show_input as _q
from mcslabel.integrations.docker.daemon import docker_sdk, sdk_failures
from mcslabel.integrations.docker.inspection import (
    OWNER_PREFIX,
    ContainerLabel,
    container_label,
)
from mcslabel.integrations.docker.volumes import Volume, default_journal_dir, restore_journals
from mcslabel.level import Level

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator


def security_opt(level: Level | Any) -> list[str]:
    """``security_opt`` for ``client.containers.run``: ``["label=level:<level>"]``.

    Accepts a :class:`~mcslabel.level.Level` or an allocation (anything with
    a ``level`` attribute).
    """
    value = getattr(level, "level", level)
    if not isinstance(value, Level):
        raise InvalidInput(f"security_opt needs a Level or an allocation, not {_q(level)}")
    return [f"label=level:{value}"]


#: Container labels :func:`run` sets, read back by :func:`remove`.
LEVEL_LABEL = "io.mcslabel.level"
JOURNALS_LABEL = "io.mcslabel.journals"


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
    start: bool = True,
    **create_kwargs: Any,
) -> LabeledContainer:
    """Start ``image`` at a freshly allocated level with its volumes relabeled.

    Allocates a pair, relabels each bind volume with :func:`mcslabel.relabeling.engine.relabel`
    (``Z``: container_file_t at the level, ``z``: shared at ``s0``; journaled under
    ``journal_dir``), creates the container with ``label=level:<pair>``, moves the
    allocation to owner ``docker:<id>`` and starts it. Docker itself is not asked to
    relabel (no ``:Z`` is passed on), so nothing is relabeled twice. On any failure
    everything done so far is undone: journals restored, container removed, level
    released. Remove it with :func:`remove`.
    """
    from mcslabel.relabeling import engine as relabel_mod

    docker_sdk()  # DockerError now, before anything is allocated, when the SDK is missing
    specs = [v if isinstance(v, Volume) else Volume.parse(v) for v in volumes]
    for v in specs:
        if not v.source.exists():
            raise InvalidInput(f"volume source {v.source} does not exist")
    run_id = secrets.token_hex(8)
    # Until the container exists the level belongs to this process: a pid owner,
    # which Allocator.gc frees if the process dies before handing it over.
    pending = f"pid:{os.getpid()}@{allocator.host}"
    journals_at = Path(journal_dir) if journal_dir is not None else default_journal_dir()
    allocation = allocator.allocate(pending, shared=True)
    level: Level = allocation.level
    journals: list[Path] = []
    container: Any = None
    try:
        for i, v in enumerate(specs):
            if not v.relabel:
                continue
            try:
                journals_at.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RelabelError(
                    f"cannot create the journal directory {journals_at}: {exc.strerror}"
                ) from exc
            journal = journals_at / f"{run_id}-{i}.journal"
            journals.append(journal)
            result = relabel_mod.relabel(
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
                JOURNALS_LABEL: json.dumps([str(j) for j in journals]),
            },
            **create_kwargs,
        )
        owner = OWNER_PREFIX + container.id
        allocator.reserve(level, owner, shared=True)
        allocator.release(level, owner=pending)
        if start:
            container.start()
            container.reload()
    except BaseException as exc:
        try:
            _undo(allocator, level, container, journals, owners=(pending,))
        except Exception as undo_failed:  # report the cause, not the failed cleanup
            exc.add_note(f"mcslabel: undoing the partial run failed too: {undo_failed}")
        if isinstance(exc, sdk_failures()):
            raise DockerError(f"cannot start {_q(image)}: {exc}") from exc
        raise
    return LabeledContainer(container, level, owner, tuple(journals))


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
        owners = (*owners, OWNER_PREFIX + container.id)
    try:
        restore_journals(journals, restore=True)
    finally:
        # Released even when a restore fails: the container is gone, and a held
        # level nobody will release is a leak (the journal stays for a retry).
        for owner in owners:
            with contextlib.suppress(UnknownAllocation):
                allocator.release(level, owner=owner)


def remove(client: Any, container: Any, *, allocator: Allocator, restore: bool = True) -> None:
    """Remove a container :func:`run` started, release its level, restore its volumes.

    ``container`` is a container object, an id or a name. ``restore=False`` keeps
    the volumes' new labels (the journals are then deleted).
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
    try:
        obj.remove(force=True)
    except sdk_failures() as exc:
        raise DockerError(f"cannot remove container {found.short_id}: {exc}") from exc
    # Volumes first: the level is handed out again only once nothing carries it.
    try:
        restore_journals(journals, restore=restore)
    finally:
        with contextlib.suppress(UnknownAllocation):
            allocator.release(level, owner=found.owner)


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


__all__ = ["JOURNALS_LABEL", "LEVEL_LABEL", "LabeledContainer", "remove", "run", "security_opt"]
