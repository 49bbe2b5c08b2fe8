"""Read and write ``security.selinux`` of a name *relative to a directory fd*.

Python has no ``*xattrat`` calls, so the safe, race-free way to label an
entry of an open directory is one of:

- ``getxattrat(2)`` / ``setxattrat(2)`` (Linux >= 6.13), called through
  ctypes: one syscall, the name resolved inside the pinned directory, the
  final component never followed; measurably cheaper per call than the
  procfs path below, the fastest safe variant;
- the fallback for older kernels: ``l{get,set}xattr("/proc/self/fd/D/name")``,
  which is what coreutils' ``chcon`` does. The magic link jumps to the
  directory the fd pins, so this is just as race-free, but the procfs walk
  costs more per call.

Both never follow a symlink in the last component, so a symlink gets its own
label. Directory entries cannot contain ``/``, so a name is one component.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from typing import Any, Final

XATTR: Final = "security.selinux"
_XATTR_B: Final = XATTR.encode()
_AT_SYMLINK_NOFOLLOW: Final = 0x100
# Linux 6.13 numbered these in the common table for every architecture
# except alpha, ia64 and mips' variants; use them only where that holds.
_SYS_SETXATTRAT: Final = 463
_SYS_GETXATTRAT: Final = 464
_SUPPORTED_MACHINES: Final = frozenset({"x86_64", "aarch64", "riscv64", "loongarch64", "s390x"})
_BUFFER: Final = 256


_SYSCALL_PROTO = ctypes.CFUNCTYPE(
    ctypes.c_long,
    ctypes.c_long,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_uint,
    ctypes.c_char_p,
    ctypes.c_void_p,
    ctypes.c_size_t,
    use_errno=True,
)


class _XattrArgs(ctypes.Structure):
    _fields_ = [("value", ctypes.c_uint64), ("size", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class LabelIO:
    """Label reads/writes relative to directory fds; one instance per thread."""

    def __init__(self, *, use_xattrat: bool | None = None) -> None:
        self._syscall: Any = None
        if use_xattrat is not False and platform.machine() in _SUPPORTED_MACHINES:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                # syscall(2) is variadic: declare every argument's width, or
                # ctypes passes 32-bit ints and the size reads garbage bits.
                self._syscall = _SYSCALL_PROTO(("syscall", libc))
            except (OSError, AttributeError):
                self._syscall = None
        self._buf = ctypes.create_string_buffer(_BUFFER)
        self._get_args = _XattrArgs(ctypes.addressof(self._buf), _BUFFER, 0)
        self._get_ref = ctypes.addressof(self._get_args)
        self._size = ctypes.sizeof(_XattrArgs)
        if self._syscall is not None and not self._probe():
            self._syscall = None

    @property
    def uses_xattrat(self) -> bool:
        """True when the ``*xattrat`` syscalls are in use (not the procfs fallback)."""
        return self._syscall is not None

    def _probe(self) -> bool:
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.get(fd, b".")
        except OSError as exc:
            # ENOSYS: kernel < 6.13; EPERM: a seccomp profile (docker's default)
            # that does not know the syscall yet. Either way: use the fallback.
            return exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.EFAULT)
        finally:
            os.close(fd)
        return True

    def get(self, dirfd: int, name: bytes) -> bytes | None:
        """The raw label of ``name`` in ``dirfd`` (``None`` when it has none)."""
        call = self._syscall
        if call is not None:
            n = call(
                _SYS_GETXATTRAT,
                dirfd,
                name,
                _AT_SYMLINK_NOFOLLOW,
                _XATTR_B,
                self._get_ref,
                self._size,
            )
            if n >= 0:
                return self._buf.raw[:n]
            err = ctypes.get_errno()
            if err == errno.ENODATA:
                return None
            if err != errno.ERANGE:
                raise OSError(err, os.strerror(err), os.fsdecode(name))
        try:
            return os.getxattr(_proc(dirfd, name), XATTR, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return None
            raise

    def setter(self, value: bytes) -> _Setter:
        """A writer of the fixed label ``value`` (the argument block built once)."""
        return _Setter(self._syscall, value, self._size)


class _Setter:
    def __init__(self, call: object, value: bytes, size: int) -> None:
        self._call = call
        self.value = value
        self._value_buf = ctypes.create_string_buffer(value, len(value))
        self._args = _XattrArgs(ctypes.addressof(self._value_buf), len(value), 0)
        self._ref = ctypes.addressof(self._args)
        self._size = size

    def set(self, dirfd: int, name: bytes) -> None:
        """Write the label on ``name`` in ``dirfd`` without following a symlink."""
        call = self._call
        if call is not None:
            if (
                call(
                    _SYS_SETXATTRAT,
                    dirfd,
                    name,
                    _AT_SYMLINK_NOFOLLOW,
                    _XATTR_B,
                    self._ref,
                    self._size,
                )  # type: ignore[operator]
                == 0
            ):
                return
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fsdecode(name))
        os.setxattr(_proc(dirfd, name), XATTR, self.value, follow_symlinks=False)


def _proc(dirfd: int, name: bytes) -> bytes:
    return b"/proc/self/fd/%d/%s" % (dirfd, name)


def get_fd(fd: int) -> bytes | None:
    """The label of the file an fd refers to (``O_PATH`` fds included)."""
    try:
        return os.getxattr(f"/proc/self/fd/{fd}", XATTR)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise


def set_fd(fd: int, value: bytes | None) -> None:
    """Set (or, for ``None``, remove) the label of what ``fd`` refers to.

    Goes through ``/proc/self/fd/N``, whose magic link resolves to the very
    object the fd holds, so an ``O_PATH | O_NOFOLLOW`` fd of a symlink labels
    the symlink itself (verified on ext4), and a fifo or device is never
    opened.
    """
    path = f"/proc/self/fd/{fd}"
    if value is None:
        try:
            os.removexattr(path, XATTR)
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
    else:
        os.setxattr(path, XATTR, value)


__all__ = [
    "XATTR",
    "LabelIO",
    "get_fd",
    "set_fd",
]
