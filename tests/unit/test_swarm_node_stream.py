"""The end of a sandbox's stream asks whether its node is still there, and tells only then."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import trio
import trio.testing

from orchestrator.backends.swarm.node_stream import NodeBoundStream


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once closed


async def _ended_stream(port: int) -> list[str]:
    lost: list[str] = []
    ours, theirs = trio.testing.memory_stream_pair()
    stream = NodeBoundStream(ours, "127.0.0.1", port, lambda: lost.append("lost"))
    await theirs.aclose()
    assert await stream.receive_some() == b""
    assert await stream.receive_some() == b""  # asked once
    return lost


async def test_a_stream_that_ends_with_its_node_gone_reports_the_node() -> None:
    assert await _ended_stream(_closed_port()) == ["lost"]


async def test_a_stream_that_ends_with_its_node_up_reports_nothing() -> None:
    async def engine(stream: trio.SocketStream) -> None:
        await stream.receive_some(1024)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, engine, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        assert await _ended_stream(port) == []
        nursery.cancel_scope.cancel()


async def test_a_port_that_accepts_but_does_not_answer_is_not_an_engine() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        assert await _ended_stream(port) == ["lost"]
        nursery.cancel_scope.cancel()


async def test_closing_it_ourselves_asks_nothing() -> None:
    lost: list[str] = []
    ours, _ = trio.testing.memory_stream_pair()
    stream = NodeBoundStream(ours, "127.0.0.1", _closed_port(), lambda: lost.append("lost"))
    await stream.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()
    assert lost == []


async def test_an_engine_that_resets_the_tls_handshake_is_gone() -> None:
    """A dying engine can accept on its last breath, then reset: the probe says gone."""
    import ssl
    import struct

    async def resetting(stream: trio.SocketStream) -> None:
        # SO_LINGER 0: close sends RST, as a killed process's sockets do.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    lost: list[str] = []
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, resetting, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        ours, theirs = trio.testing.memory_stream_pair()
        context = ssl.create_default_context()
        stream = NodeBoundStream(ours, "127.0.0.1", port, lambda: lost.append("lost"), context)
        await theirs.aclose()
        assert await stream.receive_some() == b""
        nursery.cancel_scope.cancel()
    assert lost == ["lost"]
