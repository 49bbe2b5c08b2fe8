"""What a relabel or restore process loads, and how it ends (issue 18).

A whole ``mcslabel relabel`` process is mostly interpreter start-up and
imports when the walk is short (``--trust-marker`` on an unchanged tree):
these tests pin down that the relabel, restore and marker paths do not load
the policy bindings (SETools, libselinux, libsepol), the verifier or the
allocator, and that the console script's quick exit (no interpreter
teardown) still delivers every byte of output and every exit status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mcslabel.cli import QUICK_EXIT
from tests.xattrs import XATTR, every

MCSLABEL = str(Path(sys.executable).parent / "mcslabel")
OLD = b"system_u:object_r:tmp_t:s0\0"

# Loaded by none of the relabel paths: the OS policy bindings, the verifier
# and its decision engine, the allocator, the worker machinery (small trees).
HEAVY = (
    "setools",
    "selinux",
    "mcslabel.verification.verifier",
    "mcslabel.verification.engine",
    "mcslabel.verification._sepol",
    "mcslabel.verification.filecontexts",
    "mcslabel.allocation.allocator",
    "mcslabel.integrations",
)


def loaded_after(argv: list[str], env: dict[str, str] | None = None) -> set[str]:
    """The modules ``mcslabel ARGV`` has loaded when it is done (run in a fresh process)."""
    code = textwrap.dedent(
        """
        import json, sys
        from mcslabel.cli import main
        try:
            code = main(json.loads(sys.argv[1]))
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    return set(report["modules"])


def make_tree(vol: Path, dirs: int = 5, files: int = 5) -> Path:
    vol.mkdir()
    for d in range(dirs):
        (vol / f"d{d}").mkdir()
        for f in range(files):
            (vol / f"d{d}" / f"f{f}").write_text("x")
    for p in every(vol):
        os.setxattr(p, XATTR, OLD, follow_symlinks=False)
    return vol


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    """An existing SQLite store: a relabel --level then asks it who holds the level."""
    from mcslabel import open_store

    url = f"sqlite://{tmp_path / 'labels.db'}"
    open_store(url, create=True).close()
    return {"MCSLABEL_STORE": url}


def test_relabel_help_loads_no_job(tmp_path: Path) -> None:
    loaded = loaded_after(["relabel", "--help"])
    assert not {m for m in loaded if m.startswith(HEAVY)}, sorted(loaded)
    assert "mcslabel.relabeling.engine" not in loaded  # handlers import the job when run
    assert "sqlite3" not in loaded


def test_a_relabel_loads_no_policy_binding_verifier_or_allocator(
    tmp_path: Path, store: dict[str, str]
) -> None:
    vol = make_tree(tmp_path / "vol")
    journal = tmp_path / "journal"
    argv = ["relabel", str(vol), "--level", "s0:c1,c2", "--journal", str(journal)]
    loaded = loaded_after(argv, store)
    assert "mcslabel.relabeling.engine" in loaded  # it did run
    assert "mcslabel.allocation.stores.sqlite" in loaded  # and asked the store
    assert not {m for m in loaded if m.startswith(HEAVY)}, sorted(loaded)

    loaded = loaded_after(["restore", str(journal)])
    assert "mcslabel.relabeling.restoration" in loaded
    assert not {m for m in loaded if m.startswith(HEAVY)}, sorted(loaded)
    assert not {m for m in loaded if m.startswith(("mcslabel.verification", "sqlite3"))}


def test_a_trusted_marker_run_loads_only_what_the_check_needs(
    tmp_path: Path, store: dict[str, str]
) -> None:
    vol = make_tree(tmp_path / "vol")
    argv = ["relabel", str(vol), "--level", "s0:c1,c2", "--trust-marker"]
    subprocess.run([MCSLABEL, *argv], check=True, capture_output=True, env={**os.environ, **store})
    time.sleep(0.05)
    loaded = loaded_after([*argv, "--json"], store)
    assert "mcslabel.relabeling.markers" in loaded
    assert not {m for m in loaded if m.startswith(HEAVY)}, sorted(loaded)
    # No walk: no worker machinery.
    assert not {"mcslabel.relabeling._parallel", "mcslabel.relabeling._worker"} & loaded


def run_script(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """The console script as users run it: stdout block-buffered into a pipe."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [MCSLABEL, *argv], text=True, timeout=120, check=False, env=env, **kwargs
    )


def test_the_quick_exit_delivers_all_output_and_the_exit_status(tmp_path: Path) -> None:
    assert {"relabel", "restore"} <= QUICK_EXIT
    vol = make_tree(tmp_path / "vol", dirs=20, files=20)
    journal = tmp_path / "journal"
    # stdout a pipe: block-buffered, so it reaches the reader only when flushed.
    done = run_script(
        "relabel", str(vol), "--shared", "--journal", str(journal), "--json", capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"] == 20 * 21 + 1
    done = run_script("restore", str(journal), "--json", capture_output=True)
    assert done.returncode == 0 and json.loads(done.stdout)["restored"] == 20 * 21 + 1
    # A file that cannot be labeled: exit 3, the summary on stdout, the file on stderr.
    subprocess.run(["chattr", "+i", str(vol / "d0" / "f0")], check=True)
    try:
        done = run_script("relabel", str(vol), "--shared", capture_output=True)
    finally:
        subprocess.run(["chattr", "-i", str(vol / "d0" / "f0")], check=True)
    assert done.returncode == 3
    assert "failed 1" in done.stdout and "d0/f0" in done.stderr
    # Input errors still leave through argparse / the handler: exit 2.
    assert run_script("restore", str(tmp_path / "none"), capture_output=True).returncode == 2
    assert run_script("relabel", str(vol), capture_output=True).returncode == 2


def test_a_closed_stdout_ends_a_relabel_by_sigpipe(tmp_path: Path) -> None:
    # The summary sits in stdout's buffer until the exit flushes it into a
    # pipe nobody reads: the process dies of SIGPIPE, like git, no traceback.
    vol = make_tree(tmp_path / "vol")
    r, w = os.pipe()
    os.close(r)
    try:
        done = run_script("relabel", str(vol), "--shared", stdout=w, stderr=subprocess.PIPE)
    finally:
        os.close(w)
    assert done.returncode == -signal.SIGPIPE, done.stderr
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr
