"""``SbxSandboxEnvironment``: inspect_ai's ``SandboxEnvironment`` on sbx sessions.

Each sample gets a session on an ``sbx serve`` -- the one ``SBX_URL`` names,
or one the eval starts for itself (``_server``) -- through the async client,
so it runs under inspect's asyncio and under trio alike.  What inspect's
contract asks that the API says differently is translated here, in one
place: relative paths start at the session's working directory, a file the
user may not write is a ``PermissionError`` (the guest's atomic write would
replace it), a timeout is a ``TimeoutError``, output over inspect's limits
is ``OutputLimitExceededError``, a lost sandbox ``SandboxUnavailableError``.
"""

from __future__ import annotations

import errno
import os
import posixpath
from typing import Any, Literal, overload

import anyio
from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    sandboxenv,
)
from inspect_ai.util._sandbox.environment import SandboxUnavailableError
from pydantic import BaseModel

from orchestrator.client import ApiClientError, Client, SessionInfo
from orchestrator.inspect_sandbox._config import SbxSandboxConfig, load_config
from orchestrator.inspect_sandbox._server import (
    acquire_server,
    current_server,
    release_server,
    stale_servers,
)

__all__ = ["SbxSandboxEnvironment"]

_REQUEST_TIMEOUT = 86400.0 + 60.0
"""The client's read deadline: past the longest exec the API accepts, since the server
bounds every call itself (its exec timeout, its call_timeout for file calls)."""

_CLOSE_TIMEOUT = 60.0
"""How long closing a sample's sessions may take, cancelled or not."""

_MAX_OUTPUT = 64 << 20  # the most the API's max_output takes
_GONE = {"session_not_found", "session_closed", "sandbox_gone", "sandbox_lost", "unreachable"}


def _endpoint(config: SbxSandboxConfig) -> tuple[str, str | None] | None:
    """The server named by the config or ``SBX_URL``, with ``SBX_TOKEN``; ``None``: our own."""
    url = config.url or os.environ.get("SBX_URL")
    return (url, os.environ.get("SBX_TOKEN")) if url else None


async def _client(config: SbxSandboxConfig) -> Client:
    endpoint = _endpoint(config)
    if endpoint is None:
        server = await current_server()
        endpoint = (server.url, server.token)
    return Client(endpoint[0], endpoint[1], timeout=_REQUEST_TIMEOUT)


@sandboxenv(name="sbx")
class SbxSandboxEnvironment(SandboxEnvironment):
    """One sample's sbx session (``sandbox="sbx"``, or ``("sbx", SbxSandboxConfig(...))``)."""

    def __init__(self, client: Client, info: SessionInfo, workdir: str) -> None:
        super().__init__()
        self.client = client
        self.info = info
        self.session_id = info.id
        self.workdir = workdir

    # -- the task and the sample -----------------------------------------------------------

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return SbxSandboxConfig.model_validate(config)

    @classmethod
    def default_concurrency(cls) -> int | None:
        """Sandboxes at once: two per core, as many as a small host starts without queueing."""
        return 2 * (os.cpu_count() or 1)

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        """Check the config; start the eval's own server when none is named."""
        parsed, _ = load_config(config)
        if _endpoint(parsed) is None:
            await acquire_server()

    @classmethod
    async def task_cleanup(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool
    ) -> None:
        """Stop the eval's own server once its last task is done (unless told to keep things)."""
        parsed, _ = load_config(config)
        if _endpoint(parsed) is None and cleanup:
            await release_server()

    @classmethod
    async def sample_init(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, metadata: dict[str, str]
    ) -> dict[str, SandboxEnvironment]:
        """A fresh session for the sample, with the config's files in it."""
        parsed, base = load_config(config)
        files = parsed.file_contents(base)
        client = await _client(parsed)
        info: SessionInfo | None = None
        try:
            info = await client.create_session(parsed.session_create(task_name))
            workdir = (await client.exec(info.id, ["pwd"])).stdout.decode().strip() or "/"
            environment = cls(client, info, workdir)
            for path, data in files.items():
                await environment.write_file(path, data)
        except BaseException:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                if info is not None:
                    await _close_quietly(client, info.id)
                await client.aclose()
            raise
        return {"default": environment}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        """Close the sample's sessions: their sandboxes are removed (shielded, with a deadline)."""
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            for environment in environments.values():
                if isinstance(environment, SbxSandboxEnvironment):
                    await _close_quietly(environment.client, environment.session_id)
                    await environment.client.aclose()

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        """``inspect sandbox cleanup sbx [ID]``: servers evals left running, and on ``SBX_URL``
        the session ``ID`` or every session an eval opened."""
        stopped = stale_servers()
        if stopped:
            print(f"stopped {len(stopped)} sbx server(s) left by evals: {stopped}")
        url = os.environ.get("SBX_URL")
        if not url:
            if id is not None:
                print("set SBX_URL (and SBX_TOKEN) to the server that holds session", id)
            return
        async with Client(url) as client:
            if id is not None:
                await client.delete_session(id)
                print(f"closed session {id}")
                return
            removed = 0
            for session in await client.list_sessions():
                if session.labels.get("inspect_ai") == "sandbox":
                    await _close_quietly(client, session.id)
                    removed += 1
            print(f"closed {removed} inspect session(s) on {url}")

    # -- calls --------------------------------------------------------------------------------

    def _path(self, path: str) -> str:
        return path if path.startswith("/") else posixpath.join(self.workdir, path)

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        try:
            result = await self.client.exec(
                self.session_id,
                list(cmd),
                timeout=timeout,
                cwd=self._path(cwd) if cwd else None,
                env=env,
                stdin=input,
                max_output=min(limit, _MAX_OUTPUT),
                user=user,
            )
        except ApiClientError as exc:
            if user is not None and exc.kind == "sandbox_error" and "no user" in exc.message:
                return ExecResult(False, 1, "", f"{exc.message}\n")  # as su(1) would say
            if exc.kind in _GONE:
                raise SandboxUnavailableError(str(exc)) from exc
            raise
        if result.timed_out:
            raise TimeoutError(f"{cmd[0] if cmd else 'the command'} timed out after {timeout} s")
        stdout = result.stdout.decode("utf-8", errors="replace")
        stderr = result.stderr.decode("utf-8", errors="replace")
        if result.truncated:
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR,
                truncated_output=stdout,
            )
        if result.exit_code == 126 and "permission denied" in stderr.casefold():
            raise PermissionError(errno.EACCES, stderr.strip(), cmd[0])
        return ExecResult(result.exit_code == 0, result.exit_code, stdout, stderr)

    async def write_file(self, file: str, contents: str | bytes) -> None:
        path = self._path(file)
        # The guest writes atomically (a new file renamed over the old), which a read-only
        # file would not stop; inspect's contract is open(2)'s: refuse it.
        check = await self.exec(["/bin/sh", "-c", 'test ! -e "$1" || test -w "$1"', "sh", path])
        if not check.success:
            raise PermissionError(errno.EACCES, "Permission denied", file)
        try:
            await self.client.write_file(self.session_id, path, contents)
        except ApiClientError as exc:
            raise _file_error(exc, file) from None

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        try:
            data = await self.client.read_file(self.session_id, self._path(file))
        except ApiClientError as exc:
            raise _file_error(exc, file) from None
        if len(data) > SandboxEnvironmentLimits.MAX_READ_FILE_SIZE:
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, truncated_output=None
            )
        return data.decode("utf-8") if text else data

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """A desktop's live view (a URL to open), else the command that runs a shell in it."""
        try:
            url = await self.client.view_url(self.session_id)
        except ApiClientError:
            url = None
        if url is not None:
            return SandboxConnection(
                type="sbx", command=f"xdg-open '{url}'", container=self.info.sandbox_id
            )
        return SandboxConnection(
            type="sbx",
            command=f"SBX_URL={self.client.url} sbx exec {self.session_id} -- bash",
            container=self.info.sandbox_id,
        )


def _file_error(exc: ApiClientError, file: str) -> Exception:
    """inspect's exception for a failed file call (the path as inspect was given it)."""
    if exc.kind == "file_not_found":
        return FileNotFoundError(errno.ENOENT, "No such file or directory", file)
    if exc.kind in ("permission_denied", "path_not_allowed"):
        return PermissionError(errno.EACCES, "Permission denied", file)
    if exc.kind == "is_a_directory":
        return IsADirectoryError(errno.EISDIR, "Is a directory", file)
    if exc.kind in ("file_too_large", "body_too_large"):
        return OutputLimitExceededError(
            limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, truncated_output=None
        )
    if exc.kind in _GONE:
        return SandboxUnavailableError(str(exc))
    return exc


async def _close_quietly(client: Client, session_id: str) -> None:
    """Close a session; one that is gone already is closed."""
    try:
        await client.delete_session(session_id)
    except ApiClientError as exc:
        if exc.status not in (0, 404, 410):
            raise
