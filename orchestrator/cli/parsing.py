"""The conventions every ``sbx`` command follows: help shows defaults, and exit statuses.

Exit statuses, as ``docker run`` has them: a command that runs something in a
sandbox (``sbx run``, ``sbx exec``, ``sbx exec-code``) exits with that
command's status, so when sbx itself fails -- a usage error, an invalid
config, no engine, no image -- it exits 125 instead, which no shell command
gives by accident (124 timed out, 126 not executable, 127 not found, 128+N
killed by signal N).  Every other command exits 1 when it fails and 2 for a
usage error or an invalid file.

Standard library only: the thin ``sbx run`` client parses with it too.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = [
    "EXIT_FAILED",
    "EXIT_SBX_FAILED",
    "EXIT_USAGE",
    "DefaultsHelpFormatter",
    "SbxArgumentParser",
    "runs_a_command",
]

EXIT_FAILED = 1
"""A command of sbx's own (``images build``, ``doctor``, ...) failed."""
EXIT_USAGE = 2
"""The command line or a file it names is invalid."""
EXIT_SBX_FAILED = 125
"""``run``/``exec``/``exec-code``: sbx failed, the sandboxed command did not run (or not to
the end); the same status ``docker run`` gives."""


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its default.

    Unlike ``argparse.ArgumentDefaultsHelpFormatter`` it leaves out defaults that say nothing
    (``None``, ``False``, an empty list), which would read "(default: None)".
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shows_nothing = default is None or default is False or default in ([], "")
        if (
            not action.option_strings
            or shows_nothing
            or default is argparse.SUPPRESS
            or "default" in text.lower()
        ):
            return text
        return f"{text} (default: %(default)s)"


class SbxArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with defaults in its help and a usage-error status of its own.

    Sub-commands inherit the class (``add_subparsers`` makes its parsers of the parent's
    class), so every parser of the tree shows its defaults; ``runs_a_command`` sets the
    status of a command that must not exit 2 for a usage error.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.usage_status = EXIT_USAGE

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(self.usage_status, f"{self.prog}: error: {message}\n")


def runs_a_command(parser: argparse.ArgumentParser) -> None:
    """Mark ``parser`` as a command whose exit status is the sandboxed command's: its usage
    errors and sbx's own failures exit 125 (``EXIT_SBX_FAILED``), as ``docker run`` does."""
    if isinstance(parser, SbxArgumentParser):
        parser.usage_status = EXIT_SBX_FAILED
    parser.set_defaults(failure_status=EXIT_SBX_FAILED)
