"""Verifying confinement with the real policy (SETools + libsepol).

Owns: loading a policy root and its MLS facts (``policy``), path contexts
(``filecontexts``, ``genfs``), the access decision engine (``engine``,
libsepol), rule search (``rules``, SETools), input checking (``inputs``),
the report types (``report``) and :func:`verify` (``verifier``).
May import: the model and :mod:`mcslabel.errors`. Nothing from allocation's
internals, relabeling, integrations or the CLI; stores are taken as values
(a store URL is opened through the public ``open_store``).
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
