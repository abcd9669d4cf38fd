"""The Claude agent loop: stream a turn, run its tool calls in the sandbox, repeat.

It talks to the Messages API with ``anthropic.AsyncAnthropic`` (which runs
under trio through anyio), advertises the tools with the type strings and
beta flags the model expects, streams the model's text to a callback as it
arrives, runs each turn's ``tool_use`` blocks through the router -- so
parallel tool calls really run in parallel -- and stops at ``end_turn``, the
turn limit, the token budget or the context budget.  Each request is built
to fit the context (``context``: screenshots trimmed, prompt caching,
compaction); usage and cost are counted per response (``usage``).
Everything goes to a run directory as it happens; an API error keeps the
directory and says where it is, and ``resume_agent`` continues a stopped run
from it in a fresh sandbox.

This module starts runs (a fresh one, or one read back by ``resume``);
``turns`` drives them.  Must not: import the runtime (an ``AgentHost`` is
handed in), or talk to Docker or the guest.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anthropic
import trio

from orchestrator.agent.calls import AgentError, TextSink
from orchestrator.agent.history import Conversation
from orchestrator.agent.resume import load_run
from orchestrator.agent.sdk_retries import retry_watching_http_client
from orchestrator.agent.transcript import RunDirectory
from orchestrator.agent.turns import AgentHost, AgentResult, RunState, ToolSink, drive
from orchestrator.agent.usage import Ledger
from orchestrator.config import AgentConfig, Config
from orchestrator.tools.versions import DEFAULT_MODEL, supports_thinking

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = [
    "AgentError",
    "AgentHost",
    "AgentResult",
    "check_thinking",
    "resolve_api_key",
    "resume_agent",
    "run_agent",
]

DEFAULT_SYSTEM = (
    "You are operating in a sandboxed Linux machine (Debian) as an unprivileged user, with "
    "/workspace as the working directory. Use the tools to complete the task, then say what "
    "you did."
)
RESUME_NOTE = (
    "[This run stopped after turn {turn} and goes on in a fresh sandbox: files and processes "
    "from before are gone, except what was saved under /memories.]"
)
RESUME_FROM_SNAPSHOT_NOTE = (
    "[This run stopped after turn {turn} and goes on in a fresh sandbox made from a snapshot "
    "of the old one: its files are as they were, but no process from before is running.]"
)


def resolve_api_key(api_key: str | None) -> str:
    key = api_key or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        raise AgentError(
            "ANTHROPIC_API_KEY is not set: export it (or pass --api-key) to talk to Claude. "
            "To dry-run without the cloud API, start `sbx fake-api --script FILE` and pass its "
            "URL with --base-url (any key works there)"
        )
    return key


def check_thinking(model: str, thinking_budget: int | None, max_tokens: int) -> None:
    """Refuse a thinking budget the API would refuse, before any sandbox starts."""
    if not thinking_budget:
        return
    if not supports_thinking(model):
        raise AgentError(
            f"{model} has no extended thinking: drop --thinking-budget or use a model that "
            "has it (Claude 3.7 Sonnet, any Claude 4 model)"
        )
    if thinking_budget < 1024:
        raise AgentError(f"--thinking-budget {thinking_budget} is under the API's least, 1024")
    if thinking_budget >= max_tokens:
        raise AgentError(
            f"--thinking-budget {thinking_budget} must be less than --max-tokens {max_tokens} "
            "(thinking is part of the answer's tokens): raise --max-tokens"
        )


def _client(
    client: anthropic.AsyncAnthropic | None,
    api_key: str | None,
    base_url: str | None,
    max_retries: int,
    orch: AgentHost,
) -> anthropic.AsyncAnthropic:
    if client is not None:
        return client
    hub = getattr(orch, "resilience", None)
    return anthropic.AsyncAnthropic(
        api_key=resolve_api_key(api_key),
        base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
        max_retries=max_retries,
        http_client=retry_watching_http_client(hub.retried if hub is not None else None),
    )


@asynccontextmanager
async def _closing(client: anthropic.AsyncAnthropic, owned: bool) -> AsyncIterator[None]:
    """Close a client this run made (its connections) when the run ends, however it ends;
    a client the caller handed in stays the caller's."""
    try:
        yield
    finally:
        if owned:
            with trio.move_on_after(5) as scope:
                scope.shield = True
                await client.close()


def _settings(orch: AgentHost, context: AgentConfig | None) -> AgentConfig:
    if context is not None:
        return context
    config = getattr(orch, "config", None)
    return config.agent if isinstance(config, Config) else AgentConfig()


async def run_agent(
    orch: AgentHost,
    task: str,
    *,
    image: str | None = None,
    model: str = DEFAULT_MODEL,
    tools: Sequence[str] = ("bash",),
    max_turns: int = 20,
    max_tokens: int = 4096,
    token_budget: int | None = None,
    system: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    run_root: Path | str = "runs",
    on_text: TextSink | None = None,
    on_tool: ToolSink | None = None,
    client: anthropic.AsyncAnthropic | None = None,
    context: AgentConfig | None = None,
    thinking_budget: int | None = None,
    session: Session | None = None,
) -> AgentResult:
    """Run ``task`` with Claude in a fresh sandbox; see the module docstring.

    ``context`` overrides ``orch.config.agent`` (images kept, caching, budget,
    compaction, prices); ``thinking_budget`` turns on extended thinking.  With
    ``session`` the run works in that live session instead (a workflow's or an
    evaluation task's) and leaves it open; ``image`` is then unused.
    """
    check_thinking(model, thinking_budget, max_tokens)
    settings = _settings(orch, context)
    owned = client is None
    client = _client(client, api_key, base_url, settings.max_retries, orch)
    families = list(tools)
    if image is None and "computer" in families:
        image = "desktop"  # the computer tool needs a screen
    tool_params, betas = orch.router.registry.definitions(model, families)
    run = RunDirectory.create(Path(run_root))
    system = system or DEFAULT_SYSTEM
    run.record(
        "start",
        task=task,
        model=model,
        tools=tool_params,
        families=families,
        betas=betas,
        image=image,
        system=system,
        max_turns=max_turns,
        max_tokens=max_tokens,
        token_budget=token_budget,
        thinking_budget=thinking_budget,
        context=settings.model_dump(exclude={"prices", "allowed_base_urls", "share_server_key"}),
    )
    state = RunState(
        run,
        Conversation(task),
        model,
        families,
        image,
        system,
        max_tokens,
        thinking_budget,
        settings,
    )
    async with _closing(client, owned):
        return await drive(
            orch, state, client, max_turns, token_budget, on_text, on_tool, given=session
        )


async def resume_agent(
    orch: AgentHost,
    run_dir: Path | str,
    follow_up: str | None = None,
    *,
    max_turns: int = 20,
    token_budget: int | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    on_text: TextSink | None = None,
    on_tool: ToolSink | None = None,
    client: anthropic.AsyncAnthropic | None = None,
    context: AgentConfig | None = None,
) -> AgentResult:
    """Continue the run in ``run_dir`` from its transcript, in a fresh sandbox, with the
    memory tool; up to ``max_turns`` more turns.  ``follow_up`` is a new instruction (needed
    when the run had finished with an answer)."""
    stopped = load_run(run_dir)
    if stopped.answered and not follow_up:
        raise AgentError(
            f"the run in {stopped.run_dir} ended with an answer ({stopped.stop_reason or 'done'}) "
            f"after turn {stopped.last_turn}: give a follow-up task to continue it"
        )
    start = stopped.start
    model = str(start.get("model") or DEFAULT_MODEL)
    max_tokens = int(start.get("max_tokens") or 4096)
    thinking_budget = start.get("thinking_budget")
    check_thinking(model, thinking_budget, max_tokens)
    families = list(start.get("families") or _families_of(orch, start.get("tools") or []))
    if "memory" not in families and "memory" in orch.router.registry.families():
        families.append("memory")  # what the model saved before is where it left it
    settings = _settings(orch, context)
    owned = client is None
    client = _client(client, api_key, base_url, settings.max_retries, orch)
    run = RunDirectory(stopped.run_dir)
    note = (RESUME_FROM_SNAPSHOT_NOTE if stopped.snapshot else RESUME_NOTE).format(
        turn=stopped.last_turn
    )
    if follow_up:
        note = f"{note}\n\n{follow_up}"
    run.record(
        "resume",
        from_turn=stopped.last_turn,
        pending=[use["id"] for use in stopped.pending],
        follow_up=follow_up,
        families=families,
        snapshot=stopped.snapshot,
    )
    state = RunState(
        run,
        stopped.conversation,
        model,
        families,
        stopped.image,
        str(start.get("system") or DEFAULT_SYSTEM),
        max_tokens,
        thinking_budget,
        settings,
        next_turn=stopped.last_turn + (0 if stopped.pending else 1),
        ledger=Ledger(stopped.usage),
        note=note,
    )
    async with _closing(client, owned):
        return await drive(orch, state, client, max_turns, token_budget, on_text, on_tool)


def _families_of(orch: AgentHost, tools: list[dict[str, Any]]) -> list[str]:
    """Tool families from advertised tool parameters (transcripts older than ``families``)."""
    found = []
    for param in tools:
        tool = orch.router.registry.get(str(param.get("name")))
        if tool is not None and tool.family not in found:
            found.append(tool.family)
    return found
