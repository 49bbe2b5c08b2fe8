"""``mcslabel verify`` end to end: exit codes, JSON shape, table, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcslabel.cli import main
from tests.verify_testpolicy import build_root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_root(tmp_path_factory.mktemp("clipolicy"))


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cliempty")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_installed_policy_json(capsys: pytest.CaptureFixture[str], empty: Path) -> None:
    code, out, _ = _run(capsys, "--json", "--root", str(empty))
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True
    assert data["domain"] == "container_t"
    assert [p["path"] for p in data["paths"]] == ["/var", "/root", "/home"]
    first = data["paths"][0]
    assert first["source"] == "file_contexts"
    assert {"class", "perm", "allowed", "reason", "rules", "booleans"} <= set(first["checks"][0])
    search = next(c for c in first["checks"] if (c["class"], c["perm"]) == ("dir", "search"))
    assert search["allowed"] and search["rules"]
    assert {m["relation"] for m in data["mcs"]["checks"]} == {"same", "other", "s0"}


def test_table_by_default(capsys: pytest.CaptureFixture[str], root: Path, empty: Path) -> None:
    code, out, _ = _run(capsys, "--policy-root", str(root), "--root", str(empty))
    assert code == 0
    assert "PATH" in out and "REASON" in out
    assert "OK: every must-block access is denied" in out
    assert "constraint" in out


def test_leaky_domain_exits_1(capsys: pytest.CaptureFixture[str], root: Path, empty: Path) -> None:
    code, out, _ = _run(
        capsys, "--policy-root", str(root), "--domain", "leaky_t", "--root", str(empty)
    )
    assert code == 1
    assert "ALLOWED!" in out
    assert "FAIL:" in out and "allow leaky_t var_t:file" in out


def test_boolean_flag_and_perm_flag(
    capsys: pytest.CaptureFixture[str], root: Path, empty: Path
) -> None:
    args = ["--policy-root", str(root), "--root", str(empty), "--path", "/mnt/nfs"]
    args += ["--perm", "file:read", "--json"]
    code, out, _ = _run(capsys, *args)
    assert code == 0
    cell = json.loads(out)["paths"][0]["checks"][0]
    assert (cell["reason"], cell["booleans"]) == ("boolean", ["container_use_nfs=on"])
    code, out, _ = _run(capsys, *args, "--boolean", "container_use_nfs=on")
    assert code == 1
    data = json.loads(out)
    assert data["booleans"] == {"container_use_nfs": True}
    assert data["paths"][0]["checks"][0]["allowed"] is True


def test_store_flag(
    capsys: pytest.CaptureFixture[str], root: Path, empty: Path, tmp_path: Path
) -> None:
    from mcslabel.allocation.allocator import Allocator
    from mcslabel.allocation.stores import open_store

    code, out, _ = _run(
        capsys, "--policy-root", str(root), "--root", str(empty), "--store", "memory://", "--json"
    )
    assert code == 0
    assert json.loads(out)["mcs"]["held"] == []
    # A real SQLite registry holding a pair (the test policy has c0..c3): checked, and
    # denied by the MCS constraint.
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    store = open_store(url, create=True)
    try:
        Allocator(store, categories=4).reserve("s0:c2,c3", "test:cli-verify")
    finally:
        store.close()
    args = ["--policy-root", str(root), "--root", str(empty), "--store", url, "--json"]
    code, out, _ = _run(capsys, *args, "--level", "s0:c0,c1")
    assert code == 0
    mcs = json.loads(out)["mcs"]
    assert mcs["held"] == ["s0:c2,c3"]
    held = [c for c in mcs["checks"] if c["relation"] == "held"]
    assert held and all(c["level"] == "s0:c2,c3" for c in held)
    assert {c["reason"] for c in held if c["cross_pair"] and c["must_block"]} == {"constraint"}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--domain", "nosuch_t"], "nosuch_t"),
        (["--perm", "file"], "CLASS:PERM"),
        (["--perm", "file:fly"], "fly"),
        (["--class", "process"], "no permissions"),
        (["--class", "no_such_class"], "no_such_class"),
        (["--perm", "dir:read", "--class", "file", "--path", "/var"], "dir:read"),
        (["--domain", "container_file_t"], "not a domain"),
        (["--level", "s0:c5.c5"], "c5.c5"),
        (["--level", "s1"], "s1"),
        (["--boolean", "container_use_nfs"], "NAME=on"),
        (["--boolean", "nosuch=on"], "nosuch"),
        (["--path", "/proc"], "/proc"),
        (["--path", "relative"], "absolute"),
        (["--level", "s0:c99"], "c99"),
        (["--store", "bogus://x"], "store"),
    ],
)
def test_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], root: Path, empty: Path, args: list[str], match: str
) -> None:
    code, out, err = _run(capsys, "--policy-root", str(root), "--root", str(empty), *args)
    assert code == 2, (out, err)
    assert match in err


def test_errors_as_json(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    code, out, _ = _run(capsys, "--policy-root", str(root), "--domain", "nosuch_t", "--json")
    assert code == 2
    assert json.loads(out)["error"]["type"] == "UnknownPolicyName"


def test_non_policy_and_non_mls_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bogus = tmp_path / "policy.33"
    bogus.write_bytes(os.urandom(2048))
    code, _, err = _run(capsys, "--policy", str(bogus), "--domain", "container_t")
    assert code == 2 and "not a binary SELinux policy" in err
    truncated = tmp_path / "truncated.33"
    whole = Path("/etc/selinux/default/policy/policy.33").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 3])
    code, _, err = _run(capsys, "--policy", str(truncated), "--domain", "container_t")
    assert code == 2 and "damaged or truncated" in err and "Source policies" not in err
    plain = build_root(tmp_path / "plain", mls=False)
    code, _, err = _run(capsys, "--policy-root", str(plain))
    assert code == 2 and "not an MLS" in err


def test_version_does_not_import_setools() -> None:
    code = (
        "import sys; from mcslabel.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "assert 'setools' not in sys.modules\n"
        "assert 'mcslabel.verification.verifier' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
