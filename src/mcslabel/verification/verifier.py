"""Verify, on a real policy, that containers cannot reach host paths nor each other.

:func:`verify` checks the container domain (``lxc_contexts``' process type
by default) against the contexts of host paths (``/var``, ``/root``,
``/home``) and against the container file type at other category pairs.
Every decision is computed by libsepol's security server the way the kernel
computes it, MLS/MCS constraints included, and classified like
``audit2why`` does: ``allow``, ``terule``, ``dontaudit``, ``constraint``,
``boolean``, ``rbac`` or ``bounds``. Every allow comes with the rules that
grant it (SETools, one pass over the policy's rules), and every TE denial
with the booleans whose single flip would open it (proposed by SETools,
confirmed by ``audit2why``).

The result is a :class:`Report`; ``report.ok`` is false when anything the
:class:`MustBlock` policy says must be blocked is allowed.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from mcslabel.context import Context
from mcslabel.errors import (
    InvalidInput,
    InvalidLevel,
    MCSLabelError,
    PolicyError,
    PolicyNotMLS,
    UnknownPolicyName,
)
from mcslabel.errors import show_input as _q
from mcslabel.level import Level
from mcslabel.verification import _bindings
from mcslabel.verification.filecontexts import PathContext, path_context
from mcslabel.verification.policy import Policy, PolicyRoot, load_policy

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
_REASONS = dict(enumerate(Reason))
_ERRORS = {
    -1: "no policy loaded",
    -2: "invalid source context",
    -3: "invalid target context",
    -4: "unknown class",
    -5: "unknown permission",
    -6: "libsepol could not compute the decision",
}


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
        """Booleans that matter: a verified flip that opens a denial, or the
        booleans of the conditional rules granting an allow."""
        if self.allowed:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "context": str(self.context),
            "source": self.source,
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
    level: Level
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
        """The check of one cell; KeyError when it was not computed."""
        for p in self.paths:
            if p.path == path:
                for c in p.checks:
                    if (c.tclass, c.perm) == (tclass, perm):
                        return c
        raise KeyError((path, tclass, perm))

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


# --- libsepol decisions --------------------------------------------------------

_audit2why_loaded: tuple[str, int, int] | None = None


class Decider(Protocol):
    """``decide(scon, tcon, tclass, perm, *, explain_booleans=True) -> Decision``."""

    def __call__(
        self, scon: str, tcon: str, tclass: str, perm: str, *, explain_booleans: bool = True
    ) -> Decision: ...


def _audit2why_on(path: str, key: tuple[str, int, int]) -> Any:
    global _audit2why_loaded
    audit2why = _bindings.audit2why()
    if _audit2why_loaded != key:
        if _audit2why_loaded is not None:
            audit2why.finish()
            _audit2why_loaded = None
        try:
            status = audit2why.init(path)
        except (RuntimeError, ValueError, OSError) as exc:
            raise PolicyError(f"libsepol (audit2why) cannot load {path}: {exc}") from exc
        if status != 0:
            raise PolicyError(f"libsepol (audit2why) cannot load {path} (status {status})")
        _audit2why_loaded = key
    return audit2why


def _policy_key(policy_file: str | os.PathLike[str]) -> tuple[str, tuple[str, int, int]]:
    """The resolved path and what identifies its content (path, mtime, size)."""
    path = str(Path(policy_file).resolve())
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from exc
    return path, (path, st.st_mtime_ns, st.st_size)


@contextlib.contextmanager
def decisions(policy_file: str | os.PathLike[str]) -> Iterator[Decider]:
    """Hold libsepol's decision engine on ``policy_file``.

    Decisions come from libsepol's ``sepol_compute_av_reason_buffer`` (the
    kernel's security-server code) and are classified the way ``audit2why``
    classifies them. A TE denial is handed to ``audit2why`` itself when
    ``explain_booleans`` is true: it flips each boolean in turn and names
    those whose flip allows the access. That search costs ~20 ms a call on a
    distro policy, so :func:`verify` asks for it only where SETools found a
    conditional rule that could grant the access.

    libsepol keeps one policy per process (twice: its shared library and the
    copy linked into ``audit2why``): this loads them on first use, switches
    when another policy was loaded, and holds a lock meanwhile.
    """
    from mcslabel.verification._sepol import (
        REASON_BOUNDS,
        REASON_CONSTRAINT,
        REASON_RBAC,
        REASON_TE,
        ServicesPolicy,
        services_lock,
    )

    path, key = _policy_key(policy_file)
    with services_lock:
        ServicesPolicy.load(path)

        def decide(
            scon: str, tcon: str, tclass: str, perm: str, *, explain_booleans: bool = True
        ) -> Decision:
            ServicesPolicy.load(path)  # another decisions() in this thread may have switched
            bits, dontaudited, text = ServicesPolicy.compute(scon, tcon, tclass, perm)
            if not bits:
                return Decision(Reason.ALLOW)
            if bits & REASON_TE:
                if explain_booleans:
                    code, extra = _audit2why_on(path, key).analyze(scon, tcon, tclass, [perm])
                    if _REASONS.get(code) is Reason.BOOLEAN:
                        flips = tuple((str(name), bool(value)) for name, value in extra or ())
                        return Decision(Reason.BOOLEAN, booleans=flips)
                return Decision(Reason.DONTAUDIT if dontaudited else Reason.TERULE)
            if bits & REASON_CONSTRAINT:
                return Decision(Reason.CONSTRAINT, detail=text.strip())
            if bits & REASON_RBAC:
                return Decision(Reason.RBAC)
            if bits & REASON_BOUNDS:
                return Decision(Reason.BOUNDS)
            raise PolicyError(f"libsepol returned unknown reason bits {bits:#x}")

        yield decide


def audit2why_decision(
    policy_file: str | os.PathLike[str], scon: str, tcon: str, tclass: str, perm: str
) -> Decision:
    """The same decision straight from ``audit2why`` (the reference :func:`decisions` follows)."""
    from mcslabel.verification._sepol import services_lock

    path, key = _policy_key(policy_file)
    with services_lock:
        code, extra = _audit2why_on(path, key).analyze(scon, tcon, tclass, [perm])
    if code < 0:
        raise PolicyError(f"{_ERRORS.get(code, f'error {code}')} for {scon} -> {tcon} {tclass}")
    reason = _REASONS[code]
    if reason is Reason.BOOLEAN:
        return Decision(reason, booleans=tuple((str(n), bool(v)) for n, v in extra or ()))
    if reason is Reason.CONSTRAINT:
        return Decision(reason, detail=str(extra or "").strip())
    return Decision(reason)


def decide(
    policy: Policy | str | os.PathLike[str],
    source: Context | str,
    target: Context | str,
    tclass: str,
    perm: str,
) -> Decision:
    """One libsepol decision: may ``source`` ``perm`` a ``tclass`` labeled ``target``?"""
    loaded = policy if isinstance(policy, Policy) else load_policy(policy=policy)
    for context in (source, target):
        Context.parse(str(context), categories=loaded.categories or 1024)
    _check_names(loaded, [Context.parse(str(source)).type, Context.parse(str(target)).type])
    _check_class_perms(loaded, {tclass: (perm,)})
    with decisions(loaded.path) as run:
        return run(str(source), str(target), tclass, perm)


# --- validation -----------------------------------------------------------------


def _setools_error(name: str) -> type[Exception]:
    setools = _bindings.setools()
    return getattr(setools.exception, name)  # type: ignore[no-any-return]


def _lookup_type(policy: Policy, name: str, what: str) -> Any:
    try:
        return policy.setools_policy.lookup_type(name)
    except _setools_error("InvalidType"):
        raise UnknownPolicyName(f"{what} {_q(name)} is not a type in {policy.path}") from None


def _check_names(policy: Policy, types: Iterable[str]) -> None:
    for name in types:
        _lookup_type(policy, name, "type")


def _class_perms(policy: Policy, tclass: str) -> frozenset[str]:
    try:
        cls = policy.setools_policy.lookup_class(tclass)
    except _setools_error("InvalidClass"):
        raise UnknownPolicyName(f"class {_q(tclass)} is not defined in {policy.path}") from None
    perms = set(cls.perms)
    try:
        perms |= set(cls.common.perms)
    except _setools_error("NoCommon"):
        pass
    return frozenset(perms)


def _check_class_perms(policy: Policy, perms: Mapping[str, Sequence[str]]) -> None:
    for tclass, wanted in perms.items():
        known = _class_perms(policy, tclass)
        for perm in wanted:
            if perm not in known:
                raise UnknownPolicyName(
                    f"permission {_q(perm)} is not defined for class {tclass!r} in {policy.path}"
                )


def _resolve_perms(
    classes: Sequence[str], perms: Mapping[str, Sequence[str]] | None
) -> dict[str, tuple[str, ...]]:
    if isinstance(classes, str):
        raise InvalidInput("classes must be a sequence of class names, not one string")
    result: dict[str, tuple[str, ...]] = {}
    for tclass in classes:
        chosen = (perms or {}).get(tclass, DEFAULT_PERMS.get(tclass))
        if not chosen:
            raise InvalidInput(f"no permissions given for class {_q(tclass)}")
        if isinstance(chosen, str):
            raise InvalidInput(f"permissions for {tclass!r} must be a sequence, not one string")
        result[tclass] = tuple(dict.fromkeys(chosen))
    if not result:
        raise InvalidInput("no classes to check")
    return result


def _parse_level(value: Level | str | None, policy: Policy) -> Level:
    if value is None:
        level = DEFAULT_LEVEL
    elif isinstance(value, Level):
        level = value
    elif isinstance(value, str):
        level = Level.parse(value, categories=policy.categories, sensitivities=policy.sensitivities)
    else:
        raise InvalidLevel(f"level must be a Level or text, not {type(value).__name__}")
    if level.sensitivity >= policy.sensitivities or any(
        c >= policy.categories for c in level.categories
    ):
        raise InvalidLevel(f"level {level} is outside {policy.path}'s s0..c{policy.categories - 1}")
    return level


def held_levels(store: object) -> tuple[Level, ...]:
    """Levels held in ``store``: a label store (``snapshot().allocations``), an
    object with ``.list()`` of allocations with ``.level``, or an iterable of
    levels (``Level`` or text)."""
    items: Iterable[Any]
    # Allocator.allocations() (list() is its deprecated alias).
    lister = getattr(store, "allocations", None) or getattr(store, "list", None)
    snapshot = getattr(store, "snapshot", None)
    if callable(lister):
        items = (getattr(a, "level", a) for a in lister())
    elif callable(snapshot):
        items = (a.level for a in snapshot().allocations)
    elif isinstance(store, Iterable) and not isinstance(store, (str, bytes)):
        items = store
    else:
        raise InvalidInput(f"store {_q(store)} has no list() and is not an iterable of levels")
    levels: list[Level] = []
    for item in items:
        level = item if isinstance(item, Level) else Level.parse(str(item))
        if level not in levels:
            levels.append(level)
    return tuple(levels)


# --- the rule index -------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _domain_rules(setools_policy: Any, domain: str, classes: frozenset[str]) -> tuple[Any, ...]:
    """Every allow rule of ``classes`` whose source covers ``domain``: ONE pass
    over the policy's rules (about what one ``sesearch`` query costs), kept
    for the next verify of the same domain (pytest assertions call it often).

    Keyed by the SETools policy object itself (identity): rules compare only
    with symbols of the policy object they came from.
    """
    setools = _bindings.setools()
    domain_type = setools_policy.lookup_type(domain)
    sources = {domain_type, *domain_type.attributes()}
    allow = setools.TERuletype.allow
    return tuple(
        r
        for r in setools_policy.terules()
        if r.source in sources and r.ruletype == allow and str(r.tclass) in classes
    )


class _Rules:
    """The allow rules of the domain whose target covers one of the checked types."""

    def __init__(self, policy: Policy, domain: Any, types: Iterable[Any], classes: set[str]):
        self._domain = domain
        self._covers: dict[str, set[Any]] = {}
        targets: set[Any] = set()
        for t in types:
            cover = {t, *t.attributes()}
            self._covers[str(t)] = cover
            targets |= cover
        self.rules = [
            r
            for r in _domain_rules(policy.setools_policy, str(domain), frozenset(classes))
            if r.target in targets
        ]

    def matching(self, type_name: str, tclass: str, perm: str) -> Iterator[Any]:
        cover = self._covers[type_name]
        for r in self.rules:
            if r.target in cover and str(r.tclass) == tclass and perm in r.perms:
                yield r

    def grants(self, type_name: str, tclass: str, perm: str) -> tuple[Grant, ...]:
        # The same rule text can sit in two conditional blocks: list it once.
        found: dict[str, Grant] = {}
        for r in self.matching(type_name, tclass, perm):
            if _enabled(r):
                grant = _grant(r, str(self._domain), type_name)
                found.setdefault(grant.rule, grant)
        return tuple(found.values())

    def flips(
        self, type_name: str, tclass: str, perm: str, states: Mapping[str, bool]
    ) -> dict[str, bool]:
        """Booleans whose single flip enables a rule granting the access."""
        found: dict[str, bool] = {}
        for r in self.matching(type_name, tclass, perm):
            if _enabled(r):
                continue
            for boolean in r.conditional.booleans:
                name = str(boolean)
                flipped = {name: not states[name]}
                if r.enabled(**flipped):
                    found[name] = not states[name]
        return found


def _enabled(rule: Any) -> bool:
    """Active with the policy's boolean defaults (always, for unconditional rules)."""
    return bool(rule.enabled())


def _is_conditional(rule: Any) -> bool:
    try:
        return rule.conditional is not None
    except _setools_error("RuleNotConditional"):
        return False


def _grant(rule: Any, domain: str, type_name: str) -> Grant:
    conditional = str(rule.conditional) if _is_conditional(rule) else None
    text = str(rule)
    return Grant(
        rule=text,
        ruletype=str(rule.ruletype),
        source=str(rule.source),
        target=str(rule.target),
        tclass=str(rule.tclass),
        perms=tuple(sorted(rule.perms)),
        expanded_source=domain,
        expanded_target=type_name,
        conditional=conditional,
        enabled=_enabled(rule),
    )


# --- verify ---------------------------------------------------------------------


def verify(
    *,
    policy_root: str | os.PathLike[str] | PolicyRoot | None = None,
    policy: str | os.PathLike[str] | Policy | None = None,
    domain: str | None = None,
    level: Level | str | None = None,
    paths: Sequence[str | os.PathLike[str]] = DEFAULT_PATHS,
    classes: Sequence[str] = DEFAULT_CLASSES,
    perms: Mapping[str, Sequence[str]] | None = None,
    booleans: Mapping[str, bool] | None = None,
    root: str | os.PathLike[str] | None = None,
    store: object = None,
    file_type: str | None = None,
    must_block: MustBlock | None = None,
) -> Report:
    """Check ``domain`` at ``level`` against host ``paths`` and other category pairs.

    :param policy_root: a directory laid out like ``/etc/selinux/<type>/``
        (default: the installed policy's).
    :param policy: a binary policy file (or loaded :class:`~mcslabel.verification.policy.Policy`)
        to use instead of the root's.
    :param domain: the container domain; default: ``lxc_contexts``' process
        type. Aliases resolve (``svirt_lxc_net_t`` -> ``container_t``).
    :param level: the container's level (default ``s0:c1,c2``).
    :param paths: host paths; each is labeled by its xattr when it has one
        (under ``root``), else by ``file_contexts``.
    :param classes: object classes to check; :data:`DEFAULT_PERMS` gives
        the permissions of ``file`` and ``dir``, ``perms`` the others.
    :param booleans: what-if boolean values, applied to a private copy of
        the policy written by libsepol.
    :param store: levels held in a label store (``.list()`` of allocations)
        or an iterable of levels: the domain is checked against each.
    :param file_type: the container file type (default: ``lxc_contexts``' file).
    :param must_block: what must be blocked (default: :class:`MustBlock()`).
    """
    loaded, proot = _load(policy_root, policy)
    if not loaded.mls:
        raise PolicyNotMLS(
            f"{loaded.path} is not an MLS/MCS policy: category pairs cannot separate containers"
        )
    rules_policy = loaded
    overrides = dict(booleans or {})
    if overrides:
        loaded_bools = _check_booleans(loaded, overrides)
        from mcslabel.verification._sepol import policy_with_booleans

        rewritten = policy_with_booleans(loaded.path, loaded_bools)
        rules_policy = (
            load_policy(proot, policy=rewritten) if proot else load_policy(policy=rewritten)
        )
    must = must_block if must_block is not None else MustBlock()
    the_level = _parse_level(level, loaded)
    wanted = _resolve_perms(classes, perms)
    _check_class_perms(loaded, wanted)

    contexts = proot.container_contexts() if proot is not None else None
    requested = domain if domain is not None else (contexts.process.type if contexts else None)
    if requested is None:
        raise InvalidInput("no domain given and no policy root with lxc_contexts to default from")
    domain_type = _lookup_type(loaded, requested, "domain")
    domain_name = str(domain_type)
    ftype_name = file_type or (contexts.file.type if contexts else None)
    if ftype_name is None:
        raise InvalidInput("no file_type given and no policy root with lxc_contexts")
    file_type_obj = _lookup_type(loaded, ftype_name, "container file type")
    source = _source_context(loaded, contexts, domain_name, the_level)

    resolved: list[PathContext] = []
    for path in paths:
        if proot is None:
            raise InvalidInput("host paths need a policy root for file_contexts; pass policy_root")
        resolved.append(path_context(path, policy_root=proot, root=root))
    type_objs = {str(file_type_obj): file_type_obj}
    for pc in resolved:
        type_objs.setdefault(pc.context.type, _lookup_type(loaded, pc.context.type, "type"))
    held = held_levels(store) if store is not None else ()
    for h in held:
        _parse_level(h, loaded)

    if rules_policy is not loaded:  # symbols of the what-if copy, not of the original
        domain_type = _lookup_type(rules_policy, domain_name, "domain")
        type_objs = {n: _lookup_type(rules_policy, n, "type") for n in type_objs}
    # libsepol reads the policy in C without the GIL: let it overlap the rule pass.
    preload = threading.Thread(target=_preload, args=(str(rules_policy.path),), daemon=True)
    preload.start()
    rules = _Rules(rules_policy, domain_type, type_objs.values(), set(wanted))
    preload.join()
    states = {str(b): bool(b.state) for b in rules_policy.setools_policy.bools()}

    with decisions(rules_policy.path) as run:
        path_results = tuple(
            PathResult(
                pc.path,
                pc.context,
                pc.source,
                tuple(
                    _check(run, rules, states, source, _target(pc.context), tc, perm, must)
                    for tc, plist in wanted.items()
                    for perm in plist
                ),
            )
            for pc in resolved
        )
        mcs = _mcs(
            run, rules, states, source, contexts, str(file_type_obj), wanted, held, loaded, must
        )
    return Report(
        policy=str(loaded.path),
        domain=domain_name,
        requested_domain=requested,
        level=the_level,
        paths=path_results,
        mcs=mcs,
        permissive=bool(domain_type.ispermissive),
        booleans=overrides,
    )


def _preload(policy_file: str) -> None:
    from mcslabel.verification._sepol import ServicesPolicy, services_lock

    # Never wait for the lock: its holder may be the thread that joins us.
    if not services_lock.acquire(blocking=False):
        return
    try:
        with contextlib.suppress(MCSLabelError, OSError):
            ServicesPolicy.load(policy_file)  # failures resurface, typed, in decisions()
    finally:
        services_lock.release()


def _load(
    policy_root: str | os.PathLike[str] | PolicyRoot | None,
    policy: str | os.PathLike[str] | Policy | None,
) -> tuple[Policy, PolicyRoot | None]:
    if isinstance(policy, Policy):
        root = policy.root
        if policy_root is not None:
            root = (
                policy_root if isinstance(policy_root, PolicyRoot) else PolicyRoot.at(policy_root)
            )
        return policy, root
    loaded = load_policy(policy_root, policy=policy)
    return loaded, loaded.root


def _check_booleans(policy: Policy, overrides: Mapping[str, bool]) -> dict[str, bool]:
    result: dict[str, bool] = {}
    for name, value in overrides.items():
        try:
            policy.setools_policy.lookup_boolean(name)
        except _setools_error("InvalidBoolean"):
            raise UnknownPolicyName(f"boolean {_q(name)} is not defined in {policy.path}") from None
        if not isinstance(value, bool):
            raise InvalidInput(f"boolean {name} must be True or False, not {_q(value)}")
        result[name] = value
    return result


def _source_context(policy: Policy, contexts: Any, domain: str, level: Level) -> Context:
    sp = policy.setools_policy
    user, role = ("system_u", "system_r")
    if contexts is not None:
        user, role = contexts.process.user, contexts.process.role
    try:
        if domain in {str(t) for t in sp.lookup_role(role).types()}:
            return Context(user, role, domain, level)
    except _setools_error("InvalidRole"):
        pass
    # The domain is not in the usual role: use a role and user that do hold it.
    for r in sp.roles():
        if domain in {str(t) for t in r.types()}:
            for u in sp.users():
                if r in set(u.roles):
                    return Context(str(u), str(r), domain, level)
    raise PolicyError(f"no role and user in {policy.path} may run domain {domain}")


def _target(context: Context) -> Context:
    return context if context.level is not None else context.with_level(Level())


def _check(
    run: Decider,
    rules: _Rules,
    states: Mapping[str, bool],
    source: Context,
    target: Context,
    tclass: str,
    perm: str,
    must: MustBlock,
) -> Check:
    # SETools proposes the boolean flips; libsepol (audit2why) confirms them,
    # and is only asked when there is something to confirm.
    candidates = rules.flips(target.type, tclass, perm, states)
    decision = run(str(source), str(target), tclass, perm, explain_booleans=bool(candidates))
    grants: tuple[Grant, ...] = ()
    what_if: tuple[BooleanFlip, ...] = ()
    if decision.allowed:
        grants = rules.grants(target.type, tclass, perm)
    elif decision.reason in (Reason.TERULE, Reason.BOOLEAN, Reason.DONTAUDIT):
        confirmed = dict(decision.booleans)
        what_if = tuple(
            BooleanFlip(name, value, confirmed.get(name) == value)
            for name, value in sorted(candidates.items())
        ) + tuple(
            BooleanFlip(name, value, True)
            for name, value in sorted(confirmed.items())
            if name not in candidates
        )
    return Check(
        tclass=tclass,
        perm=perm,
        reason=decision.reason,
        must_block=must.blocks(tclass, perm),
        grants=grants,
        what_if=what_if,
        detail=decision.detail,
    )


def other_pair(level: Level, categories: int) -> Level:
    """A category pair sharing no category with ``level``."""
    free = [c for c in range(categories) if c not in level.categories][:2]
    if len(free) < 2:
        raise InvalidLevel(f"no category pair outside {level} in a {categories}-category policy")
    return Level.pair(free[0], free[1], sensitivity=level.sensitivity)


def _mcs(
    run: Decider,
    rules: _Rules,
    states: Mapping[str, bool],
    source: Context,
    contexts: Any,
    file_type: str,
    wanted: Mapping[str, Sequence[str]],
    held: Sequence[Level],
    policy: Policy,
    must: MustBlock,
) -> McsResult:
    level = source.low
    assert level is not None
    user, role = ("system_u", "object_r")
    if contexts is not None:
        user, role = contexts.file.user, contexts.file.role
    targets: list[tuple[str, Level]] = [("same", level)]
    free = [c for c in range(policy.categories) if c not in level.categories]
    if free:  # a disjoint pair, or in a tiny policy at least one foreign category
        other = Level(level.sensitivity, frozenset(free[:2]))
        targets.append(("other", other))
    targets.append(("s0", Level(level.sensitivity)))
    targets += [("held", h) for h in held if h != level]
    no_host = MustBlock(host={})
    checks: list[McsCheck] = []
    same_allowed: dict[tuple[str, str], bool] = {}
    for relation, target_level in targets:
        target = Context(user, role, file_type, target_level)
        cross = not level.dominates(target_level)
        for tclass, plist in wanted.items():
            for perm in plist:
                check = _check(run, rules, states, source, target, tclass, perm, no_host)
                if relation == "same":
                    same_allowed[(tclass, perm)] = check.allowed
                blocked = cross and must.blocks_cross_pair(tclass, perm)
                violation = blocked and (
                    check.allowed
                    or (
                        same_allowed.get((tclass, perm), False)
                        and check.reason != Reason.CONSTRAINT
                    )
                )
                checks.append(
                    McsCheck(
                        relation,
                        target_level,
                        target,
                        attrs.evolve(check, must_block=blocked),
                        cross,
                        violation,
                    )
                )
    return McsResult(source, file_type, tuple(checks), tuple(held))


__all__ = [
    "DEFAULT_CLASSES",
    "DEFAULT_LEVEL",
    "DEFAULT_PATHS",
    "DEFAULT_PERMS",
    "BooleanFlip",
    "Check",
    "Decider",
    "Decision",
    "Grant",
    "McsCheck",
    "McsResult",
    "MustBlock",
    "PathResult",
    "Reason",
    "Report",
    "audit2why_decision",
    "decide",
    "decisions",
    "held_levels",
    "other_pair",
    "verify",
]
