"""Verifying confinement with the real policy (SETools + libsepol).

Owns: loading a policy root, file-context lookups, the access decision
engine (libsepol), rule search (SETools), the report types and
:func:`verify`.
May import: the model and :mod:`mcslabel.errors`. Nothing from allocation's
internals, relabeling, integrations or the CLI; stores are taken as values.
"""

from __future__ import annotations

from mcslabel.verification.policy import Policy, PolicyRoot, load_policy
from mcslabel.verification.verifier import (
    DEFAULT_PATHS,
    Check,
    McsResult,
    MustBlock,
    PathResult,
    Reason,
    Report,
    verify,
)

__all__ = [
    "DEFAULT_PATHS",
    "Check",
    "McsResult",
    "MustBlock",
    "PathResult",
    "Policy",
    "PolicyRoot",
    "Reason",
    "Report",
    "load_policy",
    "verify",
]
