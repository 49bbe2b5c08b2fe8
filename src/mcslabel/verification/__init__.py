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

from mcslabel._lazy import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

# Public name -> the module that defines it, imported on first access: a
# relabel needs only ``PolicyRoot`` and must not load SETools or libsepol.
_LAZY = {
    "Policy": "mcslabel.verification.policy",
    "PolicyRoot": "mcslabel.verification.policy",
    "load_policy": "mcslabel.verification.policy",
    "DEFAULT_PATHS": "mcslabel.verification.verifier",
    "Check": "mcslabel.verification.verifier",
    "McsResult": "mcslabel.verification.verifier",
    "MustBlock": "mcslabel.verification.verifier",
    "PathResult": "mcslabel.verification.verifier",
    "Reason": "mcslabel.verification.verifier",
    "Report": "mcslabel.verification.verifier",
    "verify": "mcslabel.verification.verifier",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


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
