"""The wire protocol between the orchestrator and the in-sandbox guest.

This module is copied verbatim into every sandbox image, so it must depend on
nothing but the standard library and must run on the oldest Python a
Debian-like base image may carry (3.9).  Both sides import it; nothing else
about the protocol is written down anywhere.

A frame is ``!II`` (header length, payload length) followed by a UTF-8 JSON
object (the header) and raw payload bytes.  Payloads carry output chunks and
file contents untouched, so binary data never pays for base64.

Messages (``k`` in the header):

``hello``   both sides, first frame: ``v`` (protocol version), ``caps``.
``req``     host → guest: ``id``, ``op``, ``a`` (arguments); payload is
            stdin bytes or file contents.
``out``     guest → host: ``id``, ``s`` (1 stdout, 2 stderr); payload is data.
``res``     guest → host: ``id``, ``ok``; ``r`` (result) or ``e``
            (``code``, ``msg``, ``details``); payload optional.
``cancel``  host → guest: ``id``.  The guest stops the call and still answers
            with ``res``.
``win``     host → guest: ``id``, ``n``: ``n`` more bytes of output may be sent.
            Output is flow-controlled per call so a slow reader holds back one
            process, never the whole channel.
"""

from __future__ import annotations

import json
import struct
from typing import Any

PROTOCOL_VERSION = 1
"""Bumped on any incompatible change; both sides refuse a different version."""

HEADER = struct.Struct("!II")
MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 64 << 20
"""A single frame's payload cap; file operations are capped below this."""

DEFAULT_WINDOW = 1 << 20
"""Output credit a call starts with before the host grants more."""

STDOUT = 1
STDERR = 2

# Message kinds.
HELLO = "hello"
REQUEST = "req"
OUTPUT = "out"
RESULT = "res"
CANCEL = "cancel"
WINDOW = "win"

# Operations the guest implements; also advertised as capabilities.
OP_PING = "ping"
OP_INFO = "info"
OP_EXEC = "exec"
OP_SHELL_RUN = "shell.run"
OP_SHELL_RESTART = "shell.restart"
OP_SHELL_CLOSE = "shell.close"
OP_FILE_READ = "file.read"
OP_FILE_WRITE = "file.write"
OP_FILE_LIST = "file.list"
OP_FILE_STAT = "file.stat"
OP_FILE_MKDIR = "file.mkdir"
OP_FILE_REMOVE = "file.remove"

ALL_OPS = (
    OP_PING,
    OP_INFO,
    OP_EXEC,
    OP_SHELL_RUN,
    OP_SHELL_RESTART,
    OP_SHELL_CLOSE,
    OP_FILE_READ,
    OP_FILE_WRITE,
    OP_FILE_LIST,
    OP_FILE_STAT,
    OP_FILE_MKDIR,
    OP_FILE_REMOVE,
)

# Error codes carried in ``res`` frames with ``ok: false``.
E_BAD_REQUEST = "bad_request"
E_UNKNOWN_OP = "unknown_op"
E_PATH_NOT_ALLOWED = "path_not_allowed"
E_TOO_LARGE = "too_large"
E_NOT_FOUND = "not_found"
E_EXISTS = "exists"
E_IS_DIRECTORY = "is_directory"
E_NOT_DIRECTORY = "not_directory"
E_PERMISSION = "permission_denied"
E_BUSY = "busy"
E_INTERNAL = "internal"


class FrameError(ValueError):
    """A frame is malformed or over the size limits."""


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """Serialise one frame."""
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(head) > MAX_HEADER_BYTES:
        raise FrameError(f"frame header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise FrameError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return HEADER.pack(len(head), len(payload)) + head + payload


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, take whole frames out.

    It buffers at most one frame plus one read, so a hostile peer cannot make
    it grow past the frame limits.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        self._buf += data
        frames: list[tuple[dict[str, Any], bytes]] = []
        while True:
            frame = self._take()
            if frame is None:
                return frames
            frames.append(frame)

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buf)

    def _take(self) -> tuple[dict[str, Any], bytes] | None:
        buf = self._buf
        if len(buf) < HEADER.size:
            return None
        head_len, payload_len = HEADER.unpack_from(buf, 0)
        if head_len > MAX_HEADER_BYTES or payload_len > MAX_PAYLOAD_BYTES:
            raise FrameError(
                f"frame announces header {head_len} / payload {payload_len} bytes, over the "
                f"limits {MAX_HEADER_BYTES} / {MAX_PAYLOAD_BYTES}"
            )
        end = HEADER.size + head_len + payload_len
        if len(buf) < end:
            return None
        try:
            header = json.loads(bytes(buf[HEADER.size : HEADER.size + head_len]))
        except ValueError as exc:
            raise FrameError(f"frame header is not JSON: {exc}") from None
        if not isinstance(header, dict) or "k" not in header:
            raise FrameError("frame header must be an object with a 'k' field")
        payload = bytes(buf[HEADER.size + head_len : end])
        del buf[:end]
        return header, payload


def hello(caps: list[str], **extra: Any) -> bytes:
    header: dict[str, Any] = {"k": HELLO, "v": PROTOCOL_VERSION, "caps": caps}
    header.update(extra)
    return encode(header)


def check_hello(header: dict[str, Any]) -> None:
    """Raise ``FrameError`` unless ``header`` is a compatible hello."""
    if header.get("k") != HELLO:
        raise FrameError(f"expected a hello frame first, got {header.get('k')!r}")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise FrameError(
            f"protocol version {version!r} on the other side, {PROTOCOL_VERSION} here: rebuild "
            "the sandbox images with `sbx images build` so the guest matches this orchestrator"
        )


def request(call_id: int, op: str, args: dict[str, Any], payload: bytes = b"") -> bytes:
    return encode({"k": REQUEST, "id": call_id, "op": op, "a": args}, payload)


def output(call_id: int, stream: int, data: bytes) -> bytes:
    return encode({"k": OUTPUT, "id": call_id, "s": stream}, data)


def result(call_id: int, value: dict[str, Any], payload: bytes = b"") -> bytes:
    return encode({"k": RESULT, "id": call_id, "ok": True, "r": value}, payload)


def error(call_id: int, code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"code": code, "msg": message}
    if details:
        body["details"] = details
    return encode({"k": RESULT, "id": call_id, "ok": False, "e": body})


def cancel(call_id: int) -> bytes:
    return encode({"k": CANCEL, "id": call_id})


def window(call_id: int, credit: int) -> bytes:
    return encode({"k": WINDOW, "id": call_id, "n": credit})
