"""A local stand-in for Anthropic's Messages API: real HTTP, real SSE, a scripted Claude.

It serves ``POST /v1/messages`` the way the cloud API does -- a JSON message,
or with ``"stream": true`` the ``message_start`` / ``content_block_*`` /
``message_delta`` / ``message_stop`` event stream -- and
``POST /v1/messages/count_tokens``, plus error responses (429, 529, ...) in
the API's error format with ``request-id`` headers, so the real ``anthropic``
SDK talks to it unchanged through ``base_url``.  Replies come from a script,
in order (``api_script``); every request is recorded for assertions.

Like the API it refuses what the API refuses (``api_rules``), counts tokens
and reports prompt-cache reads and writes (``api_tokens``), applies context
editing, sends thinking blocks when a request enables thinking, and with
``max_input_tokens`` refuses a prompt longer than that window.

Tests use it in place of the cloud API, which cannot be reached from CI; users
use it (``sbx fake-api``) to dry-run an agent setup without spending tokens.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from orchestrator.testing.api_rules import refusal
from orchestrator.testing.api_script import (
    APIErrorReply,
    Reply,
    ReplySource,
    ToolUseReply,
    load_script,
    summary_reply,
)
from orchestrator.testing.api_stream import stream_events
from orchestrator.testing.api_tokens import PromptCache, apply_context_edits, count_request

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
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    size: int = 0
    """The body's length in bytes, as sent."""
    usage: dict[str, Any] = field(default_factory=dict)
    """What the stand-in counted: the usage it answered, or ``input_tokens`` of a count."""

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

    @property
    def is_count(self) -> bool:
        return self.path == COUNT_TOKENS


@dataclass
class MessagesAPIServer:
    """An ASGI app plus a trio task that serves it on 127.0.0.1."""

    replies: Sequence[ReplySource]
    api_key: str | None = None
    model_echo: bool = True
    max_input_tokens: int | None = None
    """The context window: a longer prompt is refused ("prompt is too long"); ``None``, none."""
    min_cache_tokens: int = 1024
    """The shortest prefix the cache keeps (the larger models' minimum)."""
    requests: list[RecordedRequest] = field(default_factory=list)
    url: str = ""
    cache: PromptCache = field(default_factory=PromptCache)
    _cursor: int = 0

    def __post_init__(self) -> None:
        self.cache.min_tokens = self.min_cache_tokens

    @property
    def messages_requests(self) -> list[RecordedRequest]:
        """The requests to ``/v1/messages`` (token counts left out)."""
        return [r for r in self.requests if not r.is_count]

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
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = f"req_{secrets.token_hex(12)}"
        path = scope["path"]
        if scope["method"] != "POST" or path not in (MESSAGES, COUNT_TOKENS):
            await self._json(
                send, 404, self._error("not_found_error", f"no route {path}"), request_id
            )
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            await self._json(
                send, 400, self._error("invalid_request_error", "the body is not JSON"), request_id
            )
            return
        recorded = RecordedRequest(scope["method"], path, headers, payload, size=len(body))
        self.requests.append(recorded)
        if self.api_key is not None and recorded.api_key != self.api_key:
            await self._json(
                send, 401, self._error("authentication_error", "invalid API key"), request_id
            )
            return
        problem = refusal(payload, recorded.betas)
        if problem is None:
            edited, applied = apply_context_edits(payload, count_request(payload))
            total = count_request(edited)
            window = self.max_input_tokens
            if path == MESSAGES and window is not None and total > window:
                problem = f"prompt is too long: {total} tokens > {window} maximum"
        if problem is not None:
            await self._json(send, 400, self._error("invalid_request_error", problem), request_id)
            return
        if path == COUNT_TOKENS:
            answer: dict[str, Any] = {"input_tokens": total}
            if payload.get("context_management"):
                answer["context_management"] = {"original_input_tokens": count_request(payload)}
            recorded.usage = dict(answer)
            await self._json(send, 200, answer, request_id)
            return
        reply = self._next_reply(payload)
        if reply is None:
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
        message = self._message(reply, payload, edited, applied)
        recorded.usage = dict(message["usage"])
        if payload.get("stream"):
            await self._stream(send, message, request_id)
        else:
            await self._json(send, 200, message, request_id)

    def _next_reply(self, payload: dict[str, Any]) -> Reply | None:
        """The script's next reply; a request that forbids tools gets a summary instead."""
        if (payload.get("tool_choice") or {}).get("type") == "none":
            return summary_reply(payload)
        if self._cursor >= len(self.replies):
            return None
        source = self.replies[self._cursor]
        self._cursor += 1
        return source(payload) if callable(source) else source

    @staticmethod
    def _error(kind: str, text: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": kind, "message": text}}

    def _message(
        self,
        reply: Reply,
        payload: dict[str, Any],
        edited: dict[str, Any],
        applied: list[dict[str, Any]],
    ) -> dict[str, Any]:
        thinking = (payload.get("thinking") or {}).get("type") == "enabled"
        content = reply.content(thinking=thinking)
        stop = reply.stop_reason or (
            "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
        )
        if reply.input_tokens is not None:
            usage: dict[str, Any] = {"input_tokens": reply.input_tokens}
        else:
            cached = self.cache.use(edited)
            usage = {
                "input_tokens": cached.input_tokens,
                "cache_creation_input_tokens": cached.cache_creation_input_tokens,
                "cache_read_input_tokens": cached.cache_read_input_tokens,
            }
        usage["output_tokens"] = (
            reply.output_tokens
            if reply.output_tokens is not None
            else max(1, math.ceil(len(json.dumps(content)) / 4))
        )
        message: dict[str, Any] = {
            "id": f"msg_{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "model": payload.get("model", "claude-fake"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if payload.get("context_management"):
            message["context_management"] = {"applied_edits": applied}
        return message

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
        for name, data in stream_events(message):
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
