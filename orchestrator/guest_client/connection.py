"""TCP connections to ports inside a sandbox, carried by its channel (``net.connect``).

A ``SandboxConnection`` is a trio stream whose other end is a socket the
guest opened to a loopback port of the sandbox -- the live view's VNC
server, or any server a user runs there.  It needs no network in the
sandbox and no published port: bytes travel as frames of one call on the
session's channel, flow-controlled both ways, so a slow reader holds back
only its own connection.

Must not: open anything itself (``Session.connect`` does, inside the
session's call scope, so closing the session ends every connection).
"""

from __future__ import annotations

import trio

from orchestrator import protocol
from orchestrator.channel import CallStream

__all__ = ["SandboxConnection"]


class SandboxConnection(trio.abc.HalfCloseableStream):
    """A byte stream to ``host:port`` inside the sandbox."""

    def __init__(self, call: CallStream, host: str, port: int) -> None:
        self._call = call
        self.host = host
        self.port = port
        self._pending = b""
        self._eof = False
        self._sent_eof = False

    async def _wait_connected(self) -> None:
        """Wait for the guest's word that the connection is up, or raise its error."""
        item = await self._call.receive()
        if item is None:
            await self._call.result()  # raises the guest's error (refused, timed out...)
            raise trio.BrokenResourceError(
                f"the connection to {self.host}:{self.port} in the sandbox closed at once"
            )
        stream, data = item
        if stream != protocol.STREAM_CONTROL:
            self._pending = data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sent_eof:
            raise trio.ClosedResourceError("send_eof() was called on this connection")
        await self._call.send(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if not self._sent_eof:
            self._sent_eof = True
            await self._call.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._pending:
            if self._eof:
                return b""
            item = await self._call.receive()
            if item is None:
                self._eof = True
                await self._call.result()  # a failure surfaces; a clean end is EOF
                return b""
            self._pending = item[1]
        if max_bytes is None or max_bytes >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def aclose(self) -> None:
        """Nothing to do here: leaving ``Session.connect`` ends the call and the socket."""
        self._eof = True
        await trio.lowlevel.checkpoint()
