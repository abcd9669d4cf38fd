"""The HTTP API's operations as requests, built once for every client of the API.

Each function returns an ``ApiCall``: the method, path, query, body and
headers of one operation, without sending anything.  ``SbxClient`` (blocking,
standard library) and ``orchestrator.client.Client`` (anyio, httpx) send the
very same calls, so a route, a query parameter or a header is spelled in one
place.  Standard library only, and no I/O: the thin ``sbx run`` imports it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

__all__ = [
    "JSON_HEADERS",
    "NDJSON_HEADERS",
    "ApiCall",
    "agent_run",
    "agent_run_events",
    "agent_run_transcript",
    "agent_runs",
    "cancel_agent_run",
    "create_session",
    "delete_session",
    "download",
    "exec_command",
    "exec_options",
    "get_session",
    "list_files",
    "list_sessions",
    "remove_file",
    "run_tools",
    "run_workflow",
    "screenshot",
    "session_path",
    "start_agent_run",
    "upload",
    "view",
]

JSON_HEADERS = {"Content-Type": "application/json"}
NDJSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
_OCTETS = {"Content-Type": "application/octet-stream"}


class ApiCall(NamedTuple):
    """One request of the API; ``target`` is the path with its query string."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json_body: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    stream: bool = False

    @property
    def target(self) -> str:
        if not self.params:
            return self.path
        return self.path + "?" + urlencode({k: _param(v) for k, v in self.params.items()})

    def body(self) -> bytes:
        """The encoded body (JSON, raw content or nothing)."""
        import json

        if self.json_body is not None:
            return json.dumps(self.json_body).encode()
        return self.content if self.content is not None else b""

    def all_headers(self) -> dict[str, str]:
        headers = dict(JSON_HEADERS) if self.json_body is not None else {}
        headers.update(self.headers or {})
        return headers


def session_path(session_id: str, *rest: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in ("v1", "sessions", session_id, *rest))


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- sessions ----------------------------------------------------------------------------


def create_session(options: Mapping[str, Any]) -> ApiCall:
    return ApiCall("POST", "/v1/sessions", json_body=dict(options))


def list_sessions() -> ApiCall:
    return ApiCall("GET", "/v1/sessions")


def get_session(session_id: str) -> ApiCall:
    return ApiCall("GET", session_path(session_id))


def delete_session(session_id: str) -> ApiCall:
    return ApiCall("DELETE", session_path(session_id))


# -- exec and tools ----------------------------------------------------------------------


def exec_options(
    *,
    timeout: float | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | bytes | None = None,
    max_output: int | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """The fields of an exec request (``ExecRequest``); bytes for stdin go as base64."""
    fields: dict[str, Any] = {}
    if timeout is not None:
        fields["timeout"] = timeout
    if cwd is not None:
        fields["cwd"] = cwd
    if env:
        fields["env"] = dict(env)
    if isinstance(stdin, bytes):
        fields["stdin_b64"] = base64.b64encode(stdin).decode("ascii")
    elif stdin is not None:
        fields["stdin"] = stdin
    if max_output is not None:
        fields["max_output"] = max_output
    if user is not None:
        fields["user"] = user
    return fields


def exec_command(
    session_id: str, command: str | list[str], options: Mapping[str, Any], *, stream: bool = False
) -> ApiCall:
    """Run ``command``; with ``stream``, its output comes as NDJSON events."""
    return ApiCall(
        "POST",
        session_path(session_id, "exec"),
        json_body={"command": command, **options},
        headers=NDJSON_HEADERS if stream else None,
        stream=stream,
    )


def run_tools(
    session_id: str, tool_uses: list[dict[str, Any]], tool_types: Mapping[str, str] | None
) -> ApiCall:
    body: dict[str, Any] = {"tool_uses": tool_uses}
    if tool_types:
        body["tool_types"] = dict(tool_types)
    return ApiCall("POST", session_path(session_id, "tools"), json_body=body)


# -- files and the desktop -----------------------------------------------------------------


def upload(session_id: str, path: str, data: bytes, mode: int | None = None) -> ApiCall:
    params: dict[str, Any] = {"path": path}
    if mode is not None:
        params["mode"] = mode
    return ApiCall(
        "PUT", session_path(session_id, "files"), params=params, content=data, headers=_OCTETS
    )


def download(session_id: str, path: str) -> ApiCall:
    return ApiCall("GET", session_path(session_id, "files"), params={"path": path})


def remove_file(session_id: str, path: str, *, recursive: bool = False) -> ApiCall:
    return ApiCall(
        "DELETE",
        session_path(session_id, "files"),
        params={"path": path, "recursive": recursive},
    )


def list_files(session_id: str, path: str, *, depth: int = 1) -> ApiCall:
    return ApiCall(
        "GET", session_path(session_id, "files", "list"), params={"path": path, "depth": depth}
    )


def view(session_id: str, *, interactive: bool = False) -> ApiCall:
    return ApiCall("POST", session_path(session_id, "view"), params={"interactive": interactive})


def screenshot(session_id: str, *, scaled: bool = False) -> ApiCall:
    return ApiCall("GET", session_path(session_id, "screenshot"), params={"scaled": scaled})


# -- agent runs and workflows --------------------------------------------------------------


def _run_path(run_id: str, *rest: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in ("v1", "agent-runs", run_id, *rest))


def start_agent_run(fields: Mapping[str, Any]) -> ApiCall:
    return ApiCall("POST", "/v1/agent-runs", json_body=dict(fields))


def agent_runs() -> ApiCall:
    return ApiCall("GET", "/v1/agent-runs")


def agent_run(run_id: str) -> ApiCall:
    return ApiCall("GET", _run_path(run_id))


def cancel_agent_run(run_id: str) -> ApiCall:
    return ApiCall("DELETE", _run_path(run_id))


def agent_run_events(run_id: str, *, after: int = 0) -> ApiCall:
    return ApiCall(
        "GET",
        _run_path(run_id, "events"),
        params={"after": after} if after else None,
        headers={"Accept": "application/x-ndjson"},
        stream=True,
    )


def agent_run_transcript(run_id: str) -> ApiCall:
    return ApiCall("GET", _run_path(run_id, "transcript"))


def run_workflow(
    workflow: Mapping[str, Any] | str,
    *,
    vars: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> ApiCall:
    body = {"workflow": workflow, "vars": dict(vars or {}), "secrets": dict(secrets or {})}
    return ApiCall("POST", "/v1/workflows", json_body=body)
