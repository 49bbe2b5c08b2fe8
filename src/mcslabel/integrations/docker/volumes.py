"""Bind volumes of the containers mcslabel starts: ``-v`` specs, journals, restores.

Owns: :class:`Volume` (``SOURCE:DESTINATION[:OPTIONS]`` as ``docker -v`` takes
it), where relabel journals live, and restoring or dropping them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import attrs

from mcslabel.errors import InvalidInput
from mcslabel.errors import show_input as _q


@attrs.frozen
class Volume:
    """A bind volume for :func:`run`: ``SOURCE:DESTINATION[:OPTIONS]`` as ``docker -v`` takes it.

    ``relabel`` is ``"Z"`` (private: the container's level), ``"z"`` (shared:
    plain ``s0``, for several containers) or ``""`` (leave the labels alone).
    """

    source: Path = attrs.field(converter=Path)
    destination: str
    relabel: Literal["Z", "z", ""] = "Z"
    read_only: bool = False

    @classmethod
    def parse(cls, spec: str) -> Volume:
        """Parse ``/src:/dst``, ``/src:/dst:Z``, ``/src:/dst:ro,z``... (default ``Z``)."""
        parts = spec.split(":") if isinstance(spec, str) else []
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise InvalidInput(f"volume {_q(spec)} must be SOURCE:DESTINATION[:OPTIONS]")
        if not parts[0].startswith("/") or not parts[1].startswith("/"):
            raise InvalidInput(f"volume {_q(spec)}: source and destination must be absolute")
        flags = set(parts[2].split(",")) if len(parts) == 3 else set()
        unknown = flags - {"Z", "z", "ro", "rw", "noZ"}
        if unknown or {"Z", "z"} <= flags or {"ro", "rw"} <= flags:
            raise InvalidInput(f"volume {_q(spec)}: options must be ro|rw and Z|z|noZ")
        relabel: Literal["Z", "z", ""] = "z" if "z" in flags else "" if "noZ" in flags else "Z"
        return cls(parts[0], parts[1], relabel, "ro" in flags)


def default_journal_dir() -> Path:
    """Where :func:`run` keeps relabel journals until :func:`remove` restores them."""
    if os.geteuid() == 0:
        return Path("/var/lib/mcslabel/journals")
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "mcslabel" / "journals"


def restore_journals(journals: Sequence[Path], *, restore: bool) -> None:
    """Restore (or just drop) each journal, newest first; every one is tried.

    A journal that fails to restore is kept for ``mcslabel restore``;
    the first failure is raised once all the others were handled.
    """
    from mcslabel.relabeling import engine as relabel_mod
    from mcslabel.relabeling.journal import remove_journal

    first: BaseException | None = None
    for journal in reversed(journals):
        if not journal.exists():
            continue
        try:
            if restore:
                relabel_mod.restore(journal)
            remove_journal(journal)  # with its per-worker segments (PATH.1..N)
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


__all__ = ["Volume", "default_journal_dir", "restore_journals"]
