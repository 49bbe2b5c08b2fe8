"""mcslabel: SELinux MCS label management for container hosts.

The front door. The errors are imported here; the model (levels, contexts)
and each job are imported on first use of one of their names, so ``import
mcslabel`` and ``mcslabel --version`` stay cheap (no ``attrs``, no
``typing`` at run time)::

    from mcslabel import Level, Allocator, open_store, relabel, restore, verify

The jobs live in packages around the model: :mod:`mcslabel.allocation`,
:mod:`mcslabel.relabeling`, :mod:`mcslabel.verification` and
:mod:`mcslabel.integrations`; the command line is :mod:`mcslabel.cli`.
"""

from __future__ import annotations

from mcslabel._lazy import lazy_exports
from mcslabel.errors import (
    AllocationError,
    DockerError,
    DominanceConflict,
    InvalidContext,
    InvalidInput,
    InvalidLevel,
    JournalError,
    LabelInUse,
    MCSLabelError,
    PolicyError,
    RefusedPath,
    RelabelError,
    SELinuxUnavailable,
    SpaceExhausted,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    UnknownAllocation,
)

__version__ = "0.1.0"

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

# Public name -> the module that defines it, imported on first access.
_LAZY = {
    "ContainerContexts": "mcslabel.context",
    "Context": "mcslabel.context",
    "Level": "mcslabel.level",
    "LevelRange": "mcslabel.level",
    "Allocation": "mcslabel.allocation.stores",
    "Allocator": "mcslabel.allocation.allocator",
    "Store": "mcslabel.allocation.stores",
    "open_store": "mcslabel.allocation.stores",
    "FileError": "mcslabel.relabeling.results",
    "RelabelResult": "mcslabel.relabeling.results",
    "RestoreResult": "mcslabel.relabeling.results",
    "relabel": "mcslabel.relabeling.engine",
    "restore": "mcslabel.relabeling.restoration",
    "target_context": "mcslabel.relabeling.targets",
    "journal_files": "mcslabel.relabeling.journal",
    "remove_journal": "mcslabel.relabeling.journal",
    "Policy": "mcslabel.verification.policy",
    "PolicyRoot": "mcslabel.verification.policy",
    "load_policy": "mcslabel.verification.policy",
    "Report": "mcslabel.verification.verifier",
    "verify": "mcslabel.verification.verifier",
    "assert_blocked": "mcslabel.integrations.assertions",
    "assert_isolated": "mcslabel.integrations.assertions",
    "LabelInfo": "mcslabel.integrations.labels",
    "show": "mcslabel.integrations.labels",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from mcslabel.allocation.allocator import Allocator
    from mcslabel.allocation.stores import Allocation, Store, open_store
    from mcslabel.context import ContainerContexts, Context
    from mcslabel.integrations.assertions import assert_blocked, assert_isolated
    from mcslabel.integrations.labels import LabelInfo, show
    from mcslabel.level import Level, LevelRange
    from mcslabel.relabeling.engine import (
        FileError,
        RelabelResult,
        RestoreResult,
        relabel,
        restore,
        target_context,
    )
    from mcslabel.relabeling.journal import journal_files, remove_journal
    from mcslabel.verification.policy import Policy, PolicyRoot, load_policy
    from mcslabel.verification.verifier import Report, verify


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "Allocation",
    "AllocationError",
    "Allocator",
    "ContainerContexts",
    "Context",
    "DockerError",
    "DominanceConflict",
    "FileError",
    "InvalidContext",
    "InvalidInput",
    "InvalidLevel",
    "JournalError",
    "LabelInUse",
    "LabelInfo",
    "Level",
    "LevelRange",
    "MCSLabelError",
    "Policy",
    "PolicyError",
    "PolicyRoot",
    "RefusedPath",
    "RelabelError",
    "RelabelResult",
    "Report",
    "RestoreResult",
    "SELinuxUnavailable",
    "SpaceExhausted",
    "Store",
    "StoreError",
    "StoreNotFound",
    "StoreUnavailable",
    "UnknownAllocation",
    "__version__",
    "assert_blocked",
    "assert_isolated",
    "journal_files",
    "load_policy",
    "open_store",
    "relabel",
    "remove_journal",
    "restore",
    "show",
    "target_context",
    "verify",
]
