"""Guest-side driver of the kernel lane (runs as kernel_t in the guest's chroot).

Reads ``plan.json`` (written by ``lane.py plan`` on the host: verify's answers
and the contexts to create), loads the policy into the kernel, builds the
objects on a labeled tmpfs, starts one probe (``probe.py``) per level in the
container domain while permissive, switches to enforcing, lets each probe run
its syscalls, and writes what the kernel answered to ``guest.json``: each
test's outcome, the kernel's own access vector for every cell (the security
server behind ``/sys/fs/selinux/access``), the AVC lines, the MCS-for-real and
discovery sections; then the Docker stage (``docker_stage.py``) adds its
``docker`` section. ``lane.py report`` on the host compares.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SELINUXFS = Path("/sys/fs/selinux")
# A tmpfs of its own (mounted after the policy load, so it is labeled), inside the
# guest's /run (a tmpfs hiding the host's /run; nothing else of the host is hidden).
ROOT = Path("/run/lane")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYTHON = os.path.realpath(sys.executable)
MCSLABEL = str(REPO / ".venv" / "bin" / "mcslabel")
WAIT = 120.0  # seconds a probe may take to stop or to finish
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[guest {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def write_file(path: Path | str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def setenforce(on: bool) -> None:
    write_file(SELINUXFS / "enforce", "1" if on else "0")
    assert (SELINUXFS / "enforce").read_text().strip() == ("1" if on else "0")


def load_policy(policy_file: str) -> None:
    data = Path(policy_file).read_bytes()
    fd = os.open(SELINUXFS / "load", os.O_WRONLY)
    try:  # the whole file in one write(2), as load_policy does
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):
        raise RuntimeError(f"short policy write {written}/{len(data)}")


def set_label(path: Path | str, context: str) -> None:
    os.setxattr(path, "security.selinux", context.encode() + b"\0", follow_symlinks=False)


def get_label(path: Path | str) -> str:
    return os.getxattr(path, "security.selinux", follow_symlinks=False).rstrip(b"\0").decode()


def valid_context(context: str) -> bool:
    fd = os.open(SELINUXFS / "context", os.O_RDWR)
    try:
        os.write(fd, context.encode() + b"\0")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class SecurityServer:
    """The kernel's access vector for (scontext, tcontext, class): selinuxfs 'access'."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.bits: dict[tuple[str, str], int] = {}
        self.vectors: dict[tuple[str, str, str], int] = {}

    def _class(self, tclass: str) -> int:
        if tclass not in self.index:
            self.index[tclass] = int((SELINUXFS / "class" / tclass / "index").read_text())
        return self.index[tclass]

    def _bit(self, tclass: str, perm: str) -> int:
        key = (tclass, perm)
        if key not in self.bits:
            value = int((SELINUXFS / "class" / tclass / "perms" / perm).read_text())
            self.bits[key] = 1 << (value - 1)
        return self.bits[key]

    def allowed(self, scontext: str, tcontext: str, tclass: str, perm: str) -> bool:
        key = (scontext, tcontext, tclass)
        if key not in self.vectors:
            fd = os.open(SELINUXFS / "access", os.O_RDWR)
            try:
                os.write(fd, f"{scontext} {tcontext} {self._class(tclass)}".encode())
                self.vectors[key] = int(os.read(fd, 4096).decode().split()[0], 16)
            finally:
                os.close(fd)
        return bool(self.vectors[key] & self._bit(tclass, perm))


class Kmsg:
    """The kernel log, read incrementally from /dev/kmsg."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        self.lines: list[str] = []

    def drain(self) -> list[str]:
        new: list[str] = []
        while True:
            try:
                record = os.read(self.fd, 16384).decode("utf-8", "replace")
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten records: go on with the next
                new.append("lane: kmsg records were overwritten")
                continue
            _, _, message = record.partition(";")
            new.append(message.split("\n", 1)[0])
        self.lines += new
        return new


AVC = re.compile(
    r"avc:\s+denied\s+\{ (?P<perms>[^}]*) \} for\s+pid=(?P<pid>\d+)(?P<rest>.*?)"
    r"tcontext=(?P<tcontext>\S+) tclass=(?P<tclass>\S+)"
)
NAME = re.compile(r'(?:name|path)="([^"]*)"')


def parse_avcs(lines: list[str]) -> list[dict[str, Any]]:
    avcs = []
    for line in lines:
        m = AVC.search(line)
        if not m:
            continue
        names = NAME.findall(m["rest"])
        avcs.append(
            {
                "pid": int(m["pid"]),
                "perms": m["perms"].split(),
                "name": os.path.basename(names[0]) if names else "",
                "tcontext": m["tcontext"],
                "tclass": m["tclass"],
                "line": line[line.find("avc:") :],
            }
        )
    return avcs


# --- objects and tests --------------------------------------------------------

O_DIR = os.O_RDONLY | os.O_DIRECTORY
# The permissions plan_tests() looks at before choosing a syscall.
NEEDS = [("file", p) for p in ("read", "write", "append", "open")] + [
    ("dir", p) for p in ("read", "write", "search")
]


def plan_tests(
    cell: dict[str, Any], obj: dict[str, str], av: dict[tuple[str, str], bool]
) -> dict[str, Any] | None:
    """The syscall that exercises exactly ``cell``'s permission, or None.

    Every other permission the syscall needs is on objects the probe owns
    (its directory, children labeled at its own level) — or, where the
    permission can only be reached through other permissions on the same
    object (``open`` needs read, write or append; ``add_name`` and
    ``remove_name`` need dir write and search), those permissions must be
    allowed by the kernel, else no syscall can isolate the cell.
    """
    tclass, perm = cell["class"], cell["perm"]
    if tclass == "file":
        f = obj["file"]
        if perm in ("read", "write", "execute"):
            return {"op": "access", "path": f, "mode": {"read": 4, "write": 2, "execute": 1}[perm]}
        if perm == "getattr":
            return {"op": "stat", "path": f}
        if perm == "append" and av[("file", "open")]:
            return {"op": "open", "path": f, "flags": os.O_WRONLY | os.O_APPEND}
        if perm == "open":
            for need, flags in (
                ("read", os.O_RDONLY),
                ("write", os.O_WRONLY),
                ("append", os.O_WRONLY | os.O_APPEND),
            ):
                if av[("file", need)]:
                    return {"op": "open", "path": f, "flags": flags}
            return None
        if perm == "unlink":
            return {"op": "unlink", "path": f, "last": True}
        return None
    if tclass == "dir":
        d = obj["dir"]
        if perm in ("read", "write"):
            return {"op": "access", "path": d, "mode": {"read": 4, "write": 2}[perm]}
        if perm == "search":
            return {"op": "stat", "path": obj["child"]}
        if perm == "getattr":
            return {"op": "stat", "path": d}
        if perm == "open" and av[("dir", "read")]:
            return {"op": "open", "path": d, "flags": O_DIR}
        can_name = av[("dir", "write")] and av[("dir", "search")]
        if perm == "add_name" and can_name:
            return {"op": "rename", "path": obj["mover"], "to": obj["moved"]}
        if perm == "remove_name" and can_name:
            return {"op": "unlink", "path": obj["victim"]}
    return None


def make_objects(pdir: str, j: int, context: str, own: str) -> dict[str, str]:
    """A file and a directory labeled ``context``; helpers around them labeled ``own``."""
    names = {
        "file": f"{pdir}/f{j}",
        "dir": f"{pdir}/d{j}",
        "child": f"{pdir}/d{j}/k{j}",
        "victim": f"{pdir}/d{j}/r{j}",
        "mover": f"{pdir}/m{j}",
        "moved": f"{pdir}/d{j}/m{j}",
    }
    os.mkdir(ROOT / names["dir"], 0o777)
    os.chmod(ROOT / names["dir"], 0o777)
    for key in ("file", "child", "victim", "mover"):
        p = ROOT / names[key]
        p.write_text("lane\n")
        os.chmod(p, 0o777)
        set_label(p, own)
    set_label(ROOT / names["file"], context)
    set_label(ROOT / names["dir"], context)
    return names


def start_probe(context: str, planfile: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["runcon", context, PYTHON, "-I", "-S", str(HERE / "probe.py"), str(planfile)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


def wait_pid(pid: int, stopped: bool) -> tuple[str, int]:
    deadline = time.monotonic() + WAIT
    flags = os.WNOHANG | (os.WUNTRACED if stopped else 0)
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, flags)
        if got:
            if os.WIFSTOPPED(status):
                return "stopped", 0
            return "exited", os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):  # never leave a hung probe behind
        os.kill(pid, signal.SIGKILL)
    return "timeout", -1


def snapshot(top: Path) -> dict[str, str]:
    labels = {".": get_label(top)}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            labels[str(p.relative_to(top))] = get_label(p)
    return labels


def run_cli(args: list[str]) -> dict[str, Any]:
    t = time.monotonic()
    proc = subprocess.run(
        [MCSLABEL, *args], capture_output=True, text=True, timeout=WAIT, check=False
    )
    return {
        "argv": ["mcslabel", *args],
        "status": proc.returncode,
        "stdout": proc.stdout[-4000:],
        "stderr": proc.stderr[-4000:],
        "seconds": round(time.monotonic() - t, 2),
    }


# --- the run ------------------------------------------------------------------


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    out: dict[str, Any] = {"errors": [], "timings": {}}
    try:
        run(plan, out)
    except Exception as exc:  # report, never hang: the host fails the lane on errors
        import traceback

        out["errors"].append(traceback.format_exc())
        log(f"error: {exc!r}")
        with contextlib.suppress(OSError):
            setenforce(False)
    Path(sys.argv[2]).write_text(json.dumps(out, indent=1))  # kept if the stage times out
    if plan.get("docker") and "skipped" not in plan["docker"] and out.get("policy_loaded"):
        sys.path.insert(0, str(HERE))  # -I leaves the script's directory out
        import docker_stage

        log("docker stage")
        out["docker"] = docker_stage.run(
            plan["docker"], log, valid_context, SecurityServer().allowed
        )
        log(f"docker stage done in {out['docker'].get('timings', {}).get('stage')}s")
    Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
    log("wrote guest results")
    return 0


def run(plan: dict[str, Any], out: dict[str, Any]) -> None:
    subprocess.run(["mount", "-t", "selinuxfs", "selinuxfs", str(SELINUXFS)], check=True)
    subprocess.run(["mount", "-t", "securityfs", "securityfs", "/sys/kernel/security"], check=False)
    Path("/proc/sys/kernel/printk_ratelimit").write_text("0\n")  # keep every AVC line
    kmsg = Kmsg()
    out["kernel"] = os.uname().release
    out["lsm"] = (
        Path("/sys/kernel/security/lsm").read_text().strip()
        if Path("/sys/kernel/security/lsm").exists()
        else ""
    )
    t = time.monotonic()
    load_policy(plan["policy_file"])
    out["timings"]["policy_load"] = round(time.monotonic() - t, 2)
    out["policy_loaded"] = plan["policy_file"]
    out["policyvers"] = (SELINUXFS / "policyvers").read_text().strip()
    out["mls"] = (SELINUXFS / "mls").read_text().strip()
    setenforce(False)
    log(f"policy {plan['policy_file']} loaded in {out['timings']['policy_load']}s")

    ROOT.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(ROOT)], check=True)
    ftype = plan["file_type"]
    shared = f"{plan['file_user']}:{plan['file_role']}:{ftype}:s0"
    set_label(ROOT, shared)
    av = SecurityServer()

    # Validate every context the plan asks for in the loaded policy.
    contexts = {p["context"] for p in plan["probes"]} | {
        c["context"] for p in plan["probes"] for c in p["cells"]
    }
    bad = sorted(c for c in contexts if not valid_context(c))
    if bad:
        raise RuntimeError(f"contexts invalid in the loaded policy: {bad}")

    # The volume for MCS for real: varied old labels, then mcslabel relabel.
    vol = ROOT / "vol"
    vol_info: dict[str, Any] = {}
    if plan.get("volume"):
        volume = plan["volume"]
        (vol / "sub").mkdir(parents=True)
        (vol / "data").write_text("volume data\n")
        (vol / "sub" / "deep").write_text("deep\n")
        for i, _ in enumerate(plan["probes"]):
            (vol / f"victim-{i}").write_text("victim\n")
        for p in [vol, *vol.rglob("*")]:
            os.chmod(p, 0o777)
        old = volume["old_labels"]
        set_label(vol, old["."])
        for p in vol.rglob("*"):
            set_label(p, old.get(str(p.relative_to(vol)), old["*"]))
        vol_info["before"] = snapshot(vol)
        args = ["relabel", str(vol), "--level", volume["level"], "--journal"]
        args += [str(ROOT / "journal"), "--json"]
        if plan.get("policy_root"):
            args += ["--policy-root", plan["policy_root"]]
        vol_info["relabel"] = run_cli(args)
        vol_info["after_relabel"] = snapshot(vol)
        log(f"relabel exited {vol_info['relabel']['status']}")

    # Objects, the kernel's access vectors and the tests, per probe.
    probes: list[dict[str, Any]] = []
    j = 0
    for i, probe in enumerate(plan["probes"]):
        pdir = f"p{i}"
        own = f"{plan['file_user']}:{plan['file_role']}:{ftype}:{probe['level']}"
        os.mkdir(ROOT / pdir, 0o777)
        os.chmod(ROOT / pdir, 0o777)
        set_label(ROOT / pdir, own)
        tests: list[dict[str, Any]] = []
        last: list[dict[str, Any]] = []
        cells_out = []
        objects: dict[str, dict[str, str]] = {}
        for cell in probe["cells"]:
            ctx = cell["context"]
            key = f"{cell['section']} {cell['key']}"  # one object pair per path, never shared
            if key not in objects:
                objects[key] = make_objects(pdir, j, ctx, own)
                j += 1
            obj = objects[key]
            vec = {(tc, pm): av.allowed(probe["context"], ctx, tc, pm) for tc, pm in NEEDS}
            kernel_av = av.allowed(probe["context"], ctx, cell["class"], cell["perm"])
            test = plan_tests(cell, obj, vec)
            entry = {"id": cell["id"], "kernel_av": kernel_av, "test": None, "objects": []}
            if test is not None:
                test["id"] = len(tests) + len(last)
                # AVC lines name the object checked: the cell's file or directory,
                # or the entry moved or removed (add_name, remove_name).
                objects_named = [
                    os.path.basename(obj["file" if cell["class"] == "file" else "dir"]),
                    os.path.basename(test["path"]),
                    os.path.basename(test.get("to", "")),
                ]
                entry["test"] = test
                entry["objects"] = objects_named
                (last if test.pop("last", False) else tests).append(test)
            cells_out.append(entry)
        ops = []
        for op in probe.get("volume_ops", []):
            name = op["op"]
            path = {
                "read_file": "vol/data",
                "write_file": "vol/data",
                "list_dir": "vol",
                "create": f"vol/new-{i}",
                "unlink": f"vol/victim-{i}",
            }[name]
            t_ = {"op": name, "path": path, "id": len(tests) + len(last)}
            tests.append(t_)
            ops.append({"op": name, "test": t_})
        probe_plan = {
            "cwd": str(ROOT),
            "out": f"{pdir}/result.json",
            "null": f"{pdir}/null",
            "tests": tests + last,
        }
        planfile = ROOT / f"{pdir}.plan.json"
        planfile.write_text(json.dumps(probe_plan))
        probes.append(
            {
                "name": probe["name"],
                "level": probe["level"],
                "context": probe["context"],
                "dir": pdir,
                "planfile": planfile,
                "cells": cells_out,
                "volume_ops": ops,
                "sleeper": probe.get("sleeper", False),
            }
        )
    log(f"{j} object pairs created for {len(probes)} probes")

    # Start every probe while permissive; each stops itself once ready.
    t = time.monotonic()
    procs = {}
    for p in probes:
        procs[p["name"]] = proc = start_probe(p["context"], p["planfile"])
        state, _ = wait_pid(proc.pid, stopped=True)
        p["pid"] = proc.pid
        if state != "stopped":
            raise RuntimeError(f"probe {p['name']} did not stop: {state}")
        p["attr_current"] = Path(f"/proc/{proc.pid}/attr/current").read_text().rstrip("\0\n")
    out["timings"]["probes_started"] = round(time.monotonic() - t, 2)
    log(f"{len(probes)} probes stopped and waiting")

    kmsg.drain()
    setenforce(True)
    out["enforcing_during_checks"] = (SELINUXFS / "enforce").read_text().strip() == "1"
    t = time.monotonic()
    for p in probes:
        if p["sleeper"]:
            continue
        os.kill(p["pid"], signal.SIGCONT)
        p["state"], p["status"] = wait_pid(p["pid"], stopped=False)
        result = ROOT / p["dir"] / "result.json"
        p["results"] = json.loads(result.read_text())["results"] if result.exists() else None
    out["timings"]["probes_ran"] = round(time.monotonic() - t, 2)
    out["enforcing_after_checks"] = (SELINUXFS / "enforce").read_text().strip() == "1"
    log("probes ran")

    # Discovery: only the sleepers are alive now (stopped, at their levels).
    if plan.get("discovery"):
        try:
            out["discovery"] = discovery(plan["discovery"], probes)
        except Exception:  # reported; the rest of the run still completes
            import traceback

            out["errors"].append(traceback.format_exc())
        log("discovery done")
    for p in probes:
        if p["sleeper"]:
            os.kill(p["pid"], signal.SIGCONT)
            p["state"], p["status"] = wait_pid(p["pid"], stopped=False)
    setenforce(False)

    if plan.get("volume"):
        vol_info["restore"] = run_cli(["restore", str(ROOT / "journal"), "--json"])
        vol_info["after_restore"] = snapshot(vol)
        log(f"restore exited {vol_info['restore']['status']}")
    out["volume"] = vol_info

    time.sleep(1.0)  # let kauditd print the last AVCs
    kmsg.drain()
    avcs = parse_avcs(kmsg.lines)
    out["avc_lines"] = len(avcs)
    out["audit_lost"] = [ln for ln in kmsg.lines if "audit: " in ln and "lost" in ln][:10]
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for a in avcs:
        by_pid.setdefault(a["pid"], []).append(a)
    for p in probes:
        mine = by_pid.get(p["pid"], [])
        results = {r["id"]: r for r in (p.get("results") or [])}
        cls = {c["id"]: (c["class"], c["perm"]) for c in plan_cells(plan, p["name"])}
        for entry in p["cells"]:
            test = entry["test"]
            if test is not None:
                tclass, perm = cls[entry["id"]]
                entry["result"] = results.get(test["id"])
                entry["avc"] = [
                    a["line"]
                    for a in mine
                    if a["name"] in entry["objects"]
                    and a["tclass"] == tclass
                    and perm in a["perms"]
                ]
        for op in p["volume_ops"]:
            op["result"] = results.get(op["test"]["id"])
            op["avc"] = [
                a["line"]
                for a in mine
                if a["name"] in ("vol", "data") or a["name"].startswith(("new-", "victim-"))
            ]
        p["planfile"] = str(p["planfile"])
    out["probes"] = probes
    out["avcs"] = avcs

    # The context-mount stage (its own module): mcslabel mount on virtio disks.
    sys.path.insert(0, str(HERE))  # -I leaves the script's directory off sys.path
    import mount_stage

    out["context_mount"] = mount_stage.run_guest(sys.modules[__name__])


def plan_cells(plan: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return next(p["cells"] for p in plan["probes"] if p["name"] == name)


def discovery(spec: dict[str, Any], probes: list[dict[str, Any]]) -> dict[str, Any]:
    from mcslabel import Allocator, Level, SpaceExhausted, open_store

    live = [p for p in probes if p["sleeper"]]
    alloc = Allocator(open_store("memory://"), categories=spec["categories"], host="lane-guest")
    t = time.monotonic()
    found = alloc.reserve_in_use()
    seconds = round(time.monotonic() - t, 3)
    free_before = alloc.free_pairs
    allocated: list[str] = []
    while True:
        try:
            allocated.append(str(alloc.allocate(f"lane:{len(allocated)}").level))
        except SpaceExhausted:
            break
    levels = [Level.parse(p["level"], categories=spec["categories"]) for p in live]
    comparable = [(a, str(lv)) for a in allocated for lv in levels if Level.parse(a).comparable(lv)]
    return {
        "live": [
            {"pid": p["pid"], "level": p["level"], "attr_current": p["attr_current"]} for p in live
        ],
        "found": [d.to_dict() for d in found],
        "seconds": seconds,
        "free_pairs_after_reserve": free_before,
        "allocated": len(allocated),
        "allocated_levels": allocated,
        "comparable_to_live": comparable,
        "enforcing": (SELINUXFS / "enforce").read_text().strip() == "1",
    }


if __name__ == "__main__":
    sys.exit(main())
