"""The lean marker path of ``mcslabel relabel --trust-marker`` (issue 18).

The console script answers a marker-trusted relabel of an unchanged tree
without argparse, attrs or the store classes
(:mod:`mcslabel.cli._marker_path`). It must change no result: for every
command line below, the console script prints what the full command line
(:func:`mcslabel.cli.main`) prints, exits with its status and leaves every
label as it does; and the lean path answers only where it is sure (a level
the store says the owner holds, a plain ``lxc_contexts``, a marker that
vouches for the tree), handing everything else to the full command line.
Real files, real xattrs, a real SQLite store, the installed policy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcslabel.relabeling.markers import MARKER_XATTR
from tests.xattrs import XATTR, every, label

MCSLABEL = str(Path(sys.executable).parent / "mcslabel")
OLD = b"system_u:object_r:tmp_t:s0\0"
RIGHT = b"system_u:object_r:container_file_t:s0:c5,c6\0"

FULL = "import sys\nfrom mcslabel.cli import main\nsys.exit(main(sys.argv[1:]))\n"
# The modules loaded by the start-up of this interpreter (site, .pth files) are not the lean
# path's: only what it imports itself is reported.
LEAN = (
    "import sys\n"
    "before = set(sys.modules)\n"
    "from mcslabel.cli._marker_path import run\n"
    "code = run(sys.argv[2:])\n"
    "new = sorted(set(sys.modules) - before)\n"
    "import json\n"
    "print(json.dumps({'code': code, 'modules': new}), file=sys.stderr)\n"
)


def make_tree(vol: Path, dirs: int = 6, files: int = 6) -> Path:
    vol.mkdir()
    for d in range(dirs):
        (vol / f"d{d}" / "sub").mkdir(parents=True)
        for f in range(files):
            (vol / f"d{d}" / f"f{f}").write_text("x")
    for p in every(vol):
        os.setxattr(p, XATTR, OLD, follow_symlinks=False)
    return vol


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MCSLABEL_STORE", "PYTHONUNBUFFERED")}
    return {**env, **extra}


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)


def script(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The console script as users run it (the lean path first)."""
    return run([MCSLABEL, *argv], env)


def full(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The full command line alone (main(), which never takes the lean path)."""
    return run([sys.executable, "-c", FULL, *argv], env)


def lean(argv: list[str], env: dict[str, str]) -> tuple[int | None, set[str]]:
    """What the lean path itself answers (None: handed on) and the modules it loaded."""
    done = run([sys.executable, "-c", LEAN, *argv], env)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def same_output(a: str, b: str) -> bool:
    """Equal but for the time a run took."""
    if a.lstrip().startswith("{"):
        da, db = json.loads(a), json.loads(b)
        da.pop("duration"), db.pop("duration")
        return bool(da == db)
    clock = re.compile(r"\(\d+\.\d\ds\)")
    return clock.sub("(T)", a) == clock.sub("(T)", b)


@pytest.fixture
def store(tmp_path: Path) -> str:
    """An SQLite store where this user holds s0:c5,c6 (``mcslabel reserve``)."""
    url = f"sqlite://{tmp_path / 'labels.db'}"
    done = script(["reserve", "s0:c5,c6", "--store", url, "--create-store"], env_with())
    assert done.returncode == 0, done.stderr
    return url


@pytest.fixture
def vol(tmp_path: Path, store: str) -> Path:
    v = make_tree(tmp_path / "vol")
    time.sleep(0.05)  # a directory changed just before a walk is not trusted (coarse clock)
    done = script(
        ["relabel", str(v), "--level", "s0:c5,c6", "--trust-marker", "--store", store], env_with()
    )
    assert done.returncode == 0, done.stderr
    assert {label(p) for p in every(v)} == {RIGHT}
    return v


def marker_bytes(vol: Path) -> bytes | None:
    try:
        return os.getxattr(vol, MARKER_XATTR)
    except OSError:
        return None


def compare(argv: list[str], env: dict[str, str], vol: Path) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` through the console script and through main() on copies of
    the same state; assert they agree on output, status and labels."""
    before = {p: label(p) for p in every(vol)}
    marker = marker_bytes(vol)
    by_script = script(argv, env)
    after_script = {p: label(p) for p in every(vol)}
    if after_script != before or marker_bytes(vol) != marker:
        # The second run starts from the same labels and marker (a tree that was
        # walked: its directories' times no longer match that marker either).
        for p, value in before.items():
            os.setxattr(p, XATTR, value, follow_symlinks=False)
        if marker is None:
            os.removexattr(vol, MARKER_XATTR)
        else:
            os.setxattr(vol, MARKER_XATTR, marker)
    by_main = full(argv, env)
    after_main = {p: label(p) for p in every(vol)}
    assert by_script.returncode == by_main.returncode, (by_script, by_main)
    assert same_output(by_script.stdout, by_main.stdout), (by_script.stdout, by_main.stdout)
    assert by_script.stderr == by_main.stderr
    assert after_script == after_main
    return by_script


def test_an_unchanged_tree_is_answered_by_the_lean_path(vol: Path, store: str) -> None:
    argv = ["relabel", str(vol), "--level", "s0:c5,c6", "--trust-marker", "--store", store]
    code, loaded = lean(argv, env_with())
    assert code == 0
    # What it does not load is what makes it lean.
    assert not {"attrs", "typing", "argparse", "mcslabel.level", "mcslabel.context"} & loaded
    assert not {m for m in loaded if m.startswith("mcslabel.allocation.stores")}
    # On ext4 (here) the mount table names the file system: no fstatfs through ctypes.
    assert "ctypes" not in loaded
    done = compare(argv, env_with(), vol)
    assert "unchanged since its marker: walk skipped" in done.stdout
    assert f"already right {len(every(vol))}," in done.stdout


@pytest.mark.parametrize(
    "extra",
    [
        ["--json"],
        ["--shared"],
        ["--shared", "--json"],
        ["--owner", "someone-else"],  # not held by that owner: the full way warns
        ["--level=s0:c6,c7"],  # another label: walks
    ],
)
def test_variants_agree_with_the_full_command_line(vol: Path, store: str, extra: list[str]) -> None:
    argv = ["relabel", str(vol), "--trust-marker", "--store", store]
    if not any(e.startswith(("--level", "--shared")) for e in extra):
        argv += ["--level", "s0:c5,c6"]
    compare([*argv, *extra], env_with(), vol)


def test_the_store_from_the_environment_is_asked_too(vol: Path, store: str) -> None:
    argv = ["relabel", str(vol), "--level", "s0:c5,c6", "--trust-marker"]
    assert lean(argv, env_with(MCSLABEL_STORE=store))[0] == 0
    compare(argv, env_with(MCSLABEL_STORE=store), vol)


@pytest.mark.parametrize(
    "argv_tail",
    [
        ["--level", "s0:c6,c5"],  # not canonical: the full parser's business
        ["--level", "s0:c5.c6"],
        ["--level", "s0:c5,c6", "--dry-run"],
        ["--level", "s0:c5,c6", "--require-held"],
        ["--level", "s0:c5,c6", "--refuse", "/srv"],
        ["--level", "s0:c5,c6", "--level", "s0:c5,c6"],
        ["--level", "s0:c5,c6", "--shared"],
        ["--level", "s0:c5,c6", "--jso"],
        ["--level"],
        ["--level", "s0:c5,c6", "-h"],
    ],
)
def test_anything_unusual_goes_the_full_way(vol: Path, store: str, argv_tail: list[str]) -> None:
    argv = ["relabel", str(vol), "--trust-marker", "--store", store, *argv_tail]
    assert lean(argv, env_with())[0] is None
    compare(argv, env_with(), vol)


def test_a_changed_tree_or_a_level_not_held_goes_the_full_way(
    vol: Path, store: str, tmp_path: Path
) -> None:
    argv = ["relabel", str(vol), "--level", "s0:c5,c6", "--trust-marker", "--store", store]
    (vol / "d0" / "new").write_text("x")  # a new entry: its directory's mtime moves
    os.setxattr(vol / "d0" / "new", XATTR, OLD)
    assert lean(argv, env_with())[0] is None
    compare(argv, env_with(), vol)
    # A level nobody holds: the full command warns, the lean path does not answer.
    other = f"sqlite://{tmp_path / 'other.db'}"
    from mcslabel import open_store

    open_store(other, create=True).close()
    argv = ["relabel", str(vol), "--level", "s0:c5,c6", "--trust-marker", "--store", other]
    assert lean(argv, env_with())[0] is None
    assert "is not held by" in compare(argv, env_with(), vol).stderr
    # An explicit store that does not exist, an etcd store: the full way.
    for url in (f"sqlite://{tmp_path / 'none.db'}", "etcd://127.0.0.1:1/x"):
        argv = ["relabel", str(vol), "--level", "s0:c5,c6", "--trust-marker", "--store", url]
        assert lean(argv, env_with())[0] is None


def test_paths_are_checked_as_the_full_command_checks_them(
    vol: Path, store: str, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(vol)
    argv = ["relabel", str(link) + "/", "--level", "s0:c5,c6", "--trust-marker", "--store", store]
    assert lean(argv, env_with())[0] == 0
    assert f"{vol}: unchanged since its marker" in compare(argv, env_with(), vol).stdout
    # A refused path, a missing one: exit 2 from the full command line.
    for path in ("/usr", str(tmp_path / "missing")):
        argv = ["relabel", path, "--shared", "--trust-marker", "--store", store]
        assert lean(argv, env_with())[0] is None
        assert script(argv, env_with()).returncode == 2
    # The store file given by --store is refused (it would be relabeled with the tree).
    argv = ["relabel", str(tmp_path), "--shared", "--trust-marker", "--store", store]
    assert lean(argv, env_with())[0] is None


def test_a_mount_point_inside_the_volume_voids_the_marker(vol: Path, store: str) -> None:
    inner = vol / "d1" / "sub"
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inner)], check=True)
    try:
        argv = ["relabel", str(vol), "--level", "s0:c5,c6", "--trust-marker", "--store", store]
        assert lean(argv, env_with())[0] is None
    finally:
        subprocess.run(["umount", str(inner)], check=True)


def test_an_lxc_contexts_of_another_shape_goes_the_full_way(
    vol: Path, store: str, tmp_path: Path
) -> None:
    from mcslabel.verification.policyfiles import installed_policy_type

    root = tmp_path / "policy"
    shutil.copytree(Path("/etc/selinux") / installed_policy_type(), root, symlinks=True)
    argv = ["relabel", str(vol), "--level", "s0:c5,c6", "--trust-marker", "--store", store]
    argv += ["--policy-root", str(root)]
    assert lean(argv, env_with())[0] == 0
    lxc = root / "contexts" / "lxc_contexts"
    lxc.write_text(lxc.read_text() + "; a comment the lean reader does not take\n")
    assert lean(argv, env_with())[0] is None
    compare(argv, env_with(), vol)
    # Another file type: a walk (the marker names the old one), the same as the full way.
    lxc.write_text(lxc.read_text().replace("container_file_t", "svirt_sandbox_file_t"))
    assert lean(argv, env_with())[0] is None


def test_a_closed_stdout_ends_the_lean_path_by_sigpipe(vol: Path, store: str) -> None:
    argv = ["relabel", str(vol), "--level", "s0:c5,c6", "--trust-marker", "--store", store]
    r, w = os.pipe()
    os.close(r)
    try:
        done = subprocess.run([MCSLABEL, *argv], stdout=w, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(w)
    assert done.returncode == -13, done.stderr  # SIGPIPE, like git
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_an_unwritable_or_closed_stdout_ends_as_the_full_way_ends(
    vol: Path, store: str, json_flag: list[str]
) -> None:
    argv = ["relabel", str(vol), "--level", "s0:c5,c6", "--trust-marker", "--store", store]
    argv += json_flag
    env = env_with()
    # /dev/full: nothing can be written; the lean path leaves it to the full way, which
    # meets the same error (when stdout's buffer is flushed at exit: status 120).
    with open("/dev/full", "w") as full_dev:
        by_script = subprocess.run(
            [MCSLABEL, *argv], stdout=full_dev, stderr=subprocess.PIPE, text=True, env=env
        )
        by_main = subprocess.run(
            [sys.executable, "-c", FULL, *argv],
            stdout=full_dev,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    assert by_script.returncode == by_main.returncode != 0
    assert by_script.stderr == by_main.stderr
    assert "No space left on device" in by_script.stderr
    # stdout closed when the process starts: print() writes nothing, exit 0, no traceback.
    for cmd in ([MCSLABEL, *argv], [sys.executable, "-c", FULL, *argv]):
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=lambda: os.close(1),
        )
        assert done.returncode == 0 and done.stderr == "", (cmd[0], done.stderr)
