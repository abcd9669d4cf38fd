"""The API's HTTP/1.1 server with small ASGI apps: keep-alive, bodies, streams, websockets."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

from orchestrator.api.client import HttpConnection
from orchestrator.api.http_server import HttpServer

App = Callable[[Any, Any, Any], Awaitable[None]]


@asynccontextmanager
async def serving(
    app: App, graceful_timeout: float = 5, **limits: Any
) -> AsyncIterator[tuple[str, trio.Event]]:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            HttpServer(app, graceful_timeout=graceful_timeout, **limits).serve,
            "127.0.0.1:0",
            shutdown,
        )
        yield urls[0], shutdown
        shutdown.set()


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def echo(scope: Any, receive: Any, send: Any) -> None:
    body = await read_body(receive)
    data = b"%s %s %s" % (scope["method"].encode(), scope["path"].encode(), body)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)


async def connect(url: str) -> trio.SocketStream:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def read_to_end(stream: trio.abc.Stream, limit: float = 5) -> bytes:
    """What the server sends until it closes the connection (within ``limit`` seconds)."""
    answer = b""
    with trio.fail_after(limit):
        try:
            while chunk := await stream.receive_some(65536):
                answer += chunk
        except trio.BrokenResourceError:  # reset after the answer
            pass
    return answer


def error_of(answer: bytes) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    return error


async def raw_exchange(url: str, request: bytes) -> bytes:
    stream = await connect(url)
    await stream.send_all(request)
    answer = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            answer += chunk
    await stream.aclose()
    return answer


async def test_requests_in_turn_share_one_connection() -> None:
    async with serving(echo) as (url, _):
        connection = HttpConnection(url)
        first = await in_thread(connection.request, "POST", "/a", b"one")
        sock = connection._sock
        second = await in_thread(connection.request, "GET", "/b")
        assert connection._sock is sock
        connection.close()
    assert first == (200, b"POST /a one")
    assert second == (200, b"GET /b ")


async def test_a_chunked_request_body_reaches_the_app_whole() -> None:
    async with serving(echo) as (url, _):
        answer = await raw_exchange(
            url,
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
            b"\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\nPOST /c abcde")


async def test_a_body_the_app_left_unread_keeps_the_connection_usable() -> None:
    async def ignore_body(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})

    async with serving(ignore_body) as (url, _):
        connection = HttpConnection(url)
        first = await in_thread(connection.request, "POST", "/", b"x" * 1000)
        second = await in_thread(connection.request, "POST", "/", b"y")
        connection.close()
    assert first == second == (401, b"no")


async def test_a_response_without_length_streams_chunked_lines() -> None:
    async def lines(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for n in range(3):
            await send({"type": "http.response.body", "body": b"line %d\n" % n, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with serving(lines) as (url, _):
        connection = HttpConnection(url)

        def read() -> tuple[int, list[bytes]]:
            status, got = connection.stream_lines("GET", "/")
            return status, list(got)

        assert await in_thread(read) == (200, [b"line 0", b"line 1", b"line 2"])
        assert await in_thread(connection.request, "GET", "/") == (200, b"line 0\nline 1\nline 2\n")
        connection.close()


async def test_a_client_that_goes_away_is_a_disconnect_for_the_app() -> None:
    seen: list[str] = []
    done = trio.Event()

    async def waits(scope: Any, receive: Any, send: Any) -> None:
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"start\n", "more_body": True})
        seen.append((await receive())["type"])
        done.set()

    async with serving(waits) as (url, _):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.receive_some(65536)
        await stream.aclose()
        with trio.fail_after(5):
            await done.wait()
    assert seen == ["http.disconnect"]


async def test_an_app_that_fails_before_answering_is_a_500() -> None:
    async def fails(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("bug")

    async with serving(fails) as (url, _):
        answer = await raw_exchange(url, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ")


async def test_head_and_malformed_requests() -> None:
    async with serving(echo) as (url, _):
        head = await raw_exchange(url, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        bad = await raw_exchange(url, b"NOT HTTP\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert head.endswith(b"\r\n\r\n")  # the head only
    assert bad.startswith(b"HTTP/1.1 400 ")


async def test_a_websocket_exchanges_messages_and_closes() -> None:
    async def ws_echo(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "binary"})
        message = await receive()
        await send({"type": "websocket.send", "bytes": message["bytes"] * 2})
        assert (await receive())["type"] == "websocket.disconnect"

    async with serving(ws_echo) as (url, _):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host="x", target="/ws", subprotocols=["binary"])))
        events: list[Any] = []
        with trio.fail_after(5):
            while not any(isinstance(e, BytesMessage) for e in events):
                ws.receive_data(await stream.receive_some(65536))
                events.extend(ws.events())
                if isinstance(events[-1], AcceptConnection):
                    await stream.send_all(ws.send(BytesMessage(data=b"ab")))
            await stream.send_all(ws.send(CloseConnection(code=1000)))
            ws.receive_data(await stream.receive_some(65536))
            events.extend(ws.events())
        await stream.aclose()
    accepted = events[0]
    assert isinstance(accepted, AcceptConnection)
    assert accepted.subprotocol == "binary"
    assert [e.data for e in events if isinstance(e, BytesMessage)] == [b"abab"]
    assert isinstance(events[-1], CloseConnection)


async def test_a_websocket_the_app_refuses_is_a_403() -> None:
    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 4403})

    async with serving(refuse) as (url, _):
        ws = WSConnection(ConnectionType.CLIENT)
        answer = await raw_exchange(url, ws.send(Request(host="x", target="/ws")))
    assert answer.startswith(b"HTTP/1.1 403 ")


async def test_shutdown_refuses_new_connections_and_lets_a_call_finish() -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await read_body(receive)
        await trio.sleep(0.5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    outcome: list[Any] = []
    async with serving(slow) as (url, shutdown):
        connection = HttpConnection(url)

        async def call() -> None:
            outcome.append(await in_thread(connection.request, "GET", "/"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await trio.sleep(0.2)
            shutdown.set()
            await trio.sleep(0.1)
            host, port = url.removeprefix("http://").rsplit(":", 1)
            with pytest.raises(OSError):
                await trio.open_tcp_stream(host, int(port))
        connection.close()
    assert outcome == [(200, b"done")]


# -- no peer holds a connection for nothing ---------------------------------------------------


async def test_a_request_head_that_trickles_in_is_cut_off_with_a_408() -> None:
    async with serving(echo, head_timeout=0.5) as (url, _):
        stream = await connect(url)
        started = trio.current_time()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:  # a header line every 0.1 s: never a whole head
            try:
                for n in range(100):
                    await trio.sleep(0.1)
                    await stream.send_all(b"X-%d: y\r\n" % n)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            answer = await read_to_end(stream)
            elapsed = trio.current_time() - started
            nursery.cancel_scope.cancel()
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert error_of(answer)["type"] == "request_timeout"
    assert "api.head_timeout" in error_of(answer)["message"]
    assert 0.5 <= elapsed < 2.5


async def test_the_head_timeout_starts_at_a_requests_first_byte_not_between_requests() -> None:
    async with serving(echo, head_timeout=0.3) as (url, _):
        connection = HttpConnection(url)
        first = await in_thread(connection.request, "GET", "/a")
        await trio.sleep(0.8)  # idle on a keep-alive connection: longer than head_timeout
        second = await in_thread(connection.request, "GET", "/b")
        connection.close()
    assert (first, second) == ((200, b"GET /a "), (200, b"GET /b "))


async def test_a_request_body_that_stalls_is_cut_off_with_a_408_and_the_app_stops_waiting() -> None:
    outcome: list[str] = []

    async def reads_the_body(scope: Any, receive: Any, send: Any) -> None:
        try:
            await read_body(receive)
            outcome.append("read")
        except trio.Cancelled:
            outcome.append("cancelled")
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving(reads_the_body, body_timeout=0.5) as (url, _):
        stream = await connect(url)
        started = trio.current_time()
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        await stream.send_all(b"x" * 10)
        answer = await read_to_end(stream)  # the other 90 bytes never come
        elapsed = trio.current_time() - started
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert error_of(answer)["type"] == "request_timeout"
    assert "api.body_timeout" in error_of(answer)["message"]
    assert 0.5 <= elapsed < 2.5
    assert outcome == ["cancelled"]


async def test_a_slow_body_that_keeps_coming_is_read_whole() -> None:
    async with serving(echo, body_timeout=0.5) as (url, _):
        stream = await connect(url)
        await stream.send_all(
            b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        )
        for byte in b"abcde":  # 1 s in all, no gap as long as body_timeout
            await trio.sleep(0.2)
            await stream.send_all(bytes([byte]))
        answer = await read_to_end(stream)
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"POST /slow abcde")


async def test_a_connection_over_the_cap_gets_a_503_at_once_and_a_freed_slot_is_used() -> None:
    async with serving(echo, max_connections=2) as (url, _):
        held = []
        for _ in range(2):  # two keep-alive connections, each known served
            stream = await connect(url)
            await stream.send_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(5):
                assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
            held.append(stream)
        started = trio.current_time()
        over = await raw_exchange(url, b"GET /over HTTP/1.1\r\nHost: x\r\n\r\n")
        elapsed = trio.current_time() - started
        await held.pop().aclose()
        with trio.fail_after(5):
            while True:  # the server sees the close, and the slot is free again
                again = await raw_exchange(
                    url, b"GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                if again.startswith(b"HTTP/1.1 200 "):
                    break
                await trio.sleep(0.05)
        for stream in held:
            await stream.aclose()
    assert over.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nretry-after: 1\r\n" in over
    assert error_of(over)["type"] == "server_busy"
    assert "api.max_connections" in error_of(over)["message"]
    assert elapsed < 1.5


async def test_malformed_requests_are_typed_4xx_answers() -> None:
    async with serving(echo) as (url, _):
        bad = await raw_exchange(url, b"NOT HTTP\r\n\r\n")
        huge = await raw_exchange(url, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 70000)
    assert bad.startswith(b"HTTP/1.1 400 ")
    assert error_of(bad)["type"] == "malformed_request"
    assert huge.startswith(b"HTTP/1.1 431 ")
    assert error_of(huge)["type"] == "request_head_too_large"


async def test_connections_reset_as_soon_as_they_open_leave_the_server_serving() -> None:
    async with serving(echo) as (url, _):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        for _ in range(200):  # connect, then reset at once (SO_LINGER 0)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.connect((host, int(port)))
            sock.close()
        await trio.sleep(0.3)
        answer = await raw_exchange(url, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.endswith(b"GET /x ")


# -- closed and idle connections, and what a shutdown cut --------------------------------------


def _close_wait_sockets(port: int) -> int:
    """Sockets on ``port`` in CLOSE-WAIT: the peer closed, and we have not (yet)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "08":
                count += 1
    return count


async def test_connections_their_clients_closed_are_not_held_in_close_wait() -> None:
    async with serving(echo, keep_alive_timeout=60) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        for n in range(160):
            stream = await connect(url)
            await stream.send_all(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
            answer = await stream.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            await stream.aclose()  # keep-alive: the server would wait for another request
        with trio.fail_after(2):
            while _close_wait_sockets(port):
                await trio.sleep(0.05)
        assert _close_wait_sockets(port) == 0


async def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_timeout() -> None:
    async with serving(echo, keep_alive_timeout=0.3) as (url, _):
        stream = await connect(url)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        started = trio.current_time()
        answer = await read_to_end(stream, limit=5)
        elapsed = trio.current_time() - started
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert 0.3 <= elapsed < 2


async def test_a_shutdown_names_the_requests_it_cut_and_counts_those_that_finished() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await read_body(receive)
        await trio.sleep(0.2 if scope["path"] == "/quick" else 60)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    server = HttpServer(app, graceful_timeout=0.6)
    shutdown = trio.Event()
    answers: list[Any] = []

    async def call(path: str) -> None:
        connection = HttpConnection(url)
        try:
            answers.append(await in_thread(connection.request, "GET", path))
        except OSError as exc:
            answers.append(type(exc).__name__)
        finally:
            connection.close()

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        url = (await nursery.start(server.serve, "127.0.0.1:0", shutdown))[0]
        nursery.start_soon(call, "/quick")
        nursery.start_soon(call, "/slow?x=1")
        await trio.sleep(0.1)
        shutdown.set()
    assert trio.current_time() - started < 5
    assert (200, b"done") in answers
    assert server.drain.finished == 1
    assert server.drain.cut == ["GET /slow?x=1 from 127.0.0.1"]


async def test_cut_short_ends_the_grace_period_at_once() -> None:
    async def forever(scope: Any, receive: Any, send: Any) -> None:
        await trio.sleep_forever()

    server = HttpServer(forever, graceful_timeout=60)
    shutdown = trio.Event()
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        url = (await nursery.start(server.serve, "127.0.0.1:0", shutdown))[0]
        stream = await connect(url)
        await stream.send_all(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(0.1)
        shutdown.set()
        await trio.sleep(0.2)
        server.cut_short()
    await stream.aclose()
    assert trio.current_time() - started < 5
    assert server.drain.cut == ["GET /stuck from 127.0.0.1"]


async def test_a_port_in_use_is_a_config_error_naming_it() -> None:
    from orchestrator.api.http_server import open_listeners
    from orchestrator.errors import ConfigError

    async with serving(echo) as (url, _):
        bind = url.removeprefix("http://")
        with pytest.raises(ConfigError, match=r"cannot listen on .*: the address is in use"):
            await open_listeners(bind)
