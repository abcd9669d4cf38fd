"""MCP over streamable HTTP at ``/mcp`` in ``sbx serve --mcp``: sessions, tokens, departures.

Each MCP session (an ``initialize`` POST opens it; its ``Mcp-Session-Id``
names it) runs the SDK's server loop in a task of ``run``'s nursery and owns
the sandboxes its client creates.  Every request needs a bearer token of
the API (the same ``Authenticator``), and a session answers only to the
owner whose token opened it.  A session ends, and its sandboxes are removed,
when the client deletes it (``DELETE /mcp``), when it has had no request for
``api.mcp_idle_timeout``, when the server shuts down, or when its client
drops a connection the server was still answering on (a call in flight, or
its event stream): a client that vanishes mid-call leaves nothing behind.

The handshake era of MCP only: the stateless 2026-07-28 protocol has no
session to own sandboxes, so such a request is refused with the versions
served, and the SDK's clients fall back to the ``initialize`` handshake.
It must not know the API's routes; ``api.server`` mounts it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import structlog
import trio
from mcp.server.context import ServerRequestContext
from mcp.server.runner import serve_loop
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.jsonrpc import UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import Message, Receive, Scope, Send

from orchestrator.errors import SessionNotFound
from orchestrator.mcp_server.sandboxes import ClientSandboxes
from orchestrator.mcp_server.server import build_server
from orchestrator.runtime import Orchestrator

__all__ = ["McpHttpEndpoint"]

log = structlog.get_logger("orchestrator.mcp")

Authenticate = Callable[[str], str | None]
"""The owner of an ``Authorization`` header's token, or ``None`` if it grants nothing."""

_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]

STREAM_DROP_GRACE = 1.0
"""How long a session whose client dropped its event stream (GET) waits for that client's
DELETE before ending on its own: the SDK's client drops the stream first when it leaves."""


class _McpSession:
    def __init__(self, session_id: str, owner: str, transport: StreamableHTTPServerTransport,
                 sandboxes: ClientSandboxes) -> None:  # fmt: skip
        self.id = session_id
        self.owner = owner
        self.transport = transport
        self.sandboxes = sandboxes
        self.scope = trio.CancelScope()
        self.end_reason: str | None = None
        self.nursery: trio.Nursery | None = None
        """Where the sandboxes are removed from: the endpoint's nursery."""

    def end(self, reason: str) -> None:
        """Cancel what the session runs and remove its sandboxes at once (not after the
        SDK's loop has wound down: a client that left must not wait on that)."""
        if self.end_reason is None:
            self.end_reason = reason
        self.scope.cancel()
        nursery, self.nursery = self.nursery, None  # once is enough
        if nursery is not None:
            with contextlib.suppress(RuntimeError):  # closed: the host removed them already
                nursery.start_soon(self.sandboxes.close_all, self.end_reason)

    def end_soon(self, reason: str) -> None:
        """End the session after ``STREAM_DROP_GRACE`` unless something ends it first."""
        if self.nursery is not None:
            with contextlib.suppress(RuntimeError):
                self.nursery.start_soon(self._end_after, reason)

    async def _end_after(self, reason: str) -> None:
        await trio.sleep(STREAM_DROP_GRACE)
        self.end(reason)


class McpHttpEndpoint:
    """The ASGI app of ``/mcp``; ``run`` (in a nursery) hosts its sessions."""

    def __init__(
        self,
        orch: Orchestrator,
        authenticate: Authenticate,
        *,
        idle_timeout: float,
        max_sessions: int,
        loopback_hosts_only: bool = False,
    ) -> None:
        self.orch = orch
        self.authenticate = authenticate
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.security = (
            TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=_LOOPBACK_HOSTS,
                allowed_origins=[f"http://{host}" for host in _LOOPBACK_HOSTS],
            )
            if loopback_hosts_only
            else None
        )
        """Anonymous serving: a web page's scripts must not reach us by DNS rebinding."""
        self.server = build_server(orch, self._resolve)
        self.sessions: dict[str, _McpSession] = {}
        self._nursery: trio.Nursery | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host MCP sessions until cancelled; every session's sandboxes go with it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self.end_all("the server is shutting down")

    def end_all(self, reason: str) -> None:
        """End every MCP session (their sandboxes are removed as they wind up)."""
        for session in list(self.sessions.values()):
            session.end(reason)

    async def _host(
        self, session: _McpSession, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        transport = session.transport
        try:
            with session.scope:
                async with transport.connect() as (read, write):
                    task_status.started()
                    idle = transport.idle_scope
                    if idle is None:  # pragma: no cover - always set: an idle timeout is given
                        raise AssertionError("the transport has no idle scope")
                    with idle:
                        await serve_loop(
                            self.server, read, write, lifespan_state={}, session_id=session.id
                        )
                    if idle.cancelled_caught:
                        session.end_reason = session.end_reason or (
                            f"no request for {self.idle_timeout:g} s (api.mcp_idle_timeout)"
                        )
        finally:
            self.sessions.pop(session.id, None)
            with trio.CancelScope(shield=True):
                if not transport.is_terminated:
                    await transport.terminate()
            reason = session.end_reason or "the MCP session ended"
            await session.sandboxes.close_all(reason)
            log.info("MCP session ended", mcp_session=session.id, reason=reason)

    def _resolve(self, ctx: ServerRequestContext[Any, Any]) -> ClientSandboxes:
        request = ctx.request
        headers = getattr(request, "headers", None)
        session_id = headers.get(MCP_SESSION_ID_HEADER) if headers is not None else None
        session = self.sessions.get(session_id or "")
        if session is None:
            raise SessionNotFound(
                "this request belongs to no open MCP session; reconnect (initialize) to open one"
            )
        return session.sandboxes

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
        authorization = headers.get("authorization", b"").decode("latin-1")
        owner = self.authenticate(authorization)
        if owner is None:
            await _unauthorized(send, missing=not authorization.strip())
            return
        version = headers.get("mcp-protocol-version", b"").decode("latin-1")
        if version and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            await _unsupported_version(send, version)
            return
        session_id = headers.get(MCP_SESSION_ID_HEADER, b"").decode("latin-1")
        if session_id:
            session = self.sessions.get(session_id)
            if session is None or session.owner != owner:
                await _jsonrpc_error(
                    send, 404, -32600, "Session not found: it ended or was never opened "
                    "(sandboxes go with it); initialize a new session",
                )  # fmt: skip
                return
            if scope["method"] == "DELETE":
                session.end_reason = session.end_reason or "deleted by its client"
            await self._serve(session, scope, receive, send)
            if session.transport.is_terminated:
                session.end("deleted by the client")
            return
        if scope["method"] != "POST":
            await _jsonrpc_error(
                send, 400, -32600, "no Mcp-Session-Id header: open a session with an "
                "initialize POST first, then send its id with every request",
            )  # fmt: skip
            return
        await self._open_and_serve(owner, scope, receive, send)

    async def _open_and_serve(self, owner: str, scope: Scope, receive: Receive, send: Send) -> None:
        if self._nursery is None:
            await _jsonrpc_error(send, 503, -32603, "the server is shutting down; retry later")
            return
        if len(self.sessions) >= self.max_sessions:
            await _jsonrpc_error(
                send, 503, -32603, f"{len(self.sessions)} MCP sessions are open, the most "
                "allowed (api.mcp_max_sessions); close one (DELETE /mcp) or retry later",
            )  # fmt: skip
            return
        session_id = uuid.uuid4().hex
        transport = StreamableHTTPServerTransport(
            mcp_session_id=session_id,
            is_json_response_enabled=False,
            event_store=None,
            security_settings=self.security,
            idle_timeout=self.idle_timeout,
        )
        sandboxes = ClientSandboxes(self.orch, owner=owner, client=f"mcp-{session_id}")
        session = _McpSession(session_id, owner, transport, sandboxes)
        session.nursery = self._nursery
        self.sessions[session_id] = session
        try:
            await self._nursery.start(self._host, session)
        except BaseException:
            self.sessions.pop(session_id, None)
            raise
        status = await self._serve(session, scope, receive, send)
        if status is None or status >= 400:
            session.end("its opening request was refused")
        else:
            log.info("MCP session opened", mcp_session=session_id, owner=owner)

    async def _serve(
        self, session: _McpSession, scope: Scope, receive: Receive, send: Send
    ) -> int | None:
        """Serve one request of ``session``; a client that leaves before its answer ends it."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                session.end("its client disconnected")
                return None
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        gone = trio.Event()
        awaited = _AwaitedAnswer(scope["method"], bytes(body))
        first = True

        async def replay() -> Message:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def watched(message: Message) -> None:
            awaited.saw(message)
            await send(message)

        async def watch_peer() -> None:
            message = await receive()  # the body is read: this waits for the peer to go
            if message["type"] == "http.disconnect":
                gone.set()
                if awaited.request_id is not None and awaited.pending:
                    session.end(awaited.left_because)
                elif awaited.pending:  # the event stream: a client leaving drops it, then DELETEs
                    session.end_soon(awaited.left_because)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_peer)
            await session.transport.handle_request(scope, replay, watched)
            nursery.cancel_scope.cancel()
        return awaited.status


class _AwaitedAnswer:
    """Whether a client leaving now leaves a call unanswered: a POSTed request whose
    JSON-RPC response has not gone out (in the SSE stream or as the body), or the session's
    event stream (GET), which a client only drops when it goes."""

    def __init__(self, method: str, body: bytes) -> None:
        self.status: int | None = None
        self.request_id: Any = None
        self.pending = method == "GET"
        self.left_because = "its client dropped its event stream (it left)"
        if method == "POST":
            try:
                message = json.loads(body)
            except ValueError:
                message = None
            if isinstance(message, dict) and "method" in message and "id" in message:
                self.request_id = message["id"]
                self.pending = True
                self.left_because = (
                    f"its client disconnected before the answer to {message['method']} (mid-call)"
                )

    def saw(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body" and self.request_id is not None:
            ended = not message.get("more_body", False)
            self.pending = self.pending and not (ended or self._answers(message.get("body", b"")))

    def _answers(self, chunk: bytes) -> bool:
        """An SSE chunk carrying the response to our request (a result or an error)."""
        for line in chunk.splitlines():
            if not line.startswith(b"data:"):
                continue
            try:
                data = json.loads(line[5:])
            except ValueError:
                continue
            if (
                isinstance(data, dict)
                and data.get("id") == self.request_id
                and ("result" in data or "error" in data)
            ):
                return True
        return False


async def _send_json(
    send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _unauthorized(send: Send, *, missing: bool) -> None:
    message = (
        "missing bearer token: send `Authorization: Bearer <token>` with every /mcp request "
        "(a token of this server's [api].tokens or SBX_TOKEN)"
        if missing
        else "invalid bearer token for /mcp; check the token your MCP client sends"
    )
    error = {
        "type": "unauthorized",
        "message": message,
        "remedy": "configure the MCP client with an Authorization header holding an API token",
        "retryable": False,
        "retry_after": None,
    }
    await _send_json(send, 401, {"error": error}, [(b"www-authenticate", b'Bearer realm="sbx"')])


async def _jsonrpc_error(
    send: Send, status: int, code: int, message: str, data: Any = None
) -> None:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    await _send_json(send, status, {"jsonrpc": "2.0", "id": None, "error": error})


async def _unsupported_version(send: Send, version: str) -> None:
    await _jsonrpc_error(
        send,
        400,
        UNSUPPORTED_PROTOCOL_VERSION,
        f"MCP protocol {version} is stateless, and sbx keeps an MCP client's sandboxes for its "
        "session: connect with the initialize handshake (versions "
        + ", ".join(HANDSHAKE_PROTOCOL_VERSIONS)
        + ")",
        {"supported": list(HANDSHAKE_PROTOCOL_VERSIONS), "requested": version},
    )
