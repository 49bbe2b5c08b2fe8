"""The parallel relabel's driver: fork the worker processes, collect their results.

Threads do not pay for this work (every label syscall hands the GIL over,
which costs more than the syscall it overlaps), processes do: see
:mod:`mcslabel.relabeling._worker` for what each worker does. Workers die
with the parent (``PR_SET_PDEATHSIG``), and every one of them keeps the
journal's ``flock`` until it exits, so :func:`mcslabel.relabeling.restore`
never runs while a label may still change.
"""

from __future__ import annotations

import contextlib
import ctypes
import marshal
import os
import selectors
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from mcslabel.relabeling._split import Spec
from mcslabel.relabeling._walking import WalkCounts
from mcslabel.relabeling._worker import PROGRESS, Worker
from mcslabel.relabeling.journal_writer import JournalWriter

_PR_SET_PDEATHSIG: Final = 1

Counts = tuple[int, int, int, int]  # visited, changed, unchanged, failed


_prctl: Any = None


def _load_prctl() -> Any:
    # Looked up before the fork: dlsym in a child of a threaded parent could
    # meet a lock another thread held at the fork.
    global _prctl
    if _prctl is None:
        try:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False
    return _prctl


#: What a worker process runs: ``task(k, out)`` returns its summary (sent with
#: :mod:`marshal`); it may send progress on ``out`` (``b"P"`` + :data:`PROGRESS`).
Task = Callable[[int, int], dict[str, Any]]


def _child(
    task: Task,
    k: int,
    out: int,
    close: list[int],
    parent: int,
    mask: set[int | signal.Signals],
) -> None:
    """Run ``task`` as worker ``k`` and leave the process; never returns to the caller."""
    code = 70
    try:
        prctl = _prctl
        if prctl:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(code)  # the parent died before the death signal was armed
        # ValueError off the main thread: Ctrl-C then ends the worker through Python.
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # blocked over the fork
        for fd in close:
            os.close(fd)
        payload = marshal.dumps(task(k, out))
        os.write(out, b"F" + struct.pack("<I", len(payload)))
        view = memoryview(payload)
        while view:
            view = view[os.write(out, view) :]
        code = 0
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"mcslabel worker {k}: {exc!r}\n".encode())
    finally:
        os._exit(code)


def run(
    spec: Spec,
    workers: int,
    totals: WalkCounts,
    segments: list[JournalWriter] | None,
    progress: Callable[[Counts], None] | None,
    journal_ready: Callable[[], None] | None = None,
) -> None:
    """Relabel in ``workers`` processes, wait for all of them, add their results to ``totals``.

    A worker that dies or fails counts as a failure (``errno`` 0, path ``.``),
    so the root is then not labeled; its journal segment keeps what it did.
    ``progress`` gets the summed counts about ten times a second.
    ``journal_ready`` (a journal created with ``deferred=True``) runs in the
    parent once the workers are started; they read labels meanwhile and
    change none before it returns.
    """
    unclosed: list[int] = []
    if spec.by_directory:
        spec.lock_fd = os.memfd_create("mcslabel-relabel-lock", os.MFD_CLOEXEC)
        unclosed.append(spec.lock_fd)
    go_w = -1
    if journal_ready is not None:
        spec.go_fd, go_w = os.pipe2(os.O_CLOEXEC)
        unclosed += (spec.go_fd, go_w)

    def task(k: int, out: int) -> dict[str, Any]:
        worker = Worker(spec, k, workers, segments[k] if segments else None, out)
        worker.run()
        return worker.summary()

    def started() -> None:
        if journal_ready is not None:
            journal_ready()  # raising kills the workers, before any label changed
            os.write(go_w, b"1" * workers)

    try:
        finals = fork_workers(
            workers,
            task,
            progress,
            own_fds=[s.fileno() for s in segments] if segments else [],
            parent_only=[go_w] if go_w >= 0 else [],  # or a failed journal never reaches EOF
            started=started,
        )
    finally:
        for fd in unclosed:
            os.close(fd)
    for final, died in finals:
        if died is not None:
            totals.errors.worker_died(f"relabel worker {died}")
        totals.visited += final.get("visited", 0)
        totals.changed += final.get("changed", 0)
        totals.unchanged += final.get("unchanged", 0)
        totals.skipped_mounts += final.get("skipped_mounts", 0)
        totals.errors.merge(
            final.get("failed", 0), final.get("errors", []), final.get("error_counts", {})
        )


def fork_workers(
    workers: int,
    task: Task,
    progress: Callable[[Counts], None] | None,
    *,
    own_fds: Sequence[int] = (),
    parent_only: Sequence[int] = (),
    started: Callable[[], None] | None = None,
) -> list[tuple[dict[str, Any], str | None]]:
    """Fork ``workers`` processes running ``task``; wait for all of them.

    Returns each worker's summary with ``None``, or, for a worker that died
    or failed, its last progress counts with why (``"k killed by SIGKILL"``).
    ``own_fds[k]`` stays open in worker ``k`` only; ``parent_only`` fds are
    closed in every worker. ``started`` runs in the parent once all are forked.
    Workers die with the parent; an exception in the parent kills them.
    """
    _load_prctl()
    me = os.getpid()
    pipes: list[tuple[int, int]] = []
    unclosed: set[int] = set()
    pids: dict[int, int] = {}
    try:
        for _ in range(workers):
            pipes.append(os.pipe2(os.O_CLOEXEC))
            unclosed.update(pipes[-1])
        for k in range(workers):
            close = [fd for i, (r, w) in enumerate(pipes) for fd in (r, w) if i != k or fd == r]
            close += [fd for i, fd in enumerate(own_fds) if i != k]
            close += list(parent_only)
            # Flush Python's buffers so the child cannot write them a second time.
            sys.stdout.flush()
            sys.stderr.flush()
            # Signals stay blocked across the fork: a Ctrl-C landing in the child
            # before _child's try would send a copy of the caller up its stack, and
            # a handler raising inside the interpreter's at-fork hooks would leave
            # logging's module lock held in the parent (a later getLogger hangs).
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
            try:
                pid = os.fork()
                if pid == 0:
                    _child(task, k, pipes[k][1], close, me, mask)
                pids[k] = pid
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for _, w in pipes:
            os.close(w)
            unclosed.discard(w)
        if started is not None:
            started()
        return _collect(pipes, pids, progress)
    except BaseException:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise
    finally:
        for fd in unclosed:
            os.close(fd)
        for k, pid in list(pids.items()):  # left only when something went wrong
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            del pids[k]


def _collect(
    pipes: list[tuple[int, int]],
    pids: dict[int, int],
    progress: Callable[[Counts], None] | None,
) -> list[tuple[dict[str, Any], str | None]]:
    buffers = {r: bytearray() for r, _ in pipes}
    index = {r: k for k, (r, _) in enumerate(pipes)}
    latest: dict[int, Counts] = {}
    finals: dict[int, dict[str, Any]] = {}
    sel = selectors.DefaultSelector()
    open_pipes = len(buffers)
    next_report = 0.0
    try:
        for r in buffers:
            sel.register(r, selectors.EVENT_READ)
        while open_pipes:
            for key, _ in sel.select(timeout=0.1):
                r = int(key.fd)
                data = os.read(r, 65536)
                if not data:
                    sel.unregister(r)
                    open_pipes -= 1
                    continue
                buf = buffers[r]
                buf += data
                _parse(buf, index[r], latest, finals)
            now = time.monotonic()
            if progress is not None and latest and now >= next_report:
                next_report = now + 0.1
                progress(_sum(latest.values()))
    finally:
        sel.close()
    results: list[tuple[dict[str, Any], str | None]] = []
    for k in list(pids):
        # Forget the pid only once reaped: an interrupted wait leaves it to the caller's cleanup.
        _, status = os.waitpid(pids[k], 0)
        del pids[k]
        final = finals.get(k)
        if final is not None and status == 0:
            results.append((final, None))
            continue
        if os.WIFSIGNALED(status):
            why = f"{k} killed by {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            why = f"{k} exit status {os.waitstatus_to_exitcode(status)}"
        counts = latest.get(k, (0, 0, 0, 0))
        results.append(
            (
                final
                or {
                    "visited": counts[0],
                    "changed": counts[1],
                    "unchanged": counts[2],
                    "failed": counts[3],
                },
                why,
            )
        )
    return results


def _parse(
    buf: bytearray, k: int, latest: dict[int, Counts], finals: dict[int, dict[str, Any]]
) -> None:
    while buf:
        if buf[0:1] == b"P":
            if len(buf) < 1 + PROGRESS.size:
                return
            latest[k] = PROGRESS.unpack_from(buf, 1)
            del buf[: 1 + PROGRESS.size]
        elif buf[0:1] == b"F":
            if len(buf) < 5:
                return
            (size,) = struct.unpack_from("<I", buf, 1)
            if len(buf) < 5 + size:
                return
            finals[k] = marshal.loads(bytes(buf[5 : 5 + size]))
            del buf[: 5 + size]
        else:
            raise RuntimeError(f"relabel worker {k} sent garbage")


def _sum(counts: Iterable[Counts]) -> Counts:
    v = c = u = f = 0
    for a, b, x, y in counts:
        v, c, u, f = v + a, c + b, u + x, f + y
    return v, c, u, f


__all__ = [
    "Counts",
    "Task",
    "fork_workers",
    "run",
]
