"""One persistent, multiplexed channel to a sandbox's guest (decision 1).

The channel owns a byte stream to the guest (the container's attached
stdin/stdout, or a pipe in tests), a reader task that routes incoming frames
to calls by id, and a lock that keeps outgoing frames whole.  Calls are cheap:
a no-op costs one frame each way, no process and no HTTP.

It knows nothing about containers or tools, and it depends on nothing but
trio, structlog and ``orchestrator.protocol``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio

from orchestrator import protocol
from orchestrator.errors import (
    InputTooLarge,
    InvalidInput,
    ProtocolError,
    SandboxGone,
    guest_error_from_wire,
)

__all__ = ["CallStream", "GuestChannel"]

log = structlog.get_logger("orchestrator.channel")

_SLACK = 64 * 1024
"""How far past its window a call's buffer may run (one guest read)."""

_FRAME_SEND_DEADLINE = 10.0
"""A frame the guest does not take within this long means the guest stopped serving."""

CANCEL_SEND_BUDGET = 0.5
"""How long a ``cancel`` frame may take to send once a call's deadline has passed."""


class CallStream:
    """One in-flight call: its output chunks as they arrive, then its result.

    Output is buffered up to the call's window; the buffer is drained by
    ``receive`` and every half window consumed is granted back to the guest,
    so memory stays bounded however slow the consumer is.
    """

    def __init__(self, channel: GuestChannel, call_id: int, op: str, window: int) -> None:
        self.channel = channel
        self.id = call_id
        self.op = op
        self.window = window
        self._chunks: collections.deque[tuple[int, bytes]] = collections.deque()
        self._buffered = 0
        self._consumed = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._result: dict[str, Any] | None = None
        self._payload = b""
        self._error: BaseException | None = None
        self.done = trio.Event()
        self._input_credit = protocol.INPUT_WINDOW
        """Bytes of ``data`` the guest will still take (calls that accept input)."""

    # Called by the channel's reader task -------------------------------------

    def _push(self, stream: int, data: bytes) -> None:
        self._buffered += len(data)
        if self._buffered > self.window + _SLACK:
            raise ProtocolError(
                f"guest sent {self._buffered} bytes of output for call {self.id} with a window "
                f"of {self.window}; rebuild the images so the guest matches (`sbx images build`)"
            )
        self._chunks.append((stream, data))
        self._lot.unpark_all()

    def _finish(self, header: dict[str, Any], payload: bytes) -> None:
        if header.get("ok"):
            result = header.get("r")
            self._result = result if isinstance(result, dict) else {}
            self._payload = payload
        else:
            body = header.get("e") or {}
            self._error = guest_error_from_wire(
                str(body.get("code", "internal")),
                str(body.get("msg", "the sandbox reported an error without a message")),
                body.get("details"),
            )
        self.done.set()
        self._lot.unpark_all()

    def _fail(self, exc: BaseException) -> None:
        if not self.done.is_set():
            self._error = exc
            self.done.set()
        self._lot.unpark_all()

    def _grant_input(self, credit: int) -> None:
        self._input_credit += credit
        self._lot.unpark_all()

    # Used by the caller ---------------------------------------------------------

    async def receive(self) -> tuple[int, bytes] | None:
        """The next ``(stream, data)`` chunk, or ``None`` once the call has ended."""
        while not self._chunks:
            if self.done.is_set():
                return None
            await self._lot.park()
        stream, data = self._chunks.popleft()
        self._buffered -= len(data)
        self._consumed += len(data)
        if self._consumed >= self.window // 2 and not self.done.is_set():
            credit, self._consumed = self._consumed, 0
            await self.channel._send(protocol.window(self.id, credit))
        return stream, data

    async def send(self, data: bytes) -> None:
        """Input for the call (a forwarded connection), within the credit the guest grants."""
        view = memoryview(data)
        while view:
            while self._input_credit <= 0:
                if self.done.is_set():
                    raise trio.BrokenResourceError(f"call {self.id} ({self.op}) has ended")
                await self._lot.park()
            if self.done.is_set():
                raise trio.BrokenResourceError(f"call {self.id} ({self.op}) has ended")
            size = min(len(view), self._input_credit, _SLACK)
            self._input_credit -= size
            await self.channel._send(protocol.data(self.id, bytes(view[:size])))
            view = view[size:]

    async def send_eof(self) -> None:
        """No more input: the guest half-closes what the call feeds."""
        if not self.done.is_set():
            await self.channel._send(protocol.data(self.id, b"", eof=True))

    def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            item = await self.receive()
            if item is None:
                return
            yield item

    async def result(self) -> tuple[dict[str, Any], bytes]:
        """Wait for the call to end; raise the guest's error if it failed."""
        await self.done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result, self._payload


class GuestChannel:
    """Frames over one stream, with calls multiplexed by id.

    Use ``async with channel.open(nursery)`` style through ``start``: the
    reader runs as a task in a nursery the owner (a session) provides, so it
    dies with the session.
    """

    def __init__(
        self, stream: trio.abc.Stream, *, name: str = "guest", session_id: str | None = None
    ) -> None:
        self._stream = stream
        self.name = name
        self.session_id = session_id
        self._decoder = protocol.FrameDecoder()
        self._send_lock = trio.Lock()
        self._ids = itertools.count(1)
        self._calls: dict[int, CallStream] = {}
        self._closed: BaseException | None = None
        self.closed_event = trio.Event()
        """Set once the channel is closed, for whoever watches the sandbox's health."""
        self.last_received = trio.current_time()
        """When the guest last sent anything (trio's clock): a heartbeat reads it."""
        self._hello = trio.Event()
        self.guest_info: dict[str, Any] = {}
        self.capabilities: frozenset[str] = frozenset()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def close_cause(self) -> BaseException | None:
        """Why the channel closed (the guest's stream ended, a bad frame...), once it has."""
        return self._closed

    async def start(
        self,
        nursery: trio.Nursery,
        *,
        config: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Run the reader in ``nursery`` and complete the version handshake."""
        nursery.start_soon(self._reader)
        await self._send(
            protocol.encode(
                {
                    "k": protocol.HELLO,
                    "v": protocol.PROTOCOL_VERSION,
                    "caps": [],
                    "config": config or {},
                }
            )
        )
        with trio.move_on_after(timeout) as scope:
            await self._hello.wait()
        if scope.cancelled_caught:
            raise SandboxGone(
                f"the sandbox's guest did not greet within {timeout:g} s; the image may be "
                "broken or not an sbx image — rebuild it with `sbx images build`"
            )
        if self._closed is not None and not self.guest_info:
            raise self._closed
        return self.guest_info

    async def _send(self, frame: bytes, *, until: float | None = None) -> None:
        """Write one whole frame, by ``until`` (trio's clock) at the latest.

        The write is shielded: a cancel that arrives half-way through a frame
        would leave the stream unframeable for every later call, so it takes
        effect once the frame is out.  A guest that does not take a frame by
        ``until`` (default: ``_FRAME_SEND_DEADLINE`` seconds from now) has
        stopped serving: the channel is closed rather than left blocked.
        """
        if self._closed is not None:
            raise self._gone()
        async with self._send_lock:
            if self._closed is not None:
                raise self._gone()
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = (
                    trio.current_time() + _FRAME_SEND_DEADLINE if until is None else until
                )
                try:
                    await self._stream.send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self._close_all(self._gone(str(exc)))
                    raise self._gone(str(exc)) from None
            if scope.cancelled_caught:
                gone = self._gone("the guest stopped taking input in time; it is stuck or stopped")
                self._close_all(gone)
                raise gone
        await trio.lowlevel.checkpoint_if_cancelled()

    def _gone(self, detail: str = "") -> SandboxGone:
        if isinstance(self._closed, SandboxGone):
            return self._closed
        extra = f" ({detail})" if detail else ""
        return SandboxGone(
            f"the channel to sandbox {self.name} is closed{extra}: the sandbox stopped, was "
            "removed, or ran out of memory; open a new session"
        )

    async def _reader(self) -> None:
        try:
            while True:
                data = await self._stream.receive_some(1 << 20)
                self.last_received = trio.current_time()
                if not data:
                    self._close_all(self._gone("the guest closed its stream"))
                    return
                for header, payload in self._decoder.feed(bytes(data)):
                    self._dispatch(header, payload)
        except protocol.FrameError as exc:
            self._close_all(ProtocolError(f"bad frame from sandbox {self.name}: {exc}"))
        except ProtocolError as exc:
            self._close_all(exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._close_all(self._gone(str(exc)))
        finally:
            self._hello.set()

    def _dispatch(self, header: dict[str, Any], payload: bytes) -> None:
        kind = header.get("k")
        if not self._hello.is_set():
            protocol.check_hello(header)
            self.guest_info = dict(header.get("guest") or {})
            self.capabilities = frozenset(header.get("caps") or ())
            self._hello.set()
            return
        call = self._calls.get(header.get("id", -1))
        if call is None:
            return  # a late frame for an abandoned call
        if kind == protocol.OUTPUT:
            call._push(int(header.get("s", protocol.STDOUT)), payload)
        elif kind == protocol.RESULT:
            self._calls.pop(call.id, None)
            call._finish(header, payload)
        elif kind == protocol.WINDOW:
            call._grant_input(int(header.get("n", 0)))
        else:
            log.debug(
                "unexpected frame from guest",
                kind=kind,
                sandbox=self.name,
                session_id=self.session_id,
            )

    def _close_all(self, exc: BaseException) -> None:
        if self._closed is None:
            self._closed = exc
        self.closed_event.set()
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call._fail(exc)

    @asynccontextmanager
    async def stream(
        self,
        op: str,
        args: dict[str, Any],
        payload: bytes = b"",
        *,
        window: int = protocol.DEFAULT_WINDOW,
        cancel_grace: float = 5.0,
        deadline: float | None = None,
    ) -> AsyncIterator[CallStream]:
        """Start a call and yield it while its output streams.

        Leaving the block before the call ended (an error, a cancel scope
        firing, a consumer that stops reading) sends ``cancel`` and waits,
        shielded, up to ``cancel_grace`` seconds for the guest to confirm
        the call's processes are gone -- but never past ``deadline`` (trio's
        clock), the latest the whole call may end: past it, the cancel is
        sent and not waited for (a guest that has not answered by then will
        not; the session's heartbeat deals with it).
        """
        if self._closed is not None:
            raise self._gone()
        call_id = next(self._ids)
        if op in (protocol.OP_EXEC, protocol.OP_SHELL_RUN):
            args = {**args, "window": window}
        frame = _request_frame(call_id, op, args, payload)
        call = CallStream(self, call_id, op, window)
        self._calls[call_id] = call
        try:
            await self._send(frame, until=deadline)
            yield call
        finally:
            if not call.done.is_set() and self._closed is None:
                until = trio.current_time() + cancel_grace
                if deadline is not None:
                    until = min(until, deadline)
                await self._cancel_call(call, until)
            self._calls.pop(call_id, None)

    async def _cancel_call(self, call: CallStream, until: float) -> None:
        """Send ``cancel`` and take the call's output until its result, or until ``until``.

        Shielded: it runs while the caller is being cancelled.  The frame
        itself gets a moment even when ``until`` has passed, so the guest
        still hears of the cancel.
        """
        send_by = max(until, trio.current_time() + CANCEL_SEND_BUDGET)
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = send_by
            try:
                await self._send(protocol.cancel(call.id), until=send_by)
                scope.deadline = until
                # Keep taking output so the guest is never stuck on the window.
                while await call.receive() is not None:
                    pass
            except SandboxGone:
                pass

    async def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        payload: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """A request whose answer is one result (ping, file operations).

        The hot path of every small call, so it avoids ``stream``'s context
        manager; an interrupted call is cancelled in the guest all the same.
        """
        if self._closed is not None:
            raise self._gone()
        call_id = next(self._ids)
        frame = _request_frame(call_id, op, args or {}, payload)
        call = CallStream(self, call_id, op, protocol.DEFAULT_WINDOW)
        self._calls[call_id] = call
        try:
            if timeout is None:
                await self._send(frame)
                await call.done.wait()
            else:
                with trio.fail_after(timeout):
                    await self._send(frame)
                    await call.done.wait()
        finally:
            if not call.done.is_set():
                self._calls.pop(call_id, None)
                if self._closed is None:
                    send_by = trio.current_time() + CANCEL_SEND_BUDGET
                    with trio.CancelScope(shield=True) as scope:
                        scope.deadline = send_by
                        with contextlib.suppress(SandboxGone):
                            await self._send(protocol.cancel(call_id), until=send_by)
        return await call.result()

    async def aclose(self) -> None:
        """Close the stream: the guest sees EOF and exits (the dead man's switch)."""
        self._close_all(self._gone("closed by the orchestrator"))
        with trio.CancelScope(shield=True):
            await self._stream.aclose()


def _request_frame(call_id: int, op: str, args: dict[str, Any], payload: bytes) -> bytes:
    """The request's frame, or the caller's error at once: nothing is sent, nothing waited for."""
    try:
        return protocol.request(call_id, op, args, payload)
    except protocol.UnsendableText as exc:
        raise InvalidInput(
            f"{op}: {exc}; send text that is valid Unicode (decode bytes with a real encoding, "
            "or pass them as bytes where the call takes bytes)"
        ) from None
    except protocol.FrameError as exc:
        raise InputTooLarge(
            f"{op}: the request is larger than one frame can carry ({exc}); send less at once "
            "(files in parts, large input as stdin)",
            limit=protocol.MAX_PAYLOAD_BYTES,
            key="protocol.MAX_PAYLOAD_BYTES",
        ) from None
