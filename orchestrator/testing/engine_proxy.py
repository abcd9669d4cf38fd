"""A TCP proxy in front of the Docker Engine's socket, for fault-injection tests.

``EngineProxy`` listens on ``127.0.0.1`` and forwards each connection to the
engine's unix socket, byte for byte.  A test points ``engine.docker_host``
at ``proxy.url`` and then breaks the path on purpose: ``refuse_for`` closes
the listener so new connections are refused (as from an engine that is
down), and ``cut`` closes every forwarded connection at once (an attach
stream or an event stream cut under a live session).  It runs in the test's
trio nursery; nothing here is used outside tests.
"""

from __future__ import annotations

import socket
from contextlib import suppress

import trio

__all__ = ["EngineProxy"]

_CHUNK = 65536


class EngineProxy:
    """``url`` forwards to ``engine_socket`` until the test breaks it."""

    def __init__(self, engine_socket: str = "/var/run/docker.sock") -> None:
        self.engine_socket = engine_socket
        self.port = 0
        self._pairs: set[trio.CancelScope] = set()
        self._listener: trio.SocketListener | None = None
        self._serving: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status`` gets ``url``."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._listen()
            task_status.started(self.url)
            await trio.sleep_forever()

    async def _listen(self) -> None:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._listener = trio.SocketListener(sock)
        assert self._nursery is not None
        self._nursery.start_soon(self._accept, self._listener)

    async def _accept(self, listener: trio.SocketListener) -> None:
        with trio.CancelScope() as scope:
            self._serving = scope
            async with trio.open_nursery() as pairs:
                while True:
                    try:
                        client = await listener.accept()
                    except (trio.ClosedResourceError, OSError):
                        return
                    pairs.start_soon(self._forward, client)

    async def _forward(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._pairs.add(scope)
            try:
                engine = await trio.open_unix_socket(self.engine_socket)
            except OSError:
                await client.aclose()
                return
            try:
                async with trio.open_nursery() as both:
                    both.start_soon(self._pump, client, engine, both.cancel_scope)
                    both.start_soon(self._pump, engine, client, both.cancel_scope)
            finally:
                self._pairs.discard(scope)
                with trio.CancelScope(shield=True):
                    await client.aclose()
                    await engine.aclose()

    @staticmethod
    async def _pump(src: trio.abc.Stream, dst: trio.abc.Stream, both: trio.CancelScope) -> None:
        try:
            while data := await src.receive_some(_CHUNK):
                await dst.send_all(data)
            with suppress(AttributeError):
                await dst.send_eof()  # type: ignore[attr-defined]
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            both.cancel()

    def cut(self) -> int:
        """Close every forwarded connection now; how many there were."""
        scopes = list(self._pairs)
        for scope in scopes:
            scope.cancel()
        return len(scopes)

    async def refuse_for(self, seconds: float) -> None:
        """Refuse new connections for ``seconds`` (the listener is closed, then reopened on
        the same port), cutting the live ones too: an engine that went away and came back."""
        if self._serving is not None:
            self._serving.cancel()
        if self._listener is not None:
            await self._listener.aclose()
        self.cut()
        await trio.sleep(seconds)
        await self._listen()
