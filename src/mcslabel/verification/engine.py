"""The access-decision engine: libsepol's security server, classified like ``audit2why``.

Owns :func:`decisions` (hold libsepol on a policy and ask it),
:func:`decide` (one decision) and :func:`audit2why_decision` (the
reference the engine follows). libsepol keeps one policy per process: the
engine loads, switches and locks it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from mcslabel.context import Context
from mcslabel.errors import PolicyError
from mcslabel.verification import _bindings
from mcslabel.verification.inputs import check_class_perms, check_types
from mcslabel.verification.policy import Policy, load_policy
from mcslabel.verification.report import Decision, Reason

_REASONS = dict(enumerate(Reason))
_ERRORS = {
    -1: "no policy loaded",
    -2: "invalid source context",
    -3: "invalid target context",
    -4: "unknown class",
    -5: "unknown permission",
    -6: "libsepol could not compute the decision",
}


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
    sizes = {"categories": loaded.categories or 1024, "sensitivities": loaded.sensitivities or 1}
    scon, tcon = (
        c if isinstance(c, Context) else Context.parse(str(c), **sizes) for c in (source, target)
    )
    check_types(loaded, [scon.type, tcon.type])
    check_class_perms(loaded, {tclass: (perm,)})
    with decisions(loaded.path) as run:
        return run(str(scon), str(tcon), tclass, perm)


__all__ = [
    "Decider",
    "audit2why_decision",
    "decide",
    "decisions",
]
