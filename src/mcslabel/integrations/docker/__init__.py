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
- :func:`security_opt`, :func:`run` and :func:`remove` start and remove
  containers at an allocated level with their volumes relabeled and journaled
  (:mod:`~mcslabel.integrations.docker.lifecycle`,
  :mod:`~mcslabel.integrations.docker.volumes`).

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
    OWNER_PREFIX,
    POD_LABELS,
    UNCONFINED_TYPES,
    ContainerLabel,
    Mount,
    container_label,
    labels_in_use,
    pods,
)
from mcslabel.integrations.docker.lifecycle import (
    JOURNALS_LABEL,
    LEVEL_LABEL,
    LabeledContainer,
    remove,
    run,
    security_opt,
)
from mcslabel.integrations.docker.mirror import MAX_FENCE_PAIRS, SyncResult, sync
from mcslabel.integrations.docker.volumes import Volume, default_journal_dir

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
