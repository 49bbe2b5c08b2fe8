"""Look at labels: a path's SELinux context, its level and who holds that level.

Like ``ls -Z`` plus the label registry: :func:`show` reads each path's
``security.selinux`` attribute (without following a final symlink) and,
given a store, the allocation that holds the label's level. Read-only: a
store URL naming an SQLite file that does not exist is not created (the
owners are then unknown, ``None``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from mcslabel.allocation.stores import Allocation, Store, open_store, store_url
from mcslabel.context import Context
from mcslabel.errors import InvalidContext, InvalidInput
from mcslabel.errors import show_input as _q
from mcslabel.level import Level, LevelRange

XATTR = "security.selinux"


@attrs.frozen
class LabelInfo:
    """One path's label and, when a registry was consulted, its holder.

    ``context`` is None for a file without a label (``raw`` None too) or a
    label that is not a valid context (``raw`` keeps its text).
    ``allocation`` is the registry record holding ``level`` exactly, None
    when no one holds it or no registry was consulted (``registry`` False).
    """

    path: Path
    raw: str | None
    context: Context | None
    allocation: Allocation | None = None
    registry: bool = False

    @property
    def level(self) -> Level | None:
        """The label's level (the low end of a range), or None."""
        if self.context is None or self.context.level is None:
            return None
        found = self.context.level
        return found.low if isinstance(found, LevelRange) else found

    @property
    def owners(self) -> tuple[str, ...] | None:
        """Who holds the level: a tuple (empty: nobody), None without a registry."""
        if not self.registry:
            return None
        return () if self.allocation is None else self.allocation.owners

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "context": None if self.context is None else str(self.context),
            "raw": self.raw,
            "type": None if self.context is None else self.context.type,
            "level": None if self.level is None else str(self.level),
            "owners": None if self.owners is None else list(self.owners),
            "name": None if self.allocation is None else self.allocation.name,
        }


def read_label(path: str | os.PathLike[str]) -> str | None:
    """The raw ``security.selinux`` text of ``path`` (its final symlink not followed).

    None when the file has no label. Raises :class:`~mcslabel.errors.InvalidInput`
    for a path that cannot be read (missing, permission denied).
    """
    try:
        raw = os.getxattr(path, XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise InvalidInput(
            f"cannot read the label of {_q(os.fspath(path))}: {exc.strerror}"
        ) from exc
    return raw.rstrip(b"\0").decode("utf-8", "surrogateescape")


def _open_existing(url: str) -> Store | None:
    """Open ``url`` unless it names an SQLite file that does not exist (read-only use)."""
    chosen = store_url(url)
    if chosen.startswith("sqlite://"):
        from mcslabel.allocation.stores.sqlite import default_path

        path = chosen[len("sqlite://") :].partition("?")[0]
        if not (Path(path) if path not in ("", "/") else default_path()).exists():
            return None
    return open_store(chosen)


def show(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    store: Store | str | None = None,
) -> list[LabelInfo]:
    """The label of each path, its level and, given ``store``, who holds that level.

    ``store`` is a :class:`~mcslabel.allocation.stores.Store` (used, not
    closed), a store URL (opened read-only and closed; a missing SQLite file
    counts as an empty registry and is not created) or None (no registry).
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    opened: Store | None = None
    registry: Store | None = None
    if isinstance(store, str):
        opened = registry = _open_existing(store)
    elif store is not None:
        registry = store
    try:
        return [_info(Path(p), registry, store is not None) for p in items]
    finally:
        if opened is not None:
            opened.close()


def _info(path: Path, registry: Store | None, consulted: bool) -> LabelInfo:
    raw = read_label(path)
    context: Context | None = None
    if raw is not None:
        try:
            context = Context.parse(raw)
        except InvalidContext:
            context = None
    info = LabelInfo(path=path, raw=raw, context=context, registry=consulted)
    if registry is not None and info.level is not None:
        info = attrs.evolve(info, allocation=registry.get(info.level))
    return info


__all__ = ["XATTR", "LabelInfo", "read_label", "show"]
