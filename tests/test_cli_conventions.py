"""CLI-wide conventions: the exit scheme, strict flags with suggestions,
global options, descriptions and metavars, tables that fit the terminal."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mcslabel.cli import COMMANDS, build_parser, main
from mcslabel.cli._common import exit_code_for, print_table, shorten
from mcslabel.errors import DockerError, JournalError, StoreError, StoreUnavailable

MCSLABEL = str(Path(sys.executable).parent / "mcslabel")


def mcslabel(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCSLABEL, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


# --- exit codes -------------------------------------------------------------


def test_the_issues_exit_codes_are_input_errors(tmp_path: Path) -> None:
    assert mcslabel("restore", "/nonexistent.journal").returncode == 2
    vol = tmp_path / "vol"
    vol.mkdir()
    existing = tmp_path / "journal"
    existing.write_text("")
    done = mcslabel("relabel", str(vol), "--level", "s0:c1,c2", "--journal", str(existing))
    assert done.returncode == 2 and "already exists" in done.stderr


@pytest.mark.docker
def test_a_filter_the_daemon_refuses_is_input(docker_client: object) -> None:
    done = mcslabel("docker", "audit", "--filter", "bogus=1")
    assert done.returncode == 2 and "Invalid filter" in done.stderr


def test_an_unreachable_daemon_is_an_operation_failure(tmp_path: Path) -> None:
    done = mcslabel("docker", "audit", "--docker-host", f"unix://{tmp_path}/none.sock")
    assert done.returncode == 3, done.stderr


def test_a_missing_optional_sdk_is_input(tmp_path: Path) -> None:
    # The docker SDK made unimportable, as on a host without the extra.
    code = (
        "import sys; sys.modules['docker'] = None\n"
        "from mcslabel.cli import main\n"
        "sys.exit(main(['docker', 'audit']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and "docker SDK is not installed" in done.stderr
    code = code.replace("'docker'] = None", "'etcd3gw'] = None").replace(
        "['docker', 'audit']", "['list', '--store', 'etcd://127.0.0.1:1/x']"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and "etcd3gw" in done.stderr


def test_exit_code_mapping_by_cause() -> None:
    def raised(exc: BaseException, cause: BaseException | None, suppress: bool = False) -> int:
        try:
            try:
                if cause is not None:
                    raise cause
                raise exc
            except BaseException:
                if suppress:
                    raise exc from None
                raise exc from cause
        except BaseException as got:
            return exit_code_for(got)

    assert raised(JournalError("x"), FileNotFoundError(2, "gone")) == 2
    assert raised(JournalError("x"), PermissionError(13, "no")) == 3
    assert raised(StoreError("x"), ImportError("etcd3gw"), suppress=True) == 2
    assert raised(StoreUnavailable("x"), None) == 3

    class APIError(Exception):
        def __init__(self, status: int) -> None:
            self.status_code = status

    assert raised(DockerError("x"), APIError(400)) == 2
    assert raised(DockerError("x"), APIError(500)) == 3


# --- strict flags, suggestions, global options --------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["relabel", "/tmp", "--levle", "s0:c1,c2"], "--levle (did you mean '--level'?)"),
        (["relabel", "/tmp", "--lev", "s0:c1,c2"], "--lev (did you mean '--level'?)"),
        (["relabel", "/tmp", "--dry", "--shared"], "--dry (did you mean '--dry-run'?)"),
        (["allocate", "--own", "x"], "--own (did you mean '--owner'?)"),
        (["list", "--stor", "memory://"], "--stor (did you mean '--store'?)"),
        (["lsit"], "invalid choice: 'lsit' (did you mean 'list'?)"),
        (["docker", "audti"], "invalid choice: 'audti' (did you mean 'audit'?)"),
        (["journal", "lst"], "invalid choice: 'lst' (did you mean 'list'?)"),
    ],
)
def test_no_abbreviations_and_a_suggestion(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "is required" not in err


def test_every_parser_refuses_abbreviations() -> None:
    def walk(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found += walk(sub)
        return found

    parsers = walk(build_parser())
    assert len(parsers) > len(COMMANDS)
    for parser in parsers:
        assert parser.allow_abbrev is False, parser.prog
        assert parser.description, f"{parser.prog} has no description"
        for action in parser._actions:
            metavar = action.metavar
            if isinstance(metavar, str):
                # A word in capitals (LEVEL, SECONDS, KEY=VALUE), never a bare letter (L, S, O).
                word = re.split(r"[=:|\[]", metavar)[0]
                assert re.fullmatch(r"[A-Z][A-Z_]+|N", word), (parser.prog, metavar)


def test_global_options_before_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite://{tmp_path}/g.db"
    assert main(["--json", "check", "s0:c2,c1"]) == 0
    assert '"canonical": "s0:c1,c2"' in capsys.readouterr().out
    # A new store at an explicit path is created only when asked (issue 12).
    assert main(["--store", store, "--json", "allocate", "--create-store", "--owner", "a"]) == 0
    assert '"level"' in capsys.readouterr().out
    assert main(["--categories", "16", "check", "s0:c20"]) == 2
    assert "c0..c15" in capsys.readouterr().err
    other = f"sqlite://{tmp_path}/other.db"
    assert main(["--store", other, "list", "--store", store, "--json"]) == 0
    assert '"owners": [\n        "a"' in capsys.readouterr().out  # the later --store won
    with pytest.raises(SystemExit):
        main(["--store", store, "policy"])
    assert "--store does not apply to policy" in capsys.readouterr().err


def test_the_command_module_alone_is_imported() -> None:
    code = (
        "import sys\n"
        "from mcslabel.cli import main\n"
        "main(['check', 's0:c1'])\n"
        "cli = sorted(m for m in sys.modules if m.startswith('mcslabel.cli.'))\n"
        "assert cli == ['mcslabel.cli._basics', 'mcslabel.cli._common', 'mcslabel.cli._parser',\n"
        "               'mcslabel.cli.check', 'mcslabel.cli.policy',\n"
        "               'mcslabel.cli.translate'], cli\n"
        "assert 'socket' not in sys.modules and 'json' not in sys.modules\n"
        "assert 'mcslabel.verification.translations' not in sys.modules  # only with --translate\n"
    )
    # check shares the --policy-root/--policy and --translate flags of policy and translate:
    # those two modules hold only argparse helpers at import time, their work imported lazily.
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True)


# --- tables ---------------------------------------------------------------------


def test_tables_fit_the_width_and_shorten_docker_ids(capsys: pytest.CaptureFixture[str]) -> None:
    owner = "docker:" + "0123456789ab" + "f" * 52
    rows = [("s0:c1,c2", owner + "," + owner, "a-very-long-name-" * 5, "-")]
    print_table(("level", "owners", "name", "host"), rows, width=60)
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 60 for line in lines), lines
    assert lines[1].startswith("s0:c1,c2  docker:0123456789ab,…")
    assert lines[1].count("…") == 2 and "f" * 13 not in lines[1]
    print_table(
        ("level", "owners"), [r[:2] for r in rows], width=None
    )  # a pipe: never cut, ids still short
    assert capsys.readouterr().out.splitlines()[1].split() == [
        "s0:c1,c2",
        "docker:0123456789ab,docker:0123456789ab",
    ]


def test_list_fits_columns_in_a_real_process(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/t.db"
    for n in range(2):
        owner = "docker:" + f"{n:x}" * 64
        create = ("--create-store",) if n == 0 else ()  # a new store only when asked
        assert mcslabel("allocate", "--store", store, *create, "--owner", owner).returncode == 0
    done = mcslabel("list", "--store", store, COLUMNS="80")
    assert done.returncode == 0 and done.stdout.count("\n") == 3
    assert "docker:000000000000 " in done.stdout and "0" * 13 not in done.stdout
    done = mcslabel("list", "--store", store, COLUMNS="40")
    assert max(len(line) for line in done.stdout.splitlines()) <= 40, done.stdout
    done = mcslabel("list", "--store", store)  # a pipe: the whole line, ids shortened
    assert max(len(line) for line in done.stdout.splitlines()) > 40, done.stdout


def test_shorten() -> None:
    assert shorten("abcdef", 6) == "abcdef"
    assert shorten("abcdefg", 6) == "abcde…"
    assert shorten("abc", 0) == ""
