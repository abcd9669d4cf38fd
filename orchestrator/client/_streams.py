"""Streamed answers of the API read as typed events: an exec's output, an agent run's events.

A stream is an async context manager around one open HTTP response: the
response is closed when the block ends, however it ends, and closing it is
what cancels the call on the server.  Iterating is plain ``async for``; no
task is started, so the same code runs under asyncio and trio.  This module
must not build requests (``_operations`` does) nor choose a transport.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from orchestrator.api.client import ApiClientError, api_error
from orchestrator.api.models import ExecResponse
from orchestrator.exec_events import event_bytes
from orchestrator.results import ExecResult, OutputChunk

__all__ = ["EventStream", "ExecOutputStream", "StreamEvent", "stream_error"]


@dataclass(frozen=True)
class StreamEvent:
    """One event of a stream: its ``type`` (``text``, ``tool_use``, ``end``, ...) and fields."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


def stream_error(event: dict[str, Any]) -> ApiClientError:
    """The exception an ``error`` event stands for: the library's class for its kind."""
    body = {
        "error": {
            "type": event.get("error", "error"),
            "message": event.get("message") or "the call failed",
            "remedy": event.get("remedy"),
            "retryable": event.get("retryable", False),
            "retry_after": event.get("retry_after"),
        }
    }
    return api_error(int(event.get("status", 500)), json.dumps(body).encode())


async def _events(response: httpx.Response, url: str) -> AsyncGenerator[StreamEvent, None]:
    try:
        async for line in response.aiter_lines():
            if line.strip():
                data = json.loads(line)
                kind = str(data.pop("type", ""))
                if kind == "error":
                    raise stream_error(data)
                yield StreamEvent(kind, data)
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise ApiClientError(0, "unreachable", f"lost the sbx API at {url} ({exc})") from None


class EventStream:
    """The events of one streamed response, as ``StreamEvent`` (an ``error`` event raises).

    Use as ``async with client.agent_run_events(run_id) as events: async for event in
    events``; leaving the block closes the response."""

    def __init__(self, response: httpx.Response, url: str) -> None:
        self.response = response
        self._iterator = _events(response, url)

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterator

    async def aclose(self) -> None:
        await self._iterator.aclose()
        await self.response.aclose()


class ExecOutputStream:
    """A running command's output as ``OutputChunk``; then ``await result()``.

    The same shape as the local ``Session.exec_stream``: iterate for output as
    it comes, then ``result()`` (which drains what was not read).  Output the
    server dropped for a slow reader is counted in ``dropped_bytes``."""

    def __init__(self, events: EventStream) -> None:
        self.events = events
        self.dropped_bytes = 0
        self._result: ExecResult | None = None
        self._chunks = self._read()

    def __aiter__(self) -> AsyncIterator[OutputChunk]:
        return self._chunks

    async def _read(self) -> AsyncGenerator[OutputChunk, None]:
        async for event in self.events:
            if event.type in ("stdout", "stderr"):
                stream: Literal["stdout", "stderr"] = (
                    "stdout" if event.type == "stdout" else "stderr"
                )
                yield OutputChunk(stream=stream, data=event_bytes(event.data))
            elif event.type == "dropped":
                self.dropped_bytes += int(event.data.get("bytes", 0))
            elif event.type == "result":
                self._result = ExecResponse.model_validate(event.data).to_result()
                return
        raise ApiClientError(502, "incomplete", "the server ended the stream without a result")

    async def result(self) -> ExecResult:
        """The command's result; output not yet read is read and discarded."""
        if self._result is None:
            async for _ in self._chunks:
                pass
        if self._result is None:  # pragma: no cover - _read raises instead
            raise ApiClientError(502, "incomplete", "the stream ended without a result")
        return self._result

    async def aclose(self) -> None:
        await self._chunks.aclose()
        await self.events.aclose()
