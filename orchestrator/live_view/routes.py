"""The live view's HTTP routes: the noVNC page, its modules, and the websocket bridge.

Kept apart from ``service.LiveView`` (tokens and the standalone server) so that
FastAPI is imported only when a live view is actually served.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import structlog
import trio
from fastapi import APIRouter, FastAPI, HTTPException, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from orchestrator.errors import SbxError
from orchestrator.live_view.grants import ViewAccess, ViewDenied, ViewGrant

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["make_app", "make_router"]

log = structlog.get_logger("orchestrator.view")

_CHUNK = 64 * 1024

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


def _check(view: ViewAccess, session_id: str, token: str) -> tuple[Session, ViewGrant]:
    try:
        return view.check(session_id, token)
    except ViewDenied as exc:
        raise HTTPException(exc.status, exc.message) from None


def make_app(router: APIRouter) -> FastAPI:
    """A FastAPI app with only the live view routes (for the standalone server)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router)
    return app


def make_router(view: ViewAccess) -> APIRouter:
    router = APIRouter()

    @router.get("/desktop/{session_id}/{token}", include_in_schema=False)
    async def without_slash(session_id: str, token: str) -> Response:
        _check(view, session_id, token)
        return RedirectResponse(f"{token}/", status_code=307)

    @router.get("/desktop/{session_id}/{token}/", response_class=HTMLResponse)
    async def page(session_id: str, token: str) -> HTMLResponse:
        """The live view page of one session."""
        _, grant = _check(view, session_id, token)
        text = _PAGE.format(
            session_id=html.escape(session_id),
            mode="interactive" if grant.interactive else "view only",
            view_only=json.dumps(not grant.interactive),
        )
        return HTMLResponse(text, headers={"Cache-Control": "no-store"})

    @router.get("/desktop/{session_id}/{token}/novnc/{path:path}", include_in_schema=False)
    async def novnc(session_id: str, token: str, path: str) -> Response:
        session, _ = _check(view, session_id, token)
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
        await _bridge(view, websocket, session_id, token)

    return router


async def _bridge(view: ViewAccess, websocket: WebSocket, session_id: str, token: str) -> None:
    """Browser websocket <-> the sandbox's VNC server, until either side ends."""
    try:
        session, grant = _check(view, session_id, token)
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
