"""One JSON error shape for every failure, and the status each error kind maps to.

Bad input of any kind -- malformed JSON, unknown fields, wrong types,
oversized bodies, unknown sessions or images, paths outside the allowed
roots -- is a 4xx whose body names the field and the problem.  A 500 means
a bug in sbx, never a bad request.  Error bodies are built here only; routes
raise, they must not build error responses themselves.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator import errors
from orchestrator.router import ToolBatchError

__all__ = ["ApiError", "error_response", "install_error_handlers", "status_for"]

log = structlog.get_logger("orchestrator.api")


class ApiError(Exception):
    """An error the API answers with directly (auth, limits, routing)."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.field = field


# Most specific first: the first matching class wins.  A lost sandbox is two kinds:
# ``sandbox_lost`` (503) once the session is recorded ``broken`` or ``crashed`` -- every
# later call fails the same way and GET /v1/sessions/{id} shows the ``failure`` -- and
# ``sandbox_gone`` (502) for a call whose channel closed under it before that (the
# upstream, the sandbox, failed mid-call).  Keyed on the class, not on the message.
_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (errors.SessionNotFound, 404, "session_not_found"),
    (errors.SessionClosed, 410, "session_closed"),
    (errors.ImageNotFound, 422, "image_not_found"),
    (errors.OptionOverLimit, 422, "option_over_limit"),
    (errors.OptionNotAllowed, 422, "option_not_allowed"),
    (errors.ConfigError, 422, "invalid_option"),
    (errors.PathNotAllowed, 403, "path_not_allowed"),
    (errors.GuestFileNotFound, 404, "file_not_found"),
    (errors.GuestFileExists, 409, "file_exists"),
    (errors.GuestIsADirectory, 400, "is_a_directory"),
    (errors.GuestNotADirectory, 400, "not_a_directory"),
    (errors.FileTooLarge, 413, "file_too_large"),
    (errors.GuestPermissionDenied, 403, "permission_denied"),
    (errors.ShellBusy, 409, "shell_busy"),
    (errors.DesktopError, 409, "desktop_unavailable"),
    (errors.GuestError, 400, "sandbox_error"),
    (errors.InputTooLarge, 413, "input_too_large"),
    (errors.InvalidInput, 422, "invalid_input"),
    (ToolBatchError, 400, "invalid_tool_batch"),
    (errors.OperationTimeout, 504, "sandbox_timeout"),
    (errors.SandboxLost, 503, "sandbox_lost"),
    (errors.SandboxGone, 502, "sandbox_gone"),
    (errors.EngineUnavailable, 503, "engine_unavailable"),
    (errors.SandboxStartError, 502, "sandbox_start_failed"),
    (errors.EngineError, 502, "engine_error"),
    (errors.SessionLimitReached, 429, "session_limit"),
    (errors.SessionError, 409, "session_error"),
    (errors.SbxError, 400, "error"),
)


def status_for(exc: Exception) -> tuple[int, str]:
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal_error"


def error_response(
    status: int,
    kind: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": kind, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _validation(exc: RequestValidationError) -> JSONResponse:
    problems = exc.errors()
    first = problems[0] if problems else {}
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "parse error")
        return error_response(
            400,
            "malformed_json",
            f"the request body is not valid JSON ({reason}); "
            "send a JSON object with Content-Type: application/json",
        )
    parts = []
    for problem in problems:
        location = [str(p) for p in problem.get("loc", ()) if p not in ("body",)]
        where = ".".join(location) or "body"
        message = problem.get("msg", "invalid")
        if problem.get("type") == "extra_forbidden":
            message = "unknown field; check its spelling against /openapi.json"
        parts.append(f"{where}: {message}")
    field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    return error_response(422, "invalid_request", "; ".join(parts), field)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.kind, exc.message, exc.field, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /openapi.json"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /openapi.json"
        return error_response(exc.status_code, kind, message)

    @app.exception_handler(errors.SbxError)
    async def _sbx(request: Request, exc: errors.SbxError) -> JSONResponse:
        status, kind = status_for(exc)
        field = exc.field if isinstance(exc, errors.OptionOverLimit) else None
        return error_response(status, kind, str(exc), field)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the HTTP API", path=request.url.path)
        return error_response(
            500,
            "internal_error",
            f"sbx failed on this request ({type(exc).__name__}); the server log has the details",
        )
