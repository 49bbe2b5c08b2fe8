"""What :func:`~mcslabel.verification.verifier.verify` returns, and what it is asked to block.

Owns the value types of a verification: the defaults (paths, classes,
permissions, level), :class:`MustBlock`, :class:`Reason`,
:class:`Decision`, :class:`Grant`, :class:`BooleanFlip`, :class:`Check`,
:class:`PathResult`, :class:`McsCheck`, :class:`McsResult` and
:class:`Report`. Pure values: no policy, no bindings.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from mcslabel.context import Context
from mcslabel.errors import InvalidInput, show_input
from mcslabel.level import Level, LevelRange

#: Host paths checked by default.
DEFAULT_PATHS = ("/var", "/root", "/home")
#: Classes checked by default.
DEFAULT_CLASSES = ("file", "dir")
#: Permissions that leak or destroy data, per class.
DEFAULT_PERMS: Mapping[str, tuple[str, ...]] = {
    "file": ("read", "write", "append", "open", "unlink", "execute"),
    "dir": ("read", "search", "getattr", "write", "add_name", "remove_name"),
}
#: The sample category pair a container runs at when no level is given.
DEFAULT_LEVEL = Level.pair(1, 2)


class Reason(enum.Enum):
    """Why libsepol allows or denies an access (``audit2why``'s classes)."""

    ALLOW = "allow"
    DONTAUDIT = "dontaudit"
    TERULE = "terule"
    BOOLEAN = "boolean"
    CONSTRAINT = "constraint"
    RBAC = "rbac"
    BOUNDS = "bounds"


# audit2why's return codes: ALLOW=0 DONTAUDIT=1 TERULE=2 BOOLEAN=3 CONSTRAINT=4 RBAC=5 BOUNDS=6.


def _host_default() -> Mapping[str, frozenset[str]]:
    return {
        "file": frozenset({"read", "write", "append", "unlink"}),
        "dir": frozenset({"write", "add_name", "remove_name"}),
    }


def _cross_default() -> Mapping[str, frozenset[str]]:
    # Data moves through these; MCS constraints (refpolicy and Fedora's alike)
    # leave metadata such as getattr and a bare open unconstrained.
    return {
        "file": frozenset({"read", "write", "append", "unlink", "execute"}),
        "dir": frozenset({"read", "search", "write", "add_name", "remove_name"}),
    }


def _perm_map(value: Mapping[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    return {str(k): frozenset(v) for k, v in value.items()}


class NotChecked(InvalidInput):
    """A report was asked for a cell (path, class, permission) it did not check."""


@attrs.frozen
class MustBlock:
    """What must be blocked.

    ``host``: per class, the permissions the domain must not have on the host
    paths. ``cross_pair``: per class, the permissions that must be denied by an
    MCS constraint against another pair; a class missing from ``cross_pair``
    must have every checked permission denied that way.
    """

    host: Mapping[str, frozenset[str]] = attrs.field(factory=_host_default, converter=_perm_map)
    cross_pair: Mapping[str, frozenset[str]] = attrs.field(
        factory=_cross_default, converter=_perm_map
    )

    def blocks(self, tclass: str, perm: str) -> bool:
        """Must ``perm`` on ``tclass`` be blocked on host paths?"""
        return perm in self.host.get(tclass, frozenset())

    def blocks_cross_pair(self, tclass: str, perm: str) -> bool:
        """Must ``perm`` on ``tclass`` be denied by MCS across pairs?"""
        perms = self.cross_pair.get(tclass)
        return True if perms is None else perm in perms


@attrs.frozen
class Decision:
    """libsepol's answer for one (source, target, class, perm)."""

    reason: Reason
    #: For ``boolean``: the single flips that allow it, ``(name, new value)``.
    booleans: tuple[tuple[str, bool], ...] = ()
    #: For ``constraint``: the failing constraint expressions.
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason is Reason.ALLOW


@attrs.frozen
class Grant:
    """A rule granting an access, as written, and what it expands to here."""

    rule: str
    ruletype: str
    source: str
    target: str
    tclass: str
    perms: tuple[str, ...]
    expanded_source: str
    expanded_target: str
    conditional: str | None = None
    enabled: bool = True

    def __str__(self) -> str:
        via = ""
        if (self.source, self.target) != (self.expanded_source, self.expanded_target):
            via = f" [{self.expanded_source} -> {self.expanded_target}]"
        return f"{self.rule}{via}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "source": self.source,
            "target": self.target,
            "class": self.tclass,
            "perms": list(self.perms),
            "expanded_source": self.expanded_source,
            "expanded_target": self.expanded_target,
            "conditional": self.conditional,
            "enabled": self.enabled,
        }


@attrs.frozen
class BooleanFlip:
    """A single boolean change that enables a rule granting a denied access."""

    name: str
    value: bool
    #: libsepol agrees: with only this flip, the access is allowed.
    verified: bool

    def __str__(self) -> str:
        return f"{self.name}={'on' if self.value else 'off'}"


@attrs.frozen
class Check:
    """One (class, perm) decision for a domain on a target context."""

    tclass: str
    perm: str
    reason: Reason
    must_block: bool
    grants: tuple[Grant, ...] = ()
    what_if: tuple[BooleanFlip, ...] = ()
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason is Reason.ALLOW

    @property
    def violation(self) -> bool:
        return self.allowed and self.must_block

    @property
    def booleans(self) -> tuple[str, ...]:
        """Booleans that matter: a verified flip that opens a denial, or, for an
        allow that only conditional rules grant, the booleans it depends on."""
        if self.allowed:
            # An unconditional grant makes the allow independent of every boolean.
            if any(g.conditional is None for g in self.grants):
                return ()
            names: list[str] = []
            for g in self.grants:
                if g.conditional is not None:
                    names.extend(n for n in _cond_names(g.conditional) if n not in names)
            return tuple(names)
        return tuple(str(flip) for flip in self.what_if if flip.verified)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.tclass,
            "perm": self.perm,
            "allowed": self.allowed,
            "reason": self.reason.value,
            "must_block": self.must_block,
            "violation": self.violation,
            "rules": [str(g) for g in self.grants],
            "booleans": list(self.booleans),
            "grants": [g.to_dict() for g in self.grants],
            "what_if": [
                {"boolean": f.name, "value": f.value, "verified": f.verified} for f in self.what_if
            ],
            "detail": self.detail,
        }


@attrs.frozen
class PathResult:
    """The checks of one host path."""

    path: str
    context: Context
    source: str
    checks: tuple[Check, ...]
    #: Which rule gave the context (file_contexts line, genfscon, xattr).
    rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "context": str(self.context),
            "source": self.source,
            "rule": self.rule,
            "checks": [c.to_dict() for c in self.checks],
        }


@attrs.frozen
class McsCheck:
    """The domain at its level against the container file type at another level."""

    relation: str  # "same", "other", "s0" or "held"
    level: Level
    context: Context
    check: Check
    #: The target level is not dominated by the domain's: MCS must deny.
    cross_pair: bool
    #: A cross-pair access not denied by an MCS constraint (allowed, or denied
    #: only by TE where the same pair is allowed).
    violation: bool

    def to_dict(self) -> dict[str, Any]:
        data = self.check.to_dict()
        data.update(
            relation=self.relation,
            level=str(self.level),
            context=str(self.context),
            cross_pair=self.cross_pair,
            violation=self.violation,
        )
        return data


@attrs.frozen
class McsResult:
    """The MCS section: is the domain kept to its own pair?"""

    domain_context: Context
    file_type: str
    checks: tuple[McsCheck, ...]
    held: tuple[Level, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(c.violation for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "domain_context": str(self.domain_context),
            "file_type": self.file_type,
            "held": [str(level) for level in self.held],
            "checks": [c.to_dict() for c in self.checks],
        }


@attrs.frozen
class Report:
    """The result of :func:`verify`."""

    policy: str
    domain: str
    #: The process level, or its range for a ranged process.
    level: Level | LevelRange
    paths: tuple[PathResult, ...]
    mcs: McsResult
    permissive: bool = False
    booleans: Mapping[str, bool] = attrs.field(factory=dict)
    #: The domain as requested (an alias resolves to its type).
    requested_domain: str = ""

    @property
    def violations(self) -> tuple[str, ...]:
        """One sentence per must-block access that is allowed."""
        found: list[str] = []
        if self.permissive:
            found.append(f"{self.domain} is a permissive domain: the kernel enforces nothing")
        for p in self.paths:
            for c in p.checks:
                if c.violation:
                    found.append(
                        f"{self.domain} may {c.perm} {c.tclass} {p.path} ({p.context}):"
                        f" granted by {_rules_text(c.grants)}"
                    )
        for m in self.mcs.checks:
            if m.violation:
                how = "allowed" if m.check.allowed else f"denied by {m.check.reason.value}"
                found.append(
                    f"{self.domain}:{self.level} vs {m.context} ({m.relation} pair)"
                    f" {m.check.tclass} {m.check.perm}: {how}, not by an MCS constraint"
                    + (f"; granted by {_rules_text(m.check.grants)}" if m.check.allowed else "")
                )
        return tuple(found)

    @property
    def ok(self) -> bool:
        return not self.violations

    def check(self, path: str, tclass: str, perm: str) -> Check:
        """The check of one cell.

        Raises :class:`NotChecked` (an :class:`~mcslabel.errors.InvalidInput`)
        naming what was checked when that cell was not.
        """
        for p in self.paths:
            if p.path == path:
                for c in p.checks:
                    if (c.tclass, c.perm) == (tclass, perm):
                        return c
                cells = ", ".join(f"{c.tclass}:{c.perm}" for c in p.checks)
                raise NotChecked(f"{tclass}:{perm} was not checked on {path} (checked: {cells})")
        known = ", ".join(p.path for p in self.paths) or "none"
        raise NotChecked(f"path {show_input(path)} was not checked (checked: {known})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "policy": self.policy,
            "domain": self.domain,
            "requested_domain": self.requested_domain or self.domain,
            "level": str(self.level),
            "permissive": self.permissive,
            "booleans": dict(sorted(self.booleans.items())),
            "violations": list(self.violations),
            "paths": [p.to_dict() for p in self.paths],
            "mcs": self.mcs.to_dict(),
        }


def _rules_text(grants: Iterable[Grant]) -> str:
    text = "; ".join(str(g) for g in grants)
    return text or "(no rule found)"


def _cond_names(expression: str) -> list[str]:
    ops = {"&&", "||", "!", "^", "==", "!=", "(", ")", "and", "or", "not", "xor"}
    cleaned = expression.replace("(", " ").replace(")", " ")
    return [tok for tok in cleaned.split() if tok not in ops]


__all__ = [
    "DEFAULT_CLASSES",
    "DEFAULT_LEVEL",
    "DEFAULT_PATHS",
    "DEFAULT_PERMS",
    "BooleanFlip",
    "Check",
    "Decision",
    "Grant",
    "McsCheck",
    "McsResult",
    "MustBlock",
    "NotChecked",
    "PathResult",
    "Reason",
    "Report",
]
