"""What the console script needs before argparse: the exit codes and the global options.

Imported by :mod:`mcslabel.cli` itself, by :mod:`mcslabel.cli._common` and
:mod:`mcslabel.cli._parser`, and by the lean marker path
(:mod:`mcslabel.cli._marker_path`), which answers before any of the heavier
command-line modules load. Imports nothing.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_INPUT = 2
EXIT_FAILED = 3
#: What a shell reports for a command killed by SIGPIPE (128 + 13), as for git.
EXIT_PIPE = 141

#: Options accepted before the subcommand too: (flag, dest, takes a value, metavar, help).
GLOBAL_OPTIONS: tuple[tuple[str, str, bool, str | None, str], ...] = (
    ("--json", "json", False, None, "print one JSON object (every command)"),
    ("--store", "store", True, "URL", "label store URL (commands that use the registry)"),
    ("--categories", "categories", True, "N", "the policy's category count"),
    ("--policy-root", "policy_root", True, "DIR", "policy root (commands that use a policy)"),
    ("--docker-host", "docker_host", True, "URL", "Docker daemon address (docker commands)"),
)

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_OK",
    "EXIT_PIPE",
    "GLOBAL_OPTIONS",
]
