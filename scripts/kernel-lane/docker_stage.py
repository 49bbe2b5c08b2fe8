"""The Docker stage of the kernel lane (runs in the guest after the cells, as kernel_t).

dockerd with ``--selinux-enabled`` under the loaded policy, its containers in
enforcing mode, and what mcslabel makes of them:

- the engine (containerd, then dockerd) is started while permissive, in its
  own domain (``container_engine_t`` on refpolicy, ``container_runtime_t``
  on Fedora/CentOS), chrooted into a second 9p mount of the host's root with
  ``context=bin_t`` (the first one is ``unlabeled_t``, which the engine may
  not execute); its data root is a tmpfs labeled ``container_var_lib_t`` as a
  host's ``/var/lib/docker`` is (layers get ``container_ro_file_t`` from the
  policy's name transitions), its run directory a tmpfs labeled ``var_run_t``;
- then the kernel is switched to enforcing, the image is imported and every
  container is created, started and checked there: (a) a container run
  without ``label=level`` gets docker's own random level, ``mcslabel docker
  sync`` records it and the allocator never hands it out; (b) ``mcslabel
  docker run`` puts two containers at their allocated levels with their
  volumes relabeled (``:Z``), each reads its own volume, and one is denied the
  other's (the kernel's AVC line is kept).

Every check is named in ``result["checks"]``; ``lane.py report`` fails the
lane on any that is not ok. The docker CLI and mcslabel run chrooted beside
the engine (same paths), as kernel_t, with ``DOCKER_HOST`` at the guest's
dockerd and a SQLite store on the guest tmpfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from docker_engine import (
    CATEGORIES,
    CMD_WAIT,
    ENGINE_ROOT,
    JOURNALS,
    SELINUXFS,
    STORE,
    VOLUMES,
    Engine,
    engine_context,
    write,
)

PROBE = (
    '{ echo "attr=$(cat /proc/self/attr/current)"; '
    "for v in /vol /other; do [ -e $v ] || continue; "
    'if out=$(cat $v/data 2>&1); then echo "read $v=ok $out"; '
    'else echo "read $v=denied $out"; fi; done; } > /report 2>&1'
)


class Stage(Engine):
    """The checks, on an :class:`Engine` it starts."""

    def mcslabel(self, *args: str) -> dict[str, Any]:
        """``mcslabel ARGS --json``: the CLI's entry point in a forked child
        chrooted beside the engine (paths as dockerd sees them), as kernel_t.

        Forked from this warm interpreter: a fresh ``mcslabel`` process spends
        15-30 s importing under TCG; the code run is the console script's.
        """
        from mcslabel.cli import main

        argv = [*args[:2], "--json", *args[2:]]  # before IMAGE CMD...
        t = time.monotonic()
        out, err = Path("/run/lane-mcslabel.out"), Path("/run/lane-mcslabel.err")
        pid = os.fork()
        if pid == 0:  # the child: never returns
            status = 70
            try:
                fds = [os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for f in (out, err)]
                os.chroot(ENGINE_ROOT)
                os.chdir("/")
                os.environ.clear()
                os.environ.update(self.env)
                os.dup2(fds[0], 1)
                os.dup2(fds[1], 2)
                status = main(argv)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 2
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(status)
        deadline = time.monotonic() + CMD_WAIT
        while True:
            got, code = os.waitpid(pid, os.WNOHANG)
            if got:
                status = os.waitstatus_to_exitcode(code)
                break
            if time.monotonic() > deadline:  # never hang the guest on one command
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = -9
                break
            time.sleep(0.2)
        stdout, stderr = out.read_text(), err.read_text()
        self.result["commands"].append(
            {"argv": ["mcslabel", *argv], "status": status, "stdout": stdout[-2000:],
             "stderr": stderr[-2000:], "seconds": round(time.monotonic() - t, 1)}
        )  # fmt: skip
        try:
            doc: dict[str, Any] = json.loads(stdout)
        except ValueError:
            doc = {"ok": False, "stdout": stdout[-500:], "stderr": stderr[-500:]}
        doc["status"] = status
        return doc

    # --- set-up ---------------------------------------------------------

    def container_report(self, cid: str) -> dict[str, Any]:
        """Wait for a container; its report is the file /report it wrote.

        (Its stdout is a pipe of the engine's shim, which container_t may not
        write to under refpolicy; the report is read from the container's
        overlay upper directory on the data root instead.)
        """
        container = self.client.containers.get(cid)
        status = container.wait(timeout=CMD_WAIT)
        container.reload()
        attrs = container.attrs
        upper = attrs.get("GraphDriver", {}).get("Data", {}).get("UpperDir", "")
        text = ""
        with contextlib.suppress(OSError):
            text = self.host(upper + "/report").read_text()
        report: dict[str, Any] = {
            "id": cid,
            "exit": status.get("StatusCode"),
            "report": text,
            "ProcessLabel": attrs.get("ProcessLabel", ""),
            "MountLabel": attrs.get("MountLabel", ""),
            "reads": {},
        }
        for line in text.splitlines():
            if line.startswith("attr="):
                report["attr_current"] = line[5:].strip().rstrip("\0")
            elif line.startswith("read "):
                where, _, rest = line[5:].partition("=")
                report["reads"][where] = rest
        return report

    def random_level(self) -> None:
        """(a) docker's own level, recorded by sync, avoided by the allocator."""
        from mcslabel import Allocator, Level, open_store

        t = time.monotonic()
        cid = self.client.containers.run(
            self.spec["image"], ["sh", "-c", PROBE], detach=True, network_mode="none"
        ).id
        rep = self.container_report(cid)
        self.timing("docker_run_random", t)
        self.result["random"] = rep
        label = rep["ProcessLabel"]
        level = ":".join(label.split(":")[3:])
        self.check(
            "random_level_assigned",
            bool(label) and label.split(":")[2] == "container_t" and level.count(",") == 1,
            label,
        )
        self.check(
            "random_level_inside",
            rep.get("attr_current") == label,
            {"attr_current": rep.get("attr_current"), "ProcessLabel": label},
        )
        t = time.monotonic()
        sync = self.mcslabel("docker", "sync", "--create-store", "--journal-dir", JOURNALS)
        self.timing("mcslabel_docker_sync", t)
        self.result["sync"] = sync
        store = f"sqlite://{self.host(STORE)}"
        with Allocator(open_store(store), categories=CATEGORIES, host="lane-guest") as alloc:
            alloc.sync(full=True)
            held = alloc.get(level) if level else None
            owners = list(held.owners) if held else []
            self.check(
                "sync_records_random_level",
                sync["status"] == 0 and f"docker:{cid}" in owners,
                {"level": level, "owners": owners, "sync_status": sync["status"]},
            )
            if not level:
                return
            self.check("random_level_not_free", not alloc.is_free(level), level)
        # The allocator in a space cut down (exclusions) to the docker pair's two
        # categories and two more: every pair but the docker one is handed out.
        # The same run on an empty store hands it out (the check can fail).
        lv = Level.parse(level, categories=CATEGORIES)
        a, b = sorted(lv.categories)
        keep = {a, b, *[c for c in range(CATEGORIES) if c not in (a, b)][:2]}
        exclude = [f"s0:c{c}" for c in range(CATEGORIES) if c not in keep]
        got = {}
        for name, url in (("synced", store), ("empty", "memory://")):
            with Allocator(
                open_store(url), categories=CATEGORIES, exclude=exclude, host="lane-guest"
            ) as alloc:
                levels = []
                with contextlib.suppress(Exception):
                    while len(levels) < 10:
                        levels.append(str(alloc.allocate(f"lane:{len(levels)}").level))
                got[name] = levels
        comparable = [x for x in got["synced"] if Level.parse(x).comparable(lv)]
        self.check(
            "allocate_avoids_random_level",
            len(got["synced"]) == 5 and not comparable and level in got["empty"],
            {"categories_left": sorted(keep), "synced_store": got["synced"],
             "empty_store": got["empty"], "comparable": comparable},
        )  # fmt: skip

    def mcslabel_run(self) -> None:
        """(b) mcslabel docker run: allocated level, own volume readable, other's denied."""
        from mcslabel import Level

        started: dict[str, dict[str, Any]] = {}
        reports: dict[str, dict[str, Any]] = {}
        # b first, so its volume carries its level when a tries it.
        for name, extra in (("b", []), ("a", ["-v", f"{VOLUMES}/b:/other"])):
            t = time.monotonic()
            doc = self.mcslabel(
                "docker", "run", "--journal-dir", JOURNALS, "--name", f"lane-{name}",
                "-v", f"{VOLUMES}/{name}:/vol:Z", *extra,
                self.spec["image"], "sh", "-c", PROBE,
            )  # fmt: skip
            self.timing(f"mcslabel_docker_run_{name}", t)
            started[name] = doc
            if doc["status"] != 0 or "id" not in doc:
                self.check(f"mcslabel_docker_run_{name}", False, doc)
                return
            rep = self.container_report(doc["id"])
            rep["volume_label"] = (
                os.getxattr(self.host(f"{VOLUMES}/{name}/data"), "security.selinux")
                .rstrip(b"\0")
                .decode()
            )
            reports[name] = rep
            want = f"system_u:system_r:container_t:{doc['level']}"
            self.check(
                f"container_{name}_at_allocated_level",
                rep.get("attr_current") == want and rep["ProcessLabel"] == want,
                {"allocated": doc["level"], "attr_current": rep.get("attr_current"),
                 "ProcessLabel": rep["ProcessLabel"]},
            )  # fmt: skip
            self.check(
                f"container_{name}_reads_own_volume",
                rep["reads"].get("/vol", "").startswith("ok volume " + name)
                and rep["volume_label"].endswith(":" + doc["level"]),
                {"read": rep["reads"].get("/vol"), "volume_label": rep["volume_label"]},
            )
        self.result["mcslabel_run"] = {"started": started, "containers": reports}
        la, lb = (Level.parse(started[n]["level"]) for n in ("a", "b"))
        rnd = self.result.get("random", {}).get("ProcessLabel", "")
        levels = [la, lb] + ([Level.parse(":".join(rnd.split(":")[3:]))] if rnd else [])
        self.check(
            "levels_apart",
            not any(x.comparable(y) for i, x in enumerate(levels) for y in levels[i + 1 :]),
            [str(x) for x in levels],
        )
        read = reports["a"]["reads"].get("/other", "")
        self.result["other_volume_read"] = read
        self.check(
            "container_a_denied_volume_b",
            read.startswith("denied") and "Permission denied" in read,
            {"read": read, "volume_b_label": reports["b"]["volume_label"]},
        )

    def security_server(self, la: str, lb: str, avcs: list[str]) -> None:
        """The kernel's own access vectors behind container a's denial.

        cat /other/data stops at the search of /other (b's volume directory),
        a denial the policy does not audit (dontaudit on dirs): no AVC line is
        expected for it, so the security server is asked instead, beside the
        same access at a's own level (allowed).
        """
        a = f"system_u:system_r:container_t:{la}"
        vectors = {}
        for level in (lb, la):
            obj = f"system_u:object_r:container_file_t:{level}"
            for tclass, perm in (("dir", "search"), ("file", "read"), ("file", "open")):
                vectors[f"{tclass}:{perm} at {level}"] = self.allowed(a, obj, tclass, perm)
        # search (the walk into /other) and read decide; open is not in every
        # policy's MCS constraint (CentOS allows it), so it is only reported.
        denied_b = not vectors[f"dir:search at {lb}"] and not vectors[f"file:read at {lb}"]
        allowed_a = all(v for k, v in vectors.items() if k.endswith(f"at {la}"))
        lines = [x for x in avcs if f":{la} tcontext=" in x and x.find(f":{lb} tclass=") > 0]
        self.check(
            "security_server_denies_a_on_b",
            denied_b and allowed_a,
            {"scontext": a, "vectors": vectors, "avc_lines": lines[:5]},
        )

    def run(self) -> dict[str, Any]:
        t = time.monotonic()
        self.prepare()
        self.start_engine()
        self.timing("engine_up", t)
        write(SELINUXFS / "enforce", "1")
        self.result["enforcing"] = True
        t = time.monotonic()
        repository, _, tag = self.spec["image"].rpartition(":")
        self.client.api.import_image_from_data(
            Path(self.spec["image_tar"]).read_bytes(),
            repository=repository,
            tag=tag,
            changes=["ENV PATH=/bin", 'CMD ["/bin/sh"]'],
        )
        self.timing("docker_import", t)
        self.random_level()
        self.mcslabel_run()
        self.result["enforcing_after"] = (SELINUXFS / "enforce").read_text().strip() == "1"
        self.check(
            "enforcing_throughout",
            self.result["enforcing_after"],
            "the kernel stayed in enforcing mode from docker import to the last container",
        )
        return self.result


def avc_lines(kmsg_fd: int) -> list[str]:
    lines = []
    while True:
        try:
            record = os.read(kmsg_fd, 16384).decode("utf-8", "replace")
        except BlockingIOError:
            break
        except BrokenPipeError:
            continue
        message = record.partition(";")[2].split("\n", 1)[0]
        if "avc:" in message:
            lines.append(message[message.find("avc:") :])
    return lines


def run(spec: dict[str, Any], log: Any, valid: Any, allowed: Any) -> dict[str, Any]:
    """The stage; never raises (a failure is a failed check with the reason)."""
    try:
        spec = {**spec, "engine_context": engine_context(valid, spec["engine_types"])}
    except RuntimeError as exc:
        return {"skipped": str(exc), "checks": []}
    kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    os.lseek(kmsg, 0, os.SEEK_END)  # only this stage's AVC lines
    stage = Stage(spec, log, allowed)
    try:
        stage.run()
    except Exception as exc:
        import traceback

        stage.result["error"] = traceback.format_exc()
        stage.check("stage_completed", False, f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(OSError):
            write(SELINUXFS / "enforce", "0")
        stage.stop_engine()
        stage.result["logs"] = {n: stage.tail(n) for n in ("containerd", "dockerd")}
        stage.result["timings"]["stage"] = round(time.monotonic() - stage.t0, 1)
        time.sleep(1.0)
        stage.result["avcs"] = avcs = avc_lines(kmsg)
        os.close(kmsg)
        started = stage.result.get("mcslabel_run", {}).get("started", {})
        if "level" in started.get("a", {}) and "level" in started.get("b", {}):
            stage.security_server(started["a"]["level"], started["b"]["level"], avcs)
        del avcs[300:]
    return stage.result
