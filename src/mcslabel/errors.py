"""One exception hierarchy for everything mcslabel raises on purpose.

Every error a caller can act on derives from :class:`MCSLabelError`, so
``except MCSLabelError`` is enough to catch bad input, policy trouble and
store trouble without also swallowing programming errors.
"""

from __future__ import annotations


def show_input(value: object) -> str:
    """repr() cut short, so hostile input cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= 48 else text[:40] + "...'"


class MCSLabelError(Exception):
    """Base class of every error mcslabel raises on purpose."""


# --- bad input --------------------------------------------------------------


class InvalidInput(MCSLabelError, ValueError):
    """Input that cannot be understood (a malformed level, context, URL...)."""


class InvalidLevel(InvalidInput):
    """A malformed or out-of-range MLS/MCS level or range."""


class InvalidContext(InvalidInput):
    """A malformed SELinux security context."""


class TranslationError(InvalidInput):
    """An mcstrans name that no ``setrans.conf`` entry translates (or translation is off)."""


# --- environment and policy -------------------------------------------------


class SELinuxUnavailable(MCSLabelError):
    """The OS SELinux bindings (libselinux, SETools) are not installed."""


class PolicyError(MCSLabelError):
    """A policy file or policy root is missing, unreadable or not a policy."""


class UnknownPolicyName(PolicyError):
    """A type, class, permission or boolean that the policy does not define."""


# --- allocation -------------------------------------------------------------


class AllocationError(MCSLabelError):
    """Base class of allocator failures."""


class SpaceExhausted(AllocationError):
    """Every category pair is held, excluded or blocked by a custom level."""


class LabelInUse(AllocationError):
    """A level is already held by another owner."""

    def __init__(self, message: str, *, level: str = "", holder: str = "") -> None:
        super().__init__(message)
        self.level = level
        self.holder = holder


class VolumeInUse(LabelInUse):
    """A volume to restore or forget is still used by a container (of any engine asked)."""

    def __init__(
        self,
        message: str,
        *,
        level: str = "",
        holder: str = "",
        engine: str = "",
        container: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message, level=level, holder=holder)
        #: The engine (``docker``, ``podman``) and the container (name, else id) that uses it.
        self.engine = engine
        self.container = container
        self.path = path


class DominanceConflict(AllocationError):
    """A level dominates, or is dominated by, a level already held."""


class UnknownAllocation(AllocationError):
    """Release or lookup of a level that is not allocated (or not by that owner)."""


# --- stores -----------------------------------------------------------------


class StoreError(MCSLabelError):
    """A label store cannot be opened, read or written."""


class StoreUnavailable(StoreError):
    """No member of the store's backend answered."""


class StoreOutcomeUnknown(StoreUnavailable):
    """A write was sent but no member confirmed it: it may still take effect.

    A distributed store (etcd) can commit a timed-out proposal once quorum
    returns. The store that raised this withdraws such a write on its next
    successful call, so a caller that was told "failed" is not left holding
    a level it never got.
    """


class StoreCorrupt(StoreError):
    """The store's data is damaged; nothing was overwritten or reset."""


class StoreNotFound(StoreError, InvalidInput):
    """No store exists at the given place, and creating one was not asked for.

    Also an :class:`InvalidInput` (exit 2): most often a mistyped ``--store``.
    """


# --- relabel ----------------------------------------------------------------


class RelabelError(MCSLabelError):
    """A relabel could not start or finish."""


class RefusedPath(RelabelError):
    """A path that must never be relabeled (a system path, a home directory...)."""

    def __init__(self, message: str, *, path: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class JournalError(RelabelError):
    """A relabel journal is missing, unreadable or damaged."""


class ContextMountError(RelabelError):
    """A context mount failed, or the kernel did not apply its context (nothing was labeled)."""


# --- docker -----------------------------------------------------------------


class DockerError(MCSLabelError):
    """The Docker daemon cannot be reached or refused a request."""


class EngineUnreachable(DockerError):
    """A container engine whose containers must be asked did not answer."""

    def __init__(self, message: str, *, engines: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.engines = engines


# --- verify -----------------------------------------------------------------


class PolicyNotMLS(PolicyError):
    """A policy built without MLS/MCS: levels and category pairs mean nothing there."""


class NoFileContext(InvalidInput):
    """A path whose file_contexts entry is ``<<none>>`` (or that no entry matches)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


__all__ = [
    "AllocationError",
    "ContextMountError",
    "DockerError",
    "DominanceConflict",
    "EngineUnreachable",
    "InvalidContext",
    "InvalidInput",
    "InvalidLevel",
    "JournalError",
    "LabelInUse",
    "MCSLabelError",
    "NoFileContext",
    "PolicyError",
    "PolicyNotMLS",
    "RefusedPath",
    "RelabelError",
    "SELinuxUnavailable",
    "SpaceExhausted",
    "StoreCorrupt",
    "StoreError",
    "StoreNotFound",
    "StoreOutcomeUnknown",
    "StoreUnavailable",
    "TranslationError",
    "UnknownAllocation",
    "UnknownPolicyName",
    "VolumeInUse",
    "show_input",
]
