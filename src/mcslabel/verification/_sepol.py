"""libsepol through its public, versioned C API (ctypes).

Two services: :class:`ServicesPolicy`, the kernel's access-decision code
(``sepol_compute_av_reason_buffer``) on a policy file, and
:func:`policy_with_booleans`, a copy of a binary policy with some booleans set.

SETools and libsepol's ``audit2why`` both read a policy's boolean defaults
from the file. A what-if ("is /home readable with ``container_use_nfs``
on?") is therefore answered on a real policy file: libsepol reads the
original, ``sepol_bool_set`` flips the booleans and re-evaluates the
conditional rules, and the image is written to a private temporary file.
Only libsepol's public, versioned API is used (through ctypes).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from mcslabel.errors import PolicyError, SELinuxUnavailable

_lock = threading.Lock()
_tmpdir: str | None = None


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    # The soname first: find_library needs ldconfig, absent from minimal images.
    names = ["libsepol.so.2"]
    found = ctypes.util.find_library("sepol")
    if found and found not in names:
        names.append(found)
    problems: list[str] = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as exc:
            problems.append(str(exc))
    else:
        raise SELinuxUnavailable(
            f"libsepol is not loadable ({'; '.join(problems)}):"
            " install Debian's libsepol2 (Fedora/RHEL: libsepol)"
        )
    vp, pp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
    signatures: dict[str, tuple[object, list[object]]] = {
        "sepol_handle_create": (vp, []),
        "sepol_handle_destroy": (None, [vp]),
        "sepol_msg_set_callback": (None, [vp, vp, vp]),
        "sepol_policy_file_create": (ctypes.c_int, [pp]),
        "sepol_policy_file_set_mem": (None, [vp, ctypes.c_char_p, ctypes.c_size_t]),
        "sepol_policy_file_set_handle": (None, [vp, vp]),
        "sepol_policy_file_free": (None, [vp]),
        "sepol_policydb_create": (ctypes.c_int, [pp]),
        "sepol_policydb_read": (ctypes.c_int, [vp, vp]),
        "sepol_policydb_free": (None, [vp]),
        "sepol_policydb_to_image": (
            ctypes.c_int,
            [vp, vp, pp, ctypes.POINTER(ctypes.c_size_t)],
        ),
        "sepol_bool_key_create": (ctypes.c_int, [vp, ctypes.c_char_p, pp]),
        "sepol_bool_key_free": (None, [vp]),
        "sepol_bool_create": (ctypes.c_int, [vp, pp]),
        "sepol_bool_set_name": (ctypes.c_int, [vp, vp, ctypes.c_char_p]),
        "sepol_bool_set_value": (None, [vp, ctypes.c_int]),
        "sepol_bool_free": (None, [vp]),
        "sepol_bool_set": (ctypes.c_int, [vp, vp, vp, vp]),
    }
    _declare(lib, signatures)
    return lib


def _declare(lib: ctypes.CDLL, signatures: dict[str, tuple[object, list[object]]]) -> None:
    for fn, (restype, argtypes) in signatures.items():
        try:
            func = getattr(lib, fn)
        except AttributeError:
            raise SELinuxUnavailable(
                f"{lib._name} has no {fn}: libsepol 2.x (libsepol.so.2) is needed"
            ) from None
        func.restype = restype
        func.argtypes = argtypes


def _workdir() -> str:
    global _tmpdir
    if _tmpdir is None:
        _tmpdir = tempfile.mkdtemp(prefix="mcslabel-booleans-")
        atexit.register(shutil.rmtree, _tmpdir, True)
    return _tmpdir


def policy_with_booleans(policy_file: str | os.PathLike[str], booleans: Mapping[str, bool]) -> Path:
    """A private copy of ``policy_file`` whose booleans default to ``booleans``.

    Names must already be checked against the policy. Copies are cached per
    (file, settings) for the life of the process and removed at exit.
    """
    source = Path(policy_file)
    settings = tuple(sorted((name, bool(value)) for name, value in booleans.items()))
    st = source.stat()
    key = hashlib.sha256(repr((str(source), st.st_mtime_ns, st.st_size, settings)).encode())
    target = Path(_workdir()) / f"policy-{key.hexdigest()[:24]}"
    with _lock:
        if not target.exists():
            image = _rewrite(source.read_bytes(), settings)
            partial = target.with_suffix(".part")
            partial.write_bytes(image)
            partial.replace(target)
    return target


@contextlib.contextmanager
def _policydb(
    lib: ctypes.CDLL, data: bytes, unreadable: str
) -> Iterator[tuple[ctypes.c_void_p, ctypes.c_void_p]]:
    """(handle, policydb) read from a binary policy in memory, freed on exit.

    ``unreadable`` is the error message when libsepol cannot read ``data``.
    """
    handle = lib.sepol_handle_create()
    if not handle:
        raise PolicyError("libsepol: cannot create a handle")
    lib.sepol_msg_set_callback(handle, None, None)  # silence libsepol's stderr chatter
    pf, db = ctypes.c_void_p(), ctypes.c_void_p()
    try:
        if lib.sepol_policy_file_create(ctypes.byref(pf)) < 0:
            raise PolicyError("libsepol: cannot create a policy file object")
        lib.sepol_policy_file_set_mem(pf, data, len(data))
        lib.sepol_policy_file_set_handle(pf, handle)
        if lib.sepol_policydb_create(ctypes.byref(db)) < 0:
            raise PolicyError("libsepol: cannot create a policydb")
        if lib.sepol_policydb_read(db, pf) < 0:
            raise PolicyError(unreadable)
        yield handle, db
    finally:
        if db:
            lib.sepol_policydb_free(db)
        if pf:
            lib.sepol_policy_file_free(pf)
        lib.sepol_handle_destroy(handle)


def _rewrite(data: bytes, settings: tuple[tuple[str, bool], ...]) -> bytes:
    lib = _lib()
    with _policydb(lib, data, "libsepol cannot read the policy to set booleans") as (handle, db):
        for name, value in settings:
            _set_boolean(lib, handle, db, name, value)
        out, size = ctypes.c_void_p(), ctypes.c_size_t()
        if lib.sepol_policydb_to_image(handle, db, ctypes.byref(out), ctypes.byref(size)) < 0:
            raise PolicyError("libsepol cannot write the policy image")
        try:
            return ctypes.string_at(out, size.value)
        finally:
            _libc().free(out)


def _set_boolean(lib: ctypes.CDLL, handle: object, db: object, name: str, value: bool) -> None:
    key, record = ctypes.c_void_p(), ctypes.c_void_p()
    encoded = name.encode()
    try:
        if lib.sepol_bool_key_create(handle, encoded, ctypes.byref(key)) < 0:
            raise PolicyError(f"libsepol: cannot make a key for boolean {name}")
        if lib.sepol_bool_create(handle, ctypes.byref(record)) < 0:
            raise PolicyError(f"libsepol: cannot make boolean {name}")
        if lib.sepol_bool_set_name(handle, record, encoded) < 0:
            raise PolicyError(f"libsepol: cannot name boolean {name}")
        lib.sepol_bool_set_value(record, 1 if value else 0)
        if lib.sepol_bool_set(handle, db, key, record) < 0:
            raise PolicyError(f"libsepol cannot set boolean {name} (not in the policy?)")
    finally:
        if record:
            lib.sepol_bool_free(record)
        if key:
            lib.sepol_bool_key_free(key)


# --- access decisions through libsepol's services API ---------------------------

#: Reason bits of ``sepol_compute_av_reason``.
REASON_TE, REASON_CONSTRAINT, REASON_RBAC, REASON_BOUNDS = 1, 2, 4, 8


class _AVDecision(ctypes.Structure):
    _fields_ = [
        ("allowed", ctypes.c_uint32),
        ("decided", ctypes.c_uint32),
        ("auditallow", ctypes.c_uint32),
        ("auditdeny", ctypes.c_uint32),
        ("seqno", ctypes.c_uint32),
    ]


@functools.lru_cache(maxsize=1)
def _services() -> ctypes.CDLL:
    lib = _lib()
    u32p = ctypes.POINTER(ctypes.c_uint32)
    signatures: dict[str, tuple[object, list[object]]] = {
        "sepol_set_policydb_from_file": (ctypes.c_int, [ctypes.c_void_p]),
        "sepol_context_to_sid": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_size_t, u32p]),
        "sepol_string_to_security_class": (
            ctypes.c_int,
            [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint16)],
        ),
        "sepol_string_to_av_perm": (ctypes.c_int, [ctypes.c_uint16, ctypes.c_char_p, u32p]),
        "sepol_compute_av_reason_buffer": (
            ctypes.c_int,
            [
                ctypes.c_uint32,
                ctypes.c_uint32,
                ctypes.c_uint16,
                ctypes.c_uint32,
                ctypes.POINTER(_AVDecision),
                ctypes.POINTER(ctypes.c_uint),
                ctypes.POINTER(ctypes.c_void_p),
                ctypes.c_uint,
            ],
        ),
        "sepol_debug": (None, [ctypes.c_int]),
    }
    _declare(lib, signatures)
    return lib


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free.restype = None
    return libc


class ServicesPolicy:
    """libsepol's process-global services policy (the kernel's decision code).

    ``sepol_set_policydb_from_file`` installs one policy for the whole
    process; callers hold :data:`services_lock` across :meth:`load` and
    :meth:`compute` so no one switches it under them.
    """

    loaded: tuple[str, int, int] | None = None

    @classmethod
    def load(cls, policy_file: str) -> None:
        st = os.stat(policy_file)
        key = (policy_file, st.st_mtime_ns, st.st_size)
        if cls.loaded == key:
            return
        lib, libc = _services(), _libc()
        lib.sepol_debug(0)  # no libsepol chatter on stderr for refused names
        fp = libc.fopen(policy_file.encode(), b"re")
        if not fp:
            raise PolicyError(f"cannot open {policy_file}: {os.strerror(ctypes.get_errno())}")
        try:
            cls.loaded = None
            if lib.sepol_set_policydb_from_file(fp) < 0:
                raise PolicyError(f"libsepol cannot load {policy_file}")
        finally:
            libc.fclose(fp)
        cls.loaded = key

    @staticmethod
    def compute(scon: str, tcon: str, tclass: str, perm: str) -> tuple[int, bool, str]:
        """``(reason bits, dontaudited, reason text)``; 0 bits means allowed."""
        lib, libc = _services(), _libc()
        ssid, tsid = ctypes.c_uint32(), ctypes.c_uint32()
        raw_class, av = ctypes.c_uint16(), ctypes.c_uint32()
        for context, sid, what in ((scon, ssid, "source"), (tcon, tsid, "target")):
            data = context.encode()
            if lib.sepol_context_to_sid(data, len(data) + 1, ctypes.byref(sid)) < 0:
                raise PolicyError(f"libsepol rejects {what} context {context}")
        if lib.sepol_string_to_security_class(tclass.encode(), ctypes.byref(raw_class)) < 0:
            raise PolicyError(f"libsepol does not know class {tclass}")
        if lib.sepol_string_to_av_perm(raw_class, perm.encode(), ctypes.byref(av)) < 0:
            raise PolicyError(f"libsepol does not know permission {tclass} {perm}")
        avd, reason, buf = _AVDecision(), ctypes.c_uint(), ctypes.c_void_p()
        rc = lib.sepol_compute_av_reason_buffer(
            ssid, tsid, raw_class, av, ctypes.byref(avd), ctypes.byref(reason), ctypes.byref(buf), 0
        )
        text = ""
        if buf.value:
            text = (ctypes.string_at(buf.value) or b"").decode(errors="replace")
            libc.free(buf.value)
        if rc < 0:
            raise PolicyError(f"libsepol could not compute {scon} -> {tcon} {tclass} {perm}")
        dontaudited = not (av.value & avd.auditdeny)
        return int(reason.value), dontaudited, text


#: Guards every use of libsepol's process-global state (services and audit2why).
services_lock = threading.RLock()


# --- MLS facts without SETools ---------------------------------------------------

#: Largest category number probed (far beyond any policy: checkpolicy's own limit is lower).
_MAX_CATEGORIES = 1 << 16


def mls_facts(
    policy_file: str, probes: tuple[str, ...] = ()
) -> tuple[bool, int, int, tuple[bool, ...]]:
    """``(mls, sensitivities, categories, accepted)`` of a binary policy, read by libsepol.

    Sizes are found with ``sepol_mls_check`` (the highest valid ``sN`` and
    ``s0:cN``); ``accepted`` says, for each of ``probes`` (MLS levels or
    ranges), whether libsepol accepts it in this policy. About 30 ms for a
    distro policy, a tenth of what loading it with SETools costs.
    """
    lib = _lib()
    if not getattr(lib.sepol_mls_check, "argtypes", None):
        lib.sepol_mls_check.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
        lib.sepol_mls_check.restype = ctypes.c_int
        lib.sepol_policydb_mls_enabled.argtypes = [ctypes.c_void_p]
        lib.sepol_policydb_mls_enabled.restype = ctypes.c_int
    try:
        data = Path(policy_file).read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {policy_file}: {exc.strerror}") from exc
    unreadable = f"{policy_file} is a damaged or truncated binary policy: libsepol cannot read it"
    with _policydb(lib, data, unreadable) as (handle, db):
        if not lib.sepol_policydb_mls_enabled(db):
            return False, 0, 0, tuple(False for _ in probes)

        def valid(text: str) -> bool:
            return bool(lib.sepol_mls_check(handle, db, text.encode()) == 0)

        sensitivities = 0
        while sensitivities < _MAX_CATEGORIES and valid(f"s{sensitivities}"):
            sensitivities += 1
        low, high = 0, _MAX_CATEGORIES
        while low < high:  # the first category number s0 does not have
            middle = (low + high) // 2
            if valid(f"s0:c{middle}"):
                low = middle + 1
            else:
                high = middle
        return True, sensitivities, low, tuple(valid(p) for p in probes)
