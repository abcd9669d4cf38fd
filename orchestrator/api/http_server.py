"""The HTTP/1.1 server of ``sbx serve``: runs the API's ASGI app in the supervisor's trio run.

Each connection is one task, and a request runs in that task (an
``http_exchange.Exchange``): no task per request, no timer task re-armed per
request, no channel between the parser and the app, and a response whose
body is complete goes out in one write.
hypercorn does all of those for every request, which costs about 0.45 ms
here -- as much as running a command in the sandbox.  Parsing and framing
are h11's (websockets: wsproto's), so the protocol logic is not ours.

Shutdown is graceful: the listeners close at once, idle keep-alive
connections are closed, requests in flight get ``graceful_timeout`` to
finish (``cut_short`` ends that at once), then whatever is left is cancelled
and named in ``drain``, so the operator learns what a shutdown cut.

No peer holds a connection for nothing: a request's head must arrive whole
within ``head_timeout`` of its first byte (else 408), a request body that
sends nothing for ``body_timeout`` is cut off (408, see ``http_exchange``),
an idle keep-alive connection closes after ``keep_alive_timeout``, and past
``max_connections`` a new connection is answered 503 at once and closed.

It must not know the routes, and it speaks plain HTTP/1.1 only (no TLS, no
HTTP/2): put a proxy in front for those.  It must not buffer a request or
response body beyond what the app hands it.
"""

from __future__ import annotations

import errno
import math
from dataclasses import dataclass, field
from functools import partial

import h11
import structlog
import trio
from starlette.types import ASGIApp

from orchestrator.api.http_exchange import Exchange, error_response, request_scope
from orchestrator.api.websocket import serve_websocket
from orchestrator.errors import ConfigError

__all__ = ["Drain", "HttpServer", "open_listeners", "url_of"]

log = structlog.get_logger("orchestrator.api")


MAX_RECV = 64 * 1024
_LINGER = 2.0
"""How long a connection closed with request bytes unread drains them, so the peer
reads the response instead of a reset."""
_SKIP_LIMIT = 1 << 20
"""A request body the app did not read is read past up to this size (the connection
stays open); a larger one closes the connection."""
_TURN_AWAY_LINGER = 0.5
"""How long a connection over the cap is drained after its 503."""


def url_of(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


async def open_listeners(bind: str) -> list[trio.SocketListener]:
    """Listen on ``bind`` (``host:port``; port 0 picks one), or ``ConfigError`` naming why
    not -- opened before anything else starts, so a taken port costs nothing."""
    host, port = _split_bind(bind)
    try:
        return await trio.open_tcp_listeners(port, host=host or None)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "the address is in use (another sbx serve?)"
            fix = f"stop what listens there (`ss -ltnp 'sport = :{port}'`) or"
        elif exc.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need privileges)"
            fix = "use a port above 1024, or"
        else:
            why = exc.strerror or str(exc)
            fix = "check the address, or"
        raise ConfigError(
            f"cannot listen on {bind}: {why}; {fix} choose another --bind / api.bind"
        ) from None


@dataclass
class Drain:
    """How a shutdown went: requests that finished within the grace period, and those
    it cut (``METHOD target from client``)."""

    finished: int = 0
    cut: list[str] = field(default_factory=list)


class HttpServer:
    """Serves one ASGI app on ``bind`` until ``shutdown`` is set."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        graceful_timeout: float,
        keep_alive_timeout: float = 30.0,
        head_timeout: float = 10.0,
        body_timeout: float = 30.0,
        max_connections: int = 1024,
    ) -> None:
        self.app = app
        self.graceful_timeout = graceful_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.closing = False
        self.drain = Drain()
        self._connections: set[_Connection] = set()
        self._turning_away = 0
        self._drained = trio.Event()
        self._grace = trio.CancelScope()

    def cut_short(self) -> None:
        """End the grace period of a shutdown now (a second signal): cut what is running."""
        self._grace.cancel()

    async def serve(
        self,
        bind: str | list[trio.SocketListener],
        shutdown: trio.Event,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on ``bind`` (``host:port``, port 0 picks one; or listeners from
        ``open_listeners``); ``task_status`` gets the URLs."""
        listeners = await open_listeners(bind) if isinstance(bind, str) else bind
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(
                    partial(
                        trio.serve_listeners,
                        self._serve_connection,
                        listeners,
                        handler_nursery=connections,
                    )
                )
                task_status.started([url_of(listener) for listener in listeners])
                await shutdown.wait()
                accepting.cancel_scope.cancel()  # the listeners close: new connections are refused
            self.closing = True
            for connection in list(self._connections):
                connection.close_if_idle()
            busy = sum(1 for c in self._connections if c.request is not None)
            with self._grace, trio.move_on_after(self.graceful_timeout):
                if self._connections:
                    await self._drained.wait()
            self.drain.cut = [c.request for c in self._connections if c.request is not None]
            self.drain.finished = max(0, busy - len(self.drain.cut))
            connections.cancel_scope.cancel()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        if len(self._connections) >= self.max_connections:
            await self._turn_away(stream)
            return
        try:
            connection = _Connection(self, stream)
        except OSError:  # reset before it was served (getpeername: not connected)
            await stream.aclose()
            return
        self._connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)
            if self.closing and not self._connections:
                self._drained.set()

    async def _turn_away(self, stream: trio.SocketStream) -> None:
        """A 503 at once for a connection over ``max_connections``, then close it; in a flood
        (as many being turned away as served) close it without a word."""
        if self._turning_away >= self.max_connections:
            await stream.aclose()
            return
        self._turning_away += 1
        try:
            busy = error_response(
                h11.Connection(h11.SERVER),
                503,
                "server_busy",
                f"the server has its maximum of {self.max_connections} connections open "
                "(api.max_connections); retry shortly",
                headers=((b"retry-after", b"1"),),
                remedy="retry in a second; if it persists, raise api.max_connections",
                retryable=True,
                retry_after=1.0,
            )
            with trio.move_on_after(_TURN_AWAY_LINGER):
                await stream.send_all(busy)
                await stream.send_eof()  # then read what the peer sent, so it is not reset
                while await stream.receive_some(MAX_RECV):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._turning_away -= 1
            await stream.aclose()


class _Connection:
    def __init__(self, server: HttpServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER)
        self.idle_scope: trio.CancelScope | None = None
        self.broken = False
        self.request: str | None = None
        """The request being served (``METHOD target from host``), for a shutdown's report."""
        socket = stream.socket
        self.client = tuple(socket.getpeername()[:2])
        self.local = tuple(socket.getsockname()[:2])

    def close_if_idle(self) -> None:
        if self.idle_scope is not None:
            self.idle_scope.cancel()

    async def serve(self) -> None:
        try:
            while not self.server.closing:
                request = await self._next_request()
                if request is None:
                    return
                if _is_websocket(request):
                    self.request = f"websocket {request.target.decode(errors='replace')}"
                    scope = request_scope(self, request, "websocket")
                    await serve_websocket(self.server.app, self, request, scope)
                    return
                self.request = (
                    f"{request.method.decode()} {request.target.decode(errors='replace')}"
                    f" from {self.client[0]}"
                )
                await Exchange(
                    self.server.app, self, request, body_timeout=self.server.body_timeout
                ).run()
                self.request = None
                if self.broken or self.h11.our_state is not h11.DONE:
                    return
                if self.h11.their_state is not h11.DONE and not await self._skip_body():
                    await self._linger()
                    return
                self.h11.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            # One connection's failure must not take the server down with it.
            log.exception("HTTP connection failed", client=self.client)
        finally:
            await self.stream.aclose()

    async def _next_request(self) -> h11.Request | None:
        """The next request's head, or ``None`` when the connection ends, idles out, or
        the head does not arrive whole within ``head_timeout`` of its first byte (408)."""
        head_deadline = math.inf
        if self.h11.trailing_data[0]:  # a pipelined request has begun already
            head_deadline = trio.current_time() + self.server.head_timeout
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse_malformed(exc)
                return None
            if isinstance(event, h11.Request):
                return event
            if event is not h11.NEED_DATA:
                return None  # closed, or paused after a request we did not finish
            if head_deadline == math.inf:  # idle: waiting for a request's first byte
                with trio.move_on_after(self.server.keep_alive_timeout) as scope:
                    self.idle_scope = scope
                    data = await self.stream.receive_some(MAX_RECV)
                self.idle_scope = None
                if scope.cancelled_caught:
                    return None
                head_deadline = trio.current_time() + self.server.head_timeout
            else:
                with trio.move_on_at(head_deadline) as scope:
                    data = await self.stream.receive_some(MAX_RECV)
                if scope.cancelled_caught:
                    await self._refuse(
                        408,
                        "request_timeout",
                        f"the request head did not arrive whole within {self.server.head_timeout:g}"
                        " s of its first byte (api.head_timeout); send it without pausing",
                    )
                    return None
            self.h11.receive_data(data)

    async def receive_raw(self) -> bytes:
        """The next bytes from the peer; ``b""`` once it is gone."""
        try:
            data = await self.stream.receive_some(MAX_RECV)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.broken = True
        return bytes(data)

    async def read_more(self) -> bool:
        """Feed the parser what arrives next; ``False`` when the peer is gone."""
        data = await self.receive_raw()
        if data:
            self.h11.receive_data(data)
        return bool(data)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``; after the peer is gone, writes do nothing (ASGI's rule)."""
        if self.broken or not data:
            return
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.broken = True

    async def _refuse_malformed(self, exc: h11.RemoteProtocolError) -> None:
        if exc.error_status_hint == 431:
            await self._refuse(
                431,
                "request_head_too_large",
                "the request head is too large; send fewer or shorter header fields",
            )
        else:
            await self._refuse(
                exc.error_status_hint,
                "malformed_request",
                f"the request is not valid HTTP/1.1 ({exc}); fix the client or the proxy",
            )

    async def _refuse(self, status: int, kind: str, message: str) -> None:
        """Answer ``status`` by the server itself; the connection closes after it."""
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                data = error_response(self.h11, status, kind, message)
            except h11.LocalProtocolError:
                return
            await self.write(data)
            await self._linger()

    async def _skip_body(self) -> bool:
        """Read past a request body the app left unread, if it is small; ``False`` if not."""
        skipped = 0
        with trio.move_on_after(_LINGER):
            while skipped <= _SKIP_LIMIT:
                try:
                    event = self.h11.next_event()
                except h11.RemoteProtocolError:
                    return False
                if isinstance(event, h11.EndOfMessage):
                    return True
                if isinstance(event, h11.Data):
                    skipped += len(event.data)
                elif event is not h11.NEED_DATA or not await self.read_more():
                    return False
        return False

    async def _linger(self) -> None:
        """Close after a response sent before the request body was read: stop sending,
        drain what the peer still sends for a moment, so it reads our answer."""
        try:
            await self.stream.send_eof()
            with trio.move_on_after(_LINGER):
                while await self.stream.receive_some(MAX_RECV):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _is_websocket(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"upgrade" and value.lower() == b"websocket":
            return request.method == b"GET"
    return False
