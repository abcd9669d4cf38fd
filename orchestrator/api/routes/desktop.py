"""``/v1/sessions/{id}/screenshot`` and ``/view``: a desktop session's screen, still or live.

The live view's own pages and websocket are the desktop package's routes
(``orch.view.router``); this module only hands out their URL.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from orchestrator.api.dependencies import OwnedSession

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["desktop"])


@router.get("/sessions/{session_id}/screenshot", responses={200: {"content": {"image/png": {}}}})
async def screenshot(session: OwnedSession, scaled: bool = False) -> Response:
    """A PNG of a desktop session's screen (``scaled``: the size Claude is shown)."""
    png = await session.screenshot(scaled=scaled)
    return Response(content=png, media_type="image/png")


@router.post("/sessions/{session_id}/view")
async def view(session: OwnedSession, interactive: bool = False) -> dict[str, Any]:
    """A URL that shows the desktop live in a browser (noVNC), read-only unless asked.

    The URL carries a token good for this session only; anyone holding it can watch."""
    return {"url": await session.view_url(interactive=interactive), "interactive": interactive}
