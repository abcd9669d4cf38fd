"""``sbx run``: one command in a fresh sandbox, output passed through byte for byte."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

from orchestrator.cli._args import env_pair, memory_size
from orchestrator.cli.parsing import runs_a_command
from orchestrator.cli.run_remote import one_shot_options
from orchestrator.cli.secret_args import add_secret_options
from orchestrator.config import Config
from orchestrator.errors import SessionClosed
from orchestrator.exec_events import EXIT_TIMEOUT
from orchestrator.results import OutputChunk

__all__ = ["EXIT_TIMEOUT", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="run a command in a fresh sandbox",
        description="Run CMD in a fresh sandbox and remove it. Output passes through "
        "unchanged; the exit status is the command's (124 on timeout), 125 when sbx itself "
        "fails (as docker run).",
    )
    run.add_argument(
        "--image",
        help="image: a short name (code-runner, desktop; `sbx images ls` lists them) or a full "
        "reference (default: sandbox.image, code-runner)",
    )
    run.add_argument(
        "--timeout", type=float, help="seconds before the command is killed (default: none)"
    )
    run.add_argument("--network", action="store_true", help="give the sandbox network access")
    run.add_argument(
        "--env",
        "-e",
        type=env_pair,
        action="append",
        default=[],
        metavar="K=V",
        help="environment variable (repeatable)",
    )
    run.add_argument("--workdir", "-w", help="working directory in the sandbox")
    run.add_argument(
        "--memory",
        "-m",
        type=memory_size,
        help="memory limit, at least 16m, e.g. 512m, 1g (default: sandbox.memory)",
    )
    run.add_argument("--cpus", type=float, help="CPU limit, e.g. 0.5, 2 (default: sandbox.cpus)")
    run.add_argument(
        "--user",
        "-u",
        help="run as 'root' (can install packages), a user of the image, or UID[:GID]",
    )
    run.add_argument(
        "--writable-root",
        action="store_true",
        help="a writable root filesystem (capped at sandbox.root_size)",
    )
    run.add_argument(
        "--interactive", "-i", action="store_true", help="pass this process's stdin to the command"
    )
    run.add_argument(
        "--url",
        help="run on this sbx server instead (default $SBX_URL; a thin client, see README)",
    )
    add_secret_options(run, name="token", what="server's API token", env="SBX_TOKEN")
    run.add_argument(
        "--local", action="store_true", help="run here even when $SBX_URL names a server"
    )
    run.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD...", help="the command and its arguments"
    )
    run.set_defaults(handler=handle, quiet_logs=True, group_parser=run)
    runs_a_command(run)


def handle(args: argparse.Namespace, config: Config) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        args.group_parser.error("run needs a command: sbx run [OPTIONS] -- CMD [ARG...]")
    options = one_shot_options(
        image=args.image,
        network=args.network,
        env=dict(args.env),
        workdir=args.workdir,
        memory=args.memory,
        cpus=args.cpus,
        user=args.user,
        writable_root=args.writable_root,
    )
    stdin = sys.stdin.buffer.read() if args.interactive else None
    return trio.run(run_command, config, command, options, args.timeout, stdin)


async def run_command(
    config: Config,
    command: list[str],
    options: dict[str, Any],
    timeout: float | None,
    stdin: bytes | None,
) -> int:
    from orchestrator.runtime import Orchestrator

    out = sys.stdout.buffer
    err = sys.stderr.buffer

    def passthrough(chunk: OutputChunk) -> None:
        target = out if chunk.stream == "stdout" else err
        target.write(chunk.data)
        target.flush()

    code = 1
    # Fresh-sandbox runs need no reaping; `sbx gc` and long-lived supervisors do that.
    config = config.model_copy(update={"reap_orphans": False})
    orch = Orchestrator(config, handle_signals=True)
    try:
        async with orch, orch.session(**options) as session:
            result = await session.exec(
                command, timeout=timeout, stdin=stdin, on_output=passthrough
            )
            code = EXIT_TIMEOUT if result.timed_out else result.exit_code
            if result.truncated:
                print(
                    f"sbx: output was truncated at {config.session.output_limit} bytes per "
                    "stream (raise session.output_limit to keep more)",
                    file=sys.stderr,
                )
            if result.oom_killed:
                print("sbx: the command ran out of memory (raise --memory)", file=sys.stderr)
    except SessionClosed:
        if orch.signalled is None:
            raise
    if orch.signalled is not None:
        return 128 + orch.signalled
    return code
