"""Shell completion in a real bash and zsh, and the man page rendered by man(1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcslabel.cli import build_parser, main
from mcslabel.cli.generate import bash, man, zsh

MCSLABEL = str(Path(sys.executable).parent / "mcslabel")


def _bash_complete(script: Path, line: str, cwd: Path) -> list[str]:
    """Source the script in a real bash, complete the last word of ``line``."""
    words = line.split(" ")
    array = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}\n"
        "_mcslabel\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True, text=True, cwd=cwd, timeout=30, check=True,
    )  # fmt: skip
    assert done.stderr == ""
    return sorted(filter(None, done.stdout.splitlines()))


@pytest.fixture
def bash_script(tmp_path: Path) -> Path:
    script = tmp_path / "mcslabel.bash"
    done = subprocess.run(
        [MCSLABEL, "completion", "bash"], capture_output=True, text=True, timeout=30, check=True
    )
    script.write_text(done.stdout)
    return script


def test_bash_completes_commands_flags_and_files(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "vol").mkdir()
    (tmp_path / "volume.journal").write_text("")
    run = lambda line: _bash_complete(bash_script, line, tmp_path)  # noqa: E731
    assert run("mcslabel re") == ["relabel", "release", "renew", "reserve", "restore"]
    assert run("mcslabel docker ") == ["audit", "rm", "run", "sync", "volumes"]
    assert run("mcslabel podman ") == ["audit", "rm", "run", "sync", "volumes"]  # one builder
    assert run("mcslabel podman volumes --al") == ["--allow-unreachable"]
    assert run("mcslabel docker volumes --po") == ["--podman-host"]
    assert run("mcslabel --json --store memory:// li") == ["list"]  # global options skipped
    assert run("mcslabel relabel vol --le") == ["--level"]
    assert "--dry-run" in run("mcslabel relabel --")
    assert run("mcslabel docker audit --fi") == ["--filter"]
    assert run("mcslabel journal remove vol") == ["vol", "volume.journal"]  # file names
    assert run("mcslabel relabel vol --journal volume.") == ["volume.journal"]
    assert run("mcslabel relabel vol --level s0") == []  # a level: nothing to guess
    assert run("mcslabel check s0") == []


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_with_descriptions(tmp_path: Path) -> None:
    script = tmp_path / "_mcslabel"
    script.write_text(zsh(build_parser()))
    # The completion system's builtins stubbed to print what they are given.
    program = f"""
_describe() {{ local a; for a in "${{(@P)4}}"; do print -r -- "$3 $a"; done }}
_files() {{ print files }}
_message() {{ print message }}
compdef() {{ :; }}
source {script}
words=(mcslabel "$@"); CURRENT=$#words
_mcslabel
"""

    def run(*words: str) -> list[str]:
        done = subprocess.run(
            ["zsh", "-f", "-c", program, "zsh", *words],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert done.stderr == ""
        return done.stdout.splitlines()

    commands = run("")
    assert "command check:parse a level, range or context and print its canonical form" in commands
    assert "command relabel:relabel a container volume (:Z / :z), journaled and undoable" in (
        commands
    )
    assert [line.split(":")[0] for line in run("docker", "")] == [
        "command sync",
        "command audit",
        "command run",
        "command rm",
        "command volumes",
    ]
    assert any(line.startswith("option --level:") for line in run("relabel", "x", "--"))
    assert run("show", "") == ["files"]
    assert run("relabel", "x", "--journal", "") == ["files"]
    assert run("relabel", "x", "--level", "") == ["message"]
    assert os.environ.get("PATH")  # the function must not have clobbered $path/$PATH


def test_completion_and_generator_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    assert "complete -o filenames -F _mcslabel mcslabel" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["completion", "fish"])
    from mcslabel.cli.generate import main as generate

    assert generate(["nope"]) == 2


def test_man_page_renders_with_man(tmp_path: Path) -> None:
    page = tmp_path / "mcslabel.1"
    page.write_text(man(build_parser(), version="9.9", date="2026-01-01"))
    groff = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert groff.returncode == 0 and groff.stderr == "", groff.stderr  # no warnings
    done = subprocess.run(
        ["man", "-l", str(page)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("MCSLABEL(1)")
    for heading in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"):
        assert f"\n{heading}\n" in text
    # Every subcommand and its flags, straight from argparse.
    for section in ("   docker audit\n", "   journal remove\n", "   relabel\n", "   allocate\n"):
        assert section in text
    assert "--dry-run" in text and "--filter KEY=VALUE" in text
    assert "mcslabel 9.9" in text and "2026-01-01" in text


def test_bash_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n"], input=bash(build_parser()), text=True, check=True, timeout=30)
