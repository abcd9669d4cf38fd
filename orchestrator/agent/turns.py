"""The turns of a run: request, stream, record, run the tools, until a stop.

``drive`` takes a run (fresh or resumed, ``RunState``) and a session: each
turn's request comes from the context manager (fitted to the budget), is
streamed, counted (``usage``) and recorded whole in the transcript; its tool
calls run through the router, their results go back in one user message.  It
stops at a final answer, the turn limit, the token budget or the context
budget (``ContextFull``), and records the end with the run's usage and cost.

Must not: parse arguments or build clients (``loop`` does).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anthropic
import structlog
import trio

from orchestrator.agent.calls import AgentError, MessagesCaller, TextSink
from orchestrator.agent.context import ContextFull, ContextManager, context_edits
from orchestrator.agent.history import Conversation
from orchestrator.agent.request import RequestPlan
from orchestrator.agent.transcript import RunDirectory
from orchestrator.agent.usage import Ledger, Usage, cost_of
from orchestrator.config import AgentConfig, Config
from orchestrator.errors import SbxError
from orchestrator.router import ToolCallEvent, ToolRouter
from orchestrator.tools.versions import CONTEXT_MANAGEMENT_BETA, supports_context_editing

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["AgentHost", "AgentResult", "RunState", "ToolSink", "describe_input", "drive"]

log = structlog.get_logger("orchestrator.agent")

ToolSink = Callable[[ToolCallEvent], None]


class AgentHost(Protocol):
    """What a run needs of the runtime: its configuration, sessions to work in, and a
    router for their tools.  ``Orchestrator`` is one; the loop never imports it."""

    config: Config
    router: ToolRouter

    def session(
        self, image: str | None = None, **options: Any
    ) -> AbstractAsyncContextManager[Session]: ...


@dataclass(frozen=True)
class AgentResult:
    run_dir: Path
    stop_reason: str
    """``end_turn``, ``max_turns``, ``token_budget``, ``context_budget``, or the API's own
    (the transcript's ``end`` event may also say ``error`` or ``stopped``: cancelled)."""
    turns: int
    """The run's last turn (a resumed run counts on from where it stopped)."""
    input_tokens: int
    """Input tokens neither read from nor written to the cache."""
    output_tokens: int
    final_text: str
    session_id: str
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    """The estimate from ``agent.prices``; ``None`` for a model without a price."""
    compactions: int = 0


_KEEP = {
    "text": ("type", "text", "citations"),
    "tool_use": ("type", "id", "name", "input"),
    "thinking": ("type", "thinking", "signature"),
    "redacted_thinking": ("type", "data"),
}


def _as_param(block: Any) -> dict[str, Any]:
    """An SDK content block as the request parameter the API accepts back."""
    data: dict[str, Any] = block.model_dump(mode="json", exclude_none=True)
    keep = _KEEP.get(data.get("type", ""))
    return {k: v for k, v in data.items() if k in keep} if keep else data


@dataclass
class RunState:
    """What a run is, fresh or resumed: the loop drives one of these."""

    run: RunDirectory
    conversation: Conversation
    model: str
    families: list[str]
    image: str | None
    system: str
    max_tokens: int
    thinking_budget: int | None
    settings: AgentConfig
    next_turn: int = 1
    ledger: Ledger = field(default_factory=Ledger)
    note: str | None = None
    """Text added for the model before the next turn (a resumed run's)."""


def _plan(orch: AgentHost, state: RunState, session: Session) -> tuple[RequestPlan, dict[str, str]]:
    options: dict[str, Any] = {}
    if "computer" in state.families:
        # The computer tool advertises the session's real (scaled) screen size.
        options["computer"] = session.desktop.tool_options()
    tool_params, betas = orch.router.registry.definitions(state.model, state.families, **options)
    edits = None
    if state.settings.context_editing and supports_context_editing(state.model):
        edits = context_edits(state.settings)
        if CONTEXT_MANAGEMENT_BETA not in betas:
            betas = [*betas, CONTEXT_MANAGEMENT_BETA]
    state.run.record("tools", tools=tool_params, betas=betas, context_editing=edits is not None)
    plan = RequestPlan(
        model=state.model,
        max_tokens=state.max_tokens,
        system=state.system,
        tools=tool_params,
        betas=betas,
        settings=state.settings,
        thinking_budget=state.thinking_budget,
        context_edits=edits,
    )
    return plan, {param["name"]: param.get("type", "custom") for param in tool_params}


@asynccontextmanager
async def _session_for(
    orch: AgentHost, image: str | None, given: Session | None, keep_in: RunDirectory | None
) -> AsyncIterator[Session]:
    """The caller's live session, left open, or a fresh one for the run (whose files are
    kept as a snapshot when the run stops, however it stops, given ``keep_in``)."""
    if given is not None:
        yield given
        return
    async with orch.session(image=image) as fresh:
        try:
            yield fresh
        finally:
            if keep_in is not None:
                await _keep_snapshot(fresh, keep_in)


async def _keep_snapshot(session: Session, run: RunDirectory) -> None:
    """Snapshot ``session`` for ``--resume``; shielded, so that a run stopped by Ctrl-C or a
    cancel keeps its files too, and bounded by the snapshot's own deadline."""
    if session.state != "ready":
        run.record("snapshot_failed", reason=f"the session is {session.state}")
        return
    with trio.CancelScope(shield=True):
        try:
            snapshot = await session.snapshot()
        except SbxError as exc:
            run.record("snapshot_failed", reason=str(exc))
            log.warning("no snapshot of the stopped run", session_id=session.id, error=str(exc))
            return
    run.record("snapshot", image=snapshot.image, image_id=snapshot.image_id)


async def drive(
    orch: AgentHost,
    state: RunState,
    client: anthropic.AsyncAnthropic,
    max_turns: int,
    token_budget: int | None,
    on_text: TextSink | None,
    on_tool: ToolSink | None,
    given: Session | None = None,
) -> AgentResult:
    """Drive the run to a stop, in the ``given`` session (left open) or a fresh one of
    its image."""
    run, conversation, ledger = state.run, state.conversation, state.ledger
    hub = getattr(orch, "resilience", None)
    breaker = hub.breaker("messages_api", "the Claude API") if hub is not None else None
    if breaker is not None:
        breaker.check()  # an API known to be down: fail before starting a sandbox
    caller = MessagesCaller(client, run.path, breaker)
    final_text = ""
    stop_reason = "stopped"  # until the loop says otherwise: cancelled, interrupted, crashed
    done = conversation.last_turn
    session_id = ""
    try:
        keep_in = run if state.settings.snapshot_on_stop else None
        async with _session_for(orch, state.image, given, keep_in) as session:
            session_id = session.id
            run.record("session", session_id=session.id, image=session.image)
            plan, tool_types = _plan(orch, state, session)
            context = ContextManager(plan, caller, run, ledger)
            log.info("agent run started", session_id=session.id, run_dir=str(run.path))
            pending = conversation.pending_tool_uses()
            if pending:  # a resumed run's last calls, never run: they go first
                await _run_tools(orch, session, state, context, pending, tool_types, on_tool)
            if state.note:
                conversation.add_user_text(state.next_turn, state.note)
                run.record("user", turn=state.next_turn, text=state.note)
            if pending:
                state.next_turn += 1
            for turn in range(state.next_turn, state.next_turn + max_turns):
                if token_budget is not None and ledger.total.total_tokens >= token_budget:
                    stop_reason = "token_budget"
                    break
                try:
                    built = await context.next_request(conversation, turn)
                except ContextFull as exc:
                    run.record("context_full", turn=turn, reason=str(exc))
                    stop_reason = "context_budget"
                    break
                run.record(
                    "request",
                    turn=turn,
                    model=state.model,
                    messages=len(built.params["messages"]),
                    images=built.images,
                    images_replaced=built.replaced,
                    bytes=len(json.dumps(built.params)),
                    betas=plan.betas,
                )
                started = time.perf_counter()
                message = await caller.turn(built.params, on_text)
                usage = Usage.of(message.usage)
                ledger.add(usage)
                context.answered(usage)
                content = [_as_param(block) for block in message.content]
                edits = getattr(message, "context_management", None)
                run.record(
                    "assistant",
                    turn=turn,
                    content=content,
                    stop_reason=message.stop_reason,
                    usage=usage.record(),
                    seconds=round(time.perf_counter() - started, 3),
                    request_id=getattr(message, "_request_id", None),
                    **({"context_management": edits.model_dump()} if edits else {}),
                )
                conversation.add_assistant(turn, content)
                context.added(content)
                done = turn
                texts = [b["text"] for b in content if b.get("type") == "text"]
                if texts:
                    final_text = texts[-1]
                uses = [b for b in content if b.get("type") == "tool_use"]
                if message.stop_reason != "tool_use" or not uses:
                    stop_reason = message.stop_reason or "end_turn"
                    break
                await _run_tools(orch, session, state, context, uses, tool_types, on_tool)
            else:
                stop_reason = "max_turns"
    except AgentError as exc:
        exc.run_dir = run.path
        stop_reason = "error"
        run.record("error", message=str(exc))
        raise
    finally:
        cost = cost_of(ledger.total, state.settings.price_of(state.model))
        run.record(
            "end",
            stop_reason=stop_reason,
            turns=done,
            usage=ledger.total.record(),
            cost_usd=cost,
            compactions=conversation.compactions,
        )
        run.close()
    total = ledger.total
    return AgentResult(
        run.path,
        stop_reason,
        done,
        total.input_tokens,
        total.output_tokens,
        final_text,
        session_id=session_id,
        cache_read_tokens=total.cache_read_tokens,
        cache_write_tokens=total.cache_write_tokens,
        cost_usd=cost,
        compactions=conversation.compactions,
    )


async def _run_tools(
    orch: AgentHost,
    session: Session,
    state: RunState,
    context: ContextManager,
    uses: list[dict[str, Any]],
    tool_types: dict[str, str],
    on_tool: ToolSink | None,
) -> None:
    """Run one turn's tool calls; their results answer the turn's assistant message."""
    turn = state.conversation.last_turn
    results = await orch.router.run(
        session,
        uses,
        tool_types=tool_types,
        on_event=_tool_recorder(state.run, turn, uses, on_tool),
    )
    state.run.record(
        "tool_results",
        turn=turn,
        content=state.run.externalize_images(results, f"turn{turn:03d}"),
    )
    state.conversation.add_results(turn, results)
    context.added(results)


def _tool_recorder(
    run: RunDirectory, turn: int, uses: list[dict[str, Any]], on_tool: ToolSink | None
) -> ToolSink:
    inputs = {use["id"]: use.get("input") for use in uses}

    def record(event: ToolCallEvent) -> None:
        if event.kind == "finished":
            run.record(
                "tool_call",
                turn=turn,
                tool_use_id=event.tool_use_id,
                name=event.name,
                input=inputs.get(event.tool_use_id),
                seconds=round(event.seconds, 4),
                is_error=event.is_error,
            )
        if on_tool is not None:
            on_tool(event)

    return record


def describe_input(tool_input: Any, limit: int = 120) -> str:
    """A one-line rendering of a tool call's input, for progress output."""
    text = json.dumps(tool_input, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
