"""``POST /v1/sessions/{id}/tools``: run Claude's ``tool_use`` blocks in a session.

It must not interpret a tool's input: the router and the tools do.
"""

from __future__ import annotations

from typing import Any

import trio
from fastapi import APIRouter, Request

from orchestrator.api.dependencies import ApiStateDep, OwnedSession
from orchestrator.api.models import ToolsRequest, ToolsResponse
from orchestrator.api.stream_events import stream_responses
from orchestrator.api.streaming import Emit
from orchestrator.router import ToolCallEvent, normalize_tool_uses

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["tools"])


@router.post(
    "/sessions/{session_id}/tools",
    response_model=ToolsResponse,
    responses=stream_responses("ToolsStreamEvent"),
)
async def run_tools(
    session: OwnedSession, body: ToolsRequest, request: Request, state: ApiStateDep
) -> Any:
    """Run Claude's ``tool_use`` blocks; ``tool_result`` blocks in the same order.

    With a streaming ``Accept``, call start/finish events come while calls run."""
    normalize_tool_uses(body.tool_uses)  # a malformed batch is a 400 before anything runs

    async def produce(emit: Emit) -> None:
        sender, receiver = trio.open_memory_channel[ToolCallEvent](2 * len(body.tool_uses) + 2)
        results: list[dict[str, Any]] = []

        async def run() -> None:
            async with sender:
                results.extend(
                    await state.orch.router.run(
                        session,
                        body.tool_uses,
                        tool_types=body.tool_types,
                        on_event=sender.send_nowait,
                    )
                )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            async with receiver:
                async for event in receiver:
                    data = {
                        "tool_use_id": event.tool_use_id,
                        "name": event.name,
                        "index": event.index,
                    }
                    if event.kind == "finished":
                        data.update(seconds=round(event.seconds, 4), is_error=event.is_error)
                    await emit(f"call_{event.kind}", data)
        await emit("tool_results", {"tool_results": results}, final=True)

    stream = state.stream(request, produce)
    if stream is not None:
        return stream
    results = await state.orch.router.run(session, body.tool_uses, tool_types=body.tool_types)
    return ToolsResponse(tool_results=results)
