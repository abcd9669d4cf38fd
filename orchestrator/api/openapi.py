"""The API's OpenAPI schema and its docs pages, complete and offline.

The schema declares the bearer-token scheme (``Authorization: Bearer``) on
every route that takes a token, and the events of each stream
(``stream_events``).  ``/docs`` (Swagger UI) and ``/redoc`` are served with
their scripts and styles from this server, so they work with no internet.

Must not: define routes of the API itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from orchestrator.api.stream_events import STREAM_EVENT_SCHEMAS

__all__ = ["BEARER_SCHEME", "install_openapi", "offline_docs_app"]

BEARER_SCHEME = "bearerAuth"


def _needs_token(path: str) -> bool:
    """``/v1/*`` and ``/metrics``; not ``/healthz``, ``/readyz``, nor the live view's pages
    (their token is in the path)."""
    return path.startswith("/v1/") or path == "/metrics"


def _event_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    ref = "#/components/schemas/{model}"
    for name, models in STREAM_EVENT_SCHEMAS.items():
        for model in models:
            schema = TypeAdapter(model).json_schema(ref_template=ref)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        schemas[name] = {
            "anyOf": [{"$ref": ref.format(model=model.__name__)} for model in models],
            "description": "One event of the stream; `type` names it.",
        }
    return schemas


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` add the bearer scheme and the stream events."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(_event_schemas())
        components["securitySchemes"] = {
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token (`sbx token new`); the CLI sends SBX_TOKEN.",
            }
        }
        for path, operations in schema.get("paths", {}).items():
            if not _needs_token(path):
                continue
            for operation in operations.values():
                if isinstance(operation, dict):
                    operation["security"] = [{BEARER_SCHEME: []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def offline_docs_app(**kwargs: Any) -> FastAPI:
    """A ``FastAPI`` whose ``/docs`` and ``/redoc`` load nothing from a CDN."""
    from fastapi_offline import FastAPIOffline

    app: FastAPI = FastAPIOffline(**kwargs)
    return app
