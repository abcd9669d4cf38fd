"""The HTTP API's routes: sessions, exec, tools, files, agent runs, health and metrics.

Routes translate HTTP into calls on ``Orchestrator`` and ``Session`` and
back; they never talk to the engine or the guest.  Every route under ``/v1``
needs a bearer token and acts only on its owner's sessions and runs.
"""

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import trio
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator import __version__
from orchestrator.api.agent_runs import AgentRun, AgentRuns
from orchestrator.api.auth import Authenticator, Principal
from orchestrator.api.errors import ApiError, error_response, install_error_handlers
from orchestrator.api.fast_exec import FastExec
from orchestrator.api.models import (
    AgentRunCreate,
    AgentRunInfo,
    ErrorResponse,
    ExecRequest,
    ExecResponse,
    FileEntry,
    FileListing,
    SessionCreate,
    SessionInfo,
    SessionList,
    ToolsRequest,
    ToolsResponse,
    text_or_base64,
)
from orchestrator.api.streaming import Emit, StreamingCall, negotiate
from orchestrator.config import Config
from orchestrator.errors import SessionNotFound
from orchestrator.metrics import CONTENT_TYPE_LATEST, PrometheusObserver
from orchestrator.router import ToolCallEvent
from orchestrator.runtime import Orchestrator
from orchestrator.session import Session

__all__ = ["ApiState", "create_app"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse}
    for code in (400, 401, 403, 404, 409, 410, 413, 422, 429, 502, 503, 504)
}


class ApiState:
    """What the routes share: the orchestrator, auth, metrics, agent runs."""

    def __init__(
        self,
        orch: Orchestrator,
        config: Config,
        auth: Authenticator,
        observer: PrometheusObserver,
        runs: AgentRuns,
    ) -> None:
        self.orch = orch
        self.config = config
        self.auth = auth
        self.observer = observer
        self.runs = runs
        self.ready_cache: tuple[float, dict[str, Any], int] | None = None


class BodyLimit:
    """Refuses request bodies over the configured size with 413, before reading them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = error_response(
                413,
                "body_too_large",
                f"the request body is {int(declared)} bytes, over the {self.limit}-byte limit "
                "(api.max_body); send less, e.g. a file in parts",
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ApiError(
                        413,
                        "body_too_large",
                        f"the request body is over the {self.limit}-byte limit (api.max_body)",
                    )
            return message

        await self.app(scope, limited, send)


def create_app(state: ApiState) -> FastAPI:
    app = FastAPI(
        title="sbx",
        version=__version__,
        description="Hardened sandboxes for Claude's tools and plain exec/file calls.",
        responses=_ERRORS,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=state.config.api.max_body)
    app.add_middleware(FastExec, state=state)

    def principal(request: Request) -> Principal:
        return state.auth.authenticate(request)

    Caller = Annotated[Principal, Depends(principal)]

    def owned_session(session_id: str, who: Caller) -> Session:
        try:
            session = state.orch.get_session(session_id)
        except SessionNotFound:
            raise ApiError(
                404,
                "session_not_found",
                f"no open session {session_id!r}; list yours with GET /v1/sessions",
            ) from None
        if not who.may_use(session.owner):
            raise ApiError(
                403,
                "forbidden",
                f"session {session_id} belongs to another owner; use your own sessions",
            )
        return session

    OwnedSession = Annotated[Session, Depends(owned_session)]

    def owned_run(run_id: str, who: Caller) -> AgentRun:
        run = state.runs.runs.get(run_id)
        if run is None:
            raise ApiError(404, "run_not_found", f"no agent run {run_id!r}")
        if not who.may_use(run.owner):
            raise ApiError(403, "forbidden", f"agent run {run_id} belongs to another owner")
        return run

    OwnedRun = Annotated[AgentRun, Depends(owned_run)]

    def streaming(
        request: Request, producer: Callable[[Emit], Awaitable[None]]
    ) -> StreamingCall | None:
        fmt = negotiate(request)
        if fmt is None:
            return None
        return StreamingCall(
            producer,
            fmt,
            buffer_bytes=state.config.api.stream_buffer,
            stall_timeout=state.config.api.stall_timeout,
            observer=state.observer,
        )

    v1 = APIRouter(prefix="/v1")

    # -- sessions ------------------------------------------------------------------

    @v1.post("/sessions", status_code=201, response_model=SessionInfo, tags=["sessions"])
    async def create_session(body: SessionCreate, who: Caller) -> SessionInfo:
        """Start a sandbox session (it is ready when this returns)."""
        session = await state.orch.open_session(owner=who.owner, **body.options())
        return SessionInfo(**session.describe())

    @v1.get("/sessions", response_model=SessionList, tags=["sessions"])
    async def list_sessions(who: Caller) -> SessionList:
        return SessionList(
            sessions=[
                SessionInfo(**s.describe()) for s in state.orch.sessions if who.may_use(s.owner)
            ]
        )

    @v1.get("/sessions/{session_id}", response_model=SessionInfo, tags=["sessions"])
    async def get_session(session: OwnedSession) -> SessionInfo:
        return SessionInfo(**session.describe())

    @v1.delete("/sessions/{session_id}", status_code=204, tags=["sessions"])
    async def delete_session(session: OwnedSession) -> Response:
        """Close the session: its calls are cancelled and its sandbox removed."""
        await session.close("closed over the API")
        return Response(status_code=204)

    # -- exec ----------------------------------------------------------------------

    @v1.post(
        "/sessions/{session_id}/exec",
        response_model=ExecResponse,
        tags=["exec"],
        responses={200: {"content": {"text/event-stream": {}, "application/x-ndjson": {}}}},
    )
    async def exec_command(session: OwnedSession, body: ExecRequest, request: Request) -> Any:
        """Run a command; JSON result, or a stream when the request accepts
        ``text/event-stream`` (SSE) or ``application/x-ndjson``."""
        stdin = _stdin(body)
        kwargs: dict[str, Any] = {
            "timeout": body.timeout,
            "cwd": body.cwd,
            "env": body.env or None,
            "stdin": stdin,
            "max_output": body.max_output,
        }

        async def produce(emit: Emit) -> None:
            async with session.exec_stream(
                body.command, collect=False, window=state.config.api.stream_buffer, **kwargs
            ) as running:
                async for chunk in running:
                    text, b64 = text_or_base64(chunk.data)
                    await emit(chunk.stream, {"data": text} if b64 is None else {"data_b64": b64})
                result = await running.result()
            final = ExecResponse.from_result(result).model_dump(
                exclude={"stdout", "stderr", "stdout_b64", "stderr_b64"}
            )
            await emit("result", final, final=True)

        stream = streaming(request, produce)
        if stream is not None:
            return stream
        result = await session.exec(body.command, **kwargs)
        # A ready-made response skips FastAPI's second validation of the model: this
        # is the hottest route, and the model was just built from a validated result.
        return JSONResponse(ExecResponse.from_result(result).model_dump())

    # -- tools ---------------------------------------------------------------------

    @v1.post(
        "/sessions/{session_id}/tools",
        response_model=ToolsResponse,
        tags=["tools"],
        responses={200: {"content": {"text/event-stream": {}, "application/x-ndjson": {}}}},
    )
    async def run_tools(session: OwnedSession, body: ToolsRequest, request: Request) -> Any:
        """Run Claude's ``tool_use`` blocks; ``tool_result`` blocks in the same order.

        With a streaming ``Accept``, call start/finish events come while calls run."""
        from orchestrator.router import normalize_tool_uses

        normalize_tool_uses(body.tool_uses)  # a malformed batch is a 400 before anything runs

        async def produce(emit: Emit) -> None:
            sender, receiver = trio.open_memory_channel[ToolCallEvent](2 * len(body.tool_uses) + 2)
            results: list[dict[str, Any]] = []

            async def run() -> None:
                async with sender:
                    results.extend(
                        await state.orch.router.run(
                            session,
                            body.tool_uses,
                            tool_types=body.tool_types,
                            on_event=sender.send_nowait,
                        )
                    )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                async with receiver:
                    async for event in receiver:
                        data = {
                            "tool_use_id": event.tool_use_id,
                            "name": event.name,
                            "index": event.index,
                        }
                        if event.kind == "finished":
                            data.update(seconds=round(event.seconds, 4), is_error=event.is_error)
                        await emit(f"call_{event.kind}", data)
            await emit("tool_results", {"tool_results": results}, final=True)

        stream = streaming(request, produce)
        if stream is not None:
            return stream
        results = await state.orch.router.run(session, body.tool_uses, tool_types=body.tool_types)
        return ToolsResponse(tool_results=results)

    # -- files ---------------------------------------------------------------------

    PathQuery = Annotated[
        str, Query(min_length=1, max_length=4096, description="Absolute path in the sandbox.")
    ]

    @v1.get(
        "/sessions/{session_id}/files",
        tags=["files"],
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def download(session: OwnedSession, path: PathQuery) -> Response:
        data = await session.read_file(path)
        return Response(content=data, media_type="application/octet-stream")

    @v1.put("/sessions/{session_id}/files", tags=["files"])
    async def upload(
        session: OwnedSession,
        path: PathQuery,
        request: Request,
        mode: Annotated[int | None, Query(ge=0, le=0o7777)] = None,
    ) -> dict[str, Any]:
        """Write the request body to ``path`` atomically (parents are created)."""
        data = await request.body()
        await session.write_file(path, data, mode=mode)
        return {"path": path, "size": len(data)}

    @v1.delete("/sessions/{session_id}/files", status_code=204, tags=["files"])
    async def remove_file(
        session: OwnedSession, path: PathQuery, recursive: bool = False
    ) -> Response:
        await session.remove(path, recursive=recursive)
        return Response(status_code=204)

    @v1.get("/sessions/{session_id}/files/list", response_model=FileListing, tags=["files"])
    async def list_files(
        session: OwnedSession,
        path: PathQuery,
        depth: Annotated[int, Query(ge=1, le=16)] = 1,
    ) -> FileListing:
        entries = await session.list_files(path, depth=depth)
        return FileListing(
            path=path,
            entries=[FileEntry(**entry.model_dump(exclude={"uid", "gid"})) for entry in entries],
        )

    # -- desktop -------------------------------------------------------------------

    @v1.get(
        "/sessions/{session_id}/screenshot",
        tags=["desktop"],
        responses={200: {"content": {"image/png": {}}}},
    )
    async def screenshot(session: OwnedSession, scaled: bool = False) -> Response:
        """A PNG of a desktop session's screen (``scaled``: the size Claude is shown)."""
        png = await session.screenshot(scaled=scaled)
        return Response(content=png, media_type="image/png")

    @v1.post("/sessions/{session_id}/view", tags=["desktop"])
    async def view(session: OwnedSession, interactive: bool = False) -> dict[str, Any]:
        """A URL that shows the desktop live in a browser (noVNC), read-only unless asked.

        The URL carries a token good for this session only; anyone holding it can watch."""
        return {"url": await session.view_url(interactive=interactive), "interactive": interactive}

    # -- agent runs ----------------------------------------------------------------

    @v1.post("/agent-runs", status_code=202, response_model=AgentRunInfo, tags=["agent"])
    async def start_agent_run(body: AgentRunCreate, who: Caller) -> AgentRunInfo:
        """Start Claude on a task in a fresh sandbox; follow it at .../events."""
        if body.tools:
            try:
                state.orch.router.registry.definitions(
                    body.model or "claude-sonnet-4-6", body.tools
                )
            except KeyError as exc:
                raise ApiError(422, "invalid_request", str(exc).strip("'\""), "tools") from None
        return state.runs.start(who.owner, body).describe()

    @v1.get("/agent-runs", response_model=list[AgentRunInfo], tags=["agent"])
    async def list_agent_runs(who: Caller) -> list[AgentRunInfo]:
        return [run.describe() for run in state.runs.runs.values() if who.may_use(run.owner)]

    @v1.get("/agent-runs/{run_id}", response_model=AgentRunInfo, tags=["agent"])
    async def get_agent_run(run: OwnedRun) -> AgentRunInfo:
        return run.describe()

    @v1.delete("/agent-runs/{run_id}", status_code=204, tags=["agent"])
    async def cancel_agent_run(run: OwnedRun) -> Response:
        run.scope.cancel()
        with trio.move_on_after(state.config.shutdown_timeout):
            await run.done.wait()
        return Response(status_code=204)

    @v1.get(
        "/agent-runs/{run_id}/events",
        tags=["agent"],
        responses={200: {"content": {"text/event-stream": {}, "application/x-ndjson": {}}}},
    )
    async def agent_run_events(
        run: OwnedRun, request: Request, after: Annotated[int, Query(ge=0)] = 0
    ) -> Any:
        """The run's events (text, tool calls, end) as SSE or NDJSON, live until it ends."""

        async def produce(emit: Emit) -> None:
            async for event in run.follow(after):
                kind = event.pop("type")
                await emit(kind, event, final=kind == "end")

        stream = streaming(request, produce)
        if stream is None:
            raise ApiError(
                406,
                "not_acceptable",
                "events are a stream: send Accept: text/event-stream or application/x-ndjson",
            )
        return stream

    @v1.get(
        "/agent-runs/{run_id}/transcript",
        tags=["agent"],
        responses={200: {"content": {"application/x-ndjson": {}}}},
    )
    async def agent_run_transcript(run: OwnedRun) -> Response:
        """The run's transcript.jsonl (every message, tool call, result and timing)."""
        if run.run_dir is None or not (run.run_dir / "transcript.jsonl").is_file():
            candidates = (
                sorted(run.run_root.glob("*/transcript.jsonl")) if (run.run_root.exists()) else []
            )
            if not candidates:
                raise ApiError(
                    404,
                    "transcript_not_found",
                    f"agent run {run.id} has no transcript yet; retry shortly",
                )
            return FileResponse(candidates[-1], media_type="application/x-ndjson")
        return FileResponse(run.run_dir / "transcript.jsonl", media_type="application/x-ndjson")

    app.include_router(v1)
    # The live view's pages and websocket authenticate by the token in their path
    # (a browser cannot send a bearer header), issued above to the session's owner.
    app.include_router(state.orch.view.router)

    # -- operations ----------------------------------------------------------------

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, Any]:
        """The process answers."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """The engine is reachable and the default image is present."""
        now = time.monotonic()
        if state.ready_cache is not None and now - state.ready_cache[0] < 5:
            return JSONResponse(state.ready_cache[1], status_code=state.ready_cache[2])
        checks: dict[str, Any] = {}
        ok = True
        try:
            with trio.fail_after(10):
                engine = await state.orch.backend.describe_engine()
            checks["engine"] = {"ok": True, "version": engine.get("version")}
        except Exception as exc:
            ok = False
            checks["engine"] = {"ok": False, "error": str(exc)}
        if ok:
            image = state.config.image_name(state.config.sandbox.image)
            present = await state.orch.backend.image_exists(image)
            checks["image"] = {"ok": present, "image": image}
            if not present:
                checks["image"]["error"] = f"run `sbx images build` to build {image}"
            ok = ok and present
        body = {"status": "ready" if ok else "not ready", "checks": checks}
        status = 200 if ok else 503
        state.ready_cache = (now, body, status)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["operations"], responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        return Response(state.observer.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _stdin(body: ExecRequest) -> bytes | None:
    if body.stdin is not None and body.stdin_b64 is not None:
        raise ApiError(422, "invalid_request", "give stdin or stdin_b64, not both", "stdin")
    if body.stdin_b64 is not None:
        try:
            return base64.b64decode(body.stdin_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                422, "invalid_request", "stdin_b64 is not valid base64", "stdin_b64"
            ) from None
    return body.stdin.encode("utf-8") if body.stdin is not None else None
