"""What the API's routes share: the orchestrator, the configuration, auth, metrics, agent runs.

One ``ApiState`` per served app, built by ``serve_api`` and reached by the
routes through the ``api_state`` dependency.  It holds references, not
per-request state, and must not import any route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from orchestrator.api.streaming import Emit, StreamingCall, negotiate

if TYPE_CHECKING:
    from orchestrator.api.agent_runs import AgentRuns
    from orchestrator.api.auth import Authenticator
    from orchestrator.config import Config
    from orchestrator.metrics import PrometheusObserver
    from orchestrator.runtime import Orchestrator

__all__ = ["ApiState"]


class ApiState:
    """The orchestrator, the configuration, auth, metrics and agent runs of one API server."""

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
        """``/readyz``'s last answer: (monotonic time, body, status)."""

    def stream(
        self, request: Request, producer: Callable[[Emit], Awaitable[None]]
    ) -> StreamingCall | None:
        """A streamed response running ``producer``, if the request's ``Accept`` asks for
        one (SSE or NDJSON); ``None`` for a plain JSON answer."""
        fmt = negotiate(request)
        if fmt is None:
            return None
        return StreamingCall(
            producer,
            fmt,
            buffer_bytes=self.config.api.stream_buffer,
            stall_timeout=self.config.api.stall_timeout,
            observer=self.observer,
        )
