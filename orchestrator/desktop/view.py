"""The live view: a person watches a session's desktop in a browser, through noVNC.

``LiveView.url_for(session)`` starts the sandbox's VNC server (view-only
unless asked otherwise; the interactive one is a separate server on the
next port) and hands out a URL with a per-session token in its path.  The
routes -- a FastAPI ``APIRouter`` the HTTP API mounts, or a standalone
server started on first use -- serve a small page that runs noVNC (its
modules come from the sandbox's own image, so client and server match) and
bridge the page's websocket to the VNC server through the session's channel
(``Session.connect``), so it works with the sandbox's network off.

Must not: serve anything without a valid token for that very session, or
let a view-only token reach the interactive VNC server.
"""

from __future__ import annotations

import contextlib
import html
import json
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
import trio
from fastapi import APIRouter, FastAPI, HTTPException, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from orchestrator.config import DesktopConfig
from orchestrator.errors import SbxError, SessionError

if TYPE_CHECKING:
    from orchestrator.session import Session
    from orchestrator.supervisor import Supervisor

__all__ = ["LiveView"]

log = structlog.get_logger("orchestrator.view")

_CHUNK = 64 * 1024
_MAX_GRANTS = 4096

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sbx desktop {session_id}</title>
<style>
  html, body {{ margin: 0; height: 100%; background: #111; color: #ccc;
                font: 13px/1.4 system-ui, sans-serif; }}
  #bar {{ height: 24px; padding: 0 8px; display: flex; gap: 12px; align-items: center;
          background: #222; border-bottom: 1px solid #333; }}
  #screen {{ position: absolute; top: 25px; bottom: 0; left: 0; right: 0; }}
</style>
</head>
<body data-state="connecting">
<div id="bar"><b>sbx</b><span>session {session_id}</span><span>{mode}</span>
  <span id="status">connecting&hellip;</span></div>
<div id="screen"></div>
<script type="module">
import RFB from "./novnc/core/rfb.js";
const status = document.getElementById("status");
const url = new URL("websockify", window.location.href);
url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
const rfb = new RFB(document.getElementById("screen"), url.href, {{ shared: true }});
rfb.viewOnly = {view_only};
rfb.scaleViewport = true;
rfb.resizeSession = false;
rfb.qualityLevel = 9;
rfb.compressionLevel = 2;
rfb.addEventListener("connect", () => {{
  status.textContent = "live";
  document.body.dataset.state = "connected";
}});
rfb.addEventListener("disconnect", (event) => {{
  status.textContent = event.detail.clean ? "disconnected" : "connection lost";
  document.body.dataset.state = "disconnected";
}});
window.sbxView = rfb;
</script>
</body>
</html>
"""


@dataclass(frozen=True)
class _Grant:
    session_id: str
    interactive: bool


class LiveView:
    """View tokens, the routes that honour them, and (on demand) a server for them."""

    def __init__(self, supervisor: Supervisor, config: DesktopConfig) -> None:
        self._supervisor = supervisor
        self.config = config
        self.base_url: str | None = config.view_public_url
        """Where browsers reach ``router`` (set it when the HTTP API mounts the router);
        unset, ``url_for`` starts a standalone server on ``desktop.view_host:view_port``."""
        self._grants: dict[str, _Grant] = {}
        self._nursery: trio.Nursery | None = None
        self._server_url: str | None = None
        self._server_lock = trio.Lock()
        self._router: APIRouter | None = None

    def attach(self, nursery: trio.Nursery) -> None:
        """The nursery a standalone server runs in (the orchestrator's own)."""
        self._nursery = nursery

    # -- tokens -------------------------------------------------------------------------

    def grant(self, session: Session, *, interactive: bool = False) -> str:
        """A new token for ``session``'s view; it dies with the session."""
        live = set(self._supervisor.sessions)
        for token, grant in list(self._grants.items()):
            if grant.session_id not in live:
                del self._grants[token]
        if len(self._grants) >= _MAX_GRANTS:
            raise SessionError(
                f"{len(self._grants)} live view tokens are outstanding; close some sessions"
            )
        token = secrets.token_urlsafe(24)
        self._grants[token] = _Grant(session.id, interactive)
        return token

    def _check(self, session_id: str, token: str) -> tuple[Session, _Grant]:
        grant = self._grants.get(token)
        if grant is None or not secrets.compare_digest(grant.session_id, session_id):
            raise HTTPException(
                403, "this live view link is not valid; ask for a new one (Session.view_url)"
            )
        session = self._supervisor.sessions.get(session_id)
        if session is None or session.closed:
            self._grants.pop(token, None)
            raise HTTPException(404, f"session {session_id} is closed; its live view ended")
        return session, grant

    async def url_for(self, session: Session, *, interactive: bool = False) -> str:
        """The URL of ``session``'s live view (starting what it needs)."""
        desktop = session.desktop
        await desktop.vnc_port(view_only=not interactive)
        base = self.base_url or await self.ensure_server()
        token = self.grant(session, interactive=interactive)
        return f"{base.rstrip('/')}/desktop/{session.id}/{token}/"

    # -- serving ----------------------------------------------------------------------------

    async def ensure_server(self) -> str:
        """Start the standalone view server once; its base URL."""
        async with self._server_lock:
            if self._server_url is None:
                if self._nursery is None:
                    raise SessionError(
                        "the live view server needs a running Orchestrator "
                        "(use `async with Orchestrator(...)`)"
                    )
                self._server_url = await self._nursery.start(
                    self.serve, self.config.view_host, self.config.view_port
                )
                log.info("live view server started", url=self._server_url)
            return self._server_url

    def app(self) -> FastAPI:
        """A FastAPI app with only the live view routes (for the standalone server)."""
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(self.router)
        return app

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``app()`` with hypercorn until cancelled; ``task_status`` gets the base URL."""
        from hypercorn.config import Config as HypercornConfig
        from hypercorn.trio import serve

        config = HypercornConfig()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1.0
        app = self.app()

        async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(app, config, task_status=task_status)  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(run)
            url = binds[0].replace("://0.0.0.0:", "://127.0.0.1:")
            task_status.started(url)

    # -- routes ---------------------------------------------------------------------------------

    @property
    def router(self) -> APIRouter:
        """``/desktop/{session_id}/{token}/`` (page), ``.../novnc/...`` and ``.../websockify``."""
        if self._router is None:
            self._router = self._make_router()
        return self._router

    def _make_router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/desktop/{session_id}/{token}", include_in_schema=False)
        async def without_slash(session_id: str, token: str) -> Response:
            self._check(session_id, token)
            return RedirectResponse(f"{token}/", status_code=307)

        @router.get("/desktop/{session_id}/{token}/", response_class=HTMLResponse)
        async def page(session_id: str, token: str) -> HTMLResponse:
            """The live view page of one session."""
            _, grant = self._check(session_id, token)
            text = _PAGE.format(
                session_id=html.escape(session_id),
                mode="interactive" if grant.interactive else "view only",
                view_only=json.dumps(not grant.interactive),
            )
            return HTMLResponse(text, headers={"Cache-Control": "no-store"})

        @router.get("/desktop/{session_id}/{token}/novnc/{path:path}", include_in_schema=False)
        async def novnc(session_id: str, token: str, path: str) -> Response:
            session, _ = self._check(session_id, token)
            try:
                files = await session.desktop.novnc_files()
            except SbxError as exc:
                raise HTTPException(503, f"the sandbox cannot serve noVNC: {exc}") from None
            data = files.get(path)
            if data is None:
                raise HTTPException(404, f"no noVNC file {path!r}")
            return Response(
                data,
                media_type="text/javascript",
                headers={"Cache-Control": "private, max-age=3600"},
            )

        @router.websocket("/desktop/{session_id}/{token}/websockify")
        async def websockify(websocket: WebSocket, session_id: str, token: str) -> None:
            await self._bridge(websocket, session_id, token)

        return router

    async def _bridge(self, websocket: WebSocket, session_id: str, token: str) -> None:
        """Browser websocket <-> the sandbox's VNC server, until either side ends."""
        try:
            session, grant = self._check(session_id, token)
        except HTTPException:
            await websocket.close(code=4403)
            return
        offered: list[str] = list(websocket.scope.get("subprotocols") or [])
        await websocket.accept(subprotocol="binary" if "binary" in offered else None)
        bound = log.bind(session_id=session_id, interactive=grant.interactive)
        bound.info("live view connected")
        sent = received = 0
        try:
            port = await session.desktop.vnc_port(view_only=not grant.interactive)
            async with session.connect(port) as connection, trio.open_nursery() as nursery:

                async def to_sandbox() -> None:
                    nonlocal received
                    while True:
                        message: MutableMapping[str, Any] = await websocket.receive()
                        if message["type"] == "websocket.disconnect":
                            break
                        data = message.get("bytes") or (message.get("text") or "").encode()
                        if data:
                            received += len(data)
                            await connection.send_all(data)
                    nursery.cancel_scope.cancel()

                async def to_browser() -> None:
                    nonlocal sent
                    while True:
                        data = await connection.receive_some(_CHUNK)
                        if not data:
                            break
                        sent += len(data)
                        await websocket.send_bytes(data)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(to_sandbox)
                nursery.start_soon(to_browser)
        except (SbxError, trio.BrokenResourceError, WebSocketDisconnect, RuntimeError) as exc:
            bound.info("live view ended", reason=f"{type(exc).__name__}: {exc}")
        finally:
            if websocket.application_state != WebSocketState.DISCONNECTED:
                with (
                    trio.move_on_after(2, shield=True),
                    contextlib.suppress(RuntimeError, WebSocketDisconnect),
                ):
                    await websocket.close()
            bound.info("live view closed", bytes_to_browser=sent, bytes_from_browser=received)
