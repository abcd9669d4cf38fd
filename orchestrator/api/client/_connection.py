"""One keep-alive HTTP/1.1 connection over a blocking socket: the transport of ``SbxClient``.

Standard library only, and lean on purpose: ``sbx run`` against a server
imports it before anything else, and a request costs the socket calls and
little more (``http.client`` parses every response head with the e-mail
parser, about 0.1 ms; an async client costs its event loop).  Requests go
in turn; a response body is read by ``Content-Length``, chunked framing or
to the end of the connection, whole or as a stream of lines.

It must not know the API's routes or error shapes: ``SbxClient`` does.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl

__all__ = ["HttpConnection", "HttpResponse"]

_RECV = 64 * 1024


class HttpResponse(NamedTuple):
    """A response read whole: the status and the body."""

    status: int
    body: bytes


class HttpConnection:
    """Requests to ``url``'s server over one keep-alive connection, opened when first needed.

    ``headers`` go with every request.  A connection the server closed while
    idle is opened again and the request sent once more, as long as no byte
    of its response had arrived.  Errors are ``OSError`` (``ConnectionError``
    when the server hangs up mid-response), ``ValueError`` for a malformed
    response.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        host_header = parts.netloc.rpartition("@")[2]
        fixed = {"Host": host_header, **(headers or {})}
        self._fixed_head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    # -- the connection ---------------------------------------------------------------

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                sock = _tls_context().wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.timeout)
        except BaseException:
            sock.close()
            raise
        self._buffer.clear()
        return sock

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer.clear()

    # -- requests ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Send a request and read its whole response."""
        status, reusable = self._send(method, path, body, headers)
        data = b"".join(self._body(method, status[0], status[1]))
        if not reusable or status[1].get("connection", "").lower() == "close":
            self.close()
        return HttpResponse(status[0], data)

    def stream_lines(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Iterator[bytes]]:
        """Send a request; its status and its body's lines, read as they arrive.

        Read the lines to the end before the next request, or ``close()``.
        """
        (status, response_headers), _ = self._send(method, path, body, headers)
        pieces = self._body(method, status, response_headers)

        def lines() -> Iterator[bytes]:
            pending = b""
            for piece in pieces:
                pending += piece
                *complete, pending = pending.split(b"\n")
                yield from complete
            if pending:
                yield pending
            if response_headers.get("connection", "").lower() == "close":
                self.close()

        return status, lines()

    def stream(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Iterator[bytes]]:
        """Send a body-less request; its status and its body in pieces, as they arrive.

        Read the pieces to the end before the next request, or ``close()``.
        """
        (status, response_headers), _ = self._send(method, path, b"", headers)
        pieces = self._body(method, status, response_headers)

        def body() -> Iterator[bytes]:
            yield from pieces
            if response_headers.get("connection", "").lower() == "close":
                self.close()

        return status, body()

    def send_streamed(
        self,
        method: str,
        path: str,
        chunks: Iterable[bytes],
        headers: Mapping[str, str] | None = None,
        *,
        length: int | None = None,
    ) -> HttpResponse:
        """Send a body made as it is sent (``Content-Length`` when ``length`` is known,
        chunked otherwise); the whole response.

        A streamed body cannot be sent twice, so it goes on a fresh connection.  A
        server that answers early (an error) and stops reading is heard all the same.
        """
        self.close()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        framing = (
            f"Content-Length: {length}\r\n"
            if length is not None
            else "Transfer-Encoding: chunked\r\n"
        )
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n{self._fixed_head}{extra}{framing}\r\n"
        sock = self._sock = self._connect()
        try:
            sock.sendall(head.encode("latin-1"))
            for chunk in chunks:
                if chunk and length is None:
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                elif chunk:
                    sock.sendall(chunk)
            if length is None:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer says why
        except BaseException:
            self.close()
            raise
        try:
            status, response_headers = self._read_head()
            data = b"".join(self._body(method, status, response_headers))
        finally:
            self.close()
        return HttpResponse(status, data)

    def _send(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str] | None
    ) -> tuple[tuple[int, dict[str, str]], bool]:
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT") else ""
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n{self._fixed_head}{extra}{length}\r\n"
        message = head.encode("latin-1") + body
        reused = self._sock is not None
        try:
            return self._exchange(message), True
        except _StaleConnection:
            if not reused:
                raise ConnectionError("the server closed the connection before answering") from None
            self.close()  # an idle keep-alive connection the server had closed: once more
            return self._exchange(message), True

    def _exchange(self, message: bytes) -> tuple[int, dict[str, str]]:
        if self._sock is None:
            self._sock = self._connect()
        try:
            self._sock.sendall(message)
            return self._read_head()
        except _StaleConnection:
            raise
        except BaseException:
            self.close()
            raise

    def _read_head(self) -> tuple[int, dict[str, str]]:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            while end < 0:
                if not self._fill():
                    if not self._buffer:
                        raise _StaleConnection
                    raise ConnectionError("the server closed the connection mid-response")
                end = self._buffer.find(b"\r\n\r\n")
            lines = self._buffer[:end].decode("latin-1").split("\r\n")
            del self._buffer[: end + 4]
            try:
                status = int(lines[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                raise ValueError(f"not an HTTP response: {lines[0][:80]!r}") from None
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if not 100 <= status < 200:
                return status, headers
            # An interim response (100 Continue): the real one follows.

    def _body(self, method: str, status: int, headers: dict[str, str]) -> Iterator[bytes]:
        """The response body in pieces, as its framing says."""
        if method == "HEAD" or status in (204, 304):
            return iter(())
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._chunked()
        if "content-length" in headers:
            return self._sized(int(headers["content-length"]))
        return self._until_close()

    def _sized(self, length: int) -> Iterator[bytes]:
        while length > 0:
            if not self._buffer and not self._fill():
                self.close()
                raise ConnectionError("the server closed the connection mid-response")
            piece = bytes(self._buffer[:length])
            del self._buffer[: len(piece)]
            length -= len(piece)
            yield piece

    def _chunked(self) -> Iterator[bytes]:
        while True:
            size_line = self._line()
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self._line():  # trailers, up to the blank line
                    pass
                return
            yield from self._sized(size)
            self._line()  # the CRLF after the chunk

    def _until_close(self) -> Iterator[bytes]:
        while self._buffer or self._fill():
            piece = bytes(self._buffer)
            self._buffer.clear()
            yield piece
        self.close()

    def _line(self) -> bytes:
        end = self._buffer.find(b"\r\n")
        while end < 0:
            if not self._fill():
                self.close()
                raise ConnectionError("the server closed the connection mid-response")
            end = self._buffer.find(b"\r\n")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _fill(self) -> bool:
        """Read what the server sent next into the buffer; ``False`` at its end."""
        assert self._sock is not None
        chunk = self._sock.recv(_RECV)
        self._buffer += chunk
        return bool(chunk)


class _StaleConnection(ConnectionError):
    """The server closed the connection before a byte of the response."""


def _tls_context() -> ssl.SSLContext:
    import ssl

    return ssl.create_default_context()
