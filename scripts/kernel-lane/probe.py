"""A probe of the kernel lane: runs in the container domain at one level.

Started by the guest driver with ``runcon`` while the kernel is permissive; it
imports everything, takes its own stdio, stops itself (SIGSTOP), and once the
driver has switched to enforcing and sent SIGCONT, runs its tests: one syscall
each, on relative names below the cwd (a labeled tmpfs; the 9p root is
unlabeled_t, so nothing may be looked up through ``/``). Writes
``{"pid", "results": [...]}`` to its result file and exits.

Python's standard library only; nothing may be imported or opened by name
after SIGCONT except the test objects.
"""

import errno
import json
import os
import signal
import sys


def _attempt(test):
    op, path = test["op"], test["path"]
    if op == "access":
        if not os.access(path, test["mode"]):
            raise OSError(errno.EACCES, "access")
    elif op == "stat":
        os.stat(path)
    elif op == "open":
        os.close(os.open(path, test["flags"]))
    elif op == "unlink":
        os.unlink(path)
    elif op == "rename":
        os.rename(path, test["to"])
    elif op == "read_file":
        fd = os.open(path, os.O_RDONLY)
        try:
            os.read(fd, 64)
        finally:
            os.close(fd)
    elif op == "write_file":
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"probe\n")
        finally:
            os.close(fd)
    elif op == "list_dir":
        os.listdir(path)
    elif op == "create":
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    else:
        raise ValueError(op)


def main():
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    os.chdir(plan["cwd"])
    out = os.open(plan["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    # Own stdio: inherited console fds belong to kernel_t and may not be used.
    null = os.open(plan["null"], os.O_RDWR | os.O_CREAT, 0o666)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.kill(os.getpid(), signal.SIGSTOP)
    # -- enforcing from here on --
    results = []
    for test in plan["tests"]:
        try:
            _attempt(test)
            results.append({"id": test["id"], "ok": True, "errno": ""})
        except OSError as exc:
            results.append(
                {"id": test["id"], "ok": False, "errno": errno.errorcode.get(exc.errno, "?")}
            )
    os.write(out, json.dumps({"pid": os.getpid(), "results": results}).encode())
    os.close(out)
    os._exit(0)


main()
