"""The API's ASGI app: the routers of ``orchestrator.api.routes`` assembled, nothing more.

``create_app`` mounts one router per tag, the live view's routes, the error
handlers (one JSON error shape) and the body limit.  It must not define
routes or checks itself: routes live in ``routes/``, the checks they share in
``dependencies``, the schema's additions and the offline docs in ``openapi``.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI

from orchestrator import __version__
from orchestrator.api.dependencies import BodyLimit
from orchestrator.api.errors import install_error_handlers
from orchestrator.api.models import ErrorResponse
from orchestrator.api.openapi import install_openapi, offline_docs_app
from orchestrator.api.routes import (
    agent_runs,
    desktop,
    exec,
    files,
    operations,
    sessions,
    tools,
    workflows,
)
from orchestrator.api.state import ApiState

__all__ = ["create_app"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse}
    for code in (400, 401, 403, 404, 409, 410, 413, 422, 429, 502, 503, 504)
}


# FastAPI's OpenTelemetry hooks look up the global providers on every request; the
# server reports through Prometheus (/metrics) instead.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


def create_app(state: ApiState) -> FastAPI:
    app = offline_docs_app(
        title="sbx",
        version=__version__,
        description="Hardened sandboxes for Claude's tools and plain exec/file calls.",
        responses=_ERRORS,
        # Swagger UI would otherwise ask validator.swagger.io about the schema.
        swagger_ui_parameters={"validatorUrl": None},
        **_NO_TELEMETRY,
    )
    install_openapi(app)
    app.state.api = state
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=state.config.api.max_body)
    # The hottest route's router first: FastAPI tries included routers in order.
    for module in (exec, sessions, tools, files, desktop, agent_runs, workflows):
        app.include_router(module.router)
    # The live view's pages and websocket authenticate by the token in their path
    # (a browser cannot send a bearer header), issued by POST .../view to the owner.
    app.include_router(state.orch.view.router)
    app.include_router(operations.router)
    return app
