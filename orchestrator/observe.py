"""Hooks that let operators count what the runtime does, without the runtime knowing how.

The supervisor, sessions and the router report events to an ``Observer``;
the default does nothing, ``orchestrator.metrics.PrometheusObserver`` turns
them into Prometheus metrics for ``/metrics``.  Observers are called on the
trio thread and must return at once.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ["NullObserver", "Observer", "Outcome"]

Outcome = Literal["ok", "error", "timeout", "cancelled"]


class Observer(Protocol):
    def session_started(self, image: str, seconds: float) -> None: ...

    def session_failed(self, image: str, reason: str) -> None: ...

    def session_closed(self, image: str, reason: str, lifetime: float) -> None: ...

    def session_adopted(self, image: str) -> None: ...

    def tool_call(self, tool: str, outcome: Outcome, seconds: float) -> None: ...

    def exec_call(self, outcome: Outcome, seconds: float) -> None: ...

    def stream_dropped(self, nbytes: int) -> None: ...

    def removal_late(self) -> None:
        """A sandbox's removal missed its deadline (it is retried in the background)."""
        ...


class NullObserver:
    """Observes nothing."""

    def session_started(self, image: str, seconds: float) -> None:
        pass

    def session_failed(self, image: str, reason: str) -> None:
        pass

    def session_closed(self, image: str, reason: str, lifetime: float) -> None:
        pass

    def session_adopted(self, image: str) -> None:
        pass

    def tool_call(self, tool: str, outcome: Outcome, seconds: float) -> None:
        pass

    def exec_call(self, outcome: Outcome, seconds: float) -> None:
        pass

    def stream_dropped(self, nbytes: int) -> None:
        pass

    def removal_late(self) -> None:
        pass
