"""One sandbox, its lifetime, and the calls made into it.

A session runs as a task in the supervisor's root nursery, with a nursery
and cancel scope of its own: the channel's reader lives there, TTL and idle
expiry are watched there, and closing the session -- by the caller, by
expiry, or by supervisor shutdown -- cancels every call in flight, closes the
channel (the guest exits) and removes the container, shielded so teardown
survives the cancellation that caused it.

Calls run in the caller's task, each inside a cancel scope the session can
cancel.  The session does not know how its container was made: that is the
backend's business.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Literal

import structlog
import trio

from orchestrator import protocol
from orchestrator._exceptions import unwrap_single_exception
from orchestrator.backends.base import (
    LABEL_CLIENT,
    LABEL_EXPIRES,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_SESSION,
    LABEL_SUPERVISOR,
    BindMount,
    SandboxBackend,
    SandboxSpec,
)
from orchestrator.channel import CallStream, GuestChannel
from orchestrator.config import Config
from orchestrator.errors import (
    OperationTimeout,
    SandboxGone,
    SandboxStartError,
    SbxError,
    SessionClosed,
    SessionError,
)
from orchestrator.locks import ResourceLocks
from orchestrator.observe import Outcome
from orchestrator.options import SandboxOptions
from orchestrator.results import ExecResult, FileInfo, OutputChunk

if TYPE_CHECKING:
    from orchestrator.desktop.desktop import Desktop
    from orchestrator.forward import SandboxConnection
    from orchestrator.interpreter import CodeResult
    from orchestrator.supervisor import Supervisor

__all__ = ["ExecStream", "Session", "SessionState"]

log = structlog.get_logger("orchestrator.session")

SessionState = Literal["starting", "ready", "closing", "closed"]
OutputCallback = Callable[[OutputChunk], Awaitable[None] | None]
_STREAM_NAMES: dict[int, Literal["stdout", "stderr"]] = {
    protocol.STDOUT: "stdout",
    protocol.STDERR: "stderr",
}


def new_session_id() -> str:
    return secrets.token_hex(6)


class ExecStream:
    """A running command: iterate its output chunks, then await ``result()``.

    Output is also collected (up to the cap) so the result carries it; a
    consumer that stops reading makes the command wait rather than memory grow.
    """

    def __init__(self, call: CallStream, *, collect: bool = True) -> None:
        self._call = call
        self._collect = collect
        self.final: ExecResult | None = None
        self._stdout = bytearray()
        self._stderr = bytearray()

    def __aiter__(self) -> AsyncIterator[OutputChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[OutputChunk]:
        while True:
            item = await self._call.receive()
            if item is None:
                return
            stream, data = item
            if self._collect:
                (self._stdout if stream == protocol.STDOUT else self._stderr).extend(data)
            yield OutputChunk(stream=_STREAM_NAMES.get(stream, "stdout"), data=data)

    async def result(self) -> ExecResult:
        """Drain any unread output and wait for the command to end.

        With ``collect=False`` the result's stdout and stderr are empty: the
        output went to whoever iterated over the stream.
        """
        async for _ in self:
            pass
        value, _ = await self._call.result()
        self.final = ExecResult.from_guest(value, bytes(self._stdout), bytes(self._stderr))
        return self.final


class Session:
    """A live sandbox. Made by ``Orchestrator.session()``; never constructed directly."""

    def __init__(
        self,
        supervisor: Supervisor,
        backend: SandboxBackend,
        config: Config,
        options: SandboxOptions,
        owner: str | None = None,
    ) -> None:
        self.id = new_session_id()
        self.owner = owner
        """Who the session is for (an API token's owner); ``None`` for local use."""
        self._supervisor = supervisor
        self._backend = backend
        self._config = config
        self.options = options
        self.image = config.image_name(options.image or config.sandbox.image)
        self.state: SessionState = "starting"
        self.created_at = time.time()
        self.ttl = options.ttl or config.session.ttl
        self.idle_timeout = options.idle_timeout or config.session.idle_timeout
        self.labels = dict(options.labels)
        self.sandbox_id: str | None = None
        self.close_reason: str | None = None
        self.guest: dict[str, Any] = {}
        self._channel: GuestChannel | None = None
        self._scope: trio.CancelScope | None = None
        self._call_scopes: set[trio.CancelScope] = set()
        self._active_calls = 0
        self._last_active = 0.0
        self._wake = trio.Event()
        self._closed = trio.Event()
        self._log = log.bind(session_id=self.id)
        self.locks = ResourceLocks()
        """Per-resource locks for tool calls (shell, display, files); never cross sessions."""
        self._tool_slots: trio.CapacityLimiter | None = None
        self._desktop: Desktop | None = None
        self.memory_namespace: str | None = None
        """The memory store's namespace mounted at /memories, once started (``None``: none)."""
        self.spare = False
        """A pool's spare: started ahead of demand, its TTL and idle clocks not yet running."""
        self.on_closed: Callable[[Session], None] | None = None
        """Told once the sandbox is gone (the pool replaces its spares this way)."""
        self._clock_start = 0.0

    # -- life -------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.image} {self.state}>"

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl

    def _spec(self) -> SandboxSpec:
        sandbox = self._config.sandbox
        opts = self.options
        tmpfs = {**sandbox.tmpfs, **opts.tmpfs_sizes}
        labels = {
            **self.labels,
            LABEL_MANAGED: "true",
            LABEL_SESSION: self.id,
            LABEL_OWNER: self._config.owner,
            LABEL_SUPERVISOR: self._supervisor.identity,
            # A spare's life may start as late as max_age from now: the label must
            # never tell another supervisor it expired while it is still in use.
            LABEL_EXPIRES: str(int(self.expires_at + (self._config.pool.max_age * self.spare))),
        }
        if self.owner is not None:
            labels[LABEL_CLIENT] = self.owner
        return SandboxSpec(
            image=self.image,
            name=f"sbx-{self.id}",
            labels=labels,
            env={**sandbox.env, **opts.env},
            memory=opts.memory or sandbox.memory,
            cpus=opts.cpus or sandbox.cpus,
            pids_limit=opts.pids_limit or sandbox.pids_limit,
            network=sandbox.network if opts.network is None else opts.network,
            tmpfs=tmpfs,
            user=sandbox.user,
            workdir=opts.workdir or sandbox.workdir,
            runtime=sandbox.runtime,
            log_driver=sandbox.log_driver,
            log_max_size=sandbox.log_max_size,
        )

    def adopt(self, options: SandboxOptions, owner: str | None) -> None:
        """Turn a pool's spare into the caller's session: its owner, its TTL, clocks from now.

        Only options that live in this process (``ttl``, ``idle_timeout``) may differ
        from the spare's; the pool hands out a spare only when the rest match.
        """
        self.spare = False
        self.owner = owner
        self.options = options
        self.ttl = options.ttl or self._config.session.ttl
        self.idle_timeout = options.idle_timeout or self._config.session.idle_timeout
        self.created_at = time.time()
        self._clock_start = self._last_active = trio.current_time()
        self._wake.set()

    def _guest_config(self, spec: SandboxSpec) -> dict[str, Any]:
        return {
            "roots": list(self._config.sandbox.allowed_roots),
            "workdir": spec.workdir,
            "max_file": self._config.session.file_size_limit,
            "max_output": self._config.session.output_limit,
            "kill_grace": self._config.session.kill_grace,
        }

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The session's task: start the sandbox, serve until closed or expired, clean up."""
        structlog.contextvars.bind_contextvars(session_id=self.id)
        spec = self._spec()
        started = False
        try:
            with trio.CancelScope() as scope, unwrap_single_exception():
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    await self._start_sandbox(spec, nursery)
                    await self._start_desktop()
                    self.state = "ready"
                    self._last_active = trio.current_time()
                    started = True
                    task_status.started()
                    reason = await self._watch_expiry()
                    self.close_reason = self.close_reason or reason
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            if not started:
                self._supervisor.observer.session_failed(self.image, type(exc).__name__)
                raise
            # After start-up a failure must not take the supervisor's nursery down.
            self._log.exception("session failed")
        finally:
            await self._teardown()
        if not started:
            raise SessionClosed(f"session {self.id} was closed before its sandbox was ready")

    async def _start_sandbox(self, spec: SandboxSpec, nursery: trio.Nursery) -> None:
        timeout = self._config.sandbox.start_timeout
        t0 = trio.current_time()
        try:
            with trio.fail_after(timeout):
                spec = await self._mount_memory(spec)
                info = await self._backend.create(spec)
                self.sandbox_id = info.id
                stream = await self._backend.attach(info.id, self._on_guest_stderr)
                self._channel = GuestChannel(
                    stream, name=f"{self.id} ({spec.image})", session_id=self.id
                )
                await self._backend.start(info.id)
                self.guest = await self._channel.start(
                    nursery, config=self._guest_config(spec), timeout=timeout
                )
        except trio.TooSlowError:
            raise SandboxStartError(
                f"sandbox for session {self.id} ({spec.image}) was not ready within {timeout:g} s; "
                "the engine may be overloaded — retry, or raise sandbox.start_timeout"
            ) from None
        except SandboxGone as exc:
            raise SandboxStartError(
                f"sandbox for session {self.id} ({spec.image}) exited while starting: {exc}. "
                "Check the image with `sbx doctor` and rebuild it with `sbx images build`"
            ) from None
        seconds = trio.current_time() - t0
        self._supervisor.observer.session_started(spec.image, seconds)
        self._log.info(
            "session ready",
            image=spec.image,
            sandbox=self.sandbox_id[:12] if self.sandbox_id else None,
            seconds=round(seconds, 3),
        )

    async def _mount_memory(self, spec: SandboxSpec) -> SandboxSpec:
        """Add the memory store's namespace at /memories, unless this session opted out."""
        from orchestrator.memory_store import MEMORY_MOUNT, prepare_namespace

        wanted = self.options.memories
        if not (self._config.memory.enabled if wanted is None else wanted):
            return spec
        namespace = self.options.memory_namespace or self._config.memory.namespace
        path = await trio.to_thread.run_sync(prepare_namespace, self._config, namespace, self.owner)
        self.memory_namespace = namespace
        mount = BindMount(source=str(path), target=MEMORY_MOUNT)
        return dataclasses.replace(spec, mounts=(*spec.mounts, mount))

    def _on_guest_stderr(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                self._log.debug("guest", line=line)

    async def _watch_expiry(self) -> str:
        """Sleep until the TTL, the idle timeout, or a close request; say which.

        Calls only move ``_last_active`` and never wake this task (that would
        cost every call a task switch); at an idle deadline that finds calls
        in flight, the session counts as active and the watch goes on.
        """
        self._clock_start = trio.current_time()
        while True:
            if self.close_reason is not None:
                return self.close_reason
            now = trio.current_time()
            if self.spare:
                spare_deadline = self._clock_start + self._config.pool.max_age
                if now >= spare_deadline:
                    return "spare unused for pool.max_age"
                with trio.move_on_at(spare_deadline):
                    await self._wake.wait()
                self._wake = trio.Event()
                continue
            if self._active_calls:
                self._last_active = now
            ttl_deadline = self._clock_start + self.ttl
            idle_deadline = self._last_active + self.idle_timeout
            if now >= ttl_deadline:
                return "ttl expired"
            if now >= idle_deadline:
                return "idle timeout"
            with trio.move_on_at(min(ttl_deadline, idle_deadline)):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _teardown(self) -> None:
        """Cancel calls, close the channel, remove the sandbox: shielded, bounded, logged."""
        self.state = "closing"
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._config.shutdown_timeout
            for call_scope in list(self._call_scopes):
                call_scope.cancel()
            try:
                if self._channel is not None:
                    await self._channel.aclose()
                if self.sandbox_id is not None:
                    await self._backend.remove(self.sandbox_id)
            except SbxError as exc:
                self._log.warning("sandbox removal failed; `sbx gc` will retry", error=str(exc))
            except Exception:
                self._log.exception("sandbox removal failed; `sbx gc` will retry")
        self.state = "closed"
        self._closed.set()
        self._supervisor._forget(self)
        if self.on_closed is not None:
            self.on_closed(self)
        if self.guest:  # it had started: a failed start was counted as such
            self._supervisor.observer.session_closed(
                self.image, self.close_reason or "closed", time.time() - self.created_at
            )
        self._log.info("session closed", reason=self.close_reason or "closed")

    async def close(self, reason: str = "closed by the caller") -> None:
        """Cancel the calls in flight, remove the sandbox, and wait until it is gone."""
        if self.close_reason is None:
            self.close_reason = reason
        self._wake.set()
        if self.state == "starting" and self._scope is not None:
            self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self.state in ("closing", "closed")

    @property
    def alive(self) -> bool:
        """Ready, and its channel to the guest still open (the sandbox has not died)."""
        return self.state == "ready" and self._channel is not None and not self._channel.closed

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- call plumbing ----------------------------------------------------------------

    @contextmanager
    def _call_scope(self, what: str) -> Iterator[GuestChannel]:
        """Run one call: cancellable by ``close`` and counted for idle expiry.

        Calls run in the caller's task, so log lines about them name the
        session explicitly rather than through context variables (binding
        those costs more than a no-op call itself).
        """
        if self.closed or self._channel is None:
            raise SessionClosed(
                f"session {self.id} is closed ({self.close_reason or 'closed'}); open a new session"
            )
        channel = self._channel
        self._active_calls += 1
        self._last_active = trio.current_time()
        scope = trio.CancelScope()
        self._call_scopes.add(scope)
        try:
            with scope:
                yield channel
        finally:
            self._call_scopes.discard(scope)
            self._active_calls -= 1
            self._last_active = trio.current_time()
        if scope.cancelled_caught:
            raise SessionClosed(
                f"{what} was cancelled because session {self.id} closed "
                f"({self.close_reason or 'closed'})"
            )

    async def _op(
        self, op: str, args: dict[str, Any], payload: bytes = b"", *, timeout: float | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """One request/response call, on the hot path of every small operation.

        One cancel scope serves as both the deadline and the handle ``close``
        cancels; afterwards ``self.closed`` tells which of the two fired.
        """
        channel = self._channel
        if self.closed or channel is None:
            raise SessionClosed(
                f"session {self.id} is closed ({self.close_reason or 'closed'}); open a new session"
            )
        deadline = self._config.session.call_timeout if timeout is None else timeout
        self._active_calls += 1
        scope = trio.CancelScope(deadline=trio.current_time() + deadline)
        self._last_active = scope.deadline - deadline
        self._call_scopes.add(scope)
        try:
            with scope:
                return await channel.call(op, args, payload)
        finally:
            self._call_scopes.discard(scope)
            self._active_calls -= 1
            self._last_active = trio.current_time()
        # Only reached when the scope absorbed a cancellation: close() or the deadline.
        if self.closed:
            raise SessionClosed(
                f"{op} was cancelled because session {self.id} closed "
                f"({self.close_reason or 'closed'})"
            )
        raise OperationTimeout(
            f"{op} in session {self.id} got no answer within {deadline:g} s; the sandbox "
            "may be overloaded — retry with a longer timeout or close the session"
        )

    # -- exec -----------------------------------------------------------------------

    def _exec_args(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None,
        cwd: str | None,
        env: dict[str, str] | None,
        stdin: bytes | None,
        max_output: int | None,
    ) -> dict[str, Any]:
        args: dict[str, Any] = {
            "timeout": self._config.session.exec_timeout if timeout is None else timeout,
            "max_output": max_output or self._config.session.output_limit,
            "grace": self._config.session.kill_grace,
        }
        if isinstance(command, str):
            args["cmd"] = command
        else:
            argv = list(command)
            if not argv or not all(isinstance(part, str) for part in argv):
                raise SbxError("a command must be a string or a non-empty list of strings")
            args["argv"] = argv
        if cwd is not None:
            args["cwd"] = cwd
        if env:
            args["env"] = dict(env)
        if stdin is not None:
            args["stdin"] = True
        return args

    @asynccontextmanager
    async def exec_stream(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        max_output: int | None = None,
        collect: bool = True,
        window: int = protocol.DEFAULT_WINDOW,
    ) -> AsyncIterator[ExecStream]:
        """Run a command and stream its output; leaving early kills it.

        ``command`` is a shell string (run by bash) or an argv list (run as is).
        ``collect=False`` keeps no copy of the output for the result, for
        consumers that forward it elsewhere; memory then stays bounded by
        ``window``, the output the sandbox may send ahead of the consumer.
        """
        args = self._exec_args(
            command, timeout=timeout, cwd=cwd, env=env, stdin=stdin, max_output=max_output
        )
        safety = args["timeout"] + self._config.session.kill_grace + 30
        started = trio.current_time()
        running: ExecStream | None = None
        outcome: Outcome = "error"
        try:
            with self._call_scope("exec") as channel, trio.fail_after(safety):
                async with channel.stream(
                    protocol.OP_EXEC,
                    args,
                    stdin or b"",
                    window=window,
                    cancel_grace=self._config.session.kill_grace + 3,
                ) as call:
                    running = ExecStream(call, collect=collect)
                    yield running
        except (trio.Cancelled, SessionClosed):
            outcome = "cancelled"
            raise
        finally:
            if running is not None and running.final is not None:
                outcome = "timeout" if running.final.timed_out else "ok"
            self._supervisor.observer.exec_call(outcome, trio.current_time() - started)

    async def exec(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        max_output: int | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Run a command to completion; ``on_output`` sees each chunk as it arrives."""
        async with self.exec_stream(
            command, timeout=timeout, cwd=cwd, env=env, stdin=stdin, max_output=max_output
        ) as running:
            if on_output is not None:
                async for chunk in running:
                    maybe = on_output(chunk)
                    if maybe is not None:
                        await maybe
            return await running.result()
        raise AssertionError("unreachable")  # pragma: no cover

    # -- persistent shells ------------------------------------------------------------

    async def shell(
        self,
        command: str,
        *,
        name: str = "default",
        timeout: float | None = None,
        max_output: int | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Run ``command`` in the named persistent shell (cwd, variables and functions persist).

        On timeout the command's processes are killed and the shell survives;
        if the shell itself was stuck, it is replaced and the next result says
        ``shell_restarted``.
        """
        args: dict[str, Any] = {
            "name": name,
            "command": command,
            "timeout": self._config.session.exec_timeout if timeout is None else timeout,
            "max_output": max_output or self._config.session.output_limit,
            "grace": self._config.session.kill_grace,
        }
        safety = args["timeout"] + self._config.session.kill_grace + 30
        with self._call_scope("shell") as channel, trio.fail_after(safety):
            async with channel.stream(
                protocol.OP_SHELL_RUN, args, cancel_grace=self._config.session.kill_grace + 3
            ) as call:
                running = ExecStream(call)
                if on_output is not None:
                    async for chunk in running:
                        maybe = on_output(chunk)
                        if maybe is not None:
                            await maybe
                return await running.result()
        raise AssertionError("unreachable")  # pragma: no cover

    async def restart_shell(self, name: str = "default") -> None:
        """Replace the named shell with a fresh one (state is lost)."""
        await self._op(protocol.OP_SHELL_RESTART, {"name": name})

    async def close_shell(self, name: str = "default") -> None:
        await self._op(protocol.OP_SHELL_CLOSE, {"name": name})

    # -- files ------------------------------------------------------------------------

    async def read_file(
        self,
        path: str,
        *,
        offset: int = 0,
        length: int | None = None,
        max_bytes: int | None = None,
    ) -> bytes:
        """The file's bytes; ``FileTooLarge`` past the size cap (read in parts with offset)."""
        args: dict[str, Any] = {"path": path, "offset": offset}
        if length is not None:
            args["length"] = length
        if max_bytes is not None:
            args["max_bytes"] = max_bytes
        _, data = await self._op(protocol.OP_FILE_READ, args)
        return data

    async def write_file(
        self,
        path: str,
        data: bytes | str,
        *,
        mode: int | None = None,
        parents: bool = True,
        overwrite: bool = True,
    ) -> None:
        """Write atomically (temp file + rename), creating parent directories by default."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        args: dict[str, Any] = {"path": path, "parents": parents, "overwrite": overwrite}
        if mode is not None:
            args["mode"] = mode
        await self._op(protocol.OP_FILE_WRITE, args, payload)

    async def list_files(self, path: str, *, depth: int = 1, hidden: bool = True) -> list[FileInfo]:
        value, _ = await self._op(
            protocol.OP_FILE_LIST, {"path": path, "depth": depth, "hidden": hidden}
        )
        return [FileInfo.model_validate(entry) for entry in value.get("entries", [])]

    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileInfo:
        value, _ = await self._op(protocol.OP_FILE_STAT, {"path": path, "follow": follow_symlinks})
        return FileInfo.model_validate(value)

    async def mkdir(self, path: str, *, parents: bool = True, exist_ok: bool = True) -> None:
        await self._op(
            protocol.OP_FILE_MKDIR, {"path": path, "parents": parents, "exist_ok": exist_ok}
        )

    async def remove(self, path: str, *, recursive: bool = False, missing_ok: bool = False) -> None:
        await self._op(
            protocol.OP_FILE_REMOVE,
            {"path": path, "recursive": recursive, "missing_ok": missing_ok},
        )

    # -- persistent interpreters (code execution) ---------------------------------------

    async def run_code(
        self,
        code: str,
        *,
        language: Literal["python", "bash"] = "python",
        timeout: float | None = None,
        interpreter: str = "default",
        on_output: OutputCallback | None = None,
    ) -> CodeResult:
        """Run ``code`` in this session's persistent interpreter, like a notebook cell.

        Variables, imports and files persist between calls; the result carries
        stdout, stderr, the return code, the ``repr`` of a final expression,
        matplotlib figures as PNG and the files written under the outputs
        directory.  On timeout the code is interrupted, and the interpreter is
        replaced if it does not stop (``restarted``).  ``language="bash"`` runs
        in a persistent shell of its own instead.
        """
        from orchestrator.interpreter import run_code

        return await run_code(
            self,
            code,
            language=language,
            timeout=self._config.code_execution.timeout if timeout is None else timeout,
            interpreter=interpreter,
            on_output=on_output,
            settings=self._config.code_execution,
            grace=self._config.session.kill_grace,
            max_output=self._config.session.output_limit,
        )

    async def restart_interpreter(self, interpreter: str = "default") -> None:
        """Replace the interpreter with a fresh one: variables and imports are gone."""
        await self._op(protocol.OP_KERNEL_RESTART, {"name": interpreter})

    # -- guest extensions -------------------------------------------------------------

    async def guest_call(
        self,
        op: str,
        args: dict[str, Any],
        payload: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """One request/response operation of the guest or of a guest extension.

        For tools built on guest operations: it runs under this session's rules
        (cancelled when the session closes; ``timeout`` defaults to
        ``session.call_timeout``) and raises the ``GuestError`` the guest reports.
        """
        return await self._op(op, args, payload, timeout=timeout)

    @asynccontextmanager
    async def guest_stream(
        self, op: str, args: dict[str, Any], payload: bytes = b"", *, timeout: float
    ) -> AsyncIterator[CallStream]:
        """A guest operation whose output streams: iterate its chunks, then await its result.

        ``timeout`` is a safety net for a sandbox that stops answering; the
        operation's own deadline is the guest's to enforce.  Leaving the block
        early cancels the operation in the guest.
        """
        try:
            with self._call_scope(op) as channel, trio.fail_after(timeout):
                async with channel.stream(
                    op,
                    {"window": protocol.DEFAULT_WINDOW, **args},
                    payload,
                    cancel_grace=self._config.session.kill_grace + 3,
                ) as call:
                    yield call
        except trio.TooSlowError:
            raise OperationTimeout(
                f"{op} in session {self.id} got no answer within {timeout:g} s; the sandbox may "
                "be overloaded — retry, or close the session"
            ) from None

    # -- tools ------------------------------------------------------------------------

    def tool_slots(self, limit: int) -> trio.CapacityLimiter:
        """This session's cap on concurrent tool calls (made on first use)."""
        if self._tool_slots is None:
            self._tool_slots = trio.CapacityLimiter(limit)
        return self._tool_slots

    async def run_tools(
        self, blocks: Sequence[Any], *, tool_types: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Run Claude's ``tool_use`` blocks here; ``tool_result`` blocks in the same order.

        Calls on different resources run concurrently, calls on the same one in
        order; a failing call is an ``is_error`` result and the others complete.
        ``tool_types`` names the advertised version per tool (``{"computer":
        "computer_20251124"}``) where versions differ in behaviour.
        """
        router = self._supervisor.router
        if router is None:
            raise SessionError("this session has no tool router; open it through an Orchestrator")
        results: list[dict[str, Any]] = await router.run(self, blocks, tool_types=tool_types)
        return results

    # -- desktop and forwarded ports ---------------------------------------------------

    async def _start_desktop(self) -> None:
        """A desktop image's X server answers before the session counts as ready."""
        from orchestrator.desktop.desktop import start_session_desktop

        self._desktop = await start_session_desktop(self, self._config, self.options)

    @property
    def desktop(self) -> Desktop:
        """The session's X desktop (``orchestrator.desktop.Desktop``)."""
        if self._desktop is None:
            raise SessionError(
                f"session {self.id} ({self.image}) has no desktop; open a session of the "
                "desktop image (image='desktop') for screenshots and the computer tool"
            )
        return self._desktop

    async def screenshot(self, path: str | None = None, *, scaled: bool = False) -> bytes:
        """A PNG of the whole screen (real size; ``scaled`` gives what Claude sees).

        With ``path`` it is also written to that file on this machine.
        """
        shot = await self.desktop.screenshot(scaled=scaled)
        if path is not None:
            await trio.Path(path).write_bytes(shot.png)
        return shot.png

    async def view_url(self, *, interactive: bool = False) -> str:
        """A URL that shows this desktop live in a browser (read-only unless ``interactive``).

        It serves noVNC and bridges it to the sandbox's VNC server over the
        channel; the URL carries a token that only works for this session.
        """
        view = getattr(self._supervisor, "view", None)
        if view is None:
            raise SessionError("the live view needs a session opened through an Orchestrator")
        url: str = await view.url_for(self, interactive=interactive)
        return url

    @asynccontextmanager
    async def connect(
        self, port: int, *, host: str = "127.0.0.1", timeout: float = 10.0
    ) -> AsyncIterator[SandboxConnection]:
        """A TCP connection to ``host:port`` inside the sandbox, carried by the channel.

        Works without network in the sandbox; leaving the block closes it.
        """
        from orchestrator.forward import SandboxConnection

        window = protocol.DEFAULT_WINDOW
        args = {"host": host, "port": port, "timeout": timeout, "window": window}
        with self._call_scope("connect") as channel:
            async with channel.stream(
                protocol.OP_NET_CONNECT, args, window=window, cancel_grace=3
            ) as call:
                connection = SandboxConnection(call, host, port)
                with trio.fail_after(timeout + 5):
                    await connection._wait_connected()
                yield connection

    # -- misc -------------------------------------------------------------------------

    async def ping(self) -> float:
        """Round-trip time of a protocol no-op, in seconds."""
        t0 = time.perf_counter()
        await self._op(protocol.OP_PING, {})
        return time.perf_counter() - t0

    async def info(self) -> dict[str, Any]:
        value, _ = await self._op(protocol.OP_INFO, {})
        return value

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for listings."""
        return {
            "id": self.id,
            "image": self.image,
            "state": self.state,
            "sandbox_id": self.sandbox_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "labels": dict(self.labels),
            "owner": self.owner,
            "active_calls": self._active_calls,
        }

    def _raw_call(self) -> Callable[..., Any]:  # pragma: no cover - for benchmarks only
        assert self._channel is not None
        return self._channel.call
