"""mcslabel: SELinux MCS label management for container hosts.

The pure model (:mod:`mcslabel.level`, :mod:`mcslabel.context`) imports no
I/O; everything else sits around it. Heavy parts (SETools, docker, etcd) are
imported lazily, on first use.
"""

from __future__ import annotations

from mcslabel.context import ContainerContexts, Context
from mcslabel.errors import MCSLabelError
from mcslabel.level import Level, LevelRange

__version__ = "0.1.0"

__all__ = [
    "ContainerContexts",
    "Context",
    "Level",
    "LevelRange",
    "MCSLabelError",
    "__version__",
]
