"""Rule search with SETools: which allow rules grant an access, which booleans would.

Owns :class:`RuleIndex`, built with one pass over the policy's rules per
domain (cached), and the :class:`~mcslabel.verification.report.Grant`
records it hands out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mcslabel.verification import _bindings
from mcslabel.verification._bindings import setools_error
from mcslabel.verification.policy import Policy
from mcslabel.verification.report import Grant


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


class RuleIndex:
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
                grant = grant_of(r, str(self._domain), type_name)
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
    except setools_error("RuleNotConditional"):
        return False


def grant_of(rule: Any, domain: str, type_name: str) -> Grant:
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


__all__ = [
    "RuleIndex",
    "grant_of",
]
