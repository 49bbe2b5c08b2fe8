"""Which paths must never be relabeled, decided after canonicalisation.

A recursive relabel of a system directory or a home directory breaks a host
(``-v /home:/x:z`` once broke every login, podman#759). go-selinux refuses a
list of exact path strings, which ``//usr``, ``/usr/.``, ``/var/../etc`` or a
symlink to ``/home`` slip past. Here every check runs on the canonical path
(:func:`os.path.realpath`, strict) *and* on the file's identity (device and
inode), so aliases, bind mounts of a refused directory and trailing slashes
are all caught. Three rules, each naming its reason:

1. **System trees** (``/usr``, ``/etc``, ``/boot``, ``/proc``, ``/root``...):
   the directory and everything inside it. Relabeling ``/usr/lib/x`` is as
   harmful as relabeling ``/usr``; go-selinux allows it, mcslabel does not.
2. **Exact paths**: the rest of the go-selinux list (``/``, ``/home``,
   ``/var``, ``/var/lib``, ``/tmp``...), ``$HOME``, ``$SUDO_USER``'s home,
   every home directory in the password database and any extra path the
   caller adds. Subdirectories are allowed (``/var/lib/containers/x``,
   ``/tmp/vol``), except a home directory's hidden entries (``~/.ssh``,
   ``~/.config``...), where sshd and login read their files.
3. **Ancestors**: a path that *contains* any refused path (``/data`` when
   ``/data/alice`` is a home), since a relabel is recursive.
4. **mcslabel's own state** (``/var/lib/mcslabel``: the registry and the
   journals; ``$XDG_STATE_HOME/mcslabel``; the SQLite file
   ``$MCSLABEL_STORE`` names): the tree and every directory containing it.

A bind mount is refused when the directory it shows is refused, on any file
system (a bind of ``/dev/shm/sub`` or ``/sys/fs/cgroup/pids`` inside a
volume), see :mod:`mcslabel.relabeling.mounts`.

Nothing removes ``/`` or the system trees from the list.
"""

from __future__ import annotations

import contextlib
import os
import pwd

from mcslabel.errors import RefusedPath
from mcslabel.errors import show_input as _q
from mcslabel.relabeling.mounts import Mount, aliases, read_mountinfo

# Imported for type checkers only: the marker path checks a root with this
# module in a process that should not pay for pathlib or typing.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

# The directory and everything inside it.
SYSTEM_TREES: tuple[str, ...] = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/sbin",
    "/sys",
    "/usr",
)

# mcslabel's own state: the host registry and the journals of docker volumes.
STATE_TREES: tuple[str, ...] = ("/var/lib/mcslabel",)

# go-selinux's exclude list (pkg/label, label_linux.go) plus /mnt and
# /var/tmp; the system trees above cover the rest of it (/etc/passwd,
# /etc/pki, /etc/shadow...).
EXACT_PATHS: tuple[str, ...] = (
    "/",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/run",
    "/srv",
    "/tmp",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",
)


def canonical(path: str | os.PathLike[str]) -> str:
    """The absolute, symlink-free spelling of an existing ``path``.

    Raises :class:`~mcslabel.errors.RefusedPath` (reason ``missing``) when the
    path does not exist: a relabel target must exist.
    """
    text = os.fspath(path)
    if not isinstance(text, str) or not text or "\0" in text:
        raise RefusedPath(f"{_q(text)} is not a path", path=str(text), reason="invalid")
    try:
        return os.path.realpath(text, strict=True)
    except OSError as exc:
        raise RefusedPath(
            f"{_q(text)} cannot be resolved: {exc.strerror}", path=text, reason="missing"
        ) from exc


def home_directories() -> list[str]:
    """``$HOME``, ``$SUDO_USER``'s home and every home in the password database."""
    homes: list[str] = []
    if home := os.environ.get("HOME"):
        homes.append(home)
    if sudo_user := os.environ.get("SUDO_USER"):
        with contextlib.suppress(KeyError):
            homes.append(pwd.getpwnam(sudo_user).pw_dir)
    homes.extend(entry.pw_dir for entry in pwd.getpwall() if entry.pw_dir)
    return homes


def _spellings(path: str) -> Iterator[str]:
    """``path`` normalised, and its canonical form when it exists."""
    normal = os.path.normpath(path) if path.startswith("/") else None
    if normal is None:
        return
    yield "/" if normal == "//" else normal
    with contextlib.suppress(OSError):
        yield os.path.realpath(normal, strict=True)


def _inside(path: str, tree: str) -> bool:
    return path == tree or tree == "/" or path.startswith(tree + "/")


def state_paths() -> list[str]:
    """mcslabel's own state: :data:`STATE_TREES`, ``$XDG_STATE_HOME/mcslabel``
    and the SQLite file ``$MCSLABEL_STORE`` names (so its directory too)."""
    found = list(STATE_TREES)
    if xdg := os.environ.get("XDG_STATE_HOME"):
        found.append(os.path.join(xdg, "mcslabel"))
    store = os.environ.get("MCSLABEL_STORE", "")
    if store.startswith("sqlite:///") and len(store) > len("sqlite:///"):
        found.append(store[len("sqlite://") :])
    return found


class RefusedPaths:
    """The refused set, computed once; :meth:`reason` checks one canonical path."""

    def __init__(self, extra: Iterable[str | os.PathLike[str]] = ()) -> None:
        trees: dict[str, str] = {}
        for p in SYSTEM_TREES:
            for s in _spellings(p):
                trees.setdefault(s, "system directory")
        exact: dict[str, str] = {}
        for p in state_paths():
            for s in _spellings(p):
                # The tree, and (as an exact path) every directory containing it.
                trees.setdefault(s, "mcslabel state directory")
                exact.setdefault(s, "mcslabel state")
        self.trees = dict(sorted(trees.items()))
        for p in EXACT_PATHS:
            for s in _spellings(p):
                exact.setdefault(s, "system directory")
        self.homes = sorted({s for p in home_directories() for s in _spellings(p)} - {"/"})
        for h in self.homes:
            exact.setdefault(h, "home directory")
        for added in extra:
            for s in _spellings(os.path.abspath(os.fspath(added))):
                exact.setdefault(s, "refused by caller")
        self.exact = exact
        self.identities: dict[tuple[int, int], str] = {}
        for p, why in [*self.trees.items(), *exact.items()]:
            try:
                st = os.stat(p)
            except OSError:
                continue
            self.identities.setdefault((st.st_dev, st.st_ino), f"{why} {p}")

    def identity_reason(self, identity: tuple[int, int]) -> str | None:
        """Why a file with this (device, inode) is refused: it *is* a refused directory."""
        found = self.identities.get(identity)
        return None if found is None else f"same file as {found} (a bind mount or alias)"

    def reason(self, path: str, identity: tuple[int, int] | None = None) -> str | None:
        """Why canonical ``path`` (with device and inode ``identity``) is refused."""
        for tree, kind in self.trees.items():
            if _inside(path, tree):
                return f"inside {kind} {tree}"
        if path in self.exact:
            return f"{self.exact[path]} {path}"
        for home in self.homes:
            if path.startswith(home + "/"):
                first = path[len(home) + 1 :].split("/", 1)[0]
                if first.startswith("."):
                    return f"hidden entry {first} of home directory {home}"
        for refused, why in self.exact.items():
            if refused != path and _inside(refused, path):
                return f"contains {why} {refused}"
        return None if identity is None else self.identity_reason(identity)

    def bind_reason(self, path: str, mounts: list[Mount]) -> str | None:
        """Why canonical ``path`` is refused as another spelling of a refused
        path through a bind mount (of any file system), naming the source."""
        for alias in aliases(path, mounts):
            if (why := self.reason(alias)) is not None:
                return f"bind mount of {alias} ({why})"
        return None


def refusal_reason(
    path: str | os.PathLike[str], *, refuse: Iterable[str | os.PathLike[str]] = ()
) -> str | None:
    """Why relabeling ``path`` must be refused, or ``None`` when it is allowed.

    ``path`` is canonicalised first; a path that does not exist is refused
    with reason ``cannot be resolved``. ``refuse`` adds paths to the list.
    """
    try:
        real = canonical(path)
    except RefusedPath as exc:
        return str(exc)
    try:
        st = os.stat(real)
        identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        identity = None
    return _refusal(real, identity, RefusedPaths(refuse))


def mount_aliases(path: str) -> list[str]:
    """Other spellings of canonical ``path`` through bind mounts.

    The mount holding ``path`` shows directory ``source`` of its file system;
    every mount of the same file system that shows an ancestor of ``source``
    gives an alias (``/srv/vol`` bind-mounted from ``/usr/share`` is also
    ``/usr/share``). A bind mount of a *subdirectory* of a refused tree has
    an identity no refused directory has, so only this catches it.
    """
    return aliases(path, read_mountinfo())


def _refusal(
    real: str,
    identity: tuple[int, int] | None,
    refused: RefusedPaths,
    mounts: list[Mount] | None = None,
) -> str | None:
    why = refused.reason(real, identity)
    if why is not None:
        return why
    return refused.bind_reason(real, read_mountinfo() if mounts is None else mounts)


def check_relabel_allowed(
    path: str | os.PathLike[str],
    *,
    refuse: Iterable[str | os.PathLike[str]] = (),
    refused: RefusedPaths | None = None,
    mounts: list[Mount] | None = None,
) -> Path:
    """The canonical ``path``, or :class:`~mcslabel.errors.RefusedPath` naming the reason.

    ``refused`` is a :class:`RefusedPaths` already built (with ``refuse``)
    for a caller that checks more than one path; ``mounts`` the mount table
    already read.
    """
    from pathlib import Path  # on use: start-up time (allowed_path needs none)

    return Path(allowed_path(path, refuse=refuse, refused=refused, mounts=mounts))


def allowed_path(
    path: str | os.PathLike[str],
    *,
    refuse: Iterable[str | os.PathLike[str]] = (),
    refused: RefusedPaths | None = None,
    mounts: list[Mount] | None = None,
) -> str:
    """:func:`check_relabel_allowed`, the canonical path as ``str``."""
    real = canonical(path)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise RefusedPath(
            f"{_q(os.fspath(path))} cannot be resolved: {exc.strerror}", path=real, reason="missing"
        ) from exc
    why = _refusal(real, (st.st_dev, st.st_ino), refused or RefusedPaths(refuse), mounts)
    if why is not None:
        raise RefusedPath(
            f"refusing to relabel {_q(os.fspath(path))}: {why}", path=real, reason=why
        )
    return real


__all__ = [
    "EXACT_PATHS",
    "STATE_TREES",
    "SYSTEM_TREES",
    "RefusedPaths",
    "allowed_path",
    "canonical",
    "check_relabel_allowed",
    "home_directories",
    "mount_aliases",
    "refusal_reason",
    "state_paths",
]
