"""Relabeling volumes: ``:Z``/``:z`` relabel, the undo journal and restore.

Owns: the tree walk (serial and worker processes, on shared primitives),
xattr access relative to directory fds, the mount table, the refused-path
rules, the journal format.
May import: the model and :mod:`mcslabel.errors`; the policy root type from
:mod:`mcslabel.verification.policy` (public). Nothing from allocation's
internals, integrations or the CLI.

Modules: :mod:`~mcslabel.relabeling.engine` (:func:`relabel`),
:mod:`~mcslabel.relabeling.restoration` (:func:`restore`),
:mod:`~mcslabel.relabeling.results`, :mod:`~mcslabel.relabeling.targets`,
:mod:`~mcslabel.relabeling.journal`, :mod:`~mcslabel.relabeling.refusals`,
:mod:`~mcslabel.relabeling.mounts`, :mod:`~mcslabel.relabeling.testing`
(hooks for tests); the walks are private (``_serial``, ``_worker``,
``_parallel``, ``_walking``, ``_xattrat``).
"""

from __future__ import annotations

from mcslabel._lazy import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

# Public name -> the module that defines it, imported on first access: the
# marker's fast path and ``mcslabel restore`` load only the modules they use.
_LAZY = {
    "FileError": "mcslabel.relabeling.results",
    "RelabelProgress": "mcslabel.relabeling.results",
    "RelabelResult": "mcslabel.relabeling.results",
    "RestoreResult": "mcslabel.relabeling.results",
    "RefusedPaths": "mcslabel.relabeling.refusals",
    "refusal_reason": "mcslabel.relabeling.refusals",
    "journal_files": "mcslabel.relabeling.journal",
    "read_journal": "mcslabel.relabeling.journal",
    "remove_journal": "mcslabel.relabeling.journal",
    "relabel": "mcslabel.relabeling.engine",
    "restore": "mcslabel.relabeling.restoration",
    "target_context": "mcslabel.relabeling.targets",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from mcslabel.relabeling.engine import relabel
    from mcslabel.relabeling.journal import journal_files, read_journal, remove_journal
    from mcslabel.relabeling.refusals import RefusedPaths, refusal_reason
    from mcslabel.relabeling.restoration import restore
    from mcslabel.relabeling.results import (
        FileError,
        RelabelProgress,
        RelabelResult,
        RestoreResult,
    )
    from mcslabel.relabeling.targets import target_context


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "FileError",
    "RefusedPaths",
    "RelabelProgress",
    "RelabelResult",
    "RestoreResult",
    "journal_files",
    "read_journal",
    "refusal_reason",
    "relabel",
    "remove_journal",
    "restore",
    "target_context",
]
