"""``Resilience``: the retry policy, the breakers by name, and the counts ``/metrics`` shows.

Breakers are made on first use: ``engine``, ``messages_api``, and
``image:<reference>`` for each image sessions start from (bounded: the least
recently used closed ones are forgotten past ``MAX_BREAKERS``).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

import structlog

from orchestrator.config import ResilienceConfig
from orchestrator.resilience.breaker import BreakerState, CircuitBreaker
from orchestrator.resilience.retries import RetryPolicy

__all__ = ["MAX_BREAKERS", "Resilience"]

log = structlog.get_logger("orchestrator.resilience")

MAX_BREAKERS = 256


class Resilience:
    """One orchestrator's retries and breakers (see the package docstring)."""

    def __init__(self, config: ResilienceConfig | None = None) -> None:
        self.config = config if config is not None else ResilienceConfig()
        c = self.config
        self.policy = RetryPolicy(
            attempts=c.attempts,
            first_wait=c.first_wait,
            max_wait=c.max_wait,
            deadline=c.retry_deadline,
        )
        self.retries: Counter[tuple[str, str]] = Counter()
        """Retries made, by (operation, reason)."""
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()

    def retried(self, operation: str, reason: str) -> None:
        self.retries[(operation, reason)] += 1

    def breaker(self, name: str, what: str | None = None) -> CircuitBreaker:
        """The breaker ``name``, made with the configured thresholds on first use."""
        found = self._breakers.get(name)
        if found is not None:
            self._breakers.move_to_end(name)
            return found
        made = CircuitBreaker(
            name,
            failures=self.config.breaker_failures,
            window=self.config.breaker_window,
            reset_after=self.config.breaker_reset,
            what=what,
            on_change=_log_change,
        )
        self._breakers[name] = made
        if len(self._breakers) > MAX_BREAKERS:
            for old in list(self._breakers):
                if self._breakers[old].state is BreakerState.CLOSED and old != name:
                    del self._breakers[old]
                    break
        return made

    def breaker_items(self) -> list[tuple[str, CircuitBreaker]]:
        return list(self._breakers.items())

    def breakers(self) -> dict[str, dict[str, Any]]:
        """Every breaker's state, for ``/readyz``."""
        return {name: breaker.describe() for name, breaker in self._breakers.items()}

    def open_breakers(self) -> list[str]:
        return [n for n, b in self._breakers.items() if b.state is not BreakerState.CLOSED]


def _log_change(breaker: CircuitBreaker, state: BreakerState) -> None:
    if state is BreakerState.OPEN:
        log.warning(
            "circuit breaker opened: failing fast",
            breaker=breaker.name,
            last_failure=breaker.last_failure,
            reset_after=breaker.reset_after,
        )
    else:
        log.info("circuit breaker " + state.value.replace("_", "-"), breaker=breaker.name)
