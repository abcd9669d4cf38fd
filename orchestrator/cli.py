"""The ``sbx`` command line: parsing and presentation only.

Every command is a thin shell over the Python API (``Orchestrator``,
``orchestrator.images``, ``orchestrator.doctor``, ``orchestrator.bench``);
nothing here talks to the engine or the guest.  Errors from the
``orchestrator.errors`` tree are printed as one line naming cause and fix,
never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import trio

from orchestrator.config import Config, load_config, parse_bytes
from orchestrator.errors import ConfigError, SbxError, SessionClosed
from orchestrator.log import configure_logging

__all__ = ["main"]

EXIT_TIMEOUT = 124
"""``sbx run``'s exit status when the command timed out, as timeout(1) does."""


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--env needs NAME=VALUE, got {text!r}")
    return name, value


def _size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sbx",
        description="Hardened Docker sandboxes for Claude's tools and plain exec/file calls.",
    )
    parser.add_argument("--config", help="TOML config file (default: $SBX_CONFIG, ./sbx.toml)")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity"
    )
    parser.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="log format (default: auto)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a command in a fresh sandbox",
        description="Run CMD in a fresh sandbox and remove it. Output passes through "
        "unchanged; the exit status is the command's (124 on timeout).",
    )
    run.add_argument("--image", help="image (short name or full; default from config)")
    run.add_argument("--timeout", type=float, help="seconds before the command is killed")
    run.add_argument("--network", action="store_true", help="give the sandbox network access")
    run.add_argument(
        "--env",
        "-e",
        type=_env_pair,
        action="append",
        default=[],
        metavar="K=V",
        help="environment variable (repeatable)",
    )
    run.add_argument("--workdir", "-w", help="working directory in the sandbox")
    run.add_argument("--memory", "-m", type=_size, help="memory limit, e.g. 512m, 1g")
    run.add_argument("--cpus", type=float, help="CPU limit, e.g. 0.5, 2")
    run.add_argument(
        "--interactive", "-i", action="store_true", help="pass this process's stdin to the command"
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...")

    images = sub.add_parser("images", help="build and list sandbox images")
    images_sub = images.add_subparsers(dest="images_command", metavar="ACTION")
    build = images_sub.add_parser("build", help="build images (missing or stale ones only)")
    build.add_argument("names", nargs="*", help="images to build (default: all)")
    build.add_argument("--base", help="start sbx-base from this Debian-like image")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ls = images_sub.add_parser("ls", help="list images with size and recipe hash")
    ls.add_argument("--json", action="store_true", help="print JSON")

    doctor = sub.add_parser("doctor", help="check the engine, the images and a sandbox start")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.add_argument("--quick", action="store_true", help="skip starting a sandbox")

    gc = sub.add_parser("gc", help="remove sandboxes left behind by dead supervisors")
    gc.add_argument("--json", action="store_true", help="print JSON")

    bench = sub.add_parser("bench", help="measure call latency against docker exec")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--iterations", "-n", type=int, default=200, help="calls per measurement")
    bench.add_argument("--image", help="image to measure in (default: code-runner)")
    bench.add_argument(
        "--no-cli", action="store_true", help="skip `sbx run` vs `docker run` (slower part)"
    )

    agent = sub.add_parser(
        "agent",
        help="let Claude do a task in a fresh sandbox",
        description="Run the Claude agent loop on TASK in a fresh sandbox. Needs "
        "ANTHROPIC_API_KEY; honours ANTHROPIC_BASE_URL and --base-url.",
    )
    agent.add_argument("task", help="what Claude should do")
    agent.add_argument("--image", help="sandbox image (default from config)")
    agent.add_argument("--model", default=None, help="model id (default claude-sonnet-4-5)")
    agent.add_argument("--max-turns", type=int, default=20)
    agent.add_argument("--max-tokens", type=int, default=4096, help="per response")
    agent.add_argument("--token-budget", type=int, help="stop once this many tokens are used")
    agent.add_argument("--tools", default="bash", help="comma-separated tool families")
    agent.add_argument("--base-url", help="Messages API base URL (e.g. a `sbx fake-api`)")
    agent.add_argument("--api-key", help="API key (default $ANTHROPIC_API_KEY)")
    agent.add_argument("--runs", default="runs", help="directory for run directories")
    agent.add_argument("--system", help="system prompt")

    fake = sub.add_parser(
        "fake-api",
        help="serve a scripted stand-in for the Messages API (dry runs)",
        description="Serve POST /v1/messages on 127.0.0.1, answering from a YAML script of "
        "replies, so `sbx agent --base-url` can be tried without the cloud API.",
    )
    fake.add_argument("--script", required=True, help="YAML list of replies")
    fake.add_argument("--port", type=int, default=8788)

    demo = sub.add_parser("demo", help="run several sandboxed jobs in parallel and show results")
    demo.add_argument("--image", help="image for the jobs (default: code-runner)")

    sub.add_parser("version", help="print versions")
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    level = args.log_level or config.logging.level
    fmt = args.log_format or config.logging.format
    # A one-shot `run` keeps the terminal for the command's own output.
    if args.command == "run" and not args.log_level:
        level = "warning"
    configure_logging(level, fmt)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        config = _load(args)
        return _dispatch(parser, args, config)
    except ConfigError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 2
    except SbxError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, config: Config) -> int:
    if args.command == "run":
        return _run(parser, args, config)
    if args.command == "images":
        if args.images_command == "build":
            return trio.run(_images_build, config, args.names, args.base, args.force)
        if args.images_command == "ls":
            return trio.run(_images_ls, config, args.json)
        parser.parse_args(["images", "--help"])
        return 2
    if args.command == "doctor":
        from orchestrator.doctor import run_doctor

        return trio.run(run_doctor, config, args.json, not args.quick)
    if args.command == "agent":
        return trio.run(_agent, config, args)
    if args.command == "fake-api":
        return trio.run(_fake_api, args.script, args.port)
    if args.command == "demo":
        from orchestrator.demo import run_demo

        return trio.run(run_demo, config, args.image)
    if args.command == "gc":
        return trio.run(_gc, config, args.json)
    if args.command == "bench":
        from orchestrator.bench import run_bench

        return trio.run(run_bench, config, args.iterations, args.image, args.json, not args.no_cli)
    if args.command == "version":
        from orchestrator import __version__, protocol

        print(
            f"sbx {__version__} (protocol {protocol.PROTOCOL_VERSION}, "
            f"Python {sys.version.split()[0]})"
        )
        return 0
    parser.print_help()
    return 2


# -- run ---------------------------------------------------------------------


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, config: Config) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("run needs a command: sbx run [OPTIONS] -- CMD [ARG...]")
    options: dict[str, Any] = {}
    if args.image:
        options["image"] = args.image
    if args.network:
        options["network"] = True
    if args.env:
        options["env"] = dict(args.env)
    if args.workdir:
        options["workdir"] = args.workdir
    if args.memory:
        options["memory"] = args.memory
    if args.cpus:
        options["cpus"] = args.cpus
    stdin = sys.stdin.buffer.read() if args.interactive else None
    return trio.run(_run_async, config, command, options, args.timeout, stdin)


async def _run_async(
    config: Config,
    command: list[str],
    options: dict[str, Any],
    timeout: float | None,
    stdin: bytes | None,
) -> int:
    from orchestrator.results import OutputChunk
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


# -- images ------------------------------------------------------------------


async def _images_build(config: Config, names: list[str], base: str | None, force: bool) -> int:
    from orchestrator.images.progress import RichBuildProgress
    from orchestrator.runtime import make_image_builder

    builder = make_image_builder(config)
    try:
        with RichBuildProgress() as progress:
            outcomes = await builder.build(
                names or None,
                base_image=base or config.images.base_image,
                force=force,
                progress=progress,
            )
    finally:
        await builder.aclose()
    for outcome in outcomes:
        what = "built" if outcome.built else "up to date"
        print(
            f"{outcome.image:<28} {what:<10} {outcome.seconds:6.1f} s  "
            f"recipe {outcome.recipe_hash[:12]}"
        )
    return 0


async def _images_ls(config: Config, as_json: bool) -> int:
    from orchestrator.runtime import make_image_builder

    builder = make_image_builder(config)
    try:
        statuses = await builder.status()
    finally:
        await builder.aclose()
    if as_json:
        print(json.dumps([status.model_dump(mode="json") for status in statuses]))
        return 0
    print(f"{'NAME':<13} {'IMAGE':<24} {'SIZE':>9}  {'RECIPE':<12}  STATE")
    for status in statuses:
        size = f"{status.size / 1e6:.0f} MB" if status.size else "-"
        state = "current" if status.current else ("stale" if status.present else "missing")
        print(
            f"{status.name:<13} {status.image:<24} {size:>9}  "
            f"{(status.image_hash or status.expected_hash)[:12]:<12}  {state}"
        )
    return 0


# -- agent -------------------------------------------------------------------


async def _agent(config: Config, args: argparse.Namespace) -> int:
    from orchestrator.agent.loop import AgentError, resolve_api_key, run_agent
    from orchestrator.router import ToolCallEvent
    from orchestrator.runtime import Orchestrator
    from orchestrator.tools.versions import DEFAULT_MODEL

    api_key = resolve_api_key(args.api_key)  # fail before starting a sandbox
    out = sys.stdout

    def on_text(text: str) -> None:
        out.write(text)
        out.flush()

    def on_tool(event: ToolCallEvent) -> None:
        if event.kind != "finished":
            return
        mark = "error" if event.is_error else "ok"
        print(
            f"  ⚙ {event.name} [{event.tool_use_id}] {mark} in {event.seconds:.2f} s",
            file=sys.stderr,
        )

    config = config.model_copy(update={"reap_orphans": False})
    orch = Orchestrator(config, handle_signals=True)
    try:
        async with orch:
            result = await run_agent(
                orch,
                args.task,
                image=args.image,
                model=args.model or DEFAULT_MODEL,
                tools=[t.strip() for t in args.tools.split(",") if t.strip()],
                max_turns=args.max_turns,
                max_tokens=args.max_tokens,
                token_budget=args.token_budget,
                system=args.system,
                api_key=api_key,
                base_url=args.base_url,
                run_root=args.runs,
                on_text=on_text,
                on_tool=on_tool,
            )
    except AgentError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        raise ConfigError(str(exc).strip("'\"")) from None
    print(
        f"\n[{result.stop_reason} after {result.turns} turn(s); "
        f"{result.input_tokens} input + {result.output_tokens} output tokens; "
        f"transcript in {result.run_dir}]",
        file=sys.stderr,
    )
    return 0


async def _fake_api(script: str, port: int) -> int:
    from orchestrator.testing.messages_api import MessagesAPIServer, load_script

    try:
        replies = load_script(script)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the script {script}: {exc}") from None
    server = MessagesAPIServer(replies)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            lambda task_status: server.serve(task_status=task_status, port=port)
        )
        print(
            f"fake Messages API on {url} with {len(replies)} scripted replies; "
            f"use: sbx agent --base-url {url} ...  (Ctrl-C stops)",
            flush=True,
        )
        with trio.open_signal_receiver(2, 15) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    return 0


# -- gc ----------------------------------------------------------------------


async def _gc(config: Config, as_json: bool) -> int:
    from orchestrator.runtime import make_backend
    from orchestrator.supervisor import Supervisor

    backend = make_backend(config)
    try:
        reaped = await Supervisor(config, backend).reap_orphans()
    finally:
        await backend.aclose()
    if as_json:
        print(json.dumps({"removed": [info.id for info in reaped]}))
    else:
        for info in reaped:
            session = info.labels.get("io.sbx.session", "?")
            print(f"removed {info.id[:12]}  session {session}  ({info.status})")
        print(f"{len(reaped)} orphaned sandbox(es) removed")
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
