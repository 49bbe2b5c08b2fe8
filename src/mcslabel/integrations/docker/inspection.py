"""Reading containers as the engine does: security options, levels, mounts, pods.

Owns: :class:`ContainerLabel` built from ``docker inspect`` output, the
security-option rules of moby (``label=...``, the legacy ``label:...``, a
bare ``disable``), levels read with the kernel's acceptance (``s0:c1,c1``
runs as ``s0:c1``), the fallback to ``ProcessLabel``/``MountLabel``, and
pods (containers that share a level on purpose).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from mcslabel.errors import DockerError, InvalidLevel
from mcslabel.integrations.docker.daemon import docker_sdk, sdk_failures
from mcslabel.level import Level, LevelRange, parse_level_or_range

#: Owner prefix of the allocations :func:`~mcslabel.integrations.docker.sync` and
#: :func:`~mcslabel.integrations.docker.run` make.
OWNER_PREFIX = "docker:"
#: Container label naming the registry owner whose allocation the container runs at
#: (set by :func:`~mcslabel.integrations.docker.run_options`): sync and audit adopt it.
OWNER_LABEL = "io.mcslabel.owner"
#: Container labels whose equal values make containers one pod.
POD_LABELS: tuple[str, ...] = (
    "io.mcslabel.pod",
    OWNER_LABEL,
    "io.kubernetes.pod.uid",
    "com.docker.compose.project",
)
#: Process types that are not confined by the container policy.
UNCONFINED_TYPES = frozenset(
    {"spc_t", "unconfined_t", "container_runtime_t", "kernel_t", "initrc_t", "unlabeled_t"}
)


@attrs.frozen
class Mount:
    """One mount of a container as Docker reports it."""

    type: str
    source: str
    destination: str
    read_only: bool
    #: ``"Z"``, ``"z"`` or ``""``: the relabel flag given with ``-v``.
    relabel: str = ""


@attrs.frozen
class ContainerLabel:
    """The SELinux facts of one container (running or stopped)."""

    id: str
    name: str
    status: str
    #: The level the container reaches, or None when it has none or it is unreadable.
    level: Level | None
    #: The level or range exactly as configured (``label=level:`` or ProcessLabel).
    level_text: str | None
    #: ``label=type:`` or the type of ProcessLabel.
    type: str | None
    #: ``label=disable``, the legacy ``label:disable`` or a bare ``disable``.
    disabled: bool
    privileged: bool
    process_label: str | None
    mount_label: str | None
    security_opt: tuple[str, ...]
    labels: Mapping[str, str] = attrs.field(factory=dict, eq=False)
    mounts: tuple[Mount, ...] = ()
    #: Names or ids of containers whose IPC/PID namespace this one joins.
    joins: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def owner(self) -> str:
        """The registry owner of this container's level."""
        return OWNER_PREFIX + self.id

    @property
    def adopted_by(self) -> str | None:
        """The registry owner named by the container's ``io.mcslabel.owner`` label."""
        return self.labels.get(OWNER_LABEL) or None

    @property
    def unreadable(self) -> bool:
        """A level is configured but neither it nor the inspect labels parse."""
        return self.level_text is not None and self.level is None

    @property
    def confined(self) -> bool:
        """False for ``label=disable``, ``--privileged`` and unconfined types."""
        return not (self.disabled or self.privileged or self.type in UNCONFINED_TYPES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "level": None if self.level is None else str(self.level),
            "level_text": self.level_text,
            "type": self.type,
            "disabled": self.disabled,
            "privileged": self.privileged,
            "process_label": self.process_label,
            "mount_label": self.mount_label,
            "security_opt": list(self.security_opt),
            "owner_label": self.adopted_by,
            "mounts": [attrs.asdict(m) for m in self.mounts],
        }


@attrs.frozen
class LabelOptions:
    """The ``label`` part of a container's security options, read as moby reads them."""

    level: str | None = None
    type: str | None = None
    disabled: bool = False


def parse_security_opt(options: Iterable[str]) -> LabelOptions:
    """Read ``HostConfig.SecurityOpt`` with moby's rules.

    ``KEY=VALUE`` splits at the first ``=``, else ``KEY:VALUE`` (deprecated)
    at the first ``:``; a bare ``disable`` is ``label=disable``. A label
    value is ``disable`` or ``FIELD:VALUE`` (go-selinux's ``InitLabels``); a
    later ``level:``/``type:`` replaces an earlier one.
    """
    level: str | None = None
    type_: str | None = None
    disabled = False
    for opt in options:
        if opt == "disable":
            disabled = True
            continue
        if "=" in opt:
            key, _, value = opt.partition("=")
        elif ":" in opt:
            key, _, value = opt.partition(":")
        else:
            continue
        if key != "label":
            continue
        if value == "disable":
            disabled = True
            continue
        field, sep, arg = value.partition(":")
        if not sep:
            continue
        if field == "level":
            level = arg
        elif field == "type":
            type_ = arg
    return LabelOptions(level, type_, disabled)


def _kernel_level(text: str) -> Level:
    """One level as the kernel accepts it: a category may repeat (``s0:c1,c1`` is ``s0:c1``)."""
    try:
        return Level.parse(text)
    except InvalidLevel:
        sens, sep, cats = text.partition(":")
        if not sep or not cats:
            raise
        found: set[int] = set()
        for part in cats.split(","):
            found |= Level.parse(f"{sens}:{part}").categories
        return Level(Level.parse(sens).sensitivity, frozenset(found))


def kernel_reach(text: str) -> Level:
    """The level a container configured with ``text`` reaches, canonical.

    For a range (``s0-s0:c0.c1023``) the high level counts: MCS constraints
    compare high levels. Raises :class:`~mcslabel.errors.InvalidLevel` when
    the kernel would refuse it too.
    """
    try:
        value = parse_level_or_range(text)
    except InvalidLevel:
        low, sep, high = text.partition("-")
        if not sep:
            return _kernel_level(text)
        value = LevelRange(_kernel_level(low), _kernel_level(high))
    return value.high if isinstance(value, LevelRange) else value


def _context_fields(label: str | None) -> tuple[str | None, str | None]:
    """(type, level text) of a ``user:role:type:level`` context, either may be None."""
    if not label:
        return None, None
    parts = label.split(":", 3)
    return (parts[2] or None) if len(parts) > 2 else None, parts[3] if len(parts) > 3 else None


def _reach_or_none(text: str | None) -> Level | None:
    if text is None:
        return None
    with contextlib.suppress(InvalidLevel):
        return kernel_reach(text)
    return None


def container_label(inspected: Mapping[str, Any]) -> ContainerLabel:
    """Build a :class:`ContainerLabel` from ``docker inspect`` output (one container)."""
    host = inspected.get("HostConfig") or {}
    config = inspected.get("Config") or {}
    security_opt = tuple(host.get("SecurityOpt") or ())
    opts = parse_security_opt(security_opt)
    process_label = inspected.get("ProcessLabel") or None
    mount_label = inspected.get("MountLabel") or None
    process_type, process_level = _context_fields(process_label)
    _, mount_level = _context_fields(mount_label)
    level_text = opts.level if opts.level is not None else process_level
    # What the engine runs: the option, else what dockerd wrote in inspect.
    level = None
    for text in (level_text, process_level, mount_level):
        level = _reach_or_none(text)
        if level is not None:
            break
    joins = tuple(
        mode.partition(":")[2]
        for mode in (host.get("IpcMode") or "", host.get("PidMode") or "")
        if mode.startswith("container:")
    )
    state = inspected.get("State") or {}
    return ContainerLabel(
        id=inspected["Id"],
        name=str(inspected.get("Name") or "").lstrip("/"),
        status=str(state.get("Status") or ""),
        level=level,
        level_text=level_text,
        type=opts.type if opts.type is not None else process_type,
        disabled=opts.disabled,
        privileged=bool(host.get("Privileged")),
        process_label=process_label,
        mount_label=mount_label,
        security_opt=security_opt,
        labels=dict(config.get("Labels") or {}),
        mounts=tuple(_mounts(inspected)),
        joins=joins,
    )


def _mounts(inspected: Mapping[str, Any]) -> Iterator[Mount]:
    # Docker keeps the -v mode string (e.g. "Z", "ro,z") in Mounts[].Mode.
    for m in inspected.get("Mounts") or ():
        mode = str(m.get("Mode") or "")
        flags = set(mode.split(","))
        yield Mount(
            type=str(m.get("Type") or ""),
            source=str(m.get("Source") or ""),
            destination=str(m.get("Destination") or ""),
            read_only=not bool(m.get("RW", True)),
            relabel="Z" if "Z" in flags else "z" if "z" in flags else "",
        )


def labels_in_use(
    client: Any, *, filters: Mapping[str, Any] | None = None
) -> Iterator[ContainerLabel]:
    """The SELinux facts of every container, running and stopped.

    ``filters`` are Docker's listing filters (``{"label": "app=x"}``).
    Containers removed while listing are skipped. A container whose
    configured level does not parse, even as the kernel would, yields
    ``level=None`` with the text kept in ``level_text``.
    """
    sdk = docker_sdk()
    try:
        summaries = client.api.containers(all=True, filters=dict(filters or {}))
    except sdk_failures() as exc:
        raise DockerError(f"cannot list containers: {exc}") from exc
    for summary in summaries:
        try:
            inspected = client.api.inspect_container(summary["Id"])
        except sdk.errors.NotFound:
            continue  # removed between list and inspect
        except sdk_failures() as exc:
            raise DockerError(f"cannot inspect container {summary['Id'][:12]}: {exc}") from exc
        yield container_label(inspected)


def pods(containers: Iterable[ContainerLabel]) -> list[list[ContainerLabel]]:
    """Group containers into pods; a container alone is a pod of one.

    Containers share a level on purpose when they carry the same value of
    one of :data:`POD_LABELS`, or one joins the other's IPC or PID namespace
    (``--ipc container:X``, which is how Docker copies a label).
    """
    items: Sequence[ContainerLabel] = list(containers)
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first_with: dict[tuple[str, str], int] = {}
    by_ref: dict[str, int] = {}
    for i, c in enumerate(items):
        by_ref[c.id] = by_ref[c.name] = i
        for key in POD_LABELS:
            value = c.labels.get(key)
            if value:
                first = first_with.setdefault((key, value), i)
                union(i, first)
    for i, c in enumerate(items):
        for ref in c.joins:
            j = by_ref.get(ref)
            if j is None:  # an id prefix
                j = next((k for k, o in enumerate(items) if o.id.startswith(ref)), None)
            if j is not None:
                union(i, j)
    groups: dict[int, list[ContainerLabel]] = {}
    for i, c in enumerate(items):
        groups.setdefault(find(i), []).append(c)
    return list(groups.values())


__all__ = [
    "OWNER_LABEL",
    "OWNER_PREFIX",
    "POD_LABELS",
    "UNCONFINED_TYPES",
    "ContainerLabel",
    "LabelOptions",
    "Mount",
    "container_label",
    "kernel_reach",
    "labels_in_use",
    "parse_security_opt",
    "pods",
]
