"""Streaming responses: Server-Sent Events or NDJSON, bounded, and cancelled by disconnect.

A producer (an exec, a tool batch, an agent run) emits events into a bounded
channel; the response drains it to the client.  A slow client makes the
producer wait -- and through the channel's flow control, the process in the
sandbox -- so memory stays bounded; a client that takes nothing for
``stall_timeout`` loses output, which is dropped, counted, and announced with
a ``dropped`` event when it reads again.  The final event is never dropped.
When the client disconnects, the producer is cancelled, and with it the call
in the sandbox.

This is a plain ASGI app rather than a generator-driven response because a
trio nursery cannot live inside an async generator.  It must not hold more
than its bounded channel, nor drop the final event.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import structlog
import trio
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.observe import Observer

__all__ = ["Emit", "StreamFormat", "StreamingCall", "negotiate"]

log = structlog.get_logger("orchestrator.api")

StreamFormat = Literal["sse", "ndjson"]
MEDIA_TYPES: dict[StreamFormat, str] = {
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
}
_CHUNK_ESTIMATE = 64 * 1024


class Emit(Protocol):
    async def __call__(self, kind: str, data: dict[str, Any], *, final: bool = False) -> None: ...


Producer = Callable[[Emit], Awaitable[None]]


def negotiate(request: Request) -> StreamFormat | None:
    """The stream format the client asked for in ``Accept``, or ``None`` for plain JSON."""
    accept = request.headers.get("accept", "")
    if "text/event-stream" in accept:
        return "sse"
    if "application/x-ndjson" in accept or "application/jsonl" in accept:
        return "ndjson"
    return None


def encode(fmt: StreamFormat, kind: str, data: dict[str, Any]) -> bytes:
    body = json.dumps({"type": kind, **data}, ensure_ascii=False, separators=(",", ":"))
    if fmt == "sse":
        return f"event: {kind}\ndata: {body}\n\n".encode()
    return (body + "\n").encode()


class StreamingCall(Response):
    """An ASGI response that runs ``producer`` and streams what it emits.

    A ``Response`` subclass only so that routes can return it as is; it does
    its own sending.
    """

    def __init__(
        self,
        producer: Producer,
        fmt: StreamFormat,
        *,
        buffer_bytes: int,
        stall_timeout: float,
        observer: Observer,
        status: int = 200,
    ) -> None:
        super().__init__(status_code=status, media_type=MEDIA_TYPES[fmt])
        self.producer = producer
        self.fmt = fmt
        self.capacity = max(4, buffer_bytes // _CHUNK_ESTIMATE)
        self.stall_timeout = stall_timeout
        self.observer = observer
        self.status = status
        self.dropped = 0
        self.disconnected = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", MEDIA_TYPES[self.fmt].encode()),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        sender, receiver = trio.open_memory_channel[bytes](self.capacity)
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        self.disconnected = True
                        nursery.cancel_scope.cancel()
                        return

            async def produce() -> None:
                async with sender:
                    try:
                        await self.producer(self._emitter(sender))
                    except Exception as exc:
                        # The status line is gone already: report in the stream.
                        from orchestrator.api.errors import status_for

                        status, kind = status_for(exc)
                        if status >= 500 and kind == "internal_error":
                            log.exception("stream producer failed")
                        await sender.send(
                            encode(
                                self.fmt,
                                "error",
                                {
                                    "status": status,
                                    "error": kind,
                                    "message": str(exc),
                                    "remedy": getattr(exc, "remedy", None),
                                    "retryable": bool(getattr(exc, "retryable", False)),
                                    "retry_after": getattr(exc, "retry_after", None),
                                },
                            )
                        )

            nursery.start_soon(watch_disconnect)
            nursery.start_soon(produce)
            async with receiver:
                async for chunk in receiver:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            nursery.cancel_scope.cancel()
        if not self.disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _emitter(self, sender: trio.MemorySendChannel[bytes]) -> Emit:
        async def emit(kind: str, data: dict[str, Any], *, final: bool = False) -> None:
            chunk = encode(self.fmt, kind, data)
            if self.dropped:
                marker = encode(self.fmt, "dropped", {"bytes": self.dropped})
                if final:
                    await sender.send(marker)  # the client must learn what it lost
                    self.dropped = 0
                else:
                    try:
                        sender.send_nowait(marker)
                        self.dropped = 0
                    except trio.WouldBlock:
                        self._drop(len(chunk))
                        return
            if final:
                await sender.send(chunk)
                return
            with trio.move_on_after(self.stall_timeout):
                await sender.send(chunk)
                return
            self._drop(len(chunk))

        return emit

    def _drop(self, nbytes: int) -> None:
        self.dropped += nbytes
        self.observer.stream_dropped(nbytes)
