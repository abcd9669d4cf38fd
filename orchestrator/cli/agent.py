"""``sbx agent`` (Claude in a fresh sandbox) and ``sbx fake-api`` (a scripted stand-in)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any

import trio
from pydantic import ValidationError

from orchestrator.cli.secret_args import SecretError, add_secret_options, secret_from_args
from orchestrator.config import AgentConfig, Config
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.agent.turns import AgentResult

__all__ = ["TOOL_FAMILIES", "context_settings", "register", "summary_line", "tool_families"]

TOOL_FAMILIES = ("bash", "code_execution", "computer", "memory", "text_editor")
"""The tool families of the default registry (a unit test keeps the two the same); listed here
so that parsing the command line does not import the tools."""


def tool_families(text: str) -> list[str]:
    """``--tools bash,text_editor``: known families only, each named once."""
    chosen = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in chosen if name not in TOOL_FAMILIES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'nothing'} is not a tool family; choose from "
            f"{', '.join(TOOL_FAMILIES)} (comma-separated)"
        )
    return chosen


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = sub.add_parser(
        "agent",
        help="let Claude do a task in a fresh sandbox",
        description="Run the Claude agent loop on TASK in a fresh sandbox, or continue a "
        "stopped run (--resume). Needs ANTHROPIC_API_KEY; honours ANTHROPIC_BASE_URL and "
        "--base-url. Screenshots, prompt caching, the context budget and prices follow the "
        "[agent] section of the configuration.",
    )
    agent.add_argument(
        "task",
        nargs="?",
        help="what Claude should do (with --resume: an optional follow-up instruction)",
    )
    agent.add_argument("--image", help="sandbox image (default from config)")
    agent.add_argument("--model", default=None, help="model id (default claude-sonnet-4-6)")
    agent.add_argument(
        "--max-turns", type=int, default=20, help="stop after this many model responses"
    )
    agent.add_argument("--max-tokens", type=int, default=4096, help="per response")
    agent.add_argument("--token-budget", type=int, help="stop once this many tokens are used")
    agent.add_argument(
        "--tools",
        type=tool_families,
        default="bash",
        metavar="FAMILY[,FAMILY...]",
        help=f"the tools Claude gets, comma-separated, from: {', '.join(TOOL_FAMILIES)}",
    )
    agent.add_argument("--base-url", help="Messages API base URL (e.g. a `sbx fake-api`)")
    add_secret_options(agent, name="api-key", what="API key", env="ANTHROPIC_API_KEY")
    agent.add_argument("--runs", default="runs", help="directory for run directories")
    agent.add_argument("--system", help="system prompt")
    agent.add_argument(
        "--keep-images",
        type=int,
        metavar="N",
        help="the most screenshots one request carries; older ones become a placeholder "
        "(default agent.keep_images, 3; 0 sends them all)",
    )
    agent.add_argument(
        "--context-budget",
        type=int,
        metavar="TOKENS",
        help="the most input tokens one request may carry; past it the older turns are "
        "summarised (default agent.context_budget; 0: no budget)",
    )
    agent.add_argument(
        "--no-prompt-caching",
        action="store_true",
        help="send no cache_control breakpoints (agent.prompt_caching = false)",
    )
    agent.add_argument(
        "--thinking-budget",
        type=int,
        metavar="TOKENS",
        help="extended thinking with this budget (at least 1024, under --max-tokens)",
    )
    agent.add_argument(
        "--snapshot-on-stop",
        action="store_true",
        help="when the run stops, keep its sandbox's files as a snapshot image, so that "
        "--resume goes on from them (agent.snapshot_on_stop)",
    )
    agent.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the stopped run in RUN_DIR (runs/<stamp>-<id>) in a fresh sandbox, with "
        "the memory tool; TASK, if given, is a follow-up instruction",
    )
    agent.set_defaults(
        handler=lambda args, config: trio.run(run_agent_command, config, args), quiet_logs=True
    )

    fake = sub.add_parser(
        "fake-api",
        help="serve a scripted stand-in for the Messages API (dry runs)",
        description="Serve POST /v1/messages (and /v1/messages/count_tokens) on 127.0.0.1, "
        "answering from a YAML script of replies, with token counts and prompt-cache usage, so "
        "`sbx agent --base-url` can be tried without the cloud API.",
    )
    fake.add_argument("--script", required=True, help="YAML list of replies")
    fake.add_argument("--port", type=int, default=8788, help="port to listen on")
    fake.add_argument(
        "--max-input-tokens",
        type=int,
        metavar="TOKENS",
        help="refuse prompts longer than this, as a model's context window does",
    )
    fake.set_defaults(
        handler=lambda args, config: trio.run(
            serve_fake_api, args.script, args.port, args.max_input_tokens
        )
    )


def context_settings(config: Config, args: argparse.Namespace) -> AgentConfig:
    """``config.agent`` with the command line's context flags over it."""
    updates: dict[str, Any] = {}
    if args.keep_images is not None:
        updates["keep_images"] = args.keep_images
        if args.keep_images > 0:
            updates["image_trim_step"] = min(config.agent.image_trim_step, args.keep_images)
    if args.context_budget is not None:
        updates["context_budget"] = args.context_budget
    if args.no_prompt_caching:
        updates["prompt_caching"] = False
    if getattr(args, "snapshot_on_stop", False):
        updates["snapshot_on_stop"] = True
    try:
        return AgentConfig.model_validate({**config.agent.model_dump(), **updates})
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"invalid agent option: {problems}") from None


def summary_line(result: AgentResult) -> str:
    """The line printed when a run ends: why, how long, the tokens and what they cost."""
    cost = f"about ${result.cost_usd:.4f}" if result.cost_usd is not None else "no price known"
    compactions = f"; {result.compactions} compaction(s)" if result.compactions else ""
    return (
        f"[{result.stop_reason} after {result.turns} turn(s); {result.input_tokens} input "
        f"(+{result.cache_read_tokens} cache read, {result.cache_write_tokens} cache write) + "
        f"{result.output_tokens} output tokens, {cost}{compactions}; transcript in "
        f"{result.run_dir}]"
    )


async def run_agent_command(config: Config, args: argparse.Namespace) -> int:
    from orchestrator.agent.loop import (
        AgentError,
        check_thinking,
        resolve_api_key,
        resume_agent,
        run_agent,
    )
    from orchestrator.router import ToolCallEvent
    from orchestrator.runtime import Orchestrator
    from orchestrator.tools.versions import DEFAULT_MODEL

    if not args.task and not args.resume:
        print("sbx agent: give a TASK (or --resume RUN_DIR)", file=sys.stderr)
        return 2
    context = context_settings(config, args)
    try:
        # fail before starting a sandbox
        api_key = resolve_api_key(secret_from_args(args, name="api-key", env="ANTHROPIC_API_KEY"))
        if not args.resume:
            check_thinking(args.model or DEFAULT_MODEL, args.thinking_budget, args.max_tokens)
    except (AgentError, SecretError) as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 1
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
    common: dict[str, Any] = {
        "max_turns": args.max_turns,
        "token_budget": args.token_budget,
        "api_key": api_key,
        "base_url": args.base_url,
        "on_text": on_text,
        "on_tool": on_tool,
        "context": context,
    }
    try:
        async with orch:
            if args.resume:
                result = await resume_agent(orch, args.resume, args.task, **common)
            else:
                result = await run_agent(
                    orch,
                    args.task,
                    image=args.image,
                    model=args.model or DEFAULT_MODEL,
                    tools=args.tools,
                    max_tokens=args.max_tokens,
                    system=args.system,
                    run_root=args.runs,
                    thinking_budget=args.thinking_budget,
                    **common,
                )
    except AgentError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        raise ConfigError(str(exc).strip("'\"")) from None
    print(f"\n{summary_line(result)}", file=sys.stderr)
    return 0


async def serve_fake_api(script: str, port: int, max_input_tokens: int | None = None) -> int:
    from orchestrator.testing.messages_api import MessagesAPIServer, load_script

    try:
        replies = load_script(script)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the script {script}: {exc}") from None
    server = MessagesAPIServer(replies, max_input_tokens=max_input_tokens)
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
