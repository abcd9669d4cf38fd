"""A running command's output as it streams, then its result (``exec`` and shell commands).

Must not: start or cancel the command itself (``GuestClient.exec_stream``
does, inside a call scope that the session can cancel).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import trio
from pydantic import ValidationError

from orchestrator import protocol
from orchestrator.channel import CallStream
from orchestrator.errors import ProtocolError, SandboxGone
from orchestrator.results import ExecResult, OutputChunk

__all__ = [
    "STDIN_INLINE",
    "STREAM_NAMES",
    "ExecStream",
    "OutputCallback",
    "feed_input",
    "forward_output",
]

STDIN_INLINE = 1 << 20
"""stdin up to this size rides in the request's frame; larger is streamed in chunks."""
_INPUT_CHUNK = 256 << 10

OutputCallback = Callable[[OutputChunk], Awaitable[None] | None]
"""Sees each chunk of output as it arrives; may be sync or async."""

STREAM_NAMES: dict[int, Literal["stdout", "stderr"]] = {
    protocol.STDOUT: "stdout",
    protocol.STDERR: "stderr",
}


async def forward_output(chunk: OutputChunk, on_output: OutputCallback | None) -> None:
    """Hand ``chunk`` to ``on_output``, awaiting it if it is a coroutine function."""
    if on_output is not None:
        maybe = on_output(chunk)
        if maybe is not None:
            await maybe


class ExecStream:
    """A running command: iterate its output chunks, then await ``result()``.

    Output is also collected (up to the cap) so the result carries it; a
    consumer that stops reading makes the command wait rather than memory grow.
    """

    def __init__(self, call: CallStream, *, collect: bool = True) -> None:
        self._call = call
        self._collect = collect
        self.final: ExecResult | None = None
        self._stdout = bytearray()
        self._stderr = bytearray()

    def __aiter__(self) -> AsyncIterator[OutputChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[OutputChunk]:
        while True:
            item = await self._call.receive()
            if item is None:
                return
            stream, data = item
            if self._collect:
                (self._stdout if stream == protocol.STDOUT else self._stderr).extend(data)
            yield OutputChunk(stream=STREAM_NAMES.get(stream, "stdout"), data=data)

    async def forward(self, on_output: OutputCallback | None) -> None:
        """Hand every chunk to ``on_output`` as it arrives (nothing, if it is ``None``)."""
        if on_output is None:
            return
        async for chunk in self:
            await forward_output(chunk, on_output)

    async def result(self) -> ExecResult:
        """Drain any unread output and wait for the command to end.

        With ``collect=False`` the result's stdout and stderr are empty: the
        output went to whoever iterated over the stream.
        """
        async for _ in self:
            pass
        value, _ = await self._call.result()
        try:
            self.final = ExecResult.from_guest(value, bytes(self._stdout), bytes(self._stderr))
        except ValidationError as exc:
            raise ProtocolError(
                f"the guest's answer to {self._call.op} is malformed ({exc.errors()[0]['msg']}); "
                "close the session and rebuild the images with `sbx images build`"
            ) from None
        return self.final


async def feed_input(call: CallStream, data: bytes) -> None:
    """Send ``data`` as the call's input, chunk by chunk within the guest's window, then EOF.

    A command that ends (or closes its stdin) before taking all of it simply
    stops the feed: what it did not read is its business, reported by its result.
    """
    view = memoryview(data)
    try:
        for start in range(0, len(view), _INPUT_CHUNK):
            await call.send(bytes(view[start : start + _INPUT_CHUNK]))
        await call.send_eof()
    except (trio.BrokenResourceError, SandboxGone):
        pass
