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

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog
import trio

from orchestrator.config import DesktopConfig
from orchestrator.errors import SessionError
from orchestrator.live_view.grants import ViewDenied, ViewGrant

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from orchestrator.session import Session

__all__ = ["LiveView", "ViewDenied"]

log = structlog.get_logger("orchestrator.view")

_MAX_GRANTS = 4096


class LiveView:
    """View tokens, the routes that honour them, and (on demand) a server for them."""

    def __init__(self, sessions: Mapping[str, Session], config: DesktopConfig) -> None:
        self._sessions = sessions
        """The live sessions by id (the supervisor's registry, read only)."""
        self.config = config
        self.base_url: str | None = config.view_public_url
        """Where browsers reach ``router`` (set it when the HTTP API mounts the router);
        unset, ``url_for`` starts a standalone server on ``desktop.view_host:view_port``."""
        self._grants: dict[str, ViewGrant] = {}
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
        live = set(self._sessions)
        for token, grant in list(self._grants.items()):
            if grant.session_id not in live:
                del self._grants[token]
        if len(self._grants) >= _MAX_GRANTS:
            raise SessionError(
                f"{len(self._grants)} live view tokens are outstanding; close some sessions"
            )
        token = secrets.token_urlsafe(24)
        self._grants[token] = ViewGrant(session.id, interactive)
        return token

    def check(self, session_id: str, token: str) -> tuple[Session, ViewGrant]:
        """The session a token grants and how; ``ViewDenied`` when it grants nothing."""
        grant = self._grants.get(token)
        if grant is None or not secrets.compare_digest(grant.session_id, session_id):
            raise ViewDenied(
                403, "this live view link is not valid; ask for a new one (Session.view_url)"
            )
        session = self._sessions.get(session_id)
        if session is None or session.closed:
            self._grants.pop(token, None)
            raise ViewDenied(404, f"session {session_id} is closed; its live view ended")
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
        from orchestrator.live_view.routes import make_app

        return make_app(self.router)

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

    # -- routes -------------------------------------------------------------------------

    @property
    def router(self) -> APIRouter:
        """``/desktop/{session_id}/{token}/`` (page), ``.../novnc/...`` and ``.../websockify``.

        Built on first use: FastAPI costs a quarter of a second to import, which
        a one-shot ``sbx run`` that never shows a desktop should not pay.
        """
        if self._router is None:
            from orchestrator.live_view.routes import make_router

            self._router = make_router(self)
        return self._router
