"""A call's output on its way to the host: caps, flow control, and the pipes it comes from.

Each streaming call has one ``OutputSink``: it sends ``out`` frames only
within the credit the host granted (so a slow reader holds back one call,
never the channel) and counts, then drops, what goes past the call's output
cap.  ``PipeReader`` reads a child's pipe while the sink has credit and
stops when it has none; ``PipeWriter`` feeds a child's stdin.  Both are
non-blocking, on the event loop.  Must not: block, buffer beyond one read,
or know what process is on the other end of a pipe.
"""

from __future__ import annotations

import errno
import fcntl
import os

from . import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Callable, Dict, Optional

    from .loop import Loop

    Send = Callable[[bytes], None]

READ_SIZE = 64 * 1024


def set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


class OutputSink:
    """Caps and flow-controls one call's output towards the host.

    ``credit`` is how many bytes the host will still accept; readers stop when
    it runs out and ``on_credit`` restarts them when the host grants more.
    Bytes past ``limit`` per stream are counted and dropped, never sent.
    """

    def __init__(self, call_id: int, send: Send, window: int, limit: int) -> None:
        self.call_id = call_id
        self._send = send
        self.credit = window
        self.limit = limit
        self.sent = {protocol.STDOUT: 0, protocol.STDERR: 0}
        self.total = {protocol.STDOUT: 0, protocol.STDERR: 0}
        self.truncated = {protocol.STDOUT: False, protocol.STDERR: False}
        self.on_credit: Optional[Callable[[], None]] = None

    @classmethod
    def for_call(cls, call_id: int, send: Send, args: dict, defaults: dict) -> "OutputSink":
        """The sink of a call, sized by its ``window``/``max_output`` or the guest's defaults."""
        return cls(
            call_id,
            send,
            int(args.get("window", protocol.DEFAULT_WINDOW)),
            int(args.get("max_output", defaults.get("max_output", 16 << 20))),
        )

    @property
    def blocked(self) -> bool:
        return self.credit <= 0

    def read_size(self) -> int:
        return max(1, min(READ_SIZE, self.credit))

    def emit(self, stream: int, data: bytes) -> None:
        self.total[stream] += len(data)
        room = self.limit - self.sent[stream]
        if room <= 0:
            self.truncated[stream] = True
            return
        if len(data) > room:
            data = data[:room]
            self.truncated[stream] = True
        self.sent[stream] += len(data)
        self.credit -= len(data)
        self._send(protocol.output(self.call_id, stream, data))

    def grant(self, credit: int) -> None:
        was_blocked = self.blocked
        self.credit += credit
        if was_blocked and not self.blocked and self.on_credit is not None:
            self.on_credit()

    def summary(self) -> Dict[str, object]:
        return {
            "stdout_bytes": self.total[protocol.STDOUT],
            "stderr_bytes": self.total[protocol.STDERR],
            "stdout_truncated": self.truncated[protocol.STDOUT],
            "stderr_truncated": self.truncated[protocol.STDERR],
            "truncated": self.truncated[protocol.STDOUT] or self.truncated[protocol.STDERR],
        }


class PipeReader:
    """Reads one pipe into a sink while the sink has credit."""

    def __init__(
        self, loop: Loop, fd: int, stream: int, sink: OutputSink, on_eof: Callable[[], None]
    ) -> None:
        self.loop = loop
        self.fd: Optional[int] = fd
        self.stream = stream
        self.sink = sink
        self.on_eof = on_eof
        self.on_data: Optional[Callable[[], None]] = None
        set_nonblocking(fd)
        self.resume()

    def resume(self) -> None:
        if self.fd is not None and not self.sink.blocked:
            self.loop.add_reader(self.fd, self._readable)

    def pause(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)

    def _readable(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, self.sink.read_size())
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return
            data = b""
        if not data:
            self.close()
            self.on_eof()
            return
        self.sink.emit(self.stream, data)
        if self.sink.blocked:
            self.pause()
        if self.on_data is not None:
            self.on_data()

    def drain_ready(self) -> None:
        """Read whatever is already in the pipe, without waiting for more."""
        while self.fd is not None and not self.sink.blocked:
            before = self.sink.total[self.stream]
            self._readable()
            if self.sink.total[self.stream] == before:
                return

    def close(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


class RequestPipe:
    """Writes requests (a shell's commands, an interpreter's cells) into a process's pipe
    without ever blocking; what the pipe cannot take now follows from the loop.

    The process may not be reading at all -- user code can stop it with SIGSTOP or
    keep it busy -- and a blocked write would freeze the whole guest, the
    heartbeat with it; the call's own timeout ends such a process instead.
    """

    def __init__(self, loop: Loop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.unsent = memoryview(b"")
        """Bytes the pipe has not taken yet."""
        set_nonblocking(fd)

    def write(self, data: bytes) -> None:
        """Start writing ``data``; ``OSError`` when the reader is gone (EPIPE)."""
        self.unsent = memoryview(data)
        self._write_unsent()

    def _write_unsent(self) -> None:
        try:
            while self.unsent:
                self.unsent = self.unsent[os.write(self.fd, self.unsent) :]
        except BlockingIOError:
            self.loop.add_writer(self.fd, self._write_more)
            return
        self.loop.remove_writer(self.fd)

    def _write_more(self) -> None:
        try:
            self._write_unsent()
        except OSError:
            # The process closed its end (it died): its exit watcher reports that.
            self.stop()

    def stop(self) -> None:
        """Write no more (before the descriptor is closed)."""
        self.unsent = memoryview(b"")
        self.loop.remove_writer(self.fd)


STREAM_PIPE_SIZE = 1 << 20
"""The pipe of streamed input: a quarter of the 64 KiB default's wake-ups per byte
(the unprivileged maximum, ``/proc/sys/fs/pipe-max-size``, is 1 MiB by default)."""


def _widen(fd: int, size: int) -> int:
    """Ask for a pipe of ``size`` bytes; what it holds now (a full one stays as it was)."""
    try:
        return max(READ_SIZE, fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size))
    except (OSError, AttributeError):
        return READ_SIZE


class PipeWriter:
    """Feeds bytes to a process's stdin without blocking, then closes it.

    The bytes come whole with the request, or -- for input too large for one
    frame -- as the host's ``data`` frames (``feed``), flow-controlled: the
    host may send ``protocol.INPUT_WINDOW`` bytes ahead, and every
    ``GRANT_BATCH`` bytes written to the pipe are granted back with a ``win``
    frame, so the guest never holds more than a window of it.
    """

    GRANT_BATCH = 256 * 1024

    def __init__(
        self,
        loop: Loop,
        fd: int,
        data: bytes,
        *,
        streamed: bool = False,
        grant: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.loop = loop
        self.fd: Optional[int] = fd
        self.data = bytearray(data)
        self.streamed = streamed
        self.eof = not streamed
        self._grant = grant
        self.owed = 0
        self.overrun = False
        """The host sent more than its window: a broken or hostile host; input stops."""
        set_nonblocking(fd)
        self.write_size = READ_SIZE
        if streamed:
            self.write_size = _widen(fd, STREAM_PIPE_SIZE)
        self._arm()

    def feed(self, payload: bytes, eof: bool) -> None:
        """More input from the host (``data`` frames), or its end."""
        if self.fd is None:
            return
        if len(self.data) + len(payload) > protocol.INPUT_WINDOW + self.GRANT_BATCH:
            self.overrun = True
            self.close()
            return
        self.data += payload
        self.eof = self.eof or eof
        self._arm()

    def _arm(self) -> None:
        if self.fd is None:
            return
        if self.data:
            self.loop.add_writer(self.fd, self._writable)
        elif self.eof:
            self.close()

    def _writable(self) -> None:
        if self.fd is None:
            return
        try:
            with memoryview(self.data) as view, view[: self.write_size] as head:
                n = os.write(self.fd, head)
        except BlockingIOError:
            return
        except OSError:
            self.close()  # the process closed its stdin (EPIPE): it does not want more
            return
        del self.data[:n]
        if self.streamed and self._grant is not None:
            self.owed += n
            if self.owed >= self.GRANT_BATCH or not self.data:
                self._grant(self.owed)
                self.owed = 0
        if not self.data:
            self.loop.remove_writer(self.fd)
            if self.eof:
                self.close()

    def close(self) -> None:
        if self.fd is not None:
            self.loop.remove_writer(self.fd)
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        self.data = bytearray()
