"""A circuit breaker: after repeated failures of a dependency, fail fast for a while.

``closed`` lets every call through and counts failures; ``failures`` of them
within ``window`` seconds open it.  ``open`` refuses calls at once with
``DependencyDown`` (naming the breaker, and when the next try is let
through) for ``reset_after`` seconds; then it is ``half_open``: one call
goes through as a probe while others are still refused.  The probe's
success closes the breaker, its failure opens it again.

Failing fast matters more than it looks: with the engine gone, every
session start would otherwise hold a worker thread for the whole engine
timeout, and a Messages API that answers 529 to everyone would get every
run's retries at once.

The clock is ``time.monotonic`` (``/metrics`` reads state outside trio).
Must not: know what it guards (callers say what counts as a failure).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from orchestrator.errors import DependencyDown

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One dependency's breaker; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        window: float = 30.0,
        reset_after: float = 10.0,
        what: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitBreaker, BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self.what = what or name
        self.failures = failures
        self.window = window
        self.reset_after = reset_after
        self.state = BreakerState.CLOSED
        self.last_failure = ""
        self.opened = 0
        """How many times it has opened."""
        self._clock = clock
        self._on_change = on_change
        self._recent: deque[float] = deque()
        self._opened_at = 0.0
        self._probing = False

    # -- the calls it guards --------------------------------------------------------------

    def check(self) -> None:
        """Raise ``DependencyDown`` if a call now would surely be refused; changes nothing
        (to fail before costly preparation, such as starting a sandbox)."""
        if self.state is BreakerState.OPEN and self._clock() < self._opened_at + self.reset_after:
            raise self._refusal(self._clock())

    def allow(self) -> None:
        """Let a call through, or raise ``DependencyDown`` while open (or probing)."""
        if self.state is BreakerState.CLOSED:
            return
        now = self._clock()
        if self.state is BreakerState.OPEN and now >= self._opened_at + self.reset_after:
            self._set(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True  # this call is the probe
            return
        raise self._refusal(now)

    def _refusal(self, now: float) -> DependencyDown:
        wait = max(0.5, self._opened_at + self.reset_after - now)
        return DependencyDown(
            f"{self.what} failed {self.failures} times within {self.window:g} s (last: "
            f"{self.last_failure or 'unknown'}); the {self.name!r} circuit breaker is open and "
            f"calls fail fast until a probe succeeds, the next in about {wait:.0f} s",
            breaker=self.name,
            retry_after=wait,
        )

    def succeeded(self) -> None:
        """A call let through succeeded: a probe's success closes the breaker."""
        if self.state is not BreakerState.CLOSED:
            self._probing = False
            self._recent.clear()
            self._set(BreakerState.CLOSED)

    def failed(self, cause: str) -> None:
        """A call let through failed for a reason that counts against the dependency."""
        now = self._clock()
        self.last_failure = cause
        if self.state is BreakerState.HALF_OPEN:
            self._probing = False
            self._open(now)
            return
        if self.state is BreakerState.OPEN:
            return
        self._recent.append(now)
        while self._recent and self._recent[0] < now - self.window:
            self._recent.popleft()
        if len(self._recent) >= self.failures:
            self._open(now)

    def abandoned(self) -> None:
        """A call let through ended with no verdict (cancelled): another may probe."""
        self._probing = False

    @contextmanager
    def guard(self, counts: Callable[[BaseException], bool]) -> Iterator[None]:
        """``allow``, then ``succeeded``, or ``failed`` when ``counts(exc)``; other
        exceptions (a user's bad request) are no verdict on the dependency."""
        self.allow()
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, Exception) and counts(exc):
                self.failed(str(exc)[:300])
            else:
                self.abandoned()
                if isinstance(exc, Exception) and self.state is not BreakerState.CLOSED:
                    # The dependency answered (a user's error): it is up again.
                    self.succeeded()
            raise
        self.succeeded()

    # -- what /readyz and /metrics show ---------------------------------------------------

    def describe(self) -> dict[str, Any]:
        now = self._clock()
        recent = sum(1 for t in self._recent if t >= now - self.window)
        info: dict[str, Any] = {
            "state": self.state.value,
            "failures": recent,
            "threshold": self.failures,
            "window": self.window,
            "opened": self.opened,
        }
        if self.state is not BreakerState.CLOSED:
            info["retry_after"] = round(max(0.0, self._opened_at + self.reset_after - now), 1)
            info["last_failure"] = self.last_failure
        return info

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._recent.clear()
        self.opened += 1
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(self, state)
