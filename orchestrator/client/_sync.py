"""``SyncClient``: ``Client``'s typed methods for blocking code, over ``SbxClient``'s transport.

No event loop and no thread: each method sends the same operation as
``Client`` (``_operations``) through ``SbxClient.send`` -- one keep-alive
connection on a blocking socket, standard library -- and reads the answer
into the same models.  It holds no logic of its own beyond that, so it must
not grow any: a new operation goes to ``_operations`` and to both clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import pydantic

from orchestrator.api.client import ApiClientError, SbxClient
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
from orchestrator.client._client import invalid_request
from orchestrator.client._streams import stream_error
from orchestrator.exec_events import event_bytes
from orchestrator.results import ExecResult, OutputChunk

__all__ = ["SyncClient", "SyncExecOutput"]


class SyncExecOutput:
    """A running command's output as ``OutputChunk``, then ``result()`` (as ``Client``'s)."""

    def __init__(self, events: Iterator[dict[str, Any]]) -> None:
        self.dropped_bytes = 0
        self._events = events
        self._result: ExecResult | None = None

    def __iter__(self) -> Iterator[OutputChunk]:
        for event in self._events:
            kind = event.pop("type", "")
            if kind in ("stdout", "stderr"):
                stream: Literal["stdout", "stderr"] = "stdout" if kind == "stdout" else "stderr"
                yield OutputChunk(stream=stream, data=event_bytes(event))
            elif kind == "dropped":
                self.dropped_bytes += int(event.get("bytes", 0))
            elif kind == "error":
                raise stream_error(event)
            elif kind == "result":
                self._result = ExecResponse.model_validate(event).to_result()
                return
        raise ApiClientError(502, "incomplete", "the server ended the stream without a result")

    def result(self) -> ExecResult:
        """The command's result; output not yet read is read and discarded."""
        if self._result is None:
            for _ in self:
                pass
        assert self._result is not None
        return self._result


class SyncClient:
    """``Client`` for blocking code: the same methods, models and errors, without ``await``.

    One connection, used by one thread at a time; ``close()`` it or use ``with``."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 600.0
    ) -> None:
        self.http = SbxClient(url, token, timeout=timeout)
        self.url = self.http.url

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, call: ops.ApiCall) -> Any:
        data = self.http.send(call)
        return json.loads(data) if data else None

    # -- sessions ------------------------------------------------------------------------

    def create_session(self, options: SessionCreate | None = None, /, **fields: Any) -> SessionInfo:
        if options is None:
            try:
                options = SessionCreate(**fields)
            except pydantic.ValidationError as exc:
                raise invalid_request(exc) from None
        return SessionInfo.model_validate(self._json(ops.create_session(options.options())))

    def list_sessions(self) -> list[SessionInfo]:
        return SessionList.model_validate(self._json(ops.list_sessions())).sessions

    def get_session(self, session_id: str) -> SessionInfo:
        return SessionInfo.model_validate(self._json(ops.get_session(session_id)))

    def delete_session(self, session_id: str) -> None:
        self.http.send(ops.delete_session(session_id))

    @contextmanager
    def session(self, options: SessionCreate | None = None, /, **fields: Any) -> Iterator[str]:
        """A session's id for the block; the session is closed when the block ends."""
        info = self.create_session(options, **fields)
        try:
            yield info.id
        finally:
            try:
                self.delete_session(info.id)
            except ApiClientError as exc:
                if exc.status != 404:
                    raise

    # -- exec, tools, files ----------------------------------------------------------------

    def exec(
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
        options = ops.exec_options(
            timeout=timeout, cwd=cwd, env=env, stdin=stdin, max_output=max_output, user=user
        )
        answer = self._json(ops.exec_command(session_id, command, options))
        return ExecResponse.model_validate(answer).to_result()

    @contextmanager
    def exec_stream(
        self, session_id: str, command: str | list[str], **options: Any
    ) -> Iterator[SyncExecOutput]:
        """``Client.exec_stream`` for blocking code; leaving early cancels the command."""
        events = self.http.exec_stream(session_id, command, **ops.exec_options(**options))
        try:
            yield SyncExecOutput(events)
        finally:
            events.close()

    def run_tools(
        self,
        session_id: str,
        tool_uses: list[dict[str, Any]],
        tool_types: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        answer = self._json(ops.run_tools(session_id, tool_uses, tool_types))
        return ToolsResponse.model_validate(answer).tool_results

    def read_file(self, session_id: str, path: str) -> bytes:
        return self.http.send(ops.download(session_id, path))

    def write_file(
        self, session_id: str, path: str, data: bytes | str, *, mode: int | None = None
    ) -> None:
        content = data.encode("utf-8") if isinstance(data, str) else data
        self.http.send(ops.upload(session_id, path, content, mode))

    def list_files(self, session_id: str, path: str, *, depth: int = 1) -> FileListing:
        return FileListing.model_validate(self._json(ops.list_files(session_id, path, depth=depth)))

    def remove(self, session_id: str, path: str, *, recursive: bool = False) -> None:
        self.http.send(ops.remove_file(session_id, path, recursive=recursive))

    def view_url(self, session_id: str, *, interactive: bool = False) -> str:
        return str(self._json(ops.view(session_id, interactive=interactive))["url"])

    def screenshot(self, session_id: str, *, scaled: bool = False) -> bytes:
        return self.http.send(ops.screenshot(session_id, scaled=scaled))

    # -- agent runs ----------------------------------------------------------------------------

    def start_agent_run(self, run: AgentRunCreate | None = None, /, **fields: Any) -> AgentRunInfo:
        if run is None:
            try:
                run = AgentRunCreate(**fields)
            except pydantic.ValidationError as exc:
                raise invalid_request(exc) from None
        body = run.model_dump(exclude_none=True)
        return AgentRunInfo.model_validate(self._json(ops.start_agent_run(body)))

    def list_agent_runs(self) -> list[AgentRunInfo]:
        return [AgentRunInfo.model_validate(run) for run in self._json(ops.agent_runs())]

    def get_agent_run(self, run_id: str) -> AgentRunInfo:
        return AgentRunInfo.model_validate(self._json(ops.agent_run(run_id)))

    def cancel_agent_run(self, run_id: str) -> None:
        self.http.send(ops.cancel_agent_run(run_id))

    def agent_run_transcript(self, run_id: str) -> list[dict[str, Any]]:
        data = self.http.send(ops.agent_run_transcript(run_id))
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def run_workflow(
        self,
        workflow: dict[str, Any] | str,
        *,
        vars: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> WorkflowRunResponse:
        return WorkflowRunResponse.model_validate(
            self._json(ops.run_workflow(workflow, vars=vars, secrets=secrets))
        )
