"""The file context a relabel writes: ``:Z``, ``:z`` or an exact context.

- ``level="s0:c1,c2"`` (podman's ``:Z``): the policy's container file
  context from ``lxc_contexts`` (``ro_file`` with ``read_only=True``) at that
  level, private to one container;
- ``shared=True`` (``:z``): the same type at plain ``s0``;
- ``context="user:role:type:level"``: exactly that context.
"""

from __future__ import annotations

import os

from mcslabel.context import Context
from mcslabel.errors import InvalidContext, InvalidInput
from mcslabel.errors import show_input as _q
from mcslabel.level import Level
from mcslabel.verification.policy import PolicyRoot


def target_context(
    *,
    level: Level | str | None = None,
    shared: bool = False,
    context: Context | str | None = None,
    file_type: str | None = None,
    read_only: bool = False,
    policy_root: PolicyRoot | str | os.PathLike[str] | None = None,
) -> Context:
    """The file context a relabel writes (see :func:`mcslabel.relabel` for the rules)."""
    chosen = [n for n, v in (("level", level), ("context", context)) if v is not None]
    if shared:
        chosen.append("shared")
    if len(chosen) != 1:
        raise InvalidInput(
            "give exactly one of level (:Z), shared (:z) or context"
            + (f"; got {', '.join(chosen)}" if chosen else "")
        )
    if context is not None:
        if read_only:
            raise InvalidInput("read_only picks the policy's ro_file type; not with a context")
        ctx = context if isinstance(context, Context) else Context.parse(context)
    else:
        contexts = PolicyRoot.coerce(policy_root).container_contexts()
        base = contexts.read_only_file if read_only else contexts.file
        if shared:
            lvl = Level(0)
        elif isinstance(level, Level):
            lvl = level
        else:
            assert level is not None
            lvl = Level.parse(level)
        ctx = base.with_level(lvl)
    if file_type is not None:
        try:
            ctx = ctx.with_type(file_type)
        except InvalidContext as exc:
            raise InvalidContext(f"file_type {_q(file_type)}: {exc}") from exc
    if ctx.level is None:
        raise InvalidContext(f"context {_q(str(ctx))} has no level; MCS file labels need one")
    return ctx


__all__ = [
    "target_context",
]
