"""``sbx agent`` (Claude in a fresh sandbox) and ``sbx fake-api`` (a scripted stand-in)."""

from __future__ import annotations

import argparse
import signal
import sys

import trio

from orchestrator.config import Config
from orchestrator.errors import ConfigError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = sub.add_parser(
        "agent",
        help="let Claude do a task in a fresh sandbox",
        description="Run the Claude agent loop on TASK in a fresh sandbox. Needs "
        "ANTHROPIC_API_KEY; honours ANTHROPIC_BASE_URL and --base-url.",
    )
    agent.add_argument("task", help="what Claude should do")
    agent.add_argument("--image", help="sandbox image (default from config)")
    agent.add_argument("--model", default=None, help="model id (default claude-sonnet-4-6)")
    agent.add_argument("--max-turns", type=int, default=20)
    agent.add_argument("--max-tokens", type=int, default=4096, help="per response")
    agent.add_argument("--token-budget", type=int, help="stop once this many tokens are used")
    agent.add_argument("--tools", default="bash", help="comma-separated tool families")
    agent.add_argument("--base-url", help="Messages API base URL (e.g. a `sbx fake-api`)")
    agent.add_argument("--api-key", help="API key (default $ANTHROPIC_API_KEY)")
    agent.add_argument("--runs", default="runs", help="directory for run directories")
    agent.add_argument("--system", help="system prompt")
    agent.set_defaults(
        handler=lambda args, config: trio.run(run_agent_command, config, args), quiet_logs=True
    )

    fake = sub.add_parser(
        "fake-api",
        help="serve a scripted stand-in for the Messages API (dry runs)",
        description="Serve POST /v1/messages on 127.0.0.1, answering from a YAML script of "
        "replies, so `sbx agent --base-url` can be tried without the cloud API.",
    )
    fake.add_argument("--script", required=True, help="YAML list of replies")
    fake.add_argument("--port", type=int, default=8788)
    fake.set_defaults(handler=lambda args, config: trio.run(serve_fake_api, args.script, args.port))


async def run_agent_command(config: Config, args: argparse.Namespace) -> int:
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


async def serve_fake_api(script: str, port: int) -> int:
    from orchestrator.testing.messages_api import MessagesAPIServer, load_script

    try:
        replies = load_script(script)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the script {script}: {exc}") from None
    server = MessagesAPIServer(replies)
    async with trio.open_nursery() as nursery:

        async def serve(*, task_status: trio.TaskStatus[str]) -> None:
            await server.serve(task_status=task_status, port=port)

        url = await nursery.start(serve)
        print(
            f"fake Messages API on {url} with {len(replies)} scripted replies; "
            f"use: sbx agent --base-url {url} ...  (Ctrl-C stops)",
            flush=True,
        )
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    return 0
