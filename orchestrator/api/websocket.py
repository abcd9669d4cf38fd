"""Websocket connections for the HTTP server: the ASGI websocket messages over wsproto.

The API serves one websocket, the live view's bridge to a desktop's VNC
server.  An upgrade request arrives parsed by the HTTP server; from then on
the connection is wsproto's.  A message is handed to the app whole.

It must not know the routes, and must not read from the connection while
the app is not waiting for a message (flow control is the peer's TCP window).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

import h11
from starlette.types import ASGIApp, Message
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

__all__ = ["MAX_MESSAGE", "WebsocketWire", "serve_websocket"]

MAX_MESSAGE = 16 << 20
"""The largest message taken from a peer; a larger one closes the socket (1009)."""


class WebsocketWire(Protocol):
    """What a websocket needs of its HTTP connection."""

    h11: h11.Connection

    async def receive_raw(self) -> bytes:
        """The next bytes from the peer; ``b""`` once it is gone."""
        ...

    async def write(self, data: bytes) -> None: ...


async def serve_websocket(
    app: ASGIApp, wire: WebsocketWire, request: h11.Request, scope: dict[str, Any]
) -> None:
    """Run the app for one websocket upgrade request, until either side closes."""
    session = _Websocket(wire, request)
    handshake = session.handshake()
    if handshake is None:
        await wire.write(session.ws.send(RejectConnection(status_code=400)))
        return
    scope["subprotocols"] = handshake.subprotocols
    try:
        await app(scope, session.receive, session.send)
    finally:
        await session.finish()


class _Websocket:
    def __init__(self, wire: WebsocketWire, request: h11.Request) -> None:
        self.wire = wire
        self.ws = WSConnection(ConnectionType.SERVER)
        self.ws.initiate_upgrade_connection(list(request.headers), request.target)
        trailing, _ = wire.h11.trailing_data
        if trailing:
            self.ws.receive_data(bytes(trailing))
        self.events: deque[Event] = deque(self.ws.events())
        self.connected_sent = False
        self.accepted = False
        self.closed = False
        self.parts: list[bytes | bytearray | str] = []
        self.size = 0

    def handshake(self) -> Request | None:
        event = self.events.popleft() if self.events else None
        return event if isinstance(event, Request) else None

    async def receive(self) -> Message:
        if not self.connected_sent:
            self.connected_sent = True
            return {"type": "websocket.connect"}
        while True:
            while self.events:
                message = await self._handle(self.events.popleft())
                if message is not None:
                    return message
            if self.closed:
                return {"type": "websocket.disconnect", "code": 1006}
            data = await self.wire.receive_raw()
            if not data:
                self.closed = True
                return {"type": "websocket.disconnect", "code": 1006}
            try:
                self.ws.receive_data(data)
            except RemoteProtocolError:
                self.closed = True
                return {"type": "websocket.disconnect", "code": 1002}
            self.events.extend(self.ws.events())

    async def _handle(self, event: Event) -> Message | None:
        if isinstance(event, TextMessage | BytesMessage):
            self.parts.append(event.data)
            self.size += len(event.data)
            if self.size > MAX_MESSAGE:
                await self._write(CloseConnection(code=1009, reason="message too big"))
                self.closed = True
                return {"type": "websocket.disconnect", "code": 1009}
            if not event.message_finished:
                return None
            parts, self.parts, self.size = self.parts, [], 0
            if isinstance(event, TextMessage):
                return {"type": "websocket.receive", "text": "".join(str(p) for p in parts)}
            return {"type": "websocket.receive", "bytes": b"".join(bytes(p) for p in parts)}  # type: ignore[arg-type]
        if isinstance(event, Ping):
            await self.wire.write(self.ws.send(event.response()))
            return None
        if isinstance(event, CloseConnection):
            if self.ws.state is not ConnectionState.CLOSED:
                await self._write(event.response())
            self.closed = True
            return {"type": "websocket.disconnect", "code": event.code}
        return None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.closed:
            return
        if kind == "websocket.accept":
            self.accepted = True
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers") or ()]
            await self._write(
                AcceptConnection(subprotocol=message.get("subprotocol"), extra_headers=headers)
            )
        elif kind == "websocket.send":
            if message.get("bytes") is not None:
                await self._write(BytesMessage(data=bytes(message["bytes"])))
            else:
                await self._write(TextMessage(data=str(message.get("text") or "")))
        elif kind == "websocket.close":
            if self.accepted:
                reason = message.get("reason") or None
                code = int(message.get("code", 1000))
                await self._write(CloseConnection(code=code, reason=reason))
            else:
                await self._write(RejectConnection(status_code=403))
            self.closed = True
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    async def _write(self, event: Event) -> None:
        try:
            await self.wire.write(self.ws.send(event))
        except LocalProtocolError:
            self.closed = True

    async def finish(self) -> None:
        """The app returned: refuse the handshake it never took, or close the socket."""
        if self.closed:
            return
        self.closed = True
        if not self.accepted:
            await self._write(RejectConnection(status_code=403))
        elif self.ws.state is ConnectionState.OPEN:
            await self._write(CloseConnection(code=1000))
