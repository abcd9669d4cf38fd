"""``sbx run`` against a running ``sbx serve`` (``--url`` or ``$SBX_URL``).

The docker CLI answers ``docker run`` fast because it is a thin client of a
daemon that is already up; this is the same arrangement.  It is reached
before the rest of the CLI is imported and, like the client it drives
(``orchestrator.api.client``), uses the standard library only, so a run
costs the interpreter's start-up and a few loopback requests -- and, with
spare sandboxes configured on the server (``[pool]``), no wait for a
container at all.  Parsing and presentation are here; requests are the
client's.

The command's stdout and stderr bytes pass through unchanged as the server
streams them (NDJSON); the exit status is the command's, 124 on timeout and 125
when sbx fails, as in the local mode.  The session is removed on every way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.cli.parsing import EXIT_SBX_FAILED
from orchestrator.cli.secret_args import SecretError, add_secret_options, secret_from_args
from orchestrator.exec_events import StreamFailed, exit_status, relay

if TYPE_CHECKING:
    from orchestrator.api.client import SbxClient

__all__ = ["command_of", "main", "one_shot_options", "wants_remote"]

_GLOBAL_OPTIONS_WITH_VALUE = ("--config", "--log-level", "--log-format")
_LOCAL_HINT = ", or run locally with --local"


class _UsageError(Exception):
    pass


def _split_global(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The sub-command and the arguments after it, skipping the global options."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in _GLOBAL_OPTIONS_WITH_VALUE:
            index += 2
        elif token.startswith("-"):
            index += 1  # --opt=value, or something the full parser will judge
        else:
            return token, list(argv[index + 1 :])
    return None, []


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line (``run`` in ``sbx --config x run ...``)."""
    return _split_global(argv)[0]


def _run_options(args: Sequence[str]) -> list[str]:
    """``run``'s own options: what comes before ``--`` or the command's first word."""
    options: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--" or not token.startswith("-"):
            break
        options.append(token)
        if token in _options_with_values():
            options.extend(args[index + 1 : index + 2])
            index += 1
        index += 1
    return options


def wants_remote(argv: Sequence[str]) -> bool:
    """Whether this is ``sbx run`` for a server: ``--url``, or ``$SBX_URL`` and no ``--local``."""
    command, rest = _split_global(argv)
    if command != "run":
        return False
    options = _run_options(rest)
    if "--local" in options or any(o in ("-h", "--help") for o in options):
        return False
    explicit = any(o == "--url" or o.startswith("--url=") for o in options)
    return explicit or bool(os.environ.get("SBX_URL"))


def _options_with_values() -> set[str]:
    """``run``'s options that take a value, read off the parser below."""
    return {
        flag for action in _parser()._actions if action.nargs != 0 for flag in action.option_strings
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sbx run", add_help=False)
    parser.add_argument("--image")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--network", action="store_true")
    parser.add_argument("--env", "-e", action="append", default=[])
    parser.add_argument("--workdir", "-w")
    parser.add_argument("--memory", "-m")
    parser.add_argument("--cpus", type=float)
    parser.add_argument("--user", "-u")
    parser.add_argument("--writable-root", action="store_true")
    parser.add_argument("--interactive", "-i", action="store_true")
    parser.add_argument("--url")
    add_secret_options(parser, name="token", what="API token", env="SBX_TOKEN")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    return parser


def one_shot_options(
    *,
    image: str | None,
    network: bool,
    env: dict[str, str],
    workdir: str | None,
    memory: int | str | None,
    cpus: float | None,
    user: str | None = None,
    writable_root: bool = False,
) -> dict[str, Any]:
    """The session options of a one-shot ``sbx run``, local or on a server."""
    # A one-shot command needs no memory store, and untrusted code should not see it.
    options: dict[str, Any] = {"memories": False}
    if image:
        options["image"] = image
    if network:
        options["network"] = True
    if env:
        options["env"] = env
    if workdir:
        options["workdir"] = workdir
    if memory:
        options["memory"] = memory
    if cpus:
        options["cpus"] = cpus
    if user:
        options["user"] = user
    if writable_root:
        options["writable_root"] = True
    return options


def _session_body(args: argparse.Namespace) -> dict[str, Any]:
    env = {}
    for pair in args.env:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise _UsageError(f"--env needs NAME=VALUE, got {pair!r}")
        env[name] = value
    return one_shot_options(
        image=args.image,
        network=args.network,
        env=env,
        workdir=args.workdir,
        memory=args.memory,
        cpus=args.cpus,
        user=args.user,
        writable_root=args.writable_root,
    )


def _stream(client: SbxClient, session_id: str, command: list[str], options: dict[str, Any]) -> int:
    from orchestrator.api.client import ApiClientError

    events = client.exec_stream(session_id, command, **options)
    try:
        result = relay(events, sys.stdout.buffer, sys.stderr.buffer)
    except StreamFailed as exc:
        raise ApiClientError(exc.status, exc.kind, exc.message) from None
    if result.get("truncated"):
        print("sbx: output was truncated (the server's session.output_limit)", file=sys.stderr)
    if result.get("oom_killed"):
        print("sbx: the command ran out of memory (raise --memory)", file=sys.stderr)
    return exit_status(result)


def main(argv: Sequence[str], local: Callable[[Sequence[str]], int]) -> int:
    """Run on the server; ``local`` (the full command line) words any usage error."""
    _, rest = _split_global(argv)
    args, unknown = _parser().parse_known_args(rest)
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if unknown or not command:
        return local(argv)  # the full parser words the usage error exactly as the local mode
    from orchestrator.api.client import ApiClientError, SbxClient

    url = args.url or os.environ.get("SBX_URL", "")
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    try:
        token = secret_from_args(args, name="token", env="SBX_TOKEN")
        if token is None:
            token = os.environ.get("SBX_TOKEN")
        if args.interactive:
            options["stdin_b64"] = base64.b64encode(sys.stdin.buffer.read()).decode()
        client = SbxClient(url, token)
    except (ApiClientError, SecretError) as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return EXIT_SBX_FAILED
    session_id: str | None = None
    try:
        session_id = str(client.create_session(**_session_body(args))["id"])
        return _stream(client, session_id, command, options)
    except _UsageError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return EXIT_SBX_FAILED
    except ApiClientError as exc:
        print(f"sbx: {exc}{_LOCAL_HINT if exc.kind == 'unreachable' else ''}", file=sys.stderr)
        return EXIT_SBX_FAILED
    except KeyboardInterrupt:
        return 130
    finally:
        if session_id is not None:
            try:
                client.close()  # a stream cut short leaves the connection unusable
                client.delete_session(session_id)
            except (ApiClientError, KeyboardInterrupt):
                print(
                    f"sbx: could not remove session {session_id}; it expires on its own, "
                    f"or remove it with `sbx session rm {session_id}`",
                    file=sys.stderr,
                )
        client.close()
