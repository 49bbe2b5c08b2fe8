"""Docker integration: the labels of real containers, kept in the registry and audited.

Docker remembers only the MCS levels of its own containers, accepts a
hand-written ``--security-opt label=level:...`` that collides with (or
dominates) another container's, and accepts ``label=disable``. This package
reads what the daemon actually holds and

- :func:`labels_in_use` reports each container's level, type and mounts
  (:mod:`~mcslabel.integrations.docker.inspection`);
- :func:`sync` mirrors those levels into an :class:`~mcslabel.Allocator`
  (owner ``docker:<id>``) and releases the allocations of removed containers
  (:mod:`~mcslabel.integrations.docker.mirror`);
- :func:`audit` finds duplicates, dominance, disabled labels, privileged
  containers, risky bind mounts and mislabeled volumes
  (:mod:`~mcslabel.integrations.docker.findings`);
- :func:`run_options` gives a script what to pass to docker for an
  allocation (security option and the ``io.mcslabel.owner`` label, so that
  sync and audit adopt the container); :func:`run` and :func:`remove` start
  and remove containers at a fresh level with their ``:Z``/``:z`` volumes
  relabeled and journaled (:mod:`~mcslabel.integrations.docker.lifecycle`);
- a privately relabeled volume holds its level (owner ``volume:<path>``)
  until it is restored or forgotten: :func:`volume_report`,
  :func:`restore_volume`, :func:`forget_volume`, which ask every container
  engine of the host (docker and podman: :func:`connect_engines`) who uses it
  (:mod:`~mcslabel.integrations.docker.volumes`,
  :mod:`~mcslabel.integrations.docker.volume_users`).

SDK plumbing lives in :mod:`~mcslabel.integrations.docker.daemon`; the
``docker`` SDK (extra ``mcslabel[docker]``) is imported only when a function
talks to a daemon.

May import: the model and the public API of allocation and relabeling.
"""

from __future__ import annotations

from mcslabel.integrations.docker.daemon import connect
from mcslabel.integrations.docker.findings import (
    DAEMON_SOCKETS,
    AuditReport,
    Finding,
    audit,
)
from mcslabel.integrations.docker.inspection import (
    OWNER_LABEL,
    OWNER_PREFIX,
    POD_LABELS,
    UNCONFINED_TYPES,
    ContainerLabel,
    LabelOptions,
    Mount,
    container_label,
    kernel_reach,
    labels_in_use,
    parse_security_opt,
    pods,
)
from mcslabel.integrations.docker.lifecycle import (
    LabeledContainer,
    Removal,
    remove,
    run,
    run_options,
    security_opt,
)
from mcslabel.integrations.docker.mirror import SyncResult, sync
from mcslabel.integrations.docker.volume_users import (
    ENGINES,
    EngineStatus,
    VolumeReport,
    VolumeUser,
    connect_engines,
    forget_volume,
    restore_volume,
    volume_report,
)
from mcslabel.integrations.docker.volumes import (
    JOURNALS_LABEL,
    LEVEL_LABEL,
    VOLUME_PREFIX,
    HeldVolume,
    Volume,
    default_journal_dir,
    volume_owner,
)

__all__ = [
    "DAEMON_SOCKETS",
    "ENGINES",
    "JOURNALS_LABEL",
    "LEVEL_LABEL",
    "OWNER_LABEL",
    "OWNER_PREFIX",
    "POD_LABELS",
    "UNCONFINED_TYPES",
    "VOLUME_PREFIX",
    "AuditReport",
    "ContainerLabel",
    "EngineStatus",
    "Finding",
    "HeldVolume",
    "LabelOptions",
    "LabeledContainer",
    "Mount",
    "Removal",
    "SyncResult",
    "Volume",
    "VolumeReport",
    "VolumeUser",
    "audit",
    "connect",
    "connect_engines",
    "container_label",
    "default_journal_dir",
    "forget_volume",
    "kernel_reach",
    "labels_in_use",
    "parse_security_opt",
    "pods",
    "remove",
    "restore_volume",
    "run",
    "run_options",
    "security_opt",
    "sync",
    "volume_owner",
    "volume_report",
]
