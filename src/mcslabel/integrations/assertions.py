"""Assertions for test suites: fail with the policy's own explanation.

``assert_blocked`` takes a :class:`~mcslabel.verification.verifier.Report` (or runs
:func:`~mcslabel.verification.verifier.verify` with the given keyword arguments) and raises
``AssertionError`` listing every must-block access that is allowed, with the
rules that grant it. ``assert_isolated`` checks two levels against each other
in both directions: every checked access must be denied by an MCS constraint.
Both are plain functions, usable from pytest, unittest or scripts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from mcslabel.errors import InvalidInput
from mcslabel.level import Level
from mcslabel.verification.policy import Policy, PolicyRoot, load_policy
from mcslabel.verification.verifier import (
    MustBlock,
    Reason,
    Report,
    verify,
)

__all__ = ["assert_blocked", "assert_isolated"]


def assert_blocked(report: Report | None = None, **verify_args: object) -> Report:
    """Assert that nothing the must-block policy forbids is allowed.

    Pass a report, or the keyword arguments of :func:`~mcslabel.verification.verifier.verify`
    (``policy_root=..., paths=[...]``). Returns the report for further checks.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this frame
    if report is None:
        report = verify(**verify_args)  # type: ignore[arg-type]
    elif verify_args:
        raise TypeError("pass a report or verify() arguments, not both")
    if not report.ok:
        lines = "\n  ".join(report.violations)
        raise AssertionError(
            f"{report.domain}:{report.level} is not confined by {report.policy}:\n  {lines}"
        )
    return report


def assert_isolated(
    level_a: Level | str,
    level_b: Level | str,
    *,
    policy_root: str | os.PathLike[str] | PolicyRoot | None = None,
    policy: str | os.PathLike[str] | Policy | None = None,
    domain: str | None = None,
    file_type: str | None = None,
    perms: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Assert that ``domain`` at either level is denied, by an MCS constraint,
    every ``perms`` access to ``file_type`` at the other level.

    Two equal levels are not isolated: that fails the assertion too.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this frame
    loaded = policy if isinstance(policy, Policy) else load_policy(policy_root, policy=policy)
    a, b = (
        lvl if isinstance(lvl, Level) else Level.parse(lvl, categories=loaded.categories or 1024)
        for lvl in (level_a, level_b)
    )
    contexts = loaded.container_contexts() if loaded.root is not None else None
    dom = domain or (contexts.process.type if contexts else None)
    ftype = file_type or (contexts.file.type if contexts else None)
    if dom is None or ftype is None:
        raise InvalidInput("give domain= and file_type= when the policy has no lxc_contexts")
    # Default: the data-moving permissions MCS must deny across pairs.
    wanted = perms or {k: tuple(sorted(v)) for k, v in MustBlock().cross_pair.items()}
    if a == b:
        raise AssertionError(f"{a} and {b} are not isolated: a level is never isolated from itself")
    failures: list[str] = []
    for subject, obj in ((a, b), (b, a)):
        # verify() checks the domain against every held level: hold just the other one.
        report = verify(
            policy=loaded,
            domain=dom,
            level=subject,
            paths=(),
            classes=tuple(wanted),
            perms=wanted,
            file_type=ftype,
            store=[obj],
        )
        for m in report.mcs.checks:
            if m.relation == "held" and m.check.reason is not Reason.CONSTRAINT:
                failures.append(
                    f"{report.mcs.domain_context} -> {m.context} {m.check.tclass}"
                    f" {m.check.perm}: {m.check.reason.value} (expected an MCS constraint denial)"
                    + (
                        f"; granted by {'; '.join(map(str, m.check.grants))}"
                        if m.check.grants
                        else ""
                    )
                )
    if failures:
        raise AssertionError(f"{a} and {b} are not isolated:\n  " + "\n  ".join(failures))
