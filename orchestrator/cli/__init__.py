"""The ``sbx`` command line: parsing and presentation only.

Each command group lives in its own module with a ``register(subparsers)``
function; this module assembles them, loads the configuration, sets up
logging and turns errors from the ``orchestrator.errors`` tree into one line
naming cause and fix -- never a traceback.  Nothing here talks to the engine
or the guest: commands are thin shells over the Python API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.cli import run_remote

if TYPE_CHECKING:
    from orchestrator.config import Config

__all__ = ["build_parser", "main"]

COMMAND_GROUP_NAMES = (
    "run",
    "code",
    "desktop",
    "images",
    "agent",
    "workflow",
    "evals",
    "serve",
    "mcp",
    "remote",
    "maintenance",
    "config",
)
"""Modules that add sub-commands; each has ``register(subparsers)``.  Imported
when the full parser is built, never for ``sbx run`` against a server."""


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="sbx",
        description="Hardened Docker sandboxes for Claude's tools and plain exec/file calls.",
    )
    parser.add_argument(
        "--config", help="TOML or YAML config file (default: $SBX_CONFIG, ./sbx.toml, ./sbx.yaml)"
    )
    parser.add_argument(
        "--profile", help="the config file's [profile.NAME] to lay over it (default: $SBX_PROFILE)"
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity"
    )
    parser.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="log format (default: auto)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_GROUP_NAMES:
        importlib.import_module(f"orchestrator.cli.{name}").register(sub)
    return parser


def _load(args: argparse.Namespace) -> Config:
    from orchestrator.cli.config import flag_overrides
    from orchestrator.config import load_config
    from orchestrator.log import configure_logging

    config = load_config(args.config, profile=args.profile, **flag_overrides(args))
    level = config.logging.level
    fmt = config.logging.format
    # One-shot commands keep the terminal for the command's own output.
    if getattr(args, "quiet_logs", False) and not args.log_level:
        level = "warning"
    configure_logging(level, fmt)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if run_remote.wants_remote(arguments):
            return run_remote.main(arguments, local=main_local)
        return main_local(arguments)
    except BrokenPipeError:
        return _reader_went_away()


SIGPIPE_STATUS = 128 + 13
"""What a shell reports for a tool killed by SIGPIPE (``yes | head``)."""


def _reader_went_away() -> int:
    """Whoever read our output stopped (``sbx run ... | head -c 10``): end quietly, as other
    Unix tools do, with the status a shell shows for SIGPIPE.  The session was closed on the
    way out; stdout is pointed at /dev/null so flushing it at exit cannot raise again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return SIGPIPE_STATUS


def main_local(argv: Sequence[str]) -> int:
    """Every command, run in this process (``sbx run --local`` included)."""
    from orchestrator.errors import ConfigError, SbxError

    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        # A group without its action (`sbx images`) prints that group's help.
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    try:
        config = None if getattr(args, "own_config", False) else _load(args)
        code: int = handler(args, config)
        return code
    except ConfigError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 2
    except SbxError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
