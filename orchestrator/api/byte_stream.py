"""A response whose body is a stream of bytes from a sandbox: a large file, a folder's tar.

The producer runs in a task of the response's own nursery and hands chunks
over a small channel, so the body is sent as it is made and memory holds a
few chunks at most; a slow client holds back the producer, and through its
flow control the sandbox.  The status line waits for the first chunk (or the
producer's end): a producer that fails before sending anything -- no such
file, a path outside the allowed roots -- still gets its typed 4xx from the
error handlers.  A failure after that can only cut the connection short,
which the client sees as a short body.  A client that disconnects cancels
the producer, and with it the transfer in the sandbox.

Must not: buffer more than its channel, or send a status line before it
knows whether the producer failed at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from starlette.responses import Response

from orchestrator._exceptions import unwrap_single_exception

__all__ = ["ByteStream", "Producer"]

Producer = Callable[[trio.MemorySendChannel[bytes]], Awaitable[None]]
"""Sends the body's chunks into the channel it is given, then returns."""


class ByteStream(Response):
    """An ASGI response streaming what ``producer`` sends (a ``Response`` only in type)."""

    def __init__(self, producer: Producer, media_type: str, *, length: int | None = None) -> None:
        super().__init__(media_type=media_type)
        self.producer = producer
        self.length = length

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        sender, receiver = trio.open_memory_channel[bytes](4)
        disconnected = False
        with unwrap_single_exception():
            async with trio.open_nursery() as nursery:

                async def produce() -> None:
                    async with sender:
                        await self.producer(sender)

                async def watch_disconnect() -> None:
                    nonlocal disconnected
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    disconnected = True
                    nursery.cancel_scope.cancel()

                nursery.start_soon(produce)
                async with receiver:
                    try:
                        first: bytes | None = await receiver.receive()
                    except trio.EndOfChannel:
                        first = None
                    nursery.start_soon(watch_disconnect)
                    headers = [(b"content-type", self.media_type.encode())]  # type: ignore[union-attr]
                    if self.length is not None:
                        headers.append((b"content-length", str(self.length).encode()))
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    if first is not None:
                        await send({"type": "http.response.body", "body": first, "more_body": True})
                        async for chunk in receiver:
                            await send(
                                {"type": "http.response.body", "body": chunk, "more_body": True}
                            )
                nursery.cancel_scope.cancel()
        if not disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _body(chunk: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": chunk, "more_body": True}
