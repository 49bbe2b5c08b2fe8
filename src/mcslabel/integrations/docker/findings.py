"""Auditing a daemon's containers: findings about shared, dominating, disabled or unreadable
labels, unconfined containers, risky mounts and levels the registry gives to someone else.

Owns: :class:`Finding`, :class:`AuditReport` and :func:`audit`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from mcslabel.context import Context
from mcslabel.errors import DockerError, InvalidInput, InvalidLevel
from mcslabel.errors import show_input as _q
from mcslabel.integrations.docker.daemon import positional_allocator, sdk_failures
from mcslabel.integrations.docker.inspection import (
    OWNER_PREFIX,
    UNCONFINED_TYPES,
    ContainerLabel,
    labels_in_use,
    pods,
)
from mcslabel.integrations.docker.volumes import VOLUME_PREFIX
from mcslabel.level import Level, LevelRange

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator

#: Owners that hold a level for containers or their data, not for another user.
OWNERS_OF_DATA = (OWNER_PREFIX, VOLUME_PREFIX)

Severity = Literal["high", "medium", "low"]
_SEVERITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2}


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
    *args: Any,
    allocator: Allocator | None = None,
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
    ``allocator``: a level the registry holds for a non-Docker owner (high;
    not when the container's ``io.mcslabel.owner`` label names that owner),
    a level that dominates levels the registry holds for others (high), or a
    level it does not hold at all (low: run :func:`sync`). Without the LSM the
    daemon's own labeling is off; that is reported once (low).

    ``allocator`` is keyword-only; passing it second, positionally, still
    works with a :class:`DeprecationWarning`.

    ``refused`` overrides the refused-path check (a callable taking a path and
    returning a reason or None); by default :mod:`mcslabel.relabeling.engine`'s.
    """
    allocator = positional_allocator(args, allocator, "audit")
    containers = list(labels_in_use(client, filters=filters))
    try:
        info = client.info()
    except sdk_failures() as exc:
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
            recorded = allocator.get(c.level, in_use=True)
            if recorded is not None and c.owner in recorded.owners:
                continue  # refused by the registry but blocking: dominance findings say why
            yield Finding(
                "low",
                "unregistered-level",
                f"{_who(c)} uses {c.level}, which the registry does not hold"
                " (run `mcslabel docker sync`)",
                (c.id,),
                level=str(c.level),
            )
            continue
        own = (c.owner, c.adopted_by)
        foreign = [
            o for o in allocation.owners if not o.startswith(OWNERS_OF_DATA) and o not in own
        ]
        if foreign and c.owner not in allocation.owners:
            yield Finding(
                "high",
                "level-held-elsewhere",
                f"{_who(c)} uses {c.level}, which the registry gave to " + ", ".join(foreign),
                (c.id,),
                level=str(c.level),
            )
    yield from _dominance_over_registry(containers, allocator)


def _dominance_over_registry(
    containers: Sequence[ContainerLabel], allocator: Allocator
) -> Iterator[Finding]:
    """A container whose level dominates a level held by someone else can read its files."""
    held = allocator.allocations()
    for c in containers:
        if c.level is None or c.disabled or not c.confined:
            continue
        own = (c.owner, c.adopted_by)
        for a in held:
            others = [o for o in a.owners if o not in own]
            if a.level == c.level or not others or not c.level.dominates(a.level):
                continue
            yield Finding(
                "high",
                "dominates-held-level",
                f"{_who(c)} at {c.level} dominates {a.level}, held by {', '.join(others[:3])}"
                f"{' and more' if len(others) > 3 else ''}: it can read their files",
                (c.id,),
                level=str(a.level),
            )


__all__ = ["DAEMON_SOCKETS", "AuditReport", "Finding", "Severity", "audit"]
