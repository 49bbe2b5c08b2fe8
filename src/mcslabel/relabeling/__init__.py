"""Relabeling volumes: ``:Z``/``:z`` relabel, the undo journal and restore.

Owns: the tree walk (serial and worker processes), xattr access relative to
directory fds, the refused-path rules, the journal format.
May import: the model and :mod:`mcslabel.errors`; the policy root type from
:mod:`mcslabel.verification.policy` (public). Nothing from allocation's
internals, integrations or the CLI.
"""

from __future__ import annotations

from mcslabel.relabeling.engine import (
    FileError,
    RelabelProgress,
    RelabelResult,
    RestoreResult,
    relabel,
    restore,
    target_context,
)
from mcslabel.relabeling.journal import journal_files, read_journal, remove_journal
from mcslabel.relabeling.refusals import RefusedPaths, refusal_reason

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
