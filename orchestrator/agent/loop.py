"""The Claude agent loop: stream a turn, run its tool calls in the sandbox, repeat.

It talks to the Messages API with ``anthropic.AsyncAnthropic`` (which runs
under trio through anyio), advertises the tools with the type strings and
beta flags the model expects, streams the model's text to a callback as it
arrives, runs each turn's ``tool_use`` blocks through the router -- so
parallel tool calls really run in parallel -- and stops at ``end_turn``, the
turn limit or the token budget.  Everything goes to a run directory as it
happens; an API error keeps the directory and says where it is.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anthropic
import structlog

from orchestrator.agent.transcript import RunDirectory
from orchestrator.errors import SbxError
from orchestrator.router import ToolCallEvent, ToolRouter
from orchestrator.tools.versions import DEFAULT_MODEL

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["AgentError", "AgentHost", "AgentResult", "run_agent"]

log = structlog.get_logger("orchestrator.agent")

DEFAULT_SYSTEM = (
    "You are operating in a sandboxed Linux machine (Debian) as an unprivileged user, with "
    "/workspace as the working directory. Use the tools to complete the task, then say what "
    "you did."
)

TextSink = Callable[[str], None]
ToolSink = Callable[[ToolCallEvent], None]


class AgentHost(Protocol):
    """What a run needs of the runtime: sessions to work in, and a router for their tools.

    ``Orchestrator`` is one; the loop never imports it.
    """

    router: ToolRouter

    def session(
        self, image: str | None = None, **options: Any
    ) -> AbstractAsyncContextManager[Session]: ...


class AgentError(SbxError):
    """The agent run could not go on (API error, missing key); the run directory is kept."""

    def __init__(self, message: str, run_dir: Path | None = None) -> None:
        super().__init__(message)
        self.run_dir = run_dir


@dataclass(frozen=True)
class AgentResult:
    run_dir: Path
    stop_reason: str
    """``end_turn``, ``max_turns``, ``token_budget``, or the API's own stop reason."""
    turns: int
    input_tokens: int
    output_tokens: int
    final_text: str
    session_id: str


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


def resolve_api_key(api_key: str | None) -> str:
    key = api_key or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        raise AgentError(
            "ANTHROPIC_API_KEY is not set: export it (or pass --api-key) to talk to Claude. "
            "To dry-run without the cloud API, start `sbx fake-api --script FILE` and pass its "
            "URL with --base-url (any key works there)"
        )
    return key


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
    session: Session | None = None,
) -> AgentResult:
    """Run ``task`` with Claude in a fresh sandbox; see the module docstring.

    With ``session`` the run works in that live session instead (a workflow's
    or an evaluation task's) and leaves it open; ``image`` is then unused.
    """
    if client is None:
        client = anthropic.AsyncAnthropic(
            api_key=resolve_api_key(api_key),
            base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
        )
    tool_params, betas = orch.router.registry.definitions(model, list(tools))
    tool_types = {param["name"]: param["type"] for param in tool_params}
    if image is None and "computer" in tools:
        image = "desktop"  # the computer tool needs a screen
    run = RunDirectory.create(Path(run_root))
    run.record(
        "start",
        task=task,
        model=model,
        tools=tool_params,
        betas=betas,
        image=image,
        max_turns=max_turns,
        token_budget=token_budget,
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
    used_in = used_out = 0
    final_text = ""
    stop_reason = "max_turns"
    turns = 0
    session_id = ""
    try:
        async with _session_for(orch, image, session) as live:
            session_id = live.id
            run.record("session", session_id=live.id, image=live.image)
            if "computer" in tools:
                # The computer tool advertises the session's real (scaled) screen size.
                tool_params, betas = orch.router.registry.definitions(
                    model, list(tools), computer=live.desktop.tool_options()
                )
                tool_types = {param["name"]: param["type"] for param in tool_params}
                run.record("tools", tools=tool_params, betas=betas)
            log.info("agent run started", session_id=live.id, run_dir=str(run.path))
            for turn in range(1, max_turns + 1):
                if token_budget is not None and used_in + used_out >= token_budget:
                    stop_reason = "token_budget"
                    break
                turns = turn
                started = time.perf_counter()
                message = await _one_turn(
                    client,
                    run,
                    model=model,
                    max_tokens=max_tokens,
                    system=system or DEFAULT_SYSTEM,
                    messages=messages,
                    tools=tool_params,
                    betas=betas,
                    on_text=on_text,
                )
                content = [_as_param(block) for block in message.content]
                used_in += message.usage.input_tokens
                used_out += message.usage.output_tokens
                run.record(
                    "assistant",
                    turn=turn,
                    content=content,
                    stop_reason=message.stop_reason,
                    usage={
                        "input_tokens": message.usage.input_tokens,
                        "output_tokens": message.usage.output_tokens,
                    },
                    seconds=round(time.perf_counter() - started, 3),
                    request_id=getattr(message, "_request_id", None),
                )
                messages.append({"role": "assistant", "content": content})
                texts = [b["text"] for b in content if b.get("type") == "text"]
                if texts:
                    final_text = texts[-1]
                uses = [b for b in content if b.get("type") == "tool_use"]
                if message.stop_reason != "tool_use" or not uses:
                    stop_reason = message.stop_reason or "end_turn"
                    break

                results = await orch.router.run(
                    live,
                    uses,
                    tool_types=tool_types,
                    on_event=_tool_recorder(run, turn, uses, on_tool),
                )
                run.record(
                    "tool_results",
                    turn=turn,
                    content=run.externalize_images(results, f"turn{turn:03d}"),
                )
                messages.append({"role": "user", "content": results})
            else:
                stop_reason = "max_turns"
    except AgentError as exc:
        exc.run_dir = run.path
        run.record("error", message=str(exc))
        raise
    finally:
        run.record(
            "end",
            stop_reason=stop_reason,
            turns=turns,
            usage={"input_tokens": used_in, "output_tokens": used_out},
        )
        run.close()
    return AgentResult(
        run.path, stop_reason, turns, used_in, used_out, final_text, session_id=session_id
    )


@asynccontextmanager
async def _session_for(
    orch: AgentHost, image: str | None, given: Session | None
) -> AsyncIterator[Session]:
    """The caller's live session, left open, or a fresh one for the run."""
    if given is not None:
        yield given
        return
    async with orch.session(image=image) as fresh:
        yield fresh


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


async def _one_turn(
    client: anthropic.AsyncAnthropic,
    run: RunDirectory,
    *,
    model: str,
    max_tokens: int,
    system: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    betas: list[str],
    on_text: TextSink | None,
) -> Any:
    run.record("request", model=model, messages=len(messages), betas=betas)
    try:
        async with client.beta.messages.stream(
            model=model,
            max_tokens=max_tokens,
            system=system,
            messages=messages,  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
            betas=betas,
        ) as stream:
            async for event in stream:
                if event.type == "text" and on_text is not None:
                    on_text(event.text)
            message = await stream.get_final_message()
    except anthropic.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        kind = (body.get("error") or {}).get("type", "error") if body else "error"
        raise AgentError(
            f"the Claude API answered {exc.status_code} ({kind}): {exc.message} "
            f"[request id {exc.request_id or 'unknown'}]; the transcript so far is in {run.path}",
            run.path,
        ) from None
    except anthropic.APIConnectionError as exc:
        raise AgentError(
            f"cannot reach the Claude API at {client.base_url} ({exc}); check the network, "
            f"ANTHROPIC_BASE_URL or --base-url; the transcript so far is in {run.path}",
            run.path,
        ) from None
    if on_text is not None:
        on_text("\n")
    return message


def describe_input(tool_input: Any, limit: int = 120) -> str:
    """A one-line rendering of a tool call's input, for progress output."""
    text = json.dumps(tool_input, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
