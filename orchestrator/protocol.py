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
            stdin bytes or file contents.  Arguments too large for a header
            (a long command, a big environment) travel at the start of the
            payload instead: ``ap`` is their length in bytes, ``a`` absent.
``out``     guest → host: ``id``, ``s`` (1 stdout, 2 stderr); payload is data.
``res``     guest → host: ``id``, ``ok``; ``r`` (result) or ``e``
            (``code``, ``msg``, ``details``); payload optional.
``cancel``  host → guest: ``id``.  The guest stops the call and still answers
            with ``res``.
``win``     host → guest: ``id``, ``n``: ``n`` more bytes of output may be sent.
            Output is flow-controlled per call so a slow reader holds back one
            process, never the whole channel.  (Guest → host, for calls that
            take ``data``: ``n`` more bytes of input may be sent.)
``data``    host → guest: ``id``; payload is input for a running call (a
            forwarded connection); ``eof: true`` ends it.
"""

from __future__ import annotations

import json
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
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

# Text editing, the memory store and persistent interpreters (guest extensions
# ``edit`` and ``kernel``).  Edits take a ``store`` argument: absent for files
# under the allowed roots, ``"memories"`` for the memory store at /memories.
OP_EDIT_VIEW = "edit.view"
OP_EDIT_CREATE = "edit.create"
OP_EDIT_STR_REPLACE = "edit.str_replace"
OP_EDIT_INSERT = "edit.insert"
OP_EDIT_UNDO = "edit.undo"
OP_EDIT_DELETE = "edit.delete"
OP_EDIT_RENAME = "edit.rename"
OP_KERNEL_RUN = "kernel.run"
OP_KERNEL_RESTART = "kernel.restart"
E_NO_MATCH = "no_match"
E_AMBIGUOUS = "ambiguous"
E_BINARY = "binary"
E_BAD_RANGE = "bad_range"
E_NO_HISTORY = "no_history"
E_STORE_FULL = "store_full"

# The desktop and port forwarding (guest extensions ``desktop`` and ``net``).
# A forwarded connection also carries bytes host -> guest: ``data`` frames
# (``id``; payload; ``eof: true`` half-closes), flow-controlled like output but
# the other way: the host may send ``INPUT_WINDOW`` bytes, and the guest grants
# more with ``win`` frames of its own as it writes them to the socket.  The
# first ``out`` frame of a connection, on ``STREAM_CONTROL`` and empty, says it
# is established.
DATA = "data"
INPUT_WINDOW = 2 << 20
STREAM_CONTROL = 0
OP_DESKTOP_START = "desktop.start"
OP_DESKTOP_STOP = "desktop.stop"
OP_DESKTOP_STATUS = "desktop.status"
OP_DESKTOP_SCREENSHOT = "desktop.screenshot"
OP_DESKTOP_INPUT = "desktop.input"
OP_DESKTOP_CURSOR = "desktop.cursor"
OP_DESKTOP_VNC = "desktop.vnc"
OP_DESKTOP_NOVNC = "desktop.novnc"
OP_NET_CONNECT = "net.connect"
E_DESKTOP = "desktop"

# Streamed transfers (guest extension ``transfer``): files of any size and whole folders
# (tar streams).  Input follows the request as ``data`` frames, output comes as ``out``
# frames on stdout, both flow-controlled; the result is an ``exec`` result whose last
# stderr line is the transfer's JSON verdict.
OP_TRANSFER_WRITE = "transfer.write"
OP_TRANSFER_READ = "transfer.read"
OP_TRANSFER_PUT_DIR = "transfer.put_dir"
OP_TRANSFER_GET_DIR = "transfer.get_dir"

ERROR_CODES = {
    E_BAD_REQUEST: "the request's arguments are missing or invalid",
    E_UNKNOWN_OP: "the guest does not implement the operation",
    E_PATH_NOT_ALLOWED: "the path is outside the allowed roots or escapes them",
    E_TOO_LARGE: "a file or an output is over its size cap",
    E_NOT_FOUND: "no such file, directory, shell or interpreter",
    E_EXISTS: "the path already exists",
    E_IS_DIRECTORY: "the path is a directory where a file was expected",
    E_NOT_DIRECTORY: "the path is not a directory where one was expected",
    E_PERMISSION: "the sandbox user may not do that",
    E_BUSY: "the shell or interpreter is already running a command",
    E_INTERNAL: "the guest failed in a way it did not expect",
    E_NO_MATCH: "the text to replace does not occur in the file",
    E_AMBIGUOUS: "the text to replace occurs more than once",
    E_BINARY: "the file is not UTF-8 text",
    E_BAD_RANGE: "a line number or range is outside the file",
    E_NO_HISTORY: "there is no edit to undo",
    E_STORE_FULL: "the memory store is over its quota",
    E_DESKTOP: "the X desktop failed or is not running",
}
"""Every error code a ``res`` frame may carry, with what it means: the one table both
sides use (the guest raises only these; the host maps each to an exception)."""


class FrameError(ValueError):
    """A frame is malformed or over the size limits."""


class UnsendableText(FrameError):
    """Text that JSON over UTF-8 cannot carry (a lone surrogate)."""


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """Serialise one frame; ``FrameError`` if it cannot be (too large, not Unicode)."""
    try:
        head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsendableText(f"the frame holds text that is not valid Unicode: {exc}") from None
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
        buf = self._buf
        offset = 0
        # Walk the buffer with an offset and trim it once: trimming after every
        # frame would copy the rest of a large read once per small frame in it.
        while len(buf) - offset >= HEADER.size:
            head_len, payload_len = HEADER.unpack_from(buf, offset)
            if head_len > MAX_HEADER_BYTES or payload_len > MAX_PAYLOAD_BYTES:
                raise FrameError(
                    f"frame announces header {head_len} / payload {payload_len} bytes, over the "
                    f"limits {MAX_HEADER_BYTES} / {MAX_PAYLOAD_BYTES}"
                )
            start = offset + HEADER.size
            end = start + head_len + payload_len
            if len(buf) < end:
                break
            try:
                header = json.loads(bytes(buf[start : start + head_len]))
            except ValueError as exc:
                raise FrameError(f"frame header is not JSON: {exc}") from None
            if not isinstance(header, dict) or "k" not in header:
                raise FrameError("frame header must be an object with a 'k' field")
            frames.append((header, bytes(buf[start + head_len : end])))
            offset = end
        if offset:
            del buf[:offset]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buf)


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


ARGS_IN_HEADER = 64 << 10
"""Arguments whose JSON is longer than this travel in the payload (``ap``)."""


def request(call_id: int, op: str, args: dict[str, Any], payload: bytes = b"") -> bytes:
    """A request frame; large arguments go at the start of the payload (``ap``).

    Raises ``FrameError`` for text that cannot be sent (a lone surrogate) or a
    frame over the limits.
    """
    try:
        text = json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsendableText(f"the arguments hold text that is not valid Unicode: {exc}") from None
    if len(text) <= ARGS_IN_HEADER:
        return encode({"k": REQUEST, "id": call_id, "op": op, "a": args}, payload)
    return encode({"k": REQUEST, "id": call_id, "op": op, "ap": len(text)}, text + payload)


def request_args(header: dict[str, Any], payload: bytes) -> tuple[Any, bytes]:
    """A request's arguments and its own payload, wherever the arguments travelled."""
    size = header.get("ap")
    if size is None:
        return header.get("a") or {}, payload
    if not isinstance(size, int) or not 0 <= size <= len(payload):
        raise FrameError(f"request argument length {size!r} does not fit its payload")
    try:
        return json.loads(payload[:size]), payload[size:]
    except ValueError as exc:
        raise FrameError(f"request arguments in the payload are not JSON: {exc}") from None


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


def data(call_id: int, payload: bytes, *, eof: bool = False) -> bytes:
    header: dict[str, Any] = {"k": DATA, "id": call_id}
    if eof:
        header["eof"] = True
    return encode(header, payload)
