"""``GuestClient``: the typed operations of one sandbox's guest, over its channel.

Every call into a sandbox -- from ``Session``, ``Desktop``, the interpreter
and every tool -- goes through here: a request model in, a response model
(or a stream) out.  The client also keeps the bookkeeping every call shares:
a cancel scope per call, so that closing the client cancels them all; a
deadline per call, so a guest that stops answering costs at most that; and
the count of calls in flight, which idle expiry reads.

Must not: know about sessions' lifecycles, tools, the supervisor or the
engine.  It is handed a channel and the limits it needs, nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
from pydantic import BaseModel

from orchestrator import protocol
from orchestrator._exceptions import unwrap_single_exception
from orchestrator.channel import CANCEL_SEND_BUDGET, CallStream, GuestChannel
from orchestrator.errors import OperationTimeout, SandboxGone, SessionClosed
from orchestrator.guest_client import requests as rq
from orchestrator.guest_client import responses as rs
from orchestrator.guest_client.connection import SandboxConnection
from orchestrator.guest_client.exec_stream import (
    STDIN_INLINE,
    ExecStream,
    OutputCallback,
    feed_input,
)
from orchestrator.observe import NullObserver, Observer, Outcome
from orchestrator.results import ExecResult, FileInfo

__all__ = ["CallLimits", "GuestClient"]

EXPLAIN_WAIT = 1.0
"""How long a call that lost its channel waits for the session to say why."""


ResponseT = TypeVar("ResponseT", bound=BaseModel)


@dataclass(frozen=True)
class CallLimits:
    """The deadlines calls run under, resolved from the configuration by the caller."""

    call_timeout: float = 30.0
    """Request/response operations (files, pings) that name no timeout of their own."""
    kill_grace: float = 2.0
    """TERM to KILL for a command's processes; also the slack a stopping call gets."""
    answer_margin: float = 2.0
    """Beyond a command's own timeout and kill grace, how long the host waits for the
    guest's answer: no call outlives ``timeout + kill_grace + answer_margin``, its
    clean-up included."""


class GuestClient:
    """Typed calls into one sandbox. Made by the session once its guest has greeted."""

    def __init__(
        self,
        channel: GuestChannel,
        *,
        label: str,
        limits: CallLimits | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.channel = channel
        self.label = label
        """Names the sandbox in messages (``session 3f2a...``)."""
        self.limits = limits or CallLimits()
        self.observer: Observer = observer or NullObserver()
        self.guest_info: dict[str, Any] = dict(channel.guest_info)
        self.active_calls = 0
        self.last_active = trio.current_time()
        """When a call last started or ended (trio's clock): idle expiry reads it."""
        self._scopes: set[trio.CancelScope] = set()
        self._closed_reason: str | None = None
        self._gone: SandboxGone | None = None
        self._closed = trio.Event()

    def __repr__(self) -> str:
        return f"<GuestClient {self.label}>"

    # -- the calls' shared bookkeeping ------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    def close(self, reason: str, *, gone: SandboxGone | None = None) -> None:
        """Refuse new calls and cancel every call in flight.

        Each raises ``SessionClosed``, or ``gone`` when the sandbox was lost
        (it stopped answering, or died) rather than closed on purpose.
        """
        if self._closed_reason is None:
            self._closed_reason = reason
            self._gone = gone
            self._closed.set()
        for scope in list(self._scopes):
            scope.cancel()

    async def aclose(self) -> None:
        """Close the channel: the guest sees EOF and exits (the dead man's switch)."""
        await self.channel.aclose()

    def _closed_error(self, what: str | None = None) -> SessionClosed | SandboxGone:
        if self._gone is not None:
            return self._gone
        reason = self._closed_reason or "closed"
        if what is None:
            return SessionClosed(f"{self.label} is closed ({reason}); open a new session")
        return SessionClosed(f"{what} was cancelled because {self.label} closed ({reason})")

    @asynccontextmanager
    async def _scope(self, what: str) -> AsyncIterator[GuestChannel]:
        """Run one call: cancellable by ``close`` and counted for idle expiry; a sandbox
        lost under it is reported with its cause (``_explain``).

        Calls run in the caller's task, so log lines about them name the
        sandbox explicitly rather than through context variables (binding
        those costs more than a no-op call itself).
        """
        if self._closed_reason is not None:
            raise self._closed_error()
        self.active_calls += 1
        self.last_active = trio.current_time()
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                yield self.channel
        except SandboxGone as exc:
            raise await self._explain(exc) from None
        finally:
            self._scopes.discard(scope)
            self.active_calls -= 1
            self.last_active = trio.current_time()
        if scope.cancelled_caught:
            raise self._closed_error(what)

    async def _explain(self, exc: SandboxGone) -> SandboxGone:
        """The channel closed under a call: wait a moment for whoever watches the sandbox
        to say why (``close(gone=...)``), and report that rather than the bare closing."""
        if self._gone is None:
            with trio.move_on_after(EXPLAIN_WAIT), trio.CancelScope(shield=True):
                await self._closed.wait()
        return self._gone or exc

    async def call(
        self, request: rq.GuestRequest, payload: bytes = b"", *, timeout: float | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """One request/response operation: the guest's result value and payload.

        On the hot path of every small operation, so one cancel scope serves
        as both the deadline and the handle ``close`` cancels; afterwards
        ``closed`` tells which of the two fired.
        """
        if self._closed_reason is not None:
            raise self._closed_error()
        deadline = self.limits.call_timeout if timeout is None else timeout
        self.active_calls += 1
        scope = trio.CancelScope(deadline=trio.current_time() + deadline)
        self.last_active = scope.deadline - deadline
        self._scopes.add(scope)
        try:
            with scope:
                return await self.channel.call(request.op, request.wire(), payload)
        except SandboxGone as exc:
            raise await self._explain(exc) from None
        finally:
            self._scopes.discard(scope)
            self.active_calls -= 1
            self.last_active = trio.current_time()
        # Only reached when the scope absorbed a cancellation: close() or the deadline.
        if self._closed_reason is not None:
            raise self._closed_error(request.op)
        raise OperationTimeout(
            f"{request.op} in {self.label} got no answer within {deadline:g} s; the sandbox "
            "may be overloaded — retry with a longer timeout or close the session"
        )

    async def _typed(
        self,
        request: rq.GuestRequest,
        model: type[ResponseT],
        payload: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> tuple[ResponseT, bytes]:
        value, data = await self.call(request, payload, timeout=timeout)
        return rs.parse_response(request.op, model, value), data

    @asynccontextmanager
    async def stream(
        self,
        request: rq.GuestRequest,
        payload: bytes = b"",
        *,
        timeout: float,
        window: int = protocol.DEFAULT_WINDOW,
    ) -> AsyncIterator[CallStream]:
        """An operation whose output streams: iterate its chunks, then await its result.

        ``timeout`` bounds the whole call, clean-up included (for a command,
        ``allowance(its timeout)``); the operation's own deadline is the
        guest's to enforce.  Leaving the block early cancels the operation in
        the guest.
        """
        args = request.wire()
        args.setdefault("window", window)
        deadline = trio.current_time() + timeout - CANCEL_SEND_BUDGET
        try:
            async with self._scope(request.op) as channel:
                with trio.fail_at(deadline):
                    async with channel.stream(
                        request.op,
                        args,
                        payload,
                        window=window,
                        cancel_grace=self.limits.kill_grace + 1,
                        deadline=deadline + CANCEL_SEND_BUDGET,
                    ) as call:
                        yield call
        except trio.TooSlowError:
            raise OperationTimeout(
                f"{request.op} in {self.label} got no answer within {timeout:g} s; the sandbox "
                "may be overloaded — retry, or close the session"
            ) from None

    # -- commands ------------------------------------------------------------------

    def allowance(self, timeout: float) -> float:
        """How long the host waits for a command with this ``timeout`` (seconds), in all."""
        return timeout + self.limits.kill_grace + self.limits.answer_margin

    def _command_deadline(self, timeout: float) -> float:
        """When a command's answer is overdue (trio's clock): its cancel still fits the bound."""
        return trio.current_time() + self.allowance(timeout) - CANCEL_SEND_BUDGET

    def _overdue(self, op: str, timeout: float) -> OperationTimeout:
        return OperationTimeout(
            f"{op} in {self.label} was not reported finished within its timeout ({timeout:g} s) "
            f"plus the kill grace ({self.limits.kill_grace:g} s) plus "
            f"{self.limits.answer_margin:g} s; the sandbox is overloaded or its guest is stuck "
            "(the session's heartbeat decides which) — retry, or close the session"
        )

    @asynccontextmanager
    async def exec_stream(
        self,
        request: rq.ExecRequest,
        stdin: bytes | None = None,
        *,
        collect: bool = True,
        window: int = protocol.DEFAULT_WINDOW,
    ) -> AsyncIterator[ExecStream]:
        """Run a command and stream its output; leaving early kills it."""
        started = trio.current_time()
        running: ExecStream | None = None
        outcome: Outcome = "error"
        deadline = self._command_deadline(request.timeout)
        streamed = stdin is not None and len(stdin) > STDIN_INLINE
        if streamed:
            request = request.model_copy(update={"stdin": "stream"})
        try:
            async with self._scope(request.op) as channel:
                with trio.fail_at(deadline):
                    async with channel.stream(
                        request.op,
                        request.wire(),
                        b"" if streamed else stdin or b"",
                        window=window,
                        cancel_grace=self.limits.kill_grace + 1,
                        deadline=deadline + CANCEL_SEND_BUDGET,
                    ) as call:
                        running = ExecStream(call, collect=collect)
                        if not streamed:
                            yield running
                        else:
                            assert stdin is not None
                            with unwrap_single_exception():
                                async with trio.open_nursery() as nursery:
                                    nursery.start_soon(feed_input, call, stdin)
                                    try:
                                        yield running
                                    finally:
                                        nursery.cancel_scope.cancel()
        except trio.TooSlowError:
            outcome = "timeout"
            raise self._overdue(request.op, request.timeout) from None
        except (trio.Cancelled, SessionClosed):
            outcome = "cancelled"
            raise
        finally:
            if running is not None and running.final is not None:
                outcome = "timeout" if running.final.timed_out else "ok"
            self.observer.exec_call(outcome, trio.current_time() - started)

    async def shell(
        self, request: rq.ShellRunRequest, on_output: OutputCallback | None = None
    ) -> ExecResult:
        """A command in a named persistent shell, to its end."""
        deadline = self._command_deadline(request.timeout)
        try:
            async with self._scope("shell") as channel:
                with trio.fail_at(deadline):
                    async with channel.stream(
                        request.op,
                        request.wire(),
                        cancel_grace=self.limits.kill_grace + 1,
                        deadline=deadline + CANCEL_SEND_BUDGET,
                    ) as call:
                        running = ExecStream(call)
                        await running.forward(on_output)
                        return await running.result()
        except trio.TooSlowError:
            raise self._overdue(request.op, request.timeout) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def restart_shell(self, name: str) -> None:
        await self.call(rq.ShellRestartRequest(name=name))

    async def close_shell(self, name: str) -> None:
        await self.call(rq.ShellCloseRequest(name=name))

    async def restart_kernel(self, name: str) -> None:
        await self.call(rq.KernelRestartRequest(name=name))

    # -- files -----------------------------------------------------------------------

    async def read_file(self, request: rq.FileReadRequest) -> bytes:
        _, data = await self.call(request)
        return data

    async def write_file(self, request: rq.FileWriteRequest, data: bytes) -> None:
        await self.call(request, data)

    async def list_files(self, request: rq.FileListRequest) -> list[FileInfo]:
        listing, _ = await self._typed(request, rs.FileListing)
        return listing.entries

    async def stat(self, request: rq.FileStatRequest) -> FileInfo:
        info, _ = await self._typed(request, FileInfo)
        return info

    async def mkdir(self, request: rq.FileMkdirRequest) -> None:
        await self.call(request)

    async def remove(self, request: rq.FileRemoveRequest) -> None:
        await self.call(request)

    # -- text edits ------------------------------------------------------------------

    async def edit_view(self, request: rq.EditViewRequest) -> tuple[rs.EditView, bytes]:
        return await self._typed(request, rs.EditView)

    async def edit(
        self,
        request: rq.EditCreateRequest
        | rq.EditStrReplaceRequest
        | rq.EditInsertRequest
        | rq.EditDeleteRequest
        | rq.EditRenameRequest,
        payload: bytes = b"",
    ) -> tuple[rs.EditSnippet, bytes]:
        """A change to a file; the payload of the answer is the changed region."""
        return await self._typed(request, rs.EditSnippet, payload)

    async def edit_undo(self, request: rq.EditUndoRequest) -> tuple[rs.EditUndone, bytes]:
        return await self._typed(request, rs.EditUndone)

    # -- the desktop -----------------------------------------------------------------

    async def desktop_start(self, request: rq.DesktopStartRequest) -> rs.DesktopState:
        state, _ = await self._typed(request, rs.DesktopState, timeout=request.timeout + 10)
        return state

    async def desktop_stop(self) -> None:
        await self.call(rq.DesktopStopRequest(), timeout=15)

    async def desktop_status(self) -> rs.DesktopState:
        state, _ = await self._typed(rq.DesktopStatusRequest(), rs.DesktopState, timeout=10)
        return state

    async def desktop_screenshot(
        self, request: rq.DesktopScreenshotRequest, *, timeout: float
    ) -> tuple[rs.ScreenshotTaken, bytes]:
        return await self._typed(request, rs.ScreenshotTaken, timeout=timeout)

    async def desktop_input(
        self, request: rq.DesktopInputRequest, *, timeout: float
    ) -> tuple[rs.InputDone, bytes]:
        return await self._typed(request, rs.InputDone, timeout=timeout)

    async def desktop_cursor(self) -> rs.PointerAt:
        pointer, _ = await self._typed(rq.DesktopCursorRequest(), rs.PointerAt, timeout=10)
        return pointer

    async def desktop_vnc(self, request: rq.DesktopVncRequest) -> int:
        started, _ = await self._typed(request, rs.VncStarted, timeout=20)
        return started.port

    async def desktop_novnc(self) -> dict[str, bytes]:
        listing, payload = await self._typed(rq.DesktopNovncRequest(), rs.NovncFiles, timeout=30)
        files: dict[str, bytes] = {}
        offset = 0
        for path, size in listing.files:
            files[path] = payload[offset : offset + size]
            offset += size
        return files

    # -- forwarded connections ---------------------------------------------------------

    @asynccontextmanager
    async def connect(self, request: rq.ConnectRequest) -> AsyncIterator[SandboxConnection]:
        """A TCP connection inside the sandbox, carried by the channel; closed on leaving."""
        async with (
            self._scope("connect") as channel,
            channel.stream(
                request.op, request.wire(), window=request.window, cancel_grace=3
            ) as call,
        ):
            connection = SandboxConnection(call, request.host, request.port)
            with trio.fail_after(request.timeout + 5):
                await connection._wait_connected()
            yield connection

    # -- misc ------------------------------------------------------------------------

    async def ping(self) -> None:
        await self.call(rq.PingRequest())

    async def info(self) -> dict[str, Any]:
        value, _ = await self.call(rq.InfoRequest())
        return value
