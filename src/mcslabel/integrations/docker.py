"""Docker integration: the labels of real containers, kept in the registry and audited.

Docker remembers only the MCS levels of its own containers, accepts a
hand-written ``--security-opt label=level:...`` that collides with (or
dominates) another container's, and accepts ``label=disable``. This module
reads what the daemon actually holds and

- :func:`labels_in_use` reports each container's level, type and mounts;
- :func:`sync` mirrors those levels into an :class:`~mcslabel.allocation.allocator.Allocator`
  (owner ``docker:<id>``) and releases the allocations of removed containers,
  so nothing else on the host is handed a level a container uses;
- :func:`audit` finds duplicates, dominance, disabled labels, privileged
  containers, bind mounts of refused system paths and volumes whose on-disk
  label does not match;
- :func:`security_opt` and :func:`run` start containers at an allocated level,
  with bind volumes relabeled (and journaled) by :func:`mcslabel.relabeling.engine.relabel`.

It uses the ``docker`` SDK (extra ``mcslabel[docker]``), imported lazily as
``docker_sdk`` inside functions: this module is ``mcslabel.integrations.docker``.

**Pods.** Two containers share a level *on purpose* (one refcounted
allocation, no finding) when they form a pod: they carry the same value of one
of :data:`POD_LABELS` (``io.mcslabel.pod``, ``io.kubernetes.pod.uid``,
``com.docker.compose.project``), or one joins the other's IPC or PID namespace
(``--ipc container:X`` / ``--pid container:X``, which is how Docker itself
copies a label from one container to another).

**Which level counts.** A ``label=level:`` option, else the level of
``ProcessLabel`` (filled by dockerd when the SELinux LSM is enabled). For a
range (``s0-s0:c0.c1023``) the high level counts: MCS constraints compare high
levels, so that is what the container can reach.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from mcslabel.context import Context
from mcslabel.errors import (
    DockerError,
    DominanceConflict,
    InvalidContext,
    InvalidInput,
    InvalidLevel,
    LabelInUse,
    RelabelError,
    UnknownAllocation,
)
from mcslabel.errors import show_input as _q
from mcslabel.level import Level, LevelRange, parse_level_or_range

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator

#: Owner prefix of the allocations :func:`sync` and :func:`run` make.
OWNER_PREFIX = "docker:"
#: Container labels whose equal values make containers one pod (see module doc).
POD_LABELS: tuple[str, ...] = (
    "io.mcslabel.pod",
    "io.kubernetes.pod.uid",
    "com.docker.compose.project",
)
#: Process types that are not confined by the container policy.
UNCONFINED_TYPES = frozenset(
    {"spc_t", "unconfined_t", "container_runtime_t", "kernel_t", "initrc_t", "unlabeled_t"}
)

Severity = Literal["high", "medium", "low"]
_SEVERITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2}


# --- reading containers --------------------------------------------------------


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
    #: The level the container reaches (see module doc), or None when it has none.
    level: Level | None
    #: The level or range exactly as configured (``label=level:`` or ProcessLabel).
    level_text: str | None
    #: ``label=type:`` or the type of ProcessLabel.
    type: str | None
    #: ``label=disable`` (or the legacy ``label:disable``).
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
            "mounts": [attrs.asdict(m) for m in self.mounts],
        }


def connect(base_url: str | None = None, *, timeout: int = 30) -> Any:
    """A ``docker.DockerClient`` for ``base_url`` (default: ``$DOCKER_HOST`` or the local socket).

    Raises :class:`~mcslabel.errors.DockerError` when the SDK is missing or no
    daemon answers.
    """
    docker_sdk = _sdk()
    client: Any = None
    try:
        if base_url is None:
            client = docker_sdk.from_env(timeout=timeout)
        else:
            client = docker_sdk.DockerClient(base_url=base_url, timeout=timeout)
        client.ping()
    except _failures() as exc:
        if client is not None:
            client.close()
        raise DockerError(f"cannot reach the Docker daemon: {exc}") from exc
    return client


def labels_in_use(
    client: Any, *, filters: Mapping[str, Any] | None = None
) -> Iterator[ContainerLabel]:
    """The SELinux facts of every container, running and stopped.

    ``filters`` are Docker's listing filters (``{"label": "app=x"}``).
    Containers removed while listing are skipped. A container whose
    configured level does not parse yields ``level=None`` with the text kept
    in ``level_text`` (:func:`audit` reports it).
    """
    docker_sdk = _sdk()
    try:
        summaries = client.api.containers(all=True, filters=dict(filters or {}))
    except _failures() as exc:
        raise DockerError(f"cannot list containers: {exc}") from exc
    for summary in summaries:
        try:
            inspected = client.api.inspect_container(summary["Id"])
        except docker_sdk.errors.NotFound:
            continue  # removed between list and inspect
        except _failures() as exc:
            raise DockerError(f"cannot inspect container {summary['Id'][:12]}: {exc}") from exc
        yield container_label(inspected)


def container_label(inspected: Mapping[str, Any]) -> ContainerLabel:
    """Build a :class:`ContainerLabel` from ``docker inspect`` output (one container)."""
    host = inspected.get("HostConfig") or {}
    config = inspected.get("Config") or {}
    security_opt = tuple(host.get("SecurityOpt") or ())
    level_text: str | None = None
    type_: str | None = None
    disabled = False
    for opt in security_opt:
        # Docker accepts both "label=..." and the legacy "label:..." spelling.
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if key != "label":
            continue
        if value == "disable":
            disabled = True
            continue
        field, sep2, arg = value.partition(":")
        if not sep2:
            continue
        if field == "level":
            level_text = arg
        elif field == "type":
            type_ = arg
    process_label = inspected.get("ProcessLabel") or None
    mount_label = inspected.get("MountLabel") or None
    if process_label:
        with contextlib.suppress(InvalidContext):
            ctx = Context.parse(process_label)
            if level_text is None and ctx.level is not None:
                level_text = str(ctx.level)
            if type_ is None:
                type_ = ctx.type
    level = _reach(level_text)
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
        type=type_,
        disabled=disabled,
        privileged=bool(host.get("Privileged")),
        process_label=process_label,
        mount_label=mount_label,
        security_opt=security_opt,
        labels=dict(config.get("Labels") or {}),
        mounts=tuple(_mounts(inspected)),
        joins=joins,
    )


def _reach(level_text: str | None) -> Level | None:
    if level_text is None:
        return None
    try:
        value = parse_level_or_range(level_text)
    except InvalidLevel:
        return None
    return value.high if isinstance(value, LevelRange) else value


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


# --- pods ----------------------------------------------------------------------


def pods(containers: Iterable[ContainerLabel]) -> list[list[ContainerLabel]]:
    """Group containers into pods (see module doc); a container alone is a pod of one."""
    items = list(containers)
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


# --- sync ----------------------------------------------------------------------


#: Most pairs :func:`sync` reserves to fence in one custom level the registry refuses.
MAX_FENCE_PAIRS = 4096


@attrs.frozen
class SyncResult:
    """What :func:`sync` changed in the registry."""

    #: (level, owner) pairs newly reserved.
    reserved: tuple[tuple[str, str], ...] = ()
    #: (level, owner) pairs that were already held by that owner.
    kept: tuple[tuple[str, str], ...] = ()
    #: (level, owner) pairs released because the container is gone.
    released: tuple[tuple[str, str], ...] = ()
    #: (pair, owner): pairs reserved to fence in a custom level the registry refused.
    fenced: tuple[tuple[str, str], ...] = ()
    #: (level, owner, reason) for levels the registry refused (held elsewhere, dominance).
    conflicts: tuple[tuple[str, str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "reserved": [{"level": lv, "owner": o} for lv, o in self.reserved],
            "kept": [{"level": lv, "owner": o} for lv, o in self.kept],
            "released": [{"level": lv, "owner": o} for lv, o in self.released],
            "fenced": [{"level": lv, "owner": o} for lv, o in self.fenced],
            "conflicts": [{"level": lv, "owner": o, "reason": r} for lv, o, r in self.conflicts],
        }


def sync(allocator: Allocator, client: Any, *, owner_prefix: str = OWNER_PREFIX) -> SyncResult:
    """Mirror the daemon's container levels into ``allocator``.

    Each container's level is reserved (shared) under ``<owner_prefix><id>``,
    so the containers of one pod, and containers that share a level by
    mistake, hold one refcounted allocation: the level stays held while any
    of them exists. Allocations under ``owner_prefix`` whose container no
    longer exists are released first.

    Custom levels (not an ``s0`` pair) are reserved before pairs, so that a
    level such as ``s0:c1,c2,c3`` blocks the pairs it dominates. When the
    registry refuses a custom level (it is comparable with a level held
    already), the free pairs comparable with it are reserved under the
    container's owner instead ("fenced", at most :data:`MAX_FENCE_PAIRS`):
    nothing that container could read, or be read by, is handed out while
    it exists. What the registry still refuses (a level held unshared by a
    non-Docker owner) is reported in ``conflicts``, never raised.
    """
    everything = list(labels_in_use(client))
    live = {owner_prefix + c.id for c in everything}
    containers = [c for c in everything if c.level is not None and not c.disabled]
    reserved: list[tuple[str, str]] = []
    kept: list[tuple[str, str]] = []
    released: list[tuple[str, str]] = []
    fenced: list[tuple[str, str]] = []
    conflicts: list[tuple[str, str, str]] = []

    # Release first: a removed container's level must not block a new one's.
    for allocation in allocator.allocations():
        for owner in allocation.owners:
            if owner.startswith(owner_prefix) and owner not in live:
                if _exists(client, owner[len(owner_prefix) :]):
                    continue  # created after the listing (e.g. by a concurrent run())
                with contextlib.suppress(UnknownAllocation):
                    allocator.release(allocation.level, owner=owner)
                    released.append((str(allocation.level), owner))

    def rank(c: ContainerLabel) -> tuple[bool, int, str]:
        assert c.level is not None
        return (c.level.is_pair and c.level.sensitivity == 0, -len(c.level.categories), c.id)

    for c in sorted(containers, key=rank):
        assert c.level is not None
        level_text, owner = str(c.level), owner_prefix + c.id
        before = allocator.get(c.level)
        try:
            allocator.reserve(c.level, owner, shared=True)
        except DominanceConflict as exc:
            # Recorded in use: it blocks every level comparable with it, by rule.
            allocator.record_in_use(c.level, owner)
            fenced.append((level_text, owner))
            if c.level.is_pair:
                conflicts.append((level_text, owner, str(exc)))
            continue
        except (LabelInUse, InvalidLevel) as exc:
            conflicts.append((level_text, owner, str(exc)))
            continue
        if before is not None and owner in before.owners:
            kept.append((level_text, owner))
        else:
            reserved.append((level_text, owner))
    return SyncResult(
        tuple(reserved), tuple(kept), tuple(released), tuple(fenced), tuple(conflicts)
    )


def _exists(client: Any, container_id: str) -> bool:
    docker_sdk = _sdk()
    try:
        client.api.inspect_container(container_id)
    except docker_sdk.errors.NotFound:
        return False
    except _failures() as exc:
        raise DockerError(f"cannot inspect container {container_id[:12]}: {exc}") from exc
    return True


# --- audit ---------------------------------------------------------------------


@attrs.frozen
class Finding:
    """One audit finding."""

    severity: Severity
    #: A stable code: ``duplicate-level``, ``dominating-level``, ``label-disabled``, ...
    kind: str
    message: str
    #: Ids of the containers involved.
    containers: tuple[str, ...] = ()
    level: str | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "kind": self.kind,
            "message": self.message,
            "containers": list(self.containers),
            "level": self.level,
            "path": self.path,
        }


@attrs.frozen
class AuditReport:
    """The result of :func:`audit`: the containers seen and the findings."""

    containers: tuple[ContainerLabel, ...]
    findings: tuple[Finding, ...]
    selinux_enabled: bool

    @property
    def ok(self) -> bool:
        """True when no finding has severity ``high``."""
        return not any(f.severity == "high" for f in self.findings)

    def by_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def involving(self, container_id: str) -> list[Finding]:
        return [f for f in self.findings if container_id in f.containers]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "selinux_enabled": self.selinux_enabled,
            "containers": [c.to_dict() for c in self.containers],
            "findings": [f.to_dict() for f in self.findings],
            "counts": {
                s: sum(1 for f in self.findings if f.severity == s) for s in _SEVERITY_ORDER
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(severity, kind, containers, message) rows for a table."""
        return [
            (f.severity, f.kind, ",".join(i[:12] for i in f.containers), f.message)
            for f in self.findings
        ]


def audit(
    client: Any,
    allocator: Allocator | None = None,
    *,
    filters: Mapping[str, Any] | None = None,
    refused: Any = None,
) -> AuditReport:
    """Audit the containers of one daemon (all of them, or those matching ``filters``).

    Findings (severity): a level shared outside a pod (high), a level that
    dominates another container's (high), ``label=disable`` (high),
    ``--privileged`` or an unconfined type such as ``spc_t`` (high), a bind
    mount of a path :mod:`mcslabel.relabeling.engine` refuses (high), a level that does
    not parse (high), a volume whose on-disk level is another container's
    (high) or not the container's (medium), an unlabeled volume (low). With
    ``allocator``: a level the registry holds for a non-Docker owner (high)
    or does not hold at all (low: run :func:`sync`). Without the LSM the
    daemon's own labeling is off; that is reported once (low).

    ``refused`` overrides the refused-path check (a callable taking a path and
    returning a reason or None); by default :mod:`mcslabel.relabeling.engine`'s.
    """
    containers = list(labels_in_use(client, filters=filters))
    try:
        info = client.info()
    except _failures() as exc:
        raise DockerError(f"cannot read daemon info: {exc}") from exc
    selinux_enabled = any("selinux" in str(o) for o in info.get("SecurityOptions") or ())
    check_refused = refused if refused is not None else _default_refused
    findings: list[Finding] = []
    if not selinux_enabled:
        findings.append(
            Finding(
                "low",
                "daemon-selinux-disabled",
                "dockerd runs without SELinux support (no LSM or no --selinux-enabled):"
                " containers without label=level: get no MCS level",
            )
        )
    findings.extend(_confinement_findings(containers))
    findings.extend(_level_findings(containers))
    findings.extend(_mount_findings(containers, check_refused))
    if allocator is not None:
        findings.extend(_registry_findings(containers, allocator))
    findings.sort(key=lambda f: (_SEVERITY_ORDER[f.severity], f.kind, f.containers))
    return AuditReport(tuple(containers), tuple(findings), selinux_enabled)


def _who(c: ContainerLabel) -> str:
    return f"{c.name or c.short_id} ({c.short_id})"


def _confinement_findings(containers: Sequence[ContainerLabel]) -> Iterator[Finding]:
    for c in containers:
        if c.disabled:
            yield Finding(
                "high",
                "label-disabled",
                f"{_who(c)} runs with label=disable: no SELinux separation at all",
                (c.id,),
            )
        if c.privileged:
            yield Finding(
                "high",
                "privileged",
                f"{_who(c)} runs --privileged: it runs as spc_t, unconfined",
                (c.id,),
            )
        if c.type in UNCONFINED_TYPES:
            yield Finding(
                "high",
                "unconfined-type",
                f"{_who(c)} runs as {c.type}, a type the container policy does not confine",
                (c.id,),
                level=None if c.level is None else str(c.level),
            )
        if c.level_text is not None and c.level is None:
            yield Finding(
                "high",
                "invalid-level",
                f"{_who(c)} has a level that does not parse: {_q(c.level_text)}",
                (c.id,),
            )


def _level_findings(containers: Sequence[ContainerLabel]) -> Iterator[Finding]:
    labeled = [c for c in containers if c.level is not None and not c.disabled]
    pod_of: dict[str, int] = {}
    for n, pod in enumerate(pods(labeled)):
        for c in pod:
            pod_of[c.id] = n
    by_level: dict[Level, list[ContainerLabel]] = {}
    for c in labeled:
        assert c.level is not None
        by_level.setdefault(c.level, []).append(c)
    for level, group in sorted(by_level.items(), key=lambda kv: str(kv[0])):
        if len({pod_of[c.id] for c in group}) > 1:
            yield Finding(
                "high",
                "duplicate-level",
                f"{len(group)} containers outside one pod share {level}: "
                + ", ".join(_who(c) for c in group),
                tuple(c.id for c in group),
                level=str(level),
            )
    levels = sorted(by_level, key=str)
    for upper in levels:
        for lower in levels:
            if upper == lower or not upper.dominates(lower):
                continue
            uppers, lowers = by_level[upper], by_level[lower]
            if len({pod_of[c.id] for c in uppers + lowers}) == 1:
                continue  # one pod may mix levels on purpose
            yield Finding(
                "high",
                "dominating-level",
                f"{upper} dominates {lower}: "
                + ", ".join(_who(c) for c in uppers)
                + " can read the files of "
                + ", ".join(_who(c) for c in lowers),
                tuple(c.id for c in uppers + lowers),
                level=str(upper),
            )


def _default_refused(path: str) -> str | None:
    from mcslabel.relabeling.refusals import refusal_reason

    return refusal_reason(path)


#: Sockets that hand a container control of the host.
DAEMON_SOCKETS = frozenset(
    {"/run/docker.sock", "/var/run/docker.sock", "/run/containerd/containerd.sock"}
)


def _disk_context(path: str) -> Context | None:
    """The on-disk context of a mount source (symlinks followed, as the bind mount does);
    None when it has none or it cannot be read or parsed."""
    from mcslabel.verification.filecontexts import read_xattr_context

    try:
        raw = read_xattr_context(os.path.realpath(path))
        return None if raw is None else Context.parse(raw)
    except InvalidInput:
        return None


def _mount_findings(containers: Sequence[ContainerLabel], check_refused: Any) -> Iterator[Finding]:
    level_owner: dict[Level, list[ContainerLabel]] = {}
    for c in containers:
        if c.level is not None:
            level_owner.setdefault(c.level, []).append(c)
    for c in containers:
        for m in c.mounts:
            if m.type not in ("bind", "volume") or not m.source:
                continue
            if m.type == "bind" and os.path.exists(m.source):
                if os.path.realpath(m.source) in DAEMON_SOCKETS or m.source in DAEMON_SOCKETS:
                    yield Finding(
                        "high",
                        "daemon-socket-mount",
                        f"{_who(c)} mounts the container daemon's socket {m.source}:"
                        " it can start privileged containers",
                        (c.id,),
                        path=m.source,
                    )
                    continue
                reason = check_refused(m.source)
                if reason:
                    # Read-only and not relabeled is the common /etc/localtime:ro case.
                    risky = bool(m.relabel) or not m.read_only
                    yield Finding(
                        "high" if risky else "medium",
                        "refused-bind-mount",
                        f"{_who(c)} bind-mounts {m.source} at {m.destination}"
                        f"{' with :' + m.relabel if m.relabel else ''}"
                        f"{' read-write' if not m.read_only else ''}: {reason}",
                        (c.id,),
                        path=m.source,
                    )
                    continue
            if c.level is None or not c.confined:
                continue
            ctx = _disk_context(m.source)
            if ctx is None:
                if os.path.exists(m.source):
                    yield Finding(
                        "low",
                        "volume-unlabeled",
                        f"{_who(c)} mounts {m.source}, which has no SELinux label",
                        (c.id,),
                        path=m.source,
                    )
                continue
            disk = ctx.level.high if isinstance(ctx.level, LevelRange) else ctx.level
            if disk is None or disk == c.level or not disk.categories:
                continue  # same level, or plain s0 (shared, :z)
            others = [o for o in level_owner.get(disk, []) if o.id != c.id]
            if others:
                yield Finding(
                    "high",
                    "volume-of-other-container",
                    f"{_who(c)} at {c.level} mounts {m.source} labeled {disk}, the level of "
                    + ", ".join(_who(o) for o in others),
                    (c.id, *(o.id for o in others)),
                    level=str(disk),
                    path=m.source,
                )
            else:
                yield Finding(
                    "medium",
                    "volume-label-mismatch",
                    f"{_who(c)} at {c.level} mounts {m.source} labeled {ctx}"
                    " (relabel it with the container's level)",
                    (c.id,),
                    level=str(disk),
                    path=m.source,
                )


def _registry_findings(
    containers: Sequence[ContainerLabel], allocator: Allocator
) -> Iterator[Finding]:
    for c in containers:
        if c.level is None or c.disabled:
            continue
        try:
            # get() finds records beyond the allocator's categories (levels in use): check.
            c.level.check(categories=allocator.categories)
            allocation = allocator.get(c.level)
        except InvalidLevel as exc:
            yield Finding(
                "medium",
                "level-out-of-range",
                f"{_who(c)} uses {c.level}, outside the registry's categories: {exc}",
                (c.id,),
                level=str(c.level),
            )
            continue
        if allocation is None:
            yield Finding(
                "low",
                "unregistered-level",
                f"{_who(c)} uses {c.level}, which the registry does not hold"
                " (run `mcslabel docker sync`)",
                (c.id,),
                level=str(c.level),
            )
            continue
        foreign = [o for o in allocation.owners if not o.startswith(OWNER_PREFIX)]
        if foreign and c.owner not in allocation.owners:
            yield Finding(
                "high",
                "level-held-elsewhere",
                f"{_who(c)} uses {c.level}, which the registry gave to " + ", ".join(foreign),
                (c.id,),
                level=str(c.level),
            )


# --- starting containers -------------------------------------------------------


def security_opt(level: Level | Any) -> list[str]:
    """``security_opt`` for ``client.containers.run``: ``["label=level:<level>"]``.

    Accepts a :class:`~mcslabel.level.Level` or an allocation (anything with
    a ``level`` attribute).
    """
    value = getattr(level, "level", level)
    if not isinstance(value, Level):
        raise InvalidInput(f"security_opt needs a Level or an allocation, not {_q(level)}")
    return [f"label=level:{value}"]


@attrs.frozen
class Volume:
    """A bind volume for :func:`run`: ``SOURCE:DESTINATION[:OPTIONS]`` as ``docker -v`` takes it.

    ``relabel`` is ``"Z"`` (private: the container's level), ``"z"`` (shared:
    plain ``s0``, for several containers) or ``""`` (leave the labels alone).
    """

    source: Path = attrs.field(converter=Path)
    destination: str
    relabel: Literal["Z", "z", ""] = "Z"
    read_only: bool = False

    @classmethod
    def parse(cls, spec: str) -> Volume:
        """Parse ``/src:/dst``, ``/src:/dst:Z``, ``/src:/dst:ro,z``... (default ``Z``)."""
        parts = spec.split(":") if isinstance(spec, str) else []
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise InvalidInput(f"volume {_q(spec)} must be SOURCE:DESTINATION[:OPTIONS]")
        if not parts[0].startswith("/") or not parts[1].startswith("/"):
            raise InvalidInput(f"volume {_q(spec)}: source and destination must be absolute")
        flags = set(parts[2].split(",")) if len(parts) == 3 else set()
        unknown = flags - {"Z", "z", "ro", "rw", "noZ"}
        if unknown or {"Z", "z"} <= flags or {"ro", "rw"} <= flags:
            raise InvalidInput(f"volume {_q(spec)}: options must be ro|rw and Z|z|noZ")
        relabel: Literal["Z", "z", ""] = "z" if "z" in flags else "" if "noZ" in flags else "Z"
        return cls(parts[0], parts[1], relabel, "ro" in flags)


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


def default_journal_dir() -> Path:
    """Where :func:`run` keeps relabel journals until :func:`remove` restores them."""
    if os.geteuid() == 0:
        return Path("/var/lib/mcslabel/journals")
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "mcslabel" / "journals"


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

    _sdk()  # DockerError now, before anything is allocated, when the SDK is missing
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
        if isinstance(exc, _failures()):
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
        _restore_journals(journals, restore=True)
    finally:
        # Released even when a restore fails: the container is gone, and a held
        # level nobody will release is a leak (the journal stays for a retry).
        for owner in owners:
            with contextlib.suppress(UnknownAllocation):
                allocator.release(level, owner=owner)


def _restore_journals(journals: Sequence[Path], *, restore: bool) -> None:
    """Restore (or just drop) each journal, newest first; every one is tried.

    A journal that fails to restore is kept for ``mcslabel restore``;
    the first failure is raised once all the others were handled.
    """
    from mcslabel.relabeling import engine as relabel_mod
    from mcslabel.relabeling.journal import remove_journal

    first: BaseException | None = None
    for journal in reversed(journals):
        if not journal.exists():
            continue
        try:
            if restore:
                relabel_mod.restore(journal)
            remove_journal(journal)  # with its per-worker segments (PATH.1..N)
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


def remove(client: Any, container: Any, *, allocator: Allocator, restore: bool = True) -> None:
    """Remove a container :func:`run` started, release its level, restore its volumes.

    ``container`` is a container object, an id or a name. ``restore=False`` keeps
    the volumes' new labels (the journals are then deleted).
    """
    try:
        obj = client.containers.get(container) if isinstance(container, str) else container
        obj.reload()
    except _failures() as exc:
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
    except _failures() as exc:
        raise DockerError(f"cannot remove container {found.short_id}: {exc}") from exc
    # Volumes first: the level is handed out again only once nothing carries it.
    try:
        _restore_journals(journals, restore=restore)
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


def _sdk() -> Any:
    try:
        import docker as docker_sdk
    except ImportError as exc:  # pragma: no cover - the extra is installed in dev
        raise DockerError(
            "the docker SDK is not installed: pip install 'mcslabel[docker]'"
        ) from exc
    return docker_sdk


def _failures() -> tuple[type[BaseException], ...]:
    """What the SDK raises when the daemon refuses or is unreachable.

    A daemon that dies mid-call surfaces as a ``requests`` error, not a
    ``DockerException``: both become :class:`~mcslabel.errors.DockerError`.
    """
    import requests

    return (_sdk().errors.DockerException, requests.RequestException)


__all__ = [
    "DAEMON_SOCKETS",
    "JOURNALS_LABEL",
    "LEVEL_LABEL",
    "MAX_FENCE_PAIRS",
    "OWNER_PREFIX",
    "POD_LABELS",
    "UNCONFINED_TYPES",
    "AuditReport",
    "ContainerLabel",
    "Finding",
    "LabeledContainer",
    "Mount",
    "SyncResult",
    "Volume",
    "audit",
    "connect",
    "container_label",
    "default_journal_dir",
    "labels_in_use",
    "pods",
    "remove",
    "run",
    "security_opt",
    "sync",
]
