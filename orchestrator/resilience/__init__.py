"""Retries of transient failures and circuit breakers per dependency, counted for /metrics.

``Resilience`` is the hub one orchestrator shares between its backend (the
engine's breaker and retries), its sessions (a breaker per image) and its
agent runs (the Messages API's breaker); ``/readyz`` and ``/metrics`` read
it.  Retries come from tenacity (see ``retries``); breakers are small state
machines of our own (see ``breaker``).

Must not: import anything above ``orchestrator.errors`` and the config.
"""

from orchestrator.resilience.breaker import BreakerState, CircuitBreaker
from orchestrator.resilience.hub import Resilience
from orchestrator.resilience.retries import RetryPolicy, with_retries

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Resilience",
    "RetryPolicy",
    "with_retries",
]
