"""``mcslabel verify``: can the container domain reach host paths or other pairs?"""

from __future__ import annotations

import argparse
from typing import Any

from mcslabel.cli._common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    add_json_flag,
    print_json,
    print_table,
)
from mcslabel.cli.policy import add_policy_flags

_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "verify",
        help="check with the policy that containers cannot reach host paths or other pairs",
        description="Compute, with libsepol and the real policy, whether the container domain"
        " may read, write or delete host paths (/var, /root, /home by default) and the"
        " container files of other category pairs; show the rules behind every allow and"
        " the booleans that would open a denial. Exit 0 when everything that must be"
        " blocked is, 1 when something is allowed, 2 on bad input.",
    )
    add_policy_flags(parser)
    parser.add_argument("--domain", metavar="TYPE", help="domain (default: lxc_contexts process)")
    parser.add_argument(
        "--level",
        metavar="LEVEL",
        help="the container's level (s0:c1,c2) or level range (s0-s0:c0.c1023)",
    )
    parser.add_argument(
        "--path",
        metavar="PATH",
        action="append",
        dest="paths",
        help="host path to check (repeatable; default /var /root /home)",
    )
    parser.add_argument(
        "--root", metavar="DIR", help="read path xattrs under this prefix (an image, a chroot)"
    )
    parser.add_argument(
        "--class",
        metavar="CLASS",
        action="append",
        dest="classes",
        help="object class (repeatable; default file and dir)",
    )
    parser.add_argument(
        "--perm",
        metavar="CLASS:PERM",
        action="append",
        dest="perms",
        help="permission to check (repeatable; replaces the defaults of that class)",
    )
    parser.add_argument(
        "--boolean",
        metavar="NAME=on|off",
        action="append",
        dest="booleans",
        help="what-if: evaluate with this boolean set (repeatable)",
    )
    parser.add_argument(
        "--file-type", metavar="TYPE", help="container file type (default: lxc_contexts file)"
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="also check against every level held in this label store"
        " (sqlite:///path, memory://, etcd://...)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_verify)


def _perms(values: list[str] | None) -> dict[str, list[str]] | None:
    from mcslabel.errors import InvalidInput

    if not values:
        return None
    result: dict[str, list[str]] = {}
    for value in values:
        tclass, sep, perm = value.partition(":")
        if not sep or not tclass or not perm:
            raise InvalidInput(f"--perm {value!r} must be CLASS:PERM (file:read)")
        result.setdefault(tclass, []).append(perm)
    return result


def _booleans(values: list[str] | None) -> dict[str, bool] | None:
    from mcslabel.errors import InvalidInput

    if not values:
        return None
    result: dict[str, bool] = {}
    for value in values:
        name, sep, state = value.partition("=")
        if not sep or not name or state.lower() not in _ON | _OFF:
            raise InvalidInput(f"--boolean {value!r} must be NAME=on or NAME=off")
        result[name] = state.lower() in _ON
    return result


def _verify(args: argparse.Namespace) -> int:
    from mcslabel.verification.verifier import DEFAULT_PATHS, verify

    perms = _perms(args.perms)
    classes = args.classes or (list(perms) if perms else ["file", "dir"])
    report = verify(
        policy_root=args.policy_root,
        policy=args.policy,
        domain=args.domain,
        level=args.level,
        paths=args.paths or DEFAULT_PATHS,
        classes=classes,
        perms=perms,
        booleans=_booleans(args.booleans),
        root=args.root,
        store=args.store,  # a URL: verify opens and closes it
        file_type=args.file_type,
    )
    if args.json:
        print_json(report.to_dict(), ok=report.ok)
    else:
        _print(report)
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _grants_cell(grants: Any) -> str:
    # The table shows the first rule; --json has them all.
    if not grants:
        return ""
    more = f" (+{len(grants) - 1} more)" if len(grants) > 1 else ""
    return f"{grants[0]}{more}"


def _mark(allowed: bool, must_block: bool) -> str:
    if allowed and must_block:
        return "ALLOWED!"
    return "allowed" if allowed else "denied"


def _print(report: Any) -> None:
    print(f"policy  {report.policy}")
    alias = (
        f" (alias {report.requested_domain})" if report.requested_domain != report.domain else ""
    )
    print(f"domain  {report.domain}{alias} at {report.level}")
    if report.booleans:
        print(
            "what-if "
            + ", ".join(f"{k}={'on' if v else 'off'}" for k, v in report.booleans.items())
        )
    if report.paths:
        print()
        for p in report.paths:
            print(f"{p.path}  {p.context}  ({p.rule or p.source})")
    rows: list[tuple[object, ...]] = []
    for p in report.paths:
        for c in p.checks:
            why = _grants_cell(c.grants) if c.allowed else ", ".join(c.booleans)
            rows.append(
                (
                    p.path,
                    p.context.type,
                    p.source,
                    c.tclass,
                    c.perm,
                    _mark(c.allowed, c.must_block),
                    c.reason.value,
                    why,
                )
            )
    if rows:
        print()
        print_table(
            ["path", "type", "from", "class", "perm", "result", "reason", "rules / booleans"], rows
        )
    mcs = report.mcs
    print()
    print(f"MCS: {mcs.domain_context} vs {mcs.file_type}")
    mrows = [
        (
            m.relation,
            str(m.level),
            m.check.tclass,
            m.check.perm,
            _mark(m.check.allowed, m.violation),
            m.check.reason.value,
        )
        for m in mcs.checks
    ]
    print_table(["pair", "level", "class", "perm", "result", "reason"], mrows)
    print()
    if report.ok:
        print("OK: every must-block access is denied")
    else:
        print(f"FAIL: {len(report.violations)} must-block access(es) allowed:")
        for line in report.violations:
            print(f"  - {line}")


__all__ = [
    "register",
]
