"""Host side of the kernel lane: ``plan`` (verify's answers) and ``report`` (the comparison).

``lane.py plan OUT [--policy-root DIR]`` runs :func:`mcslabel.verify` for
every probe level and writes what the guest must create and try.
``lane.py report PLAN GUEST REPORT`` puts the kernel's answers beside
verify's, writes the JSON report, prints a summary and exits 0 only when
every check agrees.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mount_stage  # the context-mount stage, beside this file

# Host paths: verify's defaults and the places a container must never reach.
PATHS = (
    "/var", "/root", "/home",
    "/var/lib/docker", "/var/lib/containers", "/var/lib/kubelet", "/etc/shadow",
    "/etc/passwd", "/etc/sudoers", "/etc", "/etc/ssh", "/etc/selinux", "/root/.ssh",
    "/home/alice", "/home/alice/.ssh", "/run/docker.sock", "/var/log", "/var/log/audit",
    "/tmp", "/var/tmp", "/usr/bin", "/usr/lib", "/boot", "/srv", "/opt", "/var/spool/cron",
    "/var/lib/mysql", "/var/www",
)  # fmt: skip
PERMS = {
    "file": ["read", "write", "append", "open", "unlink", "execute", "getattr"],
    "dir": ["read", "search", "getattr", "write", "add_name", "remove_name", "open"],
}
VOLUME_LEVEL = "s0:c1,c2"
# Probe levels: the volume's own pair, a disjoint pair, plain s0, one dominated category.
PROBES = (("c1c2", "s0:c1,c2"), ("c3c4", "s0:c3,c4"), ("s0", "s0"), ("c1", "s0:c1"))
# What each real operation on the volume needs (dir = the volume, file = a file in it).
VOLUME_OPS = {
    "read_file": [("dir", "search"), ("file", "read"), ("file", "open")],
    "write_file": [("dir", "search"), ("file", "write"), ("file", "open")],
    "list_dir": [("dir", "read"), ("dir", "open")],
    "create": [("dir", "search"), ("dir", "write"), ("dir", "add_name")],
    "unlink": [("dir", "search"), ("dir", "write"), ("dir", "remove_name"), ("file", "unlink")],
}
# Discovery: processes left running at these levels, in a 16-category space.
DISCOVERY = {"categories": 16, "levels": ["s0:c5", "s0:c8,c9,c10", "s0:c11,c12"]}
# Two live processes at comparable levels, the dominating one started first (lower
# pid). reserve_in_use() reserves s0:c13,c14 and cannot reserve s0:c13 ("conflict"),
# but must record it in use so that no s0:c13,cN pair is handed out. This once
# leaked 13 such pairs (reported as XFAIL then); now a regression fails the lane.
DISCOVERY_COMPARABLE = ["s0:c13,c14", "s0:c13"]
# The image the docker stage runs (run.sh exports it with docker save).
DOCKER_IMAGE = "mcslabel-busybox:test"
# Directories of the docker stage's engine, labeled as file_contexts says.
DOCKER_PATHS = ("/", "/run", "/run/docker", "/run/containerd", "/var/lib/docker", "/etc/docker",
                "/tmp", "/dev")  # fmt: skip
# The docker stage's checks; each must be reported ok (docker_stage.py).
DOCKER_CHECKS = (
    "engine_in_its_domain", "random_level_assigned", "random_level_inside",
    "sync_records_random_level", "random_level_not_free", "allocate_avoids_random_level",
    "container_b_at_allocated_level", "container_b_reads_own_volume",
    "container_a_at_allocated_level", "container_a_reads_own_volume", "levels_apart",
    "container_a_denied_volume_b", "enforcing_throughout", "security_server_denies_a_on_b",
)  # fmt: skip


def _paths(policy_root: str | None, root: str) -> list[str]:
    """The PATHS this policy labels (a path whose entry is <<none>> has nothing to check)."""
    from mcslabel import PolicyError, verify

    kept = []
    for p in PATHS:
        try:
            verify(policy_root=policy_root, paths=[p], root=root, perms={"file": ["read"]},
                   classes=["file"])  # fmt: skip
        except PolicyError:
            continue
        kept.append(p)
    return kept


def plan(args: argparse.Namespace) -> int:
    from mcslabel import Level, verify

    t0 = time.monotonic()
    policy_root = args.policy_root or None
    with tempfile.TemporaryDirectory() as empty:  # contexts from file_contexts, not host xattrs
        paths = _paths(policy_root, empty)
        probes: list[dict[str, Any]] = []
        ids = itertools.count()
        policy_file = file_type = ""
        for name, level in PROBES:
            report = verify(
                policy_root=policy_root, level=level, paths=paths, perms=PERMS,
                classes=list(PERMS), root=empty, store=[VOLUME_LEVEL],
            )  # fmt: skip
            doc = report.to_dict()
            policy_file, file_type = doc["policy"], doc["mcs"]["file_type"]
            cells = []
            for pr in doc["paths"]:
                ctx = pr["context"] if pr["context"].count(":") >= 3 else pr["context"] + ":s0"
                for c in pr["checks"]:
                    cells.append(_cell(next(ids), "paths", pr["path"], ctx, c))
            mcs_at: dict[tuple[str, str], bool] = {}
            for c in doc["mcs"]["checks"]:
                key = f"{c['relation']} {c['level']}"
                cells.append(_cell(next(ids), "mcs", key, c["context"], c))
                if c["level"] == VOLUME_LEVEL:
                    mcs_at[(c["class"], c["perm"])] = c["allowed"]
            ops = [
                {"op": op, "expected": all(mcs_at[need] for need in needs), "needs": needs}
                for op, needs in VOLUME_OPS.items()
            ]
            probes.append(
                {"name": name, "level": level, "context": doc["mcs"]["domain_context"],
                 "cells": cells, "volume_ops": ops, "verify_ok": doc["ok"]}
            )  # fmt: skip
        domain_ctx = probes[0]["context"]
        user, role = domain_ctx.split(":")[:2]
        file_ctx = next(c for c in probes[0]["cells"] if c["section"] == "mcs")["context"]
        fuser, frole = file_ctx.split(":")[:2]
        for i, level in enumerate(DISCOVERY["levels"] + DISCOVERY_COMPARABLE):
            probes.append(
                {"name": f"sleeper{i}", "level": level, "sleeper": True, "cells": [],
                 "context": f"{user}:{role}:{probes[0]['context'].split(':')[2]}:{level}"}
            )  # fmt: skip
    cats = DISCOVERY["categories"]
    live = [Level.parse(x, categories=cats) for x in DISCOVERY["levels"] + DISCOVERY_COMPARABLE]
    pairs = [Level.pair(a, b) for a in range(cats) for b in range(a + 1, cats)]
    expected_free = sum(1 for p in pairs if not any(p.comparable(lv) for lv in live))
    doc_out = {
        "policy_root": args.policy_root or "",
        "policy_file": policy_file,
        "file_type": file_type,
        "file_user": fuser,
        "file_role": frole,
        "paths": paths,
        "probes": probes,
        "volume": {
            "level": VOLUME_LEVEL,
            "old_labels": {
                ".": f"{fuser}:{frole}:{file_type}:s0",
                "data": f"{fuser}:{frole}:{file_type}:s0:c5,c6",
                "*": f"{fuser}:{frole}:{file_type}:s0",
            },
        },
        "discovery": {
            **DISCOVERY,
            "comparable_levels": DISCOVERY_COMPARABLE,
            "expected_free": expected_free,
        },
        "docker": _docker_plan(args),
        "plan_seconds": round(time.monotonic() - t0, 1),
    }
    Path(args.out).write_text(json.dumps(doc_out, indent=1))
    n = sum(len(p["cells"]) for p in probes)
    print(f"[lane] plan: {n} cells from verify ({len(paths)} paths, {len(PROBES)} levels), "
          f"policy {policy_file}, {doc_out['plan_seconds']}s")  # fmt: skip
    return 0


def _docker_plan(args: argparse.Namespace) -> dict[str, Any]:
    """What the guest's docker stage needs (docker_stage.py), or why it is skipped."""
    from mcslabel import verify

    if not args.docker_image_tar:
        return {"skipped": args.docker_skip or "no image exported for the guest"}
    # The engine's directories get the labels this policy gives them on a host.
    with tempfile.TemporaryDirectory() as empty:
        report = verify(policy_root=args.policy_root or None, paths=list(DOCKER_PATHS),
                        root=empty, perms={"file": ["read"]}, classes=["file"])  # fmt: skip
    labels = {p["path"]: p["context"] for p in report.to_dict()["paths"]}
    return {
        "labels": labels,
        "image": DOCKER_IMAGE,
        "image_tar": str(Path(args.docker_image_tar).resolve()),
        "mount_tag": "enginefs",  # run.sh: the host's root again, for context=bin_t
        "exec_type": "bin_t",
        # The engine's domain: Fedora's and CentOS's (a file type on refpolicy), then refpolicy's.
        "engine_types": ["container_runtime_t", "container_engine_t"],
        "repo": str(Path(__file__).resolve().parents[2]),
    }


def _cell(i: int, section: str, key: str, context: str, check: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": i, "section": section, "key": key, "context": context, "class": check["class"],
        "perm": check["perm"], "verify": check["allowed"], "reason": check["reason"],
    }  # fmt: skip


def report(args: argparse.Namespace) -> int:
    the_plan = json.loads(Path(args.plan).read_text())
    guest_path = Path(args.guest)
    guest = json.loads(guest_path.read_text()) if guest_path.exists() else None
    problems: list[str] = []
    doc: dict[str, Any] = {"policy": the_plan["policy_file"], "ok": False}
    if guest is None:
        problems.append("the guest wrote no results (see the console log)")
        guest = {"errors": [], "probes": []}
    problems += [f"guest error: {e.strip().splitlines()[-1]}" for e in guest.get("errors", [])]
    doc.update(
        kernel=guest.get("kernel"), lsm=guest.get("lsm"), policyvers=guest.get("policyvers"),
        enforcing_during_checks=guest.get("enforcing_during_checks"),
        timings=guest.get("timings"), audit_lost=guest.get("audit_lost", []),
    )  # fmt: skip
    if guest.get("probes") and not (
        guest.get("enforcing_during_checks") and guest.get("enforcing_after_checks")
    ):
        problems.append("the checks did not run in enforcing mode")

    # Verify against the kernel, cell by cell.
    by_name = {p["name"]: p for p in guest.get("probes", [])}
    cells_out = []
    for probe in the_plan["probes"]:
        g = by_name.get(probe["name"])
        if probe.get("sleeper"):
            continue
        if g is None:
            problems.append(f"probe {probe['name']} did not run")
            continue
        if g.get("attr_current") != probe["context"]:
            problems.append(f"probe {probe['name']} ran as {g.get('attr_current')}")
        if g.get("state") != "exited" or g.get("status") != 0:
            problems.append(f"probe {probe['name']} {g.get('state')} with {g.get('status')}")
        kernel_cells = {c["id"]: c for c in g["cells"]}
        for cell in probe["cells"]:
            k = kernel_cells[cell["id"]]
            row = {**cell, "domain": probe["context"], "kernel_av": k["kernel_av"]}
            test, result = k.get("test"), k.get("result")
            if test is None:
                row.update(method="security_server", kernel=k["kernel_av"], syscall=None)
                agree = cell["verify"] == k["kernel_av"]
            elif result is None:
                row.update(method="syscall", kernel=None, syscall=_syscall(test, None))
                agree = False
            else:
                denied = result["errno"] == "EACCES"
                answer = True if result["ok"] else (False if denied else None)
                row.update(method="syscall", kernel=answer, syscall=_syscall(test, result))
                agree = answer is not None and cell["verify"] == answer == k["kernel_av"]
            row["avc"] = k.get("avc", [])
            row["agree"] = agree
            cells_out.append(row)
            if not agree:
                problems.append(
                    f"disagree: {probe['level']} {cell['section']} {cell['key']} "
                    f"{cell['context']} {cell['class']}:{cell['perm']}: verify "
                    f"{_word(cell['verify'])}, kernel {_word(row['kernel'])} "
                    f"({row['method']}, security server {_word(k['kernel_av'])}"
                    + (f", {row['syscall']}" if row["syscall"] else "")
                    + ")"
                )
    syscall_cells = sum(1 for c in cells_out if c["method"] == "syscall")
    doc["verify_vs_kernel"] = {
        "cells": len(cells_out),
        "kernel_checked_by_syscall": syscall_cells,
        "security_server_only": len(cells_out) - syscall_cells,
        "agree": sum(1 for c in cells_out if c["agree"]),
        "allowed": sum(1 for c in cells_out if c["verify"]),
        "with_avc": sum(1 for c in cells_out if c["avc"]),
        # Denied by a syscall: did the kernel log an AVC? (dontaudit rules: none)
        "denials_logged_by_reason": _logged(cells_out),
        "paths": the_plan["paths"],
        "cells_list": cells_out,
    }
    if syscall_cells < 300:
        problems.append(f"only {syscall_cells} cells were checked by a syscall (need 300)")

    doc["mcs"] = _mcs_section(the_plan, guest, by_name, problems)
    doc["discovery"] = _discovery_section(the_plan, guest, problems)
    doc["docker"] = _docker_section(the_plan, guest, problems)
    doc["context_mount"] = mount_stage.report_section(Path(args.plan).parent, guest, problems)
    doc["problems"] = problems
    doc["ok"] = not problems
    Path(args.report).write_text(json.dumps(doc, indent=1))
    _summary(doc)
    return 0 if doc["ok"] else 1


def _logged(cells: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for c in cells:
        if c["method"] == "syscall" and c["kernel"] is False:
            slot = counts.setdefault(c["reason"], {"with_avc": 0, "without_avc": 0})
            slot["with_avc" if c["avc"] else "without_avc"] += 1
    return counts


def _syscall(test: dict[str, Any], result: dict[str, Any] | None) -> str:
    arg = {k: v for k, v in test.items() if k not in ("op", "id")}
    call = f"{test['op']}({', '.join(f'{k}={v}' for k, v in arg.items())})"
    if result is None:
        return f"{call}: no result"
    return f"{call} -> {'ok' if result['ok'] else result['errno']}"


def _word(value: bool | None) -> str:
    return {True: "allowed", False: "denied", None: "error"}[value]


def _mcs_section(
    the_plan: dict[str, Any], guest: dict[str, Any], by_name: dict[str, Any], problems: list[str]
) -> dict[str, Any]:
    vol = guest.get("volume") or {}
    level = the_plan["volume"]["level"]
    section: dict[str, Any] = {"volume_level": level, "ops": []}
    relabel = vol.get("relabel")
    section["relabel"] = relabel
    if not relabel or relabel["status"] != 0:
        problems.append(f"mcslabel relabel failed: {relabel and relabel['stderr']}")
    after = vol.get("after_relabel", {})
    wrong = {k: v for k, v in after.items() if not v.endswith(f":{level}")}
    if wrong:
        problems.append(f"after relabel, not at {level}: {wrong}")
    for probe in the_plan["probes"]:
        g = by_name.get(probe["name"])
        if probe.get("sleeper") or g is None:
            continue
        for planned, done in zip(probe["volume_ops"], g["volume_ops"], strict=True):
            result = done.get("result")
            kernel = None if result is None else result["ok"]
            if result and not result["ok"] and result["errno"] != "EACCES":
                kernel = None
            agree = kernel == planned["expected"]
            section["ops"].append(
                {"level": probe["level"], "op": planned["op"], "path": done["test"]["path"],
                 "verify": planned["expected"], "needs": planned["needs"], "kernel": kernel,
                 "errno": result and result["errno"], "avc": done.get("avc", []), "agree": agree}
            )  # fmt: skip
            if not agree:
                problems.append(
                    f"MCS disagree: {probe['level']} {planned['op']} on the volume at {level}: "
                    f"verify {_word(planned['expected'])}, kernel {_word(kernel)}"
                )
    restore = vol.get("restore")
    section["restore"] = restore
    before, restored = vol.get("before", {}), vol.get("after_restore", {})
    changed = {
        k: {"before": v, "after": restored.get(k)}
        for k, v in before.items()
        if k in restored and restored[k] != v
    }
    section["restored_labels"] = {"compared": len(before), "differ": changed}
    if not restore or restore["status"] != 0:
        problems.append(f"mcslabel restore failed: {restore and restore['stderr']}")
    if changed or not before:
        problems.append(f"restore did not bring the old labels back: {changed}")
    return section


def _discovery_section(
    the_plan: dict[str, Any], guest: dict[str, Any], problems: list[str]
) -> dict[str, Any]:
    d = guest.get("discovery")
    spec = the_plan["discovery"]
    if not d:
        problems.append("discovery did not run")
        return {}
    from mcslabel import Level

    cats = spec["categories"]

    def canon(x: str) -> str:
        return str(Level.parse(x, categories=cats))

    found = {canon(f["level"]): f for f in d["found"]}
    apart = {canon(x) for x in spec["levels"]}
    together = {canon(x) for x in spec.get("comparable_levels", [])}
    for level in sorted(apart | together):
        if level not in found:
            problems.append(f"discovery: live level {level} not found by reserve_in_use()")
        elif level in apart and found[level]["outcome"] != "reserved":
            problems.append(f"discovery: {level} {found[level]['outcome']}")
    for level in sorted(together & set(found)):
        f = found[level]
        if f["outcome"] != "reserved" and not f.get("recorded_in_use"):
            problems.append(f"discovery: {level} {f['outcome']} and not recorded in use")
    near = d["comparable_to_live"]
    if near:
        problems.append(f"discovery: allocated levels comparable to live ones: {near[:5]}")
    if d["allocated"] != spec["expected_free"]:
        problems.append(
            f"discovery: allocated {d['allocated']} pairs, {spec['expected_free']} are free"
        )
    if not d["enforcing"]:
        problems.append("discovery did not run in enforcing mode")
    # Live levels comparable with each other (once a bug: the dominated one leaked).
    comparable_live = {
        "levels": sorted(together),
        "outcomes": {lv: found[lv]["outcome"] for lv in sorted(together) if lv in found},
        "recorded_in_use": sorted(
            lv for lv in together if found.get(lv, {}).get("recorded_in_use")
        ),
        "allocated_comparable": [c for c in near if canon(c[1]) in together],
    }
    return {
        **d,
        "expected_free": spec["expected_free"],
        "categories": cats,
        "comparable_live_levels": comparable_live,
    }


def _docker_section(
    the_plan: dict[str, Any], guest: dict[str, Any], problems: list[str]
) -> dict[str, Any]:
    planned = the_plan.get("docker") or {"skipped": "no docker stage in the plan"}
    if "skipped" in planned:
        return {"skipped": planned["skipped"]}
    d = guest.get("docker")
    if not d:
        problems.append("docker: the stage did not run (see the console log)")
        return {"skipped": "the guest did not run the stage"}
    if "skipped" in d:
        problems.append(f"docker: skipped in the guest: {d['skipped']}")
        return d
    got = {c["name"]: c for c in d["checks"]}
    for c in d["checks"]:
        if not c["ok"]:
            problems.append(f"docker: {c['name']} failed: {str(c['detail'])[:300]}")
    for name in DOCKER_CHECKS:
        if name not in got:
            problems.append(f"docker: {name} was not checked")
    return {"ok": all(c["ok"] for c in d["checks"]) and set(DOCKER_CHECKS) <= set(got), **d}


def _summary(doc: dict[str, Any]) -> None:
    v = doc["verify_vs_kernel"]
    print(f"[lane] kernel {doc.get('kernel')}, policy {doc['policy']}, LSM {doc.get('lsm')}")
    print(f"[lane] verify vs kernel: {v['agree']}/{v['cells']} cells agree "
          f"({v['kernel_checked_by_syscall']} by a syscall in enforcing mode, "
          f"{v['security_server_only']} by the kernel's security server only; "
          f"{v['allowed']} allowed, {v['with_avc']} with an AVC line)")  # fmt: skip
    logged = ", ".join(
        f"{r} {n['with_avc']}/{n['with_avc'] + n['without_avc']}"
        for r, n in sorted(v["denials_logged_by_reason"].items())
    )
    print(f"[lane] denials with an AVC line, by verify's reason: {logged}")
    m = doc["mcs"]
    ops = m.get("ops", [])
    print(f"[lane] MCS for real: {sum(o['agree'] for o in ops)}/{len(ops)} volume operations "
          f"agree; restore left {len(m.get('restored_labels', {}).get('differ', {}))} "
          f"labels different")  # fmt: skip
    for o in ops:
        print(f"[lane]   {o['level']:>9} {o['op']:<11} verify {_word(o['verify']):<8} "
              f"kernel {_word(o['kernel'])}")  # fmt: skip
    d = doc["discovery"]
    if d:
        k = d["comparable_live_levels"]
        print(f"[lane] discovery: found {[f['level'] for f in d['found']]} live; allocated "
              f"{d['allocated']} pairs of {d['expected_free']} free, "
              f"{len(d['comparable_to_live'])} comparable to a live level")  # fmt: skip
        print(f"[lane] discovery, live levels comparable with each other {k['levels']}: "
              f"outcomes {k['outcomes']}, recorded in use {k['recorded_in_use']}, "
              f"{len(k['allocated_comparable'])} allocated levels comparable to them")  # fmt: skip
    dk = doc.get("docker") or {}
    if "skipped" in dk:
        print(f"[lane] docker: skipped ({dk['skipped']})")
    elif dk:
        checks = dk.get("checks", [])
        print(f"[lane] docker (engine {dk.get('engine', {})}): "
              f"{sum(c['ok'] for c in checks)}/{len(checks)} checks ok in "
              f"{dk.get('timings', {}).get('stage')}s")  # fmt: skip
        for c in checks:
            print(f"[lane]   {'ok  ' if c['ok'] else 'FAIL'} {c['name']}")
        if dk.get("masked_paths_dropped"):
            m = dk["masked_paths_dropped"]
            print(f"[lane]   runc-lane dropped the masked paths {m['paths']}: {m['why']}")
    for line in mount_stage.summary(doc["context_mount"]):
        print(f"[lane] {line}")
    for p in doc["problems"][:40]:
        print(f"[lane] FAIL {p}")
    if len(doc["problems"]) > 40:
        print(f"[lane] ... and {len(doc['problems']) - 40} more (see the report)")
    print(f"[lane] {'OK' if doc['ok'] else 'FAILED'}")


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan")
    p.add_argument("out")
    p.add_argument("--policy-root", default="")
    p.add_argument("--docker-image-tar", default="")
    p.add_argument("--docker-skip", default="", help="why there is no docker stage")
    r = sub.add_parser("report")
    r.add_argument("plan")
    r.add_argument("guest")
    r.add_argument("report")
    args = parser.parse_args()
    return plan(args) if args.cmd == "plan" else report(args)


if __name__ == "__main__":
    sys.exit(main())
