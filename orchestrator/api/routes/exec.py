"""``POST /v1/sessions/{id}/exec``: run a command; one JSON result, or its output streamed.

The hottest route, so it is the one route with a lean lane (``ExecRoute``):
for a plain JSON exec it calls the same dependency (``owned_session``), the
same request model and the same endpoint function as FastAPI would, without
FastAPI's per-request dependency solving, which costs as much as the rest of
the request.  Anything else -- a stream, another content type, a body that
does not validate -- takes FastAPI's path through the very same handler, so
errors are reported in one place.  The response is built from a validated
result and encoded once, without a second validation.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from orchestrator.api.dependencies import OwnedSession, owned_session, state_of
from orchestrator.api.errors import ApiError
from orchestrator.api.models import ExecRequest, ExecResponse, text_or_base64
from orchestrator.api.stream_events import stream_responses
from orchestrator.api.streaming import Emit, negotiate

__all__ = ["ExecRoute", "decode_stdin", "exec_command", "router"]


class ExecRoute(APIRoute):
    """The exec route, with its lean lane for plain JSON requests (see the module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        routed = super().get_route_handler()

        async def handle(request: Request) -> Response:
            if negotiate(request) is not None or not _is_json(request):
                return await routed(request)
            session = await owned_session(request.path_params["session_id"], request)
            try:
                body = ExecRequest.model_validate_json(await request.body())
            except pydantic.ValidationError:
                return await routed(request)  # FastAPI reports it, as for any route
            response: Response = await exec_command(session, body, request)
            return response

        return handle


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower() == "application/json"


router = APIRouter(prefix="/v1", tags=["exec"], route_class=ExecRoute)

_OUTPUT_FIELDS = {"stdout", "stderr", "stdout_b64", "stderr_b64"}


@router.post(
    "/sessions/{session_id}/exec",
    response_model=ExecResponse,
    responses=stream_responses("ExecStreamEvent"),
)
async def exec_command(session: OwnedSession, body: ExecRequest, request: Request) -> Any:
    """Run a command; JSON result, or a stream when the request accepts
    ``text/event-stream`` (SSE) or ``application/x-ndjson``."""
    state = state_of(request)
    options: dict[str, Any] = {
        "timeout": body.timeout,
        "cwd": body.cwd,
        "env": body.env or None,
        "stdin": decode_stdin(body),
        "max_output": body.max_output,
        "user": body.user,
    }

    async def produce(emit: Emit) -> None:
        async with session.exec_stream(
            body.command, collect=False, window=state.config.api.stream_buffer, **options
        ) as running:
            async for chunk in running:
                text, b64 = text_or_base64(chunk.data)
                await emit(chunk.stream, {"data": text} if b64 is None else {"data_b64": b64})
            result = await running.result()
        final = ExecResponse.from_result(result).model_dump(exclude=_OUTPUT_FIELDS)
        await emit("result", final, final=True)

    stream = state.stream(request, produce)
    if stream is not None:
        return stream
    result = await session.exec(body.command, **options)
    # Built from a validated result: encoded as is, without a second validation.
    return Response(ExecResponse.from_result(result).json_bytes(), media_type="application/json")


def decode_stdin(body: ExecRequest) -> bytes | None:
    """The command's stdin from ``stdin`` (text) or ``stdin_b64``; 422 for both, or bad base64."""
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
