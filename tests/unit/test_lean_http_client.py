"""The API client's keep-alive HTTP/1.1 connection, against a real server."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from orchestrator.api.client import HttpConnection


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]  # startup / shutdown
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    auth = dict(scope["headers"]).get(b"authorization", b"")
    data = b"%s %s %s %s" % (scope["method"].encode(), scope["path"].encode(), auth, body)
    status = 404 if scope["path"] == "/missing" else 200
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def test_requests_in_turn_share_one_connection() -> None:
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, _echo, config)
        client = HttpConnection(binds[0], {"Authorization": "Bearer t"})
        try:
            assert await trio.to_thread.run_sync(client.request, "POST", "/v1/x", b'{"a":1}') == (
                200,
                b'POST /v1/x Bearer t {"a":1}',
            )
            status, data = await trio.to_thread.run_sync(client.request, "GET", "/missing")
            assert (status, data) == (404, b"GET /missing Bearer t ")
        finally:
            client.close()
        nursery.cancel_scope.cancel()


async def test_a_server_that_hangs_up_is_an_error() -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some(1024)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, hang_up, 0)
        port = listeners[0].socket.getsockname()[1]
        client = HttpConnection(f"http://127.0.0.1:{port}", {})
        with pytest.raises(ConnectionError, match="closed the connection"):
            await trio.to_thread.run_sync(client.request, "GET", "/")
        client.close()
        nursery.cancel_scope.cancel()
