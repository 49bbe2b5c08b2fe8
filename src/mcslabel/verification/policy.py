"""Policy files: a policy root laid out like ``/etc/selinux/<type>/``.

A policy root holds ``policy/policy.NN`` (the binary policy),
``contexts/lxc_contexts`` (container contexts) and
``contexts/files/file_contexts[.homedirs]``. :class:`PolicyRoot` finds those
files; :func:`load_policy` opens the binary policy with SETools and reads its
MLS flag, sensitivity and category counts.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import attrs

from mcslabel.context import ContainerContexts
from mcslabel.errors import PolicyError
from mcslabel.verification import _bindings
from mcslabel.verification.policyfiles import installed_policy_type, policy_root_dir

SELINUX_DIR = Path("/etc/selinux")
_POLICY_FILE = re.compile(r"policy\.(\d+)")


@attrs.frozen
class PolicyRoot:
    """A directory laid out like ``/etc/selinux/<type>/``."""

    path: Path = attrs.field(converter=Path)

    @classmethod
    def installed(cls, selinux_dir: Path = SELINUX_DIR) -> PolicyRoot:
        """The root of the policy this host is configured to load."""
        return cls(policy_root_dir(None, selinux_dir=selinux_dir))

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> PolicyRoot:
        root = cls(Path(path))
        if not root.path.is_dir():
            raise PolicyError(f"policy root {root.path} is not a directory")
        return root

    @classmethod
    def coerce(cls, value: PolicyRoot | str | os.PathLike[str] | None) -> PolicyRoot:
        """``value`` itself when it is a PolicyRoot, :meth:`at` a path, :meth:`installed` for None.

        For APIs taking a ``policy_root`` argument in any of these forms.
        """
        if isinstance(value, PolicyRoot):
            return value
        return cls.installed() if value is None else cls.at(value)

    @property
    def policy_file(self) -> Path:
        """The newest ``policy/policy.NN`` in the root."""
        directory = self.path / "policy"
        try:
            candidates = [
                (int(m.group(1)), p)
                for p in directory.iterdir()
                if (m := _POLICY_FILE.fullmatch(p.name)) and p.is_file()
            ]
        except OSError as exc:
            raise PolicyError(f"cannot list {directory}: {exc.strerror}") from exc
        if not candidates:
            raise PolicyError(f"no policy/policy.NN file under {self.path}")
        return max(candidates)[1]

    @property
    def lxc_contexts_file(self) -> Path:
        return self.path / "contexts" / "lxc_contexts"

    @property
    def file_contexts_file(self) -> Path:
        return self.path / "contexts" / "files" / "file_contexts"

    @property
    def homedirs_file(self) -> Path:
        return self.path / "contexts" / "files" / "file_contexts.homedirs"

    def container_contexts(self) -> ContainerContexts:
        """Parse this root's ``lxc_contexts``."""
        path = self.lxc_contexts_file
        try:
            text = path.read_text()
        except OSError as exc:
            raise PolicyError(f"cannot read {path}: {exc.strerror}") from exc
        return ContainerContexts.parse(text, source=str(path))


@attrs.frozen
class Policy:
    """A loaded binary policy and the facts mcslabel needs from it."""

    path: Path
    root: PolicyRoot | None
    mls: bool
    sensitivities: int
    categories: int
    version: int
    setools_policy: Any = attrs.field(eq=False, repr=False)

    def has_type(self, name: str) -> bool:
        """True when ``name`` is a type or type alias of this policy."""
        setools = _bindings.setools()
        try:
            self.setools_policy.lookup_type(name)
        except setools.exception.InvalidType:
            return False
        return True

    def container_contexts(self) -> ContainerContexts:
        if self.root is None:
            raise PolicyError(f"{self.path} was loaded without a policy root; no lxc_contexts")
        return self.root.container_contexts()


@attrs.frozen
class MlsFacts:
    """What a policy says about levels, read quickly by libsepol (no SETools)."""

    path: Path
    mls: bool
    sensitivities: int
    categories: int
    #: For each probed level or range: does libsepol accept it in this policy?
    accepted: tuple[bool, ...] = ()


def mls_facts(
    policy_root: str | os.PathLike[str] | PolicyRoot | None = None,
    *,
    policy: str | os.PathLike[str] | None = None,
    probes: tuple[str, ...] = (),
    cache: bool = False,
) -> MlsFacts:
    """Sensitivity and category counts of a policy (given file, root's, or installed).

    Reads the binary policy with libsepol (tens of milliseconds), for callers
    that need levels checked against the policy but not its rules
    (``mcslabel check``). ``probes`` are levels or ranges libsepol judges
    itself (``sepol_mls_check``: names and syntax; it does not check a
    sensitivity's own category set).

    ``cache=True`` (the CLI's ``check``, which scripts call per container)
    keeps the counts in ``$XDG_CACHE_HOME/mcslabel/mls-facts`` keyed by the
    policy file's device, inode, size and mtime, and answers later calls from
    it without libsepol. The probes are then not run: levels within the counts
    are exactly what libsepol accepts (``tests/test_level_libsepol.py``).
    """
    from mcslabel.verification._sepol import mls_facts as read_facts

    _root, path = _policy_path(policy_root, policy)
    if not path.is_file():
        raise PolicyError(f"policy file {path} does not exist")
    _check_magic(str(path))
    key = _facts_key(path) if cache else None
    if key is not None:
        cached = _cached_facts(key)
        if cached is not None:
            return MlsFacts(path, *cached, accepted=(True,) * len(probes))
    mls, sensitivities, categories, accepted = read_facts(str(path), probes)
    if key is not None:
        _store_facts(key, (mls, sensitivities, categories))
    return MlsFacts(path, mls, sensitivities, categories, accepted)


def _facts_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mcslabel" / "mls-facts"


def _facts_key(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    # A rebuilt or replaced policy changes its inode, size or mtime.
    return f"{os.fsencode(path).hex()}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _cached_facts(key: str) -> tuple[bool, int, int] | None:
    try:
        lines = _facts_cache().read_text().splitlines()
    except (OSError, UnicodeError):
        return None
    for line in lines:
        fields = line.split()
        if len(fields) == 4 and fields[0] == key:
            try:
                return fields[1] == "1", int(fields[2]), int(fields[3])
            except ValueError:
                return None
    return None


def _store_facts(key: str, facts: tuple[bool, int, int]) -> None:
    """Remember ``facts`` (a cache: any failure to write it is ignored)."""
    mls, sensitivities, categories = facts
    cache = _facts_cache()
    try:
        kept = [ln for ln in cache.read_text().splitlines() if not ln.startswith(key)]
    except (OSError, UnicodeError):
        kept = []
    kept = [*kept[-15:], f"{key} {int(mls)} {sensitivities} {categories}"]
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text("\n".join(kept) + "\n")
        os.replace(tmp, cache)  # atomic: a concurrent reader sees old or new
    except OSError:
        pass


def load_policy(
    policy_root: str | os.PathLike[str] | PolicyRoot | None = None,
    *,
    policy: str | os.PathLike[str] | None = None,
) -> Policy:
    """Load a binary policy: a given file, a policy root's, or the installed one."""
    root, path = _policy_path(policy_root, policy)
    try:
        st = path.stat()
    except OSError:
        raise PolicyError(f"policy file {path} does not exist") from None
    # The file's identity is part of the key: a policy rebuilt in place is reloaded.
    return _load(str(path), root, st.st_mtime_ns, st.st_size)


def clear_policy_cache() -> None:
    """Forget every loaded policy (the next :func:`load_policy` reads the file again).

    Policies rewritten in place are noticed without this; it is for tests and
    for freeing the memory of policies no longer used.
    """
    _load.cache_clear()


def _policy_path(
    policy_root: str | os.PathLike[str] | PolicyRoot | None,
    policy: str | os.PathLike[str] | None,
) -> tuple[PolicyRoot | None, Path]:
    """The policy root asked for (None for a bare policy file) and the policy file to read."""
    if policy is None:
        root = PolicyRoot.coerce(policy_root)
        return root, root.policy_file.resolve()
    root_or_none = None if policy_root is None else PolicyRoot.coerce(policy_root)
    return root_or_none, Path(policy).resolve()


#: The first four bytes of every kernel binary policy (POLICYDB_MAGIC, little-endian).
BINARY_POLICY_MAGIC = bytes.fromhex("8cff7cf9")


def _check_magic(path: str) -> None:
    # SETools would take anything else for a policy.conf and say "Source
    # policies are not supported", which names the wrong problem.
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from exc
    if head != BINARY_POLICY_MAGIC:
        raise PolicyError(
            f"{path} is not a binary SELinux policy (no policy magic number);"
            " pass a compiled policy.NN (checkpolicy/semodule output)"
        )


@functools.lru_cache(maxsize=8)
def _load(path: str, root: PolicyRoot | None, mtime_ns: int = 0, size: int = 0) -> Policy:
    # Policies are immutable files in practice and a load costs ~0.1 s: cache.
    setools = _bindings.setools()
    if not Path(path).is_file():
        raise PolicyError(f"policy file {path} does not exist")
    _check_magic(path)
    try:
        sp = setools.SELinuxPolicy(path)
    except (setools.exception.InvalidPolicy, OSError, ValueError) as exc:
        # The magic matched: a binary policy that libsepol cannot read through.
        raise PolicyError(
            f"{path} is a damaged or truncated binary policy: libsepol cannot read it"
        ) from exc
    mls = bool(sp.mls)
    return Policy(
        path=Path(path),
        root=root,
        mls=mls,
        sensitivities=len(list(sp.sensitivities())) if mls else 0,
        categories=len(list(sp.categories())) if mls else 0,
        version=int(sp.version),
        setools_policy=sp,
    )


__all__ = [
    "BINARY_POLICY_MAGIC",
    "SELINUX_DIR",
    "MlsFacts",
    "Policy",
    "PolicyRoot",
    "clear_policy_cache",
    "installed_policy_type",
    "load_policy",
    "mls_facts",
]
