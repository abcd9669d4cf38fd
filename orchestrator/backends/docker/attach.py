"""The container's stdin/stdout as a trio stream, over the Engine API's attach.

docker-py's ``attach_socket`` hands back a blocking socket; reading it from
trio would need a thread per sandbox.  Instead this module opens its own
connection to the engine (unix socket or TCP, with TLS when DOCKER_TLS_VERIFY
is set), sends ``POST /containers/{id}/attach`` with ``Upgrade: tcp``, and
after the ``101`` answer speaks the raw stream with trio's own sockets: no
thread on the hot path.

Without a TTY the engine multiplexes stdout and stderr into frames with an
8-byte header (stream id, three zero bytes, big-endian length).
``AttachedStream`` strips that framing: ``receive_some`` yields stdout bytes
(the guest's protocol), stderr goes to a callback (the guest's log lines).
Writes go to stdin unframed.  Closing the stream closes stdin, which the
guest takes as its cue to exit (the dead man's switch).
"""

from __future__ import annotations

import os
import ssl
import struct
from urllib.parse import urlparse

import trio

from orchestrator.backends.base import StderrSink
from orchestrator.errors import EngineError, EngineUnavailable

__all__ = ["API_VERSION", "AttachedStream", "attach", "connect_engine", "docker_host"]

_FRAME = struct.Struct(">BxxxL")
API_VERSION = "v1.41"
_MAX_HEAD = 64 * 1024


def docker_host(configured: str | None) -> str:
    return configured or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _tls_context() -> ssl.SSLContext | None:
    if os.environ.get("DOCKER_TLS_VERIFY", "") in ("", "0"):
        return None
    cert_path = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    context = ssl.create_default_context(cafile=os.path.join(cert_path, "ca.pem"))
    context.load_cert_chain(os.path.join(cert_path, "cert.pem"), os.path.join(cert_path, "key.pem"))
    return context


async def connect_engine(
    url: str, ssl_context: ssl.SSLContext | None = None
) -> tuple[trio.abc.Stream, str]:
    """A connection to the engine at ``url``; over TCP, TLS with ``ssl_context`` when
    given, else as DOCKER_TLS_VERIFY / DOCKER_CERT_PATH say."""
    parsed = urlparse(url)
    try:
        if parsed.scheme in ("unix", "http+unix"):
            return await trio.open_unix_socket(parsed.path), "localhost"
        if parsed.scheme in ("tcp", "http", "https"):
            host = parsed.hostname or "localhost"
            port = parsed.port or (2376 if parsed.scheme == "https" else 2375)
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            context = ssl_context or _tls_context()
            if context is not None or parsed.scheme == "https":
                stream = trio.SSLStream(
                    stream, context or ssl.create_default_context(), server_hostname=host
                )
                await stream.do_handshake()
            return stream, f"{host}:{port}"
    except OSError as exc:
        raise EngineUnavailable(
            f"cannot reach the Docker Engine at {url} to attach ({exc}); start the engine or fix "
            "DOCKER_HOST / engine.docker_host"
        ) from None
    raise EngineError(
        f"DOCKER_HOST {url!r} uses a scheme sbx cannot attach over; use unix:// or tcp:// "
        "(an ssh:// engine can be reached through `ssh -L` to a local socket)"
    )


class AttachedStream(trio.abc.Stream):
    """stdin (raw) and stdout (demultiplexed) of one container."""

    def __init__(self, raw: trio.abc.Stream, leftover: bytes, on_stderr: StderrSink) -> None:
        self._raw = raw
        self._buf = bytearray(leftover)
        self._on_stderr = on_stderr
        self._eof = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._raw.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._raw.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` of stdout; ``b""`` at end of stream."""
        while True:
            out = self._take_stdout(max_bytes)
            if out:
                return out
            if self._eof:
                return b""
            chunk = await self._raw.receive_some(1 << 20)
            if not chunk:
                self._eof = True
                if self._buf:
                    self._buf.clear()  # a torn final frame: nothing useful in it
                continue
            self._buf += chunk

    def _take_stdout(self, max_bytes: int | None) -> bytes:
        """Consume whole frames from the buffer, returning the stdout bytes among them.

        Frames are walked with an offset and the buffer is trimmed once: the
        engine sends output in small frames, and trimming after each one would
        move the rest of a large read again and again.
        """
        out = bytearray()
        buf = self._buf
        limit = max_bytes or (1 << 20)
        offset = 0
        with memoryview(buf) as view:
            while len(buf) - offset >= _FRAME.size and len(out) < limit:
                stream_id, length = _FRAME.unpack_from(buf, offset)
                end = offset + _FRAME.size + length
                if len(buf) < end:
                    break
                if stream_id == 2:
                    self._on_stderr(bytes(view[offset + _FRAME.size : end]))
                else:
                    out += view[offset + _FRAME.size : end]
                offset = end
        if offset:
            del buf[:offset]
        return bytes(out)

    async def send_eof(self) -> None:
        raw = self._raw
        if isinstance(raw, trio.SocketStream):
            await raw.send_eof()

    async def aclose(self) -> None:
        await self._raw.aclose()


async def attach(
    container_id: str,
    on_stderr: StderrSink,
    *,
    host: str | None = None,
    timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AttachedStream:
    """Attach to a created (not yet started) container's stdio."""
    url = docker_host(host)
    with trio.fail_after(timeout):
        raw, host_header = await connect_engine(url, ssl_context)
        try:
            request = (
                f"POST /{API_VERSION}/containers/{container_id}/attach"
                "?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                f"Host: {host_header}\r\n"
                "Content-Type: text/plain\r\n"
                "Connection: Upgrade\r\n"
                "Upgrade: tcp\r\n"
                "\r\n"
            ).encode()
            await raw.send_all(request)
            head = bytearray()
            while b"\r\n\r\n" not in head:
                chunk = await raw.receive_some(4096)
                if not chunk:
                    raise EngineError(
                        f"the engine closed the attach connection to {container_id}; "
                        "the container may have been removed"
                    )
                head += chunk
                if len(head) > _MAX_HEAD:
                    raise EngineError("the engine's attach answer has oversized headers")
            header_block, _, rest = bytes(head).partition(b"\r\n\r\n")
            status_line = header_block.split(b"\r\n", 1)[0].decode("latin-1")
            parts = status_line.split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if status == 404:
                raise EngineError(f"cannot attach: no container {container_id} on the engine")
            if status not in (101, 200):
                raise EngineError(
                    f"the engine refused to attach to {container_id}: {status_line}; "
                    f"{rest[:300].decode('utf-8', 'replace')}"
                )
        except BaseException:
            with trio.CancelScope(shield=True):
                await raw.aclose()
            raise
    return AttachedStream(raw, rest, on_stderr)
