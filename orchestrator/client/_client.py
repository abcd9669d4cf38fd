"""``Client``: the HTTP API of ``sbx serve`` for async programs, asyncio or trio alike.

``RemoteSession`` is one session of a ``Client`` with the local ``Session``'s
method names, so code written against ``orch.session(...)`` reads the same
against ``client.session(...)``; it holds only the session's id and client.

Built on httpx, whose async side runs on anyio: the same code works in an
asyncio program and in a trio one, and starts no task of its own.  Requests
are the ones ``SbxClient`` sends (``orchestrator.api.client._operations``);
answers are the server's own models (``SessionInfo``, ``ExecResult``,
``FileListing``, ``AgentRunInfo``, ...); errors are the library's exception
classes (``SessionNotFound``, ``ShellBusy``, ...), read by the same
``api_error``.  It must not know anything of the server's internals beyond
those shared models.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pydantic

from orchestrator.api.client import DEFAULT_URL, ApiCall, ApiClientError, api_error, unreachable
from orchestrator.api.client import _operations as ops
from orchestrator.api.models import (
    AgentRunCreate,
    AgentRunInfo,
    ExecResponse,
    FileListing,
    SessionCreate,
    SessionInfo,
    SessionList,
    ToolsResponse,
    WorkflowRunResponse,
)
from orchestrator.client import _folders
from orchestrator.client._streams import EventStream, ExecOutputStream
from orchestrator.results import ExecResult
from orchestrator.tar_stream import DirCopy

__all__ = ["Client", "RemoteSession"]


def invalid_request(exc: pydantic.ValidationError) -> ApiClientError:
    """A request refused before it was sent, as the server would refuse it (422)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    body = {"error": {"type": "invalid_request", "message": f"{where}: {first['msg']}"}}
    if where:
        body["error"]["field"] = where
    return api_error(422, json.dumps(body).encode())


class Client:
    """One ``sbx serve``: sessions, exec (whole or streamed), files, tools, agent runs.

    ``url`` and ``token`` default to ``SBX_URL`` and ``SBX_TOKEN``.  Use it as
    ``async with Client() as client:``, or ``await client.aclose()``.  Calls
    may run concurrently (httpx pools connections).  ``timeout`` bounds each
    read, so a long command needs a longer one than its own ``timeout``.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("SBX_URL") or DEFAULT_URL).rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiClientError(
                0, "invalid_url", f"url/SBX_URL must be an http(s) URL, got {self.url!r}"
            )
        token = token if token is not None else os.environ.get("SBX_TOKEN")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            trust_env=False,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- requests ----------------------------------------------------------------------

    async def send(self, call: ApiCall) -> bytes:
        """Send one of the API's operations; its response body, or the API's error."""
        try:
            response = await self._http.request(
                call.method, call.target, content=call.body(), headers=call.all_headers()
            )
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from None
        if response.status_code >= 400:
            raise api_error(response.status_code, response.content, response.reason_phrase)
        return response.content

    async def _json(self, call: ApiCall) -> Any:
        data = await self.send(call)
        return json.loads(data) if data else None

    @asynccontextmanager
    async def stream(self, call: ApiCall) -> AsyncIterator[EventStream]:
        """Send a streaming operation; its events for the block, closed when it ends."""
        request = self._http.build_request(
            call.method, call.target, content=call.body(), headers=call.all_headers()
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from None
        events = EventStream(response, self.url)
        try:
            if response.status_code >= 400:
                raise api_error(response.status_code, await response.aread())
            yield events
        finally:
            await events.aclose()

    # -- sessions ------------------------------------------------------------------------

    async def create_session(
        self, options: SessionCreate | None = None, /, **fields: Any
    ) -> SessionInfo:
        """Start a session (``image``, ``memory``, ``cpus``, ``user``, ...); ready on return."""
        if options is None:
            try:
                options = SessionCreate(**fields)
            except pydantic.ValidationError as exc:
                raise invalid_request(exc) from None
        return SessionInfo.model_validate(await self._json(ops.create_session(options.options())))

    async def list_sessions(self) -> list[SessionInfo]:
        return SessionList.model_validate(await self._json(ops.list_sessions())).sessions

    async def get_session(self, session_id: str) -> SessionInfo:
        return SessionInfo.model_validate(await self._json(ops.get_session(session_id)))

    async def delete_session(self, session_id: str) -> None:
        """Close a session: its calls are cancelled and its sandbox removed."""
        await self.send(ops.delete_session(session_id))

    async def attach(self, session_id: str) -> RemoteSession:
        """A running session by id (it stays open: ``close()`` it when done)."""
        return RemoteSession(self, await self.get_session(session_id))

    @asynccontextmanager
    async def session(
        self, options: SessionCreate | None = None, /, **fields: Any
    ) -> AsyncIterator[RemoteSession]:
        """A session for the block; it is closed when the block ends, however it ends."""
        info = await self.create_session(options, **fields)
        try:
            yield RemoteSession(self, info)
        finally:
            try:
                await self.delete_session(info.id)
            except ApiClientError as exc:
                if exc.status != 404:
                    raise

    # -- exec and tools ----------------------------------------------------------------------

    async def exec(
        self,
        session_id: str,
        command: str | list[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
        max_output: int | None = None,
        user: str | None = None,
    ) -> ExecResult:
        """Run ``command`` (a bash string or an argv list) to completion."""
        options = ops.exec_options(
            timeout=timeout, cwd=cwd, env=env, stdin=stdin, max_output=max_output, user=user
        )
        answer = await self._json(ops.exec_command(session_id, command, options))
        return ExecResponse.model_validate(answer).to_result()

    @asynccontextmanager
    async def exec_stream(
        self,
        session_id: str,
        command: str | list[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
        max_output: int | None = None,
        user: str | None = None,
    ) -> AsyncIterator[ExecOutputStream]:
        """Run ``command``, its output as it comes::

            async with client.exec_stream(sid, "make") as running:
                async for chunk in running:
                    print(chunk.stream, chunk.data)
                result = await running.result()

        Leaving the block before the result cancels the command."""
        options = ops.exec_options(
            timeout=timeout, cwd=cwd, env=env, stdin=stdin, max_output=max_output, user=user
        )
        async with self.stream(
            ops.exec_command(session_id, command, options, stream=True)
        ) as events:
            running = ExecOutputStream(events)
            try:
                yield running
            finally:
                await running.aclose()

    async def run_tools(
        self,
        session_id: str,
        tool_uses: list[dict[str, Any]],
        tool_types: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Run Claude's ``tool_use`` blocks; the ``tool_result`` blocks, in the same order."""
        answer = await self._json(ops.run_tools(session_id, tool_uses, tool_types))
        return ToolsResponse.model_validate(answer).tool_results

    # -- files and the desktop ---------------------------------------------------------------

    async def read_file(self, session_id: str, path: str) -> bytes:
        return await self.send(ops.download(session_id, path))

    async def write_file(
        self, session_id: str, path: str, data: bytes | str, *, mode: int | None = None
    ) -> None:
        """Write ``data`` to ``path``, atomically (parent folders are created)."""
        content = data.encode("utf-8") if isinstance(data, str) else data
        await self.send(ops.upload(session_id, path, content, mode))

    async def list_files(self, session_id: str, path: str, *, depth: int = 1) -> FileListing:
        """A folder's entries, ``depth`` levels down."""
        return FileListing.model_validate(
            await self._json(ops.list_files(session_id, path, depth=depth))
        )

    async def remove(self, session_id: str, path: str, *, recursive: bool = False) -> None:
        """Remove a file, or a folder (with ``recursive``, and what it holds)."""
        await self.send(ops.remove_file(session_id, path, recursive=recursive))

    async def put_dir(self, session_id: str, local: str | Path, remote: str) -> dict[str, Any]:
        """Copy the local folder ``local`` into ``remote`` (made if missing), as a tar
        stream; the server's count of ``entries`` and ``bytes``."""
        return await _folders.put_dir(self._http, self.url, session_id, local, remote)

    async def get_dir(self, session_id: str, remote: str, local: str | Path) -> DirCopy:
        """Copy the sandbox folder ``remote`` into ``local``; entries that would land
        outside it (absolute names, ``..``, links out, devices) are skipped and listed."""
        return await _folders.get_dir(self._http, self.url, session_id, remote, local)

    async def view_url(self, session_id: str, *, interactive: bool = False) -> str:
        """A URL showing a desktop session live in a browser."""
        return str((await self._json(ops.view(session_id, interactive=interactive)))["url"])

    async def screenshot(self, session_id: str, *, scaled: bool = False) -> bytes:
        """A PNG of a desktop session's screen."""
        return await self.send(ops.screenshot(session_id, scaled=scaled))

    # -- agent runs and workflows --------------------------------------------------------------

    async def start_agent_run(
        self, run: AgentRunCreate | None = None, /, **fields: Any
    ) -> AgentRunInfo:
        """Start Claude on ``task`` in a fresh sandbox; follow it with ``agent_run_events``."""
        if run is None:
            try:
                run = AgentRunCreate(**fields)
            except pydantic.ValidationError as exc:
                raise invalid_request(exc) from None
        body = run.model_dump(exclude_none=True)
        return AgentRunInfo.model_validate(await self._json(ops.start_agent_run(body)))

    async def list_agent_runs(self) -> list[AgentRunInfo]:
        answer = await self._json(ops.agent_runs())
        return [AgentRunInfo.model_validate(run) for run in answer]

    async def get_agent_run(self, run_id: str) -> AgentRunInfo:
        return AgentRunInfo.model_validate(await self._json(ops.agent_run(run_id)))

    async def cancel_agent_run(self, run_id: str) -> None:
        await self.send(ops.cancel_agent_run(run_id))

    def agent_run_events(
        self, run_id: str, *, after: int = 0
    ) -> AbstractAsyncContextManager[EventStream]:
        """The run's events (``text``, ``tool_use``, ``tool_result``, ..., ``end``), live."""
        return self.stream(ops.agent_run_events(run_id, after=after))

    async def agent_run_transcript(self, run_id: str) -> list[dict[str, Any]]:
        """Every message, tool call, result and timing of the run."""
        data = await self.send(ops.agent_run_transcript(run_id))
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    async def run_workflow(
        self,
        workflow: dict[str, Any] | str,
        *,
        vars: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> WorkflowRunResponse:
        """Run a workflow (YAML text or its JSON) to the end; its outputs and steps."""
        return WorkflowRunResponse.model_validate(
            await self._json(ops.run_workflow(workflow, vars=vars, secrets=secrets))
        )


class RemoteSession:
    """A session on a server, as ``Client.session`` or ``Client.attach`` gives it."""

    def __init__(self, client: Client, info: SessionInfo) -> None:
        self.client = client
        self.info = info
        self.id = info.id

    async def exec(
        self,
        command: str | list[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
        max_output: int | None = None,
        user: str | None = None,
    ) -> ExecResult:
        return await self.client.exec(
            self.id,
            command,
            timeout=timeout,
            cwd=cwd,
            env=env,
            stdin=stdin,
            max_output=max_output,
            user=user,
        )

    def exec_stream(
        self, command: str | list[str], **options: Any
    ) -> AbstractAsyncContextManager[ExecOutputStream]:
        """``Client.exec_stream`` for this session (the same keyword options)."""
        return self.client.exec_stream(self.id, command, **options)

    async def read_file(self, path: str) -> bytes:
        return await self.client.read_file(self.id, path)

    async def write_file(self, path: str, data: bytes | str, *, mode: int | None = None) -> None:
        await self.client.write_file(self.id, path, data, mode=mode)

    async def list_files(self, path: str, *, depth: int = 1) -> FileListing:
        return await self.client.list_files(self.id, path, depth=depth)

    async def put_dir(self, local: str | Path, remote: str) -> dict[str, Any]:
        return await self.client.put_dir(self.id, local, remote)

    async def get_dir(self, remote: str, local: str | Path) -> DirCopy:
        return await self.client.get_dir(self.id, remote, local)

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        await self.client.remove(self.id, path, recursive=recursive)

    async def run_tools(
        self, tool_uses: list[dict[str, Any]], tool_types: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        return await self.client.run_tools(self.id, tool_uses, tool_types)

    async def view_url(self, *, interactive: bool = False) -> str:
        return await self.client.view_url(self.id, interactive=interactive)

    async def screenshot(self, *, scaled: bool = False) -> bytes:
        return await self.client.screenshot(self.id, scaled=scaled)

    async def close(self) -> None:
        await self.client.delete_session(self.id)
