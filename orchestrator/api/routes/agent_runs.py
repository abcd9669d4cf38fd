"""``/v1/agent-runs``: start Claude on a task, follow its events, fetch its transcript.

The runs themselves live in ``orchestrator.api.agent_runs``, and where a run
may send which key is ``orchestrator.api.agent_access``'s to say; this module
must not run the agent loop, only start, describe, cancel and stream runs.
"""

from __future__ import annotations

from typing import Annotated, Any

import trio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from orchestrator.api.agent_access import messages_target
from orchestrator.api.dependencies import ApiStateDep, Caller, OwnedRun
from orchestrator.api.errors import ApiError
from orchestrator.api.models import AgentRunCreate, AgentRunInfo
from orchestrator.api.stream_events import stream_responses
from orchestrator.api.streaming import Emit

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["agent"])


@router.post("/agent-runs", status_code=202, response_model=AgentRunInfo)
async def start_agent_run(body: AgentRunCreate, who: Caller, state: ApiStateDep) -> AgentRunInfo:
    """Start Claude on a task in a fresh sandbox; follow it at .../events.

    A ``base_url`` is an admin's, or one of ``agent.allowed_base_urls``; the run
    uses the owner's own key, or the server's where ``agent.share_server_key``
    allows (403 otherwise, before anything is sent anywhere)."""
    if body.tools:
        try:
            state.orch.router.registry.definitions(body.model or "claude-sonnet-4-6", body.tools)
        except KeyError as exc:
            raise ApiError(422, "invalid_request", str(exc).strip("'\""), "tools") from None
    target = messages_target(state.config.agent, who, body.base_url)
    return state.runs.start(who.owner, body, target).describe()


@router.get("/agent-runs", response_model=list[AgentRunInfo])
async def list_agent_runs(who: Caller, state: ApiStateDep) -> list[AgentRunInfo]:
    return [run.describe() for run in state.runs.runs.values() if who.may_use(run.owner)]


@router.get("/agent-runs/{run_id}", response_model=AgentRunInfo)
async def get_agent_run(run: OwnedRun) -> AgentRunInfo:
    return run.describe()


@router.delete("/agent-runs/{run_id}", status_code=204)
async def cancel_agent_run(run: OwnedRun, state: ApiStateDep) -> Response:
    run.scope.cancel()
    with trio.move_on_after(state.config.shutdown_timeout):
        await run.done.wait()
    return Response(status_code=204)


@router.get(
    "/agent-runs/{run_id}/events",
    responses=stream_responses("AgentRunStreamEvent"),
)
async def agent_run_events(
    run: OwnedRun,
    request: Request,
    state: ApiStateDep,
    after: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    """The run's events (text, tool calls, end) as SSE or NDJSON, live until it ends."""

    async def produce(emit: Emit) -> None:
        async for event in run.follow(after):
            kind = event.pop("type")
            await emit(kind, event, final=kind == "end")

    stream = state.stream(request, produce)
    if stream is None:
        raise ApiError(
            406,
            "not_acceptable",
            "events are a stream: send Accept: text/event-stream or application/x-ndjson",
        )
    return stream


@router.get(
    "/agent-runs/{run_id}/transcript",
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def agent_run_transcript(run: OwnedRun) -> Response:
    """The run's transcript.jsonl (every message, tool call, result and timing)."""
    if run.run_dir is None or not (run.run_dir / "transcript.jsonl").is_file():
        candidates = (
            sorted(run.run_root.glob("*/transcript.jsonl")) if (run.run_root.exists()) else []
        )
        if not candidates:
            raise ApiError(
                404,
                "transcript_not_found",
                f"agent run {run.id} has no transcript yet; retry shortly",
            )
        return FileResponse(candidates[-1], media_type="application/x-ndjson")
    return FileResponse(run.run_dir / "transcript.jsonl", media_type="application/x-ndjson")
