"""The argument parser every ``mcslabel`` command is built with.

* No abbreviations (``allow_abbrev=False``): ``--dry`` is not ``--dry-run``,
  so a script keeps working the day a new flag shares a prefix.
* Unknown flags and subcommands are reported first, with "did you mean"
  (``difflib``), before argparse's "one of ... is required" could hide them.
* Global options (:data:`GLOBAL_OPTIONS`) may come before the subcommand,
  as with ``git -C`` or ``docker --host``; they mean what the subcommand's
  own flag of that name means.
* A subcommand registered without ``description`` gets its ``help`` as one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from mcslabel.cli._basics import GLOBAL_OPTIONS

_GLOBAL_DEST = "global_"

# Set by main(): the whole command line, to answer usage errors in JSON too.
_json_errors = False


def set_json_errors(on: bool) -> None:
    global _json_errors
    _json_errors = on


def _suggest(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice that starts with or resembles ``word``."""
    longer = sorted(c for c in choices if c.startswith(word) and len(word) > 2)
    if len(longer) == 1:
        return f" (did you mean {longer[0]!r}?)"
    import difflib  # on use only: start-up time

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_option(token: str) -> bool:
    """A token argparse takes for an option (not ``-``, not a negative number)."""
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False


class _Subcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subparsers whose description defaults to their help."""

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if kwargs.get("description") is None and kwargs.get("help"):
            text = str(kwargs["help"])
            kwargs["description"] = text[:1].upper() + text[1:] + "."
        return super().add_parser(name, **kwargs)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the CLI's rules (see the module docs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Subcommands)

    # --- unknown flags first, with a suggestion -----------------------------

    def _value_taking(self, action: argparse.Action) -> bool:
        return action.nargs != 0

    def _unknown_flags(self, args: Sequence[str]) -> list[str]:
        """The option tokens this parser (not a subcommand of it) does not know."""
        stop_at_positional = any(
            isinstance(a, argparse._SubParsersAction) or a.nargs == argparse.REMAINDER
            for a in self._actions
        )
        unknown: list[str] = []
        skip = False
        for token in args:
            if skip:
                skip = False
                continue
            if token == "--":
                break
            if not _is_option(token):
                if stop_at_positional:
                    break
                continue
            flag, eq, _ = token.partition("=")
            action = self._option_string_actions.get(flag)
            if action is None and not token.startswith("--"):
                action = self._option_string_actions.get(token[:2])  # -vVALUE, -xyz
                eq = "=" if action is not None and len(token) > 2 else eq
            if action is None:
                unknown.append(flag)
            elif self._value_taking(action) and not eq:
                skip = True
        return unknown

    def _unknown_message(self, flags: list[str]) -> str:
        known = [s for s in self._option_string_actions if s.startswith("--")]
        return "unrecognized arguments: " + ", ".join(f + _suggest(f, known) for f in flags)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        tokens = list(sys.argv[1:] if args is None else args)
        unknown = self._unknown_flags(tokens)
        if unknown:
            self.error(self._unknown_message(unknown))
        return super().parse_known_args(tokens, namespace)

    # --- unknown subcommands, with a suggestion ------------------------------

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            names = [str(c) for c in action.choices]
            raise argparse.ArgumentError(
                action,
                f"invalid choice: {value!r}{_suggest(str(value), names)}"
                f" (choose from {', '.join(names)})",
            )

    def error(self, message: str) -> NoReturn:
        if _json_errors:
            import json

            error = {"type": "UsageError", "message": message, "exit_code": 2}
            print(json.dumps({"ok": False, "error": error}, indent=2))
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_global_options(parser: Parser) -> None:
    group = parser.add_argument_group("global options (also accepted after the subcommand)")
    for flag, dest, takes_value, metavar, text in GLOBAL_OPTIONS:
        if takes_value:
            group.add_argument(flag, dest=_GLOBAL_DEST + dest, metavar=metavar, help=text)
        else:
            group.add_argument(flag, dest=_GLOBAL_DEST + dest, action="store_true", help=text)


def apply_global_options(
    parser: Parser, args: argparse.Namespace, after: Sequence[str] = ()
) -> None:
    """Hand the global options given before the subcommand to it.

    A subcommand without that option refuses it (exit 2), as it would
    after its name. Given again after the subcommand (``after``: the words
    that follow its name), the later one wins, as the last of a repeated
    option does.
    """
    for flag, dest, takes_value, _, _ in GLOBAL_OPTIONS:
        value = getattr(args, _GLOBAL_DEST + dest, None)
        delattr(args, _GLOBAL_DEST + dest)
        if value is None or value is False:
            continue
        if any(word == flag or word.startswith(flag + "=") for word in after):
            continue
        if not hasattr(args, dest) or getattr(args, "handler", None) is None:
            command = getattr(args, "command", None) or "this command"
            parser.error(f"{flag} does not apply to {command}")
        if takes_value:
            # Converted as the subcommand's own flag would be (--categories is an int).
            value = _convert(parser, args, dest, value)
        setattr(args, dest, value)


def _own_action(
    parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str
) -> argparse.Action | None:
    """The chosen subcommand's own action for ``dest`` (the deepest one), if any."""
    found = None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                found = _own_action(chosen, args, dest) or found
        elif action.dest == dest and action.option_strings:
            found = found or action
    return found


def _convert(parser: Parser, args: argparse.Namespace, dest: str, value: str) -> Any:
    # The subcommand's own type: its default may be None (check's --categories).
    action = _own_action(parser, args, dest)
    convert = getattr(action, "type", None)
    if not callable(convert):
        return value
    try:
        return convert(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        name = getattr(convert, "__name__", repr(convert))
        parser.error(f"argument --{dest.replace('_', '-')}: invalid {name} value: {value!r}")


__all__ = [
    "GLOBAL_OPTIONS",
    "Parser",
    "add_global_options",
    "apply_global_options",
    "set_json_errors",
]
