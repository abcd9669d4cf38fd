"""The net extension: a TCP connection to a port inside the sandbox, carried by the channel.

``net.connect`` opens a connection from the guest to a loopback port of the
sandbox (the VNC server of the live view, a dev server...) and turns the
call into a byte pipe: what the socket sends goes to the host as ``out``
frames under the call's output window, what the host sends arrives as
``data`` frames and is written to the socket, and the guest grants the host
more input credit with ``win`` frames as the socket drains.  It needs no
network in the sandbox, only the channel.  The first ``out`` frame, on
stream 0 and empty, says the connection is established.

Must not: connect anywhere but the sandbox's own loopback (this is a port
forward, not a proxy), or buffer more than the input window it granted.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from typing import Any, Dict, Optional

from . import protocol
from .calls import RunningCall
from .errors import CallError
from .loop import Timer
from .pipes import OutputSink

_GRANT_BATCH = 32 * 1024


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConnectCall(RunningCall):
    """One forwarded connection, for the life of one call."""

    def __init__(self, guest: Any, call_id: int, args: dict) -> None:
        host = str(args.get("host") or "127.0.0.1")
        port = args.get("port")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise CallError(protocol.E_BAD_REQUEST, "net.connect needs 'port' (1-65535)")
        if not _loopback(host):
            raise CallError(
                protocol.E_BAD_REQUEST,
                "net.connect forwards ports of the sandbox itself: the host must be a loopback "
                "address such as 127.0.0.1, not %r" % host,
            )
        super().__init__(guest.loop, call_id, guest.send, guest.call_done)
        self.guest = guest
        self.address = (host if host != "localhost" else "127.0.0.1", port)
        self.sink = OutputSink(
            call_id, guest.send, int(args.get("window", protocol.DEFAULT_WINDOW)), 1 << 62
        )
        self.sink.on_credit = self._resume
        self.inbox = bytearray()
        self.owed = 0
        self.eof_from_host = False
        self.connected = False
        self.bytes_in = 0
        self.bytes_out = 0
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        self.sock: Optional[socket.socket] = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timer: Optional[Timer] = self.later(
            float(args.get("timeout", 10.0)), self._connect_timeout
        )
        guest.calls[call_id] = self
        code = self.sock.connect_ex(self.address)
        if code in (0, errno.EINPROGRESS, errno.EAGAIN):
            self.loop.add_writer(self.sock.fileno(), self._connect_done)
        else:
            self._refused(code)

    # -- connecting ---------------------------------------------------------------

    def _connect_done(self) -> None:
        assert self.sock is not None
        self.loop.remove_writer(self.sock.fileno())
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._refused(code)
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.connected = True
        self.guest.send(protocol.output(self.call_id, protocol.STREAM_CONTROL, b""))
        self._resume()
        self._flush()

    def _refused(self, code: int) -> None:
        self.fail(
            protocol.E_NOT_FOUND,
            "cannot connect to %s:%d in the sandbox (%s); is the server running and listening "
            "there?" % (self.address[0], self.address[1], errno.errorcode.get(code, code)),
        )

    def _connect_timeout(self) -> None:
        self.timer = None
        self.fail(
            protocol.E_NOT_FOUND,
            "connecting to %s:%d in the sandbox timed out" % self.address,
        )

    # -- socket to host -------------------------------------------------------------

    def _resume(self) -> None:
        if self.sock is not None and self.connected and not self.sink.blocked:
            self.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        if self.sock is None:
            return
        try:
            data = self.sock.recv(self.sink.read_size())
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._finish()
            return
        self.bytes_out += len(data)
        self.sink.emit(protocol.STDOUT, data)
        if self.sink.blocked:
            self.loop.remove_reader(self.sock.fileno())

    # -- host to socket ---------------------------------------------------------------

    def feed(self, payload: bytes, eof: bool) -> None:
        """Bytes (or the end of them) from the host for the socket."""
        if self.finished:
            return
        if len(self.inbox) + len(payload) > protocol.INPUT_WINDOW + _GRANT_BATCH:
            self.fail(protocol.E_BAD_REQUEST, "the host sent more input than its window allowed")
            return
        self.inbox += payload
        self.eof_from_host = self.eof_from_host or eof
        if self.connected:
            self._flush()

    def _flush(self) -> None:
        sock = self.sock
        if sock is None:
            return
        while self.inbox:
            try:
                sent = sock.send(self.inbox)
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(sock.fileno(), self._writable)
                break
            except OSError:
                self._finish()
                return
            del self.inbox[:sent]
            self.bytes_in += sent
            self.owed += sent
        if self.owed and (self.owed >= _GRANT_BATCH or not self.inbox):
            self.guest.send(protocol.window(self.call_id, self.owed))
            self.owed = 0
        if not self.inbox and self.eof_from_host:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _writable(self) -> None:
        if self.sock is not None:
            self.loop.remove_writer(self.sock.fileno())
        self._flush()

    # -- ending -------------------------------------------------------------------------

    def _close_socket(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            fd = self.sock.fileno()
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
            self.sock.close()
            self.sock = None

    def _summary(self) -> Dict[str, Any]:
        return {
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": round(time.monotonic() - self.started, 3),
        }

    def _finish(self, cancelled: bool = False) -> None:
        if self._end():
            value = self._summary()
            value["cancelled"] = cancelled
            self._reply(protocol.result(self.call_id, value))

    def _release(self) -> None:
        self._close_socket()

    def cancel(self) -> None:
        """The host is done with the connection: close it and say how much went through."""
        self._finish(cancelled=True)

    def _abandon(self) -> None:
        self._end()


def register(guest: Any) -> None:
    def connect(call_id: int, args: dict, payload: bytes) -> None:
        ConnectCall(guest, call_id, args)

    guest.handlers[protocol.OP_NET_CONNECT] = connect
