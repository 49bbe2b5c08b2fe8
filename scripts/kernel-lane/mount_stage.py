"""The context-mount stage of the kernel lane (issue 16; docs/kernel.md).

A context mount labels a whole file system at mount time: ``mcslabel mount
SOURCE TARGET --level L`` mounts with ``context="...:container_file_t:L"``, so
every file reads as that context, nothing is walked, no xattr is written. The
stage proves it on the live SELinux kernel, next to ``mcslabel relabel``:

``prepare`` (host, before boot) builds ext4 images holding N empty files
(1000 per directory, plus ``data`` with content) with ``mkfs.ext4 -d``, cached
in ``build/kernel-lane/images/`` (they survive the lane's clean-up, so CI
builds them once per run), copies each into ``build/kernel-lane/mount/`` for
this run (``ctx-N.img`` for the context mount, ``rel-N.img`` for relabel),
writes ``mount-plan.json`` and prints the QEMU ``-drive`` arguments (virtio
block devices, told apart by their serial).

``run_guest`` (in the guest, called by guest.py at the end): ``mcslabel mount``
of each ``ctx`` device at ``s0:c1,c2``; every file's label read through the
mount (getxattr = ``getfilecon``); ``setxattr`` must fail; probes in
``container_t:s0:c1,c2`` and ``s0:c3,c4`` read and list there in enforcing
mode; unmount; ``mcslabel relabel`` of the ``rel`` devices (mounted plainly).

``report_section`` (host, lane.py report): the guest's answers, then the
copies are loop-mounted read-only on the host (no SELinux there: getxattr reads
the disk) and every inode's ``security.selinux`` is counted: none on the
context-mounted copy, one per file at the level on the relabeled copy (the
same check finds them, so it can fail). The mount must take about as long for
1M files as for 10k (O(1)); relabel grows with N.

Usage: ``mount_stage.py prepare OUT [--sizes 10k,1m] [--relabel-sizes 10k]
[--walk-limit N]`` (prints the ``-drive`` arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LEVEL = "s0:c1,c2"
OTHER = "s0:c3,c4"
PER_DIR = 1000
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
XATTR = "security.selinux"
# The mount's duration may grow by this factor from the smallest to the
# largest image (noise under TCG), plus this many seconds; relabel grows ~N.
O1_FACTOR, O1_SLACK = 2.0, 2.0
IMAGE_VERSION = 1  # bump when the layout changes: the cache is keyed on it


def _log(msg: str) -> None:
    print(f"[lane] mount stage: {msg}", file=sys.stderr, flush=True)


# --- host: images -------------------------------------------------------------


def _layout(n: int) -> list[tuple[str, int]]:
    """(directory, files in it) for N files, PER_DIR a directory."""
    return [(f"d{i}", min(PER_DIR, n - i * PER_DIR)) for i in range((n + PER_DIR - 1) // PER_DIR)]


def expected_entries(n: int) -> int:
    """Inodes below the root that the walk sees: files, directories, data, lost+found."""
    return n + len(_layout(n)) + 2


def build_image(path: Path, n: int) -> dict[str, Any]:
    """An ext4 image with ``n`` empty files (mkfs.ext4 -d from a tmpfs tree)."""
    t0 = time.monotonic()
    dirs = _layout(n)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # a tmpfs: no xattrs to copy
    with tempfile.TemporaryDirectory(prefix="kmount-tree-", dir=shm) as tree:
        top = Path(tree)
        (top / "data").write_text("context-mounted data\n")
        for d, count in dirs:
            os.mkdir(top / d)
            for j in range(count):
                os.close(os.open(top / d / f"f{j}", os.O_WRONLY | os.O_CREAT, 0o644))
        t_tree = time.monotonic() - t0
        inodes = n + len(dirs) + 1024
        size_mb = 64 + (inodes * 256 + n * 40) // (1 << 20) * 2
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        subprocess.run(["truncate", "-s", f"{size_mb}M", str(tmp)], check=True)
        subprocess.run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-b",
                "4096",
                "-I",
                "256",
                "-N",
                str(inodes),
                "-E",
                "root_owner=0:0",
                "-L",
                f"kmount{n}",
                "-d",
                str(top),
                str(tmp),
            ],
            check=True,
        )
    tmp.rename(path)
    info = {
        "files": n,
        "entries": expected_entries(n),
        "size_mb": size_mb,
        "tree_seconds": round(t_tree, 1),
        "build_seconds": round(time.monotonic() - t0, 1),
        "version": IMAGE_VERSION,
    }
    path.with_suffix(".json").write_text(json.dumps(info))
    return info


def cached_image(cache: Path, n: int) -> tuple[Path, dict[str, Any], bool]:
    path = cache / f"files-{n}.img"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("version") == IMAGE_VERSION:
            return path, info, True
    cache.mkdir(parents=True, exist_ok=True)
    _log(f"building the {n}-file image (cached in {cache})")
    return path, build_image(path, n), False


def prepare(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    names = [s for s in args.sizes.split(",") if s]
    relabel = {s for s in args.relabel_sizes.split(",") if s}
    for s in [*names, *relabel]:
        if s not in SIZES:
            raise SystemExit(f"unknown size {s!r}: one of {', '.join(SIZES)}")
    if not names:
        relabel = set()  # the stage is off
    if not relabel <= set(names):
        raise SystemExit(f"relabel sizes {sorted(relabel - set(names))} are not mounted sizes")
    work = out / "mount"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    drives: list[str] = []
    sizes = []
    for name in names:
        n = SIZES[name]
        base, info, cached = cached_image(out / "images", n)
        entry: dict[str, Any] = {"name": name, "files": n, "image": info, "cached": cached}
        t = time.monotonic()
        for role in ("ctx", *(["rel"] if name in relabel else [])):
            copy = work / f"{role}-{name}.img"
            subprocess.run(["cp", "--sparse=always", str(base), str(copy)], check=True)
            entry[role] = {"image": str(copy), "serial": f"{role}-{name}"}
            drives += [
                "-drive",
                f"file={copy},format=raw,if=none,id={role}-{name},cache=unsafe",
                "-device",
                f"virtio-blk-pci,drive={role}-{name},serial={role}-{name}",
            ]
        entry["copy_seconds"] = round(time.monotonic() - t, 1)
        sizes.append(entry)
        how = "cached" if cached else f"built in {info['build_seconds']}s"
        _log(f"{name}: image {how}, copied in {entry['copy_seconds']}s")
    plan = {
        "level": LEVEL,
        "other": OTHER,
        "sizes": sizes,
        "walk_limit": args.walk_limit,
        "policy_root": args.policy_root,
    }
    (out / "mount-plan.json").write_text(json.dumps(plan, indent=1))
    print(" ".join(drives))
    return 0


# --- guest --------------------------------------------------------------------


def _devices(serials: set[str], timeout: float = 30.0) -> dict[str, str]:
    """serial -> /dev/vdX, once the virtio block devices are there."""
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        for block in Path("/sys/block").glob("vd*"):
            with contextlib.suppress(OSError):
                serial = (block / "serial").read_text().strip()
                if serial in serials and Path("/dev", block.name).exists():
                    found[serial] = f"/dev/{block.name}"
        if serials <= set(found):
            break
        time.sleep(0.2)
    return found


def _cli(g: Any, args: list[str], timeout: float) -> dict[str, Any]:
    t = time.monotonic()
    proc = subprocess.run(
        [g.MCSLABEL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    doc: dict[str, Any] = {
        "argv": ["mcslabel", *args],
        "status": proc.returncode,
        "stderr": proc.stderr[-2000:],
        "seconds": round(time.monotonic() - t, 2),
    }
    try:
        doc["json"] = json.loads(proc.stdout)
    except ValueError:
        doc["stdout"] = proc.stdout[-2000:]
    return doc


def _walk_labels(top: Path, expected: str, limit: int) -> dict[str, Any]:
    """getxattr(security.selinux) (getfilecon) on every entry, or the first ``limit``."""
    t = time.monotonic()
    seen = wrong = 0
    samples: list[str] = []
    root_label = os.getxattr(top, XATTR).rstrip(b"\0").decode()
    done = False
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort(key=lambda d: int(d[1:]) if d[1:].isdigit() else -1)
        for name in dirnames + filenames:
            label = os.getxattr(os.path.join(dirpath, name), XATTR, follow_symlinks=False)
            seen += 1
            if label.rstrip(b"\0").decode() != expected:
                wrong += 1
                if len(samples) < 5:
                    samples.append(f"{dirpath}/{name}: {label!r}")
            if limit and seen >= limit:
                done = True
                break
        if done:
            break
    return {
        "root": root_label,
        "entries": seen,
        "wrong": wrong,
        "samples": samples,
        "limited_to": limit or None,
        "seconds": round(time.monotonic() - t, 2),
    }


def _setxattr_errno(path: Path, context: str) -> str:
    try:
        os.setxattr(path, XATTR, context.encode() + b"\0")
    except OSError as exc:
        # EOPNOTSUPP and ENOTSUP are one number on Linux; errorcode names it ENOTSUP.
        return (
            "EOPNOTSUPP"
            if exc.errno == errno.EOPNOTSUPP
            else errno.errorcode.get(exc.errno or 0, "?")
        )
    return "ok"


def _probe(g: Any, level: str, tests: list[dict[str, Any]], tag: str) -> dict[str, Any]:
    """One probe of guest.py's kind at ``level`` (started while permissive; stopped)."""
    context = f"system_u:system_r:container_t:{level}"
    pdir = g.ROOT / f"mp-{tag}"
    pdir.mkdir()
    os.chmod(pdir, 0o777)
    own = f"system_u:object_r:container_file_t:{level}"
    with contextlib.suppress(OSError):
        g.set_label(pdir, own)
    planfile = g.ROOT / f"mp-{tag}.plan.json"
    for i, t in enumerate(tests):
        t["id"] = i
    planfile.write_text(
        json.dumps(
            {
                "cwd": str(g.ROOT),
                "out": f"mp-{tag}/result.json",
                "null": f"mp-{tag}/null",
                "tests": tests,
            }
        )
    )
    proc = g.start_probe(context, planfile)
    state, _ = g.wait_pid(proc.pid, stopped=True)
    attr = Path(f"/proc/{proc.pid}/attr/current").read_text().rstrip("\0\n")
    return {
        "level": level,
        "context": context,
        "pid": proc.pid,
        "state": state,
        "attr_current": attr,
        "dir": pdir,
        "tests": tests,
    }


def run_guest(g: Any) -> dict[str, Any]:
    """The stage in the guest; ``g`` is guest.py (its helpers and ROOT)."""
    plan_path = Path("mount-plan.json")  # the cwd is the lane's output directory
    if not plan_path.exists():
        return {"skipped": "no mount-plan.json (run.sh did not prepare the images)"}
    plan = json.loads(plan_path.read_text())
    res: dict[str, Any] = {"sizes": [], "errors": []}
    if not plan["sizes"]:
        return {**res, "skipped": "no sizes asked for"}
    g.setenforce(False)
    for mod in ("virtio_blk", "ext4"):
        done = subprocess.run(["modprobe", mod], capture_output=True, text=True, check=False)
        if done.returncode:
            res["errors"].append(f"modprobe {mod}: {done.stderr.strip()}")
    serials = {s[r]["serial"] for s in plan["sizes"] for r in ("ctx", "rel") if r in s}
    devices = _devices(serials)
    res["devices"] = devices
    level, other = plan["level"], plan["other"]
    expected = f"system_u:object_r:container_file_t:{level}"
    extra = ["--policy-root", plan["policy_root"]] if plan.get("policy_root") else []
    mounted: list[tuple[dict[str, Any], Path]] = []
    for size in plan["sizes"]:
        name, entry = size["name"], {"name": size["name"], "files": size["files"]}
        res["sizes"].append(entry)
        dev = devices.get(size["ctx"]["serial"])
        if dev is None:
            res["errors"].append(f"{name}: no device with serial {size['ctx']['serial']}")
            continue
        target = g.ROOT / f"ctx-{name}"
        target.mkdir()
        entry["mount"] = m = _cli(
            g, ["mount", dev, str(target), "--level", level, "--json", *extra], 300
        )
        g.log(
            f"context mount {name}: exit {m['status']} in {m['seconds']}s "
            f"(mount {m.get('json', {}).get('duration')}s)"
        )
        if m["status"] != 0:
            continue
        mounted.append((entry, target))
        entry["mountinfo"] = [
            ln
            for ln in Path("/proc/self/mountinfo").read_text().splitlines()
            if f" {target} " in ln
        ]
        limit = plan["walk_limit"] if size["files"] > plan["walk_limit"] > 0 else 0
        entry["labels"] = _walk_labels(target, expected, limit)
        g.log(
            f"labels {name}: {entry['labels']['entries']} entries read in "
            f"{entry['labels']['seconds']}s, {entry['labels']['wrong']} wrong"
        )
        entry["setxattr"] = _setxattr_errno(target / "data", expected.replace(level, other))
    # Probes at the level and at a disjoint one: read and list on every context mount.
    if mounted:
        tests = []
        for entry, target in mounted:
            rel = target.relative_to(g.ROOT)
            tests += [
                {"op": "read_file", "path": f"{rel}/data", "size": entry["name"]},
                {"op": "read_file", "path": f"{rel}/d0/f0", "size": entry["name"]},
                {"op": "list_dir", "path": f"{rel}/d0", "size": entry["name"]},
            ]
        probes = [
            _probe(g, lv, [dict(t) for t in tests], tag)
            for lv, tag in ((level, "same"), (other, "other"))
        ]
        g.setenforce(True)
        res["enforcing"] = (g.SELINUXFS / "enforce").read_text().strip() == "1"
        for p in probes:
            if p["state"] != "stopped":
                continue
            os.kill(p["pid"], signal.SIGCONT)
            p["state"], p["status"] = g.wait_pid(p["pid"], stopped=False)
            result = p.pop("dir") / "result.json"
            p["results"] = json.loads(result.read_text())["results"] if result.exists() else None
        g.setenforce(False)
        for p in probes:
            p.pop("dir", None)
        res["probes"] = probes
    for entry, target in mounted:
        t = time.monotonic()
        done = subprocess.run(["umount", str(target)], capture_output=True, text=True)
        entry["umount"] = {
            "status": done.returncode,
            "stderr": done.stderr.strip(),
            "seconds": round(time.monotonic() - t, 2),
        }
    # Relabel, side by side: the same tree on a plain mount.
    for size, entry in zip(plan["sizes"], res["sizes"], strict=True):
        dev = devices.get(size.get("rel", {}).get("serial", ""))
        if "rel" not in size:
            continue
        if dev is None:
            res["errors"].append(f"{size['name']}: no relabel device")
            continue
        target = g.ROOT / f"rel-{size['name']}"
        target.mkdir()
        subprocess.run(["mount", "-t", "ext4", dev, str(target)], check=True)
        entry["relabel"] = r = _cli(
            g, ["relabel", str(target), "--level", level, "--json", *extra], 3600
        )
        g.log(
            f"relabel {size['name']}: exit {r['status']} in {r['seconds']}s "
            f"(walk {r.get('json', {}).get('duration')}s)"
        )
        subprocess.run(["umount", str(target)], check=False)
    # The probes' AVC lines from enforcing mode (permissive=0), read last: kauditd
    # prints late under TCG. The whole kernel log, from its start.
    avcs = g.parse_avcs(g.Kmsg().drain())
    for p in res.get("probes", []):
        p["avc"] = [a["line"] for a in avcs if a["pid"] == p["pid"] and "permissive=0" in a["line"]]
    return res


# --- host: the report ---------------------------------------------------------


def _disk_labels(image: str) -> dict[str, Any]:
    """Every inode's security.selinux as stored on disk (loop mount, no SELinux here)."""
    t = time.monotonic()
    counts: dict[str, int] = {}
    entries = 0
    with tempfile.TemporaryDirectory(prefix="kmount-check-") as mnt:
        subprocess.run(["mount", "-o", "loop,ro,noload", image, mnt], check=True)
        try:
            for dirpath, dirnames, filenames in os.walk(mnt):
                names = dirnames + filenames
                for name in [".", *names] if dirpath == mnt else names:
                    entries += 1
                    try:
                        value = os.getxattr(
                            os.path.join(dirpath, name), XATTR, follow_symlinks=False
                        )
                    except OSError as exc:
                        if exc.errno != errno.ENODATA:
                            raise
                        continue
                    key = value.rstrip(b"\0").decode()
                    counts[key] = counts.get(key, 0) + 1
        finally:
            subprocess.run(["umount", mnt], check=True)
    return {
        "entries": entries,
        "with_xattr": sum(counts.values()),
        "labels": counts,
        "seconds": round(time.monotonic() - t, 1),
    }


def report_section(out_dir: Path, guest: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    plan_path = out_dir / "mount-plan.json"
    if not plan_path.exists():
        return {"skipped": "not prepared"}
    plan = json.loads(plan_path.read_text())
    g = guest.get("context_mount")
    if not plan["sizes"]:
        return {"skipped": "no sizes asked for"}
    if not g or g.get("skipped"):
        problems.append(f"context mount stage did not run: {g and g.get('skipped')}")
        return {"guest": g}
    problems += [f"context mount: {e}" for e in g.get("errors", [])]
    level = plan["level"]
    expected = f"system_u:object_r:container_file_t:{level}"
    rows = []
    for size, entry in zip(plan["sizes"], g["sizes"], strict=True):
        name, n = size["name"], size["files"]
        row: dict[str, Any] = {
            "name": name,
            "files": n,
            "entries": expected_entries(n),
            "image": size["image"],
            "copy_seconds": size["copy_seconds"],
        }
        rows.append(row)
        m = entry.get("mount") or {}
        mj = m.get("json") or {}
        row["mount"] = {
            "status": m.get("status"),
            "cli_seconds": m.get("seconds"),
            "seconds": mj.get("duration"),
            "method": mj.get("method"),
            "applied": mj.get("applied"),
            "stderr": m.get("stderr"),
        }
        if m.get("status") != 0 or mj.get("method") != "context":
            problems.append(f"context mount {name}: mcslabel mount failed: {m.get('stderr')}")
            continue
        if (mj.get("applied") or {}).get("context") != expected:
            problems.append(f"context mount {name}: applied {mj.get('applied')}, not {expected}")
        labels = entry.get("labels") or {}
        row["labels"] = labels
        want = labels.get("limited_to") or expected_entries(n)
        if labels.get("entries") != want or labels.get("wrong") or labels.get("root") != expected:
            problems.append(
                f"context mount {name}: {labels.get('entries')} entries read (want {want}), "
                f"{labels.get('wrong')} not at {expected}, root {labels.get('root')}: "
                f"{labels.get('samples')}"
            )
        row["setxattr"] = entry.get("setxattr")
        if entry.get("setxattr") != "EOPNOTSUPP":
            problems.append(f"context mount {name}: setxattr gave {entry.get('setxattr')}")
        row["umount"] = entry.get("umount")
        disk = _disk_labels(size["ctx"]["image"])
        row["disk_after_context_mount"] = disk
        if disk["with_xattr"] or disk["entries"] != expected_entries(n) + 1:
            problems.append(f"context mount {name}: on disk afterwards {disk}, want no xattr")
        if "rel" in size:
            r = entry.get("relabel") or {}
            rj = r.get("json") or {}
            row["relabel"] = {
                "status": r.get("status"),
                "cli_seconds": r.get("seconds"),
                "seconds": rj.get("duration"),
                "changed": rj.get("changed"),
                "failed": rj.get("failed"),
                "stderr": r.get("stderr"),
            }
            if r.get("status") != 0:
                problems.append(f"relabel {name} failed: {r.get('stderr')}")
            # The positive control: the same disk check sees what relabel wrote.
            rdisk = _disk_labels(size["rel"]["image"])
            row["disk_after_relabel"] = rdisk
            if rdisk["labels"] != {expected: expected_entries(n) + 1}:
                problems.append(f"relabel {name}: on disk afterwards {rdisk['labels']}")
    # Probes: the level reads, the disjoint level is denied, by the kernel in enforcing mode.
    probes = []
    for p in g.get("probes", []):
        want_ok = p["level"] == level
        if p.get("attr_current") != p["context"] or p.get("state") != "exited":
            problems.append(
                f"context mount probe {p['level']}: {p.get('state')} as {p.get('attr_current')}"
            )
        results = {r["id"]: r for r in p.get("results") or []}
        for t in p["tests"]:
            r = results.get(t["id"])
            kernel = (
                None
                if r is None
                else (True if r["ok"] else False if r["errno"] == "EACCES" else None)
            )
            probes.append(
                {
                    "level": p["level"],
                    "op": t["op"],
                    "path": t["path"],
                    "expected": want_ok,
                    "kernel": kernel,
                    "errno": r and r["errno"],
                }
            )
            if kernel != want_ok:
                problems.append(
                    f"context mount probe {p['level']} {t['op']} {t['path']}: "
                    f"{r}, want {'allowed' if want_ok else 'EACCES'}"
                )
    avc = {p["level"]: p.get("avc", []) for p in g.get("probes", [])}
    if g.get("probes") and not g.get("enforcing"):
        problems.append("context mount probes did not run in enforcing mode")
    if rows and not probes:
        problems.append("context mount: no probe ran")
    section: dict[str, Any] = {"level": level, "sizes": rows, "probes": probes, "avc": avc}
    timed = [r for r in rows if (r.get("mount") or {}).get("seconds") is not None]
    if len(timed) >= 2:
        small, big = timed[0], timed[-1]
        a, b = small["mount"]["seconds"], big["mount"]["seconds"]
        section["o1"] = {
            "small": small["name"],
            "big": big["name"],
            "seconds": [a, b],
            "bound": round(O1_FACTOR * a + O1_SLACK, 3),
        }
        if b > O1_FACTOR * a + O1_SLACK:
            problems.append(
                f"context mount time grows with the files: {a}s for "
                f"{small['name']}, {b}s for {big['name']}"
            )
    return section


def summary(section: dict[str, Any]) -> list[str]:
    if section.get("skipped"):
        return [f"context mount: skipped ({section['skipped']})"]
    lines = []
    for r in section.get("sizes", []):
        m, lab = r.get("mount") or {}, r.get("labels") or {}
        disk = r.get("disk_after_context_mount") or {}
        line = (
            f"context mount {r['name']} ({r['files']} files): mount {m.get('seconds')}s "
            f"(CLI {m.get('cli_seconds')}s); {lab.get('entries')} labels read, "
            f"{lab.get('wrong')} wrong{' (sample)' if lab.get('limited_to') else ''}; "
            f"setxattr {r.get('setxattr')}; xattrs on disk {disk.get('with_xattr')}"
        )
        if r.get("relabel"):
            rl, rd = r["relabel"], r.get("disk_after_relabel") or {}
            line += (
                f"; relabel {rl.get('seconds')}s (CLI {rl.get('cli_seconds')}s), "
                f"{rd.get('with_xattr')} xattrs on disk"
            )
        lines.append(line)
    probes = section.get("probes", [])
    ok = sum(p["kernel"] == p["expected"] for p in probes)
    logged = sum(len(lines) for lines in section.get("avc", {}).values())
    lines.append(
        f"context mount probes: {ok}/{len(probes)} agree (read/list by "
        f"{section.get('level')}: allowed, by {OTHER}: EACCES; {logged} AVC lines "
        f"in enforcing mode)"
    )
    if "o1" in section:
        o = section["o1"]
        lines.append(
            f"context mount O(1): {o['seconds'][0]}s ({o['small']}) vs "
            f"{o['seconds'][1]}s ({o['big']}), bound {o['bound']}s"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out")
    p.add_argument("--sizes", default="10k,1m")
    p.add_argument("--relabel-sizes", default="10k")
    p.add_argument("--walk-limit", type=int, default=0, help="read at most N labels (0: all)")
    p.add_argument("--policy-root", default="")
    args = parser.parse_args()
    return prepare(args)


if __name__ == "__main__":
    sys.exit(main())
