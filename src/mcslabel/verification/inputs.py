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
from mcslabel.level import Level
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
    classes: Sequence[str], perms: Mapping[str, Sequence[str]] | None
) -> dict[str, tuple[str, ...]]:
    if isinstance(classes, str):
        raise InvalidInput("classes must be a sequence of class names, not one string")
    result: dict[str, tuple[str, ...]] = {}
    for tclass in classes:
        chosen = (perms or {}).get(tclass, DEFAULT_PERMS.get(tclass))
        if not chosen:
            raise InvalidInput(f"no permissions given for class {show_input(tclass)}")
        if isinstance(chosen, str):
            raise InvalidInput(f"permissions for {tclass!r} must be a sequence, not one string")
        result[tclass] = tuple(dict.fromkeys(chosen))
    if not result:
        raise InvalidInput("no classes to check")
    return result


def resolve_level(value: Level | str | None, policy: Policy) -> Level:
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
    lister = getattr(store, "list", None)
    snapshot = getattr(store, "snapshot", None)
    if callable(lister):
        items = (getattr(a, "level", a) for a in lister())
    elif callable(snapshot):
        items = (a.level for a in snapshot().allocations)
    elif isinstance(store, Iterable) and not isinstance(store, (str, bytes)):
        items = store
    else:
        raise InvalidInput(
            f"store {show_input(store)} has no list() and is not an iterable of levels"
        )
    levels: list[Level] = []
    for item in items:
        level = item if isinstance(item, Level) else Level.parse(str(item))
        if level not in levels:
            levels.append(level)
    return tuple(levels)


def resolve_policy(
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


def source_context(policy: Policy, contexts: Any, domain: str, level: Level) -> Context:
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
    "held_levels",
    "lookup_type",
    "resolve_level",
    "resolve_perms",
    "resolve_policy",
    "source_context",
]
