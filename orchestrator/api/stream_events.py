"""The events of the API's streams, as models: what the OpenAPI schema declares for them.

Each event is one JSON object whose ``type`` names it; in SSE the same name is
the ``event:`` line.  Every stream may carry ``dropped`` (output lost to a
stalled reader) and ``error`` (the call failed after the status line was
sent).  The producers in ``routes`` emit dicts of these shapes; these models
document them and let clients generate types, they are not on the hot path.

Must not: import a route.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.api.models import ExecResponse

__all__ = ["STREAM_EVENT_SCHEMAS", "stream_responses"]


class DroppedEvent(BaseModel):
    """Output was dropped while the reader stalled (``api.stall_timeout``)."""

    type: Literal["dropped"]
    bytes: int


class StreamErrorEvent(BaseModel):
    """The call failed after the stream began; the fields of the JSON error body."""

    type: Literal["error"]
    status: int
    error: str
    message: str
    remedy: str | None = None
    retryable: bool = False
    retry_after: float | None = None


class ExecOutputEvent(BaseModel):
    """A chunk of the command's output: ``data`` when UTF-8, else ``data_b64``."""

    type: Literal["stdout", "stderr"]
    data: str | None = None
    data_b64: str | None = None


class ExecResultEvent(ExecResponse):
    """The last event: the result, without the output already streamed."""

    type: Literal["result"]


class ToolCallStartedEvent(BaseModel):
    type: Literal["call_started"]
    tool_use_id: str
    name: str
    index: int


class ToolCallFinishedEvent(BaseModel):
    type: Literal["call_finished"]
    tool_use_id: str
    name: str
    index: int
    seconds: float
    is_error: bool


class ToolResultsEvent(BaseModel):
    """The last event: every ``tool_result`` block, in the order of the calls."""

    type: Literal["tool_results"]
    tool_results: list[dict[str, Any]]


class StepEvent(BaseModel):
    """A workflow step started, was retried or finished (``index``: the foreach item)."""

    type: Literal["step_started", "step_retry", "step_finished"]
    step: str
    index: int | None = None
    attempt: int | None = None
    status: str | None = None
    seconds: float | None = None
    exit_code: int | None = None
    error: str | None = None
    reason: str | None = None
    detail: str | None = None


class WorkflowFinishedEvent(BaseModel):
    """The last event: the workflow's result (as ``POST /v1/workflows`` returns it)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["workflow_finished"]


class AgentRunEvent(BaseModel):
    """One event of an agent run's transcript (``text``, ``tool_use``, ``tool_result``,
    ``usage``, ``keepalive``, ...); ``end`` is the last.  ``seq`` resumes with ``?after=``."""

    model_config = ConfigDict(extra="allow")
    type: str
    seq: int


STREAM_EVENT_SCHEMAS: dict[str, tuple[type[BaseModel], ...]] = {
    "ExecStreamEvent": (ExecOutputEvent, ExecResultEvent, DroppedEvent, StreamErrorEvent),
    "ToolsStreamEvent": (
        ToolCallStartedEvent,
        ToolCallFinishedEvent,
        ToolResultsEvent,
        DroppedEvent,
        StreamErrorEvent,
    ),
    "WorkflowStreamEvent": (StepEvent, WorkflowFinishedEvent, DroppedEvent, StreamErrorEvent),
    "AgentRunStreamEvent": (AgentRunEvent, DroppedEvent, StreamErrorEvent),
}
"""Each stream's events by the name of its schema in ``components.schemas``."""


def stream_responses(events: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that answers with the stream ``events``."""
    ref = {"$ref": f"#/components/schemas/{events}"}
    return {
        200: {
            "description": "JSON, or with `Accept: text/event-stream` (SSE: `event: <type>` "
            "then `data: <event>`) or `application/x-ndjson` (one event a line) a stream "
            f"of {events}",
            "content": {
                "text/event-stream": {"schema": ref},
                "application/x-ndjson": {"schema": ref},
            },
        }
    }
