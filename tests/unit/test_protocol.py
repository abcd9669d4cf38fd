"""The frame format: round trips, incremental decoding, limits, the handshake."""

from __future__ import annotations

import struct

import pytest

from orchestrator import protocol


def test_frame_round_trip_keeps_binary_payload_intact() -> None:
    payload = bytes(range(256)) * 3
    frame = protocol.encode({"k": "out", "id": 7, "s": 1}, payload)
    [(header, body)] = protocol.FrameDecoder().feed(frame)
    assert header == {"k": "out", "id": 7, "s": 1}
    assert body == payload


def test_decoder_reassembles_frames_fed_one_byte_at_a_time() -> None:
    frames = protocol.request(1, "ping", {}) + protocol.result(1, {"x": "é"}, b"\x00\xff")
    decoder = protocol.FrameDecoder()
    seen = []
    for i in range(len(frames)):
        seen += decoder.feed(frames[i : i + 1])
    assert [h["k"] for h, _ in seen] == ["req", "res"]
    assert seen[1] == ({"k": "res", "id": 1, "ok": True, "r": {"x": "é"}}, b"\x00\xff")
    assert decoder.pending == 0


def test_decoder_returns_several_frames_from_one_read() -> None:
    data = b"".join(protocol.output(3, protocol.STDOUT, str(i).encode()) for i in range(5))
    out = protocol.FrameDecoder().feed(data)
    assert [p for _, p in out] == [b"0", b"1", b"2", b"3", b"4"]


def test_oversized_frame_announcement_is_refused_before_buffering() -> None:
    evil = struct.pack("!II", 10, protocol.MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(protocol.FrameError, match="over the"):
        protocol.FrameDecoder().feed(evil)


def test_header_that_is_not_json_is_refused() -> None:
    bad = struct.pack("!II", 3, 0) + b"{x}"
    with pytest.raises(protocol.FrameError, match="not JSON"):
        protocol.FrameDecoder().feed(bad)


def test_header_without_kind_is_refused() -> None:
    bad = struct.pack("!II", 2, 0) + b"{}"
    with pytest.raises(protocol.FrameError, match="'k'"):
        protocol.FrameDecoder().feed(bad)


def test_encode_refuses_payload_over_limit() -> None:
    with pytest.raises(protocol.FrameError):
        protocol.encode({"k": "x"}, b"\0" * (protocol.MAX_PAYLOAD_BYTES + 1))


def test_hello_with_other_version_says_to_rebuild_images() -> None:
    with pytest.raises(protocol.FrameError, match="sbx images build"):
        protocol.check_hello({"k": "hello", "v": protocol.PROTOCOL_VERSION + 1})
    protocol.check_hello({"k": "hello", "v": protocol.PROTOCOL_VERSION})


def test_first_frame_must_be_hello() -> None:
    with pytest.raises(protocol.FrameError, match="hello"):
        protocol.check_hello({"k": "req"})


def test_protocol_module_imports_only_the_standard_library() -> None:
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(protocol.__file__).read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules
