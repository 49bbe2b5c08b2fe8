"""The security context a host path has, or would have.

A path's context is its real ``security.selinux`` extended attribute when the
path exists and carries one (on this host, or under a ``root`` prefix such as
a mounted image), else the policy's ``file_contexts`` entry.

On pseudo file systems (``/proc``, ``/sys``...) the kernel never reads
``file_contexts``: the policy's ``genfscon`` gives the context
(:mod:`mcslabel.verification.genfs`).

Lookups go through libselinux's own ``selabel_lookup_best_match`` on the
policy root's ``file_contexts`` (it also reads ``file_contexts.homedirs``,
``.local`` and ``.subs_dist`` beside it), so the precedence rules are
libselinux's, not a re-implementation. A path is looked up with its
equivalent spellings (:func:`equivalent_paths`: ``/var/run`` is ``/run``),
so both spellings of one file get one answer even in trees that ship no
``.subs_dist`` (the Red Hat ones). One gap is filled here: a root whose ``.homedirs`` holds no
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
from pathlib import Path
from typing import Literal

import attrs

from mcslabel.context import Context
from mcslabel.errors import InvalidContext, InvalidInput, PolicyError, show_input
from mcslabel.verification._selabel import best_match
from mcslabel.verification.genfs import FILE_TYPE_LETTERS, genfs_context, pseudo_filesystem
from mcslabel.verification.policy import Policy, PolicyRoot, load_policy

Source = Literal["xattr", "file_contexts", "homedirs_template", "genfscon"]

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
    #: Which rule gave the context: the file_contexts line, the genfscon
    #: statement, or the xattr.
    rule: str = ""


#: Spellings of one directory on every current distribution (the first is a
#: symlink to the second). libselinux applies a root's own ``.subs_dist`` and
#: ``.subs``; Red Hat trees ship neither for these.
WELL_KNOWN_EQUIVALENCES: tuple[tuple[str, str], ...] = (
    ("/var/run", "/run"),
    ("/var/lock", "/run/lock"),
)


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
    policy: Policy | None = None,
) -> PathContext:
    """The context of ``path``: its xattr when present, else the file_contexts entry.

    ``root`` is a prefix for the on-disk lookup (an image or chroot); the
    file_contexts lookup always uses ``path`` itself. ``policy`` answers
    genfscon for pseudo file systems (default: the root's policy).
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
            return PathContext(
                clean,
                _parse(raw, f"xattr of {inspected}"),
                "xattr",
                inspected,
                f"{XATTR_NAME} of {inspected}",
            )
    if pseudo_filesystem(clean) is not None:
        genfs = genfs_context(clean, policy or load_policy(policy_root), mode)
        if genfs is not None:
            return PathContext(clean, genfs.context, "genfscon", inspected, genfs.rule)
    context, source = file_contexts_entry(clean, policy_root=policy_root, mode=mode)
    rule = (
        "HOME_DIR template of file_contexts.homedirs"
        if source == "homedirs_template"
        else _rule_for(policy_root, clean, mode, str(context))
    )
    return PathContext(clean, context, source, inspected, rule)


def equivalent_paths(path: str, policy_root: PolicyRoot) -> tuple[str, ...]:
    """Other spellings of ``path``: the well-known equivalences and the root's
    ``file_contexts.subs_dist`` and ``.subs`` pairs, applied both ways."""
    pairs = [*WELL_KNOWN_EQUIVALENCES, *_substitutions(str(policy_root.file_contexts_file))]
    found: list[str] = []
    for alias, original in pairs:
        for a, b in ((alias, original), (original, alias)):
            if path == a or path.startswith(a + "/"):
                spelled = b + path[len(a) :]
                if spelled != path and spelled not in found:
                    found.append(spelled)
    return tuple(found)


@functools.lru_cache(maxsize=8)
def _substitutions(fc_path: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for suffix in (".subs_dist", ".subs"):
        try:
            text = Path(fc_path + suffix).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) == 2 and all(f.startswith("/") for f in fields):
                pairs.append((fields[0].rstrip("/") or "/", fields[1].rstrip("/") or "/"))
    return tuple(pairs)


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
    raw = best_match(str(fc), clean, equivalent_paths(clean, policy_root), mode)
    return _parse(raw, f"{fc} entry for {clean}"), "file_contexts"


def _home_template(path: str, policy_root: PolicyRoot, mode: int) -> Context:
    # Owner and level come from /home's own entry, the types from HOME_DIR.
    base = _parse(
        best_match(str(policy_root.file_contexts_file), "/home", (), stat.S_IFDIR), "/home"
    )
    below = _HOME_PATH.fullmatch(path)
    assert below is not None
    return base.with_type(HOME_CONTENT_TYPE if below.group(1) else HOME_DIR_TYPE)


def _parse(raw: str, what: str) -> Context:
    try:
        return Context.parse(raw)
    except InvalidContext as exc:
        raise InvalidContext(f"{what}: {exc}") from exc


_META = re.compile(r"[.^$?*+|\[({\\]")


@functools.lru_cache(maxsize=8)
def _fc_lines(fc_path: str) -> tuple[tuple[str, str, str, str, str], ...]:
    """(file, stem, regex, file type, context) of every entry, in file order."""
    lines: list[tuple[str, str, str, str, str]] = []
    for suffix in ("", ".homedirs", ".local"):
        try:
            text = Path(fc_path + suffix).read_text(errors="replace")
        except OSError:
            continue
        name = Path(fc_path + suffix).name
        for line in text.splitlines():
            fields = line.split()
            if not fields or fields[0].startswith("#") or len(fields) not in (2, 3):
                continue
            regex, ftype = fields[0], fields[1] if len(fields) == 3 else ""
            meta = _META.search(regex)
            stem = regex if meta is None else regex[: meta.start()]
            lines.append((name, stem, regex, ftype, fields[-1]))
    return tuple(lines)


def _rule_for(policy_root: PolicyRoot, path: str, mode: int, context: str) -> str:
    """The file_contexts line that gives ``path`` (or a spelling of it) ``context``.

    For the report only: libselinux made the decision; this names its line
    (the longest literal prefix wins, then the later line, as libselinux does).
    """
    best: tuple[int, int, str] | None = None
    spellings = (path, *equivalent_paths(path, policy_root))
    for index, (name, stem, regex, ftype, entry) in enumerate(
        _fc_lines(str(policy_root.file_contexts_file))
    ):
        if entry != context or (ftype and mode and FILE_TYPE_LETTERS.get(ftype) != mode):
            continue
        for spelled in spellings:
            if spelled.startswith(stem) and _fullmatch(regex, spelled):
                how = "" if spelled == path else f" (as {spelled})"
                text = f"{name}: {regex}{' ' + ftype if ftype else ''} {entry}{how}"
                if best is None or (len(stem), index) > best[:2]:
                    best = (len(stem), index, text)
                break
    return best[2] if best is not None else f"file_contexts: {context}"


@functools.lru_cache(maxsize=4096)
def _fullmatch(regex: str, path: str) -> bool:
    try:
        return re.fullmatch(regex, path) is not None
    except re.error:
        return False


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
    "WELL_KNOWN_EQUIVALENCES",
    "XATTR_NAME",
    "PathContext",
    "equivalent_paths",
    "file_contexts_entry",
    "normalize_path",
    "path_context",
    "read_xattr_context",
    "resolve_under",
]
