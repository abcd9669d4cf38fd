"""One HTTP exchange on a connection of ``http_server``: a request's ASGI scope, body and response.

``Exchange`` turns h11's events into the ASGI ``http`` messages an app
receives and its messages back into h11's; the connection it runs on is an
``ExchangeWire`` (``http_server``'s connection is one).  A response whose
body is complete goes out in one write with its head.

A request body that sends nothing for ``body_timeout`` seconds ends the
exchange: the app is cancelled where it waits for the body, and the peer
gets a 408 and a closed connection.  What the server answers by itself
(``error_response``) has the API's error shape, ``{"error": {"type",
"message"}}``.

It must not know the routes, nor read from the connection beyond the
request it serves (a pipelined request waits in the parser).
"""

from __future__ import annotations

import json
import math
import time
from email.utils import formatdate
from typing import Any, Protocol
from urllib.parse import unquote

import h11
import structlog
import trio
from starlette.types import ASGIApp, Message

__all__ = ["Exchange", "ExchangeWire", "HttpDate", "error_response", "request_scope"]

log = structlog.get_logger("orchestrator.api")

_ONE_WRITE = 256 * 1024
"""Bodies up to this size go out in one write with their head; larger ones after it."""
_ASGI = {"version": "3.0", "spec_version": "2.1"}


class ExchangeWire(Protocol):
    """What an exchange needs of its connection."""

    h11: h11.Connection
    broken: bool
    """The connection cannot carry another exchange (the peer is gone, or a response
    was cut short)."""
    client: tuple[Any, ...]
    local: tuple[Any, ...]

    async def read_more(self) -> bool:
        """Feed the parser what arrives next; ``False`` when the peer is gone."""
        ...

    async def write(self, data: bytes | bytearray | memoryview) -> None: ...


class HttpDate:
    """The ``date`` header, formatted once a second."""

    second = 0
    header: tuple[bytes, bytes] = (b"date", b"")

    @classmethod
    def now(cls) -> tuple[bytes, bytes]:
        second = int(time.time())
        if second != cls.second:
            cls.second = second
            cls.header = (b"date", formatdate(second, usegmt=True).encode())
        return cls.header


def error_response(
    connection: h11.Connection,
    status: int,
    kind: str,
    message: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    *,
    remedy: str | None = None,
    retryable: bool = False,
    retry_after: float | None = None,
) -> bytes:
    """A complete response the server gives by itself, in the API's error shape, that
    closes the connection (``h11.LocalProtocolError`` if ``connection`` cannot send one)."""
    error = {
        "type": kind,
        "message": message,
        "remedy": remedy,
        "retryable": retryable,
        "retry_after": retry_after,
    }
    body = json.dumps({"error": error}).encode()
    head = h11.Response(
        status_code=status,
        headers=[
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *headers,
            HttpDate.now(),
        ],
    )
    return (
        (connection.send(head) or b"")
        + (connection.send(h11.Data(data=body)) or b"")
        + (connection.send(h11.EndOfMessage()) or b"")
    )


def request_scope(wire: ExchangeWire, request: h11.Request, kind: str) -> dict[str, Any]:
    """The ASGI scope of a request (``http``) or a websocket upgrade (``websocket``)."""
    path, _, query = request.target.partition(b"?")
    return {
        "type": kind,
        "asgi": _ASGI,
        "http_version": request.http_version.decode(),
        "method": request.method.decode("ascii"),
        "scheme": "ws" if kind == "websocket" else "http",
        "path": unquote(path.decode("latin-1")),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": list(request.headers),
        "client": wire.client,
        "server": wire.local,
        "extensions": {},
    }


class Exchange:
    """One request and its response on a connection."""

    def __init__(
        self,
        app: ASGIApp,
        connection: ExchangeWire,
        request: h11.Request,
        *,
        body_timeout: float = math.inf,
    ) -> None:
        self.app = app
        self.connection = connection
        self.body_timeout = body_timeout
        self.body_timed_out = False
        self.app_scope = trio.CancelScope()
        self.h11 = connection.h11
        self.scope = request_scope(connection, request, "http")
        self.head_only = request.method == b"HEAD"
        self.body_done = False
        self.pending: h11.Data | None = None
        self.start: Message | None = None
        self.started = False
        self.finished = False
        self.suppress_body = False
        self.disconnected = False
        self.read_lock = trio.Lock()

    async def run(self) -> None:
        with self.app_scope:
            try:
                await self.app(self.scope, self.receive, self.send)
            except Exception:
                # Error handlers have answered already where they could; an app error after
                # a complete response is the app's to log (its handlers do).
                if not self.finished:
                    log.exception("unhandled error in the ASGI app", path=self.scope["path"])
        if self.body_timed_out and not self.started:
            await self._send_error(
                408,
                "request_timeout",
                f"the request body sent nothing for {self.body_timeout:g} s (api.body_timeout) "
                "and was cut off; send the whole body without pausing",
            )
            self.connection.broken = True  # the rest of the body may still come: close
        elif not self.started:
            await self._send_error(
                500,
                "internal_error",
                "sbx failed on this request before answering; the server log has the details",
            )
        elif not self.finished:
            self.connection.broken = True  # a response cut short: the connection cannot go on

    # -- receive -----------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self.body_done:
            return await self._receive_body()
        # The body is read: what remains to report is the peer going away.
        async with self.read_lock:
            while not self.disconnected:
                if not await self.connection.read_more():
                    self.disconnected = True
                else:  # a pipelined request: it waits in the parser, and so do we
                    await trio.sleep_forever()
        return {"type": "http.disconnect"}

    async def _receive_body(self) -> Message:
        if self.h11.they_are_waiting_for_100_continue:
            await self.connection.write(
                self.h11.send(h11.InformationalResponse(status_code=100, headers=[]))
            )
        event = self.pending or await self._next_body_event()
        self.pending = None
        if isinstance(event, h11.Data):
            data = bytes(event.data)
            following = self.h11.next_event()  # no read: only what is buffered already
            if isinstance(following, h11.EndOfMessage):
                self.body_done = True
                return {"type": "http.request", "body": data, "more_body": False}
            if isinstance(following, h11.Data):
                self.pending = following
            return {"type": "http.request", "body": data, "more_body": True}
        if isinstance(event, h11.EndOfMessage):
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self.body_done = self.disconnected = True
        return {"type": "http.disconnect"}

    async def _next_body_event(self) -> object:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:
                return None
            if event is not h11.NEED_DATA:
                return event
            more = False
            with trio.move_on_after(self.body_timeout) as waiting:
                more = await self.connection.read_more()
            if waiting.cancelled_caught:  # a stalled body: the app waits no longer either
                self.body_timed_out = True
                self.app_scope.cancel()
                await trio.lowlevel.checkpoint()
            if not more:
                return None

    # -- send ------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.start = message
            self.started = True
            status = int(message["status"])
            self.suppress_body = self.head_only or status in (204, 304) or status < 200
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if self.finished:
            raise RuntimeError("http.response.body sent after the response ended")
        if self.start is None and not self.started:
            raise RuntimeError("http.response.body before http.response.start")
        body = b"" if self.suppress_body else message.get("body", b"")
        more = bool(message.get("more_body", False))
        pieces: list[bytes | bytearray | memoryview] = []
        if self.start is not None:
            headers = [*self.start.get("headers", ()), HttpDate.now()]
            pieces.append(
                self.h11.send(h11.Response(status_code=int(self.start["status"]), headers=headers))
                or b""
            )
            self.start = None
        if body:
            pieces.extend(self.h11.send_with_data_passthrough(h11.Data(data=body)) or ())
        if not more:
            pieces.append(self.h11.send(h11.EndOfMessage()) or b"")
            self.finished = True
        if len(body) <= _ONE_WRITE:
            await self.connection.write(b"".join(pieces))
        else:
            for piece in pieces:
                await self.connection.write(piece)

    async def _send_error(self, status: int, kind: str, message: str) -> None:
        try:
            data = error_response(self.h11, status, kind, message)
        except h11.LocalProtocolError:
            self.connection.broken = True
            return
        self.started = self.finished = True
        await self.connection.write(data)
