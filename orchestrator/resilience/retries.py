"""Retries of transient failures, with tenacity under trio.

Only what may succeed when tried again is retried: the engine unreachable,
an engine 5xx, a call the engine did not answer in time -- errors whose
``retryable`` is true.  Never a user's command, never a 4xx.  Waits grow
exponentially with jitter, so many sessions failing together do not retry
in step, and every retry is logged with its reason and counted.

tenacity rather than code of ours: its stop/wait/retry combinators are well
tested, it runs under trio (``sleep=trio.sleep``), and unlike stamina it
installs no process-wide hooks -- sbx is a library too, and must not change
how its host's other retries are logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
import tenacity
import trio

from orchestrator.error_kinds import kind_of
from orchestrator.errors import SbxError

__all__ = ["RetryPolicy", "RetrySink", "is_transient", "with_retries"]

T = TypeVar("T")
log = structlog.get_logger("orchestrator.retries")

RetrySink = Callable[[str, str], None]
"""Told ``(operation, reason)`` at every retry, for counting."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one operation is tried."""

    attempts: int = 4
    """Tries in all, the first included (1: no retries)."""
    first_wait: float = 0.2
    """Wait before the first retry, s; doubling after, with jitter."""
    max_wait: float = 3.0
    """Longest wait between two tries, s."""
    deadline: float = 30.0
    """No new try starts this long after the first one did, s."""


def is_transient(exc: BaseException) -> bool:
    """Whether the same call may succeed if made again (an ``SbxError`` that says so)."""
    return isinstance(exc, SbxError) and exc.retryable


class _PastDeadline(tenacity.stop.stop_base):
    """Stop when the next try would start past ``deadline`` on trio's clock (tenacity's
    own ``stop_before_delay`` reads ``time.monotonic``, which trio's test clocks skip)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return trio.current_time() + retry_state.upcoming_sleep >= self.deadline


async def with_retries(
    operation: str,
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    transient: Callable[[BaseException], bool] = is_transient,
    on_retry: RetrySink | None = None,
    before_retry: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """``await call()``, tried again on a ``transient`` failure as ``policy`` allows; the
    last failure is raised as it is.  ``before_retry`` runs before each retry (to remove
    what a failed try left behind)."""

    def note(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        reason = kind_of(exc)[1] if exc is not None else "unknown"
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "retrying",
            operation=operation,
            attempt=state.attempt_number,
            of=policy.attempts,
            reason=reason,
            error=str(exc),
            wait=round(wait, 3),
        )
        if on_retry is not None:
            on_retry(operation, reason)

    past_deadline = _PastDeadline(trio.current_time() + policy.deadline)

    retrying = tenacity.AsyncRetrying(
        sleep=trio.sleep,
        stop=tenacity.stop_any(tenacity.stop_after_attempt(policy.attempts), past_deadline),
        wait=tenacity.wait_exponential_jitter(
            multiplier=policy.first_wait, max=policy.max_wait, jitter=policy.first_wait
        ),
        retry=tenacity.retry_if_exception(transient),
        before_sleep=note,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if attempt.retry_state.attempt_number > 1 and before_retry is not None:
                await before_retry()
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover
