"""CLI skeleton: --version, check, policy; exit codes and --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcslabel.cli import main


def test_check_prints_canonical(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "s0:c2,c1"]) == 0
    assert capsys.readouterr().out == "s0:c1,c2\n"


def test_check_context_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "staff_u:staff_r:staff_t:s0-s0:c0.c1023", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "context" and data["type"] == "staff_t"
    assert data["level"] == "s0-s0:c0.c1023"


def test_check_level_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "s0:c0,c1,c2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "kind": "level",
        "canonical": "s0:c0.c2",
        "sensitivity": 0,
        "categories": [0, 1, 2],
        "is_pair": False,
        "policy": "/etc/selinux/default/policy/policy.33",
    }


def test_check_prints_libsepol_canonical_form(capsys: pytest.CaptureFixture[str]) -> None:
    for text, canonical in [
        ("s0-s0", "s0"),
        ("s0:c1,c2-s0:c1,c2", "s0:c1,c2"),
        ("s0:c1,c1", "s0:c1"),
        ("s0:c0.c5,c3", "s0:c0.c5"),
        ("u:r:t:s0-s0", "u:r:t:s0"),
    ]:
        assert main(["check", text]) == 0
        assert capsys.readouterr().out == canonical + "\n"


def test_check_sensitivities_come_from_the_policy(
    centos_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both policies are s0-only MCS policies: s1 is not a level there.
    assert main(["check", "s1"]) == 2
    assert "s0 only" in capsys.readouterr().err
    assert main(["check", "s1:c1,c2", "--policy-root", str(centos_root)]) == 2
    assert "s1" in capsys.readouterr().err
    assert main(["check", "s1", "--no-policy"]) == 0
    assert main(["check", "s1", "--sensitivities", "2"]) == 0
    assert main(["check", "s0:c1024", "--categories", "2048"]) == 0
    capsys.readouterr()
    assert main(["check", "s0", "--no-policy", "--policy-root", str(centos_root)]) == 2


@pytest.mark.parametrize(
    "bad", ["s0:c1024", "SystemLow", "s0:c5.c3", "s0:c5.c5", "u:r", "u:r:t:s0:c5.c5"]
)
def test_check_bad_input_exit_2_one_line(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcslabel: error: ") and err.count("\n") == 1


def test_check_bad_input_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "s0:c1024", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "InvalidLevel"


def test_policy_command(centos_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "--policy-root", str(centos_root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["categories"] == 1024
    assert data["container_contexts"]["process"] == "system_u:system_r:container_t:s0"
    assert data["container_contexts"]["process_type_defined"] is True


def test_policy_command_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").write_text("nope")
    assert main(["policy", "--policy", str(tmp_path / "x")]) == 2


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2


def test_version_imports_no_setools_or_docker() -> None:
    code = (
        "import sys\n"
        "from mcslabel.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "bad = [m for m in ('setools', 'docker', 'selinux', 'etcd3gw') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mcslabel ")


def test_console_script() -> None:
    exe = Path(sys.executable).parent / "mcslabel"
    out = subprocess.run(
        [str(exe), "check", "s0:c9,c3"], capture_output=True, text=True, check=False
    )
    assert (out.returncode, out.stdout) == (0, "s0:c3,c9\n")


def test_check_reads_the_sizes_of_a_small_mls_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2 sensitivities, 256 categories, read by libsepol from the binary policy.
    conf = "\n".join(
        [
            "class file",
            "sid kernel",
            "common file { read }",
            "class file inherits file",
            "sensitivity s0;",
            "sensitivity s1;",
            "dominance { s0 s1 }",
            *(f"category c{i};" for i in range(256)),
            "level s0:c0.c255;",
            "level s1:c0.c255;",
            "mlsconstrain file { read } (h1 dom h2);",
            "type t;",
            "allow t t:file read;",
            "role r;",
            "role r types { t };",
            "user u roles { r } level s0 range s0 - s1:c0.c255;",
            "sid kernel u:r:t:s0",
        ]
    )
    (tmp_path / "p.conf").write_text(conf + "\n")
    policy = tmp_path / "policy.33"
    subprocess.run(
        ["checkpolicy", "-M", "-c", "33", "-o", str(policy), str(tmp_path / "p.conf")],
        check=True,
        capture_output=True,
    )
    assert main(["check", "s1:c100", "--policy", str(policy), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["canonical"] == "s1:c100" and data["policy"] == str(policy)
    assert main(["check", "s1:c0.c255", "--policy", str(policy)]) == 0
    assert main(["check", "s0:c256", "--policy", str(policy)]) == 2
    assert "c0..c255" in capsys.readouterr().err
    assert main(["check", "s2", "--policy", str(policy)]) == 2
    assert "s0..s1" in capsys.readouterr().err
    assert main(["check", "u:r:t:s0-s2", "--policy", str(policy)]) == 2


def test_check_against_the_policy_does_not_load_setools() -> None:
    code = (
        "import sys\n"
        "from mcslabel.cli import main\n"
        "assert main(['check', 's0:c1,c2']) == 0\n"
        "assert 'setools' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "s0:c1,c2\n"


def test_check_caches_the_policy_counts_by_file_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcslabel.verification.policy import mls_facts

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    policy = tmp_path / "policy.33"
    policy.write_bytes(Path("/etc/selinux/default/policy/policy.33").read_bytes())
    first = mls_facts(policy=policy, cache=True)
    cache = tmp_path / "cache" / "mcslabel" / "mls-facts"
    key, mls, sens, cats = cache.read_text().split()
    assert (mls, int(sens), int(cats)) == ("1", first.sensitivities, first.categories)
    # The cache answers, not libsepol: a forged entry for this very file is believed...
    cache.write_text(f"{key} 1 1 16\n")
    assert mls_facts(policy=policy, cache=True).categories == 16
    # ...until the file changes (mtime, size or inode), and without cache= it is never read.
    assert mls_facts(policy=policy).categories == first.categories
    os.utime(policy, ns=(1, 1))
    assert mls_facts(policy=policy, cache=True).categories == first.categories
