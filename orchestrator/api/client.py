"""A small synchronous client of the HTTP API, for the CLI and for scripts.

It reads ``SBX_URL`` and ``SBX_TOKEN`` when not given them, turns API errors
into ``ApiClientError`` carrying the server's message, and streams exec
output as NDJSON events so it can pass bytes through as they come.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

from orchestrator.errors import SbxError
from orchestrator.exec_events import event_bytes

__all__ = ["DEFAULT_URL", "ApiClientError", "SbxClient", "event_bytes"]

DEFAULT_URL = "http://127.0.0.1:8765"


class ApiClientError(SbxError):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class SbxClient:
    def __init__(
        self, url: str | None = None, token: str | None = None, timeout: float = 600.0
    ) -> None:
        self.url = (url or os.environ.get("SBX_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("SBX_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SbxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        try:
            error = response.json().get("error", {})
            kind, message = error.get("type", "error"), error.get("message", response.text)
        except ValueError:
            kind, message = "error", response.text or response.reason_phrase
        raise ApiClientError(response.status_code, kind, f"{message} (HTTP {response.status_code})")

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._check(self._http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise ApiClientError(
                0,
                "unreachable",
                f"cannot reach the sbx API at {self.url} ({exc}); start `sbx serve` or set SBX_URL",
            ) from None

    # -- sessions --------------------------------------------------------------------

    def create_session(self, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/v1/sessions", json=options).json()
        return result

    def list_sessions(self) -> list[dict[str, Any]]:
        sessions: list[dict[str, Any]] = self._request("GET", "/v1/sessions").json()["sessions"]
        return sessions

    def delete_session(self, session_id: str) -> None:
        self._request("DELETE", f"/v1/sessions/{session_id}")

    # -- exec, tools, files -------------------------------------------------------------

    def exec(self, session_id: str, command: str | list[str], **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/v1/sessions/{session_id}/exec", json={"command": command, **options}
        ).json()
        return result

    def exec_stream(
        self, session_id: str, command: str | list[str], **options: Any
    ) -> Iterator[dict[str, Any]]:
        """NDJSON events: ``stdout``/``stderr`` chunks, then ``result`` (or ``error``)."""
        try:
            with self._http.stream(
                "POST",
                f"/v1/sessions/{session_id}/exec",
                json={"command": command, **options},
                headers={"Accept": "application/x-ndjson"},
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise ApiClientError(
                0, "unreachable", f"lost the sbx API at {self.url} ({exc})"
            ) from None

    def run_tools(
        self,
        session_id: str,
        tool_uses: list[dict[str, Any]],
        tool_types: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"tool_uses": tool_uses}
        if tool_types:
            body["tool_types"] = tool_types
        results: list[dict[str, Any]] = self._request(
            "POST", f"/v1/sessions/{session_id}/tools", json=body
        ).json()["tool_results"]
        return results

    def upload(self, session_id: str, path: str, data: bytes, mode: int | None = None) -> None:
        params: dict[str, Any] = {"path": path}
        if mode is not None:
            params["mode"] = mode
        self._request(
            "PUT",
            f"/v1/sessions/{session_id}/files",
            params=params,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def download(self, session_id: str, path: str) -> bytes:
        return self._request(
            "GET", f"/v1/sessions/{session_id}/files", params={"path": path}
        ).content

    def view_url(self, session_id: str, *, interactive: bool = False) -> str:
        response = self._request(
            "POST", f"/v1/sessions/{session_id}/view", params={"interactive": interactive}
        )
        return str(response.json()["url"])

    def screenshot(self, session_id: str, *, scaled: bool = False) -> bytes:
        return self._request(
            "GET", f"/v1/sessions/{session_id}/screenshot", params={"scaled": scaled}
        ).content

    def get(self, path: str) -> Any:
        return self._request("GET", path).json()
