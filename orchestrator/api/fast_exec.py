"""A lean path for the hottest request: a plain (non-streaming) exec.

FastAPI's routing, dependency solving and response validation cost about a
millisecond per request on a small machine -- as much as the sandbox call
itself.  This ASGI layer answers ``POST /v1/sessions/{id}/exec`` directly
when everything about the request is ordinary: a valid token, an owned
session, a well-formed body, no streaming.  Anything else (an error to
report, a stream to open) is handed to the FastAPI app with the body
replayed, so every error still comes from one place and looks the same.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pydantic
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api.errors import status_for
from orchestrator.api.models import ExecRequest, ExecResponse
from orchestrator.errors import SbxError

if TYPE_CHECKING:
    from orchestrator.api.app import ApiState

__all__ = ["FastExec"]

_PATH = re.compile(r"^/v1/sessions/([A-Za-z0-9]+)/exec$")
_STREAMING = (b"text/event-stream", b"application/x-ndjson", b"application/jsonl")


class FastExec:
    def __init__(self, app: ASGIApp, state: ApiState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            _PATH.match(scope.get("path", ""))
            if scope["type"] == "http" and scope.get("method") == "POST"
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        accept = headers.get(b"accept", b"")
        if any(kind in accept for kind in _STREAMING):
            await self.app(scope, receive, send)
            return
        body, complete = await self._read_body(receive, headers)
        handled = complete and await self._try(match.group(1), headers, body, send)
        if not handled:
            await self.app(scope, _replay(body, receive, complete), send)

    async def _read_body(self, receive: Receive, headers: dict[bytes, bytes]) -> tuple[bytes, bool]:
        limit = self.state.config.api.max_body
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return b"", False
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"".join(chunks), False
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks), True

    async def _try(
        self, session_id: str, headers: dict[bytes, bytes], body: bytes, send: Send
    ) -> bool:
        """Answer the request and return True, or return False to let FastAPI answer."""
        state = self.state
        principal = state.auth.lookup(headers.get(b"authorization", b"").decode("latin-1"))
        session = state.orch.supervisor.sessions.get(session_id)
        if principal is None or session is None or not principal.may_use(session.owner):
            return False
        try:
            request = ExecRequest.model_validate_json(body)
        except pydantic.ValidationError:
            return False
        if request.stdin is not None or request.stdin_b64 is not None:
            return False  # the route decodes and checks stdin
        try:
            result = await session.exec(
                request.command,
                timeout=request.timeout,
                cwd=request.cwd,
                env=request.env or None,
                max_output=request.max_output,
            )
            status, payload = 200, ExecResponse.from_result(result).model_dump()
        except SbxError as exc:
            status, kind = status_for(exc)
            payload = {"error": {"type": kind, "message": str(exc)}}
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})
        return True


def _replay(body: bytes, receive: Receive, complete: bool) -> Receive:
    """A ``receive`` that first gives back the body already read."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return dict(await receive())

    return replay
