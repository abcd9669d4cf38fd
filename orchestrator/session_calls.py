"""What a caller can do in a live session: commands, shells, files, code, connections.

``Session`` inherits these from ``SessionCalls``: each method fills in the
configured defaults (timeouts, output caps, the kill grace), builds the
guest operation's request model and hands it to the session's
``GuestClient``.  That is the whole path of a call from here on down:
``GuestClient`` -> ``GuestChannel`` -> the guest.

Must not: hold state of its own, or know how the session started or ends.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import trio

from orchestrator import protocol
from orchestrator.backends.base import root_refused
from orchestrator.channel import CallStream
from orchestrator.command_input import check_command_input
from orchestrator.config import Config
from orchestrator.errors import InputTooLarge, InvalidInput, OptionNotAllowed, SbxError
from orchestrator.guest_client import requests as rq
from orchestrator.guest_client.client import GuestClient
from orchestrator.guest_client.exec_stream import ExecStream, OutputCallback
from orchestrator.interpreter import run_code
from orchestrator.results import ExecResult, FileInfo

if TYPE_CHECKING:
    from orchestrator.desktop.desktop import Desktop
    from orchestrator.guest_client.connection import SandboxConnection
    from orchestrator.interpreter import CodeResult

__all__ = ["SessionCalls"]


def _stdin_bytes(stdin: bytes | str | None) -> bytes | None:
    """stdin as bytes: text is sent as UTF-8."""
    if not isinstance(stdin, str):
        return stdin
    try:
        return stdin.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"stdin holds text that is not valid Unicode ({exc.reason} at {exc.start}); "
            "pass bytes instead, or decode the text with its real encoding"
        ) from None


def _noted(result: ExecResult, notice: str | None) -> ExecResult:
    return result if notice is None else result.model_copy(update={"sandbox_restarted": notice})


class SessionCalls:
    """Calls into a session's sandbox (mixed into ``Session``)."""

    _config: Config

    @property
    @abstractmethod
    def client(self) -> GuestClient:
        """The guest client of the running sandbox; ``SessionClosed`` once it is gone."""

    @property
    @abstractmethod
    def desktop(self) -> Desktop:
        """The sandbox's X desktop; ``SessionError`` where its image has none."""

    @abstractmethod
    def take_restart_notice(self) -> str | None:
        """What the next result must say after the sandbox was replaced, once."""

    def _check_user(self, user: str | None) -> None:
        """``OptionNotAllowed`` for a user this runtime cannot keep from the guest."""
        refused = root_refused(user, self._config.sandbox.runtime)
        if refused is not None:
            raise OptionNotAllowed(refused)

    # -- exec -----------------------------------------------------------------------

    def _exec_request(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None,
        cwd: str | None,
        env: dict[str, str] | None,
        stdin: bytes | None,
        max_output: int | None,
        user: str | None = None,
    ) -> rq.ExecRequest:
        settings = self._config.session
        self._check_user(user)
        if isinstance(command, str):
            cmd, argv = command, None
        else:
            argv = list(command)
            if not argv or not all(isinstance(part, str) for part in argv):
                raise SbxError("a command must be a string or a non-empty list of strings")
            cmd = None
        check_command_input(
            [command] if isinstance(command, str) else argv or [],
            env or {},
            cwd,
            max_bytes=settings.max_command_bytes,
        )
        if stdin is not None and len(stdin) > settings.max_stdin:
            raise InputTooLarge(
                f"stdin of {len(stdin)} bytes is over session.max_stdin ({settings.max_stdin}); "
                "send less, or write the data to a file in parts and read it from there",
                limit=settings.max_stdin,
                key="session.max_stdin",
            )
        return rq.ExecRequest(
            cmd=cmd,
            argv=argv,
            timeout=settings.exec_timeout if timeout is None else timeout,
            max_output=max_output or settings.output_limit,
            grace=settings.kill_grace,
            cwd=cwd,
            env=dict(env) if env else None,
            stdin=True if stdin is not None else None,
            user=user,
        )

    @asynccontextmanager
    async def exec_stream(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | str | None = None,
        max_output: int | None = None,
        collect: bool = True,
        window: int = protocol.DEFAULT_WINDOW,
        user: str | None = None,
    ) -> AsyncIterator[ExecStream]:
        """Run a command and stream its output; leaving early kills it.

        ``command`` is a shell string (run by bash) or an argv list (run as is).
        ``collect=False`` keeps no copy of the output for the result, for
        consumers that forward it elsewhere; memory then stays bounded by
        ``window``, the output the sandbox may send ahead of the consumer.
        ``stdin`` is bytes, or text sent as UTF-8.
        """
        stdin = _stdin_bytes(stdin)
        request = self._exec_request(
            command,
            timeout=timeout,
            cwd=cwd,
            env=env,
            stdin=stdin,
            max_output=max_output,
            user=user,
        )
        async with self.client.exec_stream(
            request, stdin, collect=collect, window=window
        ) as running:
            yield running

    async def exec(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | str | None = None,
        max_output: int | None = None,
        on_output: OutputCallback | None = None,
        user: str | None = None,
    ) -> ExecResult:
        """Run a command to completion; ``on_output`` sees each chunk as it arrives.

        ``user`` runs it as someone else than the session's user: ``"root"`` (with the
        capabilities to install packages, never those to reach the guest), a name of
        the image's, or ``uid[:gid]``.  ``stdin`` is bytes, or text sent as UTF-8.  A
        ``cwd`` that is relative is taken from the session's working directory.  A program
        that cannot be started ends with 127 or 126, and ``spawn_error`` says why.
        """
        stdin = _stdin_bytes(stdin)
        request = self._exec_request(
            command,
            timeout=timeout,
            cwd=cwd,
            env=env,
            stdin=stdin,
            max_output=max_output,
            user=user,
        )
        notice = self.take_restart_notice()
        async with self.client.exec_stream(request, stdin) as running:
            await running.forward(on_output)
            return _noted(await running.result(), notice)
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
        user: str | None = None,
    ) -> ExecResult:
        """Run ``command`` in the named persistent shell (cwd, variables and functions persist).

        ``user`` runs it in a shell of that user's (a shell of each name and user).

        On timeout the command's processes are killed and the shell survives;
        if the shell itself was stuck, it is replaced and the next result says
        ``shell_restarted``.
        """
        settings = self._config.session
        self._check_user(user)
        check_command_input([command], {}, None, max_bytes=settings.max_command_bytes)
        request = rq.ShellRunRequest(
            name=name if user is None else f"{name}@{user}",
            user=user,
            command=command,
            timeout=settings.exec_timeout if timeout is None else timeout,
            max_output=max_output or settings.output_limit,
            grace=settings.kill_grace,
        )
        notice = self.take_restart_notice()
        return _noted(await self.client.shell(request, on_output), notice)

    async def restart_shell(self, name: str = "default") -> None:
        """Replace the named shell with a fresh one (state is lost)."""
        await self.client.restart_shell(name)

    async def close_shell(self, name: str = "default") -> None:
        await self.client.close_shell(name)

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
        request = rq.FileReadRequest(path=path, offset=offset, length=length, max_bytes=max_bytes)
        return await self.client.read_file(request)

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
        request = rq.FileWriteRequest(path=path, parents=parents, overwrite=overwrite, mode=mode)
        await self.client.write_file(request, payload)

    async def list_files(self, path: str, *, depth: int = 1, hidden: bool = True) -> list[FileInfo]:
        return await self.client.list_files(
            rq.FileListRequest(path=path, depth=depth, hidden=hidden)
        )

    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileInfo:
        return await self.client.stat(rq.FileStatRequest(path=path, follow=follow_symlinks))

    async def mkdir(self, path: str, *, parents: bool = True, exist_ok: bool = True) -> None:
        await self.client.mkdir(rq.FileMkdirRequest(path=path, parents=parents, exist_ok=exist_ok))

    async def remove(self, path: str, *, recursive: bool = False, missing_ok: bool = False) -> None:
        await self.client.remove(
            rq.FileRemoveRequest(path=path, recursive=recursive, missing_ok=missing_ok)
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
        return await run_code(
            self.client,
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
        await self.client.restart_kernel(interpreter)

    # -- guest extensions -------------------------------------------------------------

    async def guest_call(
        self,
        request: rq.GuestRequest,
        payload: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """One request/response operation of the guest or of a guest extension.

        It runs under this session's rules (cancelled when the session closes;
        ``timeout`` defaults to ``session.call_timeout``) and raises the
        ``GuestError`` the guest reports.
        """
        return await self.client.call(request, payload, timeout=timeout)

    @asynccontextmanager
    async def guest_stream(
        self, request: rq.GuestRequest, payload: bytes = b"", *, timeout: float
    ) -> AsyncIterator[CallStream]:
        """A guest operation whose output streams (see ``GuestClient.stream``)."""
        async with self.client.stream(request, payload, timeout=timeout) as call:
            yield call

    # -- forwarded ports and misc -------------------------------------------------------

    @asynccontextmanager
    async def connect(
        self, port: int, *, host: str = "127.0.0.1", timeout: float = 10.0
    ) -> AsyncIterator[SandboxConnection]:
        """A TCP connection to ``host:port`` inside the sandbox, carried by the channel.

        Works without network in the sandbox; leaving the block closes it.
        """
        request = rq.ConnectRequest(
            host=host, port=port, timeout=timeout, window=protocol.DEFAULT_WINDOW
        )
        async with self.client.connect(request) as connection:
            yield connection

    async def ping(self) -> float:
        """Round-trip time of a protocol no-op, in seconds."""
        started = time.perf_counter()
        await self.client.ping()
        return time.perf_counter() - started

    async def info(self) -> dict[str, Any]:
        return await self.client.info()

    async def screenshot(self, path: str | None = None, *, scaled: bool = False) -> bytes:
        """A PNG of the whole screen (real size; ``scaled`` gives what Claude sees).

        With ``path`` it is also written to that file on this machine.
        """
        shot = await self.desktop.screenshot(scaled=scaled)
        if path is not None:
            await trio.Path(path).write_bytes(shot.png)
        return shot.png
