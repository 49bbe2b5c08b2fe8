"""``mcslabel podman``: ``mcslabel docker``'s commands for podman's containers and pods.

The subcommands are docker's (:func:`mcslabel.cli.docker.register_engine`);
only the :class:`~mcslabel.cli._engines.Engine` below differs: names, help
texts, the owner prefix ``podman:``.
"""

from __future__ import annotations

import functools

from mcslabel.cli._engines import Engine
from mcslabel.cli.docker import register_engine

PODMAN = Engine(
    name="podman",
    host_help="podman's API socket (default: $CONTAINER_HOST, else"
    " unix:///run/podman/podman.sock; start it with podman system service)",
    filter_help="listing filter, e.g. label=app=web or pod=NAME (repeatable)",
    short_prefixes=("podman", "docker"),
    help="the docker commands for podman: sync, audit, run, rm, volumes (pods share a level)",
    description="Work with podman's containers through its Docker-compatible API"
    " (podman system service; extra mcslabel[docker]). Same options, findings and"
    " JSON as `mcslabel docker`; registry owners are podman:<id>, and the containers"
    " of one podman pod (its infra container included) are one pod.",
    descriptions={
        "sync": "Reserve every podman container's level under owner podman:<id> and"
        " release the allocations of podman containers that no longer exist (docker's"
        " are left alone). Exit 1 when there are conflicts.",
        "audit": "Audit podman's containers (running and stopped). Exit 1 when a finding"
        " has severity high. Registry checks run when --store or $MCSLABEL_STORE names one.",
        "run": "As `mcslabel docker run`, on podman: allocate a level, relabel each -v"
        " volume, start the container at it, owner podman:<id>. Undo with `mcslabel"
        " podman rm`.",
    },
    orphan_hint=" (mcslabel podman volumes restore|forget)",
    held_hint=" (mcslabel podman volumes)",
)

register = functools.partial(register_engine, engine=PODMAN)


__all__ = [
    "PODMAN",
    "register",
]
