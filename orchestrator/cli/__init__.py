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
from orchestrator.cli.parsing import EXIT_FAILED, EXIT_USAGE, SbxArgumentParser

if TYPE_CHECKING:
    from orchestrator.config import Config
    from orchestrator.errors import SbxError

__all__ = ["build_parser", "entry", "main"]

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
    "completion",
)
"""Modules that add sub-commands; each has ``register(subparsers)``.  Imported
when the full parser is built, never for ``sbx run`` against a server."""


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = SbxArgumentParser(
        prog="sbx",
        description="Hardened Docker sandboxes for Claude's tools and plain exec/file calls.",
        epilog="`sbx COMMAND --help` describes a command. `sbx run`, `sbx exec` and "
        "`sbx exec-code` exit with the sandboxed command's status (124 timed out, 126 not "
        "executable, 127 not found) and 125 when sbx itself fails; other commands exit 1 on "
        "failure and 2 for a usage error or an invalid file.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
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


def version_text() -> str:
    """What ``sbx --version`` and ``sbx version`` print."""
    from orchestrator import __version__, protocol

    return (
        f"sbx {__version__} (protocol {protocol.PROTOCOL_VERSION}, Python {sys.version.split()[0]})"
    )


class _VersionAction(argparse.Action):
    """``--version``: the text is made only when asked for (``action="version"`` wants it
    when the parser is built)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        kwargs.pop("nargs", None)
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_text())
        parser.exit(0)


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


def entry() -> None:
    """The ``sbx`` program: ``main``, then the exit.

    A one-shot command (``sbx run``, ``exec``, ``exec-code``) has closed its
    session, removed its sandbox and written its output when ``main`` returns;
    what is left is the interpreter tearing down some thousand modules, about
    0.1 s of CPU on a small machine, a seventh of a local ``sbx run``.  It ends
    with ``os._exit`` after flushing instead, as ``docker run`` would not make
    its caller wait either.  Other commands exit the usual way (atexit handlers,
    full teardown).  ``main`` itself never exits, so tests call it in-process.
    """
    arguments = sys.argv[1:]
    code = main(arguments)
    if run_remote.command_of(arguments) not in ONE_SHOT_COMMANDS:
        sys.exit(code)
    import contextlib
    import os

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _reader_went_away()
    with contextlib.suppress(OSError):  # nobody is left to tell
        sys.stderr.flush()
    os._exit(code)


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


ONE_SHOT_COMMANDS = frozenset({"run", "exec", "exec-code"})
"""Commands that start, run one thing and end: their start-up time is part of every call."""


def _start_lightly() -> None:
    """Leave out at start-up what a one-shot command never uses (``sbx bench`` measures it).

    structlog imports rich, when installed, only to draw tracebacks, and pydantic scans every
    installed package for plugins when the first model is made: together nearly 0.1 s of CPU,
    about a tenth of a local ``sbx run``.  A command that logs only warnings uses neither.
    """
    import os

    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # ImportError: structlog goes without
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]  # the progress display of `sbx images build` still has it


def sbx_failures(group: BaseExceptionGroup[BaseException]) -> list[SbxError] | None:
    """Every error in ``group`` (nested groups flattened) when all are ``SbxError``s;
    ``None`` when any is not (a bug, or an interrupt, which must not be worded away)."""
    from orchestrator.errors import SbxError

    found: list[SbxError] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            inner = sbx_failures(error)
            if inner is None:
                return None
            found += inner
        elif isinstance(error, SbxError):
            found.append(error)
        else:
            return None
    return found or None


def main_local(argv: Sequence[str]) -> int:
    """Every command, run in this process (``sbx run --local`` included)."""
    if run_remote.command_of(argv) in ONE_SHOT_COMMANDS:
        _start_lightly()
    from orchestrator.errors import ConfigError, SbxError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Worded, and given its exit status, by the command's own parser (125 for `sbx run`).
        (getattr(args, "group_parser", None) or parser).error(
            f"unrecognized arguments: {' '.join(extra)}"
        )
    handler = getattr(args, "handler", None)
    if handler is None:
        # A group without its action (`sbx images`) prints that group's help.
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    # 1 and 2, or 125 for commands whose status is the sandboxed command's (cli.parsing).
    failure: int = getattr(args, "failure_status", EXIT_FAILED)
    try:
        config = None if getattr(args, "own_config", False) else _load(args)
        code: int = handler(args, config)
        return code
    except ConfigError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return EXIT_USAGE if failure == EXIT_FAILED else failure
    except SbxError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return failure
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # our reader went away: ``main`` ends quietly (141), not as a failure of sbx
    except BaseExceptionGroup as group:
        # Work done at once (sessions opened side by side) fails as a group: when every
        # failure in it is one of ours, it is said as ours are, not as a traceback.
        failures = sbx_failures(group)
        if failures is None:
            raise
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        print(f"sbx: {failures[0]}{more}", file=sys.stderr)
        usage = failure == EXIT_FAILED and isinstance(failures[0], ConfigError)
        return EXIT_USAGE if usage else failure
    except Exception:
        if failure == EXIT_FAILED:
            raise
        # A bug of ours must not pass for the sandboxed command's own status 1.
        import traceback

        traceback.print_exc()
        return failure
