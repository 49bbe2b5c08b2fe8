"""What a caller passes to :func:`~mcslabel.verification.verifier.verify`, checked.

Owns the validation of names against the policy (types, classes,
permissions, booleans), the level or range, the held levels of a store, and
the source context a domain runs with. Every refusal is a typed error that
names the offending value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mcslabel.context import Context
from mcslabel.errors import (
    InvalidInput,
    InvalidLevel,
    PolicyError,
    UnknownPolicyName,
    show_input,
)
from mcslabel.level import Level, LevelRange, parse_level_or_range
from mcslabel.verification._bindings import setools_error
from mcslabel.verification.policy import Policy, PolicyRoot, load_policy
from mcslabel.verification.report import DEFAULT_LEVEL, DEFAULT_PERMS


def lookup_type(policy: Policy, name: str, what: str) -> Any:
    try:
        return policy.setools_policy.lookup_type(name)
    except setools_error("InvalidType"):
        raise UnknownPolicyName(
            f"{what} {show_input(name)} is not a type in {policy.path}"
        ) from None


def check_types(policy: Policy, types: Iterable[str]) -> None:
    for name in types:
        lookup_type(policy, name, "type")


def class_perms(policy: Policy, tclass: str) -> frozenset[str]:
    try:
        cls = policy.setools_policy.lookup_class(tclass)
    except setools_error("InvalidClass"):
        raise UnknownPolicyName(
            f"class {show_input(tclass)} is not defined in {policy.path}"
        ) from None
    perms = set(cls.perms)
    try:
        perms |= set(cls.common.perms)
    except setools_error("NoCommon"):
        pass
    return frozenset(perms)


def check_class_perms(policy: Policy, perms: Mapping[str, Sequence[str]]) -> None:
    for tclass, wanted in perms.items():
        known = class_perms(policy, tclass)
        for perm in wanted:
            if perm not in known:
                raise UnknownPolicyName(
                    f"permission {show_input(perm)} is not defined for class {tclass!r}"
                    f" in {policy.path}"
                )


def resolve_perms(
    classes: Sequence[str], perms: Mapping[str, Sequence[str]] | None, policy: Policy
) -> dict[str, tuple[str, ...]]:
    """The (class, permissions) to check, every name checked against ``policy``.

    A permission given for a class that is not checked is an error, never dropped.
    """
    if isinstance(classes, str):
        raise InvalidInput("classes must be a sequence of class names, not one string")
    given = dict(perms or {})
    for tclass in classes:
        class_perms(policy, tclass)  # an unknown class is named as such
    stray = [c for c in given if c not in classes]
    if stray:
        raise InvalidInput(
            f"permissions are given for class {show_input(stray[0])}"
            f" ({stray[0]}:{','.join(given[stray[0]])}), which is not among the classes"
            f" checked ({', '.join(classes) or 'none'}): add that class or drop the permission"
        )
    result: dict[str, tuple[str, ...]] = {}
    for tclass in classes:
        chosen = given.get(tclass, DEFAULT_PERMS.get(tclass))
        if not chosen:
            raise InvalidInput(
                f"no permissions given for class {show_input(tclass)}: it has no default"
                " set, name them (--perm CLASS:PERM)"
            )
        if isinstance(chosen, str):
            raise InvalidInput(f"permissions for {tclass!r} must be a sequence, not one string")
        result[tclass] = tuple(dict.fromkeys(chosen))
    if not result:
        raise InvalidInput("no classes to check")
    check_class_perms(policy, result)
    return result


def lookup_domain(policy: Policy, name: str) -> Any:
    """The process type ``name`` (aliases resolve); a file or other non-domain type is refused."""
    found = lookup_type(policy, name, "domain")
    sp = policy.setools_policy
    try:
        domain_attribute = sp.lookup_typeattr("domain")
    except setools_error("InvalidType"):
        return found  # a policy without refpolicy's 'domain' attribute: trust the caller
    if domain_attribute not in set(found.attributes()):
        raise InvalidInput(
            f"{show_input(name)} is not a domain (a process type) in {policy.path}:"
            " it lacks the 'domain' attribute; pass the type the container runs as"
            " (lxc_contexts' process type, e.g. container_t)"
        )
    return found


def resolve_level(value: Level | LevelRange | str | None, policy: Policy) -> Level | LevelRange:
    """The process level or range, checked against ``policy``'s sensitivities and categories.

    A range whose ends are equal is its level (``s0-s0`` is ``s0``).
    """
    cats, sens = policy.categories, policy.sensitivities
    if value is None:
        value = DEFAULT_LEVEL
    if isinstance(value, str):
        return parse_level_or_range(value, categories=cats, sensitivities=sens)
    if isinstance(value, LevelRange):
        value.low.check(categories=cats, sensitivities=sens)
        value.high.check(categories=cats, sensitivities=sens)
        return value.low if value.low == value.high else value
    if isinstance(value, Level):
        return value.check(categories=cats, sensitivities=sens)
    raise InvalidLevel(f"level must be a Level, a LevelRange or text, not {type(value).__name__}")


def held_levels(source: object) -> tuple[Level, ...]:
    """Levels held in ``source``: a label store (``snapshot().allocations``), an
    allocator (its store), an object with ``.list()`` of allocations, or an
    iterable of levels (``Level`` or text). Each level is listed once."""
    items: Iterable[Any]
    inner = getattr(source, "store", None)
    if inner is not None and callable(getattr(inner, "snapshot", None)):
        source = inner  # an Allocator: read its store, not its cached view
    lister = getattr(source, "list", None)
    snapshot = getattr(source, "snapshot", None)
    if callable(snapshot):
        items = (a.level for a in snapshot().allocations)
    elif callable(lister):
        items = (getattr(a, "level", a) for a in lister())
    elif isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        items = source
    else:
        raise InvalidInput(
            f"{show_input(source)} is not a label store, an allocator nor an iterable of levels"
        )
    levels: list[Level] = []
    for item in items:
        level = Level.coerce(getattr(item, "level", item))  # allocations or levels
        if level not in levels:
            levels.append(level)
    return tuple(levels)


def held_from(
    store: object = None, allocator: object = None, held: Iterable[Level | str] | None = None
) -> tuple[Level, ...]:
    """The held levels :func:`~mcslabel.verification.verifier.verify` checks against.

    ``store`` is a label store or its URL (opened and closed here),
    ``allocator`` an :class:`~mcslabel.allocation.allocator.Allocator`,
    ``held`` levels given directly; all of them together, each level once.
    """
    found: list[Level] = []
    if isinstance(store, (str, os.PathLike)):
        from mcslabel.allocation.stores import open_store

        opened = open_store(os.fspath(store), read_only=True)  # reading only: never creates a store
        try:
            found.extend(held_levels(opened))
        finally:
            opened.close()
    elif store is not None:
        found.extend(held_levels(store))
    if allocator is not None:
        if getattr(allocator, "store", None) is None:
            raise InvalidInput(f"allocator {show_input(allocator)} is not an Allocator")
        found.extend(held_levels(allocator))
    if held is not None:
        if isinstance(held, (str, Level)):
            held = [held]
        found.extend(held_levels(held))
    return tuple(dict.fromkeys(found))


def resolve_policy(
    policy_root: str | os.PathLike[str] | PolicyRoot | None,
    policy: str | os.PathLike[str] | Policy | None,
) -> tuple[Policy, PolicyRoot | None]:
    if isinstance(policy, Policy):
        root = policy.root
        if policy_root is not None:
            root = PolicyRoot.coerce(policy_root)
        return policy, root
    loaded = load_policy(policy_root, policy=policy)
    return loaded, loaded.root


def check_booleans(policy: Policy, overrides: Mapping[str, bool]) -> dict[str, bool]:
    result: dict[str, bool] = {}
    for name, value in overrides.items():
        try:
            policy.setools_policy.lookup_boolean(name)
        except setools_error("InvalidBoolean"):
            raise UnknownPolicyName(
                f"boolean {show_input(name)} is not defined in {policy.path}"
            ) from None
        if not isinstance(value, bool):
            raise InvalidInput(f"boolean {name} must be True or False, not {show_input(value)}")
        result[name] = value
    return result


def source_context(
    policy: Policy, contexts: Any, domain: str, level: Level | LevelRange
) -> Context:
    sp = policy.setools_policy
    user, role = ("system_u", "system_r")
    if contexts is not None:
        user, role = contexts.process.user, contexts.process.role
    try:
        if domain in {str(t) for t in sp.lookup_role(role).types()}:
            return Context(user, role, domain, level)
    except setools_error("InvalidRole"):
        pass
    # The domain is not in the usual role: use a role and user that do hold it.
    for r in sp.roles():
        if domain in {str(t) for t in r.types()}:
            for u in sp.users():
                if r in set(u.roles):
                    return Context(str(u), str(r), domain, level)
    raise PolicyError(f"no role and user in {policy.path} may run domain {domain}")


__all__ = [
    "check_booleans",
    "check_class_perms",
    "check_types",
    "class_perms",
    "held_from",
    "held_levels",
    "lookup_domain",
    "lookup_type",
    "resolve_level",
    "resolve_perms",
    "resolve_policy",
    "source_context",
]
