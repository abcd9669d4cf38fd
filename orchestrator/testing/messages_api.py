"""A local stand-in for Anthropic's Messages API: real HTTP, real SSE, a scripted Claude.

It serves ``POST /v1/messages`` the way the cloud API does -- a JSON message,
or with ``"stream": true`` the ``message_start`` / ``content_block_*`` /
``message_delta`` / ``message_stop`` event stream -- plus error responses
(429, 529, ...) in the API's error format with ``request-id`` headers, so the
real ``anthropic`` SDK talks to it unchanged through ``base_url``.  Replies
come from a script, in order; every request is recorded for assertions.

Tests use it in place of the cloud API, which cannot be reached from CI; users
use it (``sbx fake-api``) to dry-run an agent setup without spending tokens.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "APIErrorReply",
    "MessagesAPIServer",
    "RecordedRequest",
    "Reply",
    "ToolUseReply",
    "load_script",
]

ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]


class ToolUseReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class APIErrorReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int = 529
    type: str = "overloaded_error"
    message: str = "Overloaded"
    retry_after_ms: int | None = 10


class Reply(BaseModel):
    """One scripted answer: text and/or tool calls, or an API error."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    tool_uses: list[ToolUseReply] = Field(default_factory=list)
    stop_reason: str | None = None
    error: APIErrorReply | None = None
    input_tokens: int = 100
    output_tokens: int = 20

    def content(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if self.text is not None:
            blocks.append({"type": "text", "text": self.text})
        for tool_use in self.tool_uses:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_use.id or f"toolu_{secrets.token_hex(12)}",
                    "name": tool_use.name,
                    "input": tool_use.input,
                }
            )
        return blocks


ReplySource = Reply | Callable[[dict[str, Any]], Reply]
"""A fixed reply, or a function of the request body (to react to tool results)."""


def load_script(path: str | Path) -> list[Reply]:
    """A YAML (or JSON) list of replies, e.g. ``- {text: hi, tool_uses: [{name: bash, ...}]}``."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: a script is a list of replies")
    return [Reply.model_validate(item) for item in data]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def api_key(self) -> str | None:
        """The key, sent as ``x-api-key`` or (newer SDKs) ``Authorization: Bearer``."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    @property
    def betas(self) -> list[str]:
        raw = self.headers.get("anthropic-beta", "")
        return [flag.strip() for flag in raw.split(",") if flag.strip()]


@dataclass
class MessagesAPIServer:
    """An ASGI app plus a trio task that serves it on 127.0.0.1."""

    replies: Sequence[ReplySource]
    api_key: str | None = None
    model_echo: bool = True
    requests: list[RecordedRequest] = field(default_factory=list)
    url: str = ""
    _cursor: int = 0

    async def serve(
        self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED, port: int = 0
    ) -> None:
        """Serve until cancelled; ``task_status.started`` gives the base URL."""
        from hypercorn.config import Config as HypercornConfig
        from hypercorn.trio import serve

        config = HypercornConfig()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.5

        async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(self, config, task_status=task_status)  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(run)
            self.url = binds[0]
            task_status.started(self.url)

    @property
    def remaining(self) -> int:
        return len(self.replies) - self._cursor

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = f"req_{secrets.token_hex(12)}"
        if scope["method"] != "POST" or scope["path"] != "/v1/messages":
            await self._json(
                send, 404, self._error("not_found_error", f"no route {scope['path']}"), request_id
            )
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            await self._json(
                send, 400, self._error("invalid_request_error", "the body is not JSON"), request_id
            )
            return
        recorded = RecordedRequest(scope["method"], scope["path"], headers, payload)
        self.requests.append(recorded)
        if self.api_key is not None and recorded.api_key != self.api_key:
            await self._json(
                send, 401, self._error("authentication_error", "invalid API key"), request_id
            )
            return
        problem = _invalid_content(payload)
        if problem is not None:
            await self._json(send, 400, self._error("invalid_request_error", problem), request_id)
            return
        if self._cursor >= len(self.replies):
            await self._json(
                send,
                400,
                self._error(
                    "invalid_request_error",
                    f"the fake API's script is exhausted after {self._cursor} replies",
                ),
                request_id,
            )
            return
        source = self.replies[self._cursor]
        self._cursor += 1
        reply = source(payload) if callable(source) else source
        if reply.error is not None:
            extra = {}
            if reply.error.retry_after_ms is not None:
                extra["retry-after-ms"] = str(reply.error.retry_after_ms)
            await self._json(
                send,
                reply.error.status,
                self._error(reply.error.type, reply.error.message),
                request_id,
                extra,
            )
            return
        message = self._message(reply, payload)
        if payload.get("stream"):
            await self._stream(send, message, request_id)
        else:
            await self._json(send, 200, message, request_id)

    @staticmethod
    def _error(kind: str, text: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": kind, "message": text}}

    def _message(self, reply: Reply, payload: dict[str, Any]) -> dict[str, Any]:
        content = reply.content()
        stop = reply.stop_reason or (
            "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
        )
        return {
            "id": f"msg_{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "model": payload.get("model", "claude-fake"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        }

    async def _json(
        self,
        send: ASGISend,
        status: int,
        data: dict[str, Any],
        request_id: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps(data).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"request-id", request_id.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, send: ASGISend, message: dict[str, Any], request_id: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"request-id", request_id.encode()),
                ],
            }
        )

        async def event(name: str, data: dict[str, Any]) -> None:
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1},
        }
        await event("message_start", {"type": "message_start", "message": start})
        await event("ping", {"type": "ping"})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                await event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                text = block["text"]
                for piece in [text[i : i + 16] for i in range(0, len(text), 16)] or [""]:
                    await event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
            else:
                await event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    },
                )
                raw = json.dumps(block["input"])
                for piece in [raw[i : i + 24] for i in range(0, len(raw), 24)]:
                    await event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
            await event("content_block_stop", {"type": "content_block_stop", "index": index})
        await event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
        await event("message_stop", {"type": "message_stop"})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _invalid_content(payload: dict[str, Any]) -> str | None:
    """What the real API refuses in ``messages`` that a client could get wrong; else ``None``.

    Only the rules a tool runner can break are checked: a text block must not
    be empty, not even inside a ``tool_result``.
    """
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return None
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        blocks = content if isinstance(content, list) else []
        for j, block in enumerate(blocks):
            if not isinstance(block, dict):
                continue
            inner = block.get("content") if block.get("type") == "tool_result" else None
            for part in [block, *(inner if isinstance(inner, list) else [])]:
                if isinstance(part, dict) and part.get("type") == "text" and not part.get("text"):
                    return f"messages.{i}.content.{j}: text content blocks must be non-empty"
    return None
