"""libselinux's ``selabel_lookup_best_match_raw`` through ctypes.

The Python binding drops the ``aliases`` argument (SWIG cannot pass a
``char **``), and that argument is the point: libselinux picks, among a path
and its equivalent spellings, the entry an exact or longest-prefix match
gives, as ``restorecon`` does for aliases. One handle per file_contexts file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import threading
from collections.abc import Sequence

from mcslabel.errors import NoFileContext, PolicyError, SELinuxUnavailable

_SELABEL_CTX_FILE = 0
_SELABEL_OPT_PATH = 3
_lock = threading.Lock()


class _Option(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("value", ctypes.c_char_p)]


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libselinux.so.1", use_errno=True)
    except OSError as exc:
        raise SELinuxUnavailable(f"libselinux is not loadable: {exc}") from exc
    vp = ctypes.c_void_p
    lib.selabel_open.restype = vp
    lib.selabel_open.argtypes = [ctypes.c_uint, ctypes.POINTER(_Option), ctypes.c_uint]
    lib.selabel_lookup_best_match_raw.restype = ctypes.c_int
    lib.selabel_lookup_best_match_raw.argtypes = [
        vp,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_int,
    ]
    lib.freecon.argtypes = [vp]
    lib.freecon.restype = None
    return lib


@functools.lru_cache(maxsize=8)
def _handle(fc_path: str) -> int:
    option = _Option(_SELABEL_OPT_PATH, fc_path.encode())
    handle = _lib().selabel_open(_SELABEL_CTX_FILE, ctypes.byref(option), 1)
    if not handle:
        raise PolicyError(f"libselinux cannot load {fc_path}")
    return int(handle)


def best_match(fc_path: str, path: str, aliases: Sequence[str], mode: int) -> str:
    """The raw context libselinux gives ``path`` or, if better matched, one of ``aliases``."""
    lib, handle = _lib(), _handle(fc_path)
    names = (ctypes.c_char_p * (len(aliases) + 1))(*[a.encode() for a in aliases], None)
    out = ctypes.c_void_p()
    with _lock:
        rc = lib.selabel_lookup_best_match_raw(
            handle, ctypes.byref(out), path.encode(), names, mode
        )
        err = ctypes.get_errno()
    if rc < 0:
        if err == errno.ENOENT:
            raise NoFileContext(
                f"{path} has no file context in {fc_path} (<<none>> or no entry):"
                " it is never labeled, so there is nothing to check",
                path=path,
            )
        raise PolicyError(f"file_contexts lookup of {path} failed: {errno.errorcode.get(err, err)}")
    try:
        return (
            ctypes.string_at(out.value or 0).decode("ascii", errors="replace") if out.value else ""
        )
    finally:
        lib.freecon(out.value)
