"""The ``mcslabel`` command line.

Each subcommand lives in its own module with a ``register(subparsers)``
function; :data:`COMMANDS` names the module of every subcommand so that
only the one asked for is imported (``mcslabel --version`` imports none),
and handlers import their heavy dependencies lazily.

Exit codes, shared by every subcommand: ``0`` ok, ``1`` a check failed
(verify/audit findings), ``2`` usage or input error, ``3`` an operation
failed (store unavailable, space exhausted...). A closed stdout pipe ends
the command silently, killed by ``SIGPIPE`` like git (``$?`` 141).
"""

from __future__ import annotations

import os
import sys

from mcslabel import __version__

# Nothing heavier at module level: the console script imports this module
# first, and ``relabel --trust-marker`` on an unchanged tree may end before
# argparse, typing or attrs are needed (mcslabel.cli._marker_path).
from mcslabel.cli._basics import EXIT_INPUT, EXIT_OK, EXIT_PIPE, GLOBAL_OPTIONS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from mcslabel.cli._parser import Parser

# Subcommand -> the module that registers it, in help order.
COMMANDS = {
    "check": "mcslabel.cli.check",
    "show": "mcslabel.cli.show",
    "policy": "mcslabel.cli.policy",
    "allocate": "mcslabel.cli.alloc",
    "reserve": "mcslabel.cli.alloc",
    "release": "mcslabel.cli.alloc",
    "renew": "mcslabel.cli.alloc",
    "list": "mcslabel.cli.alloc",
    "gc": "mcslabel.cli.alloc",
    "docker": "mcslabel.cli.docker",
    "podman": "mcslabel.cli.podman",
    "verify": "mcslabel.cli.verify",
    "relabel": "mcslabel.cli.relabel",
    "restore": "mcslabel.cli.relabel",
    "journal": "mcslabel.cli.journal",
    "kube": "mcslabel.cli.kube",
    "mount-options": "mcslabel.cli.mount",
    "mount": "mcslabel.cli.mount",
    "translate": "mcslabel.cli.translate",
    "completion": "mcslabel.cli.generate",
}
#: Every subcommand module, in help order (each imported once).
SUBCOMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))

_VALUE_GLOBALS = frozenset(flag for flag, _, takes_value, _, _ in GLOBAL_OPTIONS if takes_value)


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand word of ``argv`` (skipping global options), if any."""
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            return next(tokens, None)
        if not token.startswith("-"):
            return token
        if token in _VALUE_GLOBALS:
            next(tokens, None)
    return None


def _modules_for(argv: Sequence[str]) -> Iterable[str]:
    """The modules to register for ``argv``: the command's, all (help, typos) or none."""
    command = _command_of(argv)
    if command in COMMANDS:
        return (COMMANDS[command],)
    if command is None and argv and not {"-h", "--help"} & set(argv):
        return ()  # --version, or a bad option: no subcommand needed
    return SUBCOMMAND_MODULES


def build_parser(modules: Iterable[str] = SUBCOMMAND_MODULES) -> Parser:
    """The ``mcslabel`` parser with the subcommands of ``modules`` (default: all)."""
    import importlib

    from mcslabel.cli._parser import Parser, add_global_options

    parser = Parser(
        prog="mcslabel",
        description="SELinux MCS label management for container hosts.",
        epilog="Exit status: 0 ok, 1 a check failed, 2 usage or input error,"
        " 3 an operation failed. Run 'mcslabel COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mcslabel {__version__}")
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; the exit status (usage errors exit 2 via SystemExit)."""
    from mcslabel.cli._common import run_handler
    from mcslabel.cli._parser import apply_global_options, set_json_errors

    argv = list(sys.argv[1:] if argv is None else argv)
    set_json_errors("--json" in argv)
    try:
        parser = build_parser(_modules_for(argv))
        args = parser.parse_args(argv)
        command = _command_of(argv)
        after = argv[argv.index(command) + 1 :] if command in argv else []
        apply_global_options(parser, args, after)
        if getattr(args, "handler", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_INPUT
        return run_handler(args)
    except BrokenPipeError:
        return EXIT_PIPE


def _die_of_sigpipe() -> None:
    """End as git does on a closed pipe: silently, killed by SIGPIPE."""
    import signal

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail
    except (OSError, ValueError):
        pass
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)


#: Commands whose process ends without the interpreter's teardown (:func:`_exit_now`).
QUICK_EXIT = frozenset({"relabel", "restore"})


def _exit_now(code: int) -> None:
    """End the process at once with ``code``, skipping the interpreter's teardown.

    The teardown frees every object of every loaded module one by one: about
    15 ms of CPU after a relabel, a fifth of a marker-trusted run. The
    commands of :data:`QUICK_EXIT` close what they open (journal, store) before
    :func:`main` returns, so nothing is left for it to do: output is flushed
    and ``atexit`` handlers run here first. Returns (to the normal exit) when
    another non-daemon thread is alive or the output cannot be flushed.
    """
    import atexit

    # No thread can run unless threading was imported (the marker path never imports it).
    threading = sys.modules.get("threading")
    if threading is not None:
        main_thread = threading.main_thread()
        if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
            return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: closed when the process started
                stream.flush()
    except BrokenPipeError:
        _die_of_sigpipe()
    except (OSError, ValueError):
        return  # the normal exit reports it, as it would have
    atexit._run_exitfuncs()
    os._exit(code)


def entry_point() -> None:  # pragma: no cover - thin wrapper for console_scripts
    try:
        code = _marker_path_or_main(sys.argv[1:])
    except KeyboardInterrupt:
        code = 128 + 2  # SIGINT
    if code == EXIT_PIPE:
        _die_of_sigpipe()
    if _command_of(sys.argv[1:]) in QUICK_EXIT:
        _exit_now(code)
    sys.exit(code)


def _marker_path_or_main(argv: list[str]) -> int:
    """:func:`main`, unless ``argv`` is a ``relabel --trust-marker`` that the
    lean marker path can answer by itself (it falls back to :func:`main` for
    anything it is not sure of; see :mod:`mcslabel.cli._marker_path`)."""
    if argv[:1] == ["relabel"] and "--trust-marker" in argv:
        from mcslabel.cli._marker_path import run

        code = run(argv[1:])
        if code is not None:
            return code
    return main(argv)


__all__ = ["COMMANDS", "EXIT_OK", "QUICK_EXIT", "build_parser", "entry_point", "main"]
