"""The engine of the kernel lane's docker stage: containerd and dockerd in their domain.

Set up by ``docker_stage.py`` in the guest while the kernel is permissive:
a second 9p mount of the host's root with ``context=bin_t`` (the first one is
``unlabeled_t``, which the engine domain may not execute in enforcing mode),
a ``root_t`` tmpfs as the engine's ``/`` with bind mounts of it, tmpfs and
directories labeled as the policy's ``file_contexts`` labels a host's
(``lane.py plan`` asks ``verify``), then containerd and dockerd started with
``runcon`` in the engine domain, each opening its own log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

SELINUXFS = Path("/sys/fs/selinux")
ENGINE_FS = Path("/run/lane-enginefs")  # the host's root again, labeled bin_t
ENGINE_ROOT = Path("/run/lane-engine")  # the engine's / (root_t), binds of ENGINE_FS
BOUND = ("usr", "etc", "var", "work", "home", "root", "opt", "srv")
# Device nodes of the engine's /dev: (major, minor, type).
DEVICES = {
    "null": (1, 3, "null_device_t"),
    "zero": (1, 5, "zero_device_t"),
    "full": (1, 7, "null_device_t"),
    "random": (1, 8, "random_device_t"),
    "urandom": (1, 9, "urandom_device_t"),
    "tty": (5, 0, "devtty_t"),
}
SOCK = "/run/docker/docker.sock"  # paths from here on are inside ENGINE_ROOT
CTD_SOCK = "/run/containerd/containerd.sock"
STORE = "/run/mcslabel/store.db"
JOURNALS = "/run/mcslabel/journals"
VOLUMES = "/mnt"
CATEGORIES = 1024
START_WAIT = 240.0  # seconds for containerd, then dockerd, to answer under TCG
CMD_WAIT = 240.0


# The container's report: its own context, then a read of each volume.
class Engine:
    def __init__(self, spec: dict[str, Any], log: Any, allowed: Any) -> None:
        self.spec = spec
        self.log = log
        self.allowed = allowed  # the kernel's security server: (scon, tcon, class, perm)
        self.result: dict[str, Any] = {"checks": [], "timings": {}, "commands": []}
        self.env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "DOCKER_HOST": f"unix://{SOCK}",
            "HOME": "/run",
            "MCSLABEL_STORE": f"sqlite://{STORE}",
        }
        self.engine: list[subprocess.Popen[bytes]] = []
        self.t0 = time.monotonic()
        # The docker SDK (as mcslabel uses it) from this process, once dockerd
        # answers: a docker CLI call takes 7-20 s under TCG.
        self.client: Any = None

    # --- helpers --------------------------------------------------------

    def check(self, name: str, ok: bool, detail: Any) -> bool:
        self.result["checks"].append({"name": name, "ok": bool(ok), "detail": detail})
        self.log(f"docker: {'ok  ' if ok else 'FAIL'} {name}: {str(detail)[:300]}")
        return bool(ok)

    def timing(self, name: str, since: float) -> None:
        self.result["timings"][name] = round(time.monotonic() - since, 1)

    def host(self, rel: str) -> Path:
        return ENGINE_ROOT / rel.lstrip("/")

    def mount(self, *args: str) -> None:
        subprocess.run(["mount", *args], check=True)

    def tmpfs(self, rel: str, context: str) -> Path:
        path = self.host(rel)
        self.mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(path))
        os.setxattr(path, "security.selinux", context.encode() + b"\0")
        return path

    def prepare(self) -> None:
        spec = self.spec
        labels = spec["labels"]
        # The host's root again, every file bin_t (a context= mount), and a
        # root_t tmpfs above it as the engine's /, as a host's / is (docker's
        # chrooted untar remounts / private: mounton root_t, never bin_t).
        ENGINE_FS.mkdir(parents=True, exist_ok=True)
        self.mount(
            "-t", "9p", "-o",
            "trans=virtio,version=9p2000.L,ro,msize=512000,"
            f"context=system_u:object_r:{spec['exec_type']}:s0",
            spec["mount_tag"], str(ENGINE_FS),
        )  # fmt: skip
        label = os.getxattr(ENGINE_FS / "usr/bin/env", "security.selinux").rstrip(b"\0")
        self.result["engine_root_label"] = label.decode()
        ENGINE_ROOT.mkdir(parents=True, exist_ok=True)
        self.tmpfs("/", labels["/"])
        for entry in sorted(os.listdir(ENGINE_FS)):
            src = ENGINE_FS / entry
            if src.is_symlink():  # bin -> usr/bin, lib -> usr/lib, ...
                os.symlink(os.readlink(src), self.host(entry))
            elif entry in BOUND and src.is_dir():
                self.host(entry).mkdir()
                self.mount("--bind", str(src), str(self.host(entry)))
        for entry in ("proc", "sys", "dev", "run", "tmp", "mnt"):
            self.host(entry).mkdir()
        self.mount("-t", "proc", "proc", str(self.host("/proc")))
        self.mount("-t", "sysfs", "sysfs", str(self.host("/sys")))
        self.mount("-t", "cgroup2", "cgroup2", str(self.host("/sys/fs/cgroup")))
        self.mount("-t", "selinuxfs", "selinuxfs", str(self.host("/sys/fs/selinux")))
        dev = self.tmpfs("/dev", labels["/dev"])
        for name, (major, minor, ftype) in DEVICES.items():
            os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(dev / name, 0o666)
            os.setxattr(dev / name, "security.selinux", f"system_u:object_r:{ftype}:s0".encode())
        run = self.tmpfs("/run", labels["/run"])
        self.tmpfs("/tmp", labels["/tmp"])
        self.tmpfs("/var/lib/docker", labels["/var/lib/docker"])
        vols = self.tmpfs(VOLUMES, "system_u:object_r:var_t:s0")
        for name in ("a", "b"):
            (vols / name).mkdir()
            (vols / name / "data").write_text(f"volume {name}\n")
        # The labels a host gives these (the policy's file_contexts, lane.py plan).
        for sub, context in (
            ("docker", labels["/run/docker"]),
            ("containerd", labels["/run/containerd"]),
            ("config", labels["/etc/docker"]),
            ("logs", "system_u:object_r:container_log_t:s0"),
        ):
            (run / sub).mkdir()
            os.setxattr(run / sub, "security.selinux", context.encode())
        # The repository (runc-lane, mcslabel's sources) at its host path, wherever it is.
        repo = spec["repo"].rstrip("/")
        if not self.host(repo).is_dir():
            self.host(repo).mkdir(parents=True)
            self.mount("--bind", str(ENGINE_FS / repo.lstrip("/")), str(self.host(repo)))
        os.makedirs(self.host(JOURNALS))
        subprocess.run(["modprobe", "overlay"], check=True)
        (run / "config" / "containerd.toml").write_text(
            "version = 2\n"
            'root = "/var/lib/docker/containerd/daemon"\n'
            'state = "/run/containerd/daemon"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\naddress = "{CTD_SOCK}"\n'
        )
        (run / "config" / "daemon.json").write_text("{}\n")

    def start(self, name: str, argv: str, ready: Any) -> None:
        """Start one engine daemon in the engine domain; it opens its own log."""
        t = time.monotonic()
        ctx = self.spec["engine_context"]
        cmd = f"exec {argv} </dev/null >/run/logs/{name}.log 2>&1"
        proc = subprocess.Popen(
            ["chroot", str(ENGINE_ROOT), "runcon", ctx, "/bin/sh", "-c", cmd],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(f"/run/lane-{name}.err", "wb"),  # noqa: SIM115 (runcon's own errors)
            start_new_session=True,
        )
        self.engine.append(proc)
        while time.monotonic() - t < START_WAIT:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}: {self.tail(name)}")
            if ready():
                break
            time.sleep(1.0)
        else:
            raise RuntimeError(f"{name} not ready after {START_WAIT}s: {self.tail(name)}")
        self.timing(f"{name}_up", t)
        current = Path(f"/proc/{proc.pid}/attr/current").read_text().rstrip("\0\n")
        self.result.setdefault("engine", {})[name] = current
        self.log(f"docker: {name} up in {self.result['timings'][f'{name}_up']}s as {current}")

    def tail(self, name: str) -> str:
        text = ""
        for path in (Path(f"/run/lane-{name}.err"), self.host(f"/run/logs/{name}.log")):
            with contextlib.suppress(OSError):
                text += path.read_text()[-1500:]
        return text

    def docker_ready(self) -> bool:
        if not self.host(SOCK).exists():
            return False
        import docker

        try:
            self.client = docker.DockerClient(
                base_url=f"unix://{self.host(SOCK)}", timeout=int(CMD_WAIT)
            )
            return bool(self.client.ping())
        except docker.errors.DockerException:
            return False

    def start_engine(self) -> None:
        # runc masks /proc/kcore with a bind mount of /dev/null; where the policy
        # denies the engine that (mounton proc_kcore_t), a wrapper drops that one
        # masked path and nothing else (runc-lane), and the report says so.
        kcore = "system_u:object_r:proc_kcore_t:s0"
        runtime = ""
        if not self.allowed(self.spec["engine_context"], kcore, "file", "mounton"):
            wrapper = Path(__file__).resolve().parent / "runc-lane"
            runtime = f" --add-runtime lane-runc={wrapper} --default-runtime lane-runc"
            self.result["masked_paths_dropped"] = {
                "paths": ["/proc/kcore"],
                "why": f"the policy denies {self.spec['engine_context'].split(':')[2]} "
                "mounton on proc_kcore_t:file (runc masks /proc/kcore by mounting over it)",
            }
        self.start(
            "containerd",
            "containerd --config /run/config/containerd.toml",
            lambda: self.host(CTD_SOCK).exists(),
        )
        self.start(
            "dockerd",
            f"dockerd --selinux-enabled --containerd {CTD_SOCK} --data-root /var/lib/docker"
            f" --exec-root /run/docker --pidfile /run/docker/docker.pid -H unix://{SOCK}"
            " --config-file /run/config/daemon.json --iptables=false --ip6tables=false"
            " --bridge=none --storage-driver=overlay2 --userland-proxy=false" + runtime,
            self.docker_ready,
        )
        domain = self.spec["engine_context"].split(":")[2]
        self.check(
            "engine_in_its_domain",
            all(c.split(":")[2] == domain for c in self.result["engine"].values()),
            self.result["engine"],
        )

    def stop_engine(self) -> None:
        for proc in reversed(self.engine):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # --- the checks -----------------------------------------------------


def write(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def engine_context(valid: Any, types: list[str]) -> str:
    """The first of ``types`` that is a domain (of system_r) in the loaded policy."""
    for t in types:
        ctx = f"system_u:system_r:{t}:s0-s0:c0.c{CATEGORIES - 1}"
        if valid(ctx):
            return ctx
    raise RuntimeError(f"none of the engine domains {types} is in the loaded policy")
