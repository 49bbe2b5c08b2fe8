"""The security context a host path has, or would have.

A path's context is its real ``security.selinux`` extended attribute when the
path exists and carries one (on this host, or under a ``root`` prefix such as
a mounted image), else the policy's ``file_contexts`` entry.

Lookups go through libselinux's own ``selabel_lookup`` on the policy root's
``file_contexts`` (it also reads ``file_contexts.homedirs``, ``.local`` and
``.subs_dist`` beside it), so the precedence rules are libselinux's, not a
re-implementation. One gap is filled here: a root whose ``.homedirs`` holds no
entries (genhomedircon never ran) would label ``/home/alice`` with the generic
fallback; such paths get the ``HOME_DIR`` template's types instead
(``user_home_dir_t`` for the home directory, ``user_home_t`` below it) and the
result says so with source ``homedirs_template``.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any, Literal

import attrs

from mcslabel.context import Context
from mcslabel.errors import InvalidContext, InvalidInput, NoFileContext, PolicyError, show_input
from mcslabel.verification import _bindings
from mcslabel.verification.policy import PolicyRoot

Source = Literal["xattr", "file_contexts", "homedirs_template"]

XATTR_NAME = "security.selinux"
_HOME_PATH = re.compile(r"/home/[^/]+(/.*)?")
# The HOME_DIR / HOME_DIR/.+ lines of refpolicy's homedir_template.
HOME_DIR_TYPE = "user_home_dir_t"
HOME_CONTENT_TYPE = "user_home_t"


@attrs.frozen
class PathContext:
    """A path, its context and where the context came from."""

    path: str
    context: Context
    source: Source
    #: The on-disk path inspected for an xattr (``root`` + ``path``).
    inspected: str


def normalize_path(path: str | os.PathLike[str]) -> str:
    """An absolute, normalized path; relative or NUL-bearing input is refused."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise InvalidInput(f"path must be text, not {type(text).__name__}")
    if not text or "\0" in text:
        raise InvalidInput(f"path {show_input(text)} is empty or contains NUL")
    if not text.startswith("/"):
        raise InvalidInput(f"path {show_input(text)} must be absolute")
    normalized = os.path.normpath(text)
    # normpath keeps a leading '//' (POSIX); the labeling lookup must not see it.
    return "/" + normalized.lstrip("/")


def path_context(
    path: str | os.PathLike[str],
    *,
    policy_root: PolicyRoot,
    root: str | os.PathLike[str] | None = None,
) -> PathContext:
    """The context of ``path``: its xattr when present, else the file_contexts entry.

    ``root`` is a prefix for the on-disk lookup (an image or chroot); the
    file_contexts lookup always uses ``path`` itself.
    """
    clean = normalize_path(path)
    inspected = clean if root is None else resolve_under(os.fspath(root), clean)
    mode = 0
    try:
        st = os.lstat(inspected)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InvalidInput(f"cannot inspect {inspected}: {exc.strerror}") from exc
    else:
        mode = stat.S_IFMT(st.st_mode)
        raw = read_xattr_context(inspected)
        if raw is not None:
            return PathContext(clean, _parse(raw, f"xattr of {inspected}"), "xattr", inspected)
    context, source = file_contexts_entry(clean, policy_root=policy_root, mode=mode)
    return PathContext(clean, context, source, inspected)


#: Most symlinks :func:`resolve_under` follows (the kernel's limit).
MAX_SYMLINKS = 40


def resolve_under(root: str, path: str) -> str:
    """``path`` as seen inside ``root`` (an image, a chroot): symlinks met on the
    way, absolute or relative, resolve inside ``root`` as they would in the
    container, never on this host. The last component is not followed."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        name = parts.pop(0)
        if name == ".":
            continue
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, name)
        if parts and os.path.islink(candidate):
            links += 1
            if links > MAX_SYMLINKS:
                raise InvalidInput(f"too many symlinks resolving {show_input(path)} under {root}")
            try:
                target = os.readlink(candidate)
            except OSError as exc:
                raise InvalidInput(f"cannot read symlink {candidate}: {exc.strerror}") from exc
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(name)
    return os.path.join(root, *resolved)


def read_xattr_context(path: str) -> str | None:
    """The raw ``security.selinux`` value of ``path`` (not following links), or None."""
    try:
        value = os.getxattr(path, XATTR_NAME, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.ENOENT):
            return None
        raise InvalidInput(f"cannot read {XATTR_NAME} of {path}: {exc.strerror}") from exc
    text = value.rstrip(b"\0").decode("ascii", errors="replace")
    return text or None


def file_contexts_entry(
    path: str, *, policy_root: PolicyRoot, mode: int = 0
) -> tuple[Context, Source]:
    """The context ``file_contexts`` (+ ``.homedirs``) gives ``path``.

    ``mode`` is a ``stat.S_IF*`` file type, or 0 to match entries of any type.
    Raises :class:`~mcslabel.errors.NoFileContext` for ``<<none>>`` paths.
    """
    clean = normalize_path(path)
    fc = policy_root.file_contexts_file
    if not fc.is_file():
        raise PolicyError(f"policy root {policy_root.path} has no {fc.name}")
    if _HOME_PATH.fullmatch(clean) and not _has_entries(str(policy_root.homedirs_file)):
        return _home_template(clean, policy_root, mode), "homedirs_template"
    return _parse(_lookup(str(fc), clean, mode), f"{fc} entry for {clean}"), "file_contexts"


def _home_template(path: str, policy_root: PolicyRoot, mode: int) -> Context:
    # Owner and level come from /home's own entry, the types from HOME_DIR.
    base = _parse(_lookup(str(policy_root.file_contexts_file), "/home", stat.S_IFDIR), "/home")
    below = _HOME_PATH.fullmatch(path)
    assert below is not None
    return base.with_type(HOME_CONTENT_TYPE if below.group(1) else HOME_DIR_TYPE)


def _parse(raw: str, what: str) -> Context:
    try:
        return Context.parse(raw)
    except InvalidContext as exc:
        raise InvalidContext(f"{what}: {exc}") from exc


_lookup_lock = threading.Lock()


def _lookup(fc_path: str, path: str, mode: int) -> str:
    handle = _handle(fc_path)
    selinux = _bindings.selinux()
    with _lookup_lock:
        try:
            _rc, raw = selinux.selabel_lookup_raw(handle, path, mode)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise NoFileContext(
                    f"{path} has no file context in {fc_path} (<<none>> or no entry):"
                    " it is never labeled, so there is nothing to check",
                    path=path,
                ) from exc
            raise PolicyError(f"file_contexts lookup of {path} failed: {exc}") from exc
    return str(raw)


@functools.lru_cache(maxsize=8)
def _handle(fc_path: str) -> Any:
    selinux = _bindings.selinux()
    option = selinux.selinux_opt()
    option.type = selinux.SELABEL_OPT_PATH
    option.value = fc_path
    try:
        handle = selinux.selabel_open(selinux.SELABEL_CTX_FILE, option, 1)
    except OSError as exc:
        raise PolicyError(f"libselinux cannot load {fc_path}: {exc}") from exc
    if handle is None:
        raise PolicyError(f"libselinux cannot load {fc_path}")
    return handle


@functools.lru_cache(maxsize=8)
def _has_entries(homedirs: str) -> bool:
    try:
        text = Path(homedirs).read_text(errors="replace")
    except OSError:
        return False
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


__all__ = [
    "HOME_CONTENT_TYPE",
    "HOME_DIR_TYPE",
    "MAX_SYMLINKS",
    "XATTR_NAME",
    "PathContext",
    "file_contexts_entry",
    "normalize_path",
    "path_context",
    "read_xattr_context",
    "resolve_under",
]
