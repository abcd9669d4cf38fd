"""``/healthz``, ``/readyz``, ``/metrics``: for load balancers, orchestrators and Prometheus.

``/healthz`` and ``/readyz`` need no token; ``/metrics`` needs ``api.metrics_token``
or an admin token unless the server is bound to loopback and no metrics token
is set (``Authenticator.authorize_metrics`` says why).  None may reveal
anything about sessions beyond counts.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from orchestrator import __version__
from orchestrator.api.dependencies import ApiStateDep
from orchestrator.metrics import CONTENT_TYPE_LATEST

__all__ = ["router"]

router = APIRouter(tags=["operations"])

READY_CACHE_SECONDS = 5


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """The process answers."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz")
async def readyz(state: ApiStateDep) -> JSONResponse:
    """The engine is reachable and the default image is present; every circuit breaker's
    state (an open ``engine`` breaker fails the engine check at once)."""
    now = time.monotonic()
    if state.ready_cache is not None and now - state.ready_cache[0] < READY_CACHE_SECONDS:
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
    body = {
        "status": "ready" if ok else "not ready",
        "checks": checks,
        "breakers": state.orch.resilience.breakers(),
    }
    status = 200 if ok else 503
    state.ready_cache = (now, body, status)
    return JSONResponse(body, status_code=status)


@router.get("/metrics", responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: ApiStateDep, request: Request) -> Response:
    """Prometheus metrics; a bearer token unless open on loopback (see the module)."""
    state.auth.authorize_metrics(request.headers.get("authorization", ""))
    return Response(state.observer.render(), media_type=CONTENT_TYPE_LATEST)
