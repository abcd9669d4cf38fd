"""A sandbox's stream that, when it breaks, asks whether the node behind it is still there.

When a node dies, the stream to its engine is the first to know (the
swarm's manager takes several seconds more to call the node down).  So at
the end of the stream, a ``/_ping`` of the node's engine tells a guest that
exited from a node that is gone, and the backend reports the latter as the
cause, in time for the session to take it.

Must not: delay a normal end (a connect bounded by ``PROBE_TIMEOUT``) or raise
anything of its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import trio

from orchestrator.backends.docker.attach import connect_engine
from orchestrator.errors import SbxError

__all__ = ["PROBE_TIMEOUT", "NodeBoundStream", "node_reachable"]

PROBE_TIMEOUT = 1.0


async def node_reachable(address: str, port: int, ssl_context: ssl.SSLContext | None) -> bool:
    """Whether the engine answers ``GET /_ping``: a connect alone can still succeed while
    a killed engine's sockets are being closed."""
    with trio.move_on_after(PROBE_TIMEOUT):
        try:
            stream, host = await connect_engine(f"tcp://{address}:{port}", ssl_context)
        except (SbxError, trio.BrokenResourceError, OSError):
            # A dying engine may still accept (its listener closes after the stream we
            # lost), then reset the connection in the TLS handshake: that is gone too.
            return False
        try:
            await stream.send_all(f"GET /_ping HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            answer = await stream.receive_some(64)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
        return answer.startswith(b"HTTP/1.1 200")
    return False


class NodeBoundStream(trio.abc.Stream):
    """Passes everything to ``inner``; calls ``on_node_lost`` once if the stream ends
    or breaks while the node's engine no longer answers."""

    def __init__(
        self,
        inner: trio.abc.Stream,
        address: str,
        port: int,
        on_node_lost: Callable[[], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._inner = inner
        self._ssl_context = ssl_context
        self._address = address
        self._port = port
        self._on_node_lost = on_node_lost
        self._checked = False
        self._answered = trio.Event()

    async def _ended(self) -> None:
        """Probe once (shielded: the channel cancels its reader as it closes, and a probe
        cut short would say nothing); a second end waits for the first's answer."""
        with trio.CancelScope(shield=True):
            if self._checked:
                with trio.move_on_after(PROBE_TIMEOUT * 2):
                    await self._answered.wait()
                return
            self._checked = True
            try:
                if not await node_reachable(self._address, self._port, self._ssl_context):
                    self._on_node_lost()
            finally:
                self._answered.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self._inner.receive_some(max_bytes)
        except (trio.BrokenResourceError, OSError):
            await self._ended()
            raise
        if not data:
            await self._ended()
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._inner.send_all(data)
        except (trio.BrokenResourceError, OSError):
            await self._ended()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self._inner, "send_eof", None)
        if send_eof is not None:
            await send_eof()

    async def aclose(self) -> None:
        if not self._checked:  # closed by us: nothing to ask
            self._checked = True
            self._answered.set()
        await self._inner.aclose()
