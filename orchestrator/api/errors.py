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
from orchestrator.error_kinds import kind_of

__all__ = [
    "ApiError",
    "error_response",
    "install_error_handlers",
    "sbx_error_response",
    "status_for",
]

log = structlog.get_logger("orchestrator.api")


class ApiError(Exception):
    """An error the API answers with directly (auth, limits, routing)."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        field: str | None = None,
        *,
        remedy: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.field = field
        self.remedy = remedy
        self.retryable = retryable
        self.retry_after = retry_after


def status_for(exc: Exception) -> tuple[int, str]:
    """The status and ``type`` of an exception (``orchestrator.error_kinds``)."""
    return kind_of(exc)


def error_response(
    status: int,
    kind: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    *,
    remedy: str | None = None,
    retryable: bool = False,
    retry_after: float | None = None,
) -> JSONResponse:
    """The typed error body: ``type``, ``message``, ``remedy``, ``retryable``,
    ``retry_after`` (and ``field`` where one field is at fault)."""
    body: dict[str, Any] = {
        "type": kind,
        "message": message,
        "remedy": remedy,
        "retryable": retryable,
        "retry_after": retry_after,
    }
    if field is not None:
        body["field"] = field
    if retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(max(1, round(retry_after)))}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def sbx_error_response(exc: errors.SbxError) -> JSONResponse:
    """An ``SbxError`` as the API sends it, with its remedy and whether to retry."""
    status, kind = kind_of(exc)
    return error_response(
        status,
        kind,
        str(exc),
        getattr(exc, "field", None),
        remedy=exc.remedy,
        retryable=exc.retryable,
        retry_after=exc.retry_after,
    )


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
        return error_response(
            exc.status,
            exc.kind,
            exc.message,
            exc.field,
            headers,
            remedy=exc.remedy,
            retryable=exc.retryable,
            retry_after=exc.retry_after,
        )

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
        return sbx_error_response(exc)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the HTTP API", path=request.url.path)
        return error_response(
            500,
            "internal_error",
            f"sbx failed on this request ({type(exc).__name__}); the server log has the details",
        )
