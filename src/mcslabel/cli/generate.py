"""Shell completion (bash, zsh) and a man page, generated from the parser.

Everything comes from the argparse definitions, so a new flag is completed
and documented without touching this file. No dependency: the scripts are
plain bash and zsh, the man page plain ``man(7)`` markup.

``mcslabel completion bash|zsh`` prints a completion script;
``python -m mcslabel.cli.generate bash|zsh|man`` prints any of the three
(``scripts/setup.sh`` installs them).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

# Value-taking flags whose value is a file or directory: completed with file names.
_PATH_METAVARS = frozenset({"FILE", "DIR", "PATH", "JOURNAL"})


@attrs.frozen
class Command:
    """One node of the command tree: ``path`` () is ``mcslabel`` itself."""

    path: tuple[str, ...]
    parser: argparse.ArgumentParser
    help: str
    subcommands: tuple[tuple[str, str], ...]  # (name, help)
    options: tuple[tuple[str, str, bool, bool], ...]  # (flag, help, takes value, value is a path)
    path_positionals: bool  # its positionals are files (show PATH, restore JOURNAL)


def _is_path(metavar: object) -> bool:
    return isinstance(metavar, str) and metavar in _PATH_METAVARS


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = (), text: str = ""
) -> Iterator[Command]:
    """Every command of ``parser``, depth first, ``mcslabel`` itself first."""
    subs: list[tuple[str, str, argparse.ArgumentParser]] = []
    options: list[tuple[str, str, bool, bool]] = []
    path_positionals = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in action._choices_actions}
            subs += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            takes = action.nargs != 0
            for flag in action.option_strings:
                options.append((flag, action.help or "", takes, takes and _is_path(action.metavar)))
        elif _is_path(action.metavar):
            path_positionals = True
    yield Command(
        path,
        parser,
        text or (parser.description or ""),
        tuple((n, h) for n, h, _ in subs),
        tuple(options),
        path_positionals,
    )
    for name, help_text, sub in subs:
        yield from walk(sub, (*path, name), help_text)


def _key(path: Sequence[str]) -> str:
    return "_".join(path)


def _words(items: Sequence[str]) -> str:
    return " ".join(items)


@attrs.frozen
class _Tables:
    """What both shell scripts switch on: flags taking values, path flags, command steps."""

    commands: list[Command]
    value_flags: str  # a|b|c case pattern
    path_flags: str
    steps: str  # "parent:child" words that extend the command path

    @classmethod
    def of(cls, parser: argparse.ArgumentParser) -> _Tables:
        commands = list(walk(parser))
        value = sorted({f for c in commands for f, _, takes, _ in c.options if takes})
        paths = sorted({f for c in commands for f, _, _, is_path in c.options if is_path})
        steps = [f'"{_key(c.path[:-1])}:{c.path[-1]}"' for c in commands if c.path]
        return cls(commands, "|".join(value), "|".join(paths), "|".join(steps))


def bash(parser: argparse.ArgumentParser) -> str:
    """A bash completion script (``complete -F _mcslabel mcslabel``)."""
    t = _Tables.of(parser)
    cases = []
    for c in t.commands:
        opts = _words([f for f, _, _, _ in c.options])
        subs = _words([n for n, _ in c.subcommands])
        files = "1" if c.path_positionals else ""
        cases.append(f'        "{_key(c.path)}") opts="{opts}"; cmds="{subs}"; files="{files}" ;;')
    return "\n".join(
        [
            "# bash completion for mcslabel (generated from its argparse definitions)",
            "_mcslabel() {",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
            '    local cmdpath="" i w opts="" cmds="" files=""',
            "    for ((i = 1; i < COMP_CWORD; i++)); do",
            '        w="${COMP_WORDS[i]}"',
            '        case "$w" in',
            f"            {t.value_flags}) ((i++)); continue ;;",
            "            -*) continue ;;",
            "        esac",
            '        case "$cmdpath:$w" in',
            f'            {t.steps}) cmdpath="${{cmdpath:+${{cmdpath}}_}}$w" ;;',
            "        esac",
            "    done",
            '    case "$prev" in',
            f'        {t.path_flags}) COMPREPLY=($(compgen -f -- "$cur")); return ;;',
            f"        {t.value_flags}) COMPREPLY=(); return ;;",
            "    esac",
            '    case "$cmdpath" in',
            *cases,
            "    esac",
            '    if [[ "$cur" == -* ]]; then',
            '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
            '    elif [[ -n "$cmds" ]]; then',
            '        COMPREPLY=($(compgen -W "$cmds" -- "$cur"))',
            '    elif [[ -n "$files" ]]; then',
            '        COMPREPLY=($(compgen -f -- "$cur"))',
            "    else",
            "        COMPREPLY=()",
            "    fi",
            "}",
            "complete -o filenames -F _mcslabel mcslabel",
            "",
        ]
    )


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_item(name: str, text: str) -> str:
    return _zsh_quote(name.replace(":", "\\:") + ":" + text.replace("\n", " "))


def zsh(parser: argparse.ArgumentParser) -> str:
    """A zsh completion function (``#compdef mcslabel``), with descriptions."""
    t = _Tables.of(parser)
    cases = []
    for c in t.commands:
        opts = " ".join(_zsh_item(f, h) for f, h, _, _ in c.options)
        subs = " ".join(_zsh_item(n, h) for n, h in c.subcommands)
        files = "1" if c.path_positionals else ""
        cases.append(f'        ("{_key(c.path)}") opts=({opts}); cmds=({subs}); files="{files}" ;;')
    return "\n".join(
        [
            "#compdef mcslabel",
            "# zsh completion for mcslabel (generated from its argparse definitions)",
            "_mcslabel() {",
            '    local cur="${words[CURRENT]}" prev="${words[CURRENT-1]}"',
            '    local cmdpath="" w files="" i',
            "    local -a opts cmds",
            "    for ((i = 2; i < CURRENT; i++)); do",
            '        w="${words[i]}"',
            '        case "$w" in',
            f"            ({t.value_flags}) ((i++)); continue ;;",
            "            (-*) continue ;;",
            "        esac",
            '        case "$cmdpath:$w" in',
            f'            ({t.steps}) cmdpath="${{cmdpath:+${{cmdpath}}_}}$w" ;;',
            "        esac",
            "    done",
            '    case "$prev" in',
            f"        ({t.path_flags}) _files; return ;;",
            f"        ({t.value_flags}) _message 'value'; return ;;",
            "    esac",
            '    case "$cmdpath" in',
            *cases,
            "    esac",
            '    if [[ "$cur" == -* ]]; then',
            "        _describe -t options 'option' opts",
            "    elif (( ${#cmds} )); then",
            "        _describe -t commands 'command' cmds",
            '    elif [[ -n "$files" ]]; then',
            "        _files",
            "    fi",
            "}",
            # Autoloaded from $fpath: complete now; sourced: register the function.
            'if [[ "${funcstack[1]}" == _mcslabel ]]; then _mcslabel "$@";',
            "else compdef _mcslabel mcslabel; fi",
            "",
        ]
    )


def _roff(text: str) -> str:
    """Text safe in man(7): backslashes and hyphens escaped, no leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line if line[:1] in ".'" else line) for line in text.splitlines())


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().split())[len("usage: ") :]


def man(parser: argparse.ArgumentParser, *, version: str, date: str | None = None) -> str:
    """The ``mcslabel(1)`` man page."""
    when = date or datetime.date.today().isoformat()
    lines = [
        f'.TH MCSLABEL 1 "{when}" "mcslabel {version}" "User Commands"',
        ".SH NAME",
        "mcslabel \\- " + _roff(parser.description or ""),
        ".SH SYNOPSIS",
        ".B mcslabel",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
        ".SH DESCRIPTION",
        _roff(
            "mcslabel allocates unique SELinux MCS category pairs for containers, relabels"
            " volumes with :Z/:z semantics (journaled, undoable) and verifies with the real"
            " policy that containers cannot reach host paths or each other. Global options"
            " may come before or after the command."
        ),
        ".SH OPTIONS",
    ]
    commands = list(walk(parser))
    lines += _options(commands[0])
    lines.append(".SH COMMANDS")
    for c in commands[1:]:
        if c.subcommands and not c.options[1:]:
            continue
        lines += [f'.SS "{_roff(" ".join(c.path))}"', _roff(_usage(c.parser)), ".PP"]
        lines += [_roff(c.parser.description or c.help), *_options(c)]
    lines += [
        ".SH EXIT STATUS",
        ".TP\n.B 0\nSuccess.",
        ".TP\n.B 1\nA check failed: verify found an allowed must\\-block access, audit a high"
        " severity finding, sync a conflict.",
        ".TP\n.B 2\nUsage or input error: a bad flag, a malformed level, a missing file, a"
        " refused path, an optional SDK that is not installed.",
        ".TP\n.B 3\nAn operation failed: the store or the Docker daemon is unavailable, no"
        " pair is free, some files could not be relabeled.",
        ".TP\n.B 141\nStandard output was a pipe closed early (killed by SIGPIPE, like git).",
        ".SH OUTPUT",
        _roff(
            "With --json every command prints one JSON object; commands with a verdict"
            ' carry "ok"; errors are {"ok": false, "error": {...}}; times are ISO 8601 UTC.'
            " Tables fit the terminal width (COLUMNS) and shorten Docker ids to 12"
            " characters; on a pipe lines are never cut."
        ),
        ".SH ENVIRONMENT",
        ".TP\n.B MCSLABEL_STORE\nThe label store URL when --store is not given.",
        ".TP\n.B DOCKER_HOST\nThe Docker daemon address when --docker-host is not given.",
        ".TP\n.B COLUMNS\nThe width tables are fitted to.",
        ".SH FILES",
        ".TP\n.I /var/lib/mcslabel/labels.db\nThe host's label registry (root).",
        ".TP\n.I /var/lib/mcslabel/journals\nRelabel journals of mcslabel docker run.",
        ".SH SEE ALSO",
        ".BR chcon (1),",
        ".BR restorecon (8),",
        ".BR docker (1)",
        "",
    ]
    return "\n".join(lines)


def _options(command: Command) -> list[str]:
    lines: list[str] = []
    for action in command.parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(f"\\fB{_roff(f)}\\fR" for f in action.option_strings)
        if action.nargs != 0:
            flags += f" \\fI{_roff(str(action.metavar or action.dest.upper()))}\\fR"
        lines += [".TP", flags, _roff(action.help or "")]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    from mcslabel import __version__
    from mcslabel.cli import build_parser

    which = list(sys.argv[1:] if argv is None else argv)
    if which not in (["bash"], ["zsh"], ["man"]):
        print("usage: python -m mcslabel.cli.generate bash|zsh|man", file=sys.stderr)
        return 2
    parser = build_parser()
    text = {
        "bash": lambda: bash(parser),
        "zsh": lambda: zsh(parser),
        "man": lambda: man(parser, version=__version__),
    }[which[0]]()
    sys.stdout.write(text)
    return 0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print the completion script for SHELL. bash: source it, or save it as"
        " /usr/share/bash-completion/completions/mcslabel; zsh: save it as _mcslabel in a"
        " directory of $fpath. scripts/setup.sh installs both, and the man page.",
    )
    parser.add_argument("shell", metavar="SHELL", choices=("bash", "zsh"))
    parser.set_defaults(handler=lambda args: main([args.shell]))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Command", "bash", "main", "man", "register", "walk", "zsh"]
