"""``/v1/sessions``: start, list, inspect, snapshot and close sandbox sessions.

It must not run anything in a session; the other routers do.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from orchestrator.api.dependencies import ApiStateDep, Caller, OwnedSession
from orchestrator.api.models import SessionCreate, SessionInfo, SessionList
from orchestrator.snapshots import Snapshot

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["sessions"])


@router.post("/sessions", status_code=201, response_model=SessionInfo)
async def create_session(body: SessionCreate, who: Caller, state: ApiStateDep) -> SessionInfo:
    """Start a sandbox session (it is ready when this returns)."""
    session = await state.orch.open_session(owner=who.owner, **body.options())
    return SessionInfo(**session.describe())


@router.get("/sessions", response_model=SessionList)
async def list_sessions(who: Caller, state: ApiStateDep) -> SessionList:
    return SessionList(
        sessions=[SessionInfo(**s.describe()) for s in state.orch.sessions if who.may_use(s.owner)]
    )


@router.get("/sessions/{session_id}", response_model=SessionInfo)
async def get_session(session: OwnedSession) -> SessionInfo:
    return SessionInfo(**session.describe())


@router.delete("/sessions/{session_id}", status_code=204)
async def delete_session(session: OwnedSession) -> Response:
    """Close the session: its calls are cancelled and its sandbox removed."""
    await session.close("closed over the API")
    return Response(status_code=204)


@router.post("/sessions/{session_id}/snapshot", status_code=201, response_model=Snapshot)
async def snapshot_session(session: OwnedSession) -> Snapshot:
    """Keep the session's filesystem (root changes and tmpfs mounts) as a local image;
    start forks with ``POST /v1/sessions {"image": <image>}``.  Processes are not kept."""
    return await session.snapshot()
