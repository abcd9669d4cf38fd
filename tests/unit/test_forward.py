"""TCP connections into a sandbox over its channel (``Session.connect``, ``net.connect``).

The fake backend runs the real guest as a local process, so its loopback is
this machine's: the tests serve on 127.0.0.1 and connect through the guest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable

import pytest
import trio

from orchestrator import Orchestrator
from orchestrator.errors import GuestError, SessionClosed

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def _serve(nursery: trio.Nursery, handler: Handler) -> int:
    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return int(listeners[0].socket.getsockname()[1])


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def test_bytes_go_both_ways_through_the_channel(orch: Orchestrator) -> None:
    async with orch.session() as session, trio.open_nursery() as nursery:
        port = await _serve(nursery, _echo)
        async with session.connect(port) as conn:
            await conn.send_all(b"hello sandbox")
            received = b""
            while len(received) < 13:
                received += await conn.receive_some(5)  # partial reads keep the rest
            assert received == b"hello sandbox"
        nursery.cancel_scope.cancel()


async def test_megabytes_both_ways_with_flow_control(orch: Orchestrator) -> None:
    """More than the windows both ways at once: nothing is lost, nothing deadlocks."""
    payload = os.urandom(6 << 20)
    async with orch.session() as session, trio.open_nursery() as nursery:
        port = await _serve(nursery, _echo)
        async with session.connect(port) as conn:
            received = bytearray()

            async def reader() -> None:
                while len(received) < len(payload):
                    data = await conn.receive_some(1 << 16)
                    assert data, "the connection ended early"
                    received.extend(data)

            with trio.fail_after(60):
                async with trio.open_nursery() as inner:
                    inner.start_soon(reader)
                    for offset in range(0, len(payload), 1 << 20):
                        await conn.send_all(payload[offset : offset + (1 << 20)])
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
        nursery.cancel_scope.cancel()


async def test_end_of_input_reaches_the_server_and_its_reply_comes_back(
    orch: Orchestrator,
) -> None:
    async def count(stream: trio.SocketStream) -> None:
        total = 0
        async for data in stream:
            total += len(data)
        await stream.send_all(f"{total} bytes".encode())
        await stream.aclose()

    async with orch.session() as session, trio.open_nursery() as nursery:
        port = await _serve(nursery, count)
        async with session.connect(port) as conn:
            await conn.send_all(b"x" * 100_000)
            await conn.send_eof()
            reply = b""
            while chunk := await conn.receive_some():
                reply += chunk
        assert reply == b"100000 bytes"
        nursery.cancel_scope.cancel()


async def test_nothing_listening_is_a_clear_error(orch: Orchestrator) -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    async with orch.session() as session:
        with pytest.raises(GuestError, match=rf"cannot connect to 127.0.0.1:{free_port}"):
            async with session.connect(free_port):
                pass
        assert await session.ping() > 0  # the session is fine afterwards


async def test_only_the_sandbox_itself_can_be_reached(orch: Orchestrator) -> None:
    async with orch.session() as session:
        with pytest.raises(GuestError, match="loopback"):
            async with session.connect(80, host="10.1.2.3"):
                pass


async def test_closing_the_session_ends_its_connections(orch: Orchestrator) -> None:
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, _echo)
        session = await orch.open_session()
        with pytest.raises(SessionClosed):
            async with session.connect(port) as conn:
                await conn.send_all(b"ping")
                assert await conn.receive_some() == b"ping"
                nursery.start_soon(session.close)
                await conn.receive_some()  # cancelled by the close
        nursery.cancel_scope.cancel()
