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

This module owns the orchestration (:func:`verify` and its MCS section);
the pieces live beside it: :mod:`~mcslabel.verification.report` (result
types), :mod:`~mcslabel.verification.inputs` (checking what the caller
passed), :mod:`~mcslabel.verification.engine` (libsepol decisions),
:mod:`~mcslabel.verification.rules` (SETools rule search) and
:mod:`~mcslabel.verification.filecontexts` / :mod:`~mcslabel.verification.genfs`
(path contexts). Their public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from mcslabel.context import Context
from mcslabel.errors import InvalidInput, InvalidLevel, MCSLabelError, PolicyNotMLS
from mcslabel.level import Level, LevelRange
from mcslabel.verification.engine import Decider, audit2why_decision, decide, decisions
from mcslabel.verification.filecontexts import PathContext, path_context
from mcslabel.verification.inputs import (
    check_booleans,
    held_from,
    held_levels,
    lookup_domain,
    lookup_type,
    resolve_level,
    resolve_perms,
    resolve_policy,
    source_context,
)
from mcslabel.verification.policy import Policy, PolicyRoot, load_policy
from mcslabel.verification.report import (
    DEFAULT_CLASSES,
    DEFAULT_LEVEL,
    DEFAULT_PATHS,
    DEFAULT_PERMS,
    BooleanFlip,
    Check,
    Decision,
    Grant,
    McsCheck,
    McsResult,
    MustBlock,
    PathResult,
    Reason,
    Report,
)
from mcslabel.verification.rules import RuleIndex

if TYPE_CHECKING:
    from mcslabel.allocation.allocator import Allocator
    from mcslabel.allocation.stores.base import Store


def verify(
    *,
    policy_root: str | os.PathLike[str] | PolicyRoot | None = None,
    policy: str | os.PathLike[str] | Policy | None = None,
    domain: str | None = None,
    level: Level | LevelRange | str | None = None,
    paths: Sequence[str | os.PathLike[str]] = DEFAULT_PATHS,
    classes: Sequence[str] = DEFAULT_CLASSES,
    perms: Mapping[str, Sequence[str]] | None = None,
    booleans: Mapping[str, bool] | None = None,
    root: str | os.PathLike[str] | None = None,
    store: Store | str | os.PathLike[str] | Iterable[Level | str] | None = None,
    allocator: Allocator | None = None,
    held: Iterable[Level | str] | None = None,
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
    :param level: the container's level or level range (default ``s0:c1,c2``):
        a ranged process (``s0-s0:c0.c1023``) reaches every level its high end
        dominates, and the MCS section shows it.
    :param paths: host paths; each is labeled by its xattr when it has one
        (under ``root``), else by ``file_contexts``.
    :param classes: object classes to check; :data:`DEFAULT_PERMS` gives
        the permissions of ``file`` and ``dir``, ``perms`` the others.
    :param booleans: what-if boolean values, applied to a private copy of
        the policy written by libsepol.
    :param store: a label store, or its URL (``sqlite:///...``, ``etcd://...``,
        opened and closed here): the domain is checked against every level
        held there. An iterable of levels is still accepted (use ``held``).
    :param allocator: an :class:`~mcslabel.allocation.allocator.Allocator`:
        the levels held in its store.
    :param held: levels (``Level`` or text) to check against directly.
    :param file_type: the container file type (default: ``lxc_contexts``' file).
    :param must_block: what must be blocked (default: :class:`MustBlock()`).
    """
    loaded, proot = resolve_policy(policy_root, policy)
    if not loaded.mls:
        raise PolicyNotMLS(
            f"{loaded.path} is not an MLS/MCS policy: category pairs cannot separate containers"
        )
    rules_policy = loaded
    overrides = dict(booleans or {})
    if overrides:
        loaded_bools = check_booleans(loaded, overrides)
        from mcslabel.verification._sepol import policy_with_booleans

        rewritten = policy_with_booleans(loaded.path, loaded_bools)
        rules_policy = (
            load_policy(proot, policy=rewritten) if proot else load_policy(policy=rewritten)
        )
    must = must_block if must_block is not None else MustBlock()
    the_level = resolve_level(level, loaded)
    wanted = resolve_perms(classes, perms, loaded)

    contexts = proot.container_contexts() if proot is not None else None
    requested = domain if domain is not None else (contexts.process.type if contexts else None)
    if requested is None:
        raise InvalidInput("no domain given and no policy root with lxc_contexts to default from")
    domain_type = lookup_domain(loaded, requested)
    domain_name = str(domain_type)
    ftype_name = file_type or (contexts.file.type if contexts else None)
    if ftype_name is None:
        raise InvalidInput("no file_type given and no policy root with lxc_contexts")
    file_type_obj = lookup_type(loaded, ftype_name, "container file type")
    source = source_context(loaded, contexts, domain_name, the_level)

    resolved: list[PathContext] = []
    for path in paths:
        if proot is None:
            raise InvalidInput("host paths need a policy root for file_contexts; pass policy_root")
        resolved.append(path_context(path, policy_root=proot, root=root, policy=loaded))
    type_objs = {str(file_type_obj): file_type_obj}
    for pc in resolved:
        type_objs.setdefault(pc.context.type, lookup_type(loaded, pc.context.type, "type"))
    held_here = held_from(store, allocator, held)
    for h in held_here:
        h.check(categories=loaded.categories, sensitivities=loaded.sensitivities)

    if rules_policy is not loaded:  # symbols of the what-if copy, not of the original
        domain_type = lookup_type(rules_policy, domain_name, "domain")
        type_objs = {n: lookup_type(rules_policy, n, "type") for n in type_objs}
    # libsepol reads the policy in C without the GIL: let it overlap the rule pass.
    preload = threading.Thread(target=_preload, args=(str(rules_policy.path),), daemon=True)
    preload.start()
    rules = RuleIndex(rules_policy, domain_type, type_objs.values(), set(wanted))
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
                rule=pc.rule,
            )
            for pc in resolved
        )
        mcs = _mcs(
            run,
            rules,
            states,
            source,
            contexts,
            str(file_type_obj),
            wanted,
            held_here,
            loaded,
            must,
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


def _target(context: Context) -> Context:
    return context if context.level is not None else context.with_level(Level())


def _check(
    run: Decider,
    rules: RuleIndex,
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


def other_pair(level: Level | str, categories: int) -> Level:
    """A category pair sharing no category with ``level``."""
    level = Level.coerce(level, categories=categories)
    free = [c for c in range(categories) if c not in level.categories][:2]
    if len(free) < 2:
        raise InvalidLevel(f"no category pair outside {level} in a {categories}-category policy")
    return Level.pair(free[0], free[1], sensitivity=level.sensitivity)


def _mcs(
    run: Decider,
    rules: RuleIndex,
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
