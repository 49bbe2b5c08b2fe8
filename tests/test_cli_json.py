"""Every command's ``--json`` is one object with its documented keys; every
command that prints ends quietly on a pipe closed early (as git: SIGPIPE).

Real parts throughout: the installed mcslabel script in subprocesses, real
SQLite stores, real files with real labels, the real dockerd.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest

from tests.docker_env import IMAGE, TEST_LABEL

if TYPE_CHECKING:
    from tests.docker_env import Containers

MCSLABEL = str(Path(sys.executable).parent / "mcslabel")
XATTR = "security.selinux"

# The keys docs/cli.md documents for each command's JSON object (at least these).
ALLOCATION = {
    "level",
    "owners",
    "created",
    "expires",
    "name",
    "shared",
    "host",
    "custom",
    "persistent",
}
DOCUMENTED: dict[str, set[str]] = {
    "check": {"kind", "canonical"},
    "show": {"labels", "errors"},
    "policy": {"policy", "version", "mls", "categories", "container_contexts"},
    "allocate": ALLOCATION,
    "reserve": ALLOCATION,
    "renew": ALLOCATION,
    "release": {"level", "freed", "remaining"},
    "list": {"allocations"},
    "gc": {"events"},
    "docker sync": {"ok", "reserved", "kept", "released", "fenced", "conflicts"},
    "docker audit": {"ok", "containers", "findings"},
    "docker run": {"id", "level", "owner", "journals"},
    "docker rm": {"ok", "id", "name", "level", "restored", "held_volumes"},
    "docker volumes list": {"ok", "volumes", "engines"},
    "docker volumes restore": {"ok", "action", "volume", "engines"},
    "docker volumes forget": {"ok", "action", "volume", "engines"},
    "verify": {"ok", "policy", "domain", "level", "paths", "mcs", "violations"},
    "relabel": {"ok", "root", "context", "changed", "unchanged", "failed", "journal"},
    "restore": {"ok", "root", "restored", "unchanged", "replaced", "failed", "journal_removed"},
    "journal list": {"journals"},
    "journal remove": {"removed"},
}
ERROR_KEYS = {"ok", "error"}


def mcslabel(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCSLABEL, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


@attrs.define
class Scene:
    """A volume with a label, a store with an allocation, a journal: every command has input."""

    tmp: Path
    store: str
    vol: Path
    journal: Path


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    vol = tmp_path / "vol"
    (vol / "d").mkdir(parents=True)
    (vol / "d" / "f").write_text("x")
    os.setxattr(vol / "d" / "f", XATTR, b"system_u:object_r:etc_t:s0\0")
    store = f"sqlite://{tmp_path}/labels.db"
    done = mcslabel(
        "reserve", "s0:c7,c8", "--owner", "docker:" + "ab" * 32, "--store", store, "--create-store"
    )
    assert done.returncode == 0, done.stderr
    return Scene(tmp_path, store, vol, tmp_path / "journals" / "j")


def _time(value: object) -> None:
    assert isinstance(value, str) and value.endswith("Z"), value
    datetime.datetime.fromisoformat(value)


def check_json(command: str, done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode in (0, 1), (command, done.stderr)
    data = json.loads(done.stdout)
    assert isinstance(data, dict), f"{command}: --json must print an object"
    missing = DOCUMENTED[command] - set(data)
    assert not missing, f"{command}: undocumented JSON, missing {missing}"
    if "ok" in DOCUMENTED[command]:
        assert isinstance(data["ok"], bool)
        assert data["ok"] == (done.returncode == 0), command
    for key in ("created", "expires"):
        if data.get(key) is not None:
            _time(data[key])
    return data


def test_every_command_prints_one_documented_object(scene: Scene) -> None:
    s = scene
    check_json("check", mcslabel("check", "s0:c2,c1", "--json"))
    check_json("policy", mcslabel("policy", "--json"))
    data = check_json("allocate", mcslabel("allocate", "--store", s.store, "--ttl", "60", "--json"))
    level = str(data["level"])
    assert data["expires"] is not None
    check_json("reserve", mcslabel("reserve", "s0:c9,c10", "--store", s.store, "--json"))
    check_json("renew", mcslabel("renew", level, "--ttl", "90", "--store", s.store, "--json"))
    listed = check_json("list", mcslabel("list", "--store", s.store, "--json"))
    assert isinstance(listed["allocations"], list)
    for record in listed["allocations"]:
        _time(record["created"])
    check_json("gc", mcslabel("gc", "--store", s.store, "--json"))
    released = check_json("release", mcslabel("release", "s0:c10,c9", "--store", s.store, "--json"))
    assert released["level"] == "s0:c9,c10"  # the canonical level, not the text typed
    check_json("verify", mcslabel("verify", "--json"))
    s.journal.parent.mkdir()
    relabeled = check_json(
        "relabel",
        mcslabel("relabel", str(s.vol), "--level", level, "--journal", str(s.journal), "--json"),
    )
    assert relabeled["ok"] is True
    shown = check_json("show", mcslabel("show", str(s.vol), "--store", s.store, "--json"))
    assert shown["labels"] == [  # type: ignore[comparison-overlap]
        {
            "path": str(s.vol),
            "context": f"system_u:object_r:container_file_t:{level}",
            "raw": f"system_u:object_r:container_file_t:{level}",
            "type": "container_file_t",
            "level": level,
            "owners": [f"user:{_user()}"],
            "name": None,
        }
    ]
    journals = check_json(
        "journal list", mcslabel("journal", "list", str(s.journal.parent), "--json")
    )
    assert [j["path"] for j in journals["journals"]] == [str(s.journal)]  # type: ignore[attr-defined]
    check_json("restore", mcslabel("restore", str(s.journal), "--json"))
    removed = check_json("journal remove", mcslabel("journal", "remove", str(s.journal), "--json"))
    assert removed["removed"] == [str(s.journal)]


def _user() -> str:
    import getpass
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()}"


@pytest.mark.docker
def test_docker_commands_print_one_documented_object(scene: Scene, containers: Containers) -> None:
    s = scene
    data = tmp = s.tmp / "data"
    data.mkdir()
    mine = f"label={TEST_LABEL}={containers.run_id}"
    check_json("docker audit", mcslabel("docker", "audit", "--filter", mine, "--json"))
    started = check_json(
        "docker run",
        mcslabel(
            "docker", "run", "--store", s.store, "--json",
            "--name", f"mcslabel-test-{containers.run_id}-json",
            "--label", f"{TEST_LABEL}={containers.run_id}",
            "--journal-dir", str(tmp.parent / "docker-journals"),
            "-v", f"{data}:/data:Z", IMAGE, "sleep", "300",
        ),
    )  # fmt: skip
    full_id = str(started["id"])
    containers.created.append(containers.client.containers.get(full_id))
    assert len(full_id) == 64  # JSON keeps full ids
    check_json("docker sync", mcslabel("docker", "sync", "--store", s.store, "--json"))
    # A name is typed; the JSON names what was removed: the full id, not the echo.
    removed = check_json(
        "docker rm",
        mcslabel("docker", "rm", "--store", s.store, f"mcslabel-test-{containers.run_id}-json",
                 "--json"),
    )  # fmt: skip
    assert removed["id"] == full_id
    assert removed["held_volumes"] == []  # restored, so released

    # docker volumes: one volume left orphaned (its container removed behind
    # mcslabel's back: journals kept) is restored; one kept by --keep-labels is forgotten.
    journals = str(tmp.parent / "docker-journals")

    def start(name: str, volume: Path) -> str:
        volume.mkdir()
        done = mcslabel(
            "docker", "run", "--store", s.store, "--json",
            "--name", f"mcslabel-test-{containers.run_id}-{name}",
            "--label", f"{TEST_LABEL}={containers.run_id}",
            "--journal-dir", journals,
            "-v", f"{volume}:/data:Z", IMAGE, "sleep", "300",
        )  # fmt: skip
        started = check_json("docker run", done)
        containers.created.append(containers.client.containers.get(str(started["id"])))
        return str(started["id"])

    orphan, kept = s.tmp / "orphan", s.tmp / "kept"
    containers.client.containers.get(start("orphan", orphan)).remove(force=True)
    kept_id = start("kept", kept)
    kept_rm = check_json(
        "docker rm",
        mcslabel("docker", "rm", "--store", s.store, "--keep-labels", kept_id, "--json"),
    )
    assert kept_rm["held_volumes"] == [str(kept)]
    listed = check_json(
        "docker volumes list",
        mcslabel("docker", "volumes", "--store", s.store, "--journal-dir", journals, "--json"),
    )
    held = {v["path"]: v for v in listed["volumes"]}  # type: ignore[attr-defined]
    assert held[str(orphan)]["orphaned"] and held[str(kept)]["held"]
    for action, volume in (("restore", orphan), ("forget", kept)):
        settled = check_json(
            f"docker volumes {action}",
            mcslabel("docker", "volumes", action, str(volume), "--store", s.store,
                     "--journal-dir", journals, "--engine", "docker", "--json"),
        )  # fmt: skip
        assert settled["action"] == action
        assert settled["volume"]["path"] == str(volume)  # type: ignore[index]


def test_errors_are_objects_too(scene: Scene) -> None:
    for argv in (
        ("check", "s0:c1024", "--json"),
        ("reserve", "s0:c7,c8", "--owner", "x", "--store", scene.store, "--json"),
        ("restore", str(scene.tmp / "missing"), "--json"),
        ("check", "--levle", "s0", "--json"),  # a usage error
    ):
        done = mcslabel(*argv)
        data = json.loads(done.stdout)
        assert set(data) == ERROR_KEYS and data["ok"] is False, argv
        assert data["error"]["exit_code"] == done.returncode and done.returncode in (2, 3)
        assert done.stderr.count("mcslabel") >= 1  # and one line for humans


# --- a pipe closed before the command writes ---------------------------------

PRINTING = [
    ("--help",),
    ("check", "s0:c1,c2"),
    ("check", "s0:c1,c2", "--json"),
    ("policy",),
    ("verify",),
    ("verify", "--json"),
    ("docker", "audit", "--filter", "label=io.mcslabel.test=none"),
    ("docker", "audit", "--json", "--filter", "label=io.mcslabel.test=none"),
    ("list", "--store", "{store}"),
    ("list", "--store", "{store}", "--json"),
    ("show", "{vol}", "--store", "{store}"),
    ("journal", "list", "{tmp}"),
    ("gc", "--store", "{store}"),
]


def _closed_early(argv: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([MCSLABEL, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # before the interpreter has even started: every write fails
    return proc


@pytest.mark.parametrize("argv", PRINTING, ids=" ".join)
def test_a_closed_pipe_ends_the_command_quietly(argv: tuple[str, ...], scene: Scene) -> None:
    fill = {"store": scene.store, "vol": str(scene.vol), "tmp": str(scene.tmp)}
    proc = _closed_early([a.format(**fill) for a in argv])
    _, err = proc.communicate(timeout=120)
    # Killed by SIGPIPE like git: the shell shows 141, never 1 (a failed check) or 3.
    assert proc.returncode == -signal.SIGPIPE, err.decode()
    assert err == b""


def test_a_closed_pipe_in_a_real_shell_is_141(scene: Scene) -> None:
    done = subprocess.run(
        ["bash", "-c", f'{MCSLABEL} list --store {scene.store} | true; echo "${{PIPESTATUS[0]}}"'],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() in ("141", "0")  # 0 when the write won the race with `true`
    assert "Traceback" not in done.stderr and done.stderr == ""
