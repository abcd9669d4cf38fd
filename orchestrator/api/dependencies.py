"""The checks every route shares, in one place: who calls, whose session or run, how big a body.

``Caller`` (bearer token → ``Principal``), ``OwnedSession`` and ``OwnedRun``
(the caller's own, else 404) are FastAPI dependencies; ``BodyLimit`` is
the ASGI layer that refuses an oversized body (413) before it is read, which
no dependency can do because FastAPI reads a JSON body before solving them.
All are ``async``: FastAPI runs a plain ``def`` dependency in a worker
thread, a round trip per request.

Nothing here runs a call in a sandbox; routes do, through the objects these
hand them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api.agent_runs import AgentRun
from orchestrator.api.auth import Principal
from orchestrator.api.errors import ApiError, error_response
from orchestrator.api.state import ApiState
from orchestrator.errors import SessionNotFound
from orchestrator.session import Session

__all__ = [
    "ApiStateDep",
    "BodyLimit",
    "Caller",
    "OwnedRun",
    "OwnedSession",
    "api_state",
    "caller",
    "owned_run",
    "owned_session",
    "state_of",
]


def state_of(request: Request) -> ApiState:
    """The state of the app serving this request (``app.state.api``)."""
    state: ApiState = request.app.state.api
    return state


async def api_state(request: Request) -> ApiState:
    return state_of(request)


ApiStateDep = Annotated[ApiState, Depends(api_state)]


async def caller(request: Request) -> Principal:
    """Who is calling, from the ``Authorization`` header; 401 without a valid token."""
    return state_of(request).auth.authenticate(request)


Caller = Annotated[Principal, Depends(caller)]

# The dependencies below call ``caller`` themselves rather than declaring it: each
# declared sub-dependency costs FastAPI a resolution on every request (about 15 µs).


async def owned_session(session_id: str, request: Request) -> Session:
    """The caller's open session ``session_id``; 404 if there is none *or it is another's*.

    Another owner's session answers exactly as a missing one (status, type and
    message), so a token learns nothing of other owners' sessions, not even
    that an id exists.  Admin tokens may use every session.
    """
    state = state_of(request)
    who = await caller(request)
    try:
        session = state.orch.get_session(session_id)
    except SessionNotFound:
        session = None
    if session is None or not who.may_use(session.owner):
        raise SessionNotFound(f"no open session {session_id!r}; list yours with GET /v1/sessions")
    return session


OwnedSession = Annotated[Session, Depends(owned_session)]


async def owned_run(run_id: str, request: Request) -> AgentRun:
    """The caller's agent run ``run_id``; 404 if there is none or it is another's (as above)."""
    state = state_of(request)
    who = await caller(request)
    run = state.runs.runs.get(run_id)
    if run is None or not who.may_use(run.owner):
        raise ApiError(
            404,
            "run_not_found",
            f"no agent run {run_id!r}; list yours with GET /v1/agent-runs",
            remedy="use a run id from GET /v1/agent-runs, or start a new run",
        )
    return run


OwnedRun = Annotated[AgentRun, Depends(owned_run)]


STREAMED_UPLOADS = ("/files", "/dirs")
"""Upload routes (``PUT .../files``, ``PUT .../dirs``) whose bodies stream into the
sandbox: ``api.max_body`` does not apply to them, their own limits do
(``session.file_size_limit``, ``session.dir_transfer_limit``)."""


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, before reading them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "PUT" and scope["path"].endswith(STREAMED_UPLOADS):
            await self.app(scope, receive, send)  # streamed to the sandbox under its own limits
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = error_response(
                413,
                "body_too_large",
                f"the request body is {int(declared)} bytes, over the {self.limit}-byte limit "
                "(api.max_body); send less, e.g. a file in parts",
            )
            await response(scope, receive, send)
            return
        if declared is not None:  # the server holds the peer to its declared length
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message: Any = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ApiError(
                        413,
                        "body_too_large",
                        f"the request body is over the {self.limit}-byte limit (api.max_body)",
                    )
            return message  # type: ignore[no-any-return]

        await self.app(scope, limited, send)
