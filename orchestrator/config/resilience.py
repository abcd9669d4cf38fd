"""``[resilience]``: how transient failures are retried and when a breaker opens."""

from __future__ import annotations

from pydantic import Field

from orchestrator.config.sections import _Section

__all__ = ["ResilienceConfig"]


class ResilienceConfig(_Section):
    """Retries of transient engine failures (create, start, remove, inspect, image loads)
    and the circuit breakers of the engine, the Messages API and each image."""

    attempts: int = Field(
        default=4, ge=1, le=20, description="Tries of one engine operation in all (1: none)."
    )
    first_wait: float = Field(
        default=0.2, ge=0, description="Wait before the first retry, s (then doubling)."
    )
    max_wait: float = Field(default=3.0, ge=0, description="Longest wait between tries, s.")
    retry_deadline: float = Field(
        default=30.0, gt=0, description="No new try starts this long after the first, s."
    )
    breaker_failures: int = Field(
        default=5, ge=1, description="Failures within breaker_window that open a breaker."
    )
    breaker_window: float = Field(default=30.0, gt=0, description="s")
    breaker_reset: float = Field(
        default=10.0, gt=0, description="An open breaker lets one probe through after this, s."
    )
