"""Mount a volume with a context option: an O(1) alternative to :func:`relabel`.

:func:`mount_volume` mounts a block device or a file system image (through a
loop device) with ``context=`` (or the rest of its family) and then reads
``/proc/self/mountinfo`` to check the kernel applied it. A kernel without
SELinux accepts the option and drops it without a word (measured on Debian
12: ``mount -o loop,context=...`` exits 0, ``/proc/mounts`` shows no
context, no file carries one), so a mount whose context is not shown is
undone and reported (:class:`~mcslabel.errors.ContextMountError`), or
relabeled instead when the caller asks for that fallback. Never is a labeling
reported that did not happen.

:func:`context_mount_advice` tells whether a volume is a file system of its
own, where a context mount can replace a relabel.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from mcslabel.context import Context
from mcslabel.errors import ContextMountError, InvalidInput
from mcslabel.errors import show_input as _q
from mcslabel.level import Level
from mcslabel.relabeling.context_mounts import (
    OPTION_NAMES,
    MountContexts,
    MountEntry,
    honoured,
    mount_at,
    read_mountinfo,
    selinux_enabled,
    split_options,
)
from mcslabel.relabeling.engine import RelabelResult, relabel, target_context
from mcslabel.verification.policy import PolicyRoot

_COMMAND_TIMEOUT = 120.0


@attrs.frozen
class MountResult:
    """A mounted volume and how it got its label.

    ``method`` is ``"context"`` when the kernel applied the context options
    (``applied`` is what mountinfo shows), ``"relabel"`` when they were not
    applied and the caller's fallback relabeled the mounted tree instead.
    """

    source: str
    target: Path
    fstype: str
    contexts: MountContexts
    method: str
    applied: dict[str, Context]
    relabel: RelabelResult | None
    duration: float

    @property
    def ok(self) -> bool:
        return self.relabel is None or self.relabel.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": str(self.target),
            "fstype": self.fstype,
            "method": self.method,
            "options": str(self.contexts),
            "applied": {k: str(v) for k, v in self.applied.items()},
            "relabel": None if self.relabel is None else self.relabel.to_dict(),
            "duration": round(self.duration, 6),
        }


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContextMountError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        message = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
        raise ContextMountError(f"{what}: {message}")


def unmount(target: str | os.PathLike[str]) -> None:
    """``umount TARGET`` (a loop device set up by ``mount -o loop`` is freed with it)."""
    _run(["umount", os.fspath(target)], f"umount {os.fspath(target)}")


def _source_options(source: str, fstype: str | None) -> list[str]:
    try:
        mode = os.stat(source).st_mode
    except OSError as exc:
        if fstype is not None and not source.startswith("/"):
            return []  # a remote source (host:/export, //server/share) with its type
        raise InvalidInput(f"mount source {_q(source)}: {exc.strerror}") from exc
    if stat.S_ISBLK(mode):
        return []
    if stat.S_ISREG(mode):
        return ["loop"]  # mount(8) sets it up with autoclear: umount frees it
    if stat.S_ISDIR(mode):
        raise InvalidInput(
            f"{_q(source)} is a directory: a bind mount cannot carry context= (the kernel"
            " keeps the file system's own labels); relabel it instead"
        )
    raise InvalidInput(f"mount source {_q(source)} is neither a block device nor an image file")


def _checked_extra(extra: Sequence[str]) -> list[str]:
    options = [o for text in extra for o in split_options(text)]
    for option in options:
        if option.partition("=")[0] in OPTION_NAMES:
            raise InvalidInput(
                f"mount option {_q(option)}: give the level (or context) instead; the context"
                " options are written by mcslabel"
            )
    return options


def _why_not_applied(entry: MountEntry, contexts: MountContexts) -> str:
    wanted = str(contexts)
    if not selinux_enabled():
        return (
            f"the kernel has no SELinux (no /sys/fs/selinux/enforce): mount accepted {wanted}"
            " and dropped it, so no file would carry the level"
        )
    shown = ",".join(f"{n}={c}" for n, c in entry.contexts().items()) or "no context option"
    return f"the kernel shows {shown} on {entry.mount_point}, not {wanted}"


def mount_volume(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    level: Level | str | None = None,
    context: Context | str | None = None,
    options: Sequence[str] = ("context",),
    fstype: str | None = None,
    mount_options: Sequence[str] = (),
    file_type: str | None = None,
    read_only: bool = False,
    policy_root: PolicyRoot | str | os.PathLike[str] | None = None,
    fallback_relabel: bool = False,
    journal: str | os.PathLike[str] | None = None,
) -> MountResult:
    """Mount ``source`` on ``target`` with its files labeled at ``level`` (or ``context``).

    The file context is the one :func:`relabel` would write (the policy's
    container file type at ``level``, ``file_type``/``read_only`` as there);
    ``options`` names which of ``context``/``fscontext``/``defcontext``/
    ``rootcontext`` carry it. ``mount_options`` adds other ``-o`` options
    (``ro``, ``noexec``...). A regular file is mounted through a loop device.

    When the kernel does not apply the context (no SELinux, or a file system
    that ignores it), the volume is unmounted and
    :class:`~mcslabel.errors.ContextMountError` raised; with
    ``fallback_relabel`` the mounted tree is relabeled instead (``journal``
    as for :func:`relabel`) and the result says ``method="relabel"``.
    """
    started = time.monotonic()
    ctx = target_context(
        level=level,
        context=context,
        file_type=file_type,
        read_only=read_only,
        policy_root=policy_root,
    )
    contexts = MountContexts.for_context(ctx, tuple(options))
    if fstype is not None:
        contexts.check_fstype(fstype)
    source_text = os.fspath(source)
    extra = _checked_extra(mount_options)
    extra += [o for o in _source_options(source_text, fstype) if o not in extra]
    if os.path.exists(source_text):
        source_text = os.path.abspath(source_text)
    real_target = Path(os.path.realpath(target))
    if not real_target.is_dir():
        raise InvalidInput(f"mount point {_q(os.fspath(target))} is not a directory")
    argv = ["mount", *(["-t", fstype] if fstype else [])]
    argv += ["-o", ",".join([*extra, *contexts.options()]), source_text, str(real_target)]
    _run(argv, f"mount {source_text} on {real_target}")
    try:
        entry = mount_at(read_mountinfo(), str(real_target))
        if entry is None:
            raise ContextMountError(f"{real_target} is not in /proc/self/mountinfo after mount")
        applied = entry.contexts()
        if contexts.applied_by(entry):
            return MountResult(
                source_text,
                real_target,
                entry.fstype,
                contexts,
                "context",
                applied,
                None,
                time.monotonic() - started,
            )
        reason = _why_not_applied(entry, contexts)
        if not fallback_relabel:
            raise ContextMountError(
                f"{reason}; unmounted {real_target} (relabel instead, or ask for the"
                " fallback: --fallback-relabel)"
            )
        relabeled = relabel(real_target, context=ctx, journal=journal)
        return MountResult(
            source_text,
            real_target,
            entry.fstype,
            contexts,
            "relabel",
            applied,
            relabeled,
            time.monotonic() - started,
        )
    except BaseException:
        unmount(real_target)
        raise


@attrs.frozen
class MountAdvice:
    """Whether a volume directory is a file system of its own (see :func:`context_mount_advice`)."""

    path: Path
    own_file_system: bool
    fstype: str | None
    source: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "own_file_system": self.own_file_system,
            "fstype": self.fstype,
            "source": self.source,
            "reason": self.reason,
        }


def context_mount_advice(
    path: str | os.PathLike[str], *, entries: list[MountEntry] | None = None
) -> MountAdvice:
    """Can a context mount replace a relabel of ``path``?

    Yes when ``path`` is the mount point of a whole file system (not a bind
    mount of a directory) whose type honours ``context=``: mounting it with
    the level labels every file in O(1) and writes nothing. ``entries``
    defaults to this process's mountinfo.
    """
    real = Path(os.path.realpath(path))
    entry = mount_at(read_mountinfo() if entries is None else entries, str(real))
    if entry is None:
        return MountAdvice(
            real, False, None, None, f"{real} is a directory of another file system, not its own"
        )
    if entry.root != "/":
        return MountAdvice(
            real,
            False,
            entry.fstype,
            entry.source,
            f"{real} is a bind mount of {entry.root} on {entry.source}: it shares that file"
            " system's superblock, and a context mount would label all of it",
        )
    if not honoured("context", entry.fstype):
        return MountAdvice(
            real,
            False,
            entry.fstype,
            entry.source,
            f"{real} is a {entry.fstype} file system these rules do not know to honour context=",
        )
    return MountAdvice(
        real,
        True,
        entry.fstype,
        entry.source,
        f"{real} is the whole {entry.fstype} file system on {entry.source}: unmount it and"
        " mount it with `mcslabel mount` (context=, O(1), no xattr written) instead of"
        " relabeling every file",
    )


__all__ = [
    "MountAdvice",
    "MountResult",
    "context_mount_advice",
    "mount_volume",
    "unmount",
]
